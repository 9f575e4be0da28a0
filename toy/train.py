"""Training, in one place: input checks, standardisation, one shuffle, one evaluator, two loops.

Like Chainer's examples/mnist `train_mnist.py` and `train_mnist_custom_loop.py`
side by side:

* `train`: the Chainer Trainer (StandardUpdater, LogReport, PlotReport,
  snapshots, --resume) for the published run;
* `fit`: a lean loop of direct `optimizer.update` calls with a decaying step
  size and model selection on validation data, for sweeps of many short runs
  (the Trainer's extensions and iterator cost more per step than a small
  MDN's forward and backward pass).

Both take x (N, in_dim) and y (N, D) float32 arrays, a length in epochs and a
batchsize, shuffle with `ChainedShuffle`, check the whole data once with
`check_data` (the per-step losses then run unchecked, see `MDN.loss`) and
raise `Diverged` when the training loss becomes non-finite.
"""
import hashlib
import json
import math
import numbers
import os
import time

import numpy as np

import chainer
from chainer import backend, training
from chainer.iterators import SerialIterator
from chainer.serializers import DictionarySerializer, NpzDeserializer
from chainer.training import extensions

from toy import files

#: The held-out loss is measured, and the printed report made, at most this
#: many times a run: a pass over the held-out points costs several steps.
LOG_POINTS = 100

#: The snapshot member holding the options that define a run (JSON text).
OPTIONS_KEY = 'run/options'
#: Longest text member (log, plot data, options) a snapshot may hold.
MAX_TEXT = 2 ** 24


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


class Diverged(ValueError):
    """The training loss became non-finite (NaN or inf)."""


class SnapshotMismatch(ValueError):
    """A snapshot given to `train(resume=...)` cannot continue this run."""


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------

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
    x, y = check_data(x, y)
    total = 0.0
    with chainer.no_backprop_mode(), chainer.using_config('train', False), \
            chainer.using_config('type_check', False):
        for start in range(0, len(x), batch):
            xb = model.device.send(x[start:start + batch])
            yb = model.device.send(y[start:start + batch])
            total += float(model.loss(xb, yb).array) * len(xb)
    return total / len(x)


# ---------------------------------------------------------------------------
# The lean loop
# ---------------------------------------------------------------------------

def fit(model, x, y, x_val, y_val, *, epochs, batchsize=None, lr=1e-2,
        lr_final=1e-4, eval_every=1, seed=0, device=None, progress=None):
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

    Returns a dict: best_val_loss, best_epoch, epochs, iterations, seconds,
    history (a list of (epoch, validation loss)).
    """
    epochs = positive_int('epochs', epochs)
    eval_every = positive_int('eval_every', eval_every)
    batchsize = positive_int('batchsize', batchsize, none_ok=True)
    x, y = check_data(x, y)
    x_val, y_val = check_data(x_val, y_val, names=('x_val', 'y_val'))
    if device is not None:
        model.to_device(device)
    n = len(x)
    batchsize = n if batchsize is None else min(batchsize, n)
    per_epoch = -(-n // batchsize)
    iterations = epochs * per_epoch
    x_dev, y_dev = model.device.send(x), model.device.send(y)
    optimizer = chainer.optimizers.Adam(alpha=lr)
    optimizer.setup(model)
    decay = (lr_final / lr) ** (1.0 / max(1, iterations - 1))
    shuffle = ChainedShuffle(seed)
    order = np.arange(n)
    best_val, best_epoch, best_params, history = math.inf, 0, None, []
    # The training losses are summed on the device and looked at once per
    # evaluation: reading each one would synchronise a GPU every step.
    loss_sum, since = 0, 1
    start = time.time()
    with chainer.using_config('type_check', False):
        for epoch in range(1, epochs + 1):
            if batchsize == n:
                batches = [(x_dev, y_dev)]
            else:
                order = shuffle(order)
                rows = model.device.send(order)
                batches = [(x_dev[rows[i:i + batchsize]], y_dev[rows[i:i + batchsize]])
                           for i in range(0, n, batchsize)]
            for xb, yb in batches:
                loss = model.loss(xb, yb)
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
                raise Diverged('the training loss became non-finite ({}) between '
                               'epoch {} and {} (iterations {} to {}): lower the '
                               'step size or standardise the data'.format(
                                   float(loss_sum), since, epoch,
                                   (since - 1) * per_epoch + 1, epoch * per_epoch))
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


# ---------------------------------------------------------------------------
# The Chainer Trainer loop
# ---------------------------------------------------------------------------

def _every(period, epochs):
    """Trigger at every `period`-th epoch and at the last one."""
    return training.triggers.ManualScheduleTrigger(
        sorted(set(range(period, epochs + 1, period)) | {epochs}), 'epoch')


def _snapshot(filename, options):
    """Write the trainer's state and `options` to out/filename, atomically."""
    @training.make_extension(priority=-100)   # after the other extensions
    def snapshot(trainer):
        serializer = DictionarySerializer()
        serializer.save(trainer)
        serializer.target[OPTIONS_KEY] = np.array(json.dumps(options, sort_keys=True))
        files.save_npz('{}/{}'.format(trainer.out, filename), serializer.target)
    return snapshot


def _check_divergence(trainer):
    """Raise Diverged when the latest logged mean training loss is not finite."""
    entry = trainer.get_extension('LogReport').log[-1]
    value = entry.get('main/loss', 0.0)
    if not math.isfinite(value):
        raise Diverged('the training loss became non-finite ({}) by epoch {} '
                       '(iteration {}): lower the step size or check the data'
                       .format(value, entry['epoch'], entry['iteration']))


def train(model, x, y, *, epochs, batchsize, device, seed, out, name,
          frequency=None, resume=None, options=None, quiet=False, heldout=None,
          loss_label='loss'):
    """Fit `model` (a Chain with a `loss(x, y)` method) by Adam with default settings.

    x (N, in_dim) and y (N, D) float32 arrays (checked once by `check_data`);
    batchsize None (or >= N) is full-batch. `heldout`: an (x, y) pair whose
    loss is measured LOG_POINTS times a run. Writes into `out`:
    `{name}-log.json` (the mean training loss of every epoch, and the
    held-out loss where measured), `{name}-loss.png` (both against the
    epoch, the y axis named `loss_label`) and `{name}-snapshot` (every
    `frequency` epochs, default epochs / 10, and at the end, so the snapshot
    in `out` is always this run's). `options`: a
    JSON-able dict of what defines the run (seed, model sizes...), stored in
    the snapshot. `resume`: the path of such a snapshot to continue from; it
    is checked whole before anything is written (SnapshotMismatch, one line:
    another model, other options, more epochs than asked, damaged or
    non-finite contents). Raises Diverged if the training loss becomes
    non-finite. Returns the Trainer after the run.
    """
    epochs = positive_int('epochs', epochs)
    frequency = positive_int('frequency', frequency, none_ok=True)
    batchsize = positive_int('batchsize', batchsize, none_ok=True)
    x, y = check_data(x, y)
    batchsize = len(x) if batchsize is None else min(batchsize, len(x))
    options = dict(options or {}, seed=seed, batchsize=batchsize, points=len(x),
                   model=type(model).__name__)
    model.to_device(device)
    optimizer = chainer.optimizers.Adam()
    optimizer.setup(model)
    # The iterator walks indices (its state, and so snapshots, are the same
    # as over a TupleDataset) and the batch is gathered with one fancy index
    # per array from copies kept on the device: a list of `batchsize`
    # examples, restacked by concat_examples, cost more than the step itself.
    x_device, y_device = device.send(x), device.send(y)

    @chainer.dataset.converter()
    def gather(indices, device):
        rows = device.send(np.asarray(indices))
        return x_device[rows], y_device[rows]

    iterator = SerialIterator(range(len(x)), batchsize,
                              order_sampler=ChainedShuffle(seed))
    updater = training.updaters.StandardUpdater(
        iterator, optimizer, converter=gather, loss_func=model.loss,
        device=device)
    trainer = training.Trainer(updater, (epochs, 'epoch'), out=out)

    log_every = _every(max(1, epochs // LOG_POINTS), epochs)
    if heldout is not None:
        heldout = check_data(*heldout, names=('held-out x', 'held-out y'))
        trainer.extend(_heldout_loss(*heldout), trigger=log_every)
    # Kept in memory and written once at the end: LogReport's own file would
    # be rewritten whole every epoch.
    trainer.extend(extensions.LogReport(trigger=(1, 'epoch'), log_name=None))
    # Reads the mean loss LogReport has just logged (the losses are already
    # summed there each step: no extra device sync per step).
    trainer.extend(_check_divergence, trigger=(1, 'epoch'),
                   priority=extensions.LogReport.priority - 1)
    trainer.extend(_snapshot(name + '-snapshot', options), name='snapshot',
                   trigger=_every(frequency or max(1, epochs // 10), epochs))
    # Always there, so that a snapshot's layout does not depend on `quiet`.
    trainer.extend(extensions.LogReport(trigger=log_every, log_name=None),
                   name='printed')
    if not quiet:
        trainer.extend(extensions.PrintReport(
            ['epoch', 'iteration', 'main/loss', 'validation/main/loss',
             'elapsed_time'], log_report='printed'))
        trainer.extend(extensions.ProgressBar(update_interval=100))
    if resume is not None:
        state = read_snapshot(resume, trainer, options)
        try:
            NpzDeserializer(state).load(trainer)
        except (KeyError, ValueError, TypeError) as e:
            raise SnapshotMismatch('{} does not fit this model and options ({})'
                                   .format(resume, ' '.join(str(e).split())))
    # Chainer's per-function type checks cost ~5% of a small step, and the
    # loss's data checks a device sync: the data were checked above.
    with chainer.using_config('type_check', False):
        trainer.run(show_loop_exception_msg=False)
    log = trainer.get_extension('LogReport').log
    files.write_json(os.path.join(out, name + '-log.json'), log)
    from toy import plots     # matplotlib only for runs that finish
    plots.loss_curves(os.path.join(out, name + '-loss.png'), log, loss_label)
    return trainer


def _heldout_loss(x, y):
    """Report the model's mean loss over (x, y) as validation/main/loss."""
    @training.make_extension(priority=training.PRIORITY_WRITER)
    def heldout_loss(trainer):
        model = trainer.updater.get_optimizer('main').target
        chainer.reporter.report({'validation/main/loss': evaluate(model, x, y)})
    return heldout_loss


def read_snapshot(path, trainer, options):
    """The arrays of the snapshot at `path`, checked to continue `trainer`'s run.

    Each member's shape and dtype are checked against the trainer's own
    state before any data are read (a crafted file cannot make this allocate
    more than the run itself needs); then the options, the epoch, the
    iterator's order and the finiteness of every parameter. Raises
    SnapshotMismatch with one line naming the cause.
    """
    fresh = DictionarySerializer()
    try:
        fresh.save(trainer)
    except RuntimeError:
        # Its last entry, the elapsed time, does not exist before a run.
        fresh.target['_snapshot_elapsed_time'] = np.float64(0)
    layout = {key: (a.shape, a.dtype) for key, a in fresh.target.items()}
    # Adam's moments exist only after the first update: one per parameter.
    for key, param in trainer.updater.get_optimizer('main').target.namedparams():
        for moment in ('m', 'v'):
            layout['updater/optimizer:main{}/{}'.format(key, moment)] = (
                param.shape, param.dtype)
            layout['updater/optimizer:main{}/t'.format(key)] = ((), np.dtype(int))

    def check(key, shape, dtype):
        if dtype.kind == 'U':
            if shape != () or dtype.itemsize > 4 * MAX_TEXT:
                raise SnapshotMismatch('{}: {} is text of {} {}, too long for a '
                                       'snapshot'.format(path, key, shape, dtype))
        elif key in layout:
            if (shape, dtype) != layout[key]:
                raise SnapshotMismatch(
                    '{}: {} is {} {} where this model and options need {} {}: the '
                    'snapshot was made by another model or set-up'.format(
                        path, key, shape, dtype, *layout[key]))
        elif not (key.startswith(('extensions/', 'extension_triggers/'))
                  and shape == () and dtype.kind in 'biuf'):
            raise SnapshotMismatch('{}: {} ({} {}) is not part of this model and '
                                   'trainer: the snapshot was made by another model '
                                   'or version'.format(path, key, shape, dtype))

    def read(**kwargs):
        try:
            return files.read_npz_safe(path, **kwargs)
        except SnapshotMismatch:
            raise
        except ValueError as e:
            raise SnapshotMismatch(str(e))

    # The options first: a mismatch is then reported by the option's name.
    saved = read(keys=[OPTIONS_KEY]).get(OPTIONS_KEY)
    if saved is None:
        raise SnapshotMismatch('{} does not record the options it was made with '
                               '(not a snapshot of this version): start a fresh '
                               'run'.format(path))
    try:
        saved = dict(json.loads(str(saved)))
    except (ValueError, TypeError):
        raise SnapshotMismatch('{}: its record of options is damaged'.format(path))
    if saved.get('model') != options['model']:
        raise SnapshotMismatch('{} is a snapshot of a {}, not of a {}'.format(
            path, saved.get('model', 'model of unknown type'), options['model']))
    for key in sorted(set(saved) | set(options)):
        if saved.get(key) != options.get(key):
            raise SnapshotMismatch(
                'the snapshot was made with --{} {}, this run has {}: resume with '
                'the same --{} or start a fresh run'.format(
                    key.replace('_', '-'), saved.get(key), options.get(key),
                    key.replace('_', '-')))
    state = read(check=check)
    missing = [key for key in layout if key not in state
               and key.startswith(('updater/model:', 'updater/iter'))]
    if missing:
        raise SnapshotMismatch('{} lacks {}: not a snapshot of this model'.format(
            path, missing[0]))
    epoch = int(state['updater/iterator:main/epoch'])
    epochs = trainer.stop_trigger.period
    if epoch > epochs:
        raise SnapshotMismatch('the snapshot is at epoch {}, past the {} asked '
                               'for: pass --epoch {} or more'.format(epoch, epochs,
                                                                     epoch))
    n = len(trainer.updater.get_iterator('main').dataset)
    order = state['updater/iterator:main/order']
    position = int(state['updater/iterator:main/current_position'])
    if not (np.array_equal(np.sort(order), np.arange(n)) and 0 <= position < n
            and epoch >= 0 and int(state['updater/iteration']) >= 0):
        raise SnapshotMismatch('{}: the iterator state is damaged (its order is '
                               'not a permutation of the {} points, or a position '
                               'or count is out of range)'.format(path, n))
    for key, a in state.items():
        if a.dtype.kind == 'f' and not np.isfinite(a).all():
            raise SnapshotMismatch('{}: {} holds NaN or inf: the run it comes from '
                                   'had diverged; use an earlier snapshot or start '
                                   'a fresh run'.format(path, key))
    return state
