"""Reading raw and label cubes for :class:`~elektronn.training.image_data.CNNData`.

A *cube* is one dataset of an HDF5 file or one array of a Zarr store (or a NumPy array) of image
data with its label volume; files and stores are opened through :mod:`elektronn.volumes`. This
module turns the file layouts into the internal one and knows where each label voxel lies in its
raw cube; it knows nothing of patches, augmentation or networks.

File layouts (``zchxy_order=False``, the original's default):

* raw data ``(x, y, z)`` or ``(ch, x, y, z)``; integer data is divided by 255, float data is used
  as it is (it should lie in ``[0, 1]``);
* labels ``(x, y, z)`` (img-img) or ``(z,)`` (img-scalar: one label per z-slice; a 3D img-scalar
  cube has one label);

and with ``zchxy_order=True`` the same arrays in ``(z, x, y)`` / ``(z, ch, x, y)`` order.

Internal layout: raw data ``(z, ch, x, y)`` float32, labels ``(z, x, y)`` int16 (float32 for
regression). A label cube smaller than its raw cube lies centred in it; the label voxel
``label[i, j, k]`` sits on the raw voxel ``origin + (i, j, k)``. Nothing is padded or copied for
this: the patch sampler works out which patch positions have labels under every output neuron.

A cube too large for the memory stays in its file or store (:class:`DiskVolume`): patches are read
from the dataset when they are cut (chunked datasets make that fast).
"""
import os

import numpy as np

from elektronn import volumes

__all__ = ['DataKeyError', 'DiskVolume', 'open_cube', 'parse_file_entry', 'available_memory', 'check_finite',
           'downsample_raw_xy', 'downsample_labels_xy', 'border_treatment', 'BORDER_MODES']

#: img-scalar border modes: how an image of the wrong size is brought to the patch size.
BORDER_MODES = ('crop', 'keep', 'mirror', '0-pad', 'c-pad', 'reject')

#: Bytes read at a time when statistics are gathered from a cube kept on disk.
_SLAB_BYTES = 64 * 2 ** 20


class DataKeyError(KeyError):
    """A dataset key missing from an HDF5 file or Zarr store; prints its message without KeyError's quotes."""

    def __str__(self):
        return str(self.args[0]) if self.args else ''


def describe(path, key, region=None):
    """``'file.h5[key]'``, the way cubes are named in messages; with a ``region`` (see
    :func:`parse_file_entry`) ``'file.h5[key] region z=(0, 24)'``, so that cubes of one dataset differ."""
    name = '%s[%s]' % (path, key)
    if region:
        name += ' region ' + ', '.join('%s=(%i, %i)' % ((axis,) + tuple(region[axis])) for axis in 'xyz'
                                       if axis in region)
    return name


def open_cube(path, key, role):
    """Open the HDF5 file or Zarr store ``path`` and the dataset ``key`` in it; clear errors for what is missing.

    Args:
        path: File or store name.
        key: Dataset key (an OME-Zarr image group stands for its full-resolution array).
        role: ``'data'`` or ``'label'``, named in the messages (``d_files``/``l_files``).

    Returns:
        ``(container, volume)``: the open :class:`elektronn.volumes.Container` (close it when done)
        and the dataset as an :class:`elektronn.volumes.Volume`.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        OSError: ``path`` cannot be read as an HDF5 file or Zarr store.
        DataKeyError: nothing at ``key``, or a group.

    A file of the embedded synthetic data set is generated first if need be (see
    :func:`elektronn.data.synthetic.provide`).
    """
    from elektronn.data import synthetic
    synthetic.provide(path)
    lists = 'd_files and data_path' if role == 'data' else 'l_files and label_path'
    noun = 'store' if str(path).lower().rstrip('/').endswith(volumes.ZARR_SUFFIXES) else 'file'
    if not os.path.exists(path):
        raise FileNotFoundError('%s %s not found: %s (key %r); check %s'
                                % (role.capitalize(), noun, path, key, lists))
    try:
        container = volumes.open_container(path, 'r', what=role)
    except volumes.VolumeError as e:
        raise OSError('Cannot read %s %s %s (key %r): %s' % (role, noun, path, key, e)) from None
    name = '%s %s %s' % (role.capitalize(), noun, path)
    try:
        if key not in container:
            raise DataKeyError('%s has no dataset %r; it contains %s; check %s'
                               % (name, key, sorted(container.array_names()), lists))
        try:
            vol = container.volume(key)
        except volumes.VolumeError:  # the key names a group (and no OME-Zarr image, which would be read)
            raise DataKeyError('%s: %r is a group, not a dataset; check %s' % (name, key, lists)) from None
    except BaseException:
        container.close()
        raise
    return container, vol


def parse_file_entry(entry, which, index):
    """Split a ``d_files``/``l_files`` entry ``(file, key[, region])``.

    ``region`` (an extension) selects a part of the dataset: a dict with any of the keys ``'x'``,
    ``'y'``, ``'z'`` mapping to ``(start, stop)``, e.g. ``dict(z=(0, 24))`` for the first 24
    slices. Returns ``(file, key, region_dict)``.
    """
    if isinstance(entry, (str, bytes)) or not hasattr(entry, '__len__') or len(entry) not in (2, 3):
        raise ValueError('%s[%i] must be a tuple (file name, dataset key) or (file, key, region), got %r'
                         % (which, index, entry))
    region = entry[2] if len(entry) == 3 else None
    if region is None:
        region = {}
    if not isinstance(region, dict) or not set(region) <= {'x', 'y', 'z'}:
        raise ValueError("%s[%i]: the region must be a dict with keys among 'x', 'y', 'z', each (start, stop), "
                         "got %r" % (which, index, region))
    for axis, rng in region.items():
        if (not hasattr(rng, '__len__') or len(rng) != 2
                or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in rng)
                or rng[0] < 0 or rng[1] <= rng[0]):
            raise ValueError('%s[%i]: region %s=%r must be (start, stop) with 0 <= start < stop'
                             % (which, index, axis, rng))
    return str(entry[0]), str(entry[1]), dict(region)


def check_finite(arr, name, what='raw data', where=None):
    """Raise ``ValueError`` naming ``name`` when the float array ``arr`` holds NaN or Inf (a network trained on
    them learns NaN); integer arrays pass at once. ``where`` describes the region of ``arr`` in its source.

    The array is scanned in slabs along its first axis, so that the check needs little extra memory.
    """
    arr = np.asarray(arr)
    if not np.issubdtype(arr.dtype, np.floating) and not np.issubdtype(arr.dtype, np.complexfloating):
        return
    if arr.ndim == 0:
        arr = arr.reshape(1)
    per_row = max(1, int(np.prod(arr.shape[1:])))
    step = max(1, (16 * 2 ** 20) // per_row)
    bad, first = 0, None
    for start in range(0, arr.shape[0], step):
        finite = np.isfinite(arr[start:start + step])
        if not finite.all():
            n = int(finite.size - np.count_nonzero(finite))
            if first is None:
                first = tuple(int(i) for i in np.argwhere(~finite)[0])
                first = (first[0] + start,) + first[1:]
            bad += n
    if bad:
        raise ValueError('%s: the %s hold %i NaN/Inf value(s)%s (the first at index %s%s); training on them gives NaN '
                         'losses. Replace them (e.g. numpy.nan_to_num) or leave that region out'
                         % (name, what, bad, '' if where is None else ' in %s' % where, first,
                            '' if where is None else ' of that region'))


def available_memory():
    """Bytes of memory available to new allocations (``MemAvailable``), or ``None`` if unknown."""
    try:
        with open('/proc/meminfo') as f:
            for line in f:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf('SC_AVPHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')
    except (ValueError, OSError, AttributeError):
        return None


# ----------------------------------------------------------------------------------------------------
# Axis bookkeeping between file and internal layouts
# ----------------------------------------------------------------------------------------------------
def spatial_file_axes(ndim, zchxy_order):
    """File axis indices of the spatial axes ``(z, x, y)`` and of the channel (or ``None``)."""
    if ndim == 1:
        return (0, None, None), None
    if zchxy_order:
        return ((0, 2, 3), 1) if ndim == 4 else ((0, 1, 2), None)
    return ((3, 1, 2), 0) if ndim == 4 else ((2, 0, 1), None)


def file_slices(ndim, zchxy_order, region, shape, name):
    """Slices that read ``region`` (dict over ``'x','y','z'``) from a dataset of ``shape``."""
    if not region:
        return tuple(slice(None) for _ in range(ndim))
    axes, _ = spatial_file_axes(ndim, zchxy_order)
    out = [slice(None)] * ndim
    for name_ax, ax in zip('zxy', axes):
        if name_ax in region and ax is not None:
            start, stop = region[name_ax]
            if stop > shape[ax]:
                raise ValueError('%s: region %s=%r exceeds the dataset, whose %s extent is %i (shape %s)'
                                 % (name, name_ax, (start, stop), name_ax, shape[ax], tuple(shape)))
            out[ax] = slice(int(start), int(stop))
    return tuple(out)


def to_internal_raw(arr, zchxy_order):
    """A raw array in file layout as a ``(z, ch, x, y)`` view (no copy)."""
    if arr.ndim == 3:
        arr = arr[:, None] if zchxy_order else arr[None]
    if not zchxy_order:
        arr = arr.transpose(3, 0, 1, 2)
    return arr


def to_internal_label(arr, zchxy_order):
    """An image label array in file layout as a ``(z, x, y)`` view (no copy)."""
    return arr if zchxy_order else arr.transpose(2, 0, 1)


def internal_raw_shape(file_shape, zchxy_order):
    if len(file_shape) == 3:
        file_shape = ((file_shape[0], 1) + tuple(file_shape[1:])) if zchxy_order else (1,) + tuple(file_shape)
    if zchxy_order:
        return tuple(file_shape)
    ch, x, y, z = file_shape
    return (z, ch, x, y)


def internal_label_shape(file_shape, zchxy_order):
    if zchxy_order:
        return tuple(file_shape)
    x, y, z = file_shape
    return (z, x, y)


def is_integer_raw(dtype):
    return np.issubdtype(dtype, np.integer)


# ----------------------------------------------------------------------------------------------------
# Down-sampling in x and y
# ----------------------------------------------------------------------------------------------------
def downsample_raw_xy(arr, f):
    """Average ``f x f`` blocks of the last two axes (whose sizes must be multiples of ``f``)."""
    sh = arr.shape
    out = arr.reshape(sh[:-2] + (sh[-2] // f, f, sh[-1] // f, f)).mean(axis=(-3, -1), dtype=np.float64)
    return out.astype(np.float32)


def downsample_labels_xy(arr, f, float_label=False):
    """Down-sample labels over ``f x f`` blocks of the last two axes, never mixing classes.

    Integer labels get the majority vote of each block; ties go to the block's nearest-neighbour
    sample (pixel ``(f//2, f//2)``) when it is among the winners, else to the smallest winner.
    Float (regression) labels are averaged like the raw data.
    """
    if float_label:
        return downsample_raw_xy(arr, f)
    sh = arr.shape
    blocks = arr.reshape(sh[:-2] + (sh[-2] // f, f, sh[-1] // f, f))
    blocks = np.moveaxis(blocks, -3, -2).reshape(sh[:-2] + (sh[-2] // f, sh[-1] // f, f * f))
    centre = blocks[..., (f // 2) * f + f // 2]
    ordered = np.sort(blocks, axis=-1)
    counts = np.zeros(ordered.shape, dtype=np.int32)
    for j in range(f * f):  # f*f is tiny: count how often each sorted entry occurs in its block
        counts[..., j] = (ordered == ordered[..., j:j + 1]).sum(-1)
    best = counts.max(-1)
    smallest_winner = np.take_along_axis(ordered, counts.argmax(-1)[..., None], -1)[..., 0]
    centre_count = (blocks == centre[..., None]).sum(-1)
    return np.where(centre_count == best, centre, smallest_winner).astype(arr.dtype)


def downsample_plan(origin, f):
    """How to down-sample a raw cube and its centred labels in x/y so that they stay registered.

    Args:
        origin: Position ``(z, x, y)`` of the first label voxel in the raw cube.
        f: Down-sampling factor for x and y.

    Returns:
        ``(raw_start, label_start, new_origin)``: the raw and label arrays are down-sampled from
        these x/y start indices (blocks of ``f``); ``new_origin`` is the origin afterwards.
    """
    origin = np.asarray(origin, dtype=np.int64)
    raw_start = np.zeros(3, np.int64)
    label_start = np.zeros(3, np.int64)
    new_origin = origin.copy()
    for ax in (1, 2):
        g = int(origin[ax] % f)  # the raw grid starts here so that label blocks start on a label pixel
        raw_start[ax] = g
        label_start[ax] = max(0, g - origin[ax])
        new_origin[ax] = (origin[ax] + label_start[ax] - g) // f
    return raw_start, label_start, new_origin


def crop_for_downsampling(arr, start_x, start_y, f):
    """``arr[..., start_x:, start_y:]`` cut to multiples of ``f`` in the last two axes."""
    nx = (arr.shape[-2] - start_x) // f * f
    ny = (arr.shape[-1] - start_y) // f * f
    return arr[..., start_x:start_x + nx, start_y:start_y + ny]


# ----------------------------------------------------------------------------------------------------
# img-scalar border treatment
# ----------------------------------------------------------------------------------------------------
def border_treatment(data, patch, mode, n_dim, name):
    """Bring an img-scalar cube ``(z, ch, x, y)`` to the patch size as ``mode`` says.

    ``crop`` cuts the centre (the image must not be smaller); ``keep`` leaves it (patches are cut
    at random positions); ``mirror``/``0-pad``/``c-pad`` pad a smaller image centred (mirrored,
    zeros, or the mean of its border pixels) and cut the centre of a larger one; ``reject`` demands
    the exact size. 2D networks treat x and y (every z-slice is an example), 3D ones z, x and y.
    """
    spatial = (2, 3) if n_dim == 2 else (0, 2, 3)
    sizes = [data.shape[a] for a in spatial]
    patch = [int(p) for p in patch]
    if mode == 'keep':
        smaller = [(s, p) for s, p in zip(sizes, patch) if s < p]
        if smaller:
            raise ValueError("%s: image extent %s is smaller than the patch size %s; border_mode='keep' cannot "
                             "pad (use 'mirror', '0-pad' or 'c-pad')" % (name, tuple(sizes), tuple(patch)))
        return data
    if mode == 'reject':
        if sizes != patch:
            raise ValueError("%s: image extent %s differs from the CNN input size %s and border_mode='reject'; "
                             "choose another border_mode or resize the images" % (name, tuple(sizes), tuple(patch)))
        return data
    if mode == 'crop' and any(s < p for s, p in zip(sizes, patch)):
        raise ValueError("%s: image extent %s is smaller than the patch size %s; border_mode='crop' cannot pad "
                         "(use 'mirror', '0-pad' or 'c-pad')" % (name, tuple(sizes), tuple(patch)))
    crop = [slice(None)] * 4
    for a, s, p in zip(spatial, sizes, patch):
        if s > p:
            left = (s - p) // 2
            crop[a] = slice(left, left + p)
    data = data[tuple(crop)]
    pads = [(0, 0)] * 4
    for a, p in zip(spatial, patch):
        missing = p - data.shape[a]
        if missing > 0:
            pads[a] = (int(np.ceil(missing / 2.0)), missing // 2)
    if not any(any(p) for p in pads):
        return np.ascontiguousarray(data)
    if mode == 'mirror':
        return np.pad(data, pads, mode='symmetric')
    if mode == '0-pad':
        return np.pad(data, pads, mode='constant', constant_values=0)
    # c-pad: the constant is the mean of the image's border pixels (per example and channel)
    fill = _border_mean(data, spatial)
    out = np.empty(tuple(s + sum(p) for s, p in zip(data.shape, pads)), dtype=data.dtype)
    out[...] = fill
    out[tuple(slice(p[0], p[0] + s) for p, s in zip(pads, data.shape))] = data
    return out


def _border_mean(data, spatial):
    """Mean over the outermost pixels along ``spatial`` axes, kept per remaining axis (broadcastable)."""
    border = np.zeros(data.shape, dtype=bool)
    for a in spatial:
        idx = [slice(None)] * data.ndim
        idx[a] = [0, data.shape[a] - 1]
        border[tuple(idx)] = True
    total = np.where(border, data, 0).sum(axis=spatial, keepdims=True, dtype=np.float64)
    count = border.sum(axis=spatial, keepdims=True)
    return (total / count).astype(data.dtype)


# ----------------------------------------------------------------------------------------------------
# Cubes kept on disk
# ----------------------------------------------------------------------------------------------------
class DiskVolume:
    """A cube read from its HDF5 dataset or Zarr array on demand, indexed in the internal layout.

    Only basic slicing is supported (``vol[z0:z1, :, x0:x1, y0:y1]`` for raw data,
    ``vol[z0:z1, x0:x1, y0:y1]`` for labels); every read converts as the in-memory path does
    (transpose, region, x/y down-sampling, scaling by 1/255, standardisation, label dtype).
    The file or store is opened lazily in each process, so the object can be sent to worker
    processes (pickled or forked).

    Args:
        path, key: The dataset (see :func:`open_cube`).
        kind: ``'raw'`` or ``'label'``.
        zchxy_order: File layout flag.
        region: Dict over ``'x','y','z'`` of ``(start, stop)`` (see :func:`parse_file_entry`).
        dtype: Output dtype (float32 for raw, the label dtype for labels).
        downsample: ``(f, start_x, start_y)`` or ``None``.
        float_label: Labels are regression targets (averaged when down-sampled).
    """

    def __init__(self, path, key, kind, zchxy_order, region, dtype, downsample=None, float_label=False):
        self.path, self.key, self.kind = path, key, kind
        self.zchxy_order = bool(zchxy_order)
        self.dtype = np.dtype(dtype)
        self.downsample = downsample
        self.float_label = float_label
        self.mean, self.std = 0.0, 1.0
        self._container = self._volume = None
        self._pid = None
        ds = self._dataset()
        self.file_ndim = ds.ndim
        self.file_dtype = ds.dtype
        self.scale = 255.0 if (kind == 'raw' and is_integer_raw(ds.dtype)) else 1.0
        sl = file_slices(ds.ndim, self.zchxy_order, region, ds.shape, describe(path, key))
        self._region_start = [s.start or 0 for s in sl]
        region_shape = [len(range(*s.indices(n))) for s, n in zip(sl, ds.shape)]
        shape = list(internal_raw_shape(region_shape, self.zchxy_order) if kind == 'raw'
                     else internal_label_shape(region_shape, self.zchxy_order))
        if downsample is not None:
            f, sx, sy = downsample
            shape[-2] = (shape[-2] - sx) // f
            shape[-1] = (shape[-1] - sy) // f
        self.shape = tuple(shape)
        self.ndim = len(self.shape)

    def __getstate__(self):
        state = dict(self.__dict__)
        state.update(_container=None, _volume=None, _pid=None)
        return state

    def _dataset(self):
        """The open :class:`~elektronn.volumes.Volume`, opened anew in a process that inherited it."""
        if self._volume is None or self._pid != os.getpid():
            # an HDF5 handle inherited through fork must not be used by the child: open a new one
            self._container, self._volume = open_cube(self.path, self.key, 'data' if self.kind == 'raw' else 'label')
            self._pid = os.getpid()
        return self._volume

    @property
    def size(self):
        """The number of elements, as ``ndarray.size``."""
        return int(np.prod(self.shape))

    @property
    def nbytes(self):
        """The size in bytes once read into memory, as ``ndarray.nbytes``."""
        return self.size * self.dtype.itemsize

    def _file_index(self, bounds):
        """File slices for internal spatial bounds ``[(z0, z1), (x0, x1), (y0, y1)]``."""
        if self.downsample is not None:
            f, sx, sy = self.downsample
            (x0, x1), (y0, y1) = bounds[1], bounds[2]
            bounds = [bounds[0], (sx + f * x0, sx + f * x1), (sy + f * y0, sy + f * y1)]
        if self.kind == 'raw':
            axes, _ = spatial_file_axes(self.file_ndim, self.zchxy_order)
        else:
            axes = (0, 1, 2) if self.zchxy_order else (2, 0, 1)
        index = [slice(None)] * self.file_ndim
        for ax, (a, b) in zip(axes, bounds):
            index[ax] = slice(self._region_start[ax] + a, self._region_start[ax] + b)
        return tuple(index)

    def _bounds(self, item):
        if not isinstance(item, tuple):
            item = (item,)
        spatial = (0, 2, 3) if self.kind == 'raw' else (0, 1, 2)
        item = item + (slice(None),) * (self.ndim - len(item))
        bounds = []
        for ax in spatial:
            s = item[ax]
            if not isinstance(s, slice) or s.step not in (None, 1):
                raise IndexError('DiskVolume supports plain slices only, got %r' % (item,))
            start, stop, _ = s.indices(self.shape[ax])
            bounds.append((start, max(start, stop)))
        if self.kind == 'raw' and item[1] != slice(None):
            raise IndexError('DiskVolume reads all channels; got channel index %r' % (item[1],))
        return bounds

    def read(self, bounds):
        """The internal-layout array for spatial bounds ``[(z0, z1), (x0, x1), (y0, y1)]``."""
        arr = self._dataset()[self._file_index(bounds)]
        if self.kind == 'raw':
            arr = to_internal_raw(arr, self.zchxy_order)
            if self.downsample is not None:
                arr = downsample_raw_xy(arr.astype(np.float32), self.downsample[0])
            out = np.asarray(arr, dtype=np.float32)
            if self.scale == 1.0:  # float data: integers cannot hold NaN/Inf
                check_finite(out, describe(self.path, self.key), where='the patch at (z, x, y) %s of the internal '
                             'layout' % ([tuple(b) for b in bounds],))
            if self.scale != 1.0:
                out = out / np.float32(self.scale)
            if self.mean != 0.0 or self.std != 1.0:
                out = (out - np.float32(self.mean)) / np.float32(self.std)
            return out
        arr = to_internal_label(arr, self.zchxy_order)
        if self.downsample is not None:
            arr = downsample_labels_xy(arr, self.downsample[0], self.float_label)
        return np.asarray(arr, dtype=self.dtype)

    def __getitem__(self, item):
        return self.read(self._bounds(item))

    def slabs(self):
        """Yield the whole cube as converted z-slabs of about 64 MB (for statistics)."""
        per_z = max(1, int(np.prod(self.shape[1:])) * 4)
        step = max(1, _SLAB_BYTES // per_z)
        full = [(0, self.shape[2 if self.kind == 'raw' else 1]), (0, self.shape[-1])]
        for z in range(0, self.shape[0], step):
            yield self.read([(z, min(self.shape[0], z + step))] + full)

    def close(self):
        """Close the file or store (a later read opens it again)."""
        if self._container is not None:
            self._container.close()
            self._container = self._volume = None

    def __repr__(self):
        return 'DiskVolume(%s, %s, shape=%s)' % (describe(self.path, self.key), self.kind, self.shape)
