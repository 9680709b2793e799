"""The private base of all layers: activation functions, dropout and parameter bookkeeping.

Layers work in PyTorch's layout (``(bs, ch, x, y)`` in 2D, ``(bs, ch, z, x, y)`` in 3D,
``(bs, features)`` for perceptrons); :class:`~elektronn.net.convnet.MixedConvNN` converts from and
to the original layouts at its boundary. Every layer splits its forward pass into
:meth:`_Layer.linear` (everything up to and including the bias) and :meth:`_Layer.activate`, because
the NLL of the output layer is taken on the softmax of the linear output while regression uses the
activated output.
"""
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from elektronn.net.netutils import initWeights

__all__ = ['ACTIVATIONS', 'parse_activation', 'to_parameter', 'SharedParameter']

#: Activation names the original accepted, mapped to the canonical name.
ACTIVATIONS = {
    'tanh': 'tanh', 'relu': 'relu', 'ReLU': 'relu', 'sigmoid': 'sigmoid', 'abs': 'abs',
    'linear': 'linear', 'none': 'linear', 'None': 'linear', None: 'linear',
}

_ACTIVATION_FUNCTIONS = {
    'tanh': torch.tanh,
    'relu': F.relu,
    'sigmoid': torch.sigmoid,
    'abs': torch.abs,
    'linear': None,
}

_INPLACE_ACTIVATION_FUNCTIONS = {
    'tanh': torch.tanh_,
    'relu': torch.relu_,
    'sigmoid': torch.sigmoid_,
    'abs': torch.abs_,
    'linear': None,
}


def parse_activation(activation_func):
    """Canonical activation name and maxout factor for ``activation_func``.

    Accepts ``'tanh'``, ``'relu'``/``'ReLU'``, ``'sigmoid'``, ``'abs'``, ``'linear'`` (also
    ``'none'``/``None``) and ``'maxout <k>'`` with an integer ``k >= 2``.

    Returns:
        ``(name, k)`` where ``k`` is the maxout factor (1 for the others).

    Raises:
        ValueError: naming the bad value and the accepted ones.
    """
    if isinstance(activation_func, str) and activation_func.startswith('maxout'):
        parts = activation_func.split()
        if len(parts) == 2 and parts[1].isdigit() and int(parts[1]) >= 2:
            return 'maxout %i' % int(parts[1]), int(parts[1])
        raise ValueError("activation_func %r: maxout needs a factor >= 2 after a space, e.g. 'maxout 2'"
                         % (activation_func,))
    try:
        return ACTIVATIONS[activation_func], 1
    except (KeyError, TypeError):
        raise ValueError("activation_func must be one of 'tanh', 'relu', 'sigmoid', 'abs', 'linear' or "
                         "'maxout <k>', got %r" % (activation_func,)) from None


def _to_original(arr, layout):
    """An array in this package's layout converted to the original's (see :class:`SharedParameter`)."""
    if layout is None:
        return arr
    kind, spec = layout
    if kind == 'conv':
        arr = np.flip(arr, axis=tuple(range(2, arr.ndim)))
        return arr.transpose(0, 2, 1, 3, 4) if spec == 3 else arr
    if kind == 'rows':
        ch, z, x, y = spec
        return arr.reshape(ch, z, x, y, -1).transpose(1, 0, 2, 3, 4).reshape(arr.shape)
    raise ValueError('unknown parameter layout %r' % (layout,))


def _from_original(arr, layout):
    """The inverse of :func:`_to_original`."""
    if layout is None:
        return arr
    kind, spec = layout
    if kind == 'conv':
        if spec == 3:
            arr = arr.transpose(0, 2, 1, 3, 4)
        return np.flip(arr, axis=tuple(range(2, arr.ndim)))
    if kind == 'rows':
        ch, z, x, y = spec
        return arr.reshape(z, ch, x, y, -1).transpose(1, 0, 2, 3, 4).reshape(arr.shape)
    raise ValueError('unknown parameter layout %r' % (layout,))


def _original_shape(shape, layout):
    shape = tuple(int(s) for s in shape)
    if layout is not None and layout[0] == 'conv' and layout[1] == 3:
        return (shape[0], shape[2], shape[1]) + shape[3:]
    return shape


def _rebuild_shared_parameter(cls, data, requires_grad, layout):
    return cls(data, requires_grad, layout=layout)


class SharedParameter(nn.Parameter):
    """An ``nn.Parameter`` that also answers the original's Theano shared-variable calls.

    ``get_value()`` returns a NumPy copy and ``set_value(arr)`` overwrites the values in place,
    both in the **original's layout**, so that arrays move between old scripts, old pickles and
    this package unchanged:

    * conv filters (``original_layout=('conv', n_dim)``): the original's Theano layers computed true
      convolutions, this package cross-correlations, so the filters are flipped in their spatial
      axes; 3D filters are ``(nof, fz, ch, fx, fy)`` in the original, ``(nof, ch, fz, fx, fy)``
      inside;
    * the weights of a perceptron layer right after a 3D conv layer (``original_layout=('rows', (ch,
      z, x, y))``): the original flattened its input in ``(z, ch, x, y)`` order, this package in
      ``(ch, z, x, y)`` order, so the rows are permuted;
    * everything else (``original_layout=None``): the array as it is.

    Everything else about the parameter is plain PyTorch (``.data``, ``.grad``, optimisers).
    """

    def __new__(cls, data=None, requires_grad=True, layout=None):
        param = super().__new__(cls, data, requires_grad)
        param.original_layout = layout
        return param

    def __deepcopy__(self, memo):
        if id(self) in memo:
            return memo[id(self)]
        result = type(self)(self.data.clone(memory_format=torch.preserve_format), self.requires_grad,
                            layout=self.original_layout)
        memo[id(self)] = result
        return result

    def __repr__(self):
        return 'Parameter containing:\n' + repr(self.data)

    def __reduce_ex__(self, protocol):
        return _rebuild_shared_parameter, (type(self), self.data, self.requires_grad, self.original_layout)

    @property
    def original_shape(self):
        """The shape of :meth:`get_value`'s array."""
        return _original_shape(self.shape, self.original_layout)

    def to_original_layout(self, array):
        """A copy of ``array`` (shaped like this parameter, e.g. its gradient) in the original's layout."""
        return np.array(_to_original(np.asarray(array), self.original_layout), order='C', copy=True)

    def get_value(self, borrow=False, return_internal_type=False):
        """A NumPy copy of the values in the original's layout (``borrow`` is accepted and ignored)."""
        with torch.no_grad():
            return self.to_original_layout(self.detach().cpu().numpy())

    def set_value(self, value, borrow=False):
        """Overwrite the values in place with ``value``, given in the original's layout.

        Raises:
            ValueError: ``value`` has another shape than :attr:`original_shape`.
        """
        arr = np.asarray(value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value)
        if arr.shape != self.original_shape:
            raise ValueError('set_value: this parameter needs an array of shape %s (the original\'s layout), '
                             'got %s' % (self.original_shape, arr.shape))
        internal = np.ascontiguousarray(_from_original(arr, self.original_layout))
        with torch.no_grad():
            self.copy_(torch.as_tensor(internal, dtype=self.dtype))


def to_parameter(value, shape, name, layout=None):
    """A :class:`SharedParameter` from initial values (this package's layout), checking the shape.

    Raises:
        ValueError: the array has another shape than the layer needs.
    """
    arr = np.asarray(value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value,
                     dtype=np.float32)
    if arr.shape != tuple(shape):
        raise ValueError('%s must have shape %s for this layer, got an array of shape %s'
                         % (name, tuple(shape), arr.shape))
    return SharedParameter(torch.from_numpy(arr.copy()), layout=layout)


def empty_parameter(*shape, layout=None):
    """An uninitialised :class:`SharedParameter` of ``shape`` (the layer fills it)."""
    return SharedParameter(torch.empty(*shape), layout=layout)


class _DropoutRate:
    """The original's ``layer.activation_noise`` shared variable: the layer's dropout rate."""

    def __init__(self, layer):
        self._layer = layer

    def get_value(self, borrow=False):
        return np.float32(self._layer.dropout_rate)

    def set_value(self, value, borrow=False):
        value = float(value)
        if not 0.0 <= value <= 1.0:
            raise ValueError('a dropout rate must lie in [0, 1], got %r' % (value,))
        self._layer.dropout_rate = value


def check_positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError('%s must be a positive integer, got %r' % (name, value))
    return int(value)


class _Layer(nn.Module):
    """Base class of all layers: activation, dropout rate and parameter bookkeeping.

    Subclasses implement :meth:`linear`, ``reset_parameters``, ``param_names`` (the parameters a
    parameter file stores, in order) and ``describe`` (the printout lines).

    Dropout follows the original: one rate per layer (0.5 when enabled), a Bernoulli mask shared by
    the whole batch (over spatial positions for conv layers, over units for perceptrons), inverted
    scaling by ``1 / (1 - rate)``, applied to the linear output before the bias, and only in
    training steps (evaluation never drops units).
    """

    param_names = ()
    #: Order of the original's ``layer.params`` list (default: ``param_names``).
    original_param_order = None

    def __init__(self, activation_func='tanh', enable_dropout=False):
        super().__init__()
        self.activation_func, self.maxout = parse_activation(activation_func)
        self.dropout_rate = 0.5 if enable_dropout else None

    @property
    def has_dropout(self):
        return self.dropout_rate is not None

    def _dropout_active(self):
        return self.training and self.dropout_rate is not None and self.dropout_rate > 0

    def _dropout_mask(self, shape, like):
        keep = 1.0 - self.dropout_rate
        if keep <= 0:
            return torch.zeros(shape, dtype=like.dtype, device=like.device)
        return torch.bernoulli(torch.full(shape, keep, dtype=like.dtype, device=like.device)) / keep

    def activate(self, lin, inplace=False):
        """Apply the activation function (and maxout over consecutive channel groups); ``inplace``
        overwrites ``lin``."""
        if self.maxout > 1:
            k = self.maxout
            sh = lin.shape
            return lin.reshape(sh[0], sh[1] // k, k, *sh[2:]).amax(dim=2)
        fn = (_INPLACE_ACTIVATION_FUNCTIONS if inplace else _ACTIVATION_FUNCTIONS)[self.activation_func]
        return lin if fn is None else fn(lin)

    def forward(self, x):
        """The layer's output: :meth:`activate` of :meth:`linear`."""
        # Without autograd the linear output is needed by nobody else: activating it in place saves
        # allocating (and first touching) another map as large, which matters for large inputs.
        return self.activate(self.linear(x), inplace=not torch.is_grad_enabled())

    def linear(self, x):  # pragma: no cover - abstract
        """The output before the activation (everything up to and including the bias); each layer
        family implements it."""
        raise NotImplementedError

    def own_parameters(self):
        """The parameters this layer owns (not those it shares with another layer), in file order."""
        return [getattr(self, n) for n in self.param_names if isinstance(getattr(self, n, None), nn.Parameter)]

    @property
    def params(self):
        """The original's ``layer.params``: the parameters this layer owns, in the original's order
        (conv ``[W, b]``, perceptron ``[b, W]``, recurrent ``[W_in, W_hid, b_hid, hid_0]``)."""
        names = self.param_names
        order = self.original_param_order or names
        return [getattr(self, n) for n in order if n in names]

    @property
    def activation_noise(self):
        """The original's dropout-rate shared variable (``.get_value()``/``.set_value(p)``);
        only layers with dropout have it."""
        if self.dropout_rate is None:
            raise AttributeError('this %s has no dropout (activation_noise exists only with enable_dropout)'
                                 % type(self).__name__)
        return _DropoutRate(self)

    def param_arrays(self):
        """Copies of the stored parameters as float32 NumPy arrays, in ``param_names`` order."""
        return [getattr(self, n).detach().cpu().numpy().astype(np.float32) for n in self.param_names]

    def set_param_array(self, name, value):
        """Overwrite parameter ``name`` in place with ``value`` (same shape)."""
        p = getattr(self, name)
        with torch.no_grad():
            p.copy_(torch.as_tensor(np.asarray(value), dtype=p.dtype))

    def _initial_bias(self, n_out, relu_value):
        """Bias initialisation of the original: const for relu and sigmoid, tiny noise otherwise."""
        if self.activation_func == 'relu':
            return initWeights((n_out,), scale=relu_value, mode='const')
        if self.activation_func == 'sigmoid':
            return initWeights((n_out,), scale=0.5, mode='const')
        return initWeights((n_out,), scale=1e-6, mode='fix-uni')
