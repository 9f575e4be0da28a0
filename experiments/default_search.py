"""Choose the mixture-count sweep's default training: accuracy against cost.

Each candidate training (CANDIDATES) is trained as a sweep of its own (a
SweepConfig in OUT/NAME, so its workers, storage, resume and --device apply)
at the mixture counts PROBE_K of the three inverse problems, over --runs
seeds, against the default sweep's K-floors. OUT/summary.md is the table the
default (experiments.sweep_config.SweepConfig) was chosen on: per candidate,
the wall seconds of a run, the default grid's projected wall time with two
workers, and the network's share (the mean gap to the K-floor) per problem
and K.

    python -m experiments.default_search                     # every candidate
    python -m experiments.default_search --candidates relu128-b256
    python -m experiments.default_search --report-only       # redraw the table
"""
import functools
import os
import sys

import numpy as np

import toy  # noqa: F401  (patches NumPy/Python for chainer before it is imported)
from toy import cli, datasets, files, storage, sweep
from experiments import sweep_mixtures
from experiments.sweep_config import FLOOR_FILE, SweepConfig, config, grid, key
from experiments.sweep_summary import SHARE, floors, gaps

#: The wall time the default sweep must fit in, minutes, with WORKERS workers.
BUDGET, WORKERS = 30, 2
#: Where small K sticks (a dead component), where it is mid-way, and the
#: largest K: the network's share is worst at one of these.
PROBE_K = [2, 6, 24]
#: What every candidate shares unless it says otherwise: ReLU, components
#: spread, 200,000 points validated every epoch, Adam's step decaying from
#: 3e-3 to 3e-5, no quantile start.
BASE = dict(activation='relu', spread_components=True, train_points=200000,
            val_points=5000, test_points=10000, eval_every=1, lr=3e-3, lr_final=3e-5,
            quantile_start=0)
#: name: (what it is, its settings over BASE); the table keeps this order.
#: The first four were trained one run at a time, before populations.
CANDIDATES = {
    'relu128-b1024': ('3 x 128, 30 epochs of batch 1024',
                      dict(hidden=[128] * 3, epoch=30, batchsize=1024, population=1)),
    'relu128-b256': ('3 x 128, 15 epochs of batch 256',
                     dict(hidden=[128] * 3, epoch=15, batchsize=256, population=1)),
    'relu64-b1024': ('3 x 64, 60 epochs of batch 1024',
                     dict(hidden=[64] * 3, epoch=60, batchsize=1024, population=1)),
    'relu64-b256': ('3 x 64, 20 epochs of batch 256',
                    dict(hidden=[64] * 3, epoch=20, batchsize=256, population=1)),
    'relu64-b256-qs': ('3 x 64, 20 epochs of batch 256, the first 2 a quantile start',
                       dict(hidden=[64] * 3, epoch=20, batchsize=256, quantile_start=2)),
    'relu128-b256-qs': ('3 x 128, 15 epochs of batch 256, the first 2 a quantile start',
                        dict(hidden=[128] * 3, epoch=15, batchsize=256, quantile_start=2)),
    'relu64-e40-qs': ('3 x 64, 40 epochs of batch 256, the first 2 a quantile start',
                      dict(hidden=[64] * 3, epoch=40, batchsize=256, quantile_start=2)),
    # The default's Adam steps on five times the points: is the share the
    # network's fit to too few points (it would fall) or its training?
    'relu64-1m-e4-qs': ('3 x 64, 4 epochs of 1,000,000 points in batches of 256, the '
                        'first a quantile start',
                        dict(hidden=[64] * 3, epoch=4, batchsize=256,
                             train_points=1000000, quantile_start=1)),
    'relu64-qs8': ('3 x 64, 20 epochs of batch 256, the first 8 a quantile start',
                   dict(hidden=[64] * 3, epoch=20, batchsize=256, quantile_start=8)),
    'relu64-lr1e-2-qs': ('3 x 64, 20 epochs of batch 256, step size 0.01 decaying to '
                         '1e-4, the first 2 a quantile start',
                         dict(hidden=[64] * 3, epoch=20, batchsize=256, lr=1e-2,
                              lr_final=1e-4, quantile_start=2)),
    'relu64-kinks-qs': ('3 x 64, 20 epochs of batch 256, the first 2 a quantile start, '
                        'the first layer bending at training inputs (`--spread-kinks`)',
                        dict(hidden=[64] * 3, epoch=20, batchsize=256, quantile_start=2,
                             spread_kinks=True)),
}


def make_parser():
    p = cli.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--candidates', nargs='+', choices=list(CANDIDATES),
                   default=list(CANDIDATES), help='which candidates to train')
    cli.add_training_arguments(p, runs=2, out=os.path.join('results', 'sweep', 'search'))
    p.add_argument('--floor-file', metavar='PATH',
                   default=os.path.join('results', 'sweep', FLOOR_FILE),
                   help='the K-floors (the default sweep\'s, computed if missing)')
    cli.add_sweep_arguments(p)
    return p


def candidate_config(args, name):
    return SweepConfig(
        out=os.path.join(args.out, name), k=list(PROBE_K), runs=args.runs,
        baseline=False, figures=False, floor_file=args.floor_file,
        storage=args.storage, device=args.device, jobs=args.jobs,
        retry_failed=args.retry_failed, **dict(BASE, **CANDIDATES[name][1]))


def default_grid_runs():
    """Runs in the default sweep's grid (its MDNs and baselines)."""
    return len(grid(SweepConfig()))


def measure(cfg):
    """(wall seconds of a run, mean Adam steps of a run, {(problem, K): the
    network's shares over seeds}) of a candidate's finished runs; None if it
    has none. A run's wall time is the candidate's, from its first run's
    start to its last run's end (data, training, scoring), times the
    WORKERS that trained it, over its runs: members of a population share
    their population's time, and a worker left idle at the end counts."""
    try:
        study = sweep_mixtures.open_study(cfg, create=False)
    except storage.NoStudy:
        return None
    rows, _ = sweep_mixtures.export(cfg, study)
    if not rows:
        return None
    trials = sweep.outcomes(study)
    done = [t for t in (trials[key(p)] for p in grid(cfg) if key(p) in trials)
            if t.datetime_complete and t.datetime_start]
    span = max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)
    floor_of, bayes_of = floors(cfg), sweep_mixtures.test_bayes(cfg, rows)
    shares = {(name, k): gaps(rows, name, k, bayes_of) - floor_of[name, k]
              for name in cfg.dataset for k in cfg.k
              if len(gaps(rows, name, k, bayes_of))}
    return (span.total_seconds() * WORKERS / len(done),
            float(np.mean([int(r['iterations']) for r in rows])), shares)


def is_default(cfg):
    """Whether a candidate trains as the default sweep does."""
    return config(cfg) == config(SweepConfig())


def write_summary(args, table):
    """OUT/summary.md from table: {name: (SweepConfig, measure(it))}."""
    n = default_grid_runs()
    lines = ['# The default sweep\'s training: accuracy against cost', '',
             'Each candidate trained at K = {ks} on the three inverse problems over '
             'seeds 0 .. {last}; the network\'s share is a run\'s held-out NLL above the '
             'Bayes NLL of its test points, less the K-floor (the best any K-component '
             'mixture does), mean over seeds. A run\'s time is the candidate\'s wall '
             'time, from its first run\'s start to its last run\'s end (data, '
             'training, scoring), times its {workers} workers, over its runs; "at once" '
             'is its `--population`, the runs of one K a worker trains together. The '
             'projection is that time times the {n} runs of the default grid, over '
             '{workers} workers. Goal: a share of at most {share} nats at every K, in at '
             'most {budget} minutes. Every candidate, unless its row says otherwise: '
             '`{base}`. Made by `python -m '
             'experiments.default_search`.'.format(
                 ks=', '.join(map(str, PROBE_K)), last=args.runs - 1, n=n, workers=WORKERS,
                 share=SHARE, budget=BUDGET, base=' '.join(
                     '--{} {}'.format(o.replace('_', '-'), v) if v is not True
                     else '--' + o.replace('_', '-') for o, v in BASE.items())), '']
    head = ['candidate', 'at once', 'Adam steps', 'run, s', 'default sweep, min'] + [
        '{} K = {}'.format(name, k) for name in datasets.NAMES for k in PROBE_K] + ['worst']
    cells = []
    for name, (cfg, (seconds, steps, shares)) in table.items():
        minutes = seconds * n / WORKERS / 60
        means = [shares[name_k].mean() if name_k in shares else np.nan
                 for name_k in ((p, k) for p in datasets.NAMES for k in PROBE_K)]
        worst = np.nanmax(means)
        cells.append(['{}{}'.format(CANDIDATES[name][0], ' (the default)'
                                    if is_default(cfg) else ''), str(cfg.population),
                      '{:,.0f}'.format(steps), '{:.0f}'.format(seconds),
                      '{:.0f}{}'.format(minutes, ' ✓' if minutes <= BUDGET else '')]
                     + ['–' if np.isnan(m) else '{:+.3f}'.format(m) for m in means]
                     + ['{:+.3f}{}'.format(worst, ' ✓' if worst <= SHARE else '')])
    lines += files.markdown_table(head, cells, 'l' + 'r' * (len(head) - 1))
    with files.atomic_write(os.path.join(args.out, 'summary.md')) as f:
        f.write('\n'.join(lines) + '\n')


def main(argv=None):
    p = make_parser()
    args = p.parse_args(argv)
    cli.get_device(p, args.device)
    cli.check_out(p, args.out)
    configs = {name: candidate_config(args, name) for name in CANDIDATES}
    for name in args.candidates:
        for message in configs[name].problems()[:1]:
            p.error('candidate {}: {}'.format(name, message))
    if not args.report_only:
        for name in args.candidates:
            cfg = configs[name]
            study = cli.open_study(p, cfg.out, sweep_mixtures.FIELDS, functools.partial(
                sweep_mixtures.open_study, cfg))
            status = sweep_mixtures.run(cfg, study)
            if status:
                return status
    table = {name: (cfg, found) for name, cfg in configs.items()
             for found in [measure(cfg)] if found}
    if not table:
        p.error('--report-only: no candidate has finished runs in {}: train first'
                .format(args.out))
    write_summary(args, table)
    print('table: {}'.format(os.path.join(args.out, 'summary.md')))
    return 0


if __name__ == '__main__':
    sys.exit(main())
