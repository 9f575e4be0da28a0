"""Grid sweeps on Optuna: every point trained once, by any number of worker
processes on any number of machines that share one storage.

A grid is a list of points, each a dict of JSON scalars with a unique string
key. Points are enqueued as WAITING trials (user attrs `key` and `point`); a
worker claims one with the storage's atomic WAITING -> RUNNING update (a row
lock on PostgreSQL, an immediate transaction on SQLite), beats a heartbeat
while it trains, and stores the objective's value and its row (user attr
`row`) when it is done.

Exactly once: two invocations can enqueue the same key at the same time, so
a key belongs to the trial with the smallest number among its trials that
are neither failed nor dropped; a worker that claims any other trial of the
key drops it (PRUNED, user attr `duplicate_of`) without training. A worker
killed hard stops beating: after the grace period any worker marks its trial
failed and Optuna's RetryHeartbeatStaleTrialCallback enqueues it again. A run
that raises is FAILED with its reason (user attr `failure`) and is enqueued
again only when asked (`retry_failed`), as is one whose score is not finite.

A storage is written into only if it is an empty database or an Optuna
storage: a file or database of anything else is refused before any write.
"""
import csv
import hashlib
import itertools
import json
import math
import multiprocessing
import os
import signal
import sqlite3
import sys
import threading
import time
import urllib.request
import warnings

import optuna
import optuna.storages._rdb.models
import sqlalchemy
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState
from tqdm import tqdm

from chainer import backend

from toy import cli, files, train

#: Seconds between heartbeats, and without one before a run counts as dead.
#: The environment variables shorten them for tests.
HEARTBEAT = int(os.environ.get('TOY_SWEEP_HEARTBEAT', 20))
GRACE = int(os.environ.get('TOY_SWEEP_GRACE', 60))
#: Exit status of a worker process whose storage stopped answering.
LOST = 3
_STORAGE_ERRORS = (sqlalchemy.exc.SQLAlchemyError,
                   optuna.exceptions.StorageInternalError)

optuna.logging.set_verbosity(optuna.logging.WARNING)


class StorageError(Exception):
    """The storage cannot be used (bad URL, no server, refused, another study)."""


class NoStudy(StorageError):
    """The storage holds no study yet (missing or empty file, no tables, no such study)."""


class StorageLost(Exception):
    """The storage stopped answering during the sweep."""


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
                           .format(text, _one_line(e)))
    if url.drivername in ('postgresql', 'postgres'):
        url = url.set(drivername='postgresql+psycopg')
    return url.render_as_string(hide_password=False)


def shown(url):
    """The URL without its password, for messages."""
    return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)


def _one_line(error):
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
            shown(url), _one_line(e)))
    except ImportError as e:
        raise StorageError('no database driver for {} ({}): install the one its '
                           'scheme names'.format(shown(url), _one_line(e.__cause__ or e)))
    except _STORAGE_ERRORS as e:
        raise StorageError('cannot open the storage {}: {}'.format(
            shown(url), _one_line(e)))
    except RuntimeError as e:  # Optuna's table-schema version check
        raise StorageError('{}: {}'.format(shown(url), _one_line(e)))
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
    except _STORAGE_ERRORS as e:
        raise StorageError('cannot use the storage: {}'.format(_one_line(e)))
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


def trials(study, warn=False):
    """The study's trials (not copied). One whose stored attributes are not
    valid JSON (edited by hand) is left out, as if it were not there, with a
    one-line warning on stderr if `warn`: Optuna cannot read any trial else."""
    try:
        return study.get_trials(deepcopy=False)
    except json.JSONDecodeError:
        pass
    storage, found = study._storage, []
    for number in itertools.count():
        try:
            trial_id = storage.get_trial_id_from_study_id_trial_number(
                study._study_id, number)
        except KeyError:  # numbers run from 0 without gaps
            return found
        try:
            found.append(storage.get_trial(trial_id))
        except json.JSONDecodeError as e:
            if warn:
                print('warning: skipping trial {}: a stored attribute is not valid JSON '
                      '({})'.format(number, e), file=sys.stderr)


def _key(trial):
    key = trial.user_attrs.get('key')
    return key if isinstance(key, str) else None


def owners(trials):
    """{key: the trial that owns it}: the smallest number not failed or dropped."""
    owner = {}
    for trial in sorted(trials, key=lambda t: t.number):
        key = _key(trial)
        if key is not None and key not in owner and trial.state not in (
                TrialState.FAIL, TrialState.PRUNED):
            owner[key] = trial
    return owner


def failures(trials):
    """{key: its latest trial that failed with a reason}."""
    failed = {}
    for trial in sorted(trials, key=lambda t: t.number):
        if trial.state == TrialState.FAIL and 'failure' in trial.user_attrs:
            failed[_key(trial)] = trial
    return failed


def outcomes(study, warn=False):
    """{key: its finished trial}: COMPLETE, or FAIL with a `failure` reason,
    for every key of the study that is done (pending keys are left out).
    `warn`: see `trials`."""
    found = trials(study, warn)
    done = failures(found)
    for key, trial in owners(found).items():
        if trial.state == TrialState.COMPLETE:
            done[key] = trial
        elif trial.state in (TrialState.RUNNING, TrialState.WAITING):
            done.pop(key, None)
    return done


def enqueue(study, points, key, retry_failed=False):
    """Enqueue the points (dicts) that have no trial yet; key(point) -> str.

    A point whose runs all failed with a reason is enqueued again only if
    `retry_failed`; one whose run died (failed without a reason) always is.
    Returns the number enqueued.
    """
    found = trials(study)
    owned, failed = owners(found), failures(found)
    new = [p for p in points if key(p) not in owned
           and (retry_failed or key(p) not in failed)]
    study.add_trials([optuna.trial.create_trial(
        state=TrialState.WAITING, system_attrs={'fixed_params': p},
        user_attrs={'key': key(p), 'point': p}) for p in new])
    return len(new)


class _Heartbeat(threading.Thread):
    """Records the trial's heartbeat every HEARTBEAT seconds until stopped;
    a storage error ends it quietly (the worker's next call reports it)."""

    def __init__(self, storage, trial_id):
        super().__init__(daemon=True)
        self.storage, self.trial_id = storage, trial_id
        self.stopped = threading.Event()

    def run(self):
        while not self.stopped.wait(HEARTBEAT):
            try:
                self.storage.record_heartbeat(self.trial_id)
            except _STORAGE_ERRORS:
                return

    def stop(self):
        """Stop beating, and wait until a beat under way has ended."""
        self.stopped.set()
        self.join()


def _claim(study, keys):
    """Claim a WAITING trial of `keys` (in their order); None if there is none.

    Returns (trial, busy): busy is whether any of keys is not done yet, so
    the caller looks again. A key read as WAITING may have been claimed by
    another worker after the read, and one RUNNING elsewhere may die and come
    back: either way this invocation must not end (and export) without it.
    """
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # re-enqueues the dead ones
    found = trials(study)
    wanted = {k: i for i, k in enumerate(keys)}
    waiting = sorted((t for t in found if t.state == TrialState.WAITING
                      and _key(t) in wanted),
                     key=lambda t: (wanted[_key(t)], t.number))
    storage = study._storage
    for trial in waiting:
        # The heartbeat comes first: a worker killed between the claim and
        # its first beat would otherwise leave a RUNNING trial that never
        # goes stale. (Stale checks look at RUNNING trials only.)
        storage.record_heartbeat(trial._trial_id)
        try:
            if storage.set_trial_state_values(trial._trial_id, TrialState.RUNNING):
                return trial, True
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    owned = owners(found)
    return None, any(owned[k].state in (TrialState.RUNNING, TrialState.WAITING)
                     for k in keys if k in owned)


def work(url, name, keys, objective):
    """Run the trials of `keys` until none is waiting or running.

    objective(point) -> (value, row dict). Raises StorageLost if the storage
    stops answering; KeyboardInterrupt ends the run in hand as failed
    without a reason, so the next invocation runs it again.
    """
    try:
        storage = connect(url)
        study = optuna.load_study(study_name=name, storage=storage)
        while True:
            trial, busy = _claim(study, keys)
            if trial is None:
                if not busy:
                    return
                time.sleep(max(1, HEARTBEAT / 2))
                continue
            _run(study, trial, objective)
    except (StorageError,) + _STORAGE_ERRORS as e:
        raise StorageLost(_one_line(e))


def _run(study, trial, objective):
    storage, key = study._storage, _key(trial)
    owner = owners(trials(study))[key]
    if owner.number != trial.number:
        storage.set_trial_user_attr(trial._trial_id, 'duplicate_of', owner.number)
        study.tell(trial.number, state=TrialState.PRUNED)
        return
    heartbeat = _Heartbeat(storage, trial._trial_id)
    heartbeat.start()
    try:
        value, row = objective(trial.user_attrs['point'])
        if not math.isfinite(value):  # Optuna would store it as COMPLETE
            raise ValueError('the score is {}, not a finite number'.format(value))
    except KeyboardInterrupt:
        study.tell(trial.number, state=TrialState.FAIL)
        raise
    except Exception as e:  # a failed run is data, whatever the cause
        reason = '{}: {}'.format(type(e).__name__, _one_line(e))
        storage.set_trial_user_attr(trial._trial_id, 'failure', reason)
        study.tell(trial.number, state=TrialState.FAIL)
        tqdm.write('{} failed: {}'.format(key, reason), file=sys.stderr)
        return
    finally:
        heartbeat.stop()
    storage.set_trial_user_attr(trial._trial_id, 'row', row)
    study.tell(trial.number, value)


def _stop(signum, frame):
    raise KeyboardInterrupt


def _worker_main(url, name, keys, objective):
    """Entry point of a worker process: exit status 0, LOST or 130.

    It ignores Ctrl-C (inherited from its start, so that none arrives while it
    imports); the parent stops it with SIGTERM, which ends it as Ctrl-C would.
    """
    signal.signal(signal.SIGTERM, _stop)
    try:
        work(url, name, keys, objective)
    except StorageLost:
        raise SystemExit(LOST)
    except KeyboardInterrupt:
        raise SystemExit(130)


def run_workers(url, name, keys, objective, jobs=1):
    """Train every key of the grid (enqueued beforehand) with `jobs` workers.

    jobs 1 trains in this process; more start worker processes (spawn: each
    opens its own connections). A tqdm bar follows the storage, so it counts
    the work of every machine, on these keys only. Raises StorageLost or
    KeyboardInterrupt.
    """
    done = _Progress(url, name, keys)
    done.start()
    try:
        if jobs == 1:
            work(url, name, keys, objective)
            return
        context = multiprocessing.get_context('spawn')
        workers = [context.Process(target=_worker_main,
                                   args=(url, name, keys, objective))
                   for _ in range(jobs)]
        handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            for w in workers:
                w.start()
        finally:
            signal.signal(signal.SIGINT, handler)
        try:
            for w in workers:
                w.join()
        finally:
            for w in workers:
                if w.is_alive():
                    w.terminate()
                w.join()
        codes = [w.exitcode for w in workers]
        if LOST in codes:
            raise StorageLost(shown(url))
        for code in codes:
            if code:  # killed: the others have redone its run
                tqdm.write('a worker process ended with exit status {}'.format(code),
                           file=sys.stderr)
    finally:
        done.stop()


class _Progress(threading.Thread):
    """A tqdm bar over the grid's keys, polling the storage every few seconds."""

    def __init__(self, url, name, keys, every=2.0):
        super().__init__(daemon=True)
        self.url, self.name, self.keys, self.every = url, name, set(keys), every
        self.stopped = threading.Event()
        self.bar = tqdm(total=len(keys), unit='run', dynamic_ncols=True)

    def count(self, study):
        return len(self.keys.intersection(outcomes(study)))

    def run(self):
        try:
            study = optuna.load_study(study_name=self.name,
                                      storage=connect(self.url))
            while True:
                self.bar.update(self.count(study) - self.bar.n)
                if self.stopped.wait(self.every):
                    self.bar.update(self.count(study) - self.bar.n)
                    return
        except (StorageError,) + _STORAGE_ERRORS:
            return

    def stop(self):
        self.stopped.set()
        self.join()
        self.bar.close()


def fingerprint(options):
    """8 hex digits naming a dict of JSON values (the options that define a run)."""
    blob = json.dumps(options, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:8]


def csv_is_ours(path, fields):
    """Whether `path` is absent, or a file whose header is `fields` (so that
    exporting over it loses nothing but an earlier export)."""
    if not os.path.lexists(path):
        return True
    if not os.path.isfile(path):
        return False
    with open(path, newline='', encoding='utf-8', errors='replace') as f:
        return next(csv.reader(f), None) == fields


def export(study, path, fields, parse):
    """Write every finished run's row (user attr `row`) to the CSV `path`, and
    return ({key: parse(row)}, {key: failure reason}).

    parse(row) checks a row and returns what the caller needs (e.g. numbers);
    a row it refuses (KeyError, TypeError, ValueError), or with columns other
    than `fields`, is left out with a one-line warning on stderr. Every key
    appears at most once.
    """
    rows, failed, lines = {}, {}, []
    for key, trial in sorted(outcomes(study, warn=True).items()):
        if 'failure' in trial.user_attrs:
            failed[key] = trial.user_attrs['failure']
            continue
        row = trial.user_attrs.get('row')
        try:
            if not isinstance(row, dict) or not set(row) <= set(fields):
                raise ValueError('not a row of this table: {!r:.60}'.format(row))
            rows[key] = parse(row)
        except (KeyError, TypeError, ValueError) as e:
            print('warning: skipping trial {} ({}): {}'.format(trial.number, key, e),
                  file=sys.stderr)
            continue
        lines.append(row)
    with files.atomic_write(path) as f:
        writer = csv.DictWriter(f, fieldnames=fields, lineterminator='\n')
        writer.writeheader()
        writer.writerows(lines)
    return rows, failed


def save_model(path, model, scaler):
    """A trained Chainer model's parameters and its train.Standardizer's
    state, as one .npz written atomically (no pickle)."""
    arrays = {'param' + n: backend.CpuDevice().send(p.array)
              for n, p in model.namedparams()}
    arrays.update({'scaler_' + k: v for k, v in scaler.state().items()})
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    files.save_npz(path, arrays)


def load_model(path, model):
    """Load `save_model`'s file into `model` (built like the saved one):
    returns its train.Standardizer. ValueError, one line, for a file that is
    missing, empty, damaged, pickled or holds another model."""
    arrays = files.read_npz_safe(path, max_bytes=2 ** 26)
    for name, p in model.namedparams():
        a = arrays.get('param' + name)
        if a is None or a.shape != p.shape or a.dtype.kind != 'f':
            raise ValueError('{} does not hold this model (parameter {}: {})'.format(
                path, name, 'missing' if a is None else '{} {}'.format(
                    a.shape, a.dtype)))
        p.array[...] = a
    try:
        return train.Standardizer.from_state(
            {k[7:]: v for k, v in arrays.items() if k.startswith('scaler_')})
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError('{} has no usable standardisation ({})'.format(path, e))


def run(url, study, points, key, objective, jobs=1, retry_failed=False):
    """Enqueue the points and run them (`run_workers`): 0 when done, or (after one line on
    stderr) 130 if interrupted and 1 if the storage stopped answering."""
    enqueue(study, points, key, retry_failed)
    try:
        run_workers(url, study.study_name, [key(p) for p in points], objective, jobs)
    except KeyboardInterrupt:
        print('interrupted: finished runs are kept in {}; rerun the same command '
              'to resume'.format(shown(url)), file=sys.stderr)
        return 130
    except StorageLost as e:
        print('error: the storage stopped answering ({}); finished runs are kept: '
              'rerun the same command when it is back'.format(e), file=sys.stderr)
        return 1
    return 0


def add_arguments(parser):
    """The options of every sweep script: --jobs, --storage, --retry-failed,
    --report-only (see `open_from_arguments`)."""
    parser.add_argument('--jobs', '-j', type=cli.positive,
                        default=min(2, os.cpu_count() or 1),
                        help='worker processes on this machine (%(default)s)')
    parser.add_argument('--storage', help='Optuna storage URL shared by all machines, '
                        'e.g. postgresql://user:password@host/db (default: '
                        'OUT/study.db, SQLite)')
    parser.add_argument('--retry-failed', action='store_true',
                        help='train again the runs that failed (diverged or raised)')
    parser.add_argument('--report-only', action='store_true',
                        help='export the results from the storage; train nothing')


def open_from_arguments(parser, args, name, meta, fields):
    """Check args.out (and that OUT/results.csv, if there, is an export of a
    table with these `fields`), open the storage and the study: sets args.url
    and args.study, or exits 2 with one line (parser.error). With
    --report-only nothing is created: the study must be there."""
    cli.check_out(parser, args.out)
    path = os.path.join(args.out, 'results.csv')
    if not csv_is_ours(path, fields):
        parser.error('{} is not a file this script wrote (other columns, or not a '
                     'file): choose another --out'.format(path))
    try:
        args.url = storage_url(args.storage or 'sqlite:///' + os.path.join(
            args.out, 'study.db'))
        if not args.report_only:
            os.makedirs(args.out, exist_ok=True)
        args.study = open_study(connect(args.url, existing=args.report_only), name,
                                meta, create=not args.report_only)
    except NoStudy as e:
        parser.error('--report-only: nothing to report: {}: run the command without '
                     '--report-only first'.format(e))
    except (OSError, StorageError) as e:
        parser.error(str(e))
