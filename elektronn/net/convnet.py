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
"""
import math
import time

import numpy as np
import torch
from torch import nn

from elektronn.net import device as _device
from elektronn.net import legacy, params as _params, targets as _targets
from elektronn.net.layers.affinity import AffinityLayer3d, MalisLayer
from elektronn.net.layers.autoencoder import build_tied_chain
from elektronn.net.layers.conv import ConvLayer2d, ConvLayer3d, _ConvLayer
from elektronn.net.layers.perceptron import PerceptronLayer
from elektronn.net.layers.recurrent import RecurrentLayer
from elektronn.net.optimizers import DEFAULT_PARAMS, OPTIMIZERS, RPROP_RESET_STEP, SharedScalar, check_settings
from elektronn.net.prediction import predict_dense

print('Load ELEKTRONN Core')

__all__ = ['MixedConvNN']

#: Targets of ``compileOutputFunctions`` (``'nll_multiple_binary'`` is accepted for ``'nll_mutiple_binary'``).
TARGETS = _targets.TARGETS

#: Optimiser modes of ``trainingStep``.
MODES = ('SGD', 'Adam', 'RPROP', 'CG', 'LBFGS')

#: Evaluation is done in chunks whose activations take about this many bytes.
_EVAL_CHUNK_BYTES = 256 * 2 ** 20


def _printOps(n):
    """Print a multiplication count the way the original did: ``Computational Cost: 4.1 Mega Ops``."""
    for factor, suffix in ((1e12, 'Tera Ops'), (1e9, 'Giga Ops'), (1e6, 'Mega Ops'), (1e3, 'kilo Ops')):
        if n >= factor:
            break
    print('Computational Cost: %.1f %s' % (float(n) / factor, suffix))


def _shape_str(shape):
    return '(' + ', '.join('None' if s is None else str(int(s)) for s in shape) + (',)' if len(shape) == 1 else ')')


def _mfp_bookkeeping(offsets, strides, pool):
    """The original's fragment record after an MFP layer with ``pool``: fragment offsets (new phase
    outer, old fragment inner; an offset grows by phase times the old stride) and strides."""
    n = len(pool)
    offsets = np.zeros((1, n), dtype=int) if offsets is None else offsets
    strides = [1] * n if strides is None else strides
    new = [o + np.multiply(phase, strides) for phase in np.ndindex(*pool) for o in offsets]
    return np.array(new, dtype=int), [int(s * p) for s, p in zip(strides, pool)]


def _host_to_device(tensor, device, dtype=None):
    """``tensor`` on ``device``, converted to ``dtype`` (``None``: its own).

    A CPU tensor goes to a GPU through pinned (page-locked) memory with an asynchronous copy:
    the host does not wait for it, and the kernels queued after it on the same stream see the
    data. The conversion happens on the device, after the (smaller) copy. Elsewhere this is
    ``tensor.to``; pinning would only cost.
    """
    if device.type == 'cuda' and tensor.device.type == 'cpu':
        if not tensor.is_pinned():
            tensor = tensor.pin_memory()
        tensor = tensor.to(device, non_blocking=True)
    return tensor.to(device=device, dtype=dtype)


class _StagedBatch:
    """A checked batch whose copy to the network's GPU runs on a side stream, so that it can
    overlap the step before the one that uses it (see ``MixedConvNN._stage_batch``).

    On the CPU there is no stream and the tensors are ready at once.
    """

    def __init__(self, cnn, args, aux_kwargs):
        device = cnn.device
        self._stream = torch.cuda.Stream(device) if device.type == 'cuda' else None
        with torch.cuda.stream(self._stream):  # a no-op for None
            self._batch = cnn._prepare(args[0], args[1], args[2:], aux_kwargs)

    def take(self):
        """``(x, y, aux)`` for use on the current stream, which first waits for the copies."""
        if self._stream is not None:
            current = torch.cuda.current_stream(self._stream.device)
            current.wait_stream(self._stream)
            x, y, aux = self._batch
            for t in [x, y] + list(aux.values()):
                # Made on the side stream: their memory must not be reused before the current
                # stream is done with them.
                t.record_stream(current)
            self._stream = None
        return self._batch


def _check_flag(value, name):
    if not isinstance(value, (bool, np.bool_)) and value not in (0, 1):
        raise TypeError('%s must be True or False, got %r' % (name, value))
    return bool(value)


class MixedConvNN(nn.Module):
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

    Example::

        >>> cnn = MixedConvNN((28, 28), input_depth=1)
        >>> cnn.addConvLayer(10, 5, pool_shape=2, activation_func='abs')
        >>> cnn.addPerceptronLayer(10, activation_func='linear')
        >>> cnn.compileOutputFunctions()
        >>> loss, loss_instance, seconds = cnn.trainingStep(data, labels, mode='SGD')
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
            print('For image-like data no depth was specified, using depth=1')
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

        print('-' * 60)
        print('Input shape   = ', _shape_str(self.input_shape), '; This is a', self.n_dim, 'dimensional NN')
        print('---')

    # ------------------------------------------------------------------------------------------------
    # Building
    # ------------------------------------------------------------------------------------------------
    def _check_not_compiled(self, what):
        if self._compiled:
            raise RuntimeError('%s: the network is already compiled; add all layers before compileOutputFunctions()'
                               % what)

    def _to_original_layout(self, shape):
        """A PyTorch-layout shape in the original's layout (3D: ``(bs, z, ch, x, y)``)."""
        if len(shape) == 5:
            return (shape[0], shape[2], shape[1], shape[3], shape[4])
        return tuple(shape)

    def _batch_factor(self):
        return 1 if self.batch_size is None else self.batch_size

    @property
    def device(self):
        """The device the parameters live on."""
        for p in self.parameters():
            return p.device
        return _device.current_device()

    @property
    def dtype(self):
        for p in self.parameters():
            return p.dtype
        return torch.float32

    def addConvLayer(self, nof_filters=None, filter_size=None, pool_shape=2, activation_func='tanh',
                     add_in_output_layers=False, force_no_dropout=False, use_fragment_pooling=False, reshape=False,
                     is_last_layer=False, layer_input_shape=None, layer_input=None, W=None, b=None,
                     pooling_mode='max', affinity=False):
        """Add a valid-convolution layer with pooling (2D or 3D, from the input's dimension).

        Args:
            nof_filters: Number of feature maps.
            filter_size: Filter extent, a scalar or one entry per dimension (``(x, y)``/``(z, x, y)``).
            pool_shape: Pooling factors, a scalar or one per dimension (1 = no pooling).
            activation_func: ``'tanh'``, ``'relu'``, ``'sigmoid'``, ``'abs'``, ``'linear'`` or ``'maxout <k>'``.
            add_in_output_layers: Keep the layer aside in ``_output_layers`` (not part of the chain).
            force_no_dropout: No dropout in this layer even if the network enables dropout.
            use_fragment_pooling: Max-fragment-pooling (MFP): pool every window position, so that
                the network's output is dense (``output_strides`` 1 in the pooled dimensions) and
                ``predictDense`` needs one pass per tile. Every pooling layer after an MFP layer
                must use it too. See :mod:`elektronn.net.prediction`.
            reshape: Kept for compatibility; conv outputs always have their image shape.
            is_last_layer: Output layer: no dropout, probabilities ``(bs, n_lab, [z,] x, y)``; uses
                MFP if any earlier layer did.
            layer_input_shape, layer_input: Not supported (layers are always stacked in order).
            W, b: Initial filters ``(nof, ch, *filter)`` and bias ``(nof,)`` instead of random ones.
            pooling_mode: ``'max'`` or ``'maxabs'``.
            affinity: ``True`` (or ``'affinity'``) for an affinity output layer
                (:class:`~elektronn.net.layers.affinity.AffinityLayer3d`: ``nof_filters`` classes for
                each of the 3 edge directions, ``3 * nof_filters`` output channels), ``'malis'``
                for a :class:`~elektronn.net.layers.affinity.MalisLayer`; 3D networks only.
        """
        self._check_not_compiled('addConvLayer')
        if self.input_depth is None or self.n_dim == 1:
            raise ValueError('addConvLayer needs image input: construct MixedConvNN with a 2D (x, y) or 3D (z, x, y) '
                             'input_size and an input_depth (channels); this network has input shape %s'
                             % (_shape_str(self.input_shape),))
        if len(self._shape) == 2:
            raise ValueError('addConvLayer: a conv layer on top of a perceptron layer is not supported; '
                             'add all conv layers before the perceptron layers')
        if layer_input is not None or layer_input_shape is not None:
            raise NotImplementedError('addConvLayer(layer_input=..., layer_input_shape=...): connecting a layer to an '
                                      'arbitrary tensor is not supported; layers are applied in the order they are added')
        if affinity is not False and affinity is not None and affinity not in (True, 'affinity', 'malis'):
            raise ValueError("addConvLayer: affinity must be False, True, 'affinity' or 'malis', got %r" % (affinity,))
        if affinity and self.n_dim != 3:
            raise ValueError('addConvLayer(affinity=%r): affinity output layers need a 3D network, this one is %iD'
                             % (affinity, self.n_dim))
        if nof_filters is None or filter_size is None:
            raise ValueError('addConvLayer needs nof_filters and filter_size, got %r and %r' % (nof_filters, filter_size))
        if is_last_layer:
            print('Last Layer, by default: no dropout and reshaped outputs')
            force_no_dropout = True
            use_fragment_pooling = use_fragment_pooling or self._atleast_single_mfp
        use_fragment_pooling = _check_flag(use_fragment_pooling, 'use_fragment_pooling')
        dropout = self._enable_dropout and not force_no_dropout
        if affinity:
            cls = MalisLayer if affinity == 'malis' else AffinityLayer3d
        else:
            cls = ConvLayer2d if self.n_dim == 2 else ConvLayer3d
        layer = cls(self._shape, nof_filters, filter_size, pool_shape, activation_func=activation_func,
                    enable_dropout=dropout, pooling_mode=pooling_mode, W=W, b=b,
                    use_fragment_pooling=use_fragment_pooling, dilation=self.mfp_strides)
        if affinity:
            print('Affinity output layer: %i classes for each of the 3 edge directions (z, x, y)' % nof_filters)
        layer.is_last_layer = bool(is_last_layer)
        layer.input_shape = self._to_original_layout(self._shape)
        layer.output_shape = self._to_original_layout(layer.output_shape_internal)
        filter_shape = layer.filter_shape
        if self.n_dim == 3:
            filter_shape = (filter_shape[0], filter_shape[2], filter_shape[1], filter_shape[3], filter_shape[4])
        print('%iDConv: input= %s \tfilter= %s' % (self.n_dim, _shape_str(layer.input_shape), _shape_str(filter_shape)))
        if dropout and self.n_dim == 3:
            print('Dropout: ACTIVE')
        print('Output = %s Dropout %s Act: %s pool: %s' % (_shape_str(layer.output_shape), 'ON,' if dropout else 'OFF,',
                                                           layer.activation_func, layer.pooling_mode))
        if is_last_layer:
            print('Class Prob Output =', _shape_str(layer.output_shape_internal))
        if add_in_output_layers:
            self._output_layers.append(layer)
        else:
            self.layers.append(layer)
            self._shape = layer.output_shape_internal
            self.poolings.append(list(layer.pool))
            if use_fragment_pooling:
                self._atleast_single_mfp = True
                self.mfp_offsets, self.mfp_strides = _mfp_bookkeeping(self.mfp_offsets, self.mfp_strides, layer.pool)
                print('MFP: dense output; fragment strides now %s' % (self.mfp_strides,))
        cost = layer.n_multiplications * self._batch_factor()
        _printOps(cost)
        print('---')
        self.TotalForwardPassCost += cost
        return layer

    def addPerceptronLayer(self, n_outputs=10, activation_func='tanh', enable_input_noise=False,
                           add_in_output_layers=False, force_no_dropout=False, W=None, b=None):
        """Add a fully connected layer; the previous output is flattened to ``(bs, features)``.

        Args:
            n_outputs: Number of units.
            activation_func: ``'tanh'``, ``'relu'``, ``'sigmoid'``, ``'abs'``, ``'linear'`` or ``'maxout <k>'``.
            enable_input_noise: Additive Gaussian noise (std 0.2) on the layer input in training steps.
            add_in_output_layers: Keep the layer aside in ``_output_layers`` (not part of the chain).
            force_no_dropout: No dropout in this layer even if the network enables dropout.
            W: Initial weights ``(n_in, n_outputs)``, or another layer's ``W`` (or ``W.T``) to share it.
            b: Initial bias ``(n_outputs,)``, or another layer's ``b`` to share it.
        """
        self._check_not_compiled('addPerceptronLayer')
        n_in = int(np.prod(self._shape[1:]))
        dropout = self._enable_dropout and not force_no_dropout
        layer = PerceptronLayer(n_in, n_outputs, activation_func=activation_func, enable_dropout=dropout,
                                input_noise=0.2 if enable_input_noise else None, W=W, b=b)
        self._add_perceptron(layer, self._output_layers if add_in_output_layers else self.layers)
        return layer

    def _add_perceptron(self, layer, destination):
        """Print, cost and append a perceptron layer to ``destination``; unless that is
        ``_output_layers``, the layer's output becomes the network's current output."""
        layer.input_shape = (self._shape[0], layer.n_in)
        layer.output_shape = (self._shape[0], layer.output_units)
        layer.output_shape_internal = layer.output_shape
        if len(self._shape) == 5 and 'W' in layer.param_names:
            # the original flattened 3D conv outputs in (z, ch, x, y) order: W.get_value() follows it
            layer.W.original_layout = ('rows', tuple(int(s) for s in self._shape[1:]))
        print('PerceptronLayer( #Inputs =', layer.n_in, '#Outputs =', layer.n_out, ')')
        if layer.input_noise:
            print('Input_noise active, p=%s' % layer.input_noise)
        if layer.has_dropout:
            print('Dropout ON')
        destination.append(layer)
        if destination is not self._output_layers:
            self._shape = layer.output_shape
        cost = layer.n_multiplications * self._batch_factor()
        _printOps(cost)
        print('---')
        self.TotalForwardPassCost += cost

    def addRecurrentLayer(self, n_hid=None, activation_func='tanh', iterations=None):
        """Add an Elman recurrent layer over the time axis; its output is the last hidden state.

        Args:
            n_hid: Number of hidden units.
            activation_func: ``'tanh'``, ``'relu'``, ``'sigmoid'``, ``'abs'`` or ``'linear'``.
            iterations: For a previous output without time axis ``(bs, features)`` (e.g. a
                perceptron layer, or a recurrent network built with ``input_depth=None``): the
                number of time steps to repeat it for.

        Shapes:
            ``(bs, time, features)`` (or ``(bs, features)`` repeated ``iterations`` times) ->
            ``(bs, n_hid)``.
        """
        self._check_not_compiled('addRecurrentLayer')
        if n_hid is None:
            raise ValueError('addRecurrentLayer needs n_hid (the number of hidden units), got None')
        shape = self._shape
        if len(shape) == 2:
            if iterations is None:
                raise ValueError('addRecurrentLayer: the previous output %s has no time axis; give iterations (an '
                                 'int) to repeat it over that many time steps' % (_shape_str(shape),))
            print('Recurrence with broadcasted input')
            steps = iterations
        elif len(shape) == 3:
            steps = shape[1]
            if iterations is not None:
                raise ValueError('addRecurrentLayer: the input %s already has a time axis (%i steps); iterations=%r '
                                 'is only for input without one' % (_shape_str(shape), steps, iterations))
        else:
            raise ValueError('addRecurrentLayer needs input (bs, time, features) or (bs, features); the previous '
                             'output is %s (use MixedConvNN(n_features, input_depth=time_steps, recurrent=True))'
                             % (_shape_str(shape),))
        layer = RecurrentLayer(shape[-1], n_hid, activation_func=activation_func,
                               iterations=iterations if len(shape) == 2 else None)
        layer.input_shape = (shape[0], steps, shape[-1])
        layer.output_shape = layer.output_shape_internal = (shape[0], layer.n_hid)
        print('RecurrentLayer( #Inputs =', layer.n_in, '#Hidden = ', layer.n_hid, ')')
        if layer.activation_func == 'linear':
            print('Warning: linear activation in recurrent layer with fanout-%i! Is this the output layer?' % layer.n_hid)
        self.layers.append(layer)
        self._shape = layer.output_shape
        cost = layer.n_multiplications(steps) * self._batch_factor()
        _printOps(cost)
        print('---')
        self.TotalForwardPassCost += cost
        return layer

    def addTiedAutoencoderChain(self, n_layers=None, force_no_dropout=False, activation_func='tanh', input_noise=0.3,
                                tie_W=True, add_layers_to_network=True):
        """Add decoder layers that mirror the perceptron layers, deepest first, back to the input size.

        Each decoder uses the transposed weights of its mirror layer (the same tensor: encoder and
        decoder are updated together) and its own bias; the first decoder adds Gaussian noise of
        std ``input_noise`` to the code in training steps (a denoising autoencoder). Train it with
        ``compileOutputFunctions(target='regression')`` and the input as target. The chain is
        left out of ``saveParameters`` by default, so the saved file holds just the encoder.

        Args:
            n_layers: Number of layers to mirror: all (``None``, 0 or negative) or, as the chain
                continues the network, exactly the number of layers.
            force_no_dropout: No dropout in the decoders even if the network enables dropout.
            activation_func: Activation of the decoders (no maxout).
            input_noise: Noise std on the first decoder's input (``None``/0: none).
            tie_W: Share the encoder weights; ``False`` gives the decoders weights of their own.
            add_layers_to_network: Append the decoders to ``cnn.layers`` now (as the original
                examples page); ``False`` keeps them in ``cnn._autoencoder_chains`` until
                ``compileOutputFunctions`` appends them (as ELEKTRONN 1.0.14). The network is the
                same either way.

        Returns:
            The list of decoder layers (:class:`~elektronn.net.layers.autoencoder.TiedDecoderLayer`).
        """
        self._check_not_compiled('addTiedAutoencoderChain')
        if self._autoencoder_chains:
            raise RuntimeError('addTiedAutoencoderChain: the network already has an autoencoder chain')
        n_total = len(self.layers)
        if isinstance(n_layers, bool) or not (n_layers is None or isinstance(n_layers, (int, np.integer))) \
                or (n_layers or 0) > n_total:
            raise ValueError('n_layers must be between 1 and the number of layers (%i), got %r' % (n_total, n_layers))
        n_layers = n_total if n_layers is None or n_layers <= 0 else int(n_layers)
        if n_layers != n_total:
            raise NotImplementedError('addTiedAutoencoderChain(n_layers=%i): a chain that branches off below the '
                                      'deepest of the %i layers is not supported; mirror all layers and build a '
                                      'classifier from the saved encoder (saveParameters(layers=cnn.layers[0:%i]))'
                                      % (n_layers, n_total, n_layers))
        kinds = [type(layer).__name__ for layer in self.layers if not isinstance(layer, PerceptronLayer)]
        if kinds:
            raise ValueError('addTiedAutoencoderChain mirrors perceptron layers only; this network also has %s'
                             % ', '.join(sorted(set(kinds))))
        dropout = self._enable_dropout and not force_no_dropout
        chain = build_tied_chain(self.layers[:n_layers], activation_func=activation_func, input_noise=input_noise,
                                 tie_W=_check_flag(tie_W, 'tie_W'), enable_dropout=dropout)
        add_now = _check_flag(add_layers_to_network, 'add_layers_to_network')
        for layer in chain:
            self._add_perceptron(layer, self.layers if add_now else self._autoencoder_chains)
        if add_now:
            self._autoencoder_chains.extend(chain)
        return chain

    # ------------------------------------------------------------------------------------------------
    # Compiling
    # ------------------------------------------------------------------------------------------------
    def compileOutputFunctions(self, target='nll', use_class_weights=False, use_example_weights=False,
                               use_lazy_labels=False, use_label_prop=False, only_forward=False):
        """Fix the loss and make ``get_error``, ``get_loss``, ``class_probabilities``, ``prediction``
        and ``trainingStep`` available.

        Args:
            target: ``'nll'`` (softmax negative log-likelihood, labels ``< 0`` ignored),
                ``'regression'`` (mean squared error on the activated output), ``'nll_weak'``
                (NLL against half label, half prediction), ``'nll_mutiple_binary'`` (also spelt
                ``'nll_multiple_binary'``: independent two-class outputs of a perceptron layer),
                ``'affinity'`` (affinity graphs, needs an affinity output layer) or ``'malis'``
                (MALIS loss on an affinity output). See :mod:`elektronn.net.targets`.
            use_class_weights: The loss takes ``class_weights`` ``(n_lab,)`` (``(2,)`` for
                ``'nll_mutiple_binary'`` and ``'malis'``).
            use_example_weights: The loss takes ``example_weights`` shaped like the labels (``'nll'``).
            use_lazy_labels: The loss takes the lazy-label masks ``mask_class_labeled`` and
                ``mask_class_not_present`` ``(bs, n_lab)`` (``'nll'``).
            use_label_prop: The loss takes ``label_prop_thresh`` (a scalar) for label propagation (``'nll'``).
            only_forward: Evaluation only (no ``trainingStep``).

        Auxiliary inputs follow data and labels, positionally in the order ``seg_gt`` (``'malis'``),
        ``mask_class_labeled, mask_class_not_present, class_weights, example_weights,
        label_prop_thresh`` (those enabled; ``cnn._aux_names`` lists them), or by keyword.
        """
        if not self.layers:
            raise RuntimeError('compileOutputFunctions: the network has no layers; add layers first')
        _targets.canonical_name(target)
        flags = {name: _check_flag(value, name) for name, value in (
            ('use_class_weights', use_class_weights), ('use_example_weights', use_example_weights),
            ('use_lazy_labels', use_lazy_labels), ('use_label_prop', use_label_prop), ('only_forward', only_forward))}
        self._append_pending_chain()
        last = self.layers[-1]
        n_out = last.output_shape_internal[1]
        target_obj = _targets.make_target(target, last, n_out, flags)

        print('GLOBAL')
        _printOps(self.TotalForwardPassCost)
        self.t_graph = time.time()
        self.params = self._unique_parameters()
        self.param_count = int(sum(p.numel() for p in self.params))
        print('Total Count of trainable Parameters:', self.param_count)
        print('Building Computational Graph took %.3f s' % (self.t_graph - self.t_init))
        print('Compiling output functions for %s target:' % target)
        print('\t' + ('using class_weights' if flags['use_class_weights'] else 'using no class_weights'))
        print('\t' + ('using example_weights' if flags['use_example_weights'] else 'using no example_weights'))
        print('\t' + ('using lazy_labels' if flags['use_lazy_labels'] else 'using no lazy_labels'))
        print('\t' + ('label propagation active' if flags['use_label_prop'] else 'label propagation inactive'))
        if len(self._output_layers):
            print('Warning: <compileOutputFunctions> only applies to the LAST layer in self.layers '
                  '(and ignores elements of self._output_layers)')

        self.target = target
        self._target = target_obj
        self.n_lab = target_obj.n_lab
        self._only_forward = flags['only_forward']
        self._aux_names = list(target_obj.aux_names)
        if isinstance(last, _ConvLayer):
            self.output_shape = (last.output_shape_internal[0], n_out) + tuple(last.output_shape_internal[2:])
            self.output_strides = [int(s) for s in np.prod(np.array(self.poolings), axis=0)]
            if self.mfp_strides is not None:
                self.output_strides = [s // m for s, m in zip(self.output_strides, self.mfp_strides)]
        else:
            self.output_shape = (last.output_shape_internal[0], n_out)
            self.output_strides = None
        self._eval_chunk = self._evaluation_chunk_size()
        self.to(_device.current_device() if not self._compiled else self.device)
        self.setMemoryFormat(self._default_memory_format())
        self._optimizers = {}
        self.eval()
        self._compiled = True
        print(' Compiling done  - in %.3f s!' % (time.time() - self.t_graph))
        print('-' * 60)
        print('-' * 60)

    def _append_pending_chain(self):
        """Append an autoencoder chain kept aside (``add_layers_to_network=False``) to the layers."""
        pending = [layer for layer in self._autoencoder_chains if not any(layer is m for m in self.layers)]
        if not pending:
            return
        if self.layers[-1] is not pending[0].mirror:
            raise RuntimeError('compileOutputFunctions: layers were added after addTiedAutoencoderChain('
                               'add_layers_to_network=False); the chain must follow the layers it mirrors')
        self.layers.extend(pending)

    def _unique_parameters(self):
        seen, out = set(), []
        for layer in self.layers:
            for p in layer.own_parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    out.append(p)
        return out

    def _evaluation_chunk_size(self):
        per_example = sum(int(np.prod(layer.output_shape_internal[1:])) for layer in self.layers)
        per_example += int(np.prod(self._internal_input_shape()[1:]))
        return max(1, _EVAL_CHUNK_BYTES // (3 * 4 * per_example))

    def _internal_input_shape(self):
        if self.input_depth is not None and self.n_dim == 3:
            s = self.input_shape
            return (s[0], s[2], s[1], s[3], s[4])
        return self.input_shape

    def _default_memory_format(self):
        """Channels-last for conv nets on the CPU, where oneDNN's convolutions are faster in it."""
        if self.input_depth is None or self.n_dim == 1 or self.device.type != 'cpu':
            return torch.contiguous_format
        return torch.channels_last if self.n_dim == 2 else torch.channels_last_3d

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
        if self._compiled and self.device.type != device.type:
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

    def _require_compiled(self, what, training=False):
        if not self._compiled:
            raise RuntimeError('%s: call compileOutputFunctions() first' % what)
        if training and self._only_forward:
            raise RuntimeError('%s: the network was compiled with only_forward=True; compile it again without it'
                               % what)

    # ------------------------------------------------------------------------------------------------
    # Array conversion at the boundary
    # ------------------------------------------------------------------------------------------------
    def _to_input(self, data):
        """NumPy data in the original layout -> tensor in PyTorch layout on the network's device."""
        if isinstance(data, torch.Tensor):
            x = data
        else:
            arr = np.asarray(data)
            if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
                raise TypeError('data must be a numeric array, got dtype %s' % arr.dtype)
            x = torch.from_numpy(np.ascontiguousarray(arr))
        expected = self.input_shape
        if x.ndim != len(expected):
            raise ValueError('data must have %i axes %s for this network, got shape %s'
                             % (len(expected), _shape_str(expected), tuple(x.shape)))
        if self.input_depth is None or self.n_dim == 1:
            if tuple(x.shape[1:]) != tuple(expected[1:]):
                raise ValueError('data must have shape %s for this network, got %s'
                                 % (_shape_str(expected), tuple(x.shape)))
        else:
            ch_axis = 2 if self.n_dim == 3 else 1
            if x.shape[ch_axis] != self.input_depth:
                raise ValueError('data has %i channel(s) on axis %i (shape %s) but the network expects %i; the layout is %s'
                                 % (x.shape[ch_axis], ch_axis, tuple(x.shape), self.input_depth, _shape_str(expected)))
            self._check_spatial(tuple(x.shape[ch_axis + 1:]) if self.n_dim == 2 else
                                (x.shape[1],) + tuple(x.shape[3:]), tuple(x.shape))
        x = _host_to_device(x, self.device, self.dtype)
        if self.n_dim == 3 and self.input_depth is not None:
            x = x.permute(0, 2, 1, 3, 4)
        if x.ndim > 2:
            x = x.contiguous(memory_format=self.memory_format)
        return x

    def _check_spatial(self, spatial, full_shape):
        has_perceptron = any(isinstance(layer, PerceptronLayer) for layer in self.layers)
        if has_perceptron:
            if tuple(spatial) != tuple(int(s) for s in self.patch_size):
                raise ValueError('data has spatial shape %s (array shape %s) but this network (with perceptron layers) '
                                 'needs exactly %s' % (tuple(spatial), full_shape, tuple(int(s) for s in self.patch_size)))
            return
        sizes = list(spatial)
        for layer in self.layers:
            sizes = layer.output_spatial(sizes)
            if min(sizes) < 1:
                raise ValueError('data of spatial shape %s (array shape %s) is smaller than the field of view of this '
                                 'network' % (tuple(spatial), full_shape))

    def _to_labels(self, labels, n_examples):
        arr = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
        expected = self._target.label_shape(n_examples, self.output_shape)
        if self.target == 'regression':
            out_shape = (n_examples,) + tuple(self.output_shape[1:])
            if arr.shape not in (expected, out_shape):
                raise ValueError('regression targets must have shape %s or %s, got %s' % (expected, out_shape, arr.shape))
            return _host_to_device(torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)), self.device,
                                   self.dtype)
        if arr.shape != expected:
            what = 'output position' if len(expected) > 1 else 'example'
            if self._target.name == 'nll_mutiple_binary':
                what = 'output unit (0 or 1)'
            elif self._target.name in ('affinity', 'malis'):
                what = 'edge direction (z, x, y) and output position'
            raise ValueError('labels must have shape %s (one class index per %s), got %s' % (expected, what, arr.shape))
        if not np.issubdtype(arr.dtype, np.integer):
            if np.issubdtype(arr.dtype, np.floating) and np.all(np.mod(arr, 1) == 0):
                arr = arr.astype(np.int64)
            else:
                raise TypeError("labels must be integer class indices for target %r, got dtype %s"
                                % (self.target, arr.dtype))
        n_classes = self._target.n_classes
        if arr.size and arr.max() >= n_classes:
            raise ValueError('labels contain class %i but the output has %i classes: labels must lie in 0..%i '
                             '(negative values mean "ignore")' % (arr.max(), n_classes, n_classes - 1))
        return _host_to_device(torch.from_numpy(np.ascontiguousarray(arr, dtype=np.int64)), self.device)

    def _to_aux(self, aux_args, aux_kwargs, labels_shape):
        """Auxiliary loss inputs (positional in compiled order, or by keyword) as tensors."""
        names = self._aux_names
        if len(aux_args) > len(names):
            raise ValueError('The number of auxiliary arguments for the loss is not matching the compiled signature %s: '
                             'got %i positional auxiliary argument(s)' % (names, len(aux_args)))
        values = dict(zip(names, aux_args))
        for key, value in aux_kwargs.items():
            if key not in names:
                raise TypeError('unexpected auxiliary argument %r; this network was compiled for %s'
                                % (key, names or 'no auxiliary inputs'))
            if key in values:
                raise TypeError('auxiliary argument %r given both by position and by keyword' % key)
            values[key] = value
        missing = [n for n in names if n not in values]
        if missing:
            raise ValueError('missing auxiliary argument(s) %s; the compiled signature is (data, labels, %s)'
                             % (missing, ', '.join(names)))
        return {name: self._aux_tensor(name, value, labels_shape) for name, value in values.items()}

    def _aux_tensor(self, name, value, labels_shape):
        """One auxiliary input as a tensor, after checking its shape and values."""
        arr = np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value)
        want = self._target.aux_shape(name, labels_shape)
        if name == 'label_prop_thresh' and arr.size == 1:
            arr = arr.reshape(())
        if arr.shape != want:
            raise ValueError('%s must have shape %s, got %s' % (name, want, arr.shape))
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
            raise TypeError('%s must be a numeric array, got dtype %s' % (name, arr.dtype))
        if name == 'seg_gt':
            return _host_to_device(torch.from_numpy(np.ascontiguousarray(arr, dtype=np.int64)), self.device)
        if name in ('mask_class_labeled', 'mask_class_not_present') and not np.isin(arr, (0, 1)).all():
            raise ValueError('%s must hold 0/1 flags per example and class, got values %s'
                             % (name, np.unique(arr)[:10].tolist()))
        return _host_to_device(torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)), self.device, self.dtype)

    def _prepare(self, data, labels, aux_args, aux_kwargs):
        x = self._to_input(data)
        y = self._to_labels(labels, x.shape[0])
        return x, y, self._to_aux(aux_args, aux_kwargs, y.shape)

    def _stage_batch(self, data, labels, *aux, **aux_kwargs):
        """Check a batch (arguments as for ``trainingStep``) and start its copy to the device.

        Returns:
            A batch to pass to ``trainingStep`` as its only positional argument; on a GPU it is
            copied on a side stream, so staging the next batch before a step overlaps the copy
            with that step.
        """
        self._require_compiled('trainingStep', training=True)
        return _StagedBatch(self, (data, labels) + aux, aux_kwargs)

    # ------------------------------------------------------------------------------------------------
    # Forward passes and the objective
    # ------------------------------------------------------------------------------------------------
    def _run(self, x):
        """Forward pass in PyTorch layout: ``(linear output, activated output)`` of the last layer."""
        for layer in self.layers[:-1]:
            x = layer(x)
        last = self.layers[-1]
        lin = last.linear(x)
        return lin, last.activate(lin)

    def forward(self, x):
        """The network's (activated) output for a tensor ``x`` in the original input layout."""
        if self.n_dim == 3 and self.input_depth is not None:
            x = x.permute(0, 2, 1, 3, 4)
        return self._run(x)[1]

    def _objective(self, x, y, aux, replicated=False):
        """``(loss, loss_instance, lin, out)`` for a batch in PyTorch layout.

        With ``replicated`` (a forward pass that a backward pass follows) the output comes through the
        DistributedDataParallel wrapper, if any, whose backward pass all-reduces the gradients.
        """
        lin, out = self._run(x) if not replicated or self._ddp is None else self._ddp(x)
        loss, instance = self._target.loss(lin, out, y, aux)
        return loss, instance, lin, out

    def _chunks(self, n):
        step = self._eval_chunk
        return [(i, min(n, i + step)) for i in range(0, max(n, 1), step)]

    def _evaluate(self, x, y, aux):
        """Loss, error and predictions over all of ``x`` in memory-bounded chunks, without dropout."""
        was_training = self.training
        self.eval()
        target = self._target
        totals = counts = wrong = counted = 0
        instances, outputs = [], []
        try:
            with torch.no_grad():
                for a, b in self._chunks(x.shape[0]):
                    chunk_aux = {k: (v[a:b] if k in _targets.PER_EXAMPLE_AUX else v) for k, v in aux.items()}
                    lin, out = self._run(x[a:b])
                    total, count, instance = target.loss_terms(lin, out, y[a:b], chunk_aux)
                    totals = totals + total.double().cpu()
                    counts = counts + count.double().cpu()
                    instances.append(instance)
                    outputs.append(target.prediction(lin, out))
                    errors = target.error_terms(lin, out, y[a:b])
                    if errors is not None:
                        wrong = wrong + errors[0].double().cpu()
                        counted = counted + errors[1].double().cpu()
        finally:
            self.train(was_training)
        loss = np.float32(target.finish(totals, counts))
        error = math.nan if isinstance(counted, int) else _targets.error_rate(wrong.numpy(), counted.numpy())
        return loss, error, torch.cat(instances), torch.cat(outputs)

    # ------------------------------------------------------------------------------------------------
    # The compiled callables
    # ------------------------------------------------------------------------------------------------
    def get_error(self, data, labels, *aux, **aux_kwargs):
        """Loss, error and prediction on a (large) batch, without dropout.

        Returns:
            ``[loss, error_rate, class_prediction]`` for classification targets (error over the
            labelled positions); ``(mse, output)`` for ``'regression'``.
        """
        self._require_compiled('get_error')
        x, y, a = self._prepare(data, labels, aux, aux_kwargs)
        loss, error, _, outputs = self._evaluate(x, y, a)
        outputs = outputs.cpu().numpy()
        if self.target == 'regression':
            return loss, outputs
        return [loss, error, outputs]

    def get_loss(self, data, labels, *aux, **aux_kwargs):
        """``(loss, loss_instance)`` on a batch, without dropout (``loss_instance``: per example/position)."""
        self._require_compiled('get_loss')
        x, y, a = self._prepare(data, labels, aux, aux_kwargs)
        loss, _, instance, _ = self._evaluate(x, y, a)
        return loss, instance.cpu().numpy()

    def malis_stats(self, data, labels, seg_gt):
        """MALIS statistics on a batch (target ``'malis'``), without dropout.

        Returns:
            The original's list ``[nll, n_pos, n_neg, n_tot, false_splits, false_merges,
            rand_index, pos_count, neg_count]``: the MALIS loss, the numbers of voxel pairs that
            should be connected / separated (and their sum), the pair counts of edges predicted
            disconnected although their pairs belong together (false splits) and connected
            although they do not (false merges), ``(false_splits + false_merges) / n_tot``, and
            the per-edge pair counts ``(bs, 3, z, x, y)``.
        """
        self._require_compiled('malis_stats')
        if self._target.name != 'malis':
            raise RuntimeError("malis_stats needs a network compiled with target='malis', this one has %r"
                               % (self.target,))
        x = self._to_input(data)
        y = self._to_labels(labels, x.shape[0])
        seg = self._aux_tensor('seg_gt', seg_gt, y.shape)
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                lin, _ = self._run(x)
                return self._target.stats(lin, y, seg)
        finally:
            self.train(was_training)

    def class_probabilities(self, data):
        """Softmax of the output layer (``(bs, n_lab[, z], x, y)`` for conv outputs); for
        ``'regression'`` the activated output; ``(bs, n_out, 2)`` for ``'nll_mutiple_binary'``;
        ``(bs, 3 * n_lab, z, x, y)`` (one softmax per edge direction) for affinity outputs."""
        self._require_compiled('class_probabilities')
        x = self._to_input(data)
        return self._predict(x, probabilities=True)

    def prediction(self, data):
        """The activated output for ``'regression'``; the arg-max class for classification targets."""
        self._require_compiled('prediction')
        x = self._to_input(data)
        return self._predict(x, probabilities=False)

    def _predict(self, x, probabilities=True):
        was_training = self.training
        self.eval()
        parts = []
        try:
            with torch.no_grad():
                for a, b in self._chunks(x.shape[0]):
                    lin, out = self._run(x[a:b])
                    parts.append(self._target.probabilities(lin, out) if probabilities
                                 else self._target.prediction(lin, out))
        finally:
            self.train(was_training)
        result = torch.cat(parts)
        return (result.float() if probabilities else result).cpu().numpy()

    def predictDense(self, raw_img, show_progress=True, offset=None, as_uint8=False, pad_raw=False):
        """Predict every voxel of an image ``(ch, x, y)`` or volume ``(ch, x, y, z)`` (xyz order; a 2D
        network predicts a volume slice by slice).

        Integer input is divided by 255. Returns ``(n_lab, x', y'[, z'])`` probabilities (float32, or
        uint8 scaled by 255 with ``as_uint8``), inset by the offset ``floor(fov / 2)`` per side, or
        of the input's shape with ``pad_raw`` (mirror padding). Prints the tiling, progress and speed.
        See :func:`elektronn.net.prediction.predict_dense` for the details and the voxel alignment.
        """
        return predict_dense(self, raw_img, show_progress=show_progress, offset=offset, as_uint8=as_uint8,
                             pad_raw=pad_raw)

    # ------------------------------------------------------------------------------------------------
    # Training
    # ------------------------------------------------------------------------------------------------
    def _optimizer(self, mode):
        if mode not in MODES:
            raise ValueError('mode must be one of %s, got %r' % (MODES, mode))
        if mode not in self._optimizers:
            t0 = time.time()
            print('Compiling %s' % mode)
            settings = self._SGD_params if mode == 'SGD' else getattr(self, '_%s_params' % mode)
            extra = {'timeline': self.CG_timeline} if mode == 'CG' else {}
            self._optimizers[mode] = OPTIMIZERS[mode](self.params, settings, self.global_weightdecay, **extra)
            print(' Compiling done  - in %.3f s!' % (time.time() - t0))
        return self._optimizers[mode]

    def _is_stochastic(self):
        """Whether training-mode forward passes draw random numbers (dropout, input noise)."""
        return any(getattr(layer, 'dropout_rate', None) or getattr(layer, 'input_noise', None)
                   for layer in self.layers)

    def _closure(self, x, y, aux, repeatable):
        """The loss closure of one training step (see :meth:`_Optimizer.step`).

        With ``repeatable`` every call draws the same dropout masks and input noise, so that an
        optimiser evaluating the loss several times (CG, LBFGS) compares one and the same function.
        """
        seed = int(torch.randint(0, 2 ** 62, (1,))) if repeatable and self._is_stochastic() else None
        device = self.device
        rng_devices = [device.index if device.index is not None else torch.cuda.current_device()] \
            if device.type == 'cuda' else []

        def evaluate(backward):
            for p in self.params:
                p.grad = None
            if not backward:
                with torch.no_grad():
                    loss, instance, _, _ = self._objective(x, y, aux)
                return loss, instance
            loss, instance, _, _ = self._objective(x, y, aux, replicated=True)
            loss.backward()
            return loss.detach(), instance.detach()

        def closure(backward=True):
            if seed is None:
                return evaluate(backward)
            with torch.random.fork_rng(devices=rng_devices):
                torch.manual_seed(seed)
                return evaluate(backward)

        return closure

    def trainingStep(self, *args, mode='SGD', update_loss=False, **aux_kwargs):
        """One optimiser iteration on a batch.

        Signature: ``cnn.trainingStep(data, labels[, *aux], mode='SGD', update_loss=False)``; auxiliary
        inputs may also be given by keyword (``class_weights=...``). Instead of the arrays, the
        Trainer passes a batch staged ahead with ``_stage_batch``.

        Args:
            mode: ``'SGD'``, ``'Adam'``, ``'RPROP'``, ``'CG'`` or ``'LBFGS'``; each keeps its own
                state, so the mode can change between steps (see :mod:`elektronn.net.optimizers`).
            update_loss: Return the loss after the update instead of before it (CG and LBFGS
                always return the loss after their update).

        Returns:
            ``(loss, loss_instance, seconds)``: the float32 loss, the per-example (per-position)
            loss and the time the step took.
        """
        self._require_compiled('trainingStep', training=True)
        staged = len(args) == 1 and isinstance(args[0], _StagedBatch)
        if len(args) < 2 and not staged:
            raise TypeError('trainingStep needs data and labels, got %i positional argument(s)' % len(args))
        t0 = time.time()
        optimizer = self._optimizer(mode)
        if staged:
            if aux_kwargs:
                raise TypeError('trainingStep: a staged batch carries its auxiliary inputs, got %s'
                                % sorted(aux_kwargs))
            x, y, aux = args[0].take()
        else:
            x, y, aux = self._prepare(args[0], args[1], args[2:], aux_kwargs)
        closure = self._closure(x, y, aux, repeatable=optimizer.repeatable_closure)
        self.train()
        try:
            loss, instance = optimizer.step(closure)
        finally:
            self.eval()
        if update_loss:
            loss, _, instance, _ = self._evaluate(x, y, aux)
        loss = np.float32(float(loss))  # NumPy cannot read a GPU tensor itself
        return loss, instance.cpu().numpy(), (time.time() - t0) + 1e-10

    def setOptimizerParams(self, SGD={}, CG={}, RPROP={}, LBFGS={}, Adam={}, weight_decay=0.0):
        """Set optimiser hyper-parameters (defaults first, then the given entries) and the global weight decay.

        ``weight_decay`` is an L2 coefficient shared by all optimisers (``False`` means 0).
        The dicts of optimisers already in use are updated in place, so changes act at once.

        Raises:
            ValueError: an unknown or out-of-range CG / LBFGS hyper-parameter.
        """
        for name, value in (('SGD', SGD), ('CG', CG), ('RPROP', RPROP), ('LBFGS', LBFGS), ('Adam', Adam)):
            if not isinstance(value, dict):
                raise TypeError('%s must be a dict of hyper-parameters, got %r' % (name, value))
        checked = {}
        for name, value in (('CG', CG), ('LBFGS', LBFGS)):
            checked[name] = dict(DEFAULT_PARAMS[name], **value)
            check_settings(name, checked[name])
        self.setWeightDecay(0.0 if weight_decay is False or weight_decay is None else weight_decay)
        self.setSGDLR(SGD.get('LR', DEFAULT_PARAMS['SGD']['LR']))
        self.setSGDMomentum(SGD.get('momentum', DEFAULT_PARAMS['SGD']['momentum']))
        self._RPROP_params.clear()
        self._RPROP_params.update(DEFAULT_PARAMS['RPROP'], **RPROP)
        self._Adam_params.clear()
        self._Adam_params.update(DEFAULT_PARAMS['Adam'], **Adam)
        for name in ('CG', 'LBFGS'):
            params = getattr(self, '_%s_params' % name)
            params.clear()
            params.update(checked[name])

    def setSGDLR(self, value=0.09):
        self.SGD_LR.set_value(value)

    def setSGDMomentum(self, value=0.9):
        self.SGD_momentum.set_value(value)

    def setWeightDecay(self, value=0.0005):
        if not np.isscalar(value) or value < 0:
            raise ValueError('weight_decay must be a non-negative number, got %r' % (value,))
        self.global_weightdecay.set_value(value)

    def getLR(self, mode='SGD'):
        """The learning rate of optimiser ``mode`` (``None`` for RPROP, CG and LBFGS, which have none)."""
        if mode == 'SGD':
            return float(self.SGD_LR)
        if mode in ('RPROP', 'CG', 'LBFGS'):
            return None
        params = getattr(self, '_%s_params' % mode, None)
        if params is None:
            raise ValueError('unknown optimiser %r' % (mode,))
        return params.get('LR')

    def setLR(self, value, mode='SGD'):
        """Set the learning rate of optimiser ``mode`` (what LR decay and the console's ``setlr`` use)."""
        if mode == 'SGD':
            self.setSGDLR(value)
        elif mode in ('RPROP', 'CG', 'LBFGS'):
            print('%s has no learning rate (%s); LR unchanged'
                  % (mode, 'it adapts per-element step sizes' if mode == 'RPROP' else 'it searches its step sizes'))
        else:
            params = getattr(self, '_%s_params' % mode, None)
            if params is None:
                raise ValueError('unknown optimiser %r' % (mode,))
            params['LR'] = float(value)

    def resetMomenta(self):
        """Forget every optimiser's accumulated state (momenta; RPROP step sizes go to 1e-3)."""
        print('CNN: resetting momenta')
        for name, opt in self._optimizers.items():
            if name == 'RPROP':
                opt.reset(step_size=RPROP_RESET_STEP)
            else:
                opt.reset()

    def randomizeWeights(self, reset_momenta=True):
        """Draw new weights for every layer (Glorot uniform, as the original's re-initialisation)."""
        print('CNN: Randomizing weights')
        for layer in list(self.layers) + list(self._output_layers):
            layer.reset_parameters(mode='uni')
        if reset_momenta:
            self.resetMomenta()

    def optimizer_state(self):
        """States of all optimisers used so far (NumPy arrays), e.g. to resume a training run."""
        return {name: opt.state_dict() for name, opt in self._optimizers.items()}

    def load_optimizer_state(self, states):
        for name, state in states.items():
            self._optimizer(name).load_state_dict(state)

    # ------------------------------------------------------------------------------------------------
    # Dropout
    # ------------------------------------------------------------------------------------------------
    def _dropout_layers(self):
        return [layer for layer in self.layers if layer.has_dropout]

    def getDropoutRates(self):
        """Dropout rates of the layers that have dropout, in layer order."""
        return [float(layer.dropout_rate) for layer in self._dropout_layers()]

    def setDropoutRates(self, rates):
        """Set dropout rates: one per layer (layers without dropout skip theirs), or one per layer
        that has dropout (the list ``getDropoutRates`` returns)."""
        rates = [float(r) for r in np.atleast_1d(np.asarray(rates, dtype=float))]
        for r in rates:
            if not 0.0 <= r <= 1.0:
                raise ValueError('dropout rates must lie in [0, 1], got %r' % (r,))
        with_dropout = self._dropout_layers()
        if len(rates) == len(with_dropout):
            targets = with_dropout
        elif len(rates) <= len(self.layers):
            targets = [layer for layer, _ in zip(self.layers, rates)]
        else:
            raise ValueError('got %i dropout rates; give one per layer (%i) or one per layer with dropout (%i)'
                             % (len(rates), len(self.layers), len(with_dropout)))
        for layer, r in zip(targets, rates):
            if layer.has_dropout:
                layer.dropout_rate = float(r)

    # ------------------------------------------------------------------------------------------------
    # Parameter files
    # ------------------------------------------------------------------------------------------------
    def _saveable_layers(self):
        chain = set(id(layer) for layer in self._autoencoder_chains)
        return [layer for layer in self.layers if id(layer) not in chain]

    def saveParameters(self, path='CNN.save', layers=None, show=True):
        """Save the parameters of ``layers`` (default: all but autoencoder chains) to an HDF5 file."""
        layers = self._saveable_layers() if layers is None else list(layers)
        if show:
            print('Saving params to file')
            print(' shapes are: ' + str([tuple(a.shape) for layer in layers for a in layer.param_arrays()[:1]]))
        _params.save_parameters(path, layers, self.poolings)

    def loadParameters(self, myfile='CNN.save', strict=False, n_layers_to_load=-1):
        """Load parameters saved by :meth:`saveParameters` (or a legacy ``.param`` file).

        Args:
            myfile: The file.
            strict: Require exactly matching layers and shapes (``ValueError`` naming the first
                mismatch otherwise). The default adapts differing shapes (see :mod:`elektronn.net.params`).
            n_layers_to_load: Load only the first k layers (all if negative).

        Momenta are reset first.
        """
        self.resetMomenta()
        saved, _ = _params.read_parameter_file(myfile)
        legacy.reorder_flattened_inputs(saved, self._saveable_layers())
        _params.apply_parameters(self._saveable_layers(), saved, path=str(myfile), strict=strict,
                                 n_layers_to_load=n_layers_to_load)

    # ------------------------------------------------------------------------------------------------
    # Introspection
    # ------------------------------------------------------------------------------------------------
    def get_activities(self, data):
        """Outputs of every layer for ``data`` (original layouts), without dropout."""
        x = self._to_input(data)
        out = []
        with torch.no_grad():
            for layer in self.layers:
                x = layer(x)
                a = x.float().cpu().numpy()
                out.append(a.transpose(0, 2, 1, 3, 4) if a.ndim == 5 else a)
        return out

    def get_nonpooled_activities(self, data):
        """Linear convolution outputs before pooling (conv layers) for ``data``."""
        x = self._to_input(data)
        out = []
        with torch.no_grad():
            for layer in self.layers:
                if isinstance(layer, _ConvLayer):
                    a = layer.convolve(x).float().cpu().numpy()
                    out.append(a.transpose(0, 2, 1, 3, 4) if a.ndim == 5 else a)
                x = layer(x)
        return out

    def compileDebugFunctions(self, gradients=True):
        """Make the original's debug callables.

        * ``debug_functions``: one per layer, ``f(data)`` returns that layer's output (original layout);
        * ``debug_conv_output``: one per conv layer, its convolution output before pooling;
        * ``debug_gradients_function`` (with ``gradients``; needs a compiled network):
          ``f(data, labels, *aux)`` returns the gradient of the loss for every array of
          ``cnn.params``, in the original's layout (as ``param.get_value()``), computed as in a
          training step (with dropout).
        """
        self.debug_functions = [(lambda data, i=i: self.get_activities(data)[i]) for i in range(len(self.layers))]
        n_conv = sum(isinstance(layer, _ConvLayer) for layer in self.layers)
        self.debug_conv_output = [(lambda data, i=i: self.get_nonpooled_activities(data)[i]) for i in range(n_conv)]
        if gradients:
            self.debug_gradients_function = self._debug_gradients

    def _debug_gradients(self, data, labels, *aux, **aux_kwargs):
        self._require_compiled('debug_gradients_function', training=True)
        grads = self._gradients(data, labels, *aux, **aux_kwargs)
        return [p.to_original_layout(g) if hasattr(p, 'to_original_layout') else g for p, g in zip(self.params, grads)]

    def _gradients(self, data, labels, *aux, **aux_kwargs):
        x, y, a = self._prepare(data, labels, aux, aux_kwargs)
        for p in self.params:
            p.grad = None
        self.train()
        try:
            loss, _, _, _ = self._objective(x, y, a)
            loss.backward()
        finally:
            self.eval()
        grads = [p.grad.detach().cpu().numpy() if p.grad is not None else np.zeros(tuple(p.shape), np.float32)
                 for p in self.params]
        for p in self.params:
            p.grad = None
        return grads

    @staticmethod
    def _print_stats(title, arrays):
        print(title)
        for a in arrays:
            print('shape=%s,\tmean=%f,\tstd=%f' % (a.shape, np.mean(a), np.std(a)))

    def gradstats(self, data, labels, *aux, **aux_kwargs):
        """Print shape, mean and std of every parameter's gradient on a batch."""
        self._require_compiled('gradstats', training=True)
        self._print_stats('Gradient statistics', self._gradients(data, labels, *aux, **aux_kwargs))

    def actstats(self, data):
        """Print shape, mean and std of every layer's output on ``data``."""
        self._print_stats('Activation statistics', self.get_activities(data))

    def paramstats(self):
        """Print shape, mean and std of every parameter."""
        self._print_stats('Parameters statistics', [p.detach().cpu().numpy() for p in self._unique_parameters()])

    def __repr__(self):
        lines = ['MixedConvNN(input_shape=%s, %i layers%s)' % (_shape_str(self.input_shape), len(self.layers),
                                                              ', target=%r' % self.target if self.target else '')]
        for i, layer in enumerate(self.layers):
            lines.append('  [%i] %s %s -> %s act=%s%s' % (i, type(layer).__name__, _shape_str(layer.input_shape),
                                                         _shape_str(layer.output_shape), layer.activation_func,
                                                         '' if layer.dropout_rate is None else
                                                         ' dropout=%.2f' % layer.dropout_rate))
        return '\n'.join(lines)

