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
"""
import contextlib
import errno
import hashlib
import importlib
import json
import os
import random
import signal
import sys
import threading
import time
import traceback

import numpy as np
import torch

from elektronn.training import distributed, plotting, previews, runlog
from elektronn.training.config import ConfigError, suggest_name
from elektronn.training.console import Console
from elektronn.training.netcreation import createNet
from elektronn.training.workers import AttributeWatcher, BackgroundWorkers, _fingerprint, reseed
from elektronn.utils import (_imported_module_name, atomic_path, available_cores, import_variable_from_file,
                             pprinttime, remove_stale_temporaries, sha256_file as _sha256)

__all__ = ['Trainer', 'STATE_FORMAT']

STATE_FORMAT = 'ELEKTRONN training state'
STATE_VERSION = 1

#: Loop variables (saved for --resume) and their values at the start of a run.
_LOOP_DEFAULTS = dict(step=0, t_passed=0.0, nll_ema=0.65, t_pt=2.0, t_pi=2.0, last_save_t=0.0, save_time=None,
                      last_prev_t=None, prev_number=None, schedule_pos=0, nll=0.0, train_nll=0.0, valid_nll=0.0,
                      train_error=0.0, valid_error=0.0, nll_gain=0.0, batch_char=0.0)


#: Why the loop stops, in the order of precedence when ranks disagree (see ``Trainer._agree``).
_REASONS = (None, 'console', 'diverged', 'terminate')


class _Terminated(BaseException):
    """A second SIGTERM while the loop waits: stop now."""


class _LoopState:
    def __init__(self, **values):
        self.__dict__.update(_LOOP_DEFAULTS)
        self.__dict__.update(values)

    def to_dict(self):
        return {k: getattr(self, k) for k in _LOOP_DEFAULTS}


#: errno values of a file system that cannot take more data.
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)


class StateFileError(ValueError):
    """A resume state that cannot be used: damaged, incomplete or not a state (the message names it)."""


@contextlib.contextmanager
def _damaged_state(path):
    """Report a state whose parts are missing or unreadable as one :class:`StateFileError` naming the file."""
    try:
        yield
    except (StateFileError, FileNotFoundError):
        raise
    except (OSError, KeyError, TypeError, ValueError) as e:  # json.JSONDecodeError is a ValueError
        raise StateFileError('the resume state %s is damaged or incomplete (%s: %s); start afresh from a parameter '
                             'file of the run (param_file = ...)' % (path, type(e).__name__, e)) from None


def _state_digest(f):
    """SHA-256 of everything in an open state file but this checksum: attributes and datasets, in name order."""
    import h5py
    digest = hashlib.sha256()

    def add(name, node):
        digest.update(name.encode())
        for key in sorted(node.attrs):
            if key != 'content_sha256':
                digest.update(key.encode() + repr(node.attrs[key]).encode())
        if isinstance(node, h5py.Dataset):
            digest.update(np.ascontiguousarray(node[()]).tobytes())
    add('/', f)
    names = []
    f.visit(names.append)
    for name in sorted(names):
        add(name, f[name])
    return digest.hexdigest()


def _import_from_file(path, name):
    """The object ``name`` from the Python file ``path`` (the ``(path, class)`` form of data_class_name)."""
    try:
        return import_variable_from_file(path, name)
    except ImportError as e:
        raise ConfigError('data_class_name: %s' % e) from None
    except AttributeError:
        module = sys.modules.get(_imported_module_name(path))
        candidates = [n for n in vars(module) if not n.startswith('_')] if module is not None else []
        raise ConfigError('data_class_name: %s defines no %r%s' % (
            path, name, (' (did you mean %r?)' % suggest_name(name, candidates)) if candidates else '')) from None


def _cuda_rng_states():
    """The CUDA generators' states, one row per device, or ``None`` while CUDA is not initialised
    (reading them would initialise it)."""
    if not (torch.cuda.is_available() and torch.cuda.is_initialized()):
        return None
    return np.stack([state.numpy() for state in torch.cuda.get_rng_state_all()])


def _restore_cuda_rng(states):
    """Restore the CUDA generators from :func:`_cuda_rng_states` rows, with a note where they cannot
    all be restored (so that dropout masks will not continue as in the saved run)."""
    n_devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
    tensors = [torch.from_numpy(np.ascontiguousarray(row)) for row in states]
    if n_devices == len(tensors):
        torch.cuda.set_rng_state_all(tensors)
        return
    restored = min(n_devices, len(tensors))
    print('Note: the resume state holds the CUDA random generator states of %i GPU(s), this machine has %i: '
          'the first %i restored; dropout masks on the other GPUs do not continue as in the saved run'
          % (len(tensors), n_devices, restored))
    for index, state in enumerate(tensors[:restored]):
        torch.cuda.set_rng_state(state, device=index)


def _json_default(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError('%r is not JSON serialisable' % (value,))


class Trainer:
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
        return self.config.save_path

    def _file(self, suffix):
        return os.path.join(self.config.save_path, self.config.save_name + suffix)

    # ------------------------------------------------------------------------------------------------
    # Data and network
    # ------------------------------------------------------------------------------------------------
    def loadData(self):
        """Create ``self.data``: CNNData from the config's files, or the configured data class.

        Sets ``get_batch_kwargs`` (training batches) and ``get_batch_kwargs_test`` (monitor batches).
        """
        config = self.config
        if config.mode != 'vect-scalar' and config.data_class_name is None:
            self._loadCubes()
        else:
            self._loadDataClass()
        if config.seed is not None:  # the data's own stream (sampling, augmentation) from the run's seed
            reseed(self.data, int(self.seed_seq.spawn(1)[0].generate_state(1)[0]))

    def _loadDataClass(self):
        config = self.config
        self.get_batch_kwargs = dict(batch_size=config.batch_size)
        self.get_batch_kwargs.update(config.data_batch_kwargs)
        self.get_batch_kwargs_test = dict(batch_size=config.monitor_batch_size)
        name = config.data_class_name
        if isinstance(name, tuple):
            Data = _import_from_file(*name)
        else:
            try:
                traindata = importlib.import_module('elektronn.training.traindata')
            except ImportError as e:
                raise ConfigError('data_class_name %r: elektronn.training.traindata cannot be imported (%s)'
                                  % (name, e)) from e
            if not hasattr(traindata, name):
                candidates = [n for n in vars(traindata) if n[:1].isupper()]
                raise ConfigError('data_class_name %r is not a class in elektronn.training.traindata%s' % (
                    name, (' (did you mean %r?)' % suggest_name(name, candidates)) if candidates else ''))
            Data = getattr(traindata, name)
        self.data = Data(**config.data_load_kwargs)
        self.preview_data = None

    def _loadCubes(self):
        config = self.config
        try:
            from elektronn.training.CNNData import CNNData
        except ImportError as e:
            raise NotImplementedError('training on h5 cubes needs elektronn.training.CNNData, which this '
                                      'installation lacks (%s); set data_class_name to use a data class' % e) from e
        strided = not np.any(config.MFP) and config.mode == 'img-img'
        common = dict(strided=strided, flip=config.flip_data, grey_augment_channels=config.grey_augment_channels,
                      ret_info=config.lazy_labels, ret_example_weights=config.use_example_weights,
                      ignore_thresh=config.example_ignore_threshold)
        # training batches take warp_on from the data's attribute, so that `data.warp_on = ...` in the
        # console acts (and reaches the background workers)
        self.get_batch_kwargs = dict(batch_size=config.batch_size, warp_on=None, **common)
        self.get_batch_kwargs_test = dict(batch_size=config.monitor_batch_size, warp_on=False, **common)
        dims = config.dimensions
        affinity = config.target if config.target in ('affinity', 'malis') else False
        self.data = CNNData(patch_size=config.patch_size, stride=dims.pred_stride, offset=dims.offset,
                            n_dim=config.n_dim, n_lab=config.n_lab, anistropic_data=config.anisotropic_data,
                            mode=config.mode, zchxy_order=config.zchxy_order, border_mode=config.border_mode,
                            pre_process=config.pre_process, upright_x=config.upright_x,
                            float_label=config.target == 'regression', affinity=affinity)
        self.data.warp_on = config.warp_on
        self.data.addDataFromFile(config.data_path, config.label_path, config.d_files, config.l_files,
                                  config.cube_prios, config.valid_cubes, config.downsample_xy)
        self.preview_data = None
        if config.preview_data_path and config.mode == 'img-img':
            try:
                self.preview_data = previews.load_preview_cubes(config.preview_data_path, self.data.data_mean,
                                                                self.data.data_std)
            except ValueError as e:
                raise ConfigError('%s: parameter \'preview_data_path\': %s' % (config.config_file, e)) from None

    def createNet(self):
        """Build ``self.cnn`` from the config and the data (``n_lab``, ``n_ch``, example shape)."""
        config, data = self.config, self.data
        if data is None:
            raise RuntimeError('createNet: call loadData() first (the network needs n_lab and n_ch from the data)')
        config.init_device()
        n_lab = int(data.n_lab)
        if config.n_lab is not None and config.n_lab != n_lab:
            raise ConfigError('%s: parameter \'n_lab\' is %i but the data has %i classes'
                              % (config.config_file, config.n_lab, n_lab))
        if config.class_weights is not None and config.target == 'nll' and len(config.class_weights) != n_lab:
            raise ConfigError('%s: parameter \'class_weights\' needs one weight per class (%i), got %i'
                              % (config.config_file, n_lab, len(config.class_weights)))
        if config.mode != 'vect-scalar':
            shape = tuple(getattr(data, 'example_shape', ()) or ())
            if config.data_class_name is not None and len(shape) == len(config.patch_size) + 1 \
                    and shape[1:] != tuple(config.patch_size):
                raise ConfigError('%s: the data class gives examples of shape %s (channels first) but the CNN input '
                                  'size is %s; change desired_input, filters or pool so that the input fits the data'
                                  % (config.config_file, shape, tuple(config.patch_size)))
            self.cnn = createNet(config, config.patch_size, int(data.n_ch), n_lab, config.dimensions)
            self.seg_scorer = self._segmentation_scorer()
        else:
            n_ch = data.n_taps if config.rnn_layer_kwargs is not None else None
            self.cnn = createNet(config, tuple(data.example_shape), n_ch, n_lab, None)
        return self.cnn

    def _segmentation_scorer(self):
        """The scorer of ``valid_segmentation_metrics``, or ``None`` (off, or no validation cubes)."""
        c = self.config
        if not c.valid_segmentation_metrics:
            return None
        if not hasattr(self.data, 'valid_l') or not self._has_valid():
            print('WARNING: valid_segmentation_metrics is set but the data have no validation cubes (valid_cubes): '
                  'no segmentation scores')
            return None
        from elektronn.training.segmentation_scores import ValidSegmentationScorer
        return ValidSegmentationScorer(c.valid_segmentation_metrics, c.target, c.dimensions.offset)

    @property
    def _segmentation_rows(self):
        """The segmentation scores for the history files and plots, or ``None`` when they are not computed."""
        return self.segmentation if self.seg_scorer is not None else None

    def _score_segmentation(self, step):
        """Predict, segment and score the validation cubes; one row of :attr:`segmentation`."""
        from elektronn.training.segmentation_scores import SCORE_NAMES
        scores = self.seg_scorer.score(self.cnn, list(zip(self.data.valid_d, self.data.valid_l)))
        self.segmentation.append([step, self.state.t_passed] + [scores[n] for n in SCORE_NAMES] + [scores['seconds']])
        print('Valid segmentation: Rand error %.4f, VOI split %.3f, merge %.3f, adapted Rand error %.4f '
              '(%i segments, %.1f s)' % (scores['rand_error'], scores['voi_split'], scores['voi_merge'],
                                         scores['adapted_rand_error'], scores['segments'], scores['seconds']))

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

    def debugGetCNNBatch(self):
        """img-img only: draw a monitor-sized, unstrided training batch without warping and plot its
        first example as ``debugGetCNNBatch.png`` (data | label | overlay; 3D: the z-slice at the
        network's z offset, which the first label slice belongs to).

        Returns:
            ``(data, label, info1, info2)``; affinity labels are reduced to the minimum over the edges.
        """
        c = self.config
        if c.mode != 'img-img' or c.data_class_name is not None:
            print("debugGetCNNBatch(): only available for 'img-img' training on h5 cubes")
            return None
        batch = self.data.getbatch(c.monitor_batch_size, source='train', strided=False, flip=c.flip_data,
                                   grey_augment_channels=c.grey_augment_channels, ret_info=True, warp_on=False)
        data, label, info1, info2 = batch[0], batch[1], batch[-2], batch[-1]
        if label.ndim == 5:  # affinity graphs (bs, 3, z, x, y)
            print('Plot Batch: showing the minimal affinity only.')
            label = label.min(axis=1)
        if c.n_dim == 2:
            image, lab = data[0, 0], label[0]
        else:
            z = int(c.dimensions.offset[0])
            image, lab = data[0, z, 0], label[0, 0]
        plotting.plot_debug_batch(image, lab, os.path.join(self.config.prepare_save_dir(), 'debugGetCNNBatch.png'))
        return data, label, info1, info2

    # ------------------------------------------------------------------------------------------------
    # Previews (img-img with preview_data_path)
    # ------------------------------------------------------------------------------------------------
    def predictAndWrite(self, raw_img, number=0, export_class='all', block_name='', z_thick=5):
        """Predict ``raw_img`` ``(ch, x, y, z)`` densely (``cnn.predictDense``) and save the central
        ``z_thick`` output slices as PNGs ``<save_name>-pred-<block>-c<class>-z<z>-<number>hrs.png``
        (and, once, the raw slices they belong to; see :mod:`elektronn.training.previews`)."""
        pred = self.cnn.predictDense(raw_img)
        offset = self.config.dimensions.offset
        z_off = int(offset[0]) if len(offset) == 3 else 0
        previews.write_preview_slices(pred, raw_img, self.config.prepare_save_dir(), self.config.save_name,
                                      block_name, number,
                                      export_class, z_thick, z_off, write_raw=not self.saved_raw_preview)

    def previewSlice(self, number=0, export_class='all', max_z_pred=5):
        """Preview predictions of the central slices of every cube of the preview file (see
        :meth:`predictAndWrite`)."""
        if self.config.mode != 'img-img':
            print("previewSlice(): only available for 'img-img' training")
            return
        if self.preview_data is None:
            raise ValueError('previewSlice needs preview data: set preview_data_path in the config')
        z_thick = previews.preview_depth(self.cnn, max_z_pred)
        for k, raw in enumerate(self.preview_data):
            z_sh = raw.shape[-1]
            if z_thick > z_sh:
                raise ValueError('preview cube %i has %i z-slices; this CNN needs at least %i' % (k, z_sh, z_thick))
            start = (z_sh - z_thick) // 2
            self.predictAndWrite(raw[..., start:start + z_thick], number, export_class, k, max_z_pred)
        self.saved_raw_preview = True

    def previewSliceFromTrainData(self, cube_i=0, off=(0, 0, 0), sh=(10, 400, 400), number=0, export_class='all'):
        """Preview the prediction of a block of training cube ``cube_i`` (the original's helper).

        The block starts at ``off`` and has the shape ``sh``, both ``(z, x, y)``; for 3D networks its
        depth is raised to at least the network's input depth. (The original cut y with ``off[1]``
        and ``sh[1]``; here y uses ``off[2]`` and ``sh[2]``.) The PNGs are written as by
        :meth:`predictAndWrite`. Only for ``'img-img'`` training.
        """
        if self.config.mode != 'img-img':
            print("previewSliceFromTrainData(): only available for 'img-img' training")
            return
        sh = [int(s) for s in sh]
        off = [int(o) for o in off]
        if self.cnn.n_dim == 3:
            sh[0] = max(sh[0], int(self.cnn.input_shape[1]))
        cube = self.data.train_d[cube_i]  # (z, ch, x, y)
        raw = np.asarray(cube[off[0]:off[0] + sh[0], :, off[1]:off[1] + sh[1], off[2]:off[2] + sh[2]])
        raw = np.ascontiguousarray(raw.transpose(1, 2, 3, 0))  # (ch, x, y, z)
        self.predictAndWrite(raw, number, export_class)
        self.saved_raw_preview = True

    def malisPreviewSlice(self, batch, name='A'):
        """MALIS statistics of ``batch`` (``(data, affinities, seg_gt, ...)``, target ``'malis'``): print
        a summary and save ``MALIS-<name>.pkl`` in the save directory (the original's helper).

        The pickle holds, as records (see :func:`elektronn.utils.pickleLoad`): the predicted connection
        probabilities ``(z, x, y, 3)``, the affinity labels ``(z, x, y, 3)``, the positive and
        ``log(1 + negative)`` pair counts per edge ``(z, x, y, 3)``, the segmentation ``(z, x, y)`` and the
        data's first channel ``(z, x, y)``, all of the batch's first example.
        """
        from elektronn.utils import pickleSave
        if batch is None:
            return None
        pred = self.cnn.class_probabilities(batch[0])[0]  # (6, z, x, y)
        (nll, n_pos, n_neg, n_tot, false_splits, false_merges, rand_index, pos_count,
         neg_count) = self.cnn.malis_stats(*batch[:3])
        print('MALIS: NLL=%.4g, pairs total=%i pos=%i neg=%i, false splits=%i, false merges=%i, Rand index=%.4g'
              % (nll, n_tot, n_pos, n_neg, false_splits, false_merges, rand_index))
        pred_slices = pred[1::2].transpose(1, 2, 3, 0)
        pos_slices = np.asarray(pos_count[0]).transpose(1, 2, 3, 0)
        neg_slices = np.log(np.asarray(neg_count[0]).transpose(1, 2, 3, 0) + 1)
        data = np.asarray(batch[0])[0, :, 0]
        aff_gt = np.asarray(batch[1])[0].transpose(1, 2, 3, 0)
        seg_gt = np.asarray(batch[2])[0]
        path = os.path.join(self.config.prepare_save_dir(), 'MALIS-%s.pkl' % (name,))
        pickleSave([pred_slices, aff_gt, pos_slices, neg_slices, seg_gt, data], path)
        return path

    # ------------------------------------------------------------------------------------------------
    # Saving and resuming
    # ------------------------------------------------------------------------------------------------
    def saveHistories(self):
        """Write the history arrays (``Backup/*.npy``) and ``<save_name>.history.csv`` (rank 0 only)."""
        if not self.dist.is_main:
            return
        self.config.prepare_save_dir()
        plotting.saveHist(self.timeline, self.history, self.CG_timeline, self.errors, self.config.save_name,
                          self.save_path)
        runlog.write_history_csv(self._file('.history.csv'), self.history, self.errors,
                                 segmentation=self._segmentation_rows)

    def _lrs(self):
        lrs = {}
        for mode in set(self.cnn.optimizer_state()) | {'SGD', 'Adam'}:
            try:
                lr = self.cnn.getLR(mode)
            except (ValueError, AttributeError):
                continue
            if lr is not None:
                lrs[mode] = float(lr)
        return lrs

    def saveState(self, params, path=None, ranks=None):
        """Write everything ``resume`` needs (HDF5, atomically): a copy of the parameter file ``params``,
        optimiser states, loop variables, learning rates, schedule position, histories and RNG states
        (``ranks``: under DDP every rank's, from :meth:`_gatherRandomStates`).

        The state holds its own copy of the parameters, so that parameters and optimiser state are
        of one step by construction: a crash between writing ``params`` and the state leaves the
        previous state whole, and resuming takes its parameters, not the newer file."""
        import h5py
        if path is None:
            self.config.prepare_save_dir()
            path = self._file('-LAST.state.h5')
        data_rng = getattr(self.data, 'rng', None)
        np_state = np.random.get_state()
        info = dict(loop=self.state.to_dict(), optimizer=self.config.optimizer,
                    history_freq=int(self.config.history_freq[0]), lrs=self._lrs(),
                    momentum=float(self.cnn.SGD_momentum), weight_decay=float(self.cnn.global_weightdecay),
                    seed_entropy=self.seed_seq.entropy, seeds_spawned=self.seed_seq.n_children_spawned,
                    params_file=os.path.basename(params),
                    params_sha256=_sha256(params) if os.path.exists(params) else None,
                    python_random=random.getstate(),
                    data_rng=data_rng.bit_generator.state if isinstance(data_rng, np.random.Generator) else None,
                    numpy_global=[np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])])
        with atomic_path(path) as tmp:
            with h5py.File(tmp, 'w') as f:
                f.attrs['format'] = STATE_FORMAT
                f.attrs['format_version'] = STATE_VERSION
                f.attrs['info'] = json.dumps(info, default=_json_default)
                if ranks is not None:
                    f.attrs['ranks'] = json.dumps(ranks, default=_json_default)
                for name, rows in (('history', self.history), ('timeline', self.timeline), ('errors', self.errors),
                                   ('CG_timeline', self.CG_timeline), ('segmentation', self.segmentation)):
                    f.create_dataset(name, data=np.asarray(rows, dtype=np.float64))
                if os.path.exists(params):  # the parameters travel inside the state: one file, one step
                    with open(params, 'rb') as pf:
                        f.create_dataset('params_file', data=np.frombuffer(pf.read(), np.uint8))
                f.create_dataset('torch_rng', data=torch.get_rng_state().numpy())
                cuda_rng = _cuda_rng_states()
                if cuda_rng is not None:
                    f.create_dataset('cuda_rng', data=cuda_rng)
                f.create_dataset('numpy_global_key', data=np_state[1])
                group = f.create_group('optimizer')
                for name, state in self.cnn.optimizer_state().items():
                    g = group.create_group(name)
                    scalars = {}
                    for key, value in state.items():
                        if isinstance(value, list):
                            sub = g.create_group(key)
                            for k, arr in enumerate(value):
                                sub.create_dataset('%05d' % k, data=np.asarray(arr))
                        else:
                            scalars[key] = value
                    g.attrs['scalars'] = json.dumps(scalars, default=_json_default)
                f.attrs['content_sha256'] = _state_digest(f)

    def resume(self, path=None):
        """Continue a run from its save directory: parameters (``-LAST.param``, strict), optimiser
        states, step, learning rates, schedule position, histories and RNG states.

        Raises:
            FileNotFoundError: the save directory holds no resume state.
            StateFileError: (a ``ValueError``) the state is damaged or incomplete.
            ValueError: the state does not fit this network.
        """
        import h5py
        path = path or self._file('-LAST.state.h5')
        if not os.path.exists(path):
            raise FileNotFoundError('no resume state %s in the save directory; a run writes it at every history '
                                    'step and when it stops' % path)
        try:
            f = h5py.File(path, 'r')
        except OSError as e:
            raise StateFileError('the resume state %s cannot be read: it is damaged or incomplete (%s); start afresh '
                                 'from a parameter file of the run (param_file = ...)' % (path, e)) from None
        with f, _damaged_state(path):
            if f.attrs.get('format') != STATE_FORMAT:
                raise StateFileError('%s is not an ELEKTRONN training state' % path)
            if int(f.attrs.get('format_version', 0)) > STATE_VERSION:
                raise StateFileError('%s was written by a newer ELEKTRONN (state version %s)'
                                     % (path, f.attrs.get('format_version')))
            if 'content_sha256' in f.attrs and f.attrs['content_sha256'] != _state_digest(f):
                raise StateFileError('the resume state %s is damaged: its content does not match its checksum; start '
                                     'afresh from a parameter file of the run (param_file = ...)' % path)
            info = json.loads(f.attrs['info'])
            own_params = f['params_file'][()].tobytes() if 'params_file' in f else None  # older states: none
            ranks = json.loads(f.attrs['ranks']) if 'ranks' in f.attrs else None  # DDP runs only
            arrays = {name: np.asarray(f[name]) for name in ('history', 'timeline', 'errors', 'CG_timeline')}
            segmentation = np.asarray(f['segmentation']) if 'segmentation' in f else np.zeros((0, 7))  # older
            torch_rng = np.asarray(f['torch_rng'])
            cuda_rng = np.asarray(f['cuda_rng']) if 'cuda_rng' in f else None  # older states: none
            np_key = np.asarray(f['numpy_global_key'])
            optimizer = {}
            for name, g in f['optimizer'].items():
                state = json.loads(g.attrs['scalars'])
                for key, sub in g.items():
                    state[key] = [np.asarray(sub[k]) for k in sorted(sub)]
                optimizer[name] = state
        params = os.path.join(os.path.dirname(path), info['params_file'])
        cnn = self.cnn
        self._load_state_params(cnn, path, params, own_params, info.get('params_sha256'), info['loop'].get('step'))
        cnn.load_optimizer_state(optimizer)
        for mode, lr in info['lrs'].items():
            cnn.setLR(lr, mode=mode)
        cnn.setSGDMomentum(info['momentum'])
        cnn.setWeightDecay(info['weight_decay'])
        self.config.optimizer = info['optimizer']
        self.config.history_freq[0] = info['history_freq']
        self.state = _LoopState(**info['loop'])
        self.config.use_existing_dir = True  # the run continues in its directory: run() must not move it aside
        self.history, self.timeline, self.errors, self.CG_timeline = (
            [list(r) for r in arrays[n]] for n in ('history', 'timeline', 'errors', 'CG_timeline'))
        self.segmentation = [list(r) for r in segmentation] if segmentation.ndim == 2 else []
        cnn.CG_timeline = list(self.CG_timeline)
        torch.set_rng_state(torch.from_numpy(torch_rng))
        if cuda_rng is not None:
            _restore_cuda_rng(cuda_rng)
        name, pos, has_gauss, gauss = info['numpy_global']
        np.random.set_state((name, np_key, pos, has_gauss, gauss))
        version, internal, gauss_next = info['python_random']
        random.setstate((version, tuple(internal), gauss_next))
        if info['data_rng'] is not None and isinstance(getattr(self.data, 'rng', None), np.random.Generator):
            self.data.rng.bit_generator.state = info['data_rng']
        self.seed_seq = np.random.SeedSequence(info['seed_entropy'], n_children_spawned=info['seeds_spawned'])
        if ranks is not None or self.dist.active:
            self._restoreRandomStates(ranks)
        print('Resuming %s at step %i (%s of training, LR %s)' % (self.config.save_name, self.state.step,
                                                                    pprinttime(self.state.t_passed), info['lrs']))

    # ------------------------------------------------------------------------------------------------
    # The loop
    # ------------------------------------------------------------------------------------------------
    @staticmethod
    def _load_state_params(cnn, state_path, params, own_params, sha256, step):
        """Load the parameters of a resume state: its own copy, or (older states) the file it names, which
        must be the file it was saved with."""
        if own_params is not None:
            if os.path.exists(params) and _sha256(params) != hashlib.sha256(own_params).hexdigest():
                print('Note: %s is from another step than the resume state %s (the run stopped between writing '
                      'the two); resuming from the parameters of step %s stored in the state'
                      % (params, state_path, step))
            import tempfile
            with tempfile.TemporaryDirectory(prefix='elektronn-resume-') as folder:
                copy = os.path.join(folder, os.path.basename(params))
                with open(copy, 'wb') as f:
                    f.write(own_params)
                cnn.loadParameters(copy, strict=True)
            return
        if not os.path.exists(params):
            raise FileNotFoundError('the resume state %s names the parameter file %s, which does not exist'
                                    % (state_path, params))
        if sha256 and _sha256(params) != sha256:
            raise ValueError('%s and the resume state %s are from different steps (the run stopped between writing '
                             'the two); resuming would pair parameters with another step\'s optimiser state. Start '
                             'afresh from a parameter file (param_file = ...) such as %s, or resume a run saved by '
                             'this version (its states hold their parameters)' % (params, state_path, params))
        cnn.loadParameters(params, strict=True)

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
            print('Training with %i PyTorch thread(s)%s on %i CPU core(s)'
                  % (wanted, ' and %i batch process(es)' % n_proc if n_proc else '', available_cores()))

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

        if (st.t_passed - st.last_save_t) / 3600.0 > c.param_save_h:
            st.last_save_t = st.t_passed
            if self.dist.is_main:
                cnn.saveParameters(self._file('-%sh.param' % round(st.save_time, 6)), show=False)
            st.save_time += c.param_save_h
        if self.preview_data is not None and self.dist.is_main and self._preview_due():
            st.last_prev_t = st.t_passed
            c.preview_kwargs['number'] = round(st.prev_number, 6)
            st.prev_number += c.prev_save_h
            try:
                self.previewSlice(**c.preview_kwargs)
            except Exception as e:
                print('Preview predictions failed (%s: %s). Are the preview raw data in the right format?'
                      % (type(e).__name__, e))

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

    def _preview_due(self):
        st, c = self.state, self.config
        hours = st.t_passed / 3600.0
        if st.last_prev_t is None:
            return hours > c.initial_prev_h
        return (st.t_passed - st.last_prev_t) / 3600.0 > c.prev_save_h

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
        if c.target == 'malis' and hasattr(self, 'malisPreviewSlice') and self.dist.is_main:
            self.malisPreviewSlice(self.last_batch, name=i)
        self._saveLast()
        if plotter is not None and i > 30:
            plotter.submit(self.timeline, self.history, self.CG_timeline, self.errors, c.save_name, self.save_path,
                           segmentation=self._segmentation_rows)
        if c.print_status:
            print(self._status())

    def _gatherRandomStates(self):
        """DDP: every rank's random states (torch, CUDA, NumPy, Python, the data's generator, the seed
        sequence), gathered on rank 0 for the resume state (``None`` elsewhere and in a single process)."""
        if not self.dist.active:
            return None
        data_rng = getattr(self.data, 'rng', None)
        np_state = np.random.get_state()
        mine = dict(torch=torch.get_rng_state().numpy(), cuda=_cuda_rng_states(), python=random.getstate(),
                    numpy=[np_state[0], np_state[1], int(np_state[2]), int(np_state[3]), float(np_state[4])],
                    data=data_rng.bit_generator.state if isinstance(data_rng, np.random.Generator) else None,
                    seed=[self.seed_seq.entropy, list(self.seed_seq.spawn_key), self.seed_seq.n_children_spawned])
        return self.dist.gather(mine)

    def _restoreRandomStates(self, ranks):
        """Resume: this rank's random states from the state's per-rank list (``None``: a single-process
        run), with a note where they cannot be restored exactly (another number of processes)."""
        n_saved, world = (len(ranks) if ranks is not None else 1), self.dist.world_size
        if n_saved != world:
            print('Note: the run was trained by %i process(es) and is resumed by %i: %s' % (n_saved, world, (
                "every rank starts its data and worker random streams afresh from the run's seed" if world > 1
                else "rank 0's random states are restored, the other ranks' examples are not drawn")))
            return
        if world == 1:
            return
        state = ranks[self.dist.rank]
        torch.set_rng_state(torch.from_numpy(np.asarray(state['torch'], dtype=np.uint8)))
        if state['cuda'] is not None:
            _restore_cuda_rng(np.asarray(state['cuda'], dtype=np.uint8))
        name, key, pos, has_gauss, gauss = state['numpy']
        np.random.set_state((name, np.asarray(key, dtype=np.uint32), pos, has_gauss, gauss))
        version, internal, gauss_next = state['python']
        random.setstate((version, tuple(internal), gauss_next))
        if state['data'] is not None and isinstance(getattr(self.data, 'rng', None), np.random.Generator):
            self.data.rng.bit_generator.state = state['data']
        entropy, spawn_key, spawned = state['seed']
        self.seed_seq = np.random.SeedSequence(entropy, spawn_key=tuple(spawn_key), n_children_spawned=spawned)
        self._rank_seeded = True  # _setupDistributed must not reseed
        print('Restored the random states of all %i ranks' % world)

    def _saved_step(self):
        """The step of the resume state in the save directory, or ``'none'``."""
        import h5py
        try:
            with h5py.File(self._file('-LAST.state.h5'), 'r') as f:
                return json.loads(f.attrs['info'])['loop']['step']
        except (OSError, KeyError, ValueError):
            return 'none'

    def _saveLast(self, stopping=False):
        ranks = self._gatherRandomStates()
        if not self.dist.is_main:
            return
        with self._uninterrupted(raise_deferred=not stopping):
            self.cnn.saveParameters(self._file('-LAST.param'), show=False)
            self.saveState(self._file('-LAST.param'), ranks=ranks)
            self.saveHistories()

    def _namespace(self):
        st = self.state
        return dict(self=self, cnn=self.cnn, data=self.data, config=self.config, batch=self.last_batch, np=np,
                    i=max(st.step - 1, 0), nll=st.nll, save_name=self.config.save_name, schedule=self.config.LR_schedule,
                    workers=self.workers, bg_worker=self.workers)

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
            print('\nSIGTERM received: saving and stopping')
            return 'stop'
        if reason == 'diverged':
            print('The NN diverged to a NaN/Inf loss (step %i). The last batch is `batch` (data batch[0], labels '
                  'batch[1]); load earlier parameters with `load %s-LAST.param`.'
                  % (self.state.step - 1, self.config.save_name))
            if not interactive:
                return 'diverged'
        elif not interactive:
            print('\nInterrupted (%s, so no console): saving and stopping'
                  % ('distributed training' if self.dist.active else 'stdin is not a terminal'))
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
            print('Forwarded to the background workers: %s'
                  % ', '.join(['data.%s' % n for n in sent] + (['batch kwargs'] if kwargs_changed else [])))

    def _shareConsole(self, action, changed, kwargs_changed, optimizer_before):
        """DDP, rank 0 after its console: send the action and everything the console may have changed
        (parameters, optimiser states and settings, LRs, momentum, weight decay, dropout, history_freq,
        data attributes, batch kwargs) to the other ranks, which apply it in :meth:`_followConsole`."""
        c, cnn = self.config, self.cnn
        try:
            distributed.check_optimizer(c.optimizer, self.dist)
        except ValueError as e:
            print('%s; keeping %s' % (e, optimizer_before))
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

    def _finish(self, plotter):
        c = self.config
        ranks = self._gatherRandomStates()
        if self.dist.is_main:
            with self._uninterrupted(raise_deferred=False):  # the end: a second ctrl+c has nothing left to stop
                self.cnn.saveParameters(self._file('_end.param'))
                self.saveState(self._file('_end.param'), ranks=ranks)
                self.saveHistories()
        if plotter is not None:
            plotter.close()
        if c.plot_on and self.timeline and self.dist.is_main:
            plotting.plotInfo(self.timeline, self.history, self.CG_timeline, self.errors, c.save_name,
                              self.save_path, save_history=False,
                              segmentation=self._segmentation_rows)
        print('End of Training')
        print('#' * 60 + '\n' + '#' * 60 + '\n')

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
            print('Distributed training: %i processes (%s on %s); global batch %i x %i = %i examples per step'
                  % (ctx.world_size, ctx.backend, ctx.device.type, c.batch_size, ctx.world_size,
                     c.batch_size * ctx.world_size))
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
                    print('lr_scale_with_world_size: %s LR %g -> %g' % (mode, lr, lr * self._lr_scale))

    def run(self):
        """The training loop (see the module docstring); continues from ``state.step``.

        Returns:
            How it ended: ``'finished'`` (n_steps, max_runtime or ``abort``), ``'killed'`` (console
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
                    print('Removed %i temporary file(s) of an interrupted write in %s' % (len(stale), folder))
        tee, own_tee = runlog.active_tee(), False
        if self.dist.is_main:  # one log: rank 0's
            if tee is None:
                tee, own_tee = runlog.TeeOutput().start(), True
            tee.attach(self._file('.log'))
        st = self.state
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
                print('Starting %i background processes for batch creation' % n_proc)
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
                        print('Killed: stopping without saving')
                        return outcome
                    if action == 'stop':
                        self._saveLast(stopping=True)
                        print('Saved %s and the resume state; continue with: elektronn-train %s --resume'
                              % (self._file('-LAST.param'), self.save_path))
                        return 'interrupted'
                    if action == 'diverged':
                        self.saveHistories()
                        print('Stopped; %s is the last parameter file from before the divergence'
                              % self._file('-LAST.param'))
                        return 'diverged'
                    if action == 'abort':
                        print('Timeout or manual Termination')
                        break
                if (self._agreed_timeout if self.dist.active else st.t_passed > c.max_runtime):
                    print('Timeout or manual Termination')
                    break
            self._finish(plotter)
            plotter = None
            return outcome
        except Exception as e:
            if isinstance(e, OSError) and e.errno in _DISK_FULL:  # saving again would fail too
                print('Training stopped at step %i: %s. The files saved before are intact (the resume state of step '
                      '%s); free space and continue with: elektronn-train %s --resume'
                      % (st.step, e, self._saved_step(), self.save_path))
                raise
            print('Training stopped by an error at step %i:' % st.step)
            traceback.print_exc()
            try:
                if self.dist.is_main and all(torch.isfinite(p).all() for p in self.cnn.params):
                    self.cnn.saveParameters(self._file('_end.param'))
                self.saveHistories()
            except Exception as e:
                print('Saving after the error failed too: %s' % e)
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
            if old_signals is not None:
                for s, handler in old_signals.items():
                    signal.signal(s, handler)
            if own_tee:
                tee.stop()
