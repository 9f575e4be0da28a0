"""The robot-arm problem: generator, forward/inverse kinematics, p(x) and the Bayes limit.

The limit's quadrature (closed-form theta1 integral, Gauss-Legendre over
theta2 windows and over a polar grid of x) is checked against estimates that
share none of it: p(x) as a plain midpoint sum of N(x; f(theta), sigma^2 I)
over a dense grid of joint angles, and H(theta | x) as a Monte-Carlo mean.
"""
import numpy as np
import pytest

from toy import robot_arm

ARM = robot_arm.RobotArm()


def test_generator_statistics():
    n = 50000
    x, theta = robot_arm.generate(n, np.random.default_rng(0))
    assert x.shape == theta.shape == (n, 2)
    assert x.dtype == theta.dtype == np.float32
    (lo1, hi1), (lo2, hi2) = ARM.theta1_range, ARM.theta2_range
    assert lo1 <= theta[:, 0].min() and theta[:, 0].max() <= hi1
    assert lo2 <= theta[:, 1].min() and theta[:, 1].max() <= hi2
    # Uniform angles: mean and variance of U(lo, hi).
    for t, lo, hi in ((theta[:, 0], lo1, hi1), (theta[:, 1], lo2, hi2)):
        assert abs(t.mean() - (lo + hi) / 2) < 0.01 * (hi - lo)
        assert abs(t.var() / ((hi - lo) ** 2 / 12) - 1) < 0.03
    # The noise: isotropic, uncorrelated, standard deviation sigma.
    e = x - ARM.forward_kinematics(theta)
    assert np.all(np.abs(e.mean(0)) < 4 * ARM.sigma / np.sqrt(n))
    cov = np.cov(e.T)
    np.testing.assert_allclose(np.diag(cov), ARM.sigma ** 2, rtol=0.03)
    assert abs(cov[0, 1]) < 0.03 * ARM.sigma ** 2


def test_forward_kinematics_known_configurations():
    # theta2 = pi: the straight arm reaches L1 + L2 along theta1.
    np.testing.assert_allclose(ARM.forward_kinematics([0.7, np.pi]),
                               np.array([np.cos(0.7), np.sin(0.7)]), atol=1e-12)
    # theta1 = 0, theta2 = pi / 2: the forearm points down from (L1, 0).
    np.testing.assert_allclose(ARM.forward_kinematics([0.0, np.pi / 2]),
                               [0.8, -0.2], atol=1e-12)
    np.testing.assert_allclose(ARM.elbow([[0.3, 2.0]]), [[0.8 * np.cos(0.3),
                                                          0.8 * np.sin(0.3)]])
    # Link lengths: |elbow| = L1 and |x - elbow| = L2 for any angles.
    theta = np.random.default_rng(1).uniform(-4, 4, (100, 2))
    np.testing.assert_allclose(np.linalg.norm(ARM.elbow(theta), axis=1), 0.8)
    np.testing.assert_allclose(np.linalg.norm(
        ARM.forward_kinematics(theta) - ARM.elbow(theta), axis=1), 0.2)


def test_inverse_kinematics_gives_both_branches():
    theta = np.stack([np.random.default_rng(2).uniform(*ARM.theta1_range, 500),
                      np.random.default_rng(3).uniform(*ARM.theta2_range, 500)], 1)
    x = ARM.forward_kinematics(theta)
    up, down = ARM.inverse_kinematics(x)
    for branch in (up, down):
        np.testing.assert_allclose(ARM.forward_kinematics(branch), x, atol=1e-9)
    assert np.all(up[:, 1] <= np.pi) and np.all(down[:, 1] >= np.pi)
    # The mirror image: theta2 -> 2 pi - theta2, and theta is one of the two.
    np.testing.assert_allclose(up[:, 1] + down[:, 1], 2 * np.pi)
    mine = np.where((theta[:, 1] <= np.pi)[:, None], up, down)
    np.testing.assert_allclose(mine, theta, atol=1e-7)
    # Averaging the branches straightens the arm: it reaches the outer rim.
    np.testing.assert_allclose(np.linalg.norm(
        ARM.forward_kinematics((up + down) / 2), axis=1), 1.0)


def brute_density(x, n1=900, n2=1600):
    """p(x) as a midpoint sum over an n1 x n2 grid of joint angles: (M,)."""
    (lo1, hi1), (lo2, hi2) = ARM.theta1_range, ARM.theta2_range
    t1 = lo1 + (hi1 - lo1) * (np.arange(n1) + 0.5) / n1
    t2 = lo2 + (hi2 - lo2) * (np.arange(n2) + 0.5) / n2
    f = ARM.forward_kinematics(np.stack(np.meshgrid(t1, t2), -1).reshape(-1, 2))
    s2 = ARM.sigma ** 2
    return np.array([np.exp(-np.sum((f - xi) ** 2, 1) / (2 * s2)).mean()
                     / (2 * np.pi * s2) for xi in x])


def test_marginal_density_matches_brute_force_grid():
    rng = np.random.default_rng(4)
    _, x = ARM.sample(40, rng)
    # Also points near the rim (the fold of the map) and past the edges.
    x = np.concatenate([x, [[0.6, 0.8 - 0.005], [0.59, 0.81],
                            [0.82 * np.cos(0.7), 0.82 * np.sin(0.7)],
                            [np.cos(1.3), np.sin(1.3)],
                            [np.cos(0.2), np.sin(0.2)]]])
    np.testing.assert_allclose(ARM.marginal_density(x), brute_density(x),
                               rtol=2e-3)


def test_bayes_limit_matches_monte_carlo():
    theta, x = ARM.sample(40000, np.random.default_rng(5))
    # -log p(theta | x) = -log p(x | theta) - log p(theta) + log p(x)
    nll = (-ARM.log_likelihood(x, theta) + ARM.log_volume
           + np.log(ARM.marginal_density(x)))
    bayes, h_x, mass = ARM.limits()
    se = nll.std() / np.sqrt(len(nll))
    assert abs(nll.mean() - bayes) < 4 * se, (nll.mean(), bayes, se)
    assert abs(mass - 1) < 1e-8
    # Against the noiseless two-branch picture: where both branches lie well
    # inside the angle box, p(x) ~ sum over branches of p(theta) / |det J|
    # = 2 / (|Theta| L1 L2 |sin theta2|) at x = f(theta). The noise blurs
    # this by ~1% where 0.9 < |theta2 - pi| < 1.3 (5 sigma inside the inner
    # edge; farther out, (1 - |x|)^-1/2 at the rim curves too fast).
    x0 = ARM.forward_kinematics(theta)
    both = ARM.inverse_kinematics(x0)
    inner = (np.all(np.abs(both[..., 0] - 0.75) < 0.4, axis=0)
             & (np.abs(np.abs(theta[:, 1] - np.pi) - 1.1) < 0.2))
    p0 = 2 / (np.exp(ARM.log_volume) * ARM.l1 * ARM.l2
              * np.abs(np.sin(theta[inner, 1])))
    assert inner.sum() > 1000
    np.testing.assert_allclose(ARM.marginal_density(x0[inner]), p0, rtol=0.02)


def test_bayes_limit_converges():
    fine = ARM.limits(resolution=6, pieces_per_sigma=1.5)
    coarse = ARM.limits()
    assert abs(fine[0] - coarse[0]) < 1e-6 and abs(fine[2] - 1) < 1e-8


def test_bad_sigma_is_refused():
    with pytest.raises(ValueError, match='sigma must be'):
        robot_arm.RobotArm(0.0)
