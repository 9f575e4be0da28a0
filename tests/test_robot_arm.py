"""experiments/robot_arm.py: a short smoke run, and one-line errors (exit 2)."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), os.pardir, 'experiments',
                      'robot_arm.py')
TINY = ['--points', '300', '--val-points', '100', '--test-points', '300',
        '--epochs', '2', '--batchsize', '100', '--hidden', '8', '-k', '2',
        '--grid', '8']


def load_script():
    spec = importlib.util.spec_from_file_location('robot_arm', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


robot_arm = load_script()


def test_smoke_run_writes_metrics_table_and_figures(tmp_path):
    out = tmp_path / 'out'
    assert robot_arm.main(TINY + ['--out', str(out)]) == 0
    metrics = json.loads((out / 'metrics.json').read_text())
    assert set(metrics['models']) == set(robot_arm.MODELS)
    for name, m in metrics['models'].items():
        assert m['rms_mode'] > 0 and 0 <= m['branches_mixed'] <= 1
        assert (m['nll'] is None) == (name == 'least_squares')
    assert abs(metrics['bayes_limit'] - (-3.7132)) < 1e-3
    assert abs(metrics['quadrature_mass'] - 1) < 1e-8
    table = (out / 'results.md').read_text()
    assert 'joint mixture, full covariance' in table and 'exact inverse' in table
    for figure in ('workspace.png', 'arms.png', 'landing.png', 'error_maps.png'):
        assert (out / figure).stat().st_size > 1000
    assert not [p for p in os.listdir(out) if 'tmp' in p]


def test_covariance_choice():
    parser = robot_arm.make_parser()
    args = robot_arm.check_args(parser, parser.parse_args(
        ['--covariance', 'full', 'full']))
    assert args.covariance == ['full']
    assert robot_arm.make_parser().parse_args([]).covariance == ['diag', 'full']


BAD = {
    'covariance': (['--covariance', 'banded'], "invalid choice: 'banded'"),
    'noise': (['--noise', '0'], '--noise: 0 is not a finite number > 0'),
    'noise_nan': (['--noise', 'nan'], '--noise: nan is not a finite number > 0'),
    'lr_text': (['--lr', 'fast'], "--lr: 'fast' is not a number"),
    'batch': (['--points', '100', '--batchsize', '101'],
              '--batchsize 101 is larger than the 100 training points'),
    'lr': (['--lr', '1e-3', '--lr-final', '1e-2'], '--lr-final 0.01 is larger'),
    'epochs': (['--epochs', '0'], '--epochs: 0 is not >= 1'),
    'device': (['--device', 'tpu'], "unknown device 'tpu'"),
    'memory': (['--points', '10000000000000'], 'this run needs about'),
    'seed': (['--seed', '-3'], '--seed: -3 is not in [0, 4294967295]'),
    'out_file': (['--out', 'IS_A_FILE'], 'is a file, not a directory'),
}


@pytest.mark.parametrize('case', sorted(BAD))
def test_bad_argument_is_one_line_exit_2(case, tmp_path, capsys):
    earlier = tmp_path / 'metrics.json'
    earlier.write_text('{"kept": true}')
    args, message = BAD[case]
    (tmp_path / 'IS_A_FILE').write_text('x')
    args = [str(tmp_path / a) if a == 'IS_A_FILE' else a for a in args]
    with pytest.raises(SystemExit) as stop:
        robot_arm.main(['--out', str(tmp_path)] + args)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count('\n') == 1, err
    assert earlier.read_text() == '{"kept": true}'


def test_out_is_a_file_from_the_command_line(tmp_path):
    target = tmp_path / 'file'
    target.write_text('x')
    result = subprocess.run([sys.executable, SCRIPT, '--out', str(target)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.count('\n') == 1 and 'is a file' in result.stderr
    assert target.read_text() == 'x'
