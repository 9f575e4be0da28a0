"""Property-based tests (hypothesis) of the losses and the sampler in float32,
over the whole float range of their inputs.

The losses are checked against a float64 log-space reference built from
scipy (logsumexp, with log(z^2 / 2) = 2 log|y - mu| - ln_var - log 2, so that
the reference itself never overflows where float64 need not), and against
each other: nll_fused, nll_fused_packed and the composed nll_logspace. The
full-covariance form is checked against the same reference (with a diagonal
factor) and a float64 forward substitution, the density form for never being
NaN; every loss and sampler refuses NaN and inf in any input.
"""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp
from scipy import special, stats

import toy  # noqa: F401  (patches NumPy/Python before chainer is imported)
import chainer

from toy import loss, mixture

F32 = np.float32
MAX = float(np.finfo(F32).max)
EPS = float(np.finfo(F32).eps)
LOG_2PI = math.log(2 * math.pi)
PROPERTY = settings(max_examples=150, deadline=None)
# For the forms composed of many Chainer functions (~40 ms an example).
SLOW_PROPERTY = settings(max_examples=50, deadline=None)
# Inputs at the float range's edges overflow intermediates on purpose (also
# in Chainer's backward of nll_logspace, outside the loss's errstate).
pytestmark = pytest.mark.filterwarnings('ignore:overflow encountered:RuntimeWarning')


def floats(lo=-MAX, hi=MAX):
    return st.floats(float(F32(lo)), float(F32(hi)), width=32, allow_nan=False,
                     allow_infinity=False)


def float32_arrays(shape, *ranges):
    """float32 arrays of `shape` whose elements come from one of `ranges`,
    chosen per array: the whole float range, or (mostly) ordinary values."""
    return st.sampled_from(ranges).flatmap(
        lambda r: hnp.arrays(F32, shape, elements=st.one_of(*[floats(*b) for b in r])))


WHOLE = ((-MAX, MAX),)


@st.composite
def mixtures(draw, max_n=3, max_k=4, max_d=3):
    """logits (N, K), mu and ln_var (N, K, D), y (N, D), float32, y at, near
    or far from one component's means."""
    n, k, d = (draw(st.integers(1, m)) for m in (max_n, max_k, max_d))
    logits = draw(float32_arrays((n, k), WHOLE, ((-30, 30),), ((-30, 30), (-MAX, MAX))))
    mu = draw(float32_arrays((n, k, d), WHOLE, ((-100, 100),), ((-100, 100), (-MAX, MAX))))
    ln_var = draw(float32_arrays((n, k, d), WHOLE, ((-30, 10),), ((-400, 400),),
                                 ((-30, 10), (-MAX, MAX))))
    j = draw(st.integers(0, k - 1))
    offset = draw(float32_arrays((n, d), ((0, 0),), ((-1, 1),), ((-1e-20, 1e-20),),
                                 WHOLE, ((0, 0), (-1, 1), (-MAX, MAX))))
    y = np.clip(mu[:, j].astype(np.float64) + offset, -MAX, MAX).astype(F32)
    return logits, mu, ln_var, y


def reference(logits, mu, ln_var, y):
    """The NLL per row (N,) in float64 log space, the scale of each
    component's terms (N, K) (float32 rounds log pi_k + log N_k by about
    EPS times it), whether float32 can hold every term (see `in_domain`), and
    the closed-form gradients (of the mean), clipped as documented."""
    logits, mu, ln_var, y = (a.astype(np.float64) for a in (logits, mu, ln_var, y))
    n, k, d = mu.shape
    logits = logits - logits.max(axis=1, keepdims=True)          # exact; float64
    log_pi = logits - special.logsumexp(logits, axis=1, keepdims=True)  # rounds lse
    diff = mu - y[:, None, :]
    with np.errstate(divide='ignore', over='ignore'):
        log_h = 2 * np.log(np.abs(diff)) - ln_var - math.log(2)    # log z^2 / 2
        h = np.exp(log_h)
    log_joint = log_pi - (h + 0.5 * ln_var).sum(axis=2) - 0.5 * d * LOG_2PI
    log_p = special.logsumexp(log_joint, axis=1)
    rows = -log_p
    scale = np.abs(log_pi) + (h + 0.5 * np.abs(ln_var)).sum(axis=2) + d
    # Components within e^-40 of the row's sum, allowing for their rounding.
    with np.errstate(invalid='ignore'):
        relevant = log_joint + 16 * EPS * scale >= log_p[:, None] - 40
    row_scale = np.where(relevant, scale, 0).max(axis=1)
    # The documented domain: |y - mu|, the sum of ln_var over D and the
    # logits' spread within the float range.
    in_domain = bool((np.abs(diff) < MAX).all() and (ln_var.sum(axis=2) > -MAX).all()
                     and (np.ptp(logits, axis=1) < MAX).all())

    alive = np.isfinite(log_p)[:, None]
    with np.errstate(invalid='ignore', over='ignore', divide='ignore'):
        log_gamma = np.where(alive, log_joint - log_p[:, None], -np.inf) - math.log(n)
        g_logits = np.where(alive, np.exp(log_pi) / n, 0) - np.exp(log_gamma)
        # gamma (mu - y) / var and gamma (1 - z^2) / 2, in log space
        g_mu = np.sign(diff) * np.exp(log_gamma[:, :, None] + np.log(np.abs(diff))
                                      - ln_var)
        g_ln_var = (0.5 * np.exp(log_gamma)[:, :, None]
                    - np.exp(log_gamma[:, :, None] + log_h))
    g_mu = np.clip(np.nan_to_num(g_mu), -MAX / k, MAX / k)
    grads = [g_logits, g_mu, np.clip(g_ln_var, -MAX, MAX), -g_mu.sum(axis=1)]
    return rows, row_scale, in_domain, grads


def pack(logits, mu, ln_var):
    n = len(logits)
    return np.concatenate([logits, mu.reshape(n, -1), ln_var.reshape(n, -1)], axis=1)


def value_and_grads(form, arrays, ln_var_min=None):
    """The loss and the gradients of logits, mu, ln_var, y under one of the forms."""
    n, k, d = arrays[1].shape
    if form == 'packed':
        xs = [chainer.Variable(pack(*arrays[:3])), chainer.Variable(arrays[3].copy())]
        out = loss.nll_fused_packed(*xs, k, ln_var_min=ln_var_min)
        out.backward()
        g_h = xs[0].grad
        return out.array, [g_h[:, :k], g_h[:, k:k + k * d].reshape(n, k, d),
                           g_h[:, k + k * d:].reshape(n, k, d), xs[1].grad]
    xs = [chainer.Variable(a.copy()) for a in arrays]
    out = {'fused': loss.nll_fused, 'logspace': loss.nll_logspace}[form](
        *xs, ln_var_min=ln_var_min)
    out.backward()
    return out.array, [x.grad for x in xs]


FORMS = ('fused', 'packed', 'logspace')


@pytest.mark.parametrize('ln_var_min', [None, -20.0])
@PROPERTY
@given(mixtures())
def test_losses_over_the_whole_float32_range(ln_var_min, arrays):
    """Also with the variance floor (issue 10): the reference then sees the
    floored ln_var, and its ln_var gradient gets the floor's sigmoid."""
    logits, mu, ln_var, y = arrays
    if ln_var_min is None:
        rows, row_scale, in_domain, ref_grads = reference(*arrays)
    else:
        floored = np.logaddexp(ln_var.astype(np.float64), ln_var_min)
        rows, row_scale, in_domain, ref_grads = reference(logits, mu, floored, y)
        ref_grads[2] = ref_grads[2] * special.expit(ln_var.astype(np.float64) - ln_var_min)
    with np.errstate(over='ignore'):
        ref = rows.mean()
    # The rounding of float32 terms of this size, plus that of the result.
    tol = 1e-5 + 16 * EPS * row_scale.mean() + 1e-5 * abs(ref)
    representable = np.all(np.abs(rows) <= MAX / 16)
    results = {}
    for form in FORMS:
        value, grads = value_and_grads(form, arrays, ln_var_min)
        results[form] = value, grads
        assert value.dtype == F32 and value.shape == ()
        assert not np.isnan(value) and value != -np.inf, form
        for g, a in zip(grads, arrays):
            assert g.dtype == F32 and g.shape == a.shape
            assert np.isfinite(g).all(), form
        if in_domain and representable:
            assert np.isfinite(value), (form, ref)
            assert abs(value - ref) <= tol, (form, value, ref, tol)
        if in_domain and np.any(rows > 2 * MAX):       # beyond float32 (or inf)
            assert value == np.inf, (form, value, ref)
        if np.isposinf(value):
            # +inf only where the reference is not a float32 (or outside the
            # domain, where |y - mu|, sum ln_var or the logits' spread are not)
            assert not (in_domain and representable), (form, ref)

    # The packed form runs the same arithmetic on views: bit for bit equal.
    np.testing.assert_array_equal(results['packed'][0], results['fused'][0])
    for g, g_ref in zip(results['packed'][1], results['fused'][1]):
        np.testing.assert_array_equal(g, g_ref)
    fused, logspace = results['fused'][0], results['logspace'][0]
    if in_domain and np.isfinite(fused) and np.isfinite(logspace):
        assert abs(fused - logspace) <= tol, (fused, logspace, tol)
    elif in_domain:
        assert fused == logspace, (fused, logspace)

    # Gradients against the float64 closed forms, where float32 holds the
    # responsibilities to ~1e-4 (terms up to ~100 nats) and nothing is clipped.
    if in_domain and representable and row_scale.max() < 100:
        for form in FORMS:
            for name, g, g_ref in zip(('logits', 'mu', 'ln_var', 'y'),
                                      results[form][1], ref_grads):
                np.testing.assert_allclose(
                    g, g_ref, rtol=1e-3, atol=1e-3 * np.abs(g_ref).max() + 1e-6,
                    err_msg=form + ' ' + name)


@PROPERTY
@given(data=st.data(), offset=st.sampled_from([100.0, -100.0, 1e4, 1e6, -1e6]))
def test_logit_offset_leaves_loss_and_gradients_unchanged(data, offset):
    """softmax(logits + c) = softmax(logits): also at offsets where exp(logits)
    overflows float32 (e^100 already does). The logits are multiples of 1/8,
    so that logits + c is exact in float32 up to |c| = 1e6."""
    n, k, d = (data.draw(st.integers(1, m)) for m in (4, 4, 2))
    base = data.draw(hnp.arrays(F32, (n, k), elements=st.integers(-240, 240).map(
        lambda i: i / 8)))
    mu = data.draw(hnp.arrays(F32, (n, k, d), elements=floats(-10, 10)))
    ln_var = data.draw(hnp.arrays(F32, (n, k, d), elements=floats(-10, 5)))
    y = data.draw(hnp.arrays(F32, (n, d), elements=floats(-10, 10)))
    shifted = (base + F32(offset)).astype(F32)
    assert ((shifted - F32(offset)) == base).all()          # exact, as meant
    for form in FORMS:
        value, grads = value_and_grads(form, (base, mu, ln_var, y))
        value_c, grads_c = value_and_grads(form, (shifted, mu, ln_var, y))
        assert np.isfinite(value)
        np.testing.assert_allclose(value_c, value, rtol=1e-6, atol=1e-6, err_msg=form)
        for g_c, g in zip(grads_c, grads):
            np.testing.assert_allclose(g_c, g, rtol=1e-5, atol=1e-6 * np.abs(g).max(),
                                       err_msg=form)


@PROPERTY
@given(data=st.data())
def test_sampler_over_the_float32_range(data):
    """Finite draws of the right shape and dtype, the caller's arrays left
    as they were, and every draw from its OWN row's mixture: within 8
    sqrt(tau) sigma of one of that row's components, on every dimension."""
    n, k, d = (data.draw(st.integers(1, m)) for m in (4, 4, 3))
    logits = data.draw(float32_arrays((n, k), WHOLE, ((-30, 30),)))
    mu = data.draw(float32_arrays((n, k, d), ((-1e30, 1e30),), ((-100, 100),)))
    # sigma up to 1e28, times sqrt(1e4) and |eps| < 8: still a float32.
    ln_var = data.draw(float32_arrays((n, k, d), ((-MAX, 130),), ((-30, 10),)))
    tau = data.draw(st.one_of(st.floats(5e-324, mixture.MAX_TEMPERATURE),
                              st.floats(0.1, 10)))
    draws_per_row = data.draw(st.integers(1, 40))
    params = (logits, mu, ln_var)
    before = [a.copy() for a in params]
    draws = mixture.sample(*params, n=draws_per_row, temperature=tau,
                       rng=np.random.RandomState(data.draw(st.integers(0, 2 ** 32 - 1))))
    for a, b in zip(params, before):
        np.testing.assert_array_equal(a, b)
    assert draws.shape == (n, draws_per_row, d) and draws.dtype == F32
    assert np.isfinite(draws).all()
    mu64 = mu.astype(np.float64)[:, None]                         # (N, 1, K, D)
    spread = 8 * np.exp(0.5 * (ln_var.astype(np.float64) + math.log(tau)))[:, None]
    near = np.abs(draws.astype(np.float64)[:, :, None] - mu64) <= (
        spread + 4 * EPS * np.abs(mu64) + 1e-44)
    assert near.all(axis=3).any(axis=2).all()


def test_rows_with_their_own_means_and_variances_ks():
    """Each row has its own weights, means AND variances; each row's draws
    follow that row's mixture (KS), and not the next row's (the test's power)."""
    rng = np.random.default_rng(11)
    n_rows, k = 6, 3
    pi = rng.dirichlet(np.ones(k), n_rows)
    mu = rng.normal(0, 3, (n_rows, k)) + 5 * np.arange(n_rows)[:, None]
    sigma = rng.uniform(0.2, 2.0, (n_rows, k))
    logits, ln_var = np.log(pi).astype(F32), (2 * np.log(sigma))[:, :, None].astype(F32)
    draws = mixture.sample(logits, mu[:, :, None].astype(F32), ln_var, n=2000,
                       rng=np.random.RandomState(12))[:, :, 0]

    def cdf(i):
        return lambda t: (pi[i] * stats.norm.cdf((np.asarray(t)[:, None] - mu[i])
                                                 / sigma[i])).sum(1)

    for i in range(n_rows):
        assert stats.kstest(draws[i], cdf(i)).pvalue > 1e-3, i
        assert stats.kstest(draws[i], cdf((i + 1) % n_rows)).pvalue < 1e-6, i


def test_rows_share_means_but_not_variances():
    """Same means and weights on every row, variances differing by row: a
    sampler that took any row's variance for all would fail here."""
    n_rows = 4
    sigma = np.array([0.1, 0.5, 2.0, 8.0])
    logits = np.zeros((n_rows, 2), F32)
    mu = np.tile(np.array([[[-1.0], [1.0]]], F32), (n_rows, 1, 1))
    ln_var = np.tile(2 * np.log(sigma)[:, None, None], (1, 2, 1)).astype(F32)
    draws = mixture.sample(logits, mu, ln_var, n=4000, rng=np.random.RandomState(13))
    # Var = E[mu^2] + sigma^2 = 1 + sigma^2, to 5 % (the sd of a variance of
    # 4000 draws is about 2.5 %).
    np.testing.assert_allclose(draws[:, :, 0].var(axis=1), 1 + sigma ** 2, rtol=0.08)


# ---------------------------------------------------------------------------
# Issue 17: the full-covariance and density forms over the float32 range, and
# non-finite inputs to every loss and sampler.
# ---------------------------------------------------------------------------

def full_covariance_value_and_grads(logits, mu, log_diag, lower, y):
    xs = [chainer.Variable(a.copy()) for a in (logits, mu, log_diag, lower, y)]
    out = loss.nll_full_covariance(*xs)
    out.backward()
    return out.array, [x.grad for x in xs]


def check_never_nan(value, grads, arrays):
    assert value.dtype == F32 and value.shape == ()
    assert not np.isnan(value) and value != -np.inf, value
    for g, a in zip(grads, arrays):
        if g is None:                     # lower (N, K, 0) at D = 1: not used
            assert a.size == 0
            continue
        assert g.dtype == F32 and g.shape == a.shape
        assert np.isfinite(g).all()


@SLOW_PROPERTY
@given(mixtures())
def test_full_covariance_with_a_diagonal_factor_is_the_diagonal_reference(arrays):
    """Issue 17, item 11: log L_dd <= -45 gave NaN (exp(-log L_dd) overflows
    float32). With L diagonal, L = diag(sigma), the loss is the diagonal one
    at ln_var = 2 log L_dd: against the float64 reference over the whole
    float32 range, gradients included (d/d log L_dd = 2 d/d ln_var)."""
    logits, mu, ln_var, y = arrays
    n, k, d = mu.shape
    log_diag = (ln_var * F32(0.5)).astype(F32)
    lower = np.zeros((n, k, d * (d - 1) // 2), F32)
    rows, row_scale, in_domain, ref_grads = reference(
        logits, mu, 2 * log_diag.astype(np.float64), y)
    with np.errstate(over='ignore'):
        ref = rows.mean()
    full = (logits, mu, log_diag, lower, y)
    value, grads = full_covariance_value_and_grads(*full)
    check_never_nan(value, grads, full)
    tol = 1e-5 + 16 * EPS * row_scale.mean() + 1e-5 * abs(ref)
    representable = np.all(np.abs(rows) <= MAX / 16)
    if in_domain and representable:
        assert abs(value - ref) <= tol, (value, ref, tol)
    if in_domain and np.any(rows > 2 * MAX):
        assert value == np.inf
    if in_domain and representable and row_scale.max() < 100:
        g_ref = [ref_grads[0], ref_grads[1], 2 * ref_grads[2], None, ref_grads[3]]
        for name, g, want in zip(('logits', 'mu', 'log_diag', 'lower', 'y'), grads, g_ref):
            if want is not None:
                np.testing.assert_allclose(g, want, rtol=1e-3,
                                           atol=1e-3 * np.abs(want).max() + 1e-6,
                                           err_msg=name)


def full_reference(logits, mu, log_diag, lower, y):
    """The NLL per row (N,) in float64 by forward substitution, and whether
    float32 can hold every intermediate: |y - mu|, each L_dj z_j and each
    partial residual within MAX / 16 (the documented domain, with margin)."""
    logits, mu, log_diag, lower, y = (a.astype(np.float64)
                                      for a in (logits, mu, log_diag, lower, y))
    n, k, d = mu.shape
    logits = logits - logits.max(axis=1, keepdims=True)          # exact; float64
    log_pi = logits - special.logsumexp(logits, axis=1, keepdims=True)
    r = y[:, None, :] - mu
    z, terms, entry = [], [np.abs(r)], 0
    with np.errstate(over='ignore', invalid='ignore'):
        for i in range(d):
            e = r[:, :, i]
            for j in range(i):
                t = lower[:, :, entry] * z[j]
                e = e - t
                terms += [np.abs(t), np.abs(e)]
                entry += 1
            z.append(e * np.exp(-log_diag[:, :, i]))
        h = sum(0.5 * z_i ** 2 for z_i in z)
    log_joint = log_pi - h - log_diag.sum(axis=2) - 0.5 * d * LOG_2PI
    in_domain = all(bool(np.all(t < MAX / 16)) for t in terms)
    return -special.logsumexp(log_joint, axis=1), in_domain


@SLOW_PROPERTY
@given(data=st.data())
def test_full_covariance_over_the_float32_range(data):
    """Correlated components: never NaN or -inf, gradients always finite, and
    the value is the float64 forward substitution's wherever float32 holds
    its intermediates and result (log L_dd down to -60, far below -45)."""
    n, k, d = (data.draw(st.integers(1, m)) for m in (3, 3, 3))
    logits = data.draw(float32_arrays((n, k), WHOLE, ((-30, 30),)))
    mu = data.draw(float32_arrays((n, k, d), WHOLE, ((-100, 100),)))
    log_diag = data.draw(float32_arrays((n, k, d), WHOLE, ((-60, 5),), ((-5, 5),)))
    lower = data.draw(float32_arrays((n, k, d * (d - 1) // 2), WHOLE, ((-3, 3),)))
    j = data.draw(st.integers(0, k - 1))
    offset = data.draw(float32_arrays((n, d), ((0, 0),), ((-1, 1),), ((-1e-20, 1e-20),),
                                      WHOLE))
    y = np.clip(mu[:, j].astype(np.float64) + offset, -MAX, MAX).astype(F32)
    full = (logits, mu, log_diag, lower, y)
    value, grads = full_covariance_value_and_grads(*full)
    check_never_nan(value, grads, full)
    rows, in_domain = full_reference(*full)
    with np.errstate(over='ignore', invalid='ignore'):
        ref = rows.mean()
    if in_domain and np.isfinite(ref) and np.all(np.abs(rows) < 1e6):
        # float32 rounds each term (log pi, z^2 / 2, log L_dd) by EPS times it
        assert abs(value - ref) <= 1e-4 * (1 + abs(ref)), (value, ref)


@SLOW_PROPERTY
@given(mixtures())
def test_density_form_is_never_nan(arrays):
    """Issue 17, item 12: ln_var = -104 gave NaN (sigma^2 underflows to 0,
    then 0 * inf). Over the whole float32 range the density form is the
    reference where every weighted density is a normal float32, +inf where
    they all underflow, and refuses (ValueError) only where one overflows."""
    rows, row_scale, in_domain, _ = reference(*arrays)
    log_p = -rows
    try:
        value = loss.nll_density(*arrays).array
    except ValueError as e:
        assert 'overflows the float range' in str(e)
        assert log_p.max() > 80, log_p                # e^88.7 overflows float32
        return
    assert value.dtype == F32 and not np.isnan(value) and value != -np.inf, value
    if in_domain and np.all(np.abs(log_p) < 80) and row_scale.max() < 1e4:
        tol = 1e-5 + 16 * EPS * row_scale.mean() + 1e-5 * abs(rows.mean())
        assert abs(value - rows.mean()) <= tol, (value, rows.mean())
    if np.isposinf(value):
        assert log_p.min() < -80, log_p


NON_FINITE = (np.nan, np.inf, -np.inf)


def full_arrays(arrays):
    logits, mu, ln_var, y = arrays
    n, k, d = mu.shape
    return logits, mu, ln_var, np.zeros((n, k, d * (d - 1) // 2), F32), y


#: name: (the arrays from (logits, mu, ln_var, y), the loss, its inputs' names)
LOSS_FORMS = {
    'nll_fused': (tuple, loss.nll_fused, ('logits', 'mu', 'ln_var', 'y')),
    'nll_logspace': (tuple, loss.nll_logspace, ('logits', 'mu', 'ln_var', 'y')),
    'nll_density': (tuple, loss.nll_density, ('logits', 'mu', 'ln_var', 'y')),
    'nll_fused_packed': (lambda a: (pack(*a[:3]), a[3]),
                         lambda h, y: loss.nll_fused_packed(h, y, h.shape[1] // 3),
                         ('h', 'y')),
    'nll_full_covariance': (full_arrays, loss.nll_full_covariance,
                            ('logits', 'mu', 'log_diag', 'lower', 'y')),
}


@pytest.mark.parametrize('form', sorted(LOSS_FORMS))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_losses_refuse_non_finite_inputs(form, data):
    """Issue 17, item 13: a NaN target gave nll_fused a silent NaN, and an
    infinite ln_var a finite lie. Any NaN or inf in any input, wherever it
    is, is a ValueError naming that input (D = 1 for the packed form)."""
    n, k = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    d = 1 if form == 'nll_fused_packed' else data.draw(st.integers(1, 3))
    arrays = [data.draw(hnp.arrays(F32, shape, elements=floats(-5, 5)))
              for shape in ((n, k), (n, k, d), (n, k, d), (n, d))]
    make, nll, names = LOSS_FORMS[form]
    arrays = list(make(arrays))
    i = data.draw(st.integers(0, len(arrays) - 1).filter(lambda i: arrays[i].size))
    bad = arrays[i].copy()
    bad.flat[data.draw(st.integers(0, bad.size - 1))] = data.draw(st.sampled_from(NON_FINITE))
    arrays[i] = bad
    with pytest.raises(ValueError, match=r'^{}: {} holds 1 NaN or inf value'.format(
            form, names[i])):
        nll(*[chainer.Variable(a) for a in arrays])


@settings(max_examples=60, deadline=None)
@given(data=st.data(), full=st.booleans())
def test_samplers_refuse_non_finite_parameters(data, full):
    """Issue 17, item 13: NaN, all -inf or all +inf logits gave a finite draw.
    No draw, finite or not, comes from a parameter that is NaN or inf."""
    n, k, d = (data.draw(st.integers(1, m)) for m in (3, 3, 3))
    arrays = [data.draw(hnp.arrays(F32, shape, elements=floats(-5, 5)))
              for shape in ((n, k), (n, k, d), (n, k, d))]
    names = ['logits', 'mu', 'log_diag' if full else 'ln_var']
    if full:
        arrays.append(np.zeros((n, k, d * (d - 1) // 2), F32))
        names.append('lower')
    i = data.draw(st.integers(0, len(arrays) - 1).filter(lambda i: arrays[i].size))
    value = data.draw(st.sampled_from(NON_FINITE))
    row = data.draw(st.integers(0, n - 1))
    if data.draw(st.booleans()):
        arrays[i][row] = value                              # a whole row
    else:
        arrays[i][row].flat[data.draw(st.integers(0, arrays[i][row].size - 1))] = value
    sampler = mixture.sample_full if full else mixture.sample
    with pytest.raises(ValueError, match=r'{}: {} holds \d+ NaN or inf value\(s\), the '
                                         r'first in row {}'.format(
                                             sampler.__name__, names[i], row)):
        sampler(*arrays, n=3, rng=np.random.RandomState(0))


@SLOW_PROPERTY
@given(data=st.data())
def test_full_covariance_sampler_over_the_float32_range(data):
    """Finite draws of the right shape, each within 8 sqrt(tau) sum_j |L_dj|
    of one of its own row's components on every dimension, for parameters
    whose |mu| + sqrt(tau) |L eps| is a float32."""
    n, k, d = (data.draw(st.integers(1, m)) for m in (3, 3, 3))
    logits = data.draw(float32_arrays((n, k), WHOLE, ((-30, 30),)))
    mu = data.draw(float32_arrays((n, k, d), ((-1e30, 1e30),), ((-100, 100),)))
    log_diag = data.draw(float32_arrays((n, k, d), ((-MAX, 60),), ((-10, 5),)))
    lower = data.draw(float32_arrays((n, k, d * (d - 1) // 2), ((-1e25, 1e25),),
                                     ((-3, 3),)))
    tau = data.draw(st.one_of(st.floats(5e-324, mixture.MAX_TEMPERATURE), st.floats(0.1, 10)))
    draws = mixture.sample_full(logits, mu, log_diag, lower, n=20, temperature=tau,
                            rng=np.random.RandomState(data.draw(st.integers(0, 2 ** 32 - 1))))
    assert draws.shape == (n, 20, d) and draws.dtype == F32
    assert np.isfinite(draws).all()
    chol = np.abs(mixture.scale_tril(log_diag.astype(np.float64), lower.astype(np.float64)))
    spread = 8 * math.sqrt(tau) * chol.sum(axis=3)[:, None]        # (N, 1, K, D)
    mu64 = mu.astype(np.float64)[:, None]
    near = np.abs(draws.astype(np.float64)[:, :, None] - mu64) <= (
        spread * (1 + 1e-5) + 4 * EPS * np.abs(mu64) + 1e-44)
    assert near.all(axis=3).any(axis=2).all()
