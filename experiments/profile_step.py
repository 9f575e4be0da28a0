"""Where a training step's time goes: the default MDN's step, phase by phase.

One step of `toy.mdn.MDN` (hidden 256, no activation, K = 5, the fused loss)
is cut into its phases, each timed alone with the device synchronised before
and after (medians over --steps steps, after warm-up):

    hidden   h = x W1 + b1            (N, 256)
    head     [logits | mu | ln_var] = h W2 + b2    (N, 15)
    loss     the fused NLL and its closed-form gradients
    backward Chainer's backprop through head and hidden
    update   Adam on the four parameter arrays

and, beside each phase, the bytes it must at least move through memory and
the rate that implies, so the table says which phases are bound by memory
traffic and which by something else (launches, a poor kernel).

    python -m experiments.profile_step --device 0 --batch-sizes 100000 1048576
"""
import os
import statistics
import sys
import time

import numpy as np

import toy  # noqa: F401  (patches NumPy/Python for chainer before it is imported)
import chainer

from toy import cli, datasets, files, loss
from toy.cli import synchronize
from toy.mdn import MDN

HIDDEN, K = 256, 5
PHASES = ('hidden', 'head', 'loss', 'backward', 'update')


def phase_seconds(batch, device, steps, seed=0):
    """{phase: median seconds} of the default model's step at this batch."""
    x, y = datasets.worldmodels(batch, np.random.default_rng(seed))
    x, y = device.send(x), device.send(y)
    model = MDN(hidden=HIDDEN, k=K, rng=np.random.default_rng(seed))
    model.to_device(device)
    optimizer = chainer.optimizers.Adam()
    optimizer.setup(model)
    times = {p: [] for p in PHASES}

    def timed(phase, f):
        synchronize(device)
        start = time.perf_counter()
        result = f()
        synchronize(device)
        times[phase].append(time.perf_counter() - start)
        return result

    with chainer.using_config('type_check', False):
        for _ in range(steps + 3):          # the first 3 are warm-up
            model.cleargrads()
            h = timed('hidden', lambda: model.hidden(x))
            features = timed('head', lambda: model.head(h))
            nll = timed('loss', lambda: loss.nll_fused_packed(features, y, K))
            timed('backward', nll.backward)
            timed('update', optimizer.update)
    return {p: statistics.median(t[3:]) for p, t in times.items()}


def minimum_bytes(batch):
    """Bytes each phase must read or write at least, float32 (4 bytes)."""
    n, h, out = batch, HIDDEN, K * 3
    params = (1 * h + h) + (h * out + out)
    return {'hidden': 4 * n * (1 + h),           # read x, write h
            'head': 4 * n * (h + out),             # read h, write features
            'loss': 4 * n * (2 * out + 1),         # read features and y, write grads
            # grad of h (write), W2's grad (read h), W1's and b1's grads
            # (read grad of h twice): four passes over an (N, 256) array
            'backward': 4 * n * 4 * h,
            'update': 4 * 4 * params}            # param, grad, two moments


def markdown(result):
    rows = []
    for batch, seconds in result['phases'].items():
        need = minimum_bytes(int(batch))
        step = sum(seconds.values())
        rows.append([batch] + ['{:.3g} ({:.0f})'.format(seconds[p] * 1e3,
                                                       need[p] / seconds[p] / 1e9)
                               for p in PHASES]
                    + ['{:.3g}'.format(step * 1e3), '{:,.0f}'.format(int(batch) / step)])
    header = (['batch'] + ['{} ms (GB/s)'.format(p) for p in PHASES]
              + ['step ms', 'points/s'])
    return '\n'.join(
        ['# Where a training step goes: MDN hidden {}, K = {}, fused loss'
         .format(HIDDEN, K), '',
         'Device: {}. Medians over {} steps after warm-up, each phase timed '
         'alone between synchronisations; "GB/s" is the least memory '
         'traffic the phase needs divided by its time.'.format(
             result['environment'], result['steps']), '',
         *files.markdown_table(header, rows, align='r' * len(header))]) + '\n'


def main(argv=None):
    parser = cli.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_training_arguments(parser, out=os.path.join('results', 'profile'))
    parser.add_argument('--batch-sizes', type=cli.positive, nargs='+',
                        default=[100, 10000, 1048576], help='batch sizes')
    parser.add_argument('--steps', type=cli.positive, default=10,
                        help='timed steps per batch size')
    args = parser.parse_args(argv)
    cli.check_out(parser, args.out)
    device = cli.get_device(parser, args.device)
    result = {'environment': str(device), 'steps': args.steps,
              'phases': {str(b): phase_seconds(b, device, args.steps)
                         for b in args.batch_sizes}}
    if device.xp is not np:
        props = device.xp.cuda.runtime.getDeviceProperties(device.device.id)
        result['environment'] += ', ' + props['name'].decode()
    table = markdown(result)
    os.makedirs(args.out, exist_ok=True)
    with files.atomic_write(os.path.join(args.out, 'profile.md')) as f:
        f.write(table)
    files.write_json(os.path.join(args.out, 'profile.json'), result)
    print(table)
    return 0


if __name__ == '__main__':
    sys.exit(main())
