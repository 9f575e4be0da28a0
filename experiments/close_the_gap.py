"""How close to the Bayes limit the MDN gets, and what the network costs.

A ladder of networks and starts, each trained alike on the three inverse
problems with K = 12 or 24 components (whose mixture floors are about 0.02
and 0.01 nats), over --seeds seeds, by the mixture-count sweep
(experiments/sweep_mixtures.py, so its workers, storage, resume and --gpu 0
apply). Each rung is a sweep of its own in OUT/NAME (results.csv, summary.md
with the K-floor split, figures); OUT/summary.md then puts every rung that
has runs side by side: held-out NLL, its gap to the Bayes limit and to the
K-mixture floor, and the training time; OUT/gap.png draws those gaps per rung
and seed.

    python experiments/close_the_gap.py --rungs spread24-long  # the best
    python experiments/close_the_gap.py                        # every rung
    python experiments/close_the_gap.py --rungs spread24-long --gpu 0
    python experiments/close_the_gap.py --report-only    # redraw table and figure
"""
import csv
import json
import os
import sys
import time
import zlib

import numpy as np
from scipy.special import log_softmax, logsumexp
from tqdm import tqdm

import toy  # noqa: F401  (patches NumPy/Python for chainer before it is imported)
from toy import cli, datasets, files, plots, sweep

# Imported by its name, so that the sweep's worker processes find its
# objective (spawn starts them with this sys.path).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sweep_mixtures  # noqa: E402

WALL_TIME = 'wall_time.json'
#: The goal: within this many nats of the Bayes limit.
TARGET = 0.05
#: Fresh pairs per problem behind excess_by_input.png.
PAIRS = 100000
#: Every rung trains alike unless it says otherwise: 200,000 fixed training
#: points, 30 epochs of batches of 1,024 (5,880 Adam steps), the step size
#: decaying geometrically from 3e-3 to 3e-5.
TRAINING = ['--train-points', '200000', '--val-points', '5000',
            '--test-points', '10000', '--epochs', '30', '--batchsize', '1024',
            '--lr', '3e-3', '--lr-final', '3e-5', '--eval-every', '1']
RELU128 = ['--hidden', '128', '128', '128', '--activation', 'relu']
#: name: (what it is, K, its sweep options); the table keeps this order.
RUNGS = {
    'small': ('1 layer of 32 tanh (the sweep\'s default net)', 12,
              ['--hidden', '32', '--activation', 'tanh']),
    'relu128': ('3 layers of 128 ReLU', 12, RELU128),
    'relu256': ('3 layers of 256 ReLU', 12, ['--hidden', '256', '256', '256',
                                             '--activation', 'relu']),
    'relu128-k24': ('3 layers of 128 ReLU', 24, RELU128),
    'spread12': ('3 layers of 128 ReLU, components spread', 12,
                 RELU128 + ['--spread-components']),
    'spread24': ('3 layers of 128 ReLU, components spread', 24,
                 RELU128 + ['--spread-components']),
    'spread24-long': ('3 layers of 128 ReLU, components spread, 60 epochs', 24,
                      RELU128 + ['--spread-components', '--epochs', '60']),
}


def parse_args(argv=None):
    p = cli.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--rungs', nargs='+', choices=sorted(RUNGS), default=list(RUNGS),
                   help='which rungs to train (default: all, in the table\'s order)')
    p.add_argument('--seeds', type=cli.positive, default=3,
                   help='seeds per problem and network (%(default)s)')
    p.add_argument('--jobs', '-j', type=cli.positive, default=min(2, os.cpu_count() or 1),
                   help='worker processes on this machine (%(default)s)')
    cli.add_device_arguments(p)
    p.add_argument('--out', '-o', default=os.path.join('results', 'gap'),
                   help='output folder (default: %(default)s)')
    p.add_argument('--report-only', action='store_true',
                   help='write the table and gap.png from the rungs\' storage; '
                        'train nothing')
    p.add_argument('--no-figures', action='store_true',
                   help='skip the sweeps\' figures')
    args = p.parse_args(argv)
    args.rungs = [r for r in RUNGS if r in args.rungs]
    cli.get_device(p, args.device)
    cli.check_out(p, args.out)
    if args.report_only and not any(has_runs(args, rung) for rung in RUNGS):
        p.error('--report-only: {} holds no rung\'s runs (no RUNG/study.db for any '
                'of {}): give the --out of an earlier run, or train first'.format(
                    args.out, ', '.join(RUNGS)))
    return args


def sweep_argv(args, rung):
    # One file of floors for every rung: they depend on the problem and K only.
    return TRAINING + RUNGS[rung][2] + [
        '--mixtures', str(RUNGS[rung][1]), '--seeds', str(args.seeds),
        '--jobs', str(args.jobs), '--device', args.device,
        '--out', os.path.join(args.out, rung), '--no-baseline',
        '--floor-file', os.path.join(args.out, sweep_mixtures.FLOOR_FILE)]


def has_runs(args, rung):
    return os.path.isfile(os.path.join(args.out, rung, 'study.db'))


def results(args, rung):
    """{dataset: (held-out NLLs over seeds, train seconds over seeds)} of a
    rung's finished runs, and {dataset: its K-floor}."""
    swept = sweep_mixtures.parse_args(sweep_argv(args, rung) + ['--report-only'])
    points = [p for p in sweep_mixtures.grid(swept) if p['model'] == 'mdn']
    rows, _ = sweep.export(swept.study, os.path.join(swept.out, 'results.csv'),
                           sweep_mixtures.FIELDS, sweep_mixtures.parse)
    found = {}
    for name in datasets.NAMES:
        done = [rows[sweep_mixtures.key(p)] for p in points if p['dataset'] == name
                and sweep_mixtures.key(p) in rows]
        found[name] = (np.array([r['nll'] for r in done]),
                       np.array([r['train_seconds'] for r in done]))
    floor = sweep_mixtures.floors(swept)
    return found, {name: floor[name, RUNGS[rung][1]] for name in datasets.NAMES}


def write_summary(args, table):
    """OUT/summary.md from table: {rung: results(args, rung)} of the rungs
    with runs."""
    lines = ['# Closing the gap to the Bayes limit', '',
             'Held-out NLL on 10,000 test points in nats per point, mean ± std over '
             'seeds; gaps in nats above the Bayes limit and above the K-component '
             'mixture floor (the best any K-component mixture can do: the network\'s '
             'share). Target: within {} of the Bayes limit and 0.03 of the floor. '
             '"Components spread": `--spread-components` (`MDN.spread_components`); '
             'the others start from the random head. Training, alike for every rung '
             'unless its name says otherwise: '
             '`{}`. Made by `python experiments/close_the_gap.py`; the gaps are drawn '
             'in [gap.png](gap.png).'.format(TARGET, ' '.join(TRAINING)), '',
             '| network | K | problem | runs | held-out NLL | gap to Bayes | K-floor | '
             'gap to K-floor | train s per run |',
             '|---|---:|---|---:|---:|---:|---:|---:|---:|']
    for rung, (found, floor) in table.items():
        for name in datasets.NAMES:
            nll, sec = found[name]
            if not len(nll):
                continue
            bayes = datasets.limits(name)[0]
            gap = nll.mean() - bayes
            lines.append('| {} | {} | {} | {} | {} | {:+.4f}{} | {:.4f} | '
                         '{:+.4f}{} | {:.0f} |'.format(
                             RUNGS[rung][0], RUNGS[rung][1], name, len(nll),
                             sweep_mixtures.mean_spread(nll, 'seed'), gap, ' ✓' if gap <= TARGET else '',
                             floor[name], gap - floor[name],
                             ' ✓' if gap - floor[name] <= 0.03 else '', sec.mean()))
    lines += ['', 'Wall time of each invocation (all three problems):', '']
    lines += ['- {}: {:.0f} min, {} seed(s), {} worker(s) on device {}'.format(
        ', '.join(w['rungs']), w['seconds'] / 60, w['seeds'], w['jobs'], w['device'])
        for w in wall_times(args)]
    with files.atomic_write(os.path.join(args.out, 'summary.md')) as f:
        f.write('\n'.join(lines) + '\n')


def gap_rows(table):
    """The rows of gap.png from table (as for write_summary), in its order:
    (label, {problem: (gaps to the Bayes limit over seeds, K-floor)}), the
    problems without runs left out."""
    return [('{} (K = {})'.format(rung, RUNGS[rung][1]),
             {name: (found[name][0] - datasets.limits(name)[0], floor[name])
              for name in datasets.NAMES if len(found[name][0])})
            for rung, (found, floor) in table.items()]


def gap_figure(path, table):
    """OUT/gap.png from table (as for write_summary): per problem, each rung's
    gaps to the Bayes limit over seeds and its K-floor."""
    rows = gap_rows(table)
    fig, axes = plots.subplots(1, len(datasets.NAMES), width=4.4,
                               height=2.0 + 0.42 * len(rows))
    legend = plots.gap_to_limits(axes[0], datasets.NAMES, rows, target=TARGET)
    fig.legend(*legend, loc='lower center', ncol=3, fontsize=8)
    fig.suptitle(plots.wrap('Held-out NLL above the Bayes limit per rung: each seed, '
                            'their mean, and the K-mixture floor (the best any '
                            'K-component mixture can do)',
                            fig.get_figwidth(), 'figure.titlesize'))
    # Two lines of legend, about half an inch, below the panels.
    plots.save(fig, path, rect=(0, 0.55 / fig.get_figheight(), 1, 1))


def excess_by_input(args, rung, n=PAIRS, bins=20):
    """Where the network loses, from a rung's seed-0 models: OUT/RUNG/
    excess_by_input.csv and .png. Per problem, the inputs of n fresh pairs cut
    into `bins` bins of equal probability; in each, the mean of log p(y|x) -
    log q(y|x) (the model's KL from the true p(y|x) there) beside the
    K-mixture floor at the bin's median input. Problems whose model file is
    missing are left out; nothing is written without one. False, and nothing
    done, if the rung has no folder of models at all (they are not committed)."""
    k = RUNGS[rung][1]
    swept = sweep_mixtures.parse_args(sweep_argv(args, rung) + ['--report-only'])
    models = os.path.dirname(sweep_mixtures.model_path(
        swept.out, sweep_mixtures.grid(swept)[0]))
    if not os.path.isdir(models):
        return False
    panels, lines = [], []
    # About a minute per problem, most of it the K-floor at each bin.
    for name in tqdm(datasets.NAMES, desc='excess_by_input, ' + rung, unit='problem',
                     dynamic_ncols=True):
        x, y = datasets.generate(name, n, np.random.default_rng(zlib.crc32(name.encode())))
        mixture = sweep_mixtures.seed0(swept, name, 'mdn', k, x)
        if mixture is None:
            continue
        logits, mu, ln_var = (np.asarray(a, dtype=np.float64) for a in mixture)
        log_normal = -0.5 * (np.log(2 * np.pi) + ln_var
                             + (y[:, None, :] - mu) ** 2 / np.exp(ln_var)).sum(-1)
        log_q = logsumexp(log_softmax(logits, axis=1) + log_normal, axis=1)
        excess = datasets.conditional_log_density(name, x[:, 0], y[:, 0]) - log_q
        edges = np.quantile(x[:, 0], np.linspace(0, 1, bins + 1))
        which = np.clip(np.searchsorted(edges, x[:, 0], side='right') - 1, 0, bins - 1)
        middle = np.array([np.median(x[which == b, 0]) for b in range(bins)])
        mean = np.array([excess[which == b].mean() for b in range(bins)])
        floor = datasets.mixture_floor_at(name, k, middle)[1]
        panels.append((name, middle, mean, floor, excess.mean()))
        # Six digits for the inputs: a floor can jump where the support changes.
        lines += [[name, '{:.6f}'.format(lo), '{:.6f}'.format(hi), '{:.6f}'.format(m),
                   '{:.4f}'.format(e), '{:.4f}'.format(f)]
                  for lo, hi, m, e, f in zip(edges[:-1], edges[1:], middle, mean, floor)]
    if not panels:
        return True
    with files.atomic_write(os.path.join(swept.out, 'excess_by_input.csv')) as f:
        writer = csv.writer(f, lineterminator='\n')
        writer.writerow(['dataset', 'x_from', 'x_to', 'x_median', 'excess', 'k_floor'])
        writer.writerows(lines)
    plots.excess_by_input(os.path.join(swept.out, 'excess_by_input.png'),
                          '{}, K = {}, seed 0'.format(RUNGS[rung][0], k), panels)
    return True


def wall_times(args):
    """The invocations' records in OUT/wall_time.json, oldest first: dicts of
    rungs, seconds, seeds, jobs, device ([] if none is readable)."""
    try:
        with open(os.path.join(args.out, WALL_TIME)) as f:
            wall = json.load(f)
    except (OSError, ValueError):
        return []
    # The first version kept one record, not a list.
    wall = wall if isinstance(wall, list) else [wall]
    keys = {'rungs', 'seconds', 'seeds', 'jobs', 'device'}
    return [w for w in wall if isinstance(w, dict) and keys <= set(w)]


def main(argv=None):
    args = parse_args(argv)
    if not args.report_only:
        start = time.time()
        for rung in args.rungs:
            status = sweep_mixtures.main(sweep_argv(args, rung) + (
                ['--no-figures'] if args.no_figures else []))
            if status:
                return status
        # A rerun of the same rungs replaces their record.
        files.write_json(os.path.join(args.out, WALL_TIME), [
            w for w in wall_times(args) if w['rungs'] != args.rungs] + [{
                'seconds': round(time.time() - start), 'rungs': args.rungs,
                'jobs': args.jobs, 'seeds': args.seeds, 'device': args.device}])
    table = {rung: results(args, rung) for rung in RUNGS if has_runs(args, rung)}
    write_summary(args, table)
    gap_figure(os.path.join(args.out, 'gap.png'), table)
    without_models = [rung for rung in args.rungs if has_runs(args, rung)
                      and not excess_by_input(args, rung, PAIRS)]
    if without_models:
        # A checkout has the runs' storage, not their models.
        print('excess_by_input not redrawn for {}: no models/ folder (models are not '
              'committed); the table is redrawn from the storage'.format(
                  ', '.join(without_models)), file=sys.stderr)
    print('table: {}, figure: {}'.format(os.path.join(args.out, 'summary.md'),
                                         os.path.join(args.out, 'gap.png')))
    return 0


if __name__ == '__main__':
    sys.exit(main())
