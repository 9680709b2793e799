"""Non-overlapping pooling over the spatial axes: ``'max'`` and ``'maxabs'``.

Tensors are in PyTorch layout ``(bs, ch, *spatial)``. Pooling windows do not overlap; a remainder
that the pool does not cover is dropped (:func:`~elektronn.net.netutils.CNNCalculator` rejects such
input sizes anyway).

``'maxabs'`` keeps, per window, whichever of the maximum and the minimum has the larger absolute
value, so the sign survives (ties go to the maximum).
"""
from torch.nn import functional as F

__all__ = ['POOLING_MODES', 'pool', 'max_pool']

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
