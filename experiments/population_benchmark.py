"""The published toy over seeds, trained one run after another and as one Population.

The published configuration (`python toy/mdn.py`'s defaults: 500 points, one
hidden layer of 256 units without activation, K = 5, Adam at its default
step size, 2000 epochs of batch 100) for seeds 0 .. RUNS-1, each seed's data,
initial weights, shuffling and held-out points made as `python toy/mdn.py
--seed S` makes them (mdn.run), trained two ways on one device:

- sequential: one run after another by the lean loop `train_custom_loop.fit`,
  the loop `population.fit_population` mirrors (the Trainer loop that
  experiments/published_seeds runs costs more per step, which would flatter
  the population);
- population: all seeds as one `population.Population`, by `fit_population`.

Both keep their last parameters, as the published run does (one evaluation,
after the last epoch, selects nothing), at a constant step size. Each run is
scored as experiments/published_seeds scores it: the held-out NLL on its
10,000 fresh points (nats per point). Outputs in --out (default
results/population/): runs.csv (one row per run and mode; a population run's
train_seconds is its share, the population's time / RUNS), summary.md (wall
time of each mode and their ratio, median and quartiles of the NLL, and
whether the two distributions differ: Mann-Whitney U and Kolmogorov-Smirnov
tests) and distribution.png.
"""
import csv
import os
import sys
import tempfile
import time

import numpy as np
from scipy import stats
from tqdm import tqdm

# toy first: its patches of NumPy and Python come before chainer is imported.
from toy import cli, datasets, files, mdn, nets, plots, population, train_custom_loop
from experiments import published_seeds, sweep_mixtures
from experiments.sweep_config import SweepConfig

MODES = ('sequential', 'population')
#: How summary.md and the figure name the modes.
NAMES = {'sequential': 'sequential: `train_custom_loop.fit`, one run after another',
         'population': 'population: `fit_population`, all runs as one `Population`'}
FIELDS = ('mode', 'seed', 'nll_test', 'train_seconds', 'failed')
#: The published run: toy/mdn.py's defaults (its epochs are --epoch here).
PUBLISHED = mdn.make_parser().parse_args([])
#: The published run's Adam step size (Chainer's default), held constant.
LR = 0.001
#: The reduced default sweep timed with and without populations.
SWEEP = ['--quick', '--no-figures']


def memory_needed(args):
    """Rough upper estimate of the bytes the population takes (the larger mode)."""
    rows = max(PUBLISHED.batchsize, published_seeds.TEST_POINTS)
    return args.runs * cli.training_bytes(
        nets.hidden_widths(PUBLISHED.hidden), mdn.MDN.head_size(PUBLISHED.k, 1), rows,
        PUBLISHED.train_points + published_seeds.TEST_POINTS)


def parse_args(argv=None):
    parser = cli.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_training_arguments(parser, runs=20, epoch=PUBLISHED.epoch,
                               out=os.path.join('results', 'population'))
    parser.add_argument('--sweep-population', type=cli.positive,
                        default=SweepConfig().population, metavar='R',
                        help='then time the reduced default sweep ({}) one run at a '
                        'time and with --population R; 1: skip it'.format(' '.join(SWEEP)))
    return cli.check_resources(parser, parser.parse_args(argv), memory_needed, '--runs')


def published_run(seed):
    """(model, training pair, held-out pair) of `python toy/mdn.py --seed SEED`:
    the same random streams, in the same order, as mdn.run."""
    seeds = np.random.SeedSequence(seed).spawn(4)
    train, test = datasets.train_test('worldmodels', seeds, PUBLISHED.train_points,
                                      published_seeds.TEST_POINTS)
    model = mdn.MDN(hidden=PUBLISHED.hidden, k=PUBLISHED.k,
                    activation=PUBLISHED.activation, nll=PUBLISHED.loss,
                    rng=np.random.default_rng(seeds[2]))
    return model, train, test


def sequential(runs, epochs, device):
    """One run after another: a row per seed."""
    rows = []
    for seed in tqdm(range(runs), unit='run', desc='sequential'):
        model, (x, y), test = published_run(seed)
        start = time.time()
        try:
            # The training data stand in for validation data: evaluated once,
            # after the last epoch, they select nothing.
            train_custom_loop.fit(model, x, y, x, y, epochs=epochs,
                                  batchsize=PUBLISHED.batchsize, lr=LR, lr_final=LR,
                                  eval_every=epochs, seed=seed, device=device)
            failed = ''
        except train_custom_loop.Diverged as e:
            failed = str(e)
        cli.synchronize(device)
        rows.append(row('sequential', seed, model, test, time.time() - start, failed))
    return rows


def together(runs, epochs, device):
    """All seeds as one Population: a row per seed."""
    made = [published_run(seed) for seed in range(runs)]
    pop = population.Population.from_models([model for model, _, _ in made])
    xs = np.stack([x for _, (x, _), _ in made])
    ys = np.stack([y for _, (_, y), _ in made])
    start = time.time()
    with tqdm(total=epochs, unit='epoch', desc='population') as bar:
        result = population.fit_population(
            pop, xs, ys, xs, ys, epochs=epochs, batchsize=PUBLISHED.batchsize, lr=LR,
            lr_final=LR, eval_every=epochs, seeds=range(runs), device=device,
            progress=bar.update)
    cli.synchronize(device)
    share = (time.time() - start) / runs
    return [row('population', seed, pop.member(seed), made[seed][2], share,
                result['members'][seed]['failed'] or '') for seed in range(runs)]


def row(mode, seed, model, test, seconds, failed):
    nll = '' if failed else train_custom_loop.heldout_nll(model, *test)
    return {'mode': mode, 'seed': seed, 'nll_test': nll,
            'train_seconds': round(seconds, 3), 'failed': failed}


def summary(rows):
    """Per mode: runs, failed runs, total training seconds, NLL quartiles;
    and the tests of whether the two NLL distributions differ."""
    table, nll = [], {}
    for mode in MODES:
        mine = [r for r in rows if r['mode'] == mode]
        nll[mode] = np.array([r['nll_test'] for r in mine if not r['failed']])
        q1, median, q3 = (np.percentile(nll[mode], [25, 50, 75]) if len(nll[mode])
                          else (np.nan,) * 3)
        table.append({'mode': mode, 'runs': len(mine), 'failed': len(mine) - len(nll[mode]),
                      'seconds': sum(r['train_seconds'] for r in mine),
                      'median': median, 'q1': q1, 'q3': q3})
    finished = {r['seed'] for r in rows} - {r['seed'] for r in rows if r['failed']}
    by_seed = {(r['mode'], r['seed']): r['nll_test'] for r in rows if r['seed'] in finished}
    paired = max((abs(by_seed['sequential', s] - by_seed['population', s])
                  for s in finished), default=np.nan)
    both = all(len(nll[mode]) for mode in MODES)
    tests = {'mannwhitney_p': stats.mannwhitneyu(
                 nll['sequential'], nll['population'], alternative='two-sided').pvalue
             if both else np.nan,
             'ks_p': stats.ks_2samp(nll['sequential'], nll['population']).pvalue
             if both else np.nan,
             'paired_max': paired,
             'ratio': table[0]['seconds'] / table[1]['seconds']}
    return table, tests


def machine(device):
    if device.xp is np:
        return cli.cpu_name()
    props = device.xp.cuda.runtime.getDeviceProperties(device.device.id)
    return 'GPU {} ({})'.format(device.device.id, props['name'].decode())


def write_summary(path, table, tests, args, where):
    verdict = ('no evidence at the 5% level that they differ'
               if tests['mannwhitney_p'] >= 0.05 else 'they differ at the 5% level')
    lines = ['# The published toy: one run after another, or one Population', '',
             'The published configuration ({} points, one hidden layer of {} units '
             'without activation, K = {}, Adam at a constant step size of {}, {} '
             'epochs of batch {}), seeds 0 to {}, trained both ways on {}; each '
             'run keeps its last parameters. Held-out NLL in nats per point on {:,} '
             'fresh points, lower is better; training time only (not the data or '
             'the scoring).'.format(
                 PUBLISHED.train_points, nets.hidden_option(PUBLISHED.hidden), PUBLISHED.k, LR, args.epoch,
                 PUBLISHED.batchsize, args.runs - 1, where, published_seeds.TEST_POINTS),
             '',
             *files.markdown_table(
                 ['mode', 'runs', 'failed', 'training wall time', 'median', 'quartiles'],
                 [[NAMES[r['mode']], r['runs'], r['failed'], '{:.1f} s'.format(r['seconds']),
                   '{:.3f}'.format(r['median']),
                   '{:.3f} to {:.3f}'.format(r['q1'], r['q3'])] for r in table],
                 align='lrrrrl'),
             '',
             'Wall time, sequential / population: {:.2f}x.'.format(tests['ratio']), '',
             'Do the two NLL distributions differ? Mann-Whitney U, two-sided: p = {:.3g} '
             '({}); Kolmogorov-Smirnov: p = {:.3g}. Paired by seed (the same data, '
             'initial weights and shuffling), the largest difference between the two '
             'modes is {:.2g} nats per point.'.format(
                 tests['mannwhitney_p'], verdict, tests['ks_p'], tests['paired_max'])]
    with files.atomic_write(path) as f:
        f.write('\n'.join(lines) + '\n')


def draw(path, rows):
    bayes, gaussian = datasets.limits('worldmodels')
    fig, axes = plots.subplots(1, 1, width=6.4, height=4.8)
    ax = axes[0, 0]
    for i, mode in enumerate(MODES):
        nll = np.array([r['nll_test'] for r in rows if r['mode'] == mode
                        and not r['failed']])
        if len(nll):
            ax.boxplot(nll, positions=[i], widths=0.5, showfliers=False)
            jitter = np.random.default_rng(i).uniform(-0.15, 0.15, len(nll))
            ax.scatter(i + jitter, nll, s=18, c='tab:blue')
    ax.axhline(bayes, color='k', ls='--', lw=1, label='Bayes limit')
    ax.axhline(gaussian, color='0.4', ls=':', lw=1, label='best single Gaussian')
    ax.set_xticks(range(len(MODES)), ['one run after another\n(train_custom_loop.fit)',
                                      'one Population\n(fit_population)'])
    ax.set(xlim=(-0.6, len(MODES) - 0.4), ylabel='held-out NLL, nats per point',
           title='The published toy over seeds, trained two ways')
    ax.legend(loc='upper right', fontsize=8)
    plots.save(fig, path)


def sweep_times(args):
    """{population size: wall seconds} of the reduced default sweep (SWEEP:
    the preview, `sweep_mixtures --quick`, with its figures left out), made
    from scratch in a temporary folder one run at a time and in populations
    of --sweep-population, with 2 workers each, on --device."""
    times = {}
    for size in (1, args.sweep_population):
        with tempfile.TemporaryDirectory() as out:
            start = time.time()
            status = sweep_mixtures.main(SWEEP + [
                '--out', out, '--population', str(size), '--device', str(args.device),
                '--jobs', '2'])
            if status:
                raise SystemExit(status)
            times[size] = time.time() - start
    return times


def write_sweep(path, times, where):
    """sweep.json and the sweep's section of summary.md (appended)."""
    files.write_json(os.path.join(os.path.dirname(path), 'sweep.json'), {
        'command': SWEEP, 'device': where, 'seconds': {str(k): v for k, v in times.items()}})
    one, size = times[1], max(times)
    lines = ['', '## The mixture-count sweep', '',
             'The reduced default sweep, `python -m experiments.sweep_mixtures {}` (one '
             'seed of every problem and K, the least-squares baselines), from scratch '
             'with 2 workers on {}: one run at a time, and with `--population {}`.'.format(
                 ' '.join(SWEEP), where, size), '',
             *files.markdown_table(['runs per worker at once', 'wall time'],
                                   [[k, '{:.1f} s'.format(v)] for k, v in sorted(
                                       times.items())], align='rr'),
             '', 'Wall time, one at a time / populations: {:.2f}x.'.format(one / times[size])]
    with open(path, 'a') as f:
        f.write('\n'.join(lines) + '\n')


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    rows = (sequential(args.runs, args.epoch, args.device)
            + together(args.runs, args.epoch, args.device))
    with files.atomic_write(os.path.join(args.out, 'runs.csv')) as f:
        writer = csv.DictWriter(f, FIELDS, lineterminator='\n')
        writer.writeheader()
        writer.writerows(rows)
    table, tests = summary(rows)
    write_summary(os.path.join(args.out, 'summary.md'), table, tests, args,
                  machine(args.device))
    draw(os.path.join(args.out, 'distribution.png'), rows)
    if args.sweep_population > 1:
        times = sweep_times(args)
        write_sweep(os.path.join(args.out, 'summary.md'), times, machine(args.device))
        print('sweep: {}'.format(', '.join('population {}: {:.1f} s'.format(k, v)
                                           for k, v in sorted(times.items()))))
    for r in table:
        print('{mode}: {seconds:.1f} s, median NLL {median:.3f}, quartiles {q1:.3f} to '
              '{q3:.3f}, {failed} failed'.format(**r))
    print('sequential / population: {ratio:.2f}x; Mann-Whitney p = {mannwhitney_p:.3g}'
          .format(**tests))


if __name__ == '__main__':
    sys.exit(main())
