"""Preview predictions during img-img training: the preview cubes and the PNG slices made from them.

The trainer predicts the cubes of ``preview_data_path`` densely on the schedule ``initial_prev_h``
/ ``prev_save_h`` (:meth:`~elektronn.training.trainer.Trainer.previewSlice`) and writes, into the
save directory, for preview cube ``k``, output z-slice ``z`` and exported class ``c``:

* ``<save_name>-pred-<k>-c<c>-z<z>-<hours>hrs.png``: the class probability (grey, 0 black to 1
  white); ``<hours>`` is the nominal time of the preview (``initial_prev_h``, then
  ``+ prev_save_h`` each);
* ``<save_name>-pred-<k>-aff-z<z>-<hours>hrs.png`` instead for ``export_class='affinity'`` /
  ``'malis'``: an RGB image of the "disconnected" probabilities of the z, x and y edges;
* ``<save_name>-raw-<k>-z<z>.png``: the raw slice that prediction slice ``z`` belongs to (written
  once). As in the original the raw image shows the whole xy extent; the prediction lacks the
  network's offset on each side.
"""
import os

import numpy as np

from elektronn.utils import atomic_path

__all__ = ['load_preview_cubes', 'preview_depth', 'write_preview_slices', 'central_slices']


def load_preview_cubes(path, mean=None, std=None):
    """Every top-level dataset of the HDF5 file or Zarr store ``path`` as a float32 raw cube ``(ch, x, y, z)``.

    Integer data is divided by 255 (as training data); float data is taken as it is. ``mean`` and
    ``std`` (the training data's ``'standardise'`` statistics) are applied when given.

    Raises:
        ValueError: the file holds no dataset, or one of the wrong dimensionality.
    """
    from elektronn import volumes
    from elektronn.data import synthetic
    synthetic.provide(path)  # the preview cubes of the embedded synthetic data set: generated if need be
    try:
        f = volumes.open_container(path, 'r', 'preview_data_path')
    except volumes.VolumeError as e:
        raise ValueError(str(e)) from None
    cubes = []
    with f:
        keys = [k for k in f.array_names(limit=10 ** 6) if '/' not in k]
        if not keys:
            raise ValueError('preview_data_path %s holds no datasets; it needs one raw cube ((ch,) x, y, z) '
                             'per dataset' % path)
        for key in sorted(keys, key=lambda k: (len(k), k)):  # '2' before '10'
            arr = f.volume(key).read()
            if arr.ndim not in (3, 4):
                raise ValueError('preview cube %s[%s] has the shape %s; preview cubes must be (x, y, z) or '
                                 '(ch, x, y, z)' % (path, key, arr.shape))
            cube = arr.astype(np.float32)
            if np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_:
                cube /= np.float32(255)
            if mean is not None:
                cube = (cube - np.float32(mean)) / np.float32(std)
            cubes.append(cube[None] if cube.ndim == 3 else cube)
    return cubes


def preview_depth(cnn, max_z_pred):
    """Raw z-slices to predict so that about ``max_z_pred`` output slices come out (the original's rule:
    at least one network input plus its z-stride minus 1; 2D networks: ``max_z_pred``)."""
    if cnn.n_dim != 3:
        return int(max_z_pred)
    stride_z = int(cnn.output_strides[0])
    out_z = int(cnn.output_shape[2]) * stride_z
    min_z = int(cnn.input_shape[1]) + stride_z - 1
    if out_z > max_z_pred:
        return min_z
    return min_z + stride_z * int(np.ceil(float(max_z_pred - out_z) / stride_z))


def _imsave(path, image, **kwargs):
    from matplotlib.image import imsave
    with atomic_path(path) as tmp:
        imsave(tmp, image, **kwargs)


def _classes(export_class, n_lab):
    if export_class == 'all':
        return list(range(n_lab))
    if isinstance(export_class, (list, tuple)):
        return [int(c) for c in export_class]
    return [int(export_class)]


def central_slices(pred, export_class='all'):
    """The central z slice of a dense prediction per exported class, as images for TensorBoard.

    Args:
        pred: ``(n_lab, x', y'[, z'])`` probabilities.
        export_class: As in :func:`write_preview_slices`.

    Returns:
        ``{'c<class>': (x', y')}``, or ``{'aff': (x', y', 3)}`` (the z, x, y affinities as colours).
    """
    if pred.ndim == 3:
        pred = pred[..., None]
    z = pred.shape[-1] // 2
    if export_class in ('affinity', 'malis'):
        return {'aff': np.clip(np.transpose(pred[0:6:2, :, :, z], (1, 2, 0)), 0, 1)}
    return {'c%i' % c: pred[c, :, :, z] for c in _classes(export_class, pred.shape[0])}


def write_preview_slices(pred, raw, folder, save_name, block, number, export_class='all', z_thick=5, z_off=0,
                         write_raw=True):
    """Write the central ``z_thick`` slices of a dense prediction as PNGs (see the module docstring).

    Args:
        pred: ``(n_lab, x', y'[, z'])`` probabilities.
        raw: The predicted raw cube ``(ch, x, y, z)``.
        folder, save_name, block, number: Where and under which name (``block`` = preview cube index,
            ``number`` = nominal hours).
        export_class: ``'all'``, a class index, a list of them, or ``'affinity'``/``'malis'``.
        z_off: The network's z offset: prediction slice ``j`` belongs to raw slice ``j + z_off``.
        write_raw: Also write the raw slices.

    Returns:
        The paths written.
    """
    if pred.ndim == 3:
        pred = pred[..., None]
    start = max(0, (pred.shape[-1] - z_thick) // 2)
    pred = pred[..., start:start + z_thick]
    # probabilities on a fixed scale, so that previews of different times compare; other outputs
    # (regression) scaled per image
    scale = dict(vmin=0, vmax=1) if pred.size and pred.min() >= 0 and pred.max() <= 1 else {}
    written = []
    for z in range(pred.shape[3]):
        if export_class in ('affinity', 'malis'):
            path = os.path.join(folder, '%s-pred-%s-aff-z%i-%shrs.png' % (save_name, block, z, number))
            _imsave(path, np.clip(np.transpose(pred[0:6:2, :, :, z], (1, 2, 0)), 0, 1))
            written.append(path)
            continue
        for c in _classes(export_class, pred.shape[0]):
            path = os.path.join(folder, '%s-pred-%s-c%i-z%i-%shrs.png' % (save_name, block, c, z, number))
            _imsave(path, pred[c, :, :, z], cmap='gray', **scale)
            written.append(path)
    if write_raw:
        for z in range(pred.shape[3]):
            k = z + start + z_off
            if k < raw.shape[-1]:
                path = os.path.join(folder, '%s-raw-%s-z%i.png' % (save_name, block, z))
                _imsave(path, raw[0, :, :, k], cmap='gray')
                written.append(path)
    return written
