"""Compare mixture counts K: held-out NLL against the exact Bayes limit.

For each dataset, K and seed, trains an MDN (toy.mdn.MDN) on fixed
train/validation/test splits, keeps the parameters of the evaluation with the
best validation NLL, and scores the test NLL in the target's original units
against datasets.bayes_limit (the lowest achievable) and
datasets.gaussian_limit (the lowest for a single Gaussian, K = 1). A
least-squares baseline (toy.mdn.LeastSquares) is trained per dataset and seed.

Each finished run appends one row to results.csv at once, so an interrupted
sweep resumes where it stopped: rerunning skips the rows already there.
Then summary.md and the figures are written from the CSV and saved models.

    python experiments/sweep_mixtures.py                       # the full sweep
    python experiments/sweep_mixtures.py --dataset bishop --seeds 1 --mixtures 1 5
"""
import csv
import hashlib
import json
import multiprocessing
import os
import sys
import time
import zlib

import numpy as np

import toy  # noqa: F401  (patches NumPy/Python for chainer before it is imported)
import chainer

from toy import cli, datasets, mdn, train

DEFAULT_MIXTURES = [1, 2, 3, 4, 5, 6, 8, 12, 16, 24]
FIELDS = ['dataset', 'direction', 'model', 'k', 'seed', 'config',
          'nll', 'bayes_limit', 'gap_bayes', 'gaussian_limit', 'gap_gaussian',
          'mse', 'val_nll', 'train_seconds', 'epochs', 'best_epoch',
          'iterations', 'device']
#: Options that change a run's result; a row is reused only if they match.
CONFIG_KEYS = ('hidden', 'activation', 'epochs', 'batchsize', 'lr', 'lr_final',
               'train_points', 'val_points', 'test_points', 'eval_every')
CSV_NAME = 'results.csv'


def parse_args(argv=None):
    parser = cli.ArgumentParser(
        description='Sweep the number of MDN mixture components K and score '
                    'the held-out NLL against the exact Bayes limit.')
    parser.add_argument('--dataset', nargs='+', default=['all'],
                        metavar='NAME',
                        help='datasets: {} or all (default: all)'.format(
                            ', '.join(datasets.NAMES)))
    parser.add_argument('--mixtures', '-k', nargs='+', type=cli.positive,
                        default=DEFAULT_MIXTURES, metavar='K',
                        help='mixture counts (default: {})'.format(
                            ' '.join(map(str, DEFAULT_MIXTURES))))
    parser.add_argument('--seeds', type=cli.positive, default=5,
                        help='seeds 0 .. SEEDS-1 per dataset and K (default: 5)')
    parser.add_argument('--direction', choices=datasets.DIRECTIONS,
                        default='inverse',
                        help='inverse (multi-valued, the published problems) '
                             'or forward (default: inverse)')
    parser.add_argument('--hidden', type=cli.positive, default=32,
                        help='hidden units (default: 32)')
    parser.add_argument('--activation', choices=sorted(mdn.ACTIVATIONS),
                        default='tanh', help='hidden activation (default: tanh)')
    parser.add_argument('--epochs', '-e', type=cli.positive, default=400,
                        help='passes over the training set (default: 400)')
    parser.add_argument('--batchsize', '-b', type=cli.positive, default=500,
                        help='minibatch size (default: 500)')
    parser.add_argument('--lr', type=positive_float, default=3e-2,
                        help='initial Adam step size (default: 0.03)')
    parser.add_argument('--lr-final', type=positive_float, default=1e-4,
                        help='final step size; it decays geometrically '
                             '(default: 0.0001)')
    parser.add_argument('--train-points', type=cli.positive, default=20000,
                        help='training points (default: 20000)')
    parser.add_argument('--val-points', type=cli.positive, default=5000,
                        help='validation points, for model selection '
                             '(default: 5000)')
    parser.add_argument('--test-points', type=cli.positive, default=10000,
                        help='held-out test points (default: 10000)')
    parser.add_argument('--eval-every', type=cli.positive, default=5,
                        help='validate every this many epochs (default: 5)')
    cli.add_device_arguments(parser)
    parser.add_argument('--jobs', '-j', type=cli.positive,
                        default=min(2, os.cpu_count() or 1),
                        help='parallel worker processes (default: 2, or 1 on '
                             'a one-core machine)')
    parser.add_argument('--out', '-o', default=os.path.join('results', 'sweep'),
                        help='output directory (default: results/sweep)')
    parser.add_argument('--no-figures', action='store_true',
                        help='write the CSV and summary.md only')
    args = parser.parse_args(argv)

    names = []
    for name in args.dataset:
        if name == 'all':
            names.extend(datasets.NAMES)
        elif name in datasets.NAMES:
            names.append(name)
        else:
            parser.error("unknown dataset '{}': choose from {} or all".format(
                name, ', '.join(datasets.NAMES)))
    args.dataset = list(dict.fromkeys(names))
    args.mixtures = sorted(set(args.mixtures))
    if args.batchsize > args.train_points:
        parser.error('--batchsize {} is larger than the {} training points'
                     .format(args.batchsize, args.train_points))
    if args.lr_final > args.lr:
        parser.error('--lr-final {} is larger than --lr {}'.format(
            args.lr_final, args.lr))
    if args.eval_every > args.epochs:
        parser.error('--eval-every {} is more than --epochs {}{}'.format(
            args.eval_every, args.epochs,
            ' (--eval-every defaults to {0}): pass --eval-every {1} or less, or '
            '--epochs {0} or more'.format(parser.get_default('eval_every'),
                                          args.epochs)
            if '--eval-every' not in ' '.join(argv if argv is not None
                                              else sys.argv[1:])
            else ': pass --eval-every {} or less'.format(args.epochs)))
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        parser.error('--out {} exists and is not a directory'.format(args.out))
    path = os.path.join(args.out, CSV_NAME)
    if os.path.isfile(path):
        with open(path, newline='') as f:
            header = next(csv.reader(f), None)
        if header is not None and header != FIELDS:
            parser.error('{} has other columns than this script writes: '
                         'choose another --out'.format(path))
    args.device_spec = args.device
    args.device = cli.get_device(parser, args.device)
    return args


def positive_float(text):
    value = float(text)
    if not (np.isfinite(value) and value > 0):
        raise ValueError(text)
    return value


positive_float.__name__ = 'positive number'


def config_id(args):
    """Short fingerprint of the options that change a run's result."""
    blob = json.dumps({key: getattr(args, key) for key in CONFIG_KEYS},
                      sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:8]


def data_seeds(name, seed):
    """Seed sequences of (train, validation, test) for dataset and seed.

    The same for every K and model, so all of them see the same splits;
    crc32 of the name rather than its position keeps them fixed when
    datasets are added.
    """
    return np.random.SeedSequence([seed, zlib.crc32(name.encode())]).spawn(3)


def splits(name, direction, seed, args):
    """{'train': (x, t), 'val': ..., 'test': ...}, float32 (n, 1) each."""
    sizes = (args['train_points'], args['val_points'], args['test_points'])
    return {split: datasets.generate(name, n, np.random.default_rng(s), direction)
            for split, n, s in zip(('train', 'val', 'test'), sizes,
                                   data_seeds(name, seed))}


def model_path(out, task):
    return os.path.join(out, 'models', '{dataset}-{direction}-{model}-k{k}-'
                        'seed{seed}-{config}.npz'.format(**task))


def build_model(task, rng=None):
    if task['model'] == 'mse':
        return mdn.LeastSquares(hidden=task['hidden'],
                                activation=task['activation'], rng=rng)
    return mdn.MDN(hidden=task['hidden'], k=task['k'],
                   activation=task['activation'], rng=rng)


def save_model(path, model, scaler):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    arrays = {'param' + name: chainer.backend.CpuDevice().send(p.array)
              for name, p in model.namedparams()}
    arrays.update({'scaler_' + k: v for k, v in scaler.state().items()})
    tmp = path + '.tmp.npz'
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def load_model(path, task):
    """(model on the CPU, Standardizer) saved by `save_model`."""
    model = build_model(task)
    with np.load(path, allow_pickle=False) as npz:
        for name, p in model.namedparams():
            p.array[...] = npz['param' + name]
        scaler = train.Standardizer.from_state(
            {k: npz['scaler_' + k] for k in train.Standardizer.KEYS})
    return model, scaler


def run_task(task):
    """Train one model and score it: the CSV row (a dict)."""
    device = chainer.get_device(task['device_spec'])
    device.use()
    data = splits(task['dataset'], task['direction'], task['seed'], task)
    scaler = train.Standardizer(*data['train'])
    std = {s: (scaler.inputs(x), scaler.targets(t)) for s, (x, t) in data.items()}
    init = np.random.SeedSequence(
        [task['seed'], zlib.crc32(task['dataset'].encode()), task['k']])
    model = build_model(task, rng=np.random.default_rng(init))
    info = train.fit(model, *std['train'], *std['val'], epochs=task['epochs'],
                     lr=task['lr'], lr_final=task['lr_final'],
                     batchsize=task['batchsize'], eval_every=task['eval_every'],
                     seed=task['seed'], device=device)
    model.to_device('@numpy')
    save_model(model_path(task['out'], task), model, scaler)
    x_test, t_test = std['test']
    row = {key: task[key] for key in ('dataset', 'direction', 'model', 'k',
                                      'seed', 'config')}
    row.update(train_seconds='{:.2f}'.format(info['seconds']),
               epochs=task['epochs'], iterations=info['iterations'],
               best_epoch=info['best_epoch'],
               device=str(device))
    scale2 = float(np.prod(scaler.y_scale) ** 2)
    if task['model'] == 'mse':
        row['mse'] = '{:.6g}'.format(train.evaluate(model, x_test, t_test) * scale2)
        return row
    logits, mu, ln_var = model.mixture(x_test)
    mean = mdn.mixture_mean(logits, mu)
    nll = mdn.heldout_nll(model, x_test, t_test) + scaler.log_jacobian
    row.update(nll='{:.6f}'.format(nll),
               val_nll='{:.6f}'.format(info['best_val_loss'] + scaler.log_jacobian),
               bayes_limit='{:.6f}'.format(task['bayes']),
               gap_bayes='{:.6f}'.format(nll - task['bayes']),
               gaussian_limit='{:.6f}'.format(task['gaussian']),
               gap_gaussian='{:.6f}'.format(nll - task['gaussian']),
               mse='{:.6g}'.format(float(np.mean((mean - t_test) ** 2)) * scale2))
    return row


def read_rows(path):
    """Complete rows of an earlier run; a line cut short by an interruption is skipped."""
    if not os.path.isfile(path):
        return []
    with open(path, newline='') as f:
        return [row for row in csv.DictReader(f)
                if None not in row and None not in row.values()
                and row.get('device')]


def row_key(row):
    return (row['dataset'], row['direction'], row['model'], int(row['k']),
            int(row['seed']), row['config'])


def open_csv(path):
    """Append handle on the CSV, with the header when new; a line an
    interruption cut short is ended first so the next row starts afresh."""
    new = not os.path.isfile(path) or os.path.getsize(path) == 0
    if not new:
        with open(path, 'rb') as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b'\n':
                with open(path, 'a') as g:
                    g.write('\n')
    f = open(path, 'a', newline='')
    writer = csv.DictWriter(f, fieldnames=FIELDS)
    if new:
        writer.writeheader()
        f.flush()
    return f, writer


class Progress(object):
    """One-line progress bar over the whole sweep, on stderr."""

    def __init__(self, total, done=0, width=30):
        self.total, self.done, self.width = total, done, width
        self.start, self.start_done = time.time(), done
        self.show('')

    def show(self, last):
        frac = self.done / self.total if self.total else 1.0
        fill = int(round(frac * self.width))
        elapsed = time.time() - self.start
        ran = self.done - self.start_done
        eta = (elapsed / ran * (self.total - self.done)) if ran else None
        sys.stderr.write('\r[{}{}] {}/{} runs  {} elapsed  eta {}  {:<40.40}'.format(
            '#' * fill, '.' * (self.width - fill), self.done, self.total,
            clock(elapsed), clock(eta) if eta is not None else '?', last))
        sys.stderr.flush()

    def step(self, last):
        self.done += 1
        self.show(last)

    def close(self):
        sys.stderr.write('\n')


def clock(seconds):
    seconds = int(round(seconds))
    return '{}:{:02d}:{:02d}'.format(seconds // 3600, seconds // 60 % 60,
                                     seconds % 60)


def make_tasks(args, limits):
    config = config_id(args)
    common = {key: getattr(args, key) for key in CONFIG_KEYS}
    common.update(config=config, direction=args.direction, out=args.out,
                  device_spec=args.device_spec)
    tasks = []
    for name in args.dataset:
        for seed in range(args.seeds):
            tasks.append(dict(common, dataset=name, model='mse', k=0, seed=seed,
                              bayes=limits[name][0], gaussian=limits[name][1]))
            for k in args.mixtures:
                tasks.append(dict(common, dataset=name, model='mdn', k=k,
                                  seed=seed, bayes=limits[name][0],
                                  gaussian=limits[name][1]))
    # Largest K first: the longest runs start early and the pool ends together.
    tasks.sort(key=lambda t: -t['k'])
    return tasks


def run_sweep(args, tasks, path):
    done = {row_key(row) for row in read_rows(path)}
    pending = [t for t in tasks if row_key(t) not in done]
    progress = Progress(len(tasks), len(tasks) - len(pending))
    if not pending:
        progress.close()
        return
    f, writer = open_csv(path)
    pool = None
    try:
        if args.jobs > 1 and len(pending) > 1:
            # One BLAS thread per worker: the workers are the parallelism.
            os.environ['OMP_NUM_THREADS'] = os.environ['OPENBLAS_NUM_THREADS'] = '1'
            pool = multiprocessing.get_context('spawn').Pool(
                min(args.jobs, len(pending)))
            results = pool.imap_unordered(run_task, pending)
        else:
            results = map(run_task, pending)
        for row in results:
            writer.writerow(row)
            f.flush()
            os.fsync(f.fileno())
            progress.step('{dataset} {model} K={k} seed={seed}'.format(**row))
        if pool is not None:
            pool.close()
    except KeyboardInterrupt:
        progress.close()
        sys.stderr.write('interrupted: finished runs are in {}; rerun the same '
                         'command to resume\n'.format(path))
        raise
    finally:
        if pool is not None:
            pool.terminate()
        f.close()
    progress.close()


def aggregate(rows, name, k, model='mdn', field='nll'):
    values = np.array([float(r[field]) for r in rows if r['dataset'] == name
                       and r['model'] == model and int(r['k']) == k])
    return values


def write_summary(args, rows, limits, path):
    lines = ['# Mixture-count sweep ({} direction)'.format(args.direction), '',
             'Held-out NLL in nats per point, in the target\'s original units, '
             'mean ± std over seeds on {} test points; the gap is to the exact '
             'Bayes limit H(target | input). Models chosen on {} validation '
             'points; trained on {}. Config `{}`: {}.'.format(
                 args.test_points, args.val_points, args.train_points,
                 config_id(args), ', '.join('{}={}'.format(k, getattr(args, k))
                                            for k in CONFIG_KEYS)), '']
    for name in args.dataset:
        bayes, gaussian = limits[name]
        lines += ['## {}'.format(name), '',
                  'Bayes limit {:.4f} nats; single-Gaussian limit {:.4f} nats.'
                  .format(bayes, gaussian), '',
                  '| K | runs | held-out NLL | gap to Bayes | gap to 1-Gaussian '
                  '| mixture-mean MSE | train s |',
                  '|---:|---:|---:|---:|---:|---:|---:|']
        best = None
        for k in args.mixtures:
            nll = aggregate(rows, name, k)
            if not len(nll):
                continue
            mse = aggregate(rows, name, k, field='mse')
            sec = aggregate(rows, name, k, field='train_seconds')
            lines.append('| {} | {} | {:.4f} ± {:.4f} | {:+.4f} | {:+.4f} | '
                         '{:.4g} | {:.1f} |'.format(
                             k, len(nll), nll.mean(), nll.std(), nll.mean() - bayes,
                             nll.mean() - gaussian, mse.mean(), sec.mean()))
            if best is None or nll.mean() < best[1]:
                best = (k, nll.mean())
        lines.append('')
        if best is not None:
            lines.append('Best K = {} (mean held-out NLL {:.4f}, gap {:+.4f} '
                         'nats).'.format(best[0], best[1], best[1] - bayes))
        mse = aggregate(rows, name, 0, model='mse', field='mse')
        if len(mse):
            lines.append('Least-squares baseline (LeastSquares, same net): '
                         'held-out MSE {:.4g} ± {:.2g} (target units squared), '
                         '{} runs.'.format(mse.mean(), mse.std(), len(mse)))
        lines.append('')
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        f.write('\n'.join(lines))
    os.replace(tmp, path)


def best_k(rows, name, mixtures):
    means = [(aggregate(rows, name, k).mean(), k) for k in mixtures
             if len(aggregate(rows, name, k))]
    return min(means)[1] if means else None


def write_figures(args, rows, limits):
    from toy import plots
    names = [n for n in args.dataset if len(aggregate(rows, n, args.mixtures[0]))
             or any(len(aggregate(rows, n, k)) for k in args.mixtures)]
    if not names:
        return
    fig, axes = plots.subplots(1, len(names), width=4.2, height=3.4)
    for ax, name in zip(axes[0], names):
        ks = [k for k in args.mixtures if len(aggregate(rows, name, k))]
        nll = [aggregate(rows, name, k) for k in ks]
        ax.errorbar(ks, [v.mean() for v in nll], yerr=[v.std() for v in nll],
                    fmt='o-', capsize=3, label='MDN (mean ± std over seeds)')
        ax.axhline(limits[name][0], color='k', ls='--', label='Bayes limit')
        ax.axhline(limits[name][1], color='tab:orange', ls=':',
                   label='single-Gaussian limit')
        ax.set(xscale='log', xlabel='mixture components K',
               ylabel='held-out NLL (nats per point)', title=name)
        ax.set_xticks(ks)
        ax.set_xticklabels([str(k) for k in ks])
        ax.minorticks_off()
    axes[0][0].legend(fontsize=8)
    plots.save(fig, os.path.join(args.out, 'nll_vs_k.png'))
    for name in names:
        dataset_figures(args, rows, limits, name, plots)


def saved_model(args, name, model, k, seed=0):
    task = dict(dataset=name, direction=args.direction, model=model, k=k,
                seed=seed, config=config_id(args), hidden=args.hidden,
                activation=args.activation)
    path = model_path(args.out, task)
    return load_model(path, task) if os.path.isfile(path) else (None, None)


def dataset_figures(args, rows, limits, name, plots):
    problem = datasets.PROBLEMS[name]
    data = splits(name, args.direction, 0, vars(args))
    x, t = data['train']
    # Every training point would bury the model's samples: show a random
    # subset (the draws are i.i.d., so the first ones are one).
    x_show, t_show = x[:3000], t[:3000]
    inverse = args.direction == 'inverse'
    x_label = '{} (input)'.format(problem.observed if inverse else problem.latent)
    t_label = '{} (target)'.format(problem.latent if inverse else problem.observed)
    x_grid = np.linspace(x.min(), x.max(), 300, dtype=np.float32)
    span = t.max() - t.min()
    t_grid = np.linspace(t.min() - 0.05 * span, t.max() + 0.05 * span, 300)
    rng = np.random.RandomState(0)
    prefix = os.path.join(args.out, '{}-{}'.format(name, args.direction))

    models = [(k,) + saved_model(args, name, 'mdn', k) for k in args.mixtures]
    models = [m for m in models if m[1] is not None]
    cols = min(5, len(models))
    if models:
        fig, axes = plots.subplots(-(-len(models) // cols), cols, width=3.0,
                                   height=2.6, sharex=True, sharey=True)
        for ax in axes.flat[len(models):]:
            ax.set_visible(False)
        for ax, (k, model, scaler) in zip(axes.flat, models):
            logits, mu, ln_var = model.mixture(scaler.inputs(x_grid[:, None]))
            samples = scaler.untarget(mdn.sample(logits, mu, ln_var, n=3, rng=rng))
            plots.scatter_data(ax, x_show, t_show)
            plots.scatter_samples(ax, x_grid, samples)
            nll = aggregate(rows, name, k)
            ax.set_title('K = {}: NLL {:.3f}'.format(k, nll.mean()))
        for ax in axes[-1]:
            ax.set_xlabel(x_label)
        for ax in axes[:, 0]:
            ax.set_ylabel(t_label)
        fig.suptitle('{}: data (grey) and 3 MDN samples per x (red), seed 0; '
                     'Bayes limit {:.3f} nats'.format(name, limits[name][0]))
        plots.save(fig, prefix + '-samples.png')

    k = best_k(rows, name, args.mixtures)
    model, scaler = saved_model(args, name, 'mdn', k) if k else (None, None)
    if model is not None:
        logits, mu, ln_var = model.mixture(scaler.inputs(x_grid[:, None]))
        mu = scaler.untarget(mu)
        ln_var = ln_var + 2 * np.log(scaler.y_scale)
        fig, axes = plots.subplots(2, 3, width=4.0, height=3.2)
        plots.mixture_panels(axes[0], x_grid, logits, mu, ln_var, x_label,
                             t_label, x=x_show, t=t_show)
        learned = plots.mixture_density(logits, mu, ln_var, t_grid)
        true = datasets.conditional_density(name, args.direction, x_grid, t_grid)
        vmax = np.percentile(true, 99)
        plots.density_image(axes[1][0], x_grid, t_grid, learned, x_label, t_label,
                            'learned p({}|{}), K = {}'.format(
                                t_label.split()[0], x_label.split()[0], k),
                            vmax=vmax)
        plots.density_image(axes[1][1], x_grid, t_grid, true, x_label, t_label,
                            'true p({}|{})'.format(t_label.split()[0],
                                                   x_label.split()[0]), vmax=vmax)
        ax = axes[1][2]
        for i, colour in zip(np.linspace(0.2, 0.8, 3) * (len(x_grid) - 1),
                             ('tab:blue', 'tab:green', 'tab:purple')):
            i = int(i)
            ax.plot(t_grid, true[i], color=colour, ls='--')
            ax.plot(t_grid, learned[i], color=colour,
                    label='{} = {:.2f}'.format(x_label.split()[0], x_grid[i]))
        ax.set(xlabel=t_label, ylabel='density', title='slices: learned (solid), '
               'true (dashed)')
        ax.legend(fontsize=8)
        fig.suptitle('{}: best K = {} (seed 0)'.format(name, k))
        plots.save(fig, prefix + '-best_k.png')

        baseline, b_scaler = saved_model(args, name, 'mse', 0)
        fig, axes = plots.subplots(1, 1, width=6.0, height=4.2)
        ax = axes[0][0]
        plots.scatter_data(ax, x_show, t_show)
        samples = scaler.untarget(mdn.sample(*model.mixture(
            scaler.inputs(x_grid[:, None])), n=3, rng=rng))
        plots.scatter_samples(ax, x_grid, samples,
                              label='MDN samples (K = {})'.format(k))
        if baseline is not None:
            with chainer.no_backprop_mode():
                fit_line = b_scaler.untarget(baseline.forward(
                    b_scaler.inputs(x_grid[:, None])).array)
            ax.plot(x_grid, fit_line, 'b-', lw=2, label='least-squares fit')
        ax.set(xlabel=x_label, ylabel=t_label,
               title='{}: least squares averages the branches; the MDN does not'
               .format(name))
        ax.legend(loc='best', fontsize=8, markerscale=3)
        plots.save(fig, prefix + '-mse_vs_mdn.png')


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    limits = {name: datasets.limits(name, args.direction) for name in args.dataset}
    path = os.path.join(args.out, CSV_NAME)
    tasks = make_tasks(args, limits)
    start = time.time()
    try:
        run_sweep(args, tasks, path)
    except KeyboardInterrupt:
        return 130
    config = config_id(args)
    rows = [r for r in read_rows(path) if r['config'] == config
            and r['direction'] == args.direction and r['dataset'] in args.dataset
            and (r['model'] == 'mse' or int(r['k']) in args.mixtures)
            and int(r['seed']) < args.seeds]
    write_summary(args, rows, limits, os.path.join(args.out, 'summary.md'))
    if not args.no_figures:
        write_figures(args, rows, limits)
    print('{} rows in {}; summary.md{} written in {:.0f} s'.format(
        len(rows), path, '' if args.no_figures else ' and figures',
        time.time() - start))
    return 0


if __name__ == '__main__':
    sys.exit(main())
