"""Fully connected (perceptron) layer.

Shapes:
    input ``(bs, n_in)`` (anything larger is flattened to that by the network), ``W``
    ``(n_in, n_out)`` as in the original, ``b`` ``(n_out,)``, output ``(bs, n_out / maxout)``.

``output = act(input @ W * dropout_mask + b)``; optional additive Gaussian input noise in
training steps.
"""
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from elektronn.net.layers.base import _Layer, check_positive_int, empty_parameter, to_parameter
from elektronn.net.netutils import initWeights

__all__ = ['PerceptronLayer']


def _shared_source(W, shape):
    """``(parameter, transposed)`` if ``W`` shares another layer's weights, else ``None``.

    Sharing is given by passing that layer's parameter itself (``other.W``) or its transpose
    (``other.W.T``, the tied-autoencoder case); plain arrays and detached tensors are initial values.
    """
    if isinstance(W, nn.Parameter):
        if tuple(W.shape) == tuple(shape):
            return W, False
        raise ValueError('shared W must have shape %s, got a parameter of shape %s' % (tuple(shape), tuple(W.shape)))
    base = getattr(W, '_base', None)
    if isinstance(W, torch.Tensor) and isinstance(base, nn.Parameter) and W.requires_grad:
        if W.ndim == 2 and tuple(base.shape) == tuple(shape)[::-1] and W.data_ptr() == base.data_ptr() \
                and tuple(W.shape) == tuple(shape):
            return base, True
        raise ValueError('shared W must be another layer\'s W (shape %s) or its transpose, got a tensor of shape %s'
                         % (tuple(shape), tuple(W.shape)))
    return None


class PerceptronLayer(_Layer):
    """A fully connected layer.

    Args:
        n_in: Number of inputs.
        n_out: Number of units.
        activation_func: See :func:`~elektronn.net.layers.base.parse_activation`.
        enable_dropout: Whether the layer has a dropout rate (0.5 initially).
        input_noise: Standard deviation of additive Gaussian noise on the input in training
            steps (``None`` or 0 for none).
        W: Initial weights ``(n_in, n_out)``; or another layer's ``W`` parameter (or its
            transpose ``other.W.T``) to share it: the shared weights are trained through their
            owner and not stored again in parameter files.
        b: Initial bias ``(n_out,)``, or another layer's ``b`` parameter to share it.
    """

    def __init__(self, n_in, n_out=10, activation_func='tanh', enable_dropout=False, input_noise=None,
                 W=None, b=None):
        super().__init__(activation_func, enable_dropout)
        self.n_in = check_positive_int(n_in, 'n_in')
        self.n_out = check_positive_int(n_out, 'n_outputs')
        if self.n_out % self.maxout:
            raise ValueError('n_outputs (%i) must be divisible by the maxout factor of %r'
                             % (self.n_out, self.activation_func))
        if input_noise is not None and (not np.isscalar(input_noise) or input_noise < 0):
            raise ValueError('input_noise must be a non-negative number or None, got %r' % (input_noise,))
        self.input_noise = float(input_noise) if input_noise else None
        self.output_units = self.n_out // self.maxout

        shared = _shared_source(W, (self.n_in, self.n_out)) if W is not None else None
        self._W_transposed = False
        if shared is not None:
            # A shared parameter is stored outside this module's own parameters so that it keeps
            # a single owner (and a single entry in parameter files and optimiser states).
            self._shared_W = [shared[0]]
            self._W_transposed = shared[1]
        else:
            self._shared_W = None
            self.W = empty_parameter(self.n_in, self.n_out)
        if isinstance(b, nn.Parameter):
            if tuple(b.shape) != (self.n_out,):
                raise ValueError('shared b must have shape (%i,), got %s' % (self.n_out, tuple(b.shape)))
            self._shared_b = [b]
        else:
            self._shared_b = None
            self.b = empty_parameter(self.n_out)
        self.reset_parameters()
        if W is not None and shared is None:
            self.W = to_parameter(W, (self.n_in, self.n_out), 'W')
        if b is not None and self._shared_b is None:
            self.b = to_parameter(b, (self.n_out,), 'b')

    @property
    def weight(self):
        """The effective ``(n_in, n_out)`` weight matrix (own, shared, or a shared transpose)."""
        if self._shared_W is None:
            return self.W
        W = self._shared_W[0]
        return W.t() if self._W_transposed else W

    @property
    def bias(self):
        """The bias: this layer's own, or the one it shares."""
        return self.b if self._shared_b is None else self._shared_b[0]

    @property
    def shares_W(self):
        """Whether the weights are shared with another layer (a tied autoencoder)."""
        return self._shared_W is not None

    #: The original's ``layer.params`` order (and that of its parameter files): bias first.
    original_param_order = ('b', 'W')

    @property
    def param_names(self):
        """The parameters a parameter file stores for this layer, in order (not the shared ones)."""
        return tuple(n for n, shared in (('W', self._shared_W), ('b', self._shared_b)) if shared is None)

    def reset_parameters(self, mode='uni'):
        """Draw new weights: Glorot uniform and the original's bias constants (1.0 for relu)."""
        with torch.no_grad():
            if self._shared_W is None:
                self.W.copy_(torch.from_numpy(initWeights((self.n_in, self.n_out), scale='glorot', mode=mode)))
            if self._shared_b is None:
                self.b.copy_(torch.from_numpy(self._initial_bias(self.n_out, relu_value=1.0)))

    @property
    def n_multiplications(self):
        """Multiplications of one forward pass for one example."""
        return self.n_in * self.n_out

    def linear(self, x):
        """``x @ W`` (with input noise and dropout in training steps) plus the bias."""
        if x.ndim > 2:
            x = x.reshape(x.shape[0], -1)
        if self.training and self.input_noise:
            x = x + torch.randn_like(x) * self.input_noise
        W = self.weight
        if self._dropout_active():
            y = (x @ W) * self._dropout_mask((1, self.n_out), x)
            return y + self.bias
        return F.linear(x, W.t(), self.bias)
