"""Gauss-Legendre quadrature on piecewise-smooth integrands (toy.datasets' limits)."""
import numpy as np
from scipy.special import roots_legendre


def unit_nodes(resolution, smooth_ends=False):
    """Gauss-Legendre nodes u (R,) and weights (R,) on [0, 1].

    smooth_ends maps u through 10u^3 - 15u^4 + 6u^5, whose derivative vanishes
    to second order at both ends: a square-root edge of p(x) then becomes a
    smooth integrand in u, which Gauss-Legendre handles at its usual rate.
    """
    # scipy's nodes come in O(R) (NumPy's leggauss solves an R x R eigenproblem:
    # half a minute for the K-floor's scoring nodes).
    s, w = roots_legendre(resolution)
    u, w = (s + 1) / 2, w / 2
    if smooth_ends:
        u, w = u ** 3 * (10 - 15 * u + 6 * u ** 2), w * 30 * u ** 2 * (1 - u) ** 2
    return u, w


def piecewise_nodes(breaks, resolution, smooth_ends=False):
    """Nodes and weights (M,) covering [breaks[0], breaks[-1]], piece by piece."""
    u, w = unit_nodes(resolution, smooth_ends)
    a, b = breaks[:-1, None], breaks[1:, None]
    return (a + (b - a) * u).ravel(), ((b - a) * w).ravel()


def bisect(f, a0, a1, target, increasing, iterations=60):
    """a in [a0, a1] with f(a) = target for monotone f, clipped to the ends: (M,)."""
    lo = np.full_like(target, a0, dtype=float)
    hi = np.full_like(target, a1, dtype=float)
    for _ in range(iterations):
        mid = (lo + hi) / 2
        below = f(mid) < target if increasing else f(mid) > target
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return (lo + hi) / 2


def sign_changes(df, lo, hi, n=4096):
    """Roots of df in (lo, hi), located to machine precision."""
    a = np.linspace(lo, hi, n + 1)
    d = df(a)
    roots = []
    for i in np.nonzero(np.sign(d[:-1]) * np.sign(d[1:]) < 0)[0]:
        up = d[i] < 0
        roots.append(float(bisect(df, a[i], a[i + 1], np.zeros(1), up)[0]))
    return roots
