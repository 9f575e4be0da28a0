"""A Gaussian mixture given as arrays: draws, point estimates, log-density, weights.

The mixture at each of N inputs has K components over a D-dimensional
target: logits (N, K) or log-weights log_pi (N, K), means mu (N, K, D) and
log-variances ln_var (N, K, D) of diagonal Gaussians (`sample_full` takes
Cholesky factors instead). The samplers and point estimates take NumPy or
CuPy arrays (the model's device); the log-density and the weight summaries
are float64 NumPy, apart from the network and its loss, so they serve as an
independent check of both.
"""
import math
import numbers

import numpy as np
from scipy.special import log_softmax, logsumexp

from chainer import backend

from toy import loss

#: A component whose weight stays below this at every input is dead: the
#: mixture has one component fewer than it was given.
DEAD = 1e-3


def log_weights(logits):
    """log pi (N, K) from unnormalised logits (N, K)."""
    return log_softmax(np.asarray(logits, dtype=np.float64), axis=1)


def log_density(log_pi, mu, ln_var, y):
    """ln p(y | x) = ln sum_k pi_k N(y; mu_k, diag exp(ln_var_k)), (N,).

    log_pi (N, K), mu and ln_var (N, K, D), y (N, D).
    """
    mu, ln_var = np.asarray(mu, np.float64), np.asarray(ln_var, np.float64)
    y = np.asarray(y, np.float64)[:, None, :]
    log_n = -0.5 * (np.log(2 * np.pi) + ln_var + (y - mu) ** 2 * np.exp(-ln_var))
    return logsumexp(np.asarray(log_pi, np.float64) + log_n.sum(axis=2), axis=1)


def density_on_grid(logits, mu, ln_var, t_grid):
    """p(t | x) of 1-D mixtures at every t of t_grid (T,): (N, T), for
    logits (N, K), mu and ln_var (N, K, 1) (`log_density` at each pair)."""
    n, t = len(logits), np.size(t_grid)
    rows = np.repeat(np.arange(n), t)
    y = np.tile(np.ravel(t_grid), n)[:, None]
    return np.exp(log_density(log_weights(logits)[rows], np.asarray(mu)[rows],
                              np.asarray(ln_var)[rows], y)).reshape(n, t)


def in_units(mu, ln_var, scaler):
    """A mixture over standardised targets in the targets' original units:
    mu (..., D) and ln_var (..., D) -> (mu sigma_y + mean_y, ln_var + 2 log
    sigma_y), for the preprocess.Standardizer `scaler` of its training data
    (the logits do not change)."""
    return scaler.untarget(mu), ln_var + 2 * np.log(scaler.y_scale)


def weight_range(log_pi):
    """Each component's smallest and largest weight over the inputs: two (K,) arrays."""
    pi = np.exp(np.asarray(log_pi, np.float64))
    return pi.min(axis=0), pi.max(axis=0)


def dead_components(log_pi, threshold=DEAD):
    """The components (indices) whose weight is below `threshold` at every input."""
    return np.flatnonzero(weight_range(log_pi)[1] < threshold)


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
