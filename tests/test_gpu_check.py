"""tools/gpu_check.py --dry-run: the prepared GPU check works before a GPU is lent."""
import json
import os
import shutil
import subprocess
import sys

import pytest

import toy  # noqa: F401
from chainer.backends import cuda

from test_scripts import tree
from tools import gpu_check

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: Run by its path, as on the GPU machine (where nothing is installed).
SCRIPT = os.path.join(ROOT, 'tools', 'gpu_check.py')


def test_dry_run_runs_every_step_on_the_cpu(tmp_path):
    out = tmp_path / 'gpu'
    proc = subprocess.run([sys.executable, SCRIPT, '--dry-run', '--out', str(out)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['dry_run'] is True
    names = [s['step'] for s in summary['steps']]
    assert names == ['versions', 'tests', 'toy-gpu', 'toy-cpu', 'sweep-gpu',
                     'benchmark-gpu', 'benchmark-cpu', 'profile-gpu']
    assert tuple(names) == gpu_check.STEPS
    assert all(s['status'] == 'passed' for s in summary['steps']), summary
    # Each GPU step says that it ran on the CPU instead, and really ran there.
    for name in ('toy-gpu', 'sweep-gpu', 'benchmark-gpu', 'profile-gpu'):
        assert '-- {}: dry run, on the CPU'.format(name) in proc.stdout
        assert '--device -1' in next(s for s in summary['steps']
                                     if s['step'] == name)['command']
    metrics = json.loads((out / 'toy-gpu' / 'metrics.json').read_text())
    assert metrics['config']['device'] == '@numpy'
    assert 'training points/s' in (out / 'benchmark-cpu' / 'benchmark.md').read_text()
    bench = json.loads((out / 'benchmark-gpu' / 'benchmark.json').read_text())
    # points per second of a whole step = batch / seconds per step
    assert bench['throughput']['100'] == \
        100 / bench['steps']['100']['c_fused']['median']
    profile = json.loads((out / 'profile-gpu' / 'profile.json').read_text())
    assert set(profile['phases']['100']) == {'hidden', 'head', 'loss', 'backward',
                                             'update'}
    versions = json.loads((out / 'versions.log').read_text())
    assert versions['cuda_available'] is cuda.available and 'numpy' in versions
    assert 'dry run' in (out / 'summary.md').read_text()


def test_missing_wheels_is_one_line_saying_what_to_do(tmp_path):
    proc = subprocess.run([sys.executable, SCRIPT, '--wheels', str(tmp_path),
                           '--out', str(tmp_path / 'gpu')],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.count('\n') == 1 and 'no .whl files' in proc.stderr
    assert 'cp -r ../shared/gpu-wheels' in proc.stderr and '--dry-run' in proc.stderr
    assert 'carry' not in proc.stderr   # a word of no meaning in this project
    assert os.listdir(str(tmp_path)) == []


def make_commands(*args):
    """The commands `make gpu-check` would run (make -n: nothing runs)."""
    proc = subprocess.run(['make', '--no-print-directory', '-n', 'gpu-check', *args],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.skipif(shutil.which('make') is None, reason='no make')
def test_make_gpu_check_dry_run_uses_the_project_environment():
    # The system python3 has no chainer: every step of a dry run failed.
    dry = make_commands('ARGS=--dry-run --only versions')
    assert 'ln -sfn' in dry     # the setup target makes .venv first
    assert dry.splitlines()[-1].split() == [
        '.venv/bin/python', 'tools/gpu_check.py', '--dry-run', '--only',
        'versions']
    # The GPU machine's python3 with its wheels, no project venv there.
    real = [line.split() for line in make_commands('PYTHON=python3').splitlines()]
    assert real == [['python3', 'tools/gpu_check.py', '--wheels', '.gpu-wheels']]


@pytest.mark.parametrize('out, message', [
    ('', '--out is empty: give a folder'),
    ('.', 'is not an output folder of this script (no .gpu_check in it)'),
    ('mine', 'is not an output folder of this script (no .gpu_check in it)'),
])
def test_a_folder_not_its_own_is_refused_and_kept_byte_for_byte(out, message,
                                                                tmp_path):
    """`--out ''` or `--out .` from the repository root deleted tests/: each
    step's folder was removed from whatever folder --out named."""
    cwd = tmp_path / 'cwd'
    for folder in (cwd, cwd / 'mine'):
        for name in ('tests', 'toy-cpu', 'versions'):
            (folder / name).mkdir(parents=True)
            (folder / name / 'kept.py').write_bytes(b'kept ' + name.encode())
        (folder / 'summary.json').write_text('{"steps": []}')
    before = tree(str(cwd))
    proc = subprocess.run([sys.executable, SCRIPT, '--dry-run', '--only', 'versions',
                           'toy-cpu', '--out', out], capture_output=True, text=True,
                          timeout=60, cwd=str(cwd))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count('\n') == 1 and message in proc.stderr, proc.stderr
    assert proc.stdout == ''
    assert tree(str(cwd)) == before


def test_its_own_folder_is_marked_and_only_its_steps_are_replaced(tmp_path):
    out = tmp_path / 'gpu'
    out.mkdir()     # empty: claimed
    args = [sys.executable, SCRIPT, '--dry-run', '--only', 'versions', '--out', str(out)]
    assert subprocess.run(args, capture_output=True, timeout=120).returncode == 0
    assert (out / gpu_check.MARKER).read_text() == gpu_check.MARKER_TEXT
    # A rerun replaces the step's folder, and leaves what is not a step's.
    (out / 'versions').mkdir()
    (out / 'versions' / 'stale').write_text('stale')
    (out / 'notes').mkdir()
    (out / 'notes' / 'kept').write_text('kept')
    assert subprocess.run(args, capture_output=True, timeout=120).returncode == 0
    assert not (out / 'versions').exists()
    assert (out / 'notes' / 'kept').read_text() == 'kept'


def test_remove_own_deletes_only_step_folders_of_a_marked_folder(tmp_path):
    (tmp_path / 'tests').mkdir()
    (tmp_path / 'notes').mkdir()
    with pytest.raises(ValueError, match='not a step folder of an output folder'):
        gpu_check.remove_own(str(tmp_path), 'tests')    # no marker
    (tmp_path / gpu_check.MARKER).write_text(gpu_check.MARKER_TEXT)
    with pytest.raises(ValueError, match='not a step folder'):
        gpu_check.remove_own(str(tmp_path), 'notes')    # not a step
    with pytest.raises(ValueError, match='not a step folder'):
        gpu_check.remove_own(str(tmp_path), os.pardir)
    gpu_check.remove_own(str(tmp_path), 'tests')
    assert sorted(os.listdir(str(tmp_path))) == [gpu_check.MARKER, 'notes']


def test_the_committed_results_are_its_own_folder(tmp_path):
    """results/gpu/ is committed with its marker, so the documented command
    (--out results/gpu) reruns steps there; a copy shows it, byte for byte
    outside the step rerun."""
    committed = os.path.join(ROOT, 'results', 'gpu')
    with open(os.path.join(committed, gpu_check.MARKER)) as f:
        assert f.read() == gpu_check.MARKER_TEXT
    out = tmp_path / 'gpu'
    shutil.copytree(committed, str(out))
    before = tree(str(out))
    proc = subprocess.run([sys.executable, SCRIPT, '--dry-run', '--only', 'versions',
                           '--out', str(out)], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    # The committed run's suite step failed: the exit status says so still.
    assert proc.returncode == 1 and proc.stderr == '', proc.stdout + proc.stderr
    summary = json.loads((out / 'summary.json').read_text())
    assert [s['status'] for s in summary['steps'] if s['step'] == 'versions'] == \
        ['passed']
    after = tree(str(out))
    changed = {p for p in set(before) | set(after) if before.get(p, 0) != after.get(p, 0)}
    assert changed <= {'versions.log', 'summary.json', 'summary.md'}


def test_only_reruns_the_named_steps(tmp_path):
    out = tmp_path / 'gpu'
    proc = subprocess.run([sys.executable, SCRIPT, '--dry-run', '--only', 'versions',
                           '--out', str(out)], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((out / 'summary.json').read_text())
    assert [s['step'] for s in summary['steps']] == ['versions']
    # A rerun of one step keeps the other steps of the summary.
    proc = subprocess.run([sys.executable, SCRIPT, '--dry-run', '--only', 'toy-cpu',
                           '--out', str(out)], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((out / 'summary.json').read_text())
    assert [s['step'] for s in summary['steps']] == ['versions', 'toy-cpu']
    bad = subprocess.run([sys.executable, SCRIPT, '--only', 'nope', '--out', str(out)],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert bad.returncode == 2 and "unknown step(s) nope" in bad.stderr


def test_the_steps_spell_each_option_the_one_way():
    """The steps used --points, --mixtures, --seeds and --epochs; only the
    toy's `--gpu 0` stays, to check that Chainer's deprecated spelling works."""
    from toy import cli
    aliases = {flag for flags, _, _ in cli.TRAINING_OPTIONS.values()
               for flag in flags[1:] if flag.startswith('--')}
    for dry_run in (False, True):
        for name, argv, _, _ in gpu_check.steps('out', dry_run):
            assert not set(argv) & aliases, (name, set(argv) & aliases)
    real = {name: argv for name, argv, _, _ in gpu_check.steps('out', False)}
    assert real['toy-gpu'][1:4] == ['toy/mdn.py', '--gpu', '0']
    for name, module in (('sweep-gpu', 'sweep_mixtures'), ('benchmark-gpu', 'benchmark'),
                         ('profile-gpu', 'profile_step')):
        argv = real[name]
        assert argv[1:3] == ['-m', 'experiments.' + module]
        assert argv[argv.index('--device') + 1] == '0' and '--gpu' not in argv
