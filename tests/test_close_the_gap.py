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
    monkeypatch.setattr(gap, 'PAIRS', 3000)
    monkeypatch.setattr(gap, 'TRAINING', TINY)
    monkeypatch.setattr(gap, 'RUNGS', {
        'one': ('1 layer of 4 tanh', 2, ['--hidden', '4', '--activation', 'tanh']),
        'two': ('2 layers of 4 SiLU, spread', 3, ['--hidden', '4', '4', '--activation',
                                                  'silu', '--spread-components']),
        'three': ('never trained', 2, ['--hidden', '3'])})


def test_table_reports_each_rung_against_its_own_runs_and_the_floors(tiny, tmp_path):
    out = str(tmp_path)
    # The floors are kept in one file for every rung; known values show that
    # each rung reads its own K's.
    floors = {'{}-inverse-k{}'.format(n, k): k / 8 for n in gap.datasets.NAMES
              for k in (2, 3)}
    with open(os.path.join(out, 'mixture_floor.json'), 'w') as f:
        json.dump(floors, f)
    # The first version's record of its wall time is kept beside the new ones.
    with open(os.path.join(out, 'wall_time.json'), 'w') as f:
        json.dump({'seconds': 120, 'rungs': ['old'], 'jobs': 2, 'seeds': 3,
                   'device': '-1'}, f)
    for rungs in (['one'], ['two']):
        assert gap.main(['--seeds', '2', '--jobs', '1', '--out', out, '--no-figures',
                         '--rungs'] + rungs) == 0
    summary = open(os.path.join(out, 'summary.md')).read()
    walls = [x for x in summary.splitlines() if x.startswith('- ')]
    assert walls[0] == '- old: 2 min, 3 seed(s), 2 worker(s) on device -1'
    assert [w.split(':')[0] for w in walls] == ['- old', '- one', '- two']
    assert all('2 seed(s), 1 worker(s)' in w for w in walls[1:])
    assert 'never trained' not in summary   # no storage: no row, and none made
    assert not os.path.exists(os.path.join(out, 'three'))
    for rung, (text, k, _) in gap.RUNGS.items():
        if rung == 'three':
            continue
        with open(os.path.join(out, rung, 'results.csv'), newline='') as f:
            rows = list(csv.DictReader(f))
        assert {r['model'] for r in rows} == {'mdn'}  # no least-squares runs
        for name in gap.datasets.NAMES:
            nll = np.array([float(r['nll']) for r in rows if r['dataset'] == name])
            assert len(nll) == 2
            bayes = gap.datasets.limits(name)[0]
            line = next(x for x in summary.splitlines()
                        if x.startswith('| {} | {} | {} |'.format(text, k, name)))
            cells = [c.strip(' ✓') for c in line.split('|')[1:-1]]
            assert cells[3] == '2'
            assert cells[4] == '{:.4f} ± {:.4f}'.format(nll.mean(), nll.std())
            assert float(cells[5]) == pytest.approx(nll.mean() - bayes, abs=1e-4)
            assert float(cells[6]) == k / 8
            assert float(cells[7]) == pytest.approx(nll.mean() - bayes - k / 8, abs=1e-4)
        # Where each rung loses: 20 bins per problem, its K's floor at each bin's input.
        with open(os.path.join(out, rung, 'excess_by_input.csv'), newline='') as f:
            bins = list(csv.DictReader(f))
        for name in gap.datasets.NAMES:
            mine = [b for b in bins if b['dataset'] == name]
            x = np.array([float(b['x_median']) for b in mine])
            assert len(mine) == 20 and np.all(np.diff(x) > 0)
            np.testing.assert_allclose([float(b['k_floor']) for b in mine],
                                       gap.datasets.mixture_floor_at(name, k, x)[1],
                                       atol=2e-3)
            # A tiny net is far from the truth everywhere, on average by about its gap.
            excess = np.array([float(b['excess']) for b in mine])
            assert excess.mean() > 0.05
        assert os.path.isfile(os.path.join(out, rung, 'excess_by_input.png'))
    # The table is redrawn from the storage alone, the same.
    assert gap.main(['--seeds', '2', '--out', out, '--report-only']) == 0
    assert open(os.path.join(out, 'summary.md')).read() == summary


def test_the_committed_rungs_keep_their_runs(tmp_path):
    """The rungs trained before --spread-components existed still name the
    config of their committed runs (results/gap/RUNG/results.csv)."""
    committed = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                             'results', 'gap')
    args = gap.parse_args(['--out', str(tmp_path)])
    for rung in ('small', 'relu128', 'relu256'):
        with open(os.path.join(committed, rung, 'results.csv'), newline='') as f:
            configs = {r['config'] for r in csv.DictReader(f)}
        swept = gap.sweep_mixtures.parse_args(gap.sweep_argv(args, rung) + ['--no-floor'])
        assert configs == {gap.sweep_mixtures.config_id(swept)}


def test_bad_arguments_exit_2(tiny, tmp_path, capsys):
    for argv in (['--rungs', 'huge'], ['--seeds', '0'], ['--device', 'tpu']):
        with pytest.raises(SystemExit) as e:
            gap.main(argv + ['--out', str(tmp_path)])
        assert e.value.code == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
