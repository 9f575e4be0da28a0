"""Compare mixture counts K: held-out NLL against the exact Bayes limit.

For each dataset, K and seed, trains an MDN on fixed train/validation/test
splits, keeps the parameters with the best validation NLL, and scores the test
NLL in the target's original units against datasets.limits: the Bayes limit
(the lowest achievable) and the single-Gaussian limit (the lowest for K = 1),
beside a least-squares baseline. The grid lives in an Optuna study (toy.sweep):
an SQLite file in --out, or any --storage, shared by every machine that runs
the same command; each point is trained once and a rerun resumes. results.csv,
summary.md and the figures are exported from the study at the end.

A sweep is a `SweepConfig` (its settings and where its files go): `run`
trains what its grid is missing, `report` exports it, `finished` asks its
storage which points are done. experiments.close_the_gap builds its own.

    python -m experiments.sweep_mixtures                     # the full sweep
    python -m experiments.sweep_mixtures --dataset bishop --runs 1 -k 1 5
    python -m experiments.sweep_mixtures --storage postgresql://me@db-host/sweep
    python -m experiments.sweep_mixtures --population 4      # 4 MDN runs at once a worker
"""
import argparse
import functools
import math
import os
import sys
import time
import zlib

import numpy as np
from threadpoolctl import threadpool_limits

import toy  # noqa: F401  (patches NumPy/Python for chainer before it is imported)
import chainer

from experiments import sweep_figures, sweep_summary
from experiments.sweep_config import (
    CONFIG_KEYS, FIELDS, FLOOR_FILE, KEY, META, OPTIONAL_CONFIG, QUICK, RECORDED_OPTION,
    STUDY, SweepConfig, config, config_id, current, grid, key, model_path)
from toy import (checkpoint, cli, datasets, files, mdn, mixture, nets, population,
                 preprocess, storage, sweep, sweep_table, train_custom_loop)


def make_parser():
    p = cli.ArgumentParser(description='Sweep the number of MDN mixture '
                           'components K against the exact Bayes limit.')
    d = SweepConfig()
    p.add_argument('--dataset', nargs='+', default=['all'], metavar='NAME',
                   choices=datasets.NAMES + ('all',),
                   help='{} or all'.format(', '.join(datasets.NAMES)))
    p.add_argument('--direction', choices=datasets.DIRECTIONS, default=d.direction,
                   help='inverse (multi-valued, the published problems) or forward')
    cli.add_training_arguments(
        p, ks=d.k, runs=d.runs, epoch=d.epoch, batchsize=d.batchsize, lr=d.lr,
        lr_final=d.lr_final, hidden=nets.hidden_widths(d.hidden), activation=d.activation,
        train_points=d.train_points, val_points=d.val_points,
        test_points=d.test_points, out=d.out)
    p.add_argument('--eval-every', type=cli.positive, default=d.eval_every,
                   help='validate every this many epochs')
    p.add_argument('--spread-components', action=argparse.BooleanOptionalAction,
                   default=d.spread_components,
                   help='start the components side by side over the targets at every '
                   'input (MDN.spread_components) instead of where the random head '
                   'puts them')
    p.add_argument('--sigma-min', type=cli.positive_float, metavar='SIGMA',
                   help='bound the components\' standard deviations smoothly below at '
                   'SIGMA, in standardised target units (MDN ln_var_min = 2 log '
                   'SIGMA): a guard against a collapsing component; none if unset')
    p.add_argument('--quantile-start', type=cli.at_least(0), default=d.quantile_start,
                   metavar='E', help='train the first E epochs with each mean fitted '
                   'to a quantile of the targets at its input (MDN.quantile_start): no '
                   'component starts where an input has no data')
    p.add_argument('--spread-kinks', action='store_true',
                   help='start each unit of the first hidden layer bending at a '
                   'training input (Perceptron.spread_kinks) instead of at 0')
    cli.add_sweep_arguments(p)
    p.add_argument('--population', type=cli.positive, default=d.population, metavar='R',
                   help='train up to R MDN runs of one config at once, as one network '
                   '(toy.population: faster where a step costs mostly its overhead); '
                   'each scores as if trained alone')
    p.add_argument('--quick', action='store_true',
                   help='a preview in about a minute on 2 cores: {} (options given '
                   'still apply)'.format(', '.join(
                       '--{} {}'.format(o.replace('_', '-'), ' '.join(
                           map(str, np.atleast_1d(v)))) for o, v in QUICK.items())))
    p.add_argument('--no-figures', action='store_true', help='skip the figures')
    p.add_argument('--no-baseline', action='store_true',
                   help='skip the least-squares runs (they cost an MDN run each)')
    p.add_argument('--no-floor', action='store_true', help='skip the K-mixture '
                   'floors (computed once per problem and K, then kept in '
                   '--floor-file: minutes at K = 24)')
    p.add_argument('--recompute-floors', action='store_true',
                   help='compute the K-floors of this grid again, replacing those kept '
                   'in --floor-file')
    p.add_argument('--floor-file', metavar='PATH', help='where the floors are '
                   'kept; unset: OUT/{}'.format(FLOOR_FILE))
    return p


def from_args(args):
    """The SweepConfig of parsed command-line arguments."""
    return SweepConfig(
        out=args.out, dataset=args.dataset, k=args.k, direction=args.direction,
        runs=args.runs, hidden=args.hidden, activation=args.activation,
        epoch=args.epoch, batchsize=args.batchsize, lr=args.lr,
        lr_final=args.lr_final, train_points=args.train_points,
        val_points=args.val_points, test_points=args.test_points,
        eval_every=args.eval_every, spread_components=args.spread_components,
        sigma_min=args.sigma_min, quantile_start=args.quantile_start,
        spread_kinks=args.spread_kinks,
        baseline=not args.no_baseline,
        floors=not args.no_floor, floor_file=args.floor_file,
        recompute_floors=args.recompute_floors,
        figures=not args.no_figures, storage=args.storage, device=args.device,
        jobs=args.jobs, population=args.population, retry_failed=args.retry_failed,
        remake_models=args.remake_models)


def parse(argv=None):
    """(parser, its arguments) of a command line: with --quick, QUICK's
    settings in place of the defaults (the options given still win)."""
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.quick:
        parser.set_defaults(**QUICK)
        args = parser.parse_args(argv)
    return parser, args


def parse_args(argv=None):
    """The SweepConfig of a command line (not yet checked: see `check`)."""
    return from_args(parse(argv)[1])


def check(p, cfg, report_only=False):
    """Validate `cfg` before any work or writing, and open its study (made
    unless `report_only`): the study, or exit 2 with one line (p.error)."""
    for message in cfg.problems()[:1]:
        p.error(message)
    cli.check_memory(p, cfg.memory_needed(report_only), cli.get_device(p, cfg.device),
                     '--hidden, -k, --train-points, --val-points, --test-points, '
                     '--batchsize, --jobs or --population')
    if cfg.floors:
        if os.path.isdir(cfg.floor_path):
            p.error('{} is a directory, not a file of floors: choose another --floor-file'
                    .format(cfg.floor_path))
        if cfg.floor_file:
            cli.check_out(p, os.path.dirname(cfg.floor_file) or '.', '--floor-file')
    return cli.open_study(p, cfg.out, FIELDS, functools.partial(
        open_study, cfg, create=not report_only))


def open_study(cfg, create=True):
    """cfg's study, made in its storage (and `out` made) if `create`; else
    storage.NoStudy if there is none. StorageError if it cannot be used."""
    url = storage.storage_url(cfg.url)
    if create:
        os.makedirs(cfg.out, exist_ok=True)
    return storage.open_study(storage.connect(url, existing=not create), STUDY, META,
                              create=create)


def finished(cfg, study=None):
    """The keys of cfg's grid whose runs are done (finished or failed), asked
    of its storage (`study`, or cfg's opened without making anything); an
    empty set if the storage holds no study yet."""
    if study is None:
        try:
            study = open_study(cfg, create=False)
        except storage.NoStudy:
            return set()
    return {key(p) for p in grid(cfg)}.intersection(sweep.outcomes(study))


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
    if point['model'] == 'least_squares':
        return nets.LeastSquares(hidden=point['hidden'],
                                 activation=point['activation'], rng=rng)
    sigma_min = point.get('sigma_min')
    return mdn.MDN(hidden=point['hidden'], k=point['k'],
                   activation=point['activation'], rng=rng,
                   ln_var_min=None if sigma_min is None else 2 * math.log(sigma_min))


def _start(point):
    """A point's data, the Standardizer of its training split, the splits
    standardised, and its model as it starts training."""
    data = splits(point)
    scaler = preprocess.Standardizer(*data['train'])
    std = {s: (scaler.inputs(x), scaler.targets(y)) for s, (x, y) in data.items()}
    init = [point['seed'], zlib.crc32(point['dataset'].encode()), point['k']]
    rng = np.random.default_rng(np.random.SeedSequence(init))
    model = build_model(point, rng)
    if point.get('spread_components') and point['model'] == 'mdn':
        model.spread_components(std['train'][1])
    if point.get('spread_kinks'):
        model.spread_kinks(std['train'][0], rng)
    return data, scaler, std, model


def _schedule(point):
    """The training options of a point, as fit and fit_population take them."""
    return dict(epochs=point['epochs'], batchsize=point['batchsize'], lr=point['lr'],
                lr_final=point['lr_final'], eval_every=point['eval_every'],
                quantile_start=point.get('quantile_start', 0)
                if point['model'] == 'mdn' else 0)


def run_task(point, cfg):
    """Train one point (as stored in cfg's study) on cfg.device, save its
    model and score it: (test NLL or MSE, the CSV row)."""
    point = current(point)
    device = chainer.get_device(cfg.device)
    device.use()
    data, scaler, std, model = _start(point)
    with np.errstate(over='ignore', invalid='ignore'):  # a divergence is reported
        info = train_custom_loop.fit(model, *std['train'], *std['val'], seed=point['seed'],
                                     device=device, **_schedule(point))
    return _score(cfg, point, model, data, scaler, info, device)


def group(point):
    """Which points (as stored) may train together in one population
    (`run_together`): MDNs of one config, which fixes their architecture and
    training, and one K (a population computes every member at its largest
    K); each least-squares baseline trains alone."""
    point = current(point)
    return (('mdn', point['config'], point['k']) if point['model'] == 'mdn'
            else key(point))


def run_together(points, cfg):
    """Train MDN points of one `group` (as stored in cfg's study) on
    cfg.device as one toy.population.Population, each member as run_task
    trains it alone (its own data, Standardizer, initial weights and order),
    then save and score each as run_task does: a list, one per point, of
    (test NLL, the CSV row) or the exception that failed it (a member that
    diverged fails alone)."""
    points = [current(p) for p in points]
    groups = {group(p) for p in points}
    if len(groups) != 1:
        raise ValueError('points of {} groups cannot train together'.format(len(groups)))
    device = chainer.get_device(cfg.device)
    device.use()
    started = [_start(p) for p in points]
    members = population.Population.from_models([model for *_, model in started])
    xs, ys, xs_val, ys_val = ([std[split][i] for _, _, std, _ in started]
                              for split in ('train', 'val') for i in (0, 1))
    with np.errstate(over='ignore', invalid='ignore'):  # a divergence is reported
        result = population.fit_population(
            members, xs, ys, xs_val, ys_val, seeds=[p['seed'] for p in points],
            device=device, **_schedule(points[0]))
    outcomes = []
    for r, (point, (data, scaler, _, _)) in enumerate(zip(points, started)):
        info = result['members'][r]
        try:
            if info['failed']:
                raise train_custom_loop.Diverged(info['failed'])
            # The population's training time, shared out among its members.
            outcomes.append(_score(cfg, point, members.member(r), data, scaler, dict(
                info, epochs=result['epochs'], seconds=result['seconds'] / len(points)),
                device))
        except Exception as e:  # this member's failure, not the others'
            outcomes.append(e)
    return outcomes


def _score(cfg, point, model, data, scaler, info, device):
    """Save a point's trained model (on `device`, the one it was trained
    on) and score it: (test NLL or MSE, the CSV row). info: fit's dict."""
    mdn_run = point['model'] == 'mdn'
    if mdn_run:
        # On the device it was selected on: the value of the selection.
        with np.errstate(over='ignore', invalid='ignore'):
            val_nll = train_custom_loop.heldout_nll(model, *data['val'], scaler)
    model.to_device('@numpy')
    checkpoint.save(model_path(cfg, point), model, scaler)
    row = dict({k: point[k] for k in KEY}, train_seconds='{:.2f}'.format(
        info['seconds']), epochs=info['epochs'], iterations=info['iterations'],
        best_epoch=info['best_epoch'], device=str(device))
    x_test, y_test = data['test']
    if mdn_run:
        logits, mu, _ = model.mixture(scaler.inputs(x_test))
        mean = mixture.mixture_mean(logits, mu)
    else:
        with chainer.no_backprop_mode():
            mean = model.forward(scaler.inputs(x_test)).array
    with np.errstate(over='ignore', invalid='ignore'):  # a non-finite one is refused
        mse = float(np.mean((scaler.untarget(mean) - y_test) ** 2))
    row['mse'] = '{:.6g}'.format(mse)
    value = mse
    if mdn_run:
        value = nll = train_custom_loop.heldout_nll(model, x_test, y_test, scaler)
        bayes, gaussian = datasets.limits(point['dataset'], point['direction'])
        row.update({k: '{:.6f}'.format(v) for k, v in (
            ('nll', nll), ('bayes_limit', bayes), ('gap_bayes', nll - bayes),
            ('gaussian_limit', gaussian), ('gap_gaussian', nll - gaussian),
            ('val_nll', val_nll))})
    # A row that export would refuse (a non-finite score: NLL finite, MSE
    # inf after a blow-up) is a failed run, not a finished one.
    sweep_summary.parse(row)
    return value, row


def remake(cfg, point):
    """Train `point` again for its model file, and say on one line how its
    score compares with the stored run's: training is deterministic on one
    machine, but another CPU's rounding can end it in another optimum."""
    value, _ = run_task(point, cfg)
    trial = sweep.outcomes(open_study(cfg, create=False)).get(key(point))
    stored = 'none stored' if trial is None or trial.value is None else \
        'the stored run\'s {:.6f}'.format(trial.value)
    print('remade {} for the figures: score {:.6f}, {}'.format(
        model_path(cfg, point), value, stored), file=sys.stderr)


def test_bayes(cfg, rows):
    """{(dataset, seed): the Bayes NLL of its test points} for the rows'
    problems and seeds: the mean of -log p(target | input) under the true
    density, the reference of each run's gap (sweep_summary.gaps)."""
    found = {}
    for name, seed in {(r['dataset'], r['seed']) for r in rows}:
        x, y = splits(dict(grid(cfg)[0], dataset=name, seed=seed))['test']
        found[name, seed] = -float(np.mean(datasets.conditional_log_density(
            name, x[:, 0], y[:, 0], direction=cfg.direction)))
    return found


def seed0(cfg, name, model, k, x):
    """The seed-0 model's output at x (N, 1) in original units: its mixture
    (logits, mu, ln_var) or least-squares fit; None, with a warning, if its
    file cannot be used. With cfg.remake_models a missing file is trained
    again first (`remake`)."""
    if model == 'least_squares' and not cfg.baseline:
        return None
    point = dict(grid(cfg)[0], dataset=name, model=model, k=k, seed=0)
    if cfg.remake_models and not os.path.exists(model_path(cfg, point)):
        remake(cfg, point)
    net = build_model(point)
    try:
        scaler = checkpoint.load(model_path(cfg, point), net)
    except ValueError as e:
        print('warning: figure without this model: {}'.format(e), file=sys.stderr)
        return None
    if model == 'least_squares':
        with chainer.no_backprop_mode():
            return scaler.untarget(net.forward(scaler.inputs(x)).array)
    logits, mu, ln_var = net.mixture(scaler.inputs(x))
    return (logits,) + mixture.in_units(mu, ln_var, scaler)


def draw(cfg, rows, floor_of, bayes_of):
    """nll_vs_k.png, and per problem the figures of its seed-0 models (gaps
    to the Bayes NLL of each run's test points: bayes_of, see `test_bayes`)."""
    problems = []
    for name in cfg.dataset:
        ks = [k for k in cfg.k if len(sweep_summary.select(rows, name, k))]
        if ks:
            problems.append(sweep_figures.SweptProblem(
                name, cfg.direction, ks, [sweep_summary.select(rows, name, k) for k in ks],
                [sweep_summary.gaps(rows, name, k, bayes_of) for k in ks],
                [floor_of[name, k] for k in ks] if floor_of else None,
                sweep_summary.best_k(rows, name, ks), functools.partial(seed0, cfg, name),
                splits(dict(grid(cfg)[0], dataset=name), seed=0)['train']))
    sweep_figures.sweep_figures(cfg.out, problems)


def held(study, cfg):
    """What the study holds, for a message: per configuration of its finished
    runs, its fingerprint, how many, of which problems and K, and the options
    that would select it instead of cfg's."""
    mine, configs = config(cfg), {}
    for trial in sweep.outcomes(study).values():
        point = trial.user_attrs.get('point')
        if isinstance(point, dict):
            configs.setdefault(str(point.get('config')), []).append(point)
    phrases = []
    for name, points in sorted(configs.items()):
        options = []
        for k in CONFIG_KEYS + OPTIONAL_CONFIG:
            value = points[0].get(k)
            flag = '--' + RECORDED_OPTION.get(k, k).replace('_', '-')
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


def run(cfg, study):
    """Train the points of cfg's grid that its study lacks: 0 when all are
    done, else sweep.run's exit status."""
    # The workers are the parallelism: one BLAS thread each, this process's
    # own included (--jobs 1 trains here). Two commands on one machine with
    # a thread per core each ran hardly faster than one (scale-out: 1.09x).
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    with threadpool_limits(limits=int(os.environ['OMP_NUM_THREADS'])):
        return sweep.run(storage.storage_url(cfg.url), study, grid(cfg), key,
                         functools.partial(run_task, cfg=cfg), cfg.jobs, cfg.retry_failed,
                         cfg.population, functools.partial(run_together, cfg=cfg), group)


def export(cfg, study):
    """Export cfg's study (every run in it) to results.csv: (rows, failed) of
    cfg's grid, in its order: the finished rows parsed, and (key, reason)
    of the failed runs."""
    os.makedirs(cfg.out, exist_ok=True)  # --storage elsewhere: nothing made yet
    rows, failed = sweep_table.export(study, cfg.results_path, FIELDS, sweep_summary.parse,
                                current)
    points = grid(cfg)
    return ([rows[key(p)] for p in points if key(p) in rows],
            [(key(p), failed[key(p)]) for p in points if key(p) in failed])


def report(cfg, study):
    """`export`, then summary.md and (if cfg.figures) the figures of cfg's
    grid: returns export's (rows, failed)."""
    rows, failed = export(cfg, study)
    floor_of, bayes_of = summarize(cfg, rows, failed)
    if cfg.figures:
        draw(cfg, rows, floor_of, bayes_of)
    return rows, failed


def summarize(cfg, rows, failed):
    """summary.md of cfg's rows and failed runs (as `export` returns them):
    returns the floors and the test points' Bayes NLLs it used."""
    floor_of, bayes_of = sweep_summary.floors(cfg), test_bayes(cfg, rows)
    sweep_summary.write_summary(cfg, rows, failed, floor_of, 'Config `{}`: {}'.format(
        config_id(cfg), ', '.join('{}={}'.format(k, v) for k, v in config(cfg).items())),
        bayes_of)
    return floor_of, bayes_of


def main(argv=None):
    start = time.time()
    parser, args = parse(argv)
    cfg = from_args(args)
    study = check(parser, cfg, args.report_only)
    before = len(finished(cfg, study))
    if args.report_only:
        if not finished(cfg, study):
            parser.error(
                "--report-only: nothing to report: the study in {} has no finished run of "
                "this command's grid (config {}, {} {}, K {}); it holds {}".format(
                    storage.shown(storage.storage_url(cfg.url)), config_id(cfg),
                    ' '.join(cfg.dataset), cfg.direction, ' '.join(map(str, cfg.k)),
                    held(study, cfg)))
    else:
        status = run(cfg, study)
        if status:
            return status
    rows, failed = report(cfg, study)
    trained = len(finished(cfg, study)) - before
    if trained:
        files.write_json(os.path.join(cfg.out, sweep_summary.WALL_TIME), sweep_summary.wall_times(
            cfg.out, sweep_summary.RECORD) + [dict(
                seconds=round(time.time() - start), trained=trained, runs=len(grid(cfg)),
                jobs=cfg.jobs, device=cfg.device, population=cfg.population)])
        summarize(cfg, rows, failed)  # with this invocation's time
    print('{} of {} runs done, {} failed: results.csv, summary.md{} in {}'.format(
        len(rows), len(grid(cfg)), len(failed), ', figures' if cfg.figures else '',
        cfg.out))
    return 0


if __name__ == '__main__':
    sys.exit(main())
