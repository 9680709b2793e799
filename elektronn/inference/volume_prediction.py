"""Dense prediction of volumes of any size, block by block, from and to HDF5 or Zarr, here or on Dask.

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
block of output voxels ``[a, b)`` reads the padded input ``[a, b + fov - 1)`` straight from the
store. The block shape is chosen from a memory budget (:func:`plan_blocks`); the output is chunked
as the blocks, so that every block writes whole chunks of its own.

File layouts (``layout``):

* ``'xyz'``: input ``(x, y, z)`` or ``(ch, x, y, z)``, output ``(n_out, x', y', z')`` (as
  ``predictDense``);
* ``'zxy'``: input ``(z, x, y)`` or ``(z, ch, x, y)`` (the training option ``zchxy_order``),
  output ``(z', n_out, x', y')``;
* a single 2D image ``(x, y)`` (2D networks) gives ``(n_out, x', y')``.

These are the HDF5 outputs. A Zarr output is ``(n_out, z', x', y')`` whatever the input's layout
(``(n_out, x', y')`` for an image): the order OME-Zarr viewers expect, channel first, then the
stack axis, then the image plane, which napari and neuroglancer then show.

Integer input is divided by 255. The output holds float32 probabilities, or uint8 values
``int(p * 255)`` with ``as_uint8``. A Zarr output is an OME-Zarr (NGFF 0.4) image (the group
``KEY`` with the array ``KEY/0``) with the input's voxel size, when it records one, and the
position of output voxel 0 as translation, so that it overlays the raw data in napari and
neuroglancer.

Restart: the output is made before the first block (in HDF5 with all chunks allocated at once, so
that writing a block changes nothing but that block's bytes). Next to it, ``<key>_done`` (see
:class:`~elektronn.inference.blocks.BlockLedger`) records the finished blocks; a block's flag is
set only after its data was written and flushed. A run killed at any moment therefore leaves a
readable output in which every flagged block is complete; ``resume=True`` predicts the others,
whether the interrupted run was local or distributed. The output's attribute
``elektronn_prediction`` (JSON) records what was predicted (input, layout, padding, data type, field
of view, block shape, a checksum of the network), and a resumed run must match it.

Distributed (``client``): see :mod:`elektronn.inference.runners`. An HDF5 output has a single
writer, so a distributed run needs a Zarr output.
"""
import dataclasses
import hashlib
import json
import logging
import os
import warnings

import numpy as np

from elektronn import __version__
from elektronn import volumes
from elektronn.inference.blocks import BlockLedger, BlockPlan, even_blocks, min_blocks_for
from elektronn.inference.runners import BlockRunError, BlockTask, run_blocks, worker_threads
from elektronn.net import tta as _tta
from elektronn.net.prediction import affinity_edges, dense_geometry
from elektronn.training.cubes import spatial_file_axes
from elektronn.utils import atomic_path

logger = logging.getLogger(__name__)

__all__ = ['PredictionError', 'LAYOUTS', 'parse_h5_spec', 'InputVolume', 'BlockPlan', 'plan_blocks',
           'estimate_block_bytes', 'predict_volume', 'predict_volume_h5', 'check_distributed_output', 'PredictionTask',
           'network_checksum', 'DEFAULT_MEMORY_GB', 'INFO_ATTR']

#: File layouts of the input (the output follows the input's).
LAYOUTS = ('xyz', 'zxy')
#: Default memory budget of the blocks (GB): input region, network activations and output.
DEFAULT_MEMORY_GB = 1.0
#: Name of the attribute recording what an output dataset holds.
INFO_ATTR = 'elektronn_prediction'
#: Entries of that record a resumed run must match.
_RESUME_KEYS = ('input_key', 'input_shape', 'input_dtype', 'layout', 'pad_raw', 'dtype', 'fov_zxy', 'n_out',
                'network_sha256', 'tta_transforms')
#: Values of record entries that outputs of older versions lack.
_RECORD_DEFAULTS = {'tta_transforms': 1}
#: Bytes the estimate adds to every block: scratch memory of the convolution library and the
#: allocator (measured on the CPU: about 150 MB after the first pass, independent of the block).
_BLOCK_OVERHEAD_BYTES = 160 * 2 ** 20
#: The planner's cost of one block, in input voxels (reading, Python and call overhead).
_BLOCK_COST_VOXELS = 20000


class PredictionError(Exception):
    """A prediction cannot run as asked; the message names the file, dataset or option and the fix."""


def parse_h5_spec(text, what='input', default_key=None):
    """Split ``'file.h5:key'`` or ``'store.zarr:key'`` into ``(path, key)`` (see :func:`elektronn.volumes.parse_spec`).

    Raises:
        PredictionError: an HDF5 file without a key and no default.
    """
    try:
        return volumes.parse_spec(text, what, default_key)
    except volumes.VolumeError as e:
        raise PredictionError(str(e)) from None


def _xyz(values):
    values = tuple(values)
    return values[1:] + values[:1]


class InputVolume:
    """A raw volume, read region by region as ``(z, ch, x, y)`` float32, mirror-padded on demand.

    Args:
        dset: Volume, h5py dataset or NumPy array in ``layout`` (see the module docstring).
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
        if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(out).all():
            bad = np.argwhere(~np.isfinite(out))[0]
            raise PredictionError('%s holds NaN/Inf values (the first at (z, ch, x, y) = %s of the region from %s '
                                  '(z, x, y) of the padded input); the network would predict garbage there: replace '
                                  'them (e.g. numpy.nan_to_num) or leave that region out'
                                  % (self.name, tuple(int(v) for v in bad), tuple(int(v) for v in start)))
        if self.scale != 1.0:
            out /= self.scale
        return out


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


def plan_blocks(cnn, pred_shape, fov, memory_bytes, n_ch=None, in_itemsize=1, out_itemsize=4, min_blocks=1):
    """The block shape with the least work (input voxels, plus a fixed cost per block) whose
    :func:`estimate_block_bytes` fits ``memory_bytes``; blocks are square in ``(x, y)`` where the
    volume allows and as equal in size as possible.

    Args:
        min_blocks: At least this many blocks where the volume allows (e.g. twice the workers of a
            cluster, so that none of them waits while another predicts one large block).

    Raises:
        PredictionError: not even a block of one voxel fits.
    """
    pred_shape = tuple(int(p) for p in pred_shape)

    def square(bz, side):
        return bz, min(side, pred_shape[1]), min(side, pred_shape[2])

    def fits(block):
        return estimate_block_bytes(cnn, block, fov, n_ch, in_itemsize, out_itemsize) <= memory_bytes

    def enough(block):
        return np.prod([-(-p // b) for p, b in zip(pred_shape, block)]) >= min_blocks

    best = None
    z_sizes = sorted({-(-pred_shape[0] // n) for n in range(1, pred_shape[0] + 1)})  # the sizes of even blocks
    for bz in z_sizes:
        side = _largest(lambda s: fits(square(bz, s)), max(pred_shape[1:]))
        if side == 0:
            break  # a larger z cannot fit either
        side = _largest(lambda s: enough(square(bz, s)), side) or 1
        block = even_blocks(pred_shape, square(bz, side))
        grid = [-(-p // b) for p, b in zip(pred_shape, block)]
        cost = np.prod([g * (b + f - 1) for g, b, f in zip(grid, block, fov)]) + np.prod(grid) * _BLOCK_COST_VOXELS
        key = (not enough(block), cost)
        if best is None or key < best[0]:
            best = (key, block)
    if best is None:
        need = estimate_block_bytes(cnn, (1, 1, 1), fov, n_ch, in_itemsize, out_itemsize)
        raise PredictionError('a memory budget of %.3f GB is too small: even a block of one output voxel needs '
                              '%.3f GB; raise it' % (memory_bytes / 1e9, need / 1e9))
    return BlockPlan(pred_shape=pred_shape, block=best[1], fov=tuple(fov))


def _largest(ok, high):
    """The largest ``s`` in ``[1, high]`` with ``ok(s)`` (``ok`` true up to some point), or 0."""
    lo = 0
    while lo < high:
        mid = (lo + high + 1) // 2
        if ok(mid):
            lo = mid
        else:
            high = mid - 1
    return lo


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


#: Axis names of the network's probabilities ``(class, z, x, y)`` as they are computed.
_COMPUTED_AXES = ('c', 'z', 'x', 'y')


@dataclasses.dataclass(frozen=True)
class _OutputFormat:
    """How the probabilities are stored: the file layout (see the module docstring) and the type.

    ``viewer_order``: the order OME-Zarr viewers expect, class first, then z, then the image
    plane ``(x, y)``, whatever the input's layout (Zarr outputs).
    """
    layout: str
    is_image: bool
    n_out: int
    as_uint8: bool
    viewer_order: bool = False

    @property
    def dtype(self):
        return np.uint8 if self.as_uint8 else np.float32

    @property
    def names(self):
        """Axis names of the stored array (``'c'`` the class)."""
        if self.is_image:
            return ('c', 'x', 'y')
        if self.viewer_order:
            return _COMPUTED_AXES
        return ('c', 'x', 'y', 'z') if self.layout == 'xyz' else ('z', 'c', 'x', 'y')

    @property
    def axes(self):
        return '(%s)' % ', '.join('class' if n == 'c' else n for n in self.names)

    def ome_axes(self):
        return [(n, 'channel' if n == 'c' else 'space') for n in self.names]

    def _order(self, values_czxy):
        return tuple(values_czxy[_COMPUTED_AXES.index(n)] for n in self.names)

    def shape(self, zxy):
        """The file shape of ``(z, x, y)`` output voxels."""
        return self._order((self.n_out,) + tuple(zxy))

    def region(self, start, stop):
        """The file index of the output voxels ``[start, stop)`` (``(z, x, y)``)."""
        return self._order((slice(None),) + tuple(slice(a, b) for a, b in zip(start, stop)))

    def convert(self, prob):
        """``(n_out, z, x, y)`` float32 probabilities in the file's type and layout (C-contiguous)."""
        if self.as_uint8:
            prob = np.clip(prob * 255, 0, 255).astype(np.uint8)  # truncation, as predictDense
        if self.is_image:
            return np.ascontiguousarray(prob[:, 0])
        return np.ascontiguousarray(prob.transpose([_COMPUTED_AXES.index(n) for n in self.names]))


def _predict_block(cnn, raw, transforms=None):
    """``(n_out, z', x', y')`` float32 probabilities of a ``(z, ch, x, y)`` input region (averaged over the
    test-time augmentation ``transforms``, if any: the output has every valid window, so no flip needs padding)."""
    if transforms is not None and len(transforms) > 1:
        return _tta.average(lambda view: _predict_block(cnn, view.transpose(1, 0, 2, 3)), raw.transpose(1, 0, 2, 3),
                            transforms, n_edges=affinity_edges(cnn))
    if cnn.n_dim == 2:
        return np.asarray(cnn.class_probabilities(raw)).transpose(1, 0, 2, 3)
    return np.asarray(cnn.class_probabilities(raw[None]))[0]


@dataclasses.dataclass
class _TaskState:
    fin: object
    fout: object
    volume: InputVolume
    out: object
    ledger: BlockLedger


class PredictionTask(BlockTask):
    """Predict blocks of an input volume into an existing output and its record of finished blocks.

    Made by :func:`predict_volume` once the output exists; runs here or on Dask workers (see
    :mod:`elektronn.inference.runners`). On a worker the network is moved to ``worker_device``
    (``'cuda'``: the worker's first visible GPU).
    """

    def __init__(self, cnn, input_path, input_key, layout, pad, output_path, output_key, fmt, plan, threads=None,
                 worker_device='cpu', transforms=None):
        super().__init__(threads)
        self.transforms = transforms  # test-time augmentation (None: off)
        self.cnn, self.input_path, self.input_key, self.layout, self.pad = cnn, input_path, input_key, layout, pad
        self.output_path, self.output_key, self.fmt, self.plan = output_path, output_key, fmt, plan
        self.worker_device = worker_device
        self._remote = False

    def __getstate__(self):
        state = dict(self.__dict__)
        if self.cnn.device.type != 'cpu':  # a worker may not see this process's GPU
            import copy
            state['cnn'] = copy.deepcopy(self.cnn).to('cpu')
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._remote = True

    def open(self):
        if self._remote:
            import torch
            torch.set_num_threads(self.threads or worker_threads())
            if self.worker_device != 'cpu':
                self.cnn.to(torch.device(self.worker_device, 0) if self.worker_device == 'cuda' else self.worker_device)
        fin, fout = volumes.open_pair(self.input_path, self.output_path)
        try:
            volume = InputVolume(fin.volume(self.input_key), self.layout, self.pad,
                                 volumes.describe(self.input_path, self.input_key))
            out = fout.volume(self.output_key)
            ledger = BlockLedger.open(fout, self.output_key)
        except BaseException:
            volumes.close_pair(fin, fout)
            raise
        return _TaskState(fin, fout, volume, out, ledger)

    def run_block(self, state, number, start, stop):
        raw = state.volume.read(start, self.plan.input_stop(stop))
        prob = _predict_block(self.cnn, raw, self.transforms)
        expected = tuple(b - a for a, b in zip(start, stop))
        if prob.shape[1:] != expected:
            raise RuntimeError('block %i: the network gave %s predictions for the region %s..%s, expected %s'
                               % (number, prob.shape[1:], start, stop, expected))
        state.out[self.fmt.region(start, stop)] = self.fmt.convert(prob)
        state.out.flush()  # the block's data is in the file before its flag
        state.ledger.mark(number)
        return dict(voxels=int(np.prod(expected)))

    def close(self, state):
        volumes.close_pair(state.fin, state.fout)


def predict_volume(cnn, input_spec, output_spec, layout='xyz', pad_raw=False, as_uint8=False,
                   memory_gb=DEFAULT_MEMORY_GB, block_shape=None, resume=False, overwrite=False, show_progress=True,
                   progress_interval=None, info=None, client=None, threads=None, worker_device=None, tta=False):
    """Predict the volume ``input_spec`` block by block into ``output_spec``.

    Args:
        cnn: A dense, compiled network (see the module docstring).
        input_spec: The raw data, ``'file.h5:key'``, ``'vol.zarr:key'`` or ``(path, key)``
            (layouts in the module docstring).
        output_spec: The output, likewise (``.h5``/``.hdf5``: an HDF5 dataset; ``.zarr``: an
            OME-Zarr image); created, the file or store too if it does not exist. Without a key:
            ``'prob'``.
        layout: ``'xyz'`` or ``'zxy'``: the input's axis order; the output follows it.
        pad_raw: Mirror-pad the input by the offset so that the output has the input's shape.
        as_uint8: Write uint8 ``int(p * 255)`` instead of float32.
        memory_gb: Memory budget for a block (input region, activations, output), in GB (per
            worker with a client, and then at least two blocks per worker where the volume allows).
        block_shape: Output block shape ``(z, x, y)`` instead of one chosen from ``memory_gb``.
        resume: Continue an interrupted prediction into an existing output (a new one is started
            when there is none).
        overwrite: Replace an existing output.
        show_progress: Print a progress bar (blocks/s, voxels/s, ETA).
        progress_interval: Seconds between progress updates (default: 0.25 on a terminal, else 10).
        info: Extra JSON-serialisable entries for the output's record (e.g. the parameter file).
        client: A ``distributed.Client``: predict on its cluster's workers (Zarr output only).
        threads: Computing threads of each worker (default: as the cluster was started).
        worker_device: Where the workers run the network: ``'cpu'`` or ``'cuda'`` (default: the
            kind of device the network is on).
        tta: Test-time augmentation of every block: ``False``, ``True``, ``'xy'`` or ``'xyz'`` (see
            :mod:`elektronn.net.tta`); recorded with the output (a resumed run must use the same).

    Returns:
        A dict with ``blocks``, ``computed``, ``skipped``, ``seconds``, ``voxels`` (computed),
        ``block`` (``(z, x, y)``), ``shape`` (the output array's shape) and ``block_seconds``.

    Raises:
        PredictionError: a missing file or dataset, a wrong channel count, a volume smaller than
            the field of view, an existing output without ``resume``/``overwrite``, an output that
            does not match the prediction to resume, or an HDF5 output with a client.
    """
    try:
        return _predict_volume(cnn, input_spec, output_spec, layout, pad_raw, as_uint8, memory_gb, block_shape,
                               resume, overwrite, show_progress, progress_interval, info, client, threads,
                               worker_device, tta)
    except volumes.VolumeError as e:
        raise PredictionError(str(e)) from None
    except BlockRunError as e:
        raise PredictionError(str(e)) from e


def check_distributed_output(output_path, output_key):
    """Raise :class:`PredictionError` unless several processes may write the output (Zarr, not HDF5)."""
    if volumes.storage_format(output_path, must_exist=False, what='output') == 'hdf5':
        raise PredictionError('the output %s is an HDF5 file, which only one process may write; a distributed run '
                              '(--workers/--scheduler) needs a Zarr output, e.g. %s:%s'
                              % (output_path, os.path.splitext(output_path)[0] + '.zarr', output_key))


def predict_volume_h5(cnn, input_path, input_key, output_path, output_key='prob', **kwargs):
    """:func:`predict_volume` with the files and keys given apart (the name is historical: any format works)."""
    return predict_volume(cnn, (input_path, input_key), (output_path, output_key), **kwargs)


def _spec(spec, what, default_key=None):
    if isinstance(spec, (tuple, list)):
        path, key = spec
        return os.path.expanduser(str(path)), key
    return parse_h5_spec(spec, what, default_key)


def _predict_volume(cnn, input_spec, output_spec, layout, pad_raw, as_uint8, memory_gb, block_shape, resume,
                    overwrite, show_progress, progress_interval, info, client, threads, worker_device, tta):
    if resume and overwrite:
        raise PredictionError('resume and overwrite exclude each other')
    input_path, input_key = _spec(input_spec, 'input')
    output_path, output_key = _spec(output_spec, 'output', 'prob')
    # workers of another cluster may run in other folders: the task carries absolute paths
    input_path, output_path = os.path.abspath(input_path), os.path.abspath(output_path)
    output_key = output_key or 'prob'
    out_format = volumes.storage_format(output_path, must_exist=False, what='output')
    if client is not None:
        check_distributed_output(output_path, output_key)
    if volumes.same_file(input_path, output_path) and (output_key or '').strip('/') == (input_key or '').strip('/'):
        raise PredictionError('the output %s would replace the input' % volumes.describe(output_path, output_key))
    fin = volumes.open_container(input_path, 'r', 'input')  # fail on a wrong input before any output is made
    try:
        probe = fin.volume(input_key)
        geom = _Geometry(cnn, pad_raw)
        try:
            transforms, tta_note = _tta.plan(tta, geom.fov, cnn.n_dim)
        except ValueError as e:
            raise PredictionError(str(e)) from None
        volume = InputVolume(probe, layout, geom.pad, probe.name)
        _check_volume(cnn, volume, geom)
        pred_shape = tuple(p - 2 * o for p, o in zip(volume.padded, geom.offset))
        fmt = _OutputFormat(layout, volume.is_image, int(cnn.output_shape[1]), bool(as_uint8),
                            viewer_order=out_format == 'zarr')
        record = dict(info or {}, input_file=os.path.abspath(input_path), input_key=input_key,
                      input_shape=list(volume.shape), input_dtype=str(probe.dtype), layout=layout,
                      pad_raw=bool(pad_raw), dtype='uint8' if as_uint8 else 'float32', fov_zxy=list(geom.fov),
                      offset_zxy=list(geom.offset), origin_zxy=[o - p for o, p in zip(geom.offset, geom.pad)],
                      n_out=fmt.n_out, network_sha256=network_checksum(cnn), elektronn_version=__version__,
                      tta_transforms=len(transforms))
        if block_shape is not None:
            block = tuple(max(1, min(int(b), p)) for b, p in zip(block_shape, pred_shape))
            plan = BlockPlan(pred_shape, block, geom.fov)
        else:
            plan = plan_blocks(cnn, pred_shape, geom.fov, memory_gb * 1e9, volume.n_ch,
                               np.dtype(probe.dtype).itemsize, np.dtype(fmt.dtype).itemsize,
                               min_blocks=min_blocks_for(client))
        voxel_size = _output_voxel_size(probe, volume, fmt)
    finally:
        fin.close()
    created = out_format == 'hdf5' and not os.path.exists(output_path)
    if created:
        _create_h5_file(output_path, output_key, plan, fmt, record)
    with volumes.open_container(output_path, 'a', 'output') as container:
        if created:
            done = np.zeros(plan.n_blocks, bool)
        else:
            plan, done = _output(container, output_path, output_key, plan, fmt, record, voxel_size, resume, overwrite)
    todo = [(n, a, b) for n, a, b in plan.blocks() if not done[n]]
    n_done = plan.n_blocks - len(todo)
    logger.info('Predicting %s -> %s (x, y, z) in %i blocks of %s (x, y, z)%s',
                _xyz(volume.padded) if any(volume.pad) else _xyz(volume.spatial), _xyz(plan.pred_shape), plan.n_blocks,
                _xyz(plan.block), '' if not n_done else '; %i already done' % n_done)
    if len(transforms) > 1:
        logger.info('%s', _tta.describe(transforms, tta_note))
    task = PredictionTask(cnn, input_path, input_key, layout, geom.pad, output_path, output_key, fmt, plan,
                          threads=threads, worker_device=worker_device or cnn.device.type,
                          transforms=transforms if len(transforms) > 1 else None)
    if todo:
        stats = run_blocks(task, todo, client=client, total_blocks=plan.n_blocks, show_progress=show_progress,
                           progress_interval=progress_interval, what='Predicting', verb='predicted')
        logger.info('Predicted %i blocks (%i voxels) in %.1f s: %.3f Mvoxel/s',
                    stats['computed'], stats['voxels'], stats['seconds'], stats['voxels'] / 1e6 /
                    max(stats['seconds'], 1e-9))
    else:
        stats = dict(computed=0, voxels=0, seconds=0.0, block_seconds=0.0)
        logger.info('All %i blocks were already done', plan.n_blocks)
    return dict(blocks=plan.n_blocks, computed=stats['computed'], skipped=n_done, seconds=stats['seconds'],
                voxels=stats['voxels'], block=plan.block, shape=fmt.shape(plan.pred_shape),
                block_seconds=stats['block_seconds'])


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


def _output_voxel_size(probe, volume, fmt):
    """``(scale, unit)`` of the output's axes from the input's voxel size, or ``None``."""
    found = probe.voxel_size()
    if found is None:
        return None
    sizes, unit = found
    if len(sizes) == len(volume.shape):
        by_axis = dict(enumerate(sizes))
    elif len(sizes) == 3 and len(volume.shape) == 4:  # the spatial axes only, in file order
        by_axis = dict(zip([a for a in range(4) if a != volume.ch_axis], sizes))
    else:
        return None
    zxy = [by_axis.get(a, 1.0) if a is not None else 1.0 for a in volume.axes]
    named = dict(zip(('z', 'x', 'y'), zxy), c=1.0)
    return [float(named[n]) for n in fmt.names], unit


def _new_output(container, key, plan, fmt, record, voxel_size):
    """The output array (chunked as the blocks) and its record of finished blocks.

    ``voxel_size``: ``(scale, unit)`` per output axis, or ``None`` (voxel units); the OME-Zarr
    translation puts output voxel 0 on its input voxel.
    """
    record = dict(record, block_zxy=list(plan.block), axes=fmt.axes)
    scale, unit = voxel_size if voxel_size is not None else ([1.0] * len(fmt.names), None)
    origin = dict(zip(('z', 'x', 'y'), record['origin_zxy']), c=0)
    translation = [float(origin[n] * size) for n, size in zip(fmt.names, scale)]
    out = container.create_volume(key, fmt.shape(plan.pred_shape), fmt.dtype, chunks=fmt.shape(plan.block),
                                  fill_value=0, allocate=True, ome_axes=fmt.ome_axes(),
                                  voxel_size=None if voxel_size is None else (scale, unit), translation=translation)
    out.set_attrs(**{INFO_ATTR: json.dumps(record), 'axes': record['axes']})
    BlockLedger.create(container, key, plan)
    container.flush()


def _create_h5_file(path, key, plan, fmt, record):
    """A new HDF5 output file with its (empty) datasets, written atomically."""
    with atomic_path(path) as tmp:
        with volumes.open_container(tmp, 'a', 'output') as c:
            _new_output(c, key, plan, fmt, record, None)


def _output(container, path, key, plan, fmt, record, voxel_size, resume, overwrite):
    """``(plan, done)``: the output created, replaced or resumed, and which blocks are finished."""
    name = volumes.describe(path, key)
    done_key = BlockLedger.key_for(key)
    exists = container.kind(key) is not None
    if exists and not resume and not overwrite:
        raise PredictionError('output dataset %s already exists; use --resume to continue an interrupted '
                              'prediction into it or --overwrite to replace it (or choose another output)' % name)
    if overwrite:
        for k in (key, done_key):
            if k in container:
                logger.info('Overwriting output dataset %s', volumes.describe(path, k))
                container.delete(k)
        exists = False
    elif not exists and done_key in container:
        raise PredictionError('%s exists (the record of finished blocks of an output %s); use --overwrite to '
                              'replace both or choose another output' % (volumes.describe(path, done_key), name))
    if not exists:
        _new_output(container, key, plan, fmt, record, voxel_size)
        return plan, np.zeros(plan.n_blocks, bool)
    out = container.volume(key)
    saved = _saved_record(container, out, key, done_key, name)
    diffs = ['%s: %r (now %r)' % (k, saved.get(k, _RECORD_DEFAULTS.get(k)), record.get(k))
             for k in _RESUME_KEYS if saved.get(k, _RECORD_DEFAULTS.get(k)) != record.get(k)]
    if diffs:
        raise PredictionError('output dataset %s holds another prediction; it differs in %s. Use --overwrite to '
                              'replace it or choose another output' % (name, '; '.join(diffs)))
    if saved.get('input_file') != record['input_file']:
        warnings.warn('resuming a prediction of %s with %s (same dataset key and shape)'
                      % (saved.get('input_file'), record['input_file']), stacklevel=3)
    saved_plan = BlockPlan(plan.pred_shape, tuple(saved['block_zxy']), plan.fov)
    ledger = BlockLedger.open(container, key)
    if ledger.n_blocks != saved_plan.n_blocks or out.shape != fmt.shape(plan.pred_shape) \
            or out.dtype != np.dtype(fmt.dtype):
        raise PredictionError('output dataset %s does not fit its record (shape %s, dtype %s, %s blocks; expected '
                              'shape %s, dtype %s); use --overwrite'
                              % (name, out.shape, out.dtype, ledger.n_blocks, fmt.shape(plan.pred_shape),
                                 np.dtype(fmt.dtype)))
    if saved_plan.block != plan.block:
        logger.info('Resuming with the block shape of the interrupted run, %s (x, y, z)', _xyz(saved_plan.block))
    return saved_plan, ledger.done()


def _saved_record(container, out, key, done_key, name):
    try:
        saved = json.loads(out.attrs[INFO_ATTR])
    except (KeyError, ValueError, TypeError):
        raise PredictionError('output dataset %s was not written by elektronn-predict (no %s record); use '
                              '--overwrite to replace it' % (name, INFO_ATTR)) from None
    if done_key not in container:
        raise PredictionError('output dataset %s has no record of finished blocks (%s); use --overwrite'
                              % (name, done_key))
    return saved
