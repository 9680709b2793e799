"""Non-overlapping pooling over the spatial axes: ``'max'`` and ``'maxabs'``.

Tensors are in PyTorch layout ``(bs, ch, *spatial)``. Pooling windows do not overlap; a remainder
that the pool does not cover is dropped (:func:`~elektronn.net.netutils.CNNCalculator` rejects such
input sizes anyway).

``'maxabs'`` keeps, per window, whichever of the maximum and the minimum has the larger absolute
value, so the sign survives (ties go to the maximum).

:func:`dense_pool` is the stride-1, dilated ("a trous") form used by max-fragment-pooling: it
computes the pooled value of every window position, not only of every ``p``-th.
"""
import torch
from torch.nn import functional as F

__all__ = ['POOLING_MODES', 'pool', 'max_pool', 'dense_pool']

POOLING_MODES = ('max', 'maxabs')


def max_pool(x, pool_shape):
    """Max pooling of ``x`` (``(bs, ch, *spatial)``) with kernel = stride = ``pool_shape``.

    Shapes:
        ``(bs, ch, s_1, ..., s_n) -> (bs, ch, s_1 // p_1, ..., s_n // p_n)``
    """
    pool_shape = tuple(pool_shape)
    if len(pool_shape) == 2:
        return F.max_pool2d(x, pool_shape, pool_shape)
    return F.max_pool3d(x, pool_shape, pool_shape)


def pool(x, pool_shape, mode='max'):
    """Pool ``x`` with ``mode`` ``'max'`` or ``'maxabs'``; a pool of all ones returns ``x``."""
    if all(p == 1 for p in pool_shape):
        return x
    if mode == 'max':
        return max_pool(x, pool_shape)
    if mode == 'maxabs':
        high = max_pool(x, pool_shape)
        low = -max_pool(-x, pool_shape)
        return high.where(high >= -low, low)
    raise ValueError('pooling_mode must be one of %s, got %r' % (POOLING_MODES, mode))


def _dense_extreme(x, pool_shape, dilation, reduce):
    # Separable: one pass of elementwise extremes of shifted views per pooled axis. On the CPU this
    # is about twice as fast as max_pool3d(stride=1, dilation=d) and keeps the channels-last layout.
    for axis, (p, d) in enumerate(zip(pool_shape, dilation)):
        if p == 1:
            continue
        dim = 2 + axis
        length = x.shape[dim] - d * (p - 1)
        out = reduce(x.narrow(dim, 0, length), x.narrow(dim, d, length))
        for t in range(2, p):
            out = reduce(out, x.narrow(dim, t * d, length))
        x = out
    return x


def dense_pool(x, pool_shape, dilation=None, mode='max'):
    """Pool every window position: kernel ``pool_shape`` with taps ``dilation`` apart, stride 1.

    Position ``i`` of the result pools ``x[i], x[i + d], ..., x[i + (p - 1) d]`` per axis; taking
    every ``p * d``-th position of it (for ``d = 1``: every ``p``-th) gives :func:`pool`.

    Shapes:
        ``(bs, ch, s_1, ..., s_n) -> (bs, ch, s_1 - d_1 (p_1 - 1), ..., s_n - d_n (p_n - 1))``
    """
    pool_shape = tuple(int(p) for p in pool_shape)
    dilation = (1,) * len(pool_shape) if dilation is None else tuple(int(d) for d in dilation)
    if mode == 'max':
        return _dense_extreme(x, pool_shape, dilation, torch.maximum)
    if mode == 'maxabs':
        high = _dense_extreme(x, pool_shape, dilation, torch.maximum)
        low = _dense_extreme(x, pool_shape, dilation, torch.minimum)
        return high.where(high >= -low, low)
    raise ValueError('pooling_mode must be one of %s, got %r' % (POOLING_MODES, mode))
