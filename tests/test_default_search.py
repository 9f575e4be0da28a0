"""The default sweep: its settings are the chosen candidate's, the preview
(--quick) shrinks them, and the search's table holds what its runs measured."""
import csv
import dataclasses
import json
import os

import numpy as np
import pytest

from toy import datasets
from experiments import default_search, sweep_mixtures
from experiments.sweep_config import DEFAULT_K, QUICK, SweepConfig


def work(cfg):
    """A sweep's training work: runs x points x epochs x the hidden layers'
    weights (a run's arithmetic is about proportional to it)."""
    widths = [1] + list(np.atleast_1d(cfg.hidden))
    weights = sum(a * b for a, b in zip(widths, widths[1:]))
    return cfg.runs * len(cfg.k) * cfg.train_points * cfg.epoch * weights


def test_the_command_without_options_is_the_default_sweep():
    cfg = sweep_mixtures.parse_args([])
    # The workers are the machine's (cli.add_sweep_arguments), not a setting.
    assert dataclasses.replace(cfg, jobs=1) == SweepConfig()
    assert cfg.k == DEFAULT_K and cfg.dataset == list(datasets.NAMES) and cfg.runs >= 3


def test_the_default_trains_each_k_as_one_population():
    """Every MDN run of one K (all problems and seeds) fits in one population,
    and a population holds runs of one K only."""
    cfg = SweepConfig()
    runs = [p for p in sweep_mixtures.grid(cfg) if p['model'] == 'mdn']
    by_group = {}
    for point in runs:
        by_group.setdefault(sweep_mixtures.group(point), []).append(point)
    assert len(by_group) == len(cfg.k)
    assert {len(points) for points in by_group.values()} == {cfg.population}
    assert all(len({p['k'] for p in points}) == 1 for points in by_group.values())


def test_the_default_is_one_of_the_searched_candidates():
    args = default_search.make_parser().parse_args([])
    chosen = [name for name in default_search.CANDIDATES
              if default_search.is_default(default_search.candidate_config(args, name))]
    assert len(chosen) == 1
    # A candidate that differs from it in any one setting is not the default.
    cfg = default_search.candidate_config(args, chosen[0])
    for change in (dict(epoch=cfg.epoch + 1), dict(hidden=[7]), dict(lr=cfg.lr / 2),
                   dict(spread_components=not cfg.spread_components)):
        other = SweepConfig(**dict(vars(cfg), **change))
        assert not default_search.is_default(other)


def test_quick_previews_the_same_grid_with_a_fraction_of_the_work(tmp_path):
    default, quick = SweepConfig(), sweep_mixtures.parse_args(['--quick'])
    assert (quick.dataset, quick.k, quick.direction) == (
        default.dataset, default.k, default.direction)
    assert quick.runs < default.runs and work(quick) * 20 < work(default)
    # Its own folder, and the default's floors: it neither overwrites the
    # default's results nor waits for floors of its own.
    assert quick.out != default.out and quick.floor_path == default.floor_path
    assert os.path.abspath(quick.out) == os.path.abspath(QUICK['out'])
    # An option given wins over the preview's.
    given = sweep_mixtures.parse_args(['--quick', '--runs', '2', '--out', str(tmp_path)])
    assert (given.runs, given.out, given.hidden) == (2, str(tmp_path), quick.hidden)


def test_search_table_holds_each_candidates_runs(tmp_path, monkeypatch):
    """Two tiny candidates at K = 1 and 2 against made-up floors: each cell is
    the mean over seeds of held-out NLL - its test points' Bayes NLL - floor,
    as recomputed here from results.csv."""
    monkeypatch.setattr(default_search, 'PROBE_K', [1, 2])
    monkeypatch.setattr(default_search, 'BASE', dict(
        activation='tanh', train_points=200, val_points=100, test_points=500,
        eval_every=1, lr=1e-2, lr_final=1e-3, batchsize=100, hidden=[8], quantile_start=1))
    monkeypatch.setattr(default_search, 'CANDIDATES', {
        'one': ('2 epochs', dict(epoch=2)), 'two': ('3 epochs', dict(epoch=3))})
    floors = {'{}-inverse-k{}'.format(n, k): 0.1 * k for n in datasets.NAMES for k in (1, 2)}
    floor_file = tmp_path / 'floors.json'
    floor_file.write_text(json.dumps(floors))
    out = tmp_path / 'search'
    argv = ['--out', str(out), '--runs', '2', '--jobs', '1', '--floor-file', str(floor_file)]
    assert default_search.main(argv) == 0
    table = [line for line in (out / 'summary.md').read_text().splitlines()
             if line.startswith('| 2 epochs') or line.startswith('| 3 epochs')]
    assert len(table) == 2
    for name, line in zip(('one', 'two'), table):
        cells = [c.strip() for c in line.strip('|').split('|')]
        with open(out / name / 'results.csv') as f:
            rows = list(csv.DictReader(f))
        shares = []
        for problem in datasets.NAMES:
            for k in (1, 2):
                share = []
                for r in rows:
                    if r['dataset'] == problem and int(r['k']) == k:
                        x, y = sweep_mixtures.splits(dict(
                            dataset=problem, seed=int(r['seed']), train_points=200,
                            val_points=100, test_points=500, direction='inverse'))['test']
                        bayes = -np.mean(datasets.conditional_log_density(
                            problem, x[:, 0], y[:, 0]))
                        share.append(float(r['nll']) - bayes - 0.1 * k)
                assert len(share) == 2
                shares.append(np.mean(share))
        # The default trains each K's runs as one population.
        assert cells[1] == str(SweepConfig().population)
        assert cells[2] == {'one': '4', 'two': '6'}[name]   # 2 batches an epoch
        np.testing.assert_allclose([float(c) for c in cells[5:11]], shares, atol=6e-4)
        assert cells[11].startswith('{:+.3f}'.format(max(shares)))
    # --report-only redraws the same table from the studies.
    before = (out / 'summary.md').read_text()
    (out / 'summary.md').unlink()
    assert default_search.main(argv + ['--report-only']) == 0
    assert (out / 'summary.md').read_text() == before


def test_a_search_that_cannot_train_is_refused_in_one_line(tmp_path, capsys):
    """--runs beyond the grid's limit: exit 2 with one line, nothing written."""
    with pytest.raises(SystemExit) as e:
        default_search.main(['--out', str(tmp_path / 'search'), '--runs', str(10 ** 6)])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'candidate relu128-b1024: the grid has more than' in err[0]
    assert not (tmp_path / 'search').exists()
