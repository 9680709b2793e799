"""What every ``elektronn-*`` command shares: how much it shows, and its lines on stderr.

* :func:`add_verbosity_arguments` adds the mutually exclusive ``--quiet`` (warnings and errors only)
  and ``--verbose`` (debug messages too); :func:`verbosity` applies them for the run of a command;
  :func:`verbosity_flags` passes them on to a child command.
* :func:`error`, :func:`note` and :func:`interrupted` write the command's one-line messages to
  ``sys.stderr`` (the library reports through the ``elektronn`` logger, see :mod:`elektronn.log`).
"""
import contextlib
import logging
import sys
import warnings

from elektronn import log

__all__ = ['add_verbosity_arguments', 'verbosity', 'verbosity_flags', 'error', 'note', 'interrupted']

logger = logging.getLogger(__name__)

_LEVELS = {'quiet': 'WARNING', 'verbose': 'DEBUG'}


def add_verbosity_arguments(parser):
    """Add ``--quiet`` and ``--verbose`` (one or the other) to an ``argparse`` parser."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument('--quiet', action='store_true',
                       help='show only warnings and errors (default: the level of ELEKTRONN_LOG_LEVEL, else INFO)')
    group.add_argument('--verbose', action='store_true', help='show debug messages too')
    return parser


def _level(args):
    for option, level in _LEVELS.items():
        if getattr(args, option, False):
            return level
    return None


def verbosity_flags(args):
    """``['--quiet']``, ``['--verbose']`` or ``[]``: the option of ``args`` for a child command."""
    level = _level(args)
    return [] if level is None else ['--' + next(o for o, v in _LEVELS.items() if v == level)]


@contextlib.contextmanager
def verbosity(prog, args):
    """Run a command at the log level its ``--quiet``/``--verbose`` ask for, with Python warnings shown as
    ``<prog>: warning: <message>``; both are restored on exit (the commands also run in-process).

    Without either option the level stays as it is: ``ELEKTRONN_LOG_LEVEL``, else ``INFO``.
    """
    level = _level(args)
    old_level = log.get_log_level()
    old_format = warnings.formatwarning

    def formatwarning(message, category, filename, lineno, line=None):
        kind = 'warning' if category is UserWarning else category.__name__
        return '%s: %s: %s\n' % (prog, kind, message)

    if level is not None:
        log.set_log_level(level)
    # a command's user wants the message, not the library line that raised it
    warnings.formatwarning = formatwarning
    try:
        logger.debug('%s options: %s', prog, ', '.join('%s=%r' % item for item in sorted(vars(args).items())))
        yield
    finally:
        warnings.formatwarning = old_format
        if level is not None:
            log.set_log_level(old_level)


def error(prog, message):
    """Write ``<prog>: error: <message>`` to stderr."""
    sys.stderr.write('%s: error: %s\n' % (prog, message))


def note(prog, message):
    """Write ``<prog>: note: <message>`` to stderr (something the command did not do as asked, and why)."""
    sys.stderr.write('%s: note: %s\n' % (prog, message))


def interrupted(message):
    """Write ``Interrupted: <message>`` to stderr on a line of its own (after a ctrl+c in a progress line)."""
    sys.stderr.write('\nInterrupted: %s\n' % message)
