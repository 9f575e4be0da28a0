"""toy/population.py: R MDNs as one Link train exactly as R solo MDNs, padding
and a diverged member leave the others alone; experiments/population_benchmark."""
import csv
import json
import os
import re

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

# toy first: its patches of NumPy and Python come before chainer is imported.
from toy import checkpoint, datasets, heads, loss, mdn, nets, population, preprocess
from toy.train_custom_loop import fit, heldout_nll
from experiments import population_benchmark
import chainer
import chainer.functions as F

F32 = np.float32
#: Mixed K with K_max = 5: three members read only part of the padded head.
KS = (1, 2, 3, 5)
STEPS = 300
#: Float32 agreement after STEPS Adam steps (relative to 1 + |solo value|).
TOL = 1e-5


def make_models(ks, hidden=(12, 12), activation='tanh', out_dim=1, seed=0,
                ln_var_min=None):
    return [mdn.MDN(1, out_dim, list(hidden), k, activation, ln_var_min=ln_var_min,
                    rng=np.random.default_rng([seed, r])) for r, k in enumerate(ks)]


def member_data(size, n, seed=0):
    """(R, n, 1) inputs and targets of the worldmodels problem, a draw per member."""
    pairs = [datasets.worldmodels(n, np.random.default_rng([seed, r])) for r in range(size)]
    return np.stack([x for x, _ in pairs]), np.stack([y for _, y in pairs])


def padding(pop, r):
    """Member r's unused head rows: its W rows and b entries past its own K."""
    rows = mdn.MDN.head_size(pop.ks[r], pop.out_dim)
    return pop.head.W.array[r, rows:], pop.head.b.array[r, rows:]


# ---------------------------------------------------------------------------
# A population trains as its members would alone
# ---------------------------------------------------------------------------

def train_pair(ks, steps=STEPS, lr=1e-2, lr_final=1e-4, batch=20):
    """Train a population and, separately, each of its models from the same
    initial weights, by plain Adam steps with the same decaying step size,
    member r and model r on the same batches. Returns the population, the
    models and each side's losses (steps, R)."""
    solo = make_models(ks)
    pop = population.Population.from_models(solo)      # copies: trained apart
    xs, ys = member_data(len(ks), steps * batch)
    xs = xs.reshape(len(ks), steps, batch, 1).swapaxes(0, 1)     # (steps, R, B, 1)
    ys = ys.reshape(len(ks), steps, batch, 1).swapaxes(0, 1)
    decay = (lr_final / lr) ** (1.0 / (steps - 1))

    def train(target, losses_at):
        optimizer = chainer.optimizers.Adam(alpha=lr)
        optimizer.setup(target)
        seen = []
        with chainer.using_config('type_check', False):
            for t in range(steps):
                losses = losses_at(t)
                target.cleargrads()
                F.sum(losses).backward()
                optimizer.update()
                optimizer.hyperparam.alpha *= decay
                seen.append(np.atleast_1d(losses.array))
        return np.array(seen)

    pop_losses = train(pop, lambda t: pop.member_nll(xs[t], ys[t]))
    solo_losses = np.hstack([train(model, lambda t, r=r, m=model: m.loss(xs[t, r], ys[t, r]))
                             for r, model in enumerate(solo)])
    return pop, solo, pop_losses, solo_losses


def deviation(pop, solo, pop_losses, solo_losses, r):
    """The largest difference between member r and its solo model, over the
    losses of every step and the parameters at the end, each relative to
    1 + |solo value|; inf if the member's padding moved."""
    if any(a.any() for a in padding(pop, r)):
        return np.inf
    pairs = [(pop_losses[:, r], solo_losses[:, r])] + [
        (a.array, b.array) for a, b in zip(pop.member(r).params(), solo[r].params())]
    return max(float(np.max(np.abs(a - b) / (1 + np.abs(b)))) for a, b in pairs)


def agrees(result):
    return all(deviation(*result, r) <= TOL for r in range(len(result[0])))


@pytest.fixture(scope='module')
def trained():
    return train_pair(KS)


@pytest.mark.parametrize('r', range(len(KS)), ids=['K={}'.format(k) for k in KS])
def test_each_member_trains_as_its_model_alone(trained, r):
    pop, solo, pop_losses, solo_losses = trained
    assert pop.ks[r] == KS[r] and pop.k_max == max(KS)
    assert deviation(pop, solo, pop_losses, solo_losses, r) <= TOL
    # The fit moved: the comparison is not of two untrained models.
    assert solo_losses[-20:, r].mean() < solo_losses[:20, r].mean() - 0.1


def test_the_comparison_catches_a_mask_that_leaks(monkeypatch):
    """Two wrong paddings, each caught by `agrees`: padded components read as
    components (logits 0, so they get weight), and a loss whose value is
    exact but whose gradient reaches the padded head rows."""
    assert agrees(train_pair(KS, steps=60))
    exact = loss.nll_fused_members

    def unmasked(h, y, ks, ln_var_min=None):
        return exact(h, y, [max(ks)] * len(ks), ln_var_min)

    def leaky(h, y, ks, ln_var_min=None):
        xp = chainer.backend.get_array_module(h)
        used = xp.asarray([mdn.MDN.head_size(k, y.shape[2]) for k in ks])
        pad = (xp.arange(h.shape[2]) >= used[:, None])[:, None, :].astype(h.dtype)
        tail = F.sum(h * xp.broadcast_to(pad, h.shape), axis=(1, 2))
        return exact(h, y, ks, ln_var_min) + (tail - tail.array)   # + 0, gradient 1

    for wrong in (unmasked, leaky):
        monkeypatch.setattr(loss, 'nll_fused_members', wrong)
        assert not agrees(train_pair(KS, steps=60)), wrong.__name__


@pytest.mark.parametrize('h_shape,y_shape,ks,message', [
    ((2, 3, 5), (2, 3, 1), (1, 2), r'C >= K_max \(1 \+ 2 D\) = 6; got y \(2, 3, 1\), h \(2, 3, 5\)'),
    ((2, 3, 6), (2, 3, 1), (2,), 'R = 1 members'),
    ((2, 3, 6), (2, 4, 1), (2, 2), r'got y \(2, 4, 1\)'),
    ((2, 3, 6), (2, 3, 1), (0, 2), 'one K per member, positive ints'),
])
def test_the_members_loss_refuses_what_it_cannot_read(h_shape, y_shape, ks, message):
    with pytest.raises(ValueError, match=message):
        loss.nll_fused_members(np.zeros(h_shape, F32), np.zeros(y_shape, F32), ks)


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_the_population_loss_and_gradients_are_the_solo_ones(data):
    """For any members of one architecture: the loss is the sum of the solo
    losses, each member's gradient its solo gradient, the padding's 0."""
    ks = data.draw(st.lists(st.integers(1, 4), min_size=1, max_size=4), 'ks')
    hidden = data.draw(st.lists(st.integers(1, 6), min_size=1, max_size=2), 'hidden')
    activation = data.draw(st.sampled_from(sorted(nets.ACTIVATIONS)), 'activation')
    in_dim, out_dim, rows = (data.draw(st.integers(1, top), name)
                             for top, name in ((2, 'in_dim'), (2, 'D'), (6, 'B')))
    ln_var_min = data.draw(st.sampled_from([None, -2.0]), 'ln_var_min')
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1), 'seed'))
    solo = [mdn.MDN(in_dim, out_dim, hidden, k, activation, rng=rng, ln_var_min=ln_var_min)
            for k in ks]
    pop = population.Population.from_models(solo)
    x = rng.normal(size=(len(ks), rows, in_dim)).astype(F32)
    y = rng.normal(size=(len(ks), rows, out_dim)).astype(F32)
    total = pop.loss(x, y)
    pop.cleargrads()
    total.backward()
    expected = 0.0
    for r, model in enumerate(solo):
        value = model.loss(x[r], y[r])
        model.cleargrads()
        value.backward()
        expected += float(value.array)
        for name in model.layers + ['head']:
            for p in ('W', 'b'):
                theirs = getattr(getattr(model, name), p).grad
                mine = getattr(getattr(pop, name), p).grad[r]
                np.testing.assert_allclose(mine[:len(theirs)], theirs, rtol=1e-5, atol=1e-6)
                assert not mine[len(theirs):].any()
    assert float(total.array) == pytest.approx(expected, rel=1e-6, abs=1e-6)


# ---------------------------------------------------------------------------
# Construction and members
# ---------------------------------------------------------------------------

def test_a_member_is_its_model_again(tmp_path):
    models = make_models((3, 1, 4), hidden=(7, 5), activation='silu', out_dim=2,
                         ln_var_min=-4.0)
    pop = population.Population.from_models(models)
    x = np.random.default_rng(1).normal(size=(50, 1)).astype(F32)
    for r, model in enumerate(models):
        member = pop.member(r)
        assert type(member) is mdn.MDN and member.k == model.k
        assert ([n for n, _ in member.namedparams()] == [n for n, _ in model.namedparams()])
        for got, want in zip(member.mixture(x), model.mixture(x)):
            assert np.array_equal(got, want)
        assert not any(a.any() for a in padding(pop, r))
    # What takes a model takes a member: a model file, and the held-out NLL.
    scaler = preprocess.Standardizer(*datasets.worldmodels(20, np.random.default_rng(2)))
    checkpoint.save(str(tmp_path / 'm.npz'), pop.member(2), scaler)
    loaded = mdn.MDN(1, 2, [7, 5], 4, 'silu', ln_var_min=-4.0)
    checkpoint.load(str(tmp_path / 'm.npz'), loaded)
    y = np.random.default_rng(3).normal(size=(50, 2)).astype(F32)
    assert heldout_nll(loaded, x, y) == heldout_nll(models[2], x, y)
    assert pop.member(-1).k == 4


def test_the_constructor_draws_each_member_as_its_mdn_would():
    ks, rngs = (2, 5), lambda: [np.random.default_rng(s) for s in (7, 8)]
    pop = population.Population(ks, hidden=[9], activation='relu', rngs=rngs())
    models = [mdn.MDN(hidden=[9], k=k, activation='relu', rng=rng)
              for k, rng in zip(ks, rngs())]
    for r, model in enumerate(models):
        for a, b in zip(pop.member(r).params(), model.params()):
            assert np.array_equal(a.array, b.array)


@pytest.mark.parametrize('models,error,message', [
    (lambda: [], ValueError, 'at least one model'),
    (lambda: make_models((2,)) + make_models((2,), hidden=(12, 11)), ValueError,
     'model 1 is .* but model 0 is .*members share all but K'),
    (lambda: make_models((2,)) + make_models((2,), activation='relu'), ValueError,
     'members share all but K'),
    (lambda: [heads.PerDimensionMDN(hidden=4, k=2)], TypeError,
     'model 0 is a PerDimensionMDN, not an mdn.MDN'),
    (lambda: [mdn.MDN(hidden=4, k=2, nll='logspace')], ValueError,
     "model 0 trains another loss.*nll='fused'"),
])
def test_only_mdns_of_one_architecture_are_stacked(models, error, message):
    with pytest.raises(error, match=message):
        population.Population.from_models(models())


def test_bad_data_is_refused_naming_the_member():
    pop = population.Population.from_models(make_models((1, 2)))
    xs, ys = member_data(2, 30)
    kwargs = dict(epochs=1, seeds=(0, 1))
    bad = ys.copy()
    bad[1, 4] = np.nan
    with pytest.raises(ValueError, match='training data, member 1: y has 1 non-finite'):
        population.fit_population(pop, xs, bad, xs, ys, **kwargs)
    with pytest.raises(ValueError, match='validation data: x and y need one array per '
                                         'member, 2 each; got 1 and 2'):
        population.fit_population(pop, xs, ys, xs[:1], ys, **kwargs)
    with pytest.raises(ValueError, match='the members have 20 or 30 rows'):
        population.fit_population(pop, [xs[0], xs[1, :20]], [ys[0], ys[1, :20]],
                                  xs, ys, **kwargs)
    with pytest.raises(ValueError, match='2 members needs 2 seeds, got 3'):
        population.fit_population(pop, xs, ys, xs, ys, epochs=1, seeds=(0, 1, 2))


# ---------------------------------------------------------------------------
# fit_population
# ---------------------------------------------------------------------------

FIT = dict(epochs=15, batchsize=25, lr=1e-2, lr_final=1e-3, eval_every=2)


def test_fit_population_trains_each_member_as_fit_would():
    """Per member: its own data, its own seed's order, the same step sizes,
    its own best validation restored; the same parameters and scores as
    fit's. A large step and 5 validation points make some members' best
    epochs early, so that restoring is exercised."""
    ks, seeds, fit_args = (1, 3, 2), (5, 6, 7), dict(FIT, lr=0.1)
    xs, ys = member_data(3, 60)
    xs_val, ys_val = member_data(3, 5, seed=1)
    models = make_models(ks, hidden=(8,))
    pop = population.Population.from_models(models)
    result = population.fit_population(pop, xs, ys, xs_val, ys_val, seeds=seeds,
                                       **fit_args)
    assert [h[0] for h in result['history']] == [2, 4, 6, 8, 10, 12, 14, 15]
    best_epochs = [m['best_epoch'] for m in result['members']]
    assert min(best_epochs) < 14 and max(best_epochs) > 2, best_epochs
    for r, model in enumerate(models):
        alone = fit(model, xs[r], ys[r], xs_val[r], ys_val[r], seed=seeds[r], **fit_args)
        got = result['members'][r]
        assert (got['k'], got['seed'], got['failed']) == (ks[r], seeds[r], None)
        assert got['best_epoch'] == alone['best_epoch']
        assert got['iterations'] == alone['iterations'] == 15 * 3
        assert got['best_val_loss'] == pytest.approx(alone['best_val_loss'], rel=1e-5)
        assert [h[1][r] for h in result['history']] == pytest.approx(
            [v for _, v in alone['history']], rel=1e-5)
        for a, b in zip(pop.member(r).params(), model.params()):
            np.testing.assert_allclose(a.array, b.array, rtol=TOL, atol=TOL)
        # The parameters restored are those of the best validation NLL.
        assert heldout_nll(pop.member(r), xs_val[r], ys_val[r]) == pytest.approx(
            got['best_val_loss'], rel=1e-6)
        assert got['best_val_loss'] == min(h[1][r] for h in result['history'])


def test_fit_population_with_a_quantile_start_trains_each_member_as_fit_would():
    """The first epochs train each member's quantile-start objective, as fit
    trains a model's, then its NLL, with one Adam and one decay through
    both: the same parameters and scores as fit's, member by member (a
    floor on the log-variances too: the objective unpacks it)."""
    ks, seeds, fit_args = (1, 3, 2), (5, 6, 7), dict(FIT, eval_every=1, quantile_start=4)
    xs, ys = member_data(3, 60)
    xs_val, ys_val = member_data(3, 20, seed=1)
    models = make_models(ks, hidden=(8,), ln_var_min=-3.0)
    pop = population.Population.from_models(models)
    result = population.fit_population(pop, xs, ys, xs_val, ys_val, seeds=seeds,
                                       **fit_args)
    nll_only = population.Population.from_models(models)
    population.fit_population(nll_only, xs, ys, xs_val, ys_val, seeds=seeds,
                              **dict(fit_args, quantile_start=0))
    for r, model in enumerate(models):
        alone = fit(model, xs[r], ys[r], xs_val[r], ys_val[r], seed=seeds[r], **fit_args)
        got = result['members'][r]
        assert got['failed'] is None and got['best_epoch'] == alone['best_epoch']
        assert [h[1][r] for h in result['history']] == pytest.approx(
            [v for _, v in alone['history']], rel=1e-5)
        for a, b in zip(pop.member(r).params(), model.params()):
            np.testing.assert_allclose(a.array, b.array, rtol=TOL, atol=TOL)
        # The quantile start changed the run: it was not the NLL throughout.
        assert not np.allclose(pop.member(r).head.W.array,
                               nll_only.member(r).head.W.array, rtol=1e-3)
        assert not any(a.any() for a in padding(pop, r))
    for bad in (15, -1):
        with pytest.raises(ValueError, match='quantile_start must be at least 0 and '
                           'fewer than the 15 epochs'):
            population.fit_population(pop, xs, ys, xs_val, ys_val, seeds=seeds,
                                      **dict(fit_args, quantile_start=bad))


def test_each_member_follows_its_own_seed():
    """Two members alike in all but their seed: they end apart, and swapping
    the seeds swaps them."""
    xs, ys = member_data(1, 60)
    xs, ys = np.concatenate([xs, xs]), np.concatenate([ys, ys])
    ends = []
    for seeds in ((3, 4), (4, 3)):
        pop = population.Population.from_models(make_models((2,), hidden=(8,)) * 2)
        population.fit_population(pop, xs, ys, xs, ys, seeds=seeds, **FIT)
        ends.append([pop.member(r).head.W.array for r in range(2)])
    assert not np.array_equal(ends[0][0], ends[0][1])
    assert np.array_equal(ends[0][0], ends[1][1]) and np.array_equal(ends[0][1], ends[1][0])


# ---------------------------------------------------------------------------
# A diverged member is failed, frozen, and changes nothing for the others
# ---------------------------------------------------------------------------

def poison_targets(pop, xs, ys):
    """Member 1's targets include one beyond what its mixture can hold: its
    training loss is inf from the first epoch on, and it never had a best."""
    ys = ys.copy()
    ys[1, 7] = 1e30
    return xs, ys, None, [p.array.copy() for p in pop.member(1).params()]


def poison_inputs(pop, xs, ys):
    """Member 1's inputs include one its layers (no activation) overflow on:
    its loss is NaN, and each later step multiplies its zero gradient by
    inf, which must not reach its parameters."""
    xs = xs.copy()
    xs[1, 7] = 3e38
    return xs, ys, None, [p.array.copy() for p in pop.member(1).params()]


def poison_parameters(pop, xs, ys):
    """Member 1 trains well for 3 epochs, then a weight of its head turns NaN
    (before the evaluation of epoch 3): its best is then that of epoch 2."""
    epochs, kept = [], []

    def progress():
        epochs.append(len(epochs) + 1)
        if epochs[-1] == 2:
            kept.extend(p.array.copy() for p in pop.member(1).params())
        if epochs[-1] == 3:
            pop.head.W.array[1, 0] = np.nan
    return xs, ys, progress, kept


@pytest.mark.filterwarnings('ignore:overflow encountered:RuntimeWarning',
                            'ignore:invalid value encountered:RuntimeWarning')
@pytest.mark.parametrize('poison,best_epoch,failed_at', [
    (poison_targets, 0, 1), (poison_inputs, 0, 1), (poison_parameters, 2, 4)])
def test_a_diverged_member_leaves_the_others_bit_identical(poison, best_epoch, failed_at):
    # K_max stays 3 without member 1: the head's width changes how BLAS
    # rounds the batched products on some CPUs (AMD's kernels do).
    ks, seeds = (3, 1, 2), (5, 6, 7)
    xs, ys = member_data(3, 60)
    xs_val, ys_val = member_data(3, 40, seed=1)
    fit_args = dict(FIT, eval_every=1)
    models = make_models(ks, hidden=(8,), activation='none')
    pop = population.Population.from_models(models)
    xs_p, ys_p, poisoning, frozen_at = poison(pop, xs, ys)
    seen = []

    def progress():
        if poisoning:
            poisoning()
        seen.append([p.array.copy() for p in pop.member(1).params()])
    result = population.fit_population(pop, xs_p, ys_p, xs_val, ys_val, seeds=seeds,
                                       progress=progress, **fit_args)
    others = population.Population.from_models([models[0], models[2]])
    without = population.fit_population(others, xs[[0, 2]], ys[[0, 2]], xs_val[[0, 2]],
                                        ys_val[[0, 2]], seeds=seeds[::2], **fit_args)
    for r, o in ((0, 0), (2, 1)):
        assert result['members'][r] == without['members'][o]
        for a, b in zip(pop.member(r).params(), others.member(o).params()):
            assert np.array_equal(a.array, b.array)
    failed = result['members'][1]
    assert failed['failed'].startswith('the training loss became non-finite')
    assert failed['best_epoch'] == best_epoch
    assert failed['iterations'] == failed_at * 3
    # Frozen where it was best, after every epoch past its failure and at the end.
    assert len(seen) == FIT['epochs'] > failed_at + 1
    for params in seen[failed_at:] + [[p.array for p in pop.member(1).params()]]:
        for a, b in zip(params, frozen_at):
            assert np.array_equal(a, b)
    assert not any(a.any() for r in range(3) for a in padding(pop, r))


# ---------------------------------------------------------------------------
# The benchmark script
# ---------------------------------------------------------------------------

def test_the_benchmark_writes_its_outputs(tmp_path, capsys, monkeypatch):
    out = tmp_path / 'bench'
    monkeypatch.setattr(population_benchmark, 'SWEEP', [
        '--dataset', 'bishop', '-k', '1', '2', '3', '--runs', '1', '--epoch', '3',
        '--train-points', '200', '--val-points', '100', '--test-points', '200',
        '--batchsize', '100', '--hidden', '8', '--no-floor', '--no-figures'])
    population_benchmark.main(['--runs', '2', '--epoch', '3', '--out', str(out),
                               '--sweep-population', '2'])
    with open(out / 'runs.csv') as f:
        rows = list(csv.DictReader(f))
    assert [(r['mode'], int(r['seed'])) for r in rows] == [
        ('sequential', 0), ('sequential', 1), ('population', 0), ('population', 1)]
    assert all(r['failed'] == '' and float(r['train_seconds']) > 0 for r in rows)
    nll = {(r['mode'], r['seed']): float(r['nll_test']) for r in rows}
    for seed in '01':
        # Same data, weights and order: the two modes train the same run.
        assert nll['sequential', seed] == pytest.approx(nll['population', seed], abs=1e-5)
    summary, swept = (out / 'summary.md').read_text().split('## The mixture-count sweep')
    assert 'Wall time, sequential / population: ' in summary
    assert 'Mann-Whitney U, two-sided: p = ' in summary
    table = [line for line in summary.splitlines() if line.startswith('| ')]
    assert len(table) == 3 and all('| 2 | 0 |' in line for line in table[1:])
    # The sweep, timed one run at a time and in populations of 2.
    times = json.loads((out / 'sweep.json').read_text())['seconds']
    assert sorted(times) == ['1', '2'] and all(v > 0 for v in times.values())
    assert 'one at a time / populations: {:.2f}x'.format(times['1'] / times['2']) in swept
    assert (out / 'distribution.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert 'sequential / population: ' in capsys.readouterr().out


@pytest.mark.parametrize('argv,message', [
    (['--runs', '0'], '--runs.*0 is not >= 1'),
    (['--device', 'tpu'], "unknown device 'tpu'"),
    (['--epoch', 'x'], 'argument --epoch'),
])
def test_the_benchmark_refuses_bad_input_in_one_line(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        population_benchmark.main(argv + ['--out', str(tmp_path / 'never')])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert not os.path.exists(tmp_path / 'never')
    assert re.search(message, err), err


# ---------------------------------------------------------------------------
# On a GPU
# ---------------------------------------------------------------------------

@pytest.mark.gpu
def test_on_a_gpu_each_member_trains_as_fit_would_there():
    device = chainer.get_device('@cupy:0')
    ks, seeds = (1, 3, 2), (5, 6, 7)
    xs, ys = member_data(3, 60)
    xs_val, ys_val = member_data(3, 40, seed=1)
    models = make_models(ks, hidden=(8,))
    pop = population.Population.from_models(models)
    poisoned = poison_targets(pop, xs, ys)[1]
    result = population.fit_population(pop, xs, poisoned, xs_val, ys_val, seeds=seeds,
                                       device=device, **FIT)
    assert pop.xp is not np and result['members'][1]['failed']
    for r in (0, 2):
        alone = fit(models[r], xs[r], ys[r], xs_val[r], ys_val[r], seed=seeds[r],
                    device=device, **FIT)
        assert result['members'][r]['best_val_loss'] == pytest.approx(
            alone['best_val_loss'], rel=1e-4)
        for a, b in zip(pop.member(r).params(), models[r].params()):
            np.testing.assert_allclose(chainer.backend.CpuDevice().send(a.array),
                                       chainer.backend.CpuDevice().send(b.array),
                                       rtol=1e-4, atol=1e-5)
