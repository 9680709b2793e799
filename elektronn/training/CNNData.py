"""``CNNData``: training patches cut from image cubes (HDF5 or Zarr), for img-img and img-scalar CNNs.

The data class of the original's image pipeline. It loads pairs of raw and label cubes
(:meth:`CNNData.addDataFromFile`, see :mod:`elektronn.training.cubes` for the file contract) and
makes batches (:meth:`CNNData.getbatch`): it picks a cube, cuts a patch at a random position
(optionally warped), mirrors and transposes it, distorts its grey values, and returns data and
labels in the layouts the network takes.

Layouts of a batch (``ps`` the patch size, ``off`` the network offset, ``s`` its output stride):

==========  ==========================  ====================================================
network     data                        labels (img-img; img-scalar: ``(bs,)``)
==========  ==========================  ====================================================
2D          ``(bs, ch, x, y)`` float32  ``(bs, x', y')``, ``x' = x - 2*off_x`` [``::s_x``]
3D          ``(bs, z, ch, x, y)``       ``(bs, z', x', y')``
==========  ==========================  ====================================================

Labels are int16 class indices (negative = ignore) or float32 regression targets.
"""
import os

import numpy as np

from elektronn.training import cubes as _cubes
from elektronn.training.affinities import make_affinities
from elektronn.training.augmentation import allowed_permutations, grey_augment, random_flip

__all__ = ['CNNData', 'plotTrainingTarget']

_MODES = ('img-img', 'img-scalar')
_AFFINITY = (False, None, 'affinity', 'malis')
#: A patch with too many ignore labels is re-cut at most this often before it is judged.
_MAX_RECUTS = 10
#: So many patches in a row discarded by the ignore threshold means no patch can pass it.
_MAX_DISCARDS = 1000
#: Fraction of the available memory one cube may take before it is read from its file instead.
_MEMORY_FRACTION = 0.5

#: 2D patches: slice axis -> the two in-plane axes (internal spatial axes z=0, x=1, y=2).
#: Cutting across x or y (isotropic data) gives the planes (y, z) and (z, x), the original's orders.
_PLANES = {0: (1, 2), 1: (2, 0), 2: (0, 1)}
#: Array axis of each spatial axis in the internal data layout (z, ch, x, y).
_DATA_AXES = (0, 2, 3)


class _PatchDoesNotFit(Exception):
    """A (warp-enlarged) patch is larger than the labelled region of the cube."""


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


def _ignored_fraction(label):
    label = np.asarray(label)
    if label.size == 0:
        return 0.0
    return np.count_nonzero(label < 0) / float(label.size)


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


class CNNData:
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
        seed: Seed of the random number generator (``None``: fresh entropy). See :meth:`reseed`.

    Attributes:
        n_lab, n_ch: Number of classes and input channels (known after loading data).
        warp_on: Default for :meth:`getbatch`'s ``warp_on`` (``False``, ``True`` or a fraction);
            change it from the console to switch warping on or off.
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
            print("Warning: the data is 3-dimensional and the 'upright_x'-flag is active, but it works only for 2d!")

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
    # Randomness
    # ------------------------------------------------------------------------------------------------
    def reseed(self, seed=None):
        """Start a new random stream: ``self.rng = numpy.random.default_rng(seed)``.

        Worker processes call this with a seed of their own. A process that uses the object
        without reseeding (e.g. after a plain ``fork``) gets a fresh stream automatically at its
        first batch, as in the original.
        """
        self.rng = np.random.default_rng(seed)
        self._pid = os.getpid()

    def _check_pid(self):
        if os.getpid() != self._pid:
            self.reseed(None)
            print('Reseeding RNG in Process with PID:', self._pid)

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
            print('Loading %s and %s' % (_cubes.describe(d_file, d_key), _cubes.describe(l_file, l_key)))
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
            raw_shape = _cubes.internal_raw_shape(
                [len(range(*s.indices(n))) for s, n in zip(d_sl, d_ds.shape)], self.zchxy_order)
            info = self._read_info(l_file, l_full)
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
            print('Warning: %s holds integers above 255 (dtype %s) but integer raw data is divided by 255; store it '
                  'as uint8 or as float in [0, 1]' % (name, arr.dtype))
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
            print('Note: %s is empty: all labels of its cube are 0 (as documented)' % name)
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
        label_range = self._label_range(lab, l_name)
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
        print('%s is read from its file patch by patch: as float32 it needs %.2f GB, more than the in-memory '
              'limit of %.2f GB (max_in_memory_bytes)' % (d_name, raw.nbytes / 1e9, self._memory_limit() / 1e9))
        range_probe = _cubes.DiskVolume(l_full, l_key, 'label', self.zchxy_order, l_region, lab.file_dtype)
        label_range = self._label_range_of_slabs(range_probe.slabs(), l_name)
        range_probe.close()
        self._check_label_cast(label_range, l_name)
        return self._finish_cube(raw, lab, origin, d_name, l_name, label_range)

    def _finish_cube(self, raw, lab, origin, d_name, l_name, label_range):
        cube = _Cube(raw, lab, None if origin is None else np.asarray(origin, dtype=np.int64), d_name, l_name)
        cube.label_range = label_range
        n_ch = raw.shape[1]
        if self.n_ch is not None and n_ch != self.n_ch:
            raise ValueError('%s has %i channel(s) but the cubes loaded before have %i; all cubes need the same channels'
                             % (d_name, n_ch, self.n_ch))
        if self.n_ch is None and n_ch > 1:
            print('Data has %i channels' % n_ch)
        self.n_ch = n_ch
        print('Internal data.shape=%s, label.shape=%s' % (tuple(raw.shape), tuple(lab.shape)))
        if self.mode == 'img-img':
            self._report_unusable_labels(cube)
        print('---')
        return cube

    # ------------------------------------------------------------------------------------------------
    # Labels
    # ------------------------------------------------------------------------------------------------
    def _label_range(self, lab, name):
        """``(min, max)`` of the labels (``None`` for empty ones); checks class labels are whole numbers."""
        if lab.size == 0:
            return None
        return self._label_range_of_slabs([lab], name)

    def _label_range_of_slabs(self, slabs, name):
        lo, hi = np.inf, -np.inf
        for slab in slabs:
            if slab.size == 0:
                continue
            if self.float_label:
                _cubes.check_finite(slab, name, what='regression targets')
            elif np.issubdtype(slab.dtype, np.floating):
                if not np.all(np.isfinite(slab)) or np.any(np.mod(slab, 1) != 0):
                    raise ValueError('%s: class labels must be whole numbers, but the float labels have fractional or '
                                     'non-finite values; use integer labels, or target=regression (float_label=True)'
                                     % name)
            lo, hi = min(lo, float(slab.min())), max(hi, float(slab.max()))
        return None if lo > hi else (lo, hi)

    def _check_label_cast(self, label_range, name):
        if label_range is None or self.float_label:
            return
        info = np.iinfo(self.ldtype)
        for v in label_range:
            if v > info.max or v < info.min:
                raise ValueError('Loading of data: labels must be cast to %s, but %s cannot store value %g from %s '
                                 '(allowed %i..%i). You may try to renumber labels.'
                                 % (np.dtype(self.ldtype).name, np.dtype(self.ldtype).name, v, name, info.min, info.max))

    def _convert_labels(self, lab, label_range, name):
        self._check_label_cast(label_range, name)
        if 0 in lab.strides:  # all-zero labels of an empty label dataset: a broadcast view, keep it
            return lab.astype(self.ldtype, copy=False)
        return np.ascontiguousarray(lab, dtype=self.ldtype)

    def _read_info(self, l_file, l_full):
        """The lazy-label ``'info'`` dataset of a label file or store: ``(labelled, not_present)`` masks, or ``None``.

        Args:
            l_file: The label file's open :class:`~elektronn.volumes.Container`.
            l_full: Its path, for messages.
        """
        if 'info' not in l_file:
            return None
        info = l_file.volume('info').read()
        if info.ndim != 2 or info.shape[0] != 2:
            raise ValueError('%s: the lazy-label dataset must be a pair of masks of shape (2, n_lab), got shape %s'
                             % (_cubes.describe(l_full, 'info'), info.shape))
        return info

    def _check_classes(self, cubes):
        """Detect ``n_lab`` or check every label against it; attach the lazy-label masks."""
        if self.float_label or self.affinity:  # regression targets and segment ids are not classes
            if self.n_lab is None:
                self.n_lab = 1
        else:
            highest = max([c.label_range[1] for c in cubes if c.label_range is not None] or [-1])
            if self.n_lab is None:
                if highest < 0:
                    raise ValueError('Cannot detect n_lab: the label cubes %s hold no class labels (all are negative, '
                                     'i.e. ignored); set n_lab' % [c.label_name for c in cubes])
                self.n_lab = int(highest) + 1
            for c in cubes:
                if c.label_range is not None and c.label_range[1] >= self.n_lab:
                    raise ValueError('%s holds label %g, outside 0..%i for n_lab=%i (negative labels mean "ignore"); '
                                     'renumber the labels or raise n_lab'
                                     % (c.label_name, c.label_range[1], self.n_lab - 1, self.n_lab))
        if not self.float_label and not self.unlabelled_cubes:
            for c in cubes:
                not_present = c.info is not None and np.any(np.asarray(c.info)[1])  # lazy labels: down-votes
                if (c.label_range is None or c.label_range[1] < 0) and not not_present:
                    raise ValueError('%s: every label is negative ("ignore"), so the cube has nothing to train or '
                                     'validate on; label some voxels (classes 0..n_lab-1) or leave the cube out (for '
                                     'label propagation on unlabelled cubes set unlabelled_cubes = True)'
                                     % c.label_name)
        for c in cubes:
            if c.info is None:
                c.info = (np.ones(self.n_lab, np.int16), np.zeros(self.n_lab, np.int16))
            else:
                if c.info.shape != (2, self.n_lab):
                    raise ValueError('%s: the lazy-label info must have shape (2, n_lab) = (2, %i), got %s'
                                     % (c.info_name, self.n_lab, c.info.shape))
                c.info = (c.info[0].astype(np.int16), c.info[1].astype(np.int16))

    def _report_unusable_labels(self, cube):
        """Warn when the CNN offset leaves labelled voxels near the raw cube's border out of training."""
        off = self._offset3
        L = np.array(cube.label.shape)
        cut = np.maximum(0, off - cube.origin)
        cut_right = np.maximum(0, (cube.origin + L + off) - np.array(cube.spatial_shape))
        if np.any(cut) or np.any(cut_right):
            print('Warning: the CNN offset is so large that labels are cut off!\nOn each side of the cube %s (z, x, y); '
                  'the network cannot predict them from %s' % (np.maximum(cut, cut_right).tolist(), cube.name))

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
        print(self.__repr__())
        print()

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
            print('Data is standardised. Original mean: %.g, original std %.g' % (self.data_mean, self.data_std))
        M, S = np.float32(self.data_mean), np.float32(self.data_std)
        for c in cubes:
            if isinstance(c.data, _cubes.DiskVolume):
                c.data.mean, c.data.std = self.data_mean, self.data_std
            else:
                c.data -= M
                c.data /= S

    # ------------------------------------------------------------------------------------------------
    # Batches
    # ------------------------------------------------------------------------------------------------
    def _allocBatch(self, batch_size):
        ps = [int(p) for p in self.patch_size]
        if self.n_dim == 2:
            images = np.zeros((batch_size, self.n_ch, ps[0], ps[1]), dtype=np.float32)
        else:
            images = np.zeros((batch_size, ps[0], self.n_ch, ps[1], ps[2]), dtype=np.float32)
        if self.mode == 'img-img':
            label = np.zeros((batch_size,) + tuple(int(v) for v in self.patch_size - 2 * self.offset), dtype=self.ldtype)
        else:
            label = np.zeros((batch_size,), dtype=self.ldtype)
        return images, label

    def getbatch(self, batch_size=1, source='train', strided=True, flip=True, grey_augment_channels=[],
                 ret_info=False, warp_on=None, ignore_thresh=0.0, ret_example_weights=False):
        """Make a batch of randomly placed, augmented patches.

        Args:
            batch_size: Number of examples.
            source: ``'train'`` or ``'valid'``. Training cubes are drawn by their priorities,
                validation cubes uniformly.
            strided: Sub-sample the labels by the CNN's output stride (for networks without MFP).
            flip: Random mirroring and transposition of the spatial axes (z stays z for
                anisotropic data; axes of different patch size are never swapped).
            grey_augment_channels: Channels whose grey values are randomly distorted (training
                batches only).
            ret_info: Also return the lazy-label masks ``info1, info2`` of shape ``(bs, n_lab)``.
            warp_on: ``True`` to warp every patch, a fraction in (0, 1) to warp that share, ``False``
                never; ``None`` uses :attr:`warp_on`.
            ignore_thresh: A patch whose share of negative (ignore) labels exceeds this is re-cut
                (up to 10 times) and then discarded unless its cube has "not present" flags.
                0 disables this.
            ret_example_weights: Also return per-label weights derived from the last input channel
                (a previous prediction), see :meth:`getExampleWeights`.

        Returns:
            ``(data, label[, seg][, info1, info2][, example_weights])``; ``label`` is the affinity
            graph ``(bs, 3, z, x, y)`` for ``affinity`` data, and ``seg`` the relabelled
            segmentation for ``'malis'``.
        """
        self._check_pid()
        if not self._train and not self._valid:
            raise RuntimeError('CNNData has no data yet: call addDataFromFile or addDataFromNdarray first')
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError('batch_size must be a positive integer, got %r' % (batch_size,))
        cubes = self._source_cubes(source)
        channels = self._check_channels(grey_augment_channels)
        warp = self._warp_fraction(self.warp_on if warp_on is None else warp_on)
        thresh = float(ignore_thresh or 0.0)
        self._check_batch_memory(batch_size)
        images, label = self._allocBatch(batch_size)
        infos = []
        n, discarded = 0, 0
        while n < batch_size:
            cube = self._getcube(source, cubes)
            d, l = self._warpAugment(cube, warp, thresh)
            if thresh and not np.any(cube.info[1]) and _ignored_fraction(l) > thresh:
                discarded += 1
                if discarded > _MAX_DISCARDS:
                    raise RuntimeError('%i patches in a row had more than ignore_thresh=%g ignore labels (< 0) and were '
                                       'discarded; lower example_ignore_threshold or label more voxels'
                                       % (_MAX_DISCARDS, thresh))
                continue
            discarded = 0
            if flip:
                d, l_flipped = random_flip(d, l if self.mode == 'img-img' else None, self.rng, self._permutations,
                                           self.upright_x)
                if self.mode == 'img-img':
                    l = l_flipped
            images[n] = d
            if source == 'train' and channels:
                grey_augment(images[n], channels, self.rng)
            label[n] = l
            infos.append(cube.info)
            n += 1

        weights = self.getExampleWeights(images, label, strided=strided) if ret_example_weights else None
        if strided and self.mode == 'img-img':
            label = np.ascontiguousarray(self._stridedLabels(label))
        ret = [images, label]
        if self.affinity:
            aff, seg = make_affinities(label, size_thresh=1)
            ret = [images, aff, seg] if self.affinity == 'malis' else [images, aff]
        if ret_info:
            ret += [np.array([i[0] for i in infos], dtype=np.int16), np.array([i[1] for i in infos], dtype=np.int16)]
        if ret_example_weights:
            ret.append(weights)
        return tuple(ret)

    def _check_batch_memory(self, batch_size):
        """Refuse a batch larger than the available memory with a message naming batch_size (instead of
        NumPy's allocation error from deep inside)."""
        per_example = int(np.prod(self.example_shape)) * 4
        if self.mode == 'img-img':
            per_example += int(np.prod(self.patch_size - 2 * self.offset)) * np.dtype(self.ldtype).itemsize
        need = float(batch_size) * per_example
        avail = _cubes.available_memory()
        if avail is not None and need > avail:
            raise ValueError('batch_size=%i: a batch of %i patches of shape %s needs %.3g GB, more than the %.3g GB '
                             'of memory available; lower batch_size (or monitor_batch_size)'
                             % (batch_size, batch_size, tuple(self.example_shape), need / 1e9, avail / 1e9))

    def _source_cubes(self, source):
        if source == 'train':
            if not self._train:
                raise ValueError("No training cubes: every cube is a validation cube (valid_cubes)")
            return self._train
        if source == 'valid':
            if not self._valid:
                raise ValueError("No validation cubes (valid_cubes is empty): source='valid' has no data")
            return self._valid
        raise ValueError("Unknown data source %r: use 'train' or 'valid'" % (source,))

    def _check_channels(self, channels):
        channels = list(channels or [])
        for ch in channels:
            if isinstance(ch, bool) or not isinstance(ch, (int, np.integer)) or not 0 <= ch < self.n_ch:
                raise ValueError('grey_augment_channels=%r: channel indices must lie in 0..%i for data with %i channel(s)'
                                 % (channels, self.n_ch - 1, self.n_ch))
        return channels

    @staticmethod
    def _warp_fraction(warp_on):
        if warp_on is True:
            return 1.0
        if warp_on is False or warp_on is None:
            return 0.0
        if isinstance(warp_on, (int, float, np.integer, np.floating)) and 0 <= warp_on <= 1:
            return float(warp_on)
        raise ValueError('warp_on must be True, False or a fraction in [0, 1], got %r' % (warp_on,))

    def _getcube(self, source, cubes):
        """Draw a cube: by the sampling priorities for training, uniformly for validation."""
        if source == 'train':
            i = int(np.searchsorted(self._cumulative, self.rng.random(), side='right'))
            return cubes[min(i, len(cubes) - 1)]
        return cubes[int(self.rng.integers(len(cubes)))]

    def _warpAugment(self, cube, warp, thresh):
        """Cut a patch from ``cube``; warp it with probability ``warp`` (falling back when too large)."""
        do_warp = warp >= 1.0 or (warp > 0 and self.rng.random() < warp)
        if not do_warp:
            return self._cutPatch(cube, self.patch_size, thresh)
        warping = _warping_module()
        ps = tuple(int(p) for p in self.patch_size)
        rot, shear, scale, stretch, twist = warping.draw_warp_params(ps, amount=1.0, rng=self.rng)
        ext = warping.required_patch_size(ps, rot, shear, scale, stretch, twist)
        try:
            d, l = self._cutPatch(cube, np.asarray(ext, dtype=np.int64), thresh)
        except _PatchDoesNotFit:
            self.n_failed_warp += 1
            return self._cutPatch(cube, self.patch_size, thresh)
        lab = l if self.mode == 'img-img' else None
        if self.n_dim == 2:
            d, lab = warping.warp2dJoint(d, lab, ps, rot, shear, scale, stretch)
        else:
            d, lab = warping.warp3dJoint(d, lab, ps, rot, shear, scale, stretch, twist)
        self.n_successful_warp += 1
        return d, (lab if self.mode == 'img-img' else l)

    def _placements(self, cube, ps):
        """Ways to place a patch of size ``ps`` in ``cube``: ``(slice_axis, size, offset, low, high)``.

        ``size``/``offset`` are over the spatial axes ``(z, x, y)``; the start position may be
        any of ``low..high`` (inclusive) per axis. A 3D patch has one placement (slice axis
        ``None``); a 2D patch one per usable slice direction (only z-slices for anisotropic data
        and img-scalar).
        """
        off = self.offset if self.mode == 'img-img' else np.zeros(self.n_dim, np.int64)
        if self.n_dim == 3:
            candidates = [(None, [int(v) for v in ps], [int(v) for v in off])]
        else:
            axes = (0,) if (self.aniso or self.mode == 'img-scalar') else (0, 1, 2)
            candidates = []
            for sa in axes:
                size, o = [1, 1, 1], [0, 0, 0]
                for k, ax in enumerate(_PLANES[sa]):
                    size[ax], o[ax] = int(ps[k]), int(off[k])
                candidates.append((sa, size, o))
        out = []
        D = cube.spatial_shape
        for sa, size, o in candidates:
            low, high = [], []
            for a in range(3):
                lo_a, hi_a = 0, D[a] - size[a]
                if cube.origin is not None:
                    g, L = int(cube.origin[a]), cube.label.shape[a]
                    lo_a, hi_a = max(lo_a, g - o[a]), min(hi_a, g + L + o[a] - size[a])
                low.append(lo_a)
                high.append(hi_a)
            if all(h >= lo for lo, h in zip(low, high)):
                out.append((sa, size, o, low, high))
        return out

    def _too_small_message(self, cube):
        if cube.origin is not None:
            L = np.array(cube.label.shape)
            usable = np.minimum(np.array(cube.spatial_shape), L + 2 * self._offset3)
            region = 'its labelled region plus the CNN offset spans %s' % (tuple(usable.tolist()),)
        else:
            region = 'its extent is %s' % (tuple(cube.spatial_shape),)
        patch = '%s %s' % (tuple(self.patch_size.tolist()), '(z, x, y)' if self.n_dim == 3 else '(x, y)')
        slices = ' (anisotropic: xy-slices only)' if self.n_dim == 2 and self.aniso else ''
        return ('%s (z, x, y) shape %s: the patch size %s does not fit; %s (z, x, y)%s. Use a smaller desired_input '
                'or larger cubes' % (cube.name, tuple(cube.spatial_shape), patch, region, slices))

    def _cutPatch(self, cube, ps, thresh=0.0):
        """Cut a patch of size ``ps`` at a random position; re-cut (up to 10 times) while more than
        ``thresh`` of its labels are negative.

        Returns:
            ``(data, label)`` views into the cube (or arrays read from its file). Labels are the
            offset-reduced ``ps - 2*offset`` patch (img-img) or the scalar label (img-scalar).

        Raises:
            _PatchDoesNotFit: The patch is larger than what the cube offers.
        """
        options = self._placements(cube, ps)
        if not options:
            raise _PatchDoesNotFit()
        for attempt in range(_MAX_RECUTS + 1):
            choice = options[int(self.rng.integers(len(options)))] if len(options) > 1 else options[0]
            d, l = self._cut_at(cube, *choice)
            if not thresh or _ignored_fraction(l) <= thresh:
                break
        return d, l

    def _cut_at(self, cube, slice_axis, size, off, low, high):
        s = self.rng.integers(np.asarray(low), np.asarray(high) + 1)
        d = cube.data[s[0]:s[0] + size[0], :, s[1]:s[1] + size[1], s[2]:s[2] + size[2]]
        if cube.origin is not None:
            a = s + np.asarray(off) - cube.origin
            b = s + np.asarray(size) - np.asarray(off) - cube.origin
            l = cube.label[a[0]:b[0], a[1]:b[1], a[2]:b[2]]
        else:
            l = cube.label[s[0]] if self.n_dim == 2 else cube.label[0]
        if slice_axis is not None:
            p0, p1 = _PLANES[slice_axis]
            d = d.transpose(_DATA_AXES[slice_axis], 1, _DATA_AXES[p0], _DATA_AXES[p1])[0]
            if cube.origin is not None:
                l = l.transpose(slice_axis, p0, p1)[0]
        return d, l

    def _stridedLabels(self, lab):
        """Labels ``(bs, [z,] x, y)`` sub-sampled by the CNN output stride."""
        index = (slice(None),) + tuple(slice(None, None, int(s)) for s in self.stride)
        return lab[index]

    def getExampleWeights(self, raw_rec, lab, gain=2.0, blurr=False, strided=True):
        """Per-label weights from the last input channel, a previous prediction of the labels.

        Misses (label above the prediction by more than 0.05) and clutter (below by more than 0.1)
        get ``1 + gain * excess``, everything else 1.

        Args:
            raw_rec: A data batch whose last channel is the previous prediction.
            lab: The (unstrided) label batch.
            gain: Weight per unit of excess.
            blurr: Not implemented.
            strided: Sub-sample the weights like strided labels.

        Returns:
            float32 weights of the shape of the (strided) labels.
        """
        if blurr:
            raise NotImplementedError('getExampleWeights(blurr=True) is not implemented')
        if self.mode != 'img-img':
            raise ValueError('example weights need img-img data')
        pred = raw_rec[:, :, -1] if self.n_dim == 3 else raw_rec[:, -1]
        index = (slice(None),) + tuple(slice(int(o), n - int(o)) for o, n in zip(self.offset, pred.shape[1:]))
        pred = pred[index]
        if strided:
            lab, pred = self._stridedLabels(lab), self._stridedLabels(pred)
        diff = lab.astype(np.float32) - pred
        weights = np.ones(lab.shape, dtype=np.float32)
        weights += (diff < -0.1) * gain * (-diff - 0.1)
        weights += (diff > 0.05) * gain * (diff - 0.05)
        return weights.astype(np.float32)

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


def _warping_module():
    try:
        from elektronn.training import warping
    except ImportError as e:
        raise RuntimeError('warp_on needs elektronn.training.warping, which cannot be imported (%s); '
                           'set warp_on=False' % e) from e
    return warping



def plotTrainingTarget(img, lab, stride=1, savename='training_target.png'):
    """Plot a training example as the original's ``plotTrainingTarget``: data | label | overlay.

    ``img`` and ``lab`` are 2D arrays (one slice of a batch). The label is repeated ``stride`` times
    along both axes (the output stride of the net) and zero-padded, centred, to the image size; the
    overlay is ``0.75*img + 0.25*(1-lab)``. The figure is written to ``savename``, which is returned.
    """
    from elektronn.training.plotting import plot_panels
    img = np.asarray(img, dtype=np.float32)
    lab = np.asarray(lab, dtype=np.float32)
    if img.ndim != 2 or lab.ndim != 2:
        raise ValueError('plotTrainingTarget: img and lab must be 2D arrays, got shapes %s and %s'
                         % (img.shape, lab.shape))
    stride = int(stride)
    if stride > 1:
        lab = np.repeat(np.repeat(lab, stride, axis=0), stride, axis=1)
    full = np.zeros(img.shape, dtype=np.float32)
    src, dst = [], []
    for i, l in zip(img.shape, lab.shape):
        off = abs(i - l) // 2
        n = min(i, l)
        src.append(slice(off, off + n) if l > i else slice(0, n))
        dst.append(slice(off, off + n) if i > l else slice(0, n))
    full[tuple(dst)] = lab[tuple(src)]
    lab = full
    return plot_panels((('data', img), ('label', lab), ('overlay', 0.75 * img + 0.25 * (1 - lab))), savename)
