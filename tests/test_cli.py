"""`python toy/mdn.py`: help, one-line errors with exit 2, outputs, and --resume."""
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import toy  # noqa: F401
from chainer.backends import cuda

SCRIPT = os.path.join(os.path.dirname(__file__), os.pardir, 'toy', 'mdn.py')
SMALL = ['--train-points', '200', '--test-points', '500', '--hidden', '16',
         '--batchsize', '50']


def run(*args, cwd=None):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd)


def test_help():
    result = run('--help')
    assert result.returncode == 0
    for option in ('--device', '--gpu', '--epoch', '--batchsize', '-k',
                   '--hidden', '--activation', '--seed', '--out', '--resume'):
        assert option in result.stdout


BAD = {
    'k0': (['-k', '0'], '-k/--mixtures: 0 is not >= 1'),
    'hidden0': (['--hidden', '0'], '--hidden: 0 is not >= 1'),
    'batch': (['--batchsize', '501'], '--batchsize 501 is larger than the 500'),
    'device': (['--device', 'tpu'], "unknown device 'tpu'"),
    'epoch': (['--epoch', 'many'], "invalid integer value: 'many'"),
    'activation': (['--activation', 'swish'], "invalid choice: 'swish'"),
    'seed': (['--seed', '-1'], '--seed: -1 is not in [0, 4294967295]'),
    'seed_too_big': (['--seed', str(2 ** 32)], '--seed: 4294967296 is not in [0, '),
    'resume': (['--resume', 'no-such-file'], '--resume no-such-file: not a file'),
}


@pytest.mark.parametrize('case', sorted(BAD))
def test_bad_argument_is_one_line_exit_2_and_keeps_results(case, tmp_path):
    earlier = tmp_path / 'metrics.json'
    earlier.write_text('{"kept": true}')
    args, message = BAD[case]
    result = run(*args, '--out', str(tmp_path), cwd=str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.count('\n') == 1 and message in result.stderr, result.stderr
    assert 'Traceback' not in result.stderr
    assert os.listdir(str(tmp_path)) == ['metrics.json']
    assert earlier.read_text() == '{"kept": true}'


@pytest.mark.skipif(cuda.available, reason='a GPU is present')
def test_gpu_without_cuda_is_refused_not_run_on_cpu(tmp_path):
    result = run('--gpu', '0', '--out', str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.count('\n') == 1
    assert 'needs CuPy with a working CUDA' in result.stderr
    assert not os.listdir(str(tmp_path))


def test_pickled_snapshot_is_refused(tmp_path):
    evil = tmp_path / 'snapshot'
    with open(str(evil), 'wb') as f:
        np.savez(f, payload=np.array([object()], dtype=object))
    result = run('--resume', str(evil), '--out', str(tmp_path / 'out'))
    assert result.returncode == 2
    assert 'pickled object arrays' in result.stderr
    assert result.stderr.count('\n') == 1


def params(snapshot):
    with np.load(snapshot) as npz:
        return {k: npz[k] for k in npz.files if '/model:main/' in k or 'optimizer' in k}


def test_outputs_and_resume_replays_the_uninterrupted_run(tmp_path):
    full, part = str(tmp_path / 'full'), str(tmp_path / 'part')
    assert run(*SMALL, '--epoch', '6', '--frequency', '3', '--out', full).returncode == 0
    for name in ('mdn-data_only.png', 'mdn-linear_with_preds.png',
                 'mdn-with_preds.png', 'mdn-loss.png', 'metrics.json'):
        assert os.path.getsize(os.path.join(full, name)) > 0
    metrics = json.load(open(os.path.join(full, 'metrics.json')))
    assert np.isfinite(metrics['nll_test']) and metrics['config']['epoch'] == 6

    # "Interrupted" after the snapshot at epoch 3, then resumed to epoch 6.
    assert run(*SMALL, '--epoch', '3', '--frequency', '3', '--out', part).returncode == 0
    resumed = run(*SMALL, '--epoch', '6', '--frequency', '3', '--out', part,
                  '--resume', os.path.join(part, 'mdn-snapshot'))
    assert resumed.returncode == 0, resumed.stderr
    want = params(os.path.join(full, 'mdn-snapshot'))
    got = params(os.path.join(part, 'mdn-snapshot'))
    assert want.keys() == got.keys() and len(want) > 4
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    assert json.load(open(os.path.join(part, 'metrics.json')))['nll_test'] == \
        metrics['nll_test']


# ---------------------------------------------------------------------------
# In-process: errors that must come before any work, and checked snapshots
# ---------------------------------------------------------------------------

from toy import mdn, train  # noqa: E402
from test_files import claim_size, npy_bytes  # noqa: E402

TINY = ['--train-points', '40', '--test-points', '50', '--hidden', '4', '--batchsize', '20']


def refused(argv, capsys, monkeypatch):
    """Run mdn.main(argv), which must exit 2 with one line, before any training."""
    def no_training(*args, **kwargs):
        raise AssertionError('training started')
    if '--resume' not in argv:
        monkeypatch.setattr(train, 'train', no_training)
    with pytest.raises(SystemExit) as e:
        mdn.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'Traceback' not in err, err
    return err


def listing(folder):
    return {name: os.path.getmtime(os.path.join(folder, name))
            for name in sorted(os.listdir(folder))}


@pytest.mark.parametrize('case', ['empty', 'file', 'under_file', 'read_only'])
def test_out_is_checked_before_any_work(case, tmp_path, capsys, monkeypatch):
    (tmp_path / 'file').write_text('kept')
    out = {'empty': '', 'file': str(tmp_path / 'file'),
           'under_file': str(tmp_path / 'file' / 'sub' / 'out'),
           'read_only': str(tmp_path / 'ro' / 'out')}[case]
    message = {'empty': '--out is empty: give a directory',
               'file': 'file is a file, not a directory',
               'under_file': 'file is a file, not a directory',
               'read_only': 'cannot write in'}[case]
    if case == 'read_only':
        (tmp_path / 'ro').mkdir(mode=0o555)
        try:
            # root writes through permission bits: a file system root cannot
            # create files in stands in (the check really tries).
            open(str(tmp_path / 'ro' / 'probe'), 'w').close()
            os.unlink(str(tmp_path / 'ro' / 'probe'))
            out = os.path.join('/proc', 'mdn-out')
        except PermissionError:
            pass
    assert message in refused(['--out', out], capsys, monkeypatch)
    assert (tmp_path / 'file').read_text() == 'kept'
    assert not os.path.exists(out) or case == 'file'


@pytest.mark.parametrize('option, value', [('--hidden', 10 ** 9), ('-k', 10 ** 9),
                                           ('--train-points', 10 ** 10),
                                           ('--test-points', 10 ** 10)])
def test_absurd_sizes_are_refused_before_allocating(option, value, tmp_path, capsys,
                                                    monkeypatch):
    err = refused([option, str(value), '--out', str(tmp_path)], capsys, monkeypatch)
    assert 'this run needs about' in err and 'use smaller --hidden' in err
    assert os.listdir(str(tmp_path)) == []


def test_batchsize_equal_to_points_is_accepted(tmp_path):
    mdn.main(TINY[:4] + ['--batchsize', '40', '--epoch', '1', '--out', str(tmp_path)])
    assert json.load(open(str(tmp_path / 'metrics.json')))['config']['batchsize'] == 40


def test_deeper_net_runs_and_records_its_layers(tmp_path):
    mdn.main(TINY + ['--hidden', '6', '5', '--activation', 'silu', '--epoch', '2',
                     '--out', str(tmp_path)])
    metrics = json.load(open(str(tmp_path / 'metrics.json')))
    assert metrics['config']['hidden'] == [6, 5]
    assert np.isfinite(metrics['nll_test'])


@pytest.fixture(scope='module')
def snapshot_run(tmp_path_factory):
    """A finished 2-epoch run of TINY, in a folder of its own."""
    out = str(tmp_path_factory.mktemp('run'))
    mdn.main(TINY + ['--epoch', '2', '--out', out])
    return out


def snapshot_arrays(run):
    with np.load(os.path.join(run, 'mdn-snapshot')) as npz:
        return {key: npz[key] for key in npz.files}


def write_variant(path, case, arrays):
    """A damaged or foreign version of the snapshot `arrays` at `path`."""
    head = 'updater/model:main/head/W'
    if case == 'empty':
        open(path, 'wb').close()
        return
    if case == 'flipped_byte':
        save(path, arrays)
        blob = bytearray(open(path, 'rb').read())
        blob[blob.index(arrays[head].tobytes()) + 5] ^= 0xFF
        open(path, 'wb').write(bytes(blob))
        return
    if case in ('truncated', 'zip_bomb'):
        arrays = dict(arrays)
        del arrays[head]
        save(path, arrays)
        shape = (15, 4) if case == 'truncated' else (30000, 30000)   # 3.6 GB
        with zipfile.ZipFile(path, 'a', zipfile.ZIP_DEFLATED) as z:
            z.writestr(head + '.npy', npy_bytes(shape, '<f4', b'\0' * 40))
        if case == 'zip_bomb':
            claim_size(path, head + '.npy', 36 * 10 ** 8 + 128)
        return
    arrays = dict(arrays)
    if case == 'float_iteration':
        arrays['updater/iteration'] = np.float64(4.0)
    elif case == 'complex_parameter':
        arrays[head] = arrays[head].astype(np.complex64)
    elif case == 'order_out_of_range':
        arrays['updater/iterator:main/order'] = arrays['updater/iterator:main/order'] + 40
    elif case == 'nan_parameter':
        arrays[head] = arrays[head].copy()
        arrays[head][0, 0] = np.nan
    elif case == 'no_options':
        del arrays[train.OPTIONS_KEY]
    save(path, arrays)


def save(path, arrays):
    with open(path, 'wb') as f:     # np.savez would add .npz to a bare path
        np.savez(f, **arrays)


SNAPSHOT_CASES = {
    'empty': r'is empty \(0 bytes\), not an .npz file',
    'flipped_byte': r'is damaged \(Bad CRC-32 .* in member updater/model:main/head/W\)',
    'float_iteration': r'updater/iteration is \(\) float64 where this model and '
                       r'options need \(\) int64',
    'complex_parameter': r'head/W is \(15, 4\) complex64 where this model and options '
                         r'need \(15, 4\) float32',
    'order_out_of_range': r'the iterator state is damaged \(its order is not a '
                          r'permutation of the 40 points',
    'truncated': r'member updater/model:main/head/W is truncated',
    'zip_bomb': r'arrays would take over 3,600,0\d\d,\d\d\d bytes \(updater/model:main/'
                r'head/W alone is \(30000, 30000\) float32\)',
    'nan_parameter': r'updater/model:main/head/W holds NaN or inf: the run it comes '
                     r'from had diverged',
    'no_options': r'does not record the options it was made with',
}


@pytest.mark.parametrize('case', sorted(SNAPSHOT_CASES))
def test_a_bad_snapshot_is_one_line_naming_the_cause(case, snapshot_run, tmp_path,
                                                     capsys, monkeypatch):
    path = str(tmp_path / 'snapshot')
    write_variant(path, case, snapshot_arrays(snapshot_run))
    before = listing(snapshot_run)
    if case == 'zip_bomb':
        def no_data(*args, **kwargs):
            raise AssertionError('array data were read')
        monkeypatch.setattr(np.lib.format, 'read_array', no_data)
    err = refused(TINY + ['--epoch', '4', '--out', snapshot_run, '--resume', path],
                  capsys, monkeypatch)
    assert re.search(SNAPSHOT_CASES[case], err), err
    assert listing(snapshot_run) == before


@pytest.mark.parametrize('options, message', [
    (['--epoch', '1'], 'the snapshot is at epoch 2, past the 1 asked for: pass '
                       '--epoch 2 or more'),
    (['--activation', 'tanh'], 'made with --activation none, this run has tanh: '
                               'resume with the same --activation'),
    (['--seed', '1'], 'made with --seed 0, this run has 1'),
    (['--loss', 'density'], 'made with --loss fused, this run has density'),
    (['--batchsize', '10'], 'made with --batchsize 20, this run has 10'),
    (['--hidden', '8'], 'made with --hidden 4, this run has 8'),
    (['--hidden', '4', '4'], 'made with --hidden 4, this run has [4, 4]'),
    (['-k', '3'], 'made with -k 5, this run has 3'),
    (['--train-points', '60'], 'made with --train-points 40, this run has 60'),
])
def test_resume_refuses_other_options_naming_them(options, message, snapshot_run,
                                                  capsys, monkeypatch):
    before = listing(snapshot_run)
    argv = TINY + ['--epoch', '4', '--out', snapshot_run, '--resume',
                   os.path.join(snapshot_run, 'mdn-snapshot')]
    argv += options     # argparse keeps the last value of an option
    assert message in refused(argv, capsys, monkeypatch)
    assert listing(snapshot_run) == before


def test_resume_refuses_a_snapshot_of_the_baseline(snapshot_run, capsys, monkeypatch):
    err = refused(TINY + ['--epoch', '4', '--out', snapshot_run, '--resume',
                          os.path.join(snapshot_run, 'least_squares-snapshot')],
                  capsys, monkeypatch)
    assert 'is a snapshot of a LeastSquares, not of a MDN' in err


def test_a_run_leaves_no_stale_snapshot(snapshot_run, tmp_path):
    out = str(tmp_path / 'out')
    shutil.copytree(snapshot_run, out)
    # fewer epochs than --frequency: only the end of the run writes a snapshot
    mdn.main(TINY + ['--epoch', '3', '--frequency', '5', '--seed', '3', '--out', out])
    for name in ('mdn-snapshot', 'least_squares-snapshot'):
        with np.load(os.path.join(out, name)) as npz:
            assert json.loads(str(npz[train.OPTIONS_KEY]))['seed'] == 3
            assert int(npz['updater/iterator:main/epoch']) == 3


def test_resume_at_the_requested_epoch_trains_nothing_more(snapshot_run, tmp_path):
    out = str(tmp_path / 'out')
    shutil.copytree(snapshot_run, out)
    want = json.load(open(os.path.join(snapshot_run, 'metrics.json')))['nll_test']
    mdn.main(TINY + ['--epoch', '2', '--out', out, '--resume',
                     os.path.join(snapshot_run, 'mdn-snapshot')])
    assert json.load(open(os.path.join(out, 'metrics.json')))['nll_test'] == want
    with np.load(os.path.join(out, 'mdn-snapshot')) as npz:
        assert int(npz['updater/iteration']) == 2 * 2


# ---------------------------------------------------------------------------
# toy/cli.py: the device and seed options every script shares
# ---------------------------------------------------------------------------

from toy import cli  # noqa: E402


def device_parser():
    parser = cli.ArgumentParser(prog='prog')
    cli.add_device_arguments(parser)
    return parser


def exits_2(capsys, call, *args):
    with pytest.raises(SystemExit) as e:
        call(*args)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1, err
    return err


@pytest.mark.parametrize('argv, spec', [(['--gpu'], '0'), (['-g'], '0'),
                                        (['--gpu', '1'], '1'), ([], '-1'),
                                        (['--device', '@cupy:2'], '@cupy:2')])
def test_a_bare_gpu_option_means_gpu_0(argv, spec):
    assert device_parser().parse_args(argv).device == spec


@pytest.mark.skipif(cuda.available, reason='a GPU is present')
def test_a_bare_gpu_option_is_refused_without_cuda(capsys):
    """`--gpu` alone asks for GPU 0: without CUDA that is an error, never the CPU."""
    parser = device_parser()
    err = exits_2(capsys, cli.get_device, parser, parser.parse_args(['--gpu']).device)
    assert 'device 0 needs CuPy with a working CUDA' in err


@pytest.mark.gpu
def test_a_bare_gpu_option_runs_on_gpu_0():
    parser = device_parser()
    device = cli.get_device(parser, parser.parse_args(['--gpu']).device)
    assert device.xp is cuda.cupy and device.device.id == 0


@pytest.mark.parametrize('index, count', [(0, 0), (1, 1), (2, 2), (3, 2)])
def test_a_gpu_index_past_the_last_gpu_is_refused(index, count, capsys):
    err = exits_2(capsys, cli.check_gpu_index, device_parser(), str(index), index,
                  count)
    assert 'device {} does not exist: this machine has {} GPU(s)'.format(
        index, count) in err


@pytest.mark.parametrize('index, count', [(0, 1), (1, 2), (7, 8)])
def test_a_gpu_index_below_the_count_is_accepted(index, count):
    assert cli.check_gpu_index(device_parser(), str(index), index, count) is None


@pytest.mark.gpu
def test_the_gpu_count_itself_is_refused(capsys):
    count = cuda.cupy.cuda.runtime.getDeviceCount()
    err = exits_2(capsys, cli.get_device, device_parser(), str(count))
    assert 'does not exist' in err


@pytest.mark.parametrize('text', ['0', '1', str(2 ** 31), str(2 ** 32 - 1)])
def test_every_seed_numpy_takes_is_accepted(text):
    value = cli.seed(text)
    assert value == int(text)
    # The bound is NumPy's legacy generator's (and CuPy's): it takes each.
    np.random.RandomState(value)
    args = mdn.make_parser().parse_args(['--seed', text])
    assert args.seed == int(text)


def test_options_are_the_command_lines_and_run_is_main_without_parsing(tmp_path):
    """mdn.options(...) is what `python toy/mdn.py --OPTION VALUE` parses; run(options)
    writes and returns the metrics main writes: other scripts call it, not argv."""
    parsed = mdn.make_parser().parse_args(['--seed', '3', '--out', str(tmp_path)])
    built = mdn.options(seed=3, out=str(tmp_path))
    assert vars(built) == dict(vars(mdn.check_args(mdn.make_parser(), parsed)))
    with pytest.raises(ValueError, match='no option mixtures'):
        mdn.options(mixtures=3)
    metrics = mdn.run(mdn.options(**dict(
        zip(('train_points', 'test_points', 'hidden', 'batchsize'), (40, 50, [4], 20)),
        epoch=1, out=str(tmp_path))))
    assert json.load(open(str(tmp_path / 'metrics.json')))['nll_test'] == metrics['nll_test']
