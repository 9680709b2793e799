"""Building ``MixedConvNN`` layer by layer, with the original's shape and cost printouts.

:class:`NetBuilderMixin` holds the ``add*Layer`` methods and ``addTiedAutoencoderChain`` of
:class:`~elektronn.net.convnet.MixedConvNN`; the helpers here print shapes and multiplication counts
exactly as ELEKTRONN 1.x did (at INFO on the ``elektronn`` logger).
"""
import logging
import warnings

import numpy as np

from elektronn.net.layers.affinity import AffinityLayer3d, MalisLayer
from elektronn.net.layers.autoencoder import build_tied_chain
from elektronn.net.layers.conv import ConvLayer2d, ConvLayer3d
from elektronn.net.layers.perceptron import PerceptronLayer
from elektronn.net.layers.recurrent import RecurrentLayer

logger = logging.getLogger(__name__)

__all__ = ['NetBuilderMixin']


def _printOps(n):
    """Log a multiplication count the way the original printed it: ``Computational Cost: 4.1 Mega Ops``."""
    for factor, suffix in ((1e12, 'Tera Ops'), (1e9, 'Giga Ops'), (1e6, 'Mega Ops'), (1e3, 'kilo Ops')):
        if n >= factor:
            break
    logger.info('Computational Cost: %.1f %s', float(n) / factor, suffix)


def _shape_str(shape):
    """A shape as the original printed it: ``(None, 1, 26, 26)``, ``(5,)``."""
    return '(' + ', '.join('None' if s is None else str(int(s)) for s in shape) + (',)' if len(shape) == 1 else ')')


def _mfp_bookkeeping(offsets, strides, pool):
    """The original's fragment record after an MFP layer with ``pool``: fragment offsets (new phase
    outer, old fragment inner; an offset grows by phase times the old stride) and strides."""
    n = len(pool)
    offsets = np.zeros((1, n), dtype=int) if offsets is None else offsets
    strides = [1] * n if strides is None else strides
    new = [o + np.multiply(phase, strides) for phase in np.ndindex(*pool) for o in offsets]
    return np.array(new, dtype=int), [int(s * p) for s, p in zip(strides, pool)]


def _check_flag(value, name):
    """``value`` as a bool; ``TypeError`` naming ``name`` unless it is a bool, 0 or 1."""
    if not isinstance(value, (bool, np.bool_)) and value not in (0, 1):
        raise TypeError('%s must be True or False, got %r' % (name, value))
    return bool(value)


class NetBuilderMixin:
    """The layer-building methods of :class:`~elektronn.net.convnet.MixedConvNN` (documented there).

    Relies on the attributes that ``MixedConvNN.__init__`` sets: the current output shape
    ``_shape`` (PyTorch layout), ``layers``, ``_output_layers``, the dropout and MFP flags and the
    running ``TotalForwardPassCost``.
    """

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
            logger.info('Last Layer, by default: no dropout and reshaped outputs')
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
            logger.info('Affinity output layer: %i classes for each of the 3 edge directions (z, x, y)', nof_filters)
        layer.is_last_layer = bool(is_last_layer)
        layer.input_shape = self._to_original_layout(self._shape)
        layer.output_shape = self._to_original_layout(layer.output_shape_internal)
        filter_shape = layer.filter_shape
        if self.n_dim == 3:
            filter_shape = (filter_shape[0], filter_shape[2], filter_shape[1], filter_shape[3], filter_shape[4])
        logger.info('%iDConv: input= %s \tfilter= %s', self.n_dim, _shape_str(layer.input_shape),
                    _shape_str(filter_shape))
        if dropout and self.n_dim == 3:
            logger.info('Dropout: ACTIVE')
        logger.info('Output = %s Dropout %s Act: %s pool: %s', _shape_str(layer.output_shape),
                    'ON,' if dropout else 'OFF,', layer.activation_func, layer.pooling_mode)
        if is_last_layer:
            logger.info('Class Prob Output = %s', _shape_str(layer.output_shape_internal))
        if add_in_output_layers:
            self._output_layers.append(layer)
        else:
            self.layers.append(layer)
            self._shape = layer.output_shape_internal
            self.poolings.append(list(layer.pool))
            if use_fragment_pooling:
                self._atleast_single_mfp = True
                self.mfp_offsets, self.mfp_strides = _mfp_bookkeeping(self.mfp_offsets, self.mfp_strides, layer.pool)
                logger.info('MFP: dense output; fragment strides now %s', self.mfp_strides)
        cost = layer.n_multiplications * self._batch_factor()
        _printOps(cost)
        logger.info('---')
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
        """Log, cost and append a perceptron layer to ``destination``; unless that is
        ``_output_layers``, the layer's output becomes the network's current output."""
        layer.input_shape = (self._shape[0], layer.n_in)
        layer.output_shape = (self._shape[0], layer.output_units)
        layer.output_shape_internal = layer.output_shape
        if len(self._shape) == 5 and 'W' in layer.param_names:
            # the original flattened 3D conv outputs in (z, ch, x, y) order: W.get_value() follows it
            layer.W.original_layout = ('rows', tuple(int(s) for s in self._shape[1:]))
        logger.info('PerceptronLayer( #Inputs = %s #Outputs = %s )', layer.n_in, layer.n_out)
        if layer.input_noise:
            logger.info('Input_noise active, p=%s', layer.input_noise)
        if layer.has_dropout:
            logger.info('Dropout ON')
        destination.append(layer)
        if destination is not self._output_layers:
            self._shape = layer.output_shape
        cost = layer.n_multiplications * self._batch_factor()
        _printOps(cost)
        logger.info('---')
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
            logger.info('Recurrence with broadcasted input')
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
        logger.info('RecurrentLayer( #Inputs = %s #Hidden =  %s )', layer.n_in, layer.n_hid)
        if layer.activation_func == 'linear':
            warnings.warn('linear activation in recurrent layer with fanout-%i! Is this the output layer?' % layer.n_hid,
                          stacklevel=2)
        self.layers.append(layer)
        self._shape = layer.output_shape
        cost = layer.n_multiplications(steps) * self._batch_factor()
        _printOps(cost)
        logger.info('---')
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

    def __repr__(self):
        """The input shape, then one line per layer: kind, shapes (original layout), activation, dropout."""
        lines = ['MixedConvNN(input_shape=%s, %i layers%s)' % (_shape_str(self.input_shape), len(self.layers),
                                                              ', target=%r' % self.target if self.target else '')]
        for i, layer in enumerate(self.layers):
            lines.append('  [%i] %s %s -> %s act=%s%s' % (i, type(layer).__name__, _shape_str(layer.input_shape),
                                                         _shape_str(layer.output_shape), layer.activation_func,
                                                         '' if layer.dropout_rate is None else
                                                         ' dropout=%.2f' % layer.dropout_rate))
        return '\n'.join(lines)
