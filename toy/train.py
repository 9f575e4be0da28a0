"""The Chainer Trainer loop of the published run, with its snapshots.

Like Chainer's examples/mnist `train_mnist.py` (beside it,
`train_mnist_custom_loop.py`; here toy/train_custom_loop.py, the lean loop of
the sweeps): `train` runs a StandardUpdater with LogReport, PrintReport, loss
curves and snapshots that a run can be resumed from (`read_snapshot` checks
one whole before anything is written).
"""
import json
import math
import os

import numpy as np

import chainer
from chainer import training
from chainer.iterators import SerialIterator
from chainer.serializers import DictionarySerializer, NpzDeserializer
from chainer.training import extensions

from toy import files, preprocess
from toy.train_custom_loop import ChainedShuffle, Diverged, evaluate

#: The held-out loss is measured, and the printed report made, at most this
#: many times a run: a pass over the held-out points costs several steps.
LOG_POINTS = 100

#: The snapshot member holding the options that define a run (JSON text).
OPTIONS_KEY = 'run/options'
#: Longest text member (log, plot data, options) a snapshot may hold.
MAX_TEXT = 2 ** 24


class SnapshotMismatch(ValueError):
    """A snapshot given to `train(resume=...)` cannot continue this run."""


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
    epochs = preprocess.positive_int('epochs', epochs)
    frequency = preprocess.positive_int('frequency', frequency, none_ok=True)
    batchsize = preprocess.positive_int('batchsize', batchsize, none_ok=True)
    x, y = preprocess.check_data(x, y)
    batchsize = len(x) if batchsize is None else min(batchsize, len(x))
    options = dict(options or {}, seed=seed, batchsize=batchsize, train_points=len(x),
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
        heldout = preprocess.check_data(*heldout, names=('held-out x', 'held-out y'))
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
            flag = '-' + key if len(key) == 1 else '--' + key.replace('_', '-')
            raise SnapshotMismatch(
                'the snapshot was made with {} {}, this run has {}: resume with '
                'the same {} or start a fresh run'.format(
                    flag, saved.get(key), options.get(key), flag))
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
