"""experiments/close_the_gap.py: the ladder of networks run through the sweep,
and its side-by-side table, on a tiny configuration."""
import csv
import json
import os

import shutil
import zlib

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import norm

from test_scripts import ROOT, tree
from experiments import close_the_gap as gap, sweep_summary
from toy import checkpoint, floor, preprocess

TINY = dict(gap.TRAINING, train_points=300, val_points=100, test_points=200, epoch=2,
            batchsize=100, lr=1e-2, lr_final=1e-3, eval_every=1)


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setattr(gap, 'PAIRS', 3000)
    monkeypatch.setattr(gap, 'TRAINING', TINY)
    monkeypatch.setattr(gap, 'RUNGS', {
        'one': ('1 layer of 4 tanh', 2, dict(hidden=4, activation='tanh')),
        'two': ('2 layers of 4 SiLU, spread', 3, dict(hidden=[4, 4], activation='silu',
                                                      spread_components=True)),
        'three': ('never trained', 2, dict(hidden=3))})


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
        assert gap.main(['--runs', '2', '--jobs', '1', '--out', out, '--no-figures',
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
            bayes = np.mean([bayes_of_test_points(out, rung, name, int(r['seed']))
                             for r in rows if r['dataset'] == name])
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
                                       floor.mixture_floor_at(name, k, x)[1],
                                       atol=2e-3)
            # A tiny net is far from the truth everywhere, on average by about its gap.
            excess = np.array([float(b['excess']) for b in mine])
            assert excess.mean() > 0.05
        assert os.path.isfile(os.path.join(out, rung, 'excess_by_input.png'))
    # The table is redrawn from the storage alone, the same, and the figure
    # of the gaps with it: per rung, each seed's gap and the rung's K-floor.
    os.remove(os.path.join(out, 'gap.png'))
    assert gap.main(['--runs', '2', '--out', out, '--report-only']) == 0
    assert open(os.path.join(out, 'summary.md')).read() == summary
    assert os.path.getsize(os.path.join(out, 'gap.png')) > 1000
    _, configs = gap.parse_args(['--runs', '2', '--out', out, '--report-only'])
    rows = gap.gap_rows({rung: gap.results(configs[rung]) for rung in ('one', 'two')})
    assert [label for label, _ in rows] == ['one (K = 2)', 'two (K = 3)']
    for (_, found), rung in zip(rows, ('one', 'two')):
        with open(os.path.join(out, rung, 'results.csv'), newline='') as f:
            csv_rows = list(csv.DictReader(f))
        k = gap.RUNGS[rung][1]
        for name in gap.datasets.NAMES:
            gaps, k_floor = found[name]
            want = [float(r['nll']) - bayes_of_test_points(out, rung, name, int(r['seed']))
                    for r in csv_rows if r['dataset'] == name]
            np.testing.assert_allclose(sorted(gaps), sorted(want), atol=1e-5)
            assert k_floor == k / 8
    excess_against_a_known_mixture(out)


def bayes_of_test_points(out, rung, name, seed):
    """The Bayes NLL of a run's test points, from the true density: what its
    gap is measured against."""
    _, configs = gap.parse_args(['--runs', '2', '--out', out, '--report-only'])
    point = dict(gap.sweep_mixtures.grid(configs[rung])[0], dataset=name, seed=seed)
    x, y = gap.sweep_mixtures.splits(point)['test']
    return -np.mean(gap.datasets.conditional_log_density(name, x[:, 0], y[:, 0]))


def excess_against_a_known_mixture(out):
    """excess_by_input of rung 'one' whose seed-0 models are replaced by nets
    that output one known mixture at every input (head weights 0): each bin's
    excess is then log p(y|x) - log q(y), q computed here by scipy in original
    units, which the saved standardisation (y scale 0.3) must reach."""
    _, configs = gap.parse_args(['--runs', '2', '--out', out, '--report-only'])
    swept = configs['one']
    pi, mu, sd = np.array([0.25, 0.75]), np.array([0.3, 0.7]), np.array([0.2, 0.35])
    y_mean, y_scale = 0.5, 0.3
    for name in gap.datasets.NAMES:
        point = dict(gap.sweep_mixtures.grid(swept)[0], dataset=name, model='mdn', k=2,
                     seed=0)
        net = gap.sweep_mixtures.build_model(point)
        net.head.W.array[...] = 0
        net.head.b.array[...] = np.concatenate([np.log(pi), (mu - y_mean) / y_scale,
                                                2 * np.log(sd / y_scale)])
        scaler = preprocess.Standardizer.from_state({
            'x_mean': np.array([0.1]), 'x_scale': np.array([2.0]),
            'y_mean': np.array([y_mean]), 'y_scale': np.array([y_scale])})
        checkpoint.save(gap.sweep_mixtures.model_path(swept, point), net, scaler)
    assert gap.excess_by_input(swept, 'one', n=3000) is True
    with open(os.path.join(out, 'one', 'excess_by_input.csv'), newline='') as f:
        bins = list(csv.DictReader(f))
    for name in gap.datasets.NAMES:
        x, y = (a[:, 0] for a in gap.datasets.generate(
            name, 3000, np.random.default_rng(zlib.crc32(name.encode()))))
        log_q = logsumexp(np.log(pi) + norm.logpdf(y[:, None], mu, sd), axis=1)
        excess = gap.datasets.conditional_log_density(name, x, y) - log_q
        order = np.argsort(x, kind='stable')
        # 3000 distinct inputs in 20 bins of equal probability: 150 each.
        want = excess[order].reshape(20, 150).mean(axis=1)
        got = np.array([float(b['excess']) for b in bins if b['dataset'] == name])
        np.testing.assert_allclose(got, want, atol=6e-5, err_msg=name)


def test_report_only_without_runs_is_one_line_and_creates_nothing(tmp_path, capsys):
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'other').mkdir()
    (tmp_path / 'other' / 'small').mkdir()          # a rung's folder, no storage
    (tmp_path / 'other' / 'summary.md').write_text('kept')
    before = tree(str(tmp_path))
    for out in ('empty', 'missing', os.path.join('missing', 'deeper'), 'other'):
        with pytest.raises(SystemExit) as e:
            gap.main(['--report-only', '--out', str(tmp_path / out)])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert err.count('\n') == 1 and "holds no rung's runs" in err, err
        assert 'give the --out or --storage of an earlier run' in err
    assert tree(str(tmp_path)) == before


def test_report_only_on_the_committed_results_says_once_what_is_not_redrawn(
        tmp_path, capsys):
    """results/gap commits every rung's storage but not its models: the table
    is redrawn, the figures of where each rung loses are kept, said once."""
    out = str(tmp_path / 'gap')
    shutil.copytree(os.path.join(ROOT, 'results', 'gap'), out)
    before = tree(out)
    assert gap.main(['--report-only', '--out', out]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == ['excess_by_input not redrawn for {}: no models/ folder (models are '
                   'not committed: --remake-models trains the seed-0 models again); '
                   'the table is redrawn from the storage'.format(
                       ', '.join(gap.RUNGS))]
    # The figure's bytes depend on the matplotlib that draws it.
    after = tree(out)
    assert after.pop('gap.png').startswith(b'\x89PNG')
    before.pop('gap.png', None)
    assert after == before


def test_one_seed_has_no_spread_to_show():
    """One seed printed "± 0.0000"."""
    spread = sweep_summary.mean_spread
    assert spread(np.array([-1.23456]), 'seed') == '-1.2346 (one seed)'
    assert spread(np.array([1.0, 2.0]), 'seed') == '1.5000 ± 0.5000'
    assert spread(np.array([0.012345]), 'run', '{:.4g}') == '0.01235 (one run)'
    assert spread(np.array([1.0, 1.5]), 'run', '{:.4g}', '{:.2g}') == '1.25 ± 0.25'


def test_the_committed_rungs_keep_their_runs(tmp_path):
    """The rungs trained before --spread-components existed still name the
    config of their committed runs (results/gap/RUNG/results.csv)."""
    committed = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                             'results', 'gap')
    args = gap.make_parser().parse_args(['--out', str(tmp_path)])
    for rung in gap.RUNGS:
        with open(os.path.join(committed, rung, 'results.csv'), newline='') as f:
            configs = {r['config'] for r in csv.DictReader(f)}
        assert configs == {gap.sweep_mixtures.config_id(gap.rung_config(args, rung))}


def test_bad_arguments_exit_2(tiny, tmp_path, capsys):
    for argv in (['--rungs', 'huge'], ['--runs', '0'], ['--device', 'tpu'],
                 ['--epoch', '0'], ['--storage', 'nosuchdb://x/y'],
                 ['--batchsize', '500', '--train-points', '100']):
        with pytest.raises(SystemExit) as e:
            gap.main(argv + ['--out', str(tmp_path)])
        assert e.value.code == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_a_rung_whose_study_is_in_another_storage_is_seen_as_done(tiny, tmp_path, capsys):
    """--storage: whether a rung has run is asked of the storage, not of a
    study.db under OUT (none there), and -k and the size options override
    every rung's."""
    url = 'sqlite:///' + str(tmp_path / 'elsewhere.db')
    common = ['--runs', '1', '--jobs', '1', '--no-figures', '--storage', url, '-k', '1',
              '--train-points', '200']
    assert gap.main(common + ['--out', str(tmp_path / 'a'), '--rungs', 'one']) == 0
    out = tmp_path / 'b'
    assert gap.main(common + ['--out', str(out), '--report-only']) == 0
    summary = (out / 'summary.md').read_text()
    rows = [x for x in summary.splitlines() if x.startswith('| 1 layer of 4 tanh | 1 |')]
    assert len(rows) == len(gap.datasets.NAMES)
    assert 'never trained' not in summary and not (out / 'one' / 'study.db').exists()
    args = gap.make_parser().parse_args(common + ['--out', str(out)])
    cfg = gap.rung_config(args, 'one')
    assert (cfg.k, cfg.train_points, cfg.epoch, cfg.url) == ([1], 200, TINY['epoch'], url)
