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
import numbers

import numpy as np

DIRECTIONS = ('inverse', 'forward')

#: Gauss-Legendre nodes per piece; doubling it moves every limit < 1e-6.
DEFAULT_RESOLUTION = 32

LOG_2PI_E = float(np.log(2 * np.pi * np.e))

#: Bytes the K-mixture floor's EM may hold at once (its (inputs, nodes, K)
#: arrays); larger requests are refused before any work.
FLOOR_MEMORY = 2 * 2 ** 30


def _count(what, value):
    """value, checked to be an int >= 1 (not a bool, not a float)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError('{} must be an integer >= 1, got {!r}'.format(what, value))
    return int(value)


def _finite(what, values):
    """values as a float64 array, refused if any is NaN or infinite."""
    values = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(values)):
        raise ValueError('{} must be finite numbers, got {}'.format(
            what, values[~np.isfinite(values)][:3]))
    return values


def _column(a):
    return np.asarray(a, dtype=np.float32).reshape(-1, 1)


def _unit_nodes(resolution, smooth_ends=False):
    """Gauss-Legendre nodes u (R,) and weights (R,) on [0, 1].

    smooth_ends maps u through 10u^3 - 15u^4 + 6u^5, whose derivative vanishes
    to second order at both ends: a square-root edge of p(x) then becomes a
    smooth integrand in u, which Gauss-Legendre handles at its usual rate.
    """
    s, w = np.polynomial.legendre.leggauss(resolution)
    u, w = (s + 1) / 2, w / 2
    if smooth_ends:
        u, w = u ** 3 * (10 - 15 * u + 6 * u ** 2), w * 30 * u ** 2 * (1 - u) ** 2
    return u, w


def _piecewise_nodes(breaks, resolution, smooth_ends=False):
    """Nodes and weights (M,) covering [breaks[0], breaks[-1]], piece by piece."""
    u, w = _unit_nodes(resolution, smooth_ends)
    a, b = breaks[:-1, None], breaks[1:, None]
    return (a + (b - a) * u).ravel(), ((b - a) * w).ravel()


def _bisect(f, a0, a1, target, increasing, iterations=60):
    """a in [a0, a1] with f(a) = target for monotone f, clipped to the ends: (M,)."""
    lo = np.full_like(target, a0, dtype=float)
    hi = np.full_like(target, a1, dtype=float)
    for _ in range(iterations):
        mid = (lo + hi) / 2
        below = f(mid) < target if increasing else f(mid) > target
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return (lo + hi) / 2


def _sign_changes(df, lo, hi, n=4096):
    """Roots of df in (lo, hi), located to machine precision."""
    a = np.linspace(lo, hi, n + 1)
    d = df(a)
    roots = []
    for i in np.nonzero(np.sign(d[:-1]) * np.sign(d[1:]) < 0)[0]:
        up = d[i] < 0
        roots.append(float(_bisect(df, a[i], a[i + 1], np.zeros(1), up)[0]))
    return roots


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
        x, w = _piecewise_nodes(self.x_breaks(), resolution,
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
        roots = (_sign_changes(self.d_lower, self.lo, self.hi)
                 + _sign_changes(self.d_upper, self.lo, self.hi))
        return np.unique([self.lo, self.hi] + roots)

    def x_breaks(self):
        a = self.latent_breaks()
        x = np.unique(np.concatenate([self.lower(a), self.upper(a)]))
        # Coincident images (e.g. the two ends of a periodic problem) would
        # make empty pieces.
        return x[np.concatenate([[True], np.diff(x) > 1e-12])]

    def joint_nodes(self, x, resolution=DEFAULT_RESOLUTION):
        x = np.asarray(x, dtype=float)
        u, w = _unit_nodes(resolution)
        nodes, weights = [], []
        breaks = self.latent_breaks()
        for a0, a1 in zip(breaks[:-1], breaks[1:]):
            middle = (a0 + a1) / 2
            rising_lower = self.d_lower(middle) > 0
            rising_upper = self.d_upper(middle) > 0
            r_lower = _bisect(self.lower, a0, a1, x, rising_lower)
            r_upper = _bisect(self.upper, a0, a1, x, rising_upper)
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
        a, w = _piecewise_nodes(self.latent_breaks(), resolution)
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
        a, w = _piecewise_nodes(self.latent_breaks(), resolution)
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


def _problem(name, direction):
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
    a, x = _problem(name, direction).sample(n, rng)
    return (_column(x), _column(a)) if direction == 'inverse' else (_column(a), _column(x))


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
    problem = _problem(name, direction)
    if direction == 'forward':
        return problem.noise_entropy(resolution)
    return problem.inverse_limits(resolution)


def bayes_limit(name, direction='inverse', resolution=DEFAULT_RESOLUTION):
    """H(target | input): the lowest achievable expected NLL, nats per point."""
    return limits(name, direction, resolution)[0]


def gaussian_limit(name, direction='inverse', resolution=DEFAULT_RESOLUTION):
    """E[0.5 log(2 pi e Var(target | input))]: the floor of a single Gaussian."""
    return limits(name, direction, resolution)[1]


def mixture_floor(name, k, direction='inverse', resolution=16, restarts=3,
                  iterations=2000, seed=0, progress=None):
    """The lowest gap to the Bayes limit of any K-component Gaussian mixture.

    E_input[min_q KL(p(target | input) || q)] in nats per point, the minimum
    over 1-D mixtures q of k Gaussians taken separately for each input: what
    a perfect network with k components would still lose. k = 1 gives the
    single-Gaussian limit's gap. For each input on a Gauss-Legendre grid
    (`resolution` nodes per piece), q is fitted to the true conditional
    density by EM on its quadrature nodes, weighted by the density, from
    `restarts` starts (k quantiles of the density, then random quantile
    levels) and one more from its branches (see `_mixture_kl`); the best
    start is kept. The
    intervals of a uniform-noise
    problem get at least 4k nodes each, so that every component spans several.
    The result is an upper bound on the floor (EM finds a local optimum and
    stops when no input's fit improves by 1e-10 nats): other restarts or
    another grouping of the inputs (`mixture_floor_at`'s block) move it by up
    to about 3e-3. k, resolution, restarts and iterations are ints >= 1;
    a k whose EM would hold more than FLOOR_MEMORY bytes is refused.
    """
    problem = _problem(name, direction)
    if direction == 'forward':
        nodes = _floor_nodes(problem, k, resolution, restarts, iterations, 1, 1)
        if isinstance(problem, NormalNoise):
            return 0.0
        # Uniform noise: KL is invariant to the noise width, so one U(0, 1)
        # stands for every latent.
        a, w = _piecewise_nodes(np.array([0.0, 1.0]), nodes)
        return float(_mixture_kl(a[None], w[None], np.zeros((1, a.size)), k,
                                 restarts, iterations, seed)[0])
    _floor_nodes(problem, k, resolution, restarts, iterations)
    x, w_x = _piecewise_nodes(problem.x_breaks(), resolution,
                              smooth_ends=problem.smooth_ends)
    # Inputs of negligible probability (the Gaussian-noise problems' far
    # tails: most of their grid) cannot move the average but cost as much.
    mass = w_x * problem.moments(x, resolution)[0]
    x, w_x = x[mass > 1e-12 * mass.sum()], w_x[mass > 1e-12 * mass.sum()]
    p_x, kl = mixture_floor_at(name, k, x, resolution, restarts, iterations, seed,
                               progress=progress)
    return float(np.sum(w_x * p_x * kl))


def _floor_nodes(problem, k, resolution, restarts, iterations, block=16, pieces=None):
    """Latent nodes per piece for the k-mixture floor, after checking the
    arguments and that EM on `block` inputs of `pieces` latent pieces each
    (all of the problem's by default) fits in FLOOR_MEMORY."""
    k = _count('k, the number of mixture components,', k)
    resolution = _count('resolution', resolution)
    _count('restarts', restarts)
    _count('iterations', iterations)
    block = _count('block', block)
    # Uniform noise cuts the density into intervals with hard edges, each
    # a piece of its own; the Gaussian-noise pieces are fixed and narrow.
    nodes = max(resolution, 4 * k) if isinstance(problem, UniformNoise) else resolution
    pieces = len(problem.latent_breaks()) - 1 if pieces is None else pieces
    # EM holds about four (inputs, nodes, k) float64 arrays at once.
    need = 4 * 8 * block * pieces * nodes * k
    if need > FLOOR_MEMORY:
        raise ValueError(
            'the {}-component mixture floor of {} would hold {:.3g} GiB at once '
            '(at most {:.3g} GiB): use a smaller k, resolution or block'.format(
                k, problem.name, need / 2 ** 30, FLOOR_MEMORY / 2 ** 30))
    return nodes


def mixture_floor_at(name, k, x, resolution=16, restarts=3, iterations=2000, seed=0,
                     block=16, progress=None):
    """The inverse problem's K-mixture floor at each input: (p(x), KL), each
    (M,) for x (M,), where KL = min_q KL(p(target | x) || q) in nats over
    1-D mixtures q of k Gaussians (see `mixture_floor`, its average over
    p(x)). x must be finite and inside the problem's support (p(x) > 0):
    elsewhere p(target | x) is undefined and a ValueError says so. EM runs
    on `block` inputs at a time, on the
    latent nodes that carry weight for any of them: small blocks prune the
    most (the Gaussian-noise problems' posteriors are narrow branches).
    `progress`, if given, is called as progress(inputs done, M) after each
    block: a floor at large K takes minutes."""
    problem = _problem(name, 'inverse')
    nodes = _floor_nodes(problem, k, resolution, restarts, iterations, block)
    x = _finite('the inputs x', x).ravel()
    p_out, kl_out = np.zeros(x.size), np.zeros(x.size)
    for start in range(0, x.size, block):
        xs = x[start:start + block]
        a, f = problem.joint_nodes(xs, nodes)
        p_x = f.sum(-1)
        if not np.all(p_x > 0):
            raise ValueError(
                'x = {} lies outside the support of {}\'s inputs (about {:.4g} to '
                '{:.4g}): p(x) = 0 there, so p(target | x) has no K-mixture floor'
                .format(', '.join('{:g}'.format(v) for v in xs[~(p_x > 0)][:3]), name,
                        *problem.x_breaks()[[0, -1]]))
        # Nodes that carry no weight for an input only cost time: each row
        # keeps its own, the shorter rows padded with weightless nodes.
        carried = f > 1e-14 * p_x[:, None]
        first = np.argsort(~carried, axis=1, kind='stable')[:, :carried.sum(1).max()]
        a = np.take_along_axis(a, first, 1)
        f = np.take_along_axis(f * carried, first, 1)
        omega = f / p_x[:, None]
        with np.errstate(divide='ignore'):
            # p(a | x) = p(x | a) p(a) / p(x), at the nodes.
            log_p = np.log(problem.likelihood(xs[:, None], a)
                           / ((problem.hi - problem.lo) * p_x[:, None]))
        p_out[start:start + block] = p_x
        kl_out[start:start + block] = _mixture_kl(a, omega, log_p, k, restarts,
                                                  iterations, seed)
        if progress is not None:
            progress(min(start + block, x.size), x.size)
    return p_out, kl_out


def _branch_start(a_sorted, omega_sorted, log_p_sorted, k):
    """Means mu, log mixture weights log_pi and spreads sd, each (M, k), that
    give each branch of the density its share of the k components.

    A branch is the stretch between two local minima of the density at the
    sorted nodes (M, Q). Each branch gets one component, the heaviest first;
    any left over go one at a time to the branch of the largest mass per
    component it would then have. Within a branch they sit at equally spaced
    quantiles of its mass.
    """
    mu, log_pi, sd = (np.empty((len(a_sorted), k)) for _ in range(3))
    for row, (a, omega, log_p) in enumerate(zip(a_sorted, omega_sorted, log_p_sorted)):
        a, omega, log_p = a[omega > 0], omega[omega > 0], log_p[omega > 0]
        dip = np.nonzero((log_p[1:-1] < log_p[:-2]) & (log_p[1:-1] <= log_p[2:]))[0] + 1
        edges = np.concatenate([[0], dip, [a.size]])
        mass = np.add.reduceat(omega, edges[:-1])
        count = np.zeros(mass.size, dtype=int)
        for _ in range(k):
            # Masses are below 1: a branch without a component comes first.
            count[np.argmax(mass / (count + 1) + (count == 0))] += 1
        column = 0
        for lo, hi, m, n in zip(edges[:-1], edges[1:], mass, count):
            if not n:
                continue
            levels = (np.arange(n) + 0.5) / n * m
            index = np.minimum(np.searchsorted(np.cumsum(omega[lo:hi]), levels),
                               hi - lo - 1)
            mean = np.sum(omega[lo:hi] * a[lo:hi]) / m
            spread = np.sqrt(np.sum(omega[lo:hi] * (a[lo:hi] - mean) ** 2) / m)
            mu[row, column:column + n] = a[lo:hi][index]
            log_pi[row, column:column + n] = np.log(m / n)
            sd[row, column:column + n] = spread / n
            column += n
    return mu, log_pi, sd


def _mixture_kl(a, omega, log_p, k, restarts, iterations, seed, tol=1e-10):
    """min over k-Gaussian mixtures q of sum omega (log_p - log q(a)), per row.

    a, omega (weights summing to one per row) and log_p (the density at a)
    are (M, Q). Weighted EM, vectorised over rows; returns (M,). The
    starts: k quantiles of the density, then restarts - 1 random quantile
    levels, then `_branch_start` (which the others can miss: on otoro, K = 5,
    three stopped at 0.2 nats where one component per branch gives 0.02).
    """
    rng = np.random.default_rng(seed)
    order = np.argsort(a, axis=-1)
    a_sorted = np.take_along_axis(a, order, -1)
    omega_sorted = np.take_along_axis(omega, order, -1)
    cdf = np.cumsum(omega_sorted, axis=-1)
    mean = np.sum(omega * a, -1, keepdims=True)
    spread = np.sqrt(np.sum(omega * (a - mean) ** 2, -1, keepdims=True))
    # A component narrower than the nodes' spacing could sit on one node and
    # drive the weighted sum, not the integral, to -inf: floor sigma at half
    # the median spacing of the nodes that carry weight.
    step = np.diff(a_sorted, axis=-1)
    carried = (omega_sorted[:, 1:] > 0) & (step > 0)
    floor = np.array([(np.median(s[c]) / 2) ** 2 if c.any() else 0.0
                      for s, c in zip(step, carried)])[:, None]
    entropy = -np.sum(omega * np.where(omega > 0, log_p, 0), -1)
    best = np.full(len(a), np.inf)
    for r in range(restarts + 1):
        if r == restarts:
            mu, log_pi, sd = _branch_start(a_sorted, omega_sorted,
                                           np.take_along_axis(log_p, order, -1), k)
        else:
            levels = ((np.arange(k) + 0.5) / k if r == 0
                      else np.sort(rng.uniform(0, 1, k)))
            index = np.minimum([np.searchsorted(c, levels) for c in cdf],
                               a.shape[-1] - 1)
            mu = np.take_along_axis(a_sorted, index, -1)
            log_pi = np.full(mu.shape, -np.log(k))
            sd = spread / k + np.zeros_like(mu)
        var = sd ** 2 + floor
        cross = np.full(len(a), np.inf)
        # Each input stops on its own once its fit improves by less than
        # tol: the slowest would otherwise keep every other one iterating.
        active = np.arange(len(a))
        for _ in range(iterations):
            x, w = a[active], omega[active]
            m, v = mu[active], var[active]
            log_joint = log_pi[active][:, None, :] - 0.5 * (
                np.log(2 * np.pi * v)[:, None, :]
                + (x[:, :, None] - m[:, None, :]) ** 2 / v[:, None, :])
            top = log_joint.max(-1, keepdims=True)
            log_q = top[..., 0] + np.log(np.exp(log_joint - top).sum(-1))
            new = -np.sum(w * log_q, -1)
            going = cross[active] - new >= tol
            cross[active] = new
            active, x, w = active[going], x[going], w[going]
            if not active.size:
                break
            weight = w[:, :, None] * np.exp(log_joint[going] - log_q[going][:, :, None])
            n_k = weight.sum(1) + 1e-300
            m = np.einsum('mqk,mq->mk', weight, x) / n_k
            mu[active] = m
            var[active] = np.einsum('mqk,mqk->mk', weight,
                                    (x[:, :, None] - m[:, None, :]) ** 2) / n_k + floor[active]
            log_pi[active] = np.log(n_k)
        best = np.minimum(best, cross - entropy)
    return best


def conditional_density(name, direction, inputs, targets,
                        resolution=DEFAULT_RESOLUTION):
    """True p(target | input) on a grid: (len(inputs), len(targets)).

    Zero where p(input) = 0 (outside the inverse problem's support).
    Inputs and targets must be finite.
    """
    problem = _problem(name, direction)
    inputs = _finite('inputs', inputs).ravel()[:, None]
    targets = _finite('targets', targets).ravel()[None, :]
    if direction == 'forward':
        return problem.likelihood(targets, inputs) * np.ones_like(targets)
    p_x = problem.moments(inputs[:, 0], resolution)[0][:, None]
    inside = (targets >= problem.lo) & (targets <= problem.hi)
    joint = problem.likelihood(inputs, targets) * inside / (problem.hi - problem.lo)
    return np.where(p_x > 0, joint / np.where(p_x > 0, p_x, 1.0), 0.0)


def conditional_log_density(name, inputs, targets, resolution=DEFAULT_RESOLUTION):
    """True log p(target | input) of the inverse problem at pairs: (M,) for
    inputs and targets of one shape with M elements (`conditional_density`
    at each pair, not on a grid); -inf where the pair is impossible (p(x) = 0
    or p(target | x) = 0). Both must be finite; inputs and targets of
    different shapes are refused, not broadcast."""
    problem = _problem(name, 'inverse')
    x = _finite('inputs', inputs)
    a = _finite('targets', targets)
    if x.shape != a.shape:
        raise ValueError('conditional_log_density takes pairs: inputs and targets '
                         'must have one shape, got {} and {}'.format(x.shape, a.shape))
    x, a = x.ravel(), a.ravel()
    p_x = problem.moments(x, resolution)[0]
    joint = problem.likelihood(x, a) * ((a >= problem.lo) & (a <= problem.hi)) / (
        problem.hi - problem.lo)
    with np.errstate(divide='ignore', invalid='ignore'):
        return np.where(p_x > 0, np.log(joint) - np.log(p_x), -np.inf)

# --- Bishop's (1994) second problem: inverse kinematics of a two-link arm ---

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
        u, w = _unit_nodes(resolution)
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
        rho, w_rho = _piecewise_nodes(
            np.linspace(rho_lo, rho_hi, int(np.ceil((rho_hi - rho_lo) / step)) + 1),
            resolution)
        alpha, w_alpha = _piecewise_nodes(
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


def robot_arm(n, rng, sigma=0.01):
    """Bishop's robot-arm inverse problem: input x (n, 2) end-effector
    positions, target theta (n, 2) joint angles, float32. See `RobotArm`."""
    theta, x = RobotArm(sigma).sample(n, rng)
    return x.astype(np.float32), theta.astype(np.float32)
