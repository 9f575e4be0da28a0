"""Toy regression problems with their exact Bayes limits.

Each problem has a latent a ~ U(lo, hi) and an observation x = f(a) + noise
whose density p(x | a) is known in closed form. The *forward* direction
predicts x from a (single-valued); the *inverse* direction, the one the MDN
papers publish, predicts a from x (multi-valued). Generators return
(input, target) as float32 arrays of shape (n, 1).

Limits, in nats per point in the target's original units:

* `bayes_limit`: H(target | input), the lowest expected held-out NLL of any
  model. For the inverse direction it is H(a) + H(x | a) - H(x), where only
  H(x) = -int p(x) log p(x) dx needs quadrature.
* `gaussian_limit`: E_input[0.5 log(2 pi e Var(target | input))], the lowest
  expected NLL of a single Gaussian per input (an MDN with K = 1).

Uniform noise gives p(x) kinks and square-root edges where the support of
p(a | x) changes; the quadrature splits the latent axis where the noise band's
edges turn and the x axis at the images of those turning points, so every
piece is integrated by Gauss-Legendre over a smooth integrand.
"""
import numpy as np

from toy import preprocess, quadrature

DIRECTIONS = ('inverse', 'forward')

#: Gauss-Legendre nodes per piece; doubling it moves every limit < 1e-6.
DEFAULT_RESOLUTION = 32

LOG_2PI_E = float(np.log(2 * np.pi * np.e))


def _column(a):
    return np.asarray(a, dtype=np.float32).reshape(-1, 1)


class Problem(object):
    """Latent a ~ U(lo, hi), observation x with density p(x | a)."""

    name = None
    lo = hi = None
    #: Names of the latent and the observation, for axis labels.
    latent, observed = 'a', 'x'

    def sample(self, n, rng):
        """(a, x), each float64 (n,)."""
        raise NotImplementedError

    def likelihood(self, x, a):
        """p(x | a), broadcasting x against a."""
        raise NotImplementedError

    def x_breaks(self):
        """Points of the x axis between which p(x) is smooth; ends bound its support."""
        raise NotImplementedError

    def latent_breaks(self):
        """The pieces of the latent axis that `joint_nodes` integrates one by one."""
        raise NotImplementedError

    def joint_nodes(self, x, resolution=DEFAULT_RESOLUTION):
        """Latent nodes a and weights f, each (M, Q) for x (M,), such that
        sum_q f g(a) = int g(a) p(x, a) da for smooth g."""
        raise NotImplementedError

    def moments(self, x, resolution=DEFAULT_RESOLUTION):
        """int a^j p(x, a) da for j = 0, 1, 2: (3, M) for x (M,); row 0 is p(x)."""
        x = np.asarray(x, dtype=float)
        flat = x.ravel()
        m = np.empty((3, flat.size))
        # Blocks of x bound the (M, Q) node arrays of the wide latent grids.
        for start in range(0, flat.size, 256):
            a, f = self.joint_nodes(flat[start:start + 256], resolution)
            m[:, start:start + 256] = [f.sum(-1), (f * a).sum(-1),
                                       (f * a * a).sum(-1)]
        return m.reshape((3,) + x.shape)

    def noise_entropy(self, resolution=DEFAULT_RESOLUTION):
        """(H(x | a), E_a[0.5 log(2 pi e Var(x | a))]): the forward limits."""
        raise NotImplementedError

    def inverse_limits(self, resolution=DEFAULT_RESOLUTION):
        """(H(a | x), E_x[0.5 log(2 pi e Var(a | x))]) by quadrature over x."""
        x, w = quadrature.piecewise_nodes(self.x_breaks(), resolution,
                                smooth_ends=self.smooth_ends)
        m0, m1, m2 = self.moments(x, resolution)
        ok = m0 > 0
        p, w = m0[ok], w[ok]
        var = np.maximum(m2[ok] / p - (m1[ok] / p) ** 2, 1e-300)
        h_x = -np.sum(w * p * np.log(p))
        h_x_given_a = self.noise_entropy(resolution)[0]
        bayes = np.log(self.hi - self.lo) + h_x_given_a - h_x
        gaussian = np.sum(w * p * 0.5 * (LOG_2PI_E + np.log(var)))
        return float(bayes), float(gaussian)


class UniformNoise(Problem):
    """x | a ~ U(lower(a), lower(a) + width(a)), width > 0."""

    smooth_ends = True

    def lower(self, a):
        raise NotImplementedError

    def width(self, a):
        raise NotImplementedError

    def upper(self, a):
        return self.lower(a) + self.width(a)

    def d_lower(self, a):
        raise NotImplementedError

    def d_upper(self, a):
        raise NotImplementedError

    def likelihood(self, x, a):
        lower, width = self.lower(a), self.width(a)
        return ((x >= lower) & (x <= lower + width)) / width

    def latent_breaks(self):
        """Latent points between which lower(a) and upper(a) are both monotone."""
        roots = (quadrature.sign_changes(self.d_lower, self.lo, self.hi)
                 + quadrature.sign_changes(self.d_upper, self.lo, self.hi))
        return np.unique([self.lo, self.hi] + roots)

    def x_breaks(self):
        a = self.latent_breaks()
        x = np.unique(np.concatenate([self.lower(a), self.upper(a)]))
        # Coincident images (e.g. the two ends of a periodic problem) would
        # make empty pieces.
        return x[np.concatenate([[True], np.diff(x) > 1e-12])]

    def joint_nodes(self, x, resolution=DEFAULT_RESOLUTION):
        x = np.asarray(x, dtype=float)
        u, w = quadrature.unit_nodes(resolution)
        nodes, weights = [], []
        breaks = self.latent_breaks()
        for a0, a1 in zip(breaks[:-1], breaks[1:]):
            middle = (a0 + a1) / 2
            rising_lower = self.d_lower(middle) > 0
            rising_upper = self.d_upper(middle) > 0
            r_lower = quadrature.bisect(self.lower, a0, a1, x, rising_lower)
            r_upper = quadrature.bisect(self.upper, a0, a1, x, rising_upper)
            # On this piece {a: lower(a) <= x <= upper(a)} is one interval:
            # the intersection of a prefix or suffix for each monotone edge.
            alpha = np.maximum(a0 if rising_lower else r_lower,
                               r_upper if rising_upper else a0)
            beta = np.minimum(r_lower if rising_lower else a1,
                              a1 if rising_upper else r_upper)
            length = np.maximum(beta - alpha, 0.0)[..., None]
            a = alpha[..., None] + length * u
            nodes.append(a)
            weights.append(w * length / self.width(a) / (self.hi - self.lo))
        return np.concatenate(nodes, axis=-1), np.concatenate(weights, axis=-1)

    def noise_entropy(self, resolution=DEFAULT_RESOLUTION):
        a, w = quadrature.piecewise_nodes(self.latent_breaks(), resolution)
        log_width = np.log(self.width(a))
        w = w / (self.hi - self.lo)
        return (float(np.sum(w * log_width)),
                float(np.sum(w * (0.5 * (LOG_2PI_E - np.log(12)) + log_width))))


class NormalNoise(Problem):
    """x | a ~ N(mean(a), sigma^2)."""

    smooth_ends = False
    sigma = 1.0
    #: Widest latent piece: p(x, a) in a is a bump of width ~ sigma / |mean'(a)|.
    a_step = 0.25
    #: Widest x piece, and how many sigmas the x axis extends past mean(a).
    x_step, x_margin = 1.0, 12.0

    def mean(self, a):
        raise NotImplementedError

    def likelihood(self, x, a):
        z = (x - self.mean(a)) / self.sigma
        return np.exp(-0.5 * z * z) / (np.sqrt(2 * np.pi) * self.sigma)

    def _pieces(self, lo, hi, step):
        return np.linspace(lo, hi, int(np.ceil((hi - lo) / step)) + 1)

    def latent_breaks(self):
        return self._pieces(self.lo, self.hi, self.a_step)

    def x_breaks(self):
        mean = self.mean(np.linspace(self.lo, self.hi, 4097))
        return self._pieces(mean.min() - self.x_margin * self.sigma,
                            mean.max() + self.x_margin * self.sigma, self.x_step)

    def joint_nodes(self, x, resolution=DEFAULT_RESOLUTION):
        x = np.asarray(x, dtype=float)[:, None]
        a, w = quadrature.piecewise_nodes(self.latent_breaks(), resolution)
        f = w * self.likelihood(x, a) / (self.hi - self.lo)
        return np.broadcast_to(a, f.shape), f

    def noise_entropy(self, resolution=DEFAULT_RESOLUTION):
        h = 0.5 * LOG_2PI_E + np.log(self.sigma)
        return float(h), float(h)


class WorldModels(UniformNoise):
    """y ~ U(0, 1), x = sin(2 pi y) + 0.2 u (cos(2 pi y) + 2), u ~ U(0, 1)."""

    name, lo, hi, latent, observed = 'worldmodels', 0.0, 1.0, 'y', 'x'

    def sample(self, n, rng):
        y = rng.uniform(0.0, 1.0, n)
        u = rng.uniform(0.0, 1.0, n)
        # The published expression, kept verbatim so seeded data do not change.
        x = np.sin(2 * np.pi * y) + 0.2 * u * (np.cos(2 * np.pi * y) + 2)
        return y, x

    def lower(self, a):
        return np.sin(2 * np.pi * a)

    def width(self, a):
        return 0.2 * (np.cos(2 * np.pi * a) + 2)

    def d_lower(self, a):
        return 2 * np.pi * np.cos(2 * np.pi * a)

    def d_upper(self, a):
        return 2 * np.pi * (np.cos(2 * np.pi * a) - 0.2 * np.sin(2 * np.pi * a))


class Bishop(UniformNoise):
    """t ~ U(0, 1), x = t + 0.3 sin(2 pi t) + e, e ~ U(-0.1, 0.1) (PRML 5.6)."""

    name, lo, hi, latent, observed = 'bishop', 0.0, 1.0, 't', 'x'

    def sample(self, n, rng):
        t = rng.uniform(0.0, 1.0, n)
        x = t + 0.3 * np.sin(2 * np.pi * t) + rng.uniform(-0.1, 0.1, n)
        return t, x

    def lower(self, a):
        return a + 0.3 * np.sin(2 * np.pi * a) - 0.1

    def width(self, a):
        return np.full_like(np.asarray(a, dtype=float), 0.2)

    def d_lower(self, a):
        return 1 + 0.6 * np.pi * np.cos(2 * np.pi * a)

    d_upper = d_lower


class Otoro(NormalNoise):
    """y ~ U(-10.5, 10.5), x = 7 sin(0.75 y) + 0.5 y + e, e ~ N(0, 1) (Ha 2015)."""

    name, lo, hi, latent, observed = 'otoro', -10.5, 10.5, 'y', 'x'

    def sample(self, n, rng):
        y = rng.uniform(-10.5, 10.5, n)
        x = self.mean(y) + rng.standard_normal(n)
        return y, x

    def mean(self, a):
        return 7 * np.sin(0.75 * a) + 0.5 * a


PROBLEMS = {p.name: p for p in (WorldModels(), Bishop(), Otoro())}
NAMES = tuple(PROBLEMS)


def lookup(name, direction):
    if name not in PROBLEMS:
        raise ValueError('unknown dataset {!r}: choose from {}'.format(
            name, ', '.join(NAMES)))
    if direction not in DIRECTIONS:
        raise ValueError('unknown direction {!r}: choose from {}'.format(
            direction, ', '.join(DIRECTIONS)))
    return PROBLEMS[name]


def generate(name, n, rng, direction='inverse'):
    """n draws of problem `name`: (input, target), float32 (n, 1) each.

    rng is a numpy Generator. Both directions draw the same (a, x) from the
    same rng state; inverse returns (x, a), forward (a, x).
    """
    a, x = lookup(name, direction).sample(n, rng)
    return (_column(x), _column(a)) if direction == 'inverse' else (_column(a), _column(x))


def train_test(name, seeds, train_points, test_points):
    """The training and the held-out (input, target) pairs of a run whose
    random streams are `seeds` (np.random.SeedSequence(seed).spawn(...)):
    the first draws the training data, the second the held-out data."""
    return (generate(name, train_points, np.random.default_rng(seeds[0])),
            generate(name, test_points, np.random.default_rng(seeds[1])))


def worldmodels(n, rng, direction='inverse'):
    """The published WorldModels toy/mdn.py data; inverse: input x, target y.

    y ~ U(0, 1),  x = sin(2 pi y) + 0.2 u (cos(2 pi y) + 2),  u ~ U(0, 1).
    One x has up to three valid y, so a least-squares fit averages them.
    """
    return generate('worldmodels', n, rng, direction)


def bishop(n, rng, direction='inverse'):
    """Bishop (1994) / PRML 5.6; inverse: input x, target t. See `Bishop`."""
    return generate('bishop', n, rng, direction)


def otoro(n, rng, direction='inverse'):
    """David Ha's 2015 post; inverse: input x, target y. See `Otoro`."""
    return generate('otoro', n, rng, direction)


def limits(name, direction='inverse', resolution=DEFAULT_RESOLUTION):
    """(bayes, single_gaussian) limits in nats per point, target's units."""
    problem = lookup(name, direction)
    if direction == 'forward':
        return problem.noise_entropy(resolution)
    return problem.inverse_limits(resolution)


def bayes_limit(name, direction='inverse', resolution=DEFAULT_RESOLUTION):
    """H(target | input): the lowest achievable expected NLL, nats per point."""
    return limits(name, direction, resolution)[0]


def gaussian_limit(name, direction='inverse', resolution=DEFAULT_RESOLUTION):
    """E[0.5 log(2 pi e Var(target | input))]: the floor of a single Gaussian."""
    return limits(name, direction, resolution)[1]


def conditional_density(name, direction, inputs, targets,
                        resolution=DEFAULT_RESOLUTION):
    """True p(target | input) on a grid: (len(inputs), len(targets)).

    Zero where p(input) = 0 (outside the inverse problem's support).
    Inputs and targets must be finite.
    """
    problem = lookup(name, direction)
    inputs = preprocess.finite('inputs', inputs).ravel()[:, None]
    targets = preprocess.finite('targets', targets).ravel()[None, :]
    if direction == 'forward':
        return problem.likelihood(targets, inputs) * np.ones_like(targets)
    p_x = problem.moments(inputs[:, 0], resolution)[0][:, None]
    inside = (targets >= problem.lo) & (targets <= problem.hi)
    joint = problem.likelihood(inputs, targets) * inside / (problem.hi - problem.lo)
    return np.where(p_x > 0, joint / np.where(p_x > 0, p_x, 1.0), 0.0)


def conditional_log_density(name, inputs, targets, resolution=DEFAULT_RESOLUTION,
                            direction='inverse'):
    """True log p(target | input) at pairs: (M,) for inputs and targets of
    one shape with M elements (`conditional_density` at each pair, not on a
    grid); -inf where the pair is impossible (p(x) = 0 or p(target | x) = 0).
    Both must be finite; inputs and targets of different shapes are refused,
    not broadcast."""
    problem = lookup(name, direction)
    x = preprocess.finite('inputs', inputs)
    a = preprocess.finite('targets', targets)
    if x.shape != a.shape:
        raise ValueError('conditional_log_density takes pairs: inputs and targets '
                         'must have one shape, got {} and {}'.format(x.shape, a.shape))
    x, a = x.ravel(), a.ravel()
    if direction == 'forward':
        # The input is the latent: p(target | input) is the noise's density.
        with np.errstate(divide='ignore'):
            return np.log(problem.likelihood(a, x))
    p_x = problem.moments(x, resolution)[0]
    joint = problem.likelihood(x, a) * ((a >= problem.lo) & (a <= problem.hi)) / (
        problem.hi - problem.lo)
    with np.errstate(divide='ignore', invalid='ignore'):
        return np.where(p_x > 0, np.log(joint) - np.log(p_x), -np.inf)

# --- Bishop's (1994) second problem: inverse kinematics of a two-link arm ---


