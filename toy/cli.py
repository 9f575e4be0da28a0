"""Command-line plumbing shared by the scripts: one-line errors, device, seeds, --out, sizes."""
import argparse
import math
import os
import platform
import re
import tempfile

import numpy as np

import chainer
from chainer.backends import cuda


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but misuse is one line on stderr and exit status 2."""

    def error(self, message):
        self.exit(2, '{}: error: {} (see --help)\n'.format(self.prog, message))


def add_device_arguments(parser):
    """--device/-d, and Chainer's deprecated --gpu/-g alias (`--gpu 0` is CuPy device 0)."""
    parser.add_argument(
        '--device', '-d', type=str, default='-1',
        help='device: -1 or @numpy for the CPU, N or @cupy:N for GPU N '
             '(default: -1)')
    group = parser.add_argument_group('deprecated arguments')
    group.add_argument('--gpu', '-g', dest='device', type=str, nargs='?',
                       const='0', help='GPU id, same as --device N')


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


def check_memory(parser, nbytes, device, options):
    """Exit 2 if a run needing about `nbytes` cannot fit in `device`'s free memory.

    `options`: the options that set the size, named in the message.
    """
    free = available_bytes(device)
    if nbytes > free:
        parser.error('this run needs about {:.3g} GB on {} but {:.3g} GB is free: '
                     'use smaller {}'.format(nbytes / 1e9, device, free / 1e9,
                                             options))


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
