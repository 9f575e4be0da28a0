"""Toy data generators: each returns (input, target) as float32 arrays of shape (n, 1)."""
import numpy as np


def worldmodels(n, rng):
    """The published WorldModels toy/mdn.py data: an inverse problem x -> y.

    y ~ U(0, 1),  x = sin(2 pi y) + 0.2 u (cos(2 pi y) + 2),  u ~ U(0, 1).
    One x has up to three valid y, so a least-squares fit averages them.
    """
    y = rng.uniform(0.0, 1.0, n)
    u = rng.uniform(0.0, 1.0, n)
    x = np.sin(2 * np.pi * y) + 0.2 * u * (np.cos(2 * np.pi * y) + 2)
    return _column(x), _column(y)


def _column(a):
    return np.asarray(a, dtype=np.float32).reshape(-1, 1)
