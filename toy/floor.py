"""The K-mixture floor: how close any K-component Gaussian mixture can come to
the Bayes limit of a toy problem (toy.datasets), in nats per point.

For each input x on a quadrature grid, EM fits K Gaussians to the true
posterior p(a | x) (discretised on quadrature nodes) by minimising
KL(p || q_K); the floor is E_x[min KL]. EM is a local search, so the floor is
an upper bound: a network that beats it proves the floor wrong, not the
network better.
"""
import numpy as np

from toy import datasets, preprocess, quadrature


#: Bytes the K-mixture floor's EM may hold at once (its (inputs, nodes, K)
#: arrays); larger requests are refused before any work.
FLOOR_MEMORY = 2 * 2 ** 30


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
    problem = datasets.lookup(name, direction)
    if direction == 'forward':
        nodes = _floor_nodes(problem, k, resolution, restarts, iterations, 1, 1)
        if isinstance(problem, datasets.NormalNoise):
            return 0.0
        # Uniform noise: KL is invariant to the noise width, so one U(0, 1)
        # stands for every latent.
        a, w = quadrature.piecewise_nodes(np.array([0.0, 1.0]), nodes)
        return float(_mixture_kl(a[None], w[None], np.zeros((1, a.size)), k,
                                 restarts, iterations, seed)[0])
    _floor_nodes(problem, k, resolution, restarts, iterations)
    x, w_x = quadrature.piecewise_nodes(problem.x_breaks(), resolution,
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
    k = preprocess.positive_int('k, the number of mixture components,', k)
    resolution = preprocess.positive_int('resolution', resolution)
    preprocess.positive_int('restarts', restarts)
    preprocess.positive_int('iterations', iterations)
    block = preprocess.positive_int('block', block)
    # Uniform noise cuts the density into intervals with hard edges, each
    # a piece of its own; the Gaussian-noise pieces are fixed and narrow.
    nodes = max(resolution, 4 * k) if isinstance(problem, datasets.UniformNoise) else resolution
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
    problem = datasets.lookup(name, 'inverse')
    nodes = _floor_nodes(problem, k, resolution, restarts, iterations, block)
    x = preprocess.finite('the inputs x', x).ravel()
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
