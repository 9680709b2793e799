"""The text records of a run: a log of everything printed, and a history file for people and scripts.

* :class:`TeeOutput` copies ``sys.stdout``/``sys.stderr`` into ``<save_name>.log`` in the save
  directory, and adds the messages that the log level keeps off the console (the file gets them all). Output printed before the save directory exists (config and data messages) is kept and
  written when the log file is attached.
* :func:`write_history_csv` writes ``<save_name>.history.csv``: one row per history step with
  named columns (rewritten atomically at every history step).
"""
import contextlib
import csv
import io
import math
import sys

from elektronn import log
from elektronn.utils import atomic_write

__all__ = ['TeeOutput', 'active_tee', 'write_history_csv', 'HISTORY_COLUMNS']

#: Columns of the history CSV file.
HISTORY_COLUMNS = ('step', 'time_s', 'loss_smoothed', 'loss', 'train_loss', 'valid_loss', 'loss_gain', 'LR',
                   'train_error', 'valid_error')

_active = None


def active_tee():
    """The :class:`TeeOutput` currently copying the output, or ``None``."""
    return _active


class _TeeStream(io.TextIOBase):
    """A text stream writing to the original stream and to the log."""

    def __init__(self, stream, tee):
        super().__init__()
        self._stream = stream
        self._tee = tee

    def write(self, text):
        n = self._stream.write(text)
        self._tee.log(text)
        return len(text) if n is None else n

    def flush(self):
        self._stream.flush()

    def isatty(self):
        return self._stream.isatty()

    def fileno(self):
        return self._stream.fileno()

    @property
    def encoding(self):
        return getattr(self._stream, 'encoding', 'utf-8')

    def writable(self):
        return True


class TeeOutput:
    """Copy everything printed (stdout and stderr) into a log file.

    Example::

        tee = TeeOutput().start()      # buffers until a file is attached
        ...                            # prints
        tee.attach('/path/run.log')    # writes the buffer, then logs line by line
        tee.stop()
    """

    def __init__(self):
        self._buffer = []
        self._file = None
        self.path = None
        self._saved = None
        self._stop_capture = None

    def start(self):
        """Begin copying; returns ``self``."""
        global _active
        if self._saved is None:
            self._saved = (sys.stdout, sys.stderr)
            sys.stdout = _TeeStream(sys.stdout, self)
            sys.stderr = _TeeStream(sys.stderr, self)
            self._stop_capture = log.capture_unshown(self.log)
            _active = self
        return self

    def attach(self, path):
        """Write the buffered output to ``path`` (appending) and log into it from now on."""
        if self._file is not None:
            if self.path == path:
                return
            self._file.close()
        self._file = open(path, 'a', encoding='utf-8', errors='replace')
        self.path = path
        self._file.write(''.join(self._buffer))
        self._file.flush()
        self._buffer = []

    def log(self, text):
        """Write ``text`` to the log only (e.g. the commands typed into the console).

        A log that cannot be written (a full disk) is closed with one warning on the terminal;
        printing goes on.
        """
        if self._file is not None:
            try:
                self._file.write(text)
                self._file.flush()
            except OSError as e:
                self._give_up(e)
        else:
            self._buffer.append(text)

    def _give_up(self, error):
        broken, self._file = self._file, None
        with contextlib.suppress(OSError):
            broken.close()
        stream = self._saved[1] if self._saved is not None else sys.stderr
        stream.write('WARNING: logging to %s stopped: %s\n' % (self.path, error))

    def stop(self):
        """Restore the streams and close the log file."""
        global _active
        if self._saved is not None:
            sys.stdout, sys.stderr = self._saved
            self._saved = None
            self._stop_capture()
        if _active is self:
            _active = None
        if self._file is not None:
            try:
                self._file.close()
            except OSError as e:
                self._give_up(e)
            self._file = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _cell(value):
    if value is None:
        return ''
    value = float(value)
    if math.isnan(value):
        return 'nan'
    return repr(int(value)) if value.is_integer() and abs(value) < 2 ** 53 else '%.8g' % value


def write_history_csv(path, history, errors, segmentation=None):
    """Write the history table (see :data:`HISTORY_COLUMNS`) to ``path`` atomically.

    Args:
        history: Rows ``[step, seconds, smoothed loss, loss, train loss, valid loss, loss gain, LR]``.
        errors: Rows ``[step, seconds, train error, valid error]`` (same steps as ``history``).
        segmentation: Rows ``[step, seconds, score, ...]`` of the validation segmentation scores
            (``valid_segmentation_metrics``), or ``None``; adds the columns ``valid_<score>``
            (:data:`~elektronn.training.segmentation_scores.SCORE_NAMES`), empty at the history
            steps without an evaluation.
    """
    columns = list(HISTORY_COLUMNS)
    by_step = {}
    if segmentation is not None:
        from elektronn.training.segmentation_scores import SCORE_NAMES
        columns += ['valid_%s' % n for n in SCORE_NAMES]
        by_step = {int(row[0]): list(row[2:2 + len(SCORE_NAMES)]) for row in segmentation}
    with atomic_write(path, 'w') as f:
        writer = csv.writer(f, lineterminator='\n')
        writer.writerow(columns)
        for h, e in zip(history, errors):
            row = list(h[:8]) + list(e[2:4])
            if segmentation is not None:
                row += by_step.get(int(h[0]), [None] * (len(columns) - len(row)))
            writer.writerow([_cell(v) for v in row])
