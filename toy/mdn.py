"""Mixture Density Network in Chainer, after the WorldModels toy/mdn.py.

p(y|x) = sum_k pi_k(x) N(y; mu_k(x), diag(sigma_k^2(x))), trained by its
negative log-likelihood (Bishop 1994). `python toy/mdn.py` reruns the
published toy experiment (see README.md for what differs from it on purpose).
"""
import csv
import json
import os
import platform
import sys
import time

import numpy as np

import toy  # noqa: F401  (patches NumPy/Python for chainer before it is imported)
import chainer
import chainer.functions as F
from chainer import backend

from toy import cli, datasets, files, loss, mixture, nets, preprocess


#: Training losses by name: fused (default; log space with closed-form
#: gradients), log space by autograd, and the post's density form.
LOSSES = {'fused': loss.nll_fused, 'logspace': loss.nll_logspace,
          'density': loss.nll_density}


def unpack(h, k, d, ln_var_min=None):
    """The mixture of a packed head output h (N, K (1 + 2D)), laid out as
    [logits (K) | mu (K D) | ln_var (K D)] per row: logits (N, K), mu
    (N, K, D), ln_var (N, K, D), as Variables, ln_var floored at ln_var_min
    (None: not floored; see `MDN`)."""
    logits, mu, ln_var = F.split_axis(h, (k, k + k * d), axis=1)
    ln_var = F.reshape(ln_var, (-1, k, d))
    if ln_var_min is not None:
        ln_var = loss.floor_ln_var(ln_var, ln_var_min)
    return logits, F.reshape(mu, (-1, k, d)), ln_var


def quantile_start_loss(logits, mu, ln_var, y):
    """The quantile-start objective (`MDN.quantile_start`) of a mixture
    logits (N, K), mu (N, K, D), ln_var (N, K, D), already floored (`unpack`),
    and targets y (N, D), a Variable."""
    k, d = mu.shape[1:]
    xp = backend.get_array_module(mu)
    tau = xp.asarray((np.arange(k) + 0.5) / k, dtype=mu.dtype)[:, None]
    r = y[:, None, :] - mu                                                 # (N, K, D)
    pinball = F.sum(F.maximum(tau * r, (tau - 1) * r)) / (len(y) * d)
    # ln_var is floored already (unpack): the NLL must not floor it again.
    return pinball + loss.nll_fused(logits, mu.array, ln_var, y)


class MDN(nets.Perceptron):
    """Gaussian mixture with K components and diagonal covariance over y (N, D).

    ONE Linear head emits K * (1 + 2D) numbers per input (K * 3 when D = 1):
    K mixing logits, K*D means and K*D log-variances. `activation='none'`
    reproduces the published net, whose hidden layer has no nonlinearity.
    `ln_var_min` (default None: off, as published) floors the log-variances
    smoothly, ln_var = logaddexp(head output, ln_var_min), in the loss and in
    every mixture the model reports (see `loss.nll_fused`).
    """

    def __init__(self, in_dim=1, out_dim=1, hidden=256, k=5, activation='none',
                 nll='fused', rng=None, ln_var_min=None):
        k, out_dim = preprocess.positive_int('k', k), preprocess.positive_int('out_dim', out_dim)
        if nll not in LOSSES:
            raise ValueError('nll must be one of {}, not {!r}'.format(
                ', '.join(sorted(LOSSES)), nll))
        ln_var_min = loss.check_ln_var_min(ln_var_min)
        super().__init__(in_dim, hidden, self.head_size(k, out_dim), activation,
                         rng)
        self.k, self.out_dim, self.nll = k, out_dim, LOSSES[nll]
        self.ln_var_min = ln_var_min

    @staticmethod
    def head_size(k, d):
        """Numbers the head emits per input: K logits, K*D means, K*D ln_var."""
        return k * (1 + 2 * d)

    def forward(self, x):
        """-> logits (N, K), mu (N, K, D), ln_var (N, K, D), as Variables."""
        return unpack(self.features(x), self.k, self.out_dim, self.ln_var_min)

    def objective(self, x, y):
        """Mean NLL of y (N, D) given x (N, in_dim), nats per point, a Variable."""
        if self.nll is loss.nll_fused:
            # The fused node reads the head's packed output in place, which
            # saves the split and reshape nodes (and, in backward, the concat):
            # at small batches a step's cost is Chainer's bookkeeping per node.
            return loss.nll_fused_packed(self.features(x), y, self.k,
                                         ln_var_min=self.ln_var_min)
        return self.nll(*self.forward(x), y)

    def quantile_start(self, x, y):
        """The objective of the first epochs of a quantile start
        (train_custom_loop.fit's `quantile_start`), a Variable: each mean
        mu_k(x) is fitted to the tau_k = (k + 1/2) / K quantile of y given x
        by the pinball loss, sum_k mean_(n,d) rho_tau_k(y - mu_k) with
        rho_tau(r) = max(tau r, (tau - 1) r), and the mixing logits and
        log-variances to the NLL with those means held.

        Why: a component whose slice of the targets is empty at some inputs
        has almost no weight or density there, so it gets no gradient there
        and the NLL never moves it to data it cannot see (worldmodels, K = 2:
        the second component dies where the upper branch ends, and one
        Gaussian spans both lower branches). Conditional quantiles have no
        such trap: the pinball loss pulls every mean into its input's data.
        """
        return quantile_start_loss(*self.forward(x), y)

    def spread_components(self, y, shrink=0.1):
        """Start the K components side by side over the targets y (N, D), at
        every input, instead of wherever a random head puts them.

        A component whose weight or density is small at an input gets almost
        no gradient there, so the components a random head starts with keep
        the inputs where they start: the inverse problems' outer branches end
        up fitted by one or two Gaussians (results/gap, README). Here
        component k starts centred on the (k + 1/2) / K quantile of each
        target column, with a standard deviation of the column's range / K;
        the head's weights into the means and log-variances are multiplied
        by `shrink`, so each component starts nearly the same at every input
        and is near the data of every input whose targets reach its slice.
        The mixing logits keep their initialisation. Call it before training,
        with the (standardised) training targets.
        """
        k, d = self.k, self.out_dim
        y = backend.CpuDevice().send(preprocess.check_data(y, names=('y',)))
        if y.shape[1] != d:
            raise ValueError('y has {} column(s) but the model has out_dim = {}: give '
                             'y of shape (N, {})'.format(y.shape[1], d, d))
        q = np.quantile(y, (np.arange(k) + 0.5) / k, axis=0)              # (K, D)
        ln_var = 2 * np.log(np.maximum(np.ptp(y, axis=0), 1e-6) / k)      # (D,)
        bias = np.concatenate([np.zeros(k), q.ravel(), np.tile(ln_var, k)])
        W, b = self.head.W.array, self.head.b.array
        W[k:] *= shrink
        b[...] = self.device.send(bias.astype(b.dtype))

    def mixture(self, x):
        """Mixture parameters as arrays on the model's device, without a graph.

        x: (N, in_dim) array, NumPy or CuPy (float64 is cast to float32).
        Refuses NaN, inf and wrong shapes with a ValueError (`check_data`).
        """
        x = self.device.send(self.check_data(x))
        with chainer.no_backprop_mode(), chainer.using_config('train', False):
            return tuple(v.array for v in self.forward(x))

    def sample(self, x, n=1, temperature=1.0, rng=None):
        """n draws of y per input row: (N, n, D). See `sample`."""
        return mixture.sample(*self.mixture(x), n=n, temperature=temperature, rng=rng)

    def point_estimate(self, x, how='mode'):
        """One y per input, (N, D): the mean of the most probable component
        (how='mode') or the mixture's mean E[y|x] (how='mean')."""
        logits, mu = self.mixture(x)[:2]
        return mixture.POINT_ESTIMATES[how](logits, mu)


def make_parser():
    parser = cli.ArgumentParser(
        description='Rerun the published WorldModels toy MDN and its '
                    'least-squares baseline.')
    cli.add_training_arguments(
        parser, epoch=2000, batchsize=100, k=5, hidden=[256], activation='none',
        train_points=500, test_points=10000, seed=0,
        out=os.path.join('results', 'toy'))
    parser.add_argument('--loss', choices=sorted(LOSSES), default='fused',
                        help='training loss form')
    parser.add_argument('--frequency', '-f', type=cli.positive, default=None,
                        help='snapshot every this many epochs (default: %(default)s, '
                        'which is --epoch / 10)')
    parser.add_argument('--resume', '-r', default=None,
                        help='resume the MDN from this snapshot file')
    return parser


#: Options that define a run: a snapshot records them and --resume refuses
#: others (train.train adds seed, batchsize and the number of points).
RUN_OPTIONS = ('activation', 'loss', 'hidden', 'k')


def memory_needed(args):
    """Rough upper estimate of the bytes a run takes, before it allocates any:
    the MDN and its least-squares baseline (cli.training_bytes), over the
    largest set of rows at once (a batch, the held-out points in one pass,
    or the figures' grid)."""
    widths = nets.hidden_widths(args.hidden)
    rows = max(args.batchsize, args.test_points, args.train_points)
    points = args.train_points + args.test_points
    return (cli.training_bytes(widths, MDN.head_size(args.k, 1), rows, points)
            + cli.training_bytes(widths, 1, rows, points))


def check_args(parser, args):
    """Validate what argparse cannot, before any work or writing; resolve the device."""
    if args.batchsize > args.train_points:
        parser.error('--batchsize {} is larger than the {} training points: use '
                     'at most --batchsize {}'.format(args.batchsize, args.train_points,
                                                     args.train_points))
    args.hidden = nets.hidden_option(args.hidden)
    if args.resume is not None and not os.path.isfile(args.resume):
        parser.error('--resume {}: not a file'.format(args.resume))
    return cli.check_resources(parser, args, memory_needed, '--hidden, -k, '
                               '--train-points, --test-points or --batchsize')


def versions():
    import matplotlib
    found = {'python': platform.python_version(), 'numpy': np.__version__,
             'chainer': chainer.__version__, 'matplotlib': matplotlib.__version__}
    if chainer.backends.cuda.available:
        found['cupy'] = chainer.backends.cuda.cupy.__version__
    return found


def save_figures(out, x, y, x_grid, y_least_squares, y_mdn):
    """The published three figures: data, least-squares fit, MDN samples."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    figures = [('mdn-data_only.png', 'Training data', None),
               ('mdn-linear_with_preds.png',
                'Least-squares baseline: predicted y', y_least_squares),
               ('mdn-with_preds.png', 'MDN: one sample of y per x', y_mdn)]
    for filename, title, pred in figures:
        fig, ax = plt.subplots(figsize=(6.4, 4.8))
        ax.plot(x, y, 'b.', label='data')
        if pred is not None:
            ax.plot(x_grid, pred, 'r.', label='model')
            ax.legend(loc='upper right')
        ax.set(ylim=(-0.1, 1.1), xlabel='input x', ylabel='target y',
               title=title)
        fig.savefig(os.path.join(out, filename), dpi=100)
        plt.close(fig)


#: Held-out points the loss curves are measured on.
CURVE_POINTS = 2000

#: The published configuration over seeds (experiments/published_seeds.py):
#: how often a run collapses, quoted when one does.
SEED_RUNS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         'results', 'published', 'runs.csv')


def collapse_note(nll_test, dead, k, runs=SEED_RUNS):
    """One line when the fit collapsed or left components dead, else None.

    Collapsed: the held-out NLL is worse than the best single Gaussian per x
    could do, a poor optimum that the published configuration ends in for
    some seeds and some CPUs' rounding. Dead: a component whose weight is
    below mixture.DEAD at every training input. The line says how often the
    committed seed runs of the published configuration do the same.
    """
    gaussian = datasets.gaussian_limit('worldmodels')
    collapsed = nll_test > gaussian
    if not (collapsed or dead):
        return None
    seen = _seed_runs(runs)
    if collapsed:
        note = ('this run collapsed: its held-out NLL {:.3f} is worse than the best '
                'single Gaussian per x ({:.3f} nats)'.format(nll_test, gaussian))
        often = sum(nll > gaussian for nll, _ in seen)
    else:
        note = ('{} of the {} components are dead (weight below {:g} at every x), '
                'so the mixture uses {}'.format(dead, k, mixture.DEAD, k - dead))
        often = sum(d > 0 for _, d in seen)
    if seen:
        note += '; {} of {} seeds of the published configuration do so ({})'.format(
            often, len(seen), os.path.relpath(runs))
    return note + ('; try another --seed' if collapsed else '')


def _seed_runs(path):
    """[(nll_test, dead components)] of our runs in the seed table, [] if none."""
    try:
        with open(path) as f:
            return [(float(r['nll_test']), int(r['dead_components']))
                    for r in csv.DictReader(f) if r['implementation'] == 'ours']
    except (OSError, KeyError, ValueError):
        return []


def options(**changes):
    """The published run's options, as `python toy/mdn.py` parses and checks
    them, with `changes` (option=value: seed=3, out='...'), for `run`.
    ValueError for a name that is not an option."""
    parser = make_parser()
    args = parser.parse_args([])
    unknown = sorted(set(changes) - set(vars(args)))
    if unknown:
        raise ValueError('toy/mdn.py has no option {}'.format(', '.join(unknown)))
    vars(args).update(changes)
    return check_args(parser, args)


def run(args):
    """The published run with checked `args` (`options`, or the command
    line): trains the MDN and its least-squares baseline, writes the figures,
    logs and metrics.json into args.out and returns the metrics. Raises
    train.SnapshotMismatch for a --resume that cannot continue, Diverged for
    a run whose loss became non-finite and ValueError for a non-finite metric."""
    # Here, not at the top: the Link, imported as a library, needs no training code.
    from toy import train
    from toy.train_custom_loop import heldout_nll
    device = args.device
    start = time.time()
    seeds = np.random.SeedSequence(args.seed).spawn(4)
    (x, y), (x_test, y_test) = datasets.train_test('worldmodels', seeds,
                                                  args.train_points, args.test_points)

    model = MDN(hidden=args.hidden, k=args.k, activation=args.activation,
                nll=args.loss, rng=np.random.default_rng(seeds[2]))
    least_squares = nets.LeastSquares(hidden=args.hidden,
                                      rng=np.random.default_rng(seeds[3]))
    # The curves' held-out loss is measured 100 times a run: on a fifth of
    # the held-out points, as a full pass costs as much as ~15% of training.
    curve = (x_test[:CURVE_POINTS], y_test[:CURVE_POINTS])
    mdn_start = time.time()
    # The snapshot to resume from is checked whole before anything is
    # written; the snapshots this run writes then replace the old ones.
    train.train(model, x, y, epochs=args.epoch, batchsize=args.batchsize,
                device=device, seed=args.seed, out=args.out, name='mdn',
                frequency=args.frequency, resume=args.resume,
                options={key: getattr(args, key) for key in RUN_OPTIONS},
                heldout=curve, loss_label='NLL, nats per point')
    mdn_seconds = time.time() - mdn_start
    train.train(least_squares, x, y, epochs=args.epoch, batchsize=args.batchsize,
                device=device, seed=args.seed, out=args.out, name='least_squares',
                frequency=args.frequency,
                options={'hidden': args.hidden, 'activation': 'none'},
                heldout=curve, loss_label='MSE, (units of y)²')

    x_grid = np.linspace(x.min(), x.max(), args.train_points,
                         dtype=np.float32).reshape(-1, 1)
    to_cpu = chainer.backend.CpuDevice().send
    with chainer.no_backprop_mode():
        y_least_squares = to_cpu(least_squares.forward(device.send(x_grid)).array)
        mse = {name: float(F.mean_squared_error(
            least_squares.forward(device.send(a)), device.send(b)).array)
            for name, (a, b) in {'train': (x, y), 'test': (x_test, y_test)}.items()}
    y_mdn = to_cpu(model.sample(x_grid, rng=model.xp.random.RandomState(args.seed)))
    save_figures(args.out, x, y, x_grid, y_least_squares, y_mdn[:, 0])
    pi_min, pi_max = mixture.weight_range(mixture.log_weights(
        to_cpu(model.mixture(x_grid)[0])))

    config = cli.recorded_options(args, 'resume')
    config['resumed'] = args.resume is not None
    config['device'] = str(device)
    metrics = {
        'nll_train': heldout_nll(model, x, y),
        'nll_test': heldout_nll(model, x_test, y_test),
        'nll_units': 'nats per point, mean over points',
        'pi_min': pi_min.tolist(),
        'pi_max': pi_max.tolist(),
        'pi_over': 'the training inputs\' range, {} points'.format(args.train_points),
        'dead_components': int((pi_max < mixture.DEAD).sum()),
        'least_squares_mse_train': mse['train'],
        'least_squares_mse_test': mse['test'],
        'seed': args.seed,
        'config': config,
        'versions': versions(),
        'mdn_train_seconds': round(mdn_seconds, 2),
        'wall_seconds': round(time.time() - start, 2),
    }
    files.write_json(os.path.join(args.out, 'metrics.json'), metrics)
    return metrics


def main(argv=None):
    from toy import train
    parser = make_parser()
    args = check_args(parser, parser.parse_args(argv))
    try:
        metrics = run(args)
    except train.SnapshotMismatch as e:
        parser.error('--resume: {}'.format(e))
    except (train.Diverged, ValueError) as e:   # ValueError: a NaN or inf metric
        parser.exit(1, '{}: error: {}\n'.format(parser.prog, e))
    print(json.dumps({k: metrics[k] for k in ('nll_train', 'nll_test',
                                              'least_squares_mse_test',
                                              'wall_seconds')}))
    note = collapse_note(metrics['nll_test'], metrics['dead_components'], args.k)
    if note:
        print('{}: {}'.format(parser.prog, note))


if __name__ == '__main__':
    sys.exit(main())
