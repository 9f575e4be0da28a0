"""The experiment scripts' command lines: one line, exit 2, before any work."""
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from matplotlib.contour import ContourSet

from toy import datasets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load(name):
    return importlib.import_module('experiments.' + name)


def tree(folder):
    """{relative path: bytes, or None for a folder} of everything under folder:
    equal before and after a run that must keep every file byte for byte."""
    found = {}
    for parent, dirs, names in os.walk(folder):
        for d in dirs:
            found[os.path.relpath(os.path.join(parent, d), folder)] = None
        for name in names:
            path = os.path.join(parent, name)
            with open(path, 'rb') as f:
                found[os.path.relpath(path, folder)] = f.read()
    return found


SCRIPTS = {name: load(name) for name in ('bishop_demmdn1', 'otoro_2015', 'benchmark')}


def refused(script, argv, capsys):
    with pytest.raises(SystemExit) as e:
        SCRIPTS[script].parse_args(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'Traceback' not in err, err
    return err


@pytest.mark.parametrize('script', ['bishop_demmdn1', 'otoro_2015', 'benchmark'])
@pytest.mark.parametrize('argv, message', [
    (['--seed', str(2 ** 32)], '--seed: 4294967296 is not in [0, 4294967295]'),
    (['--seed', '-1'], '--seed: -1 is not in [0, 4294967295]'),
    (['--out', ''], '--out is empty: give a directory'),
    (['--out', '{tmp}/file'], 'file is a file, not a directory'),
    (['--out', '{tmp}/file/sub'], 'file is a file, not a directory'),
])
def test_seed_and_out_are_checked_before_any_work(script, argv, message, tmp_path,
                                                 capsys):
    (tmp_path / 'file').write_text('kept')
    argv = [a.format(tmp=tmp_path) for a in argv]
    if '--out' not in argv:
        argv += ['--out', str(tmp_path / 'out')]
    assert message in refused(script, argv, capsys)
    assert sorted(os.listdir(str(tmp_path))) == ['file']
    assert (tmp_path / 'file').read_text() == 'kept'


@pytest.mark.parametrize('script, argv', [
    ('bishop_demmdn1', ['--hidden', str(10 ** 9)]),
    ('bishop_demmdn1', ['-k', str(10 ** 9)]),
    ('bishop_demmdn1', ['--train-points', str(10 ** 10)]),
    ('otoro_2015', ['--hidden', str(10 ** 9)]),
    ('otoro_2015', ['--least-squares-hidden', str(10 ** 10)]),
    ('otoro_2015', ['--train-points', str(10 ** 10)]),
    ('benchmark', ['--batch-sizes', '100', str(10 ** 10)]),
    ('benchmark', ['--sample-rows', str(10 ** 12)]),
])
def test_absurd_sizes_are_refused_before_allocating(script, argv, tmp_path, capsys):
    err = refused(script, argv + ['--out', str(tmp_path / 'out')], capsys)
    assert 'this run needs about' in err and 'use smaller' in err
    assert os.listdir(str(tmp_path)) == []


def test_defaults_fit_in_memory(tmp_path):
    for script in ('bishop_demmdn1', 'otoro_2015', 'benchmark'):
        SCRIPTS[script].parse_args(['--out', str(tmp_path / script)])
    assert os.listdir(str(tmp_path)) == []


def test_bishop_densities_are_images_on_one_colour_scale():
    """demmdn1-density.png drew contours, whose lines ran along the true
    density's jumps (where a branch ends), with labels over each other and
    no colour bar."""
    x_grid, t_grid = np.linspace(-0.1, 1.1, 60), np.linspace(-0.1, 1.1, 50)
    true = datasets.conditional_density('bishop', 'inverse', x_grid, t_grid)
    learned = np.full_like(true, 0.5)
    x, t = datasets.bishop(100, np.random.default_rng(0))
    fig = SCRIPTS['bishop_demmdn1'].density_figure(x, t, x_grid, t_grid, learned, true, 3)
    panels = [ax for ax in fig.axes if ax.get_images()]
    assert len(panels) == 2 and not fig.findobj(ContourSet)
    shown = [ax.get_images()[0] for ax in panels]
    np.testing.assert_array_equal(shown[1].get_array(), true.T)
    np.testing.assert_array_equal(shown[0].get_array(), learned.T)
    assert shown[0].get_clim() == shown[1].get_clim() == (0, np.percentile(true, 99))
    # One colour bar per panel, labelled with the density.
    bars = [ax for ax in fig.axes if ax not in panels]
    assert [ax.get_ylabel() for ax in bars] == [r'$p(t\,|\,x)$'] * 2
    assert [ax.get_xlabel() for ax in panels] == ['x (input)'] * 2


# ---------------------------------------------------------------------------
# experiments/sweep_scaleout.py: a 12-minute measurement with a server of its own
# ---------------------------------------------------------------------------

SCALEOUT = [sys.executable, '-m', 'experiments.sweep_scaleout']


def test_scaleout_help_runs_nothing(tmp_path):
    """--help was taken as the output folder, and the whole measurement ran."""
    start = time.time()
    proc = subprocess.run(SCALEOUT + ['--help'], capture_output=True,
                          text=True, timeout=60, cwd=str(tmp_path))
    assert proc.returncode == 0 and proc.stderr == ''
    assert proc.stdout.startswith('usage: sweep_scaleout.py') and '--out' in proc.stdout
    assert 'SIGTERM' in proc.stdout     # the whole description
    assert os.listdir(str(tmp_path)) == [] and time.time() - start < 30


@pytest.mark.parametrize('argv, message', [
    (['--out', ''], '--out is empty: give a directory'),
    (['--out', '{tmp}/file'], 'file is a file, not a directory'),
    (['results/sweep'], 'unrecognized arguments: results/sweep'),
])
def test_scaleout_bad_arguments_are_one_line(argv, message, tmp_path):
    (tmp_path / 'file').write_text('kept')
    proc = subprocess.run(SCALEOUT + [a.format(tmp=tmp_path)
                                                        for a in argv],
                          capture_output=True, text=True, timeout=60, cwd=str(tmp_path))
    assert proc.returncode == 2 and proc.stdout == ''
    assert proc.stderr.count('\n') == 1 and message in proc.stderr, proc.stderr
    assert tree(str(tmp_path)) == {'file': b'kept'}


def children(pid):
    """The pids of the processes whose parent is pid."""
    found = []
    for entry in os.listdir('/proc'):
        try:
            with open('/proc/{}/stat'.format(entry)) as f:
                # pid (comm) state ppid ...: comm may hold spaces, not ')'.
                if int(f.read().rsplit(')', 1)[1].split()[1]) == pid:
                    found.append(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    return found


def running(pid):
    try:
        with open('/proc/{}/stat'.format(pid)) as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False


def command_lines_naming(text):
    found = []
    for entry in os.listdir('/proc'):
        try:
            with open('/proc/{}/cmdline'.format(entry), 'rb') as f:
                if text.encode() in f.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


@pytest.mark.skipif(not os.path.isdir('/proc'), reason='reads /proc')
def test_scaleout_sigterm_stops_its_server_and_sweeps(tmp_path):
    """Killed with SIGTERM, the script left its PostgreSQL server running."""
    from tools import pg_server
    try:
        pg_server.bin_dir()
    except pg_server.Unavailable as e:
        if os.environ.get('CI'):
            pytest.fail('CI is set but there is no PostgreSQL server: {}'.format(e))
        pytest.skip(str(e))
    proc = subprocess.Popen(SCALEOUT + ['--out', str(tmp_path / 'out')],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT)
    try:
        line = proc.stdout.readline()
        assert line.startswith('PostgreSQL server for the measurement'), \
            line + proc.stderr.read()
        port = int(line.split('port ')[1].split()[0])
        root = line.rsplit('(in ', 1)[1].rstrip(')\n')
        assert command_lines_naming(root)       # the server runs
        assert proc.stdout.read(6) == '[1/6] '  # the first sweep has started
        deadline = time.time() + 60
        while not children(proc.pid) and time.time() < deadline:
            time.sleep(0.2)
        sweeps = children(proc.pid)
        assert sweeps
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not os.path.exists(root)
    assert not command_lines_naming(root)       # no postgres process left
    assert not [pid for pid in sweeps if running(pid)]
    with socket.socket() as s:
        assert s.connect_ex(('127.0.0.1', port)) != 0
    assert not (tmp_path / 'out').exists()


# ---------------------------------------------------------------------------
# Deletion: a script deletes only what it made, in a folder it marked
# ---------------------------------------------------------------------------

import ast  # noqa: E402
import re  # noqa: E402

#: The one function in experiments/ and tools/ that deletes what it did not
#: make with tempfile.mkdtemp: the step folders of a folder
#: gpu_check.py marked as its own.
MARKED_FOLDER_HELPER = ('tools/gpu_check.py', 'remove_own')
#: Calls that delete or move files away: any `.rmtree(`, `.unlink(`, ..., and
#: these on os or shutil only (`list.remove`, `str.replace` are not).
DELETING = {'rmtree', 'unlink', 'rmdir', 'removedirs'}
DELETING_OS = {('os', 'remove'), ('os', 'rename'), ('os', 'replace'),
               ('shutil', 'move')}


def deleting_calls(path):
    """[(line, name of the enclosing function or None)] of the deleting calls
    in Python file `path`, and of string literals naming rm / rmdir / mv; a
    call that deletes what the same file made with tempfile.mkdtemp (the
    same expression, e.g. self.root) is not counted."""
    with open(path) as f:
        module = ast.parse(f.read(), path)
    made = {ast.unparse(target) for node in ast.walk(module)
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
            and ast.unparse(node.value.func) == 'tempfile.mkdtemp'
            for target in node.targets}
    found = []

    def visit(node, function):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            function = node.name
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, 'id', None)
            owner = getattr(f.value, 'id', None) if isinstance(f, ast.Attribute) else None
            temporary = node.args and ast.unparse(node.args[0]) in made
            if (name in DELETING or (owner, name) in DELETING_OS) and not temporary:
                found.append((node.lineno, function))
        if isinstance(node, ast.Constant) and node.value in ('rm', 'rmdir', 'mv'):
            found.append((node.lineno, function))
        for child in ast.iter_child_nodes(node):
            visit(child, function)
    visit(module, None)
    return found


def test_a_deletion_of_what_the_file_did_not_make_with_mkdtemp_is_counted(tmp_path):
    path = tmp_path / 'script.py'
    path.write_text('import shutil, tempfile\n'
                    'def f(other):\n'
                    '    root = tempfile.mkdtemp()\n'
                    '    shutil.rmtree(root)\n'
                    '    shutil.rmtree(other)\n')
    assert deleting_calls(str(path)) == [(5, 'f')]


def scripts(*folders):
    return sorted(os.path.join(folder, name) for folder in folders
                  for name in os.listdir(os.path.join(ROOT, folder))
                  if os.path.isfile(os.path.join(ROOT, folder, name)))


def test_python_scripts_delete_only_through_the_marked_folder_helper():
    """gpu_check.py --out . deleted the repository's tests/: no script in
    experiments/ or tools/ may delete but through gpu_check's remove_own,
    which refuses any folder the script did not mark as its own, or a
    temporary folder it made itself (pg_server's server folder)."""
    helper_calls, stray = 0, []
    for rel in scripts('experiments', 'tools'):
        if not rel.endswith('.py'):
            continue
        for line, function in deleting_calls(os.path.join(ROOT, rel)):
            if (rel, function) == MARKED_FOLDER_HELPER:
                helper_calls += 1
            else:
                stray.append('{}:{} (in {})'.format(rel, line, function))
    assert not stray, 'deletes outside {}: {}'.format(MARKED_FOLDER_HELPER, stray)
    assert helper_calls == 1    # the helper's one rmtree: the scan sees calls


def test_shell_scripts_delete_only_the_temporary_files_they_made():
    """In tools/, `rm` may remove only a file the same script made with mktemp."""
    checked = 0
    for rel in scripts('tools'):
        if rel.endswith('.py'):
            continue
        with open(os.path.join(ROOT, rel)) as f:
            text = f.read()
        made = set(re.findall(r'(\w+)=\$\(mktemp\b', text))
        for command in re.findall(r'(?:^|[\s;&|\'"(])(rm|rmdir|mv|unlink)\s+([^\n;&|\']*)',
                                  text):
            targets = [t for t in command[1].split() if not t.startswith('-')]
            names = {re.fullmatch(r'"?\$\{?(\w+)\}?"?', t) for t in targets}
            assert targets and None not in names and \
                {m.group(1) for m in names} <= made, '{}: {} {}'.format(rel, *command)
            checked += 1
    assert checked >= 1     # tools/test_matrix.sh's temporary log
