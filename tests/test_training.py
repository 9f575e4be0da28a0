"""toy/train.py: data checks, standardisation, the shuffle, both loops, snapshots."""
import json
import os

import numpy as np
import pytest
from scipy import stats

import toy  # noqa: F401
import chainer
import chainer.functions as F

from toy import datasets, loss, mdn, nets, preprocess, train, train_custom_loop

CPU = chainer.get_device('@numpy')


def test_k5_beats_k1_on_heldout_nll(tmp_path):
    seeds = np.random.SeedSequence(0).spawn(3)
    x, y = datasets.worldmodels(1000, np.random.default_rng(seeds[0]))
    x_test, y_test = datasets.worldmodels(5000, np.random.default_rng(seeds[1]))
    nll = {}
    for k in (1, 5):
        model = mdn.MDN(hidden=32, k=k, activation='tanh',
                        rng=np.random.default_rng(seeds[2]))
        train.train(model, x, y, epochs=150, batchsize=100, device=CPU, seed=0,
                    out=str(tmp_path), name='k{}'.format(k), quiet=True)
        nll[k] = train_custom_loop.heldout_nll(model, x_test, y_test)
    # the data are three-valued in places: one Gaussian cannot follow them
    assert nll[1] - nll[5] >= 0.3, nll


# ---------------------------------------------------------------------------
# check_data, through every entry point
# ---------------------------------------------------------------------------

def bad_data(case):
    x, y = datasets.worldmodels(10, np.random.default_rng(0))
    if case == 'nan_x':
        x[2] = np.nan
    elif case == 'inf_y':
        y[3] = np.inf
    elif case == 'x_shorter':
        x = x[:8]
    elif case == 'x_longer':
        x = np.concatenate([x, x])
    elif case == 'x_1d':
        x = x[:, 0]
    elif case == 'y_1d':
        y = y[:, 0]
    elif case == 'empty':
        x, y = x[:0], y[:0]
    elif case == 'complex':
        y = y.astype(np.complex64)
    elif case == 'float64_overflow':
        y = y.astype(np.float64)
        y[4] = 1e300
    elif case == 'columns':
        x = np.concatenate([x, x], axis=1)
    return x, y


BAD = {
    'nan_x': r'{x} has 1 non-finite value\(s\) \(NaN or inf\) in 1 row\(s\), the '
             r'first row 2: drop or impute them',
    'inf_y': r'{y} has 1 non-finite value.*first row 3',
    'x_shorter': r'{x} has 8 rows but {y} has 10: give one target row per input row',
    'x_longer': r'{x} has 20 rows but {y} has 10',
    'x_1d': r'{x} must be a 2-D array of inputs \(N, in_dim\), got shape \(10,\): '
            r'use {x}.reshape\(-1, 1\)',
    'y_1d': r'{y} must be a 2-D array of targets \(N, D\), got shape \(10,\): '
            r'use {y}.reshape\(-1, 1\)',
    'empty': r'{x} is empty, shape \(0, 1\): give at least one row',
    'complex': r'{y} must hold real numbers \(float32; float64 and integers are '
               r'cast\), got dtype complex64',
    'float64_overflow': r'{y} has 1 non-finite value\(s\) \(NaN or inf\) once cast '
                        r'to float32.*first row 4',
    'columns': r'{x} has 2 column\(s\) but the model has in_dim = 1: give {x} of '
               r'shape \(N, 1\)',
}


def entry_points(tmp_path):
    def loss(x, y):
        return mdn.MDN(hidden=4).loss(x, y)

    def heldout(x, y):
        return train_custom_loop.heldout_nll(mdn.MDN(hidden=4), x, y)

    def mixture(x, y):
        return mdn.MDN(hidden=4).mixture(x)

    def trainer(x, y):
        return train.train(mdn.MDN(hidden=4), x, y, epochs=1, batchsize=5,
                           device=CPU, seed=0, out=str(tmp_path), name='bad',
                           quiet=True)

    def lean(x, y):
        return train_custom_loop.fit(mdn.MDN(hidden=4), x, y, x, y, epochs=1)

    def lean_validation(x, y):
        good = datasets.worldmodels(10, np.random.default_rng(0))
        return train_custom_loop.fit(mdn.MDN(hidden=4), *good, x, y, epochs=1)

    return {'loss': loss, 'heldout_nll': heldout, 'mixture': mixture,
            'train': trainer, 'fit': lean, 'fit_validation': lean_validation,
            'evaluate': lambda x, y: train_custom_loop.evaluate(mdn.MDN(hidden=4), x, y)}


@pytest.mark.parametrize('case', sorted(BAD))
@pytest.mark.parametrize('entry', ['loss', 'heldout_nll', 'mixture', 'train', 'fit',
                                   'fit_validation', 'evaluate'])
def test_bad_data_gets_a_value_error_naming_argument_and_fix(case, entry, tmp_path):
    x, y = bad_data(case)
    if entry == 'mixture' and ('y' in case.split('_') or case in (
            'complex', 'float64_overflow', 'x_shorter', 'x_longer')):
        pytest.skip('mixture takes x only')
    if entry in ('train', 'fit', 'fit_validation', 'evaluate') and case == 'columns':
        pytest.skip('the loops take any Chain: column counts are the model\'s')
    message = BAD[case].format(**({'x': 'x_val', 'y': 'y_val'}
                                  if entry == 'fit_validation' else {'x': 'x', 'y': 'y'}))
    with pytest.raises(ValueError, match=message):
        entry_points(tmp_path)[entry](x, y)
    assert not (tmp_path / 'bad-snapshot').exists()


def test_float64_and_integer_data_are_cast_to_float32():
    x, y = datasets.worldmodels(20, np.random.default_rng(0))
    model = mdn.MDN(hidden=4, rng=np.random.default_rng(0))
    want = float(model.loss(x, y).array)
    assert float(model.loss(x.astype(np.float64), y.astype(np.float64)).array) == want
    assert train_custom_loop.heldout_nll(model, x.astype(np.float64), y) == \
        pytest.approx(train_custom_loop.heldout_nll(model, x, y))
    cx, cy = preprocess.check_data(np.arange(3)[:, None], [[1], [2], [3]])
    assert cx.dtype == cy.dtype == np.float32


def test_per_step_losses_skip_the_data_checks(monkeypatch):
    """With type checks off (as the loops run) MDN.loss does no pass over the data;
    each loop checks the whole data once."""
    calls, finite = [], []
    check, check_finite = preprocess.check_data, loss.check_finite
    monkeypatch.setattr(preprocess, 'check_data',
                        lambda *a, **k: calls.append(k.get('names')) or check(*a, **k))
    # Nor does the loss check its inputs for NaN and inf (issue 17).
    monkeypatch.setattr(loss, 'check_finite',
                        lambda *a, **k: finite.append(a[0]) or check_finite(*a, **k))
    x, y = datasets.worldmodels(50, np.random.default_rng(0))
    model = mdn.MDN(hidden=4)
    model.loss(x, y)
    assert finite == ['nll_fused_packed']
    with chainer.using_config('type_check', False):
        model.loss(x, y)
    assert calls == [None] and finite == ['nll_fused_packed']
    calls.clear()
    train_custom_loop.fit(model, x, y, x, y, epochs=4, batchsize=5, eval_every=4)
    # training data once, validation data once, and once per evaluation
    assert calls == [None, ('x_val', 'y_val'), None]
    assert finite == ['nll_fused_packed']


# ---------------------------------------------------------------------------
# Standardizer: conversions back to original units
# ---------------------------------------------------------------------------

def test_standardizer_converts_nll_and_targets_to_original_units():
    rng = np.random.default_rng(0)
    x = rng.normal(3, 2, size=(2000, 2)).astype(np.float32)
    y = (rng.normal(size=(2000, 2)) * [0.1, 7] + [5, -3]).astype(np.float32)
    scaler = preprocess.Standardizer(x, y)
    z = scaler.targets(y)
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(z.std(0), 1, rtol=1e-4)
    np.testing.assert_allclose(scaler.untarget(z), y, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(scaler.untarget(np.zeros(2)), y.mean(0), rtol=1e-6)
    np.testing.assert_allclose(scaler.inputs(x).std(0), 1, rtol=1e-4)
    # The same Gaussian, its NLL in standardised units plus log_jacobian, is
    # its NLL in original units computed directly.
    nll_z = -stats.norm.logpdf(z).sum(1).mean()
    nll_y = -stats.norm.logpdf(y, y.mean(0), y.std(0)).sum(1).mean()
    assert nll_z + scaler.log_jacobian == pytest.approx(nll_y, rel=1e-5)
    # Squared errors: standardised ones times y_scale^2 per column.
    pred = z + rng.normal(size=z.shape).astype(np.float32) * 0.1
    np.testing.assert_allclose(((pred - z) ** 2).mean(0) * scaler.y_scale ** 2,
                               ((scaler.untarget(pred) - y) ** 2).mean(0), rtol=1e-3)
    again = preprocess.Standardizer.from_state(scaler.state())
    np.testing.assert_array_equal(again.targets(y), z)


# ---------------------------------------------------------------------------
# The shuffle
# ---------------------------------------------------------------------------

def test_chained_shuffle_is_a_seeded_function_of_the_previous_order():
    shuffle = train_custom_loop.ChainedShuffle(seed=7)
    first = shuffle(np.arange(50), 0)
    assert sorted(first) == list(range(50))
    np.testing.assert_array_equal(shuffle(first, 0), train_custom_loop.ChainedShuffle(7)(first, 0))
    assert not np.array_equal(shuffle(first, 0), first)
    assert not np.array_equal(train_custom_loop.ChainedShuffle(8)(np.arange(50), 0), first)


# ---------------------------------------------------------------------------
# The lean loop
# ---------------------------------------------------------------------------

class Scalar(chainer.Chain):
    """One parameter w; loss(x, y) is `kind`, and every call is recorded."""

    def __init__(self, kind, w=0.0):
        super().__init__()
        self.kind, self.seen = kind, []
        with self.init_scope():
            self.w = chainer.Parameter(np.array([w], np.float32))

    def loss(self, x, y):
        self.seen.append((np.array(x[:, 0]), float(self.w.array[0])))
        w = F.broadcast_to(self.w, y.shape)
        value = (F.mean(w * y) if self.kind == 'linear'
                 else F.mean_squared_error(w, y))
        chainer.report({'loss': value}, self)
        return value


def ones(n):
    return np.arange(n, dtype=np.float32)[:, None], np.ones((n, 1), np.float32)


def test_fit_keeps_the_best_validation_parameters_not_the_last():
    # w walks from 0 towards the training target 1; the validation target 0.3
    # is passed on the way, so the validation loss falls, then rises.
    x, y = ones(4)
    model = Scalar('square')
    info = train_custom_loop.fit(model, x, y, x, 0.3 * y, epochs=60, lr=0.05, lr_final=0.05,
                     eval_every=1)
    epochs, losses = zip(*info['history'])
    assert epochs == tuple(range(1, 61))
    best = int(np.argmin(losses))
    assert 0 < best < 59 and losses[-1] > 10 * losses[best]
    assert info['best_epoch'] == epochs[best]
    assert info['best_val_loss'] == losses[best]
    assert train_custom_loop.evaluate(model, x, 0.3 * y) == pytest.approx(losses[best])
    assert abs(float(model.w.array[0]) - 0.3) < 0.05


def test_fit_step_size_decays_geometrically_from_lr_to_lr_final():
    # A constant gradient: each Adam step moves w by exactly the step size.
    x, y = ones(10)
    model = Scalar('linear')
    info = train_custom_loop.fit(model, x, y, x, y, epochs=5, batchsize=4, lr=0.1,
                     lr_final=0.001)
    assert info['iterations'] == 15
    w = [w for rows, w in model.seen if len(rows) < 10] + [float(model.w.array[0])]
    steps = -np.diff(w)
    np.testing.assert_allclose(steps, 0.1 * 0.01 ** (np.arange(15) / 14), rtol=1e-4)


def test_fit_epochs_are_permutations_of_all_the_data_and_end_with_an_evaluation():
    x, y = ones(10)
    model = Scalar('linear')
    info = train_custom_loop.fit(model, x, y, x, y, epochs=6, batchsize=3, eval_every=4,
                     seed=1)
    # 4 batches an epoch (3 + 3 + 3 + 1), then validation in one call
    training = [rows for rows, _ in model.seen if len(rows) < 10]
    assert len(training) == 6 * 4 and [len(r) for r in training[:4]] == [3, 3, 3, 1]
    epochs = [np.concatenate(training[i:i + 4]) for i in range(0, 24, 4)]
    for order in epochs:
        assert sorted(order) == list(range(10))
    assert len({tuple(order) for order in epochs}) == 6
    # evaluations at epoch 4 and, though 6 is not a multiple of 4, at the end
    assert [epoch for epoch, _ in info['history']] == [4, 6]
    assert info['best_epoch'] == 6    # a linear loss only falls
    full = [rows for rows, _ in model.seen if len(rows) == 10]
    assert len(full) == 2


def test_fit_full_batch_takes_one_step_per_epoch():
    x, y = ones(10)
    info = train_custom_loop.fit(Scalar('linear'), x, y, x, y, epochs=7, batchsize=None)
    assert info['iterations'] == 7 and info['epochs'] == 7


class Exploding(Scalar):
    """A loss that becomes inf at the `at`-th call."""

    def __init__(self, at):
        super().__init__('linear')
        self.at = at

    def loss(self, x, y):
        value = super().loss(x, y)
        if len(self.seen) == self.at:
            value = value * np.float32(np.inf)
            chainer.report({'loss': value}, self)
        return value


@pytest.mark.filterwarnings('ignore::RuntimeWarning')   # Adam's NaN arithmetic
def test_both_loops_raise_diverged_when_the_training_loss_is_not_finite(tmp_path):
    x, y = ones(10)
    with pytest.raises(train_custom_loop.Diverged, match=r'non-finite \(-?(inf|nan)\) between epoch '
                                             r'3 and 4 \(iterations 9 to 16\)'):
        train_custom_loop.fit(Exploding(at=10), x, y, x, y, epochs=6, batchsize=3, eval_every=2)
    # 10 points in batches of 3: epoch 4 ends with iteration 14
    with pytest.raises(train_custom_loop.Diverged, match=r'non-finite \(-?(inf|nan)\) by epoch 4 '
                                             r'\(iteration 14\)'):
        train.train(Exploding(at=14), x, y, epochs=8, batchsize=3, device=CPU,
                    seed=0, out=str(tmp_path), name='boom', quiet=True)


# ---------------------------------------------------------------------------
# The Trainer loop: resuming really continues the snapshot's state
# ---------------------------------------------------------------------------

def test_resume_continues_the_snapshot_and_runs_only_the_remaining_epochs(tmp_path):
    x, y = datasets.worldmodels(60, np.random.default_rng(0))
    run = dict(epochs=6, batchsize=20, device=CPU, seed=3, quiet=True,
               options={'hidden': 8})

    def model(init):
        return mdn.MDN(hidden=8, activation='tanh', rng=np.random.default_rng(init))
    full = model(0)
    train.train(full, x, y, out=str(tmp_path / 'full'), name='mdn', **run)
    part = model(0)
    train.train(part, x, y, out=str(tmp_path / 'part'), name='mdn',
                **dict(run, epochs=3))
    # Another initialisation: only the snapshot's weights can make it match.
    resumed = model(1)
    calls = []
    loss = resumed.loss
    resumed.loss = lambda *a: calls.append(1) or loss(*a)
    trainer = train.train(resumed, x, y, out=str(tmp_path / 'part'), name='mdn',
                          resume=str(tmp_path / 'part' / 'mdn-snapshot'), **run)
    assert len(calls) == 3 * 3                  # epochs 4 to 6, 3 batches each
    assert trainer.updater.iteration == 6 * 3
    for (name, want), got in zip(full.namedparams(), resumed.params()):
        np.testing.assert_array_equal(got.array, want.array, err_msg=name)
    log = json.load(open(str(tmp_path / 'part' / 'mdn-log.json')))
    assert [entry['epoch'] for entry in log] == [1, 2, 3, 4, 5, 6]


def test_a_snapshot_of_another_model_is_one_line(tmp_path):
    x, y = datasets.worldmodels(20, np.random.default_rng(0))
    run = dict(epochs=1, batchsize=10, device=CPU, seed=0, out=str(tmp_path),
               quiet=True)
    train.train(nets.LeastSquares(hidden=4), x, y, name='least_squares', **run)
    with pytest.raises(train.SnapshotMismatch,
                       match='is a snapshot of a LeastSquares, not of a MDN'):
        train.train(mdn.MDN(hidden=4), x, y, name='mdn',
                    resume=str(tmp_path / 'least_squares-snapshot'), **run)
    # The same class, another architecture, and no option says so: the layout.
    train.train(mdn.MDN(hidden=4, k=2), x, y, name='k2', **run)
    with pytest.raises(train.SnapshotMismatch,
                       match=r'updater/.*head/.* is \(6, 4\) float32 where this model '
                             r'and options need \(15, 4\) float32'):
        train.train(mdn.MDN(hidden=4, k=5), x, y, name='k5',
                    resume=str(tmp_path / 'k2-snapshot'), **run)
    assert not (tmp_path / 'k5-snapshot').exists()


def test_train_full_batch_is_batchsize_none(tmp_path):
    x, y = ones(10)
    trainer = train.train(Scalar('linear'), x, y, epochs=3, batchsize=None,
                          device=CPU, seed=0, out=str(tmp_path), name='full',
                          quiet=True)
    assert trainer.updater.iteration == 3


# ---------------------------------------------------------------------------
# Issue 17: lengths that are not positive ints, damaged snapshots
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('kwargs, message', [
    ({'epochs': 0}, r'^epochs must be a positive int, not 0$'),
    ({'epochs': 2.5}, r'^epochs must be a positive int, not 2\.5$'),
    ({'epochs': 3, 'batchsize': 0}, r'^batchsize must be a positive int or None, not 0$'),
    ({'epochs': 3, 'batchsize': -5}, r'^batchsize must be a positive int or None, not -5$'),
    ({'epochs': 3, 'eval_every': 0}, r'^eval_every must be a positive int, not 0$'),
])
def test_fit_refuses_lengths_that_are_not_positive_ints(kwargs, message):
    """Issue 17, item 13: epochs = 0 gave an IndexError, batchsize = 0 a
    ZeroDivisionError."""
    x, y = ones(10)
    with pytest.raises(ValueError, match=message):
        train_custom_loop.fit(Scalar('linear'), x, y, x, y, **kwargs)


@pytest.mark.parametrize('kwargs, message', [
    ({'epochs': 0, 'batchsize': 5}, r'^epochs must be a positive int'),
    ({'epochs': 2, 'batchsize': 0}, r'^batchsize must be a positive int or None'),
    ({'epochs': 2, 'batchsize': 5, 'frequency': 0}, r'^frequency must be a positive int'),
])
def test_train_refuses_lengths_that_are_not_positive_ints(kwargs, message, tmp_path):
    x, y = ones(10)
    with pytest.raises(ValueError, match=message):
        train.train(Scalar('linear'), x, y, device=CPU, seed=0, out=str(tmp_path),
                    name='bad', quiet=True, **kwargs)
    assert not (tmp_path / 'bad-snapshot').exists()


def snapshot_of_one_epoch(tmp_path):
    """(x, y, the run's arguments, the path of its snapshot's arrays)."""
    x, y = datasets.worldmodels(20, np.random.default_rng(0))
    run = dict(batchsize=10, device=CPU, seed=0, out=str(tmp_path), quiet=True,
               options={'hidden': 4})
    train.train(mdn.MDN(hidden=4, rng=np.random.default_rng(0)), x, y, epochs=1,
                name='mdn', **run)
    return x, y, run, str(tmp_path / 'mdn-snapshot')


def resume(x, y, run, path):
    """Two epochs from the snapshot at `path`, written into out/resumed."""
    return train.train(mdn.MDN(hidden=4, rng=np.random.default_rng(0)), x, y, epochs=2,
                       name='mdn', resume=path,
                       **dict(run, out=os.path.join(run['out'], 'resumed')))


def test_a_snapshot_at_the_end_of_its_data_is_damaged(tmp_path):
    """The iterator's position must lie in [0, N): at N it would start past
    the last point (a mutant accepting position == N survived)."""
    x, y, run, path = snapshot_of_one_epoch(tmp_path)
    state = dict(np.load(path))
    for position, ok in ((len(x) - 1, True), (len(x), False)):
        state['updater/iterator:main/current_position'] = np.array(position)
        np.savez(str(tmp_path / 'edited.npz'), **state)
        if ok:
            resume(x, y, run, str(tmp_path / 'edited.npz'))
            continue
        with pytest.raises(train.SnapshotMismatch, match=r'the iterator state is '
                                                         r'damaged.* of the 20 points'):
            resume(x, y, run, str(tmp_path / 'edited.npz'))


def test_a_snapshot_missing_any_member_of_the_run_is_refused_in_one_line(tmp_path):
    """The options, the iterator's state, the iteration count, the model's
    parameters and Adam's state are needed to resume: without any one of them
    resume gives SnapshotMismatch, one line, never a KeyError traceback (a
    mutant narrowing the check of missing members survived). Triggers'
    states are optional to Chainer itself."""
    x, y, run, path = snapshot_of_one_epoch(tmp_path)
    state = dict(np.load(path))
    # Every member the checks read, and one of each other kind.
    needed = sorted(key for key in state if key.startswith('updater/iter'))
    assert {'updater/iterator:main/epoch', 'updater/iterator:main/order',
            'updater/iterator:main/current_position', 'updater/iteration'} <= set(needed)
    needed += [train.OPTIONS_KEY, 'updater/model:main/head/W',
               'updater/optimizer:main/head/W/m']
    for key in needed:
        np.savez(str(tmp_path / 'edited.npz'),
                 **{k: a for k, a in state.items() if k != key})
        with pytest.raises(train.SnapshotMismatch) as e:
            resume(x, y, run, str(tmp_path / 'edited.npz'))
        assert '\n' not in str(e.value), key
    assert not (tmp_path / 'resumed' / 'mdn-snapshot').exists()


def test_fit_reports_progress_once_per_epoch():
    x, y = datasets.worldmodels(40, np.random.default_rng(0))
    ticks = []
    train_custom_loop.fit(mdn.MDN(hidden=4, rng=np.random.default_rng(0)), x, y, x, y, epochs=7,
              batchsize=10, eval_every=3, progress=lambda: ticks.append(1))
    assert len(ticks) == 7


def test_trainer_logs_every_epoch_and_the_heldout_loss_where_measured(tmp_path):
    x, y = datasets.worldmodels(60, np.random.default_rng(0))
    x_test, y_test = datasets.worldmodels(50, np.random.default_rng(1))
    model = mdn.MDN(hidden=4, rng=np.random.default_rng(0))
    train.train(model, x, y, epochs=5, batchsize=20, device=CPU, seed=0,
                out=str(tmp_path), name='mdn', quiet=True, heldout=(x_test, y_test),
                loss_label='NLL, nats per point')
    log = json.load(open(str(tmp_path / 'mdn-log.json')))
    assert [e['epoch'] for e in log] == [1, 2, 3, 4, 5]
    # Measured after the last epoch on the final parameters: the same number
    # an independent evaluation of the trained model gives.
    assert log[-1]['validation/main/loss'] == pytest.approx(
        train_custom_loop.evaluate(model, x_test, y_test), rel=1e-6)
    assert (tmp_path / 'mdn-loss.png').stat().st_size > 0


def test_fit_trains_the_quantile_start_first_then_the_loss(monkeypatch):
    x, y = datasets.generate('worldmodels', 300, np.random.default_rng(0))
    model = mdn.MDN(hidden=[8], k=2, activation='tanh', rng=np.random.default_rng(1))
    calls = []
    for name in ('quantile_start', 'loss'):
        monkeypatch.setattr(model, name, lambda xb, yb, name=name, f=getattr(model, name):
                            calls.append(name) or f(xb, yb))
    train_custom_loop.fit(model, x, y, x, y, epochs=3, batchsize=100, quantile_start=2)
    # Three steps an epoch, then the validation (the loss, on one batch).
    assert calls == (['quantile_start'] * 3 + ['loss']) * 2 + ['loss'] * 4
    for bad in (3, -1):
        with pytest.raises(ValueError, match='quantile_start must be at least 0 and '
                           'fewer than the 3 epochs'):
            train_custom_loop.fit(model, x, y, x, y, epochs=3, quantile_start=bad)
