"""experiments/close_the_gap.py: the ladder of networks run through the sweep,
and its side-by-side table, on a tiny configuration."""
import csv
import json
import os

import numpy as np
import pytest

from test_scripts import load

gap = load('close_the_gap')
TINY = ['--train-points', '300', '--val-points', '100', '--test-points', '200',
        '--epochs', '2', '--batchsize', '100', '--lr', '1e-2', '--lr-final', '1e-3',
        '--eval-every', '1']


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setattr(gap, 'K', 2)
    monkeypatch.setattr(gap, 'PAIRS', 3000)
    monkeypatch.setattr(gap, 'TRAINING', ['--mixtures', '2'] + TINY)
    monkeypatch.setattr(gap, 'RUNGS', {
        'one': ('1 layer of 4 tanh', ['--hidden', '4', '--activation', 'tanh']),
        'two': ('2 layers of 4 SiLU', ['--hidden', '4', '4', '--activation', 'silu'])})


def test_table_reports_each_rung_against_its_own_runs_and_the_floors(tiny, tmp_path):
    out = str(tmp_path)
    # The floors are kept in one file for every rung; a known value shows it is read.
    floors = {'{}-inverse-k2'.format(n): 0.25 for n in gap.datasets.NAMES}
    with open(os.path.join(out, 'mixture_floor.json'), 'w') as f:
        json.dump(floors, f)
    assert gap.main(['--seeds', '2', '--jobs', '1', '--out', out, '--no-figures']) == 0
    summary = open(os.path.join(out, 'summary.md')).read()
    assert 'which took' in summary and 'one, two with 1 worker' in summary
    for rung, text in gap.RUNGS.items():
        with open(os.path.join(out, rung, 'results.csv'), newline='') as f:
            rows = list(csv.DictReader(f))
        assert {r['model'] for r in rows} == {'mdn'}  # no least-squares runs
        for name in gap.datasets.NAMES:
            nll = np.array([float(r['nll']) for r in rows if r['dataset'] == name])
            assert len(nll) == 2
            bayes = gap.datasets.limits(name)[0]
            line = next(x for x in summary.splitlines()
                        if x.startswith('| {} | {} |'.format(text[0], name)))
            cells = [c.strip(' ✓') for c in line.split('|')[1:-1]]
            assert cells[2] == '2'
            assert cells[3] == '{:.4f} ± {:.4f}'.format(nll.mean(), nll.std())
            assert float(cells[4]) == pytest.approx(nll.mean() - bayes, abs=1e-4)
            assert float(cells[5]) == 0.25
            assert float(cells[6]) == pytest.approx(nll.mean() - bayes - 0.25, abs=1e-4)
    # Where the last rung loses: 20 bins per problem, the floor at each bin's input.
    with open(os.path.join(out, 'excess_by_input.csv'), newline='') as f:
        bins = list(csv.DictReader(f))
    for name in gap.datasets.NAMES:
        mine = [b for b in bins if b['dataset'] == name]
        x = np.array([float(b['x_median']) for b in mine])
        assert len(mine) == 20 and np.all(np.diff(x) > 0)
        np.testing.assert_allclose([float(b['k_floor']) for b in mine],
                                   gap.datasets.mixture_floor_at(name, 2, x)[1], atol=2e-3)
        # A tiny net is far from the truth everywhere, on average by about its gap.
        excess = np.array([float(b['excess']) for b in mine])
        assert excess.mean() > 0.05
    assert os.path.isfile(os.path.join(out, 'excess_by_input.png'))
    # The table is redrawn from the storage alone, the same.
    assert gap.main(['--seeds', '2', '--out', out, '--report-only']) == 0
    assert open(os.path.join(out, 'summary.md')).read() == summary


def test_bad_arguments_exit_2(tiny, tmp_path, capsys):
    for argv in (['--rungs', 'huge'], ['--seeds', '0'], ['--device', 'tpu']):
        with pytest.raises(SystemExit) as e:
            gap.main(argv + ['--out', str(tmp_path)])
        assert e.value.code == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
