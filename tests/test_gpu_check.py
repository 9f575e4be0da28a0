"""experiments/gpu_check.py --dry-run: the prepared GPU check works before a GPU is lent."""
import importlib.util
import json
import os
import subprocess
import sys

import toy  # noqa: F401
from chainer.backends import cuda

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, 'experiments', 'gpu_check.py')
spec = importlib.util.spec_from_file_location('gpu_check', SCRIPT)
gpu_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_check)


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


def test_missing_wheels_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, SCRIPT, '--wheels', str(tmp_path),
                           '--out', str(tmp_path / 'gpu')],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode != 0
    assert proc.stderr.strip().count('\n') == 0 and 'no .whl files' in proc.stderr


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
