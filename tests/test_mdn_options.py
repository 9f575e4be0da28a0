"""The per-dimension and full-covariance mixtures: NLLs against scipy,
gradients by finite differences, sampling statistics, point estimates."""
import numpy as np
import pytest
from scipy import special, stats

import toy  # noqa: F401
import chainer
from chainer import gradient_check

from toy import heads, loss, mdn, mixture, nets


def full_mixture(n, k, d, seed, dtype=np.float64):
    """Random (logits, mu, log_diag, lower, y), y near the first component."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, k))
    mu = rng.normal(size=(n, k, d))
    log_diag = rng.uniform(-1.5, 0.5, size=(n, k, d))
    lower = rng.normal(scale=0.7, size=(n, k, d * (d - 1) // 2))
    y = mu[:, 0] + rng.normal(size=(n, d))
    return tuple(a.astype(dtype) for a in (logits, mu, log_diag, lower, y))


def scipy_full_nll(logits, mu, log_diag, lower, y):
    chol = mixture.scale_tril(log_diag, lower)
    log_pi = logits - special.logsumexp(logits, axis=1, keepdims=True)
    log_n = np.array([[stats.multivariate_normal.logpdf(
        y[i], mu[i, j], chol[i, j] @ chol[i, j].T) for j in range(mu.shape[1])]
        for i in range(len(y))])
    return -special.logsumexp(log_pi + log_n, axis=1).mean()


@pytest.mark.parametrize('d', [1, 2, 3])
def test_full_covariance_nll_matches_scipy(d):
    params = full_mixture(40, 4, d, seed=d)
    got = loss.nll_full_covariance(*params).array
    np.testing.assert_allclose(got, scipy_full_nll(*params), rtol=1e-10)


def test_full_covariance_nll_float32_and_far_points():
    params = full_mixture(40, 4, 2, seed=7, dtype=np.float32)
    want = scipy_full_nll(*(a.astype(np.float64) for a in params))
    np.testing.assert_allclose(loss.nll_full_covariance(*params).array, want,
                               rtol=1e-5)
    # Where every component's density underflows, the log-space form stays finite.
    far = params[:4] + (params[4] + 200,)
    value = loss.nll_full_covariance(*far).array
    assert np.isfinite(value) and value > 1e3


def test_full_covariance_with_diagonal_factor_is_the_diagonal_nll():
    logits, mu, log_diag, lower, y = full_mixture(30, 3, 2, seed=11)
    got = loss.nll_full_covariance(logits, mu, log_diag, 0 * lower, y).array
    want = loss.nll_logspace(logits, mu, 2 * log_diag, y).array
    np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize('d', [2, 3])
def test_full_covariance_gradients(d):
    params = full_mixture(6, 3, d, seed=20 + d)
    gradient_check.check_backward(
        loss.nll_full_covariance, params, np.ones((), dtype=np.float64),
        dtype=np.float64, eps=1e-6, atol=1e-6, rtol=1e-5)


def test_shape_mismatch_is_refused():
    logits, mu, log_diag, lower, y = full_mixture(5, 3, 2, seed=1)
    with pytest.raises(ValueError, match='lower'):
        loss.nll_full_covariance(logits, mu, log_diag, lower[:, :, :0], y)


def model_and_data(cls, d=2, k=3, n=20, seed=0):
    rng = np.random.default_rng(seed)
    model = cls(in_dim=2, out_dim=d, hidden=8, k=k, activation='tanh', rng=rng)
    x = rng.normal(size=(n, 2)).astype(np.float32)
    y = rng.normal(size=(n, d)).astype(np.float32)
    return model, x, y


def test_per_dimension_nll_is_a_sum_of_1d_mixture_nlls():
    model, x, y = model_and_data(heads.PerDimensionMDN, d=3)
    logits, mu, ln_var = model.mixture(x)
    assert logits.shape == mu.shape == ln_var.shape == (20, 3, 3)
    log_pi = logits - special.logsumexp(logits, axis=2, keepdims=True)
    log_n = stats.norm.logpdf(y[:, :, None].astype(np.float64), mu,
                              np.exp(0.5 * ln_var.astype(np.float64)))
    want = -special.logsumexp(log_pi + log_n, axis=2).sum(axis=1).mean()
    np.testing.assert_allclose(float(model.loss(x, y).array), want, rtol=1e-5)


def test_full_covariance_model_loss_and_layout():
    model, x, y = model_and_data(heads.FullCovarianceMDN)
    assert model.head.W.shape[0] == 3 * (1 + 2 * 2 + 1)
    params = model.mixture(x)
    assert [p.shape for p in params] == [(20, 3), (20, 3, 2), (20, 3, 2), (20, 3, 1)]
    want = scipy_full_nll(*(p.astype(np.float64) for p in params),
                          y.astype(np.float64))
    np.testing.assert_allclose(float(model.loss(x, y).array), want, rtol=1e-5)
    # Trainable: one Adam step lowers the loss.
    opt = chainer.optimizers.Adam(alpha=1e-2)
    opt.setup(model)
    before = float(model.loss(x, y).array)
    for _ in range(5):
        opt.update(model.loss, x, y)
    assert float(model.loss(x, y).array) < before


def test_full_covariance_samples_have_the_components_moments():
    # Two well-separated components, pi = (0.3, 0.7), correlated covariances.
    logits = np.log(np.array([[0.3, 0.7]]))
    mu = np.array([[[-5.0, 0.0], [5.0, 1.0]]])
    log_diag = np.log(np.array([[[1.0, 0.5], [0.3, 2.0]]]))
    lower = np.array([[[0.8], [-0.4]]])
    y = mixture.sample_full(logits, mu, log_diag, lower, n=200000,
                        rng=np.random.RandomState(0))[0]
    assert y.shape == (200000, 2)
    first = y[:, 0] < 0
    assert abs(first.mean() - 0.3) < 0.005
    chol = mixture.scale_tril(log_diag, lower)[0]
    for mask, j in ((first, 0), (~first, 1)):
        np.testing.assert_allclose(y[mask].mean(0), mu[0, j], atol=0.02)
        np.testing.assert_allclose(np.cov(y[mask].T), chol[j] @ chol[j].T,
                                   atol=0.03)
    # Temperature tau scales the covariance by tau and sharpens pi.
    cold = mixture.sample_full(logits, mu, log_diag, lower, n=100000,
                           temperature=0.25, rng=np.random.RandomState(1))[0]
    pi_cold = np.array([0.3, 0.7]) ** 4 / np.sum(np.array([0.3, 0.7]) ** 4)
    assert abs((cold[:, 0] < 0).mean() - pi_cold[0]) < 0.005
    np.testing.assert_allclose(np.cov(cold[cold[:, 0] > 0].T),
                               0.25 * chol[1] @ chol[1].T, atol=0.02)
    with pytest.raises(ValueError, match='temperature'):
        mixture.sample_full(logits, mu, log_diag, lower, temperature=0)


def test_per_dimension_samples_and_point_estimates():
    model, x, y = model_and_data(heads.PerDimensionMDN, d=2, n=4)
    draws = model.sample(x, n=50000, rng=np.random.RandomState(0))
    assert draws.shape == (4, 50000, 2)
    logits, mu, ln_var = model.mixture(x)
    pi = special.softmax(logits, axis=2)
    np.testing.assert_allclose(draws.mean(1), (pi * mu).sum(2), atol=0.03)
    np.testing.assert_allclose(model.point_estimate(x, 'mean'),
                               (pi * mu).sum(2), rtol=1e-5)
    mode = np.take_along_axis(mu, logits.argmax(2)[..., None], 2)[..., 0]
    np.testing.assert_allclose(model.point_estimate(x, 'mode'), mode)


def test_point_estimates_of_joint_mixtures():
    for cls in (mdn.MDN, heads.FullCovarianceMDN):
        model, x, y = model_and_data(cls, d=2, n=5)
        logits, mu = model.mixture(x)[:2]
        np.testing.assert_allclose(model.point_estimate(x),
                                   mixture.most_probable_mean(logits, mu))
        np.testing.assert_allclose(model.point_estimate(x, 'mean'),
                                   mixture.mixture_mean(logits, mu))


@pytest.mark.parametrize('cls', [heads.PerDimensionMDN, heads.FullCovarianceMDN])
def test_losses_check_the_data(cls):
    model, x, y = model_and_data(cls)
    with pytest.raises(ValueError, match='y has 3 column'):
        model.loss(x, np.zeros((20, 3), np.float32))
    with pytest.raises(ValueError, match='NaN|finite'):
        model.loss(x, np.full((20, 2), np.nan, np.float32))


@pytest.mark.gpu
def test_gpu_matches_cpu():
    """The full-covariance NLL, its gradients, the sampler and both models'
    losses on CuPy give the CPU's numbers (skipped where no GPU works)."""
    gpu, cpu = chainer.get_device('@cupy:0'), chainer.get_device('@numpy')
    to_cpu = chainer.backend.CpuDevice().send
    params = full_mixture(64, 4, 2, seed=5, dtype=np.float32)

    def value_and_grads(device):
        v = [chainer.Variable(device.send(a)) for a in params]
        value = loss.nll_full_covariance(*v)
        value.backward()
        return [to_cpu(value.array)] + [to_cpu(a.grad) for a in v]

    for got, want in zip(value_and_grads(gpu), value_and_grads(cpu)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    draws = to_cpu(mixture.sample_full(*(gpu.send(a) for a in params[:4]), n=2000,
                                   rng=gpu.xp.random.RandomState(0)))
    assert draws.shape == (64, 2000, 2) and np.isfinite(draws).all()
    for cls in (heads.PerDimensionMDN, heads.FullCovarianceMDN):
        model, x, y = model_and_data(cls)
        want = float(model.loss(x, y).array)
        model.to_device(gpu)
        np.testing.assert_allclose(float(model.loss(gpu.send(x), gpu.send(y)).array),
                                   want, rtol=1e-5)
        assert model.sample(x, n=3).shape == (20, 3, 2)


def test_deeper_nets_compute_the_layers_in_turn():
    """hidden=[a, b]: x -> act(x W1 + b1) -> act(. W2 + b2) -> head, against
    the same arithmetic in NumPy; parameters named hidden, hidden2, head."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, 2)).astype(np.float32)
    model = mdn.MDN(in_dim=2, out_dim=1, hidden=[5, 4], k=3, activation='silu',
                    rng=np.random.default_rng(1))
    assert sorted(n for n, _ in model.namedparams()) == [
        '/head/W', '/head/b', '/hidden/W', '/hidden/b', '/hidden2/W', '/hidden2/b']
    h = x
    for layer in (model.hidden, model.hidden2):
        h = h @ layer.W.array.T + layer.b.array
        h = h * special.expit(h)
    out = h @ model.head.W.array.T + model.head.b.array
    logits, mu, ln_var = model.mixture(x)
    np.testing.assert_allclose(logits, out[:, :3], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mu[:, :, 0], out[:, 3:6], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ln_var[:, :, 0], out[:, 6:], rtol=1e-5, atol=1e-6)


def test_silu_gradient():
    x = np.random.default_rng(2).uniform(-4, 4, (3, 5))
    gradient_check.check_backward(nets.silu, x, np.ones_like(x), dtype=np.float64)


def test_one_layer_keeps_its_published_initial_weights():
    """An int and a one-element list build the same net from the same rng."""
    a = mdn.MDN(hidden=6, k=2, rng=np.random.default_rng(3))
    b = mdn.MDN(hidden=[6], k=2, rng=np.random.default_rng(3))
    for (na, pa), (nb, pb) in zip(sorted(a.namedparams()), sorted(b.namedparams())):
        assert na == nb
        np.testing.assert_array_equal(pa.array, pb.array)
    assert nets.hidden_option([6]) == 6 and nets.hidden_option([6, 7]) == [6, 7]


@pytest.mark.parametrize('hidden', [[], [4, 0], 0, [2.5], True, 'x', 2.5, None])
def test_bad_hidden_widths_are_refused(hidden):
    with pytest.raises(ValueError, match='hidden must be'):
        mdn.MDN(hidden=hidden)


def test_spread_components_start_side_by_side_at_every_input():
    """Component k starts on the (k + 1/2)/K quantile of each target column
    with sd = its range / K at every input (shrink 0); the means' and
    log-variances' weights are scaled by shrink, the logits' kept."""
    rng = np.random.default_rng(4)
    y = np.stack([rng.uniform(-1, 3, 500), rng.normal(size=500)], 1).astype(np.float32)
    x = rng.normal(size=(9, 2)).astype(np.float32)
    k = 5
    for shrink in (0.0, 0.1):
        model = mdn.MDN(in_dim=2, out_dim=2, hidden=[6, 6], k=k, activation='relu',
                        rng=np.random.default_rng(5))
        W = model.head.W.array.copy()
        logits = model.mixture(x)[0]
        model.spread_components(y, shrink=shrink)
        np.testing.assert_array_equal(model.head.W.array[:k], W[:k])
        np.testing.assert_allclose(model.head.W.array[k:], shrink * W[k:], rtol=1e-6)
        got_logits, mu, ln_var = model.mixture(x)
        np.testing.assert_allclose(got_logits, logits, rtol=1e-6)
        if shrink == 0:
            q = np.quantile(y, (np.arange(k) + 0.5) / k, axis=0)
            np.testing.assert_allclose(mu, np.broadcast_to(q, mu.shape), rtol=1e-5)
            sd = np.exp(0.5 * ln_var)
            np.testing.assert_allclose(sd, np.broadcast_to(np.ptp(y, 0) / k, sd.shape),
                                       rtol=1e-5)
    # At shrink 0.1 each component stays within its slice at every input.
    assert (np.diff(mu, axis=1) > 0).all()


@pytest.mark.parametrize('in_dim', [1, 3])
def test_spread_kinks_bends_each_first_layer_unit_at_a_training_input(in_dim):
    """Each first-layer unit's pre-activation is 0 at one of the rows x,
    which one drawn by rng; nothing else of the net moves."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(50, in_dim)).astype(np.float32)
    model = mdn.MDN(in_dim=in_dim, hidden=[16, 8], k=3, activation='relu',
                    rng=np.random.default_rng(1))
    before = {name: p.array.copy() for name, p in model.namedparams()}
    assert not before['/hidden/b'].any()
    model.spread_kinks(x, np.random.default_rng(2))
    pre = x @ model.hidden.W.array.T + model.hidden.b.array               # (50, 16)
    at = np.abs(pre).argmin(axis=0)
    np.testing.assert_allclose(pre[at, np.arange(16)], 0, atol=1e-5)
    np.testing.assert_array_equal(at, np.random.default_rng(2).integers(50, size=16))
    for name, p in model.namedparams():
        if name != '/hidden/b':
            np.testing.assert_array_equal(p.array, before[name])
    if in_dim == 1:
        # The bends are where the data are, not all at one point.
        kinks = -model.hidden.b.array / model.hidden.W.array[:, 0]
        assert x.min() <= kinks.min() < kinks.max() <= x.max()
    with pytest.raises(ValueError, match='x has {} column'.format(in_dim + 1)):
        model.spread_kinks(np.zeros((5, in_dim + 1), np.float32), rng)


def test_spread_components_refuses_what_it_cannot_spread():
    model = mdn.MDN(out_dim=2, hidden=4, k=3, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match='y has 1 column'):
        model.spread_components(np.zeros((10, 1), np.float32))
    with pytest.raises(ValueError, match='NaN|finite'):
        model.spread_components(np.full((10, 2), np.nan, np.float32))
    for cls in (heads.PerDimensionMDN, heads.FullCovarianceMDN):
        with pytest.raises(NotImplementedError, match='MDN only'):
            cls(out_dim=2, hidden=4, k=3).spread_components(np.zeros((10, 2)))


@pytest.mark.parametrize('kwargs, message', [
    ({'k': 0}, r'k must be a positive int, not 0'),
    ({'k': 2.0}, r'k must be a positive int, not 2\.0'),
    ({'in_dim': 0}, r'in_dim must be a positive int, not 0'),
    ({'out_dim': -1}, r'out_dim must be a positive int, not -1'),
    ({'activation': 'gelu'}, r"activation must be one of none, relu, sigmoid, silu, "
                             r"tanh, not 'gelu'"),
    ({'nll': 'mse'}, r"nll must be one of density, fused, logspace, not 'mse'"),
    ({'ln_var_min': float('nan')}, r'ln_var_min must be a finite number .* not nan'),
    ({'ln_var_min': '-5'}, r"ln_var_min must be a finite number .* not '-5'"),
])
@pytest.mark.parametrize('cls', [mdn.MDN, heads.FullCovarianceMDN, heads.PerDimensionMDN])
def test_bad_model_options_get_a_value_error_saying_what_to_give(cls, kwargs, message):
    """Issue 17, item 13: k = 0, in_dim = 0 and hidden = 2.5 failed deep
    inside Chainer or NumPy, activation='gelu' with a KeyError, and
    ln_var_min = nan gave a NaN loss."""
    with pytest.raises(ValueError, match=message):
        cls(hidden=4, **kwargs)


def test_bad_baseline_options_are_refused():
    for kwargs in ({'in_dim': 0}, {'out_dim': 0}, {'activation': 'gelu'}):
        with pytest.raises(ValueError, match='must be'):
            nets.LeastSquares(hidden=4, **kwargs)


def test_full_covariance_with_tiny_factors_is_finite():
    """Issue 17, item 11: log L_dd <= -45 (exp(-log L_dd) overflows float32
    from -88.7) gave NaN values and gradients. Three float32 cases, against
    hand values: y on the mean at L_dd = e^-100; one
    component beyond the float range (z^2 / 2 = 1e39) beside an ordinary
    one; and every component beyond it (+inf, and no gradient)."""
    logits = np.zeros((1, 2), np.float32)
    mu = np.zeros((1, 2, 2), np.float32)
    lower = np.full((1, 2, 1), 0.5, np.float32)
    y = np.zeros((1, 2), np.float32)

    def value_and_grads(*arrays):
        xs = [chainer.Variable(a) for a in arrays]
        out = loss.nll_full_covariance(*xs)
        out.backward()
        for x in xs:
            assert np.isfinite(x.grad).all()
        return out.array, [x.grad for x in xs]

    on_mean = np.full((1, 2, 2), -100, np.float32)
    value, _ = value_and_grads(logits, mu, on_mean, lower, y)
    np.testing.assert_allclose(value, np.log(2 * np.pi) - 200, rtol=1e-6)

    # The second component, L = [[1, 0], [0.5, 1]], has z = (1, 0) at y = (1, 0.5).
    log_diag = np.array([[[-45, -45], [0, 0]]], np.float32)
    y_off = np.array([[1, 0.5]], np.float32)
    value, grads = value_and_grads(logits, mu, log_diag, lower, y_off)
    np.testing.assert_allclose(value, np.log(2) + 0.5 + np.log(2 * np.pi), rtol=1e-6)
    assert grads[2][0, 0].tolist() == [0, 0]            # no responsibility

    value, grads = value_and_grads(logits, mu, np.full((1, 2, 2), -45, np.float32),
                                   lower, y_off)
    assert value == np.inf
    for g in grads:
        np.testing.assert_array_equal(g, 0)


def test_quantile_start_is_the_pinball_loss_plus_the_nll_with_the_means_held():
    """Its value is sum_k mean rho_tau_k(y - mu_k) + the mixture NLL (scipy),
    and the means' gradient is the pinball loss's alone: -(tau_k - [r < 0])
    per point, / (N D), through the head's mean rows."""
    rng = np.random.default_rng(6)
    n, k, d = 60, 3, 2
    model = mdn.MDN(out_dim=d, hidden=[7], k=k, activation='tanh', rng=rng)
    x = rng.normal(size=(n, 1)).astype(np.float32)
    y = rng.normal(size=(n, d)).astype(np.float32)
    value = model.quantile_start(x, y)
    logits, mu, ln_var = (v.array.astype(np.float64) for v in model.forward(x))
    tau = ((np.arange(k) + 0.5) / k)[:, None]
    r = y[:, None, :] - mu
    pinball = np.maximum(tau * r, (tau - 1) * r).sum(1).mean()
    log_n = stats.norm.logpdf(y[:, None, :], mu, np.exp(0.5 * ln_var)).sum(2)
    nll = -special.logsumexp(special.log_softmax(logits, 1) + log_n, 1).mean()
    np.testing.assert_allclose(value.array, pinball + nll, rtol=1e-5)
    model.cleargrads()
    value.backward()
    g_mu = -(tau - (r < 0)) / (n * d)                                  # (N, K, D)
    with chainer.no_backprop_mode():
        h = model.hidden_output(x).array
    np.testing.assert_allclose(model.head.W.grad[k:k + k * d],
                               g_mu.reshape(n, k * d).T @ h, rtol=1e-4, atol=1e-7)


def test_quantile_start_puts_each_mean_on_its_conditional_quantile():
    """y = 2x + U(0, 1): the tau quantile of y given x is 2x + tau, linear in
    x as the published net's means are, and the means trained by the
    quantile start alone come within 0.02 of it."""
    rng = np.random.default_rng(7)
    k = 4
    x = rng.uniform(-1, 1, size=(20000, 1)).astype(np.float32)
    y = (2 * x + rng.uniform(0, 1, size=x.shape)).astype(np.float32)
    model = mdn.MDN(hidden=[4], k=k, activation='none', rng=rng)
    optimizer = chainer.optimizers.Adam(alpha=1e-2)
    optimizer.setup(model)
    for step in range(2000):
        rows = rng.integers(0, len(x), 500)
        model.cleargrads()
        model.quantile_start(x[rows], y[rows]).backward()
        optimizer.update()
        optimizer.hyperparam.alpha *= 0.01 ** (1 / 2000)
    grid = np.linspace(-0.9, 0.9, 7, dtype=np.float32)[:, None]
    mu = model.mixture(grid)[1][:, :, 0]
    want = 2 * grid + (np.arange(k) + 0.5) / k
    assert np.abs(mu - want).max() < 0.02, np.abs(mu - want).max()
