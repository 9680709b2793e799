"""Small helpers shared by ``elektronn.net`` and ``elektronn.training``."""
import contextlib
import os
import sys
import tempfile
import time

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
    the disk before the rename, and the rename is before returning (see :func:`_durable_replace`).

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
        _durable_replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def available_cores():
    """CPU cores this process may use (its affinity mask, e.g. a cluster job's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


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
        if self.tty and self.steps < self.total:
            self._out().write('\n')
            self._out().flush()


def _si(value, unit):
    for factor, prefix in ((1e9, 'G'), (1e6, 'M'), (1e3, 'k')):
        if value >= factor:
            return '%.2f %s%s' % (value / factor, prefix, unit)
    return '%.2f %s' % (value, unit) if unit else '%.2f' % value
