"""nll_fused: one FunctionNode with Bishop's closed-form gradients.

nll_logspace (composed from Chainer functions, differentiated by autograd)
is the reference for values and gradients.
"""
import numpy as np
import pytest

import toy  # noqa: F401  (patches NumPy/Python before chainer is imported)
import chainer
from chainer import gradient_check

from toy import loss
from toy.mdn import MDN

LOG_2PI = np.log(2 * np.pi)


def mixture_inputs(n, k, d, dtype, seed=0):
    """logits (N, K), mu and ln_var (N, K, D), y (N, D) with every component
    carrying some responsibility, so no gradient is trivially zero."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1, (n, k))
    mu = rng.normal(0, 1, (n, k, d))
    ln_var = rng.uniform(-1, 1, (n, k, d))
    y = rng.normal(0, 1, (n, d))
    return tuple(a.astype(dtype) for a in (logits, mu, ln_var, y))


def value_and_grads(nll, arrays, gy=1.0):
    xs = [chainer.Variable(a.copy()) for a in arrays]
    out = nll(*xs)
    out.grad = np.full((), gy, dtype=out.dtype)
    out.backward()
    return out.array, [x.grad for x in xs]


@pytest.mark.parametrize('d', [1, 3])
def test_check_backward_float64(d):
    arrays = mixture_inputs(6, 4, d, np.float64, seed=d)
    gy = np.array(1.7)
    gradient_check.check_backward(loss.nll_fused, arrays, gy,
                                  dtype=np.float64, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize('dtype, tol', [(np.float32, 2e-5), (np.float64, 1e-12)])
@pytest.mark.parametrize('n, k, d', [(1, 1, 1), (50, 5, 1), (17, 3, 4)])
def test_matches_logspace(n, k, d, dtype, tol):
    arrays = mixture_inputs(n, k, d, dtype, seed=n + k + d)
    value, grads = value_and_grads(loss.nll_fused, arrays, gy=0.5)
    ref_value, ref_grads = value_and_grads(loss.nll_logspace, arrays, gy=0.5)
    assert value.dtype == dtype and value.shape == ()
    np.testing.assert_allclose(value, ref_value, rtol=tol, atol=tol)
    for g, ref in zip(grads, ref_grads):
        assert g.dtype == dtype and g.shape == ref.shape
        np.testing.assert_allclose(g, ref, rtol=tol, atol=tol)


def test_closed_forms_on_a_hand_case():
    """One point, two components: the formulas in the docstring, by hand."""
    logits = np.array([[0.0, np.log(3.0)]])                # pi = (1/4, 3/4)
    mu = np.array([[[0.0], [2.0]]])
    ln_var = np.array([[[0.0], [np.log(4.0)]]])            # var = (1, 4)
    y = np.array([[1.0]])
    pi = np.array([0.25, 0.75])
    var = np.array([1.0, 4.0])
    density = np.exp(-0.5 * (1.0 - mu[0, :, 0]) ** 2 / var) / np.sqrt(2 * np.pi * var)
    gamma = pi * density / (pi * density).sum()
    value, (g_logits, g_mu, g_ln_var, g_y) = value_and_grads(
        loss.nll_fused, (logits, mu, ln_var, y))
    np.testing.assert_allclose(value, -np.log((pi * density).sum()), rtol=1e-12)
    np.testing.assert_allclose(g_logits[0], pi - gamma, rtol=1e-12)
    np.testing.assert_allclose(g_mu[0, :, 0], gamma * (mu[0, :, 0] - 1.0) / var,
                               rtol=1e-12)
    np.testing.assert_allclose(
        g_ln_var[0, :, 0], 0.5 * gamma * (1 - (1.0 - mu[0, :, 0]) ** 2 / var),
        rtol=1e-12, atol=1e-15)                            # z = 1 on k = 0
    np.testing.assert_allclose(g_y[0, 0], (gamma * (1.0 - mu[0, :, 0]) / var).sum(),
                               rtol=1e-12)


# float32 rounds 60 sigma, and z^2 / 2 = 1800 then moves by ~1e-3 nats:
# the closed forms hold to that, the log-space reference more tightly.
@pytest.mark.parametrize('dtype, tol', [(np.float32, 2e-3), (np.float64, 1e-9)])
def test_finite_where_the_density_underflows(dtype, tol):
    """|y - mu| / sigma = 60 for every component: exp(-1800) is 0 even in
    float64, so the density form gives inf; the fused loss stays exact."""
    n, k = 4, 3
    sigma = np.array([1e-3, 1.0, 10.0], dtype=dtype)
    ln_var = np.broadcast_to(np.log(sigma ** 2)[None, :, None], (n, k, 1)).astype(dtype)
    logits = np.zeros((n, k), dtype=dtype)
    y = np.zeros((n, 1), dtype=dtype)
    mu = np.broadcast_to((60 * sigma)[None, :, None], (n, k, 1)).astype(dtype)
    arrays = (logits, mu, ln_var, y)

    with chainer.no_backprop_mode(), np.errstate(divide='ignore'):
        assert np.isinf(loss.nll_density(*arrays).array)
    value, grads = value_and_grads(loss.nll_fused, arrays)
    ref_value, ref_grads = value_and_grads(loss.nll_logspace, arrays)
    # Every component has z = 60, so N_k is proportional to 1 / sigma_k:
    # gamma_k = (1 / sigma_k) / sum_j (1 / sigma_j), and
    # NLL = log K + (log 2 pi + 3600) / 2 - log sum_k (1 / sigma_k).
    inv_sigma = 1 / sigma.astype(np.float64)
    gamma = inv_sigma / inv_sigma.sum()
    expected = np.log(k) + 0.5 * (LOG_2PI + 3600) - np.log(inv_sigma.sum())
    np.testing.assert_allclose(value, expected, rtol=1e-6)
    np.testing.assert_allclose(value, ref_value, rtol=1e-6)
    for g, ref in zip(grads, ref_grads):
        assert np.isfinite(g).all()
        np.testing.assert_allclose(g, ref, rtol=1e-4, atol=1e-6 * np.abs(ref).max())
    np.testing.assert_allclose(grads[0], np.broadcast_to(1 / k - gamma, (n, k)) / n,
                               rtol=tol, atol=tol / n)
    np.testing.assert_allclose(grads[1][:, :, 0],
                               np.broadcast_to(gamma * 60 / sigma, (n, k)) / n,
                               rtol=tol)
    np.testing.assert_allclose(grads[3][:, 0], -(gamma * 60 / sigma).sum() / n,
                               rtol=tol)


def test_finite_for_tiny_sigma_float32():
    """sigma = 1e-7 (var = 1e-14, below float32's resolution of 1 + x)."""
    n = 3
    ln_var = np.full((n, 2, 1), np.log(1e-14), dtype=np.float32)
    mu = np.array([[[0.0], [1.0]]] * n, dtype=np.float32)
    y = np.full((n, 1), 3e-7, dtype=np.float32)                  # z = 3 on k=0
    logits = np.zeros((n, 2), dtype=np.float32)
    value, grads = value_and_grads(loss.nll_fused, (logits, mu, ln_var, y))
    assert np.isfinite(value) and all(np.isfinite(g).all() for g in grads)
    # Component 1 is 1e7 sigmas away, so pi_0 = 1/2 carries all the mass.
    expected = np.log(2) + 0.5 * (LOG_2PI + np.log(1e-14) + 9.0)
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    np.testing.assert_allclose(grads[0][:, 0], (0.5 - 1.0) / n, rtol=1e-5)
    np.testing.assert_allclose(grads[2][:, 0, 0], 0.5 * (1 - 9.0) / n, rtol=1e-3)


def test_y_without_grad_and_no_backprop_mode():
    arrays = mixture_inputs(8, 3, 2, np.float32)
    xs = [chainer.Variable(a) for a in arrays[:3]]
    out = loss.nll_fused(*xs, arrays[3])                 # y a plain array
    out.backward()
    assert all(x.grad is not None for x in xs)
    with chainer.no_backprop_mode():
        quiet = loss.nll_fused(*arrays)
    assert quiet.creator is None
    np.testing.assert_allclose(quiet.array, out.array, rtol=1e-6)


def test_repeated_backward_accumulates_without_corrupting():
    """Backward hands out scaled copies: the stored gradients stay intact."""
    arrays = mixture_inputs(5, 3, 2, np.float64)
    xs = [chainer.Variable(a.copy()) for a in arrays]
    out = loss.nll_fused(*xs)
    out.backward()
    first = [x.grad.copy() for x in xs]
    for x in xs:
        x.grad *= 0.0                          # in place, on what backward gave
    out.backward()
    for x, g in zip(xs, first):
        np.testing.assert_allclose(x.grad, g, rtol=1e-12)


def test_double_backprop_is_refused():
    xs = [chainer.Variable(a) for a in mixture_inputs(4, 2, 1, np.float64)]
    out = loss.nll_fused(*xs)
    with pytest.raises(NotImplementedError, match='twice differentiable'):
        chainer.grad([out], xs[:1], enable_double_backprop=True)


def test_shape_mismatch_is_refused():
    logits, mu, ln_var, y = mixture_inputs(4, 2, 3, np.float32)
    with pytest.raises(ValueError, match=r'y \(N, D\)'):
        loss.nll_fused(logits, mu, ln_var, y[:, :2])


def pack(logits, mu, ln_var):
    n = len(logits)
    return np.concatenate([logits, mu.reshape(n, -1), ln_var.reshape(n, -1)], axis=1)


@pytest.mark.parametrize('d', [1, 3])
def test_packed_matches_logspace(d):
    k = 4
    arrays = mixture_inputs(9, k, d, np.float64, seed=10 + d)
    ref_value, ref_grads = value_and_grads(loss.nll_logspace, arrays, gy=0.5)
    value, (g_h, g_y) = value_and_grads(
        lambda h, y: loss.nll_fused_packed(h, y, k), (pack(*arrays[:3]), arrays[3]),
        gy=0.5)
    np.testing.assert_allclose(value, ref_value, rtol=1e-12)
    np.testing.assert_allclose(g_h, pack(*ref_grads[:3]), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(g_y, ref_grads[3], rtol=1e-10, atol=1e-14)


def test_packed_check_backward_and_shape():
    k, d = 3, 2
    arrays = mixture_inputs(5, k, d, np.float64, seed=4)
    gradient_check.check_backward(
        lambda h, y: loss.nll_fused_packed(h, y, k),
        (pack(*arrays[:3]), arrays[3]), np.array(1.3), dtype=np.float64,
        atol=1e-7, rtol=1e-6)
    with pytest.raises(ValueError, match='K = 3'):
        loss.nll_fused_packed(pack(*arrays[:3]), arrays[3][:, :1], k)


def test_mdn_parameter_gradients_match_logspace():
    """All fused forms, wired into MDN as toy/mdn.py does, against autograd."""
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, (64, 1)).astype(np.float32)
    y = rng.uniform(0, 1, (64, 1)).astype(np.float32)
    forms = {
        'logspace': lambda m: loss.nll_logspace(*m.forward(x), y),
        'fused': lambda m: loss.nll_fused(*m.forward(x), y),
        'packed': lambda m: loss.nll_fused_packed(m.features(x), y, m.k),
        'model': lambda m: m.loss(x, y)}
    grads, values = {}, {}
    for name, nll in forms.items():
        model = MDN(k=5, rng=np.random.default_rng(0))
        model.cleargrads()
        out = nll(model)
        out.backward()
        values[name] = out.array
        grads[name] = {p: v.grad for p, v in model.namedparams()}
    for name in ('fused', 'packed', 'model'):
        np.testing.assert_allclose(values[name], values['logspace'], rtol=1e-6)
        for p, g in grads[name].items():
            np.testing.assert_allclose(g, grads['logspace'][p], rtol=1e-4,
                                       atol=1e-6, err_msg=name + p)


def cupy_or_skip():
    cupy = pytest.importorskip('cupy')
    if not chainer.backends.cuda.available:
        pytest.skip('CuPy is installed but CUDA is unavailable')
    return cupy


@pytest.mark.gpu
@pytest.mark.parametrize('dtype, tol', [(np.float32, 1e-5), (np.float64, 1e-12)])
@pytest.mark.parametrize('d', [1, 3])
def test_gpu_matches_cpu(d, dtype, tol):
    cupy = cupy_or_skip()
    arrays = mixture_inputs(1000, 5, d, dtype, seed=d)
    value, grads = value_and_grads(loss.nll_fused, arrays, gy=0.5)
    xs = [chainer.Variable(cupy.asarray(a)) for a in arrays]
    out = loss.nll_fused(*xs)
    out.grad = cupy.full((), 0.5, dtype=dtype)
    out.backward()
    assert isinstance(out.array, cupy.ndarray)
    np.testing.assert_allclose(cupy.asnumpy(out.array), value, rtol=tol, atol=tol)
    for x, g in zip(xs, grads):
        assert isinstance(x.grad, cupy.ndarray)
        np.testing.assert_allclose(cupy.asnumpy(x.grad), g, rtol=tol, atol=tol)


@pytest.mark.gpu
def test_gpu_matches_logspace_at_the_extremes():
    cupy = cupy_or_skip()
    n, k = 4, 3
    sigma = np.array([1e-3, 1.0, 10.0], dtype=np.float32)
    ln_var = np.broadcast_to(np.log(sigma ** 2)[None, :, None], (n, k, 1))
    mu = np.broadcast_to((60 * sigma)[None, :, None], (n, k, 1))
    arrays = [cupy.asarray(a, dtype=np.float32) for a in (
        np.zeros((n, k)), mu, ln_var, np.zeros((n, 1)))]
    results = {}
    for nll in (loss.nll_fused, loss.nll_logspace):
        xs = [chainer.Variable(a.copy()) for a in arrays]
        out = nll(*xs)
        out.backward()
        results[nll] = [out.array] + [x.grad for x in xs]
    for a, ref in zip(results[loss.nll_fused], results[loss.nll_logspace]):
        a, ref = cupy.asnumpy(a), cupy.asnumpy(ref)
        assert np.isfinite(a).all()
        np.testing.assert_allclose(a, ref, rtol=1e-4, atol=1e-6 * np.abs(ref).max())


@pytest.mark.gpu
def test_gpu_packed_matches_cpu():
    cupy = cupy_or_skip()
    k, d, hidden = 5, 2, 16
    rng = np.random.default_rng(7)
    h = rng.normal(0, 1, (300, hidden)).astype(np.float32)
    W = rng.normal(0, 0.3, (k * (1 + 2 * d), hidden)).astype(np.float32)
    b = rng.normal(0, 0.3, k * (1 + 2 * d)).astype(np.float32)
    y = rng.normal(0, 1, (300, d)).astype(np.float32)
    nll, arrays = (lambda h, y: loss.nll_fused_packed(h, y, k)), (h.dot(W.T) + b, y)
    value, grads = value_and_grads(nll, arrays)
    xs = [chainer.Variable(cupy.asarray(a)) for a in arrays]
    out = nll(*xs)
    out.backward()
    np.testing.assert_allclose(cupy.asnumpy(out.array), value, rtol=1e-5)
    for x, g in zip(xs, grads):
        assert isinstance(x.grad, cupy.ndarray)
        np.testing.assert_allclose(cupy.asnumpy(x.grad), g, rtol=1e-4,
                                   atol=1e-6)


FUSED_FORMS = {
    'fused': loss.nll_fused,
    'packed': lambda logits, mu, ln_var, y: loss.nll_fused_packed(
        pack(logits, mu, ln_var), y, logits.shape[1]),
    'logspace': loss.nll_logspace}


def grads_of(form, arrays):
    """Value and gradients of logits, mu, ln_var, y, unpacking the packed form's."""
    if form != 'packed':
        return value_and_grads(FUSED_FORMS[form], arrays)
    k = arrays[0].shape[1]
    value, (g_h, g_y) = value_and_grads(
        lambda h, y: loss.nll_fused_packed(h, y, k), (pack(*arrays[:3]), arrays[3]))
    n, d = arrays[3].shape
    return value, [g_h[:, :k], g_h[:, k:k + k * d].reshape(n, k, d),
                   g_h[:, k + k * d:].reshape(n, k, d), g_y]


@pytest.mark.parametrize('form', sorted(FUSED_FORMS))
def test_collapsed_component_has_finite_gradients(form):
    """Issue 8, defect 2: a component with var = e^-80, 100 away from y, has
    no responsibility; its ln_var gradient was 0 * (1 - inf) = NaN."""
    arrays = (np.zeros((1, 2), 'f4'), np.array([[[0], [100]]], 'f4'),
              np.array([[[0], [-80]]], 'f4'), np.zeros((1, 1), 'f4'))
    value, (g_logits, g_mu, g_ln_var, g_y) = grads_of(form, arrays)
    np.testing.assert_allclose(value, np.log(2) + 0.5 * LOG_2PI, rtol=1e-6)
    np.testing.assert_allclose(g_logits, [[-0.5, 0.5]], atol=1e-7)
    np.testing.assert_allclose(g_mu, 0, atol=1e-7)
    np.testing.assert_allclose(g_ln_var, [[[0.5], [0]]], atol=1e-7)
    np.testing.assert_allclose(g_y, 0, atol=1e-7)


def two_components(ln_var, offset, far=None):
    """N = 1, K = 2, D = 1 in float32: y = 0, both means `offset` from y (the
    second `far` from y if given), both log-variances `ln_var`."""
    far = offset if far is None else far
    return (np.zeros((1, 2), 'f4'), np.array([[[offset], [far]]], 'f4'),
            np.full((1, 2, 1), ln_var, 'f4'), np.zeros((1, 1), 'f4'))


@pytest.mark.parametrize('form', sorted(FUSED_FORMS))
@pytest.mark.parametrize('ln_var', [-89.0, -100.0, -180.0, -400.0, -3e38])
def test_float32_tiny_variance_at_the_mean(form, ln_var):
    """Issue 8, defect 3: ln_var <= -89 everywhere, y = mu; exp(-ln_var)
    overflowed and met (y - mu)^2 = 0: NaN. The NLL is -log N(0; 0, e^s) =
    (log 2 pi + s) / 2 (the -3e38 case: -1.5e38, still a float32)."""
    value, grads = grads_of(form, two_components(ln_var, 0.0))
    np.testing.assert_allclose(value, 0.5 * (LOG_2PI + ln_var), rtol=1e-6)
    np.testing.assert_allclose(grads[0], 0, atol=1e-7)
    np.testing.assert_allclose(grads[1], 0, atol=1e-7)
    np.testing.assert_allclose(grads[2], 0.25, rtol=1e-5)     # gamma / 2, z = 0
    np.testing.assert_allclose(grads[3], 0, atol=1e-7)


@pytest.mark.parametrize('form', sorted(FUSED_FORMS))
@pytest.mark.parametrize('ln_var, offset', [(-80.0, 1e6), (0.0, 1e20), (-3e38, 1.0),
                                            (0.0, 3e38)])
def test_float32_likelihood_below_the_float_range_is_inf(form, ln_var, offset):
    """(y - mu)^2 / 2 var beyond float32 on every component: the NLL is +inf
    (not NaN), and the row, having no finite responsibility, adds no gradient."""
    value, grads = grads_of(form, two_components(ln_var, offset, far=-offset))
    assert np.isposinf(value)
    for g in grads:
        np.testing.assert_array_equal(g, 0)


@pytest.mark.parametrize('form', sorted(FUSED_FORMS))
@pytest.mark.parametrize('ln_var, far', [(-89.0, 1e20), (-80.0, 1e6), (0.0, 3e38),
                                         (-3e38, 1e-30)])
def test_float32_one_component_out_of_range(form, ln_var, far):
    """The first component sits on y, the second is beyond the float range:
    the NLL is that of the first (with pi = 1/2), gradients as in the hand case."""
    value, (g_logits, g_mu, g_ln_var, g_y) = grads_of(
        form, two_components(ln_var, 0.0, far=far))
    np.testing.assert_allclose(value, np.log(2) + 0.5 * (LOG_2PI + ln_var), rtol=1e-6)
    np.testing.assert_allclose(g_logits, [[-0.5, 0.5]], atol=1e-7)
    np.testing.assert_array_equal(g_mu, 0)
    np.testing.assert_allclose(g_ln_var, [[[0.5], [0]]], atol=1e-7)
    np.testing.assert_array_equal(g_y, 0)


@pytest.mark.parametrize('form', sorted(FUSED_FORMS))
def test_float32_gradient_beyond_the_float_range_is_clipped(form):
    """var = e^-200 and z = 1: the NLL is finite but d/d mu = z / sigma = e^100
    is not a float32: it is clipped to the float range (divided by K, so that
    the y gradient, their sum, stays finite too), never inf or NaN."""
    arrays = (np.zeros((1, 2), 'f4'), np.array([[[np.exp(-100)], [-np.exp(-100)]]], 'f4'),
              np.full((1, 2, 1), -200, 'f4'), np.zeros((1, 1), 'f4'))
    value, grads = grads_of(form, arrays)
    z = np.float64(arrays[1][0, 0, 0]) * np.exp(100)                # 1 to float32
    np.testing.assert_allclose(value, 0.5 * (LOG_2PI - 200 + z ** 2), rtol=1e-6)
    big = np.finfo(np.float32).max / 2
    np.testing.assert_array_equal(grads[1][0, :, 0], [big, -big])
    for g in grads:
        assert np.isfinite(g).all()


# The optional variance floor (issue 10): ln_var_eff = logaddexp(ln_var, ln_var_min).

def floored_inputs(d, dtype=np.float64, seed=0):
    """ln_var around the floor (-1), where sigmoid(ln_var - floor) is far from 0 and 1."""
    logits, mu, ln_var, y = mixture_inputs(6, 3, d, dtype, seed=seed)
    ln_var = (ln_var * 2 - 1).astype(dtype)                    # in (-3, 1)
    return logits, mu, ln_var, y


@pytest.mark.parametrize('d', [1, 3])
def test_floor_check_backward_float64(d):
    arrays = floored_inputs(d, seed=d)
    for nll in (lambda *a: loss.nll_fused(*a, ln_var_min=-1.0),
                lambda *a: loss.nll_logspace(*a, ln_var_min=-1.0)):
        gradient_check.check_backward(nll, arrays, np.array(1.3), dtype=np.float64,
                                      atol=1e-7, rtol=1e-6)
    k = arrays[0].shape[1]
    gradient_check.check_backward(
        lambda h, y: loss.nll_fused_packed(h, y, k, ln_var_min=-1.0),
        (pack(*arrays[:3]), arrays[3]), np.array(0.7), dtype=np.float64,
        atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize('dtype, tol', [(np.float32, 2e-5), (np.float64, 1e-12)])
def test_floor_is_the_loss_of_the_floored_variance(dtype, tol):
    """The value is the unfloored loss at logaddexp(ln_var, floor); the ln_var
    gradient that one times sigmoid(ln_var - floor); the others unchanged."""
    logits, mu, ln_var, y = floored_inputs(2, dtype, seed=5)
    floored = np.logaddexp(ln_var, dtype(-1.0)).astype(dtype)
    ref_value, ref_grads = value_and_grads(loss.nll_logspace, (logits, mu, floored, y))
    ref_grads[2] = ref_grads[2] / (1 + np.exp(-(ln_var.astype(np.float64) + 1)))
    for nll in (loss.nll_fused, loss.nll_logspace):
        value, grads = value_and_grads(
            lambda *a: nll(*a, ln_var_min=-1.0), (logits, mu, ln_var, y))
        np.testing.assert_allclose(value, ref_value, rtol=tol, atol=tol)
        for g, ref in zip(grads, ref_grads):
            assert g.dtype == dtype
            np.testing.assert_allclose(g, ref, rtol=tol, atol=tol)


def test_floor_stops_a_collapse():
    """A component collapsed on y (ln_var = -300): unfloored the NLL is -150
    nats and falling; floored at -10 it is that of var ~ e^-10, and the pull
    on ln_var is ~0 (sigmoid(-290))."""
    arrays = (np.zeros((1, 1), 'f4'), np.zeros((1, 1, 1), 'f4'),
              np.full((1, 1, 1), -300, 'f4'), np.zeros((1, 1), 'f4'))
    for form in ('fused', 'packed', 'logspace'):
        value, grads = grads_of(form, arrays)
        np.testing.assert_allclose(value, 0.5 * (LOG_2PI - 300), rtol=1e-6)
    for nll in (loss.nll_fused, loss.nll_logspace):
        value, grads = value_and_grads(lambda *a: nll(*a, ln_var_min=-10.0), arrays)
        np.testing.assert_allclose(value, 0.5 * (LOG_2PI - 10), rtol=1e-6)
        assert 0 <= grads[2][0, 0, 0] < 1e-30


def test_mdn_with_a_floor():
    """MDN(ln_var_min=m): the mixture it reports has ln_var >= m, and its
    (fused, packed) loss is the log-space NLL of that mixture, gradients too."""
    rng = np.random.default_rng(4)
    x = rng.uniform(-1, 1, (32, 1)).astype(np.float32)
    y = rng.uniform(0, 1, (32, 1)).astype(np.float32)
    grads, values = {}, {}
    for name in ('model', 'logspace'):
        model = MDN(k=3, hidden=16, ln_var_min=0.5, rng=np.random.default_rng(0))
        model.cleargrads()
        out = (model.loss(x, y) if name == 'model'
               else loss.nll_logspace(*model.forward(x), y))
        out.backward()
        values[name] = out.array
        grads[name] = {p: v.grad for p, v in model.namedparams()}
    assert (model.mixture(x)[2] >= 0.5).all()
    np.testing.assert_allclose(values['model'], values['logspace'], rtol=1e-6)
    for p, g in grads['model'].items():
        np.testing.assert_allclose(g, grads['logspace'][p], rtol=1e-4, atol=1e-6,
                                   err_msg=p)


@pytest.mark.parametrize('bad', [np.nan, np.inf, -np.inf])
def test_non_finite_targets_are_refused_not_a_silent_nan(bad):
    """Issue 17, item 13: a NaN target gave a NaN loss without a word (and
    +-inf a finite one or NaN). Refused, naming y, in both fused forms."""
    logits, mu, ln_var, y = mixture_inputs(4, 3, 1, np.float32)
    y[2, 0] = bad
    with pytest.raises(ValueError, match=r'^nll_fused: y holds 1 NaN or inf value\(s\), '
                                         r'the first in row 2'):
        loss.nll_fused(logits, mu, ln_var, y)
    with pytest.raises(ValueError, match=r'^nll_fused_packed: y holds 1 NaN or inf'):
        loss.nll_fused_packed(pack(logits, mu, ln_var), y, 3)


def test_an_infinite_variance_is_refused_not_a_finite_lie():
    """ln_var = +inf on every component: the likelihood is 0, the NLL +inf;
    the clipped sum of ln_var made it 1.7e38."""
    logits, mu, ln_var, y = mixture_inputs(2, 2, 1, np.float32)
    ln_var[0] = np.inf
    with pytest.raises(ValueError, match=r'ln_var holds 2 NaN or inf value\(s\), the first '
                                         r'in row 0'):
        loss.nll_fused(logits, mu, ln_var, y)
