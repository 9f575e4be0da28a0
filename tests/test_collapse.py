"""A published-toy run says in one line when its mixture collapsed or left components dead."""
import json
import os
import subprocess
import sys

import numpy as np
from scipy import stats

import toy  # noqa: F401
from toy import datasets, mdn, mixture

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GAUSSIAN = datasets.gaussian_limit('worldmodels')


def constructed(logit_bias, slope=0.0):
    """An MDN (K = 5) whose logits are `logit_bias` + slope * x at every x."""
    model = mdn.MDN(hidden=4, k=5, rng=np.random.default_rng(0))
    model.head.W.array[:] = 0
    model.head.b.array[:] = 0
    model.head.b.array[:5] = logit_bias
    # The hidden layer has no activation: unit 0 passes x through.
    model.hidden.W.array[:] = 0
    model.hidden.W.array[0, 0] = 1
    model.hidden.b.array[:] = 0
    model.head.W.array[:5, 0] = slope
    return model


def weights(model, x):
    return mixture.weight_range(mixture.log_weights(model.mixture(x)[0]))


def test_weight_range_and_dead_components_of_a_constructed_model():
    x = np.linspace(-1, 1.2, 50, dtype=np.float32)[:, None]
    slope = np.array([0, 0, 0, 2, -2], np.float32)
    model = constructed(np.array([0, 0, -30, 0, 0], np.float32), slope)
    pi_min, pi_max = weights(model, x)
    logits = np.array([0, 0, -30, 0, 0])[None, :] + x.astype(np.float64) * slope
    pi = np.exp(logits - np.logaddexp.reduce(logits, axis=1, keepdims=True))
    np.testing.assert_allclose(pi_min, pi.min(axis=0), rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(pi_max, pi.max(axis=0), rtol=1e-5, atol=1e-12)
    assert mixture.dead_components(mixture.log_weights(model.mixture(x)[0])).tolist() == [2]


def test_log_density_is_scipys_mixture():
    rng = np.random.default_rng(1)
    logits, mu = rng.normal(size=(7, 3)), rng.normal(size=(7, 3, 2))
    ln_var, y = rng.normal(size=(7, 3, 2)), rng.normal(size=(7, 2))
    log_pi = mixture.log_weights(logits)
    expected = np.log(sum(np.exp(log_pi[:, k]) * stats.norm.pdf(
        y, mu[:, k], np.exp(0.5 * ln_var[:, k])).prod(axis=1) for k in range(3)))
    np.testing.assert_allclose(mixture.log_density(log_pi, mu, ln_var, y), expected,
                               rtol=1e-12)


def runs_csv(tmp_path, nll_and_dead):
    path = tmp_path / 'runs.csv'
    lines = ['implementation,seed,epoch,nll_test,dead_components,pi_max,train_seconds']
    lines += ['ours,{},2000,{},{},,1'.format(i, nll, dead)
              for i, (nll, dead) in enumerate(nll_and_dead)]
    lines.append('published,0,2000,0.5,3,,1')     # not ours: not counted
    path.write_text('\n'.join(lines) + '\n')
    return str(path)


def test_a_healthy_run_says_nothing(tmp_path):
    model = constructed(np.zeros(5, np.float32))
    x = np.linspace(-1, 1.2, 50, dtype=np.float32)[:, None]
    dead = int((weights(model, x)[1] < mixture.DEAD).sum())
    assert dead == 0
    assert mdn.collapse_note(GAUSSIAN - 0.5, dead, 5, runs_csv(tmp_path, [])) is None


def test_dead_components_are_one_line_with_how_often_seeds_do_so(tmp_path):
    model = constructed(np.array([0, -40, 0, -40, 0], np.float32))
    x = np.linspace(-1, 1.2, 50, dtype=np.float32)[:, None]
    dead = int((weights(model, x)[1] < mixture.DEAD).sum())
    runs = runs_csv(tmp_path, [(-1.3, 2), (-1.4, 0), (-0.6, 1)])
    note = mdn.collapse_note(GAUSSIAN - 0.5, dead, 5, runs)
    assert '\n' not in note
    assert note.startswith('2 of the 5 components are dead')
    assert 'uses 3' in note and '2 of 3 seeds' in note
    assert 'another --seed' not in note


def test_a_collapsed_fit_is_one_line_suggesting_another_seed(tmp_path):
    runs = runs_csv(tmp_path, [(-1.3, 2), (GAUSSIAN + 0.05, 2), (-1.4, 0), (-1.2, 0)])
    note = mdn.collapse_note(GAUSSIAN + 0.01, 2, 5, runs)
    assert '\n' not in note
    assert note.startswith('this run collapsed')
    assert '1 of 4 seeds' in note and note.endswith('try another --seed')
    # Just below the single Gaussian is not collapsed, only short of components.
    assert mdn.collapse_note(GAUSSIAN - 0.01, 2, 5, runs).startswith('2 of the 5')


def test_without_the_seed_table_the_line_quotes_no_frequency(tmp_path):
    note = mdn.collapse_note(GAUSSIAN + 0.2, 0, 5, str(tmp_path / 'missing.csv'))
    assert note.startswith('this run collapsed') and 'seeds' not in note


def test_the_published_script_prints_the_line_and_records_the_weights(tmp_path):
    # One epoch of 100 points: far from fitted, worse than one Gaussian.
    out = tmp_path / 'out'
    done = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'toy', 'mdn.py'), '--epoch', '1',
         '--train-points', '100', '--test-points', '500', '--hidden', '8', '--out', str(out)],
        capture_output=True, text=True, cwd=str(tmp_path), timeout=300)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((out / 'metrics.json').read_text())
    assert metrics['nll_test'] > GAUSSIAN
    assert len(metrics['pi_max']) == len(metrics['pi_min']) == 5
    assert all(0 <= lo <= hi <= 1 for lo, hi in zip(metrics['pi_min'], metrics['pi_max']))
    assert metrics['dead_components'] == sum(p < mixture.DEAD for p in metrics['pi_max'])
    lines = [line for line in done.stdout.splitlines() if 'collapsed' in line]
    assert len(lines) == 1 and lines[0].startswith('mdn.py: this run collapsed')
