"""The lean training loop, and the held-out NLL every script reports.

Like Chainer's examples/mnist `train_mnist_custom_loop.py` beside
`train_mnist.py` (here toy/train.py, the Trainer loop of the published run):
`fit` is a loop of direct `optimizer.update` calls with a decaying step size
and model selection on validation data, for sweeps of many short runs (the
Trainer's extensions and iterator cost more per step than a small MDN's
forward and backward pass). Both loops take x (N, in_dim) and y (N, D)
float32 arrays, a length in epochs and a batchsize, shuffle with
`ChainedShuffle`, check the whole data once with `preprocess.check_data` (the
per-step losses then run unchecked, see `Perceptron.loss`) and raise
`Diverged` when the training loss becomes non-finite.
"""
import hashlib
import math
import time

import numpy as np

import chainer

from toy import preprocess


class Diverged(ValueError):
    """The training loss became non-finite (NaN or inf)."""


class ChainedShuffle(object):
    """Order sampler: each epoch's order is a seeded function of the previous one.

    Chainer's snapshot stores the iterator's current order but not the state
    of its random generator; deriving every permutation from (seed, previous
    order) makes a run resumed from a snapshot replay the uninterrupted run.
    Called as Chainer's iterators call an order sampler.
    """

    def __init__(self, seed):
        self.seed = seed

    def __call__(self, current_order, current_position=0):
        # A 128-bit digest of the order seeds the next one: a SeedSequence
        # over the whole order costs ~1 us per point, per epoch.
        digest = hashlib.blake2b(np.asarray(current_order, dtype='<i8').tobytes(),
                                 digest_size=16).digest()
        entropy = [self.seed, int.from_bytes(digest, 'little')]
        return np.random.default_rng(entropy).permutation(len(current_order))


def evaluate(model, x, y, batch=65536):
    """Mean of model.loss over (x, y), without a graph, as a float.

    The data are checked once here; the batches then skip the per-call checks.
    """
    x, y = preprocess.check_data(x, y)
    total = 0.0
    with chainer.no_backprop_mode(), chainer.using_config('train', False), \
            chainer.using_config('type_check', False):
        for start in range(0, len(x), batch):
            xb = model.device.send(x[start:start + batch])
            yb = model.device.send(y[start:start + batch])
            total += float(model.loss(xb, yb).array) * len(xb)
    return total / len(x)


def heldout_nll(model, x, y, scaler=None):
    """Mean negative log-likelihood of (x, y) under `model`, nats per point.

    Any of the MDN heads (toy.mdn, toy.heads): the mean of its own loss, so
    the NLL is the density it trains. x (N, in_dim) and y (N, D) are in the
    units the model was trained in, or, with the `scaler`
    (preprocess.Standardizer) it was trained under, in original units: the
    NLL is then of y in its own units (the log-Jacobian added). Checked as in
    `evaluate` (ValueError); TypeError for a model that is not a density.
    """
    if not hasattr(model, 'mixture'):
        raise TypeError('heldout_nll needs a mixture density network, not a {}: '
                        'score least squares by its squared error'.format(
                            type(model).__name__))
    x, y = model.check_data(x, y)
    if scaler is None:
        return evaluate(model, x, y)
    return evaluate(model, scaler.inputs(x), scaler.targets(y)) + scaler.log_jacobian


def schedule(n, epochs, batchsize, lr, lr_final):
    """(batchsize, batches per epoch, iterations, decay) of a run of `epochs`
    over n points: batchsize None or >= n is full-batch, and the step size,
    multiplied by decay after every step, goes geometrically from lr (first
    step) to lr_final (last step)."""
    batchsize = n if batchsize is None else min(batchsize, n)
    per_epoch = -(-n // batchsize)
    iterations = epochs * per_epoch
    return (batchsize, per_epoch, iterations,
            (lr_final / lr) ** (1.0 / max(1, iterations - 1)))


def epoch_batches(x, y, order, batchsize, device):
    """One epoch's batches of x and y on `device`: rows in `order` (N,),
    `batchsize` at a time (the last one fewer), or all of x and y as one
    batch at batchsize >= N. Stacked members, x (R, N, .) and y (R, N, .)
    with order (R, N), each take their own rows in their own order."""
    n = order.shape[-1]
    if batchsize >= n:
        return [(x, y)]
    rows = device.send(order)
    members = () if order.ndim == 1 else (device.xp.arange(len(order))[:, None],)
    return [(x[members + (rows[..., i:i + batchsize],)],
             y[members + (rows[..., i:i + batchsize],)]) for i in range(0, n, batchsize)]


def diverged_message(loss_sum, since, epoch, per_epoch):
    """Why a run stopped: its training losses, summed over epochs `since` to
    `epoch`, came to the non-finite `loss_sum`."""
    return ('the training loss became non-finite ({}) between epoch {} and {} '
            '(iterations {} to {}): lower the step size or standardise the data'
            .format(loss_sum, since, epoch, (since - 1) * per_epoch + 1,
                    epoch * per_epoch))


def check_quantile_start(quantile_start, epochs):
    """ValueError unless 0 <= quantile_start < epochs: the NLL must train after
    the quantile start."""
    if not 0 <= quantile_start < epochs:
        raise ValueError('quantile_start must be at least 0 and fewer than the {} '
                         'epochs, not {!r}'.format(epochs, quantile_start))


def fit(model, x, y, x_val, y_val, *, epochs, batchsize=None, lr=1e-2,
        lr_final=1e-4, eval_every=1, seed=0, device=None, progress=None,
        quantile_start=0):
    """Train `model` (a Chain with `loss(x, y)`) by Adam; keep the best validation.

    x (N, in_dim), y (N, D) and the validation pair, float32 (already
    standardised if wanted). Each epoch is one pass over a fresh permutation
    (`ChainedShuffle(seed)`) in batches of `batchsize` (the last one smaller
    if N is not a multiple); batchsize None or >= N is full-batch. The step
    size decays geometrically from lr (first step) to lr_final (last step).
    Every `eval_every` epochs and after the last one the validation loss is
    measured; when the run ends the parameters at its minimum are restored.
    Raises Diverged if the training loss becomes non-finite. `progress`, if
    given, is called with no argument after every epoch (a tqdm bar's update).
    The first `quantile_start` epochs train an MDN's `quantile_start`
    objective instead of its loss (the same optimizer and step-size decay
    go on through both).

    Returns a dict: best_val_loss, best_epoch, epochs, iterations, seconds,
    history (a list of (epoch, validation loss)).
    """
    epochs = preprocess.positive_int('epochs', epochs)
    eval_every = preprocess.positive_int('eval_every', eval_every)
    batchsize = preprocess.positive_int('batchsize', batchsize, none_ok=True)
    check_quantile_start(quantile_start, epochs)
    x, y = preprocess.check_data(x, y)
    x_val, y_val = preprocess.check_data(x_val, y_val, names=('x_val', 'y_val'))
    if device is not None:
        model.to_device(device)
    n = len(x)
    batchsize, per_epoch, iterations, decay = schedule(n, epochs, batchsize, lr,
                                                       lr_final)
    x_dev, y_dev = model.device.send(x), model.device.send(y)
    optimizer = chainer.optimizers.Adam(alpha=lr)
    optimizer.setup(model)
    shuffle = ChainedShuffle(seed)
    order = np.arange(n)
    best_val, best_epoch, best_params, history = math.inf, 0, None, []
    # The training losses are summed on the device and looked at once per
    # evaluation: reading each one would synchronise a GPU every step.
    loss_sum, since = 0, 1
    start = time.time()
    with chainer.using_config('type_check', False):
        for epoch in range(1, epochs + 1):
            if batchsize < n:
                order = shuffle(order)
            batches = epoch_batches(x_dev, y_dev, order, batchsize, model.device)
            objective = model.quantile_start if epoch <= quantile_start else model.loss
            for xb, yb in batches:
                loss = objective(xb, yb)
                model.cleargrads()
                loss.backward()
                optimizer.update()
                optimizer.hyperparam.alpha *= decay
                loss_sum = loss_sum + loss.array
            if progress is not None:
                progress()
            if epoch % eval_every and epoch != epochs:
                continue
            if not math.isfinite(float(loss_sum)):
                raise Diverged(diverged_message(float(loss_sum), since, epoch,
                                                per_epoch))
            loss_sum, since = 0, epoch + 1
            val = evaluate(model, x_val, y_val)
            history.append((epoch, val))
            if val < best_val:
                best_val, best_epoch = val, epoch
                best_params = [p.array.copy() for p in model.params()]
    if best_params is None:
        raise Diverged('the validation loss was never finite ({}): the model '
                       'does not fit the validation data'.format(history[-1][1]))
    for p, a in zip(model.params(), best_params):
        p.array[...] = a
    return {'best_val_loss': best_val, 'best_epoch': best_epoch, 'epochs': epochs,
            'iterations': iterations, 'seconds': time.time() - start,
            'history': history}
