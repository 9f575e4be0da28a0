"""Scale-out of the mixture-count sweep: one fixed subset of the default sweep
(8 short runs) run from scratch with 1 worker
process, with 2 (SQLite, one command --jobs 2), and with 2 on PostgreSQL (two
commands at once, --jobs 1 each, as two machines would run them, against a
throwaway local server started for the measurement). The three are run in
that order and then in reverse (A B C C B A), so that a change in the
machine's load during the measurement shows, and wall times go side by side
into OUT/scaleout.md (and .json). It takes a few minutes and says which
of the six measurements it is at; the server stops with it, also when it is
interrupted (Ctrl-C) or terminated (SIGTERM).

    python -m experiments.sweep_scaleout            # results/sweep/scaleout.md
"""
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time

from toy import cli, files
from tools import pg_server

#: (label, PostgreSQL database name or None, commands at once, --jobs each)
MODES = [('1 worker, SQLite', None, 1, 1),
         ('2 worker processes, SQLite (--jobs 2)', None, 1, 2),
         ('2 workers, PostgreSQL (two commands, --jobs 1 each)', 'scaleout', 2, 1)]
#: 8 short runs (4 K, 2 seeds, about 6 s each on a free core): the sweep's own
#: costs (worker start-up, storage round trips, waiting) weigh most here.
SUBSET = ['--dataset', 'bishop', '-k', '1', '4', '8', '12', '--runs', '2', '--epoch', '200',
          '--eval-every', '20', '--no-baseline', '--no-floor', '--no-figures']
RUNS = 8


def parse_args(argv=None):
    p = cli.ArgumentParser(description=__doc__)
    p.add_argument('--out', '-o', default=os.path.join('results', 'sweep'),
                   help='folder of scaleout.md and scaleout.json')
    args = p.parse_args(argv)
    cli.check_out(p, args.out)
    return args


def terminated(signum, frame):
    """SIGTERM: unwind like Ctrl-C, so that the `finally` blocks stop the
    sweeps and the server."""
    raise SystemExit(128 + signum)


def timed(commands):
    """Run the commands at once; the wall time until the last one ends. On
    the way out (a failure, Ctrl-C, SIGTERM) none is left running."""
    start = time.time()
    procs = []
    try:
        for c in commands:
            procs.append(subprocess.Popen(c, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.PIPE, text=True))
        for proc in procs:
            _, err = proc.communicate()
            if proc.returncode:
                raise SystemExit('{} failed: {}'.format(' '.join(proc.args),
                                                        err[-500:]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                # As Ctrl-C would: the sweep stops its workers and exits.
                proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return time.time() - start


def main(argv=None):
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, terminated)
    base = [sys.executable, '-m', 'experiments.sweep_mixtures'] + SUBSET
    times, loads = {}, []
    try:
        server = pg_server.Server()
    except pg_server.Unavailable as e:
        raise SystemExit('sweep_scaleout.py: {}'.format(e))
    try:
        server.start()
        print('PostgreSQL server for the measurement: port {} (in {})'.format(
            server.port, server.root), flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            for run, order in enumerate([MODES, MODES[::-1]]):
                for step, (label, postgres, commands, jobs) in enumerate(order):
                    print('[{}/{}] {} ...'.format(run * len(MODES) + step + 1,
                                                  2 * len(MODES), label), end=' ',
                          flush=True)
                    storage = ['--storage', server.create_database('{}{}'.format(
                        postgres, run))] if postgres else []
                    loads.append(os.getloadavg()[0])
                    times.setdefault(label, []).append(timed([
                        base + storage + ['--jobs', str(jobs), '--out', os.path.join(
                            tmp, '{}-{}-{}'.format(run, MODES.index((label, postgres,
                                                                     commands, jobs)), c))]
                        for c in range(commands)]))
                    print('{:.0f} s'.format(times[label][-1]), flush=True)
    except pg_server.Unavailable as e:
        raise SystemExit('sweep_scaleout.py: {}'.format(e))
    finally:
        # A second SIGTERM must not cut the server's stop short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        server.stop()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    one = sum(times[MODES[0][0]]) / 2
    lines = ['# Sweep scale-out', '',
             '`{}` ({} runs), from scratch each time, on {} '
             'CPU cores ({}) shared with other work: load average {:.1f} to {:.1f} '
             'at the starts. Order A B C C B A.'.format(
                 ' '.join(SUBSET), RUNS, os.cpu_count(), platform.machine(),
                 min(loads), max(loads)), '',
             '| workers | wall s, first pass | wall s, second pass | speed-up over 1 '
             'worker (means) |', '|---|---:|---:|---:|']
    lines += ['| {} | {:.1f} | {:.1f} | {:.2f} |'.format(
        label, t[0], t[1], one / (sum(t) / 2)) for label, t in times.items()]
    os.makedirs(args.out, exist_ok=True)
    with files.atomic_write(os.path.join(args.out, 'scaleout.md')) as f:
        f.write('\n'.join(lines) + '\n')
    files.write_json(os.path.join(args.out, 'scaleout.json'), {
        'subset': SUBSET, 'runs': RUNS, 'cpus': os.cpu_count(), 'loads': loads,
        'wall_seconds': times})
    print('\n'.join(lines))


if __name__ == '__main__':
    main()
