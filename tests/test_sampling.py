"""The vectorised sampler and the point predictions, against known mixtures."""
import numpy as np
import pytest
from scipy import stats

import toy  # noqa: F401
from toy import mdn, mixture

PI = np.array([0.2, 0.5, 0.3])
MU = np.array([-2.0, 0.0, 3.0])
SIGMA = np.array([0.5, 1.0, 0.3])


def tiled(pi, mu, sigma, rows):
    """One mixture repeated over `rows` inputs: logits (N, K), mu and ln_var (N, K, 1)."""
    logits = np.tile(np.log(pi), (rows, 1))
    return (logits, np.tile(mu[:, None], (rows, 1, 1)),
            np.tile(2 * np.log(sigma)[:, None], (rows, 1, 1)))


def mixture_cdf(pi, mu, sigma):
    return lambda t: (pi * stats.norm.cdf((np.asarray(t)[:, None] - mu) / sigma)).sum(1)


def test_samples_follow_the_mixture_ks():
    draws = mixture.sample(*tiled(PI, MU, SIGMA, 200), n=100,
                       rng=np.random.RandomState(0))
    assert draws.shape == (200, 100, 1)
    assert stats.kstest(draws.ravel(), mixture_cdf(PI, MU, SIGMA)).pvalue > 0.01
    # The test has power: the same draws reject a mixture with other weights.
    wrong = mixture_cdf(np.array([0.5, 0.2, 0.3]), MU, SIGMA)
    assert stats.kstest(draws.ravel(), wrong).pvalue < 1e-6


def test_rows_use_their_own_mixture():
    logits = np.log(np.array([[0.999, 0.001], [0.001, 0.999]]))
    mu = np.array([[[-5.0, 1.0], [5.0, 2.0]], [[-5.0, 1.0], [5.0, 2.0]]])
    ln_var = np.full((2, 2, 2), -6.0)
    draws = mixture.sample(logits, mu, ln_var, n=2000, rng=np.random.RandomState(1))
    assert draws.shape == (2, 2000, 2)
    np.testing.assert_allclose(np.median(draws, axis=1), [[-5, 1], [5, 2]], atol=0.01)


def test_low_temperature_picks_components_by_pi_power():
    # tau = 0.5 chooses component k with pi_k^2 / sum pi_j^2.
    mu = np.array([-100.0, 0.0, 100.0])
    draws = mixture.sample(*tiled(PI, mu, np.ones(3), 100), n=1000, temperature=0.5,
                       rng=np.random.RandomState(2)).ravel()
    freq = np.array([(draws < -50).mean(), (abs(draws) < 50).mean(),
                     (draws > 50).mean()])
    want = PI ** 2 / (PI ** 2).sum()
    # within 4 binomial standard deviations
    assert np.all(abs(freq - want) < 4 * np.sqrt(want * (1 - want) / draws.size))


def test_temperature_scales_the_variance():
    one = tiled(np.ones(1), np.array([1.0]), np.array([0.5]), 1000)
    for tau in (0.25, 1.0, 2.0):
        draws = mixture.sample(*one, n=100, temperature=tau,
                           rng=np.random.RandomState(3)).ravel()
        # the sample variance of 1e5 draws is within 2% of tau * sigma^2 (5 sd)
        np.testing.assert_allclose(draws.var(), tau * 0.25, rtol=0.02)
        np.testing.assert_allclose(draws.mean(), 1.0, atol=0.01)


def test_temperature_near_zero_gives_the_most_probable_mean():
    logits, mu, ln_var = tiled(PI, MU, SIGMA, 10)
    draws = mixture.sample(logits, mu, ln_var, n=100, temperature=1e-8,
                       rng=np.random.RandomState(4))
    np.testing.assert_allclose(draws, 0.0, atol=1e-3)
    np.testing.assert_array_equal(mixture.most_probable_mean(logits, mu), 0.0)


@pytest.mark.parametrize('tau', [0.0, -1.0, float('nan'), float('inf')])
def test_bad_temperature_is_refused(tau):
    with pytest.raises(ValueError, match='temperature'):
        mixture.sample(*tiled(PI, MU, SIGMA, 2), temperature=tau)


def test_same_seed_same_draws():
    params = tiled(PI, MU, SIGMA, 5)
    a = mixture.sample(*params, n=7, rng=np.random.RandomState(5))
    b = mixture.sample(*params, n=7, rng=np.random.RandomState(5))
    np.testing.assert_array_equal(a, b)


def test_mixture_mean():
    logits, mu, _ = tiled(PI, MU, SIGMA, 3)
    np.testing.assert_allclose(mixture.mixture_mean(logits, mu), (PI * MU).sum(), rtol=1e-12)


def test_model_samples_and_refuses_non_finite_input():
    model = mdn.MDN(hidden=8, k=3, out_dim=2, rng=np.random.default_rng(0))
    x = np.linspace(-1, 1, 4, dtype=np.float32).reshape(-1, 1)
    assert model.sample(x, n=5).shape == (4, 5, 2)
    x[2] = np.nan
    with pytest.raises(ValueError, match='non-finite.*row 2'):
        model.sample(x)


def test_float32_mixture_gives_float32_samples():
    # NumPy 2 (NEP 50) promotes float32 * numpy.float64 scalar to float64.
    params = [a.astype(np.float32) for a in tiled(PI, MU, SIGMA, 3)]
    assert mixture.sample(*params, n=2, temperature=0.7).dtype == np.float32


@pytest.mark.parametrize('n_rows, k', [(1, 3), (4, 1), (1, 1), (5, 3)])
def test_the_callers_arrays_are_untouched(n_rows, k):
    """With N = 1 or K = 1, logits.T is already contiguous: the sampler must
    still work on a copy (it once left its CDF in the caller's logits)."""
    rng = np.random.default_rng(n_rows * 10 + k)
    params = (rng.normal(0, 2, (n_rows, k)).astype(np.float32),
              rng.normal(0, 1, (n_rows, k, 2)).astype(np.float32),
              rng.normal(0, 1, (n_rows, k, 2)).astype(np.float32))
    before = [a.copy() for a in params]
    mixture.sample(*params, n=3, temperature=0.5, rng=np.random.RandomState(0))
    for a, b in zip(params, before):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
@pytest.mark.parametrize('tau', [1e-39, 1e-45, 5e-324])
def test_tiny_temperature_tends_to_the_most_probable_mean(dtype, tau):
    """Issue 8, defect 4: logits / tau overflowed to inf, inf - inf = NaN and
    the LEAST probable component was drawn. Rows differ, so each must give
    its own most probable component's mean, exactly (sqrt(tau) sigma << ulp)."""
    logits = np.array([[0.0, 2.0, -1.0], [3.0, -2.0, 1.0], [-5.0, -5.5, -4.0]], dtype)
    mu = np.array([[[1.0], [2.0], [3.0]], [[-1.0], [-2.0], [-3.0]],
                   [[10.0], [20.0], [30.0]]], dtype)
    ln_var = np.array([[[0.0], [1.0], [-1.0]], [[2.0], [0.5], [0.0]],
                       [[3.0], [-3.0], [1.0]]], dtype)
    draws = mixture.sample(logits, mu, ln_var, n=50, temperature=tau,
                       rng=np.random.RandomState(6))
    assert draws.dtype == dtype
    np.testing.assert_array_equal(
        draws, np.broadcast_to(mixture.most_probable_mean(logits, mu)[:, None], draws.shape))
    np.testing.assert_array_equal(mixture.most_probable_mean(logits, mu)[:, 0], [2, -1, 30])


@pytest.mark.parametrize('tau', [1e4 * (1 + 1e-9), 1e5, 1e300])
def test_temperature_above_the_documented_range_is_refused(tau):
    """Issue 8, defect 4: tau = 1e300 gave +-inf draws (sqrt(tau) sigma overflows)."""
    with pytest.raises(ValueError, match=r'temperature must be in \(0, 10000'):
        mixture.sample(*tiled(PI, MU, SIGMA, 2), temperature=tau)


def test_largest_temperature_gives_finite_draws_of_its_spread():
    draws = mixture.sample(*[a.astype(np.float32) for a in tiled(PI, MU, SIGMA, 200)],
                       n=100, temperature=1e4, rng=np.random.RandomState(7))
    assert np.isfinite(draws).all()
    # Components all but equally likely, each 100 sigma wide: the variance
    # is about tau * sum_k sigma_k^2 / K (+ the means' spread, negligible).
    np.testing.assert_allclose(draws.var(), 1e4 * (SIGMA ** 2).mean(), rtol=0.05)


@pytest.mark.parametrize('row', [[np.nan, 0.0, 0.0], [-np.inf] * 3, [np.inf] * 3])
def test_non_finite_logits_give_no_draw(row):
    """Issue 17, item 13: NaN, all -inf or all +inf logits gave finite draws
    (from the first component)."""
    logits, mu, ln_var = tiled(PI, MU, SIGMA, 3)
    logits[1] = row
    with pytest.raises(ValueError, match=r'^sample: logits holds [1-3] NaN or inf '
                                         r'value\(s\), the first in row 1'):
        mixture.sample(logits, mu, ln_var, rng=np.random.RandomState(0))


def full_params(rows=2, k=2, d=2):
    return (np.zeros((rows, k)), np.zeros((rows, k, d)), np.zeros((rows, k, d)),
            np.zeros((rows, k, d * (d - 1) // 2)))


@pytest.mark.parametrize('tau', [1e80, 1e4 * (1 + 1e-9), 0.0, float('nan')])
def test_full_covariance_temperature_above_the_range_is_refused(tau):
    """Issue 17, item 13: sample_full took tau = 1e80 and drew +-inf."""
    with pytest.raises(ValueError, match=r'temperature must be in \(0, 10000\], got'):
        mixture.sample_full(*full_params(), temperature=tau)


@pytest.mark.parametrize('sampler, params', [(mixture.sample, tiled(PI, MU, SIGMA, 2)),
                                             (mixture.sample_full, full_params())])
@pytest.mark.parametrize('tau', ['1', None, True])
def test_a_temperature_that_is_not_a_number_is_a_clear_type_error(sampler, params, tau):
    with pytest.raises(TypeError, match=r'^temperature must be a number in \(0, '
                                        r'10000\], not {!r}$'.format(tau)):
        sampler(*params, temperature=tau)


def test_mixtures_of_other_shapes_are_refused():
    logits, mu, ln_var = tiled(PI, MU, SIGMA, 3)
    with pytest.raises(ValueError, match=r'^sample needs logits \(N, K\), mu and ln_var '
                                         r'\(N, K, D\)'):
        mixture.sample(logits, mu, ln_var[:, :, [0, 0]])
    with pytest.raises(ValueError, match=r'^sample_full needs .*lower \(N, K, D\(D-1\)/2\)'):
        mixture.sample_full(*full_params()[:3], np.zeros((2, 2, 3)))


@pytest.mark.parametrize('tau', [1e-300, 1e-50, 1e-8])
def test_full_covariance_tiny_temperature_draws_the_most_probable_mean(tau):
    """tau below float32's range was 0 in logits / tau: 0 / 0 = NaN, and
    argmax took the NaN, the first component, not the most probable."""
    logits = np.array([[0, 1, -1], [2, 0, 1], [0, 0, 3]], np.float32)
    mu = np.arange(18, dtype=np.float32).reshape(3, 3, 2)
    log_diag, lower = np.full((3, 3, 2), -30, np.float32), np.zeros((3, 3, 1), np.float32)
    draws = mixture.sample_full(logits, mu, log_diag, lower, n=50, temperature=tau,
                            rng=np.random.RandomState(0))
    want = mu[np.arange(3), logits.argmax(axis=1)]
    np.testing.assert_allclose(draws, np.broadcast_to(want[:, None], draws.shape),
                               atol=1e-5)
