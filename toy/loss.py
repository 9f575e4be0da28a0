"""The MDN's negative log-likelihood, -log sum_k pi_k N(y; mu_k, diag(sigma_k^2)).

Shapes: logits (N, K), mu and ln_var (N, K, D), y (N, D). Each loss returns
the mean over the batch, in nats per point, as a scalar Variable.

nll_logspace and nll_density are composed of Chainer functions and are the
references; nll_fused (and nll_fused_packed, the same on the head's packed
output) is one FunctionNode with Bishop's closed-form gradients, for speed.
"""
import numpy as np

import chainer
import chainer.functions as F
from chainer import backend

LOG_2PI = float(np.log(2 * np.pi))


def log_gaussian(mu, ln_var, y):
    """log N(y; mu_k, diag(exp(ln_var_k))) summed over D: (N, K)."""
    y = F.broadcast_to(F.expand_dims(y, 1), mu.shape)
    return -0.5 * F.sum(LOG_2PI + ln_var + F.square(y - mu) * F.exp(-ln_var),
                        axis=2)


def nll_logspace(logits, mu, ln_var, y):
    """Log-space NLL: logsumexp over k of log_softmax(logits) + log N.

    Finite wherever the inputs are, also where every component's density
    underflows (the density form then returns inf).
    """
    log_pi = F.log_softmax(logits, axis=1)
    return -F.mean(F.logsumexp(log_pi + log_gaussian(mu, ln_var, y), axis=1))


def nll_density(logits, mu, ln_var, y):
    """The post's form: -log sum_k softmax(logits)_k * prod_d N(y_d; mu, var).

    This is what the published run trained (summed there, averaged here);
    it overflows to inf once every component's density underflows.
    """
    pi = F.softmax(logits, axis=1)
    var = F.exp(ln_var)
    y = F.broadcast_to(F.expand_dims(y, 1), mu.shape)
    density = F.prod(
        (1 / (np.sqrt(2 * np.pi) * F.sqrt(var)))
        * F.exp(-0.5 * F.square(y - mu) / var), axis=2)
    return -F.mean(F.log(F.sum(pi * density, axis=1)))


def _nll_and_grads(logits, mu, ln_var, y, g_logits, g_mu, g_ln_var, need_grad):
    """Mean NLL (0-dim array); fills g_* (shapes of the inputs) with its gradients.

    g_mu and g_ln_var double as the work buffers of the (N, K, D) terms, so
    no other array of that size is allocated; they may be strided views
    (of a packed head output). With need_grad False they only hold scratch.
    """
    xp = backend.get_array_module(logits)
    n, k, d = mu.shape
    log_pi = logits - logits.max(axis=1, keepdims=True)
    log_pi -= xp.log(xp.exp(log_pi).sum(axis=1, keepdims=True))

    # r = (mu - y) / var in g_mu, z2 = (y - mu)^2 / var in g_ln_var. y is
    # broadcast by the ufunc as a strided view, never copied to K rows.
    r, z2 = g_mu, g_ln_var
    xp.negative(ln_var, out=r)
    xp.exp(r, out=r)
    xp.subtract(mu, y[:, None, :], out=z2)
    r *= z2
    z2 *= r

    # log pi_k + log N(y; mu_k, var_k): (N, K). Summing ln_var and z2 over
    # D separately avoids a third (N, K, D) temporary.
    log_joint = z2.sum(axis=2)
    log_joint += ln_var.sum(axis=2)
    log_joint *= -0.5
    log_joint += log_pi
    log_joint -= 0.5 * d * LOG_2PI
    # Shifting by the row maximum keeps the largest term at exp(0) = 1, so
    # the sum stays finite where every component's density underflows.
    m = log_joint.max(axis=1, keepdims=True)
    gamma = xp.exp(log_joint - m)
    norm = gamma.sum(axis=1, keepdims=True)
    log_p = xp.log(norm)
    log_p += m
    nll = xp.asarray(-log_p.mean(), dtype=mu.dtype)
    if need_grad:
        # gamma / N: the responsibilities, with the batch mean folded in.
        gamma /= norm
        gamma *= 1.0 / n
        xp.exp(log_pi, out=g_logits)
        g_logits *= 1.0 / n
        g_logits -= gamma
        gamma = gamma[:, :, None]
        r *= gamma
        z2 -= 1
        gamma *= -0.5
        z2 *= gamma
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

    def __init__(self, need_grad=True):
        self.need_grad = need_grad

    def forward(self, inputs):
        logits, mu, ln_var, y = inputs
        n, k, d = mu.shape
        if (logits.shape != (n, k) or ln_var.shape != mu.shape
                or y.shape != (n, d)):
            raise ValueError(
                'nll_fused needs logits (N, K), mu and ln_var (N, K, D), '
                'y (N, D); got {}, {}, {}, {}'.format(
                    logits.shape, mu.shape, ln_var.shape, y.shape))
        xp = backend.get_array_module(*inputs)
        self.g_logits = xp.empty_like(logits)
        self.g_mu = xp.empty_like(mu)
        self.g_ln_var = xp.empty_like(ln_var)
        nll = _nll_and_grads(logits, mu, ln_var, y, self.g_logits, self.g_mu,
                             self.g_ln_var, self.need_grad)
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

    def __init__(self, k, need_grad=True):
        self.k, self.need_grad = k, need_grad

    def forward(self, inputs):
        h, y = inputs
        n, d = y.shape
        k, self.d = self.k, d
        if h.shape != (n, k * (1 + 2 * d)):
            raise ValueError(
                'nll_fused_packed needs h (N, K (1 + 2 D)) = ({0}, {1}) for '
                'K = {2} and y {3}; got h {4}'.format(
                    n, k * (1 + 2 * d), k, y.shape, h.shape))
        xp = backend.get_array_module(*inputs)
        self.g_h = xp.empty_like(h)
        nll = _nll_and_grads(*_unpack(h, k, d), y, *_unpack(self.g_h, k, d),
                             self.need_grad)
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
    """Views of h (N, K (1 + 2 D)): logits (N, K), mu and ln_var (N, K, D)."""
    n = len(h)
    return (h[:, :k], h[:, k:k + k * d].reshape(n, k, d),
            h[:, k + k * d:].reshape(n, k, d))


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


def nll_fused(logits, mu, ln_var, y):
    """`nll_logspace` as one FunctionNode with closed-form gradients.

    Same shapes, value and first derivatives (also with respect to y, when y
    is a Variable that requires grad); not twice differentiable. NumPy and
    CuPy share the code path.
    """
    inputs = (logits, mu, ln_var, y)
    return MixtureNLL(_need_grad(inputs)).apply(inputs)[0]


def nll_fused_packed(h, y, k):
    """`nll_fused` on the head output h (N, K (1 + 2 D)), laid out as
    [logits (K) | mu (K x D) | ln_var (K x D)] per row, y (N, D)."""
    return PackedMixtureNLL(k, _need_grad((h, y))).apply((h, y))[0]


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
    """
    n, k, d = mu.shape
    if (logits.shape != (n, k) or log_diag.shape != mu.shape
            or lower.shape != (n, k, d * (d - 1) // 2) or y.shape != (n, d)):
        raise ValueError(
            'nll_full_covariance needs logits (N, K), mu and log_diag (N, K, D), '
            'lower (N, K, D(D-1)/2), y (N, D); got {}, {}, {}, {}, {}'.format(
                logits.shape, mu.shape, log_diag.shape, lower.shape, y.shape))
    r = F.broadcast_to(F.expand_dims(y, 1), mu.shape) - mu
    inv_diag = F.exp(-log_diag)
    z, entry = [], 0
    for i in range(d):
        row = r[:, :, i]
        for j in range(i):
            row = row - lower[:, :, entry] * z[j]
            entry += 1
        z.append(row * inv_diag[:, :, i])
    mahalanobis = sum(F.square(z_i) for z_i in z)
    log_n = -0.5 * (d * LOG_2PI + mahalanobis) - F.sum(log_diag, axis=2)
    return -F.mean(F.logsumexp(F.log_softmax(logits, axis=1) + log_n, axis=1))
