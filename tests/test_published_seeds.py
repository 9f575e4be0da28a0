"""experiments.published_seeds: the published toy over seeds, beside the published script.

The published script itself trains 2000 epochs, so a stand-in with its
interface (an MDN whose constructor calls super(MDN, self) by name, fprop
giving softmaxed weights, main() training on NumPy's global generator and
saving into result/) is scored instead: its mixture is fixed, so its
held-out NLL is known exactly.
"""
import csv
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

import toy  # noqa: F401
from experiments import benchmark, published_seeds
from toy import datasets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: The command line of the experiment, run in a process of its own.
COMMAND = [sys.executable, '-m', 'experiments.published_seeds']

STAND_IN = '''
import numpy as np
import chainer
import chainer.functions as F
import chainer.links as L


class MDN(chainer.Chain):
    def __init__(self, hidden_dim, output_dim, k):
        self.k, self.output_dim = k, output_dim
        super(MDN, self).__init__(
            input_layer=L.Linear(None, hidden_dim),
            coef_layer=L.Linear(hidden_dim, k * output_dim),
            mu_layer=L.Linear(hidden_dim, k * output_dim),
            ln_var_layer=L.Linear(hidden_dim, k * output_dim),
        )

    def fprop(self, input):
        h = self.input_layer(input)
        coef = F.reshape(F.softmax(self.coef_layer(h)), (-1, self.k, self.output_dim))
        mu = F.reshape(self.mu_layer(h), (-1, self.k, self.output_dim))
        ln_var = F.reshape(self.ln_var_layer(h), (-1, self.k, self.output_dim))
        return coef, mu, ln_var


def main():
    model = MDN(8, 1, 3)
    x = np.random.rand(500, 1).astype(np.float32)
    model.fprop(x)
    # A fixed mixture: component 2 never used, the others N(0.5, 1/12) each.
    for layer in (model.coef_layer, model.mu_layer, model.ln_var_layer):
        layer.W.array[:] = 0
    model.coef_layer.b.array[:] = [0, 0, -50]
    model.mu_layer.b.array[:] = 0.5
    model.ln_var_layer.b.array[:] = np.log(1 / 12)
    print('epoch 1 (printed, as the published script prints every epoch)')
    open('result/mdn-with_preds.png', 'w').close()
'''


def run(*args, cwd):
    return subprocess.run(COMMAND + list(args), capture_output=True,
                          text=True, cwd=cwd, timeout=600)


def test_both_scripts_over_seeds_and_a_rerun_that_trains_nothing(tmp_path):
    stand_in = tmp_path / 'published_mdn.py'
    stand_in.write_text(STAND_IN)
    out = tmp_path / 'out'
    args = ['--runs', '2', '--epoch', '2', '--jobs', '2', '--published', str(stand_in),
            '--out', str(out)]
    done = run(*args, cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr
    with open(out / 'runs.csv') as f:
        rows = list(csv.DictReader(f))
    assert sorted((r['implementation'], r['seed']) for r in rows) == [
        ('ours', '0'), ('ours', '1'), ('published', '0'), ('published', '1')]

    for r in rows:
        seed = int(r['seed'])
        if r['implementation'] == 'published':
            # Scored on our run's held-out points, by the fixed mixture.
            _, y_test = datasets.train_test('worldmodels', np.random.SeedSequence(seed).spawn(4),
                                            0, 10000)[1]
            expected = -stats.norm.logpdf(y_test[:, 0], 0.5, np.sqrt(1 / 12)).mean()
            assert float(r['nll_test']) == pytest.approx(expected, rel=1e-5)
            assert r['dead_components'] == '1' and r['epoch'] == '2000'
        else:
            # Our rows are what `toy/mdn.py --seed S --epoch 2` itself reports.
            assert r['epoch'] == '2'
            assert 0 <= int(r['dead_components']) <= 5

    ours = np.array([float(r['nll_test']) for r in rows if r['implementation'] == 'ours'])
    summary = (out / 'summary.md').read_text()
    line = next(s for s in summary.splitlines() if s.startswith('| `toy/mdn.py`'))
    cells = [c.strip() for c in line.split('|')[1:-1]]
    assert cells[1] == '2' and cells[2] == '{:.3f}'.format(np.median(ours))
    assert cells[3] == '{:.3f} to {:.3f}'.format(*np.percentile(ours, [25, 75]))
    assert (out / 'distribution.png').stat().st_size > 0

    kept = {p: p.read_bytes() for p in (out / 'runs').iterdir()}
    assert len(kept) == 4
    again = run(*args, cwd=str(tmp_path))
    assert again.returncode == 0, again.stderr
    assert {p: p.read_bytes() for p in (out / 'runs').iterdir()} == kept

    other = run(*(args[:2] + ['--epoch', '3'] + args[4:]), cwd=str(tmp_path))
    assert other.returncode == 2
    assert other.stderr.count('\n') == 1 and 'holds runs of --epoch 2' in other.stderr
    assert {p: p.read_bytes() for p in (out / 'runs').iterdir()} == kept


def test_a_published_file_that_is_not_there_is_one_line(tmp_path):
    done = run('--published', str(tmp_path / 'missing.py'), '--out', str(tmp_path / 'o'),
               cwd=str(tmp_path))
    assert done.returncode == 2 and done.stderr.count('\n') == 1
    assert 'not a file' in done.stderr and not (tmp_path / 'o').exists()



def test_the_published_models_nll_is_that_of_its_mixture():
    """benchmark's re-implementation of the published net, scored by
    published_nll: the mixture of its three heads, against scipy."""
    model = benchmark.PublishedMDN(hidden=4, k=2)
    x = np.linspace(0, 1, 50, dtype=np.float32)[:, None]
    y = np.random.default_rng(0).uniform(-0.5, 1.5, (50, 1)).astype(np.float32)
    model(x, y)                         # infers the input layer's size
    rng = np.random.default_rng(1)
    for layer in (model.input_layer, model.coef_layer, model.mu_layer,
                  model.ln_var_layer):
        layer.W.array[...] = rng.normal(size=layer.W.shape)
        layer.b.array[...] = rng.normal(size=layer.b.shape)
    h = x @ model.input_layer.W.array.T.astype(float) + model.input_layer.b.array

    def head(layer):
        return h @ layer.W.array.T.astype(float) + layer.b.array

    log_pi = head(model.coef_layer) - np.logaddexp.reduce(head(model.coef_layer), axis=1,
                                                          keepdims=True)
    sigma = np.exp(0.5 * head(model.ln_var_layer))
    expected = -np.logaddexp.reduce(
        log_pi + stats.norm.logpdf(y, head(model.mu_layer), sigma), axis=1).mean()
    assert published_seeds.published_nll(model, x, y) == pytest.approx(expected, rel=1e-5)
