"""Learning converges, shuffling replays, and loading never unpickles."""
import numpy as np
import pytest

import toy  # noqa: F401
import chainer

from toy import datasets, files, mdn, train


def test_k5_beats_k1_on_heldout_nll(tmp_path):
    seeds = np.random.SeedSequence(0).spawn(3)
    x, y = datasets.worldmodels(1000, np.random.default_rng(seeds[0]))
    x_test, y_test = datasets.worldmodels(5000, np.random.default_rng(seeds[1]))
    nll = {}
    for k in (1, 5):
        model = mdn.MDN(hidden=32, k=k, activation='tanh',
                        rng=np.random.default_rng(seeds[2]))
        train.train(model, x, y, epochs=150, batchsize=100,
                    device=chainer.get_device('@numpy'), seed=0,
                    out=str(tmp_path), name='k{}'.format(k), quiet=True)
        nll[k] = mdn.heldout_nll(model, x_test, y_test)
    # the data are three-valued in places: one Gaussian cannot follow them
    assert nll[1] - nll[5] >= 0.3, nll


def test_training_refuses_non_finite_data(tmp_path):
    x, y = datasets.worldmodels(10, np.random.default_rng(0))
    y[3] = np.inf
    with pytest.raises(ValueError, match='y has 1 non-finite.*row 3'):
        train.train(mdn.MDN(hidden=4), x, y, epochs=1, batchsize=5,
                    device=chainer.get_device('@numpy'), seed=0,
                    out=str(tmp_path), name='bad', quiet=True)


def test_chained_shuffle_is_a_seeded_function_of_the_previous_order():
    shuffle = train.ChainedShuffle(seed=7)
    first = shuffle(np.arange(50), 0)
    assert sorted(first) == list(range(50))
    np.testing.assert_array_equal(shuffle(first, 0), train.ChainedShuffle(7)(first, 0))
    assert not np.array_equal(shuffle(first, 0), first)
    assert not np.array_equal(train.ChainedShuffle(8)(np.arange(50), 0), first)


def test_read_npz_safe_refuses_object_arrays(tmp_path):
    path = tmp_path / 'evil.npz'
    np.savez(path, w=np.zeros(3), payload=np.array([{'a': 1}], dtype=object))
    with pytest.raises(ValueError, match='pickled object arrays'):
        files.read_npz_safe(str(path))


def test_read_npz_safe_reads_plain_arrays(tmp_path):
    path = tmp_path / 'ok.npz'
    np.savez(path, w=np.arange(3.0))
    np.testing.assert_array_equal(files.read_npz_safe(str(path))['w'], [0, 1, 2])


def test_read_npz_safe_refuses_a_file_that_is_not_npz(tmp_path):
    path = tmp_path / 'notes.txt'
    path.write_text('not a snapshot')
    with pytest.raises(ValueError, match='not an .npz file'):
        files.read_npz_safe(str(path))
