"""Dense prediction of whole images and volumes (``MixedConvNN.predictDense``).

A network with pooling predicts a strided grid: output neuron ``j`` of a patch sees the input
window that starts at ``j * stride``. :func:`predict_dense` fills the gaps, as the original did,
and cuts images of any size into tiles:

* **Tiles.** A tile has the shape ``patch_size + output_strides - 1`` (network input shape plus
  stride minus one) and yields ``output_shape * output_strides`` predictions; the tiles follow
  each other without overlap in the output. End tiles are zero-padded on the far side and the
  padded part of their prediction is dropped.
* **Shift and stitch.** Within a tile, the network runs once per stride phase ``(pz, px, py)``
  on the tile cut at that phase, and the result fills ``out[pz::sz, px::sx, py::sy]``
  (``prod(output_strides)`` passes, computed as one batch).
* **Max-fragment-pooling.** A network built with ``use_fragment_pooling=True`` in its pooling
  layers has ``output_strides`` of 1: its output is already dense, so one pass per tile suffices.
  It computes the same numbers while skipping the work that the phases share, and it can take a
  much larger input (a large ``input_size``, even the whole volume), which removes most of the
  overlap between tiles. See :mod:`elektronn.net.layers.conv` for the dilated form used.

Which input voxel an output voxel belongs to
--------------------------------------------
Per spatial axis, let ``fov`` be the network's field of view and ``off = floor(fov / 2)`` (the
offset; ``floor(CNNCalculator(...).offset)``). Without ``pad_raw`` the output has
``n - 2 * off`` voxels along an axis of ``n`` input voxels, and output voxel ``k`` is the
prediction for the window ``raw[k : k + fov]``: it belongs to input voxel ``k + off``, the
window's centre when ``fov`` is odd (for even ``fov`` the centre lies half a voxel before it).
With ``pad_raw=True`` the input is first mirror-padded (NumPy ``'symmetric'``) by ``off`` on both
sides, so the output has the input's shape and output voxel ``k`` belongs to input voxel ``k``.
"""
import dataclasses
import itertools
import logging
import sys
import time

import numpy as np
import torch

from elektronn import log
from elektronn.net import precision as _precision
from elektronn.net import tta as _tta
from elektronn.net.layers.conv import _ConvLayer
from elektronn.net.netutils import _receptive_fields
from elektronn.utils import pprinttime

logger = logging.getLogger(__name__)

__all__ = ['DenseGeometry', 'dense_geometry', 'predict_dense']

#: The progress line is rewritten at most this often (seconds).
_PROGRESS_INTERVAL = 0.25
_PROGRESS_INTERVAL_LOG = 10.0   # seconds between progress lines written to a file or pipe


@dataclasses.dataclass(frozen=True)
class DenseGeometry:
    """Tiling of a dense prediction; every field has one entry per spatial axis in the network's
    order (``(x, y)`` in 2D, ``(z, x, y)`` in 3D).

    Attributes:
        fov: Field of view (receptive field of an output neuron) in input voxels.
        offset: ``floor(fov / 2)``: the inset of the output from the input.
        patch: The network's input shape.
        strides: ``output_strides`` (1 where max-fragment-pooling makes the output dense).
        out_shape: The network's output shape for one patch.
        tile: Input shape of a tile, ``patch + strides - 1``.
        tile_output: Predictions per tile, ``out_shape * strides``.
    """
    fov: tuple
    offset: tuple
    patch: tuple
    strides: tuple
    out_shape: tuple
    tile: tuple
    tile_output: tuple

    def prediction_shape(self, spatial):
        """Output shape for an input of spatial shape ``spatial`` (network order, no padding)."""
        return tuple(int(s) - 2 * o for s, o in zip(spatial, self.offset))


def _tuple(values):
    return tuple(int(v) for v in values)


def _network_offset(offset, n_dim, natural, fov, source, fix):
    arr = np.floor(np.asarray(offset, dtype=float)).astype(int).ravel()
    if arr.size != n_dim:
        raise ValueError('offset %s must have %i entries (the network order %s), got %r'
                         % (source, n_dim, '(x, y)' if n_dim == 2 else '(z, x, y)', offset))
    if tuple(arr) != natural:
        raise ValueError('offset %s %s does not match the network: its field of view %s (order %s) gives the '
                         'offset %s; %s'
                         % (source, tuple(int(a) for a in arr), fov, '(x, y)' if n_dim == 2 else '(z, x, y)', natural,
                            fix))
    return natural


def dense_geometry(cnn, offset=None):
    """The tiling :func:`predict_dense` uses for ``cnn``.

    Args:
        cnn: A compiled :class:`~elektronn.net.convnet.MixedConvNN` whose output layer is a conv layer.
        offset: Optional offset in the network's order; it is checked against the network's field
            of view (as is ``cnn.dimension_calc.offset``). ``None``: from ``cnn.dimension_calc`` if
            the network has one, else from the layers.

    Raises:
        RuntimeError: the network is not compiled.
        ValueError: the network has no conv output, or the offset does not fit it.
    """
    if not getattr(cnn, '_compiled', False):
        raise RuntimeError('predictDense: call compileOutputFunctions() first')
    if cnn.input_depth is None or cnn.n_dim < 2 or not isinstance(cnn.layers[-1], _ConvLayer):
        raise ValueError('predictDense needs a 2D or 3D network whose output layer is a conv layer; this network '
                         'has input shape %s and a %s output layer: use class_probabilities instead'
                         % (cnn.input_shape, type(cnn.layers[-1]).__name__))
    n = cnn.n_dim
    layers = list(cnn.layers)
    fov = tuple(_receptive_fields([layer.filter_size[d] for layer in layers],
                                  [layer.pool[d] for layer in layers])[-1] for d in range(n))
    natural = tuple(f // 2 for f in fov)
    if offset is not None:
        natural = _network_offset(offset, n, natural, fov, 'argument', 'leave offset=None to use it')
    elif cnn.dimension_calc is not None:
        natural = _network_offset(cnn.dimension_calc.offset, n, natural, fov, 'of dimension_calc',
                                  'cnn.dimension_calc describes another architecture (set it to None or to the '
                                  "network's CNNCalculator)")
    patch = _tuple(cnn.patch_size)
    strides = _tuple(cnn.output_strides)
    out_shape = _tuple(cnn.output_shape[2:])
    return DenseGeometry(fov=fov, offset=natural, patch=patch, strides=strides, out_shape=out_shape,
                         tile=tuple(p + s - 1 for p, s in zip(patch, strides)),
                         tile_output=tuple(o * s for o, s in zip(out_shape, strides)))


def _zxy(arr):
    """View of a ``(ch, x, y, z)`` array as ``(ch, z, x, y)``."""
    return np.moveaxis(arr, -1, 1)


def _xyz(values):
    """``(z, x, y)`` values in xyz order."""
    values = tuple(values)
    return values[1:] + values[:1]


def _as_3d(geom):
    """The geometry with a z axis of one voxel in front for 2D networks (which predict a stack
    ``(ch, x, y, z)`` slice by slice, as the original did)."""
    if len(geom.fov) == 3:
        return geom
    return DenseGeometry(**{f.name: (1 if f.name != 'offset' else 0,) + getattr(geom, f.name)
                            for f in dataclasses.fields(DenseGeometry)})


def _predict_tile(cnn, tile, geom):
    """Dense probabilities ``(n_lab, *tile_output)`` of one tile ``(ch, *tile)`` (float32, ``(z, x, y)``
    order; a 2D network sees the z axis of one voxel squeezed)."""
    if all(s == 1 for s in geom.strides):
        phases = [(0, 0, 0)]
        batch = tile[None]
    else:
        phases = list(itertools.product(*[range(s) for s in geom.strides]))
        batch = np.stack([tile[(slice(None),) + tuple(slice(p, p + ps) for p, ps in zip(phase, geom.patch))]
                          for phase in phases])
    if cnn.n_dim == 2:
        batch = batch[:, :, 0]
    x = torch.from_numpy(batch).to(device=cnn.device, dtype=cnn.dtype).contiguous(memory_format=cnn.memory_format)
    probs = cnn._predict(x)  # (n_phases, n_lab, *out_shape), evaluated in memory-bounded chunks
    if cnn.n_dim == 2:
        probs = probs[:, :, None]
    if len(phases) == 1:
        return probs[0]
    out = np.empty(probs.shape[1:2] + geom.tile_output, dtype=np.float32)
    for phase, prob in zip(phases, probs):
        out[(slice(None),) + tuple(slice(p, None, s) for p, s in zip(phase, geom.strides))] = prob
    return out


class _Progress:
    """The original's ``\\rProgress: 12.50% in t=3s; estimate: t=24s`` line, rewritten at most every 0.25 s
    on a terminal; elsewhere (a log file, a pipe) one line at most every 10 s, without carriage returns."""

    def __init__(self, total, show, t0):
        self.total, self.show, self.t0, self.last = total, show, t0, -np.inf
        self.done_before = 0  # tiles of earlier passes (test-time augmentation)
        self.tty = bool(getattr(sys.stdout, 'isatty', lambda: False)())

    def update(self, count):
        count += self.done_before
        now = time.time()
        interval = _PROGRESS_INTERVAL if self.tty else _PROGRESS_INTERVAL_LOG
        if not self.show or (count < self.total and now - self.last < interval) or not log.shows():
            return  # not asked for, drawn a moment ago, or the log level hides INFO (progress is INFO)
        self.last = now
        elapsed = now - self.t0
        progress = count * 100.0 / self.total
        line = 'Progress: %.2f%% in %s; estimate: %s' % (progress, pprinttime(elapsed),
                                                          pprinttime(elapsed / progress * 100.0))
        last = count >= self.total        # ' - done' completes the last line
        sys.stdout.write('\r' + line if self.tty else line + ('' if last else '\n'))
        sys.stdout.flush()


def predict_dense(cnn, raw_img, show_progress=True, offset=None, as_uint8=False, pad_raw=False, precision=None,
                  tta=False):
    """Predict every voxel of an image or volume; the engine of ``MixedConvNN.predictDense``.

    Args:
        cnn: A compiled network with a conv output layer (2D or 3D).
        raw_img: ``(ch, x, y)`` or ``(ch, x, y, z)`` array, **xyz order**. Integer arrays are
            divided by 255, float arrays are used as they are. A 2D network predicts a stack
            ``(ch, x, y, z)`` slice by slice.
        show_progress: Print a progress line with elapsed time and estimate.
        offset: The network's offset (``floor(fov / 2)``) in the network's order (``(x, y)`` or
            ``(z, x, y)``); only checked, since it follows from the layers.
        as_uint8: Return ``uint8`` values ``int(p * 255)`` (clipped to 0..255) instead of float32.
        pad_raw: Mirror-pad the input by the offset so that the output has the input's shape.
        precision: ``'fp32'``, ``'bf16'``, ``'fp16'`` or ``'auto'`` (see :mod:`elektronn.net.precision`);
            ``None``: the network's (:meth:`~elektronn.net.convnet.MixedConvNN.setPrecision`). A
            reduced precision is printed.
        tta: Test-time augmentation (see :mod:`elektronn.net.tta`): ``False``, ``True`` (the flips
            and xy-transposes the training augmentation covers), ``'xy'`` (8 transforms) or ``'xyz'``
            (16, isotropic 3D data): the mean of the predictions of the transformed inputs, each
            transformed back. Costs that many predictions (printed).

    Returns:
        ``(n_lab, x', y'[, z'])`` class probabilities (for ``'regression'`` the activated outputs),
        ``x' = x - 2 * offset_x`` etc., or the input's shape with ``pad_raw``. The module
        docstring says which input voxel each output voxel belongs to.

    Raises:
        ValueError: wrong number of axes or channels, or an image smaller than the field of view.
    """
    geom = _as_3d(dense_geometry(cnn, offset))
    if precision is None:
        used = cnn.precision
    else:
        used = _precision.resolve(precision, cnn.device, 'predictDense: precision', stacklevel=4)
    n = cnn.n_dim
    layout = '(ch, x, y) or (ch, x, y, z)' if n == 2 else '(ch, x, y, z)'
    raw = np.asarray(raw_img)
    if raw.ndim not in (3, 4) or (n == 3 and raw.ndim != 4):
        raise ValueError('predictDense: raw_img must have shape %s (channels first, xyz order) for this %iD network, '
                         'got shape %s' % (layout, n, raw.shape))
    if raw.shape[0] != cnn.input_depth:
        raise ValueError('predictDense: raw_img has %i channel(s) (axis 0 of shape %s) but the network expects %i; '
                         'the layout is %s' % (raw.shape[0], raw.shape, cnn.input_depth, layout))
    single_image = raw.ndim == 3
    if not (np.issubdtype(raw.dtype, np.number) or raw.dtype == np.bool_):
        raise TypeError('predictDense: raw_img must be a numeric array, got dtype %s' % raw.dtype)
    scale = 255.0 if np.issubdtype(raw.dtype, np.integer) else 1.0
    t0 = time.time()

    view = _zxy(raw[..., None] if single_image else raw)
    if pad_raw:
        view = np.pad(view, [(0, 0)] + [(o, o) for o in geom.offset], mode='symmetric')
    spatial = view.shape[1:]
    pred_shape = geom.prediction_shape(spatial)
    if min(pred_shape) < 1:
        raise ValueError('predictDense: raw_img of spatial shape %s (xyz) is smaller than the field of view %s (xyz) '
                         'of the network; give at least that many voxels per axis or use pad_raw=True'
                         % (_xyz(spatial)[:raw.ndim - 1], _xyz(geom.fov)[:raw.ndim - 1]))
    predictions = np.zeros((cnn.n_lab,) + _xyz(pred_shape), dtype=np.uint8 if as_uint8 else np.float32)
    pred_view = _zxy(predictions)

    transforms, note = _tta.plan(tta, geom.fov, n, geom.strides)
    n_tiles = _tile_counts(pred_shape, geom)
    total = int(np.prod(n_tiles))
    logger.info('Predicting img %s in %s Blocks: %s', (view.shape[0],) + _xyz(spatial), total, _xyz(n_tiles))
    if used != 'fp32':
        logger.info('Precision: %s', _precision.describe(used))
    if len(transforms) > 1:
        logger.info('%s', _tta.describe(transforms, note))
    progress = _Progress(total * len(transforms), show_progress, t0)
    with cnn._computing_in(used):
        if len(transforms) == 1:
            _predict_tiles(cnn, view, geom, n_tiles, pred_shape, pred_view, scale, as_uint8, progress)
        else:
            mean = _augmented_mean(cnn, view, geom, transforms, scale, progress)
            pred_view[...] = np.clip(mean * 255, 0, 255).astype(np.uint8) if as_uint8 else mean
    logger.info(' - done')  # ends the progress line
    logger.info('Inference speed: %.3f MB or MPix /s\n', np.prod(pred_shape) / 1e6 / max(time.time() - t0, 1e-9))
    return predictions[..., 0] if single_image else predictions


def _tile_counts(pred_shape, geom):
    return tuple(-(-p // t) for p, t in zip(pred_shape, geom.tile_output))


def affinity_edges(cnn):
    """The number of edge directions of an affinity output (their channels are moved by TTA), else 0."""
    target = cnn._target
    return target.n_edges if getattr(target, 'name', None) in ('affinity', 'malis') else 0


def _augmented_mean(cnn, view, geom, transforms, scale, progress):
    """The mean prediction ``(n_out, z', x', y')`` over ``transforms`` of ``view`` (see :mod:`elektronn.net.tta`)."""
    def predict(moved):
        shape = geom.prediction_shape(moved.shape[1:])
        out = np.zeros((cnn.n_lab,) + tuple(shape), dtype=np.float32)
        n_tiles = _tile_counts(shape, geom)
        _predict_tiles(cnn, moved, geom, n_tiles, shape, out, scale, False, progress)
        progress.done_before += int(np.prod(n_tiles))
        return out

    def pad(t):
        # an even field of view: the output is one window short on the far side, which a flip brings to the front
        return tuple(1 if a in t.flips and geom.fov[a] % 2 == 0 else 0 for a in range(3))

    return _tta.average(predict, view, transforms, pad, affinity_edges(cnn))


def _predict_tiles(cnn, view, geom, n_tiles, pred_shape, pred_view, scale, as_uint8, progress):
    """Predict the tiles of ``view`` ``(ch, z, x, y)`` into ``pred_view`` ``(n_lab, z', x', y')``."""
    for count, index in enumerate(itertools.product(*[range(t) for t in n_tiles]), 1):
        start = [i * t for i, t in zip(index, geom.tile_output)]
        src = tuple(slice(s, s + t) for s, t in zip(start, geom.tile))
        tile = np.asarray(view[(slice(None),) + src], dtype=np.float32)
        if scale != 1.0:
            tile /= scale
        short = [t - s for t, s in zip(geom.tile, tile.shape[1:])]
        if any(short):  # an end tile: zero-pad on the far side, drop the padded predictions below
            tile = np.pad(tile, [(0, 0)] + [(0, m) for m in short])
        prob = _predict_tile(cnn, np.ascontiguousarray(tile), geom)
        size = [min(t, p - s) for t, p, s in zip(geom.tile_output, pred_shape, start)]
        prob = prob[(slice(None),) + tuple(slice(0, m) for m in size)]
        if as_uint8:
            prob = np.clip(prob * 255, 0, 255).astype(np.uint8)  # truncation, as the original
        pred_view[(slice(None),) + tuple(slice(s, s + m) for s, m in zip(start, size))] = prob
        progress.update(count)
