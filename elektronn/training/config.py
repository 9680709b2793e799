"""Training configuration: the master defaults, the user defaults file and the run file.

A run is configured at three levels, each overriding the one before:

1. the **master defaults** below (:data:`MASTER_PARAMS`, the single source of every parameter's
   name, default and meaning; the config template ``examples/config_template.py`` and the
   documentation's parameter table are generated from it),
2. ``~/.elektronn.config``, a plain-Python file of user defaults,
3. the **run file** given to ``elektronn-train`` (plain Python, e.g. ``MNIST_CNN_warp_config.py``).

:class:`Config` reads and checks them. Every name a file defines must be a known parameter (a
typo fails with the nearest valid name: "Did you mean ...?"); modules, functions, classes and
names starting with ``_`` are ignored, so a file may ``import`` what it needs. Shapes are written
in ``(x, y)``/``(x, y, z)`` order in the files and converted to the internal ``(z, x, y)`` order for
3D. ``~`` is expanded in paths.

``save_path`` is the save directory, used verbatim (old config files append the run name
themselves: ``save_path += save_name + '/'``). When neither the user file nor the run file sets
it, the directory is ``~/CNN_Training/<save_name>/``.

Regenerate the template and the documentation table after changing :data:`MASTER_PARAMS`::

    python -m elektronn.training.config --template > examples/config_template.py
    python -m elektronn.training.config --rst > docs/config_parameters.inc
"""
import builtins
import copy
import os
import pprint
import stat
import sys
import time
import types
from collections import namedtuple

import numpy as np

from elektronn.utils import atomic_write

__all__ = ['Config', 'ConfigError', 'MASTER_PARAMS', 'master_defaults', 'MasterConfig', 'DefaultConfig',
           'USER_CONFIG_PATH', 'MODES', 'TARGETS', 'OPTIMIZER_NAMES', 'suggest_name', 'render_template',
           'render_rst_table', 'xyz2zxy']

#: The user defaults file (level 2).
USER_CONFIG_PATH = '~/.elektronn.config'
#: Save directory base when no level sets ``save_path``.
DEFAULT_SAVE_ROOT = '~/CNN_Training/'

MODES = ('img-img', 'img-scalar', 'vect-scalar')
TARGETS = ('nll', 'regression', 'nll_mutiple_binary', 'nll_weak', 'affinity', 'malis')
OPTIMIZER_NAMES = ('SGD', 'CG', 'RPROP', 'LBFGS', 'Adam')
BORDER_MODES = ('crop', 'keep', '0-pad', 'mirror', 'c-pad', 'reject')

_PATH_KEYS = ('save_path', 'param_file', 'data_path', 'label_path', 'preview_data_path')


class ConfigError(ValueError):
    """A configuration file or value is wrong; the message names the file, the parameter and the rule."""


class _Invalid(Exception):
    """Raised by a parameter check with the rule that ``value`` breaks."""


# ---------------------------------------------------------------------------------------------------
# Parameter checks: each takes a value and returns it normalised, or raises _Invalid(rule)
# ---------------------------------------------------------------------------------------------------
def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_number(v):
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _is_seq(v):
    return isinstance(v, (list, tuple))


def _bool(v):
    if isinstance(v, (bool, np.bool_)) or (_is_int(v) and v in (0, 1)):
        return bool(v)
    raise _Invalid('must be True or False')


#: The largest count a size parameter takes (feature maps, units, batch size, classes, input and
#: filter sizes): beyond it a value is a typo, and would only fail later deep inside (or fill the memory).
MAX_SIZE = 10 ** 5


def _int(minimum=None, maximum=None):
    def check(v):
        if not _is_int(v) or (minimum is not None and v < minimum) or (maximum is not None and v > maximum):
            bounds = [] if minimum is None else ['>= %i' % minimum]
            bounds += [] if maximum is None else ['<= %i' % maximum]
            raise _Invalid('must be an integer' + (' ' + ' and '.join(bounds) if bounds else ''))
        return int(v)
    return check


def _number(low=None, high=None, low_open=False, high_open=False, allow_inf=False):
    def check(v):
        ok = _is_number(v) and (allow_inf or np.isfinite(v)) and not np.isnan(v)
        if ok and low is not None:
            ok = v > low if low_open else v >= low
        if ok and high is not None:
            ok = v < high if high_open else v <= high
        if not ok:
            rng = []
            if low is not None:
                rng.append('%s %g' % ('>' if low_open else '>=', low))
            if high is not None:
                rng.append('%s %g' % ('<' if high_open else '<=', high))
            raise _Invalid('must be a %snumber' % ('' if allow_inf else 'finite ') + (' ' + ' and '.join(rng) if rng
                                                                                    else ''))
        return float(v) if isinstance(v, (float, np.floating)) else v
    return check


def _optional(check, what='None'):
    def wrapped(v):
        if v is None:
            return None
        try:
            return check(v)
        except _Invalid as e:
            raise _Invalid('%s, or %s' % (e, what)) from None
    return wrapped


def _str(v):
    if not isinstance(v, str):
        raise _Invalid('must be a string')
    return v


def _choice(*options):
    def check(v):
        if v not in options:
            raise _Invalid('must be one of %s' % ', '.join(repr(o) for o in options))
        return v
    return check


def _list_of(item_check, what):
    def check(v):
        if not _is_seq(v):
            raise _Invalid('must be a list of %s' % what)
        try:
            return [item_check(x) for x in v]
        except _Invalid:
            raise _Invalid('must be a list of %s' % what) from None
    return check


def _dict(v):
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise _Invalid('must be a dict')
    return dict(v)


def _settings(allowed):
    """A dict of optimiser hyper-parameters: ``allowed`` maps each key to the check of its value
    (``None`` is accepted for every key: the optimiser's default)."""
    def check(v):
        v = _dict(v)
        for key, value in v.items():
            if key not in allowed:
                raise _Invalid('has no setting %r%s (settings: %s)' % (key, _did_you_mean(key, list(allowed)),
                                                                       ', '.join(allowed)))
            if value is None:
                continue
            try:
                v[key] = allowed[key](value)
            except _Invalid as e:
                raise _Invalid('setting %r %s (it is %r)' % (key, e, value)) from None
        return v
    return check


_POSITIVE = _number(0, low_open=True)
_FRACTION = _number(0, 1, high_open=True)



def _int_or_shape(rule):
    """A positive int, or a 2/3-tuple of positive ints (returned as a list)."""
    def check(v):
        if _is_int(v) and 1 <= v <= MAX_SIZE:
            return int(v)
        if _is_seq(v) and len(v) in (2, 3) and all(_is_int(x) and 1 <= x <= MAX_SIZE for x in v):
            return [int(x) for x in v]
        raise _Invalid(rule)
    return check


_shape_entry = _int_or_shape('must be a list of integers in 1..%i or of (x, y)/(x, y, z) tuples of them' % MAX_SIZE)
_desired_input = _int_or_shape('must be an integer in 1..%i or an (x, y)/(x, y, z) tuple of them' % MAX_SIZE)


def _shape_list(v):
    if not _is_seq(v):
        raise _Invalid('must be a list (one entry per conv layer) of positive integers or of (x, y)/(x, y, z) tuples')
    return [_shape_entry(x) for x in v]


def _activation(v):
    if isinstance(v, str):
        return v
    if _is_seq(v) and all(isinstance(x, str) for x in v):
        return list(v)
    raise _Invalid("must be a string such as 'relu' or a list of them (one per layer)")


def _segmentation_metrics(v):
    if v is None or v is False:
        return None
    if v is not True and not isinstance(v, dict):
        raise _Invalid('must be None, False, True or a dict of segmentation settings')
    from elektronn.training.segmentation_scores import normalise_settings
    try:
        return normalise_settings(v)
    except ValueError as e:
        raise _Invalid(str(e)) from None


def _pooling_mode(v):
    modes = ('max', 'maxabs')
    if isinstance(v, str) and v in modes:
        return v
    if _is_seq(v) and all(x in modes for x in v):
        return list(v)
    raise _Invalid("must be 'max' or 'maxabs', or a list of them (one per conv layer)")


def _mfp(v):
    if v is None or isinstance(v, (bool, np.bool_)):
        return v
    if _is_seq(v) and all(isinstance(x, (bool, np.bool_)) or (_is_int(x) and x in (0, 1)) for x in v):
        return [int(x) for x in v]
    raise _Invalid('must be True/False or a list of 0/1 (one per conv layer)')


def _dropout(v):
    if v is None:
        return None
    if _is_number(v) and 0 <= v < 1:
        return float(v)
    if _is_seq(v) and all(x is None or (_is_number(x) and 0 <= x < 1) for x in v):
        return list(v)
    raise _Invalid('must be a rate in [0, 1), a list of rates (one per layer) or None')


def _files(v):
    if not _is_seq(v) or not all(_is_seq(x) and len(x) in (2, 3) and all(isinstance(s, str) for s in x[:2])
                                 for x in v):
        raise _Invalid("must be a list of (file name, dataset key) pairs (HDF5 or Zarr), e.g. [('raw_0.h5', 'raw')], optionally "
                       "with a region: ('stack.h5', 'raw', dict(z=(0, 24)))")
    from elektronn.training.cubes import parse_file_entry
    for k, x in enumerate(v):
        if len(x) == 3:
            try:
                parse_file_entry(x, 'entry', k)
            except ValueError as e:
                raise _Invalid(str(e)) from None
    return [tuple(x) for x in v]


def _warp_on(v):
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if _is_number(v) and 0 <= v <= 1:
        return v
    raise _Invalid('must be True/False or the fraction of warped patches in [0, 1]')


def _border_mode(v):
    return _choice(*BORDER_MODES)(v)


def _downsample(v):
    if v is False or v is None:
        return False
    if _is_int(v) and v >= 1:
        return int(v)
    raise _Invalid('must be False or an integer factor >= 1')


def _background_processes(v):
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if _is_int(v) and v >= 0:
        return int(v)
    raise _Invalid('must be False, True (2 processes) or a number of processes')


def _data_class(v):
    if v is None:
        return None
    if isinstance(v, str) and v.isidentifier():
        return v
    if _is_seq(v) and len(v) == 2 and all(isinstance(s, str) for s in v) and v[1].isidentifier():
        return (os.path.expanduser(v[0]), v[1])
    raise _Invalid("must be None, a class name in elektronn.training.traindata such as 'MNISTData', "
                   "or a (path to a .py file, class name) pair")


def _history_freq(v):
    if _is_int(v) and v >= 0:
        return [int(v)]
    if isinstance(v, list) and len(v) == 1 and _is_int(v[0]) and v[0] >= 0:
        return [int(v[0])]
    raise _Invalid('must be a list holding one integer >= 0 (steps between history steps; 0 disables them)')


def _weight_decay(v):
    if v is False or v is None:
        return False
    return _number(0)(v)


def _class_weights(v):
    if v is None:
        return None
    if _is_seq(v) or isinstance(v, np.ndarray):
        arr = np.asarray(v)
        if arr.ndim == 1 and arr.size and np.issubdtype(arr.dtype, np.number) and np.all(arr >= 0):
            return [float(x) for x in arr]
    raise _Invalid('must be None or a list of non-negative weights, one per class')


def _lr_schedule(v):
    if v is None:
        return None
    rule = 'must be None or a list of (step, learning rate) pairs sorted by step'
    if not _is_seq(v):
        raise _Invalid(rule)
    out = []
    for entry in v:
        if not (_is_seq(entry) and len(entry) == 2 and _is_int(entry[0]) and entry[0] >= 0
                and _is_number(entry[1]) and np.isfinite(entry[1]) and entry[1] > 0):
            raise _Invalid(rule)
        out.append((int(entry[0]), float(entry[1])))
    if any(b[0] <= a[0] for a, b in zip(out, out[1:])):
        raise _Invalid(rule + ' (steps must increase)')
    return out


def _gpu(v):
    from elektronn.net.device import parse_gpu
    try:
        parse_gpu(v)
    except ValueError:
        raise _Invalid("must be False (CPU), 'auto' or a GPU index") from None
    return v


def _save_name(v):
    v = _str(v)
    if not v or os.sep in v or (os.altsep and os.altsep in v):
        raise _Invalid('must be a non-empty name without path separators')
    return v


# ---------------------------------------------------------------------------------------------------
# The master defaults: the single source of every parameter
# ---------------------------------------------------------------------------------------------------
_Param = namedtuple('_Param', 'name default section flag doc check template_value template_after')


def _p(name, default, section, flag, doc, check, template_value=None, template_after=None):
    return _Param(name, default, section, flag, doc, check, template_value, template_after)


_S_SETUP = 'Pipeline setup'
_S_GENERAL = 'Paths and general'
_S_NET = 'Network architecture (the output layer with n_lab outputs is added automatically)'
_S_DATA = "Data: image cubes for CNNData (ignored in mode 'vect-scalar' and with a data class)"
_S_PREVIEW = "Data: previews (only 'img-img')"
_S_COMMON = 'Data: common'
_S_ALT = 'Data: alternative data classes (e.g. MNIST; required for vect-scalar)'
_S_OPT = 'Optimisation'
_S_HYPER = 'Optimiser hyper-parameters'

#: Every configuration parameter: name, master default, section, flag ('*' important, '$' only
#: for special cases), meaning, and the check its value must pass.
MASTER_PARAMS = (
    _p('save_path', DEFAULT_SAVE_ROOT + 'Test/', _S_SETUP, '*',
       "Save directory of the run, used verbatim: config files append the run name themselves "
       "(save_path += save_name + '/'). When no file sets it: '~/CNN_Training/<save_name>/'.", _str,
       template_value=repr(DEFAULT_SAVE_ROOT)),
    _p('plot_on', True, _S_SETUP, '', 'Plot the training progress (PNG files in the save directory) at every '
       'history step.', _bool),
    _p('print_status', True, _S_SETUP, '', 'Print a status line at every history step.', _bool),
    _p('device', False, _S_SETUP, '', "Device when elektronn-train gets no --gpu: False (CPU), 'auto' (a free "
       'GPU or the CPU) or a GPU index.', _gpu),
    _p('seed', None, _S_SETUP, '', 'Random seed: None (fresh entropy for every run) or an integer >= 0 from which '
       'the initial weights, the data sampling, augmentation, dropout and the streams of the background processes '
       'follow. Without background_processes two CPU runs with the same seed are bit-identical; with them each '
       'worker draws the same batches, but which worker delivers the next batch depends on timing.',
       _optional(_int(0))),
    _p('torch_threads', None, _S_SETUP, '', 'PyTorch threads for training on the CPU: None (the cores minus the '
       'background processes, at least 1) or a number >= 1.', _optional(_int(1))),
    _p('param_save_h', 1.0, _S_SETUP, '', 'Hours between permanent parameter snapshots '
       '(<save_name>-<hours>h.param).', _number(0, low_open=True)),
    _p('initial_prev_h', 1.0, _S_SETUP, '', 'Hours until the first preview prediction.', _number(0)),
    _p('prev_save_h', 3.0, _S_SETUP, '', 'Hours between preview predictions.', _number(0, low_open=True)),

    _p('save_name', 'Test', _S_GENERAL, '*', 'Name of the run: folder name and prefix of every file it writes.',
       _save_name, template_after="save_path += save_name + '/'"),
    _p('overwrite', True, _S_GENERAL, '', 'Start afresh in the save directory: an earlier run there is moved aside '
       'to <save_path>.old-<date>-<time>/ (True), or the run stops with an error (False). Nothing is deleted.',
       _bool),
    _p('param_file', None, _S_GENERAL, '', 'Parameter file to initialise the weights from (adaptive loading: '
       'matching layers are loaded, differing shapes are fitted), or None.', _optional(_str)),

    _p('activation_func', 'relu', _S_NET, '', "Activation of the conv and MLP layers: one of 'relu', 'tanh', "
       "'sigmoid', 'abs', 'linear', 'maxout <k>' for all, or a list with one per layer.", _activation),
    _p('batch_size', 1, _S_NET, '*', 'Examples (patches) per update step.', _int(1, MAX_SIZE)),
    _p('dropout_rates', [], _S_NET, '*', 'Dropout rate per layer (conv + MLP), one rate for all, or []/None for '
       'no dropout. The output layer never has dropout.', _dropout),
    _p('n_dim', 2, _S_NET, '*', "2 or 3 spatial dimensions of the CNN (ignored for 'vect-scalar').",
       _choice(2, 3)),
    _p('desired_input', 100, _S_NET, '*', 'Wanted input patch size: an int or an (x, y)/(x, y, z) tuple; the '
       'nearest valid size is used.', _desired_input),
    _p('filters', [], _S_NET, '*', 'Filter size per conv layer: ints or (x, y)/(x, y, z) tuples.', _shape_list),
    _p('pool', [], _S_NET, '*', 'Max-pooling factor per conv layer: ints or (x, y)/(x, y, z) tuples.',
       _shape_list),
    _p('nof_filters', [], _S_NET, '*', 'Number of feature maps per conv layer.',
       _list_of(_int(1, MAX_SIZE), 'integers in 1..%i' % MAX_SIZE)),
    _p('pooling_mode', 'max', _S_NET, '$', "Pooling function: 'max' or 'maxabs', for all or per conv layer.",
       _pooling_mode),
    _p('MFP', [], _S_NET, '*', 'Max-fragment-pooling per conv layer (0/1), or True/False for all.', _mfp),
    _p('rnn_layer_kwargs', None, _S_NET, '$', "A recurrent layer after the conv layers: dict(n_hid=..., "
       "activation_func='tanh', iterations=None), or None.", _optional(_dict)),
    _p('MLP_layers', [], _S_NET, '*', 'Units of the fully connected layers after the conv layers.',
       _list_of(_int(1, MAX_SIZE), 'integers in 1..%i' % MAX_SIZE)),
    _p('target', 'nll', _S_NET, '', 'Loss: %s.' % ', '.join(repr(t) for t in TARGETS), _choice(*TARGETS)),

    _p('data_path', '/', _S_DATA, '*', 'Folder of the raw data files (file names are appended to it).', _str),
    _p('label_path', '/', _S_DATA, '*', 'Folder of the label files.', _str),
    _p('d_files', [], _S_DATA, '*', 'Raw data cubes: list of (file name, dataset key), HDF5 (.h5) or Zarr (.zarr), optionally with a '
       "region as third element, e.g. dict(z=(0, 24)).", _files),
    _p('l_files', [], _S_DATA, '*', 'Label cubes: list of (file name, dataset key), HDF5 or Zarr, in the order of d_files.',
       _files),
    _p('cube_prios', None, _S_DATA, '', 'Relative sampling weights of the training cubes, or None (proportional '
       'to the label cube size).', _optional(_list_of(_number(0), 'non-negative numbers'))),
    _p('valid_cubes', [], _S_DATA, '', 'Indices (into d_files) of the cubes used for validation.',
       _list_of(_int(0), 'cube indices')),
    _p('example_ignore_threshold', 0.0, _S_DATA, '', 'Discard a patch whose fraction of ignored (negative) '
       'labels exceeds this.', _optional(_number(0, 1))),
    _p('grey_augment_channels', [0], _S_DATA, '*', 'Channels that get random grey-value augmentation; [] '
       'disables it.', _list_of(_int(0), 'channel indices')),
    _p('use_example_weights', False, _S_DATA, '$', 'Weight the examples (boosting-like; the weights come from '
       'the last input channel).', _bool),
    _p('flip_data', True, _S_DATA, '', 'Random mirroring and x/y transposition of patches.', _bool),
    _p('anisotropic_data', True, _S_DATA, '*', 'z is the coarse axis: 2D patches only from xy-slices, 3D flips '
       'never swap z with x/y.', _bool),
    _p('lazy_labels', False, _S_DATA, '$', "Train with lazy labels (per-cube 'info' masks).", _bool),
    _p('warp_on', False, _S_DATA, '', 'Warping augmentation: True, or the fraction of patches to warp '
       '(CPU-heavy, use background_processes).', _warp_on),
    _p('border_mode', 'crop', _S_DATA, '', "'img-scalar' only, when the images do not fit a valid input size: "
       "'crop', 'keep' (next smaller size), '0-pad', 'mirror', 'c-pad' (next larger size; c-pad: the border "
       "mean) or 'reject'.", _border_mode),
    _p('pre_process', None, _S_DATA, '', "'standardise' (zero mean, unit std over all pixels) or None.",
       _optional(_choice('standardise'))),
    _p('zchxy_order', False, _S_DATA, '', 'The files are stored in (z, (ch,) x, y) order instead of '
       '((ch,) x, y, z).', _bool),
    _p('upright_x', False, _S_DATA, '', '2D: mirror only along y (e.g. handwriting, upright scenes).', _bool),
    _p('downsample_xy', False, _S_DATA, '', 'Downsample data and labels in x and y by this integer factor '
       'when loading, or False.', _downsample),

    _p('preview_data_path', None, _S_PREVIEW, '', 'HDF5 file or Zarr store with one or more raw cubes ((ch,) x, y, z), values '
       '0-255, to predict previews on, or None.', _optional(_str)),
    _p('preview_kwargs', dict(export_class=1, max_z_pred=5), _S_PREVIEW, '', "Preview settings: export_class "
       "(int, list or 'all'), max_z_pred (number of z-slices).", _dict),

    _p('mode', 'img-img', _S_COMMON, '*', "Kind of data and labels: 'img-img' (dense labels), 'img-scalar' (one "
       "label per image) or 'vect-scalar' (feature vectors).", _choice(*MODES)),
    _p('n_lab', None, _S_COMMON, '*', 'Number of classes (outputs), or None to detect it from the labels.',
       _optional(_int(1, MAX_SIZE))),
    _p('background_processes', False, _S_COMMON, '', 'Prepare batches in background processes: False, True (2 '
       'processes) or the number of processes.', _background_processes),

    _p('data_class_name', None, _S_ALT, '', "A data class instead of CNNData: a class name in "
       "elektronn.training.traindata (e.g. 'MNISTData') or a (path to a .py file, class name) pair.",
       _data_class),
    _p('data_load_kwargs', dict(), _S_ALT, '', 'Keyword arguments for the data class constructor.', _dict),
    _p('data_batch_kwargs', dict(), _S_ALT, '', 'Extra keyword arguments of getbatch for training batches '
       '(batch_size is added automatically).', _dict),

    _p('n_steps', 10 ** 12, _S_OPT, '*', 'Number of update steps.', _int(0)),
    _p('max_runtime', 24 * 3600, _S_OPT, '*', 'Maximal training time in seconds (console time does not count).',
       _number(0, low_open=True, allow_inf=True)),
    _p('history_freq', [500], _S_OPT, '*', 'Steps between history steps (estimates, status line, plots, '
       '-LAST.param), as a one-element list so the console can change it; [0] disables them.', _history_freq),
    _p('monitor_batch_size', 10, _S_OPT, '*', 'Examples for the train/valid estimates (rounded down to a '
       'multiple of batch_size).', _int(1, MAX_SIZE)),
    _p('valid_segmentation_metrics', None, _S_OPT, '', "'img-img' only: at every history step predict the valid "
       'cubes densely, segment them (seeded watershed, or agglomeration of affinities) and score the segmentation '
       '(Rand error, VOI split/merge: history CSV, log, <save_name>.Segmentation.png). None/False: off; True: the '
       'defaults; or a dict of elektronn.segmentation.Segmenter settings (threshold, min_seed_distance, min_size, '
       "two_d, merge_threshold) plus channel (the boundary class, default 1) and every (evaluate every n-th history "
       'step). Costs a dense prediction per history step (the seconds are in the status line).',
       _segmentation_metrics),
    _p('weight_decay', False, _S_OPT, '$', 'L2 weight decay coefficient, or False (0).', _weight_decay),
    _p('class_weights', None, _S_OPT, '$', 'Weight per class in the loss (not normalised), or None.',
       _class_weights),
    _p('label_prop_thresh', None, _S_OPT, '$', 'Label propagation: train unlabelled (-1) positions on '
       'predictions more certain than this threshold in (0.5, 1), or None.',
       _optional(_number(0.5, 1, low_open=True, high_open=True))),
    _p('optimizer', 'SGD', _S_OPT, '$', 'Optimiser: %s.' % ', '.join(repr(o) for o in OPTIMIZER_NAMES),
       _choice(*OPTIMIZER_NAMES)),
    _p('LR_decay', 0.993, _S_OPT, '*', 'Factor applied to the learning rate after every 1000 steps.',
       _number(0, low_open=True)),
    _p('LR_schedule', None, _S_OPT, '*', 'List of (step, learning rate): set the LR at these steps (independent '
       'of the decay), or None.', _lr_schedule),
    _p('lr_scale_with_world_size', False, _S_OPT, '', 'Distributed training (torchrun): multiply the learning '
       'rates (and LR_schedule) by the number of processes (linear scaling rule: the global batch is batch_size '
       'times the number of processes). No effect in a single process.', _bool),

    _p('SGD_params', dict(LR=0.001, momentum=0.9), _S_HYPER, '*', 'SGD: initial learning rate and momentum.',
       _settings(dict(LR=_POSITIVE, momentum=_FRACTION))),
    _p('SSGD_params', dict(LR=0.01, momentum=0.9, var_momentum=0.9, var_cuttoff=3.0), _S_HYPER, '$',
       'Kept for old config files; no optimiser uses it.', _dict),
    _p('RPROP_params', dict(penalty=0.35, gain=0.2, beta=0.7, initial_update_size=1e-4), _S_HYPER, '$',
       'RPROP: step-size penalty and gain, initial step size.',
       _settings(dict(penalty=_FRACTION, gain=_number(0), beta=_number(0, 1, low_open=True),
                      initial_update_size=_POSITIVE))),
    _p('Adam_params', dict(LR=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8), _S_HYPER, '$',
       'Adam: learning rate, moment decays and epsilon.', _settings(dict(LR=_POSITIVE, beta1=_FRACTION, beta2=_FRACTION, epsilon=_POSITIVE))),
    _p('CG_params', dict(n_steps=4, alpha=0.35, beta=0.75, max_step=0.02, min_step=8e-5), _S_HYPER, '$',
       'CG: line searches per batch, Armijo constant, step shrink factor, largest and smallest step.',
       _settings(dict(n_steps=_int(1), alpha=_number(0, 1, low_open=True, high_open=True),
                      beta=_number(0, 1, low_open=True, high_open=True), max_step=_POSITIVE, min_step=_POSITIVE,
                      only_descent=_bool, show=_bool))),
    _p('LBFGS_params', dict(maxfun=40, maxiter=4, m=10, factr=1e2, pgtol=1e-9, iprint=-1), _S_HYPER, '$',
       'L-BFGS (scipy): function evaluations, iterations, memory, tolerances, verbosity.',
       _settings(dict(maxfun=_int(1), maxiter=_int(1), m=_int(1), factr=_POSITIVE, pgtol=_POSITIVE,
                      iprint=_int()))),
)

_PARAMS_BY_NAME = {p.name: p for p in MASTER_PARAMS}

#: Names a run file should set (a warning lists those it leaves at the master value).
_MANDATORY_ALWAYS = ('SGD_params', 'batch_size', 'max_runtime', 'monitor_batch_size', 'n_steps', 'n_lab',
                     'save_name', 'mode')
_MANDATORY_CNN = ('desired_input', 'filters', 'n_dim', 'nof_filters', 'pool')
_MANDATORY_MLP = ('MLP_layers',)
_MANDATORY_FILES = ('d_files', 'data_path', 'l_files', 'label_path')


def master_defaults():
    """A fresh copy of every parameter's master default, ``{name: value}``."""
    return {p.name: copy.deepcopy(p.default) for p in MASTER_PARAMS}


# ---------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------
def levenshtein(a, b):
    """Edit distance between two strings (insertions, deletions, substitutions)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def suggest_name(name, candidates):
    """The candidate nearest to ``name`` (edit distance, ignoring case first)."""
    return min(candidates, key=lambda c: (levenshtein(name.lower(), c.lower()), levenshtein(name, c)))


def _did_you_mean(name, candidates):
    return ' (did you mean %r?)' % suggest_name(name, candidates) if candidates else ''


def xyz2zxy(shapes):
    """Per-layer shapes in ``(x, y, z)`` order to the internal ``(z, x, y)`` order (scalars unchanged)."""
    return [[s[2], s[0], s[1]] if _is_seq(s) and len(s) == 3 else s for s in shapes]


def _read_python_file(path, what):
    """Execute a config file and return the names it defines (parameters only).

    Raises:
        ConfigError: the file cannot be read or raises, naming the file and line.
    """
    try:
        with open(path) as f:
            source = f.read()
    except OSError as e:
        raise ConfigError('cannot read the %s %s: %s' % (what, path, e)) from None
    namespace = {'__file__': path, '__name__': '__elektronn_config__', '__builtins__': builtins}
    try:
        code = compile(source, path, 'exec')
    except SyntaxError as e:
        raise ConfigError('%s %s, line %s: syntax error: %s%s' % (
            what, path, e.lineno, e.msg, ' (Python 2 print statement? use print(...))'
            if 'print' in (e.text or '') else '')) from None
    try:
        exec(code, namespace)
    except Exception as e:
        tb = e.__traceback__
        line = None
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == path:
                line = tb.tb_lineno
            tb = tb.tb_next
        raise ConfigError('%s %s%s raised %s: %s' % (what, path, '' if line is None else ', line %i,' % line,
                                                     type(e).__name__, e)) from e
    return {k: v for k, v in namespace.items()
            if not k.startswith('_') and not isinstance(v, (types.ModuleType, types.FunctionType, type))}


def _check_known(names, path, what):
    for key in names:
        if key not in _PARAMS_BY_NAME:
            raise ConfigError('%s %s: %r is not a valid configuration parameter. Did you mean %r?'
                              % (what, path, key, suggest_name(key, list(_PARAMS_BY_NAME))))


def _is_save_dir(path):
    """Whether ``path`` looks like a directory an ELEKTRONN run made (it has a Backup/ folder)."""
    return os.path.isdir(os.path.join(path, 'Backup'))


def _move_aside(path, config_file):
    """Rename the directory ``path`` to ``<path>.old-<YYYYmmdd-HHMMSS>`` (``-2``, ``-3``, ... when taken)
    next to it; returns the new path (with a trailing separator)."""
    base = os.path.normpath(path)
    stem = '%s.old-%s' % (base, time.strftime('%Y%m%d-%H%M%S'))
    target, k = stem, 1
    while os.path.lexists(target):
        k += 1
        target = '%s-%i' % (stem, k)
    try:
        os.rename(base, target)
    except OSError as e:
        raise ConfigError('%s: cannot move the earlier run in %s aside to %s: %s' % (config_file, path, target, e)) \
            from None
    return os.path.join(target, '')


def _copy_file(src, dst, mode=0o755):
    with open(src, 'rb') as f:
        content = f.read()
    with atomic_write(dst, 'wb') as f:
        f.write(content)
    os.chmod(dst, mode)


# ---------------------------------------------------------------------------------------------------
# Config objects
# ---------------------------------------------------------------------------------------------------
class MasterConfig:
    """The master defaults as attributes (kept for scripts written for the original)."""

    def __init__(self):
        self.__dict__.update(master_defaults())


class DefaultConfig(MasterConfig):
    """The master defaults overridden by ``~/.elektronn.config`` (when it exists)."""

    def __init__(self):
        super().__init__()
        path = os.path.expanduser(USER_CONFIG_PATH)
        if os.path.exists(path):
            values = _read_python_file(path, 'user config file')
            _check_known(values, path, 'user config file')
            self.__dict__.update(values)


def __getattr__(name):
    # ``default_config`` (the original's module-level singleton) is built on first use, so that a
    # broken ~/.elektronn.config fails where it is read, not at import.
    if name == 'default_config':
        return DefaultConfig()
    raise AttributeError('module %r has no attribute %r' % (__name__, name))


class Config:
    """A checked training configuration; every parameter of :data:`MASTER_PARAMS` is an attribute.

    Reading steps: master defaults, ``~/.elektronn.config``, the run file; type checks; fixing values
    (monitor batch size a multiple of the batch size, xyz -> zxy for 3D, per-layer broadcasting);
    consistency checks; existence of the data files; the CNN input size (``dimensions``,
    ``patch_size``) for image modes.

    Making a Config only reads, checks and computes: it touches no file and selects no device, so
    a config (or later a data) error never affects an earlier run in the save directory. The two
    steps with side effects are explicit, idempotent methods that honour the constructor's
    arguments:

    * :meth:`init_device` selects the device (before the network is built);
    * :meth:`prepare_save_dir` makes the save directory with ``Backup/`` (right before the run
      first writes into it; an earlier run there is moved aside, never deleted, see
      :meth:`backupScripts`);
    * :meth:`prepare_run` does both.

    Args:
        config_file: The run file.
        gpu: ``--gpu`` value (``False``/``'false'``: CPU, ``'auto'``, or an index); ``None`` takes the
            config's ``device``.
        trainer_file: Script that drives the training; copied to ``Backup/elektronn-train``.
        use_existing_dir: Use the existing save directory as it is (prediction, ``--resume``):
            :meth:`prepare_save_dir` does nothing.
        override_MFP_to_active: Switch max-fragment-pooling on in every pooling layer and use batch
            size 1 (for fast dense prediction with a training config).
        imposed_input_size: Input size replacing ``desired_input`` (internal ``(z, x, y)`` order).
            When every pooling layer uses max-fragment-pooling (e.g. with ``override_MFP_to_active``),
            a size of at least the field of view is used exactly: the dilated MFP takes any such
            size. Otherwise it snaps to a valid size like ``desired_input``.
        init_device: Whether :meth:`init_device` selects the device (``elektronn.net.device.initGPU``);
            ``False``: the caller selects it (e.g. under torchrun), :meth:`init_device` does nothing.
        check_files: Check that the training data files exist. Prediction passes ``False``: it
            needs the network, not the data.

    Raises:
        ConfigError: naming the file, the parameter and the rule it breaks.
    """

    def __init__(self, config_file, gpu=None, trainer_file=None, use_existing_dir=False,
                 override_MFP_to_active=False, imposed_input_size=None, init_device=True, check_files=True):
        self.config_file = os.path.abspath(os.path.expanduser(config_file))
        # what prepare_run() does later: the constructor has no side effects
        self._gpu = gpu
        self._trainer_file = trainer_file
        #: Use the save directory as it is (:meth:`prepare_save_dir` does nothing); a Trainer that
        #: resumed the run in it sets this, so that the run continues there.
        self.use_existing_dir = bool(use_existing_dir)
        self._init_device = init_device
        self._device = None  # the device init_device() selected
        self._prepared_dir = None  # the save directory prepare_save_dir() made
        self.override_MFP_to_active = override_MFP_to_active
        self.imposed_input_size = imposed_input_size
        self.dimensions = None
        self.patch_size = None
        if not os.path.isfile(self.config_file):
            raise ConfigError('config file %s does not exist' % self.config_file)

        self.user_keys, self.custom_keys = self.parseConfig()
        self.typeChecks()
        self.fixValues()
        self.checkConfig()
        if check_files:
            self.checkFiles()
        if self.mode != 'vect-scalar':
            self.setDimensions()

    # -- the steps with side effects (explicit, each done once) ------------------------------------
    def init_device(self):
        """Select the device for the networks built from now on (``elektronn.net.device.initGPU``
        with the ``gpu`` argument, else the config's ``device``), once.

        Does nothing when the Config was made with ``init_device=False``. Call it before the network
        is built (``Trainer.createNet``).

        Returns:
            The selected ``torch.device``, or ``None`` with ``init_device=False``.
        """
        if not self._init_device:
            return None
        if self._device is None:
            from elektronn.net.device import initGPU
            self._device = initGPU(self.device if self._gpu is None else self._gpu)
        return self._device

    def prepare_save_dir(self, trainer_file=None):
        """Make the save directory with ``Backup/`` (see :meth:`backupScripts`), once per ``save_path``.

        Does nothing with ``use_existing_dir`` (the constructor's argument, also an attribute; set it
        when the run continues in the existing directory, e.g. after resuming). Call it right before
        the run first writes into the save directory, i.e. after the data loaded and the network was
        built, so that an error before never touches an earlier run.

        Args:
            trainer_file: Script copied to ``Backup/elektronn-train`` (default: the constructor's
                ``trainer_file``).

        Returns:
            The save directory.

        Raises:
            ConfigError: the directory exists and may not be replaced (see :meth:`backupScripts`).
        """
        if not self.use_existing_dir and self._prepared_dir != self.save_path:
            self.backupScripts(self._trainer_file if trainer_file is None else trainer_file)
        return self.save_path

    def prepare_run(self, trainer_file=None):
        """:meth:`init_device` and :meth:`prepare_save_dir`: everything before a run, each step once
        (calling it again does nothing)."""
        self.init_device()
        self.prepare_save_dir(trainer_file)

    # -- reading ----------------------------------------------------------------------------------
    def _error(self, name, rule, value=None, show_value=True):
        got = (', got %r' % (value,)) if show_value else ''
        return ConfigError('%s: parameter %r %s%s' % (self.config_file, name, rule, got))

    def parseConfig(self):
        """Read the three levels into attributes; returns the names set by the user file and the run file."""
        print('Reading config-file %s' % self.config_file)
        values = master_defaults()
        user_path = os.path.expanduser(USER_CONFIG_PATH)
        user = {}
        if os.path.exists(user_path):
            print('Reading User Default Config %s' % user_path)
            user = _read_python_file(user_path, 'user config file')
            _check_known(user, user_path, 'user config file')
            self.user_config_file = user_path
        else:
            self.user_config_file = None
        values.update(user)
        custom = _read_python_file(self.config_file, 'config file')
        _check_known(custom, self.config_file, 'config file')
        values.update(custom)
        if 'save_path' not in user and 'save_path' not in custom:
            values['save_path'] = DEFAULT_SAVE_ROOT + str(values['save_name']) + '/'
        self.__dict__.update(values)
        return set(user), set(custom)

    def typeChecks(self):
        """Check every parameter's type and range (and normalise it, e.g. tuples to lists)."""
        for p in MASTER_PARAMS:
            value = getattr(self, p.name)
            try:
                setattr(self, p.name, p.check(value))
            except _Invalid as e:
                raise self._error(p.name, str(e), value) from None
        for key in _PATH_KEYS:
            value = getattr(self, key)
            if isinstance(value, str):
                setattr(self, key, os.path.expanduser(value))
        self.save_path = os.path.join(os.path.abspath(self.save_path), '')

    def fixValues(self):
        """Bring values into the internal standard form (see the class docstring)."""
        if self.monitor_batch_size % self.batch_size:
            fixed = max(self.batch_size, self.monitor_batch_size - self.monitor_batch_size % self.batch_size)
            print('Note: monitor_batch_size %i changed to %i (a multiple of batch_size %i)'
                  % (self.monitor_batch_size, fixed, self.batch_size))
            self.monitor_batch_size = fixed
        n_conv = len(self.filters)
        if self.mode != 'vect-scalar':
            for name in ('filters', 'pool'):
                for entry in getattr(self, name):
                    if _is_seq(entry) and len(entry) != self.n_dim:
                        raise self._error(name, 'entries must be ints or %i-tuples for n_dim=%i'
                                          % (self.n_dim, self.n_dim), getattr(self, name))
            if _is_seq(self.desired_input) and len(self.desired_input) != self.n_dim:
                raise self._error('desired_input', 'must be an int or a %i-tuple for n_dim=%i'
                                  % (self.n_dim, self.n_dim), self.desired_input)
            if self.n_dim == 3:  # files use (x, y, z), everything inside (z, x, y)
                self.filters = xyz2zxy(self.filters)
                self.pool = xyz2zxy(self.pool)
                if _is_seq(self.desired_input):
                    x, y, z = self.desired_input
                    self.desired_input = [z, x, y]
        if self.MFP is None or self.MFP is False or self.MFP == []:
            self.MFP = [0] * n_conv
        elif self.MFP is True:
            self.MFP = [1] * n_conv
        if self.override_MFP_to_active:
            self.MFP = [int(np.max(p) > 1) for p in self.pool]
            self.batch_size = 1
        if self.imposed_input_size is not None:
            self.desired_input = list(self.imposed_input_size) if _is_seq(self.imposed_input_size) \
                else self.imposed_input_size
        self.n_layers = n_conv + len(self.MLP_layers)
        if isinstance(self.pooling_mode, str):
            self.pooling_mode = [self.pooling_mode] * n_conv
        if isinstance(self.activation_func, str):
            self.activation_func = [self.activation_func] * self.n_layers
        if self.dropout_rates is None or not _is_seq(self.dropout_rates):
            self.dropout_rates = [self.dropout_rates] * self.n_layers
        if self.class_weights is not None:
            self.class_weights = np.array(self.class_weights, dtype=np.float32)
            print('Note: class_weights are used as given (not normalised)')
        if self.example_ignore_threshold is None:
            self.example_ignore_threshold = 0.0

    def checkConfig(self):
        """Warn about unset important parameters; raise on inconsistent ones."""
        mandatory = list(_MANDATORY_ALWAYS)
        if self.mode in ('img-img', 'img-scalar'):
            mandatory += _MANDATORY_CNN
        if self.mode == 'vect-scalar':
            mandatory += _MANDATORY_MLP
        if self.data_class_name is None:
            mandatory += _MANDATORY_FILES
        missing = [name for name in mandatory if name not in self.custom_keys and name not in self.user_keys]
        if missing:
            print('\nWARNING: the following important config variables are not set in %s; their master '
                  'defaults are used, which may not be what you want:\n%s\n' % (self.config_file, missing))

        def rule(ok, name, message, value=None, show_value=True):
            if not ok:
                raise self._error(name, message, getattr(self, name) if value is None else value, show_value)

        n_conv = len(self.filters)
        rule(len(self.pool) == n_conv and len(self.nof_filters) == n_conv, 'filters',
             'filters, pool and nof_filters must have one entry per conv layer (got %i, %i and %i entries)'
             % (n_conv, len(self.pool), len(self.nof_filters)), show_value=False)
        rule(len(self.dropout_rates) in (0, self.n_layers), 'dropout_rates',
             'needs one rate per layer (%i conv + %i MLP = %i) or must be empty to disable dropout'
             % (n_conv, len(self.MLP_layers), self.n_layers))
        rule(len(self.activation_func) == self.n_layers, 'activation_func',
             'needs one entry per layer (%i conv + %i MLP = %i) or a single string'
             % (n_conv, len(self.MLP_layers), self.n_layers))
        from elektronn.net.layers.base import parse_activation
        for act in self.activation_func:
            try:
                parse_activation(act)
            except ValueError as e:
                raise self._error('activation_func', str(e), show_value=False) from None
        rule(len(self.pooling_mode) == n_conv, 'pooling_mode', 'needs one entry per conv layer (%i)' % n_conv)
        rule(len(self.MFP) == n_conv, 'MFP', 'needs one entry per conv layer (%i)' % n_conv)
        rule(not self.lazy_labels or self.mode == 'img-img', 'lazy_labels',
             "is only possible in mode 'img-img' (mode is %r)" % self.mode)
        rule(self.mode != 'img-img' or not self.MLP_layers, 'MLP_layers', "must be empty in mode 'img-img'")
        rule(not self.valid_segmentation_metrics or self.mode == 'img-img', 'valid_segmentation_metrics',
             "is only possible in mode 'img-img' (mode is %r)" % self.mode, show_value=False)
        rule(self.mode != 'img-scalar' or self.MLP_layers, 'MLP_layers', "must not be empty in mode 'img-scalar' "
             '(perceptron layers turn the image into one prediction)')
        rule(self.mode != 'vect-scalar' or not n_conv, 'filters', "must be empty in mode 'vect-scalar' (no conv "
             'layers on vector data)')
        rule(self.mode == 'vect-scalar' or n_conv, 'filters', 'needs at least one conv layer in mode %r' % self.mode)
        rule(self.rnn_layer_kwargs is None or self.mode == 'vect-scalar', 'rnn_layer_kwargs',
             "(a recurrent layer) is only possible in mode 'vect-scalar'")
        rule(self.mode != 'vect-scalar' or self.data_class_name is not None, 'data_class_name',
             "is needed in mode 'vect-scalar' (the cube pipeline CNNData only serves images)")
        if self.data_class_name is None and self.mode != 'vect-scalar':
            rule(len(self.d_files) == len(self.l_files), 'l_files',
                 'needs one label file per data file (%i d_files, %i l_files)' % (len(self.d_files), len(self.l_files)))
            rule(len(self.d_files) > 0, 'd_files', 'lists no data files (or set data_class_name)')
            for c in self.valid_cubes:
                rule(c < len(self.d_files), 'valid_cubes', 'index %i is out of range for %i data files'
                     % (c, len(self.d_files)))
        if self.class_weights is not None and self.n_lab is not None and self.target == 'nll':
            rule(len(self.class_weights) == self.n_lab, 'class_weights',
                 'needs one weight per class (n_lab=%i)' % self.n_lab, list(self.class_weights))

    def checkFiles(self):
        """Fail early, naming the path, when a file the run needs does not exist."""
        def need(path, name):
            if not os.path.exists(path):
                raise ConfigError('%s: parameter %r: file %s does not exist' % (self.config_file, name, path))

        if self.data_class_name is None and self.mode != 'vect-scalar':
            for name, folder, files in (('d_files', self.data_path, self.d_files),
                                        ('l_files', self.label_path, self.l_files)):
                for file_name, *_key in files:
                    need(os.path.join(folder, os.path.expanduser(file_name)), name)
        if isinstance(self.data_class_name, tuple):
            need(self.data_class_name[0], 'data_class_name')
        if self.param_file is not None:
            need(self.param_file, 'param_file')
        if self.preview_data_path is not None:
            need(self.preview_data_path, 'preview_data_path')

    def setDimensions(self):
        """Valid CNN input size (``dimensions``, ``patch_size``) for the image modes."""
        from elektronn.net.netutils import CNNCalculator
        try:
            dims = CNNCalculator(self.filters, self.pool, self.desired_input, MFP=self.MFP,
                                 force_center=(self.mode == 'img-img'), n_dim=self.n_dim)
        except ValueError as e:
            raise ConfigError('%s: filters/pool/desired_input do not give a valid CNN: %s' % (self.config_file, e)) \
                from None
        inputs = dims.input if _is_seq(dims.input) else [dims.input] * self.n_dim
        desired = self.desired_input if _is_seq(self.desired_input) else [self.desired_input] * self.n_dim
        if self.mode == 'img-scalar' and list(inputs) != list(desired):
            if self.border_mode in ('mirror', '0-pad'):
                strides = dims.pred_stride if _is_seq(dims.pred_stride) else [dims.pred_stride] * self.n_dim
                bigger = [i + s if i < d else i for i, s, d in zip(inputs, strides, desired)]
                dims = CNNCalculator(self.filters, self.pool, bigger, MFP=self.MFP, force_center=False,
                                     n_dim=self.n_dim)
            elif self.border_mode == 'reject':
                raise ConfigError("%s: parameter 'border_mode' is 'reject', but desired_input %s is not a valid "
                                  'input size of this CNN (nearest valid: %s); change the architecture, the image '
                                  "size or use border_mode 'crop', 'keep', 'mirror' or '0-pad'"
                                  % (self.config_file, desired, list(inputs)))
        print('Selected patch-size for CNN input:', dims)
        self.dimensions = self._use_imposed_input_exactly(dims)
        dims = self.dimensions
        inputs = dims.input if _is_seq(dims.input) else [dims.input] * self.n_dim
        self.patch_size = tuple(int(i) for i in inputs)

    def _use_imposed_input_exactly(self, dims):
        """``dims`` with ``input`` set to ``imposed_input_size`` where the network takes that size as is.

        With max-fragment-pooling in every pooling layer the network is dense (the dilated form,
        see :mod:`elektronn.net.prediction`) and takes any input of at least its field of view; the
        original's MFP rule (unpooled size modulo pool equal to 1) would snap e.g. 256 to 254.
        ``dims`` otherwise stays as calculated (its per-layer sizes describe the nearest size of
        the rule; ``input``, ``offset`` and ``fov`` are what prediction uses).
        """
        if self.imposed_input_size is None or self.MLP_layers or self.mode != 'img-img':
            return dims
        dense = all(m or np.max(p) == 1 for m, p in zip(self.MFP, self.pool))
        imposed = [int(self.imposed_input_size)] * self.n_dim if not _is_seq(self.imposed_input_size) \
            else [int(i) for i in self.imposed_input_size]
        if not dense or list(dims.input) == imposed or any(i < f for i, f in zip(imposed, dims.fov)):
            return dims
        print('Info: imposed input %s used as given (max-fragment-pooling in every pooling layer takes any '
              'input of at least the field of view %s)' % (imposed, list(dims.fov)))
        dims.input = imposed
        for calc, size in zip(dims.calculators, imposed):
            calc.input = size
        return dims

    # -- save directory ---------------------------------------------------------------------------
    def backupScripts(self, trainer_file=None):
        """Create the save directory with ``Backup/`` holding the config (and the driving script).

        Use :meth:`prepare_save_dir`, which does this once. An existing save directory of an earlier
        run is never deleted: with ``overwrite`` True the new run starts afresh and the earlier one is
        moved aside to ``<save_path>.old-<YYYYmmdd-HHMMSS>/`` (``-2``, ``-3``, ... when that is
        taken). Only a directory made by an earlier run (it has a ``Backup/`` folder) is moved, never
        the working directory, the home directory or their parents; an empty directory is used as
        it is.

        Raises:
            ConfigError: the directory exists and may not be replaced (``overwrite`` False, a
                protected or foreign folder), or it cannot be moved aside.
        """
        path = self.save_path
        if self.check_save_dir():
            aside = _move_aside(path, self.config_file)
            print('Moved the earlier run in %s aside to %s' % (path, aside))
        os.makedirs(os.path.join(path, 'Backup'), exist_ok=True)
        if trainer_file is not None:
            _copy_file(trainer_file, os.path.join(path, 'Backup', 'elektronn-train'))
        _copy_file(self.config_file, os.path.join(path, 'Backup', 'config.py'))
        if self.user_config_file is not None:
            _copy_file(self.user_config_file, os.path.join(path, 'Backup', 'user_config.py'), mode=stat.S_IRUSR
                       | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)
        self._prepared_dir = path

    def check_save_dir(self):
        """Check, touching nothing, that a new run may start in ``save_path`` (see :meth:`backupScripts`).

        ``elektronn-train`` calls it right after reading the config, so that a save directory that
        may not be replaced stops the run before the data are loaded.

        Returns:
            Whether an earlier run in ``save_path`` will be moved aside.

        Raises:
            ConfigError: the directory exists and may not be replaced.
        """
        path = self.save_path
        if os.path.lexists(os.path.normpath(path)):  # (a file named like the directory, too)
            if not self.overwrite:
                raise ConfigError('%s: save directory %s already exists and overwrite is False; choose another '
                                  'save_name, set overwrite = True, or continue it with --resume'
                                  % (self.config_file, path))
            real = os.path.realpath(path)
            places = [os.path.realpath(p) for p in (os.getcwd(), os.path.expanduser('~'))]
            if real in places + [os.path.realpath(os.sep)] \
                    or any(p.startswith(os.path.join(real, '')) for p in places):
                raise ConfigError('%s: save_path %s is (or contains) the working or home directory; it will not be '
                                  'moved aside. Point save_path to a folder of its own, e.g. add save_name to it'
                                  % (self.config_file, path))
            if not os.path.isdir(path):
                raise ConfigError('%s: save_path %s exists and is not a directory' % (self.config_file, path))
            if os.listdir(path):
                if not _is_save_dir(path):
                    raise ConfigError('%s: save_path %s exists but was not made by an ELEKTRONN run (no Backup/ '
                                      'folder), so it is not moved aside although overwrite is True. Did you forget '
                                      "save_path += save_name + '/'?" % (self.config_file, path))
                return True
        return False

    def __repr__(self):
        items = {p.name: getattr(self, p.name) for p in MASTER_PARAMS}
        return 'Config(%s)\n%s' % (self.config_file, pprint.pformat(items, sort_dicts=False))


# ---------------------------------------------------------------------------------------------------
# Generated documents: the config template and the documentation table
# ---------------------------------------------------------------------------------------------------
def _flag_text(flag):
    return {'*': '(*) ', '$': '($) ', '': ''}[flag]


def _wrap(text, width, prefix):
    words, lines, line = text.split(), [], prefix
    for w in words:
        if len(line) + len(w) + 1 > width and line.strip() != prefix.strip():
            lines.append(line.rstrip())
            line = prefix
        line += w + ' '
    lines.append(line.rstrip())
    return lines


def render_template():
    """The text of ``examples/config_template.py``: every parameter with its master default."""
    out = ['# ELEKTRONN config template: every parameter with its master default.',
           '# GENERATED from elektronn/training/config.py (MASTER_PARAMS); do not edit by hand, regenerate with',
           '#     python -m elektronn.training.config --template > examples/config_template.py',
           '# Copy it as a starting point for a run file, or as ~/.elektronn.config for your own defaults.',
           '# (*) marks important parameters, ($) ones only needed for special cases.',
           '# Shapes are given in (x, y) / (x, y, z) order.']
    section = None
    for p in MASTER_PARAMS:
        if p.section != section:
            section = p.section
            out += ['', '### %s ###' % section]
        out += _wrap(_flag_text(p.flag) + p.doc, 100, '# ')
        out.append('%s = %s' % (p.name, p.template_value if p.template_value is not None else repr(p.default)))
        if p.template_after:
            out.append(p.template_after)
    return '\n'.join(out) + '\n'


def render_rst_table():
    """The parameter table of the documentation (reStructuredText), grouped by section."""
    out = ['.. This file is GENERATED from elektronn/training/config.py (MASTER_PARAMS); regenerate with',
           '   python -m elektronn.training.config --rst > docs/config_parameters.inc', '']
    section = None
    for p in MASTER_PARAMS:
        if p.section != section:
            section = p.section
            out += ['', section, '~' * len(section), '', '.. list-table::', '   :header-rows: 1',
                    '   :widths: 22 30 48', '', '   * - Parameter', '     - Master default', '     - Meaning']
        default = repr(p.default)
        out += ['   * - ``%s``%s' % (p.name, {'*': ' (*)', '$': ' ($)', '': ''}[p.flag]),
                '     - ``%s``' % default,
                '     - %s' % p.doc.replace('*', r'\*')]
    return '\n'.join(out) + '\n'


def _main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(prog='python -m elektronn.training.config',
                                     description='Print a document generated from the master defaults.')
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument('--template', action='store_true', help='the config template (examples/config_template.py)')
    group.add_argument('--rst', action='store_true', help='the documentation table (docs/config_parameters.inc)')
    args = parser.parse_args(argv)
    sys.stdout.write(render_template() if args.template else render_rst_table())


if __name__ == '__main__':
    _main()
