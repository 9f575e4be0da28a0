"""toy/files.py: whole-or-nothing writes, strict JSON, checked pickle-free .npz reading."""
import io
import json
import os
import struct
import zipfile

import numpy as np
import pytest

from toy import files


def test_atomic_write_replaces_whole_or_keeps_the_old_file(tmp_path):
    path = str(tmp_path / 'a.txt')
    with files.atomic_write(path) as f:
        f.write('old')
    with pytest.raises(RuntimeError):
        with files.atomic_write(path) as f:
            f.write('half of the new')
            raise RuntimeError('killed')
    assert open(path).read() == 'old'
    assert os.listdir(str(tmp_path)) == ['a.txt']     # no temporary file left
    with files.atomic_write(path, 'wb') as f:
        f.write(b'new')
    assert open(path).read() == 'new'


def test_write_json_is_strict_and_names_the_non_finite_value(tmp_path):
    path = tmp_path / 'metrics.json'
    path.write_text('{"kept": true}')
    for bad, where in (({'nll': float('nan')}, "['nll']"),
                       ({'a': {'b': [1.0, float('inf')]}}, "['a']['b'][1]")):
        with pytest.raises(ValueError, match=r'non-finite.*at {}'.format(
                where.replace('[', r'\[').replace(']', r'\]'))):
            files.write_json(str(path), bad)
        assert path.read_text() == '{"kept": true}'
    files.write_json(str(path), {'b': 1, 'a': [0.5]})
    assert json.loads(path.read_text()) == {'a': [0.5], 'b': 1}


def npy_bytes(shape, dtype, data=None):
    """An .npy header announcing (shape, dtype), followed by `data` (default: all of it)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {
        'descr': np.lib.format.dtype_to_descr(np.dtype(dtype)),
        'fortran_order': False, 'shape': tuple(shape)})
    if data is None:
        data = np.zeros(shape, dtype).tobytes()
    return buf.getvalue() + data


def claim_size(path, member, size):
    """Set `member`'s uncompressed size in the zip's central directory to `size`
    (what a zip bomb's honest size field would say, without the gigabytes)."""
    blob = bytearray(open(path, 'rb').read())
    start = 0
    while True:
        start = blob.index(b'PK\x01\x02', start)
        name_len, = struct.unpack_from('<H', blob, start + 28)
        if blob[start + 46:start + 46 + name_len] == member.encode():
            struct.pack_into('<I', blob, start + 24, size)
            break
        start += 4
    open(path, 'wb').write(bytes(blob))


@pytest.fixture
def no_data_read(monkeypatch):
    """Fail the test if any array data are read."""
    def refuse(*args, **kwargs):
        raise AssertionError('array data were read')
    monkeypatch.setattr(np.lib.format, 'read_array', refuse)


def test_reads_plain_arrays(tmp_path):
    path = str(tmp_path / 'ok.npz')
    files.save_npz(path, {'w': np.arange(3.0), 'text': np.array('{"a": 1}')})
    got = files.read_npz_safe(path)
    np.testing.assert_array_equal(got['w'], [0, 1, 2])
    assert str(got['text']) == '{"a": 1}'
    assert list(files.read_npz_safe(path, keys=['w'])) == ['w']


@pytest.mark.parametrize('case, message', [
    ('missing', 'does not exist'),
    ('empty', r'is empty \(0 bytes\)'),
    ('text', r'not an \.npz file \(not a zip archive'),
    ('npy', r'not an \.npz file \(not a zip archive'),
    ('directory', 'is a directory'),
    ('pickle', 'pickled object arrays'),
    ('not_npy', 'holds notes.txt, which is not an .npy array'),
    ('bad_header', 'member w.npy has no valid .npy header'),
])
def test_unreadable_files_get_one_line_naming_the_cause(tmp_path, case, message):
    path = str(tmp_path / 'f.npz')
    if case == 'empty':
        open(path, 'wb').close()
    elif case == 'text':
        open(path, 'w').write('not a snapshot')
    elif case == 'npy':
        np.save(open(path, 'wb'), np.zeros(3))
    elif case == 'directory':
        os.mkdir(path)
    elif case == 'pickle':
        np.savez(path, w=np.zeros(3), payload=np.array([{'a': 1}], dtype=object))
    elif case in ('not_npy', 'bad_header'):
        with zipfile.ZipFile(path, 'w') as z:
            z.writestr('notes.txt' if case == 'not_npy' else 'w.npy', b'hello')
    with pytest.raises(ValueError, match=message) as e:
        files.read_npz_safe(path)
    assert '\n' not in str(e.value)


def test_a_flipped_byte_is_reported_as_damage(tmp_path):
    path = str(tmp_path / 'f.npz')
    w = np.arange(1000, dtype=np.float32)
    np.savez(path, w=w)
    blob = bytearray(open(path, 'rb').read())
    blob[blob.index(w[500:].tobytes())] ^= 0xFF
    open(path, 'wb').write(bytes(blob))
    with pytest.raises(ValueError, match=r'is damaged \(Bad CRC-32.* in member w\)'):
        files.read_npz_safe(path)


def test_a_truncated_member_is_reported_as_truncated(tmp_path):
    path = str(tmp_path / 'f.npz')
    with zipfile.ZipFile(path, 'w') as z:
        z.writestr('w.npy', npy_bytes((15, 4), '<f4', b'\0' * 100))
    with pytest.raises(ValueError, match=r'member w is truncated: .*\(15, 4\) float32 '
                                         r'\(\d+ bytes\) but it holds \d+ bytes'):
        files.read_npz_safe(path)


def test_a_zip_bomb_is_refused_from_its_headers(tmp_path, no_data_read):
    # A member that announces 2 GiB (and whose zip entry says as much): refused
    # from the header, before anything is decompressed or allocated.
    path = str(tmp_path / 'bomb.npz')
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as z:
        z.writestr('w.npy', npy_bytes((2 ** 28,), '<f8', b'\0' * 1000))
    claim_size(path, 'w.npy', 2 ** 31 + 128)
    with pytest.raises(ValueError, match=r'would take over 2,147,483,\d+ bytes '
                                         r'\(w alone is \(268435456,\) float64\)'):
        files.read_npz_safe(path)


def test_check_sees_every_header_before_any_data(tmp_path, no_data_read):
    path = str(tmp_path / 'f.npz')
    np.savez(path, a=np.zeros((2, 3), np.float32), b=np.zeros(4, np.complex64))
    seen = []

    def check(key, shape, dtype):
        seen.append((key, shape, dtype))
        if dtype.kind == 'c':
            raise ValueError('{} is complex'.format(key))
    with pytest.raises(ValueError, match='b is complex'):
        files.read_npz_safe(path, check=check)
    assert seen == [('a', (2, 3), np.float32), ('b', (4,), np.complex64)]


def test_the_size_cap_is_on_all_members_together(tmp_path, no_data_read):
    """Two members, each under the cap, that together exceed it are refused
    (a mutant capping each member alone survived); either one alone passes."""
    path = str(tmp_path / 'two.npz')
    np.savez(path, a=np.zeros(100), b=np.zeros(100))          # 800 bytes of data each
    with pytest.raises(ValueError, match=r'would take over 1,\d{3} bytes \(b alone is '
                                         r'\(100,\) float64\), more than the 1,200 allowed'):
        files.read_npz_safe(path, max_bytes=1200)
    for key in ('a', 'b'):
        np.savez(path, **{key: np.zeros(100)})
        with pytest.raises(AssertionError, match='array data were read'):
            files.read_npz_safe(path, max_bytes=1200)           # past the cap: reading


def test_two_processes_writing_one_file_do_not_collide(tmp_path):
    """Each writer has its own temporary file (named with its pid): a second
    process that writes and renames while the first is half-way leaves the
    first's file alone, and the first's rename then puts its whole text in
    place. With one shared temporary name the second would truncate the
    first's half-written file and rename it away under it."""
    path = str(tmp_path / 'metrics.json')
    half_written, go = os.pipe(), os.pipe()
    pid = os.fork()
    if pid == 0:                                             # the first writer
        status = 1
        try:
            with files.atomic_write(path) as f:
                f.write('first ' * 1000)
                f.flush()
                os.write(half_written[1], b'x')
                os.read(go[0], 1)
                f.write('end')
            status = 0
        finally:
            os._exit(status)
    os.close(half_written[1])            # so that a child that died reads as b''
    os.close(go[0])
    assert os.read(half_written[0], 1) == b'x'
    with files.atomic_write(path) as f:                      # the second writer
        f.write('second')
    assert open(path).read() == 'second'
    os.write(go[1], b'x')
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert open(path).read() == 'first ' * 1000 + 'end'
    assert os.listdir(str(tmp_path)) == ['metrics.json']
