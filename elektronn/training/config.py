"""Training configuration: reading and checking the master defaults, the user defaults file and the run file.

A run is configured at three levels, each overriding the one before:

1. the **master defaults** (:data:`~elektronn.training.config_schema.MASTER_PARAMS`, the single
   source of every parameter's name, default, meaning and check, in
   :mod:`elektronn.training.config_schema`; the config template ``examples/config_template.py`` and
   the documentation's parameter table are generated from it by :mod:`elektronn.training.config_docs`),
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

This is the module users import: the names of the parameter table, its checks and the generated
documents are importable from here too. Regenerate the template and the documentation table after
changing the master defaults::

    python -m elektronn.training.config --template > examples/config_template.py
    python -m elektronn.training.config --rst > docs/config_parameters.inc
"""
import builtins
import logging
import os
import pprint
import stat
import time
import types
import warnings

import numpy as np

# the parameter table, its checks and the generated documents have modules of their own; their public
# names stay importable from here, the module users import (hence the unused ones: noqa F401)
from elektronn.training.config_checks import MAX_SIZE, levenshtein, suggest_name  # noqa: F401
from elektronn.training.config_checks import _Invalid, _is_seq
from elektronn.training.config_docs import main, render_rst_table, render_template  # noqa: F401
from elektronn.training.config_schema import (  # noqa: F401
    BORDER_MODES, DEFAULT_SAVE_ROOT, MASTER_PARAMS, MODES, OPTIMIZER_NAMES, TARGETS, master_defaults)
from elektronn.training.config_schema import (
    _MANDATORY_ALWAYS, _MANDATORY_CNN, _MANDATORY_FILES, _MANDATORY_MLP, _PARAMS_BY_NAME, _PATH_KEYS)
from elektronn.utils import atomic_write

__all__ = ['Config', 'ConfigError', 'MASTER_PARAMS', 'master_defaults', 'MasterConfig', 'DefaultConfig',
           'USER_CONFIG_PATH', 'MODES', 'TARGETS', 'OPTIMIZER_NAMES', 'suggest_name', 'render_template',
           'render_rst_table', 'xyz2zxy']

logger = logging.getLogger(__name__)

#: The user defaults file (level 2).
USER_CONFIG_PATH = '~/.elektronn.config'


class ConfigError(ValueError):
    """A configuration file or value is wrong; the message names the file, the parameter and the rule."""


# ---------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------
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


def _synthetic_file(path):
    """Whether ``path`` is a file of the embedded synthetic data set, which its loader generates."""
    from elektronn.data import synthetic
    return synthetic.provides(path)


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
        size_notes: Print the ``Info: input (127) changed to (126)`` notes when ``desired_input``
            (or ``imposed_input_size``) is not a valid size. Prediction passes ``False`` unless it
            imposes an input size: the MFP rule changes the training's size, which is no news there.

    Raises:
        ConfigError: naming the file, the parameter and the rule it breaks.
    """

    def __init__(self, config_file, gpu=None, trainer_file=None, use_existing_dir=False,
                 override_MFP_to_active=False, imposed_input_size=None, init_device=True, check_files=True,
                 size_notes=True):
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
        self._size_notes = size_notes
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
        logger.info('Reading config-file %s', self.config_file)
        values = master_defaults()
        user_path = os.path.expanduser(USER_CONFIG_PATH)
        user = {}
        if os.path.exists(user_path):
            logger.info('Reading User Default Config %s', user_path)
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
            logger.info('Note: monitor_batch_size %i changed to %i (a multiple of batch_size %i)',
                        self.monitor_batch_size, fixed, self.batch_size)
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
            logger.info('Note: class_weights are used as given (not normalised)')
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
            # stacklevel 3: the caller of Config(...)
            warnings.warn('the following important config variables are not set in %s; their master defaults are '
                          'used, which may not be what you want: %s' % (self.config_file, missing), stacklevel=3)

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
        if self.tensorboard:
            from elektronn.training.tensorboard_log import tensorboard_missing
            problem = tensorboard_missing()
            rule(problem is None, 'tensorboard', 'is True but %s' % problem, show_value=False)
        if self.class_weights is not None and self.n_lab is not None and self.target == 'nll':
            rule(len(self.class_weights) == self.n_lab, 'class_weights',
                 'needs one weight per class (n_lab=%i)' % self.n_lab, list(self.class_weights))

    def checkFiles(self):
        """Fail early, naming the path, when a file the run needs does not exist (the files of the
        embedded synthetic data set are generated when the data is loaded, see :mod:`elektronn.data.synthetic`)."""
        def need(path, name):
            if not os.path.exists(path) and not _synthetic_file(path):
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
                                 force_center=(self.mode == 'img-img'), n_dim=self.n_dim, notes=self._size_notes)
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
                                     n_dim=self.n_dim, notes=self._size_notes)
            elif self.border_mode == 'reject':
                raise ConfigError("%s: parameter 'border_mode' is 'reject', but desired_input %s is not a valid "
                                  'input size of this CNN (nearest valid: %s); change the architecture, the image '
                                  "size or use border_mode 'crop', 'keep', 'mirror' or '0-pad'"
                                  % (self.config_file, desired, list(inputs)))
        logger.info('Selected patch-size for CNN input: %s', dims)
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
        logger.info('Info: imposed input %s used as given (max-fragment-pooling in every pooling layer takes any '
                    'input of at least the field of view %s)', imposed, list(dims.fov))
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
            logger.info('Moved the earlier run in %s aside to %s', path, aside)
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


if __name__ == '__main__':
    main()
