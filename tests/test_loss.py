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


def test_density_form_at_a_variance_below_float32_is_the_logspace_value():
    """Issue 17, item 12: ln_var = -104 (sigma^2 = 7e-46, 0 in float32) gave
    NaN (0 * inf). pi_k N_k is formed from its log: the value of nll_logspace,
    and +inf (not NaN) once the weighted densities underflow."""
    logits = np.zeros((2, 2), np.float32)
    mu = np.zeros((2, 2, 1), np.float32)
    ln_var = np.full((2, 2, 1), -104, np.float32)
    y = np.array([[0.0], [1e-23]], np.float32)
    want = loss.nll_logspace(logits, mu, ln_var, y).array
    want64 = reference_nll(*(a.astype(np.float64) for a in (logits, mu, ln_var, y)))
    np.testing.assert_allclose(want, want64, rtol=1e-6)
    np.testing.assert_allclose(loss.nll_density(logits, mu, ln_var, y).array, want, rtol=1e-6)
    with np.errstate(divide='ignore'):
        assert np.isposinf(loss.nll_density(logits, mu, ln_var, y + 1).array)


def test_density_form_refuses_a_density_beyond_the_float_range():
    """N(0; 0, e^-200) = e^99 overflows float32: the density form cannot hold
    it and says so (the log-space form can: -99 nats)."""
    arrays = (np.zeros((1, 1), np.float32), np.zeros((1, 1, 1), np.float32),
              np.full((1, 1, 1), -200, np.float32), np.zeros((1, 1), np.float32))
    with pytest.raises(ValueError, match='row 0 overflows the float range.*use '
                                         'nll_logspace'):
        loss.nll_density(*arrays)
    np.testing.assert_allclose(loss.nll_logspace(*arrays).array,
                               0.5 * (np.log(2 * np.pi) - 200), rtol=1e-6)


ALL_LOSSES = {'nll_logspace': loss.nll_logspace, 'nll_density': loss.nll_density,
              'nll_fused': loss.nll_fused}


@pytest.mark.parametrize('name', sorted(ALL_LOSSES))
def test_no_rows_or_components_are_refused(name):
    """Issue 17, item 13: N = 0 gave ZeroDivisionError; the mean over no rows
    has no value."""
    logits, mu, ln_var, y = mixture(4, 3, 2, seed=1, dtype=np.float32)
    for arrays in ((logits[:0], mu[:0], ln_var[:0], y[:0]),
                   (logits[:, :0], mu[:, :0], ln_var[:, :0], y)):
        with pytest.raises(ValueError, match=r'^{} needs .* with N, K and D >= 1; got '
                                             r'logits \(\d, \d\)'.format(name)):
            ALL_LOSSES[name](*arrays)
    with pytest.raises(ValueError, match=r'^nll_fused_packed needs .*N and D >= 1'):
        loss.nll_fused_packed(np.zeros((0, 15), np.float32), y[:0], 3)


@pytest.mark.parametrize('name', sorted(ALL_LOSSES))
def test_shapes_are_not_broadcast(name):
    """Issue 17, item 13: ln_var (N, K, 2) against mu (N, K, 1) was silently
    broadcast by the composed forms."""
    logits, mu, ln_var, y = mixture(4, 3, 2, seed=2, dtype=np.float32)
    for arrays in ((logits, mu[:, :, :1], ln_var, y[:, :1]),
                   (logits, mu, ln_var[:, :, :1], y),
                   (logits[:, :1], mu, ln_var, y),
                   (logits, mu, ln_var, y[:1])):
        with pytest.raises(ValueError, match=r'^{} needs logits \(N, K\), mu and ln_var '
                                             r'\(N, K, D\), y \(N, D\)'.format(name)):
            ALL_LOSSES[name](*arrays)


@pytest.mark.parametrize('name', ['nll_fused', 'nll_logspace'])
def test_a_nan_floor_is_refused(name):
    with pytest.raises(ValueError, match='ln_var_min must be a finite number'):
        ALL_LOSSES[name](*mixture(4, 3, 1, seed=3), ln_var_min=float('nan'))
