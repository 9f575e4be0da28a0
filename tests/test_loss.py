"""The log-space NLL against scipy, its gradients, and the post's density form."""
import numpy as np
import pytest
from scipy import special, stats

import toy  # noqa: F401
from chainer import gradient_check

from toy import loss


def mixture(n, k, d, seed, scale=1.0, dtype=np.float64):
    """Random (logits, mu, ln_var, y); y lies `scale` sigmas or so from the means."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, k))
    mu = rng.normal(size=(n, k, d))
    ln_var = rng.uniform(-2, 1, size=(n, k, d))
    y = mu[:, 0] + scale * rng.normal(size=(n, d)) * np.exp(0.5 * ln_var[:, 0])
    return tuple(a.astype(dtype) for a in (logits, mu, ln_var, y))


def reference_nll(logits, mu, ln_var, y):
    """-mean_n log sum_k pi_k prod_d N(y_d; mu, sigma) from scipy, in float64."""
    log_pi = logits - special.logsumexp(logits, axis=1, keepdims=True)
    log_n = stats.norm.logpdf(y[:, None, :], mu, np.exp(0.5 * ln_var)).sum(axis=2)
    return -special.logsumexp(log_pi + log_n, axis=1).mean()


@pytest.mark.parametrize('d', [1, 3])
def test_logspace_matches_scipy(d):
    params = mixture(64, 5, d, seed=d)
    got = loss.nll_logspace(*params).array
    np.testing.assert_allclose(got, reference_nll(*params), rtol=1e-5)


@pytest.mark.parametrize('d', [1, 3])
def test_logspace_matches_scipy_float32(d):
    params = mixture(64, 5, d, seed=10 + d, dtype=np.float32)
    got = loss.nll_logspace(*params).array
    want = reference_nll(*(a.astype(np.float64) for a in params))
    np.testing.assert_allclose(got, want, rtol=1e-5)


@pytest.mark.parametrize('d', [1, 3])
def test_density_form_agrees_where_it_does_not_underflow(d):
    params = mixture(64, 5, d, seed=20 + d)
    np.testing.assert_allclose(loss.nll_density(*params).array,
                               loss.nll_logspace(*params).array, rtol=1e-10)


def test_logspace_stays_accurate_where_density_underflows():
    # y sits 60 sigmas from every mean: each density is exp(-1800) = 0.
    logits, mu, ln_var, y = mixture(8, 3, 1, seed=3)
    mu[:] = 0.0
    ln_var[:] = 0.0
    y[:] = 60.0
    with np.errstate(divide='ignore'):
        assert np.isinf(loss.nll_density(logits, mu, ln_var, y).array)
    got = loss.nll_logspace(logits, mu, ln_var, y).array
    assert np.isfinite(got)
    np.testing.assert_allclose(got, reference_nll(logits, mu, ln_var, y), rtol=1e-10)
    np.testing.assert_allclose(got, 1800 + 0.5 * np.log(2 * np.pi), rtol=1e-10)


def test_logspace_with_tiny_sigma_is_finite_and_accurate():
    logits, mu, ln_var, y = mixture(16, 4, 2, seed=4)
    ln_var[:] = -40.0                      # sigma = 2e-9
    y = mu[:, 1] + 1e-9
    got = loss.nll_logspace(logits, mu, ln_var, y).array
    assert np.isfinite(got)
    np.testing.assert_allclose(got, reference_nll(logits, mu, ln_var, y), rtol=1e-8)


@pytest.mark.parametrize('d', [1, 3])
@pytest.mark.parametrize('nll', [loss.nll_logspace, loss.nll_density])
def test_gradients_match_finite_differences(nll, d):
    logits, mu, ln_var, y = mixture(6, 3, d, seed=30 + d)

    def f(logits, mu, ln_var):
        return nll(logits, mu, ln_var, y)

    gradient_check.check_backward(f, (logits, mu, ln_var), np.ones((), np.float64),
                                  dtype=np.float64, atol=1e-7, rtol=1e-6)
