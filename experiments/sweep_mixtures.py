"""Compare mixture counts K: held-out NLL against the exact Bayes limit.

For each dataset, K and seed, trains an MDN on fixed train/validation/test
splits, keeps the parameters with the best validation NLL, and scores the test
NLL in the target's original units against datasets.limits: the Bayes limit
(the lowest achievable) and the single-Gaussian limit (the lowest for K = 1),
beside a least-squares baseline. The grid lives in an Optuna study (toy.sweep):
an SQLite file in --out, or any --storage, shared by every machine that runs
the same command; each point is trained once and a rerun resumes. results.csv,
summary.md and the figures are exported from the study at the end.

    python experiments/sweep_mixtures.py                       # the full sweep
    python experiments/sweep_mixtures.py --dataset bishop --seeds 1 --mixtures 1 5
    python experiments/sweep_mixtures.py --storage postgresql://me@db-host/sweep
"""
import functools
import json
import math
import os
import sys
import zlib

import numpy as np
from tqdm import tqdm

import toy  # noqa: F401  (patches NumPy/Python for chainer before it is imported)
import chainer

from toy import cli, datasets, files, mdn, plots, sweep, train

DEFAULT_MIXTURES = [1, 2, 3, 4, 5, 6, 8, 12, 16, 24]
FIELDS = ['dataset', 'direction', 'model', 'k', 'seed', 'config',
          'nll', 'bayes_limit', 'gap_bayes', 'gaussian_limit', 'gap_gaussian',
          'mse', 'val_nll', 'train_seconds', 'epochs', 'best_epoch',
          'iterations', 'device']
#: Options that change a run's result, fingerprinted as its `config`.
CONFIG_KEYS = ('hidden', 'activation', 'epochs', 'batchsize', 'lr', 'lr_final',
               'train_points', 'val_points', 'test_points', 'eval_every')
#: Options that change a run's result only when set: fingerprinted then, so
#: the runs made before they existed keep their `config`.
OPTIONAL_CONFIG = ('spread_components', 'sigma_min')
KEY = ('dataset', 'direction', 'model', 'k', 'seed', 'config')
MAX_RUNS = 100000
FLOOR_FILE = 'mixture_floor.json'
#: EM iterations per start of the K-floors: EM creeps, and 2,000 take 4x as
#: long for floors about 1e-3 nats lower (worldmodels K = 5: 0.0787 against
#: 0.0776), a tenth of the gaps they are set against.
FLOOR_ITERATIONS = 500
#: Stored with the study: a study made by another version is refused.
STUDY, META = 'mixture-sweep', {'script': 'sweep_mixtures', 'version': 2,
                                'key': list(KEY), 'config': list(CONFIG_KEYS)}


def make_parser():
    p = cli.ArgumentParser(description='Sweep the number of MDN mixture '
                           'components K against the exact Bayes limit.')
    p.add_argument('--dataset', nargs='+', default=['all'], metavar='NAME',
                   choices=datasets.NAMES + ('all',),
                   help='{} or all (default: all)'.format(', '.join(datasets.NAMES)))
    p.add_argument('--mixtures', '-k', nargs='+', type=cli.positive,
                   default=DEFAULT_MIXTURES, metavar='K', help='mixture counts')
    p.add_argument('--direction', choices=datasets.DIRECTIONS, default='inverse',
                   help='inverse (multi-valued, the published problems) or forward')
    p.add_argument('--activation', choices=sorted(mdn.ACTIVATIONS), default='tanh')
    p.add_argument('--hidden', type=cli.positive, nargs='+', default=[32],
                   metavar='UNITS', help='hidden units, one number per layer (32)')
    p.add_argument('--spread-components', action='store_true',
                   help='start the components side by side over the targets at every '
                   'input (MDN.spread_components) instead of where the random head '
                   'puts them')
    p.add_argument('--sigma-min', type=cli.positive_float, metavar='SIGMA',
                   help='floor the components\' standard deviations smoothly at SIGMA, '
                   'in standardised target units (MDN ln_var_min = 2 log SIGMA): a '
                   'guard against a collapsing component (default: none)')
    for flag, kind, default, text in (
            ('--seeds', cli.positive, 5, 'seeds 0 .. SEEDS-1 per dataset and K'),
            ('--epochs -e', cli.positive, 400, 'passes over the training set'),
            ('--batchsize -b', cli.positive, 500, 'minibatch size'),
            ('--lr', cli.positive_float, 3e-2, 'initial Adam step size'),
            ('--lr-final', cli.positive_float, 1e-4, 'final step size (geometric decay)'),
            ('--train-points', cli.positive, 20000, 'training points'),
            ('--val-points', cli.positive, 5000, 'validation points (model selection)'),
            ('--test-points', cli.positive, 10000, 'held-out test points'),
            ('--eval-every', cli.positive, 5, 'validate every this many epochs')):
        p.add_argument(*flag.split(), type=kind, default=default,
                       help=text + ' (%(default)s)')
    cli.add_device_arguments(p)
    p.add_argument('--out', '-o', default=os.path.join('results', 'sweep'),
                   help='output folder (default: %(default)s)')
    sweep.add_arguments(p)
    p.add_argument('--no-figures', action='store_true', help='skip the figures')
    p.add_argument('--no-baseline', action='store_true',
                   help='skip the least-squares runs (they cost an MDN run each)')
    p.add_argument('--no-floor', action='store_true', help='skip the K-mixture '
                   'floors (computed once per problem and K, then kept in '
                   '--floor-file; K = 12 takes about 40 s)')
    p.add_argument('--floor-file', metavar='PATH', help='where the floors are '
                   'kept (default: OUT/{})'.format(FLOOR_FILE))
    return p


def parse_args(argv=None):
    p = make_parser()
    return check_args(p, p.parse_args(argv))


def check_args(p, args):
    """Validate what argparse cannot, before any work or writing; resolve the
    device, open the study (sweep.open_from_arguments). Exit 2 with one line."""
    args.dataset = list(datasets.NAMES if 'all' in args.dataset else
                        dict.fromkeys(args.dataset))
    args.mixtures = sorted(set(args.mixtures))
    args.hidden = mdn.hidden_option(args.hidden)
    for bad, message in (
            (args.batchsize > args.train_points, '--batchsize {0.batchsize} is '
             'larger than the {0.train_points} training points'),
            (args.lr_final > args.lr, '--lr-final {0.lr_final} is larger than --lr '
             '{0.lr}'),
            (args.eval_every > args.epochs, '--eval-every {0.eval_every}' + (
                ' (the default)' if args.eval_every == p.get_default('eval_every')
                else '') + ' is more than --epochs {0.epochs}: pass --eval-every '
             '{0.epochs} or less'),
            (len(args.dataset) * args.seeds * (len(args.mixtures) + 1) > MAX_RUNS,
             'the grid has more than {} runs: use fewer --seeds or --mixtures'
             .format(MAX_RUNS))):
        if bad:
            p.error(message.format(args))
    args.device_spec, args.device = args.device, cli.get_device(p, args.device)
    cli.check_memory(p, memory_needed(args), args.device, '--hidden, --mixtures, '
                     '--train-points, --val-points, --test-points, --batchsize or --jobs')
    if not args.no_floor:
        if os.path.isdir(floor_path(args)):
            p.error('{} is a directory, not a file of floors: choose another --floor-file'
                    .format(floor_path(args)))
        if args.floor_file:
            cli.check_out(p, os.path.dirname(args.floor_file) or '.', '--floor-file')
    sweep.open_from_arguments(p, args, STUDY, META, FIELDS)
    return args


def memory_needed(args):
    """Rough upper estimate of the bytes the runs at work at once take
    (--jobs of them; one with --report-only), before any is started.

    Per run: the parameters with their gradients, Adam's two moments and the
    best copy; the three splits, drawn in float64, and the shuffled order; and
    the largest set of activations at once (a training batch, or the
    validation or test set in one pass), each hidden layer plus the
    mixture's (N, K) arrays, with their gradients and temporaries.
    """
    k, widths = args.mixtures[-1], mdn.hidden_widths(args.hidden)
    params = sum((n_in + 1) * n for n_in, n in zip([1] + widths, widths + [3 * k]))
    points = args.train_points + args.val_points + args.test_points
    rows = max(args.batchsize, args.val_points, args.test_points)
    run = 4 * 5 * params + 16 * 2 * points + 8 * args.train_points + 16 * rows * (
        sum(widths) + 8 * k)
    return run * (1 if args.report_only else args.jobs)


def config(args):
    """{option: value} of the options that change a run's result."""
    return dict({k: getattr(args, k) for k in CONFIG_KEYS},
                **{k: getattr(args, k) for k in OPTIONAL_CONFIG if getattr(args, k)})


def config_id(args):
    """Short fingerprint of the options that change a run's result."""
    return sweep.fingerprint(config(args))


def grid(args):
    """The points of this invocation in the order they are trained: seed by
    seed (a sweep stopped early has whole seeds), largest K first within one
    (the longest runs start early, so the workers finish together)."""
    common = dict(config(args), config=config_id(args), direction=args.direction)
    return [dict(common, dataset=name, model=model, k=k, seed=seed)
            for seed in range(args.seeds)
            for k in sorted(args.mixtures + ([] if args.no_baseline else [0]),
                            reverse=True)
            for name in args.dataset for model in ['mse' if k == 0 else 'mdn']]


def key(point):
    return '{dataset}-{direction}-{model}-k{k}-seed{seed}-{config}'.format(**point)


def model_path(out, point):
    return os.path.join(out, 'models', key(point) + '.npz')


def splits(point, seed=None):
    """{'train': (x, y), 'val': ..., 'test': ...}, float32 (n, 1) each; the
    same for every K and model (crc32 keeps them when datasets are added)."""
    seed = point['seed'] if seed is None else seed
    name, sizes = point['dataset'], (point['train_points'], point['val_points'],
                                     point['test_points'])
    seeds = np.random.SeedSequence([seed, zlib.crc32(name.encode())]).spawn(3)
    return {split: datasets.generate(name, n, np.random.default_rng(s),
                                     point['direction'])
            for split, n, s in zip(('train', 'val', 'test'), sizes, seeds)}


def build_model(point, rng=None):
    if point['model'] == 'mse':
        return mdn.LeastSquares(hidden=point['hidden'],
                                activation=point['activation'], rng=rng)
    sigma_min = point.get('sigma_min')
    return mdn.MDN(hidden=point['hidden'], k=point['k'],
                   activation=point['activation'], rng=rng,
                   ln_var_min=None if sigma_min is None else 2 * math.log(sigma_min))


def run_task(point, out, device_spec):
    """Train one point and score it: (test NLL or MSE, the CSV row)."""
    device = chainer.get_device(device_spec)
    device.use()
    data = splits(point)
    scaler = train.Standardizer(*data['train'])
    std = {s: (scaler.inputs(x), scaler.targets(y)) for s, (x, y) in data.items()}
    init = [point['seed'], zlib.crc32(point['dataset'].encode()), point['k']]
    model = build_model(point, np.random.default_rng(np.random.SeedSequence(init)))
    if point.get('spread_components') and point['model'] == 'mdn':
        model.spread_components(std['train'][1])
    with np.errstate(over='ignore', invalid='ignore'):  # a divergence is reported
        info = train.fit(model, *std['train'], *std['val'], epochs=point['epochs'],
                         batchsize=point['batchsize'], lr=point['lr'],
                         lr_final=point['lr_final'], eval_every=point['eval_every'],
                         seed=point['seed'], device=device)
    model.to_device('@numpy')
    sweep.save_model(model_path(out, point), model, scaler)
    row = dict({k: point[k] for k in KEY}, train_seconds='{:.2f}'.format(
        info['seconds']), epochs=info['epochs'], iterations=info['iterations'],
        best_epoch=info['best_epoch'], device=str(device))
    x_test, y_test = std['test']
    if point['model'] == 'mse':
        with chainer.no_backprop_mode():
            mean = model.forward(x_test).array
    else:
        logits, mu, _ = model.mixture(x_test)
        mean = mdn.mixture_mean(logits, mu)
    # In original units: the squared error scales by the target scale squared.
    with np.errstate(over='ignore', invalid='ignore'):  # a non-finite one is refused
        mse = float(np.mean((scaler.untarget(mean) - data['test'][1]) ** 2))
    row['mse'] = '{:.6g}'.format(mse)
    value = mse
    if point['model'] == 'mdn':
        value = nll = mdn.heldout_nll(model, x_test, y_test) + scaler.log_jacobian
        bayes, gaussian = datasets.limits(point['dataset'], point['direction'])
        row.update({'nll': nll, 'val_nll': info['best_val_loss'] + scaler.log_jacobian,
                    'bayes_limit': bayes, 'gap_bayes': nll - bayes,
                    'gaussian_limit': gaussian, 'gap_gaussian': nll - gaussian})
        row.update({k: '{:.6f}'.format(v) for k, v in row.items()
                    if k in FIELDS[6:13] and k != 'mse'})
    # A row that export would refuse (a non-finite score: NLL finite, MSE
    # inf after a blow-up) is a failed run, not a finished one.
    parse(row)
    return value, row


def parse(row):
    """A results.csv row with its numbers parsed; ValueError if it is not one."""
    parsed = dict(row, k=int(row['k']), seed=int(row['seed']),
                  mse=float(row['mse']), train_seconds=float(row['train_seconds']))
    if row['model'] == 'mdn':
        parsed['nll'] = float(row['nll'])
    bad = [f for f in ('nll', 'mse') if f in parsed and not np.isfinite(parsed[f])]
    if bad:
        raise ValueError('non-finite score ({})'.format(', '.join(
            '{} {}'.format(f, parsed[f]) for f in bad)))
    return parsed


def select(rows, name, k, field='nll', model='mdn'):
    return np.array([r[field] for r in rows if r['dataset'] == name
                     and r['model'] == model and r['k'] == k])


def best_k(rows, name, mixtures):
    means = [(select(rows, name, k).mean(), k) for k in mixtures
             if len(select(rows, name, k))]
    return min(means)[1] if means else None


def floor_path(args):
    return args.floor_file or os.path.join(args.out, FLOOR_FILE)


def floors(args):
    """{(dataset, K): its K-mixture floor} in nats above the Bayes limit
    (datasets.mixture_floor), for this invocation's problems and K; {} with
    --no-floor. Each is computed once and kept in --floor-file."""
    if args.no_floor:
        return {}
    path = floor_path(args)
    try:
        with open(path) as f:
            kept = json.load(f)
    except (OSError, ValueError):  # none yet, or damaged: computed again
        kept = {}
    kept = kept if isinstance(kept, dict) else {}
    found = {}
    for name in args.dataset:
        for k in args.mixtures:
            label = '{}-{}-k{}'.format(name, args.direction, k)
            value = kept.get(label)
            if not (isinstance(value, float) and math.isfinite(value) and value >= 0):
                with tqdm(desc='{}-component mixture floor of {} (kept in {})'.format(
                        k, name, path), unit='input', leave=False, disable=None,
                        dynamic_ncols=True) as bar:
                    value = kept[label] = datasets.mixture_floor(
                        name, k, args.direction, iterations=FLOOR_ITERATIONS,
                        progress=functools.partial(_advance, bar))
                os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
                files.write_json(path, kept)  # each as it comes: they are slow
            found[name, k] = value
    return found


def mean_spread(values, unit, mean='{:.4f}', spread='{:.4f}'):
    """'mean ± std' of values; one value alone has no spread to show."""
    if len(values) == 1:
        return (mean + ' (one {})').format(values[0], unit)
    return (mean + ' ± ' + spread).format(np.mean(values), np.std(values))


def _advance(bar, done, total):
    bar.total, bar.n = total, done
    bar.refresh()


def write_summary(args, rows, failed, floor):
    lines = ['# Mixture-count sweep ({} direction)'.format(args.direction), '',
             "Held-out NLL in nats per point, in the target's original units, mean ± "
             'std over seeds on {0.test_points} test points; the gap is to the exact '
             'Bayes limit H(target | input). The K-floor is the lowest gap any '
             'K-component mixture can reach (fitted to the true density at each '
             'input, `datasets.mixture_floor`): the mixture\'s share of the gap; the '
             'rest is the network\'s. Models chosen on {0.val_points} '
             'validation points; trained on {0.train_points}. Config `{1}`: {2}.'.format(
                 args, config_id(args), ', '.join('{}={}'.format(k, v)
                                                  for k, v in config(args).items())), '']
    for name in args.dataset:
        bayes, gaussian = datasets.limits(name, args.direction)
        lines += ['## ' + name, '', 'Bayes limit {:.4f} nats; single-Gaussian limit '
                  '{:.4f} nats.'.format(bayes, gaussian), '', '| K | runs | held-out '
                  'NLL | gap to Bayes | K-floor (mixture) | network | gap to '
                  '1-Gaussian | mixture-mean MSE | train s |',
                  '|---:|---:|---:|---:|---:|---:|---:|---:|---:|']
        for k in args.mixtures:
            nll, mse, sec = (select(rows, name, k, f) for f in ('nll', 'mse', 'train_seconds'))
            if not len(nll):
                continue
            gap = nll.mean() - bayes
            shares = ('{:.4f} | {:+.4f}'.format(floor[name, k], gap - floor[name, k])
                      if (name, k) in floor else '– | –')
            lines.append('| {} | {} | {} | {:+.4f} | {} | {:+.4f} | {:.4g} | {:.1f} |'.format(
                k, len(nll), mean_spread(nll, 'seed'), gap, shares, nll.mean() - gaussian,
                mse.mean(), sec.mean()))
        k, mse = best_k(rows, name, args.mixtures), select(rows, name, 0, 'mse', 'mse')
        lines += [''] + (['Best K = {} (mean held-out NLL {:.4f}, gap {:+.4f} nats).'.format(
            k, select(rows, name, k).mean(), select(rows, name, k).mean() - bayes)]
            if k else [])
        lines += ['Least-squares baseline (LeastSquares, same net): held-out MSE in '
                  'target units squared {}{}.'.format(
                      mean_spread(mse, 'run', '{:.4g}', '{:.2g}'),
                      ', {} runs'.format(len(mse)) if len(mse) > 1 else '')] if len(mse) else []
        lines += ['Failed, excluded from the means and the best K (rerun with '
                  '--retry-failed): `{}`: {}'.format(*f) for f in failed
                  if f[0].startswith(name + '-')] + ['']
    with files.atomic_write(os.path.join(args.out, 'summary.md')) as f:
        f.write('\n'.join(lines))


def seed0(args, name, model, k, x):
    """The seed-0 model's output at x (N, 1) in original units: its mixture
    (logits, mu, ln_var) or least-squares fit; None, with a warning, if its
    file cannot be used."""
    if model == 'mse' and args.no_baseline:
        return None
    point = dict(grid(args)[0], dataset=name, model=model, k=k, seed=0)
    net = build_model(point)
    try:
        scaler = sweep.load_model(model_path(args.out, point), net)
    except ValueError as e:
        print('warning: figure without this model: {}'.format(e), file=sys.stderr)
        return None
    if model == 'mse':
        with chainer.no_backprop_mode():
            return scaler.untarget(net.forward(scaler.inputs(x)).array)
    logits, mu, ln_var = net.mixture(scaler.inputs(x))
    scale = scaler.untarget(np.ones(1)) - scaler.untarget(np.zeros(1))
    return logits, scaler.untarget(mu), ln_var + 2 * np.log(scale)


def draw(args, rows, floor):
    """nll_vs_k.png, and per problem the figures of its seed-0 models."""
    problems = []
    for name in args.dataset:
        ks = [k for k in args.mixtures if len(select(rows, name, k))]
        if ks:
            problems.append(plots.Problem(
                name, args.direction, ks, [select(rows, name, k) for k in ks],
                [floor[name, k] for k in ks] if floor else None,
                best_k(rows, name, ks), functools.partial(seed0, args, name),
                splits(dict(grid(args)[0], dataset=name), seed=0)['train']))
    plots.sweep_figures(args.out, problems)


def held(study, args):
    """What the study holds, for a message: per configuration of its finished
    runs, its fingerprint, how many, of which problems and K, and the options
    that would select it instead of this command's."""
    mine, configs = config(args), {}
    for trial in sweep.outcomes(study).values():
        point = trial.user_attrs.get('point')
        if isinstance(point, dict):
            configs.setdefault(str(point.get('config')), []).append(point)
    phrases = []
    for name, points in sorted(configs.items()):
        options = []
        for k in CONFIG_KEYS + OPTIONAL_CONFIG:
            value, flag = points[0].get(k), '--' + k.replace('_', '-')
            if value != mine.get(k):
                options.append('without ' + flag if value is None else flag
                               if value is True else ' '.join(
                                   [flag] + [str(v) for v in np.atleast_1d(value)]))
        phrases.append('config {} ({} runs of {}, K {}{})'.format(
            name, len(points), ' '.join(sorted({'{dataset} {direction}'.format(**p)
                                                for p in points})),
            ' '.join(map(str, sorted({p['k'] for p in points}))),
            ': ' + ' '.join(options) if options else ''))
    return '; '.join(phrases) or 'no finished run'


def main(argv=None):
    parser = make_parser()
    args = check_args(parser, parser.parse_args(argv))
    points = grid(args)
    if args.report_only:
        done = sweep.outcomes(args.study)
        if not any(key(p) in done for p in points):
            parser.error(
                "--report-only: nothing to report: the study in {} has no finished run of "
                "this command's grid (config {}, {} {}, K {}); it holds {}".format(
                    sweep.shown(args.url), config_id(args), ' '.join(args.dataset),
                    args.direction, ' '.join(map(str, args.mixtures)),
                    held(args.study, args)))
        os.makedirs(args.out, exist_ok=True)  # --storage elsewhere: nothing made yet
    else:
        os.environ.setdefault('OMP_NUM_THREADS', '1')  # the workers are the parallelism
        status = sweep.run(args.url, args.study, points, key, functools.partial(
            run_task, out=args.out, device_spec=args.device_spec), args.jobs,
            args.retry_failed)
        if status:
            return status
    rows, failed = sweep.export(args.study, os.path.join(args.out, 'results.csv'),
                                FIELDS, parse)
    # This invocation's grid only: other configs and seeds stay in the CSV.
    rows = [rows[key(p)] for p in points if key(p) in rows]
    failed = [(key(p), failed[key(p)]) for p in points if key(p) in failed]
    floor = floors(args)
    write_summary(args, rows, failed, floor)
    if not args.no_figures:
        draw(args, rows, floor)
    print('{} of {} runs done, {} failed: results.csv, summary.md{} in {}'.format(
        len(rows), len(points), len(failed), '' if args.no_figures else
        ', figures', args.out))
    return 0


if __name__ == '__main__':
    sys.exit(main())
