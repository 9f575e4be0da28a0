"""Optuna storages for the sweep engine (toy.sweep): URLs, checks, studies.

A storage is written into only if it is an empty database or an Optuna
storage: a file or database of anything else, or in-memory SQLite, is refused
before any write, after a read-only look.
"""
import os
import sqlite3
import time
import urllib.request
import warnings

import optuna
import optuna.storages._rdb.models
import sqlalchemy
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

optuna.logging.set_verbosity(optuna.logging.WARNING)

#: Seconds between heartbeats, and without one before a run counts as dead.
#: The environment variables shorten them for tests.
HEARTBEAT = int(os.environ.get('TOY_SWEEP_HEARTBEAT', 20))
GRACE = int(os.environ.get('TOY_SWEEP_GRACE', 60))

#: What a storage raises when its database does not answer.
ERRORS = (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError)


class StorageError(Exception):
    """The storage cannot be used (bad URL, no server, refused, another study)."""


class NoStudy(StorageError):
    """The storage holds no study yet (missing or empty file, no tables, no such study)."""


#: Optuna's tables (and Alembic's record of their schema) by primary key: a
#: database holding any other table belongs to someone else.
_OPTUNA_TABLES = dict(
    {name: [c.name for c in table.primary_key.columns]
     for name, table in optuna.storages._rdb.models.BaseModel.metadata.tables.items()},
    alembic_version=['version_num'])
_SQLITE_HEADER = b'SQLite format 3\x00'


def storage_url(text):
    """`text` as an SQLAlchemy URL, naming the psycopg 3 driver for PostgreSQL.

    SQLAlchemy reads a bare `postgresql://` as psycopg2, which is not
    installed; `postgres://` is the scheme libpq and many hosts print.
    """
    try:
        url = sqlalchemy.engine.make_url(text)
    except (sqlalchemy.exc.ArgumentError, ValueError) as e:  # ValueError: a bad port
        raise StorageError("'{}' is not a database URL ({}): use e.g. "
                           'sqlite:///path/study.db or '
                           'postgresql://user:password@host:5432/database'
                           .format(text, one_line(e)))
    if url.drivername in ('postgresql', 'postgres'):
        url = url.set(drivername='postgresql+psycopg')
    return url.render_as_string(hide_password=False)


def shown(url):
    """The URL without its password, for messages."""
    return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)


def one_line(error):
    error = getattr(error, 'orig', None) or error
    return ' '.join(str(error).split()) or type(error).__name__


def connect(url, existing=False):
    """An RDBStorage on `url` with heartbeats, or StorageError saying why not.

    Nothing is written into a database that holds anything but Optuna's
    tables (`_check_database`). With `existing`, the storage must be an
    Optuna storage already (NoStudy if not), so that nothing is created.
    """
    sqlite = url.startswith('sqlite')
    kwargs = {'connect_args': {'timeout': 120} if sqlite else
              {'connect_timeout': 10}}
    try:
        _check_database(url, kwargs, existing)
        storage = _rdb_storage(url, kwargs)
    except sqlalchemy.exc.ArgumentError as e:
        raise StorageError('{} is not a storage this program can use ({})'.format(
            shown(url), one_line(e)))
    except ImportError as e:
        raise StorageError('no database driver for {} ({}): install the one its '
                           'scheme names'.format(shown(url), one_line(e.__cause__ or e)))
    except ERRORS as e:
        raise StorageError('cannot open the storage {}: {}'.format(
            shown(url), one_line(e)))
    except RuntimeError as e:  # Optuna's table-schema version check
        raise StorageError('{}: {}'.format(shown(url), one_line(e)))
    if sqlite:
        _immediate_transactions(storage.engine)
    return storage


def _check_database(url, engine_kwargs, existing):
    """StorageError unless the database at `url` is empty or an Optuna storage
    (NoStudy if `existing` and it is not a storage yet); it is only read.

    SQLite creates a missing file and takes over an empty or short one as a
    new database, so its file is checked before SQLite opens it, and then
    opened read-only.
    """
    engine_url = sqlalchemy.engine.make_url(url)
    if engine_url.get_backend_name() == 'sqlite':
        path = engine_url.database
        if path in (None, '', ':memory:'):
            raise StorageError(
                '{} is an in-memory database, which the worker processes cannot share '
                'and which is gone when the command ends: give a file, e.g. '
                '--storage sqlite:///path/study.db'.format(shown(url)))
        if not os.path.lexists(path) or os.path.isfile(path) and not os.path.getsize(path):
            if existing:
                raise NoStudy('{} {}'.format(path, 'is empty' if os.path.lexists(path)
                                             else 'does not exist'))
            return
        if not os.path.isfile(path):
            raise StorageError('{} is not a file: choose another --storage or --out'
                               .format(path))
        with open(path, 'rb') as f:
            if f.read(len(_SQLITE_HEADER)) != _SQLITE_HEADER:
                raise StorageError('{} is not a database (no SQLite header), and this '
                                   'program will not overwrite it: choose another '
                                   '--storage or --out'.format(path))
        uri = 'file:{}?mode=ro'.format(urllib.request.pathname2url(os.path.abspath(path)))
        timeout = engine_kwargs['connect_args']['timeout']
        engine = sqlalchemy.create_engine('sqlite://', creator=lambda: sqlite3.connect(
            uri, uri=True, timeout=timeout))
    else:
        engine = sqlalchemy.create_engine(url, **engine_kwargs)
    try:
        inspector = sqlalchemy.inspect(engine)
        tables = {name: inspector.get_pk_constraint(name)['constrained_columns']
                  for name in inspector.get_table_names()}
    finally:
        engine.dispose()
    foreign = sorted(name for name, key in tables.items()
                     if _OPTUNA_TABLES.get(name) != key)
    if foreign:
        raise StorageError('{} holds tables that are not an Optuna storage\'s ({}), and '
                           'this program writes only into an empty database or an Optuna '
                           'storage: choose another --storage or --out'.format(
                               shown(url), ', '.join(foreign)))
    if existing and 'studies' not in tables:
        raise NoStudy('{} holds no Optuna storage'.format(shown(url)))


def _rdb_storage(url, engine_kwargs, tries=3):
    """RDBStorage(url), tried again if another process was creating its tables
    at the same moment (the database then refuses the second CREATE)."""
    for attempt in range(tries):
        try:
            with warnings.catch_warnings():  # heartbeats are marked experimental
                warnings.simplefilter('ignore', optuna.exceptions.ExperimentalWarning)
                return RDBStorage(
                    url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT,
                    grace_period=GRACE,
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback())
        except sqlalchemy.exc.DBAPIError as e:
            # PostgreSQL: a duplicate type; SQLite: "table ... already exists".
            racing = isinstance(e, sqlalchemy.exc.IntegrityError) or (
                'already exists' in str(e))
            if not racing or attempt == tries - 1:
                raise
            time.sleep(1 + attempt)


def _immediate_transactions(engine):
    """Make every SQLite transaction take the write lock when it begins.

    pysqlite starts a transaction only at the first write, so two processes
    could both read a trial as WAITING and both mark it RUNNING: the claim
    would not be atomic. (SQLAlchemy's documented recipe.)
    """
    @sqlalchemy.event.listens_for(engine, 'connect')
    def no_implicit_begin(dbapi_connection, record):
        dbapi_connection.isolation_level = None

    @sqlalchemy.event.listens_for(engine, 'begin')
    def begin_immediate(connection):
        connection.exec_driver_sql('BEGIN IMMEDIATE')

    engine.dispose()  # connections made before the hooks were set


def open_study(storage, name, meta, create=True):
    """The study `name`, created if new and `create` (else NoStudy);
    StorageError if another program made it.

    `meta` (a JSON dict: the script, its version, what defines a point) is
    stored with a new study and must match an existing one.
    """
    try:
        if create:
            study = optuna.create_study(study_name=name, storage=storage,
                                        load_if_exists=True)
        else:
            try:
                study = optuna.load_study(study_name=name, storage=storage)
            except KeyError:
                raise NoStudy("{} holds no study '{}'".format(
                    shown(storage.url), name))
        found = study.user_attrs.get('sweep')
        if found is None and create:
            study.set_user_attr('sweep', meta)
            found = meta
    except ERRORS as e:
        raise StorageError('cannot use the storage: {}'.format(one_line(e)))
    if found != meta:
        raise StorageError(
            "the study '{}' in this storage was made by {} ({}), not by this "
            'version of this script ({}): choose another --storage or --out'
            .format(name, found.get('script') if isinstance(found, dict) else found,
                    _describe(found), _describe(meta)))
    return study


def _describe(meta):
    if not isinstance(meta, dict):
        return repr(meta)
    return ', '.join('{}={}'.format(k, meta[k]) for k in sorted(meta)
                     if k != 'script')
