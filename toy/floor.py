"""The K-mixture floor: how close any K-component Gaussian mixture can come to
the Bayes limit of a toy problem (toy.datasets), in nats per point.

For each input x on a quadrature grid, EM then L-BFGS fit K Gaussians to
the true posterior p(a | x) (discretised on quadrature nodes) by minimising
KL(p || q_K); the floor is E_x[min KL], each KL that of the fitted mixture
on finer nodes. The fit is a local search, so the floor is an upper bound:
a network that beats it proves the floor wrong, not the network better.
"""
import itertools

import numpy as np
from scipy import optimize
from scipy.special import log_softmax, logsumexp
from threadpoolctl import threadpool_limits

from toy import datasets, preprocess, quadrature


#: Bytes the K-mixture floor's EM may hold at once (its (inputs, nodes, K)
#: arrays); larger requests are refused before any work.
FLOOR_MEMORY = 2 * 2 ** 30
#: The fit's nodes per piece of a uniform-noise problem, per component: the
#: hard edges of its density want narrow components, which the nodes'
#: spacing bounds from below (`_var_min`).
NODES_PER_COMPONENT = 16
#: The fitted mixture is scored on this many times the fit's nodes, so that
#: the fit's quadrature cannot flatter it.
SCORE = 8
#: A start whose EM fit is within this many nats of the lowest KL found so
#: far is polished.
NEAR = 0.01
#: EM iterations per start: EM mostly picks the start that L-BFGS goes on
#: from (at bishop K = 12, 50 and 200 give the same floor).
EM_ITERATIONS = 100
#: Groupings of a row's branches that start EM where they outnumber the
#: components (`_grouped_starts`): five branches into three need 25.
GROUPINGS = 25
#: A step this many times those beside it crosses zero density (`_branches`).
GAP = 5
#: L-BFGS iterations after EM, per input: EM creeps, L-BFGS goes on.
POLISH_ITERATIONS = 200


def mixture_floor(name, k, direction='inverse', resolution=16, restarts=3,
                  iterations=EM_ITERATIONS, seed=0, progress=None):
    """The lowest gap to the Bayes limit of any K-component Gaussian mixture.

    E_input[min_q KL(p(target | input) || q)] in nats per point, the minimum
    over 1-D mixtures q of k Gaussians taken separately for each input: what
    a perfect network with k components would still lose. k = 1 gives the
    single-Gaussian limit's gap. For each input on a Gauss-Legendre grid
    (`resolution` nodes per piece), q is fitted to the true conditional
    density by EM on its quadrature nodes from several starts (`_fit`), the
    best polished by L-BFGS. A uniform-noise problem's intervals get at
    least NODES_PER_COMPONENT * k nodes each, so that components can be as
    narrow as its hard edges want. The result is the KL of a concrete
    mixture, integrated on finer nodes than it was fitted on: an upper bound
    on the floor (the fit finds a local optimum). k, resolution, restarts
    and iterations (EM's, per start) are ints >= 1; a k whose fit would hold
    more than FLOOR_MEMORY bytes is refused.
    """
    problem = datasets.lookup(name, direction)
    if direction == 'forward':
        normal = isinstance(problem, datasets.NormalNoise)
        # Gaussian noise: any k fits it exactly, with nothing to hold.
        nodes = _floor_nodes(problem, k, resolution, restarts, iterations, 1, 1 - normal)
        if normal:
            return 0.0
        # Uniform noise: KL is invariant to the noise width, so one U(0, 1)
        # stands for every latent.
        a, w = quadrature.piecewise_nodes(np.array([0.0, 1.0]), nodes)
        fits = _fit(a[None], w[None], np.zeros((1, a.size)), k, restarts, iterations, seed)
        fine = quadrature.piecewise_nodes(np.array([0.0, 1.0]), SCORE * nodes)
        return float(_best(a[None], w[None], (fine[0][None], fine[1][None],
                                              np.zeros((1, fine[0].size))), fits)[0])
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
    nodes = (max(resolution, NODES_PER_COMPONENT * k)
             if isinstance(problem, datasets.UniformNoise) else resolution)
    pieces = len(problem.latent_breaks()) - 1 if pieces is None else pieces
    # EM holds about four (inputs, nodes, k) float64 arrays at once, the
    # score a few (inputs, SCORE * nodes) and two (SCORE * nodes, k).
    need = 8 * pieces * nodes * (4 * block * k + SCORE * (4 * block + 2 * k))
    if need > FLOOR_MEMORY:
        raise ValueError(
            'the {}-component mixture floor of {} would hold {:.3g} GiB at once '
            '(at most {:.3g} GiB): use a smaller k, resolution or block'.format(
                k, problem.name, need / 2 ** 30, FLOOR_MEMORY / 2 ** 30))
    return nodes


def mixture_floor_at(name, k, x, resolution=16, restarts=3, iterations=EM_ITERATIONS,
                     seed=0, block=16, progress=None):
    """The inverse problem's K-mixture floor at each input: (p(x), KL), each
    (M,) for x (M,), where KL = min_q KL(p(target | x) || q) in nats over
    1-D mixtures q of k Gaussians (see `mixture_floor`, its average over
    p(x)). x must be finite and inside the problem's support (p(x) > 0):
    elsewhere p(target | x) is undefined and a ValueError says so.

    Mixtures are fitted by EM from several starts (`_fit`) and polished by
    L-BFGS (`_best`) on the latent nodes of `_floor_nodes`, `block` inputs
    at a time, each on the nodes that carry weight for it; the KL returned
    is that of a concrete mixture integrated on SCORE times as many nodes
    (`_kl`): an upper bound on the minimum that the fit's quadrature cannot
    push below it.
    `progress`, if given, is called as progress(inputs done, M) after each
    block: a floor at large K takes minutes."""
    problem = datasets.lookup(name, 'inverse')
    nodes = _floor_nodes(problem, k, resolution, restarts, iterations, block)
    x = preprocess.finite('the inputs x', x).ravel()
    p_out, kl_out = np.zeros(x.size), np.zeros(x.size)
    for start in range(0, x.size, block):
        xs = x[start:start + block]
        a, omega, log_p, p_x = _posterior(problem, name, xs, nodes)
        p_out[start:start + block] = p_x
        kl_out[start:start + block] = _best(a, omega, _posterior(
            problem, name, xs, SCORE * nodes)[:3], _fit(a, omega, log_p, k, restarts,
                                                        iterations, seed))
        if progress is not None:
            progress(min(start + block, x.size), x.size)
    return p_out, kl_out


def _posterior(problem, name, x, nodes):
    """The posterior p(a | x) of inputs x (M,) at latent nodes: (a, omega,
    log_p, p(x)), the first three (M, Q) with omega the quadrature weights
    times the density (summing to one per row) and log_p the log density;
    each row keeps the nodes that carry weight for it, shorter rows padded
    with weightless nodes. ValueError for an input outside the support."""
    a, f = problem.joint_nodes(x, nodes)
    p_x = f.sum(-1)
    if not np.all(p_x > 0):
        raise ValueError(
            'x = {} lies outside the support of {}\'s inputs (about {:.4g} to '
            '{:.4g}): p(x) = 0 there, so p(target | x) has no K-mixture floor'
            .format(', '.join('{:g}'.format(v) for v in x[~(p_x > 0)][:3]), name,
                    *problem.x_breaks()[[0, -1]]))
    carried = f > 1e-14 * p_x[:, None]
    first = np.argsort(~carried, axis=1, kind='stable')[:, :carried.sum(1).max()]
    a = np.take_along_axis(a, first, 1)
    f = np.take_along_axis(f * carried, first, 1)
    with np.errstate(divide='ignore'):
        # p(a | x) = p(x | a) p(a) / p(x), at the nodes.
        log_p = np.log(problem.likelihood(x[:, None], a)
                       / ((problem.hi - problem.lo) * p_x[:, None]))
    return a, f / p_x[:, None], np.where(f > 0, log_p, 0.0), p_x


def _branches(a, omega, log_p):
    """One row's branches at its sorted nodes a (Q,), weights omega, log
    density log_p: (a, omega, edges, mass) of the weighted nodes, branch j
    being nodes edges[j] to edges[j + 1], of mass[j], between two dips of the
    density or two stretches of zero density (a step GAP times those beside
    it and 1 / GAP^2 of the span: `_posterior` drops weightless nodes)."""
    a, omega, log_p = a[omega > 0], omega[omega > 0], log_p[omega > 0]
    dip = np.nonzero((log_p[1:-1] < log_p[:-2]) & (log_p[1:-1] <= log_p[2:]))[0] + 1
    step = np.diff(a)
    beside = np.maximum(np.concatenate([[0], step[:-1]]), np.concatenate([step[1:], [0]]))
    # Across a boundary between pieces of many nodes the steps beside are tiny.
    gap = np.nonzero((step > GAP * beside) & (step > (a[-1] - a[0]) / GAP ** 2))[0] + 1
    edges = np.concatenate([[0], np.union1d(dip, gap), [a.size]])
    return a, omega, edges, np.add.reduceat(omega, edges[:-1])


def _partitions(items, k):
    """Every way to cut `items` into k non-empty groups, one at a time."""
    if len(items) == k:
        yield [[item] for item in items]
    elif k == 1:
        yield [list(items)]
    elif k < len(items):
        first, rest = items[0], items[1:]
        for p in _partitions(rest, k - 1):
            yield [[first]] + p
        for p in _partitions(rest, k):
            for j in range(k):
                yield p[:j] + [[first] + p[j]] + p[j + 1:]


def _grouped_starts(a_sorted, omega_sorted, log_p_sorted, k):
    """Starts [(mu, log_pi, sd)], each (M, k), for rows with more branches
    than k: one component per group (its mean, spread and mass), for each of
    the first GROUPINGS ways to group the branches ([] if no row needs any).
    Groups need not be neighbours: at worldmodels K = 2, x = 0.3, the best
    fit lays a wide component over the outer two of three branches."""
    rows = []
    for a, omega, log_p in zip(a_sorted, omega_sorted, log_p_sorted):
        a, omega, edges, mass = _branches(a, omega, log_p)
        if mass.size <= k:
            rows.append(None)
            continue
        groups = itertools.islice(_partitions(list(range(mass.size)), k), GROUPINGS)
        branch = np.repeat(np.arange(mass.size), np.diff(edges))
        starts = []
        for grouping in groups:
            mu, log_pi, sd = (np.empty(k) for _ in range(3))
            for j, group in enumerate(grouping):
                w = omega * np.isin(branch, group)
                m = w.sum()
                mu[j] = np.sum(w * a) / m
                sd[j] = np.sqrt(np.sum(w * (a - mu[j]) ** 2) / m)
                log_pi[j] = np.log(m)
            starts.append((mu, log_pi, sd))
        rows.append(starts)
    count = max((len(r) for r in rows if r), default=0)
    if not count:
        return []
    fallback = _branch_start(a_sorted, omega_sorted, log_p_sorted, k)
    return [tuple(np.array([r[min(i, len(r) - 1)][part] if r else fallback[part][m]
                            for m, r in enumerate(rows)]) for part in range(3))
            for i in range(count)]


def _branch_start(a_sorted, omega_sorted, log_p_sorted, k):
    """Means mu, log mixture weights log_pi and spreads sd, each (M, k), that
    give each branch (`_branches`) its share of the k components: one each,
    the heaviest first, the rest one at a time to the branch of the largest
    mass per component it would then have, at equally spaced quantiles of
    the branch's mass."""
    mu, log_pi, sd = (np.empty((len(a_sorted), k)) for _ in range(3))
    for row, (a, omega, log_p) in enumerate(zip(a_sorted, omega_sorted, log_p_sorted)):
        a, omega, edges, mass = _branches(a, omega, log_p)
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


def _log_q(a, log_pi, mu, var):
    """log q(a) of the mixtures (log_pi, mu, var), each (M, k), at a (M, Q)."""
    log_joint = log_pi[:, None, :] - 0.5 * (
        np.log(2 * np.pi * var)[:, None, :] + (a[..., None] - mu[:, None, :]) ** 2
        / var[:, None, :])
    return logsumexp(log_joint, axis=-1)


def _fit(a, omega, log_p, k, restarts, iterations, seed):
    """Mixtures of k Gaussians fitted to each row's density by EM, one
    (log_pi, mu, var), each (M, k), per start (`_em`).

    a, omega (weights summing to one per row) and log_p (the density at a)
    are (M, Q). The starts: k quantiles of the density, restarts - 1 random
    quantile levels, `_branch_start` (on otoro, K = 5, the others stopped at
    0.2 nats where it gives 0.02) and `_grouped_starts`. sigma is bounded
    below (`_var_min`).
    """
    rng = np.random.default_rng(seed)
    order = np.argsort(a, axis=-1)
    a_sorted = np.take_along_axis(a, order, -1)
    omega_sorted = np.take_along_axis(omega, order, -1)
    cdf = np.cumsum(omega_sorted, axis=-1)
    mean = np.sum(omega * a, -1, keepdims=True)
    spread = np.sqrt(np.sum(omega * (a - mean) ** 2, -1, keepdims=True))
    var_min = _var_min(a, omega)
    log_p_sorted = np.take_along_axis(log_p, order, -1)
    starts = []
    for r in range(restarts):
        levels = (np.arange(k) + 0.5) / k if r == 0 else np.sort(rng.uniform(0, 1, k))
        index = np.minimum([np.searchsorted(c, levels) for c in cdf], a.shape[-1] - 1)
        starts.append((np.take_along_axis(a_sorted, index, -1), np.full(
            (len(a), k), -np.log(k)), spread / k + np.zeros((len(a), k))))
    starts.append(_branch_start(a_sorted, omega_sorted, log_p_sorted, k))
    starts += _grouped_starts(a_sorted, omega_sorted, log_p_sorted, k)
    return [_em(a, omega, log_pi, mu, sd ** 2 + var_min, var_min, iterations)
            for mu, log_pi, sd in starts]


def _var_min(a, omega):
    """(M, 1): the least variance on the nodes a (M, Q) of weights omega,
    sigma = half the median spacing of the weighted nodes: a narrower
    component could sit on one node and drive the sum, not the integral, to -inf."""
    order = np.argsort(a, axis=-1)
    step = np.diff(np.take_along_axis(a, order, -1), axis=-1)
    carried = (np.take_along_axis(omega, order, -1)[:, 1:] > 0) & (step > 0)
    return np.array([(np.median(s[c]) / 2) ** 2 if c.any() else 1e-300
                     for s, c in zip(step, carried)])[:, None]


def _kl(a, omega, log_p, fitted):
    """KL(p || q) per row (M,) of the mixtures fitted = (log_pi, mu, var),
    each (M, k), from the density log_p at the nodes a of weights omega,
    each (M, Q); a row at a time, to bound the (Q, k) arrays of fine nodes."""
    return np.array([np.sum(omega[m] * (log_p[m] - _log_q(
        a[m:m + 1], *(f[m:m + 1] for f in fitted))[0])) for m in range(len(a))])


def _em(a, omega, log_pi, mu, var, var_min, iterations, tol=1e-10):
    """Weighted EM from (log_pi, mu, var), each (M, k), with var >= var_min
    (M, 1): the fitted (log_pi, mu, var). Each row stops on its own once its
    fit improves by less than tol nats: the slowest would otherwise keep
    every other one iterating."""
    log_pi, mu, var = log_pi.copy(), mu.copy(), var.copy()
    cross = np.full(len(a), np.inf)
    active = np.arange(len(a))
    for _ in range(iterations):
        x, w = a[active], omega[active]
        log_joint = log_pi[active][:, None, :] - 0.5 * (
            np.log(2 * np.pi * var[active])[:, None, :]
            + (x[:, :, None] - mu[active][:, None, :]) ** 2 / var[active][:, None, :])
        log_q = logsumexp(log_joint, axis=-1)
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
                                (x[:, :, None] - m[:, None, :]) ** 2) / n_k + var_min[active]
        log_pi[active] = np.log(n_k)
    return log_pi, mu, var


def _best(a, omega, fine, fits):
    """The lowest KL (M,) of the mixtures `fits` (a list of (log_pi, mu, var),
    each (M, k)) fitted on the nodes a of weights omega (M, Q), and of each
    polished by L-BFGS where its KL is within NEAR of the lowest so far,
    every KL integrated on fine = (nodes, weights, log density), each (M, F)
    (`_kl`). EM's mixture is kept beside: on otoro's few nodes L-BFGS can fit
    the nodes, not the density. At worldmodels K = 5, x = 0.3, EM stops at
    0.176 nats from every start, and L-BFGS goes on to 0.118 to 0.138."""
    scores = [_kl(*fine, fitted) for fitted in fits]
    found = np.min(scores, axis=0)
    for fitted, score in zip(fits, scores):
        near = np.nonzero(score <= found + NEAR)[0]
        polished = _polish(a[near], omega[near], [f[near] for f in fitted])
        found[near] = np.minimum(found[near], _kl(*(f[near] for f in fine), polished))
    return found


def _polish(a, omega, fitted, iterations=POLISH_ITERATIONS):
    """L-BFGS-B from EM's (log_pi, mu, var), each (M, k), on the
    cross-entropy -sum omega log q(a) at the nodes a (M, Q) of weights omega,
    row by row (`_polish_row`), sigma bounded below (`_var_min`): EM creeps
    where components meet the hard edges of a uniform-noise density, and
    stops far from the minimum. On one BLAS thread: L-BFGS's steps are tiny,
    and the others' threads only make them wait."""
    var_min = _var_min(a, omega)[:, 0]
    polished = tuple(np.array(f) for f in fitted)
    with threadpool_limits(limits=1, user_api='blas'):
        for row in range(len(a)):
            keep = omega[row] > 0
            found = _polish_row(a[row, keep], omega[row, keep],
                                *(f[row] for f in polished), var_min[row], iterations)
            for f, value in zip(polished, found):
                f[row] = value
    return polished


def _polish_row(a, omega, log_pi, mu, var, var_min, iterations):
    """`_polish` on one row: nodes a, weights omega (Q,), the mixture (log_pi,
    mu, var), each (k,), and var_min -> the polished mixture."""
    k = len(mu)
    s_min = 0.5 * np.log(var_min)
    # Each mean in units of its component's starting width: a narrow
    # component's mean is then as stiff as a wide one's, which L-BFGS needs
    # (without it, 3,000 steps fell short of where 200 now go).
    scale = np.sqrt(np.maximum(var, var_min))

    def cross_entropy(theta):
        logits, nu, s = theta.reshape(3, k)
        log_pi = log_softmax(logits)
        z = (a[:, None] - nu * scale) * np.exp(-s)
        log_joint = log_pi - s - 0.5 * (np.log(2 * np.pi) + z * z)
        # logsumexp by hand: the exponentials are the responsibilities' too,
        # and scipy's costs more than the rest of a step.
        top = log_joint.max(-1, keepdims=True)
        joint = np.exp(log_joint - top)
        total = joint.sum(-1, keepdims=True)
        r = omega[:, None] * joint / total
        return -np.sum(omega * (top + np.log(total))[:, 0]), np.concatenate([
            np.exp(log_pi) * omega.sum() - r.sum(0), -(r * z).sum(0) * np.exp(-s) * scale,
            -(r * (z * z - 1)).sum(0)])

    start = np.concatenate([log_pi, mu / scale, np.maximum(0.5 * np.log(var), s_min)])
    found = optimize.minimize(
        cross_entropy, start, jac=True, method='L-BFGS-B',
        bounds=[(None, None)] * 2 * k + [(s_min, None)] * k,
        options={'maxiter': iterations, 'ftol': 1e-15, 'gtol': 1e-10})
    logits, nu, s = found.x.reshape(3, k)
    return log_softmax(logits), nu * scale, np.exp(2 * s)
