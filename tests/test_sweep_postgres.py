"""The sweep against a real PostgreSQL server (the `postgres` fixture in
conftest.py starts a throwaway one): two commands as two machines would run
them, bad credentials, no server, and a database that goes away mid-sweep."""
import csv
import os
import subprocess
import time

import optuna
import pytest
import sqlalchemy

from tools import pg_server
from toy import storage
from test_sweep import COMMAND, FAST, ROOT, TINY, sweep


def cli(out, url, *argv):
    return subprocess.Popen(COMMAND + ['--out', str(out),
                             '--storage', url] + list(argv), env=FAST, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def study_trials(url):
    try:
        return optuna.load_study(study_name=sweep.STUDY,
                                 storage=storage.storage_url(url)).get_trials()
    except KeyError:  # not made yet
        return []


@pytest.mark.parametrize('population', [1, 3])
def test_two_machines_share_the_grid_and_train_each_point_once(postgres, tmp_path,
                                                               population):
    """Also with --population: each claims up to 3 runs at once."""
    url = postgres.create_database('two_machines_{}'.format(population))
    argv = TINY + ['-k', '1', '2', '3', '--runs', '2', '--jobs', '1',
                   '--population', str(population), '--no-figures']
    # Separate output folders: nothing shared but the database.
    procs = [cli(tmp_path / name, url, *argv) for name in ('a', 'b')]
    for proc in procs:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
    complete = [t.user_attrs['key'] for t in study_trials(url)
                if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 8 and len(set(complete)) == 8
    # Each machine exports the whole table, each point once.
    for name in ('a', 'b'):
        with open(tmp_path / name / 'results.csv', newline='') as f:
            assert sorted(sweep.key(r) for r in csv.DictReader(f)) == sorted(complete)
    # Each model was written by the machine that trained it, and only there
    # (a fast machine may have trained them all).
    models = [m[:-4] for name in 'ab' if os.path.isdir(tmp_path / name / 'models')
              for m in os.listdir(tmp_path / name / 'models')]
    assert sorted(models) == sorted(complete)


@pytest.mark.parametrize('url, says', [
    (lambda server: server.url(password='wrong'), 'password authentication failed'),
    (lambda server: 'postgresql://{}:{}@127.0.0.1:{}/x'.format(
        pg_server.USER, pg_server.PASSWORD, pg_server.free_port()), 'refused'),
    (lambda server: server.url('no_such_database'), 'does not exist'),
])
def test_unusable_server_exit_2_with_one_line(postgres, tmp_path, url, says, capsys):
    with pytest.raises(SystemExit) as e:
        sweep.main(TINY + ['--out', str(tmp_path), '--storage', url(postgres)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1, err
    assert says in err and pg_server.PASSWORD not in err


def tables(url):
    engine = sqlalchemy.create_engine(storage.storage_url(url))
    try:
        return sorted(sqlalchemy.inspect(engine).get_table_names())
    finally:
        engine.dispose()


@pytest.mark.parametrize('name, sql, argv, says', [
    ('foreign', 'CREATE TABLE foo (a integer); INSERT INTO foo VALUES (1)', [],
     "tables that are not an Optuna storage's (foo)"),
    ('own_trials', 'CREATE TABLE studies (id integer PRIMARY KEY, name text); '
     'CREATE TABLE trials (id integer PRIMARY KEY, study integer)', [],
     "tables that are not an Optuna storage's (studies, trials)"),
    ('empty', '', ['--report-only'], '--report-only: nothing to report'),
])
def test_database_of_something_else_is_refused_before_any_write(
        postgres, tmp_path, capsys, name, sql, argv, says):
    """A database holding another program's tables is refused before Optuna
    adds its own; --report-only on an empty one creates nothing."""
    url = postgres.create_database(name)
    if sql:
        postgres.execute(sql, database=name)
    before = tables(url)
    with pytest.raises(SystemExit) as e:
        sweep.main(TINY + ['--out', str(tmp_path / 'out'), '--storage', url] + argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1, err
    assert says in err and pg_server.PASSWORD not in err
    assert tables(url) == before


def test_database_going_away_stops_workers_with_one_line(postgres, tmp_path):
    url = postgres.create_database('goes_away')
    proc = cli(tmp_path, url, *(TINY + ['-k', '1', '2', '3', '4', '5', '6',
                                        '--epoch', '20', '--train-points', '1000',
                                        '--jobs', '2', '--no-figures']))
    deadline = time.time() + 120
    while time.time() < deadline and not [
            t for t in study_trials(url) if t.state == optuna.trial.TrialState.COMPLETE]:
        time.sleep(0.3)
    postgres.execute("ALTER DATABASE goes_away WITH ALLOW_CONNECTIONS false; "
                     "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE datname = 'goes_away'")
    _, err = proc.communicate(timeout=120)
    lines = [line for line in err.splitlines() if 'error:' in line]
    assert proc.returncode == 1 and 'Traceback' not in err, err
    assert len(lines) == 1 and 'stopped answering' in lines[0]
    # What was finished is still there once the database is back.
    postgres.execute('ALTER DATABASE goes_away WITH ALLOW_CONNECTIONS true')
    assert [t for t in study_trials(url) if t.state == optuna.trial.TrialState.COMPLETE]
