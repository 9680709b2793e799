"""The ``elektronn`` logger: everything the library reports, and how much of it is shown.

Library code never calls ``print``; it logs to ``logging.getLogger('elektronn')`` (:data:`logger`).
By default one handler writes the messages at ``INFO`` and above, unadorned, to the *current*
``sys.stdout`` (so the printouts of ELEKTRONN 1.x appear as they did, in scripts, notebooks, CLIs
and under output capture). Warnings go through :func:`warnings.warn`.

Change how much is shown with :func:`set_log_level` (or :func:`use_log_level` for a block of code),
the environment variable ``ELEKTRONN_LOG_LEVEL`` (read at import), or the CLIs' ``--quiet``
(warnings and errors only) and ``--verbose`` (debug messages too)::

    import elektronn
    elektronn.set_log_level('WARNING')     # silent apart from warnings

A training run's log file receives every message, also those below the shown level
(:func:`capture_unshown`).
"""
import contextlib
import logging
import os
import sys
import warnings

__all__ = ['logger', 'set_log_level', 'get_log_level', 'use_log_level', 'capture_unshown', 'shows',
           'ENV_VARIABLE']

#: The package's logger; its children (``elektronn.net`` ...) are used via ``logging.getLogger(__name__)``.
logger = logging.getLogger('elektronn')
#: The environment variable read at import.
ENV_VARIABLE = 'ELEKTRONN_LOG_LEVEL'

_NAMES = ('DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL')


class _StdoutHandler(logging.StreamHandler):
    """Writes to ``sys.stdout`` as it is at each message (pytest's capture, ``redirect_stdout``, the run log's
    copy of the output), not as it was at import."""

    def __init__(self):
        super().__init__(sys.stdout)

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value):
        pass  # always the current sys.stdout


_console = _StdoutHandler()
_console.setFormatter(logging.Formatter('%(message)s'))
_captures = []


def _as_level(level, what='level'):
    """An int logging level from an int, a name (any case), ``True`` (INFO) or ``False`` (WARNING)."""
    if isinstance(level, bool):
        return logging.INFO if level else logging.WARNING
    if isinstance(level, int):
        return level
    if isinstance(level, str):
        name = level.strip().upper()
        if name in _NAMES:
            return getattr(logging, name)
        if name.isdigit():
            return int(name)
    raise ValueError('%s: %r is not a log level; give one of %s (or a logging int, True for INFO, False for '
                     'WARNING)' % (what, level, ', '.join(_NAMES)))


def _update_logger_level():
    # the logger lets through what its handlers want: the console's level, everything while a run log captures
    logger.setLevel(min([_console.level] + [h.level for h in _captures]))


def set_log_level(level=None, return_old=False):
    """Set the level of the messages shown on the console.

    Args:
        level: ``'DEBUG'``, ``'INFO'``, ``'WARNING'``, ``'ERROR'``, ``'CRITICAL'`` (any case), a
            :mod:`logging` int, ``True`` (INFO) or ``False`` (WARNING); ``None``: the value of
            ``ELEKTRONN_LOG_LEVEL``, else ``INFO``.
        return_old: Return the previous level.

    Returns:
        The previous level (an int) if ``return_old``.
    """
    old = _console.level
    if level is None:
        level = _as_level(os.environ.get(ENV_VARIABLE) or 'INFO', ENV_VARIABLE)
    else:
        level = _as_level(level, 'set_log_level')
    _console.setLevel(level)
    _update_logger_level()
    return old if return_old else None


def get_log_level():
    """The level of the messages shown on the console (an int)."""
    return _console.level


@contextlib.contextmanager
def use_log_level(level):
    """Show messages from ``level`` on within a ``with`` block (see :func:`set_log_level`)."""
    old = set_log_level(level, return_old=True)
    try:
        yield
    finally:
        set_log_level(old)


def shows(level=logging.INFO):
    """Whether messages of ``level`` appear on the console (progress bars ask this before drawing)."""
    return level >= _console.level and _console in logger.handlers


class _UnshownHandler(logging.Handler):
    """Hands the messages that the console does not show to ``write``."""

    def __init__(self, write):
        super().__init__(logging.DEBUG)
        self._write = write
        self.setFormatter(logging.Formatter('%(message)s'))

    def emit(self, record):
        if shows(record.levelno):
            return  # on stdout, which the run log copies already
        try:
            self._write(self.format(record) + '\n')
        except Exception:  # a log that cannot be written must not stop the work
            self.handleError(record)


def capture_unshown(write):
    """Pass every message that is *not* shown on the console to ``write(text)``.

    A run log copies what is printed; this adds what the log level hides, so the file gets
    everything. Returns a function that ends the capture.
    """
    handler = _UnshownHandler(write)
    logger.addHandler(handler)
    _captures.append(handler)
    _update_logger_level()

    def stop():
        logger.removeHandler(handler)
        if handler in _captures:
            _captures.remove(handler)
        _update_logger_level()

    return stop


logger.addHandler(_console)
# messages are ours to show; propagating them as well would print them twice once an application
# configures the root logger (as MNE-Python does)
logger.propagate = False
try:
    set_log_level(None)
except ValueError as _error:
    warnings.warn('%s; showing INFO' % _error, stacklevel=2)
    set_log_level('INFO')
