"""Scale-out of the mixture-count sweep: one fixed subset of the default sweep
(default training options, a few grid points) run from scratch with 1 worker
process, with 2 (SQLite, one command --jobs 2), and with 2 on PostgreSQL (two
commands at once, --jobs 1 each, as two machines would run them, against a
throwaway local server started for the measurement). The three are run in
that order and then in reverse (A B C C B A), so that a change in the
machine's load during the measurement shows, and wall times go side by side
into OUT/scaleout.md (and .json).

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
#: (label, PostgreSQL database name or None, commands at once, --jobs each)
MODES = [('1 worker, SQLite', None, 1, 1),
         ('2 worker processes, SQLite (--jobs 2)', None, 1, 2),
         ('2 workers, PostgreSQL (two commands, --jobs 1 each)', 'scaleout', 2, 1)]
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
    try:
        server = pg_server.started()
    except pg_server.Unavailable as e:
        raise SystemExit('sweep_scaleout.py: {}'.format(e))
    times, loads = {}, []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for run, order in enumerate([MODES, MODES[::-1]]):
                for label, postgres, commands, jobs in order:
                    storage = ['--storage', server.create_database('{}{}'.format(
                        postgres, run))] if postgres else []
                    loads.append(os.getloadavg()[0])
                    times.setdefault(label, []).append(timed([
                        base + storage + ['--jobs', str(jobs), '--out', os.path.join(
                            tmp, '{}-{}-{}'.format(run, MODES.index((label, postgres,
                                                                     commands, jobs)), c))]
                        for c in range(commands)]))
    finally:
        server.stop()
    runs = 2 * (2 + 1)
    one = sum(times[MODES[0][0]]) / 2
    lines = ['# Sweep scale-out', '',
             '`{}` ({} runs, default training options), from scratch each time, on {} '
             'CPU cores ({}) shared with other work: load average {:.1f} to {:.1f} '
             'at the starts. Order A B C C B A.'.format(
                 ' '.join(SUBSET), runs, os.cpu_count(), platform.machine(),
                 min(loads), max(loads)), '',
             '| workers | wall s, first pass | wall s, second pass | speed-up over 1 '
             'worker (means) |', '|---|---:|---:|---:|']
    lines += ['| {} | {:.1f} | {:.1f} | {:.2f} |'.format(
        label, t[0], t[1], one / (sum(t) / 2)) for label, t in times.items()]
    os.makedirs(out, exist_ok=True)
    with files.atomic_write(os.path.join(out, 'scaleout.md')) as f:
        f.write('\n'.join(lines) + '\n')
    files.write_json(os.path.join(out, 'scaleout.json'), {
        'subset': SUBSET, 'runs': runs, 'cpus': os.cpu_count(), 'loads': loads,
        'wall_seconds': times})
    print('\n'.join(lines))


if __name__ == '__main__':
    main(*sys.argv[1:])
