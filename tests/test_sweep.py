"""experiments/sweep_mixtures.py and toy/sweep.py on SQLite: arguments, storage
errors, exactly-once training with several workers, crash recovery, failed
runs, and what the exported table and figures count."""
import csv
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import numpy as np
import optuna
import pytest
import sqlalchemy
from scipy.special import logsumexp
from scipy.stats import norm

from toy import checkpoint, datasets, floor, storage
from toy import sweep as engine, sweep_table
from experiments import sweep_mixtures as sweep, sweep_summary

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: The command line of the sweep, run in a process of its own.
COMMAND = [sys.executable, '-m', 'experiments.sweep_mixtures']

#: One run at a time (the default trains populations): the tests of
#: populations say so (test_sweep_population.py).
TINY = ['--dataset', 'bishop', '-k', '1', '2', '--runs', '1',
        '--epoch', '3', '--eval-every', '1', '--train-points', '200',
        '--val-points', '100', '--test-points', '500', '--batchsize', '100',
        '--hidden', '8', '--no-floor', '--population', '1']
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
    return subprocess.Popen(COMMAND + ['--out', str(out)] + list(argv),
                            env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def finish(proc, timeout=120):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def snapshot(folder):
    """{path under folder: its bytes, or None for a folder}: everything there."""
    found = {}
    for root, folders, names in os.walk(folder):
        for name in folders:
            found[os.path.relpath(os.path.join(root, name), folder)] = None
        for name in names:
            with open(os.path.join(root, name), 'rb') as f:
                found[os.path.relpath(os.path.join(root, name), folder)] = f.read()
    return found


def refused(argv, cwd=ROOT):
    """Run the script on argv; (exit status, stderr)."""
    proc = subprocess.run(COMMAND + argv, env=FAST, cwd=cwd,
                          capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stderr


def one_line_error(code, err):
    assert code == 2 and 'Traceback' not in err, err
    assert len(err.strip().splitlines()) == 1 and ': error: ' in err, err


@pytest.fixture(scope='module')
def swept(tmp_path_factory):
    """A folder after the TINY sweep (K 1 and 2, the baseline): exports, models, study."""
    out = str(tmp_path_factory.mktemp('swept'))
    assert sweep.main(TINY + ['--out', out, '--jobs', '1', '--no-figures']) == 0
    return out


@pytest.fixture
def copy_of_swept(swept, tmp_path):
    out = str(tmp_path / 'out')
    shutil.copytree(swept, out)
    return out


def study_at(tmp_path, name='grid'):
    """(url, study) of a new study in an SQLite file."""
    url = 'sqlite:///' + str(tmp_path / 'study.db')
    return url, storage.open_study(storage.connect(url), name, {'script': 'test'})


def by_key(point):
    return point['key']


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
    ['--epoch', '3', '--eval-every', '5'],
    ['--quantile-start', '30'],
    ['--quantile-start', '-1'],
    ['--storage', 'not a url'],
    ['--storage', 'nosuchdb://x/y'],
    ['--seeds', str(10 ** 9)],
    ['--test-points', str(10 ** 12)],
    ['--train-points', str(10 ** 12)],
    ['--hidden', '100000', '100000', '--test-points', '10'],
    ['--storage', 'sqlite://'],
    ['--storage', 'postgresql://u@[::1:5432/db'],
    ['--storage', 'postgresql://u@h:port/db'],
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


@pytest.mark.parametrize('argv, says', [
    (['--epoch', '3', '--eval-every', '5'],
     '--eval-every 5 is more than --epoch 3: pass --eval-every 3 or less'),
    (['--epoch', '4', '--quantile-start', '4'],
     '--quantile-start 4 is not fewer than --epoch 4: the NLL must train after it')])
def test_settings_that_cannot_train_say_what_to_pass(argv, says, capsys):
    with pytest.raises(SystemExit):
        sweep.main(argv)
    assert says in capsys.readouterr().err


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


def foreign_sqlite(*statements):
    def make(path):
        with sqlite3.connect(str(path)) as connection:
            for statement in statements:
                connection.execute(statement)
        connection.close()
    return make


@pytest.mark.parametrize('make, says', [
    (lambda path: path.write_bytes(b'this is not a database' * 100), 'not a database'),
    (lambda path: path.write_bytes(b'x'), 'not a database'),
    (foreign_sqlite('CREATE TABLE foo (a INTEGER)', 'INSERT INTO foo VALUES (1)'),
     "not an Optuna storage's (foo)"),
    (foreign_sqlite('CREATE TABLE studies (id INTEGER PRIMARY KEY, name TEXT)',
                    'CREATE TABLE trials (id INTEGER PRIMARY KEY, study INTEGER)'),
     "not an Optuna storage's (studies, trials)"),
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
    assert sorted(os.listdir(tmp_path)) == ['study.db']


def test_storage_url_names_the_installed_postgresql_driver():
    assert storage.storage_url('postgresql://u:p@h:5/d') == 'postgresql+psycopg://u:p@h:5/d'
    assert storage.storage_url('postgres://u@h/d') == 'postgresql+psycopg://u@h/d'
    assert storage.storage_url('sqlite:///a/b.db') == 'sqlite:///a/b.db'
    assert 'secret' not in storage.shown('postgresql+psycopg://u:secret@h/d')


@pytest.mark.parametrize('url, says', [
    ('sqlite://', 'in-memory database, which the worker processes cannot share'),
    ('sqlite:///:memory:', 'in-memory database, which the worker processes cannot share'),
])
def test_in_memory_sqlite_is_refused_saying_why(url, says):
    with pytest.raises(storage.StorageError, match=says):
        storage.connect(storage.storage_url(url))


@pytest.mark.parametrize('text', ['postgresql://u@[::1:5432/db', 'postgresql://u@h:x/db'])
def test_url_with_a_bad_port_is_not_a_database_url(text):
    with pytest.raises(storage.StorageError, match='is not a database URL'):
        storage.storage_url(text)


def test_storage_url_never_takes_over_a_file_end_to_end(tmp_path):
    """--storage naming an existing 1-byte file: one line, exit 2, the file
    and --out as they were, nothing created."""
    (tmp_path / 'out').mkdir()
    (tmp_path / 'out' / 'notes.txt').write_bytes(b'mine')
    (tmp_path / 'precious').write_bytes(b'x')
    before = snapshot(tmp_path)
    code, err = refused(TINY + ['--out', str(tmp_path / 'out'), '--storage',
                                'sqlite:///' + str(tmp_path / 'precious')])
    one_line_error(code, err)
    assert 'is not a database' in err and 'precious' in err
    assert snapshot(tmp_path) == before


def test_report_only_with_nothing_to_report_keeps_every_file_end_to_end(swept, tmp_path):
    """--report-only on an empty study.db, on options the study has no run
    of, or on a missing --out: one line, exit 2, every file as it was. (The
    three commands run at once: each spends most of its time importing.)"""
    cases = {'empty': (lambda out: open(os.path.join(out, 'study.db'), 'wb').close(),
                       'study.db is empty'),
             'other': (lambda out: None, 'has no finished run'),
             'missing': (shutil.rmtree, 'study.db does not exist')}
    procs = {}
    for name, (damage, _) in cases.items():
        out = str(tmp_path / name / 'out')
        shutil.copytree(swept, out)
        damage(out)
        procs[name] = cli(out, *(TINY + ['--report-only', '--epoch', '4']))
    before = snapshot(tmp_path)
    held = sweep.config_id(sweep.parse_args(TINY + ['--out', swept]))
    errors = {}
    for name, proc in procs.items():
        code, errors[name] = finish(proc)
        one_line_error(code, errors[name])
        assert '--report-only: nothing to report' in errors[name], errors[name]
        assert cases[name][1] in errors[name], errors[name]
    # It names what the study holds, and the options that select it.
    assert 'it holds config {} (3 runs of bishop inverse, K 0 1 2: --epoch 3)'.format(
        held) in errors['other']
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize('prepare, extra', [
    (lambda out: os.remove(os.path.join(out, 'study.db')), []),
    (lambda out: [os.remove(os.path.join(out, name)) for name in ('study.db', 'results.csv',
                                                                 'summary.md')]
     and shutil.rmtree(os.path.join(out, 'models')), []),
    (lambda out: None, ['-k', '3', '--no-baseline']),
    (lambda out: None, ['--dataset', 'otoro']),
    (lambda out: None, ['--sigma-min', '0.1']),
])
@pytest.mark.parametrize('with_floor', [True, False])
def test_report_only_with_nothing_to_report_is_refused(copy_of_swept, prepare, extra,
                                                       with_floor, capsys, monkeypatch):
    """The same without a subprocess: a missing study.db beside the exports,
    an empty --out, other K, problems or options, with and without floors
    (none is computed)."""
    prepare(copy_of_swept)
    before = snapshot(copy_of_swept)
    monkeypatch.setattr(floor, 'mixture_floor', lambda *a, **kw: pytest.fail('computed'))
    argv = [a for a in TINY if with_floor or a != '--no-floor']
    with pytest.raises(SystemExit) as e:
        sweep.main(argv + extra + ['--out', copy_of_swept, '--report-only'])
    one_line_error(e.value.code, capsys.readouterr().err)
    assert snapshot(copy_of_swept) == before


def test_report_only_leaves_out_k_without_runs_beside_their_floors(copy_of_swept, capsys,
                                                                   monkeypatch):
    """K = 3 has no run but has a floor: its row is left out (this was a
    TypeError), and K = 1 and 2 are reported."""
    monkeypatch.setattr(floor, 'mixture_floor', lambda name, k, *a, **kw: 0.1 * k)
    argv = [a for a in TINY if a != '--no-floor']
    assert sweep.main(argv + ['-k', '1', '2', '3', '--out', copy_of_swept,
                              '--report-only', '--no-figures']) == 0
    rows = [line for line in open(os.path.join(copy_of_swept, 'summary.md')).read()
            .splitlines() if line.startswith('| ') and line[2].isdigit()]
    assert [line.split('|')[1].strip() for line in rows] == ['1', '2']
    assert ' 0.2000 |' in rows[1]


def test_report_only_on_another_storage_makes_out_only_to_export(copy_of_swept, tmp_path,
                                                                 capsys):
    out = str(tmp_path / 'elsewhere')
    storage = 'sqlite:///' + os.path.join(copy_of_swept, 'study.db')
    assert sweep.main(TINY + ['--out', out, '--storage', storage, '--report-only',
                              '--no-figures']) == 0
    assert sorted(os.listdir(out)) == ['results.csv', 'summary.md']
    assert len(read_csv(os.path.join(out, 'results.csv'))) == 3


@pytest.mark.parametrize('under', ['file', None, 'default'])
def test_bad_floor_file_is_refused_before_any_work(tmp_path, under, capsys):
    """A --floor-file under a file, or a directory (given, or the default
    OUT/mixture_floor.json): one line, nothing made."""
    (tmp_path / 'file').write_bytes(b'mine')
    out = tmp_path / 'out'
    argv = [a for a in TINY if a != '--no-floor'] + ['--out', str(out)]
    if under == 'default':
        (out / sweep.FLOOR_FILE).mkdir(parents=True)
    else:
        argv += ['--floor-file', str(tmp_path / under / 'floors.json' if under else tmp_path)]
    before = snapshot(tmp_path)
    with pytest.raises(SystemExit) as e:
        sweep.main(argv)
    one_line_error(e.value.code, capsys.readouterr().err)
    assert snapshot(tmp_path) == before


def test_tiny_sweep_rows_scores_and_rerun(tmp_path, capsys):
    out = str(tmp_path)
    argv = TINY + ['--out', out, '--jobs', '1', '--no-figures']
    assert sweep.main(argv) == 0
    rows = read_csv(os.path.join(out, 'results.csv'))
    assert sorted((r['model'], int(r['k'])) for r in rows) == [
        ('least_squares', 0), ('mdn', 1), ('mdn', 2)]
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
    # Only the invocation that trained is timed, and summary.md says so.
    wall = json.load(open(os.path.join(out, 'wall_time.json')))
    assert [(w['trained'], w['runs'], w['jobs'], w['device']) for w in wall] == [
        (3, 3, 1, '-1')] and 0 <= wall[0]['seconds'] < 120
    assert ('Wall time of each invocation that trained (training, scoring and figures): '
            '{:.1f} min for 3 of the 3 runs, 1 worker(s) on device -1.'.format(
                wall[0]['seconds'] / 60)) in open(os.path.join(out, 'summary.md')).read()


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
    # The gap is to the Bayes NLL of the run's own 500 test points, whose
    # sampling error (about 0.04 nats here) the Bayes limit would keep.
    x, y = sweep.splits(sweep.grid(sweep.parse_args(argv))[0])['test']
    test_bayes = -np.mean(datasets.conditional_log_density('bishop', x[:, 0], y[:, 0]))
    summary = open(os.path.join(out, 'summary.md')).read()
    for k in (1, 2):
        line = next(x for x in summary.splitlines() if x.startswith('| {} | 1 |'.format(k)))
        cells = [c.strip() for c in line.split('|')[1:-1]]
        assert float(cells[3]) == pytest.approx(nll[k] - test_bayes, abs=1e-4)
        assert float(cells[4]) == pytest.approx(kept['bishop-inverse-k%d' % k], abs=1e-4)
        assert float(cells[5]) == pytest.approx(nll[k] - test_bayes - float(cells[4]),
                                                abs=2e-4)
    # Kept: a report does not compute them again; a damaged file is redone.
    monkeypatch.setattr(floor, 'mixture_floor', lambda *a, **kw: 0.5)
    assert sweep.main(argv + ['--report-only']) == 0
    assert json.load(open(os.path.join(out, sweep.FLOOR_FILE))) == kept
    with open(os.path.join(out, sweep.FLOOR_FILE), 'w') as f:
        f.write('{"bishop-inverse-k1": NaN, "bishop-inverse-k2": "x"')
    assert sweep.main(argv + ['--report-only']) == 0
    assert set(json.load(open(os.path.join(out, sweep.FLOOR_FILE))).values()) == {0.5}
    assert '| 0.5000 |' in open(os.path.join(out, 'summary.md')).read()
    # --recompute-floors replaces the kept ones of its grid, and only those.
    monkeypatch.setattr(floor, 'mixture_floor', lambda *a, **kw: 0.25)
    assert sweep.main(argv + ['-k', '2', '--report-only', '--recompute-floors']) == 0
    assert json.load(open(os.path.join(out, sweep.FLOOR_FILE))) == {
        'bishop-inverse-k1': 0.5, 'bishop-inverse-k2': 0.25}


def summary_of(tmp_path, nll, floor_of, test_bayes=-1.0):
    """The summary of made-up bishop rows {(K, seed): held-out NLL}, with
    K-floors {K: floor} and every seed's test points' Bayes NLL test_bayes."""
    cfg = sweep.SweepConfig(out=str(tmp_path), dataset=['bishop'],
                            k=sorted({k for k, _ in nll}), baseline=False)
    rows = [dict(dataset='bishop', model='mdn', k=k, seed=seed, nll=v, mse=0.1,
                 train_seconds=1.0) for (k, seed), v in nll.items()]
    sweep_summary.write_summary(cfg, rows, [], {('bishop', k): f for k, f in floor_of.items()},
                                'made up', {('bishop', seed): test_bayes
                                            for _, seed in nll})
    return open(cfg.summary_path).read()


def test_summary_names_the_smallest_k_within_a_hundredth_of_the_last_floor(tmp_path):
    floors = {1: 0.6, 2: 0.15, 4: 0.05, 8: 0.012, 12: 0.008}
    # Mean gaps (two seeds each) 0.61, 0.17, 0.0175, 0.0165, 0.012; the
    # K = 12 floor plus 0.01 is 0.018.
    nll = {(1, 0): -0.40, (1, 1): -0.38, (2, 0): -0.84, (2, 1): -0.82,
           (4, 0): -0.983, (4, 1): -0.982, (8, 0): -0.984, (8, 1): -0.983,
           (12, 0): -0.988, (12, 1): -0.988}
    summary = summary_of(tmp_path, nll, floors)
    assert ('Enough components: K = 4 (the smallest K whose mean gap is within 0.01 nats '
            'of the K = 12 floor, 0.0080; by the floors alone, K = 8).') in summary
    # A hair more: K = 4 is out (0.0187 > 0.018), K = 8 is in.
    nll[4, 0] = nll[4, 1] = -0.9813
    assert 'Enough components: K = 8 ' in summary_of(tmp_path, nll, floors)
    for k in (4, 8, 12):
        nll[k, 0] = nll[k, 1] = -0.95
    assert 'Enough components: no K (' in summary_of(tmp_path, nll, floors)
    assert sweep_summary.enough_components([1, 2], [0.3, 0.005], 0.0) == 2


def test_summary_flags_a_run_below_its_floor(tmp_path):
    """A floor is the KL of a concrete mixture: a run below it by more than
    three standard errors of its gap, sqrt(2 g / n) for a gap g on n test
    points, proves it wrong, and the summary says so; one within them is
    not flagged. 10,000 test points: at a floor of 0.15, 0.0164 nats."""
    floors = {2: 0.15, 4: 0.05}
    # Gaps 0.135 and 0.045: below their floors by less than three errors.
    nll = {(2, 0): -0.865, (2, 1): -0.84, (4, 0): -0.955, (4, 1): -0.9}
    summary = summary_of(tmp_path, nll, floors)
    assert '**Below its K-floor**' not in summary
    nll[2, 0] = -0.87
    flagged = [line for line in summary_of(tmp_path, nll, floors).splitlines()
               if line.startswith('**Below its K-floor**')]
    assert flagged == ['**Below its K-floor** by more than 3 standard errors, so the '
                       'floor is wrong there: K = 2, seed 0: gap +0.1300, floor 0.1500.']


def test_scores_in_original_units_match_direct_computation(tmp_path):
    """NLL and MSE in the target's units, recomputed from the saved model
    with scipy: the log-Jacobian's sign and MSE's scale**2 are checked."""
    argv = TINY + ['--dataset', 'otoro', '--out', str(tmp_path)]
    cfg = sweep.parse_args(argv)
    for point in sweep.grid(cfg):
        value, row = sweep.run_task(point, cfg)
        model = sweep.build_model(point)
        scaler = checkpoint.load(sweep.model_path(cfg, point), model)
        x, y = sweep.splits(point)['test']
        state = scaler.state()
        t_mean, t_scale = [np.asarray(state[k]) for k in sorted(state)
                           if k[0] in 'ty' and k.endswith(('mean', 'scale'))]
        assert np.all(t_scale > 2)  # otoro's target spans about +-10
        if point['model'] == 'least_squares':
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
    assert sweep.main(base + ['--runs', '2']) == 0
    capsys.readouterr()
    # Another config beside it: its bar starts at 0 of its own 2 runs.
    assert sweep.main(base + ['--hidden', '9', '-k', '1']) == 0
    err = capsys.readouterr().err
    assert '0/2' in err and '2/2' in err and '/6' not in err and '/8' not in err
    rows = read_csv(os.path.join(out, 'results.csv'))
    assert len(rows) == 8 and len({r['config'] for r in rows}) == 2
    # Fewer seeds than in the store: the summary counts seed 0 only.
    assert sweep.main(base + ['--report-only']) == 0
    summary = open(os.path.join(out, 'summary.md')).read()
    assert '| 1 | 1 |' in summary and '| 1 | 2 |' not in summary
    # One seed has no spread: no "± 0.0000", no "1 runs".
    assert '(one seed) |' in summary and '(one run).' in summary
    assert '± 0.0000' not in summary and '1 runs' not in summary
    assert '3/3' not in capsys.readouterr().err  # --report-only trains nothing


def test_diverging_run_is_failed_with_reason_and_excluded(tmp_path, capsys):
    out = str(tmp_path)
    # tanh (bounded) and no spread: at a step size of 1e30 one run ends with
    # a finite NLL, which is what the MSE check is for.
    argv = TINY + ['--out', out, '--jobs', '1', '--no-figures', '-k', '2', '--activation',
                   'tanh', '--lr-final', '1e-4', '--no-spread-components']
    assert sweep.main(argv) == 0
    capsys.readouterr()
    assert sweep.main(argv + ['-k', '1', '2', '--lr', '1e30']) == 0
    # Every run of it fails with its reason: two diverge in training; K = 2
    # ends with a finite NLL (about 1e30) but an infinite MSE, which is a
    # failure too, not a finished run that export would skip.
    failed = [t for t in trials(out) if t.state == optuna.trial.TrialState.FAIL]
    assert sorted(t.user_attrs['failure'].split(':')[0] for t in failed) == [
        'Diverged', 'Diverged', 'ValueError']
    assert 'non-finite score (mse inf)' in ' '.join(t.user_attrs['failure'] for t in failed)
    assert [t.state for t in trials(out)].count(optuna.trial.TrialState.COMPLETE) == 2
    captured = capsys.readouterr()
    assert '0 of 3 runs done, 3 failed' in captured.out
    assert 'skipping' not in captured.err
    rows = read_csv(os.path.join(out, 'results.csv'))
    assert all(np.isfinite(float(r['mse'])) for r in rows)
    summary = open(os.path.join(out, 'summary.md')).read()
    assert 'Failed' in summary and 'Diverged' in summary
    # Excluded from the table and from the best K.
    assert not [line for line in summary.splitlines() if line.startswith('| 1 ')]
    assert 'Best K' not in summary
    # Not retried unless asked; then retried (and it fails again).
    numbers = len(trials(out))
    assert sweep.main(argv + ['-k', '1', '2', '--lr', '1e30']) == 0
    assert len(trials(out)) == numbers
    assert sweep.main(argv + ['-k', '1', '2', '--lr', '1e30',
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


def test_rows_that_are_not_json_are_skipped_with_one_warning_each(copy_of_swept, capsys):
    """Two stored rows edited into invalid JSON: --report-only warns once for
    each, in one line, and exports the rest."""
    with sqlite3.connect(os.path.join(copy_of_swept, 'study.db')) as connection:
        ids = [i for i, in connection.execute(
            "SELECT trial_id FROM trial_user_attributes WHERE key = 'row' LIMIT 2")]
        connection.executemany("UPDATE trial_user_attributes SET value_json = ? "
                               "WHERE key = 'row' AND trial_id = ?",
                               [('{"k": 1', ids[0]), ('nonsense', ids[1])])
    connection.close()
    capsys.readouterr()
    assert sweep.main(TINY + ['--out', copy_of_swept, '--report-only', '--no-figures']) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if 'not valid JSON' in line]
    assert len(warnings) == 2 and 'Traceback' not in err, err
    assert all(line.startswith('warning: skipping trial ') for line in warnings)
    assert len(read_csv(os.path.join(copy_of_swept, 'results.csv'))) == 1


def test_export_skips_foreign_columns_and_counts_failures_without_warning(tmp_path, capsys):
    """A row with a column the table lacks is skipped with a warning (not a
    crash of the CSV writer); a failed run is returned as failed, silently."""
    url, study = study_at(tmp_path)
    fields = ['key', 'score']
    for key, state, attrs in [
            ('good', 'COMPLETE', {'row': {'key': 'good', 'score': '1.5'}}),
            ('extra', 'COMPLETE', {'row': {'key': 'extra', 'score': '2', 'more': 'x'}}),
            ('failed', 'FAIL', {'failure': 'Diverged: it did'})]:
        study.add_trial(optuna.trial.create_trial(
            state=optuna.trial.TrialState[state],
            value=1.0 if state == 'COMPLETE' else None, user_attrs=dict(attrs, key=key)))
    path = str(tmp_path / 'results.csv')
    rows, failed = sweep_table.export(study, path, fields, lambda row: float(row['score']))
    assert rows == {'good': 1.5} and failed == {'failed': 'Diverged: it did'}
    assert read_csv(path) == [{'key': 'good', 'score': '1.5'}]
    warnings = capsys.readouterr().err.strip().splitlines()
    assert len(warnings) == 1 and 'skipping trial 1 (extra)' in warnings[0]


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


@pytest.mark.parametrize('first, second', [
    ([], []), (['--population', '3', '--jobs', '2'], ['--population', '2'])])
def test_two_invocations_train_each_point_once(tmp_path, first, second):
    """Two commands at once on one study, as two machines would run them
    (one at a time, or in populations, one of them with two workers)."""
    argv = TINY + ['-k', '1', '2', '3', '--runs', '2', '--jobs', '1', '--no-figures']
    procs = [cli(tmp_path, *(argv + extra)) for extra in (first, second)]
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
    study = storage.open_study(storage.connect(url), 'race', {'script': 'test'})
    engine.enqueue(study, [{'k': 1}], key=lambda p: 'p1')
    read = study.get_trials(deepcopy=False)
    assert study._storage.set_trial_state_values(read[0]._trial_id,
                                                 optuna.trial.TrialState.RUNNING)
    study.get_trials = lambda deepcopy=True, states=None: read
    assert engine._claim(study, ['p1']) == ([], True)


def test_killed_worker_is_recovered_without_loss_or_duplicate(tmp_path):
    argv = TINY + ['-k', '1', '2', '3', '--epoch', '150',
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
    argv = TINY + ['-k', '1', '2', '--epoch', '200',
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
    # The same command again trains the stopped points: the grid is complete,
    # each point trained once.
    code, err = finish(cli(tmp_path, *argv), timeout=300)
    assert code == 0, err
    counts = trained(str(tmp_path))
    assert len(counts) == 3 and set(counts.values()) == {1}
    assert {t.user_attrs['key'] for t in stopped} <= set(counts)


def test_spread_components_is_a_config_of_its_own_and_is_applied(tmp_path):
    """--spread-components (the default) starts each MDN spread over the
    standardised training targets (seen after a run too short to move it) and
    has a config of its own, while the runs made without it keep theirs."""
    slow = ['--lr', '1e-9', '--lr-final', '1e-9', '--epoch', '1', '--quantile-start', '0',
            '--activation', 'tanh']
    plain = sweep.parse_args(TINY + slow + ['--no-spread-components',
                                            '--out', str(tmp_path / 'a')])
    spread = sweep.parse_args(TINY + slow + ['--out', str(tmp_path / 'b')])
    assert spread.spread_components
    assert sweep.config(plain) == {k: getattr(plain, sweep.RECORDED_OPTION.get(k, k))
                                   for k in sweep.CONFIG_KEYS}
    assert sweep.config_id(spread) != sweep.config_id(plain)
    for args in (plain, spread):
        point = next(p for p in sweep.grid(args) if p['k'] == 2)
        sweep.run_task(point, args)
        model = sweep.build_model(point)
        scaler = checkpoint.load(sweep.model_path(args, point), model)
        data = sweep.splits(point)
        t = scaler.targets(data['train'][1])
        _, mu, ln_var = model.mixture(scaler.inputs(data['test'][0]))
        q = np.quantile(t, [0.25, 0.75])
        near = np.abs(mu[:, :, 0] - q).max() < 0.3 and np.allclose(
            np.exp(0.5 * ln_var), np.ptp(t) / 2, rtol=0.3)
        assert near == (args is spread)


def test_spread_kinks_is_a_config_of_its_own_and_is_applied(tmp_path):
    """--spread-kinks (off by default) starts every model's first-layer units
    bending at standardised training inputs (seen after a run too short to
    move them), in a config of its own."""
    slow = ['--lr', '1e-9', '--lr-final', '1e-9', '--epoch', '1', '--quantile-start', '0',
            '--activation', 'relu', '--out', str(tmp_path)]
    plain, kinks = (sweep.parse_args(TINY + slow + extra) for extra in ([], ['--spread-kinks']))
    assert not plain.spread_kinks and 'spread_kinks' not in sweep.config(plain)
    assert sweep.config(kinks)['spread_kinks'] is True
    assert sweep.config_id(kinks) != sweep.config_id(plain)
    for point in (p for p in sweep.grid(kinks) if p['k'] in (0, 2)):
        sweep.run_task(point, kinks)
        model = sweep.build_model(point)
        scaler = checkpoint.load(sweep.model_path(kinks, point), model)
        x = scaler.inputs(sweep.splits(point)['train'][0])[:, 0]
        kink = -model.hidden.b.array / model.hidden.W.array[:, 0]
        assert np.abs(kink[:, None] - x[None, :]).min(axis=1).max() < 1e-4


def test_sigma_min_floors_every_component_the_sweep_trains(tmp_path):
    """--sigma-min S: each trained component's sd is >= S in standardised
    units (here far above what the data want), in a config of its own."""
    argv = TINY + ['--out', str(tmp_path)]
    args = sweep.parse_args(argv + ['--sigma-min', '0.5'])
    assert sweep.config(args)['sigma_min'] == 0.5
    assert sweep.config_id(args) != sweep.config_id(sweep.parse_args(argv))
    point = next(p for p in sweep.grid(args) if p['k'] == 2)
    sweep.run_task(point, args)
    model = sweep.build_model(point)
    scaler = checkpoint.load(sweep.model_path(args, point), model)
    _, _, ln_var = model.mixture(scaler.inputs(sweep.splits(point)['test'][0]))
    assert np.exp(0.5 * ln_var).min() >= 0.5 * (1 - 1e-6)


def test_claim_records_a_heartbeat_before_the_trial_is_running(tmp_path):
    """Stale checks look at the heartbeats of RUNNING trials, so a worker
    killed right after its claim must already have beaten once, or its trial
    would stay RUNNING forever. A trigger in the database refuses a claim of
    a trial that has no heartbeat yet."""
    url, study = study_at(tmp_path)
    engine.enqueue(study, [{'key': 'p1'}], by_key)
    with sqlite3.connect(str(tmp_path / 'study.db')) as connection:
        connection.execute(
            "CREATE TRIGGER claim_needs_heartbeat BEFORE UPDATE OF state ON trials "
            "WHEN NEW.state = 'RUNNING' AND NOT EXISTS (SELECT 1 FROM trial_heartbeats "
            "WHERE trial_id = NEW.trial_id) BEGIN "
            "SELECT RAISE(ABORT, 'claimed without a heartbeat'); END")
    connection.close()
    (trial,), busy = engine._claim(study, ['p1'])
    assert engine._key(trial) == 'p1' and busy
    assert study._storage.get_trial(trial._trial_id).state == optuna.trial.TrialState.RUNNING


def test_claim_takes_only_its_grid_and_waits_for_points_running_elsewhere(tmp_path):
    """Another grid's point WAITING in the same storage is neither claimed nor
    a crash; a point of this grid RUNNING (on another machine) keeps the
    worker waiting, so that its machine does not export without it."""
    url, study = study_at(tmp_path)
    engine.enqueue(study, [{'key': 'other'}], by_key)
    engine.enqueue(study, [{'key': 'mine'}], by_key)
    (trial,), busy = engine._claim(study, ['mine'])
    assert engine._key(trial) == 'mine' and busy
    assert engine._claim(study, ['mine']) == ([], True)
    study.tell(trial.number, 1.0)
    assert engine._claim(study, ['mine']) == ([], False)
    assert [t.state for t in study.get_trials()][0] == optuna.trial.TrialState.WAITING


def test_work_fails_non_finite_scores_and_stops_every_heartbeat(tmp_path):
    """A score that is not finite is a failure with its reason (retried on
    request), as is a run that raises; no heartbeat thread outlives its run."""
    url, study = study_at(tmp_path)
    points = [{'key': k, 'score': v}
              for k, v in [('fine', '1.5'), ('nan', 'nan'), ('inf', '-inf'), ('raises', '')]]
    engine.enqueue(study, points, by_key)

    def objective(point):
        return float(point['score']), {'key': point['key']}

    engine.work(url, 'grid', [p['key'] for p in points], objective)
    assert not [t for t in threading.enumerate() if isinstance(t, engine._Heartbeat)]
    done = engine.outcomes(study)
    assert sorted(done) == ['fine', 'inf', 'nan', 'raises']
    assert done['fine'].state == optuna.trial.TrialState.COMPLETE and done['fine'].value == 1.5
    assert done['nan'].user_attrs['failure'] == (
        'ValueError: the score is nan, not a finite number')
    assert done['inf'].user_attrs['failure'] == (
        'ValueError: the score is -inf, not a finite number')
    assert done['raises'].user_attrs['failure'].startswith('ValueError: could not convert')
    assert engine.enqueue(study, points, by_key) == 0
    assert engine.enqueue(study, points, by_key, retry_failed=True) == 3


def test_a_pruned_duplicate_never_owns_its_point(tmp_path):
    """Two commands enqueued one point at once; the copy is dropped (PRUNED)
    while the first runs elsewhere. When that run dies, the point is queued
    again and trained, once: the dropped copy does not own it."""
    url, study = study_at(tmp_path)
    point = {'key': 'p'}
    for _ in range(2):
        study.add_trial(optuna.trial.create_trial(
            state=optuna.trial.TrialState.WAITING, system_attrs={'fixed_params': point},
            user_attrs={'key': 'p', 'point': point}))
    first, copy = study.get_trials()
    for trial in (first, copy):
        assert study._storage.set_trial_state_values(trial._trial_id,
                                                     optuna.trial.TrialState.RUNNING)
    engine._run(study, [copy], lambda p: pytest.fail('a duplicate was trained'))
    dropped = study.get_trials()[1]
    assert dropped.state == optuna.trial.TrialState.PRUNED
    assert dropped.user_attrs['duplicate_of'] == first.number
    study.tell(first.number, state=optuna.trial.TrialState.FAIL)  # died: no reason
    assert engine.enqueue(study, [point], by_key) == 1
    runs = []
    engine.work(url, 'grid', ['p'], lambda p: runs.append(p) or (1.0, {'key': 'p'}))
    assert runs == [point]
    assert engine.outcomes(study)['p'].state == optuna.trial.TrialState.COMPLETE


def test_sigma_min_floors_sigma_at_exactly_s(tmp_path):
    """--sigma-min S: sigma = sqrt(exp(head) + S**2) in standardised units, so
    S where the head asks for far less, and never below S."""
    s = 0.2
    args = sweep.parse_args(TINY + ['--out', str(tmp_path), '--sigma-min', str(s)])
    point = next(p for p in sweep.grid(args) if p['k'] == 2)
    model = sweep.build_model(point, np.random.default_rng(0))
    x = np.linspace(-3, 3, 61, dtype=np.float32)[:, None]

    def sigma():
        return np.exp(0.5 * np.asarray(model.mixture(x)[2], dtype=np.float64))[:, :, 0]

    assert sigma().min() >= s * (1 - 1e-6)  # a random head
    model.head.W.array[...] = 0
    model.head.b.array[4:] = [-60, np.log(4.0)]  # the two log-variances
    assert np.allclose(sigma()[:, 0], s, rtol=1e-5, atol=0)
    assert np.allclose(sigma()[:, 1], np.sqrt(4 + s ** 2), rtol=1e-5, atol=0)


def test_best_k_is_the_k_with_the_lowest_mean_nll():
    """Means over seeds (K = 3's is lowest, K = 2 has the lowest single run),
    of this problem's MDN rows only; None without rows."""
    nll = {1: [2.0, 2.2], 2: [0.9, 1.3], 3: [1.0, 1.1], 5: [3.0]}
    rows = [dict(dataset='bishop', model='mdn', k=k, nll=v) for k in nll for v in nll[k]]
    rows += [dict(dataset='otoro', model='mdn', k=5, nll=-9.0),
             dict(dataset='bishop', model='least_squares', k=1, nll=-9.0)]
    assert sweep_summary.best_k(rows, 'bishop', [1, 2, 3, 5]) == 3
    assert sweep_summary.best_k(rows, 'bishop', [1, 2, 4]) == 2
    assert sweep_summary.best_k(rows, 'bishop', [5, 1]) == 1
    assert sweep_summary.best_k(rows, 'worldmodels', [1, 2]) is None


def test_sweep_config_layout_is_where_the_files_are(swept, tmp_path):
    """SweepConfig owns the output layout: results.csv, summary.md, the
    models of its grid, the SQLite study and the floors are at its paths."""
    cfg = sweep.parse_args(TINY + ['--out', swept])
    assert os.path.isfile(cfg.results_path) and os.path.isfile(cfg.summary_path)
    assert sorted(os.listdir(cfg.models)) == sorted(
        os.path.basename(sweep.model_path(cfg, p)) for p in sweep.grid(cfg))
    assert cfg.url == 'sqlite:///' + os.path.join(swept, 'study.db')
    assert sweep.finished(cfg) == {sweep.key(p) for p in sweep.grid(cfg)}
    assert cfg.floor_path == os.path.join(swept, sweep.FLOOR_FILE)
    elsewhere = sweep.SweepConfig(out=str(tmp_path), floor_file=str(tmp_path / 'f.json'),
                                  storage='sqlite:///' + str(tmp_path / 'x.db'))
    assert (elsewhere.floor_path, elsewhere.url) == (
        str(tmp_path / 'f.json'), 'sqlite:///' + str(tmp_path / 'x.db'))
    # Nothing is made by asking a storage that holds no study.
    assert sweep.finished(elsewhere) == set() and os.listdir(tmp_path) == []


def test_a_baseline_stored_as_mse_is_read_as_least_squares(tmp_path):
    """The committed studies name the least-squares baseline 'mse' in keys,
    points and rows: the same key now, and exported as least_squares."""
    url, study = study_at(tmp_path, sweep.STUDY)
    cfg = sweep.SweepConfig(out=str(tmp_path), dataset=['bishop'], k=[1], runs=1)
    point = next(p for p in sweep.grid(cfg) if p['model'] == 'least_squares')
    stored = dict(point, model='mse')
    assert sweep.key(point) == sweep.key(stored) and '-mse-k0-' in sweep.key(point)
    row = dict({k: stored[k] for k in sweep.KEY}, mse='0.5', train_seconds='1.0')
    study.add_trial(optuna.trial.create_trial(value=0.5, user_attrs={
        'key': sweep.key(stored), 'point': stored, 'row': row}))
    rows, failed = sweep.export(cfg, study)
    assert [(r['model'], r['mse']) for r in rows] == [('least_squares', 0.5)] and not failed
    assert [r['model'] for r in read_csv(cfg.results_path)] == ['least_squares']


def test_remake_models_trains_again_only_the_missing_seed_0_models(copy_of_swept, capsys):
    """Models are not committed: --report-only --remake-models trains the
    seed-0 models the figures need again (the same model on this machine:
    the same held-out NLL as the stored run) and draws the figures; without
    it, or with the models there, nothing trains."""
    models = os.path.join(copy_of_swept, 'models')
    kept = {name: open(os.path.join(models, name), 'rb').read()
            for name in os.listdir(models)}
    assert sweep.main(TINY + ['--out', copy_of_swept, '--report-only']) == 0
    assert 'remade' not in capsys.readouterr().err
    shutil.rmtree(models)
    assert sweep.main(TINY + ['--out', copy_of_swept, '--report-only']) == 0
    assert not os.path.exists(models)
    capsys.readouterr()
    assert sweep.main(TINY + ['--out', copy_of_swept, '--report-only',
                              '--remake-models']) == 0
    remade = [line for line in capsys.readouterr().err.splitlines()
              if line.startswith('remade ')]
    # The figures need both K's MDNs and the least-squares fit.
    assert sorted(os.listdir(models)) == sorted(kept)
    assert len(remade) == 3
    for line in remade:
        score, stored = re.fullmatch(r'remade \S+ for the figures: score (\S+), the '
                                     r'stored run\'s (\S+)', line).groups()
        assert abs(float(score) - float(stored)) < 1e-4, line
    assert os.path.exists(os.path.join(copy_of_swept, 'bishop-inverse-best_k.png'))
    assert sweep.main(TINY + ['--out', copy_of_swept, '--report-only',
                              '--remake-models']) == 0
    assert 'remade' not in capsys.readouterr().err
