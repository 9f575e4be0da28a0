"""The GPU verification as one prepared command: every GPU claim, checked in one call.

On the lent GPU machine (Python 3.12, NumPy 2, CuPy, no internet), from the
repository root, with the wheels it lacks copied into `.gpu-wheels/`:

    python3 tools/gpu_check.py --wheels .gpu-wheels

installs those wheels into `.gpu-site/`, then runs, each step with its own
time limit, carrying on after a failure:

1. versions: GPU, driver, CUDA runtime, CuPy, NumPy, Chainer, Python;
2. the whole test suite, the `gpu`-marked tests included;
3. the published run, `python toy/mdn.py --gpu 0` (Chainer's deprecated
   spelling of `--device 0`, checked here to keep working), and the same on
   the CPU;
4. a reduced mixture-count sweep with `--device 0`;
5. `python -m experiments.benchmark` on GPU 0 with batches up to 1,048,576, and the
   same machine's CPU beside it;
6. `python -m experiments.profile_step` on GPU 0: where a step's time goes.

Everything goes into `--out` (default results/gpu/): each step's output in
`<step>.log`, the outputs of the runs in sub-folders, and `summary.json` /
`summary.md` with each step's command, exit status and time. The exit status
is 0 only if every step passed. `--out` must be a new or empty folder, or one
this script wrote before (it holds the marker file `.gpu_check`): a rerun
replaces the step sub-folders there, and the script deletes nothing elsewhere.

`--dry-run` runs the same steps on the CPU with tiny sizes, saying for each
GPU step what it would have run, so the script is known to work before a GPU
is lent (the test suite runs it so).
"""
import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SITE = os.path.join(ROOT, '.gpu-site')

VERSIONS = r'''
import json, platform, subprocess
import numpy, toy, chainer
found = {'python': platform.python_version(), 'numpy': numpy.__version__,
         'chainer': chainer.__version__,
         'cuda_available': chainer.backends.cuda.available}
try:
    import cupy
    found['cupy'] = cupy.__version__
    found['cuda_runtime'] = cupy.cuda.runtime.runtimeGetVersion()
    found['cuda_driver'] = cupy.cuda.runtime.driverGetVersion()
    found['gpu'] = cupy.cuda.runtime.getDeviceProperties(0)['name'].decode()
except Exception as e:  # reported, not raised: this step only describes
    found['cupy_error'] = ' '.join(str(e).split())
try:
    found['nvidia_smi'] = subprocess.run(
        ['nvidia-smi', '--query-gpu=name,driver_version,memory.total',
         '--format=csv,noheader'], capture_output=True, text=True,
        timeout=30).stdout.strip()
except OSError:
    found['nvidia_smi'] = 'not found'
print(json.dumps(found, indent=2, sort_keys=True))
'''

#: The steps, in running order (see `steps`).
STEPS = ('versions', 'tests', 'toy-gpu', 'toy-cpu', 'sweep-gpu', 'benchmark-gpu',
         'benchmark-cpu', 'profile-gpu')

#: The file that makes a folder this script's own output folder: written when
#: the script creates the folder or finds it empty, and required before it
#: deletes anything there (`remove_own`). Without it, `--out .` or `--out ''`
#: in the repository would delete its tests/ folder, a step's name.
MARKER = '.gpu_check'
MARKER_TEXT = ('The output folder of tools/gpu_check.py: a rerun replaces its '
               'step folders ({}).\n'.format(', '.join(STEPS)))

#: Benchmark batch sizes on the GPU machine, up to 2**20.
BATCHES = ['100', '1000', '10000', '100000', '1048576']


def steps(out, dry_run):
    """[(name, argv, seconds allowed, extra environment)] in running order.

    With dry_run every `--device 0` (and the toy's `--gpu 0`) becomes
    `--device -1` and the sizes shrink to seconds' worth; the commands are
    otherwise the real ones.
    """
    py = sys.executable
    gpu = ['--device', '-1'] if dry_run else ['--device', '0']
    # The toy keeps Chainer's deprecated --gpu: that spelling must still work.
    toy_gpu = gpu if dry_run else ['--gpu', '0']

    def sub(name):
        # Relative where it can be, so that the commands the runs record
        # name no folder of the machine they ran on.
        rel = os.path.relpath(out, ROOT)
        return os.path.join(out if rel.startswith(os.pardir) else rel, name)

    toy_size = (['--epoch', '2', '--train-points', '100', '--test-points', '200',
                 '--hidden', '8', '--batchsize', '50'] if dry_run else [])
    sweep_size = (['--dataset', 'bishop', '-k', '1', '3', '--runs', '1',
                   '--epoch', '3', '--eval-every', '1', '--train-points', '200',
                   '--val-points', '100', '--test-points', '200',
                   '--batchsize', '100', '--hidden', '8'] if dry_run else
                  ['--dataset', 'bishop', '-k', '1', '5', '12',
                   '--runs', '1', '--epoch', '100', '--hidden', '128', '128', '128',
                   '--activation', 'relu'])
    sweep_size.append('--spread-components')
    bench_size = (['--batch-sizes', '100', '--repeats', '1', '--epoch', '2',
                   '--loop-rows', '10', '--sample-rows', '1000'] if dry_run else
                  ['--batch-sizes'] + BATCHES + ['--repeats', '3',
                                                 '--epoch', '500'])
    # The CPU half of the comparison uses every core of that machine.
    all_cores = {v: str(os.cpu_count() or 1) for v in
                 ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS')}
    suite = ['-m', 'gpu'] if dry_run else []
    return [
        ('versions', [py, '-c', VERSIONS], 120, {}),
        ('tests', [py, '-m', 'pytest', '-q', '-p', 'no:cacheprovider'] + suite
         + [os.path.join(ROOT, 'tests')], 420, {}),
        ('toy-gpu', [py, 'toy/mdn.py'] + toy_gpu + toy_size + ['--out', sub('toy-gpu')],
         180, {}),
        ('toy-cpu', [py, 'toy/mdn.py', '--device', '-1'] + toy_size
         + ['--out', sub('toy-cpu')], 180, all_cores),
        ('sweep-gpu', [py, '-m', 'experiments.sweep_mixtures'] + gpu + sweep_size
         # The K-floors are CPU work, not what this checks.
         + ['--jobs', '1', '--no-floor', '--out', sub('sweep-gpu')], 240, {}),
        ('benchmark-gpu', [py, '-m', 'experiments.benchmark'] + gpu + bench_size
         + ['--out', sub('benchmark-gpu')], 300, {}),
        ('benchmark-cpu', [py, '-m', 'experiments.benchmark', '--device', '-1']
         + bench_size + ['--out', sub('benchmark-cpu')], 300, all_cores),
        ('profile-gpu', [py, '-m', 'experiments.profile_step'] + gpu
         + (['--batch-sizes', '100', '--steps', '1'] if dry_run else
            ['--batch-sizes'] + BATCHES) + ['--out', sub('profile-gpu')], 180, {}),
    ]


def claim(out):
    """Create the output folder `out`, or make an empty one this script's own
    (MARKER). None when `out` is this script's, else why it is refused."""
    try:
        os.makedirs(out, exist_ok=True)
        if os.path.isfile(os.path.join(out, MARKER)):
            return None
        if os.listdir(out):
            return ('it holds files and is not an output folder of this script '
                    '(no {} in it): give a new or empty folder'.format(MARKER))
        with open(os.path.join(out, MARKER), 'w') as f:
            f.write(MARKER_TEXT)
    except OSError as e:
        return e.strerror or str(e)
    return None


def remove_own(out, name):
    """Delete the folder of step `name` in this script's output folder `out`,
    so that it holds that step's outputs only, also on a rerun.

    The one place where this script deletes: never outside a folder that
    holds MARKER, never anything but a step's folder (a link is left alone).
    """
    if name not in STEPS or not os.path.isfile(os.path.join(out, MARKER)):
        raise ValueError('refusing to delete {}: not a step folder of an output '
                         'folder of gpu_check.py'.format(os.path.join(out, name)))
    path = os.path.join(out, name)
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)


def wheel_files(wheels):
    """The .whl files in folder `wheels`, sorted ([] if none)."""
    return sorted(glob.glob(os.path.join(wheels, '*.whl')))


def install(found, log):
    """pip-install the wheels `found` into .gpu-site, without the network."""
    argv = [sys.executable, '-m', 'pip', 'install', '-q', '--no-index',
            '--no-deps', '--no-compile', '--no-cache-dir', '--upgrade',
            '--target', SITE] + found
    return run_step('install', argv, 300, {}, log)


def run_step(name, argv, seconds, env, log):
    """Run one step with its time limit, its output into log; a summary dict."""
    shown = ' '.join('<script>' if '\n' in a else
                     os.path.relpath(a, ROOT) if a.startswith(ROOT) else a
                     for a in argv[1:])
    print('== {}: {}'.format(name, shown), flush=True)
    environ = dict(os.environ, **env)
    environ['PYTHONPATH'] = os.pathsep.join(
        [SITE, ROOT] + ([environ['PYTHONPATH']] if environ.get('PYTHONPATH')
                        else []))
    environ['PYTHONUNBUFFERED'] = '1'
    start = time.time()
    with open(log, 'w') as f:
        try:
            rc = subprocess.run(argv, cwd=ROOT, env=environ, stdout=f,
                                stderr=subprocess.STDOUT, timeout=seconds).returncode
        except subprocess.TimeoutExpired:
            rc = 'timeout after {} s'.format(seconds)
    # Tracebacks and warnings name files by absolute path: keep the logs
    # relative to the repository, like everything else that gets committed.
    with open(log) as f:
        text = f.read()
    with open(log, 'w') as f:
        f.write(text.replace(ROOT + os.sep, ''))
    took = round(time.time() - start, 1)
    status = 'passed' if rc == 0 else 'FAILED'
    print('   {} in {} s (exit {})'.format(status, took, rc), flush=True)
    return {'step': name, 'command': shown, 'exit': rc, 'seconds': took,
            'status': status,
            'finished': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}


def earlier_steps(out, rerun):
    """The steps of the summary already in `out` that this run does not redo."""
    try:
        with open(os.path.join(out, 'summary.json')) as f:
            steps = json.load(f)['steps']
    except (OSError, ValueError, KeyError):
        return []
    return [s for s in steps if s.get('step') not in rerun]


def write_summary(out, results, dry_run):
    with open(os.path.join(out, 'summary.json'), 'w') as f:
        json.dump({'dry_run': dry_run, 'steps': results}, f, indent=2)
        f.write('\n')
    lines = ['# GPU check{}'.format(' (dry run on the CPU: no GPU step ran)'
                                    if dry_run else ''), '',
             '| step | status | seconds | finished | command |',
             '|---|---|---:|---|---|']
    lines += ['| {step} | {status} | {seconds} | {finished} | `{command}` |'
              .format(**dict({'finished': ''}, **r)) for r in results]
    with open(os.path.join(out, 'summary.md'), 'w') as f:
        f.write('\n'.join(lines) + '\n')


def refuse(parser, message):
    """Exit 2 with one line, as toy.cli.ArgumentParser does (not imported: this
    script runs before the wheels that toy needs are installed)."""
    parser.exit(2, '{}: error: {}\n'.format(parser.prog, message))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', '-o', default=os.path.join('results', 'gpu'),
                        help='output folder (default: results/gpu)')
    parser.add_argument('--wheels', default=None,
                        help='folder of wheels to install first (on the GPU '
                             'machine: a copy of ../shared/gpu-wheels)')
    parser.add_argument('--dry-run', action='store_true',
                        help='the same steps on the CPU with tiny sizes')
    parser.add_argument('--only', nargs='+', metavar='STEP', default=None,
                        help='run only these steps (a rerun of what failed): '
                             '{}'.format(' '.join(STEPS)))
    args = parser.parse_args(argv)
    unknown = set(args.only or ()) - set(STEPS)
    if unknown:
        refuse(parser, 'unknown step(s) {}: choose from {}'.format(
            ' '.join(sorted(unknown)), ' '.join(STEPS)))
    if not args.out:
        refuse(parser, '--out is empty: give a folder')
    wheels = wheel_files(args.wheels) if args.wheels else []
    if args.wheels and not wheels:
        refuse(parser, 'no .whl files in --wheels {}: copy there the wheels this '
                       'machine lacks (cp -r ../shared/gpu-wheels {}), or pass '
                       '--dry-run to run the steps on the CPU'.format(args.wheels,
                                                                       args.wheels))
    out = os.path.abspath(args.out)
    refused = claim(out)
    if refused:
        refuse(parser, '--out {}: {}'.format(args.out, refused))
    # A rerun of some steps keeps the others' results from the last run.
    results = earlier_steps(out, set(args.only)) if args.only else []
    if wheels:
        results.append(install(wheels, os.path.join(out, 'install.log')))
    for name, step_argv, seconds, env in steps(out, args.dry_run):
        if args.only and name not in args.only:
            continue
        if args.dry_run and name.endswith('-gpu'):
            print('-- {}: dry run, on the CPU with tiny sizes instead of GPU 0'
                  .format(name))
        remove_own(out, name)
        results.append(run_step(name, step_argv, seconds, env,
                                os.path.join(out, name + '.log')))
    results.sort(key=lambda r: (('install',) + STEPS).index(r['step']))
    write_summary(out, results, args.dry_run)
    failed = [r['step'] for r in results if r['status'] != 'passed']
    print('{}: {}'.format(os.path.join(args.out, 'summary.md'),
                          'failed: ' + ', '.join(failed) if failed
                          else 'every step passed'))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
