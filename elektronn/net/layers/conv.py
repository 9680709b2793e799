"""Valid convolution + non-overlapping pooling layers, in 2D and 3D.

Shapes (PyTorch layout inside the network):

* 2D: input ``(bs, ch, x, y)``, filters ``W`` ``(nof, ch, fx, fy)``, output
  ``(bs, nof / k, (x - fx + 1) // px, (y - fy + 1) // py)`` where ``k`` is the maxout factor.
* 3D: input ``(bs, ch, z, x, y)``, filters ``W`` ``(nof, ch, fz, fx, fy)``, output likewise per axis.

``W`` computes a cross-correlation (PyTorch's convention), not a flipped convolution as Theano's
did; imported legacy filters are flipped by the parameter importer.

The order of operations is the original's: convolution, pooling, dropout (a mask over spatial
positions shared by batch and channels), bias, activation.

Max-fragment-pooling (MFP, ``use_fragment_pooling=True``) is computed in the dilated ("a trous")
form: instead of pooling the ``prod(p)`` phase-shifted crops separately and stacking these
fragments along the batch axis, as the original did, the layer pools every window position
(stride 1), and all later convolutions and pools take their taps ``D`` apart, ``D`` being the
product of the MFP pools before them (the layer's ``dilation``). Position ``i`` of such a map holds
the value that the original kept at index ``i // D`` of the fragment at offset ``i % D``
(``MixedConvNN.mfp_offsets``), so the fragments lie interleaved in place and the network's output
is dense without any reassembly. Per axis ``s`` of the input (``f`` filter, ``p`` pool, ``d``
input dilation)::

    unpooled = s - d (f - 1)
    pooled   = unpooled // p               (plain pooling; needs d == 1 where p > 1)
    pooled   = unpooled - d (p - 1)        (MFP; the next layer's dilation is d * p)
"""
import numpy as np
import torch
from torch.nn import functional as F

from elektronn.net import pooling
from elektronn.net.layers.base import _Layer, check_positive_int, empty_parameter, to_parameter
from elektronn.net.netutils import blob, initWeights, makeGaborFilters

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
        use_fragment_pooling: Max-fragment-pooling: pool every window position (see the module
            docstring); the next layer's dilation is ``dilation * pool``.
        dilation: Spacing of the input's neighbouring fragment positions per spatial dimension,
            i.e. the product of the MFP pools of the layers before (1 without MFP).
    """

    n_dim = None
    _convolve = None

    def __init__(self, input_shape, nof_filters, filter_size, pool_shape=2, activation_func='tanh',
                 enable_dropout=False, pooling_mode='max', W=None, b=None, use_fragment_pooling=False,
                 dilation=None):
        super().__init__(activation_func, enable_dropout)
        n = self.n_dim
        self.nof_filters = check_positive_int(nof_filters, 'nof_filters')
        self.filter_size = _per_dimension(filter_size, n, 'filter_size')
        self.pool = _per_dimension(pool_shape, n, 'pool_shape')
        self.mfp = bool(use_fragment_pooling)
        self.dilation = (1,) * n if dilation is None else _per_dimension(dilation, n, 'dilation')
        for axis, (p, d) in enumerate(zip(self.pool, self.dilation)):
            if p > 1 and d > 1 and not self.mfp:
                raise ValueError('pool_shape %s: pooling without max-fragment-pooling after a layer with '
                                 'max-fragment-pooling (axis %i) would give unevenly spaced outputs; use '
                                 'use_fragment_pooling=True in this layer too (MFP on every pooling layer '
                                 'from the first MFP layer on)' % (self.pool, axis))
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
        self.unpooled_shape = self.unpooled_spatial(input_shape[2:])
        spatial = self.output_spatial(input_shape[2:])
        for axis, (s, u, o) in enumerate(zip(input_shape[2:], self.unpooled_shape, spatial)):
            if u < 1 or o < 1:
                raise ValueError('filter %s and pool %s do not fit the layer input of spatial shape %s '
                                 '(axis %i: %i - %i + 1 = %i before pooling by %i%s); use a larger input '
                                 'or smaller filters/pools'
                                 % (self.filter_size, self.pool, tuple(input_shape[2:]), axis, s,
                                    self.dilation[axis] * (self.filter_size[axis] - 1) + 1, u, self.pool[axis],
                                    ' with max-fragment-pooling' if self.mfp else ''))
        self.output_shape_internal = (input_shape[0], self.nof_filters // self.maxout) + tuple(spatial)
        self.filter_shape = (self.nof_filters, self.n_in) + self.filter_size
        self._pooling_needed = any(p > 1 for p in self.pool)

        # ``W.get_value()`` gives the filters as the original's (Theano) layers held them
        w_layout = ('conv', self.n_dim)
        self.W = empty_parameter(*self.filter_shape, layout=w_layout)
        self.b = empty_parameter(self.nof_filters)
        self.reset_parameters()
        if W is not None:
            self.W = to_parameter(W, self.filter_shape, 'W', layout=w_layout)
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

    def unpooled_spatial(self, spatial):
        """Spatial shape of the convolution output for an input of spatial shape ``spatial``."""
        return tuple(int(s) - d * (f - 1) for s, f, d in zip(spatial, self.filter_size, self.dilation))

    def output_spatial(self, spatial):
        """Spatial shape of the layer output for an input of spatial shape ``spatial`` (entries < 1:
        the input is too small)."""
        unpooled = self.unpooled_spatial(spatial)
        if self.mfp:
            return tuple(u - d * (p - 1) for u, p, d in zip(unpooled, self.pool, self.dilation))
        return tuple(u // p if u > 0 else u for u, p in zip(unpooled, self.pool))

    def convolve(self, x, bias=True):
        """The (dilated) valid convolution of ``x``, with or without the bias."""
        return self._convolve(x, self.W, self.b if bias else None, dilation=self.dilation)

    def _pool(self, y):
        if self.mfp:
            return pooling.dense_pool(y, self.pool, self.dilation, self.pooling_mode)
        return pooling.pool(y, self.pool, self.pooling_mode)

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
        y = self.convolve(x, bias=fuse_bias)
        if self._pooling_needed:
            y = self._pool(y)
        if not fuse_bias:
            if dropout:
                y = y * self._dropout_mask((1, 1) + tuple(y.shape[2:]), y)
            y = y + self.b.view((1, -1) + (1,) * self.n_dim)
        return y


class ConvLayer2d(_ConvLayer):
    """2D valid convolution + pooling (see :class:`_ConvLayer`).

    Shapes:
        input ``(bs, ch, x, y)``, ``W`` ``(nof, ch, fx, fy)``, output
        ``(bs, nof / maxout, (x - fx + 1) // px, (y - fy + 1) // py)`` (without MFP).
    """

    n_dim = 2
    _convolve = staticmethod(F.conv2d)

    def gaborInitialisation(self, rng=None):
        """Replace the filters by Gabor filters, a Gaussian blob and (for an even count) a noise filter.

        As the original: ``nof - 1`` (odd ``nof``) or ``nof - 2`` (even) Gabor filters from
        :func:`~elektronn.net.netutils.makeGaborFilters` divided by 10, then
        :func:`~elektronn.net.netutils.blob` (divided by 10 for even ``nof``), then normal noise of
        std 0.02 (even ``nof``); the same filter for every input channel (the original assumed 3).
        The filters are set as the original's true-convolution kernels (``W.set_value``).

        Raises:
            ValueError: the filters are not square, or there are fewer than 2 of them.
        """
        nof, ch, fx, fy = self.filter_shape
        if fx != fy:
            raise ValueError('gaborInitialisation needs square filters, this layer has %i x %i' % (fx, fy))
        if nof < 2:
            raise ValueError('gaborInitialisation needs at least 2 filters, this layer has %i' % nof)
        rng = np.random if rng is None else rng
        n_pairs = (nof - 1) // 2
        parts = [makeGaborFilters(fx, n_pairs) / 10.0] if n_pairs else []
        if nof % 2:
            parts.append(blob(fx)[None])
        else:
            parts += [blob(fx)[None] / 10.0, rng.normal(0.0, 0.02, (1, fx, fy))]
        filters = np.concatenate(parts, axis=0)
        self.W.set_value(np.repeat(filters[:, None], ch, axis=1).astype(np.float32))


class ConvLayer3d(_ConvLayer):
    """3D valid convolution + pooling (see :class:`_ConvLayer`).

    Shapes:
        input ``(bs, ch, z, x, y)``, ``W`` ``(nof, ch, fz, fx, fy)``, output
        ``(bs, nof / maxout, (z - fz + 1) // pz, (x - fx + 1) // px, (y - fy + 1) // py)`` (without
        MFP). :class:`~elektronn.net.convnet.MixedConvNN` shows shapes in the original's
        ``(bs, z, ch, x, y)`` order.
    """

    n_dim = 3
    _convolve = staticmethod(F.conv3d)
