"""toy.mixture's NumPy side against scipy: densities on a grid, and the change of units."""
import numpy as np
from scipy import stats

from toy import mixture, preprocess


def random_mixture(rng, n, k, d):
    return (rng.normal(size=(n, k)), rng.normal(size=(n, k, d)),
            rng.normal(-1, 0.5, size=(n, k, d)))


def test_density_on_grid_is_the_scipy_mixture_at_every_pair():
    rng = np.random.default_rng(0)
    logits, mu, ln_var = random_mixture(rng, 4, 3, 1)
    t = np.linspace(-3, 3, 7)
    pi = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    want = np.array([[sum(pi[i, k] * stats.norm.pdf(v, mu[i, k, 0], np.exp(ln_var[i, k, 0] / 2))
                          for k in range(3)) for v in t] for i in range(4)])
    np.testing.assert_allclose(mixture.density_on_grid(logits, mu, ln_var, t), want,
                               rtol=1e-10)


def test_density_on_grid_integrates_to_one():
    rng = np.random.default_rng(1)
    logits, mu, ln_var = random_mixture(rng, 5, 4, 1)
    t = np.linspace(-12, 12, 20001)
    p = mixture.density_on_grid(logits, mu, ln_var, t)
    np.testing.assert_allclose(p.sum(1) * (t[1] - t[0]), 1, atol=1e-6)


def test_in_units_gives_the_density_of_the_original_targets():
    """p_y(y) = p_z(z) / prod_d sigma_d for z = (y - mean) / sigma: the mixture
    in_units returns, at y, is the standardised one at z over the Jacobian."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(50, 1))
    y = rng.normal([3, -2], [5, 0.2], size=(50, 2))
    scaler = preprocess.Standardizer(x, y)
    logits, mu, ln_var = random_mixture(rng, 50, 3, 2)
    log_pi = mixture.log_weights(logits)
    z = scaler.targets(y).astype(np.float64)
    mu_y, ln_var_y = mixture.in_units(mu, ln_var, scaler)
    np.testing.assert_allclose(mixture.log_density(log_pi, mu_y, ln_var_y, y),
                               mixture.log_density(log_pi, mu, ln_var, z)
                               - scaler.log_jacobian, rtol=1e-5, atol=1e-5)
