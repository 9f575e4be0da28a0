"""Training with a Chainer Trainer, reproducible across --resume, and pickle-free loading."""
import hashlib
import zipfile

import numpy as np
from numpy.lib.npyio import NpzFile

import chainer
from chainer import training
from chainer.iterators import SerialIterator
from chainer.serializers import NpzDeserializer
from chainer.training import extensions

#: A run's log and loss plot hold at most this many points, so the cost of
#: logging per epoch stays the same however many epochs the run has
#: (LogReport rewrites its whole file, PlotReport redraws its whole figure).
LOG_POINTS = 100
PLOT_REDRAWS = 10


class ChainedShuffle(object):
    """Order sampler: each epoch's order is a seeded function of the previous one.

    Chainer's snapshot stores the iterator's current order but not the state
    of its random generator; deriving every permutation from (seed, previous
    order) makes a run resumed from a snapshot replay the uninterrupted run.
    """

    def __init__(self, seed):
        self.seed = seed

    def __call__(self, current_order, current_position):
        # A 128-bit digest of the order seeds the next one: a SeedSequence
        # over the whole order costs ~1 us per point, per epoch.
        digest = hashlib.blake2b(np.asarray(current_order, dtype='<i8').tobytes(),
                                 digest_size=16).digest()
        entropy = [self.seed, int.from_bytes(digest, 'little')]
        return np.random.default_rng(entropy).permutation(len(current_order))


class SnapshotMismatch(ValueError):
    """A snapshot given to `train(resume=...)` belongs to another model or set-up."""


def check_finite(name, a):
    """Refuse NaN or inf in user data with a message that says where."""
    a = np.asarray(chainer.backend.CpuDevice().send(a))
    bad = ~np.isfinite(a)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])
        raise ValueError('{} has {} non-finite value(s) (NaN or inf), first in row '
                         '{}: drop or impute them first'.format(name, int(bad.sum()),
                                                                int(rows[0])))


def read_npz_safe(path):
    """The arrays of an .npz file such as a snapshot, as a dict, without pickle.

    Chainer's load_npz passes allow_pickle=True to numpy.load, so a crafted
    file can run code when it is loaded; here object arrays are refused.
    Raises ValueError, with a message that says why, for any unreadable file.
    """
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise ValueError('{} is not a readable .npz snapshot ({})'.format(
            path, ' '.join(str(e).split())))
    if not isinstance(npz, NpzFile):
        raise ValueError('{} is a single array, not an .npz snapshot'.format(path))
    with npz:
        try:
            return {key: npz[key] for key in npz.files}
        except ValueError:
            raise ValueError('{} holds pickled object arrays, which are refused '
                             'because unpickling can run code'.format(path))


def train(model, x, y, *, epochs, batchsize, device, seed, out, name,
          frequency=None, resume=None, quiet=False):
    """Fit `model` (a Chain with a `loss(x, y)` method) by Adam with default settings.

    x (N, in_dim) and y (N, D) are float32 NumPy arrays. Writes into `out`:
    `{name}-log.json`, `{name}-loss.png` and `{name}-snapshot` (the latest,
    every `frequency` epochs). `resume`: the arrays of such a snapshot, from
    `read_npz_safe`, to continue from. Returns the Trainer after the run.
    """
    check_finite('input x', x)
    check_finite('target y', y)
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

    log_every = (max(1, epochs // LOG_POINTS), 'epoch')
    trainer.extend(extensions.LogReport(trigger=log_every,
                                        filename=name + '-log.json'))
    trainer.extend(extensions.PlotReport(
        ['main/loss'], 'epoch', filename=name + '-loss.png',
        trigger=(max(1, epochs // PLOT_REDRAWS), 'epoch')))
    frequency = frequency or max(1, epochs // 10)
    trainer.extend(extensions.snapshot(filename=name + '-snapshot'),
                   trigger=(frequency, 'epoch'))
    if not quiet:
        trainer.extend(extensions.PrintReport(
            ['epoch', 'iteration', 'main/loss', 'elapsed_time']))
        trainer.extend(extensions.ProgressBar(update_interval=100))
    if resume is not None:
        try:
            NpzDeserializer(resume).load(trainer)
        except (KeyError, ValueError) as e:
            raise SnapshotMismatch('the snapshot does not fit this model and '
                                   'options ({}): resume with the options it was '
                                   'made with'.format(' '.join(str(e).split())))
    # Chainer's per-function type checks cost ~5% of a small step; the shapes
    # are fixed for the whole run and the loss checks its own inputs.
    with chainer.using_config('type_check', False):
        trainer.run()
    return trainer
