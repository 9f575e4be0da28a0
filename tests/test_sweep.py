"""experiments/sweep_mixtures.py and toy/sweep.py on SQLite: arguments, storage
errors, exactly-once training with several workers, crash recovery, failed
runs, and what the exported table and figures count."""
import csv
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import optuna
import pytest
import sqlalchemy
from scipy.special import logsumexp
from scipy.stats import norm

from toy import datasets
from toy import sweep as engine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, 'experiments', 'sweep_mixtures.py')
spec = importlib.util.spec_from_file_location('sweep_mixtures', SCRIPT)
sweep = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sweep)

TINY = ['--dataset', 'bishop', '--mixtures', '1', '2', '--seeds', '1',
        '--epochs', '3', '--eval-every', '1', '--train-points', '200',
        '--val-points', '100', '--test-points', '500', '--batchsize', '100',
        '--hidden', '8', '--no-floor']
#: Short heartbeats, so a killed worker's run is stale after 2 s.
FAST = dict(os.environ, PYTHONPATH=ROOT, TOY_SWEEP_HEARTBEAT='1',
            TOY_SWEEP_GRACE='2', OMP_NUM_THREADS='1')


def read_csv(path):
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def trials(out):
    try:
        study = optuna.load_study(study_name=sweep.STUDY, storage='sqlite:///'
                                  + os.path.join(out, 'study.db'))
    except KeyError:  # not made yet
        return []
    except sqlalchemy.exc.IntegrityError:  # the sweep is making its tables now
        return []
    return study.get_trials()


def trained(out):
    """{key: number of runs that trained it to the end}."""
    counts = {}
    for t in trials(out):
        if t.state == optuna.trial.TrialState.COMPLETE:
            counts[t.user_attrs['key']] = counts.get(t.user_attrs['key'], 0) + 1
    return counts


def wait_for(out, complete, timeout=120, running=1):
    """Until `complete` runs have finished and `running` are running."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        time.sleep(0.3)
        states = [t.state for t in trials(str(out))]
        if (states.count(optuna.trial.TrialState.COMPLETE) >= complete
                and states.count(optuna.trial.TrialState.RUNNING) >= running):
            return
    raise AssertionError('the sweep did not get going')


def cli(out, *argv, env=FAST, **kwargs):
    return subprocess.Popen([sys.executable, SCRIPT, '--out', str(out)] + list(argv),
                            env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def finish(proc, timeout=120):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


@pytest.mark.parametrize('argv', [
    ['--dataset', 'nope'],
    ['--mixtures', '0'],
    ['--mixtures', 'two'],
    ['--seeds', '-1'],
    ['--jobs', '0'],
    ['--direction', 'sideways'],
    ['--lr', 'nan'],
    ['--lr', '0.001', '--lr-final', '0.01'],
    ['--batchsize', '5000', '--train-points', '100'],
    ['--device', 'bogus'],
    ['--activation', 'softsign'],
    ['--epochs', '3'],
    ['--storage', 'not a url'],
    ['--storage', 'nosuchdb://x/y'],
    ['--seeds', str(10 ** 9)],
    ['--test-points', str(10 ** 12)],
])
def test_bad_arguments_exit_2_with_one_line(argv, tmp_path, capsys):
    out = tmp_path / 'out'
    out.mkdir()
    earlier = out / 'results.csv'
    earlier.write_text(','.join(sweep.FIELDS) + '\nkeep,me\n')
    with pytest.raises(SystemExit) as e:
        sweep.main(argv + ['--out', str(out)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and 'error:' in err
    assert earlier.read_text() == ','.join(sweep.FIELDS) + '\nkeep,me\n'
    assert sorted(os.listdir(out)) == ['results.csv']


def test_default_eval_every_above_epochs_says_what_to_pass(capsys):
    with pytest.raises(SystemExit):
        sweep.main(['--epochs', '3'])
    err = capsys.readouterr().err
    assert ('--eval-every 5 (the default) is more than --epochs 3: pass '
            '--eval-every 3 or less') in err


@pytest.mark.parametrize('content', [b'a,b\n1,2\n', b'\xff\xfe k=abc\n'])
def test_foreign_or_garbage_csv_is_refused_and_kept(tmp_path, content, capsys):
    (tmp_path / 'results.csv').write_bytes(content)
    with pytest.raises(SystemExit) as e:
        sweep.main(TINY + ['--out', str(tmp_path)])
    assert e.value.code == 2 and 'not a file this script wrote' in capsys.readouterr().err
    assert (tmp_path / 'results.csv').read_bytes() == content


def test_csv_that_is_a_directory_is_refused(tmp_path, capsys):
    (tmp_path / 'results.csv').mkdir()
    with pytest.raises(SystemExit) as e:
        sweep.main(TINY + ['--out', str(tmp_path)])
    assert e.value.code == 2 and 'not a file this script wrote' in capsys.readouterr().err


@pytest.mark.parametrize('make, says', [
    (lambda path: path.write_bytes(b'this is not a database' * 100), 'not a database'),
    (lambda path: optuna.create_study(
        study_name=sweep.STUDY, storage='sqlite:///' + str(path)).set_user_attr(
            'sweep', dict(sweep.META, version=1)), 'made by sweep_mixtures'),
    (lambda path: optuna.create_study(study_name=sweep.STUDY,
                                      storage='sqlite:///' + str(path)).set_user_attr(
        'sweep', 'garbage'), 'made by'),
])
def test_unusable_storage_exit_2_with_one_line(tmp_path, make, says, capsys):
    make(tmp_path / 'study.db')
    before = (tmp_path / 'study.db').read_bytes()
    with pytest.raises(SystemExit) as e:
        sweep.main(TINY + ['--out', str(tmp_path)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1, err
    assert says in err and 'Traceback' not in err
    assert (tmp_path / 'study.db').read_bytes() == before


def test_storage_url_names_the_installed_postgresql_driver():
    assert engine.storage_url('postgresql://u:p@h:5/d') == 'postgresql+psycopg://u:p@h:5/d'
    assert engine.storage_url('postgres://u@h/d') == 'postgresql+psycopg://u@h/d'
    assert engine.storage_url('sqlite:///a/b.db') == 'sqlite:///a/b.db'
    assert 'secret' not in engine.shown('postgresql+psycopg://u:secret@h/d')


def test_tiny_sweep_rows_scores_and_rerun(tmp_path, capsys):
    out = str(tmp_path)
    argv = TINY + ['--out', out, '--jobs', '1', '--no-figures']
    assert sweep.main(argv) == 0
    rows = read_csv(os.path.join(out, 'results.csv'))
    assert sorted((r['model'], int(r['k'])) for r in rows) == [
        ('mdn', 1), ('mdn', 2), ('mse', 0)]
    bayes, gaussian = datasets.limits('bishop', 'inverse')
    for r in rows:
        assert r['dataset'] == 'bishop' and r['seed'] == '0'
        assert r['device'] == '@numpy' and r['epochs'] == '3'
        assert 1 <= int(r['best_epoch']) <= 3
        if r['model'] == 'mdn':
            nll = float(r['nll'])
            assert float(r['bayes_limit']) == pytest.approx(bayes, abs=1e-6)
            assert float(r['gap_bayes']) == pytest.approx(nll - bayes, abs=2e-6)
            assert float(r['gap_gaussian']) == pytest.approx(nll - gaussian, abs=2e-6)
            assert float(r['gap_bayes']) > -0.05  # no model beats the Bayes limit
        else:
            assert float(r['mse']) > 0 and r['nll'] == ''
    summary = open(os.path.join(out, 'summary.md')).read()
    assert '| 1 | 1 |' in summary and '| 2 | 1 |' in summary
    assert 'Bayes limit {:.4f}'.format(bayes) in summary
    # A rerun trains nothing, reports everything done, exports the same.
    before, numbers = open(os.path.join(out, 'results.csv')).read(), len(trials(out))
    capsys.readouterr()
    assert sweep.main(argv) == 0
    assert '3/3' in capsys.readouterr().err and len(trials(out)) == numbers
    assert open(os.path.join(out, 'results.csv')).read() == before


def test_summary_splits_the_gap_at_the_k_floor_computed_once(tmp_path, monkeypatch):
    out = str(tmp_path)
    argv = [a for a in TINY if a != '--no-floor'] + ['--out', out, '--jobs', '1',
                                                       '--no-figures']
    assert sweep.main(argv) == 0
    kept = json.load(open(os.path.join(out, sweep.FLOOR_FILE)))
    bayes, gaussian = datasets.limits('bishop', 'inverse')
    # One component's floor is the single-Gaussian limit; two do better.
    assert kept['bishop-inverse-k1'] == pytest.approx(gaussian - bayes, abs=2e-3)
    assert 0 < kept['bishop-inverse-k2'] < kept['bishop-inverse-k1']
    nll = {int(r['k']): float(r['nll']) for r in read_csv(os.path.join(out, 'results.csv'))
           if r['model'] == 'mdn'}
    summary = open(os.path.join(out, 'summary.md')).read()
    for k in (1, 2):
        line = next(x for x in summary.splitlines() if x.startswith('| {} | 1 |'.format(k)))
        cells = [c.strip() for c in line.split('|')[1:-1]]
        assert float(cells[4]) == pytest.approx(kept['bishop-inverse-k%d' % k], abs=1e-4)
        assert float(cells[5]) == pytest.approx(nll[k] - bayes - float(cells[4]), abs=2e-4)
    # Kept: a report does not compute them again; a damaged file is redone.
    monkeypatch.setattr(datasets, 'mixture_floor', lambda *a, **kw: 0.5)
    assert sweep.main(argv + ['--report-only']) == 0
    assert json.load(open(os.path.join(out, sweep.FLOOR_FILE))) == kept
    with open(os.path.join(out, sweep.FLOOR_FILE), 'w') as f:
        f.write('{"bishop-inverse-k1": NaN, "bishop-inverse-k2": "x"')
    assert sweep.main(argv + ['--report-only']) == 0
    assert set(json.load(open(os.path.join(out, sweep.FLOOR_FILE))).values()) == {0.5}
    assert '| 0.5000 |' in open(os.path.join(out, 'summary.md')).read()


def test_scores_in_original_units_match_direct_computation(tmp_path):
    """NLL and MSE in the target's units, recomputed from the saved model
    with scipy: the log-Jacobian's sign and MSE's scale**2 are checked."""
    argv = TINY + ['--dataset', 'otoro', '--out', str(tmp_path)]
    args = sweep.parse_args(argv)
    for point in sweep.grid(args):
        value, row = sweep.run_task(point, str(tmp_path), '@numpy')
        model = sweep.build_model(point)
        scaler = engine.load_model(sweep.model_path(str(tmp_path), point), model)
        x, y = sweep.splits(point)['test']
        state = scaler.state()
        t_mean, t_scale = [np.asarray(state[k]) for k in sorted(state)
                           if k[0] in 'ty' and k.endswith(('mean', 'scale'))]
        assert np.all(t_scale > 2)  # otoro's target spans about +-10
        if point['model'] == 'mse':
            with __import__('chainer').no_backprop_mode():
                pred = model.forward(scaler.inputs(x)).array * t_scale + t_mean
            assert float(row['mse']) == pytest.approx(np.mean((pred - y) ** 2), rel=1e-4)
            continue
        logits, mu, ln_var = model.mixture(scaler.inputs(x))
        log_pi = logits - logsumexp(logits, axis=1, keepdims=True)
        log_p = logsumexp(log_pi + norm.logpdf(
            y, mu[:, :, 0] * t_scale + t_mean,
            np.exp(0.5 * ln_var[:, :, 0]) * t_scale), axis=1)
        assert float(row['nll']) == pytest.approx(-log_p.mean(), abs=1e-4)
        assert value == pytest.approx(-log_p.mean(), abs=1e-4)
        pi = np.exp(log_pi)
        mean = (pi * (mu[:, :, 0] * t_scale + t_mean)).sum(1, keepdims=True)
        assert float(row['mse']) == pytest.approx(np.mean((mean - y) ** 2), rel=1e-4)


def test_progress_and_summary_count_only_this_grid(tmp_path, capsys):
    out = str(tmp_path)
    base = TINY + ['--out', out, '--jobs', '1', '--no-figures']
    assert sweep.main(base + ['--seeds', '2']) == 0
    capsys.readouterr()
    # Another config beside it: its bar starts at 0 of its own 2 runs.
    assert sweep.main(base + ['--hidden', '9', '--mixtures', '1']) == 0
    err = capsys.readouterr().err
    assert '0/2' in err and '2/2' in err and '/6' not in err and '/8' not in err
    rows = read_csv(os.path.join(out, 'results.csv'))
    assert len(rows) == 8 and len({r['config'] for r in rows}) == 2
    # Fewer seeds than in the store: the summary counts seed 0 only.
    assert sweep.main(base + ['--report-only']) == 0
    summary = open(os.path.join(out, 'summary.md')).read()
    assert '| 1 | 1 |' in summary and '| 1 | 2 |' not in summary
    assert '1 runs.' in summary
    assert '3/3' not in capsys.readouterr().err  # --report-only trains nothing


def test_diverging_run_is_failed_with_reason_and_excluded(tmp_path, capsys):
    out = str(tmp_path)
    argv = TINY + ['--out', out, '--jobs', '1', '--no-figures', '--mixtures', '2']
    assert sweep.main(argv) == 0
    assert sweep.main(argv + ['--mixtures', '1', '2', '--lr', '1e30']) == 0
    failed = [t for t in trials(out) if t.state == optuna.trial.TrialState.FAIL]
    assert failed and all('Diverged' in t.user_attrs['failure'] for t in failed)
    rows = read_csv(os.path.join(out, 'results.csv'))
    assert all(np.isfinite(float(r['mse'])) for r in rows)
    summary = open(os.path.join(out, 'summary.md')).read()
    assert 'Failed' in summary and 'Diverged' in summary
    # Excluded from the table and from the best K.
    assert not [line for line in summary.splitlines() if line.startswith('| 1 ')]
    assert 'Best K' not in summary
    # Not retried unless asked; then retried (and it fails again).
    numbers = len(trials(out))
    assert sweep.main(argv + ['--mixtures', '1', '2', '--lr', '1e30']) == 0
    assert len(trials(out)) == numbers
    assert sweep.main(argv + ['--mixtures', '1', '2', '--lr', '1e30',
                              '--retry-failed']) == 0
    assert len(trials(out)) == numbers + len(failed)


def test_garbage_rows_are_skipped_with_a_warning(tmp_path, capsys):
    out = str(tmp_path)
    argv = TINY + ['--out', out, '--jobs', '1', '--no-figures']
    assert sweep.main(argv) == 0
    study = optuna.load_study(study_name=sweep.STUDY,
                              storage='sqlite:///' + os.path.join(out, 'study.db'))
    good = study.get_trials()[0]
    for number, row in enumerate([dict(good.user_attrs['row'], k='abc'),
                                  dict(good.user_attrs['row'], nll='oops'),
                                  dict(good.user_attrs['row'], nll='nan'),
                                  ['not', 'a', 'row'], None]):
        study.add_trial(optuna.trial.create_trial(
            value=0.0, user_attrs={'key': 'garbage-{}'.format(number), 'row': row}))
    capsys.readouterr()
    assert sweep.main(argv + ['--report-only']) == 0
    err = capsys.readouterr().err
    assert err.count('skipping trial') == 5 and 'Traceback' not in err
    assert len(read_csv(os.path.join(out, 'results.csv'))) == 3


@pytest.mark.parametrize('damage', [
    lambda path: open(path, 'wb').close(),
    lambda path: open(path, 'r+b').truncate(os.path.getsize(path) // 2),
    lambda path: np.savez(path, a=np.array([{'a': 1}], dtype=object)),
])
def test_bad_model_files_are_refused_with_one_line(tmp_path, damage, capsys):
    out = str(tmp_path)
    argv = TINY + ['--out', out, '--jobs', '1']
    assert sweep.main(argv) == 0
    for name in os.listdir(os.path.join(out, 'models')):
        damage(os.path.join(out, 'models', name))
    capsys.readouterr()
    assert sweep.main(argv + ['--report-only']) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if 'figure without' in line]
    assert warnings and 'Traceback' not in err
    assert os.path.isfile(os.path.join(out, 'nll_vs_k.png'))


def test_two_invocations_train_each_point_once(tmp_path):
    """Two commands at once on one study, as two machines would run them."""
    argv = TINY + ['--mixtures', '1', '2', '3', '--seeds', '2', '--jobs', '1',
                   '--no-figures']
    procs = [cli(tmp_path, *argv) for _ in range(2)]
    for proc in procs:
        code, err = finish(proc)
        assert code == 0, err
    counts = trained(str(tmp_path))
    assert len(counts) == 8 and set(counts.values()) == {1}
    rows = read_csv(os.path.join(tmp_path, 'results.csv'))
    assert len(rows) == 8 and len({sweep.key(r) for r in rows}) == 8


def test_point_claimed_elsewhere_after_the_read_keeps_the_worker_waiting(tmp_path):
    """A worker reads a point as WAITING, another machine claims it before this
    one can: the worker must wait for it, not end and export a table without it
    (which the two-machine PostgreSQL test once caught)."""
    url = 'sqlite:///' + str(tmp_path / 'study.db')
    study = engine.open_study(engine.connect(url), 'race', {'script': 'test'})
    engine.enqueue(study, [{'k': 1}], key=lambda p: 'p1')
    read = study.get_trials(deepcopy=False)
    assert study._storage.set_trial_state_values(read[0]._trial_id,
                                                 optuna.trial.TrialState.RUNNING)
    study.get_trials = lambda deepcopy=True, states=None: read
    assert engine._claim(study, ['p1']) == (None, True)


def test_killed_worker_is_recovered_without_loss_or_duplicate(tmp_path):
    argv = TINY + ['--mixtures', '1', '2', '3', '--epochs', '150',
                   '--train-points', '1000', '--jobs', '1', '--no-figures']
    proc = cli(tmp_path, *argv, start_new_session=True)
    wait_for(tmp_path, complete=1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    before = {t.number: t.datetime_complete for t in trials(str(tmp_path))
              if t.state == optuna.trial.TrialState.COMPLETE}
    assert before and len(before) < 4
    code, err = finish(cli(tmp_path, *argv))
    assert code == 0, err
    after = trials(str(tmp_path))
    assert {t.number: t.datetime_complete for t in after if t.number in before} == before
    counts = trained(str(tmp_path))
    assert len(counts) == 4 and set(counts.values()) == {1}
    # The run killed mid-way is failed without a reason (none if the kill
    # fell between two runs: the test reads the states, then kills).
    died = [t for t in after if t.state == optuna.trial.TrialState.FAIL]
    assert len(died) <= 1 and all('failure' not in t.user_attrs for t in died)


def test_ctrl_c_stops_workers_with_one_line(tmp_path):
    argv = TINY + ['--mixtures', '1', '2', '--epochs', '200',
                   '--train-points', '2000', '--jobs', '2', '--no-figures']
    # Ctrl-C as a terminal sends it, to a sweep that did not inherit SIGINT
    # ignored (as commands started in the background by a shell do).
    proc = cli(tmp_path, *argv, start_new_session=True,
               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    # Both workers at work: the parent ignores Ctrl-C while it starts them
    # (so that they inherit that and none reaches them while they import).
    wait_for(tmp_path, complete=0, running=2)
    os.killpg(proc.pid, signal.SIGINT)
    code, err = finish(proc)
    assert code == 130 and 'Traceback' not in err, err
    assert [line for line in err.splitlines() if 'interrupted' in line] == [
        err.strip().splitlines()[-1]]
    assert 'rerun the same command' in err
    stopped = [t for t in trials(str(tmp_path))
               if t.state == optuna.trial.TrialState.FAIL]
    assert stopped and all('failure' not in t.user_attrs for t in stopped)
    assert optuna.trial.TrialState.RUNNING not in [t.state for t in trials(str(tmp_path))]


def test_spread_components_is_a_config_of_its_own_and_is_applied(tmp_path):
    """--spread-components starts each MDN spread over the standardised
    training targets (seen after a run too short to move it) and has a config
    of its own, while the runs made without it keep their config."""
    slow = ['--lr', '1e-9', '--lr-final', '1e-9', '--epochs', '1']
    plain = sweep.parse_args(TINY + slow + ['--out', str(tmp_path / 'a')])
    spread = sweep.parse_args(TINY + slow + ['--spread-components',
                                             '--out', str(tmp_path / 'b')])
    assert sweep.config(plain) == {k: getattr(plain, k) for k in sweep.CONFIG_KEYS}
    assert sweep.config_id(spread) != sweep.config_id(plain)
    for args in (plain, spread):
        point = next(p for p in sweep.grid(args) if p['k'] == 2)
        sweep.run_task(point, args.out, '@numpy')
        model = sweep.build_model(point)
        scaler = engine.load_model(sweep.model_path(args.out, point), model)
        data = sweep.splits(point)
        t = scaler.targets(data['train'][1])
        _, mu, ln_var = model.mixture(scaler.inputs(data['test'][0]))
        q = np.quantile(t, [0.25, 0.75])
        near = np.abs(mu[:, :, 0] - q).max() < 0.3 and np.allclose(
            np.exp(0.5 * ln_var), np.ptp(t) / 2, rtol=0.3)
        assert near == (args is spread)


def test_sigma_min_floors_every_component_the_sweep_trains(tmp_path):
    """--sigma-min S: each trained component's sd is >= S in standardised
    units (here far above what the data want), in a config of its own."""
    argv = TINY + ['--out', str(tmp_path)]
    args = sweep.parse_args(argv + ['--sigma-min', '0.5'])
    assert sweep.config(args)['sigma_min'] == 0.5
    assert sweep.config_id(args) != sweep.config_id(sweep.parse_args(argv))
    point = next(p for p in sweep.grid(args) if p['k'] == 2)
    sweep.run_task(point, args.out, '@numpy')
    model = sweep.build_model(point)
    scaler = engine.load_model(sweep.model_path(args.out, point), model)
    _, _, ln_var = model.mixture(scaler.inputs(sweep.splits(point)['test'][0]))
    assert np.exp(0.5 * ln_var).min() >= 0.5 * (1 - 1e-6)
