"""Parameter files: a safe HDF5 format and the original's adaptive loading.

File layout (HDF5; nothing in it can run code when loaded)::

    /                       attrs: format='ELEKTRONN parameters', format_version=1,
                                   elektronn_version, poolings (JSON list of pool shapes)
    /layer000/W, /layer000/b    datasets, float32, in this package's layouts:
                                conv 2D (nof, ch, fx, fy), conv 3D (nof, ch, fz, fx, fy),
                                perceptron W (n_in, n_out); attrs: type (layer class name)
    /layer001/...

The root attribute ``content_sha256`` is a SHA-256 of the parameters (layer types, parameter names,
shapes and float32 values) and the pool shapes; reading verifies it, so that a file damaged after it
was written (a flipped bit, a truncated copy) fails with :class:`ParameterFileError` naming the file
instead of loading wrong weights. Files without it (older ones) are read unverified.

Conv filters are cross-correlation kernels (PyTorch's convention). Files are written atomically.

Loading is *adaptive* by default, as in the original: parameters whose shapes differ from the
network's are fitted — conv filters are tiled or cropped along the filter and channel axes and
centre-aligned in space (the rest filled with noise at the loaded filters' std), biases are
cropped or tiled, perceptron weights of another shape are skipped — so that a smaller saved net
(for instance a pre-trained autoencoder encoder) can initialise a bigger one.
"""
import hashlib
import json
import logging
import os
import warnings

import h5py
import numpy as np

from elektronn import __version__
from elektronn.utils import atomic_path

logger = logging.getLogger(__name__)

__all__ = ['save_parameters', 'save_parameter_entries', 'read_parameter_file', 'apply_parameters', 'FORMAT_NAME',
           'ParameterFileError']

#: The value of the file attribute ``format`` that marks an HDF5 file as an ELEKTRONN parameter file.
FORMAT_NAME = 'ELEKTRONN parameters'
FORMAT_VERSION = 1
_HDF5_SIGNATURE = b'\x89HDF\r\n\x1a\n'


class ParameterFileError(ValueError):
    """A parameter file cannot be read: missing parts, damaged or not a parameter file; the message names it."""


def _content_digest(entries, poolings_json):
    """SHA-256 (hex) of layer dicts ``{'type': ..., name: array}`` and the pool record, as stored."""
    h = hashlib.sha256(poolings_json.encode())
    for i, entry in enumerate(entries):
        names = [name for name in entry if name != 'type']
        h.update(json.dumps([i, str(entry.get('type', '')), names]).encode())
        for name in names:
            arr = np.ascontiguousarray(entry[name], dtype='<f4')
            h.update(repr(arr.shape).encode())
            h.update(arr.tobytes())
    return h.hexdigest()


def save_parameters(path, layers, poolings=()):
    """Write the parameters of ``layers`` to the HDF5 file ``path`` (atomically).

    Args:
        path: Target file.
        layers: Layers (``_Layer`` instances) in network order.
        poolings: The network's pool shapes, stored as a record (as the original did).
    """
    entries = [dict([('type', type(layer).__name__)] + list(zip(layer.param_names, layer.param_arrays())))
               for layer in layers]
    save_parameter_entries(path, entries, poolings)


def save_parameter_entries(path, entries, poolings=()):
    """Write layer dicts ``{'type': name, param_name: array, ...}`` (as :func:`read_parameter_file`
    returns them) to the HDF5 file ``path`` (atomically)."""
    entries = [{k: (v if k == 'type' else np.asarray(v, dtype=np.float32)) for k, v in entry.items()}
               for entry in entries]
    poolings_json = json.dumps([[int(p) for p in np.atleast_1d(pool)] for pool in poolings])
    with atomic_path(path) as tmp:
        with h5py.File(tmp, 'w') as f:
            f.attrs['format'] = FORMAT_NAME
            f.attrs['format_version'] = FORMAT_VERSION
            f.attrs['elektronn_version'] = __version__
            f.attrs['poolings'] = poolings_json
            f.attrs['content_sha256'] = _content_digest(
                [dict(entry, type=entry.get('type', '')) for entry in entries], poolings_json)
            for i, entry in enumerate(entries):
                names = [name for name in entry if name != 'type']
                g = f.create_group('layer%03d' % i)
                g.attrs['type'] = entry.get('type', '')
                g.attrs['param_names'] = json.dumps(names)
                for name in names:
                    g.create_dataset(name, data=np.asarray(entry[name], dtype=np.float32))


def _file_kind(path):
    with open(path, 'rb') as f:
        head = f.read(8)
    if head.startswith(_HDF5_SIGNATURE):
        return 'hdf5'
    if head[:1] == b'\x80' or head[:1] in (b'(', b']', b'['):
        return 'pickle'
    return 'unknown'


def read_parameter_file(path):
    """Read a parameter file.

    Returns:
        ``(layers, poolings)`` where ``layers`` is a list of ``{'type': str, name: array, ...}``
        dicts in network order.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ParameterFileError: (a ``ValueError``) ``path`` is not a parameter file, or a damaged one
            (truncated, a part missing or unreadable, the content not matching its checksum).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError('parameter file %r does not exist' % path)
    kind = _file_kind(path)
    if kind == 'pickle':
        from elektronn.net import legacy
        try:
            return legacy.read_legacy_param_file(path)
        except ValueError as e:
            raise ParameterFileError(str(e)) from None
    if kind != 'hdf5':
        raise ParameterFileError('%r is not an ELEKTRONN parameter file (neither HDF5 nor a legacy .param pickle%s)'
                                 % (path, '; it is empty' if os.path.getsize(path) == 0 else ''))
    try:
        f = h5py.File(path, 'r')
    except Exception as e:  # noqa: BLE001 -- h5py raises OSError, but a damaged file may give anything
        raise ParameterFileError('%r cannot be read as an HDF5 parameter file; it is damaged or incomplete (e.g. '
                                 'truncated by a full disk or an interrupted copy): %s' % (path, e)) from None
    with f:
        try:
            return _read_hdf5_parameters(f, path)
        except ParameterFileError:
            raise
        except Exception as e:  # noqa: BLE001 -- a damaged part: whatever h5py, NumPy or json raise
            raise ParameterFileError('%r is a damaged parameter file: %s: %s' % (path, type(e).__name__, e)) from None


def _read_hdf5_parameters(f, path):
    if f.attrs.get('format') != FORMAT_NAME:
        raise ParameterFileError('%r is an HDF5 file but not an ELEKTRONN parameter file (no format=%r attribute)'
                                 % (path, FORMAT_NAME))
    version = int(f.attrs.get('format_version', 0))
    if version > FORMAT_VERSION:
        raise ParameterFileError('%r has parameter format version %i; this ELEKTRONN (%s) reads up to %i: update it'
                                 % (path, version, __version__, FORMAT_VERSION))
    poolings_json = f.attrs.get('poolings', '[]')
    poolings = json.loads(poolings_json)
    layers = []
    for key in sorted(k for k in f.keys() if k.startswith('layer')):
        g = f[key]
        entry = {'type': str(g.attrs.get('type', ''))}
        for name in json.loads(g.attrs.get('param_names', '[]')):
            entry[name] = np.asarray(g[name], dtype=np.float32)
        layers.append(entry)
    expected = f.attrs.get('content_sha256')
    if expected is not None and _content_digest(layers, poolings_json) != expected:
        raise ParameterFileError('%r is damaged: its parameters do not match the checksum saved with them (the file '
                                 'changed after it was written, e.g. a flipped bit or an incomplete copy); use another '
                                 'parameter file of the run' % path)
    return layers, poolings


def _fit_axis(arr, axis, n, centre):
    """Tile ``arr`` along ``axis`` up to ``n`` entries, or crop it (leading or centred) down to ``n``."""
    size = arr.shape[axis]
    if n >= size:
        return np.take(arr, np.arange(n) % size, axis=axis)
    start = (size - n) // 2 if centre else 0
    return np.take(arr, np.arange(start, start + n), axis=axis)


def adapt_filters(saved, target_shape, rng=np.random):
    """Fit saved conv filters ``(nof, ch, *spatial)`` into ``target_shape``.

    Filters and channels are tiled when the target has more and cropped when it has fewer
    (channels centred); the spatial extent is centre-aligned; voxels without a saved value get
    noise at the saved filters' std.
    """
    src = _fit_axis(saved, 0, target_shape[0], centre=False)
    src = _fit_axis(src, 1, target_shape[1], centre=True)
    out = rng.normal(0, float(np.std(saved)) + 1e-9, target_shape).astype(np.float32)
    dst_index, src_index = [slice(None), slice(None)], [slice(None), slice(None)]
    for t, s in zip(target_shape[2:], src.shape[2:]):
        if t >= s:
            dst_index.append(slice((t - s) // 2, (t - s) // 2 + s))
            src_index.append(slice(None))
        else:
            dst_index.append(slice(None))
            src_index.append(slice((s - t) // 2, (s - t) // 2 + t))
    out[tuple(dst_index)] = src[tuple(src_index)]
    return out


def _adapt(saved, target_shape, name, layer_index, layer):
    """An array of ``target_shape`` made from ``saved``, or ``None`` to skip (with a message)."""
    if saved.ndim == 1 and len(target_shape) == 1:
        return _fit_axis(saved, 0, target_shape[0], centre=False)
    if saved.ndim == len(target_shape) and saved.ndim >= 4:
        logger.info('adapting filters of layer %i: %s -> %s', layer_index, saved.shape, tuple(target_shape))
        return adapt_filters(saved, target_shape)
    # stacklevel: the caller of apply_parameters (via _apply_adaptive)
    warnings.warn('Load: skipping %s of layer %i (%s): saved shape %s does not fit %s'
                  % (name, layer_index, type(layer).__name__, saved.shape, tuple(target_shape)), stacklevel=4)
    return None


def _first_shapes(entries):
    """Shape of the first parameter of every layer entry (a ``{name: array}`` dict), for the printout."""
    shapes = []
    for entry in entries:
        arrays = [v for k, v in entry.items() if k != 'type']
        shapes.append(tuple(arrays[0].shape) if arrays else None)
    return shapes


def _apply_strict(layers, saved, path):
    if len(saved) != len(layers):
        raise ValueError('%s holds parameters for %i layers, the network has %i (strict loading needs the '
                         'same architecture; use strict=False to load what fits)' % (path, len(saved), len(layers)))
    for i, (layer, entry) in enumerate(zip(layers, saved)):
        for name, current in zip(layer.param_names, layer.param_arrays()):
            if name not in entry:
                raise ValueError('%s: layer %i (%s) has no parameter %r in the file'
                                 % (path, i, type(layer).__name__, name))
            if entry[name].shape != current.shape:
                raise ValueError('%s: layer %i (%s) parameter %s has shape %s in the file but %s in the network'
                                 % (path, i, type(layer).__name__, name, entry[name].shape, current.shape))
    for layer, entry in zip(layers, saved):
        for name in layer.param_names:
            layer.set_param_array(name, entry[name])


def _apply_adaptive(layers, saved, path, n_layers_to_load):
    current = [dict(zip(layer.param_names, layer.param_arrays())) for layer in layers]
    logger.info('loading(adaptive) from %s', path)
    logger.info('Shapes of loaded file are: %s', _first_shapes(saved))
    logger.info('Shapes of current Net are: %s', _first_shapes(current))
    n_load = len(saved) if n_layers_to_load < 0 else min(n_layers_to_load, len(saved))
    logger.info('#Layers(sav) = %s loading %s', len(saved), n_load)
    logger.info('#Layers(CNN) = %s', len(layers))
    for i, (layer, entry, now) in enumerate(zip(layers[:n_load], saved, current)):
        for name, value_now in now.items():
            if name not in entry:
                warnings.warn('Load: layer %i has no saved %s, keeping its values' % (i, name), stacklevel=3)
                continue
            value = entry[name]
            if value.shape != value_now.shape:
                value = _adapt(value, value_now.shape, name, i, layer)
            if value is not None:
                layer.set_param_array(name, value)
    logger.info('loading complete')


def apply_parameters(layers, saved, path='', strict=False, n_layers_to_load=-1):
    """Copy saved parameters (from :func:`read_parameter_file`) into ``layers``.

    Args:
        layers: The network's layers, in order.
        saved: The saved layer dicts.
        path: File name, for messages.
        strict: Require the same number of layers and exactly matching shapes.
        n_layers_to_load: Load only the first k layers (all if negative; ignored with ``strict``).

    Raises:
        ValueError: with ``strict``, naming the first layer and parameter that does not match.
    """
    if strict:
        _apply_strict(layers, saved, path)
    else:
        _apply_adaptive(layers, saved, path, n_layers_to_load)
