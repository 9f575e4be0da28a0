"""What a rerun of the published toy gives: its distribution over seeds, beside the published script.

The published configuration (`python toy/mdn.py --seed S`: 500 points, one
hidden layer of 256 units without activation, K = 5, Adam, 2000 epochs of
batch 100) is chaotic: which optimum a run ends in depends on the seed and
on how the CPU's BLAS rounds its sums, so one run is no result. This script
runs it for seeds 0 .. N-1, and, side by side on the same machine, the
unmodified published WorldModels `toy/mdn.py` (a copy you fetch, given by
`--published`) seeded the same way through NumPy's global generator.

Each run is scored the same way: the held-out NLL on 10,000 fresh points of
the same problem (nats per point), and each component's largest mixture
weight over the training inputs. A run is *collapsed* when its NLL is worse
than the best single Gaussian per x could do (the mixture found no use for
its components); a component is *dead* when its weight stays below 0.001 at
every input. Outputs in --out (default results/published/): runs.csv (one
row per run), summary.md (median, quartiles, collapsed fraction, against the
Bayes and single-Gaussian limits), distribution.png. Each finished run is
kept in --out/runs/ so an interrupted invocation resumes where it stopped.
"""
import contextlib
import csv
import importlib.util
import json
import multiprocessing
import os
import sys
import tempfile
import time

import numpy as np

import toy  # noqa: F401  (patches NumPy/Python for chainer before it is imported)
import chainer
from tqdm import tqdm

from toy import cli, datasets, files, mdn, mixture, plots

TEST_POINTS = 10000
IMPLEMENTATIONS = ('ours', 'published')
#: The published script trains this many epochs, whatever it is told.
PUBLISHED_EPOCHS = 2000
#: How summary.md names the implementations.
NAMES = {'ours': '`toy/mdn.py` (this repository)',
         'published': 'published WorldModels `toy/mdn.py`'}
FIELDS = ('implementation', 'seed', 'epoch', 'nll_test', 'dead_components', 'pi_max',
          'train_seconds')


def parse_args(argv=None):
    parser = cli.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_training_arguments(parser, runs=20, epoch=PUBLISHED_EPOCHS,
                               out=os.path.join('results', 'published'))
    parser.add_argument('--published', metavar='FILE', default=None,
                        help="a copy of the published WorldModels toy/mdn.py "
                             "(README: 'The published toy'); without it only "
                             'our runs are made; it always trains {} epochs'
                             .format(PUBLISHED_EPOCHS))
    parser.add_argument('--jobs', '-j', type=cli.positive, default=1,
                        help='runs at once, one process each')
    args = parser.parse_args(argv)
    if args.published is not None and not os.path.isfile(args.published):
        parser.error('--published {}: not a file; fetch the WorldModels '
                     'repository and give its toy/mdn.py'.format(args.published))
    cli.check_out(parser, args.out)
    for seed in range(args.runs):
        row = kept_row(args.out, 'ours', seed)
        if row is not None and row['epoch'] != args.epoch:
            parser.error('{} holds runs of --epoch {}, not {}: give another --out'
                         .format(args.out, row['epoch'], args.epoch))
    return args


def kept_path(out, implementation, seed):
    return os.path.join(out, 'runs', '{}-{}.json'.format(implementation, seed))


def kept_row(out, implementation, seed):
    """The row of a run an earlier invocation finished, or None."""
    try:
        with open(kept_path(out, implementation, seed)) as f:
            row = json.load(f)
    except (OSError, ValueError):
        return None
    return row if isinstance(row, dict) and 'epoch' in row else None


def test_set(seed):
    """The held-out points of our run with this seed, used for both scripts."""
    return datasets.train_test('worldmodels', np.random.SeedSequence(seed).spawn(4), 0,
                               TEST_POINTS)[1]


def grid(x):
    """The inputs the weights are read at: the training inputs' range, as
    toy/mdn.py reads them."""
    return np.linspace(x.min(), x.max(), len(x), dtype=np.float32).reshape(-1, 1)


def run_ours(seed, epoch):
    """`python toy/mdn.py --seed SEED` itself (mdn.run), scored by its
    metrics: what a user who reruns the published toy with that seed gets."""
    with tempfile.TemporaryDirectory() as out:
        with _quiet():
            metrics = mdn.run(mdn.options(seed=seed, epoch=epoch, out=out))
    return {'nll_test': metrics['nll_test'],
            'dead_components': metrics['dead_components'],
            'pi_max': _weights(metrics['pi_max']),
            'train_seconds': metrics['mdn_train_seconds']}


def _weights(pi_max):
    return ' '.join('{:.4g}'.format(p) for p in sorted(pi_max))


def run_published(seed, path):
    """Run the published script's main() as it is, seeded through NumPy's global
    generator, and score the MDN it made (its constructor is wrapped to keep it)."""
    spec = importlib.util.spec_from_file_location('published_mdn', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    made, build = [], module.MDN.__init__

    def keep(self, *args, **kwargs):     # the class stays the same: it calls
        build(self, *args, **kwargs)     # super(MDN, self) by its name
        made.append(self)

    module.MDN.__init__ = keep
    with tempfile.TemporaryDirectory() as work, _quiet():
        os.mkdir(os.path.join(work, 'result'))    # where it saves its figures
        with contextlib.chdir(work):
            np.random.seed(seed)
            start = time.time()
            module.main()
            seconds = time.time() - start
    # It draws its 500 training points first, y then u, from the seeded state.
    x, _ = datasets.worldmodels(500, np.random.RandomState(seed))
    x_test, y_test = test_set(seed)
    model = made[0]
    pi_max = mixture.weight_range(published_mixture(model, grid(x))[0])[1]
    return {'nll_test': published_nll(model, x_test, y_test),
            'dead_components': int((pi_max < mixture.DEAD).sum()),
            'pi_max': _weights(pi_max), 'train_seconds': round(seconds, 1)}


def published_mixture(model, x):
    """The mixture of a model with the published interface (`fprop(x)` ->
    softmaxed weights, mu, ln_var, each (N, K, 1)) at x (N, 1): NumPy arrays
    log_pi (N, K), mu and ln_var (N, K, 1)."""
    to_cpu = chainer.backend.CpuDevice().send
    with chainer.no_backprop_mode():
        coef, mu, ln_var = model.fprop(model.device.send(x))
    with np.errstate(divide='ignore'):      # a weight of 0: log pi = -inf, as meant
        return (np.log(to_cpu(coef.array)[:, :, 0]), to_cpu(mu.array),
                to_cpu(ln_var.array))


def published_nll(model, x, y):
    """Held-out NLL of x, y (N, 1) under a model with the published interface,
    nats per point: mixture.log_density, as every model here is scored (its
    own loss sums densities in float32)."""
    return float(-mixture.log_density(*published_mixture(model, x), y).mean())


@contextlib.contextmanager
def _quiet():
    """Both scripts print every epoch: send file descriptors 1 and 2 to /dev/null."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, 'w') as null:
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
    try:
        yield
    finally:
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)


def one_run(task):
    """(implementation, seed, argument) -> its row; in a process of its own."""
    implementation, seed, argument = task
    found = (run_ours(seed, argument) if implementation == 'ours'
             else run_published(seed, argument))
    return dict(found, implementation=implementation, seed=seed,
                epoch=argument if implementation == 'ours' else PUBLISHED_EPOCHS)


def summary_rows(rows, gaussian):
    """Per implementation: runs, median and quartiles of the NLL, collapsed runs."""
    table = []
    for implementation in IMPLEMENTATIONS:
        mine = [r for r in rows if r['implementation'] == implementation]
        if not mine:
            continue
        nll = np.array([r['nll_test'] for r in mine])
        q1, median, q3 = np.percentile(nll, [25, 50, 75])
        table.append({'implementation': implementation, 'runs': len(mine),
                      'median': median, 'q1': q1, 'q3': q3,
                      'best': nll.min(), 'worst': nll.max(),
                      'collapsed': int((nll > gaussian).sum()),
                      'dead': sum(r['dead_components'] > 0 for r in mine),
                      'seconds': float(np.median([r['train_seconds'] for r in mine]))})
    return table


def write_summary(path, table, bayes, gaussian, machine, jobs):
    lines = ['# The published toy over seeds', '',
             'Held-out NLL in nats per point (10,000 fresh points), lower is better; '
             'the Bayes limit is {:.3f}, the best single Gaussian {:.3f}. A run is '
             'collapsed when its NLL is worse than the single Gaussian\'s; a component '
             'is dead when its weight is below {} at every training input. '
             'Machine: {}, {} run(s) at a time (the training times are those of the '
             'run that wrote each row).'.format(bayes, gaussian, mixture.DEAD, machine,
                                                 jobs), '',
             *files.markdown_table(
                 ['script', 'runs', 'median', 'quartiles', 'best', 'worst', 'collapsed',
                  'with a dead component', 'median training time'],
                 [[NAMES[r['implementation']], r['runs'], '{:.3f}'.format(r['median']),
                   '{:.3f} to {:.3f}'.format(r['q1'], r['q3']),
                   '{:.3f}'.format(r['best']), '{:.3f}'.format(r['worst']),
                   '{} of {}'.format(r['collapsed'], r['runs']),
                   '{} of {}'.format(r['dead'], r['runs']),
                   '{:.0f} s'.format(r['seconds'])] for r in table],
                 align='lrrlrrrrr')]
    with files.atomic_write(path) as f:
        f.write('\n'.join(lines) + '\n')


def draw(path, rows, bayes, gaussian):
    fig, axes = plots.subplots(1, 1, width=6.4, height=4.8)
    ax = axes[0, 0]
    for i, implementation in enumerate(IMPLEMENTATIONS):
        mine = [r for r in rows if r['implementation'] == implementation]
        if not mine:
            continue
        nll = np.array([r['nll_test'] for r in mine])
        dead = np.array([r['dead_components'] > 0 for r in mine])
        ax.boxplot(nll, positions=[i], widths=0.5, showfliers=False)
        jitter = np.random.default_rng(i).uniform(-0.15, 0.15, len(nll))
        ax.scatter(i + jitter[~dead], nll[~dead], s=18, c='tab:blue',
                   label='run, every component used')
        ax.scatter(i + jitter[dead], nll[dead], s=24, c='tab:orange', marker='x',
                   label='run with a dead component')
    ax.axhline(bayes, color='k', ls='--', lw=1, label='Bayes limit')
    ax.axhline(gaussian, color='0.4', ls=':', lw=1, label='best single Gaussian')
    ax.set_xticks(range(len(IMPLEMENTATIONS)),
                  ['toy/mdn.py\n(this repository)', 'published\nWorldModels toy/mdn.py'])
    ax.set(xlim=(-0.6, len(IMPLEMENTATIONS) - 0.4),
           ylabel='held-out NLL, nats per point',
           title='The published toy configuration over seeds')
    # One entry per kind of mark that is drawn, below the panel.
    handles, labels = ax.get_legend_handles_labels()
    shown = {}
    for handle, label in zip(handles, labels):
        if not hasattr(handle, 'get_offsets') or len(handle.get_offsets()):
            shown.setdefault(label, handle)
    ax.legend(shown.values(), shown.keys(), loc='upper center', fontsize=8, ncol=2,
              bbox_to_anchor=(0.5, -0.16))
    plots.save(fig, path)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(os.path.join(args.out, 'runs'), exist_ok=True)
    tasks = [('ours', seed, args.epoch) for seed in range(args.runs)]
    if args.published:
        tasks += [('published', seed, os.path.abspath(args.published))
                  for seed in range(args.runs)]

    todo = [t for t in tasks if kept_row(args.out, *t[:2]) is None]
    context = multiprocessing.get_context('spawn')
    with context.Pool(args.jobs, maxtasksperchild=1) as pool:
        for row in tqdm(pool.imap_unordered(one_run, todo), total=len(todo),
                        unit='run', desc='runs'):
            files.write_json(kept_path(args.out, row['implementation'], row['seed']), row)
    rows = [kept_row(args.out, *t[:2]) for t in tasks]
    with files.atomic_write(os.path.join(args.out, 'runs.csv')) as f:
        writer = csv.DictWriter(f, FIELDS, lineterminator='\n')
        writer.writeheader()
        writer.writerows(rows)
    bayes, gaussian = datasets.limits('worldmodels')
    table = summary_rows(rows, gaussian)
    write_summary(os.path.join(args.out, 'summary.md'), table, bayes, gaussian,
                  cli.cpu_name(), args.jobs)
    draw(os.path.join(args.out, 'distribution.png'), rows, bayes, gaussian)
    for r in table:
        print('{implementation}: median {median:.3f}, quartiles {q1:.3f} to {q3:.3f}, '
              '{collapsed} of {runs} collapsed, {dead} with a dead component'
              .format(**r))


if __name__ == '__main__':
    sys.exit(main())
