"""Command-line plumbing shared by the scripts: one-line errors and device choice."""
import argparse
import re

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
    count = cuda.cupy.cuda.runtime.getDeviceCount()
    if index >= count:
        parser.error('device {} does not exist: this machine has {} GPU(s)'
                     .format(spec, count))
    device = chainer.get_device('@cupy:{}'.format(index))
    device.use()
    return device


def at_least(minimum):
    """argparse type: an integer >= minimum."""
    def integer(text):
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError('{} is not >= {}'.format(text, minimum))
        return value
    return integer


positive = at_least(1)
