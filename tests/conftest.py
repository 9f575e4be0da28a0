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


@pytest.fixture(scope='session')
def postgres():
    """A throwaway PostgreSQL server (tools/pg_server.py) for the session.

    Skipped, with the reason, where none can be started; under CI (CI set)
    that fails instead: CI must run these tests.
    """
    import os
    from tools import pg_server
    try:
        server = pg_server.started()
    except pg_server.Unavailable as e:
        if os.environ.get('CI'):
            pytest.fail('CI is set but no PostgreSQL server could be started: {}'
                        .format(e))
        pytest.skip('no PostgreSQL server could be started: {}'.format(e))
    try:
        yield server
    finally:
        server.stop()
