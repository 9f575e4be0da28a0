"""Files written whole or not at all, and .npz files read without pickle.

Every file the project writes goes through `atomic_write`: a reader, or a
run killed half-way, sees either the old file or the whole new one.
"""
import contextlib
import json
import math
import os
import zipfile

import numpy as np

#: `read_npz_safe` refuses files whose arrays would take more memory than
#: this (a few kB of zip can claim gigabytes), unless told a larger limit.
MAX_BYTES = 2 ** 30

_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0,
                   (2, 0): np.lib.format.read_array_header_2_0}


@contextlib.contextmanager
def atomic_write(path, mode='w'):
    """Open a temporary file beside `path`; rename it over `path` on success.

    The temporary file is in the same directory (so the rename is atomic)
    and is removed if the block raises, leaving `path` as it was.
    """
    tmp = '{}.{}.tmp'.format(path, os.getpid())
    try:
        with open(tmp, mode) as f:
            yield f
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _non_finite(data, where='the top level'):
    """Where in `data` (nested dicts, lists, numbers) a NaN or inf is, or None."""
    if isinstance(data, float) and not math.isfinite(data):
        return where
    items = (data.items() if isinstance(data, dict)
             else enumerate(data) if isinstance(data, (list, tuple)) else ())
    for key, value in items:
        found = _non_finite(value, '[{!r}]'.format(key) if where == 'the top level'
                            else '{}[{!r}]'.format(where, key))
        if found:
            return found
    return None


def write_json(path, data):
    """Write `data` as strict JSON (sorted keys), atomically.

    Strict JSON has no NaN or Infinity: a non-finite number raises
    ValueError naming where it is, and nothing is written.
    """
    where = _non_finite(data)
    if where:
        raise ValueError('{}: refusing to write a non-finite number (NaN or inf) '
                         'at {}, which strict JSON cannot hold'.format(path, where))
    text = json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + '\n'
    with atomic_write(path) as f:
        f.write(text)


def write_metrics(path, metrics, shown):
    """Write a run's `metrics` as JSON to `path` (`write_json`) and print the
    `shown` ones as one JSON line, rounded to four decimals."""
    write_json(path, metrics)
    print(json.dumps({k: round(metrics[k], 4) for k in shown}))


def markdown_table(header, rows, align=None):
    """A Markdown table as a list of lines: `header` (column titles) and `rows`
    (sequences of cells, each str()'d); `align`, one of 'l' or 'r' per column,
    defaults to the first column left and the others right."""
    align = align or 'l' + 'r' * (len(header) - 1)
    rule = {'l': '---', 'r': '---:'}
    lines = ['| ' + ' | '.join(header) + ' |',
             '|' + '|'.join(rule[a] for a in align) + '|']
    return lines + ['| ' + ' | '.join(str(c) for c in row) + ' |' for row in rows]


def save_npz(path, arrays):
    """np.savez of a dict of arrays, atomically."""
    with atomic_write(path, 'wb') as f:
        np.savez(f, **arrays)


def read_npz_safe(path, check=None, max_bytes=MAX_BYTES, keys=None):
    """The arrays of an .npz file (a snapshot, a saved model) as a dict, safely.

    Nothing is unpickled (numpy.load in Chainer's load_npz allows pickle,
    so a crafted file could run code). Every member's .npy header is read
    first; `check(key, shape, dtype)` may raise ValueError to refuse a member
    the caller does not expect, and files whose arrays would take more than
    `max_bytes` are refused, both before any data are read. Raises
    ValueError with a one-line reason for any file that cannot be read:
    missing, empty, not a zip, a truncated or damaged member (CRC), object
    (pickled) arrays. `keys`: return only these members (if present); the
    headers of all are checked all the same.
    """
    try:
        if os.path.getsize(path) == 0:
            raise ValueError('{} is empty (0 bytes), not an .npz file'.format(path))
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise ValueError('{} does not exist'.format(path))
    except IsADirectoryError:
        raise ValueError('{} is a directory, not an .npz file'.format(path))
    except zipfile.BadZipFile:
        raise ValueError('{} is not an .npz file (not a zip archive: a single '
                         '.npy, a truncated download, another format?)'.format(path))
    except OSError as e:
        raise ValueError('{} cannot be read ({})'.format(path, e.strerror or e))
    with archive:
        members, total = {}, 0
        for info in archive.infolist():
            key, ext = os.path.splitext(info.filename)
            if ext != '.npy':
                raise ValueError('{} holds {}, which is not an .npy array'.format(
                    path, info.filename))
            shape, dtype, size = _read_header(path, archive, info)
            if dtype.hasobject:
                raise ValueError('{} holds pickled object arrays ({}), which are '
                                 'refused because unpickling can run code'
                                 .format(path, key))
            if check is not None:
                check(key, shape, dtype)
            if info.file_size < size:
                raise ValueError('{}: member {} is truncated: its header announces '
                                 '{} {} ({} bytes) but it holds {} bytes'.format(
                                     path, key, shape, dtype, size, info.file_size))
            total += size
            if total > max_bytes:
                raise ValueError('{}: its arrays would take over {:,} bytes ({} '
                                 'alone is {} {}), more than the {:,} allowed: not '
                                 'a file this program wrote'.format(
                                     path, total, key, shape, dtype, max_bytes))
            if keys is None or key in keys:
                members[key] = info
        arrays = {}
        for key, info in members.items():
            try:
                with archive.open(info) as f:
                    arrays[key] = np.lib.format.read_array(f, allow_pickle=False)
            except zipfile.BadZipFile as e:
                raise _damaged(path, key, e)
            except (ValueError, EOFError, OSError, zipfile.LargeZipFile) as e:
                raise ValueError('{}: member {} cannot be read ({})'.format(
                    path, key, ' '.join(str(e).split())))
    return arrays


def _damaged(path, key, error):
    return ValueError('{} is damaged ({} in member {}): use an intact copy'.format(
        path, ' '.join(str(error).split()), key))


def _read_header(path, archive, info):
    """(shape, dtype, bytes the whole member needs) from a member's .npy header."""
    try:
        with archive.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version not in _HEADER_READERS:
                raise ValueError('unsupported .npy version {}'.format(version))
            shape, _, dtype = _HEADER_READERS[version](f)
            header = f.tell()
    except zipfile.BadZipFile as e:   # a small member is read whole, CRC included
        raise _damaged(path, info.filename[:-4], e)
    except (ValueError, EOFError, OSError) as e:
        raise ValueError('{}: member {} has no valid .npy header ({})'.format(
            path, info.filename, ' '.join(str(e).split())))
    return shape, dtype, header + math.prod(shape) * dtype.itemsize
