"""The MDN's negative log-likelihood, -log sum_k pi_k N(y; mu_k, diag(sigma_k^2)).

Shapes: logits (N, K), mu and ln_var (N, K, D), y (N, D). Each loss returns
the mean over the batch, in nats per point, as a scalar Variable.

nll_logspace and nll_density are composed of Chainer functions and are the
references; nll_fused (and nll_fused_packed, the same on the head's packed
output) is one FunctionNode with Bishop's closed-form gradients, for speed.

Every loss refuses, with a ValueError in one line, arrays of other shapes
(no broadcasting), N, K or D = 0 and, while chainer.config.type_check is on
(the default), NaN and inf in any input: a mixture with a NaN or infinite
parameter, or an infinite target, has no likelihood to report. The training
loops and `train_custom_loop.evaluate` check their data once and run their steps with
type_check off, so the steps pay for no such pass; a non-finite loss there
is reported by the loop (`train_custom_loop.Diverged`).
"""
import math
import numbers

import numpy as np

import chainer
import chainer.functions as F
from chainer import backend

LOG_2PI = float(np.log(2 * np.pi))
# Overflow to inf and log(0) = -inf are expected at the float range's edges.
_QUIET = np.errstate(over='ignore', divide='ignore', under='ignore')


def _float_max(dtype):
    return float(np.finfo(dtype).max)


def _z_max(dtype):
    """Bound on |z| = |y - mu| / sigma: z^2 / 2 overflows above sqrt(2 max),
    and the bound is ~max^0.8 so that |y - mu| w (w = exp(-ln_var / 4), each
    factor at most max) clipped to it still has z = inf where it should."""
    return _float_max(dtype) ** 0.8


def _ln_var_range(dtype):
    """ln_var is clipped to this range where it makes w = exp(-ln_var / 4):
    below, w would overflow (z is then inf for any y != mu, and 0 at y = mu,
    either way); above, w would be 0 (z is then 0 for any |y - mu| within
    the float range, and w > 0 keeps inf * w from being NaN beyond it)."""
    info = np.finfo(dtype)
    return -4 * (math.log(float(info.max)) - 0.25), -4 * math.log(float(info.tiny))


def check_finite(form, **arrays):
    """ValueError in one line, naming `form` and the array, unless every
    value of each array (NumPy, CuPy or Variable) is finite."""
    for name, a in arrays.items():
        a = chainer.as_array(a)
        bad = ~backend.get_array_module(a).isfinite(a)
        if bad.any():
            row = int(bad.reshape(len(a), -1).any(axis=1).argmax()) if a.ndim else 0
            raise ValueError(
                '{}: {} holds {} NaN or inf value(s), the first in row {}: a '
                'mixture\'s parameters and targets must be finite (a diverged '
                'model, or data to clean first)'.format(form, name, int(bad.sum()), row))


def check_ln_var_min(ln_var_min):
    """ln_var_min as a float (None: no floor), or ValueError: a NaN or
    infinite floor would make every loss NaN or infinite."""
    if ln_var_min is None:
        return None
    if (isinstance(ln_var_min, bool) or not isinstance(ln_var_min, numbers.Real)
            or not math.isfinite(ln_var_min)):
        raise ValueError('ln_var_min must be a finite number (the floor of the '
                         'log-variances) or None (no floor), not {!r}'.format(ln_var_min))
    return float(ln_var_min)


MIXTURE_LAYOUT = 'logits (N, K), mu and ln_var (N, K, D), y (N, D)'


def _mixture_shapes(n, k, d):
    return (n, k), (n, k, d), (n, k, d), (n, d)


def check_mixture(form, layout, shapes_of, **arrays):
    """(N, K, D) of a mixture's arrays (NumPy, CuPy or Variables), the second
    of them mu (N, K, D), or ValueError in one line naming `form`: each must
    have its shape in shapes_of(N, K, D) (`layout` in words), with N, K and
    D >= 1 (a mean over N rows of a sum over K components), and, under
    chainer.config.type_check, only finite values (`check_finite`)."""
    shapes = tuple(a.shape for a in arrays.values())
    if not (len(shapes[1]) == 3 and min(shapes[1]) >= 1
            and shapes == tuple(shapes_of(*shapes[1]))):
        raise ValueError('{} needs {}, with N, K and D >= 1; got {}'.format(
            form, layout, ', '.join('{} {}'.format(name, shape)
                                    for name, shape in zip(arrays, shapes))))
    if chainer.config.type_check:
        check_finite(form, **arrays)
    return shapes[1]


class _FiniteGrad(chainer.function_node.FunctionNode):
    """Identity whose gradient is clipped to [-bound, bound] (to the float
    range: an inf - inf further down the graph would make it NaN)."""

    def __init__(self, bound):
        self.bound = bound

    def forward(self, inputs):
        return inputs

    def backward(self, indexes, grad_outputs):
        return F.clip(grad_outputs[0], -self.bound, self.bound),


def _bounded(x, bound):
    """x, its gradient clipped to [-bound, bound] (bound None: x itself)."""
    return x if bound is None else _FiniteGrad(bound).apply((x,))[0]


def _whiten(diff, ln_var, grad_bound=None):
    """z / sqrt 2 = diff / (sigma sqrt 2), sigma = exp(ln_var / 2), for diff
    within the float range: formed as diff w w, w = exp(-ln_var / 4) / 2^(1/4),
    ln_var clipped where w would overflow or be 0 and each product clipped to
    z_max (so no 0 * inf); its square, z^2 / 2, is inf where that overflows.

    grad_bound (None: off) clips the gradient into each use of each factor
    to it. Off, the gradients are finite where that of z / sqrt 2 is
    2 (z / sqrt 2) gamma (`log_gaussian`); `nll_full_covariance`'s z_j has a
    gradient from the rows below it too, whatever its size (at z_j = 0, w = 4
    and a gradient near the float maximum, w times it would be inf, and inf
    times diff = 0 NaN).
    """
    b = grad_bound
    z_max = _z_max(diff.dtype)
    w = F.exp(_bounded(-0.25 * F.clip(ln_var, *_ln_var_range(diff.dtype)), b)) * 2 ** -0.25
    inner = F.clip(_bounded(diff, b) * _bounded(w, b), -z_max, z_max)
    return F.clip(_bounded(inner, b) * _bounded(w, b), -z_max, z_max)


def log_gaussian(mu, ln_var, y):
    """log N(y; mu_k, diag(exp(ln_var_k))) summed over D: (N, K).

    Safe over the whole float range, with finite gradients: z / sqrt 2 is
    formed by `_whiten` from y - mu clipped to the float range, and the sum
    of ln_var over D is clipped to the float range. The value is -inf where
    z^2 / 2 overflows. See `nll_fused` for the gradients beyond the float range.
    """
    n, k, d = mu.shape
    big = _float_max(mu.dtype)
    ln_var = _bounded(ln_var, big)
    y = F.broadcast_to(F.expand_dims(y, 1), mu.shape)
    diff = _bounded(F.clip(y - mu, -big, big), big / k)
    z = _whiten(diff, ln_var)
    sum_ln_var = F.clip(F.sum(ln_var, axis=2), -big, big)
    return -F.sum(F.square(z), axis=2) - 0.5 * (sum_ln_var + d * LOG_2PI)


def floor_ln_var(ln_var, ln_var_min):
    """The smooth variance floor: logaddexp(ln_var, ln_var_min) as Chainer
    functions, ln_var_min + softplus(ln_var - ln_var_min). >= ln_var_min,
    ~ln_var well above it, with gradient sigmoid(ln_var - ln_var_min)."""
    return F.softplus(ln_var - ln_var_min) + ln_var_min


def _log_pi(logits):
    """log softmax(logits) (N, K), exact to its own size.

    F.log_softmax subtracts logsumexp(logits), rounded to the logits'
    magnitude (+-3e-5 at 512 in float32); shifted by their row maximum
    first (exactly), the logits are <= 0 and log pi is exact to its own size.
    """
    xp = backend.get_array_module(logits)
    logits = logits - xp.broadcast_to(
        chainer.as_array(logits).max(axis=1, keepdims=True), logits.shape)
    return F.log_softmax(logits, axis=1)


def _mean_nll(log_joint):
    """-mean_n log sum_k exp(log_joint) of log_joint (N, K), as Chainer functions.

    A row of -inf (its likelihood underflows the float range) gives +inf and
    no gradient (logsumexp of such a row is NaN, forward and backward)."""
    xp = backend.get_array_module(log_joint)
    alive = xp.isfinite(log_joint.array).any(axis=1)
    all_alive = bool(alive.all())
    if not all_alive:
        # Such rows are given zeros (whose gradient is then dropped) and
        # -inf put back after.
        log_joint = F.where(xp.broadcast_to(alive[:, None], log_joint.shape),
                            log_joint, xp.zeros_like(log_joint.array))
    # logsumexp as m + log sum exp(x - m), m a constant: its gradient is then
    # exp(x - m) / sum, whose terms add up to 1. F.logsumexp's, exp(x - lse),
    # is off by exp(the rounding of lse), which at |lse| >> 1 is no longer ~1.
    m = log_joint.array.max(axis=1, keepdims=True)
    log_p = F.log(F.sum(F.exp(log_joint - xp.broadcast_to(m, log_joint.shape)),
                        axis=1)) + m[:, 0]
    if not all_alive:
        log_p = F.where(alive, log_p, xp.full(alive.shape, -np.inf, log_p.dtype))
    # The mean as a sum of log_p / N: the sum of N values near the float
    # range's edge would overflow.
    return -F.sum(log_p * (1.0 / len(alive)))


@_QUIET
def nll_logspace(logits, mu, ln_var, y, ln_var_min=None):
    """Log-space NLL: logsumexp over k of log_softmax(logits) + log N.

    Finite wherever the inputs are, also where every component's density
    underflows (the density form then returns inf), down to where the
    likelihood underflows the float range itself (|z| > 1.8e19 on every
    component in float32): that row's NLL is +inf and it adds no gradient.
    Composed of Chainer functions (and twice differentiable), the reference
    for `nll_fused`. ln_var_min: see `nll_fused`; inputs checked as there.
    """
    check_mixture('nll_logspace', MIXTURE_LAYOUT, _mixture_shapes,
                  logits=logits, mu=mu, ln_var=ln_var, y=y)
    ln_var_min = check_ln_var_min(ln_var_min)
    if ln_var_min is not None:
        ln_var = floor_ln_var(ln_var, ln_var_min)
    return _mean_nll(_log_pi(logits) + log_gaussian(mu, ln_var, y))


@_QUIET
def nll_density(logits, mu, ln_var, y):
    """The post's form: -log sum_k softmax(logits)_k * prod_d N(y_d; mu, var).

    This is what the published run trained (summed there, averaged here):
    the mixture is summed in density space, so the NLL is +inf once every
    component's weighted density pi_k N_k underflows (below e^-104 in
    float32, e^-745 in float64), where the log-space forms stay finite.
    Each pi_k N_k is formed as exp(log pi_k + log N_k) (`log_gaussian`), not
    as the published product of 1 / sigma and exp(-z^2 / 2), which is
    0 * inf = NaN once sigma^2 underflows (ln_var < -104 in float32) and
    pi_k * N_k = 0 * inf once pi_k underflows where N_k overflows. Where a
    weighted density overflows instead (a tiny sigma near its mean, more
    than 88 nats above 1 in float32), the density form cannot hold it: with
    chainer.config.type_check on this raises ValueError (use `nll_logspace`);
    off (the training loops), the NLL is -inf or NaN, which the loop
    reports (`train_custom_loop.Diverged`). Inputs checked as in `nll_fused`.
    """
    check_mixture('nll_density', MIXTURE_LAYOUT, _mixture_shapes,
                  logits=logits, mu=mu, ln_var=ln_var, y=y)
    density = F.exp(_log_pi(logits) + log_gaussian(mu, ln_var, y))
    log_p = F.log(F.sum(density, axis=1))
    if chainer.config.type_check:
        over = log_p.array == np.inf
        if over.any():
            raise ValueError(
                'nll_density: the mixture density of row {} overflows the float '
                'range (a tiny sigma near its mean), which the density form cannot '
                'hold: use nll_logspace or nll_fused'.format(int(over.argmax())))
    return -F.sum(log_p * (1.0 / len(log_p)))


@_QUIET
def _nll_and_grads(logits, mu, ln_var, y, g_logits, g_mu, g_ln_var, need_grad,
                   ln_var_min=None, k=None):
    """Mean NLL (0-dim array); fills g_* (shapes of the inputs) with its gradients.

    Leading axes before (N, K, D) are independent mixtures' batches: logits
    (..., N, K), y (..., N, D) give one mean NLL each, (...). k (broadcast
    against mu; default K) is each one's number of live components: padding
    components enter as logits of -inf, with pi = 0, no share of the
    likelihood and a gradient of exactly 0.

    The g_* may be strided views (of a packed head output); they are written
    once, at the end. The (N, K, D) terms are worked on in three contiguous
    temporaries: on the strided views, whose innermost runs are K * D long,
    NumPy's elementwise loops cost several times more per element.

    Safe over the whole float range (see `nll_fused`): no intermediate is
    inf where a 0 could meet it.
    """
    xp = backend.get_array_module(logits)
    n, k_max, d = mu.shape[-3:]
    k = k_max if k is None else k
    big = _float_max(mu.dtype)
    if ln_var_min is not None:
        ln_var_raw, ln_var = ln_var, xp.logaddexp(ln_var, ln_var_min)
    log_pi = logits - logits.max(axis=-1, keepdims=True)
    log_pi -= xp.log(xp.exp(log_pi).sum(axis=-1, keepdims=True))

    # z / sqrt 2 = (mu - y) w w, w = exp(-ln_var / 4) / 2^(1/4): no factor
    # overflows before the last product, so no 0 * inf (exp(-ln_var)
    # overflows from ln_var < -88.7 in float32, and y = mu is no rare case
    # there: it is where a component collapses). z / sqrt 2, not z: z^2 / 2
    # is what must stay finite wherever it is. z is clipped where z^2 / 2
    # surely overflows; that, and the clipping of ln_var, changes no finite
    # loss. y is broadcast by the ufunc, never copied to K rows.
    w = xp.clip(ln_var, *_ln_var_range(mu.dtype))
    w *= -0.25
    xp.exp(w, out=w)
    w *= 2 ** -0.25
    z = mu - y[..., None, :]
    z *= w
    z *= w
    z_max = _z_max(mu.dtype)
    xp.clip(z, -z_max, z_max, out=z)
    h = xp.square(z)                                  # z^2 / 2

    # log pi_k + log N(y; mu_k, var_k): (N, K), -inf where z^2 / 2
    # overflows. The sum of ln_var over D is clipped to the float range (at
    # -inf it would meet +inf from z^2 / 2; at +inf its half would be lost).
    half_ln_var = ln_var.sum(axis=-1)
    xp.clip(half_ln_var, -big, big, out=half_ln_var)
    half_ln_var *= 0.5
    log_joint = log_pi - h.sum(axis=-1)
    log_joint -= half_ln_var
    log_joint -= 0.5 * d * LOG_2PI
    # Shifting by the row maximum keeps the largest term at exp(0) = 1, so
    # the sum stays finite where every component's density underflows. A
    # row of -inf (the likelihood itself underflows) keeps m finite, so
    # gamma = exp(-inf) = 0 and norm = 0: log_p = -inf, the NLL +inf.
    m = log_joint.max(axis=-1, keepdims=True)
    xp.maximum(m, -big, out=m)
    gamma = xp.exp(log_joint - m)
    norm = gamma.sum(axis=-1, keepdims=True)
    log_p = xp.log(norm)
    log_p += m
    # Mean as the sum of log_p / N: N values near the float range's edge
    # would overflow the sum.
    log_p *= -1.0 / n
    nll = xp.asarray(log_p.sum(axis=(-2, -1)), dtype=mu.dtype)
    if need_grad:
        # gamma / N: the responsibilities, with the batch mean folded in;
        # 0 on a row of -inf (norm = 0), whose logits get no gradient either.
        alive = xp.minimum(norm, 1)
        xp.maximum(norm, 1, out=norm)
        norm *= n
        gamma /= norm
        xp.exp(log_pi, out=g_logits)
        g_logits *= alive * (1.0 / n)
        g_logits -= gamma
        # d/d ln_var = gamma (1 - z^2) / 2 = gamma / 2 - gamma z^2 / 2 and
        # d/d mu = gamma z / sigma = 2 (gamma z / sqrt 2) w w. gamma z / sqrt 2
        # is finite (z is clipped) and is 0 where gamma is, even where z^2 / 2
        # is inf; gamma z^2 / 2 is finite, as z^2 / 2 is wherever gamma > 0.
        # d/d mu is clipped to the float range / K where it is beyond: d/d y,
        # its sum over K, then stays finite too.
        gamma = gamma[..., None]
        t = h
        xp.multiply(z, gamma, out=t)
        z *= t
        xp.subtract(0.5 * gamma, z, out=g_ln_var)
        if ln_var_min is not None:
            # d ln_var_eff / d ln_var = sigmoid(ln_var - ln_var_min)
            # = exp(ln_var - ln_var_eff), in (0, 1].
            xp.subtract(ln_var_raw, ln_var, out=z)
            xp.exp(z, out=z)
            g_ln_var *= z
        t *= w
        t *= w
        bound = xp.asarray(0.5 * big / k, dtype=t.dtype)
        xp.clip(t, -bound, bound, out=t)
        xp.add(t, t, out=g_mu)
    return nll


class MixtureNLL(chainer.function_node.FunctionNode):
    """Mean MDN NLL in log space, with Bishop's (1994) closed-form gradients.

    Inputs logits (N, K), mu and ln_var (N, K, D), y (N, D), one dtype;
    output: the mean over N, a 0-dim array. With the posterior
    responsibilities gamma_nk = pi_k N_k(y_n) / sum_j pi_j N_j(y_n),

        d/d logit_k   = (pi_k - gamma_k) / N
        d/d mu_kd     = gamma_k (mu_kd - y_d) / var_kd / N
        d/d ln_var_kd = gamma_k (1 - (y_d - mu_kd)^2 / var_kd) / (2 N)
        d/d y_d       = -sum_k d/d mu_kd

    The gradients are formed in forward, where the intermediates already
    lie in cache, in the two (N, K, D) buffers that forward needs anyway.
    Backward only scales copies of them by the output's gradient, so it is
    not differentiable again: double backprop raises NotImplementedError
    (use `nll_logspace` for that).
    """

    def __init__(self, need_grad=True, ln_var_min=None):
        self.need_grad, self.ln_var_min = need_grad, ln_var_min

    def forward(self, inputs):
        logits, mu, ln_var, y = inputs
        check_mixture('nll_fused', MIXTURE_LAYOUT, _mixture_shapes,
                      logits=logits, mu=mu, ln_var=ln_var, y=y)
        xp = backend.get_array_module(*inputs)
        self.g_logits = xp.empty_like(logits)
        self.g_mu = xp.empty_like(mu)
        self.g_ln_var = xp.empty_like(ln_var)
        nll = _nll_and_grads(logits, mu, ln_var, y, self.g_logits, self.g_mu,
                             self.g_ln_var, self.need_grad, self.ln_var_min)
        if not self.need_grad:
            del self.g_logits, self.g_mu, self.g_ln_var
        return nll,

    def backward(self, indexes, grad_outputs):
        _refuse_double_backprop()
        gy = grad_outputs[0].array
        grads = {0: lambda: self.g_logits * gy,
                 1: lambda: self.g_mu * gy,
                 2: lambda: self.g_ln_var * gy,
                 3: lambda: self.g_mu.sum(axis=1) * -gy}
        return tuple(chainer.Variable(grads[i](), requires_grad=False)
                     for i in indexes)


class PackedMixtureNLL(chainer.function_node.FunctionNode):
    """MixtureNLL on the head's raw output h (N, K (1 + 2 D)) = [logits | mu | ln_var].

    Saves the split and reshape nodes (and their backward concatenation):
    the gradient is written straight into one (N, K (1 + 2 D)) array.
    """

    def __init__(self, k, need_grad=True, ln_var_min=None):
        self.k, self.need_grad, self.ln_var_min = k, need_grad, ln_var_min

    def forward(self, inputs):
        h, y = inputs
        k = self.k
        n, d = y.shape if y.ndim == 2 else (len(y), 0)
        if n < 1 or d < 1 or h.shape != (n, k * (1 + 2 * d)):
            raise ValueError(
                'nll_fused_packed needs y (N, D) and h (N, K (1 + 2 D)) = ({0}, {1}) '
                'for K = {2}, with N and D >= 1; got y {3}, h {4}'.format(
                    n, k * (1 + 2 * d), k, y.shape, h.shape))
        if chainer.config.type_check:
            check_finite('nll_fused_packed', h=h, y=y)
        self.d = d
        xp = backend.get_array_module(*inputs)
        self.g_h = xp.empty_like(h)
        nll = _nll_and_grads(*_unpack(h, k, d), y, *_unpack(self.g_h, k, d),
                             self.need_grad, self.ln_var_min)
        if not self.need_grad:
            del self.g_h
        return nll,

    def backward(self, indexes, grad_outputs):
        _refuse_double_backprop()
        gy = grad_outputs[0].array
        grads = {0: lambda: self.g_h * gy,
                 1: lambda: _unpack(self.g_h, self.k, self.d)[1].sum(axis=1) * -gy}
        return tuple(chainer.Variable(grads[i](), requires_grad=False)
                     for i in indexes)


def _unpack(h, k, d):
    """Views of h (..., N, K (1 + 2 D)): logits (..., N, K), mu and ln_var
    (..., N, K, D); columns beyond K (1 + 2 D) are left out."""
    shape = h.shape[:-1] + (k, d)
    return (h[..., :k], h[..., k:k + k * d].reshape(shape),
            h[..., k + k * d:k * (1 + 2 * d)].reshape(shape))


def _refuse_double_backprop():
    # Backward runs with enable_backprop on only for double backprop
    # (Variable.backward(enable_double_backprop=True), chainer.grad).
    if chainer.config.enable_backprop:
        raise NotImplementedError(
            'nll_fused is not twice differentiable; use nll_logspace for '
            'double backprop')


def _need_grad(inputs):
    return chainer.config.enable_backprop and any(
        isinstance(v, chainer.Variable) and v.requires_grad for v in inputs)


def nll_fused(logits, mu, ln_var, y, ln_var_min=None):
    """`nll_logspace` as one FunctionNode with closed-form gradients.

    Same shapes, value and first derivatives (also with respect to y, when y
    is a Variable that requires grad); not twice differentiable. NumPy and
    CuPy share the code path.

    At the edges of the float range (both forms alike, for any finite input):
    the NLL is never NaN; it is finite wherever its true value is a float
    (|y - mu| below the float maximum; the sum of ln_var over D is clipped
    to the float range, which only matters below -3.4e38 in float32), and
    +inf where a row's likelihood underflows the float range (z^2 / 2 > 3.4e38
    on every component in float32, e.g. |y - mu| = 1e20 at sigma = 1). Such
    a row has no responsibilities and adds no gradient. Gradients are always
    finite: where their true value is beyond the float range they are
    clipped to it (d/d mu to +-max / K, so that d/d y, their sum, stays
    finite; e.g. sigma = e^-100 with z = 1 has d/d mu = e^100).

    ln_var_min (a float, default None: off) floors the variance smoothly: the
    loss sees logaddexp(ln_var, ln_var_min) = ln_var_min + softplus(ln_var -
    ln_var_min) instead of ln_var (>= ln_var_min, ~ln_var from a few nats
    above it), so a component cannot collapse onto one point, for deeper or
    less stable nets. The gradient with respect to the raw ln_var carries the
    factor sigmoid(ln_var - ln_var_min).
    """
    inputs = (logits, mu, ln_var, y)
    return MixtureNLL(_need_grad(inputs), check_ln_var_min(ln_var_min)).apply(inputs)[0]


def nll_fused_packed(h, y, k, ln_var_min=None):
    """`nll_fused` on the head output h (N, K (1 + 2 D)), laid out as
    [logits (K) | mu (K x D) | ln_var (K x D)] per row, y (N, D)."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError('nll_fused_packed needs K, the number of components, a '
                         'positive int; got {!r}'.format(k))
    return PackedMixtureNLL(int(k), _need_grad((h, y)),
                            check_ln_var_min(ln_var_min)).apply((h, y))[0]


class MembersMixtureNLL(chainer.function_node.FunctionNode):
    """PackedMixtureNLL of R independent mixtures in one node: h (R, N, C)
    and y (R, N, D) -> each member's mean NLL, (R,).

    Member r's first K_r (1 + 2 D) columns of h are packed as its own head
    output; the rest is padding, never read, whose gradient is exactly 0.
    One node for all members, not one each: in a small network's step,
    Chainer's bookkeeping per node costs more than the arithmetic.
    """

    def __init__(self, ks, need_grad=True, ln_var_min=None):
        self.ks, self.need_grad, self.ln_var_min = ks, need_grad, ln_var_min

    def forward(self, inputs):
        h, y = inputs
        xp = backend.get_array_module(*inputs)
        r, n, d = y.shape if y.ndim == 3 else (len(y), 0, 0)
        k = max(self.ks, default=0)
        if r != len(self.ks) or n < 1 or d < 1 or h.shape[:2] != (r, n) or \
                h.ndim != 3 or h.shape[2] < k * (1 + 2 * d):
            raise ValueError(
                'nll_fused_members needs y (R, N, D) and h (R, N, C) with R = {} '
                'members, N and D >= 1 and C >= K_max (1 + 2 D) = {}; got y {}, '
                'h {}'.format(len(self.ks), k * (1 + 2 * d), y.shape, h.shape))
        if chainer.config.type_check:
            check_finite('nll_fused_members', h=h, y=y)
        self.g_h = xp.zeros_like(h)
        if min(self.ks) == k:
            # Members of one K: the columns are views, nothing is padded.
            self.g_mu = _unpack(self.g_h, k, d)[1]
            nll = _nll_and_grads(*_unpack(h, k, d), y, *_unpack(self.g_h, k, d),
                                 self.need_grad, self.ln_var_min)
        else:
            logits = xp.full((r, n, k), -xp.inf, dtype=h.dtype)
            mu, ln_var = xp.zeros((2, r, n, k, d), dtype=h.dtype)
            grads = [xp.zeros_like(a) for a in (logits, mu, ln_var)]
            groups = [(k_r, xp.asarray([i for i in range(r) if self.ks[i] == k_r]))
                      for k_r in sorted(set(self.ks))]
            for k_r, rows in groups:
                for padded, own in zip((logits, mu, ln_var), _unpack(h[rows], k_r, d)):
                    padded[rows, :, :k_r] = own
            live = xp.asarray(self.ks, dtype=h.dtype)[:, None, None, None]
            nll = _nll_and_grads(logits, mu, ln_var, y, *grads, self.need_grad,
                                 self.ln_var_min, k=live)
            for k_r, rows in groups if self.need_grad else ():
                own = [g[rows, :, :k_r] for g in grads]
                self.g_h[rows, :, :k_r * (1 + 2 * d)] = xp.concatenate(
                    [own[0]] + [g.reshape(len(rows), n, k_r * d) for g in own[1:]],
                    axis=2)
            self.g_mu = grads[1]
        if not self.need_grad:
            del self.g_h, self.g_mu
        return nll,

    def backward(self, indexes, grad_outputs):
        _refuse_double_backprop()
        gy = grad_outputs[0].array[:, None, None]
        grads = {0: lambda: self.g_h * gy,
                 1: lambda: self.g_mu.sum(axis=2) * -gy}
        return tuple(chainer.Variable(grads[i](), requires_grad=False)
                     for i in indexes)


def nll_fused_members(h, y, ks, ln_var_min=None):
    """`nll_fused_packed` of R members at once: h (R, N, C), y (R, N, D),
    member r with ks[r] components in its first ks[r] (1 + 2 D) columns of h.
    Returns each member's mean NLL, a Variable (R,); member r's value and
    gradients are those of nll_fused_packed on its own rows and columns."""
    ks = tuple(ks)
    if not ks or any(isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1
                     for k in ks):
        raise ValueError('nll_fused_members needs one K per member, positive ints; '
                         'got {!r}'.format(ks))
    return MembersMixtureNLL(tuple(int(k) for k in ks), _need_grad((h, y)),
                             check_ln_var_min(ln_var_min)).apply((h, y))[0]


@_QUIET
def nll_full_covariance(logits, mu, log_diag, lower, y):
    """Mean NLL of a full-covariance mixture, -log sum_k pi_k N(y; mu_k, L_k L_k^T).

    logits (N, K), mu (N, K, D), y (N, D). Each component's covariance is
    given by its Cholesky factor L_k, lower triangular with a positive
    diagonal: log_diag (N, K, D) holds log L_k,dd and lower (N, K, D(D-1)/2)
    the entries below the diagonal in row-major order, (1,0), (2,0), (2,1),
    ... (numpy.tril_indices(D, -1)). Then log |Sigma_k| = 2 sum_d log L_k,dd
    and the Mahalanobis term is |z|^2 with L_k z = y - mu_k, solved by
    forward substitution, one row of L at a time (no matrix inverse, and
    differentiable by Chainer's autograd, also twice). Log space throughout.

    Safe over the float range as `nll_logspace` (with lower = 0 it is that
    loss at ln_var = 2 log_diag): z_d = e_d / L_dd, e_d = (y - mu)_d -
    sum_j L_dj z_j, is formed by `_whiten` (no 0 * inf where exp(-log L_dd)
    overflows, below -88.7 in float32), e_d and each L_dj z_j are clipped to
    the float range, and a component whose z^2 / 2 overflows (from log L_dd
    = -45 at |e_d| ~ 1 in float32) has density 0: a row of such components
    gives +inf and no gradient, not NaN. Gradients are always finite; the
    value is exact where y - mu, each L_dj z_j and each partial sum of e_d
    lie within the float range. Inputs are checked as in `nll_fused` (the
    arrays' shapes, and NaN or inf under type_check).
    """
    n, k, d = check_mixture(
        'nll_full_covariance', 'logits (N, K), mu and log_diag (N, K, D), '
        'lower (N, K, D(D-1)/2), y (N, D)',
        lambda n, k, d: ((n, k), (n, k, d), (n, k, d), (n, k, d * (d - 1) // 2), (n, d)),
        logits=logits, mu=mu, log_diag=log_diag, lower=lower, y=y)
    big = _float_max(mu.dtype)

    # Gradients beyond the float range are clipped to it at each use of a
    # value, so that no inf - inf (or 0 * inf) arises where they add up:
    # d/d y sums K of d/d (y - mu), d/d z_j the D - 1 rows below j and its
    # own square's (d/d log_diag adds -gamma / N to its other use's).
    r = _bounded(F.clip(F.broadcast_to(F.expand_dims(y, 1), mu.shape) - mu, -big, big),
                 big / k)
    ln_var = 2 * _bounded(log_diag, big / 2)
    lower = _bounded(lower, big)
    z, entry = [], 0                                      # z_d / sqrt 2
    for i in range(d):
        e = r[:, :, i]
        for j in range(i):
            z_j = math.sqrt(2) * _bounded(z[j], big / (2 * d))
            e = F.clip(e - F.clip(lower[:, :, entry] * z_j, -big, big), -big, big)
            entry += 1
        z.append(_whiten(e, ln_var[:, :, i], grad_bound=big / 2))
    sum_log_diag = F.clip(F.sum(log_diag, axis=2), -big, big)
    log_n = -sum(F.square(z_i) for z_i in z) - sum_log_diag - 0.5 * d * LOG_2PI
    return _mean_nll(_log_pi(logits) + log_n)
