"""Scale-out of the mixture-count sweep: one fixed subset of the default sweep
(default training options, a few grid points) run from scratch with 1 worker
process, with 2 (SQLite, one command --jobs 2), and with 2 on PostgreSQL (two
commands at once, --jobs 1 each, as two machines would run them, against a
throwaway local server started for the measurement). Wall times side by side
in OUT/scaleout.md (and .json).

    python experiments/sweep_scaleout.py            # results/sweep/scaleout.md
"""
import os
import platform
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'tests'))
import pg_server  # noqa: E402  (the tests' throwaway server)
from toy import files  # noqa: E402

SCRIPT = os.path.join(ROOT, 'experiments', 'sweep_mixtures.py')
SUBSET = ['--dataset', 'bishop', '--mixtures', '1', '4', '--seeds', '2', '--no-figures']


def timed(commands):
    """Run the commands at once; the wall time until the last one ends."""
    start = time.time()
    procs = [subprocess.Popen(c, cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for c in commands]
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode:
            raise SystemExit('{} failed: {}'.format(' '.join(proc.args), err[-500:]))
    return time.time() - start


def main(out=os.path.join('results', 'sweep')):
    base = [sys.executable, SCRIPT] + SUBSET
    server = pg_server.Server().start()
    try:
        url = server.create_database('scaleout')
        with tempfile.TemporaryDirectory() as tmp:
            modes = [
                ('1 worker, SQLite', [base + ['--jobs', '1', '--out', tmp + '/a']]),
                ('2 worker processes, SQLite (--jobs 2)',
                 [base + ['--jobs', '2', '--out', tmp + '/b']]),
                ('2 workers, PostgreSQL (two commands, --jobs 1 each)',
                 [base + ['--jobs', '1', '--storage', url, '--out', tmp + '/' + m]
                  for m in 'cd'])]
            load = os.getloadavg()
            times = [(label, timed(commands)) for label, commands in modes]
    finally:
        server.stop()
    runs = 2 * (2 + 1)
    lines = ['# Sweep scale-out', '',
             '`{}` ({} runs, default training options), from scratch each time, '
             'on {} CPU cores ({}); load average {:.1f} before the first.'.format(
                 ' '.join(SUBSET), runs, os.cpu_count(), platform.processor() or
                 platform.machine(), load[0]), '',
             '| workers | wall s | speed-up over 1 worker |', '|---|---:|---:|']
    lines += ['| {} | {:.1f} | {:.2f} |'.format(label, t, times[0][1] / t)
              for label, t in times]
    os.makedirs(out, exist_ok=True)
    with files.atomic_write(os.path.join(out, 'scaleout.md')) as f:
        f.write('\n'.join(lines) + '\n')
    files.write_json(os.path.join(out, 'scaleout.json'), {
        'subset': SUBSET, 'runs': runs, 'cpus': os.cpu_count(),
        'load_before': load[0], 'wall_seconds': dict(times)})
    print('\n'.join(lines))


if __name__ == '__main__':
    main(*sys.argv[1:])
