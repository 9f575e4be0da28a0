"""Grid sweeps on Optuna: every point trained once, by any number of worker
processes on any number of machines that share one storage.

A grid is a list of points, each a dict of JSON scalars with a unique string
key. Points are enqueued as WAITING trials (user attrs `key` and `point`); a
worker claims one with the storage's atomic WAITING -> RUNNING update (a row
lock on PostgreSQL, an immediate transaction on SQLite), beats a heartbeat
while it trains, and stores the objective's value and its row (user attr
`row`) when it is done. With a population size R and a `together`
function, a worker claims up to R trials of one group at once and trains
them together (toy.population): each trial keeps its own outcome.

Exactly once: two invocations can enqueue the same key at the same time, so
a key belongs to the trial with the smallest number among its trials that
are neither failed nor dropped; a worker that claims any other trial of the
key drops it (PRUNED, user attr `duplicate_of`) without training. A worker
killed hard stops beating: after the grace period any worker marks its trial
failed and Optuna's RetryHeartbeatStaleTrialCallback enqueues it again. A run
that raises is FAILED with its reason (user attr `failure`) and is enqueued
again only when asked (`retry_failed`), as is one whose score is not finite.

The storages themselves (URLs, the checks before any write, studies) are
toy.storage's.
"""
import hashlib
import itertools
import json
import math
import multiprocessing
import signal
import sys
import threading
import time
import warnings

import optuna
from optuna.trial import TrialState
from tqdm import tqdm

from toy.storage import (ERRORS, HEARTBEAT, StorageError, connect, one_line,
                         shown)

#: Exit status of a worker process whose storage stopped answering.
LOST = 3
#: Seconds a worker with nothing to claim waits before it looks again, while
#: a point of its grid runs elsewhere: that run's end (or its death) is what
#: ends the sweep, and a query a second costs the storage little. Half a
#: heartbeat (10 s) kept the last worker of a small sweep idle that long.
POLL = 1.0

class StorageLost(Exception):
    """The storage stopped answering during the sweep."""


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
    """Records the heartbeat of each of the trials every HEARTBEAT seconds
    until stopped; a storage error ends it quietly (the worker's next call
    reports it)."""

    def __init__(self, storage, trial_ids):
        super().__init__(daemon=True)
        self.storage, self.trial_ids = storage, trial_ids
        self.stopped = threading.Event()

    def run(self):
        while not self.stopped.wait(HEARTBEAT):
            try:
                for trial_id in self.trial_ids:
                    self.storage.record_heartbeat(trial_id)
            except ERRORS:
                return

    def stop(self):
        """Stop beating, and wait until a beat under way has ended."""
        self.stopped.set()
        self.join()


def _claim(study, keys, size=1, group=None):
    """Claim up to `size` WAITING trials of `keys`: the first in their order,
    then the next ones whose point is of its group (group(point) equal; None:
    any point) until there are `size`. Returns (the trials, busy): no trial
    if none is waiting; busy is whether any of keys is not done yet, so the
    caller looks again. A key read as WAITING may have been claimed by
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
    storage, claimed = study._storage, []
    try:
        for trial in waiting:
            if len(claimed) == size:
                break
            if claimed and group is not None and group(
                    trial.user_attrs['point']) != group(claimed[0].user_attrs['point']):
                continue
            # The heartbeat comes first: a worker killed between the claim and
            # its first beat would otherwise leave a RUNNING trial that never
            # goes stale. (Stale checks look at RUNNING trials only.)
            storage.record_heartbeat(trial._trial_id)
            try:
                if storage.set_trial_state_values(trial._trial_id, TrialState.RUNNING):
                    claimed.append(trial)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
    except KeyboardInterrupt:
        _release(study, claimed)
        raise
    if claimed:
        return claimed, True
    owned = owners(found)
    return [], any(owned[k].state in (TrialState.RUNNING, TrialState.WAITING)
                   for k in keys if k in owned)


def work(url, name, keys, objective, population=1, together=None, group=None):
    """Run the trials of `keys` until none is waiting or running.

    objective(point) -> (value, row dict). With `together`, up to
    `population` trials of one group (`_claim`) are claimed at once and,
    when more than one, trained by together(points) -> a list, one per
    point, of its (value, row) or the exception that failed it. Raises
    StorageLost if the storage stops answering; KeyboardInterrupt ends the
    runs in hand as failed without a reason, so the next invocation runs
    them again.
    """
    size = population if together is not None else 1
    try:
        storage = connect(url)
        study = optuna.load_study(study_name=name, storage=storage)
        while True:
            batch, busy = _claim(study, keys, size, group)
            if not batch:
                if not busy:
                    return
                time.sleep(POLL)
                continue
            _run(study, batch, objective, together)
    except (StorageError,) + ERRORS as e:
        raise StorageLost(one_line(e))


def _release(study, batch):
    """Fail, without a reason, the trials of `batch` still RUNNING: a worker
    stopped must leave none behind it (the next invocation runs them)."""
    storage = study._storage
    for trial in batch:
        if storage.get_trial(trial._trial_id).state == TrialState.RUNNING:
            study.tell(trial.number, state=TrialState.FAIL)


def _run(study, batch, objective, together=None):
    try:
        _settle(study, batch, objective, together)
    except KeyboardInterrupt:
        # Ctrl-C may come at any point after the claim, even before the
        # objective starts: no trial may stay RUNNING behind us.
        _release(study, batch)
        raise


def _settle(study, batch, objective, together):
    storage, owned = study._storage, owners(trials(study))
    mine = []
    for trial in batch:
        owner = owned[_key(trial)]
        if owner.number != trial.number:
            storage.set_trial_user_attr(trial._trial_id, 'duplicate_of', owner.number)
            study.tell(trial.number, state=TrialState.PRUNED)
        else:
            mine.append(trial)
    if not mine:
        return
    points = [trial.user_attrs['point'] for trial in mine]
    heartbeat = _Heartbeat(storage, [trial._trial_id for trial in mine])
    heartbeat.start()
    try:
        try:
            results = together(points) if len(points) > 1 else [objective(points[0])]
            if len(results) != len(points):  # else some would stay RUNNING
                raise ValueError('{} results for {} points'.format(len(results),
                                                                  len(points)))
        except Exception as e:  # a failed run is data, whatever the cause
            results = [e] * len(points)
    finally:
        heartbeat.stop()
    for trial, result in zip(mine, results):
        result = _checked(result)
        if isinstance(result, Exception):
            reason = '{}: {}'.format(type(result).__name__, one_line(result))
            storage.set_trial_user_attr(trial._trial_id, 'failure', reason)
            study.tell(trial.number, state=TrialState.FAIL)
            tqdm.write('{} failed: {}'.format(_key(trial), reason), file=sys.stderr)
        else:
            storage.set_trial_user_attr(trial._trial_id, 'row', result[1])
            study.tell(trial.number, result[0])


def _checked(result):
    """An objective's result as (value, row), or the exception that fails its
    run: the exception it gave, or why (value, row) is not one."""
    if isinstance(result, Exception):
        return result
    try:
        value, row = result
        if not math.isfinite(value):  # Optuna would store it as COMPLETE
            raise ValueError('the score is {}, not a finite number'.format(value))
    except Exception as e:
        return e
    return value, row


def _stop(signum, frame):
    raise KeyboardInterrupt


def _worker_main(url, name, keys, objective, population, together, group):
    """Entry point of a worker process: exit status 0, LOST or 130.

    It ignores Ctrl-C (inherited from its start, so that none arrives while it
    imports); the parent stops it with SIGTERM, which ends it as Ctrl-C would.
    """
    signal.signal(signal.SIGTERM, _stop)
    try:
        work(url, name, keys, objective, population, together, group)
    except StorageLost:
        raise SystemExit(LOST)
    except KeyboardInterrupt:
        raise SystemExit(130)


def run_workers(url, name, keys, objective, jobs=1, population=1, together=None,
                group=None):
    """Train every key of the grid (enqueued beforehand) with `jobs` workers
    (each as `work`, with population, together and group): this process,
    and jobs - 1 worker processes (spawn: each opens its own connections)
    that start while it trains (they take seconds to import what they need,
    and the queue gives their share of runs to this process meanwhile). A
    tqdm bar follows the storage, so it counts the work of every machine, on
    these keys only. Raises StorageLost or KeyboardInterrupt.
    """
    done = _Progress(url, name, keys)
    done.start()
    try:
        context = multiprocessing.get_context('spawn')
        workers = [context.Process(target=_worker_main,
                                   args=(url, name, keys, objective, population,
                                         together, group))
                   for _ in range(jobs - 1)]
        handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            for w in workers:
                w.start()
        finally:
            signal.signal(signal.SIGINT, handler)
        try:
            work(url, name, keys, objective, population, together, group)
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
        except (StorageError,) + ERRORS:
            return

    def stop(self):
        self.stopped.set()
        self.join()
        self.bar.close()


def fingerprint(options):
    """8 hex digits naming a dict of JSON values (the options that define a run)."""
    blob = json.dumps(options, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:8]


def run(url, study, points, key, objective, jobs=1, retry_failed=False, population=1,
        together=None, group=None):
    """Enqueue the points and run them (`run_workers`): 0 when done, or (after one line on
    stderr) 130 if interrupted and 1 if the storage stopped answering."""
    enqueue(study, points, key, retry_failed)
    try:
        run_workers(url, study.study_name, [key(p) for p in points], objective, jobs,
                    population, together, group)
    except KeyboardInterrupt:
        print('interrupted: finished runs are kept in {}; rerun the same command '
              'to resume'.format(shown(url)), file=sys.stderr)
        return 130
    except StorageLost as e:
        print('error: the storage stopped answering ({}); finished runs are kept: '
              'rerun the same command when it is back'.format(e), file=sys.stderr)
        return 1
    return 0


