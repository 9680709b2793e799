"""Small helpers shared by ``elektronn.net`` and ``elektronn.training``.

Besides the file-writing helpers, the original's utilities of ``elektronn.training.trainutils``
live here: :func:`h5Save`/:func:`h5Load` (HDF5 datasets), :func:`pickleSave`/:func:`pickleLoad`
(sequential pickle records; loading admits NumPy arrays and plain containers only), :func:`timeit`
and :func:`import_variable_from_file`.
"""
import contextlib
import functools
import gzip
import hashlib
import importlib.util
import io
import os
import pickle
import re
import sys
import tempfile
import time

from elektronn import log

# Files made with mkstemp are private (0600); give the finished file the mode a plain open() would.
_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK


def pprinttime(t):
    """Format a duration in seconds as the original did: ``t=2.1h``, ``t=12m`` or ``t=42s``."""
    if t > 4000:
        return 't=%.1fh' % (t / 3600.0)
    if t > 300:
        return 't=%.0fm' % (t / 60.0)
    return 't=%.0fs' % t


@contextlib.contextmanager
def atomic_write(path, mode='wb'):
    """Open a temporary file next to ``path`` and move it onto ``path`` only when the block succeeds.

    A crash or an exception inside the block leaves an existing ``path`` untouched, so a file
    that a user depends on (parameters, histories, configs) is never half-written. The data are on
    the disk before the rename, and the rename is before returning (see ``_durable_replace``).

    Yields:
        The open file object (``mode`` is ``'wb'`` or ``'w'``).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', suffix='.tmp', dir=folder)
    try:
        os.chmod(tmp, _FILE_MODE)
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        _durable_replace(tmp, path, synced=True)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        _raise_naming(e, path)
        raise


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; on success move it onto ``path``.

    For writers that want a file name rather than a file object (h5py, ``np.save``,
    matplotlib's ``savefig``). The temporary name keeps the extension of ``path`` so that
    format detection by extension still works.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    base, ext = os.path.splitext(os.path.basename(path))
    fd, tmp = tempfile.mkstemp(prefix='.' + base + '.', suffix='.tmp' + ext, dir=folder)
    os.close(fd)
    try:
        os.chmod(tmp, _FILE_MODE)
        yield tmp
        _durable_replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        _raise_naming(e, path)
        raise


def available_cores():
    """CPU cores this process may use (its affinity mask, e.g. a cluster job's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


_TEMPORARY = re.compile(r'^\..+\.[a-z0-9_]{8}\.tmp(\.[^.]+)?$')


def remove_stale_temporaries(folder):
    """Remove the temporary files that writers of :func:`atomic_write`/:func:`atomic_path` killed mid-write
    left in ``folder`` (call it only where no such writer runs). Returns their names."""
    removed = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if _TEMPORARY.match(name) and os.path.isfile(os.path.join(folder, name)):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(folder, name))
                removed.append(name)
    return removed


def _raise_naming(error, path):
    """Re-raise a file-system error of a write to ``path`` so that it names ``path`` (not the temporary file)."""
    if isinstance(error, OSError) and path not in str(error):
        reason = error.strerror or str(error)
        raise OSError(error.errno, 'cannot write %s: %s' % (path, reason)) if error.errno \
            else OSError('cannot write %s: %s' % (path, reason)) from error


def _fsync_path(path, directory=False):
    fd = os.open(path, os.O_RDONLY | (getattr(os, 'O_DIRECTORY', 0) if directory else 0))
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot sync a directory; the rename itself is atomic
        if not directory:
            raise
    finally:
        os.close(fd)


def _durable_replace(tmp, path, synced=False):
    """Move the finished ``tmp`` onto ``path`` so that a power cut leaves the old or the new file, whole.

    The file's data reach the disk before the rename (else a journalling file system may commit the
    rename first and leave an empty file), and the folder's entry after it.
    """
    if not synced:
        _fsync_path(tmp)
    os.replace(tmp, path)
    _fsync_path(os.path.dirname(os.path.abspath(path)), directory=True)


def _clock(seconds):
    seconds = int(round(seconds))
    return '%d:%02d:%02d' % (seconds // 3600, seconds // 60 % 60, seconds % 60)


class ProgressBar:
    """Progress of long work with rate and ETA.

    On a terminal one line is rewritten in place (at most every ``interval`` seconds, default
    0.25); otherwise (a log file, a pipe) a complete line is printed at most every ``interval``
    seconds (default 10) and at the end. The rate and the ETA count the work units
    (e.g. voxels) done since the bar started.

    Args:
        total: Number of steps (e.g. blocks).
        work: Work units of all steps (``None``: the steps are the work units).
        what: Text in front of the bar.
        step_name, work_name: Names of the steps and of the work units (``'Mvoxel'`` style
            prefixes are added to the work rate automatically).
        stream: Output stream (default ``sys.stdout`` at the time of each write).
        interval: Seconds between updates (see above).
        done: Steps already done before this session (shown, not counted in the rate).
    """

    width = 24

    def __init__(self, total, work=None, what='', step_name='steps', work_name='', stream=None, interval=None,
                 done=0):
        self._time = time.monotonic
        self.total, self.what, self.step_name, self.work_name = int(total), what, step_name, work_name
        self.work_total = float(total if work is None else work)
        self.stream = stream
        self.tty = bool(getattr(self._out(), 'isatty', lambda: False)())
        self.interval = (0.25 if self.tty else 10.0) if interval is None else float(interval)
        self.t0 = self._time()
        self.last = -float('inf')
        self.steps = int(done)
        self.start_steps = int(done)
        self.show_step_rate = work is not None  # with work units, the steps' rate is shown too
        self.work_done = 0.0
        self._shown = 0  # length of the line on the terminal

    def _out(self):
        return self.stream if self.stream is not None else sys.stdout

    def update(self, steps=1, work=None):
        """Count ``steps`` more steps (``work`` units; default: ``steps``) and show the bar if due."""
        self.steps += steps
        self.work_done += steps if work is None else work
        now = self._time()
        if self.steps >= self.total or now - self.last >= self.interval:
            self.last = now
            self._show(now)

    def line(self, now=None):
        """The current progress line."""
        now = self._time() if now is None else now
        elapsed = max(now - self.t0, 1e-9)
        rate = self.work_done / elapsed
        remaining = max(self.work_total - self.work_done, 0.0)
        eta = _clock(remaining / rate) if rate > 0 else '?'
        fraction = self.steps / self.total if self.total else 1.0
        filled = int(round(fraction * self.width))
        step_rate = ' | %.2f %s/s' % ((self.steps - self.start_steps) / elapsed, self.step_name) \
            if self.show_step_rate else ''
        return '%s%5.1f%% [%s%s] %i/%i %s%s | %s/s | elapsed %s | ETA %s' % (
            self.what + ' ' if self.what else '', 100 * fraction, '#' * filled, '.' * (self.width - filled),
            self.steps, self.total, self.step_name, step_rate, _si(rate, self.work_name), _clock(elapsed), eta)

    def _show(self, now):
        if not log.shows():
            return  # the log level hides INFO (progress is INFO)
        out = self._out()
        if self.tty:
            text = self.line(now)
            out.write('\r' + text.ljust(self._shown) + ('\n' if self.steps >= self.total else ''))
            self._shown = len(text)
        else:
            out.write(self.line(now) + '\n')
        out.flush()

    def close(self):
        """End the line on a terminal (after an interruption the bar is left where it stopped)."""
        if self.tty and self.steps < self.total and log.shows():
            self._out().write('\n')
            self._out().flush()


def _si(value, unit):
    for factor, prefix in ((1e9, 'G'), (1e6, 'M'), (1e3, 'k')):
        if value >= factor:
            return '%.2f %s%s' % (value / factor, prefix, unit)
    return '%.2f %s' % (value, unit) if unit else '%.2f' % value


# ---------------------------------------------------------------------------------------------------
# The original's trainutils helpers
# ---------------------------------------------------------------------------------------------------
def h5Save(data, file_name, keys=None, compress=True):
    """Write one array, or a list/tuple of arrays, to a new HDF5 file (atomically).

    Args:
        data: An array, or a list/tuple of arrays.
        file_name: The file to (over)write.
        keys: The dataset name (one array) or names (a list, one per array). ``None``: ``'data'``
            for one array, ``'data0'``, ``'data1'``, ... for several.
        compress: lzf compression (good for label arrays).
    """
    import h5py
    import numpy as np
    several = isinstance(data, (list, tuple))
    arrays = list(data) if several else [data]
    if keys is None:
        keys = ['data%i' % i for i in range(len(arrays))] if several else ['data']
    elif isinstance(keys, str):
        keys = [keys]
    keys = list(keys)
    if len(keys) != len(arrays):
        raise ValueError('h5Save: %i arrays but %i keys %s' % (len(arrays), len(keys), keys))
    with atomic_path(file_name) as tmp:
        with h5py.File(tmp, 'w') as f:
            for key, arr in zip(keys, arrays):
                f.create_dataset(key, data=np.asarray(arr), compression='lzf' if compress else None)


def h5Load(file_name, keys=None):
    """Read datasets from an HDF5 file.

    Args:
        file_name: The file.
        keys: A dataset name, or a list of them (read in that order); ``None``: every dataset at the
            root of the file (in the file's key order).

    Returns:
        One array when one dataset is read, else a list of arrays.
    """
    import h5py
    try:
        f = h5py.File(file_name, 'r')
    except OSError as e:
        raise OSError('Could not open h5-File %s: %s' % (file_name, e)) from None
    with f:
        if keys is None:
            keys = [k for k in f.keys() if isinstance(f[k], h5py.Dataset)]
        elif isinstance(keys, str):
            keys = [keys]
        missing = [k for k in keys if k not in f]
        if missing:
            raise KeyError('%s has no dataset(s) %s (it has %s)' % (file_name, missing, list(f.keys())))
        ret = [f[k][()] for k in keys]
    return ret[0] if len(ret) == 1 else ret


def pickleSave(data, file_name):
    """Write ``data`` as pickle records (protocol 2, which the original could read): every element
    of a list or tuple as a record of its own, anything else as one record (atomically)."""
    records = data if isinstance(data, (list, tuple)) else [data]
    with atomic_write(file_name) as f:
        for record in records:
            pickle.dump(record, f, protocol=2)


def pickleLoad(file_name):
    """Read all pickle records of a (possibly gzipped) file through a restricted unpickler.

    Only NumPy arrays, NumPy scalars, numbers, strings, bytes, lists, tuples and dicts are admitted;
    a file referring to anything else (which loading could run) is refused before anything runs.
    Python 2 pickles are read with ``encoding='latin1'``.

    Returns:
        The single record, or a list of the records.

    Raises:
        pickle.UnpicklingError: (:class:`~elektronn.safe_pickle.RefusedGlobal`) the file refers
            to something else than arrays and plain containers, naming it.
    """
    from elektronn.safe_pickle import ArrayUnpickler, RefusedGlobal
    with open(file_name, 'rb') as f:
        raw = f.read()
    if raw[:2] == b'\x1f\x8b':
        raw = gzip.decompress(raw)
    stream = io.BytesIO(raw)
    unpickler = ArrayUnpickler(stream, encoding='latin1')
    records = []
    while stream.tell() < len(raw):
        try:
            records.append(unpickler.load())
        except RefusedGlobal as e:
            raise RefusedGlobal('%s was refused: record %i refers to %s; pickleLoad reads NumPy arrays and plain '
                                'containers only (loading anything else could run code)'
                                % (file_name, len(records), e)) from None
        except EOFError:
            break
    return records[0] if len(records) == 1 else records


def timeit(foo, n=1):
    """Decorator: calls of the result run ``foo`` ``n`` times and print the mean time per call."""
    @functools.wraps(foo)
    def decorated(*args, **kwargs):
        t0 = time.time()
        for _ in range(n - 1):
            foo(*args, **kwargs)
        ret = foo(*args, **kwargs)
        t = (time.time() - t0) / max(n, 1)
        name = getattr(foo, '__name__', None)
        log.logger.info('Function %stook %.5f s averaged over %i execs' % ('<%s> ' % name if name else '', t, n))
        return ret

    return decorated


def sha256_file(path):
    """SHA-256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def _imported_module_name(file_path):
    """The module name under which :func:`import_variable_from_file` registers ``file_path``."""
    stem = os.path.splitext(os.path.basename(os.path.expanduser(file_path)))[0]
    return 'elektronn_imported_%s' % ''.join(c if c.isalnum() else '_' for c in stem)


def import_variable_from_file(file_path, class_name):
    """The object ``class_name`` defined by the Python file ``file_path`` (imported as a module; other
    modules in its folder can be imported by it).

    Raises:
        AttributeError: the file defines no such name.
    """
    file_path = os.path.abspath(os.path.expanduser(file_path))
    directory = os.path.dirname(file_path)
    module_name = _imported_module_name(file_path)
    spec = importlib.util.spec_from_file_location(module_name, file_path)
    if spec is None:
        raise ImportError('%s is not a Python file' % file_path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # before running it: classes defined there can be pickled
    sys.path.insert(0, directory)
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    finally:
        if sys.path and sys.path[0] == directory:
            sys.path.pop(0)
    try:
        return getattr(module, class_name)
    except AttributeError:
        raise AttributeError('%s defines no %r' % (file_path, class_name)) from None
