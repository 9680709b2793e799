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

__all__ = ['ACTIVATIONS', 'parse_activation', 'to_parameter']

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


def to_parameter(value, shape, name):
    """An ``nn.Parameter`` from initial values, checking the shape.

    Raises:
        ValueError: the array has another shape than the layer needs.
    """
    arr = np.asarray(value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value,
                     dtype=np.float32)
    if arr.shape != tuple(shape):
        raise ValueError('%s must have shape %s for this layer, got an array of shape %s'
                         % (name, tuple(shape), arr.shape))
    return nn.Parameter(torch.from_numpy(arr.copy()))


def check_positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError('%s must be a positive integer, got %r' % (name, value))
    return int(value)


class _Layer(nn.Module):
    """Base class of all layers: activation, dropout rate and parameter bookkeeping.

    Subclasses implement :meth:`linear`, :meth:`reset_parameters`, ``param_names`` (the parameters a
    parameter file stores, in order) and ``describe`` (the printout lines).

    Dropout follows the original: one rate per layer (0.5 when enabled), a Bernoulli mask shared by
    the whole batch (over spatial positions for conv layers, over units for perceptrons), inverted
    scaling by ``1 / (1 - rate)``, applied to the linear output before the bias, and only in
    training steps (evaluation never drops units).
    """

    param_names = ()

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
        # Without autograd the linear output is needed by nobody else: activating it in place saves
        # allocating (and first touching) another map as large, which matters for large inputs.
        return self.activate(self.linear(x), inplace=not torch.is_grad_enabled())

    def linear(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def own_parameters(self):
        """The parameters this layer owns (not those it shares with another layer), in file order."""
        return [getattr(self, n) for n in self.param_names if isinstance(getattr(self, n, None), nn.Parameter)]

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
