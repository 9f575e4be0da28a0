"""experiments/sweep_mixtures.py: argument errors, CSV rows, resuming."""
import csv
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

from toy import datasets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, 'experiments', 'sweep_mixtures.py')
spec = importlib.util.spec_from_file_location('sweep_mixtures', SCRIPT)
sweep = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sweep)

TINY = ['--dataset', 'bishop', '--mixtures', '1', '2', '--seeds', '1',
        '--epochs', '3', '--eval-every', '1', '--train-points', '200',
        '--val-points', '100', '--batchsize', '100', '--hidden', '8']


def read_csv(path):
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize('argv', [
    ['--dataset', 'nope'],
    ['--mixtures', '0'],
    ['--mixtures', 'two'],
    ['--seeds', '-1'],
    ['--jobs', '0'],
    ['--direction', 'sideways'],
    ['--lr', 'nan'],
    ['--lr', '0.001', '--lr-final', '0.01'],
    ['--batchsize', '5000', '--train-points', '100'],
    ['--device', 'bogus'],
    ['--activation', 'softsign'],
])
def test_bad_arguments_exit_2_with_one_line(argv, tmp_path, capsys):
    out = tmp_path / 'out'
    out.mkdir()
    earlier = out / 'results.csv'
    earlier.write_text(','.join(sweep.FIELDS) + '\nkeep,me\n')
    with pytest.raises(SystemExit) as e:
        sweep.main(argv + ['--out', str(out)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and 'error:' in err
    assert earlier.read_text() == ','.join(sweep.FIELDS) + '\nkeep,me\n'
    assert sorted(os.listdir(out)) == ['results.csv']


def test_foreign_csv_is_refused_and_kept(tmp_path):
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'results.csv').write_text('a,b\n1,2\n')
    proc = subprocess.run([sys.executable, SCRIPT, '--out', str(out)] + TINY,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert 'Traceback' not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert 'other columns' in proc.stderr
    assert (out / 'results.csv').read_text() == 'a,b\n1,2\n'


def test_tiny_sweep_writes_rows_and_resumes(tmp_path, capsys):
    out = str(tmp_path / 'sweep')
    argv = TINY + ['--out', out, '--jobs', '1']
    assert sweep.main(argv + ['--no-figures']) == 0
    path = os.path.join(out, 'results.csv')
    rows = read_csv(path)
    assert sorted((r['model'], int(r['k'])) for r in rows) == [
        ('mdn', 1), ('mdn', 2), ('mse', 0)]
    bayes, gaussian = datasets.limits('bishop', 'inverse')
    for r in rows:
        assert r['dataset'] == 'bishop' and r['seed'] == '0'
        assert r['device'] == '@numpy' and r['epochs'] == '3'
        assert 1 <= int(r['best_epoch']) <= 3
        if r['model'] == 'mdn':
            nll = float(r['nll'])
            assert np.isfinite(nll)
            assert float(r['bayes_limit']) == pytest.approx(bayes, abs=1e-6)
            assert float(r['gap_bayes']) == pytest.approx(nll - bayes, abs=2e-6)
            assert float(r['gap_gaussian']) == pytest.approx(nll - gaussian,
                                                             abs=2e-6)
            # No model beats the Bayes limit by more than test-set noise.
            assert float(r['gap_bayes']) > -0.05
        else:
            assert float(r['mse']) > 0 and r['nll'] == ''
    summary = open(os.path.join(out, 'summary.md')).read()
    assert '| 1 | 1 |' in summary and '| 2 | 1 |' in summary
    assert 'Bayes limit {:.4f}'.format(bayes) in summary

    before = open(path).read()
    capsys.readouterr()
    assert sweep.main(argv + ['--no-figures']) == 0
    assert open(path).read() == before
    assert '3/3 runs' in capsys.readouterr().err

    # An interruption mid-write leaves a cut line: it is skipped, ended,
    # and only that run is redone, to the same numbers (seeded, CPU).
    lines = before.splitlines(keepends=True)
    cut = lines[-1]
    with open(path, 'w') as f:
        f.write(''.join(lines[:-1]) + cut[:len(cut) // 2])
    assert sweep.main(argv + ['--no-figures']) == 0
    complete = [r for r in read_csv(path) if r['device']]
    assert len(complete) == 3

    def timeless(rs):
        return sorted(tuple(sorted((k, v) for k, v in r.items()
                                   if k != 'train_seconds')) for r in rs)
    assert timeless(complete) == timeless(rows)
    assert complete[:2] == [r for r in rows if r in complete[:2]]


def test_parallel_sweep_with_figures(tmp_path):
    out = str(tmp_path / 'sweep')
    proc = subprocess.run(
        [sys.executable, SCRIPT, '--out', out, '--jobs', '2'] + TINY,
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    rows = read_csv(os.path.join(out, 'results.csv'))
    assert len(rows) == 3
    for name in ('nll_vs_k.png', 'bishop-inverse-samples.png',
                 'bishop-inverse-best_k.png', 'bishop-inverse-mse_vs_mdn.png'):
        with open(os.path.join(out, name), 'rb') as f:
            assert f.read(8) == b'\x89PNG\r\n\x1a\n', name
    # Other options make other rows, next to the earlier ones.
    proc = subprocess.run(
        [sys.executable, SCRIPT, '--out', out, '--jobs', '1', '--no-figures']
        + TINY + ['--hidden', '9', '--mixtures', '1'],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    rows2 = read_csv(os.path.join(out, 'results.csv'))
    assert rows2[:3] == rows and len(rows2) == 5
    assert len({r['config'] for r in rows2}) == 2
