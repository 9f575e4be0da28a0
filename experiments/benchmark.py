"""Side-by-side speed of the published WorldModels toy MDN and this repository's.

From one run, on one device:
  * seconds per training step (forward, backward, Adam) of
      (a) the published script's model and loss, re-implemented below,
      (b) toy.mdn.MDN with nll_logspace, (c) toy.mdn.MDN with nll_fused,
    at the published configuration (hidden 256, K = 5, batch 100) and at
    larger batches;
  * the whole published run, 2000 epochs of 500 points in a Chainer Trainer
    with its logging, for (a) and for (c) through toy.train.train;
  * samples per second of toy.mdn.sample against the published per-row loop.
Times are medians over --repeats timed blocks after warm-up; the variants are
interleaved block by block so that load from other processes hits them alike.

    python -m experiments.benchmark                  # CPU, writes results/benchmark/
    python -m experiments.benchmark --device 0 --batch-sizes 100 1000 100000 1048576

BLAS runs one thread unless OMP_NUM_THREADS, OPENBLAS_NUM_THREADS or
MKL_NUM_THREADS is set (see below); the table records the setting.
"""
import contextlib
import os
import platform
import statistics
import sys
import tempfile
import time

# One BLAS thread unless the caller sets one of these: on a small or shared
# CPU, OpenBLAS's threads spin against each other and other processes, and a
# step at batch 1000 took 60-140 ms instead of 2-4 ms (its time then measures
# the load, not the code). Must precede the first import of NumPy.
_THREAD_VARS = ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS')
if not any(v in os.environ for v in _THREAD_VARS):
    for _v in _THREAD_VARS:
        os.environ[_v] = '1'

import numpy as np  # noqa: E402

import toy  # noqa: F401,E402  (patches NumPy/Python for chainer before it is imported)
import chainer  # noqa: E402
import chainer.functions as F  # noqa: E402
import chainer.links as L  # noqa: E402
from chainer import training  # noqa: E402
from chainer.training import extensions  # noqa: E402

from experiments.published_seeds import published_nll  # noqa: E402
from toy import cli, datasets, files, train  # noqa: E402
from toy.cli import synchronize  # noqa: E402
from toy.mdn import MDN, versions  # noqa: E402
from toy.mixture import sample  # noqa: E402
from toy.train_custom_loop import heldout_nll  # noqa: E402

HIDDEN, K, BATCH, POINTS, EPOCHS = 256, 5, 100, 500, 2000


# ---------------------------------------------------------------------------
# (a) The published baseline: WorldModels toy/mdn.py, re-implemented as it was
# (three heads, density-form loss summed over the batch, per-row sampler).
# ---------------------------------------------------------------------------

class PublishedMDN(chainer.Chain):
    """The published net: Linear(None, 256) without activation, three heads."""

    def __init__(self, hidden=HIDDEN, k=K):
        super().__init__()
        self.k = k
        with self.init_scope():
            self.input_layer = L.Linear(None, hidden)
            self.coef_layer = L.Linear(hidden, k)
            self.mu_layer = L.Linear(hidden, k)
            self.ln_var_layer = L.Linear(hidden, k)

    def fprop(self, input):
        k = self.k
        h = self.input_layer(input)
        coef = F.softmax(self.coef_layer(h))
        mu = self.mu_layer(h)
        ln_var = self.ln_var_layer(h)
        return (F.reshape(coef, (-1, k, 1)), F.reshape(mu, (-1, k, 1)),
                F.reshape(ln_var, (-1, k, 1)))

    def __call__(self, input, output):
        coef, mu, ln_var = self.fprop(input)
        output = F.reshape(output, (-1, 1, 1))
        mu, output = F.broadcast(mu, output)
        var = F.exp(ln_var)
        density = F.sum(
            coef * (1 / (np.sqrt(2 * np.pi) * F.sqrt(var)))
            * F.exp(-0.5 * F.square(output - mu) / var), axis=1)
        nll = -F.sum(F.log(density))
        chainer.report({'loss': nll}, self)
        return nll

    def sample(self, input):
        """The published sampler: one Python iteration and F.concat per row."""
        coef, mu, ln_var = self.fprop(input)
        coef = coef.array
        output = None
        for row in range(len(input)):
            r = np.random.uniform()
            cum, index = 0.0, 0
            for index in range(self.k):
                cum += coef[row][index]
                if r <= cum:
                    break
            o = F.expand_dims(F.gaussian(mu[row][index], ln_var[row][index]), 0)
            output = o if output is None else F.concat((output, o), axis=0)
        return output


def published_run(x, y, epochs, device, out):
    """The published training: StandardUpdater, LogReport + PrintReport each epoch."""
    model = PublishedMDN()
    model.to_device(device)
    optimizer = chainer.optimizers.Adam()
    optimizer.setup(model)
    iterator = chainer.iterators.SerialIterator(
        chainer.datasets.TupleDataset(x, y), BATCH)
    updater = training.updaters.StandardUpdater(iterator, optimizer,
                                                device=device)
    trainer = training.Trainer(updater, (epochs, 'epoch'), out=out)
    trainer.extend(extensions.LogReport())
    trainer.extend(extensions.PrintReport(['epoch', 'main/loss']))
    trainer.run()
    return model


def fused_mdn(seed):
    """(c): the MDN as toy/mdn.py trains it by default, with nll_fused."""
    return MDN(hidden=HIDDEN, k=K, nll='fused', rng=np.random.default_rng(seed))


# ---------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------

def interleaved_medians(steps, device, repeats, block_seconds=0.2, warmup=3):
    """Median seconds per call of each no-argument function in `steps`.

    Each function is warmed up, then timed in `repeats` blocks of calls sized
    to last about `block_seconds`; block r of every function runs before
    block r + 1 of any, so a burst of outside load is shared out.
    """
    per_block = {}
    for name, step in steps.items():
        for _ in range(warmup):
            step()
        synchronize(device)
        start = time.perf_counter()
        step()
        synchronize(device)
        once = time.perf_counter() - start
        per_block[name] = max(1, int(block_seconds / max(once, 1e-6)))
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            calls = per_block[name]
            synchronize(device)
            start = time.perf_counter()
            for _ in range(calls):
                step()
            synchronize(device)
            times[name].append((time.perf_counter() - start) / calls)
    return {name: summary(t) for name, t in times.items()}


def summary(seconds):
    """Median and the spread of the repeats (min, max), in seconds."""
    return {'median': statistics.median(seconds), 'min': min(seconds),
            'max': max(seconds), 'repeats': len(seconds)}


def training_steps(batch, device, seed):
    """One Adam step per call on a fixed batch, for (a), (b) and (c)."""
    x, y = datasets.worldmodels(batch, np.random.default_rng(seed))
    x, y = device.send(x), device.send(y)
    np.random.seed(seed)
    published = PublishedMDN()
    ours = {'logspace': MDN(hidden=HIDDEN, k=K, nll='logspace',
                            rng=np.random.default_rng(seed)),
            'fused': fused_mdn(seed)}
    steps = {}
    for name, model, lossfun in (
            ('a_published', published, published),
            ('b_logspace', ours['logspace'], ours['logspace'].loss),
            ('c_fused', ours['fused'], ours['fused'].loss)):
        model.to_device(device)
        optimizer = chainer.optimizers.Adam()
        optimizer.setup(model)
        steps[name] = (lambda o=optimizer, f=lossfun: o.update(f, x, y))
        if name != 'a_published':
            steps[name] = as_in_training(steps[name])
    # The published input layer infers its input size on the first call.
    with chainer.no_backprop_mode():
        published(x, y)
    return steps


def as_in_training(step):
    """`step` as toy.train's loops run it: with Chainer's type checks off,
    which also skips MDN.loss's data checks (the loops check the data once)."""
    def unchecked():
        with chainer.using_config('type_check', False):
            step()
    return unchecked


@contextlib.contextmanager
def stdout_to_devnull():
    """Silence the runs' printing at the file descriptor: PrintReport and
    ProgressBar bound sys.stdout when chainer was imported, so swapping
    sys.stdout would not reach them. The formatting and writes still cost."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, 'w') as null:
        os.dup2(null.fileno(), 1)
        try:
            yield
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)


def whole_runs(epochs, device, seed, runs):
    """Wall seconds of the published run for (a) and (c), with held-out NLL."""
    seeds = np.random.SeedSequence(seed).spawn(3)
    x, y = datasets.worldmodels(POINTS, np.random.default_rng(seeds[0]))
    x_test, y_test = datasets.worldmodels(10000, np.random.default_rng(seeds[1]))
    times = {'a_published': [], 'c_fused': []}
    nll = {}
    for _ in range(runs):
        for name in times:
            np.random.seed(seed)
            with tempfile.TemporaryDirectory() as out, stdout_to_devnull():
                start = time.perf_counter()
                if name == 'a_published':
                    model = published_run(x, y, epochs, device, out)
                else:
                    model = fused_mdn(seeds[2])
                    train.train(model, x, y, epochs=epochs, batchsize=BATCH,
                                device=device, seed=seed, out=out, name='mdn')
                synchronize(device)
                times[name].append(time.perf_counter() - start)
            # Both scored alike: the mixture's log-density in float64.
            nll[name] = (published_nll(model, x_test, y_test) if name == 'a_published'
                         else heldout_nll(model, x_test, y_test))
    return {name: summary(t) for name, t in times.items()}, nll


def sampling(device, seed, loop_rows, rows):
    """Samples per second: the published per-row loop against toy.mdn.sample."""
    np.random.seed(seed)
    published = PublishedMDN()
    x = datasets.worldmodels(loop_rows, np.random.default_rng(seed))[0]
    published(x, x)                       # infers the input layer's size
    x_host = x
    x = device.send(x)
    published.to_device(device)
    with chainer.no_backprop_mode():
        published.sample(x[:10])          # warm-up
        synchronize(device)
        start = time.perf_counter()
        published.sample(x)
        synchronize(device)
        loop_seconds = time.perf_counter() - start

    model = MDN(hidden=HIDDEN, k=K, rng=np.random.default_rng(seed))
    model.to_device(device)
    x_big = np.resize(x_host, (rows, 1))
    logits, mu, ln_var = model.mixture(x_big)
    rng = model.xp.random.RandomState(seed)
    sample(logits[:1000], mu[:1000], ln_var[:1000], rng=rng)   # warm-up
    timed = []
    for _ in range(3):
        synchronize(device)
        start = time.perf_counter()
        sample(logits, mu, ln_var, rng=rng)
        synchronize(device)
        timed.append(time.perf_counter() - start)
    ours_seconds = statistics.median(timed)
    return {'published_rows': loop_rows,
            'published_samples_per_second': loop_rows / loop_seconds,
            'ours_samples': rows,
            'ours_samples_per_second': rows / ours_seconds,
            'ours_seconds': summary(timed)}


def environment(device):
    found = {'device': str(device), 'platform': platform.platform(),
             'cpu': cli.cpu_name(), 'cpu_count': os.cpu_count(),
             'versions': versions(),
             # BLAS threads decide the large-batch CPU times.
             'threads': {k: os.environ[k] for k in _THREAD_VARS
                         if k in os.environ}}
    if device.xp is not np:
        props = device.xp.cuda.runtime.getDeviceProperties(device.device.id)
        found['gpu'] = props['name'].decode()
    return found


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

def ratio(a, c):
    return a['median'] / c['median']


def markdown(result):
    env = result['environment']
    run, s = result['whole_run'], result['sampling']
    steps = [[batch, *(milliseconds(t[k]) for k in ('a_published', 'b_logspace',
                                                    'c_fused')),
              '{:.1f}x'.format(ratio(t['a_published'], t['c_fused'])),
              '{:.1f}x'.format(ratio(t['b_logspace'], t['c_fused'])),
              '{:,.0f}'.format(result['throughput'][batch])]
             for batch, t in result['steps'].items()]
    whole = [['(a) published (LogReport + PrintReport each epoch)',
              '{:.1f}'.format(run['seconds']['a_published']['median']),
              '{:.4f}'.format(run['heldout_nll']['a_published'])],
             ['(c) ours, toy.train.train with nll_fused',
              '{:.1f}'.format(run['seconds']['c_fused']['median']),
              '{:.4f}'.format(run['heldout_nll']['c_fused'])],
             ['(a)/(c)', '{:.1f}x'.format(ratio(run['seconds']['a_published'],
                                                run['seconds']['c_fused'])), '']]
    sampling = [['published per-row loop ({} rows)'.format(s['published_rows']),
                 '{:,.0f}'.format(s['published_samples_per_second'])],
                ['toy.mdn.sample ({:,} rows)'.format(s['ours_samples']),
                 '{:,.0f}'.format(s['ours_samples_per_second'])],
                ['ratio', '{:,.0f}x'.format(s['ours_samples_per_second']
                                            / s['published_samples_per_second'])]]
    return '\n'.join(
        ['# MDN speed: published script against this repository', '',
         'Device: {} ({}, {} CPUs{}). {}.'.format(
             env['device'], env['cpu'], env['cpu_count'],
             ', GPU ' + env['gpu'] if 'gpu' in env else '',
             ', '.join('{} {}'.format(k, v) for k, v in sorted(env['versions'].items()))),
         '',
         'Medians over {} timed blocks after warm-up; the range is the '
         'fastest and slowest block. Thread settings: {}.'.format(
             result['repeats'], env['threads'] or 'library defaults'), '',
         '## Training step (forward, backward, Adam), ms per iteration', '',
         *files.markdown_table(
             ['batch', '(a) published', '(b) ours, nll_logspace', '(c) ours, nll_fused',
              '(a)/(c)', '(b)/(c)', '(c) training points/s'], steps, align='r' * 7),
         '', '## The whole published run: {} epochs of {} points, batch {}, '
         'in a Chainer Trainer with its logging'.format(run['epochs'], POINTS, BATCH), '',
         *files.markdown_table(['', 'seconds', 'held-out NLL (nats/point)'], whole),
         '', '## Sampling, one draw per input row', '',
         *files.markdown_table(['', 'samples/s'], sampling),
         '', 'Command: `{}`'.format(result['command'])]) + '\n'


def milliseconds(t):
    return '{:.3g} ({:.3g}-{:.3g})'.format(t['median'] * 1e3, t['min'] * 1e3,
                                           t['max'] * 1e3)


def parse_args(argv=None):
    parser = cli.ArgumentParser(description=__doc__.split('\n')[0])
    cli.add_training_arguments(parser, epoch=EPOCHS, seed=0,
                               out=os.path.join('results', 'benchmark'))
    parser.add_argument('--batch-sizes', type=cli.positive, nargs='+',
                        default=[BATCH, 1000, 10000, 100000],
                        help='batch sizes of the step timings')
    parser.add_argument('--repeats', type=cli.positive, default=7,
                        help='timed blocks per step timing')
    parser.add_argument('--whole-runs', type=cli.positive, default=1,
                        help='timed whole runs of each, all with --seed; --epoch '
                             'sets their length ({}, the published run; fewer for '
                             'quick tries)'.format(EPOCHS))
    parser.add_argument('--loop-rows', type=cli.positive, default=300,
                        help='rows for the published sampling loop')
    parser.add_argument('--sample-rows', type=cli.positive, default=10 ** 6,
                        help='rows for toy.mdn.sample')
    args = parser.parse_args(argv)
    # Checked before any timing: an --out that cannot be written would
    # otherwise lose every number at the very end.
    return cli.check_resources(parser, args, memory_needed,
                               '--batch-sizes, --sample-rows or --loop-rows')


def memory_needed(args):
    """Rough upper estimate of the bytes the largest timing takes at once
    (cli.training_bytes): a step at the largest batch, three models trained
    side by side, or the sampler's forward pass over --sample-rows."""
    head = MDN.head_size(K, 1)
    batch = max(args.batch_sizes)
    rows = max(args.sample_rows, args.loop_rows)
    return max(3 * cli.training_bytes([HIDDEN], head, batch, batch),
               cli.training_bytes([HIDDEN], head, rows, rows))


def main(argv=None):
    args = parse_args(argv)
    device = args.device
    result = {'command': ' '.join(['python', '-m', 'experiments.benchmark']
                                  + (sys.argv[1:] if argv is None else list(argv))),
              'environment': environment(device), 'repeats': args.repeats,
              'steps': {}}
    for batch in args.batch_sizes:
        result['steps'][batch] = interleaved_medians(
            training_steps(batch, device, args.seed), device, args.repeats)
        print('step, batch {}: {}'.format(batch, {
            k: '{:.3g} ms'.format(v['median'] * 1e3)
            for k, v in result['steps'][batch].items()}), flush=True)
    seconds, nll = whole_runs(args.epoch, device, args.seed, args.whole_runs)
    result['whole_run'] = {'epochs': args.epoch, 'seconds': seconds,
                           'heldout_nll': nll}
    result['sampling'] = sampling(device, args.seed, args.loop_rows,
                                  args.sample_rows)
    # Training throughput of the default model: points through a whole
    # step (forward, backward, Adam) per second.
    result['throughput'] = {b: b / t['c_fused']['median']
                            for b, t in result['steps'].items()}
    result['ratios'] = {
        'step_a_over_c': {b: ratio(t['a_published'], t['c_fused'])
                          for b, t in result['steps'].items()},
        'whole_run_a_over_c': ratio(seconds['a_published'], seconds['c_fused']),
        'sampling_ours_over_published':
            result['sampling']['ours_samples_per_second']
            / result['sampling']['published_samples_per_second']}
    os.makedirs(args.out, exist_ok=True)
    table = markdown(result)
    with files.atomic_write(os.path.join(args.out, 'benchmark.md')) as f:
        f.write(table)
    files.write_json(os.path.join(args.out, 'benchmark.json'), result)
    print(table)


if __name__ == '__main__':
    sys.exit(main())
