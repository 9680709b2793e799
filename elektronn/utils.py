"""Small helpers shared by ``elektronn.net`` and ``elektronn.training``."""
import contextlib
import os
import tempfile

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
    that a user depends on (parameters, histories, configs) is never half-written.

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
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
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
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
