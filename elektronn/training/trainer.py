"""The training loop: :class:`Trainer` runs a configured network on a data class.

Call order (what ``elektronn-train`` does)::

    T = Trainer(config)
    T.loadData()          # CNNData from the config's files, or the data class of data_class_name
    T.debugGetCNNBatch()  # img-img: picture of a training batch (debugGetCNNBatch.png)
    T.createNet()         # MixedConvNN from the config (elektronn.training.netcreation)
    T.resume()            # only to continue a run (elektronn-train --resume)
    T.run()               # the loop; ctrl+c opens the console

Per update step ``i`` (counting from 0):

1. a batch from ``data.getbatch`` (or from the background workers, whose batches a GPU gets one
   step ahead: the copy of the next overlaps the current step), then ``cnn.trainingStep``;
2. a NaN/Inf loss opens the console (without a terminal the run stops instead);
3. smoothed loss ``ema = 0.995 ema + 0.005 loss`` (from 0.65), step-time averages;
4. the timeline row ``[i, seconds, ema, loss, mean label of the batch]``;
5. ``<save_name>-<h>h.param`` every ``param_save_h`` hours; previews on their schedule;
6. ``LR_schedule`` entries at their steps; the LR times ``LR_decay`` after every 1000 steps;
7. every ``history_freq[0]`` steps a *history step*: the loss gain of the update on the same
   batch, train and valid estimates on ``monitor_batch_size`` examples (``testModel``), the history
   rows, ``<save_name>-LAST.param`` plus the resume state, the history files, the plots (in the
   background) and the status line;
8. stop after ``n_steps`` or ``max_runtime`` seconds of training (console time does not count).

At the end ``<save_name>_end.param`` and the final plots are written (also when an error ends the
run). ``Trainer.run`` can be called again to continue (e.g. with a larger ``config.n_steps``).

This module holds the loop; :class:`Trainer` takes its other methods from one module per job:
:mod:`~elektronn.training.trainer_setup` (the data and the network),
:mod:`~elektronn.training.trainer_snapshots` (previews, parameter snapshots, history files and plots),
:mod:`~elektronn.training.trainer_state` (the resume state; :class:`StateFileError`, :data:`STATE_FORMAT`
are importable from here too) and :mod:`~elektronn.training.trainer_interrupts` (ctrl+c, SIGTERM, the
console and the ranks' agreement).
"""
import errno
import logging
import os
import random
import signal
import time
import traceback

import numpy as np
import torch

from elektronn.training import distributed, plotting, runlog
from elektronn.training.config import ConfigError
from elektronn.training.console import Console
from elektronn.training.trainer_interrupts import InterruptMixin, _Terminated
from elektronn.training.trainer_setup import SetupMixin
from elektronn.training.trainer_snapshots import SnapshotMixin
from elektronn.training.trainer_state import (STATE_FORMAT, STATE_VERSION, ResumeStateMixin, StateFileError,
                                              _LoopState)
from elektronn.training.workers import BackgroundWorkers, reseed
from elektronn.utils import available_cores, pprinttime, remove_stale_temporaries

logger = logging.getLogger(__name__)

__all__ = ['Trainer', 'STATE_FORMAT', 'STATE_VERSION', 'StateFileError']

#: errno values of a file system that cannot take more data.
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)


class Trainer(SetupMixin, SnapshotMixin, ResumeStateMixin, InterruptMixin):
    """Runs the training of a network configured by a :class:`~elektronn.training.config.Config`.

    Attributes:
        config, data, cnn: The configuration, the data object and the network.
        history, timeline, errors, CG_timeline: Histories (see :mod:`elektronn.training.plotting`).
        state: Loop variables (``state.step`` is the next update step).
        interactive: Whether ctrl+c opens the console (``None``: when stdin is a terminal; under
            distributed training only ``True`` on rank 0 opens it).
        console: The :class:`~elektronn.training.console.Console`.
        dist: The :class:`~elektronn.training.distributed.DistContext` (under torchrun: rank, world
            size; rank 0 alone writes the save directory).

    Under torchrun (see :mod:`elektronn.training.distributed`) every process runs a Trainer on its
    own batches of ``batch_size``; the ranks agree at every step on whether to stop (ctrl+c, SIGTERM
    or a NaN loss on any rank, ``max_runtime`` on any rank); ctrl+c saves and stops unless rank 0's
    ``interactive`` is ``True`` (then rank 0 opens the console and every rank takes over its
    changes); rank 0 alone writes; the history step's train/valid estimates are means over the
    ranks; the resume state holds every rank's random states.
    """

    def __init__(self, config=None):
        self.config = config
        self.data = None
        self.cnn = None
        self.history = []
        self.timeline = []
        self.errors = []
        self.CG_timeline = []
        self.segmentation = []  # validation segmentation scores (valid_segmentation_metrics)
        self.seg_scorer = None
        self.preview_data = None
        self.saved_raw_preview = False
        self.get_batch_kwargs = {}
        self.get_batch_kwargs_test = {}
        self.state = _LoopState()
        self.seed_seq = np.random.SeedSequence(getattr(config, 'seed', None))
        if getattr(config, 'seed', None) is not None:
            self._seed_globals()
        self.interactive = None
        self.console = Console(self)
        self.last_batch = None
        self.workers = None
        self.tensorboard = None  # a TensorBoardLog while a run with tensorboard = True is going on (rank 0)
        self._interrupt = None
        self._ahead = None  # the next step's batch, staged during the current step (see _take_batch)
        self.dist = distributed.context()
        self._agreed, self._agreed_timeout = None, False  # what all ranks agreed on (see _agree)
        self._lr_scale = 1
        self._rank_seeded = False
        self._in_step = False  # signals that would stop the loop wait until the step is complete
        self._deferred = None
        self._threads_before = None  # PyTorch's thread count before run() set its own

    def _seed_globals(self):
        """Seed PyTorch (initial weights, dropout), NumPy's and Python's global generators from ``config.seed``."""
        torch_seed, numpy_seed, python_seed = (int(v) for v in self.seed_seq.generate_state(3))
        torch.manual_seed(torch_seed)
        np.random.seed(numpy_seed)
        random.seed(python_seed)

    @property
    def save_path(self):
        """The save directory of the run (``config.save_path``)."""
        return self.config.save_path

    def _file(self, suffix):
        return os.path.join(self.config.save_path, self.config.save_name + suffix)

    # ------------------------------------------------------------------------------------------------
    # Validation segmentation scores (valid_segmentation_metrics)
    # ------------------------------------------------------------------------------------------------
    @property
    def _segmentation_rows(self):
        """The segmentation scores for the history files and plots, or ``None`` when they are not computed."""
        return self.segmentation if self.seg_scorer is not None else None

    def _score_segmentation(self, step):
        """Predict, segment and score the validation cubes; one row of :attr:`segmentation`."""
        from elektronn.training.segmentation_scores import SCORE_NAMES
        scores = self.seg_scorer.score(self.cnn, list(zip(self.data.valid_d, self.data.valid_l)))
        self.segmentation.append([step, self.state.t_passed] + [scores[n] for n in SCORE_NAMES] + [scores['seconds']])
        logger.info('Valid segmentation: Rand error %.4f, VOI split %.3f, merge %.3f, adapted Rand error %.4f '
                    '(%i segments, %.1f s)', scores['rand_error'], scores['voi_split'], scores['voi_merge'],
                    scores['adapted_rand_error'], scores['segments'], scores['seconds'])

    # ------------------------------------------------------------------------------------------------
    # Starting afresh
    # ------------------------------------------------------------------------------------------------
    def reset(self):
        """Randomise the weights, restore the optimiser settings of the config and clear all histories."""
        c = self.config
        self.cnn.randomizeWeights()
        self.cnn.setOptimizerParams(c.SGD_params, c.CG_params, c.RPROP_params, c.LBFGS_params, c.Adam_params,
                                    c.weight_decay)
        self.cnn.CG_timeline = []
        self.CG_timeline = []
        self.history, self.timeline, self.errors, self.segmentation = [], [], [], []
        self.state = _LoopState()

    # ------------------------------------------------------------------------------------------------
    # Batches and evaluation
    # ------------------------------------------------------------------------------------------------
    def _extra_names(self):
        """Names of the arrays ``getbatch`` returns after data and labels, as the config implies."""
        c = self.config
        names = []
        if c.data_class_name is None and c.mode != 'vect-scalar' and c.target == 'malis':
            names.append('seg_gt')
        if c.lazy_labels:
            names += ['mask_class_labeled', 'mask_class_not_present']
        if c.use_example_weights:
            names.append('example_weights')
        return names

    def _split_batch(self, batch):
        """``((data, labels, *positional extras), aux keyword arguments)`` for the network."""
        if not isinstance(batch, tuple):
            batch = tuple(batch)
        if len(batch) < 2:
            raise ValueError('getbatch of %s returned %i array(s); it must return (data, labels, ...)'
                             % (type(self.data).__name__, len(batch)))
        extras = batch[2:]
        names = self._extra_names()
        aux = {}
        compiled = set(getattr(self.cnn, '_aux_names', ()))
        if len(extras) == len(names) and set(names) <= compiled:
            aux.update(zip(names, extras))
            inputs = batch[:2]
        else:
            inputs = batch  # the original's positional convention
        if self.config.class_weights is not None:
            aux['class_weights'] = self.config.class_weights
        if self.config.label_prop_thresh is not None:
            aux['label_prop_thresh'] = np.float32(self.config.label_prop_thresh)
        return inputs, aux

    def _has_valid(self):
        valid = getattr(self.data, 'valid_d', None)
        return valid is not None and hasattr(valid, '__len__') and len(valid) > 0

    def testModel(self, data_source):
        """Loss and error on one monitor batch (``monitor_batch_size`` examples) from ``data_source``.

        Dropout is off during the evaluation (the rates are restored afterwards). ``'valid'`` gives
        ``(nan, nan)`` when the data has no validation set; other sources (e.g. ``'test'`` for MNIST)
        work when the data class offers them.

        Returns:
            ``(loss, error)``: the error is a fraction for classification, ``sqrt(MSE)`` for regression.
        """
        if data_source == 'valid' and not self._has_valid():
            return np.nan, np.nan
        kwargs = dict(self.get_batch_kwargs_test, source=data_source)
        inputs, aux = self._split_batch(self.data.getbatch(**kwargs))
        cnn = self.cnn
        rates = cnn.getDropoutRates()
        if rates:
            cnn.setDropoutRates([0.0] * len(rates))
        try:
            result = cnn.get_error(*inputs, **aux)
        finally:
            if rates:
                cnn.setDropoutRates(rates)
        if len(result) == 2:  # regression: (MSE, output)
            return float(result[0]), float(np.sqrt(result[0]))
        return float(result[0]), float(result[1])

    # ------------------------------------------------------------------------------------------------
    # The loop
    # ------------------------------------------------------------------------------------------------
    def _background_processes(self):
        """Batch processes: ``background_processes`` (``True``: 2, ``False``/0: none)."""
        value = self.config.background_processes
        return 2 if value is True else int(value or 0)

    def _set_threads(self, n_proc):
        """PyTorch's CPU threads for the run: ``torch_threads``, or at most the cores the batch processes leave."""
        self._threads_before = torch.get_num_threads()
        if self.cnn.device.type != 'cpu':
            return
        wanted = self.config.torch_threads
        if wanted is None:
            wanted = min(self._threads_before, max(1, available_cores() - n_proc))
        if wanted != self._threads_before:
            torch.set_num_threads(int(wanted))
        if n_proc or self.config.torch_threads is not None:
            logger.info('Training with %i PyTorch thread(s)%s on %i CPU core(s)',
                        wanted, ' and %i batch process(es)' % n_proc if n_proc else '', available_cores())

    def _current_lr(self):
        try:
            lr = self.cnn.getLR(self.config.optimizer)
        except (ValueError, AttributeError):
            return None
        return None if lr is None else float(lr)

    def _status(self):
        st, c = self.state, self.config
        pp_loss, pp_err = ('MSE', 'std') if c.target == 'regression' else ('NLL', '%')
        lr = self._current_lr()
        text = ('%05i %sm=%.3f, train=%05.2f%s, valid=%05.3f%s, prev=%04.1f, NLLdiff=%+.1e, LR=%s, %.1f it/s, %s'
                % (st.step - 1, pp_loss, st.nll_ema, st.train_error, pp_err, st.valid_error, pp_err,
                   st.batch_char * 100, st.nll_gain, 'n/a' if lr is None else '%.5f' % lr, 1.0 / st.t_pi,
                   pprinttime(st.t_passed)))
        if self.seg_scorer is not None and self.segmentation:  # what the segmentation scores cost
            text += ', seg: Rand=%.4f (%.1f s)' % (self.segmentation[-1][2], self.segmentation[-1][-1])
        return text

    def _next_batch(self):
        if self.workers is not None:
            return self.workers.get()
        return self.data.getbatch(**self.get_batch_kwargs)

    def _stages_ahead(self):
        """Whether the next step's batch is staged on the GPU during the current step.

        Only on CUDA (a copy to the CPU gains nothing) and with background workers: a batch
        drawn here would advance the data RNG before the resume state of the current step is
        saved, and training would not continue exactly after ``--resume``.
        """
        return self.workers is not None and self.cnn.device.type == 'cuda'

    def _stage(self, batch):
        """``(batch, inputs, aux, staged)``: the network's inputs of ``batch``, and with
        :meth:`_stages_ahead` the batch already on its way to the GPU (else ``None``)."""
        inputs, aux = self._split_batch(batch)
        staged = self.cnn._stage_batch(*inputs, **aux) if self._stages_ahead() else None
        return batch, inputs, aux, staged

    def _take_batch(self):
        """This step's batch (see :meth:`_stage`), and the next one's copy started to overlap this step."""
        current, self._ahead = self._ahead, None
        if current is None:
            current = self._stage(self._next_batch())
        if self._stages_ahead():
            self._ahead = self._stage(self._next_batch())
        return current

    def _trainStep(self, plotter):
        """One update step with its bookkeeping (steps 1-7 of the module docstring)."""
        c, cnn, st = self.config, self.cnn, self.state
        i = st.step
        # From drawing the batch (waiting for a background process excepted) to counting the step, a stop
        # waits: the parameters, the optimiser, the data's random state and the step count stay in agreement.
        taken = self._take_batch() if self.workers is not None else None
        with self._uninterrupted():
            batch, inputs, aux, staged = taken or self._take_batch()
            self.last_batch = batch
            if staged is None:
                nll, _instance, t_per_train = cnn.trainingStep(*inputs, mode=c.optimizer, **aux)
            else:
                nll, _instance, t_per_train = cnn.trainingStep(staged, mode=c.optimizer)
            t_now = time.time()
            t_per_it, self._t0 = t_now - self._t0, t_now
            st.step = i + 1
        st.nll = float(nll)
        if not np.isfinite(nll):
            self._interrupt = 'diverged'
        if self.dist.active:
            self._agree(st.t_passed + t_per_it > c.max_runtime)  # before the history step's collectives
        if self._pending() == 'diverged':
            return
        st.nll_ema = 0.995 * st.nll_ema + 0.005 * st.nll
        st.t_pt = 0.8 * st.t_pt + 0.2 * t_per_train
        st.t_pi = 0.8 * st.t_pi + 0.2 * t_per_it
        st.t_passed += t_per_it
        st.batch_char = float(np.mean(inputs[1]))
        self.timeline.append([i, st.t_passed, st.nll_ema, st.nll, st.batch_char])

        self._timed_snapshots()

        schedule = c.LR_schedule or []
        while st.schedule_pos < len(schedule) and schedule[st.schedule_pos][0] <= i:
            cnn.setLR(schedule[st.schedule_pos][1] * self._lr_scale, mode=c.optimizer)
            st.schedule_pos += 1
        if i > 0 and i % 1000 == 0:
            lr = self._current_lr()
            if lr is not None:
                cnn.setLR(lr * c.LR_decay, mode=c.optimizer)

        freq = c.history_freq[0]
        if freq and i % freq == 0:
            self._historyStep(i, inputs, aux, plotter)

    def _historyStep(self, i, inputs, aux, plotter):
        c, cnn, st = self.config, self.cnn, self.state
        lr = self._current_lr()
        self.CG_timeline = [list(r) for r in cnn.CG_timeline]
        nll_after = cnn.get_loss(*inputs, **aux)[0]
        st.nll_gain = float(nll_after) - st.nll
        st.train_nll, st.train_error = self.testModel('train')
        st.valid_nll, st.valid_error = self.testModel('valid')
        if self.dist.active:  # estimates on every rank's examples, not on rank 0's alone
            st.train_nll, st.train_error, st.valid_nll, st.valid_error = self.dist.all_reduce_mean(
                [st.train_nll, st.train_error, st.valid_nll, st.valid_error])
        if c.target != 'regression':
            st.train_error *= 100
            st.valid_error *= 100
        self.errors.append([i, st.t_passed, st.train_error, st.valid_error])
        self.history.append([i, st.t_passed, st.nll_ema, st.nll, st.train_nll, st.valid_nll, st.nll_gain,
                             np.nan if lr is None else lr])
        if self.seg_scorer is not None and self.dist.is_main and self.seg_scorer.due():
            self._score_segmentation(i)
        if self.tensorboard is not None:
            self._tensorboard_scalars(i)
        if c.target == 'malis' and hasattr(self, 'malisPreviewSlice') and self.dist.is_main:
            self.malisPreviewSlice(self.last_batch, name=i)
        self._saveLast()
        self._submit_plots(plotter, i)
        if c.print_status:
            logger.info('%s', self._status())

    def _tensorboard_scalars(self, step):
        """The history values of this history step (and its segmentation scores) to TensorBoard."""
        st = self.state
        values = dict(zip(runlog.HISTORY_COLUMNS[2:], self.history[-1][2:]))
        values.update(train_error=st.train_error, valid_error=st.valid_error, step_time_s=st.t_pi,
                      train_step_time_s=st.t_pt)
        if self.segmentation and self.segmentation[-1][0] == step:
            from elektronn.training.segmentation_scores import SCORE_NAMES
            values.update(('segmentation/' + name, v) for name, v in zip(SCORE_NAMES, self.segmentation[-1][2:]))
        self.tensorboard.scalars(step, values)

    def _saveLast(self, stopping=False):
        ranks = self._gatherRandomStates()
        if not self.dist.is_main:
            return
        with self._uninterrupted(raise_deferred=not stopping):
            self.cnn.saveParameters(self._file('-LAST.param'), show=False)
            self.saveState(self._file('-LAST.param'), ranks=ranks)
            self.saveHistories()

    def _finish(self, plotter):
        ranks = self._gatherRandomStates()
        if self.dist.is_main:
            with self._uninterrupted(raise_deferred=False):  # the end: a second ctrl+c has nothing left to stop
                self.cnn.saveParameters(self._file('_end.param'))
                self.saveState(self._file('_end.param'), ranks=ranks)
                self.saveHistories()
        if plotter is not None:
            plotter.close()
        self._final_plots()
        logger.info('End of Training')
        logger.info('#' * 60 + '\n' + '#' * 60 + '\n')

    def _setupDistributed(self):
        """Under torchrun, before the loop: check the optimiser, wrap the network in DDP (once per
        network), give this rank its own random streams and scale the LR if configured.

        Raises:
            ConfigError: a line-search optimiser (CG, LBFGS).
        """
        ctx, c, cnn = self.dist, self.config, self.cnn
        try:
            distributed.check_optimizer(c.optimizer, ctx)
        except ValueError as e:
            raise ConfigError('%s: parameter \'optimizer\': %s' % (c.config_file, e)) from None
        if cnn._ddp is None:
            distributed.replicate(cnn, ctx)
            logger.info('Distributed training: %i processes (%s on %s); global batch %i x %i = %i examples per step',
                        ctx.world_size, ctx.backend, ctx.device.type, c.batch_size, ctx.world_size,
                        c.batch_size * ctx.world_size)
        if c.lr_scale_with_world_size:
            self._lr_scale = ctx.world_size
        if self._rank_seeded:
            return
        self._rank_seeded = True
        # Every rank draws other batches (and its workers other seeds) from rank 0's entropy.
        self.seed_seq = distributed.rank_seed_sequence(self.seed_seq, ctx)
        reseed(self.data, int(self.seed_seq.spawn(1)[0].generate_state(1)[0]))
        if self.state.step == 0 and self._lr_scale != 1:  # a resumed run restores the scaled learning rates
            for mode in ('SGD', 'Adam'):
                lr = cnn.getLR(mode)
                if lr is not None:
                    cnn.setLR(lr * self._lr_scale, mode=mode)
                    logger.info('lr_scale_with_world_size: %s LR %g -> %g', mode, lr, lr * self._lr_scale)

    def run(self):
        """The training loop (see the module docstring); continues from ``state.step``.

        Returns:
            str: how it ended: ``'finished'`` (n_steps, max_runtime or ``abort``), ``'killed'`` (console
            ``kill``: no final save), ``'interrupted'`` (ctrl+c without a terminal, or SIGTERM:
            ``-LAST.param`` and the resume state saved) or ``'diverged'`` (NaN/Inf loss without a
            terminal; the last good ``-LAST.param`` is kept).
        """
        c = self.config
        if self.cnn is None or self.data is None:
            raise RuntimeError('run: call loadData() and createNet() first')
        if self.dist.is_main:  # the data loaded and the network was built: now an earlier run may be moved aside
            c.prepare_save_dir()
            for folder in (self.save_path, os.path.join(self.save_path, 'Backup')):
                stale = remove_stale_temporaries(folder)
                if stale:
                    logger.info('Removed %i temporary file(s) of an interrupted write in %s', len(stale), folder)
        tee, own_tee = runlog.active_tee(), False
        if self.dist.is_main:  # one log: rank 0's
            if tee is None:
                tee, own_tee = runlog.TeeOutput().start(), True
            tee.attach(self._file('.log'))
        st = self.state
        if c.tensorboard and self.dist.is_main:
            from elektronn.training.tensorboard_log import TensorBoardLog
            self.tensorboard = TensorBoardLog(os.path.join(self.save_path, 'tensorboard'), start_step=st.step)
        if st.save_time is None:
            st.save_time = c.param_save_h
        if st.prev_number is None:
            st.prev_number = c.initial_prev_h
        if self.dist.active:
            self._setupDistributed()
        old_signals = self._install_signals()
        self._interrupt = None
        self._agreed, self._agreed_timeout = None, False
        plotter = plotting.Plotter() if c.plot_on and self.dist.is_main else None
        outcome = 'finished'
        try:
            n_proc = self._background_processes()
            self._set_threads(n_proc)
            if n_proc:
                seeds = [int(s.generate_state(1)[0]) for s in self.seed_seq.spawn(n_proc)]
                logger.info('Starting %i background processes for batch creation', n_proc)
                self.workers = BackgroundWorkers(self.data, self.get_batch_kwargs, n_proc=n_proc, seeds=seeds)
            self._t0 = time.time()
            while st.step < c.n_steps:
                try:
                    self._trainStep(plotter)
                    if plotter is not None:
                        plotter.poll()
                except (KeyboardInterrupt, _Terminated) as e:
                    if self._interrupt is None or isinstance(e, _Terminated):
                        self._interrupt = 'terminate' if isinstance(e, _Terminated) else 'console'
                if self._pending() is not None:
                    action = self._handleInterrupt()
                    self._t0 = time.time()  # console time does not count as training time
                    if action == 'kill':
                        outcome = 'killed'
                        logger.info('Killed: stopping without saving')
                        return outcome
                    if action == 'stop':
                        self._saveLast(stopping=True)
                        logger.info('Saved %s and the resume state; continue with: elektronn-train %s --resume',
                                    self._file('-LAST.param'), self.save_path)
                        return 'interrupted'
                    if action == 'diverged':
                        self.saveHistories()
                        logger.info('Stopped; %s is the last parameter file from before the divergence',
                                    self._file('-LAST.param'))
                        return 'diverged'
                    if action == 'abort':
                        logger.info('Timeout or manual Termination')
                        break
                if (self._agreed_timeout if self.dist.active else st.t_passed > c.max_runtime):
                    logger.info('Timeout or manual Termination')
                    break
            self._finish(plotter)
            plotter = None
            return outcome
        except Exception as e:
            if isinstance(e, OSError) and e.errno in _DISK_FULL:  # saving again would fail too
                logger.error('Training stopped at step %i: %s. The files saved before are intact (the resume state of '
                             'step %s); free space and continue with: elektronn-train %s --resume',
                             st.step, e, self._saved_step(), self.save_path)
                raise
            logger.error('Training stopped by an error at step %i:', st.step)
            traceback.print_exc()  # on stderr, as before
            try:
                if self.dist.is_main and all(torch.isfinite(p).all() for p in self.cnn.params):
                    self.cnn.saveParameters(self._file('_end.param'))
                self.saveHistories()
            except Exception as e:
                logger.error('Saving after the error failed too: %s', e)
            raise
        finally:
            self._ahead = None
            if self._threads_before is not None and torch.get_num_threads() != self._threads_before:
                torch.set_num_threads(self._threads_before)
            self._threads_before = None
            if self.workers is not None:
                self.workers.shutdown()
                self.workers = None
            if plotter is not None:
                plotter.close()
            if self.tensorboard is not None:
                self.tensorboard.close()
                self.tensorboard = None
            if old_signals is not None:
                for s, handler in old_signals.items():
                    signal.signal(s, handler)
            if own_tee:
                tee.stop()
