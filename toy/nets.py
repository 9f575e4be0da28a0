"""The networks under every model: activations, `Perceptron` (the hidden layers
and one Linear head), and `LeastSquares`, the least-squares baseline."""
import collections.abc

import numpy as np

import chainer
import chainer.functions as F
import chainer.links as L
from chainer import backend, initializers

from toy import preprocess


def silu(h):
    """SiLU (swish with beta 1), h sigmoid(h): Chainer 7 has only the
    learned-beta F.swish, which would add a parameter."""
    return h * F.sigmoid(h)


ACTIVATIONS = {'none': F.identity, 'tanh': F.tanh, 'relu': F.relu,
               'sigmoid': F.sigmoid, 'silu': silu}


def hidden_widths(hidden):
    """hidden: units of one hidden layer (an int) or of each layer (a
    sequence of ints) -> a list of widths; ValueError if not positive ints."""
    widths = ([hidden] if isinstance(hidden, (int, np.integer)) else list(hidden)
              if isinstance(hidden, collections.abc.Iterable) else None)
    if not widths or not all(isinstance(w, (int, np.integer))
                             and not isinstance(w, bool) and w > 0 for w in widths):
        raise ValueError('hidden must be a positive int or a non-empty sequence of '
                         'them, not {!r}'.format(hidden))
    return [int(w) for w in widths]


def hidden_option(widths):
    """The `hidden` value to record for these widths: an int for one layer,
    so that files written before deeper nets existed still match."""
    widths = hidden_widths(widths)
    return widths[0] if len(widths) == 1 else widths


class Perceptron(chainer.Chain):
    """x (N, in_dim) -> (Linear -> activation) per hidden layer -> Linear -> (N, n_out).

    hidden: an int (one layer, as published) or a list of widths. The layers
    are called hidden, hidden2, hidden3, ..., so a one-layer model keeps the
    parameter names its saved files use.
    """

    def __init__(self, in_dim, hidden, n_out, activation, rng):
        super().__init__()
        in_dim = preprocess.positive_int('in_dim', in_dim)
        widths = hidden_widths(hidden)
        if activation not in ACTIVATIONS:
            raise ValueError('activation must be one of {}, not {!r}'.format(
                ', '.join(sorted(ACTIVATIONS)), activation))
        self.in_dim, self.activation = in_dim, activation
        self.layers = ['hidden'] + ['hidden{}'.format(i)
                                    for i in range(2, len(widths) + 1)]
        with self.init_scope():
            for name, n_in, n in zip(self.layers, [in_dim] + widths, widths):
                setattr(self, name, L.Linear(
                    n_in, n, initialW=initializers.LeCunNormal(rng=rng)))
            self.head = L.Linear(widths[-1], n_out,
                                 initialW=initializers.LeCunNormal(rng=rng))

    def hidden_output(self, x):
        h = x
        for name in self.layers:
            h = getattr(self, name)(h)
            # F.identity would add a node, forward and backward, to every step.
            if self.activation != 'none':
                h = ACTIVATIONS[self.activation](h)
        return h

    def features(self, x):
        return self.head(self.hidden_output(x))

    def spread_kinks(self, x, rng):
        """Start each unit of the first hidden layer bending at a training
        input: its bias is set so that its pre-activation is 0 at a row of x
        (N, in_dim) drawn by the NumPy Generator rng; the weights are kept.

        The layers start with zero biases, so on a 1-D input every unit of a
        ReLU net's first layer bends at x = 0, and the whole starting net is
        linear on each side of it: every bend the fit needs (a density's
        edges move with x) must first be dragged there by training. Drawn
        from the inputs, the bends start where the data are, as many to a
        stretch of x as it has points. Call it before training, with the
        (standardised) training inputs.
        """
        x = backend.CpuDevice().send(self.check_data(x))
        layer = getattr(self, self.layers[0])
        W = backend.CpuDevice().send(layer.W.array)                    # (n, in_dim)
        through = x[rng.integers(len(x), size=len(W))]                 # (n, in_dim)
        layer.b.array[...] = self.device.send(
            -np.sum(W * through, axis=1).astype(layer.b.dtype))

    def loss(self, x, y):
        """The training loss of y (N, out_dim) given x (N, in_dim), a Variable,
        reported as `loss`: the model's `objective`, after the checks.

        The data are checked (`check_data`) unless chainer.config.type_check
        is off: the training loops check the whole data once and run their
        steps without, as a check per step would cost a pass over the batch
        and, on a GPU, a synchronisation.
        """
        if chainer.config.type_check:
            x, y = self.check_data(x, y)
        value = self.objective(x, y)
        chainer.report({'loss': value}, self)
        return value

    def check_data(self, x, y=None):
        """x (N, in_dim) and y (N, out_dim) as float32 arrays (see preprocess.check_data),
        or ValueError naming the argument and what to fix."""
        checked = preprocess.check_data(x, y)
        for a, name, dim in zip(checked if y is not None else (checked,),
                                ('x', 'y'), ('in_dim', 'out_dim')):
            if a.shape[1] != getattr(self, dim):
                raise ValueError('{} has {} column(s) but the model has {} = {}: '
                                 'give {} of shape (N, {})'.format(
                                     name, a.shape[1], dim, getattr(self, dim),
                                     name, getattr(self, dim)))
        return checked


class LeastSquares(Perceptron):
    """The baseline: the published `Linear` model, trained by mean squared error."""

    def __init__(self, in_dim=1, out_dim=1, hidden=256, activation='none',
                 rng=None):
        out_dim = preprocess.positive_int('out_dim', out_dim)
        super().__init__(in_dim, hidden, out_dim, activation, rng)
        self.out_dim = out_dim

    def forward(self, x):
        return self.features(x)

    def objective(self, x, y):
        """Mean squared error, a Variable."""
        return F.mean_squared_error(self.forward(x), y)
