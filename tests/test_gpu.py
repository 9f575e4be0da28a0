"""The same code on CuPy gives the CPU's numbers (skipped where no GPU works)."""
import os
import subprocess
import sys

import numpy as np
import pytest

import toy  # noqa: F401
import chainer

from test_loss import mixture
from toy import loss, mdn

pytestmark = pytest.mark.gpu


@pytest.fixture
def gpu():
    return chainer.get_device('@cupy:0')


def value_and_grads(nll, params, device):
    logits, mu, ln_var = (chainer.Variable(device.send(a)) for a in params[:3])
    value = nll(logits, mu, ln_var, device.send(params[3]))
    value.backward()
    to_cpu = chainer.backend.CpuDevice().send
    return [to_cpu(a) for a in (value.array, logits.grad, mu.grad, ln_var.grad)]


@pytest.mark.parametrize('d', [1, 3])
def test_loss_and_gradients_match_cpu(gpu, d):
    params = mixture(256, 5, d, seed=d, dtype=np.float32)
    for nll in (loss.nll_logspace, loss.nll_density):
        cpu = value_and_grads(nll, params, chainer.get_device('@numpy'))
        for got, want in zip(value_and_grads(nll, params, gpu), cpu):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize('hidden, activation', [(32, 'tanh'), ([16, 16, 16], 'silu'),
                                                ([16, 16], 'relu')])
def test_model_forward_matches_cpu(gpu, hidden, activation):
    model = mdn.MDN(hidden=hidden, k=4, out_dim=2, activation=activation,
                    rng=np.random.default_rng(0))
    x = np.linspace(-1, 1, 50, dtype=np.float32).reshape(-1, 1)
    cpu = model.mixture(x)
    model.to_device(gpu)
    for got, want in zip(model.mixture(gpu.send(x)), cpu):
        np.testing.assert_allclose(gpu.xp.asnumpy(got), want, rtol=1e-5, atol=1e-6)


def test_spread_components_matches_cpu(gpu):
    """On a model on the GPU, from targets on the GPU: the CPU's head."""
    y = np.random.default_rng(1).uniform(-2, 2, (300, 2)).astype(np.float32)
    models = [mdn.MDN(hidden=[8, 8], k=4, out_dim=2, activation='relu',
                      rng=np.random.default_rng(0)) for _ in range(2)]
    models[0].spread_components(y)
    models[1].to_device(gpu)
    models[1].spread_components(gpu.send(y))
    for name in ('W', 'b'):
        np.testing.assert_allclose(gpu.xp.asnumpy(getattr(models[1].head, name).array),
                                   getattr(models[0].head, name).array, rtol=1e-6)


def test_spread_kinks_matches_cpu(gpu):
    """On a model on the GPU, from inputs on the GPU: the CPU's first layer."""
    x = np.random.default_rng(1).uniform(-2, 2, (300, 1)).astype(np.float32)
    models = [mdn.MDN(hidden=[8, 8], k=4, activation='relu',
                      rng=np.random.default_rng(0)) for _ in range(2)]
    models[0].spread_kinks(x, np.random.default_rng(3))
    models[1].to_device(gpu)
    models[1].spread_kinks(gpu.send(x), np.random.default_rng(3))
    np.testing.assert_allclose(gpu.xp.asnumpy(models[1].hidden.b.array),
                               models[0].hidden.b.array, rtol=1e-6)


def test_gpu_samples_have_the_mixture_moments(gpu):
    pi, mu, sigma = np.array([0.3, 0.7]), np.array([-1.0, 2.0]), np.array([0.5, 0.2])
    rows, n = 1000, 1000
    logits = gpu.send(np.tile(np.log(pi), (rows, 1)).astype(np.float32))
    mu_ = gpu.send(np.tile(mu[:, None], (rows, 1, 1)).astype(np.float32))
    ln_var = gpu.send(np.tile(2 * np.log(sigma)[:, None], (rows, 1, 1)).astype(np.float32))
    draws = gpu.xp.asnumpy(mixture.sample(logits, mu_, ln_var, n=n,
                                      rng=gpu.xp.random.RandomState(0))).ravel()
    mean = (pi * mu).sum()
    var = (pi * (sigma ** 2 + mu ** 2)).sum() - mean ** 2
    np.testing.assert_allclose(draws.mean(), mean, atol=5 * np.sqrt(var / draws.size))
    np.testing.assert_allclose(draws.var(), var, rtol=0.01)


def test_cli_trains_on_the_gpu(tmp_path):
    script = os.path.join(os.path.dirname(__file__), os.pardir, 'toy', 'mdn.py')
    result = subprocess.run(
        [sys.executable, script, '--gpu', '0', '--epoch', '3', '--train-points', '200',
         '--test-points', '500', '--out', str(tmp_path)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert '"device": "@cupy:0"' in (tmp_path / 'metrics.json').read_text()
