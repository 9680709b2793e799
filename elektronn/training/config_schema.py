"""The configuration parameters: every name, master default, section, meaning and value check.

:data:`MASTER_PARAMS` is the single source of every parameter (level 1 of the three levels that
:class:`~elektronn.training.config.Config` reads); :func:`master_defaults` gives fresh copies of the
defaults. Also here: the choices of the mode-like parameters (:data:`MODES`, :data:`TARGETS`,
:data:`OPTIMIZER_NAMES`, :data:`BORDER_MODES`), the default save directory and which parameters are
paths or should be set by every run file. The checks themselves are in
:mod:`elektronn.training.config_checks`.

Regenerate the template and the documentation table after changing :data:`MASTER_PARAMS`::

    python -m elektronn.training.config --template > examples/config_template.py
    python -m elektronn.training.config --rst > docs/config_parameters.inc
"""
import copy
from collections import namedtuple

from elektronn.training.config_checks import (
    MAX_SIZE, _FRACTION, _POSITIVE, _activation, _background_processes, _bool, _choice, _class_weights, _data_class,
    _desired_input, _dict, _downsample, _dropout, _files, _gpu, _history_freq, _int, _list_of, _lr_schedule, _mfp,
    _mixed_precision, _number, _optional, _pooling_mode, _save_name, _segmentation_metrics, _settings, _shape_list, _str, _warp_on,
    _weight_decay)

__all__ = ['MASTER_PARAMS', 'master_defaults', 'DEFAULT_SAVE_ROOT', 'MODES', 'TARGETS', 'OPTIMIZER_NAMES',
           'BORDER_MODES']

#: Save directory base when no level sets ``save_path``.
DEFAULT_SAVE_ROOT = '~/CNN_Training/'

#: The values of the parameter ``mode``: image to image, image to scalar, vector to scalar.
MODES = ('img-img', 'img-scalar', 'vect-scalar')
#: The values of the parameter ``target`` (see :doc:`/targets`).
TARGETS = ('nll', 'regression', 'nll_mutiple_binary', 'nll_weak', 'affinity', 'malis')
#: The values of the parameter ``optimizer``.
OPTIMIZER_NAMES = ('SGD', 'CG', 'RPROP', 'LBFGS', 'Adam')
#: The values of the parameter ``border_mode`` ('img-scalar': images that do not fit a valid input size).
BORDER_MODES = ('crop', 'keep', '0-pad', 'mirror', 'c-pad', 'reject')

_PATH_KEYS = ('save_path', 'param_file', 'data_path', 'label_path', 'preview_data_path')


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
    _p('mixed_precision', False, _S_SETUP, '', "Compute precision of training: False (float32, as ELEKTRONN 1.x), "
       "'bf16' or 'fp16' (autocast of the forward and backward pass; parameters, optimiser states and the loss stay "
       'float32; fp16 with loss scaling; CG and LBFGS steps in float32). Where the device has no native support '
       '(CPUs without AVX512_BF16/AMX, GPUs below compute capability 8.0 for bf16) training falls back to float32 '
       "with a warning. 'auto': bf16 where it is native, else float32 without a warning (the recommended EM "
       'configs use it).', _mixed_precision),
    _p('tensorboard', False, _S_SETUP, '', 'Also write the history values (losses, errors, LR, step times, '
       'segmentation scores) and the preview images to <save_path>/tensorboard/ for TensorBoard '
       '(needs the tensorboard package; rank 0 of a distributed run).', _bool),
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
       "mean) or 'reject'.", _choice(*BORDER_MODES)),
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
