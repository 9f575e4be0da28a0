"""Mixture Density Network in Chainer, after the WorldModels toy/mdn.py.

p(y|x) = sum_k pi_k(x) N(y; mu_k(x), diag(sigma_k^2(x))), trained by its
negative log-likelihood (Bishop 1994). `python toy/mdn.py` reruns the
published toy experiment (see README.md for what differs from it on purpose).
"""
import collections.abc
import csv
import json
import math
import numbers
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

from toy import cli, datasets, files, loss, mixture, train


def silu(h):
    """SiLU (swish with beta 1), h sigmoid(h): Chainer 7 has only the
    learned-beta F.swish, which would add a parameter."""
    return h * F.sigmoid(h)


ACTIVATIONS = {'none': F.identity, 'tanh': F.tanh, 'relu': F.relu,
               'sigmoid': F.sigmoid, 'silu': silu}

#: Training losses by name: fused (default; log space with closed-form
#: gradients), log space by autograd, and the post's density form.
LOSSES = {'fused': loss.nll_fused, 'logspace': loss.nll_logspace,
          'density': loss.nll_density}


def hidden_widths(hidden):
    """hidden: units of one hidden layer (an int) or of each layer (a
    sequence of ints) -> a list of widths; ValueError if not positive ints."""
    widths = ([hidden] if isinstance(hidden, (int, np.integer)) else list(hidden)
              if isinstance(hidden, collections.abc.Iterable) else None)
    if not widths or not all(isinstance(w, (int, np.integer))
                             and not isinstance(w, bool) and w > 0 for w in widths):
        raise ValueError('hidden must be a positive int or a non-empty sequence of '
                         'them, not {!r}'.format(hidden))
    return [int(w) for w in widths]


def hidden_option(widths):
    """The `hidden` value to record for these widths: an int for one layer,
    so that files written before deeper nets existed still match."""
    widths = hidden_widths(widths)
    return widths[0] if len(widths) == 1 else widths


class Perceptron(chainer.Chain):
    """x (N, in_dim) -> (Linear -> activation) per hidden layer -> Linear -> (N, n_out).

    hidden: an int (one layer, as published) or a list of widths. The layers
    are called hidden, hidden2, hidden3, ..., so a one-layer model keeps the
    parameter names its saved files use.
    """

    def __init__(self, in_dim, hidden, n_out, activation, rng):
        super().__init__()
        in_dim = train.positive_int('in_dim', in_dim)
        widths = hidden_widths(hidden)
        if activation not in ACTIVATIONS:
            raise ValueError('activation must be one of {}, not {!r}'.format(
                ', '.join(sorted(ACTIVATIONS)), activation))
        self.in_dim, self.activation = in_dim, activation
        self.layers = ['hidden'] + ['hidden{}'.format(i)
                                    for i in range(2, len(widths) + 1)]
        with self.init_scope():
            for name, n_in, n in zip(self.layers, [in_dim] + widths, widths):
                setattr(self, name, L.Linear(
                    n_in, n, initialW=initializers.LeCunNormal(rng=rng)))
            self.head = L.Linear(widths[-1], n_out,
                                 initialW=initializers.LeCunNormal(rng=rng))

    def hidden_output(self, x):
        h = x
        for name in self.layers:
            h = getattr(self, name)(h)
            # F.identity would add a node, forward and backward, to every step.
            if self.activation != 'none':
                h = ACTIVATIONS[self.activation](h)
        return h

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


class MDN(Perceptron):
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
        k, out_dim = train.positive_int('k', k), train.positive_int('out_dim', out_dim)
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
        k, d = self.k, self.out_dim
        logits, mu, ln_var = F.split_axis(self.features(x), (k, k + k * d), axis=1)
        ln_var = F.reshape(ln_var, (-1, k, d))
        if self.ln_var_min is not None:
            ln_var = loss.floor_ln_var(ln_var, self.ln_var_min)
        return logits, F.reshape(mu, (-1, k, d)), ln_var

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
            nll = loss.nll_fused_packed(self.features(x), y, self.k,
                                        ln_var_min=self.ln_var_min)
        else:
            nll = self.nll(*self.forward(x), y)
        chainer.report({'loss': nll}, self)
        return nll

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
        y = backend.CpuDevice().send(train.check_data(y, names=('y',)))
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
        return sample(*self.mixture(x), n=n, temperature=temperature, rng=rng)

    def point_estimate(self, x, how='mode'):
        """One y per input, (N, D): the mean of the most probable component
        (how='mode') or the mixture's mean E[y|x] (how='mean')."""
        logits, mu = self.mixture(x)[:2]
        return POINT_ESTIMATES[how](logits, mu)


class LeastSquares(Perceptron):
    """The baseline: the published `Linear` model, trained by mean squared error."""

    def __init__(self, in_dim=1, out_dim=1, hidden=256, activation='none',
                 rng=None):
        out_dim = train.positive_int('out_dim', out_dim)
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


#: The largest temperature `sample` accepts: at 1e4 the draws are already 100
#: sigma wide; far above, sqrt(tau) sigma overflows float32 for ordinary sigma.
MAX_TEMPERATURE = 1e4


def check_temperature(temperature):
    """temperature as a float, or TypeError (not a number) or ValueError
    (outside (0, MAX_TEMPERATURE]) saying what to give."""
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        raise TypeError('temperature must be a number in (0, {:g}], not {!r}'.format(
            MAX_TEMPERATURE, temperature))
    if not (np.isfinite(temperature) and 0 < temperature <= MAX_TEMPERATURE):
        raise ValueError('temperature must be in (0, {:g}], got {}'
                         .format(MAX_TEMPERATURE, temperature))
    return float(temperature)


def _temper(logits, temperature, axis):
    """logits / tau, in place, shifted by their maximum along `axis`.

    Shift first, then scale by 1 / tau: the most probable logit stays at
    exactly 0 and the others go to -inf as tau -> 0 (logits / tau would
    overflow to inf, and inf - inf is NaN; a tau below the float32 range
    would be 0, and 0 / 0 NaN). 1 / tau is capped at the float maximum,
    where 0 * inf would be NaN.
    """
    with np.errstate(over='ignore'):      # -> -inf: pi = 0, as meant
        logits -= logits.max(axis=axis, keepdims=True)
        logits *= min(1 / temperature, float(np.finfo(logits.dtype).max))
    return logits


def sample(logits, mu, ln_var, n=1, temperature=1.0, rng=None):
    """Draw n samples per row from the mixture, vectorised: (N, n, D).

    logits (N, K), mu and ln_var (N, K, D) are NumPy or CuPy arrays (left
    untouched); `rng` is a RandomState of the same array module (default:
    its global one).

    The temperature tau in (0, MAX_TEMPERATURE = 1e4] sharpens or flattens
    the draw: the component is chosen with pi_k^(1/tau) / sum_j pi_j^(1/tau)
    (softmax of logits / tau) and its variance is scaled to tau * sigma_k^2.
    tau = 1 samples the model; tau -> 0 tends to the mean of the most
    probable component, and reaches it for any tau > 0 down to 5e-324 once
    sqrt(tau) sigma is below the mean's rounding; tau > 1 spreads the samples
    over more components and wider ones. Draws are finite wherever
    |mu| + sqrt(tau) sigma |eps| is (eps standard normal). Other shapes, and
    (under chainer.config.type_check, on by default) NaN or inf in any
    parameter, are refused with a ValueError: no draw comes from a mixture
    that is not one.
    """
    temperature = check_temperature(temperature)
    loss.check_mixture('sample', 'logits (N, K), mu and ln_var (N, K, D)',
                       lambda n, k, d: ((n, k), (n, k, d), (n, k, d)),
                       logits=logits, mu=mu, ln_var=ln_var)
    xp = backend.get_array_module(logits)
    rng = xp.random if rng is None else rng
    n_rows, k = logits.shape
    # Component-major (K, N): reductions over K then run along contiguous
    # rows of length N; along a last axis of length K (a strided view of the
    # head's output) NumPy's max, sum and cumsum are ~10x slower. A copy, not
    # ascontiguousarray: with N = 1 or K = 1, logits.T is already contiguous
    # and would be a view of the caller's array, which is then worked on in place.
    z = _temper(logits.T.copy(order='C'), temperature, axis=0)
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
    # y = mu + sqrt(tau) sigma eps, built in place in one (N, n, D) array;
    # sqrt(tau) sigma = exp((ln_var + log tau) / 2), which neither underflows
    # to 0 before sigma does (tau = 5e-324) nor meets a 0 * inf. Python
    # floats keep float32 (NEP 50).
    y = ln_var[rows, comp]
    y *= 0.5
    y += 0.5 * math.log(temperature)
    xp.exp(y, out=y)
    y *= rng.standard_normal(size=y.shape).astype(mu.dtype)
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


POINT_ESTIMATES = {'mode': most_probable_mean, 'mean': mixture_mean}


class PerDimensionMDN(MDN):
    """A separate K-component mixture per output dimension, as in the
    WorldModels MDN-RNN: p(y|x) = prod_d sum_k pi_dk N(y_d; mu_dk, sigma_dk^2).

    The head emits, per dimension d, [K logits | K means | K ln_var]: D * 3K
    numbers. The dimensions are independent given x, so this density cannot
    tie the choice of branch in one dimension to that in another.
    """

    @staticmethod
    def head_size(k, d):
        return 3 * k * d

    def spread_components(self, y, shrink=0.1):
        raise NotImplementedError('spread_components knows the head of MDN only; '
                                  'this head is laid out per dimension')

    def forward(self, x):
        """-> logits, mu, ln_var, each (N, D, K), as Variables."""
        h = F.reshape(self.features(x), (-1, self.out_dim, 3 * self.k))
        return F.split_axis(h, 3, axis=2)

    def loss(self, x, y):
        """Mean over N of the sum over d of 1-D mixture NLLs; checked as `MDN.loss`."""
        if chainer.config.type_check:
            x, y = self.check_data(x, y)
        # The fused 1-D loss on N * D rows: its mean over rows times D is
        # the mean over N of the sum over d.
        h = F.reshape(self.features(x), (-1, 3 * self.k))
        nll = loss.nll_fused_packed(h, y.reshape(-1, 1), self.k) * self.out_dim
        chainer.report({'loss': nll}, self)
        return nll

    def sample(self, x, n=1, temperature=1.0, rng=None):
        """n draws per row, (N, n, D): each dimension drawn from its own mixture."""
        logits, mu, ln_var = self.mixture(x)
        rows, d, k = logits.shape
        y = sample(logits.reshape(rows * d, k), mu.reshape(rows * d, k, 1),
                   ln_var.reshape(rows * d, k, 1), n=n, temperature=temperature,
                   rng=rng)
        return y.reshape(rows, d, n).transpose(0, 2, 1)

    def point_estimate(self, x, how='mode'):
        """(N, D): per dimension, its most probable component's mean or its mean."""
        logits, mu = self.mixture(x)[:2]
        rows, d, k = logits.shape
        return POINT_ESTIMATES[how](logits.reshape(rows * d, k),
                                    mu.reshape(rows * d, k, 1)).reshape(rows, d)


class FullCovarianceMDN(MDN):
    """p(y|x) = sum_k pi_k N(y; mu_k, L_k L_k^T), L_k lower triangular with
    a positive diagonal (a Cholesky factor per component).

    The head emits [K logits | K*D means | K*D log L_dd | K*D(D-1)/2 entries
    below the diagonal] (row-major, as `loss.nll_full_covariance`). The NLL
    is composed of Chainer functions (no fused form).
    """

    @staticmethod
    def head_size(k, d):
        return k * (1 + 2 * d + d * (d - 1) // 2)

    def spread_components(self, y, shrink=0.1):
        raise NotImplementedError('spread_components knows the head of MDN only; '
                                  'this head holds Cholesky factors')

    def forward(self, x):
        """-> logits (N, K), mu (N, K, D), log_diag (N, K, D),
        lower (N, K, D(D-1)/2), as Variables."""
        k, d = self.k, self.out_dim
        logits, mu, log_diag, lower = F.split_axis(
            self.features(x), (k, k + k * d, k + 2 * k * d), axis=1)
        return (logits, F.reshape(mu, (-1, k, d)), F.reshape(log_diag, (-1, k, d)),
                F.reshape(lower, (-1, k, d * (d - 1) // 2)))

    def loss(self, x, y):
        """Mean NLL of y (N, D) given x, a Variable; checked as `MDN.loss`."""
        if chainer.config.type_check:
            x, y = self.check_data(x, y)
        nll = loss.nll_full_covariance(*self.forward(x), y)
        chainer.report({'loss': nll}, self)
        return nll

    def sample(self, x, n=1, temperature=1.0, rng=None):
        """n draws of y per input row: (N, n, D). See `sample_full`."""
        return sample_full(*self.mixture(x), n=n, temperature=temperature,
                           rng=rng)


def scale_tril(log_diag, lower):
    """Cholesky factors L (N, K, D, D) from log_diag (N, K, D) and the
    row-major entries below the diagonal, lower (N, K, D(D-1)/2)."""
    xp = backend.get_array_module(log_diag)
    d = log_diag.shape[-1]
    chol = xp.zeros(log_diag.shape + (d,), dtype=log_diag.dtype)
    i, j = np.tril_indices(d, -1)
    chol[..., i, j] = lower
    diagonal = np.arange(d)
    chol[..., diagonal, diagonal] = xp.exp(log_diag)
    return chol


def sample_full(logits, mu, log_diag, lower, n=1, temperature=1.0, rng=None):
    """n draws per row from a full-covariance mixture: (N, n, D).

    Arrays as `FullCovarianceMDN.forward` returns them (NumPy or CuPy); rng a
    RandomState of the same array module. The component is drawn by the
    Gumbel-max trick on logits / tau (the same law as `sample`'s inverse CDF),
    then y = mu_k + sqrt(tau) L_k eps, eps ~ N(0, I). tau and the arrays are
    checked as in `sample`; draws are finite wherever |mu| + sqrt(tau) |L eps| is.
    """
    temperature = check_temperature(temperature)
    loss.check_mixture(
        'sample_full', 'logits (N, K), mu and log_diag (N, K, D), lower (N, K, D(D-1)/2)',
        lambda n, k, d: ((n, k), (n, k, d), (n, k, d), (n, k, d * (d - 1) // 2)),
        logits=logits, mu=mu, log_diag=log_diag, lower=lower)
    xp = backend.get_array_module(logits)
    rng = xp.random if rng is None else rng
    n_rows, k = logits.shape
    d = mu.shape[-1]
    gumbel = rng.gumbel(size=(n_rows, n, k)).astype(logits.dtype)
    comp = (_temper(logits.copy(), temperature, axis=1)[:, None, :] + gumbel).argmax(axis=2)
    rows = xp.arange(n_rows)[:, None]
    chol = scale_tril(log_diag[rows, comp], lower[rows, comp])
    eps = rng.standard_normal(size=(n_rows, n, d, 1)).astype(mu.dtype)
    y = xp.matmul(chol, eps)[..., 0]
    y *= math.sqrt(temperature)
    y += mu[rows, comp]
    return y


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
    parser.add_argument('--hidden', type=cli.positive, nargs='+', default=[256],
                        metavar='UNITS', help='hidden units, one number per '
                        'layer (default: 256, one layer)')
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
    k, widths = args.mixtures, hidden_widths(args.hidden)
    body = sum((n_in + 1) * n for n_in, n in zip([1] + widths, widths))
    params = 2 * body + (widths[-1] + 1) * (3 * k + 1)
    rows = max(args.batchsize, args.test_points, args.points)
    return 4 * (4 * params + 2 * (args.points + args.test_points)
                + rows * 2 * (sum(widths) + 8 * 3 * k))


def check_args(parser, args):
    """Validate what argparse cannot, before any work or writing; resolve the device."""
    if args.batchsize > args.points:
        parser.error('--batchsize {} is larger than the {} training points: use '
                     'at most --batchsize {}'.format(args.batchsize, args.points,
                                                     args.points))
    args.hidden = hidden_option(args.hidden)
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


def run_data(seeds, points, test_points):
    """The training and the held-out (x, y) of the run whose streams are `seeds`
    (np.random.SeedSequence(seed).spawn(4): data, held-out data, MDN, baseline)."""
    return (datasets.worldmodels(points, np.random.default_rng(seeds[0])),
            datasets.worldmodels(test_points, np.random.default_rng(seeds[1])))


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


def main(argv=None):
    parser = make_parser()
    args = check_args(parser, parser.parse_args(argv))
    device = args.device
    start = time.time()
    seeds = np.random.SeedSequence(args.seed).spawn(4)
    (x, y), (x_test, y_test) = run_data(seeds, args.points, args.test_points)

    model = MDN(hidden=args.hidden, k=args.mixtures, activation=args.activation,
                nll=args.loss, rng=np.random.default_rng(seeds[2]))
    baseline = LeastSquares(hidden=args.hidden,
                            rng=np.random.default_rng(seeds[3]))
    # The curves' held-out loss is measured 100 times a run: on a fifth of
    # the held-out points, as a full pass costs as much as ~15% of training.
    curve = (x_test[:CURVE_POINTS], y_test[:CURVE_POINTS])
    mdn_start = time.time()
    try:
        # The snapshot to resume from is checked whole before anything is
        # written; the snapshots this run writes then replace the old ones.
        train.train(model, x, y, epochs=args.epoch, batchsize=args.batchsize,
                    device=device, seed=args.seed, out=args.out, name='mdn',
                    frequency=args.frequency, resume=args.resume,
                    options={key: getattr(args, key) for key in RUN_OPTIONS},
                    heldout=curve, loss_label='NLL, nats per point')
        mdn_seconds = time.time() - mdn_start
        train.train(baseline, x, y, epochs=args.epoch, batchsize=args.batchsize,
                    device=device, seed=args.seed, out=args.out, name='linear',
                    frequency=args.frequency,
                    options={'hidden': args.hidden, 'activation': 'none'},
                    heldout=curve, loss_label='MSE, (units of y)²')
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
    pi_min, pi_max = mixture.weight_range(mixture.log_weights(
        to_cpu(model.mixture(x_grid)[0])))

    config = {k: v for k, v in vars(args).items()
              if k not in ('device', 'out', 'resume')}
    config['resumed'] = args.resume is not None
    config['device'] = str(device)
    metrics = {
        'nll_train': heldout_nll(model, x, y),
        'nll_test': heldout_nll(model, x_test, y_test),
        'nll_units': 'nats per point, mean over points',
        'pi_min': pi_min.tolist(),
        'pi_max': pi_max.tolist(),
        'pi_over': 'the training inputs\' range, {} points'.format(args.points),
        'dead_components': int((pi_max < mixture.DEAD).sum()),
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
    note = collapse_note(metrics['nll_test'], metrics['dead_components'], args.mixtures)
    if note:
        print('{}: {}'.format(parser.prog, note))


if __name__ == '__main__':
    sys.exit(main())
