"""Mixture Density Network in Chainer, after the WorldModels toy/mdn.py.

p(y|x) = sum_k pi_k(x) N(y; mu_k(x), diag(sigma_k^2(x))), trained by its
negative log-likelihood (Bishop 1994). `python toy/mdn.py` reruns the
published toy experiment (see README.md for what differs from it on purpose).
"""
import json
import math
import os
import platform
import sys
import time

import numpy as np

import toy  # noqa: F401  (patches NumPy/Python for chainer before it is imported)
import chainer
import chainer.functions as F
import chainer.links as L
from chainer import backend, initializers

from toy import cli, datasets, files, loss, train

ACTIVATIONS = {'none': F.identity, 'tanh': F.tanh, 'relu': F.relu,
               'sigmoid': F.sigmoid}

#: Training losses by name: fused (default; log space with closed-form
#: gradients), log space by autograd, and the post's density form.
LOSSES = {'fused': loss.nll_fused, 'logspace': loss.nll_logspace,
          'density': loss.nll_density}


class OneHiddenLayer(chainer.Chain):
    """x (N, in_dim) -> Linear -> activation -> Linear -> (N, n_out)."""

    def __init__(self, in_dim, hidden, n_out, activation, rng):
        super().__init__()
        self.in_dim, self.activation = in_dim, activation
        with self.init_scope():
            self.hidden = L.Linear(in_dim, hidden,
                                   initialW=initializers.LeCunNormal(rng=rng))
            self.head = L.Linear(hidden, n_out,
                                 initialW=initializers.LeCunNormal(rng=rng))

    def hidden_output(self, x):
        h = self.hidden(x)
        # F.identity would add a node, forward and backward, to every step.
        return h if self.activation == 'none' else ACTIVATIONS[self.activation](h)

    def features(self, x):
        return self.head(self.hidden_output(x))

    def check_data(self, x, y=None):
        """x (N, in_dim) and y (N, out_dim) as float32 arrays (see train.check_data),
        or ValueError naming the argument and what to fix."""
        checked = train.check_data(x, y)
        for a, name, dim in zip(checked if y is not None else (checked,),
                                ('x', 'y'), ('in_dim', 'out_dim')):
            if a.shape[1] != getattr(self, dim):
                raise ValueError('{} has {} column(s) but the model has {} = {}: '
                                 'give {} of shape (N, {})'.format(
                                     name, a.shape[1], dim, getattr(self, dim),
                                     name, getattr(self, dim)))
        return checked


class MDN(OneHiddenLayer):
    """Gaussian mixture with K components and diagonal covariance over y (N, D).

    ONE Linear head emits K * (1 + 2D) numbers per input (K * 3 when D = 1):
    K mixing logits, K*D means and K*D log-variances. `activation='none'`
    reproduces the published net, whose hidden layer has no nonlinearity.
    """

    def __init__(self, in_dim=1, out_dim=1, hidden=256, k=5, activation='none',
                 nll='fused', rng=None):
        super().__init__(in_dim, hidden, k * (1 + 2 * out_dim), activation, rng)
        self.k, self.out_dim, self.nll = k, out_dim, LOSSES[nll]

    def forward(self, x):
        """-> logits (N, K), mu (N, K, D), ln_var (N, K, D), as Variables."""
        k, d = self.k, self.out_dim
        logits, mu, ln_var = F.split_axis(self.features(x), (k, k + k * d), axis=1)
        return logits, F.reshape(mu, (-1, k, d)), F.reshape(ln_var, (-1, k, d))

    def loss(self, x, y):
        """Mean NLL of y (N, D) given x (N, in_dim), nats per point, a Variable.

        The data are checked (`check_data`) unless chainer.config.type_check
        is off: the training loops check the whole data once and run their
        steps without, as a check per step would cost a pass over the batch
        and, on a GPU, a synchronisation.
        """
        if chainer.config.type_check:
            x, y = self.check_data(x, y)
        if self.nll is loss.nll_fused:
            # The fused node reads the head's packed output in place, which
            # saves the split and reshape nodes (and, in backward, the concat):
            # at small batches a step's cost is Chainer's bookkeeping per node.
            nll = loss.nll_fused_packed(self.features(x), y, self.k)
        else:
            nll = self.nll(*self.forward(x), y)
        chainer.report({'loss': nll}, self)
        return nll

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
        return sample(*self.mixture(x), n=n, temperature=temperature, rng=rng)


class LeastSquares(OneHiddenLayer):
    """The baseline: the published `Linear` model, trained by mean squared error."""

    def __init__(self, in_dim=1, out_dim=1, hidden=256, activation='none',
                 rng=None):
        super().__init__(in_dim, hidden, out_dim, activation, rng)
        self.out_dim = out_dim

    def forward(self, x):
        return self.features(x)

    def loss(self, x, y):
        """Mean squared error, a Variable; data checked as in `MDN.loss`."""
        if chainer.config.type_check:
            x, y = self.check_data(x, y)
        mse = F.mean_squared_error(self.forward(x), y)
        chainer.report({'loss': mse}, self)
        return mse


def sample(logits, mu, ln_var, n=1, temperature=1.0, rng=None):
    """Draw n samples per row from the mixture, vectorised: (N, n, D).

    logits (N, K), mu and ln_var (N, K, D) are NumPy or CuPy arrays; `rng`
    is a RandomState of the same array module (default: its global one).

    The temperature tau > 0 sharpens or flattens the draw: the component is
    chosen with pi_k^(1/tau) / sum_j pi_j^(1/tau) (softmax of logits / tau)
    and its variance is scaled to tau * sigma_k^2. tau = 1 samples the model;
    tau -> 0 tends to the mean of the most probable component; tau > 1
    spreads the samples over more components and wider ones.
    """
    if not (np.isfinite(temperature) and temperature > 0):
        raise ValueError('temperature must be a finite number > 0, got {}'
                         .format(temperature))
    xp = backend.get_array_module(logits)
    rng = xp.random if rng is None else rng
    n_rows, k = logits.shape
    # Component-major (K, N): reductions over K then run along contiguous
    # rows of length N; along a last axis of length K (a strided view of the
    # head's output) NumPy's max, sum and cumsum are ~10x slower.
    z = xp.ascontiguousarray(logits.T)
    z /= temperature
    z -= z.max(axis=0)
    xp.exp(z, out=z)
    cdf = xp.cumsum(z, axis=0, out=z)
    cdf /= cdf[-1]
    # Inverse-CDF draw of the component: one uniform per sample; comparing
    # with all but the last edge keeps k < K whatever the rounding of cdf.
    u = rng.uniform(size=(n_rows, n)).astype(cdf.dtype)
    comp = xp.zeros((n_rows, n), dtype=np.intp)
    for edge in cdf[:-1]:
        comp += u > edge[:, None]
    rows = xp.arange(n_rows)[:, None]
    # y = mu + sqrt(tau) sigma eps, built in place in one (N, n, D) array.
    y = xp.exp(0.5 * ln_var[rows, comp])
    y *= rng.standard_normal(size=y.shape).astype(mu.dtype)
    y *= math.sqrt(temperature)  # a Python float keeps float32 (NEP 50)
    y += mu[rows, comp]
    return y


def mixture_mean(logits, mu):
    """E[y|x] = sum_k pi_k mu_k: (N, D). Arrays as in `sample`."""
    xp = backend.get_array_module(logits)
    z = xp.exp(logits - logits.max(axis=1, keepdims=True))
    return ((z / z.sum(axis=1, keepdims=True))[:, :, None] * mu).sum(axis=1)


def most_probable_mean(logits, mu):
    """mu of the component with the largest pi_k: (N, D)."""
    xp = backend.get_array_module(logits)
    return mu[xp.arange(len(logits)), logits.argmax(axis=1)]


def heldout_nll(model, x, y):
    """Mean negative log-likelihood of (x, y) under `model`, in nats per point.

    x (N, in_dim), y (N, D): checked as in `MDN.loss` (ValueError)."""
    x, y = model.check_data(x, y)
    logits, mu, ln_var = model.mixture(x)
    return float(loss.nll_logspace(logits, mu, ln_var, model.device.send(y)).array)


def make_parser():
    parser = cli.ArgumentParser(
        description='Rerun the published WorldModels toy MDN and its '
                    'least-squares baseline.')
    cli.add_device_arguments(parser)
    parser.add_argument('--epoch', '-e', type=cli.positive, default=2000,
                        help='epochs of training (default: 2000)')
    parser.add_argument('--batchsize', '-b', type=cli.positive, default=100,
                        help='minibatch size (default: 100)')
    parser.add_argument('--mixtures', '-k', type=cli.positive, default=5,
                        help='mixture components K (default: 5)')
    parser.add_argument('--hidden', type=cli.positive, default=256,
                        help='hidden units (default: 256)')
    parser.add_argument('--activation', choices=sorted(ACTIVATIONS),
                        default='none',
                        help='hidden activation; none is the published net '
                             '(default: none)')
    parser.add_argument('--loss', choices=sorted(LOSSES), default='fused',
                        help='training loss form (default: fused)')
    parser.add_argument('--points', type=cli.positive, default=500,
                        help='training points (default: 500)')
    parser.add_argument('--test-points', type=cli.positive, default=10000,
                        help='fresh held-out points for the NLL (default: 10000)')
    parser.add_argument('--seed', type=cli.seed, default=0,
                        help='seed of data, initial weights and shuffling '
                             '(default: 0)')
    parser.add_argument('--frequency', '-f', type=cli.positive, default=None,
                        help='snapshot every this many epochs (default: '
                             'epoch / 10)')
    parser.add_argument('--out', '-o', default=os.path.join('results', 'toy'),
                        help='output directory (default: results/toy)')
    parser.add_argument('--resume', '-r', default=None,
                        help='resume the MDN from this snapshot file')
    return parser


#: Options that define a run: a snapshot records them and --resume refuses
#: others (train.train adds seed, batchsize and the number of points).
RUN_OPTIONS = ('activation', 'loss', 'hidden', 'mixtures')


def memory_needed(args):
    """Rough upper estimate of the bytes a run takes, before it allocates any.

    Parameters of both nets with their gradients and Adam's two moments, the
    data, and the largest set of activations at once: a training batch, the
    held-out evaluation (all test points in one pass) or the figures' grid,
    each a hidden layer plus the mixture's (N, K) arrays and their temporaries.
    """
    k, hidden = args.mixtures, args.hidden
    params = (2 * hidden + (hidden + 1) * 3 * k) + (3 * hidden + 1)
    rows = max(args.batchsize, args.test_points, args.points)
    return 4 * (4 * params + 2 * (args.points + args.test_points)
                + rows * 2 * (hidden + 8 * 3 * k))


def check_args(parser, args):
    """Validate what argparse cannot, before any work or writing; resolve the device."""
    if args.batchsize > args.points:
        parser.error('--batchsize {} is larger than the {} training points: use '
                     'at most --batchsize {}'.format(args.batchsize, args.points,
                                                     args.points))
    cli.check_out(parser, args.out)
    if args.resume is not None and not os.path.isfile(args.resume):
        parser.error('--resume {}: not a file'.format(args.resume))
    args.device = cli.get_device(parser, args.device)
    cli.check_memory(parser, memory_needed(args), args.device,
                     '--hidden, --mixtures/-k, --points, --test-points or --batchsize')
    return args


def versions():
    import matplotlib
    found = {'python': platform.python_version(), 'numpy': np.__version__,
             'chainer': chainer.__version__, 'matplotlib': matplotlib.__version__}
    if chainer.backends.cuda.available:
        found['cupy'] = chainer.backends.cuda.cupy.__version__
    return found


def save_figures(out, x, y, x_grid, y_linear, y_mdn):
    """The published three figures: data, least-squares fit, MDN samples."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    figures = [('mdn-data_only.png', 'Training data', None),
               ('mdn-linear_with_preds.png',
                'Least-squares baseline: predicted y', y_linear),
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


def main(argv=None):
    parser = make_parser()
    args = check_args(parser, parser.parse_args(argv))
    device = args.device
    start = time.time()
    seeds = np.random.SeedSequence(args.seed).spawn(4)
    x, y = datasets.worldmodels(args.points, np.random.default_rng(seeds[0]))
    x_test, y_test = datasets.worldmodels(args.test_points,
                                          np.random.default_rng(seeds[1]))

    model = MDN(hidden=args.hidden, k=args.mixtures, activation=args.activation,
                nll=args.loss, rng=np.random.default_rng(seeds[2]))
    baseline = LeastSquares(hidden=args.hidden,
                            rng=np.random.default_rng(seeds[3]))
    mdn_start = time.time()
    try:
        # The snapshot to resume from is checked whole before anything is
        # written; the snapshots this run writes then replace the old ones.
        train.train(model, x, y, epochs=args.epoch, batchsize=args.batchsize,
                    device=device, seed=args.seed, out=args.out, name='mdn',
                    frequency=args.frequency, resume=args.resume,
                    options={key: getattr(args, key) for key in RUN_OPTIONS})
        mdn_seconds = time.time() - mdn_start
        train.train(baseline, x, y, epochs=args.epoch, batchsize=args.batchsize,
                    device=device, seed=args.seed, out=args.out, name='linear',
                    frequency=args.frequency,
                    options={'hidden': args.hidden, 'activation': 'none'})
    except train.SnapshotMismatch as e:
        parser.error('--resume: {}'.format(e))
    except train.Diverged as e:
        parser.exit(1, '{}: {}\n'.format(parser.prog, e))

    x_grid = np.linspace(x.min(), x.max(), args.points,
                         dtype=np.float32).reshape(-1, 1)
    to_cpu = chainer.backend.CpuDevice().send
    with chainer.no_backprop_mode():
        y_linear = to_cpu(baseline.forward(device.send(x_grid)).array)
        mse = {name: float(F.mean_squared_error(
            baseline.forward(device.send(a)), device.send(b)).array)
            for name, (a, b) in {'train': (x, y), 'test': (x_test, y_test)}.items()}
    y_mdn = to_cpu(model.sample(x_grid, rng=model.xp.random.RandomState(args.seed)))
    save_figures(args.out, x, y, x_grid, y_linear, y_mdn[:, 0])

    config = {k: v for k, v in vars(args).items()
              if k not in ('device', 'out', 'resume')}
    config['resumed'] = args.resume is not None
    config['device'] = str(device)
    metrics = {
        'nll_train': heldout_nll(model, x, y),
        'nll_test': heldout_nll(model, x_test, y_test),
        'nll_units': 'nats per point, mean over points',
        'baseline_mse_train': mse['train'],
        'baseline_mse_test': mse['test'],
        'seed': args.seed,
        'config': config,
        'versions': versions(),
        'mdn_train_seconds': round(mdn_seconds, 2),
        'wall_seconds': round(time.time() - start, 2),
    }
    try:
        files.write_json(os.path.join(args.out, 'metrics.json'), metrics)
    except ValueError as e:     # a NaN or inf metric: strict JSON has none
        parser.exit(1, '{}: error: {}\n'.format(parser.prog, e))
    print(json.dumps({k: metrics[k] for k in ('nll_train', 'nll_test',
                                              'baseline_mse_test',
                                              'wall_seconds')}))


if __name__ == '__main__':
    sys.exit(main())
