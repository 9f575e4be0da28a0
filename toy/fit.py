"""A lean training loop for sweeps: Adam by direct `optimizer.update`, no Trainer.

The Trainer's extensions and iterator cost more per iteration than a small
MDN's forward and backward pass; a sweep of many short runs pays that many
thousand times. Model selection is on a validation set only.
"""
import time

import numpy as np

import chainer

from toy import train


class Standardizer(object):
    """Affine maps of input and target to zero mean, unit variance per column.

    Fitted on the training set. A density over standardised targets converts
    back to the original units by adding `log_jacobian` to its NLL (nats).
    """

    def __init__(self, x, t):
        self.x_mean, self.x_scale = x.mean(0), x.std(0)
        self.t_mean, self.t_scale = t.mean(0), t.std(0)
        # A constant column would divide by zero: leave it unscaled.
        self.x_scale = np.where(self.x_scale > 0, self.x_scale, 1)
        self.t_scale = np.where(self.t_scale > 0, self.t_scale, 1)

    @property
    def log_jacobian(self):
        """sum_d log scale_t_d: add to a standardised NLL for original units."""
        return float(np.sum(np.log(self.t_scale)))

    def inputs(self, x):
        return ((x - self.x_mean) / self.x_scale).astype(np.float32)

    def targets(self, t):
        return ((t - self.t_mean) / self.t_scale).astype(np.float32)

    def untarget(self, t):
        """Standardised targets (..., D) back to original units."""
        return t * self.t_scale + self.t_mean

    def state(self):
        return {'x_mean': self.x_mean, 'x_scale': self.x_scale,
                't_mean': self.t_mean, 't_scale': self.t_scale}

    @classmethod
    def from_state(cls, state):
        self = cls.__new__(cls)
        for key in ('x_mean', 'x_scale', 't_mean', 't_scale'):
            setattr(self, key, np.asarray(state[key]))
        return self


def mean_loss(model, x, t, batch=65536):
    """model.loss averaged over (x, t) without a graph, as a float."""
    total = 0.0
    with chainer.no_backprop_mode(), chainer.using_config('train', False):
        for start in range(0, len(x), batch):
            xb = model.xp.asarray(x[start:start + batch])
            tb = model.xp.asarray(t[start:start + batch])
            total += float(model.loss(xb, tb).array) * len(xb)
    return total / len(x)


def fit(model, x, t, x_val, t_val, *, iterations, lr=1e-2, lr_final=1e-4,
        batchsize=None, eval_every=50, seed=0, device=None):
    """Train `model` (a Chain with `loss(x, t)`) by Adam; keep the best validation.

    x (N, in_dim), t (N, D) and the validation pair are float32 arrays, already
    standardised. The step size decays geometrically from lr to lr_final over
    the run. batchsize None is full-batch. Every `eval_every` iterations (and
    at the end) the validation loss is measured and the parameters at its
    minimum are restored when the run ends. Returns a dict: best_val_loss,
    best_iteration, iterations, seconds, history (a list of (iteration,
    validation loss)).
    """
    for name, a in (('input x', x), ('target t', t),
                    ('validation x', x_val), ('validation t', t_val)):
        train.check_finite(name, a)
    if device is not None:
        model.to_device(device)
    xp = model.xp
    x_dev, t_dev = xp.asarray(x), xp.asarray(t)
    optimizer = chainer.optimizers.Adam(alpha=lr)
    optimizer.setup(model)
    decay = (lr_final / lr) ** (1.0 / max(1, iterations - 1))
    rng = np.random.default_rng(seed)
    order, position = np.arange(len(x)), len(x)
    best, history = (np.inf, 0, None), []
    start = time.time()
    for i in range(1, iterations + 1):
        if batchsize is None or batchsize >= len(x):
            xb, tb = x_dev, t_dev
        else:
            if position + batchsize > len(x):
                order, position = rng.permutation(len(x)), 0
            index = order[position:position + batchsize]
            position += batchsize
            xb, tb = x_dev[index], t_dev[index]
        optimizer.update(model.loss, xb, tb)
        optimizer.hyperparam.alpha *= decay
        if i % eval_every == 0 or i == iterations:
            val = mean_loss(model, x_val, t_val)
            history.append((i, val))
            if val < best[0]:
                best = (val, i, [p.array.copy() for p in model.params()])
    if best[2] is not None:
        for p, a in zip(model.params(), best[2]):
            p.array[...] = a
    return {'best_val_loss': best[0], 'best_iteration': best[1],
            'iterations': iterations, 'seconds': time.time() - start,
            'history': history}
