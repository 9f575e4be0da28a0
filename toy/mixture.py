"""A Gaussian mixture given as NumPy arrays: its log-density and how its weights spread over x.

The mixture at each of N inputs has K components over a D-dimensional
target: log-weights log_pi (N, K), means mu (N, K, D) and log-variances
ln_var (N, K, D) of diagonal Gaussians. Everything is float64 NumPy, apart
from the network and its loss, so it serves as an independent check.
"""
import numpy as np
from scipy.special import log_softmax, logsumexp

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


def weight_range(log_pi):
    """Each component's smallest and largest weight over the inputs: two (K,) arrays."""
    pi = np.exp(np.asarray(log_pi, np.float64))
    return pi.min(axis=0), pi.max(axis=0)


def dead_components(log_pi, threshold=DEAD):
    """The components (indices) whose weight is below `threshold` at every input."""
    return np.flatnonzero(weight_range(log_pi)[1] < threshold)

