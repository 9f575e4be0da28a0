"""`python toy/mdn.py`: help, one-line errors with exit 2, outputs, and --resume."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import toy  # noqa: F401
from chainer.backends import cuda

SCRIPT = os.path.join(os.path.dirname(__file__), os.pardir, 'toy', 'mdn.py')
SMALL = ['--points', '200', '--test-points', '500', '--hidden', '16',
         '--batchsize', '50']


def run(*args, cwd=None):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd)


def test_help():
    result = run('--help')
    assert result.returncode == 0
    for option in ('--device', '--gpu', '--epoch', '--batchsize', '--mixtures',
                   '--hidden', '--activation', '--seed', '--out', '--resume'):
        assert option in result.stdout


BAD = {
    'k0': (['-k', '0'], '--mixtures/-k: 0 is not >= 1'),
    'hidden0': (['--hidden', '0'], '--hidden: 0 is not >= 1'),
    'batch': (['--batchsize', '501'], '--batchsize 501 is larger than the 500'),
    'device': (['--device', 'tpu'], "unknown device 'tpu'"),
    'epoch': (['--epoch', 'many'], "invalid integer value: 'many'"),
    'activation': (['--activation', 'swish'], "invalid choice: 'swish'"),
    'seed': (['--seed', '-1'], '--seed: -1 is not in [0, 4294967295]'),
    'seed_too_big': (['--seed', str(2 ** 32)], '--seed: 4294967296 is not in [0, '),
    'resume': (['--resume', 'no-such-file'], '--resume no-such-file: not a file'),
}


@pytest.mark.parametrize('case', sorted(BAD))
def test_bad_argument_is_one_line_exit_2_and_keeps_results(case, tmp_path):
    earlier = tmp_path / 'metrics.json'
    earlier.write_text('{"kept": true}')
    args, message = BAD[case]
    result = run(*args, '--out', str(tmp_path), cwd=str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.count('\n') == 1 and message in result.stderr, result.stderr
    assert 'Traceback' not in result.stderr
    assert os.listdir(str(tmp_path)) == ['metrics.json']
    assert earlier.read_text() == '{"kept": true}'


@pytest.mark.skipif(cuda.available, reason='a GPU is present')
def test_gpu_without_cuda_is_refused_not_run_on_cpu(tmp_path):
    result = run('--gpu', '0', '--out', str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.count('\n') == 1
    assert 'needs CuPy with a working CUDA' in result.stderr
    assert not os.listdir(str(tmp_path))


def test_pickled_snapshot_is_refused(tmp_path):
    evil = tmp_path / 'snapshot'
    with open(str(evil), 'wb') as f:
        np.savez(f, payload=np.array([object()], dtype=object))
    result = run('--resume', str(evil), '--out', str(tmp_path / 'out'))
    assert result.returncode == 2
    assert 'pickled object arrays' in result.stderr
    assert result.stderr.count('\n') == 1


def params(snapshot):
    with np.load(snapshot) as npz:
        return {k: npz[k] for k in npz.files if '/model:main/' in k or 'optimizer' in k}


def test_outputs_and_resume_replays_the_uninterrupted_run(tmp_path):
    full, part = str(tmp_path / 'full'), str(tmp_path / 'part')
    assert run(*SMALL, '--epoch', '6', '--frequency', '3', '--out', full).returncode == 0
    for name in ('mdn-data_only.png', 'mdn-linear_with_preds.png',
                 'mdn-with_preds.png', 'mdn-loss.png', 'metrics.json'):
        assert os.path.getsize(os.path.join(full, name)) > 0
    metrics = json.load(open(os.path.join(full, 'metrics.json')))
    assert np.isfinite(metrics['nll_test']) and metrics['config']['epoch'] == 6

    # "Interrupted" after the snapshot at epoch 3, then resumed to epoch 6.
    assert run(*SMALL, '--epoch', '3', '--frequency', '3', '--out', part).returncode == 0
    resumed = run(*SMALL, '--epoch', '6', '--frequency', '3', '--out', part,
                  '--resume', os.path.join(part, 'mdn-snapshot'))
    assert resumed.returncode == 0, resumed.stderr
    want = params(os.path.join(full, 'mdn-snapshot'))
    got = params(os.path.join(part, 'mdn-snapshot'))
    assert want.keys() == got.keys() and len(want) > 4
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    assert json.load(open(os.path.join(part, 'metrics.json')))['nll_test'] == \
        metrics['nll_test']
