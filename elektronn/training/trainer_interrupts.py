"""Pausing and stopping a training run: ctrl+c, SIGTERM and NaN losses, the console, and (under torchrun)
keeping every rank in step.

:class:`InterruptMixin` holds these :class:`~elektronn.training.trainer.Trainer` methods: the signal
handlers (a first ctrl+c or SIGTERM acts at the end of the step, a second one at once, but never
inside an update step or a save), the agreement of the ranks on why and when to stop, and what an
interrupt leads to (``_handleInterrupt``): the interactive
:class:`~elektronn.training.console.Console`, a save and stop, or the end of a diverged run; under
distributed training rank 0's console changes are shared with the other ranks.
"""
import contextlib
import logging
import signal
import sys
import threading

import numpy as np
import torch

from elektronn.training import distributed
from elektronn.training.workers import AttributeWatcher, _fingerprint
from elektronn.utils import pprinttime

logger = logging.getLogger(__name__)

__all__ = ['InterruptMixin']

#: Why the loop stops, in the order of precedence when ranks disagree (see ``Trainer._agree``).
_REASONS = (None, 'console', 'diverged', 'terminate')


class _Terminated(BaseException):
    """A second SIGTERM while the loop waits: stop now."""


class InterruptMixin:
    """The :class:`~elektronn.training.trainer.Trainer` methods of interrupts, the console and the ranks' agreement."""

    def _console_status(self):
        st, c = self.state, self.config
        pp_loss, pp_err = ('MSE', 'std') if c.target == 'regression' else ('NLL', '%')
        lr = self._current_lr()
        return ('%05i %sm=%.5f, %s=%.4f, train=%.5f, valid=%.5f, train=%.3f%s, valid=%.3f%s,\n'
                'LR=%s, MOM=%.6f, %.1f GPU-it/s, %.1f CPU-it/s, %s'
                % (max(st.step - 1, 0), pp_loss, st.nll_ema, pp_loss, st.nll, st.train_nll, st.valid_nll,
                   st.train_error, pp_err, st.valid_error, pp_err, 'n/a' if lr is None else '%.6f' % lr,
                   float(self.cnn.SGD_momentum), 1.0 / st.t_pt, 1.0 / st.t_pi, pprinttime(st.t_passed)))

    def _is_interactive(self):
        if self.interactive is not None:
            return bool(self.interactive)
        return sys.stdin is not None and sys.stdin.isatty()

    def _on_sigint(self, signum, frame):
        if self._interrupt is not None:
            if self.dist.active:
                return  # an exception would leave the other ranks waiting in a collective
            self._stop_now(KeyboardInterrupt)  # a second ctrl+c does not wait for the next history step
            return
        self._interrupt = 'console'

    def _on_sigterm(self, signum, frame):
        if self._interrupt == 'terminate':
            if self.dist.active:
                return
            self._stop_now(_Terminated)
            return
        self._interrupt = 'terminate'

    def _stop_now(self, exception):
        """Leave the loop at once, but never inside an update step or a save: a step cut short (CG within its
        line search, RPROP half-way through the parameters) would be saved as it is, and a save cut short
        would leave files of different steps. There the exception waits for the end (:meth:`_uninterrupted`)."""
        if self._in_step:
            self._deferred = exception
        else:
            raise exception()

    @contextlib.contextmanager
    def _uninterrupted(self, raise_deferred=True):
        """A block that a second ctrl+c or SIGTERM does not cut short; the stop is raised after it (unless
        ``raise_deferred`` is False: the caller stops anyway)."""
        if self._in_step:  # within another such block
            yield
            return
        self._in_step = True
        try:
            yield
        except BaseException:
            self._in_step, self._deferred = False, None
            raise
        self._in_step = False
        deferred, self._deferred = self._deferred, None
        if deferred is not None and raise_deferred:
            raise deferred()

    def _agree(self, out_of_time):
        """Distributed training: let all ranks agree on the interrupt (the most severe one of any rank,
        see :data:`_REASONS`) and on the time-out (any rank's), so that they stop at the same step."""
        reason, timeout = self.dist.all_reduce_max([_REASONS.index(self._interrupt), bool(out_of_time)])
        self._agreed, self._agreed_timeout = _REASONS[reason], bool(timeout)

    def _pending(self):
        """The interrupt the loop acts on now: this process's, or under DDP the agreed one."""
        return self._agreed if self.dist.active else self._interrupt

    def _install_signals(self):
        if threading.current_thread() is not threading.main_thread():
            return None
        old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        signal.signal(signal.SIGINT, self._on_sigint)
        signal.signal(signal.SIGTERM, self._on_sigterm)
        return old

    def _namespace(self):
        st = self.state
        return dict(self=self, cnn=self.cnn, data=self.data, config=self.config, batch=self.last_batch, np=np,
                    i=max(st.step - 1, 0), nll=st.nll, save_name=self.config.save_name,
                    schedule=self.config.LR_schedule, workers=self.workers, bg_worker=self.workers)

    def _handleInterrupt(self):
        """Act on ctrl+c, SIGTERM or divergence; returns 'continue', 'abort', 'kill', 'stop' or 'diverged'.

        Under DDP rank 0 owns the console, only where asked for with ``interactive = True`` (torchrun
        ends its processes soon after a ctrl+c in the terminal, which would kill a waiting console
        without a save), and the other ranks take over what it leaves behind (see
        :meth:`_shareConsole`); divergence stops every rank.
        """
        reason, interactive = self._interrupt, self._is_interactive()
        if self.dist.active:
            reason = self._agreed
            interactive = reason == 'console' and self.dist.broadcast(self.interactive is True)
        if reason == 'terminate':
            logger.info('\nSIGTERM received: saving and stopping')
            return 'stop'
        if reason == 'diverged':
            logger.warning('The NN diverged to a NaN/Inf loss (step %i). The last batch is `batch` (data batch[0], '
                           'labels batch[1]); load earlier parameters with `load %s-LAST.param`.',
                           self.state.step - 1, self.config.save_name)
            if not interactive:
                return 'diverged'
        elif not interactive:
            logger.info('\nInterrupted (%s, so no console): saving and stopping',
                        'distributed training' if self.dist.active else 'stdin is not a terminal')
            return 'stop'
        if not self.dist.is_main:
            return self._followConsole()
        watcher = AttributeWatcher(self.data)
        kwargs_before = _fingerprint(self.get_batch_kwargs)
        optimizer_before = self.config.optimizer
        previous = signal.getsignal(signal.SIGINT) if threading.current_thread() is threading.main_thread() else None
        if previous is not None:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            action = self.console.interact(self._namespace(), self._console_status())
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
            self._interrupt = None
        # A batch staged before the console may no longer fit the data settings or the network's device.
        self._ahead = None
        changed, kwargs_changed = {}, False
        if action == 'q':
            changed = watcher.changes()
            kwargs_changed = _fingerprint(self.get_batch_kwargs) != kwargs_before
            self._forwardToWorkers(changed, kwargs_changed)
        action = 'continue' if action == 'q' else action
        if self.dist.active:
            self._shareConsole(action, changed, kwargs_changed, optimizer_before)
        return action

    def _forwardToWorkers(self, changed, kwargs_changed):
        """Send changed data attributes and batch kwargs (console) to the background workers."""
        if self.workers is None:
            return
        sent = self.workers.update(changed, self.get_batch_kwargs if kwargs_changed else None)
        if sent or kwargs_changed:
            logger.info('Forwarded to the background workers: %s',
                        ', '.join(['data.%s' % n for n in sent] + (['batch kwargs'] if kwargs_changed else [])))

    def _shareConsole(self, action, changed, kwargs_changed, optimizer_before):
        """DDP, rank 0 after its console: send the action and everything the console may have changed
        (parameters, optimiser states and settings, LRs, momentum, weight decay, dropout, history_freq,
        data attributes, batch kwargs) to the other ranks, which apply it in :meth:`_followConsole`."""
        c, cnn = self.config, self.cnn
        try:
            distributed.check_optimizer(c.optimizer, self.dist)
        except ValueError as e:
            logger.warning('%s; keeping %s', e, optimizer_before)
            c.optimizer = optimizer_before
        # plain values only: a random generator sent along would make the ranks draw the same batches
        data = {name: value for name, value in changed.items()
                if not name.startswith('_') and isinstance(value, (bool, int, float, str, tuple, list, dict,
                                                                   type(None), np.number, np.bool_))}
        self.dist.broadcast(dict(
            action=action, optimizer=c.optimizer, history_freq=int(c.history_freq[0]), lrs=self._lrs(),
            momentum=float(cnn.SGD_momentum), weight_decay=float(cnn.global_weightdecay),
            dropout=cnn.getDropoutRates(), data=data, batch_kwargs=dict(self.get_batch_kwargs) if kwargs_changed
            else None, params=[p.detach().cpu().numpy() for p in cnn.params], optimizer_state=cnn.optimizer_state()))

    def _followConsole(self):
        """DDP, ranks other than 0: apply what rank 0's console left behind (see :meth:`_shareConsole`);
        returns its action."""
        shared = self.dist.broadcast(None)
        c, cnn = self.config, self.cnn
        self._interrupt = None  # ctrl+c from a terminal reaches every rank: one console is enough
        self._ahead = None
        c.optimizer = shared['optimizer']
        c.history_freq[0] = shared['history_freq']  # history steps hold collectives: the ranks must agree
        for mode, lr in shared['lrs'].items():
            cnn.setLR(lr, mode=mode)
        cnn.setSGDMomentum(shared['momentum'])
        cnn.setWeightDecay(shared['weight_decay'])
        if shared['dropout']:
            cnn.setDropoutRates(shared['dropout'])
        with torch.no_grad():
            for p, value in zip(cnn.params, shared['params']):
                p.copy_(torch.from_numpy(value))
        cnn.load_optimizer_state(shared['optimizer_state'])
        for name, value in shared['data'].items():
            setattr(self.data, name, value)
        if shared['batch_kwargs'] is not None:
            self.get_batch_kwargs.clear()
            self.get_batch_kwargs.update(shared['batch_kwargs'])
        self._forwardToWorkers(shared['data'], shared['batch_kwargs'] is not None)
        return shared['action']
