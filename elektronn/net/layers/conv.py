"""Valid convolution + non-overlapping pooling layers, in 2D and 3D.

Shapes (PyTorch layout inside the network):

* 2D: input ``(bs, ch, x, y)``, filters ``W`` ``(nof, ch, fx, fy)``, output
  ``(bs, nof / k, (x - fx + 1) // px, (y - fy + 1) // py)`` where ``k`` is the maxout factor.
* 3D: input ``(bs, ch, z, x, y)``, filters ``W`` ``(nof, ch, fz, fx, fy)``, output likewise per axis.

``W`` computes a cross-correlation (PyTorch's convention), not a flipped convolution as Theano's
did; imported legacy filters are flipped by the parameter importer.

The order of operations is the original's: convolution, pooling, dropout (a mask over spatial
positions shared by batch and channels), bias, activation.
"""
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from elektronn.net import pooling
from elektronn.net.layers.base import _Layer, check_positive_int, to_parameter
from elektronn.net.netutils import initWeights

__all__ = ['ConvLayer2d', 'ConvLayer3d']


def _per_dimension(value, n_dim, name):
    if hasattr(value, '__len__'):
        value = tuple(value)
        if len(value) == 1:
            value = value * n_dim
        if len(value) != n_dim:
            raise ValueError('%s must be a scalar or have %i entries (one per spatial dimension), got %r'
                             % (name, n_dim, value))
    else:
        value = (value,) * n_dim
    return tuple(check_positive_int(v, name) for v in value)


class _ConvLayer(_Layer):
    """Private base of :class:`ConvLayer2d` and :class:`ConvLayer3d`.

    Args:
        input_shape: ``(bs, ch, *spatial)`` of the layer input; ``bs`` may be ``None``.
        nof_filters: Number of filters (feature maps before maxout).
        filter_size: Filter extent, a scalar (broadcast) or one per spatial dimension.
        pool_shape: Pooling factors, a scalar or one per spatial dimension.
        activation_func: See :func:`~elektronn.net.layers.base.parse_activation`.
        enable_dropout: Whether the layer has a dropout rate (0.5 initially).
        pooling_mode: ``'max'`` or ``'maxabs'``.
        W, b: Initial values (arrays of the right shape) instead of the random initialisation.
    """

    n_dim = None
    _convolve = None

    def __init__(self, input_shape, nof_filters, filter_size, pool_shape=2, activation_func='tanh',
                 enable_dropout=False, pooling_mode='max', W=None, b=None):
        super().__init__(activation_func, enable_dropout)
        n = self.n_dim
        self.nof_filters = check_positive_int(nof_filters, 'nof_filters')
        self.filter_size = _per_dimension(filter_size, n, 'filter_size')
        self.pool = _per_dimension(pool_shape, n, 'pool_shape')
        if pooling_mode not in pooling.POOLING_MODES:
            raise ValueError('pooling_mode must be one of %s, got %r' % (pooling.POOLING_MODES, pooling_mode))
        self.pooling_mode = pooling_mode
        if self.nof_filters % self.maxout:
            raise ValueError('nof_filters (%i) must be divisible by the maxout factor of %r'
                             % (self.nof_filters, self.activation_func))
        if len(input_shape) != n + 2:
            raise ValueError('a %iD conv layer needs an input of shape (bs, ch, %s), got %r'
                             % (n, ', '.join('s%i' % i for i in range(n)), input_shape))
        self.input_shape_internal = tuple(input_shape)
        self.n_in = int(input_shape[1])
        spatial = []
        for s, f, p, axis in zip(input_shape[2:], self.filter_size, self.pool, range(n)):
            unpooled = s - f + 1
            if unpooled < 1 or unpooled // p < 1:
                raise ValueError('filter %s and pool %s do not fit the layer input of spatial shape %s '
                                 '(axis %i: %i - %i + 1 = %i before pooling by %i); use a larger input '
                                 'or smaller filters/pools' % (self.filter_size, self.pool, tuple(input_shape[2:]),
                                                               axis, s, f, unpooled, p))
            spatial.append(unpooled // p)
        self.unpooled_shape = tuple(s - f + 1 for s, f in zip(input_shape[2:], self.filter_size))
        self.output_shape_internal = (input_shape[0], self.nof_filters // self.maxout) + tuple(spatial)
        self.filter_shape = (self.nof_filters, self.n_in) + self.filter_size
        self._pooling_needed = any(p > 1 for p in self.pool)

        self.W = nn.Parameter(torch.empty(self.filter_shape))
        self.b = nn.Parameter(torch.empty(self.nof_filters))
        self.reset_parameters()
        if W is not None:
            self.W = to_parameter(W, self.filter_shape, 'W')
        if b is not None:
            self.b = to_parameter(b, (self.nof_filters,), 'b')

    param_names = ('W', 'b')

    def reset_parameters(self, mode='normal'):
        """Draw new weights: Glorot ``mode`` (``'normal'`` at construction, the original's
        ``randomizeWeights`` uses ``'uni'``) and the original's bias constants."""
        W = initWeights(self.filter_shape, scale='glorot', mode=mode, pool=self.pool)
        b = self._initial_bias(self.nof_filters, relu_value=1.0 / float(np.prod(self.filter_size)))
        with torch.no_grad():
            self.W.copy_(torch.from_numpy(W))
            self.b.copy_(torch.from_numpy(b))

    @property
    def n_multiplications(self):
        """Multiplications of one forward pass for one example."""
        return int(np.prod(self.filter_size) * np.prod(self.unpooled_shape) * self.nof_filters * self.n_in)

    def linear(self, x):
        """Convolution, pooling, dropout and bias: the pre-activation output."""
        dropout = self._dropout_active()
        # With max pooling (or none) and no dropout the bias commutes with the pooling, so it can be
        # fused into the convolution kernel; maxabs pooling and dropout need the original order.
        fuse_bias = not dropout and (self.pooling_mode == 'max' or not self._pooling_needed)
        y = self._convolve(x, self.W, self.b if fuse_bias else None)
        if self._pooling_needed:
            y = pooling.pool(y, self.pool, self.pooling_mode)
        if not fuse_bias:
            if dropout:
                y = y * self._dropout_mask((1, 1) + tuple(y.shape[2:]), y)
            y = y + self.b.view((1, -1) + (1,) * self.n_dim)
        return y


class ConvLayer2d(_ConvLayer):
    """2D valid convolution + pooling (see :class:`_ConvLayer`).

    Shapes:
        input ``(bs, ch, x, y)``, ``W`` ``(nof, ch, fx, fy)``, output
        ``(bs, nof / maxout, (x - fx + 1) // px, (y - fy + 1) // py)``.
    """

    n_dim = 2
    _convolve = staticmethod(F.conv2d)


class ConvLayer3d(_ConvLayer):
    """3D valid convolution + pooling (see :class:`_ConvLayer`).

    Shapes:
        input ``(bs, ch, z, x, y)``, ``W`` ``(nof, ch, fz, fx, fy)``, output
        ``(bs, nof / maxout, (z - fz + 1) // pz, (x - fx + 1) // px, (y - fy + 1) // py)``.
        :class:`~elektronn.net.convnet.MixedConvNN` shows shapes in the original's
        ``(bs, z, ch, x, y)`` order.
    """

    n_dim = 3
    _convolve = staticmethod(F.conv3d)
