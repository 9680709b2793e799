"""The image data class :class:`CNNData`: raw and label cubes read from files or arrays, registered and checked.

:class:`CNNData` loads pairs of raw and label cubes (:meth:`CNNData.addDataFromFile`, see
:mod:`elektronn.training.cubes` for the file contract, or :meth:`CNNData.addDataFromNdarray`):
it converts them to the internal layout (in memory, or left in their file when too large),
registers each label cube in its raw cube, checks the labels and detects ``n_lab`` (with
:mod:`elektronn.training.label_checks`), standardises the data and keeps the training and
validation cubes with their sampling priorities. Its batches come from
:class:`~elektronn.training.patch_sampling.PatchSampler`
(:meth:`~elektronn.training.patch_sampling.PatchSampler.getbatch`), which it inherits.
"""
import logging
import os
import sys
import warnings

import numpy as np

from elektronn.training import cubes as _cubes
from elektronn.training import label_checks
from elektronn.training.augmentation import allowed_permutations
from elektronn.training.patch_sampling import PatchSampler

__all__ = ['CNNData']

logger = logging.getLogger(__name__)

_MODES = ('img-img', 'img-scalar')
_AFFINITY = (False, None, 'affinity', 'malis')
#: Fraction of the available memory one cube may take before it is read from its file instead.
_MEMORY_FRACTION = 0.5


class _Cube:
    """One loaded cube pair.

    Attributes:
        data: ``(z, ch, x, y)`` float32 array or :class:`~elektronn.training.cubes.DiskVolume`.
        label: ``(z, x, y)`` labels (img-img) or a 1-D array (img-scalar).
        origin: Position ``(z, x, y)`` of ``label[0, 0, 0]`` in ``data`` (img-img), else ``None``.
        info: Lazy-label masks ``(labelled, not_present)``, each of length ``n_lab``.
        name: ``'file[key]'`` of the raw data, for messages.
    """

    __slots__ = ('data', 'label', 'origin', 'info', 'info_name', 'name', 'label_name', 'label_range')

    def __init__(self, data, label, origin, name, label_name):
        self.data, self.label, self.origin = data, label, origin
        self.name, self.label_name = name, label_name
        self.info = self.info_name = None
        self.label_range = None

    @property
    def spatial_shape(self):
        sh = self.data.shape
        return (sh[0], sh[2], sh[3])


def _warn(message):
    """Warn about the user's data or settings at their call into this module (the first frame outside it)."""
    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_globals.get('__name__') == __name__:
        frame, level = frame.f_back, level + 1
    warnings.warn(message, stacklevel=level)


def _as_int_tuple(value, n, name, minimum=None):
    if value is None:
        return None
    if np.isscalar(value):
        value = (value,) * n
    if len(value) != n:
        raise ValueError('%s must have %i entries (one per dimension) or be a scalar, got %r' % (name, n, value))
    out = np.array([int(np.floor(float(v))) for v in value], dtype=np.int64)
    if minimum is not None and np.any(out < minimum):
        raise ValueError('%s must be >= %i in every dimension, got %r' % (name, minimum, value))
    return out


class CNNData(PatchSampler):
    """Patch creation and data handling for image-like training data (img-img and img-scalar).

    Args:
        patch_size: CNN input shape of one example without channels: ``(x, y)`` in 2D,
            ``(z, x, y)`` in 3D (or an int for all dimensions).
        stride: CNN output stride per dimension (same order); only needed for img-img.
        offset: CNN offset (half the field of view) per dimension; floored to ints; img-img only.
        n_dim: 2 or 3, the CNN's dimension.
        n_lab: Number of classes; ``None`` detects it from the labels (largest label + 1).
        anistropic_data: (The original's spelling.) If True, 2D patches are only cut from
            xy-slices and 3D flips never move z. ``anisotropic_data`` is accepted as well.
        mode: ``'img-img'`` (a label per output pixel) or ``'img-scalar'`` (one label per example:
            per z-slice for 2D networks, per cube for 3D ones).
        zchxy_order: The files are in ``(z, (ch,) x, y)`` order already.
        border_mode: img-scalar only: how images that are not of the patch size are treated:
            ``'crop'``, ``'keep'``, ``'mirror'``, ``'0-pad'``, ``'c-pad'`` or ``'reject'``.
        pre_process: ``None`` or ``'standardise'`` (subtract the mean, divide by the mean std).
        upright_x: 2D: only mirror y (keeps upright images upright).
        float_label: Regression targets: labels are float32 instead of int16.
        affinity: ``False``, ``'affinity'`` or ``'malis'``: 3D labels are segment ids (0 =
            background, negative = ignore) and batches carry their affinity graph (``'malis'``: and
            the relabelled segmentation), see :func:`elektronn.training.affinities.make_affinities`.
            ``n_lab`` is then the number of classes per edge, 2.
        anisotropic_data: Correctly spelt alias of ``anistropic_data``.
        seed: Seed of the random number generator (``None``: fresh entropy). See
            :meth:`~elektronn.training.patch_sampling.PatchSampler.reseed`.

    Attributes:
        n_lab, n_ch: Number of classes and input channels (known after loading data).
        warp_on: Default for :meth:`~elektronn.training.patch_sampling.PatchSampler.getbatch`'s
            ``warp_on`` (``False``, ``True`` or a fraction); change it from the console to switch
            warping on or off.
        n_successful_warp, n_failed_warp: Warps done, and warps abandoned because the enlarged
            patch did not fit into its cube (an unwarped patch is used instead).
        max_in_memory_bytes: Cubes whose float32 size exceeds this are read from their file
            patch by patch; ``None``: half the memory available when the cube is loaded.
        rng: The ``numpy.random.Generator`` behind every random choice.
        unlabelled_cubes: Accept cubes whose labels are all negative ("ignore"), e.g. for label
            propagation (``label_prop_thresh``); by default such a cube is refused (nothing to train
            on), unless its lazy-label info flags a class as not present.
    """

    unlabelled_cubes = False

    def __init__(self, patch_size=None, stride=None, offset=None, n_dim=2, n_lab=None, anistropic_data=False,
                 mode='img-img', zchxy_order=False, border_mode='crop', pre_process=None, upright_x=False,
                 float_label=False, affinity=False, anisotropic_data=None, seed=None):
        if n_dim not in (2, 3):
            raise ValueError('n_dim must be 2 or 3, got %r' % (n_dim,))
        if mode not in _MODES:
            hint = (' (vect-scalar data uses the classes in elektronn.training.traindata)'
                    if mode == 'vect-scalar' else '')
            raise ValueError('mode must be one of %s, got %r%s' % (_MODES, mode, hint))
        if border_mode not in _cubes.BORDER_MODES:
            raise ValueError('border_mode must be one of %s, got %r' % (_cubes.BORDER_MODES, border_mode))
        if pre_process not in (None, False, 'standardise'):
            raise NotImplementedError("Pre-processing %r is not implemented; use None or 'standardise'" % (pre_process,))
        if affinity not in _AFFINITY:
            raise ValueError("affinity must be False, 'affinity' or 'malis', got %r" % (affinity,))
        if affinity and (n_dim != 3 or mode != 'img-img'):
            raise ValueError('affinity=%r needs 3D img-img data (n_dim=3, mode=img-img)' % (affinity,))
        if affinity and n_lab is not None and n_lab != 2:
            raise ValueError('affinity=%r: n_lab counts the classes per edge of the affinity graph (disconnected, '
                             'connected), so it must be 2 (or None), got %r; the labels are segment ids of any value'
                             % (affinity, n_lab))
        if affinity:
            n_lab = 2
        if anisotropic_data is not None:
            if anistropic_data and not anisotropic_data:
                raise TypeError('anistropic_data=%r and anisotropic_data=%r contradict each other; give one of them'
                                % (anistropic_data, anisotropic_data))
            anistropic_data = anisotropic_data
        if patch_size is None:
            raise ValueError('patch_size is required: the CNN input size, (x, y) for 2D or (z, x, y) for 3D')
        self.n_dim = n_dim
        self.patch_size = _as_int_tuple(patch_size, n_dim, 'patch_size', minimum=1)
        self.mode = mode
        if mode == 'img-img':
            if stride is None or offset is None:
                raise ValueError('img-img data needs the CNN output stride and offset (e.g. from CNNCalculator: '
                                 'pred_stride and offset), got stride=%r, offset=%r' % (stride, offset))
            self.stride = _as_int_tuple(stride, n_dim, 'stride', minimum=1)
            self.offset = _as_int_tuple(offset, n_dim, 'offset', minimum=0)
            if np.any(self.patch_size - 2 * self.offset < 1):
                raise ValueError('patch_size %s is too small for the offset %s: the label patch (patch - 2*offset) '
                                 'would be empty' % (self.patch_size.tolist(), self.offset.tolist()))
        else:
            self.stride = None if stride is None else _as_int_tuple(stride, n_dim, 'stride', minimum=1)
            self.offset = None if offset is None else _as_int_tuple(offset, n_dim, 'offset', minimum=0)
        self.n_lab = None if n_lab is None else int(n_lab)
        self.aniso = bool(anistropic_data)
        self.zchxy_order = bool(zchxy_order)
        self.border_mode = border_mode
        self.pre_process = pre_process or None
        self.upright_x = bool(upright_x)
        self.float_label = bool(float_label)
        self.ldtype = np.float32 if float_label else np.int16
        self.affinity = affinity or False
        if n_dim == 3 and upright_x:
            _warn("the data is 3-dimensional and the 'upright_x'-flag is active, but it works only for 2d!")

        self.warp_on = False
        self.n_successful_warp = 0
        self.n_failed_warp = 0
        self.max_in_memory_bytes = None
        self.n_ch = None
        self.data_mean = None
        self.data_std = None
        self.names = []
        self.info = []
        self._train = []
        self._valid = []
        self._train_prios = []
        self._cumulative = None
        self._permutations = allowed_permutations(
            self.patch_size, self.offset if mode == 'img-img' else None,
            self.stride if mode == 'img-img' else None, anisotropic=self.aniso)
        self.reseed(seed)

    # ------------------------------------------------------------------------------------------------
    # Public state in the original's names
    # ------------------------------------------------------------------------------------------------
    train_d = property(lambda self: [c.data for c in self._train], doc='Training data cubes ``(z, ch, x, y)``.')
    train_l = property(lambda self: [c.label for c in self._train], doc='Training label cubes.')
    train_i = property(lambda self: [c.info for c in self._train], doc='Lazy-label info of the training cubes.')
    valid_d = property(lambda self: [c.data for c in self._valid], doc='Validation data cubes.')
    valid_l = property(lambda self: [c.label for c in self._valid], doc='Validation label cubes.')
    valid_i = property(lambda self: [c.info for c in self._valid], doc='Lazy-label info of the validation cubes.')

    @property
    def example_shape(self):
        """Shape of one example: ``(ch, x, y)`` (2D) or ``(z, ch, x, y)`` (3D)."""
        ps = tuple(int(p) for p in self.patch_size)
        return (self.n_ch,) + ps if self.n_dim == 2 else (ps[0], self.n_ch) + ps[1:]

    @property
    def _training_count(self):
        return len(self._train)

    @property
    def _valid_count(self):
        return len(self._valid)

    def __repr__(self):
        return ('%s-class Data Set with %s input channel(s):\n#train cubes: %i and #valid cubes: %i'
                % (self.n_lab, self.n_ch, self._training_count, self._valid_count))

    # ------------------------------------------------------------------------------------------------
    # Loading
    # ------------------------------------------------------------------------------------------------
    def addDataFromFile(self, d_path, l_path, d_files, l_files, cube_prios=None, valid_cubes=[], downsample_xy=False):
        """Load raw and label cubes from HDF5 files or Zarr stores.

        Args:
            d_path, l_path: Folders of the data and label files (``~`` is expanded).
            d_files, l_files: Lists, in the same order, of ``(file name, dataset key)``: an HDF5
                file and dataset (``('raw_0.h5', 'raw')``) or a Zarr store (v2 or v3) and array
                (``('raw_0.zarr', 'raw')``). An entry may carry a third element selecting a region,
                e.g. ``('stack.h5', 'raw', dict(z=(0, 24)))`` (``(start, stop)`` per axis among
                ``'x'``, ``'y'``, ``'z'``). A label file may hold an ``'info'`` dataset for lazy labels.
            cube_prios: Relative sampling weights of the training cubes, in ``d_files`` order (one
                per file; the entries of validation cubes are ignored) or one per training cube.
                ``None``: proportional to the label cube sizes.
            valid_cubes: Indices into the file lists of cubes used for validation only.
            downsample_xy: An int factor to down-sample data (block mean) and labels (block
                majority) in x and y, or ``False``.
        """
        d_files, l_files = list(d_files), list(l_files)
        if len(d_files) != len(l_files):
            raise ValueError('d_files and l_files must be lists of the same length (one label cube per data cube), '
                             'got %i and %i entries' % (len(d_files), len(l_files)))
        if not d_files:
            raise ValueError('d_files is empty: give at least one (file name, dataset key) pair')
        factor = self._check_downsample(downsample_xy)
        valid = self._check_valid_cubes(valid_cubes, len(d_files))
        d_path = os.path.expanduser(d_path or '')
        l_path = os.path.expanduser(l_path or '')
        loaded = []
        for i, (d_entry, l_entry) in enumerate(zip(d_files, l_files)):
            d_file, d_key, d_region = _cubes.parse_file_entry(d_entry, 'd_files', i)
            l_file, l_key, l_region = _cubes.parse_file_entry(l_entry, 'l_files', i)
            d_full, l_full = os.path.join(d_path, d_file), os.path.join(l_path, l_file)
            logger.info('Loading %s and %s', _cubes.describe(d_file, d_key), _cubes.describe(l_file, l_key))
            loaded.append(self._load_file_cube(d_full, d_key, d_region, l_full, l_key, l_region, factor))
        self.names += [tuple(e[:2]) for e in d_files]
        self._add_cubes(loaded, cube_prios, valid)

    def addDataFromNdarray(self, d_train, l_train, d_valid=[], l_valid=[], cube_prios=None):
        """Add cubes held in memory, with the same layout rules as files.

        Arrays are in the layout the files would have (``(x, y, z)``/``(ch, x, y, z)``, or
        ``(z, x, y)``/``(z, ch, x, y)`` with ``zchxy_order``); labels as in files, centred in the
        data cube. Float32 data already in the internal layout is used without a copy.

        Args:
            d_train, l_train: A data array and its label array, or lists of them.
            d_valid, l_valid: Validation arrays (optional).
            cube_prios: Sampling weights of the training cubes, or ``None`` (label sizes).
        """
        if isinstance(d_train, np.ndarray):
            d_train, l_train = [d_train], [l_train]
        if isinstance(d_valid, np.ndarray):
            d_valid, l_valid = [d_valid], [l_valid]
        d_train, l_train, d_valid, l_valid = list(d_train), list(l_train), list(d_valid), list(l_valid)
        if len(d_train) != len(l_train) or len(d_valid) != len(l_valid):
            raise ValueError('addDataFromNdarray: every data array needs a label array; got %i/%i training and %i/%i '
                             'validation arrays' % (len(d_train), len(l_train), len(d_valid), len(l_valid)))
        if not d_train and not d_valid:
            raise ValueError('addDataFromNdarray: no arrays given')
        start = len(self.names)
        names = ['directly_added_data_%i' % (start + i) for i in range(len(d_train) + len(d_valid))]
        loaded = []
        for i, (d, l) in enumerate(zip(d_train + d_valid, l_train + l_valid)):
            raw = self._raw_to_internal(np.asarray(d), names[i], copy=bool(self.pre_process))
            lab = self._labels_from_array(np.asarray(l), raw.shape, names[i] + ' (labels)')
            loaded.append(self._make_cube(raw, lab, names[i], names[i] + ' (labels)', None, 1))
        self.names += names
        self._add_cubes(loaded, cube_prios, set(range(len(d_train), len(d_train) + len(d_valid))))

    def _check_downsample(self, downsample_xy):
        if downsample_xy is False or downsample_xy is None or downsample_xy == 1:
            return 1
        if isinstance(downsample_xy, bool) or int(downsample_xy) != downsample_xy or downsample_xy < 1:
            raise ValueError('downsample_xy must be False or an integer factor >= 1, got %r' % (downsample_xy,))
        return int(downsample_xy)

    @staticmethod
    def _check_valid_cubes(valid_cubes, n):
        valid = set()
        for v in (valid_cubes or []):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= v < n:
                raise ValueError('valid_cubes must hold indices into the file lists (0..%i), got %r'
                                 % (n - 1, valid_cubes))
            valid.add(int(v))
        return valid

    def _memory_limit(self):
        if self.max_in_memory_bytes is not None:
            return self.max_in_memory_bytes
        avail = _cubes.available_memory()
        return float('inf') if avail is None else _MEMORY_FRACTION * avail

    def _load_file_cube(self, d_full, d_key, d_region, l_full, l_key, l_region, factor):
        """Read one raw/label pair from its files or stores (into memory, or as on-disk volumes when too large)."""
        d_name, l_name = _cubes.describe(d_full, d_key), _cubes.describe(l_full, l_key)
        d_file, d_ds = _cubes.open_cube(d_full, d_key, 'data')
        try:
            l_file, l_ds = _cubes.open_cube(l_full, l_key, 'label')
        except BaseException:
            d_file.close()
            raise
        try:
            self._check_raw_ndim(d_ds.ndim, d_ds.shape, d_name)
            d_sl = _cubes.file_slices(d_ds.ndim, self.zchxy_order, d_region, d_ds.shape, d_name)
            l_sl = _cubes.file_slices(l_ds.ndim, self.zchxy_order, l_region, l_ds.shape, l_name) if l_ds.size else ()
            # from here on the cube is the region: cubes of one dataset must not share a name (a warning
            # about the second would look like a repeat of the first, which Python shows only once)
            d_name, l_name = _cubes.describe(d_full, d_key, d_region), _cubes.describe(l_full, l_key, l_region)
            raw_shape = _cubes.internal_raw_shape(
                [len(range(*s.indices(n))) for s, n in zip(d_sl, d_ds.shape)], self.zchxy_order)
            info = label_checks.read_lazy_info(l_file, l_full)
            on_disk = (self.mode == 'img-img' and l_ds.size and l_ds.ndim == 3 and
                       np.prod(raw_shape) * 4 / factor ** 2 > self._memory_limit())
            if on_disk:
                cube = self._disk_cube(d_full, d_key, d_region, l_full, l_key, l_region, raw_shape, factor,
                                       d_name, l_name)
            else:
                raw = self._raw_to_internal(d_ds[d_sl], d_name, copy=False)
                lab = self._labels_from_array(l_ds[l_sl] if l_ds.size else np.zeros((0,)), raw.shape, l_name)
                cube = self._make_cube(raw, lab, d_name, l_name, None, factor)
        finally:
            d_file.close()
            l_file.close()
        cube.info, cube.info_name = info, _cubes.describe(l_full, 'info')
        return cube

    def _check_raw_ndim(self, ndim, shape, name):
        if ndim not in (3, 4):
            layout = '(z, x, y) or (z, ch, x, y)' if self.zchxy_order else '(x, y, z) or (ch, x, y, z)'
            raise ValueError('%s: raw data must be %s, got shape %s%s'
                             % (name, layout, tuple(shape),
                                '' if self.zchxy_order else ' (set zchxy_order=True if it is in (z, (ch,) x, y) order)'))

    def _raw_to_internal(self, arr, name, copy):
        """Raw data in file layout -> float32 ``(z, ch, x, y)``, integers divided by 255."""
        self._check_raw_ndim(arr.ndim, arr.shape, name)
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
            raise TypeError('%s: raw data must be numeric, got dtype %s' % (name, arr.dtype))
        integer = _cubes.is_integer_raw(arr.dtype)
        _cubes.check_finite(arr, name)
        if integer and arr.dtype.itemsize > 1 and arr.size and arr.max() > 255:
            _warn('%s holds integers above 255 (dtype %s) but integer raw data is divided by 255; store it as uint8 '
                  'or as float in [0, 1]' % (name, arr.dtype))
        view = _cubes.to_internal_raw(arr, self.zchxy_order)
        if not integer and arr.dtype == np.float32 and not copy and view.flags.c_contiguous:
            return view
        out = np.ascontiguousarray(view, dtype=np.float32)
        if integer:
            out /= np.float32(255)
        return out

    def _labels_from_array(self, arr, raw_shape, name):
        """Labels in file layout -> internal layout (still in their file dtype, checked later)."""
        if arr.size == 0:
            logger.info('Note: %s is empty: all labels of its cube are 0 (as documented)', name)
            if self.mode == 'img-img':
                return np.broadcast_to(np.zeros((), dtype=self.ldtype), (raw_shape[0],) + tuple(raw_shape[2:]))
            return np.zeros(raw_shape[0] if self.n_dim == 2 else 1, dtype=self.ldtype)
        if self.mode == 'img-img':
            if arr.ndim != 3:
                layout = '(z, x, y)' if self.zchxy_order else '(x, y, z)'
                raise ValueError('%s: img-img labels must be a %s volume, got shape %s' % (name, layout, arr.shape))
            return _cubes.to_internal_label(arr, self.zchxy_order)
        arr = np.asarray(arr).reshape(-1) if arr.ndim == 0 else arr
        if arr.ndim != 1:
            raise ValueError('%s: img-scalar labels must be 1-D (one label per %s), got shape %s'
                             % (name, 'z-slice' if self.n_dim == 2 else 'cube', arr.shape))
        want = raw_shape[0] if self.n_dim == 2 else 1
        if arr.shape[0] != want:
            raise ValueError('%s: %i img-scalar label(s) for a raw cube of %i z-slice(s); a 2D CNN needs one label per '
                             'z-slice, a 3D CNN one label per cube' % (name, arr.shape[0], raw_shape[0]))
        return arr

    def _registration(self, raw_spatial, label_shape, d_name, l_name):
        """Position of the centred label cube in the raw cube (``(z, x, y)``)."""
        diff = np.array(raw_spatial) - np.array(label_shape)
        if np.any(diff % 2):
            raise ValueError('%s has the spatial shape %s (z, x, y) and its labels %s the shape %s: the label cube must '
                             'lie centred in the raw cube, so raw minus label size must be even on every axis, but it '
                             'is %s; crop or pad one of them (or check zchxy_order)'
                             % (d_name, tuple(raw_spatial), l_name, tuple(label_shape), tuple(diff.tolist())))
        return diff // 2

    def _make_cube(self, raw, lab, d_name, l_name, origin, factor):
        """Register, down-sample and convert an in-memory raw/label pair."""
        raw_spatial = (raw.shape[0],) + raw.shape[2:]
        if self.mode == 'img-img':
            origin = self._registration(raw_spatial, lab.shape, d_name, l_name) if origin is None else origin
        label_range = label_checks.label_range([lab], l_name, self.float_label)
        lab = self._convert_labels(lab, label_range, l_name)
        if factor > 1:
            if self.mode == 'img-img':
                raw_start, label_start, origin = _cubes.downsample_plan(origin, factor)
                raw = _cubes.crop_for_downsampling(raw, raw_start[1], raw_start[2], factor)
                lab = _cubes.crop_for_downsampling(lab, label_start[1], label_start[2], factor)
                lab = _cubes.downsample_labels_xy(np.ascontiguousarray(lab), factor, self.float_label)
            else:
                raw = _cubes.crop_for_downsampling(raw, 0, 0, factor)
            raw = _cubes.downsample_raw_xy(raw, factor)
        return self._finish_cube(raw, lab, origin, d_name, l_name, label_range)

    def _disk_cube(self, d_full, d_key, d_region, l_full, l_key, l_region, raw_shape, factor, d_name, l_name):
        """A cube too large for the memory: raw data and labels stay in their files."""
        lab_probe = _cubes.DiskVolume(l_full, l_key, 'label', self.zchxy_order, l_region, self.ldtype)
        raw_spatial = (raw_shape[0],) + tuple(raw_shape[2:])
        origin = self._registration(raw_spatial, lab_probe.shape, d_name, l_name)
        raw_ds = lab_ds = None
        if factor > 1:
            raw_start, label_start, origin = _cubes.downsample_plan(origin, factor)
            raw_ds, lab_ds = (factor, raw_start[1], raw_start[2]), (factor, label_start[1], label_start[2])
        raw = _cubes.DiskVolume(d_full, d_key, 'raw', self.zchxy_order, d_region, np.float32, raw_ds)
        lab = _cubes.DiskVolume(l_full, l_key, 'label', self.zchxy_order, l_region, self.ldtype, lab_ds,
                                float_label=self.float_label)
        lab_probe.close()
        logger.info('%s is read from its file patch by patch: as float32 it needs %.2f GB, more than the in-memory '
                    'limit of %.2f GB (max_in_memory_bytes)', d_name, raw.nbytes / 1e9, self._memory_limit() / 1e9)
        range_probe = _cubes.DiskVolume(l_full, l_key, 'label', self.zchxy_order, l_region, lab.file_dtype)
        label_range = label_checks.label_range(range_probe.slabs(), l_name, self.float_label)
        range_probe.close()
        label_checks.check_label_cast(label_range, l_name, self.ldtype, self.float_label)
        return self._finish_cube(raw, lab, origin, d_name, l_name, label_range)

    def _finish_cube(self, raw, lab, origin, d_name, l_name, label_range):
        cube = _Cube(raw, lab, None if origin is None else np.asarray(origin, dtype=np.int64), d_name, l_name)
        cube.label_range = label_range
        n_ch = raw.shape[1]
        if self.n_ch is not None and n_ch != self.n_ch:
            raise ValueError('%s has %i channel(s) but the cubes loaded before have %i; all cubes need the same channels'
                             % (d_name, n_ch, self.n_ch))
        if self.n_ch is None and n_ch > 1:
            logger.info('Data has %i channels', n_ch)
        self.n_ch = n_ch
        logger.info('Internal data.shape=%s, label.shape=%s', tuple(raw.shape), tuple(lab.shape))
        if self.mode == 'img-img':
            self._report_unusable_labels(cube)
        logger.info('---')
        return cube

    # ------------------------------------------------------------------------------------------------
    # Labels (the checks: elektronn.training.label_checks)
    # ------------------------------------------------------------------------------------------------
    def _convert_labels(self, lab, label_range, name):
        label_checks.check_label_cast(label_range, name, self.ldtype, self.float_label)
        if 0 in lab.strides:  # all-zero labels of an empty label dataset: a broadcast view, keep it
            return lab.astype(self.ldtype, copy=False)
        return np.ascontiguousarray(lab, dtype=self.ldtype)

    def _check_classes(self, cubes):
        """Detect ``n_lab`` or check every label against it; attach the lazy-label masks."""
        self.n_lab = label_checks.count_classes(cubes, self.n_lab, self.float_label, self.affinity)
        if not self.float_label and not self.unlabelled_cubes:
            label_checks.check_labelled(cubes)
        label_checks.attach_lazy_info(cubes, self.n_lab)

    def _report_unusable_labels(self, cube):
        """Warn when the CNN offset leaves labelled voxels near the raw cube's border out of training."""
        off = self._offset3
        L = np.array(cube.label.shape)
        cut = np.maximum(0, off - cube.origin)
        cut_right = np.maximum(0, (cube.origin + L + off) - np.array(cube.spatial_shape))
        if np.any(cut) or np.any(cut_right):
            _warn('the CNN offset is so large that labels are cut off!\nOn each side of the cube %s (z, x, y); the '
                  'network cannot predict them from %s' % (np.maximum(cut, cut_right).tolist(), cube.name))

    @property
    def _offset3(self):
        """The network offset over the internal spatial axes ``(z, x, y)`` (0 in z for 2D)."""
        if self.offset is None:
            return np.zeros(3, np.int64)
        return self.offset if self.n_dim == 3 else np.concatenate(([0], self.offset))

    # ------------------------------------------------------------------------------------------------
    # Distributing cubes
    # ------------------------------------------------------------------------------------------------
    def _add_cubes(self, cubes, cube_prios, valid):
        if self.mode == 'img-scalar':
            for c in cubes:
                c.data = _cubes.border_treatment(c.data, self.patch_size, self.border_mode, self.n_dim, c.name)
        self._standardise(cubes)
        self._check_classes(cubes)
        for c in cubes:
            if not self._placements(c, self.patch_size):
                raise ValueError(self._too_small_message(c))
        train = [c for k, c in enumerate(cubes) if k not in valid]
        prios = self._check_prios(cube_prios, cubes, valid, train)
        self.info += [c.info for c in cubes]
        self._train += train
        self._valid += [c for k, c in enumerate(cubes) if k in valid]
        self._train_prios += prios
        if self._train:
            p = np.asarray(self._train_prios, dtype=np.float64)
            if p.sum() <= 0:
                raise ValueError('cube_prios: the training cubes have priorities %s; at least one must be positive'
                                 % p.tolist())
            self._cumulative = np.cumsum(p / p.sum())
        logger.info('%r', self)
        logger.info('')

    def _check_prios(self, cube_prios, cubes, valid, train):
        if cube_prios is None or len(cube_prios) == 0:
            return [float(c.label.size) for c in train]
        cube_prios = list(cube_prios)
        if len(cube_prios) == len(cubes):
            prios = [cube_prios[k] for k in range(len(cubes)) if k not in valid]
        elif len(cube_prios) == len(train):
            prios = cube_prios
        else:
            raise ValueError('cube_prios must have one entry per file in d_files (%i) or per training cube (%i), '
                             'got %i: %r' % (len(cubes), len(train), len(cube_prios), cube_prios))
        for p in prios:
            if isinstance(p, bool) or not np.isfinite(float(p)) or p < 0:
                raise ValueError('cube_prios must be non-negative numbers, got %r' % (cube_prios,))
        return [float(p) for p in prios]

    def _standardise(self, cubes):
        if self.pre_process != 'standardise':
            return
        if self.data_mean is None:
            means, stds = [], []
            for c in cubes:
                m, s = _moments(c.data)
                means.append(m)
                stds.append(s)
            self.data_mean, self.data_std = float(np.mean(means)), float(np.mean(stds))
            if not self.data_std > 0:
                raise ValueError("pre_process='standardise': the data %s is constant (std 0)"
                                 % [c.name for c in cubes])
            logger.info('Data is standardised. Original mean: %.g, original std %.g', self.data_mean, self.data_std)
        M, S = np.float32(self.data_mean), np.float32(self.data_std)
        for c in cubes:
            if isinstance(c.data, _cubes.DiskVolume):
                c.data.mean, c.data.std = self.data_mean, self.data_std
            else:
                c.data -= M
                c.data /= S

    def close(self):
        """Close the files and stores of cubes that are read from disk."""
        for c in self._train + self._valid:
            for arr in (c.data, c.label):
                if isinstance(arr, _cubes.DiskVolume):
                    arr.close()


def _moments(data):
    """Mean and standard deviation of a cube (in memory or on disk), in float64."""
    if isinstance(data, _cubes.DiskVolume):
        n, s, ss = 0, 0.0, 0.0
        for slab in data.slabs():
            n += slab.size
            s += float(slab.sum(dtype=np.float64))
            ss += float(np.square(slab, dtype=np.float64).sum())
        mean = s / n
        return mean, float(np.sqrt(max(ss / n - mean ** 2, 0.0)))
    return float(data.mean(dtype=np.float64)), float(data.std(dtype=np.float64))
