"""Command-line plumbing shared by the scripts: one-line errors, device, seeds,
--out, sizes, and the options of the sweeps and their storage."""
import argparse
import math
import os
import platform
import re
import sys
import tempfile

import numpy as np

import chainer
from chainer.backends import cuda

from toy import storage, sweep_table
from toy.train_custom_loop import Diverged


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter,
                    argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with "(default: ...)"; the description keeps its lines."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but misuse is one line on stderr and exit status 2, and every
    option's help shows its default."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault('formatter_class', HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, '{}: error: {} (see --help)\n'.format(self.prog, message))


def at_least(minimum):
    """argparse type: an integer >= minimum."""
    def integer(text):
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError('{} is not >= {}'.format(text, minimum))
        return value
    return integer


positive = at_least(1)


def positive_float(text):
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError('{!r} is not a number'.format(text))
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError('{} is not a finite number > 0'.format(text))
    return value


#: NumPy's legacy RandomState (and so CuPy's) takes seeds in [0, 2**32 - 1].
MAX_SEED = 2 ** 32 - 1


def seed(text):
    """argparse type: a seed in [0, 2**32 - 1]."""
    value = int(text)
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError('{} is not in [0, {}]'.format(text, MAX_SEED))
    return value


def add_device_arguments(parser):
    """--device/-d, and Chainer's deprecated --gpu/-g alias (`--gpu 0` is CuPy device 0)."""
    parser.add_argument(
        '--device', '-d', type=str, default='-1',
        help='device: -1 or @numpy for the CPU, N or @cupy:N for GPU N')
    group = parser.add_argument_group('deprecated arguments')
    group.add_argument('--gpu', '-g', dest='device', type=str, nargs='?',
                       const='0', help='GPU id, same as --device N',
                       default=argparse.SUPPRESS)


#: The options every training script shares: (flags, argparse keywords, help).
#: Each script takes those it needs (`add_training_arguments`), with its own
#: defaults; the first flag is the one spelling shown, the others are
#: accepted as aliases (`--epochs` as Chainer's examples spell `--epoch`).
TRAINING_OPTIONS = {
    'epoch': (('--epoch', '-e', '--epochs'), dict(type=positive, metavar='E'),
              'passes over the training set'),
    'batchsize': (('--batchsize', '-b'), dict(type=positive, metavar='B'),
                  'minibatch size'),
    'lr': (('--lr',), dict(type=positive_float, metavar='LR'), 'initial Adam step size'),
    'lr_final': (('--lr-final',), dict(type=positive_float, metavar='LR'),
                 'final Adam step size (geometric decay from --lr)'),
    'hidden': (('--hidden',), dict(type=positive, nargs='+', metavar='UNITS'),
               'hidden units, one number per layer'),
    'activation': (('--activation',), dict(),
                   'hidden activation (none: the published, linear, hidden layer)'),
    'k': (('-k', '--mixtures'), dict(dest='k', type=positive, metavar='K'),
          'mixture components K'),
    'ks': (('-k', '--mixtures'), dict(dest='k', type=positive, nargs='+', metavar='K'),
           'mixture counts K to compare'),
    'train_points': (('--train-points', '--points'), dict(type=positive, metavar='N'),
                     'training points'),
    'val_points': (('--val-points',), dict(type=positive, metavar='N'),
                   'validation points (model selection)'),
    'test_points': (('--test-points',), dict(type=positive, metavar='N'),
                    'held-out test points'),
    'seed': (('--seed',), dict(type=seed, metavar='SEED'),
             'seed of the data, initial weights and shuffling (a value)'),
    'runs': (('--runs', '--seeds'), dict(type=positive, metavar='RUNS'),
             'runs per configuration, with seeds 0 .. RUNS-1 (a count)'),
    'out': (('--out', '-o'), dict(metavar='DIR'), 'output folder'),
}


def add_training_arguments(parser, **defaults):
    """Add the TRAINING_OPTIONS named by `defaults` (name=default value) to
    `parser`, in one spelling for every script, and --device/-d.

    `activation` takes its choices from toy.nets; `ks` is K as a list.
    """
    from toy import nets   # the activations' names
    for name, default in defaults.items():
        flags, kwargs, text = TRAINING_OPTIONS[name]
        kwargs = dict(kwargs, default=default, help=text)
        if name == 'activation':
            kwargs['choices'] = sorted(nets.ACTIVATIONS)
        parser.add_argument(*flags, **kwargs)
    add_device_arguments(parser)


def get_device(parser, spec):
    """The chainer device for `spec`, or exit 2 with why it cannot be used.

    A GPU that was asked for and cannot be used is an error, never a quiet
    fall-back to the CPU: Chainer reports CUDA as unavailable when CuPy is
    missing and also when CuPy cannot load its CUDA libraries (cuBLAS).
    """
    spec = spec.strip()
    cupy_id = re.fullmatch(r'(?:@cupy:)?(\d+)', spec)
    if spec == '@numpy' or re.fullmatch(r'-\d+', spec):
        return chainer.get_device('@numpy')
    if cupy_id is None:
        parser.error("unknown device '{}': use -1 or @numpy for the CPU, "
                     "N or @cupy:N for GPU N".format(spec))
    if not cuda.available:
        reason = getattr(cuda, '_resolution_error', None)
        parser.error('device {} needs CuPy with a working CUDA, but {}; install '
                     'the CuPy wheel for your CUDA (e.g. cupy-cuda12x) or use '
                     '--device -1 for the CPU'.format(
                         spec, ' '.join(str(reason).split()) if reason
                         else 'CUDA is unavailable'))
    index = int(cupy_id.group(1))
    check_gpu_index(parser, spec, index, cuda.cupy.cuda.runtime.getDeviceCount())
    device = chainer.get_device('@cupy:{}'.format(index))
    device.use()
    return device


def check_gpu_index(parser, spec, index, count):
    """Exit 2 unless GPU `index` (asked for as `spec`) is one of the `count`
    GPUs this machine has, numbered 0 to count - 1."""
    if not 0 <= index < count:
        parser.error('device {} does not exist: this machine has {} GPU(s){}'.format(
            spec, count, ', numbered 0 to {}'.format(count - 1) if count else ''))


def check_out(parser, path, option='--out'):
    """Exit 2 unless directory `path` exists or can be created, and is writable.

    Nothing is created: the nearest existing ancestor must be a directory in
    which a file can really be made (a probe file, removed at once). Asking
    the OS for permissions is not enough: root passes every such check, a
    read-only file system refuses root too.
    """
    if not path:
        parser.error('{} is empty: give a directory'.format(option))
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        parser.error('{} {}: {} is a file, not a directory: choose another {}'
                     .format(option, path, existing, option))
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        parser.error('{} {}: cannot write in {} ({}): choose a writable directory'
                     .format(option, path, existing, e.strerror or e))


def available_bytes(device):
    """Memory free for arrays on `device`: MemAvailable of the host, or the GPU's."""
    if device.xp is not np:
        free, _ = device.xp.cuda.runtime.memGetInfo()
        return free
    try:
        with open('/proc/meminfo') as f:
            for line in f:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')


def training_bytes(widths, head, rows, points, in_dim=1, out_dim=1):
    """Rough upper estimate of the bytes one training run holds at once.

    widths: the hidden layers' widths; head: the numbers the head emits per
    input (MDN.head_size); rows: the most rows pushed through the net at
    once (a batch or an evaluation pass); points: the data rows kept (all
    splits). Counted: the parameters with their gradients, Adam's two moments
    and a best copy (float32); the data in float64; and the activations of
    `rows` rows, each hidden layer and the head's output, with their
    gradients and the loss's temporaries (8 per head number).
    """
    sizes = [in_dim] + list(widths) + [head]
    params = sum((n_in + 1) * n for n_in, n in zip(sizes[:-1], sizes[1:]))
    return (4 * 5 * params + 8 * points * (in_dim + out_dim)
            + 4 * 2 * rows * (sum(widths) + 8 * head))


def run_main(main):
    """Run a script's `main()` as a command: its exit status, or for a run
    whose training diverged one line on stderr and status 1, not a traceback."""
    try:
        return main()
    except Diverged as e:
        return '{}: error: {}'.format(os.path.basename(sys.argv[0]), e)


def recorded_options(args, *leave_out):
    """The options of a run as its metrics record them: every parsed option
    but the device and the output folder (and `leave_out`), which do not
    change what the run computes."""
    return {k: v for k, v in vars(args).items()
            if k not in ('device', 'out') + leave_out}


def check_resources(parser, args, memory_needed, sizes):
    """What every script checks before any work, in one line each on failure:
    --out can be written (`check_out`), the device can be used (`get_device`;
    sets args.device) and `memory_needed(args)` bytes are free on it
    (`check_memory`, which names the `sizes` options to shrink). Returns args."""
    check_out(parser, args.out)
    args.device = get_device(parser, args.device)
    check_memory(parser, memory_needed(args), args.device, sizes)
    return args


def check_memory(parser, nbytes, device, options):
    """Exit 2 if a run needing about `nbytes` cannot fit in `device`'s free memory.

    `options`: the options that set the size, named in the message.
    """
    free = available_bytes(device)
    if nbytes > free:
        parser.error('this run needs about {:.3g} GB on {} but {:.3g} GB is free: '
                     'use smaller {}'.format(nbytes / 1e9, device, free / 1e9,
                                             options))


def synchronize(device):
    """Wait until `device` has finished its queued work (a no-op on the CPU):
    a GPU's timings are otherwise those of launching kernels."""
    if device.xp is not np:
        device.device.synchronize()


def cpu_name():
    """The CPU's model name, which decides how a chaotic run's sums round."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown'


def add_sweep_arguments(parser):
    """The options of every sweep script: --jobs, --storage, --retry-failed,
    --report-only (see `open_study`), --remake-models."""
    parser.add_argument('--jobs', '-j', type=positive,
                        default=min(2, os.cpu_count() or 1),
                        help='worker processes on this machine')
    parser.add_argument('--storage', metavar='URL',
                        help='Optuna storage URL shared by all machines, e.g. '
                        'postgresql://user:password@host/db; unset: an SQLite file '
                        'study.db in the output folder')
    parser.add_argument('--retry-failed', action='store_true',
                        help='train again the runs that failed (diverged or raised)')
    parser.add_argument('--report-only', action='store_true',
                        help='export the results from the storage; train nothing')
    parser.add_argument('--remake-models', action='store_true',
                        help='train again the seed-0 models the figures need whose '
                        'files are missing (models are not committed), and say how '
                        'each one\'s score compares with its stored run\'s')


def open_study(parser, out, fields, open_):
    """Check the output folder `out` (and that out/results.csv, if there, is
    an export of a table with these `fields`), then return open_(): the
    script's study, opened in its storage. Exits 2 with one line (parser.error)
    if open_ raises: storage.NoStudy (with --report-only, nothing to report),
    storage.StorageError or OSError."""
    check_out(parser, out)
    path = os.path.join(out, 'results.csv')
    if not sweep_table.csv_is_ours(path, fields):
        parser.error('{} is not a file this script wrote (other columns, or not a '
                     'file): choose another --out'.format(path))
    try:
        return open_()
    except storage.NoStudy as e:
        parser.error('--report-only: nothing to report: {}: run the command without '
                     '--report-only first'.format(e))
    except (OSError, storage.StorageError) as e:
        parser.error(str(e))
