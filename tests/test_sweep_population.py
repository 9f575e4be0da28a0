"""`--population R`: toy/sweep.py claims up to R trials of one group at once
and trains them together, experiments/sweep_mixtures.py trains them as one
toy.population.Population. The same rows as runs trained alone, every point
trained once, a member's failure its own, no trial left behind."""
import os
import signal
import threading
import time

import numpy as np
import optuna
import pytest

from toy import sweep as engine
from experiments import sweep_mixtures as sweep
from test_sweep import (TINY, cli, finish, read_csv, study_at, trained, trials,
                        wait_for)

State = optuna.trial.TrialState
#: Two problems, K 1 to 3 and the baselines: 6 MDN runs of one config and 2
#: least-squares runs.
GRID = TINY + ['--dataset', 'bishop', 'otoro', '-k', '1', '2', '3', '--jobs', '1',
               '--no-figures']


# ---------------------------------------------------------------------------
# The engine: what is claimed together, and what becomes of each trial
# ---------------------------------------------------------------------------

def first_letter(point):
    return point['key'][0]


class Recorder:
    """An objective, and a `together`, that record what they are given and
    score each point by its 'score' (a float, or an exception to give)."""

    def __init__(self, fail=None):
        self.singles, self.batches, self.fail = [], [], fail

    @staticmethod
    def outcome(point):
        score = point.get('score', 1.0)
        return ValueError(score) if isinstance(score, str) else (score, {'k': point['key']})

    def objective(self, point):
        self.singles.append(point['key'])
        result = self.outcome(point)
        if isinstance(result, Exception):
            raise result
        return result

    def together(self, points):
        self.batches.append([p['key'] for p in points])
        if self.fail:
            raise self.fail
        return [self.outcome(p) for p in points]


def enqueued(tmp_path, points):
    url, study = study_at(tmp_path)
    engine.enqueue(study, points, lambda p: p['key'])
    return url, study


def test_a_worker_claims_up_to_r_of_one_group_in_the_grid_order(tmp_path):
    """Keys a1 b1 a2 a3 b2 a4, grouped by their letter, R = 3: a1 with the
    next a's (a2 a3), then b1 b2, then a4 alone (by the objective). Each
    trial keeps its own outcome: a member's exception or non-finite score
    fails it alone, with its reason."""
    keys = ['a1', 'b1', 'a2', 'a3', 'b2', 'a4']
    points = [{'key': k} for k in keys]
    points[3]['score'] = float('nan')
    points[4]['score'] = 'diverged'
    url, study = enqueued(tmp_path, points)
    runs = Recorder()
    engine.work(url, 'grid', keys, runs.objective, 3, runs.together, first_letter)
    assert runs.batches == [['a1', 'a2', 'a3'], ['b1', 'b2']] and runs.singles == ['a4']
    done = engine.outcomes(study)
    assert sorted(done) == sorted(keys)
    assert {k for k, t in done.items() if t.state == State.COMPLETE} == {'a1', 'b1',
                                                                           'a2', 'a4'}
    assert done['a1'].user_attrs['row'] == {'k': 'a1'} and done['a1'].value == 1.0
    assert done['a3'].user_attrs['failure'] == (
        'ValueError: the score is nan, not a finite number')
    assert done['b2'].user_attrs['failure'] == 'ValueError: diverged'
    assert not [t for t in threading.enumerate() if isinstance(t, engine._Heartbeat)]


@pytest.mark.parametrize('population, together', [(1, True), (4, False)])
def test_without_a_population_each_point_trains_alone(tmp_path, population, together):
    keys = ['a1', 'a2', 'a3']
    url, study = enqueued(tmp_path, [{'key': k} for k in keys])
    runs = Recorder()
    engine.work(url, 'grid', keys, runs.objective, population,
                runs.together if together else None, first_letter)
    assert runs.singles == keys and runs.batches == []
    assert all(t.state == State.COMPLETE for t in study.get_trials())


@pytest.mark.parametrize('fail, reason', [
    (RuntimeError('out of memory'), 'RuntimeError: out of memory'),
    (None, 'ValueError: 1 results for 2 points')])
def test_a_call_that_fails_as_a_whole_fails_every_trial_of_its_batch(tmp_path, fail,
                                                                      reason):
    """together raises, or gives too few results: every trial it was given
    fails with the reason (none is left RUNNING), and the next batch runs."""
    keys = ['a1', 'a2', 'b1', 'b2']
    url, study = enqueued(tmp_path, [{'key': k} for k in keys])
    runs = Recorder(fail)
    if fail is None:
        runs.outcome = lambda point: (2.0, {})
        runs.together = lambda points, together=runs.together: together(points)[:1]
    engine.work(url, 'grid', keys, runs.objective, 2, runs.together, first_letter)
    done = engine.outcomes(study)
    assert sorted(done) == keys
    assert all(t.state == State.FAIL and t.user_attrs['failure'] == reason
               for t in done.values())


def test_each_claimed_trial_beats_while_its_batch_trains(tmp_path, monkeypatch):
    """The claim beats once for each trial before it is RUNNING, and every
    trial of the batch keeps beating while the batch trains."""
    keys = ['a1', 'a2', 'a3']
    url, study = enqueued(tmp_path, [{'key': k} for k in keys])
    ids = {t.user_attrs['key']: t._trial_id for t in study.get_trials()}
    monkeypatch.setattr(engine, 'HEARTBEAT', 0.02)
    beats = []

    class Counted:
        def __init__(self, storage):
            self.storage = storage

        def record_heartbeat(self, trial_id):
            beats.append(trial_id)
            self.storage.record_heartbeat(trial_id)

    class Recording(engine._Heartbeat):
        def __init__(self, storage, trial_ids):
            super().__init__(Counted(storage), trial_ids)

    monkeypatch.setattr(engine, '_Heartbeat', Recording)

    def together(points):
        for _ in range(100):
            time.sleep(0.02)
            if set(beats) == set(ids.values()):
                break
        return [(1.0, {}) for _ in points]

    engine.work(url, 'grid', keys, Recorder().objective, 3, together, first_letter)
    assert set(beats) == set(ids.values())
    assert all(t.state == State.COMPLETE for t in study.get_trials())


def test_a_duplicate_claimed_in_the_same_batch_is_dropped_untrained(tmp_path):
    """Two commands enqueued one point at once: both copies may be claimed in
    one batch; the copy is dropped (PRUNED) and the point trained once."""
    url, study = study_at(tmp_path)
    for key in ['a1', 'a1', 'a2']:
        study.add_trial(optuna.trial.create_trial(
            state=State.WAITING, system_attrs={'fixed_params': {'key': key}},
            user_attrs={'key': key, 'point': {'key': key}}))
    runs = Recorder()
    engine.work(url, 'grid', ['a1', 'a2'], runs.objective, 3, runs.together, first_letter)
    assert runs.batches == [['a1', 'a2']]
    assert [t.state for t in study.get_trials()] == [State.COMPLETE, State.PRUNED,
                                                     State.COMPLETE]
    assert study.get_trials()[1].user_attrs['duplicate_of'] == 0


def test_ctrl_c_while_a_batch_trains_leaves_none_of_it_running(tmp_path):
    keys = ['a1', 'a2', 'a3']
    url, study = enqueued(tmp_path, [{'key': k} for k in keys])

    def together(points):
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        engine.work(url, 'grid', keys, Recorder().objective, 2, together, first_letter)
    states = [(t.state, 'failure' in t.user_attrs) for t in study.get_trials()]
    assert states == [(State.FAIL, False)] * 2 + [(State.WAITING, False)]
    # Failed without a reason: the next invocation trains them.
    assert engine.enqueue(study, [{'key': k} for k in keys], lambda p: p['key']) == 2


# ---------------------------------------------------------------------------
# sweep_mixtures --population
# ---------------------------------------------------------------------------

@pytest.fixture
def populations(monkeypatch):
    """The points (as stored) of each call of run_together in this process."""
    calls, together = [], sweep.run_together

    def recording(points, cfg):
        calls.append([sweep.current(p) for p in points])
        return together(points, cfg)
    monkeypatch.setattr(sweep, 'run_together', recording)
    return calls


def rows_of(out):
    return {sweep.key(r): r for r in read_csv(os.path.join(out, 'results.csv'))}


def test_a_population_sweep_gives_the_rows_of_runs_trained_alone(tmp_path, populations):
    """--population 3: the 6 MDN runs train in three populations, one per
    K, the baselines alone; every row as without it, within float32
    rounding."""
    alone, together = str(tmp_path / 'alone'), str(tmp_path / 'together')
    assert sweep.main(GRID + ['--out', alone]) == 0
    assert not populations
    assert sweep.main(GRID + ['--out', together, '--population', '3']) == 0
    assert [[(p['dataset'], p['k']) for p in call] for call in populations] == [
        [('bishop', 3), ('otoro', 3)], [('bishop', 2), ('otoro', 2)],
        [('bishop', 1), ('otoro', 1)]]
    a, b = rows_of(alone), rows_of(together)
    assert sorted(a) == sorted(b) and len(a) == 8
    for key, row in a.items():
        other = b[key]
        for column in ('best_epoch', 'epochs', 'iterations', 'device', 'bayes_limit'):
            assert row[column] == other[column], (key, column)
        for column in ('nll', 'val_nll', 'gap_bayes', 'mse'):
            if row[column]:
                assert float(other[column]) == pytest.approx(float(row[column]),
                                                             abs=1e-4, rel=1e-4)
    # Not a config of its own: the same study and table as without it.
    assert sweep.config_id(sweep.parse_args(GRID)) == sweep.config_id(
        sweep.parse_args(GRID + ['--population', '3']))


def test_a_member_that_diverges_fails_alone(tmp_path, populations, monkeypatch):
    """Bishop's K = 2 MDN starts with a NaN weight: it fails with the reason
    a run alone gives, in its population, while the other member finishes."""
    build = sweep.build_model

    def poisoned(point, rng=None):
        model = build(point, rng)
        if point['model'] == 'mdn' and point['k'] == 2 and point['dataset'] == 'bishop':
            model.head.W.array[0, 0] = np.nan
        return model
    monkeypatch.setattr(sweep, 'build_model', poisoned)
    out = str(tmp_path)
    assert sweep.main(GRID + ['--out', out, '--population', '3']) == 0
    assert [len(call) for call in populations] == [2, 2, 2]
    failed = {t.user_attrs['key']: t.user_attrs['failure'] for t in trials(out)
              if t.state == State.FAIL}
    assert sorted(failed) == sorted(sweep.key(p) for p in sweep.grid(
        sweep.parse_args(GRID)) if p['model'] == 'mdn' and p['k'] == 2
        and p['dataset'] == 'bishop')
    assert all(reason.startswith('Diverged: the training loss became non-finite')
               for reason in failed.values())
    assert [t.state for t in trials(out)].count(State.COMPLETE) == 7
    assert len(read_csv(os.path.join(out, 'results.csv'))) == 7


@pytest.mark.parametrize('stop', [signal.SIGKILL, signal.SIGINT],
                         ids=['killed', 'ctrl-c'])
def test_an_interrupted_population_sweep_resumes_with_what_is_missing(tmp_path, stop):
    """A population sweep killed (its trials go stale and are queued again)
    or stopped by Ctrl-C while a population trains: the same command trains
    what is missing, each point once, and keeps what was done."""
    # Two seeds: each K's two runs are a population.
    argv = TINY + ['--runs', '2', '--epoch', '300', '--train-points', '1000',
                   '--jobs', '1', '--population', '2', '--no-figures']
    proc = cli(tmp_path, *argv, start_new_session=True,
               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait_for(tmp_path, complete=2, running=2)
    os.killpg(proc.pid, stop)
    code, _ = finish(proc)
    assert code == (-signal.SIGKILL if stop == signal.SIGKILL else 130)
    before = {t.number: t.datetime_complete for t in trials(str(tmp_path))
              if t.state == State.COMPLETE}
    assert 2 <= len(before) < 6
    if stop == signal.SIGINT:
        assert State.RUNNING not in [t.state for t in trials(str(tmp_path))]
    code, err = finish(cli(tmp_path, *argv), timeout=300)
    assert code == 0, err
    after = trials(str(tmp_path))
    assert {t.number: t.datetime_complete for t in after if t.number in before} == before
    counts = trained(str(tmp_path))
    assert len(counts) == 6 and set(counts.values()) == {1}
    # The population stopped mid-way: both its trials failed without a reason.
    stopped = [t for t in after if t.state == State.FAIL]
    assert len(stopped) == 2 and all('failure' not in t.user_attrs for t in stopped)
