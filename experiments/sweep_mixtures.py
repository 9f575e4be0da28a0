"""Compare mixture counts K: held-out NLL against the exact Bayes limit.

For each dataset, K and seed, trains an MDN (toy.mdn.MDN) on fixed
train/validation/test splits, keeps the parameters of the evaluation with the
best validation NLL, and scores the test NLL in the target's original units
against datasets.bayes_limit (the lowest achievable) and
datasets.gaussian_limit (the lowest for a single Gaussian, K = 1). A
least-squares baseline (toy.mdn.LeastSquares) is trained per dataset and seed.

The grid lives in an Optuna study (toy.sweep): by default an SQLite file in
the output folder; with --storage, any database Optuna takes, so several
machines running the same command share the work. Each point is trained once;
a rerun resumes. results.csv, summary.md and the figures are exported from
the study at the end of every invocation (--report-only: only that).

    python experiments/sweep_mixtures.py                       # the full sweep
    python experiments/sweep_mixtures.py --dataset bishop --seeds 1 --mixtures 1 5
    python experiments/sweep_mixtures.py --storage postgresql://me@db-host/sweep
"""
import csv
import functools
import hashlib
import json
import os
import sys
import zlib

import numpy as np

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
KEY = ('dataset', 'direction', 'model', 'k', 'seed', 'config')
#: Stored with the study: a study made by another version is refused.
STUDY, META = 'mixture-sweep', {'script': 'sweep_mixtures', 'version': 2,
                                'key': list(KEY), 'config': list(CONFIG_KEYS)}


def parse_args(argv=None):
    p = cli.ArgumentParser(description='Sweep the number of MDN mixture '
                           'components K against the exact Bayes limit.')
    p.add_argument('--dataset', nargs='+', default=['all'], metavar='NAME',
                   choices=datasets.NAMES + ('all',),
                   help='{} or all (default: all)'.format(', '.join(datasets.NAMES)))
    p.add_argument('--mixtures', '-k', nargs='+', type=cli.positive,
                   default=DEFAULT_MIXTURES, metavar='K',
                   help='mixture counts (default: %(default)s)')
    p.add_argument('--seeds', type=cli.positive, default=5,
                   help='seeds 0 .. SEEDS-1 per dataset and K (default: 5)')
    p.add_argument('--direction', choices=datasets.DIRECTIONS, default='inverse',
                   help='inverse (multi-valued, the published problems) or forward')
    p.add_argument('--hidden', type=cli.positive, default=32, help='hidden units (32)')
    p.add_argument('--activation', choices=sorted(mdn.ACTIVATIONS), default='tanh')
    p.add_argument('--epochs', '-e', type=cli.positive, default=400, help='(400)')
    p.add_argument('--batchsize', '-b', type=cli.positive, default=500, help='(500)')
    p.add_argument('--lr', type=positive_float, default=3e-2,
                   help='initial Adam step size (0.03)')
    p.add_argument('--lr-final', type=positive_float, default=1e-4,
                   help='final step size, reached by geometric decay (0.0001)')
    p.add_argument('--train-points', type=cli.positive, default=20000, help='(20000)')
    p.add_argument('--val-points', type=cli.positive, default=5000,
                   help='validation points, for model selection (5000)')
    p.add_argument('--test-points', type=cli.positive, default=10000, help='(10000)')
    p.add_argument('--eval-every', type=cli.positive, default=5,
                   help='validate every this many epochs (5)')
    cli.add_device_arguments(p)
    p.add_argument('--jobs', '-j', type=cli.positive, default=min(2, os.cpu_count() or 1),
                   help='worker processes on this machine (default: 2)')
    p.add_argument('--out', '-o', default=os.path.join('results', 'sweep'),
                   help='output folder (default: results/sweep)')
    p.add_argument('--storage', help='Optuna storage URL shared by all machines, '
                   'e.g. postgresql://user:password@host/db (default: an SQLite '
                   'file OUT/study.db)')
    p.add_argument('--retry-failed', action='store_true',
                   help='train again the runs that failed (diverged or raised)')
    p.add_argument('--report-only', action='store_true',
                   help='export the CSV, summary and figures; train nothing')
    p.add_argument('--no-figures', action='store_true', help='skip the figures')
    args = p.parse_args(argv)
    args.dataset = list(datasets.NAMES) if 'all' in args.dataset else list(
        dict.fromkeys(args.dataset))
    args.mixtures = sorted(set(args.mixtures))
    if args.batchsize > args.train_points:
        p.error('--batchsize {} is larger than the {} training points'.format(
            args.batchsize, args.train_points))
    if args.lr_final > args.lr:
        p.error('--lr-final {} is larger than --lr {}'.format(args.lr_final, args.lr))
    if args.eval_every > args.epochs:
        p.error('--eval-every {} (the default) is more than --epochs {}: pass '
                '--eval-every {} or less'.format(args.eval_every, args.epochs,
                                                 args.epochs)
                if args.eval_every == p.get_default('eval_every') else
                '--eval-every {} is more than --epochs {}'.format(
                    args.eval_every, args.epochs))
    csv_path = os.path.join(args.out, 'results.csv')
    for path, ok in ((args.out, os.path.isdir), (csv_path, os.path.isfile)):
        if os.path.exists(path) and not ok(path):
            p.error('{} exists and is not a {}'.format(
                path, 'directory' if ok is os.path.isdir else 'file'))
    if os.path.isfile(csv_path) and csv_header(csv_path) != FIELDS:
        p.error('{} has other columns than this script writes: choose another '
                '--out'.format(csv_path))
    args.device_spec = args.device
    args.device = cli.get_device(p, args.device)
    try:
        os.makedirs(args.out, exist_ok=True)
        args.url = sweep.storage_url(args.storage or 'sqlite:///' + os.path.join(
            args.out, 'study.db'))
        args.study = sweep.open_study(sweep.connect(args.url), STUDY, META)
    except (OSError, sweep.StorageError) as e:
        p.error(str(e))
    return args


def positive_float(text):
    value = float(text)
    if not (np.isfinite(value) and value > 0):
        raise ValueError(text)
    return value


positive_float.__name__ = 'positive number'


def warn(message):
    print('warning: ' + message, file=sys.stderr)


def csv_header(path):
    with open(path, newline='', encoding='utf-8', errors='replace') as f:
        return next(csv.reader(f), None)


def config_id(args):
    """Short fingerprint of the options that change a run's result."""
    blob = json.dumps({k: getattr(args, k) for k in CONFIG_KEYS}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:8]


def grid(args):
    """The points of this invocation, largest K first (the longest runs start
    early, so the workers finish together)."""
    common = dict({k: getattr(args, k) for k in CONFIG_KEYS},
                  config=config_id(args), direction=args.direction)
    return [dict(common, dataset=name, model=model, k=k, seed=seed)
            for k in sorted(args.mixtures + [0], reverse=True)
            for name in args.dataset for seed in range(args.seeds)
            for model in ['mse' if k == 0 else 'mdn']]


def key(point):
    return '{dataset}-{direction}-{model}-k{k}-seed{seed}-{config}'.format(**point)


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
    return mdn.MDN(hidden=point['hidden'], k=point['k'],
                   activation=point['activation'], rng=rng)


def run_task(point, out, device_spec):
    """Train one point and score it: (test NLL or MSE, the CSV row)."""
    device = chainer.get_device(device_spec)
    device.use()
    data = splits(point)
    scaler = train.Standardizer(*data['train'])
    std = {s: (scaler.inputs(x), scaler.targets(y)) for s, (x, y) in data.items()}
    init = [point['seed'], zlib.crc32(point['dataset'].encode()), point['k']]
    model = build_model(point, np.random.default_rng(np.random.SeedSequence(init)))
    info = train.fit(model, *std['train'], *std['val'], epochs=point['epochs'],
                     batchsize=point['batchsize'], lr=point['lr'],
                     lr_final=point['lr_final'], eval_every=point['eval_every'],
                     seed=point['seed'], device=device)
    model.to_device('@numpy')
    arrays = {'param' + n: p.array for n, p in model.namedparams()}
    arrays.update({'scaler_' + k: v for k, v in scaler.state().items()})
    os.makedirs(os.path.join(out, 'models'), exist_ok=True)
    files.save_npz(os.path.join(out, 'models', key(point) + '.npz'), arrays)
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
    mse = float(np.mean((scaler.untarget(mean) - data['test'][1]) ** 2))
    row['mse'] = '{:.6g}'.format(mse)
    if point['model'] == 'mse':
        return mse, row
    nll = mdn.heldout_nll(model, x_test, y_test) + scaler.log_jacobian
    bayes, gaussian = datasets.limits(point['dataset'], point['direction'])
    row.update({'nll': nll, 'val_nll': info['best_val_loss'] + scaler.log_jacobian,
                'bayes_limit': bayes, 'gap_bayes': nll - bayes,
                'gaussian_limit': gaussian, 'gap_gaussian': nll - gaussian})
    row.update({k: '{:.6f}'.format(v) for k, v in row.items()
                if k in FIELDS[6:13] and k != 'mse'})
    return nll, row


def checked(row):
    """The row with its numbers parsed; ValueError says what is wrong."""
    if not isinstance(row, dict) or set(row) - set(FIELDS):
        raise ValueError('not a row of this script: {!r:.80}'.format(row))
    parsed = dict(row, k=int(row['k']), seed=int(row['seed']),
                  mse=float(row['mse']), train_seconds=float(row['train_seconds']))
    if row['model'] == 'mdn':
        parsed['nll'] = float(row['nll'])
    if not all(np.isfinite(parsed[f]) for f in ('mse', 'nll') if f in parsed):
        raise ValueError('non-finite score in {}'.format(key(row)))
    return parsed


def export(args):
    """Write results.csv (every finished run of the study) and return this
    invocation's (rows, failures), each at most once per point."""
    wanted, rows, failed, csv_rows = set(map(key, grid(args))), [], [], []
    for k, trial in sorted(sweep.outcomes(args.study).items()):
        if 'failure' in trial.user_attrs:
            failed += [(k, trial.user_attrs['failure'])] if k in wanted else []
            continue
        try:
            row = checked(trial.user_attrs.get('row'))
            if key(row) != k:
                raise ValueError('its row is for {}'.format(key(row)))
        except (KeyError, TypeError, ValueError) as e:
            warn('skipping trial {} ({}): {}'.format(trial.number, k, e))
            continue
        csv_rows.append(trial.user_attrs['row'])
        rows += [row] if k in wanted else []
    with files.atomic_write(os.path.join(args.out, 'results.csv'), 'w') as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS, lineterminator='\n')
        writer.writeheader()
        writer.writerows(csv_rows)
    return rows, failed


def select(rows, name, k, field='nll', model='mdn'):
    return np.array([r[field] for r in rows if r['dataset'] == name
                     and r['model'] == model and r['k'] == k])


def best_k(rows, name, mixtures):
    means = [(select(rows, name, k).mean(), k) for k in mixtures
             if len(select(rows, name, k))]
    return min(means)[1] if means else None


def write_summary(args, rows, failed):
    lines = ['# Mixture-count sweep ({} direction)'.format(args.direction), '',
             "Held-out NLL in nats per point, in the target's original units, "
             'mean ± std over seeds on {} test points; the gap is to the exact '
             'Bayes limit H(target | input). Models chosen on {} validation '
             'points; trained on {}. Config `{}`: {}.'.format(
                 args.test_points, args.val_points, args.train_points,
                 config_id(args), ', '.join('{}={}'.format(k, getattr(args, k))
                                            for k in CONFIG_KEYS)), '']
    for name in args.dataset:
        bayes, gaussian = datasets.limits(name, args.direction)
        lines += ['## ' + name, '', 'Bayes limit {:.4f} nats; single-Gaussian '
                  'limit {:.4f} nats.'.format(bayes, gaussian), '',
                  '| K | runs | held-out NLL | gap to Bayes | gap to 1-Gaussian '
                  '| mixture-mean MSE | train s |', '|---:|---:|---:|---:|---:|---:|---:|']
        for k in args.mixtures:
            nll, mse, sec = (select(rows, name, k, f) for f in ('nll', 'mse',
                                                                'train_seconds'))
            if len(nll):
                lines.append('| {} | {} | {:.4f} ± {:.4f} | {:+.4f} | {:+.4f} | '
                             '{:.4g} | {:.1f} |'.format(
                                 k, len(nll), nll.mean(), nll.std(), nll.mean() - bayes,
                                 nll.mean() - gaussian, mse.mean(), sec.mean()))
        k = best_k(rows, name, args.mixtures)
        lines += [''] + (['Best K = {} (mean held-out NLL {:.4f}, gap {:+.4f} nats).'
                          .format(k, select(rows, name, k).mean(),
                                  select(rows, name, k).mean() - bayes)] if k else [])
        mse = select(rows, name, 0, 'mse', 'mse')
        if len(mse):
            lines.append('Least-squares baseline (LeastSquares, same net): held-out '
                         'MSE {:.4g} ± {:.2g} (target units squared), {} runs.'
                         .format(mse.mean(), mse.std(), len(mse)))
        lines += ['Failed (excluded from the means and the best K; rerun with '
                  '--retry-failed): ' + '; '.join('`{}`: {}'.format(*f) for f in failed
                                                  if f[0].startswith(name + '-'))
                  ] if any(f[0].startswith(name + '-') for f in failed) else []
        lines.append('')
    with files.atomic_write(os.path.join(args.out, 'summary.md')) as f:
        f.write('\n'.join(lines))


def load_model(path, point):
    """(model, Standardizer) saved by run_task; ValueError (one line) if the
    file is missing, damaged, pickled or of another model."""
    model = build_model(point)
    shapes = {'param' + n: p.shape for n, p in model.namedparams()}

    def check(name, shape, dtype):
        if name in shapes and (shape != shapes[name] or dtype.kind != 'f'):
            raise ValueError('{}: {} is {} {}, not float {}'.format(
                path, name, shape, dtype, shapes[name]))
    arrays = files.read_npz_safe(path, check=check, max_bytes=2 ** 26)
    try:
        for name, p in model.namedparams():
            p.array[...] = arrays['param' + name]
        scaler = train.Standardizer.from_state(
            {k[7:]: v for k, v in arrays.items() if k.startswith('scaler_')})
    except (KeyError, ValueError) as e:
        raise ValueError('{} is not a model of this sweep ({})'.format(path, e))
    return model, scaler


def draw(args, rows):
    """nll_vs_k.png and three figures per problem, from the seed-0 models."""
    names = [n for n in args.dataset if any(len(select(rows, n, k)) for k in args.mixtures)]
    panels = []
    for name in names:
        ks = [k for k in args.mixtures if len(select(rows, name, k))]
        panels.append((name, ks, [select(rows, name, k) for k in ks])
                      + datasets.limits(name, args.direction))
        problem_figures(args, rows, name)
    if panels:
        plots.nll_against_k(os.path.join(args.out, 'nll_vs_k.png'), panels)


def saved(args, name, model, k):
    point = dict(grid(args)[0], dataset=name, model=model, k=k, seed=0)
    try:
        return load_model(os.path.join(args.out, 'models', key(point) + '.npz'), point)
    except ValueError as e:
        warn('figure without this model: {}'.format(e))
        return None, None


def problem_figures(args, rows, name):
    problem, inverse = datasets.PROBLEMS[name], args.direction == 'inverse'
    x, y = splits(grid(args)[0] | {'dataset': name}, seed=0)['train']
    # Every training point would bury the samples: the draws are i.i.d., so
    # the first 3,000 are a random subset.
    x, y = x[:3000], y[:3000]
    x_label = '{} (input)'.format(problem.observed if inverse else problem.latent)
    y_label = '{} (target)'.format(problem.latent if inverse else problem.observed)
    x_grid = np.linspace(x.min(), x.max(), 300, dtype=np.float32)
    y_grid = np.linspace(y.min() - 0.05 * np.ptp(y), y.max() + 0.05 * np.ptp(y), 300)
    rng = np.random.RandomState(0)
    prefix = os.path.join(args.out, '{}-{}-'.format(name, args.direction))
    bayes = datasets.limits(name, args.direction)[0]

    def samples(model, scaler, k):
        return scaler.untarget(mdn.sample(*model.mixture(
            scaler.inputs(x_grid[:, None])), n=3, rng=rng))
    models = [(k,) + saved(args, name, 'mdn', k) for k in args.mixtures
              if len(select(rows, name, k))]
    panels = [('K = {}: NLL {:.3f}'.format(k, select(rows, name, k).mean()),
               samples(m, s, k)) for k, m, s in models if m is not None]
    if panels:
        plots.samples_grid(prefix + 'samples.png', '{}: data (grey) and 3 MDN '
                           'samples per x (red), seed 0; Bayes limit {:.3f} nats'
                           .format(name, bayes), x, y, x_grid, panels, x_label, y_label)
    k = best_k(rows, name, args.mixtures)
    model, scaler = saved(args, name, 'mdn', k) if k else (None, None)
    if model is None:
        return
    logits, mu, ln_var = model.mixture(scaler.inputs(x_grid[:, None]))
    scale = scaler.untarget(np.ones(1)) - scaler.untarget(np.zeros(1))
    plots.mixture_against_truth(
        prefix + 'best_k.png', '{}: best K = {} (seed 0)'.format(name, k), x, y,
        x_grid, y_grid, (logits, scaler.untarget(mu), ln_var + 2 * np.log(scale)),
        datasets.conditional_density(name, args.direction, x_grid, y_grid),
        x_label, y_label)
    baseline, b_scaler = saved(args, name, 'mse', 0)
    fit = None
    if baseline is not None:
        with chainer.no_backprop_mode():
            fit = b_scaler.untarget(baseline.forward(b_scaler.inputs(x_grid[:, None])).array)
    plots.fit_against_samples(
        prefix + 'mse_vs_mdn.png', '{}: least squares averages the branches; the '
        'MDN does not'.format(name), x, y, x_grid, samples(model, scaler, k), fit,
        x_label, y_label, 'MDN samples (K = {})'.format(k))


def main(argv=None):
    args = parse_args(argv)
    points = grid(args)
    if not args.report_only:
        sweep.enqueue(args.study, points, key, retry_failed=args.retry_failed)
        # One BLAS thread per worker: the workers are the parallelism.
        os.environ.setdefault('OMP_NUM_THREADS', '1')
        try:
            sweep.run(args.url, STUDY, [key(p) for p in points], functools.partial(
                run_task, out=args.out, device_spec=args.device_spec), args.jobs)
        except KeyboardInterrupt:
            print('interrupted: finished runs are kept in {}; rerun the same '
                  'command to resume'.format(sweep.shown(args.url)), file=sys.stderr)
            return 130
        except sweep.StorageLost as e:
            print('error: the storage stopped answering ({}); finished runs are '
                  'kept: rerun the same command when it is back'.format(e),
                  file=sys.stderr)
            return 1
    rows, failed = export(args)
    write_summary(args, rows, failed)
    if not args.no_figures:
        draw(args, rows)
    print('{} of {} runs done, {} failed; results.csv and summary.md{} in {}'.format(
        len(rows), len(points), len(failed), '' if args.no_figures else
        ' and figures', args.out))
    return 0


if __name__ == '__main__':
    sys.exit(main())
