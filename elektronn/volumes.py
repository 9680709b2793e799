"""One volume layer for every reader and writer: HDF5 datasets and Zarr arrays, opened from ``PATH:KEY``.

Training cubes (:class:`~elektronn.training.image_data.CNNData`), ``elektronn-predict`` and every
block-wise tool read and write volumes through this module, so a Zarr store works wherever an HDF5
file does: ``('cube.zarr', 'raw')`` in a training config, ``vol.zarr:raw`` on the command line.

* A *spec* ``PATH:KEY`` names a file or store and a dataset in it. ``.h5``, ``.hdf5`` and ``.hdf``
  are HDF5 (h5py), ``.zarr`` is Zarr (``zarr`` >= 3, reading format v2 and v3 stores); a path
  with another suffix is recognised by its content when it exists. The key is an HDF5 dataset
  path or a Zarr array path (``vol.zarr:raw``, ``vol.zarr:volumes/raw/s0``); ``vol.zarr/raw``
  works as well. An OME-Zarr image group as the key (``out.zarr:prob``) stands for its first
  (full-resolution) scale.
* :func:`open_container` opens the file or store, :meth:`Container.volume` an array in it as a
  :class:`Volume` (shape, dtype, chunks, attributes, region reads and writes, voxel size) and
  :meth:`Container.create_volume` makes one. New Zarr arrays are chunked as asked and compressed
  (Blosc zstd); with ``ome_axes`` they are written as an OME-Zarr (NGFF 0.4) image: a group
  ``KEY`` with ``multiscales`` metadata and the array ``KEY/0``, which napari and neuroglancer
  open as it is. New Zarr stores are written in format v2 (as NGFF 0.4 requires).
* Every error is a :class:`VolumeError` naming the file and key and what would fix it.
"""
import json
import os

import numpy as np

from elektronn import ome_zarr
from elektronn.ome_zarr import OME_VERSION

__all__ = ['VolumeError', 'Container', 'Volume', 'parse_spec', 'storage_format', 'open_container', 'open_volume',
           'describe', 'same_file', 'open_pair', 'close_pair', 'HDF5_SUFFIXES', 'ZARR_SUFFIXES', 'OME_VERSION']

#: File suffixes read as HDF5 files.
HDF5_SUFFIXES = ('.h5', '.hdf5', '.hdf')
#: Suffixes read as Zarr stores (other paths are recognised by their content if they exist).
ZARR_SUFFIXES = ('.zarr',)
#: Compression of new Zarr arrays: Blosc with zstd (fast, about as small as gzip on EM data).
_ZARR_COMPRESSION = dict(cname='zstd', clevel=3)
#: Attribute names under which HDF5 and Zarr files of the field store the voxel size.
_VOXEL_SIZE_ATTRS = ('voxel_size', 'resolution', 'element_size_um', 'pixel_size')


class VolumeError(Exception):
    """A volume cannot be opened, created, read or written as asked; the message names file, key and fix."""


def describe(path, key):
    """``'path:key'``, the way volumes are named in messages (``path`` alone for a root array)."""
    return '%s:%s' % (path, key) if key else str(path)


def _split_zarr_path(text):
    """``('vol.zarr', 'raw/s0')`` for ``'vol.zarr/raw/s0'``; ``None`` without a ``.zarr/`` inside."""
    marker = text.find('.zarr/')
    if marker < 0:
        return None
    return text[:marker + 5], text[marker + 6:].strip('/') or None


def parse_spec(text, what='input', default_key=None):
    """Split a spec ``'PATH:KEY'`` (or ``'vol.zarr/KEY'``) into ``(path, key)``; ``~`` is expanded.

    Args:
        text: The spec.
        what: What it is, for messages (``'input'``, ``'output'``).
        default_key: The key when none is given. ``None``: an HDF5 path needs a key, a Zarr path
            without one names the store's root array (or root OME-Zarr image).

    Returns:
        ``(path, key)``; ``key`` is ``None`` for the root of a Zarr store.

    Raises:
        VolumeError: an HDF5 path without a key and no default.
    """
    text = str(text)
    path, sep, key = text.rpartition(':')
    if not sep or not path:
        path, key = text, None
    if key is None:
        inner = _split_zarr_path(text)
        if inner is not None:
            path, key = inner
    path = os.path.expanduser(path)
    key = (key or '').strip('/') or None
    if key is None:
        key = default_key
    if key is None and storage_format(path, must_exist=False) == 'hdf5':
        raise VolumeError('%s %r: give the HDF5 file and the dataset as file.h5:key' % (what, text))
    return path, key


def storage_format(path, must_exist=True, what='input'):
    """``'hdf5'`` or ``'zarr'`` for ``path``: by its suffix, else (if it exists) by its content.

    Raises:
        VolumeError: an unknown suffix of a path that does not exist, or one that is neither.
    """
    lower = str(path).lower().rstrip('/')
    if lower.endswith(HDF5_SUFFIXES):
        return 'hdf5'
    if lower.endswith(ZARR_SUFFIXES):
        return 'zarr'
    if os.path.isdir(path) and any(os.path.exists(os.path.join(path, m))
                                   for m in ('.zgroup', '.zarray', 'zarr.json')):
        return 'zarr'
    if os.path.isfile(path):
        import h5py
        if h5py.is_hdf5(path):
            return 'hdf5'
    if os.path.exists(path):
        raise VolumeError('%s %s is neither an HDF5 file nor a Zarr store; give a .h5/.hdf5 file or a .zarr store'
                          % (what, path))
    if must_exist:
        raise VolumeError('%s %s does not exist' % (what, path))
    raise VolumeError('%s %s: unsupported suffix %r; name HDF5 files .h5 or .hdf5 and Zarr stores .zarr'
                      % (what, path, os.path.splitext(lower)[1] or '(none)'))


def open_container(path, mode='r', what='input'):
    """Open an HDF5 file or a Zarr store.

    Args:
        path: The file or store.
        mode: ``'r'`` (read only; the path must exist) or ``'a'`` (read and write; created if
            it does not exist).
        what: What it is, for messages.

    Returns:
        A :class:`Container` (a context manager).
    """
    if mode not in ('r', 'a'):
        raise ValueError("mode must be 'r' or 'a', got %r" % (mode,))
    path = os.path.expanduser(str(path))
    fmt = storage_format(path, must_exist=mode == 'r', what=what)
    if mode == 'r' and not os.path.exists(path):
        raise VolumeError('%s %s %s does not exist' % (what, 'file' if fmt == 'hdf5' else 'store', path))
    return (_HDF5Container if fmt == 'hdf5' else _ZarrContainer)(path, mode, what)


def open_volume(spec_or_path, key=None, mode='r', what='input'):
    """Open one volume: ``open_volume('vol.zarr:raw')`` or ``open_volume('vol.h5', 'raw')``.

    The returned :class:`Volume` keeps its container open; close it with :meth:`Volume.close`
    (or use it as a context manager).
    """
    if key is None:
        path, key = parse_spec(spec_or_path, what)
    else:
        path = os.path.expanduser(str(spec_or_path))
    container = open_container(path, mode, what)
    try:
        vol = container.volume(key)
    except BaseException:
        container.close()
        raise
    vol._owns_container = True
    return vol


def same_file(path_a, path_b):
    """Whether both paths exist and are the same file or store."""
    return os.path.exists(path_a) and os.path.exists(path_b) and os.path.samefile(path_a, path_b)


def open_pair(input_path, output_path):
    """The containers of an input (read) and an output (write); one, opened for writing, when they are the
    same file (HDF5 allows one open mode per file and process)."""
    if same_file(input_path, output_path):
        both = open_container(output_path, 'a', 'output')
        return both, both
    fin = open_container(input_path, 'r', 'input')
    try:
        fout = open_container(output_path, 'a', 'output')
    except BaseException:
        fin.close()
        raise
    return fin, fout


def close_pair(fin, fout):
    """Close what :func:`open_pair` opened."""
    fin.close()
    if fout is not fin:
        fout.close()


class Container:
    """An open HDF5 file or Zarr store: look up, create and delete its arrays.

    Not made directly: see :func:`open_container`.
    """
    format = None

    def __init__(self, path, mode, what):
        self.path, self.mode, self.what = path, mode, what
        self.read_only = mode == 'r'

    # -- to be provided by the backends -------------------------------------------------------------
    def _node(self, key):
        """``('array' | 'group', node)`` at ``key`` (``None``: the root), or ``(None, None)``."""
        raise NotImplementedError

    def _create_array(self, key, shape, dtype, chunks, fill_value, allocate, dimension_names):
        raise NotImplementedError

    def _delete(self, key):
        raise NotImplementedError

    def _attrs(self, node):
        raise NotImplementedError

    def _set_attrs(self, node, attrs):
        raise NotImplementedError

    def _require_group(self, key):
        raise NotImplementedError

    def array_names(self, limit=20):
        """Paths of (up to ``limit``) arrays in the container, for messages."""
        raise NotImplementedError

    def flush(self):
        """Push written data to the file or store."""

    def close(self):
        """Close the file (nothing to do for a Zarr store)."""

    # -- shared ---------------------------------------------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __contains__(self, key):
        return self._node(key)[0] is not None

    def kind(self, key):
        """``'array'``, ``'group'`` or ``None`` (nothing at ``key``)."""
        return self._node(key)[0]

    def volume(self, key):
        """The array at ``key`` as a :class:`Volume` (an OME-Zarr image group: its first scale).

        Raises:
            VolumeError: nothing at ``key``, or a group that is no OME-Zarr image.
        """
        name = describe(self.path, key)
        kind, node = self._node(key)
        if kind is None:
            names = self.array_names()
            raise VolumeError('%s %s has no dataset %r (it has: %s)'
                              % (self.what, self.path, key, ', '.join(names) or 'no datasets'))
        if kind == 'group':
            scale0 = ome_zarr.first_scale_path(self._attrs(node))
            if scale0 is None or self.kind(_join(key, scale0)) != 'array':
                names = self._group_arrays(key)
                raise VolumeError('%s %s is a group, not a dataset (its datasets: %s); give the key of an array'
                                  % (self.what, name, ', '.join(names) or 'none'))
            vol = self.volume(_join(key, scale0))
            vol.image_key, vol.name = key, name
            vol._ome = ome_zarr.scale_transform(self._attrs(node), 0)
            return vol
        return Volume(self, key, node)

    def _group_arrays(self, key):
        prefix = (key.strip('/') + '/') if key else ''
        return [n[len(prefix):] for n in self.array_names(limit=10 ** 6) if n.startswith(prefix)][:20]

    def create_volume(self, key, shape, dtype, chunks=None, fill_value=0, attrs=None, ome_axes=None,
                      voxel_size=None, translation=None, allocate=False):
        """Create an array (replacing nothing: the key must be free).

        Args:
            key: Its path in the container.
            shape, dtype, chunks: As NumPy / h5py / zarr (``chunks=None``: HDF5 contiguous, Zarr
                one chunk).
            fill_value: Value of voxels never written.
            attrs: Attributes (JSON-serialisable values).
            ome_axes: For Zarr: ``[(name, type), ...]`` per axis (types ``'channel'``,
                ``'space'``, ...) to write an OME-Zarr image (see the module docstring); ignored
                for HDF5.
            voxel_size: Physical size per axis (``None``: 1) and ``translation`` (the position of
                voxel 0) for the OME-Zarr metadata; ``voxel_size`` may also be ``(values, unit)``.
            allocate: HDF5: allocate every chunk now, so that later writes change the chunks'
                bytes and no file metadata (a killed writer then cannot corrupt the file).

        Returns:
            The new :class:`Volume`.
        """
        self._check_writable(key)
        name = describe(self.path, key)
        if key in self:
            raise VolumeError('%s %s already exists' % (self.what, name))
        shape = tuple(int(s) for s in shape)
        chunks = None if chunks is None else tuple(max(1, min(int(c), s)) for c, s in zip(chunks, shape))
        array_key = key
        try:
            if ome_axes is not None and self.format == 'zarr':
                if len(ome_axes) != len(shape):
                    raise ValueError('ome_axes has %i entries for an array of %i dimensions'
                                     % (len(ome_axes), len(shape)))
                array_key = _join(key, '0')
                group = self._require_group(key)
                self._set_attrs(group, ome_zarr.image_attrs(ome_axes, voxel_size, translation, key.split('/')[-1],
                                                        self.zarr_format))
            node = self._create_array(array_key, shape, np.dtype(dtype), chunks, fill_value, allocate,
                                      None if ome_axes is None else [a[0] for a in ome_axes])
            if attrs:
                self._set_attrs(node, attrs)
        except PermissionError as e:
            raise VolumeError('cannot write %s %s: %s; choose a writable location' % (self.what, name, e)) from None
        except OSError as e:
            raise VolumeError('cannot create %s %s: %s' % (self.what, name, e)) from None
        vol = Volume(self, array_key, node)
        if array_key != key:
            vol.image_key, vol.name = key, name
            vol._ome = ome_zarr.scale_transform(self._attrs(group), 0)
        return vol

    def require_volume(self, key, shape, dtype, **kwargs):
        """The array at ``key`` if it has ``shape`` and ``dtype``, else a new one (see :meth:`create_volume`).

        Raises:
            VolumeError: an array is there with another shape or dtype.
        """
        if key not in self:
            return self.create_volume(key, shape, dtype, **kwargs)
        vol = self.volume(key)
        if vol.shape != tuple(shape) or vol.dtype != np.dtype(dtype):
            raise VolumeError('%s %s has the shape %s and dtype %s, but shape %s and dtype %s are needed; remove it '
                              'or choose another key' % (self.what, vol.name, vol.shape, vol.dtype, tuple(shape),
                                                          np.dtype(dtype)))
        return vol

    def delete(self, key):
        """Remove the array or group at ``key`` (nothing if there is none)."""
        self._check_writable(key)
        if key in self:
            self._delete(key)

    def _check_writable(self, key):
        if self.read_only:
            raise VolumeError('%s is open read-only; cannot write %s' % (self.path, describe(self.path, key)))

    def __repr__(self):
        return '%s(%r, mode=%r)' % (type(self).__name__, self.path, self.mode)


def _join(key, sub):
    return sub if not key else '%s/%s' % (key.strip('/'), sub)


class _HDF5Container(Container):
    format = 'hdf5'

    def __init__(self, path, mode, what):
        super().__init__(path, mode, what)
        import h5py
        self._h5py = h5py
        try:
            self.file = h5py.File(path, mode)
        except FileNotFoundError:
            raise VolumeError('%s file %s does not exist' % (what, path)) from None
        except PermissionError as e:
            raise VolumeError('%s file %s cannot be opened for %s: %s' % (
                what, path, 'reading' if mode == 'r' else 'writing', e)) from None
        except OSError as e:
            raise VolumeError('%s file %s cannot be opened as HDF5: %s' % (what, path, e)) from None

    def _node(self, key):
        if not key:
            return 'group', self.file
        try:
            node = self.file.get(key)
        except (KeyError, ValueError):
            node = None
        if node is None:
            return None, None
        return ('array' if isinstance(node, self._h5py.Dataset) else 'group'), node

    def _attrs(self, node):
        return node.attrs

    def _set_attrs(self, node, attrs):
        for k, v in attrs.items():
            node.attrs[k] = v if not isinstance(v, (dict, list)) or _is_flat_list(v) else json.dumps(v)

    def _require_group(self, key):
        return self.file.require_group(key)

    def _create_array(self, key, shape, dtype, chunks, fill_value, allocate, dimension_names):
        h5py = self._h5py
        dcpl = None
        if allocate:
            dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
            dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
        dset = self.file.create_dataset(key, shape=shape, dtype=dtype, chunks=chunks, track_times=False, dcpl=dcpl,
                                        fillvalue=fill_value)
        if allocate and fill_value is not None:
            # early allocation may reuse the space of a removed dataset without clearing it
            dset[...] = fill_value
        return dset

    def _delete(self, key):
        del self.file[key]

    def array_names(self, limit=20):
        names = []
        self.file.visititems(lambda n, obj: names.append(n) if isinstance(obj, self._h5py.Dataset) else None)
        return names[:limit]

    def flush(self):
        if not self.read_only:
            self.file.flush()

    def close(self):
        self.file.close()


class _ZarrContainer(Container):
    format = 'zarr'

    def __init__(self, path, mode, what):
        super().__init__(path, mode, what)
        try:
            import zarr
        except ImportError:
            raise VolumeError('%s %s is a Zarr store, which needs the package zarr >= 3 (Python >= 3.11): '
                              'pip install "zarr>=3"' % (what, path)) from None
        self._zarr = zarr
        if os.path.exists(path) and not os.path.isdir(path):
            raise VolumeError('%s %s is a file, not a Zarr store (a folder)' % (what, path))
        try:
            if mode == 'r':
                self.root = zarr.open(path, mode='r')
            else:
                exists = os.path.isdir(path) and os.listdir(path)
                self.root = zarr.open(path, mode='a') if exists else zarr.open_group(path, mode='a', zarr_format=2)
        except FileNotFoundError:
            if os.path.isdir(path):
                raise VolumeError('%s %s holds no Zarr metadata (.zgroup, .zarray or zarr.json): it is no Zarr store, '
                                  'or an empty one' % (what, path)) from None
            raise VolumeError('%s %s does not exist' % (what, path)) from None
        except PermissionError as e:
            raise VolumeError('%s %s cannot be opened for writing: %s; choose a writable location'
                              % (what, path, e)) from None
        except Exception as e:  # zarr reports unreadable metadata in many types
            raise VolumeError('%s %s cannot be opened as a Zarr store: %s: %s' % (what, path, type(e).__name__, e)) \
                from None
        self.zarr_format = self.root.metadata.zarr_format

    def _is_array(self, node):
        return isinstance(node, self._zarr.Array)

    def _node(self, key):
        if not key:
            return ('array' if self._is_array(self.root) else 'group'), self.root
        if self._is_array(self.root):
            return None, None
        try:
            node = self.root[key]
        except (KeyError, FileNotFoundError, ValueError):
            return None, None
        return ('array' if self._is_array(node) else 'group'), node

    def _attrs(self, node):
        return node.attrs

    def _set_attrs(self, node, attrs):
        node.attrs.update({k: _plain(v) for k, v in attrs.items()})

    def _require_group(self, key):
        if self._is_array(self.root):
            raise VolumeError('%s %s is a single array; it cannot hold %r' % (self.what, self.path, key))
        return self.root.require_group(key)

    def _create_array(self, key, shape, dtype, chunks, fill_value, allocate, dimension_names):
        import numcodecs
        if self._is_array(self.root):
            raise VolumeError('%s %s is a single array; it cannot hold %r' % (self.what, self.path, key))
        shuffle = numcodecs.Blosc.BITSHUFFLE if dtype.itemsize == 1 else numcodecs.Blosc.SHUFFLE
        kwargs = dict(shape=shape, dtype=dtype, chunks=chunks or shape, fill_value=fill_value)
        if self.zarr_format == 2:
            kwargs.update(compressors=numcodecs.Blosc(shuffle=shuffle, **_ZARR_COMPRESSION),
                          chunk_key_encoding={'name': 'v2', 'separator': '/'})
        else:
            from zarr.codecs import BloscCodec
            kwargs.update(compressors=BloscCodec(shuffle='bitshuffle' if dtype.itemsize == 1 else 'shuffle',
                                                 **_ZARR_COMPRESSION), dimension_names=dimension_names)
        return self.root.create_array(key, **kwargs)

    def _delete(self, key):
        del self.root[key]

    def array_names(self, limit=20):
        if self._is_array(self.root):
            return []
        names = []
        stack = [('', self.root)]
        while stack and len(names) < limit:
            prefix, group = stack.pop()
            for name, node in sorted(group.members(), key=lambda m: m[0]):
                if self._is_array(node):
                    names.append(prefix + name)
                else:
                    stack.append((prefix + name + '/', node))
        return sorted(names)[:limit]


def _is_flat_list(value):
    return isinstance(value, list) and all(isinstance(v, (int, float, str)) for v in value)


def _plain(value):
    """JSON-compatible Python values (NumPy scalars and arrays converted)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


class Volume:
    """One array of a :class:`Container`: shape, dtype, chunks, attributes and region reads/writes.

    Indexing works as on a NumPy array with basic slices (``vol[0:10, :, 5:9]``); reads return
    NumPy arrays. Not made directly: see :func:`open_volume` and :class:`Container`.

    Attributes:
        name: ``'path:key'`` for messages.
        image_key: The OME-Zarr image group this array is the first scale of, or ``None``.
    """

    def __init__(self, container, key, node):
        self.container, self.key, self._node = container, key, node
        self.path = container.path
        self.name = describe(container.path, key)
        self.image_key = None
        self._ome = None
        self._owns_container = False

    shape = property(lambda self: tuple(int(s) for s in self._node.shape), doc='The array shape.')
    dtype = property(lambda self: np.dtype(self._node.dtype), doc='The NumPy dtype.')
    ndim = property(lambda self: len(self.shape), doc='The number of axes.')
    size = property(lambda self: int(np.prod(self.shape)), doc='The number of elements.')
    format = property(lambda self: self.container.format, doc="``'hdf5'`` or ``'zarr'``.")

    @property
    def chunks(self):
        """The chunk shape, or ``None`` for a contiguous HDF5 dataset."""
        chunks = self._node.chunks
        return None if chunks is None else tuple(int(c) for c in chunks)

    @property
    def attrs(self):
        """The array's attributes (a mutable mapping; JSON values)."""
        return self._node.attrs

    def set_attrs(self, **attrs):
        """Set attributes (lists and dicts as JSON where the format needs it)."""
        self.container._check_writable(self.key)
        self.container._set_attrs(self._node, attrs)

    def __getitem__(self, index):
        try:
            return np.asarray(self._node[index])
        except (OSError, RuntimeError) as e:
            raise VolumeError('cannot read %s%s: %s' % (self.name, _where(index), e)) from None

    def __setitem__(self, index, value):
        if self.container.read_only:
            raise VolumeError('%s is open read-only; open it for writing to change it' % self.name)
        try:
            self._node[index] = value
        except PermissionError as e:
            raise VolumeError('cannot write %s: %s; choose a writable location' % (self.name, e)) from None
        except OSError as e:
            raise VolumeError('cannot write %s%s: %s' % (self.name, _where(index), e)) from None

    def read(self, index=Ellipsis):
        """``self[index]`` as a NumPy array (the whole array by default)."""
        return self[index]

    def flush(self):
        """Push written data to the file or store (before recording that it is there)."""
        self.container.flush()

    def close(self):
        """Close the container if this volume opened it (:func:`open_volume`)."""
        if self._owns_container:
            self.container.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def voxel_size(self):
        """The physical voxel size recorded with the array, or ``None``.

        Read from the OME-Zarr metadata of the image the array belongs to, or from an attribute
        ``voxel_size``, ``resolution``, ``element_size_um`` or ``pixel_size``.

        Returns:
            ``(sizes, unit)``: ``sizes`` a tuple of floats, one per array axis (OME-Zarr; 1.0 for
            non-spatial axes) or as many as the attribute holds (in the array's axis order);
            ``unit`` a string or ``None``.
        """
        if self._ome is not None and self._ome[0] is not None:
            return tuple(self._ome[0]), self._ome[2]
        for name in _VOXEL_SIZE_ATTRS:
            if name in self.attrs:
                try:
                    values = tuple(float(v) for v in np.atleast_1d(np.asarray(self.attrs[name], dtype=float)))
                except (TypeError, ValueError):
                    continue
                unit = 'micrometer' if name == 'element_size_um' else self.attrs.get('unit')
                return values, (str(unit) if unit is not None else None)
        return None

    def translation(self):
        """The physical position of voxel 0 recorded in the OME-Zarr metadata (one value per axis), or ``None``."""
        if self._ome is not None and self._ome[1] is not None:
            return tuple(float(t) for t in self._ome[1])
        return None

    def __repr__(self):
        return 'Volume(%s, shape=%s, dtype=%s, chunks=%s)' % (self.name, self.shape, self.dtype, self.chunks)


def _where(index):
    return ' at %s' % (index,) if index not in ((), Ellipsis) else ''
