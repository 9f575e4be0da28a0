"""What every model and loop does to data first: checks and standardisation.

`check_data` refuses what no model can train on (wrong shapes, NaN, inf) with
one line saying what to fix; `Standardizer` maps inputs and targets to zero
mean and unit variance per column, and a density over standardised targets
back to original units. Nothing here knows a model, so everything may import it.
"""
import numbers

import numpy as np

from chainer import backend


def positive_int(name, value, none_ok=False):
    """value as an int, or ValueError naming `name` unless it is an int >= 1
    (or None, where none_ok)."""
    if value is None and none_ok:
        return None
    if (isinstance(value, bool) or not isinstance(value, numbers.Integral)
            or value < 1):
        raise ValueError('{} must be a positive int{}, not {!r}'.format(
            name, ' or None' if none_ok else '', value))
    return int(value)


def check_data(x, y=None, names=('x', 'y')):
    """x (N, in_dim) and y (N, D) as float32 arrays, or ValueError saying what to fix.

    NumPy or CuPy arrays (or anything NumPy converts); float64 and integer
    data are cast to float32, the precision the models train in. Refuses 1-D
    arrays, N = 0, len(x) != len(y), non-real dtypes, NaN and inf (also
    float64 values beyond float32's range). `y` may be None to check inputs
    only. `names` are the arguments' names for the messages.
    """
    checked = []
    for a, name in zip((x, y), names):
        if a is None:
            continue
        xp = backend.get_array_module(a)
        a = xp.asarray(a)
        what = 'inputs (N, in_dim)' if name.startswith('x') else 'targets (N, D)'
        if a.ndim != 2:
            raise ValueError('{} must be a 2-D array of {}, got shape {}{}'.format(
                name, what, a.shape, ': use {}.reshape(-1, 1) for one column'
                .format(name) if a.ndim == 1 else ''))
        if len(a) == 0 or a.shape[1] == 0:
            raise ValueError('{} is empty, shape {}: give at least one row of {}'
                             .format(name, a.shape, what))
        if a.dtype.kind not in 'fiub':
            raise ValueError('{} must hold real numbers (float32; float64 and '
                             'integers are cast), got dtype {}'.format(name, a.dtype))
        for stage, values in (('', a), (' once cast to float32', None)):
            if values is None:
                with np.errstate(over='ignore'):   # reported just below
                    values = a.astype(np.float32, copy=False)
            bad = ~xp.isfinite(values)
            if bad.any():
                rows = xp.nonzero(bad.any(axis=1))[0]
                raise ValueError('{} has {} non-finite value(s) (NaN or inf){} in '
                                 '{} row(s), the first row {}: drop or impute them '
                                 'first'.format(name, int(bad.sum()), stage,
                                                len(rows), int(rows[0])))
        checked.append(values)
    if len(checked) == 2 and len(checked[0]) != len(checked[1]):
        raise ValueError('{} has {} rows but {} has {}: give one target row per '
                         'input row'.format(names[0], len(checked[0]), names[1],
                                            len(checked[1])))
    return tuple(checked) if len(checked) > 1 else checked[0]


class Standardizer(object):
    """Affine maps of inputs and targets to zero mean, unit variance per column.

    Fitted on training data x (N, in_dim), y (N, D). A density over
    standardised targets converts back to original units by adding
    `log_jacobian` to its NLL (nats): p(y) = p(z) / prod_d scale_d.
    """

    KEYS = ('x_mean', 'x_scale', 'y_mean', 'y_scale')

    def __init__(self, x, y):
        x, y = check_data(x, y)
        self.x_mean, self.x_scale = x.mean(0), x.std(0)
        self.y_mean, self.y_scale = y.mean(0), y.std(0)
        # A constant column would divide by zero: leave it unscaled.
        self.x_scale = np.where(self.x_scale > 0, self.x_scale, 1)
        self.y_scale = np.where(self.y_scale > 0, self.y_scale, 1)

    @property
    def log_jacobian(self):
        """sum_d log y_scale_d: add to a standardised NLL for original units."""
        return float(np.sum(np.log(self.y_scale)))

    def inputs(self, x):
        return ((x - self.x_mean) / self.x_scale).astype(np.float32)

    def targets(self, y):
        return ((y - self.y_mean) / self.y_scale).astype(np.float32)

    def untarget(self, y):
        """Standardised targets (..., D) back to original units."""
        return y * self.y_scale + self.y_mean

    def state(self):
        return {key: getattr(self, key) for key in self.KEYS}

    @classmethod
    def from_state(cls, state):
        self = cls.__new__(cls)
        for key in cls.KEYS:
            setattr(self, key, np.asarray(state[key]))
        return self


def finite(what, values):
    """values as a float64 array, refused if any is NaN or infinite."""
    values = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(values)):
        raise ValueError('{} must be finite numbers, got {}'.format(
            what, values[~np.isfinite(values)][:3]))
    return values
