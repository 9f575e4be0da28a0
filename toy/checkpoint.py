"""The one model-file format: a trained model's parameters and the
preprocess.Standardizer it was trained under, as one .npz (no pickle).

Files are written atomically and read with every member's header checked
before its data (files.read_npz_safe), so a damaged or crafted file is
refused in one line instead of loaded.
"""
import os

from chainer import backend

from toy import files, preprocess

#: The largest model file `load` reads.
MAX_BYTES = 2 ** 26


def save(path, model, scaler):
    """A trained Chainer model's parameters and its preprocess.Standardizer's
    state, as one .npz written atomically (no pickle)."""
    arrays = {'param' + n: backend.CpuDevice().send(p.array)
              for n, p in model.namedparams()}
    arrays.update({'scaler_' + k: v for k, v in scaler.state().items()})
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    files.save_npz(path, arrays)


def load(path, model):
    """Load `save`'s file into `model` (built like the saved one):
    returns its preprocess.Standardizer. ValueError, one line, for a file that is
    missing, empty, damaged, pickled or holds another model."""
    arrays = files.read_npz_safe(path, max_bytes=MAX_BYTES)
    for name, p in model.namedparams():
        a = arrays.get('param' + name)
        if a is None or a.shape != p.shape or a.dtype.kind != 'f':
            raise ValueError('{} does not hold this model (parameter {}: {})'.format(
                path, name, 'missing' if a is None else '{} {}'.format(
                    a.shape, a.dtype)))
        p.array[...] = a
    try:
        return preprocess.Standardizer.from_state(
            {k[7:]: v for k, v in arrays.items() if k.startswith('scaler_')})
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError('{} has no usable standardisation ({})'.format(path, e))
