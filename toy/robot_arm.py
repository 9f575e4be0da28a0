"""Bishop's (1994) second problem: the inverse kinematics of a two-link arm,
with its exact posterior p(theta | x) and Bayes limit."""
import numpy as np

from toy import quadrature


class RobotArm(object):
    """Two-link planar arm (Bishop 1994, NCRG/94/004, robot kinematics section).

    Joint angles theta = (theta1, theta2) ~ U((0.3, 1.2) x (pi/2, 3 pi/2)),
    links L1 = 0.8, L2 = 0.2, and the end effector, observed with isotropic
    Gaussian noise of standard deviation `sigma` (0.01: 1% of the arm's reach)

        x = L1 (cos theta1, sin theta1) - L2 (cos(theta1 + theta2), sin(theta1 + theta2)) + e.

    theta2 is the elbow's interior angle: theta2 = pi is the straight arm, on
    the workspace's outer rim |x| = L1 + L2. Each reachable x has two
    configurations, mirror images about the line from the shoulder to x:
    "elbow up" (theta2 < pi) and "elbow down" (theta2 > pi); their average
    (theta2 = pi) reaches the outer rim instead of x.

    The inverse problem predicts theta (target, D = 2) from x (input). The
    noise gives p(theta | x) a density, so its entropy (the Bayes limit) is
    finite: in each branch p(theta | x) is close to a Gaussian whose
    covariance sigma^2 (J^T J)^-1 (J the Jacobian of the forward kinematics)
    correlates theta1 and theta2, the more so near the rim where J is singular.
    """

    name = 'robot_arm'
    l1, l2 = 0.8, 0.2
    theta1_range = (0.3, 1.2)
    theta2_range = (np.pi / 2, 3 * np.pi / 2)

    def __init__(self, sigma=0.01):
        if not (np.isfinite(sigma) and sigma > 0):
            raise ValueError('sigma must be a finite number > 0, got {}'
                             .format(sigma))
        self.sigma = float(sigma)

    @property
    def log_volume(self):
        """log of the joint-angle box's area: H(theta), the prior's entropy."""
        return float(np.log(np.ptp(self.theta1_range) * np.ptp(self.theta2_range)))

    def elbow(self, theta):
        """Elbow position L1 (cos theta1, sin theta1): (..., 2) for theta (..., 2)."""
        t1 = np.asarray(theta, dtype=float)[..., 0]
        return self.l1 * np.stack([np.cos(t1), np.sin(t1)], axis=-1)

    def forward_kinematics(self, theta):
        """End-effector position without noise: (..., 2) for theta (..., 2)."""
        theta = np.asarray(theta, dtype=float)
        t12 = theta[..., 0] + theta[..., 1]
        return self.elbow(theta) - self.l2 * np.stack([np.cos(t12), np.sin(t12)],
                                                      axis=-1)

    def radius(self, theta2):
        """|x| of the noiseless end effector, a function of theta2 alone."""
        return np.sqrt(self.l1 ** 2 + self.l2 ** 2
                       - 2 * self.l1 * self.l2 * np.cos(theta2))

    def offset(self, theta2):
        """beta with atan2(x2, x1) = theta1 - beta(theta2) for the noiseless x."""
        return np.arctan2(self.l2 * np.sin(theta2), self.l1 - self.l2 * np.cos(theta2))

    def inverse_kinematics(self, x):
        """Both exact solutions for positions x (..., 2): (2, ..., 2), elbow up first.

        Positions off the reachable annulus L1 - L2 <= |x| <= L1 + L2 get the
        configuration of the nearest radius; theta1 is not limited to its range.
        """
        x = np.asarray(x, dtype=float)
        rho2 = np.sum(x * x, axis=-1)
        cos_t2 = (self.l1 ** 2 + self.l2 ** 2 - rho2) / (2 * self.l1 * self.l2)
        up = np.arccos(np.clip(cos_t2, -1, 1))
        alpha = np.arctan2(x[..., 1], x[..., 0])
        branches = [np.stack([alpha + self.offset(t2), t2], axis=-1)
                    for t2 in (up, 2 * np.pi - up)]
        return np.stack(branches)

    def sample(self, n, rng):
        """(theta, x), float64 (n, 2) each; rng is a numpy Generator."""
        theta = np.stack([rng.uniform(*self.theta1_range, n),
                          rng.uniform(*self.theta2_range, n)], axis=-1)
        x = self.forward_kinematics(theta) + self.sigma * rng.standard_normal((n, 2))
        return theta, x

    def log_likelihood(self, x, theta):
        """log p(x | theta) = log N(x; f(theta), sigma^2 I), broadcasting: (...)."""
        e = np.asarray(x, dtype=float) - self.forward_kinematics(theta)
        return (-np.sum(e * e, axis=-1) / (2 * self.sigma ** 2)
                - np.log(2 * np.pi * self.sigma ** 2))

    def marginal_density(self, x, resolution=48, reach=9.0, chunk=4096):
        """p(x) = int p(theta) N(x; f(theta), sigma^2 I) dtheta: (M,) for x (M, 2).

        In polar coordinates x = rho (cos alpha, sin alpha) the noiseless
        f(theta1, theta2) runs, as theta1 varies, along the circle of radius
        r(theta2) at angle theta1 - beta(theta2). The theta1 integral is then
        Gaussian in closed form (normal CDFs at the ends of theta1's range)
        times 1 + sigma^2 / (8 rho r), the first-order correction for the
        circle's curvature (relative error O(sigma^4 / (rho r)^2), < 1e-9).
        The theta2 integral runs by
        Gauss-Legendre (`resolution` nodes) over each branch's window
        |r(theta2) - rho| < reach * sigma, outside which the integrand is
        below exp(-reach^2 / 2).
        """
        from scipy.special import ndtr
        x = np.asarray(x, dtype=float).reshape(-1, 2)
        u, w = quadrature.unit_nodes(resolution)
        l1, l2, s = self.l1, self.l2, self.sigma
        lo1, hi1 = self.theta1_range
        out = np.empty(len(x))
        for start in range(0, len(x), chunk):
            xc = x[start:start + chunk]
            rho = np.hypot(xc[:, 0], xc[:, 1])[:, None]
            alpha = np.arctan2(xc[:, 1], xc[:, 0])[:, None]
            total = 0.0
            # theta2 of radius r on the elbow-up branch (pi/2, pi); the
            # elbow-down branch is its mirror image 2 pi - theta2.
            edges = [np.arccos(np.clip((l1 ** 2 + l2 ** 2 - r ** 2) / (2 * l1 * l2),
                                       -1, 0))
                     for r in (rho - reach * s, rho + reach * s)]
            for sign in (1, -1):
                a, b = (edges[0], edges[1]) if sign == 1 else (
                    2 * np.pi - edges[1], 2 * np.pi - edges[0])
                t2 = a + (b - a) * u
                r = self.radius(t2)
                centre = alpha + self.offset(t2)
                scale = s / np.sqrt(rho * r)
                along = ndtr((hi1 - centre) / scale) - ndtr((lo1 - centre) / scale)
                f = (np.exp(-0.5 * ((rho - r) / s) ** 2) * along * scale
                     * (1 + scale ** 2 / 8) / (np.sqrt(2 * np.pi) * s ** 2))
                total = total + (b - a)[:, 0] * (f @ w)
            out[start:start + chunk] = total
        return out / np.exp(self.log_volume)

    def support(self, margin=9.0):
        """(rho_lo, rho_hi, alpha_lo, alpha_hi): a polar box holding p(x) > 0
        up to `margin` noise widths."""
        t2 = np.linspace(*self.theta2_range, 4097)
        beta = self.offset(t2)
        pad = margin * self.sigma
        rho_lo = self.radius(self.theta2_range[0]) - pad
        return (rho_lo, self.l1 + self.l2 + pad,
                self.theta1_range[0] - beta.max() - pad / rho_lo,
                self.theta1_range[1] - beta.min() + pad / rho_lo)

    def entropy_x(self, resolution=4, pieces_per_sigma=1.0):
        """H(x) = -int p(x) log p(x) dx, and int p(x) dx (a check: 1).

        Composite Gauss-Legendre over the polar box of `support`, pieces of
        width sigma / pieces_per_sigma (in rho, and in rho * alpha), each
        with `resolution` nodes per axis: p(x) is smooth on the scale of sigma.
        """
        rho_lo, rho_hi, a_lo, a_hi = self.support()
        step = self.sigma / pieces_per_sigma
        rho, w_rho = quadrature.piecewise_nodes(
            np.linspace(rho_lo, rho_hi, int(np.ceil((rho_hi - rho_lo) / step)) + 1),
            resolution)
        alpha, w_alpha = quadrature.piecewise_nodes(
            np.linspace(a_lo, a_hi, int(np.ceil((a_hi - a_lo) * rho_hi / step)) + 1),
            resolution)
        rr, aa = np.meshgrid(rho, alpha, indexing='ij')
        p = self.marginal_density(np.stack([rr * np.cos(aa), rr * np.sin(aa)],
                                           axis=-1).reshape(-1, 2)).reshape(rr.shape)
        w = (w_rho * rho)[:, None] * w_alpha[None, :]
        plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
        return float(-np.sum(w * plogp)), float(np.sum(w * p))

    def limits(self, resolution=4, pieces_per_sigma=1.0):
        """H(theta | x) = H(theta) + H(x | theta) - H(x), nats per point.

        H(theta) is the log-area of the angle box, H(x | theta) =
        log(2 pi e sigma^2) the noise's entropy; only H(x) needs quadrature.
        Returns (bayes, h_x, mass), mass = int p(x) dx, a check of the quadrature.
        """
        h_x, mass = self.entropy_x(resolution, pieces_per_sigma)
        bayes = self.log_volume + np.log(2 * np.pi * np.e * self.sigma ** 2) - h_x
        return float(bayes), h_x, mass


def generate(n, rng, sigma=0.01):
    """Bishop's robot-arm inverse problem: input x (n, 2) end-effector
    positions, target theta (n, 2) joint angles, float32. See `RobotArm`."""
    theta, x = RobotArm(sigma).sample(n, rng)
    return x.astype(np.float32), theta.astype(np.float32)
