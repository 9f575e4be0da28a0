"""The experiment scripts' command lines: one line, exit 2, before any work."""
import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load(name):
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(ROOT, 'experiments', name + '.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SCRIPTS = {name: load(name) for name in ('bishop_demmdn1', 'otoro_2015', 'benchmark')}


def refused(script, argv, capsys):
    with pytest.raises(SystemExit) as e:
        SCRIPTS[script].parse_args(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'Traceback' not in err, err
    return err


@pytest.mark.parametrize('script', ['bishop_demmdn1', 'otoro_2015', 'benchmark'])
@pytest.mark.parametrize('argv, message', [
    (['--seed', str(2 ** 32)], '--seed: 4294967296 is not in [0, 4294967295]'),
    (['--seed', '-1'], '--seed: -1 is not in [0, 4294967295]'),
    (['--out', ''], '--out is empty: give a directory'),
    (['--out', '{tmp}/file'], 'file is a file, not a directory'),
    (['--out', '{tmp}/file/sub'], 'file is a file, not a directory'),
])
def test_seed_and_out_are_checked_before_any_work(script, argv, message, tmp_path,
                                                 capsys):
    (tmp_path / 'file').write_text('kept')
    argv = [a.format(tmp=tmp_path) for a in argv]
    if '--out' not in argv:
        argv += ['--out', str(tmp_path / 'out')]
    assert message in refused(script, argv, capsys)
    assert sorted(os.listdir(str(tmp_path))) == ['file']
    assert (tmp_path / 'file').read_text() == 'kept'


@pytest.mark.parametrize('script, argv', [
    ('bishop_demmdn1', ['--hidden', str(10 ** 9)]),
    ('bishop_demmdn1', ['-k', str(10 ** 9)]),
    ('bishop_demmdn1', ['--points', str(10 ** 10)]),
    ('otoro_2015', ['--hidden', str(10 ** 9)]),
    ('otoro_2015', ['--mse-hidden', str(10 ** 10)]),
    ('otoro_2015', ['--points', str(10 ** 10)]),
    ('benchmark', ['--batch-sizes', '100', str(10 ** 10)]),
    ('benchmark', ['--sample-rows', str(10 ** 12)]),
])
def test_absurd_sizes_are_refused_before_allocating(script, argv, tmp_path, capsys):
    err = refused(script, argv + ['--out', str(tmp_path / 'out')], capsys)
    assert 'this run needs about' in err and 'use smaller' in err
    assert os.listdir(str(tmp_path)) == []


def test_defaults_fit_in_memory(tmp_path):
    for script in ('bishop_demmdn1', 'otoro_2015', 'benchmark'):
        SCRIPTS[script].parse_args(['--out', str(tmp_path / script)])
    assert os.listdir(str(tmp_path)) == []
