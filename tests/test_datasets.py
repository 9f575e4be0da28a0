"""The toy generators and their Bayes / single-Gaussian limits.

The limits come from piecewise quadrature; the tests check them against a
Monte-Carlo estimate that shares none of that machinery: p(x) and the
moments of a | x are midpoint sums over a dense latent grid.
"""
import numpy as np
import pytest

from toy import datasets, floor, quadrature

N_MC = 20000
LATENT_GRID = 20000


def brute_moments(problem, x):
    """int a^j p(x, a) da, j = 0, 1, 2, by the midpoint rule: (3, len(x))."""
    step = (problem.hi - problem.lo) / LATENT_GRID
    a = problem.lo + step * (np.arange(LATENT_GRID) + 0.5)
    m = np.empty((3, len(x)))
    for start in range(0, len(x), 500):
        f = problem.likelihood(x[start:start + 500, None], a) * step
        m[:, start:start + 500] = [f.sum(1), f @ a, f @ (a * a)]
    return m / (problem.hi - problem.lo)


def within_se(estimate, per_point, value, z=4.0):
    se = per_point.std() / np.sqrt(len(per_point))
    assert abs(estimate - value) < z * se + 2e-3, (estimate, value, se)


@pytest.mark.parametrize('name', datasets.NAMES)
def test_inverse_limits_match_monte_carlo(name):
    problem = datasets.PROBLEMS[name]
    a, x = problem.sample(N_MC, np.random.default_rng(1))
    p_x, m1, m2 = brute_moments(problem, x)
    # -log p(a | x) = -log p(x | a) - log p(a) + log p(x)
    nll = -np.log(problem.likelihood(x, a)) + np.log(problem.hi - problem.lo) + np.log(p_x)
    bayes, gaussian = datasets.limits(name, 'inverse')
    within_se(nll.mean(), nll, bayes)
    var = m2 / p_x - (m1 / p_x) ** 2
    half_log = 0.5 * np.log(2 * np.pi * np.e * var)
    within_se(half_log.mean(), half_log, gaussian)
    # The Gaussian cannot beat the Bayes limit: these problems are multi-modal.
    assert gaussian > bayes + 0.5


@pytest.mark.parametrize('name', datasets.NAMES)
def test_forward_limits_match_monte_carlo(name):
    problem = datasets.PROBLEMS[name]
    a, x = problem.sample(N_MC, np.random.default_rng(2))
    nll = -np.log(problem.likelihood(x, a))
    bayes, gaussian = datasets.limits(name, 'forward')
    within_se(nll.mean(), nll, bayes)
    # Var(x | a) by Monte Carlo over the noise at each of 200 latents, which
    # are a midpoint grid so the average over a adds no sampling error.
    rng = np.random.default_rng(3)
    a_grid = problem.lo + (problem.hi - problem.lo) * (np.arange(200) + 0.5) / 200
    noise = {'worldmodels': lambda n: rng.uniform(0, 1, n) * problem.width(a_grid[:, None]),
             'bishop': lambda n: rng.uniform(-0.1, 0.1, n),
             'otoro': lambda n: rng.standard_normal(n)}[name]
    var = noise((200, 4000)).var(axis=1, ddof=1)
    half_log = 0.5 * np.log(2 * np.pi * np.e * var)
    assert abs(half_log.mean() - gaussian) < 0.02
    assert gaussian >= bayes - 1e-9


@pytest.mark.parametrize('name', datasets.NAMES)
@pytest.mark.parametrize('direction', datasets.DIRECTIONS)
def test_limits_converge(name, direction):
    coarse = datasets.limits(name, direction, resolution=16)
    fine = datasets.limits(name, direction, resolution=32)
    assert np.allclose(coarse, fine, atol=1e-4, rtol=0)


@pytest.mark.parametrize('name', ['worldmodels', 'bishop'])
def test_marginal_density_is_exact_on_edges(name):
    # p(x) integrates to one, and vanishes off the support given by x_breaks.
    problem = datasets.PROBLEMS[name]
    breaks = problem.x_breaks()
    nodes, weights = quadrature.piecewise_nodes(breaks, 32, smooth_ends=True)
    assert abs(np.sum(weights * problem.moments(nodes)[0]) - 1) < 1e-9
    outside = np.array([breaks[0] - 1e-6, breaks[-1] + 1e-6])
    assert np.all(problem.moments(outside)[0] == 0)


@pytest.mark.parametrize('name', datasets.NAMES)
def test_conditional_density_normalised(name):
    problem = datasets.PROBLEMS[name]
    x = np.linspace(problem.x_breaks()[0] + 0.05, problem.x_breaks()[-1] - 0.05, 7)
    t = np.linspace(problem.lo, problem.hi, 200001)
    p = datasets.conditional_density(name, 'inverse', x, t)
    assert p.shape == (7, t.size)
    assert np.allclose(p.sum(1) * (t[1] - t[0]), 1, atol=2e-3)


def test_generator_statistics():
    n = 50000
    x, y = datasets.worldmodels(n, np.random.default_rng(0))
    assert x.shape == y.shape == (n, 1) and x.dtype == y.dtype == np.float32
    u = (x - np.sin(2 * np.pi * y)) / (0.2 * (np.cos(2 * np.pi * y) + 2))
    assert u.min() > -1e-5 and u.max() < 1 + 1e-5
    assert abs(u.mean() - 0.5) < 0.01 and abs(y.mean() - 0.5) < 0.01

    x, t = datasets.bishop(n, np.random.default_rng(0))
    e = x - t - 0.3 * np.sin(2 * np.pi * t)
    assert 0 <= t.min() and t.max() <= 1
    assert np.abs(e).max() <= 0.1 + 1e-6
    assert abs(e.var() - 0.2 ** 2 / 12) < 2e-4

    x, y = datasets.otoro(n, np.random.default_rng(0))
    e = x - 7 * np.sin(0.75 * y) - 0.5 * y
    assert -10.5 <= y.min() and y.max() <= 10.5
    assert abs(e.mean()) < 0.02 and abs(e.var() - 1) < 0.03
    assert abs(y.var() - 21 ** 2 / 12) < 0.5


@pytest.mark.parametrize('name', datasets.NAMES)
def test_directions_swap_the_same_draw(name):
    inp, tgt = datasets.generate(name, 100, np.random.default_rng(5), 'inverse')
    f_inp, f_tgt = datasets.generate(name, 100, np.random.default_rng(5), 'forward')
    assert np.array_equal(inp, f_tgt) and np.array_equal(tgt, f_inp)


def test_worldmodels_keeps_published_draws():
    rng = np.random.default_rng(7)
    y = rng.uniform(0.0, 1.0, 10)
    u = rng.uniform(0.0, 1.0, 10)
    x = np.sin(2 * np.pi * y) + 0.2 * u * (np.cos(2 * np.pi * y) + 2)
    got_x, got_y = datasets.worldmodels(10, np.random.default_rng(7))
    assert np.array_equal(got_x[:, 0], x.astype(np.float32))
    assert np.array_equal(got_y[:, 0], y.astype(np.float32))


def test_unknown_names_are_refused():
    with pytest.raises(ValueError, match='unknown dataset'):
        datasets.limits('nope')
    with pytest.raises(ValueError, match='unknown direction'):
        datasets.generate('bishop', 3, np.random.default_rng(0), 'sideways')


@pytest.mark.parametrize('name', datasets.NAMES)
def test_mixture_floor_of_one_component_is_the_single_gaussian_gap(name):
    bayes, gaussian = datasets.limits(name, 'inverse')
    gap = floor.mixture_floor(name, 1, resolution=12, restarts=1)
    assert gap == pytest.approx(gaussian - bayes, abs=2e-3)


def test_mixture_floor_falls_with_k():
    gaps = [floor.mixture_floor('bishop', k, resolution=8, restarts=1,
                                   iterations=300) for k in (1, 2, 3)]
    assert gaps[0] > gaps[1] > gaps[2] > 0, gaps


def test_mixture_floor_forward():
    # Gaussian noise is fitted exactly; uniform noise by one Gaussian loses
    # 0.5 log(2 pi e / 12) - log 1, whatever the width.
    assert floor.mixture_floor('otoro', 1, 'forward') == 0.0
    assert floor.mixture_floor('bishop', 1, 'forward', restarts=1) == \
        pytest.approx(0.5 * np.log(2 * np.pi * np.e / 12), abs=1e-4)


def test_mixture_kl_matches_scipy_optimisation():
    """One input, K = 2: the floor's fit on the quadrature nodes against
    scipy's optimiser on the KL integral by the midpoint rule on a dense
    grid, from three starts."""
    from scipy import optimize, stats
    problem = datasets.PROBLEMS['bishop']
    x = 0.5
    step = 1 / 20000
    grid = (np.arange(20000) + 0.5) * step
    p = problem.likelihood(x, grid)
    p = p / (p.sum() * step)
    grid, p = grid[p > 0], p[p > 0]

    def kl(theta):
        w = 1 / (1 + np.exp(-theta[0]))
        q = (w * stats.norm.pdf(grid, theta[1], np.exp(theta[3]))
             + (1 - w) * stats.norm.pdf(grid, theta[2], np.exp(theta[4])))
        return np.sum(p * (np.log(p) - np.log(q))) * step

    starts = [[0, 0.2, 0.8, np.log(0.1), np.log(0.1)],
              [1, 0.1, 0.5, np.log(0.05), np.log(0.2)],
              [-1, 0.4, 0.9, np.log(0.2), np.log(0.05)]]
    best = min(optimize.minimize(kl, s, method='Nelder-Mead',
                                 options={'xatol': 1e-7, 'fatol': 1e-10,
                                          'maxiter': 3000}).fun for s in starts)
    fitted = floor.mixture_floor_at('bishop', 2, [x])[1][0]
    assert fitted == pytest.approx(best, abs=1e-3)


@pytest.mark.parametrize('name', ['worldmodels', 'bishop'])
def test_default_resolution_is_converged(name):
    # The limits the sweep reports use the default resolution: it must sit
    # on the converged value, not merely near a coarser one.
    assert np.allclose(datasets.limits(name), datasets.limits(name, resolution=64),
                       atol=1e-6, rtol=0)


@pytest.mark.parametrize('name', ['worldmodels', 'bishop'])
def test_conditional_density_vanishes_off_the_support(name):
    problem = datasets.PROBLEMS[name]
    x = np.array([0.0, 0.3])
    # Outside the latent's range: the likelihood alone (periodic in
    # worldmodels) would put mass there.
    beyond = np.array([problem.lo - 0.5, problem.lo - 1e-3, problem.hi + 1e-3,
                       problem.hi + 0.5])
    assert np.all(datasets.conditional_density(name, 'inverse', x, beyond) == 0)
    # Inside the range, exactly where p(x | t) = 0.
    t = np.linspace(problem.lo, problem.hi, 2001)
    p = datasets.conditional_density(name, 'inverse', x, t)
    assert np.array_equal(p > 0, problem.likelihood(x[:, None], t[None, :]) > 0)


@pytest.mark.parametrize('name', datasets.NAMES)
def test_conditional_log_density_at_pairs_is_the_grid_density(name):
    rng = np.random.default_rng(5)
    x, y = datasets.generate(name, 40, rng)
    x, y = x[:, 0].astype(float), y[:, 0].astype(float)
    grid = datasets.conditional_density(name, 'inverse', x, y)
    np.testing.assert_allclose(datasets.conditional_log_density(name, x, y),
                               np.log(np.diag(grid)), rtol=1e-10)
    # A target outside the latent range is impossible.
    assert datasets.conditional_log_density(name, x[:1], [1e3])[0] == -np.inf


def test_mixture_floor_at_each_input_one_component():
    """K = 1 at an input: KL = 0.5 log(2 pi e Var(t | x)) - H(t | x), by the
    midpoint rule on a dense grid of the true density."""
    x = np.array([0.2, 0.5, 0.9])
    p_x, kl = floor.mixture_floor_at('bishop', 1, x, restarts=1)
    t = np.linspace(0, 1, 200001)[:-1] + 0.5 / 200000
    dt = 1 / 200000
    p = datasets.conditional_density('bishop', 'inverse', x, t)
    p /= p.sum(1, keepdims=True) * dt  # the moments' variance is 4e-4: 1e-5 counts
    mean = (p * t).sum(1) * dt
    var = (p * t * t).sum(1) * dt - mean ** 2
    with np.errstate(divide='ignore', invalid='ignore'):
        entropy = -np.where(p > 0, p * np.log(p), 0).sum(1) * dt
    np.testing.assert_allclose(kl, 0.5 * np.log(2 * np.pi * np.e * var) - entropy,
                               atol=2e-3)
    assert np.all(p_x > 0)
