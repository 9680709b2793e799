"""The ctrl+c console of a training run.

Pressing ctrl+c during :meth:`~elektronn.training.trainer.Trainer.run` (or a NaN/Inf loss) pauses
training and opens a prompt ``<user>@ELEKTRONN:``. Commands (the first word decides):

============================  ===================================================================
``q``                         leave the console and continue training
``abort``                     stop training; save ``<save_name>_end.param`` and the final plots
``kill``                      stop at once, without the final save
``save [file]``               save the parameters (default ``CNN.save`` in the save directory)
``load [file]``               load parameters (adaptive; default ``CNN.save``)
``sf``                        plot the filters of the first layer to ``filters_layer0.png``
``sethist <int>``             steps between history steps (0 disables them)
``setlr <float>``             learning rate of the current optimiser
``setmom <float>``            SGD momentum
``params``                    statistics of every parameter array
``SGD``, ``Adam``, ...        switch the optimiser (``CG``, ``RPROP``, ``LBFGS`` where available)
``help``                      this menu
anything else                 Python, with ``self`` (the trainer), ``cnn``, ``data``, ``config``,
                              ``batch`` (the last batch), ``np`` and the loop variables in scope
============================  ===================================================================

Python expressions print their value (``data.warp_on``, ``self.testModel('test')``); statements are
executed (``data.warp_on = False``). The Python 2 print statement of the original's documentation
works as typed: a line ``print <expr>`` that is not valid Python 3 runs as ``print(<expr>)``
(``print`` alone prints an empty line, ``print >>f, x`` writes to ``f``). Errors print a traceback and the console stays open. With
readline, Tab completes names and attributes and the arrow keys recall earlier commands (kept in
``~/.elektronn_history``). Changes made to ``data`` reach the background workers when training
continues.
"""
import getpass
import os
import re
import sys
import traceback

import numpy as np

from elektronn.training import distributed

__all__ = ['Console', 'COMMANDS', 'menu_text', 'py2_print', 'pprintmenu', 'userInput']

#: The console's commands (anything else is a line of Python).
COMMANDS = ('q', 'abort', 'kill', 'save', 'load', 'sf', 'smooth', 'sethist', 'setlr', 'setmom', 'params', 'help',
            'SGD', 'CG', 'RPROP', 'LBFGS', 'Adam')
_OPTIMIZERS = ('SGD', 'CG', 'RPROP', 'LBFGS', 'Adam')
HISTORY_FILE = '~/.elektronn_history'


def menu_text(save_name):
    """The menu printed when the console opens."""
    return ('ELEKTRONN MENU\n==============\n\n'
            '    >> %s <<\n'
            '    Shortcuts:\n'
            "    'q' (leave menu, continue training),\t'abort' (stop, saving params),\n"
            "    'kill' (stop, no saving),\t\t'save'/'load' [file] (parameters),\n"
            "    'sf' (show filters),\t\t'params' (parameter statistics),\n"
            "    'sethist <int>',\t\t\t'setlr <float>',\n"
            "    'setmom <float>',\t\t\t'help' (this menu),\n"
            "    Change the optimiser: 'SGD', 'Adam', 'RPROP', 'CG', 'LBFGS'\n"
            '    Anything else is Python with self, cnn, data, config, batch in scope\n' % save_name)


def _say(text, stream=None):
    """Write one reply of the console (shown whatever the log level: the user asked for it)."""
    stream = sys.stdout if stream is None else stream
    stream.write(text + '\n')
    stream.flush()


def pprintmenu(save_name):
    """Print the console menu (the original's ``trainutils.pprintmenu``)."""
    _say(menu_text(save_name))


def userInput(cnn, history_freq):
    """The original's console reader, which returned the typed string for ``exec`` in the training loop.

    Raises:
        NotImplementedError: always; the console is :class:`Console`
            (``Console(trainer).execute(line, namespace)`` runs one line, ``interact`` the prompt loop).
    """
    raise NotImplementedError('trainutils.userInput(cnn, history_freq) is replaced by the console class '
                              'elektronn.training.console.Console: Console(trainer).interact(namespace) reads and '
                              'runs commands, Console(trainer).execute(line, namespace) runs one line')


_PRINT = re.compile(r'^print(?:\s+|(?=>>))(?P<rest>.+?)\s*$', re.S)
_PRINT_TO = re.compile(r'^>>\s*(?P<file>[^,]+?)\s*(?:,\s*(?P<rest>.*))?$', re.S)


def _valid_python3(line):
    try:
        compile(line, '<console>', 'exec')
    except SyntaxError:
        return False
    return True


def py2_print(line):
    """``line`` with a Python 2 print statement at its start turned into a call; other lines unchanged.

    ``print <expr>`` becomes ``print(<expr>)`` (so ``print a, b`` prints both, separated by a
    space), ``print >>f, x`` becomes ``print(x, file=f)`` and ``print`` alone ``print()``. Only a line
    that starts with the word ``print`` and is not valid Python 3 is rewritten (``print('x')``,
    ``print = 3``, or a ``print`` inside a string stay as they are); the one exception is
    ``print >>f, x``, which parses in Python 3 but can only fail there.
    """
    stripped = line.strip()
    if stripped == 'print':
        return 'print()'
    match = _PRINT.match(stripped)
    if match is None:
        return line
    rest = match.group('rest')
    target = _PRINT_TO.match(rest)
    if target is None and _valid_python3(stripped):
        return line
    if target is not None:
        call = 'print(%sfile=%s)' % (target.group('rest') + ', ' if target.group('rest') else '', target.group('file'))
    else:
        call = 'print(%s)' % rest
    return call if _valid_python3(call) else line


def _user():
    try:
        return getpass.getuser()
    except Exception:
        return 'user'


class _Readline:
    """Tab completion and history where the ``readline`` module exists (no-op elsewhere)."""

    def __init__(self):
        try:
            import readline
            import rlcompleter
        except ImportError:
            self.readline = None
            return
        self.readline = readline
        self._rlcompleter = rlcompleter
        self._loaded = False

    def activate(self, namespace):
        if self.readline is None:
            return
        rl = self.readline
        completer = self._rlcompleter.Completer(namespace)

        def complete(text, state):
            words = [c for c in COMMANDS if c.startswith(text)] if '.' not in text else []
            if state < len(words):
                return words[state]
            return completer.complete(text, state - len(words))

        self._previous = rl.get_completer()
        rl.set_completer(complete)
        rl.set_completer_delims(' \t\n`~!@#$%^&*()-=+{}\\|;:\'",<>/?')
        doc = getattr(rl, '__doc__', '') or ''
        rl.parse_and_bind('bind ^I rl_complete' if 'libedit' in doc else 'tab: complete')
        if not self._loaded:
            self._loaded = True
            try:
                rl.read_history_file(os.path.expanduser(HISTORY_FILE))
            except OSError:
                pass

    def deactivate(self):
        if self.readline is None:
            return
        self.readline.set_completer(self._previous)
        try:
            self.readline.set_history_length(1000)
            self.readline.write_history_file(os.path.expanduser(HISTORY_FILE))
        except OSError:
            pass


class Console:
    """The interactive console of a :class:`~elektronn.training.trainer.Trainer`.

    Args:
        trainer: The trainer (``cnn``, ``data``, ``config``, ``save_path``).
        input_func: Reads one line given a prompt (default ``input``); tests pass their own.
        output: Stream of the console's replies (default: ``sys.stdout`` at each reply). They are shown
            whatever the log level (the user asked for them) and copied into the run's log file.
    """

    def __init__(self, trainer, input_func=None, output=None):
        self.trainer = trainer
        self.input_func = input_func or input
        self.output = output
        self._readline = _Readline() if input_func is None else None
        self.prompt = '%s@ELEKTRONN: ' % _user()

    def _say(self, text):
        _say(text, self.output)

    # -- one command ------------------------------------------------------------------------------
    def _path(self, words, default='CNN.save'):
        return self._file(words[1] if len(words) > 1 else default)

    def _file(self, name):
        """``name`` in the save directory (made now if the run has not made it yet)."""
        return os.path.join(self.trainer.config.prepare_save_dir(), os.path.expanduser(name))

    def execute(self, line, namespace):
        """Run one console line.

        Returns:
            ``'q'``, ``'abort'`` or ``'kill'`` for those commands, otherwise ``None``.
        """
        line = line.strip()
        if not line:
            return None
        words = line.split()
        cmd = words[0]
        trainer = self.trainer
        cnn, config = trainer.cnn, trainer.config
        if cmd == 'q' and len(words) == 1:
            self._say('Continuing Training')
            return 'q'
        if cmd in ('abort', 'kill') and len(words) == 1:
            return cmd
        if cmd == 'help' and len(words) == 1:
            self._say(menu_text(config.save_name))
        elif cmd == 'save' and len(words) <= 2:
            path = self._path(words)
            cnn.saveParameters(path)
            self._say('Saving done: %s' % path)
        elif cmd == 'load' and len(words) <= 2:
            path = self._path(words)
            cnn.loadParameters(path)
            self._say('Loaded! %s' % path)
        elif cmd == 'sf' and len(words) == 1:
            from elektronn.training.plotting import plot_filters
            self._say('Filters plotted to %s' % plot_filters(cnn, self._file('filters_layer0.png')))
        elif cmd == 'smooth' and len(words) == 1:
            self._say('Filter smoothing is not implemented')
        elif cmd in ('sethist', 'setlr', 'setmom') and len(words) <= 2:
            self._set(cmd, words[1] if len(words) == 2 else '')
        elif cmd == 'params' and len(words) == 1:
            self._params()
        elif cmd in _OPTIMIZERS and len(words) == 1:
            self._switch_optimizer(cmd)
        else:
            self._python(line, namespace)
        return None

    def _set(self, cmd, arg):
        trainer = self.trainer
        if cmd == 'sethist':
            if not arg.isdigit():
                self._say('sethist needs a whole number of steps (0 disables history steps), got %r' % arg)
                return
            trainer.config.history_freq[0] = int(arg)
            self._say('history_freq set to %i' % int(arg))
            return
        try:
            value = float(arg)
        except ValueError:
            self._say('%s needs a number, got %r' % (cmd, arg))
            return
        if cmd == 'setlr':
            trainer.cnn.setLR(value, mode=trainer.config.optimizer)
            self._say('LR of %s set to %g' % (trainer.config.optimizer, value))
        else:
            trainer.cnn.setSGDMomentum(value)
            self._say('SGD momentum set to %g' % value)

    def _params(self):
        for k, p in enumerate(self.trainer.cnn.params):
            a = p.detach().cpu().numpy()
            self._say('param %2i shape=%-18s mean(abs)=%.6e std=%.6e median(abs)=%.6e'
                  % (k, tuple(a.shape), np.mean(np.abs(a)), np.std(a), np.median(np.abs(a))))

    def _switch_optimizer(self, name):
        from elektronn.net.optimizers import OPTIMIZERS
        if name not in OPTIMIZERS:
            self._say('Optimiser %s is not available in this version (available: %s)' % (name, ', '.join(OPTIMIZERS)))
            return
        try:
            distributed.check_optimizer(name, self.trainer.dist)
        except ValueError as e:
            self._say('Optimiser not changed: %s' % e)
            return
        self.trainer.config.optimizer = name
        self._say('Changing Training mode to %s (compiled at the next step)' % name)

    def _python(self, line, namespace):
        line = py2_print(line)
        try:
            code, is_expression = compile(line, '<console>', 'eval'), True
        except SyntaxError:
            code, is_expression = None, False
        try:
            if is_expression:
                value = eval(code, namespace)
                if value is not None:
                    self._say(repr(value))
            else:
                exec(compile(line, '<console>', 'exec'), namespace)
        except Exception:
            etype, value, tb = sys.exc_info()
            tb = tb.tb_next  # hide this frame: show the user's code and what it called
            traceback.print_exception(etype, value, tb)

    # -- the interactive loop ---------------------------------------------------------------------
    def interact(self, namespace, status=None):
        """Print the status and the menu, then read and run commands until ``q``, ``abort`` or ``kill``.

        ctrl+c at the prompt cancels the current line; end of input (ctrl+d) continues training.
        """
        from elektronn.training.runlog import active_tee
        if status:
            self._say(status)
        self._say(menu_text(self.trainer.config.save_name))
        if self._readline is not None:
            self._readline.activate(namespace)
        try:
            while True:
                try:
                    line = self.input_func(self.prompt)
                except KeyboardInterrupt:
                    self._say('\n(ctrl+c) type q to continue training, abort to stop, help for the menu')
                    continue
                except EOFError:
                    self._say('\nEnd of input: continuing training')
                    return 'q'
                tee = active_tee()
                if tee is not None:
                    tee.log(self.prompt + line + '\n')
                try:
                    action = self.execute(line, namespace)
                except KeyboardInterrupt:
                    self._say('\n(ctrl+c) command interrupted')
                    continue
                except Exception:
                    traceback.print_exc()
                    continue
                if action is not None:
                    return action
        finally:
            if self._readline is not None:
                self._readline.deactivate()
