"""Importer for the parameter files of ELEKTRONN 1.x (``.param``, ``CNN.save``).

The original saved parameters as consecutive pickle records (protocol 2, written by Python 2):

1. a list with the shape of every layer's first parameter;
2. per layer its parameters: conv layers ``W, b``, perceptron layers ``b, W`` (first the bias),
   recurrent layers ``W_in, W_hid, b_hid, hid_0``;
3. the list of pool shapes.

Pickle can run arbitrary code while loading, so this reader admits nothing but NumPy arrays of
numbers and plain containers (lists, tuples, numbers, strings): the only callables it resolves
are NumPy's array and dtype reconstructors and the latin-1 byte-string decoding of Python 3's
protocol-2 pickles. A file that names anything else is refused with a :class:`ValueError`
before that thing is ever called.

Layouts are converted into this package's:

* 2D filters ``(nof, ch, fx, fy)`` keep their shape, 3D filters ``(nof, fz, ch, fx, fy)`` become
  ``(nof, ch, fz, fx, fy)``;
* every filter is flipped in all its spatial axes: Theano's ``conv2d`` and ``conv3d2d`` computed
  true convolutions, PyTorch computes cross-correlations;
* a perceptron layer right after a 3D conv layer saw its input flattened in the original's
  ``(z, ch, x, y)`` order; :func:`reorder_flattened_inputs` permutes its weight rows into this
  package's ``(ch, z, x, y)`` order once the network (and so ``z``, ``x``, ``y``) is known.
"""
import io
import os
import warnings

import numpy as np

from elektronn.safe_pickle import ArrayUnpickler, RefusedGlobal

__all__ = ['read_legacy_param_file', 'reorder_flattened_inputs', 'FLATTEN_ORDER_KEY']

#: Key marking a perceptron entry whose weight rows are still in the original's 3D flatten order.
FLATTEN_ORDER_KEY = 'theano_flatten_order'

def _check_plain(value, path, where):
    """Raise unless ``value`` is made of numeric arrays, numbers, strings and lists/tuples only."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in 'biuf' or value.dtype.fields is not None:
            raise ValueError('%r: record %s holds an array of dtype %s; a parameter file holds numbers only'
                             % (path, where, value.dtype))
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_plain(item, path, where)
    elif not isinstance(value, (int, float, np.number, str, bytes, type(None))):
        raise ValueError('%r: record %s holds a %s; a parameter file holds arrays, numbers and lists only'
                         % (path, where, type(value).__name__))


def _read_records(path):
    """All pickle records of ``path``, loaded through the restricted unpickler."""
    with open(path, 'rb') as f:
        data = f.read()
    if data.startswith(b'\x89HDF\r\n\x1a\n'):
        raise ValueError('%r is already an HDF5 parameter file (the current format): load it with '
                         'loadParameters, there is nothing to convert' % path)
    stream = io.BytesIO(data)
    # Python 2 wrote the array buffers as byte strings; latin-1 maps them to str 1:1 for NumPy.
    unpickler = ArrayUnpickler(stream, encoding='latin1')
    records = []
    while stream.tell() < len(data):
        try:
            record = unpickler.load()
        except RefusedGlobal as e:
            raise ValueError('%r was refused: its record %i references %s, which a parameter file never contains '
                             '(loading it could run code). Only load parameter files from sources you trust.'
                             % (path, len(records), e)) from None
        except Exception as e:  # any other decoding failure: not a parameter file (or a damaged one)
            raise ValueError('%r is not a readable ELEKTRONN 1.x parameter file: record %i could not be read (%s: %s)'
                             % (path, len(records), type(e).__name__, e)) from None
        _check_plain(record, path, len(records))
        records.append(record)
    return records


def _shape_list(value, path):
    if not isinstance(value, (list, tuple)) or not all(
            isinstance(s, (list, tuple)) and all(isinstance(n, (int, np.integer)) for n in s) for s in value):
        raise ValueError('%r is not an ELEKTRONN 1.x parameter file: its first record should be the list of layer '
                         'shapes, got %r' % (path, value if not isinstance(value, np.ndarray) else value.shape))
    return [tuple(int(n) for n in s) for s in value]


def _flip_spatial(W, axes):
    return np.flip(W, axis=axes).copy()  # a fresh array: torch refuses negative strides, even on length-1 axes


def _layer_entry(records, k, shape, path, index):
    """The entry of layer ``index`` whose parameters start at record ``k``: ``(entry, next k)``."""
    def record(j, what):
        if j >= len(records) or not isinstance(records[j], np.ndarray):
            raise ValueError('%r: layer %i lacks its %s (the file ends early or is damaged)' % (path, index, what))
        return np.asarray(records[j], dtype=np.float32)

    first = record(k, 'first parameter')
    if first.shape != shape:
        raise ValueError('%r: layer %i should start with an array of shape %s (from the shape list), got %s'
                         % (path, index, shape, first.shape))
    if first.ndim == 4:  # 2D conv: W (nof, ch, fx, fy), b
        return {'type': 'ConvLayer2d', 'W': _flip_spatial(first, (2, 3)), 'b': record(k + 1, 'bias')}, k + 2
    if first.ndim == 5:  # 3D conv: W (nof, fz, ch, fx, fy), b
        W = first.transpose(0, 2, 1, 3, 4)
        return {'type': 'ConvLayer3d', 'W': _flip_spatial(W, (2, 3, 4)), 'b': record(k + 1, 'bias')}, k + 2
    second = record(k + 1, 'second parameter')
    if first.ndim == 1 and second.ndim == 2:  # perceptron, the original's order: b, W
        return {'type': 'PerceptronLayer', 'W': second, 'b': first}, k + 2
    if first.ndim == 2 and second.ndim == 1:  # perceptron saved as W, b
        return {'type': 'PerceptronLayer', 'W': first, 'b': second}, k + 2
    if first.ndim == 2 and second.ndim == 2:  # recurrent: W_in, W_hid, b_hid, hid_0
        return {'type': 'RecurrentLayer', 'W_in': first, 'W_hid': second, 'b_hid': record(k + 2, 'b_hid'),
                'hid_0': record(k + 3, 'hid_0')}, k + 4
    raise ValueError('%r: layer %i has parameters of shapes %s and %s, which match no ELEKTRONN 1.x layer'
                     % (path, index, first.shape, second.shape))


def read_legacy_param_file(path):
    """Read an ELEKTRONN 1.x parameter file.

    Returns:
        ``(layers, poolings)`` as :func:`elektronn.net.params.read_parameter_file`: layer dicts
        ``{'type': ..., 'W': ..., 'b': ...}`` (recurrent: ``W_in, W_hid, b_hid, hid_0``) in this
        package's layouts, and the list of pool shapes (empty if the file has none).

    Raises:
        ValueError: the file tries to load anything but arrays and plain containers, or is not an
            ELEKTRONN 1.x parameter file; the message names the file and the problem.
    """
    path = os.fspath(path)
    records = _read_records(path)
    if not records:
        raise ValueError('%r is empty, not an ELEKTRONN 1.x parameter file' % (path,))
    shapes = _shape_list(records[0], path)
    layers, k = [], 1
    for i, shape in enumerate(shapes):
        entry, k = _layer_entry(records, k, shape, path, i)
        if entry['type'] == 'PerceptronLayer' and layers and layers[-1]['type'] == 'ConvLayer3d':
            entry[FLATTEN_ORDER_KEY] = 'z,ch,x,y'
        layers.append(entry)
    poolings = []
    if k < len(records):
        pools = records[k]
        if not isinstance(pools, (list, tuple)):
            raise ValueError('%r: the record after the layers should be the list of pool shapes, got %r'
                             % (path, type(pools).__name__))
        poolings = [[int(p) for p in np.atleast_1d(pool)] for pool in pools]
        if k + 1 < len(records):
            warnings.warn('%r has %i record(s) after the pool shapes; they were ignored' % (path, len(records) - k - 1),
                          stacklevel=2)
    return layers, poolings


def reorder_flattened_inputs(saved, layers):
    """Permute the weight rows of legacy perceptron layers that follow a 3D conv layer.

    The original flattened 3D conv outputs ``(bs, z, ch, x, y)``; this package flattens
    ``(bs, ch, z, x, y)``. Entries marked by :func:`read_legacy_param_file` are converted in place
    (and unmarked) using the shape of the network layer before them; entries of other files are
    left alone.

    Args:
        saved: Layer dicts from :func:`elektronn.net.params.read_parameter_file`.
        layers: The network's layers (in the order of the saved entries).
    """
    from elektronn.net.layers.conv import ConvLayer3d
    from elektronn.net.layers.perceptron import PerceptronLayer

    for i, entry in enumerate(saved):
        if entry.pop(FLATTEN_ORDER_KEY, None) is None:
            continue
        previous = layers[i - 1] if 0 < i <= len(layers) else None
        layer = layers[i] if i < len(layers) else None
        if not (isinstance(layer, PerceptronLayer) and isinstance(previous, ConvLayer3d)):
            warnings.warn('Load: layer %i of the file followed a 3D conv layer, but the network has %s there; its '
                          'weights are left in the original input order'
                          % (i, type(layer).__name__ if layer is not None else 'no layer'), stacklevel=2)
            continue
        ch, z, x, y = previous.output_shape_internal[1:]
        W = entry['W']
        if W.shape[0] != ch * z * x * y:
            continue  # another architecture: the adaptive loader skips this W anyway
        entry['W'] = np.ascontiguousarray(W.reshape(z, ch, x, y, -1).transpose(1, 0, 2, 3, 4).reshape(W.shape))
