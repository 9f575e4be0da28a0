"""Make Chainer 7.8.1, the final release, import and run on NumPy 2 and Python >= 3.12.

`import toy` imports this module before anything imports chainer. Each patch is
a no-op on a stack that does not need it, so the same code runs on every tested
combination: Python 3.11 and 3.12 with NumPy 1.26 and 2.x, Python 3.13 with
NumPy 2.x (`make test`). What each patch is for, and where it acts:

- CHAINER_WARN_VERSION_MISMATCH: any Python and NumPy, with CuPy 13 or 14.
- CHAINER_CUDNN=0: with a CuPy that has no cuDNN (cupy-cuda13x on the H100
  machine this was run on), where Chainer would warn on every GPU run.
- the pkg_resources warning filter: wherever setuptools warns that
  pkg_resources is deprecated, as 81 does (it must stay < 82 for Chainer): in
  `make`'s venvs on Python >= 3.12, which install setuptools 81; those on 3.11
  keep the setuptools 65 that venv bundles there, which does not warn.
- `numpy.sctypes`: NumPy 2.x, any Python (NumPy 2.0 removed it).
- `numpy.distutils`: Python >= 3.12, either NumPy, where it does not exist
  (stand-in module); on Python 3.11 it exists and is imported once, quietly.
- `Categorical.log_prob`: NumPy 2.x, any Python (`meshgrid` returns a tuple).

Python 3.13 needs nothing beyond what 3.12 needs.
"""
import importlib.util
import os
import sys
import types
import warnings

import numpy

# Chainer compares CuPy against the 7.x series it was released with and warns
# on every import; CuPy 13 and 14 work with it, so the warning is noise.
os.environ.setdefault('CHAINER_WARN_VERSION_MISMATCH', '0')

# No function an MDN uses calls cuDNN (Linear is cuBLAS, the rest CuPy's own
# kernels), but Chainer warns, in three lines on stderr, on every GPU run
# where CuPy lacks it. Set CHAINER_CUDNN=1 to see the warning again.
os.environ.setdefault('CHAINER_CUDNN', '0')

# setuptools < 82 (pinned because chainer imports pkg_resources) warns that
# pkg_resources is deprecated each time chainer starts.
warnings.filterwarnings('ignore', message='pkg_resources is deprecated',
                        category=UserWarning)

# NumPy 2 removed `numpy.sctypes`; chainer.functions.array.as_strided reads
# sctypes['int'] and sctypes['float'] when chainer.functions is imported.
if not hasattr(numpy, 'sctypes'):
    numpy.sctypes = {
        'int': [numpy.int8, numpy.int16, numpy.int32, numpy.int64],
        'uint': [numpy.uint8, numpy.uint16, numpy.uint32, numpy.uint64],
        'float': [numpy.float16, numpy.float32, numpy.float64,
                  numpy.longdouble],
        'complex': [numpy.complex64, numpy.complex128, numpy.clongdouble],
        'others': [bool, object, bytes, str, numpy.void],
    }

# numpy.distutils does not exist on Python >= 3.12. chainer's start-up check
# imports numpy.distutils.system_info only to look for Apple's Accelerate BLAS
# on macOS; an empty get_info() answers "not Accelerate".
if importlib.util.find_spec('numpy.distutils') is None:
    _system_info = types.ModuleType('numpy.distutils.system_info')
    _system_info.get_info = lambda name, notfound_action=0: {}
    _distutils = types.ModuleType('numpy.distutils')
    _distutils.system_info = _system_info
    sys.modules['numpy.distutils'] = _distutils
    sys.modules['numpy.distutils.system_info'] = _system_info
else:
    # Where it exists it warns, deprecated, on import (and so does the
    # setuptools distutils it loads): import it once here, quietly, so that
    # chainer finds it loaded.
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        import numpy.distutils.system_info  # noqa: F401

import chainer  # noqa: E402  (must come after the patches above)
from chainer.distributions import categorical  # noqa: E402


def _categorical_log_prob(self, x):
    # NumPy 2's meshgrid returns a tuple, and chainer's `mg + [x]` then fails:
    # build the same index list from a list.
    mg = list(numpy.meshgrid(*(range(i) for i in self.batch_shape),
                             indexing='ij'))
    if isinstance(x, chainer.Variable):
        x = x.array
    return self.log_p[mg + [x.astype(numpy.int32)]]


categorical.Categorical.log_prob = _categorical_log_prob
