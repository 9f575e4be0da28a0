import pytest

import toy  # noqa: F401  (compat patches before chainer)
from chainer.backends import cuda


def pytest_collection_modifyitems(config, items):
    if cuda.available:
        return
    skip = pytest.mark.skip(reason='needs CuPy and a working CUDA device')
    for item in items:
        if item.get_closest_marker('gpu') is not None:
            item.add_marker(skip)
