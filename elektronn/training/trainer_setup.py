"""What a training run trains: the data object and the network, built from the configuration.

:class:`SetupMixin` holds these :class:`~elektronn.training.trainer.Trainer` methods: ``loadData``
(:class:`~elektronn.training.image_data.CNNData` on the config's h5 cubes, or the data class named by
``data_class_name``, with the batch keyword arguments of training and monitoring, and the preview
cubes) and ``createNet`` (the network of :func:`~elektronn.training.netcreation.createNet`, checked
against the data, and the scorer of ``valid_segmentation_metrics``).
"""
import importlib
import sys
import warnings

import numpy as np

from elektronn.training import previews
from elektronn.training.config import ConfigError, suggest_name
from elektronn.training.netcreation import createNet
from elektronn.training.workers import reseed
from elektronn.utils import _imported_module_name, import_variable_from_file

__all__ = ['SetupMixin']


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


class SetupMixin:
    """The :class:`~elektronn.training.trainer.Trainer` methods that load the data and build the network."""

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
            warnings.warn('valid_segmentation_metrics is set but the data have no validation cubes (valid_cubes): '
                          'no segmentation scores', stacklevel=3)  # at the caller of createNet
            return None
        from elektronn.training.segmentation_scores import ValidSegmentationScorer
        return ValidSegmentationScorer(c.valid_segmentation_metrics, c.target, c.dimensions.offset)
