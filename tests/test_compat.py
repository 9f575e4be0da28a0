"""toy.compat makes Chainer 7.8.1 work on this NumPy (the suite runs on 1.26 and 2.x)."""
import subprocess
import sys

import numpy as np

import toy  # noqa: F401
import chainer
import chainer.distributions as D
import chainer.functions as F


def test_chainer_imports_and_computes():
    x = chainer.Variable(np.arange(6, dtype=np.float32).reshape(2, 3))
    y = F.sum(F.square(x))
    y.backward()
    np.testing.assert_array_equal(x.grad, 2 * x.array)


def test_sctypes_serve_as_strided():
    # as_strided is the chainer function that reads numpy.sctypes.
    x = np.arange(12, dtype=np.float32)
    y = F.as_strided(x, (3, 2), (4, 1))
    np.testing.assert_array_equal(
        y.array, np.lib.stride_tricks.as_strided(x, (3, 2), (16, 4)))


def test_categorical_log_prob_picks_log_p():
    p = np.array([[0.2, 0.3, 0.5], [0.6, 0.1, 0.3]], np.float32)
    x = np.array([2, 0])
    for value in (x, chainer.Variable(x)):
        log_prob = D.Categorical(p).log_prob(value)
        np.testing.assert_allclose(log_prob.array, np.log([0.5, 0.6]), rtol=1e-6)


def test_import_without_numpy_distutils():
    # Python >= 3.12 has no numpy.distutils: hide it and import chainer afresh.
    code = ("import sys\n"
            "sys.modules['numpy.distutils'] = None\n"
            "sys.modules['numpy.distutils.system_info'] = None\n"
            "import toy, chainer.functions, numpy.distutils.system_info as s\n"
            "assert s.get_info('blas_opt') == {}\n"
            "print('ok')\n")
    run = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == 'ok'
