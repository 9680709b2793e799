"""``MixedConvNN``: build a CNN/MLP layer by layer, compile its outputs, train and evaluate it.

The public interface is the original ELEKTRONN's; the internals are PyTorch. Arrays go in and
come out in the original layouts:

==========  ========================  ===========================================
network     input                     output of ``class_probabilities``
==========  ========================  ===========================================
MLP         ``(bs, features)``        ``(bs, n_lab)``
RNN         ``(bs, time, features)``  ``(bs, n_lab)`` (perceptron output layer)
2D CNN      ``(bs, ch, x, y)``        ``(bs, n_lab, x, y)`` (conv output layer)
3D CNN      ``(bs, z, ch, x, y)``     ``(bs, n_lab, z, x, y)`` (conv output layer)
==========  ========================  ===========================================

Inside, 3D tensors use PyTorch's ``(bs, ch, z, x, y)``; the network is an ``nn.Module``, so
``cnn.to(device)``, ``cnn.parameters()`` and ``cnn(x_tensor)`` work as usual.

Dropout and input noise act only in training steps (``trainingStep``); ``get_error``,
``get_loss``, ``class_probabilities`` and ``prediction`` always evaluate the full network, so the
original's advice to set the dropout rates to 0 before evaluating is harmless but no longer needed.

The class is composed here from one mixin per job: building (:mod:`elektronn.net.net_builder`),
input conversion (:mod:`elektronn.net.net_inputs`), compiling, evaluating and training
(:mod:`elektronn.net.training_step`), parameter files and introspection (:mod:`elektronn.net.net_io`);
this module adds the construction and the placement on devices and in memory formats.
"""
import contextlib
import logging
import time

import numpy as np
import torch
from torch import nn

from elektronn.net import device as _device
from elektronn.net import precision as _precision
from elektronn.net.layers.conv import _ConvLayer
from elektronn.net.net_builder import NetBuilderMixin, _check_flag, _shape_str
from elektronn.net.net_inputs import NetInputsMixin
from elektronn.net.net_io import NetIOMixin
from elektronn.net.optimizers import DEFAULT_PARAMS, SharedScalar
from elektronn.net.training_step import TrainingStepMixin

logger = logging.getLogger(__name__)
logger.info('Load ELEKTRONN Core')

__all__ = ['MixedConvNN']


class MixedConvNN(NetBuilderMixin, NetInputsMixin, TrainingStepMixin, NetIOMixin, nn.Module):
    """A network of conv, perceptron (and later recurrent / autoencoder) layers.

    Args:
        input_size: Spatial shape of one example: an int or 1-tuple for vector data, ``(x, y)``
            for 2D, ``(z, x, y)`` for 3D images.
        input_depth: Number of channels; ``None`` means non-image data (no conv layers). For
            images it defaults to 1 (with a note).
        batch_size: A fixed batch size (used for the printed shapes and costs) or ``None``.
            Batches of any size are accepted.
        enable_dropout: Give every layer added afterwards a dropout rate (0.5) unless it is
            added with ``force_no_dropout=True``.
        recurrent: A recurrent network: ``input_size`` is the number of features and
            ``input_depth`` the number of time steps, input ``(bs, time, features)``; with
            ``input_depth=None`` the input is ``(bs, features)`` (a recurrent layer then repeats it).
        dimension_calc: A :func:`~elektronn.net.netutils.CNNCalculator` result; ``predictDense``
            takes the offset from it.

    Example (every step prints what it built, as ELEKTRONN 1.x did)::

        >>> import numpy as np
        >>> cnn = MixedConvNN((28, 28), input_depth=1)
        ------------------------------------------------------------
        Input shape   =  (None, 1, 28, 28) ; This is a 2 dimensional NN
        ---
        >>> conv = cnn.addConvLayer(10, 5, pool_shape=2, activation_func='abs')
        2DConv: input= (None, 1, 28, 28)   filter= (10, 1, 5, 5)
        Output = (None, 10, 12, 12) Dropout OFF, Act: abs pool: max
        Computational Cost: 144.0 kilo Ops
        ---
        >>> output = cnn.addPerceptronLayer(10, activation_func='linear')
        PerceptronLayer( #Inputs = 1440 #Outputs = 10 )
        Computational Cost: 14.4 kilo Ops
        ---
        >>> cnn.compileOutputFunctions()
        GLOBAL
        Computational Cost: 158.4 kilo Ops
        Total Count of trainable Parameters: 14670
        ...
        >>> data = np.random.rand(20, 1, 28, 28).astype(np.float32)  # (bs, ch, x, y)
        >>> labels = np.random.randint(0, 10, 20).astype(np.int16)   # (bs,): classes
        >>> loss, loss_instance, seconds = cnn.trainingStep(data, labels, mode='SGD')
        Compiling SGD
         Compiling done  - in ... s!
        >>> loss_instance.shape
        (20,)
    """

    def __init__(self, input_size=None, input_depth=None, batch_size=None, enable_dropout=False, recurrent=False,
                 dimension_calc=None):
        super().__init__()
        if input_size is None:
            raise ValueError('input_size is required: an int for vector data, (x, y) for 2D or (z, x, y) for 3D')
        if np.isscalar(input_size):
            input_size = (input_size,)
        input_size = tuple(input_size)
        if len(input_size) not in (1, 2, 3):
            raise ValueError('input_size must have 1, 2 or 3 entries ((features,), (x, y) or (z, x, y)), got %r'
                             % (input_size,))
        for s in input_size:
            if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1:
                raise ValueError('input_size must contain positive integers, got %r' % (input_size,))
        input_size = tuple(int(s) for s in input_size)
        if input_depth is not None and (isinstance(input_depth, bool) or not isinstance(input_depth, (int, np.integer))
                                        or input_depth < 1):
            raise ValueError('input_depth must be a positive integer or None, got %r' % (input_depth,))
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
                                       or batch_size < 1):
            raise ValueError('batch_size must be a positive integer or None, got %r' % (batch_size,))
        self.t_init = time.time()
        self.n_dim = len(input_size)
        self.batch_size = None if batch_size is None else int(batch_size)
        self._enable_dropout = _check_flag(enable_dropout, 'enable_dropout')
        self._recurrent = _check_flag(recurrent, 'recurrent')
        if self._recurrent and self.n_dim != 1:
            raise ValueError('a recurrent network takes vector input: input_size must be the number of features '
                             '(an int), got %r' % (input_size,))
        if self.n_dim > 1 and input_depth is None:
            input_depth = 1
            logger.info('For image-like data no depth was specified, using depth=1')
        self.input_depth = None if input_depth is None else int(input_depth)
        self.patch_size = np.array(input_size)
        self.dimension_calc = dimension_calc

        bs = self.batch_size
        if self._recurrent and self.input_depth is not None:
            self.input_shape = (bs, self.input_depth) + input_size  # (bs, time, features)
            self._shape = self.input_shape
        elif self.input_depth is None:
            self.input_shape = (bs,) + input_size
            self._shape = self.input_shape  # current output shape, PyTorch layout
        elif self.n_dim == 3:
            self.input_shape = (bs, input_size[0], self.input_depth, input_size[1], input_size[2])
            self._shape = (bs, self.input_depth) + input_size
        else:
            self.input_shape = (bs, self.input_depth) + input_size
            self._shape = self.input_shape

        self.layers = nn.ModuleList()
        self._output_layers = nn.ModuleList()
        self._autoencoder_chains = []
        self.poolings = []
        self.params = []
        self.CG_timeline = []
        self.debug_functions = []
        self.debug_conv_output = []
        self.debug_gradients_function = None
        self.TotalForwardPassCost = 0
        self.n_lab = None
        self.output_shape = None
        self.output_strides = None
        self.mfp_strides = None
        self.mfp_offsets = None
        self._atleast_single_mfp = False
        self.param_count = 0
        self.target = None
        self._compiled = False
        self._only_forward = False
        self._aux_names = []
        self._target = None
        self._optimizers = {}
        self.memory_format = torch.contiguous_format
        # The precision asked for (setPrecision), the one used on this device, and the one of the
        # computation going on (float32 in CG/LBFGS steps); fp16 training scales its losses.
        self._requested_precision = 'fp32'
        self.precision = 'fp32'
        self._compute_precision = 'fp32'
        self.loss_scaler = None
        # DistributedDataParallel wrapper for training forward passes (set by
        # elektronn.training.distributed.replicate; kept out of the submodules)
        self._ddp = None

        # The original's shared scalars: live hyper-parameters read by the optimisers at every step.
        self.SGD_LR = SharedScalar(0.09, 'SGD_LR')
        self.SGD_momentum = SharedScalar(0.9, 'SGD_momentum')
        self.global_weightdecay = SharedScalar(0.0, 'global_weightdecay')
        self._SGD_params = {'LR': self.SGD_LR, 'momentum': self.SGD_momentum}
        self._RPROP_params = dict(DEFAULT_PARAMS['RPROP'])
        self._Adam_params = dict(DEFAULT_PARAMS['Adam'])
        self._CG_params = dict(DEFAULT_PARAMS['CG'])
        self._LBFGS_params = dict(DEFAULT_PARAMS['LBFGS'])

        logger.info('-' * 60)
        logger.info('Input shape   =  %s ; This is a %s dimensional NN', _shape_str(self.input_shape), self.n_dim)
        logger.info('---')

    # ------------------------------------------------------------------------------------------------
    # Devices and memory formats
    # ------------------------------------------------------------------------------------------------
    @property
    def device(self):
        """The device the parameters live on."""
        for p in self.parameters():
            return p.device
        return _device.current_device()

    @property
    def dtype(self):
        """The dtype of the parameters (float32 unless the network was converted)."""
        for p in self.parameters():
            return p.dtype
        return torch.float32

    @contextlib.contextmanager
    def _computing_in(self, precision):
        """Compute in ``precision`` within the block (CG/LBFGS steps, one prediction), then in the network's own."""
        before, self._compute_precision = self._compute_precision, precision
        try:
            yield
        finally:
            self._compute_precision = before

    def _default_memory_format(self):
        """Channels-last for conv nets on the CPU, where oneDNN's convolutions are faster in it, and on CUDA
        in reduced precision, where the tensor-core kernels want it; contiguous otherwise."""
        kind = self.device.type
        if self.input_depth is None or self.n_dim == 1 or not (kind == 'cpu' or (kind == 'cuda' and
                                                                                  self.precision != 'fp32')):
            return torch.contiguous_format
        return torch.channels_last if self.n_dim == 2 else torch.channels_last_3d

    def setPrecision(self, precision='fp32'):
        """Compute in ``'fp32'``, ``'bf16'`` or ``'fp16'`` (see :mod:`elektronn.net.precision`).

        Reduced precision runs the forward (and backward) pass under autocast; parameters,
        gradients, optimiser states, the output layer's activation and the loss stay float32, and
        parameter files are float32 whatever the precision. CG and LBFGS steps always compute in
        float32 (their line searches compare losses closely). fp16 training scales the loss
        dynamically. Training steps, ``get_error``/``get_loss``, ``class_probabilities`` and
        ``predictDense`` follow the setting; ``predictDense(precision=...)`` overrides it per call.

        Args:
            precision: ``'fp32'`` (also ``False``/``None``), ``'bf16'``, ``'fp16'`` or ``'auto'``
                (bf16 where the device computes it natively, else float32).

        Returns:
            str: the precision used (``'fp32'``, ``'bf16'`` or ``'fp16'``): float32, with a
            warning, where the device has no native support for the one asked for (it would be
            emulated and slower). Moving the network to another kind of device chooses again.
        """
        self._requested_precision = _precision.canonical(precision, 'setPrecision', allow_auto=True)
        used = _precision.resolve(self._requested_precision, self.device, 'setPrecision')
        if self.loss_scaler is None or used != 'fp16':
            self.loss_scaler = _precision.LossScaler() if used == 'fp16' else None
        self.precision = self._compute_precision = used
        if self._compiled:
            self.setMemoryFormat(self._default_memory_format())
        logger.info('Computing in %s', _precision.describe(used))
        return used

    def setMemoryFormat(self, memory_format):
        """Store conv filters and inputs in ``memory_format`` (``torch.contiguous_format``,
        ``torch.channels_last`` for 2D or ``torch.channels_last_3d`` for 3D, or the strings
        ``'contiguous'``/``'channels_last'``). Only speed changes, never results."""
        if isinstance(memory_format, str):
            names = {'contiguous': torch.contiguous_format,
                     'channels_last': torch.channels_last_3d if self.n_dim == 3 else torch.channels_last}
            if memory_format not in names:
                raise ValueError("memory_format must be 'contiguous' or 'channels_last', got %r" % (memory_format,))
            memory_format = names[memory_format]
        self.memory_format = memory_format
        with torch.no_grad():
            for layer in self.layers:
                if isinstance(layer, _ConvLayer):
                    # ``.to`` re-strides even when the layout is ambiguous (one input channel), which
                    # ``.contiguous`` does not; oneDNN then keeps the whole chain channels-last.
                    layer.W.data = layer.W.data.to(memory_format=memory_format)
        for opt in self._optimizers.values():
            opt.follow_parameters()  # momenta keep their values in the filters' new layout

    def _apply(self, fn, recurse=True):
        """``nn.Module._apply`` (behind ``to``, ``cuda``, ``cpu``, ``double`` ...), then what it does not
        move itself: the optimiser states, references to the parameters outside their modules,
        and the memory format, chosen again for a new kind of device."""
        device = self.device
        owned = [(module, key, p) for module in self.modules() for key, p in module._parameters.items()
                 if p is not None]
        super()._apply(fn, recurse)
        # ``nn.Module`` converts a parameter in place where it can (CPU <-> CUDA, dtypes) but
        # registers a new one where it cannot (e.g. to the meta device).
        replaced = {id(old): module._parameters[key] for module, key, old in owned
                    if module._parameters[key] is not old}
        if replaced:
            self._redirect_parameters(replaced)
        if self.device.type != device.type and self._requested_precision != 'fp32':
            self.setPrecision(self._requested_precision)  # chooses the memory format too
        elif self._compiled and self.device.type != device.type:
            self.setMemoryFormat(self._default_memory_format())
        else:
            for opt in self._optimizers.values():
                opt.follow_parameters()
        return self

    def _redirect_parameters(self, replaced):
        """Point every reference to a replaced parameter at its replacement (``{id(old): new}``)."""
        def redirect(values):
            return [replaced.get(id(v), v) if isinstance(v, nn.Parameter) else v for v in values]

        self.params = redirect(self.params)
        for opt in self._optimizers.values():
            opt.follow_parameters(redirect(opt.params))
        # A layer keeps a parameter it shares with another layer (its owner) in a one-element list,
        # out of nn.Module's sight (see PerceptronLayer): update such lists in place.
        for module in self.modules():
            if module is self:
                continue
            for value in vars(module).values():
                if isinstance(value, list) and any(id(v) in replaced for v in value):
                    value[:] = redirect(value)
