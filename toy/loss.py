"""The MDN's negative log-likelihood, -log sum_k pi_k N(y; mu_k, diag(sigma_k^2)).

Shapes: logits (N, K), mu and ln_var (N, K, D), y (N, D). Each loss returns
the mean over the batch, in nats per point, as a scalar Variable.
"""
import numpy as np

import chainer.functions as F

LOG_2PI = float(np.log(2 * np.pi))


def log_gaussian(mu, ln_var, y):
    """log N(y; mu_k, diag(exp(ln_var_k))) summed over D: (N, K)."""
    y = F.broadcast_to(F.expand_dims(y, 1), mu.shape)
    return -0.5 * F.sum(LOG_2PI + ln_var + F.square(y - mu) * F.exp(-ln_var),
                        axis=2)


def nll_logspace(logits, mu, ln_var, y):
    """Log-space NLL: logsumexp over k of log_softmax(logits) + log N.

    Finite wherever the inputs are, also where every component's density
    underflows (the density form then returns inf).
    """
    log_pi = F.log_softmax(logits, axis=1)
    return -F.mean(F.logsumexp(log_pi + log_gaussian(mu, ln_var, y), axis=1))


def nll_density(logits, mu, ln_var, y):
    """The post's form: -log sum_k softmax(logits)_k * prod_d N(y_d; mu, var).

    This is what the published run trained (summed there, averaged here);
    it overflows to inf once every component's density underflows.
    """
    pi = F.softmax(logits, axis=1)
    var = F.exp(ln_var)
    y = F.broadcast_to(F.expand_dims(y, 1), mu.shape)
    density = F.prod(
        (1 / (np.sqrt(2 * np.pi) * F.sqrt(var)))
        * F.exp(-0.5 * F.square(y - mu) / var), axis=2)
    return -F.mean(F.log(F.sum(pi * density, axis=1)))
