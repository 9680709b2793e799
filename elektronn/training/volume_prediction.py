"""Dense prediction of volumes larger than the memory, block by block from one HDF5 dataset into another.

This is the engine of ``elektronn-predict`` (see :mod:`elektronn.training.predictor` and
:doc:`/prediction`). It needs a *dense* network, one whose output has a stride of 1 (max-fragment-
pooling in every pooling layer, as ``create_predncnn(..., override_MFP_to_active=True)`` builds
it): such a network takes any input of at least its field of view, so every block is predicted in
one pass and the numbers equal those of ``predictDense``.

Geometry, per spatial axis in the network's order ``(z, x, y)`` (a 2D network predicts slice by
slice: its field of view in z is 1): ``fov`` the field of view, ``off = floor(fov / 2)``, ``n``
the input extent and ``pad = off`` with ``pad_raw`` (else 0). The input is mirror-padded
(NumPy's ``'symmetric'`` mode, as ``predictDense``) by ``pad`` on both sides; the output has
``n + 2 pad - 2 off`` voxels, and output voxel ``k`` is the prediction for the window
``padded[k : k + fov]``, i.e. it belongs to input voxel ``k + off - pad`` (``k + off`` without
``pad_raw``, ``k`` with it).

Blocks: the output is cut into blocks of one shape (the last ones along an axis are smaller); the
block of output voxels ``[a, b)`` reads the padded input ``[a, b + fov - 1)``. The block shape is
chosen from a memory budget (:func:`plan_blocks`).

File layouts (``layout``):

* ``'xyz'``: input ``(x, y, z)`` or ``(ch, x, y, z)``, output ``(n_out, x', y', z')`` (as
  ``predictDense``);
* ``'zxy'``: input ``(z, x, y)`` or ``(z, ch, x, y)`` (the training option ``zchxy_order``),
  output ``(z', n_out, x', y')``;
* a single 2D image ``(x, y)`` (2D networks) gives ``(n_out, x', y')``.

Integer input is divided by 255. The output holds float32 probabilities, or uint8 values
``int(p * 255)`` with ``as_uint8``.

Restart: the output dataset is made before the first block, with one HDF5 chunk per block, no
compression and all chunks allocated at once, so that writing a block's data changes nothing but
that block's bytes (no file metadata). Next to it, ``<key>_done`` (uint8, one flag per block in C
order over the block grid ``(z, x, y)``) records the finished blocks; a block's flag is set only
after its data was written and flushed to the file. A run killed at any moment therefore leaves
a readable file in which every flagged block is complete; ``resume=True`` predicts the others.
The dataset's attribute ``elektronn_prediction`` (JSON) records what was predicted (input, layout,
padding, data type, field of view, block shape, a checksum of the network), and a resumed run
must match it.
"""
import dataclasses
import hashlib
import itertools
import json
import os
import time

import h5py
import numpy as np

from elektronn import __version__
from elektronn.net.prediction import dense_geometry
from elektronn.training.cubes import spatial_file_axes
from elektronn.utils import ProgressBar, atomic_path

__all__ = ['PredictionError', 'LAYOUTS', 'parse_h5_spec', 'InputVolume', 'BlockPlan', 'plan_blocks',
           'estimate_block_bytes', 'predict_volume_h5', 'open_h5', 'open_input', 'network_checksum',
           'DEFAULT_MEMORY_GB']

#: File layouts of the input (the output follows the input's).
LAYOUTS = ('xyz', 'zxy')
#: Default memory budget of the blocks (GB): input region, network activations and output.
DEFAULT_MEMORY_GB = 1.0
#: Name of the attribute recording what an output dataset holds.
INFO_ATTR = 'elektronn_prediction'
#: Entries of that record a resumed run must match.
_RESUME_KEYS = ('input_key', 'input_shape', 'input_dtype', 'layout', 'pad_raw', 'dtype', 'fov_zxy', 'n_out',
                'network_sha256')
#: Bytes the estimate adds to every block: scratch memory of the convolution library and the
#: allocator (measured on the CPU: about 150 MB after the first pass, independent of the block).
_BLOCK_OVERHEAD_BYTES = 160 * 2 ** 20
#: The planner's cost of one block, in input voxels (reading, Python and call overhead).
_BLOCK_COST_VOXELS = 20000


class PredictionError(Exception):
    """A prediction cannot run as asked; the message names the file, dataset or option and the fix."""


def parse_h5_spec(text, what='input', default_key=None):
    """Split ``'file.h5:key'`` into ``(path, key)``.

    Raises:
        PredictionError: no key is given and there is no default.
    """
    path, sep, key = str(text).rpartition(':')
    if not sep or not path or not key:
        if default_key is not None and ':' not in str(text):
            return os.path.expanduser(str(text)), default_key
        raise PredictionError('%s %r: give the HDF5 file and the dataset as file.h5:key' % (what, text))
    return os.path.expanduser(path), key


def _xyz(values):
    values = tuple(values)
    return values[1:] + values[:1]


class InputVolume:
    """An HDF5 raw dataset (or array), read region by region as ``(z, ch, x, y)`` float32, mirror-padded
    on demand.

    Args:
        dset: h5py dataset or NumPy array in ``layout`` (see the module docstring).
        layout: ``'xyz'`` or ``'zxy'``.
        pad: Mirror padding per spatial axis ``(z, x, y)``.
        name: Name for messages (``file.h5:key``).
    """

    def __init__(self, dset, layout='xyz', pad=(0, 0, 0), name='input'):
        if layout not in LAYOUTS:
            raise PredictionError('layout must be one of %s, got %r' % (', '.join(LAYOUTS), layout))
        shape = tuple(int(s) for s in dset.shape)
        if not (np.issubdtype(dset.dtype, np.number) or dset.dtype == np.bool_):
            raise PredictionError('%s: dtype %s is not numeric' % (name, dset.dtype))
        if len(shape) == 2:
            axes, ch_axis = (None, 0, 1), None  # a single image (x, y)
        elif len(shape) in (3, 4):
            axes, ch_axis = spatial_file_axes(len(shape), zchxy_order=layout == 'zxy')  # as the training data
        else:
            raise PredictionError('%s has shape %s; expected %s (or a single image (x, y))'
                                  % (name, shape, '(x, y, z) or (ch, x, y, z)' if layout == 'xyz'
                                     else '(z, x, y) or (z, ch, x, y)'))
        self.dset, self.layout, self.name, self.shape = dset, layout, name, shape
        self.axes, self.ch_axis = axes, ch_axis
        self.n_ch = 1 if ch_axis is None else shape[ch_axis]
        self.spatial = tuple(1 if a is None else shape[a] for a in axes)  # (z, x, y)
        self.pad = tuple(int(p) for p in pad)
        self.padded = tuple(s + 2 * p for s, p in zip(self.spatial, self.pad))
        # padded coordinate -> input coordinate, exactly as np.pad(..., mode='symmetric')
        self._index = [np.pad(np.arange(s), (p, p), mode='symmetric') if p else np.arange(s)
                       for s, p in zip(self.spatial, self.pad)]
        self.scale = 255.0 if np.issubdtype(dset.dtype, np.integer) else 1.0

    @property
    def is_image(self):
        """Whether the input is a single 2D image ``(x, y)``."""
        return len(self.shape) == 2

    def read(self, start, stop):
        """The padded input ``[start, stop)`` (``(z, x, y)``) as a ``(z, ch, x, y)`` float32 array."""
        index = [ix[a:b] for ix, a, b in zip(self._index, start, stop)]
        lows = [int(ix.min()) for ix in index]
        file_index = [slice(None)] * len(self.shape)
        for ix, low, axis in zip(index, lows, self.axes):
            if axis is not None:
                file_index[axis] = slice(low, int(ix.max()) + 1)
        arr = np.asarray(self.dset[tuple(file_index)])
        order = [a for a in self.axes if a is not None]
        if self.ch_axis is not None:
            arr = arr.transpose(order[0], self.ch_axis, *order[1:])  # (z, ch, x, y)
        elif self.is_image:
            arr = arr[None, None]
        else:
            arr = arr.transpose(order)[:, None]
        for dim, (ix, low) in zip((0, 2, 3), zip(index, lows)):
            local = ix - low
            if not np.array_equal(local, np.arange(arr.shape[dim])):  # a mirrored border
                arr = np.take(arr, local, axis=dim)
        out = arr.astype(np.float32)  # a fresh (z, ch, x, y) array
        if self.scale != 1.0:
            out /= self.scale
        return out


@dataclasses.dataclass(frozen=True)
class BlockPlan:
    """The blocks of a prediction, all in the network's order ``(z, x, y)``.

    Attributes:
        pred_shape: Output shape.
        block: Output shape of a block (the last ones along an axis may be smaller).
        fov: Field of view; a block of output ``[a, b)`` reads the padded input ``[a, b + fov - 1)``.
    """
    pred_shape: tuple
    block: tuple
    fov: tuple

    @property
    def grid(self):
        """Blocks per axis."""
        return tuple(-(-p // b) for p, b in zip(self.pred_shape, self.block))

    @property
    def n_blocks(self):
        return int(np.prod(self.grid))

    def blocks(self):
        """``(number, start, stop)`` of every block, in C order over the grid."""
        for number, index in enumerate(itertools.product(*[range(g) for g in self.grid])):
            start = tuple(i * b for i, b in zip(index, self.block))
            stop = tuple(min(s + b, p) for s, b, p in zip(start, self.block, self.pred_shape))
            yield number, start, stop

    def input_stop(self, stop):
        """End of the padded input region of a block ending at ``stop``."""
        return tuple(s + f - 1 for s, f in zip(stop, self.fov))


def estimate_block_bytes(cnn, block, fov, n_ch=None, in_itemsize=1, out_itemsize=4):
    """Memory (bytes) that predicting one block needs: the input region (as read and as float32 on
    its way into the network), the network's largest layer (input, convolution and pooled maps and
    the pooling's scratch maps) and the output (probabilities and their file-layout copies).

    Args:
        cnn: The dense network.
        block: Output block shape ``(z, x, y)``.
        fov: Field of view ``(z, x, y)`` (1 in z for 2D networks).
    """
    n_ch = cnn.input_depth if n_ch is None else n_ch
    region = [b + f - 1 for b, f in zip(block, fov)]
    if cnn.n_dim == 2:  # the z slices are a batch
        batch, size = region[0], tuple(region[1:])
    else:
        batch, size = 1, tuple(region)
    n_in = int(np.prod(region))
    peak, maps = 0, n_ch
    for layer in cnn.layers:
        unpooled = layer.unpooled_spatial(size)
        pooled = layer.output_spatial(size)
        n_pool_axes = sum(p > 1 for p in layer.pool)  # the pooling keeps one map per pooled axis besides its input
        here = maps * np.prod(size) + layer.nof_filters * (np.prod(unpooled) * max(n_pool_axes, 1)
                                                           + (np.prod(pooled) if n_pool_axes else 0))
        peak = max(peak, int(here))
        size, maps = pooled, layer.nof_filters // layer.maxout
    n_out = int(np.prod(block)) * maps
    return int(n_in * n_ch * (in_itemsize + 3 * 4) + batch * peak * 4 + n_out * (3 * 4 + 2 * out_itemsize)
               + _BLOCK_OVERHEAD_BYTES)


def plan_blocks(cnn, pred_shape, fov, memory_bytes, n_ch=None, in_itemsize=1, out_itemsize=4):
    """The block shape with the least work (input voxels, plus a fixed cost per block) whose
    :func:`estimate_block_bytes` fits ``memory_bytes``; blocks are square in ``(x, y)`` where the
    volume allows and as equal in size as possible.

    Raises:
        PredictionError: not even a block of one voxel fits.
    """
    pred_shape = tuple(int(p) for p in pred_shape)

    def fits(block):
        return estimate_block_bytes(cnn, block, fov, n_ch, in_itemsize, out_itemsize) <= memory_bytes

    best = None
    z_sizes = sorted({-(-pred_shape[0] // n) for n in range(1, pred_shape[0] + 1)})  # the sizes of even blocks
    for bz in z_sizes:
        lo, hi = 0, max(pred_shape[1:])
        while lo < hi:  # the largest square side that fits
            mid = (lo + hi + 1) // 2
            if fits((bz, min(mid, pred_shape[1]), min(mid, pred_shape[2]))):
                lo = mid
            else:
                hi = mid - 1
        if lo == 0:
            break  # a larger z cannot fit either
        block = _even_blocks(pred_shape, (bz, min(lo, pred_shape[1]), min(lo, pred_shape[2])))
        grid = [-(-p // b) for p, b in zip(pred_shape, block)]
        cost = np.prod([g * (b + f - 1) for g, b, f in zip(grid, block, fov)]) + np.prod(grid) * _BLOCK_COST_VOXELS
        if best is None or cost < best[0]:
            best = (cost, block)
    if best is None:
        need = estimate_block_bytes(cnn, (1, 1, 1), fov, n_ch, in_itemsize, out_itemsize)
        raise PredictionError('a memory budget of %.3f GB is too small: even a block of one output voxel needs '
                              '%.3f GB; raise it' % (memory_bytes / 1e9, need / 1e9))
    return BlockPlan(pred_shape=pred_shape, block=best[1], fov=tuple(fov))


def _even_blocks(shape, largest):
    """Blocks no larger than ``largest`` that split ``shape`` into as equal parts as possible."""
    return tuple(-(-s // -(-s // b)) for s, b in zip(shape, largest))


def network_checksum(cnn):
    """SHA-256 of the network's layer types, shapes and parameter values (identifies a prediction's net)."""
    h = hashlib.sha256()
    for layer in cnn.layers:
        h.update(type(layer).__name__.encode())
        h.update(repr((tuple(layer.filter_size), tuple(layer.pool), tuple(layer.dilation))).encode())
        for arr in layer.param_arrays():
            arr = np.ascontiguousarray(arr, dtype=np.float32)
            h.update(repr(arr.shape).encode())
            h.update(arr.tobytes())
    return h.hexdigest()


class _Geometry:
    """Field of view, offset and padding of ``cnn``, in ``(z, x, y)``."""

    def __init__(self, cnn, pad_raw):
        if getattr(cnn, 'output_strides', None) is None or any(s != 1 for s in cnn.output_strides):
            raise PredictionError('the network is not dense (output strides %s): build it with max-fragment-pooling '
                                  'in every pooling layer, e.g. create_predncnn(..., override_MFP_to_active=True)'
                                  % (getattr(cnn, 'output_strides', None),))
        try:
            geom = dense_geometry(cnn)
        except (ValueError, RuntimeError) as e:
            raise PredictionError(str(e)) from None
        fov, off = tuple(geom.fov), tuple(geom.offset)
        if cnn.n_dim == 2:
            fov, off = (1,) + fov, (0,) + off
        self.fov, self.offset = fov, off
        self.pad = off if pad_raw else (0, 0, 0)


@dataclasses.dataclass(frozen=True)
class _OutputFormat:
    """How the probabilities are stored: the file layout (see the module docstring) and the type."""
    layout: str
    is_image: bool
    n_out: int
    as_uint8: bool

    @property
    def dtype(self):
        return np.uint8 if self.as_uint8 else np.float32

    @property
    def axes(self):
        if self.is_image:
            return '(class, x, y)'
        return '(class, x, y, z)' if self.layout == 'xyz' else '(z, class, x, y)'

    def shape(self, zxy):
        """The file shape of ``(z, x, y)`` output voxels."""
        z, x, y = zxy
        if self.is_image:
            return (self.n_out, x, y)
        return (self.n_out, x, y, z) if self.layout == 'xyz' else (z, self.n_out, x, y)

    def region(self, start, stop):
        """The file index of the output voxels ``[start, stop)`` (``(z, x, y)``)."""
        z, x, y = (slice(a, b) for a, b in zip(start, stop))
        if self.is_image:
            return (slice(None), x, y)
        return (slice(None), x, y, z) if self.layout == 'xyz' else (z, slice(None), x, y)

    def convert(self, prob):
        """``(n_out, z, x, y)`` float32 probabilities in the file's type and layout (C-contiguous)."""
        if self.as_uint8:
            prob = np.clip(prob * 255, 0, 255).astype(np.uint8)  # truncation, as predictDense
        if self.is_image:
            return np.ascontiguousarray(prob[:, 0])
        return np.ascontiguousarray(prob.transpose((0, 2, 3, 1) if self.layout == 'xyz' else (1, 0, 2, 3)))


def _predict_block(cnn, raw):
    """``(n_out, z', x', y')`` float32 probabilities of a ``(z, ch, x, y)`` input region."""
    if cnn.n_dim == 2:
        return np.asarray(cnn.class_probabilities(raw)).transpose(1, 0, 2, 3)
    return np.asarray(cnn.class_probabilities(raw[None]))[0]


def open_h5(path, mode, what):
    """``h5py.File(path, mode)``; a missing or unreadable file raises :class:`PredictionError` naming it (``what``)."""
    try:
        return h5py.File(path, mode)
    except FileNotFoundError:
        raise PredictionError('%s file %s does not exist' % (what, path)) from None
    except OSError as e:
        raise PredictionError('%s file %s cannot be opened as HDF5: %s' % (what, path, e)) from None


def open_input(f, key, path, layout, pad=(0, 0, 0)):
    """The dataset ``key`` of the open file ``f`` as an :class:`InputVolume`."""
    if key not in f:
        raise PredictionError('input file %s has no dataset %r (it has: %s)'
                              % (path, key, ', '.join(_dataset_names(f)) or 'no datasets'))
    if not isinstance(f[key], h5py.Dataset):
        raise PredictionError('input %s:%s is a group, not a dataset (its datasets: %s)'
                              % (path, key, ', '.join(_dataset_names(f[key])) or 'none'))
    return InputVolume(f[key], layout, pad, name='%s:%s' % (path, key))


def _dataset_names(group):
    names = []
    group.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return names[:20]


def predict_volume_h5(cnn, input_path, input_key, output_path, output_key='prob', layout='xyz', pad_raw=False,
                      as_uint8=False, memory_gb=DEFAULT_MEMORY_GB, block_shape=None, resume=False, overwrite=False,
                      show_progress=True, progress_interval=None, info=None):
    """Predict the dataset ``input_path:input_key`` block by block into ``output_path:output_key``.

    Args:
        cnn: A dense, compiled network (see the module docstring).
        input_path, input_key: The raw data (layouts in the module docstring).
        output_path, output_key: The output dataset (created; the file too if it does not exist).
        layout: ``'xyz'`` or ``'zxy'``: the input's axis order; the output follows it.
        pad_raw: Mirror-pad the input by the offset so that the output has the input's shape.
        as_uint8: Write uint8 ``int(p * 255)`` instead of float32.
        memory_gb: Memory budget for a block (input region, activations, output), in GB.
        block_shape: Output block shape ``(z, x, y)`` instead of one chosen from ``memory_gb``.
        resume: Continue an interrupted prediction into an existing output dataset (a new one is
            started when there is none).
        overwrite: Replace an existing output dataset.
        show_progress: Print a progress bar (rate, ETA).
        progress_interval: Seconds between progress updates (default: 0.25 on a terminal, else 10).
        info: Extra JSON-serialisable entries for the output's record (e.g. the parameter file).

    Returns:
        A dict with ``blocks``, ``computed``, ``skipped``, ``seconds``, ``voxels`` (computed),
        ``block`` (``(z, x, y)``) and ``shape`` (the output dataset's shape).

    Raises:
        PredictionError: a missing file or dataset, a wrong channel count, a volume smaller than
        the field of view, an existing output without ``resume``/``overwrite``, or an output that
        does not match the prediction to resume.
    """
    if resume and overwrite:
        raise PredictionError('resume and overwrite exclude each other')
    same_file = os.path.exists(output_path) and os.path.exists(input_path) and \
        os.path.samefile(input_path, output_path)
    if same_file and output_key.strip('/') == input_key.strip('/'):
        raise PredictionError('the output %s:%s would replace the input' % (output_path, output_key))
    fin = open_h5(input_path, 'r+' if same_file else 'r', 'input')
    try:
        probe = open_input(fin, input_key, input_path, layout)
        geom = _Geometry(cnn, pad_raw)
        volume = InputVolume(probe.dset, layout, geom.pad, probe.name)
        _check_volume(cnn, volume, geom)
        pred_shape = tuple(p - 2 * o for p, o in zip(volume.padded, geom.offset))
        fmt = _OutputFormat(layout, volume.is_image, int(cnn.output_shape[1]), bool(as_uint8))
        record = dict(info or {}, input_file=os.path.abspath(input_path), input_key=input_key,
                      input_shape=list(volume.shape), input_dtype=str(volume.dset.dtype), layout=layout,
                      pad_raw=bool(pad_raw), dtype='uint8' if as_uint8 else 'float32', fov_zxy=list(geom.fov),
                      offset_zxy=list(geom.offset), origin_zxy=[o - p for o, p in zip(geom.offset, geom.pad)],
                      n_out=fmt.n_out, network_sha256=network_checksum(cnn), elektronn_version=__version__)
        if block_shape is not None:
            block = tuple(max(1, min(int(b), p)) for b, p in zip(block_shape, pred_shape))
            plan = BlockPlan(pred_shape, block, geom.fov)
        else:
            plan = plan_blocks(cnn, pred_shape, geom.fov, memory_gb * 1e9, volume.n_ch,
                               np.dtype(volume.dset.dtype).itemsize, np.dtype(fmt.dtype).itemsize)
        fout = fin if same_file else None
        try:
            created = False
            if fout is None:
                if not os.path.exists(output_path):
                    _create_file(output_path, output_key, plan, fmt, record)
                    created = True
                fout = open_h5(output_path, 'r+', 'output')
            if created:
                dset, done = fout[output_key], fout[output_key + '_done']
            else:
                dset, done, plan = _output(fout, output_path, output_key, plan, fmt, record, resume, overwrite)
            return _run(cnn, volume, plan, fout, dset, done, fmt, show_progress, progress_interval)
        finally:
            if fout is not None and fout is not fin:
                fout.close()
    finally:
        fin.close()


def _check_volume(cnn, volume, geom):
    if volume.n_ch != cnn.input_depth:
        raise PredictionError('%s has %i channel(s) (shape %s, layout %s) but the network expects %i'
                              % (volume.name, volume.n_ch, volume.shape, volume.layout, cnn.input_depth))
    if volume.is_image and cnn.n_dim == 3:
        raise PredictionError('%s is a single 2D image (shape %s); a 3D network needs a volume'
                              % (volume.name, volume.shape))
    if any(p < f for p, f in zip(volume.padded, geom.fov)):
        raise PredictionError('%s has the spatial shape %s (x, y, z) but the field of view of the network is %s '
                              '(x, y, z); give a larger volume%s'
                              % (volume.name, _xyz(volume.spatial), _xyz(geom.fov),
                                 '' if any(geom.pad) else ' or pad the input (pad_raw / --pad-raw)'))


def _new_datasets(group, key, plan, fmt, record):
    """The output dataset (one chunk per block, allocated at once) and its record of finished blocks."""
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)  # no chunk allocation (metadata change) while predicting
    dset = group.create_dataset(key, shape=fmt.shape(plan.pred_shape), dtype=fmt.dtype, chunks=fmt.shape(plan.block),
                                track_times=False, dcpl=dcpl)
    done_dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    done_dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    done = group.create_dataset(key + '_done', shape=(plan.n_blocks,), dtype=np.uint8, track_times=False,
                                dcpl=done_dcpl)
    done[...] = 0  # the file may reuse the space of a replaced dataset, and early allocation does not clear it
    done.attrs['description'] = ('finished blocks of %s (1 = done), C order over the block grid (z, x, y) %s'
                                 % (key, list(plan.grid)))
    record = dict(record, block_zxy=list(plan.block), axes=fmt.axes)
    dset.attrs[INFO_ATTR] = json.dumps(record)
    dset.attrs['axes'] = record['axes']
    return dset, done


def _create_file(path, key, plan, fmt, record):
    """A new output file with its (empty) datasets, written atomically."""
    with atomic_path(path) as tmp:
        with h5py.File(tmp, 'w') as f:
            _new_datasets(f, key, plan, fmt, record)


def _output(f, path, key, plan, fmt, record, resume, overwrite):
    """The output dataset and its record of finished blocks, created, replaced or resumed."""
    name = '%s:%s' % (path, key)
    done_key = key + '_done'
    exists = key in f
    if exists and not resume and not overwrite:
        raise PredictionError('output dataset %s already exists; use --resume to continue an interrupted prediction '
                              'into it or --overwrite to replace it (or choose another output)' % name)
    if overwrite:
        for k in (key, done_key):
            if k in f:
                print('Overwriting output dataset %s:%s' % (path, k))
                del f[k]
        exists = False
    elif not exists and done_key in f:
        raise PredictionError('%s:%s exists (the record of finished blocks of an output %s); use --overwrite to '
                              'replace both or choose another output' % (path, done_key, name))
    if not exists:
        dset, done = _new_datasets(f, key, plan, fmt, record)
        f.flush()
        return dset, done, plan
    dset = f[key]
    saved = _saved_record(f, key, done_key, name)
    diffs = ['%s: %r (now %r)' % (k, saved.get(k), record.get(k))
             for k in _RESUME_KEYS if saved.get(k) != record.get(k)]
    if diffs:
        raise PredictionError('output dataset %s holds another prediction; it differs in %s. Use --overwrite to '
                              'replace it or choose another output' % (name, '; '.join(diffs)))
    if saved.get('input_file') != record['input_file']:
        print('Note: resuming a prediction of %s with %s (same dataset key and shape)'
              % (saved.get('input_file'), record['input_file']))
    saved_plan = BlockPlan(plan.pred_shape, tuple(saved['block_zxy']), plan.fov)
    done = f[done_key]
    if done.shape != (saved_plan.n_blocks,) or dset.shape != fmt.shape(plan.pred_shape):
        raise PredictionError('output dataset %s does not fit its record (shape %s, %s blocks); use --overwrite'
                              % (name, dset.shape, done.shape))
    if saved_plan.block != plan.block:
        print('Resuming with the block shape of the interrupted run, %s (x, y, z)' % (_xyz(saved_plan.block),))
    return dset, done, saved_plan


def _saved_record(f, key, done_key, name):
    try:
        saved = json.loads(f[key].attrs[INFO_ATTR])
    except (KeyError, ValueError, TypeError):
        raise PredictionError('output dataset %s was not written by elektronn-predict (no %s record); use '
                              '--overwrite to replace it' % (name, INFO_ATTR)) from None
    if done_key not in f:
        raise PredictionError('output dataset %s has no record of finished blocks (%s); use --overwrite'
                              % (name, done_key))
    return saved


def _run(cnn, volume, plan, f, dset, done, fmt, show_progress, progress_interval):
    """Predict the unfinished blocks; each block's flag is set after its data is in the file."""
    finished = np.asarray(done[...]).astype(bool)
    todo = [(n, a, b) for n, a, b in plan.blocks() if not finished[n]]
    n_done = plan.n_blocks - len(todo)
    shape_xyz = _xyz(plan.pred_shape)
    print('Predicting %s -> %s (x, y, z) in %i blocks of %s (x, y, z)%s'
          % (_xyz(volume.padded) if any(volume.pad) else _xyz(volume.spatial), shape_xyz, plan.n_blocks,
             _xyz(plan.block), '' if not n_done else '; %i already done' % n_done))
    voxels = sum(int(np.prod([s - r for s, r in zip(b, a)])) for _, a, b in todo)
    bar = ProgressBar(plan.n_blocks, work=voxels, what='Predicting', step_name='blocks', work_name='voxel',
                      interval=progress_interval, done=n_done) if show_progress else None
    t0 = time.time()
    computed = done_voxels = 0
    try:
        for number, start, stop in todo:
            raw = volume.read(start, plan.input_stop(stop))
            prob = _predict_block(cnn, raw)
            expected = tuple(b - a for a, b in zip(start, stop))
            if prob.shape[1:] != expected:
                raise RuntimeError('block %i: the network gave %s predictions for the region %s..%s, expected %s'
                                   % (number, prob.shape[1:], start, stop, expected))
            dset[fmt.region(start, stop)] = fmt.convert(prob)
            del prob
            f.flush()  # the block's data is in the file before its flag
            done[number] = 1
            f.flush()
            computed += 1
            done_voxels += int(np.prod(expected))
            if bar is not None:
                bar.update(1, work=int(np.prod(expected)))
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        seconds = time.time() - t0
        print('Interrupted: %i of %i blocks done; predicted %i blocks (%i voxels) in %.1f s: %.3f Mvoxel/s'
              % (n_done + computed, plan.n_blocks, computed, done_voxels, seconds,
                 done_voxels / 1e6 / max(seconds, 1e-9)))
        raise
    if bar is not None:
        bar.close()
    seconds = time.time() - t0
    if todo:
        print('Predicted %i blocks (%i voxels) in %.1f s: %.3f Mvoxel/s'
              % (computed, voxels, seconds, voxels / 1e6 / max(seconds, 1e-9)))
    else:
        print('All %i blocks were already done' % plan.n_blocks)
    return dict(blocks=plan.n_blocks, computed=computed, skipped=n_done, seconds=seconds, voxels=voxels,
                block=plan.block, shape=tuple(dset.shape))
