"""How close to the Bayes limit the MDN gets, and what the network costs.

A ladder of networks and starts (rungs), each trained alike on the three
inverse problems with K = 12 or 24 components (whose mixture floors are about
0.02 and 0.01 nats), over --runs seeds, as a mixture-count sweep of its own
(experiments.sweep_mixtures: a SweepConfig per rung, so its workers, storage,
resume and --device apply). Each rung's files are in OUT/RUNG (results.csv,
summary.md with the K-floor split, figures; its study.db unless --storage);
OUT/summary.md then puts every rung that has runs side by side: held-out NLL,
its gap to the Bayes limit and to the K-mixture floor, and the training time;
OUT/gap.png draws those gaps per rung and seed.

    python -m experiments.close_the_gap --rungs spread24-long  # the best
    python -m experiments.close_the_gap                        # every rung
    python -m experiments.close_the_gap --rungs spread24-long --device 0
    python -m experiments.close_the_gap --report-only    # redraw the tables and figure
    python -m experiments.close_the_gap --report-only --remake-models  # and the rest
"""
import csv
import functools
import os
import sys
import time
import zlib

import matplotlib.ticker
import numpy as np
from tqdm import tqdm

import toy  # noqa: F401  (patches NumPy/Python for chainer before it is imported)
from toy import cli, datasets, files, mixture, plots, storage
from toy.floor import mixture_floor_at
from experiments import sweep_figures, sweep_mixtures
from experiments.sweep_config import FLOOR_FILE, SweepConfig
from experiments.sweep_summary import WALL_TIME, floors, gaps, mean_spread, wall_times

#: The goal: within this many nats of the Bayes limit.
TARGET = 0.05
#: Fresh pairs per problem behind excess_by_input.png.
PAIRS = 100000
#: Every rung trains alike unless it says otherwise: 200,000 fixed training
#: points, 30 epochs of batches of 1,024 (5,880 Adam steps), the step size
#: decaying geometrically from 3e-3 to 3e-5, the components where the random
#: head puts them, no quantile start.
TRAINING = dict(train_points=200000, val_points=5000, test_points=10000, epoch=30,
                batchsize=1024, lr=3e-3, lr_final=3e-5, eval_every=1,
                spread_components=False, quantile_start=0)
RELU128 = dict(hidden=[128, 128, 128], activation='relu')
#: name: (what it is, K, its SweepConfig settings); the table keeps this order.
RUNGS = {
    'small': ('1 layer of 32 tanh (the sweep\'s first default net)', 12,
              dict(hidden=32, activation='tanh')),
    'relu128': ('3 layers of 128 ReLU', 12, RELU128),
    'relu256': ('3 layers of 256 ReLU', 12, dict(hidden=[256, 256, 256],
                                                 activation='relu')),
    'relu128-k24': ('3 layers of 128 ReLU', 24, RELU128),
    'spread12': ('3 layers of 128 ReLU, components spread', 12,
                 dict(RELU128, spread_components=True)),
    'spread24': ('3 layers of 128 ReLU, components spread', 24,
                 dict(RELU128, spread_components=True)),
    'spread24-long': ('3 layers of 128 ReLU, components spread, 60 epochs', 24,
                      dict(RELU128, spread_components=True, epoch=60)),
}
#: What a record of OUT/wall_time.json holds ('seeds': the count of runs,
#: as the first records name it).
RECORD = {'rungs', 'seconds', 'seeds', 'jobs', 'device'}
#: The options that, when given, override every rung's.
OVERRIDES = ('k', 'train_points', 'val_points', 'test_points', 'epoch', 'batchsize',
             'lr', 'lr_final')


def make_parser():
    p = cli.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--rungs', nargs='+', choices=sorted(RUNGS), default=list(RUNGS),
                   help='which rungs to train (all: in the table\'s order)')
    cli.add_training_arguments(p, runs=3, out=os.path.join('results', 'gap'),
                               **dict.fromkeys(OVERRIDES))
    for action in p._actions:
        if action.dest in OVERRIDES:
            action.help += '; unset: each rung\'s own'
    cli.add_sweep_arguments(p)
    p.add_argument('--no-figures', action='store_true',
                   help='skip the sweeps\' figures')
    return p


def parse_args(argv=None):
    """(args, {rung: its SweepConfig} of every rung), checked: exit 2 with
    one line if any rung's settings or storage cannot be used."""
    p = make_parser()
    args = p.parse_args(argv)
    args.rungs = [r for r in RUNGS if r in args.rungs]
    configs = {rung: rung_config(args, rung) for rung in RUNGS}
    cli.get_device(p, args.device)
    cli.check_out(p, args.out)
    for rung in args.rungs:
        for message in configs[rung].problems()[:1]:
            p.error('rung {}: {}'.format(rung, message))
    # Every rung's storage is checked (and its study made) before any trains.
    args.studies = {} if args.report_only else {
        rung: cli.open_study(p, configs[rung].out, sweep_mixtures.FIELDS, functools.partial(
            sweep_mixtures.open_study, configs[rung])) for rung in args.rungs}
    if args.report_only and not any(has_runs(configs[rung], p) for rung in RUNGS):
        p.error('--report-only: {} holds no rung\'s runs (none of {} has a finished '
                'run in {}): give the --out or --storage of an earlier run, or train '
                'first'.format(args.out, ', '.join(RUNGS), storage.shown(
                    storage.storage_url(configs[args.rungs[0]].url))))
    return args, configs


def rung_config(args, rung):
    """The SweepConfig of a rung: its settings over TRAINING, the options
    given overriding both. One file of floors for every rung: they depend on
    the problem and K only."""
    given = {o: getattr(args, o) for o in OVERRIDES if getattr(args, o) is not None}
    settings = dict(TRAINING, k=[RUNGS[rung][1]], **RUNGS[rung][2])
    settings.update(given, **({'k': [given['k']]} if 'k' in given else {}))
    return SweepConfig(
        out=os.path.join(args.out, rung), dataset=list(datasets.NAMES), runs=args.runs,
        baseline=False, floor_file=os.path.join(args.out, FLOOR_FILE),
        figures=not args.no_figures, storage=args.storage, device=args.device,
        jobs=args.jobs, retry_failed=args.retry_failed,
        remake_models=args.remake_models, **settings)


def has_runs(cfg, parser=None):
    """Whether cfg's storage holds a finished run of its grid (asked of the
    storage, wherever it is). A storage that cannot be used: exit 2 with one
    line by `parser`, or StorageError without one."""
    try:
        return bool(sweep_mixtures.finished(cfg))
    except storage.StorageError as e:
        if parser is None:
            raise
        parser.error(str(e))


def results(cfg):
    """(K, {dataset: (held-out NLLs, their gaps to the Bayes NLL of their test
    points (sweep_summary.gaps), train seconds), each over seeds},
    {dataset: its K-floor}) of a rung's finished runs (its SweepConfig `cfg`;
    exported to its results.csv)."""
    rows, _ = sweep_mixtures.export(cfg, sweep_mixtures.open_study(cfg, create=False))
    floor, bayes_of, k = floors(cfg), sweep_mixtures.test_bayes(cfg, rows), cfg.k[0]
    found = {}
    for name in datasets.NAMES:
        done = [r for r in rows if r['dataset'] == name and r['model'] == 'mdn']
        found[name] = (np.array([r['nll'] for r in done]), gaps(rows, name, k, bayes_of),
                       np.array([r['train_seconds'] for r in done]))
    return k, found, {name: floor[name, k] for name in datasets.NAMES}


def training(args):
    """The training every rung shares, as the options that give it."""
    settings = dict(TRAINING, **{o: getattr(args, o) for o in OVERRIDES
                                 if o != 'k' and getattr(args, o) is not None})
    return ' '.join('--{}{}'.format('' if v is not False else 'no-', o.replace('_', '-'))
                    + ('' if isinstance(v, bool) else ' {:g}'.format(v))
                    for o, v in settings.items())


def write_summary(args, table):
    """OUT/summary.md from table: {rung: results(its SweepConfig)} of the
    rungs with runs."""
    lines = ['# Closing the gap to the Bayes limit', '',
             'Held-out NLL on 10,000 test points in nats per point, mean ± std over '
             'seeds; gaps in nats above the Bayes NLL of the same test points (the '
             'Bayes limit\'s sample) and above the K-component mixture floor (the best '
             'any K-component mixture can do: the network\'s share). Target: within {} '
             'of the Bayes limit and 0.03 of the floor. '
             '"Components spread": `--spread-components` (`MDN.spread_components`); '
             'the others start from the random head. Training, alike for every rung '
             'unless its name says otherwise: '
             '`{}`. Made by `python -m experiments.close_the_gap`; the gaps are drawn '
             'in [gap.png](gap.png).'.format(TARGET, training(args)), '']
    cells = []
    for rung, (k, found, floor) in table.items():
        for name in datasets.NAMES:
            nll, gap, sec = found[name]
            if not len(nll):
                continue
            gap = gap.mean()
            cells.append([RUNGS[rung][0], k, name, len(nll), mean_spread(nll, 'seed'),
                          '{:+.4f}{}'.format(gap, ' ✓' if gap <= TARGET else ''),
                          '{:.4f}'.format(floor[name]), '{:+.4f}{}'.format(
                              gap - floor[name], ' ✓' if gap - floor[name] <= 0.03 else ''),
                          '{:.0f}'.format(sec.mean())])
    lines += files.markdown_table(
        ['network', 'K', 'problem', 'runs', 'held-out NLL', 'gap to Bayes', 'K-floor',
         'gap to K-floor', 'train s per run'], cells, 'lrlrrrrrr')
    lines += ['', 'Wall time of each invocation (all three problems):', '']
    lines += ['- {}: {:.0f} min, {} seed(s), {} worker(s) on device {}'.format(
        ', '.join(w['rungs']), w['seconds'] / 60, w['seeds'], w['jobs'], w['device'])
        for w in wall_times(args.out, RECORD)]
    with files.atomic_write(os.path.join(args.out, 'summary.md')) as f:
        f.write('\n'.join(lines) + '\n')


def gap_rows(table):
    """The rows of gap.png from table (as for write_summary), in its order:
    (label, {problem: (gaps to the Bayes limit over seeds, K-floor)}), the
    problems without runs left out."""
    return [('{} (K = {})'.format(rung, k),
             {name: (found[name][1], floor[name])
              for name in datasets.NAMES if len(found[name][0])})
            for rung, (k, found, floor) in table.items()]


def gap_to_limits(axes, problems, rungs, target=None):
    """Each configuration's gap to the Bayes limit and to its K-mixture floor,
    one panel per problem, one row per configuration (top to bottom).

    problems: names (P,) for axes (P,); rungs: (label, {problem: (gaps (S,)
    over seeds, floor)}) per configuration, gaps and floor in nats per point
    above the Bayes limit; a configuration without a problem's runs leaves its
    row empty there. The line from the floor to the mean is the network's
    share of the gap; target, if given, is drawn as a dashed line. Returns
    the legend's handles and labels, one of each kind, for a figure legend.
    """
    rows = -np.arange(len(rungs))
    for ax, name in zip(axes, problems):
        lowest = 0
        for y, (_, found) in zip(rows, rungs):
            if name not in found:
                continue
            gaps, floor = np.asarray(found[name][0], dtype=float), found[name][1]
            lowest = min(lowest, gaps.min(), floor)
            ax.plot([floor, gaps.mean()], [y, y], '-', color='0.75', lw=4,
                    solid_capstyle='butt', zorder=1, gid='share',
                    label='gap to the K-floor (the network\'s share)')
            ax.plot(gaps, np.full(len(gaps), y), 'o', ms=4, mfc='none',
                    color='tab:blue', zorder=2, gid='seeds', label='one seed')
            ax.plot([gaps.mean()], [y], 'D', ms=5, color='tab:blue', zorder=3,
                    gid='mean', label='mean over seeds')
            ax.plot([floor], [y], '|', ms=14, mew=2.5, color='tab:green', zorder=4,
                    gid='floor', label='K-mixture floor')
            ax.annotate('{:+.3f}'.format(gaps.mean()), (max(gaps.max(), gaps.mean()), y),
                        xytext=(6, 0), textcoords='offset points', va='center',
                        fontsize=7)
        ax.axvline(0, color='k', lw=1, label='Bayes limit')
        if target is not None:
            ax.axvline(target, color='tab:red', ls='--', lw=1,
                       label='target ({} nats)'.format(target))
        # Gaps from 0.001 to 0.2 nats: logarithmic, but linear through 0 (the
        # Bayes limit, and a seed can land below it).
        ax.set_xscale('symlog', linthresh=1e-3, linscale=0.5)
        ax.set_xlim(min(-3e-4, 3 * lowest), 3 * ax.get_xlim()[1])
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(
            lambda v, _: '{:g}'.format(v)))
        ax.set(yticks=rows, ylim=(rows[-1] - 0.6, 0.6), title=name,
               xlabel='gap, nats per point')
        ax.grid(axis='x', lw=0.4, alpha=0.5)
    axes[0].set_yticklabels([label for label, _ in rungs])
    for ax in axes[1:]:
        ax.set_yticklabels([])
    handles = dict(zip(*axes[0].get_legend_handles_labels()[::-1]))
    return list(handles.values()), list(handles.keys())


def gap_figure(path, table):
    """OUT/gap.png from table (as for write_summary): per problem, each rung's
    gaps to the Bayes limit over seeds and its K-floor."""
    rows = gap_rows(table)
    fig, axes = plots.subplots(1, len(datasets.NAMES), width=4.4,
                               height=2.0 + 0.42 * len(rows))
    legend = gap_to_limits(axes[0], datasets.NAMES, rows, target=TARGET)
    fig.legend(*legend, loc='lower center', ncol=3, fontsize=8)
    fig.suptitle(plots.wrap('Held-out NLL above the Bayes limit per rung: each seed, '
                            'their mean, and the K-mixture floor (the best any '
                            'K-component mixture can do)',
                            fig.get_figwidth(), 'figure.titlesize'))
    # Two lines of legend, about half an inch, below the panels.
    plots.save(fig, path, rect=(0, 0.55 / fig.get_figheight(), 1, 1))


def excess_by_input(cfg, title, n=PAIRS, bins=20):
    """Where the network loses, from the seed-0 models of a rung (its
    SweepConfig `cfg`, described by `title`): its excess_by_input.csv and
    .png. Per problem, the inputs of n fresh pairs cut into `bins` bins of
    equal probability; in each, the mean of log p(y|x) - log q(y|x) (the
    model's KL from the true p(y|x) there) beside the K-mixture floor at the
    bin's median input. Problems whose model file is missing are left out
    (unless cfg.remake_models: see sweep_mixtures.seed0); nothing is written
    without one. False, and nothing done, if the rung has no folder of models
    at all (they are not committed) and none is to be remade."""
    k = cfg.k[0]
    if not (os.path.isdir(cfg.models) or cfg.remake_models):
        return False
    panels, lines = [], []
    # About a minute per problem, most of it the K-floor at each bin.
    for name in tqdm(datasets.NAMES, desc='excess_by_input, ' + os.path.basename(cfg.out),
                     unit='problem', dynamic_ncols=True):
        x, y = datasets.generate(name, n, np.random.default_rng(zlib.crc32(name.encode())))
        found = sweep_mixtures.seed0(cfg, name, 'mdn', k, x)
        if found is None:
            continue
        logits, mu, ln_var = found
        log_q = mixture.log_density(mixture.log_weights(logits), mu, ln_var, y)
        excess = datasets.conditional_log_density(name, x[:, 0], y[:, 0]) - log_q
        edges = np.quantile(x[:, 0], np.linspace(0, 1, bins + 1))
        which = np.clip(np.searchsorted(edges, x[:, 0], side='right') - 1, 0, bins - 1)
        middle = np.array([np.median(x[which == b, 0]) for b in range(bins)])
        mean = np.array([excess[which == b].mean() for b in range(bins)])
        floor = mixture_floor_at(name, k, middle)[1]
        panels.append((name, middle, mean, floor, excess.mean()))
        # Six digits for the inputs: a floor can jump where the support changes.
        lines += [[name, '{:.6f}'.format(lo), '{:.6f}'.format(hi), '{:.6f}'.format(m),
                   '{:.4f}'.format(e), '{:.4f}'.format(f)]
                  for lo, hi, m, e, f in zip(edges[:-1], edges[1:], middle, mean, floor)]
    if not panels:
        return True
    with files.atomic_write(os.path.join(cfg.out, 'excess_by_input.csv')) as f:
        writer = csv.writer(f, lineterminator='\n')
        writer.writerow(['dataset', 'x_from', 'x_to', 'x_median', 'excess', 'k_floor'])
        writer.writerows(lines)
    sweep_figures.excess_by_input(os.path.join(cfg.out, 'excess_by_input.png'),
                                  '{}, K = {}, seed 0'.format(title, k), panels)
    return True


def main(argv=None):
    args, configs = parse_args(argv)
    if not args.report_only:
        start = time.time()
        for rung in args.rungs:
            status = sweep_mixtures.run(configs[rung], args.studies[rung])
            if status:
                return status
            sweep_mixtures.report(configs[rung], args.studies[rung])
        # A rerun of the same rungs replaces their record ('seeds': the
        # count of runs, as the first records name it).
        files.write_json(os.path.join(args.out, WALL_TIME), [
            w for w in wall_times(args.out, RECORD) if w['rungs'] != args.rungs] + [{
                'seconds': round(time.time() - start), 'rungs': args.rungs,
                'jobs': args.jobs, 'seeds': args.runs, 'device': args.device}])
    done = [rung for rung in RUNGS if has_runs(configs[rung])]
    if args.report_only:
        # The rungs' own summaries (the floors may have been recomputed), and
        # with --remake-models their figures, from seed-0 models made again.
        for rung in args.rungs:
            if rung in done:
                study = sweep_mixtures.open_study(configs[rung], create=False)
                if args.remake_models:
                    sweep_mixtures.report(configs[rung], study)
                else:
                    sweep_mixtures.summarize(configs[rung], *sweep_mixtures.export(
                        configs[rung], study))
    table = {rung: results(configs[rung]) for rung in done}
    write_summary(args, table)
    gap_figure(os.path.join(args.out, 'gap.png'), table)
    without_models = [rung for rung in args.rungs if rung in done
                      and not excess_by_input(configs[rung], RUNGS[rung][0], PAIRS)]
    if without_models:
        # A checkout has the runs' storage, not their models.
        print('excess_by_input not redrawn for {}: no models/ folder (models are not '
              'committed: --remake-models trains the seed-0 models again); the table is '
              'redrawn from the storage'.format(
                  ', '.join(without_models)), file=sys.stderr)
    print('table: {}, figure: {}'.format(os.path.join(args.out, 'summary.md'),
                                         os.path.join(args.out, 'gap.png')))
    return 0


if __name__ == '__main__':
    sys.exit(main())
