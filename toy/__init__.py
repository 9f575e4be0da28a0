"""Mixture Density Networks in Chainer (Bishop 1994), after the WorldModels toy/mdn.py."""
from toy import compat  # noqa: F401  (patches NumPy/Python for chainer before any other import)
