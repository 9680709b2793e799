"""Non-overlapping pooling over the spatial axes: ``'max'`` and ``'maxabs'``.

Tensors are in PyTorch layout ``(bs, ch, *spatial)``. Pooling windows do not overlap; a remainder
that the pool does not cover is dropped (:func:`~elektronn.net.netutils.CNNCalculator` rejects such
input sizes anyway).

``'maxabs'`` keeps, per window, whichever of the maximum and the minimum has the larger absolute
value, so the sign survives (ties go to the maximum).

:func:`dense_pool` is the stride-1, dilated ("a trous") form used by max-fragment-pooling: it
computes the pooled value of every window position, not only of every ``p``-th.

:func:`pooling2d`, :func:`pooling3d`, :func:`maxout`, :func:`maxabs` and :func:`my_max_pool_3d` are
the original's functions with its signatures and layouts (2D ``(bs, ch, x, y)``, 3D
``(bs, z, ch, x, y)``), working on PyTorch tensors or NumPy arrays instead of Theano variables.
"""
import numpy as np
import torch
from torch.nn import functional as F

__all__ = ['POOLING_MODES', 'pool', 'max_pool', 'dense_pool', 'pooling2d', 'pooling3d', 'maxout', 'maxabs',
           'my_max_pool_3d']

#: The pooling modes: ``'max'`` and ``'maxabs'`` (the value of largest magnitude, with its sign).
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


# ---------------------------------------------------------------------------------------------------
# The original's functions (Theano variables then; tensors or arrays now)
# ---------------------------------------------------------------------------------------------------
def _as_tensor(x):
    """``(tensor, was_numpy)``."""
    if isinstance(x, torch.Tensor):
        return x, False
    return torch.as_tensor(np.asarray(x)), True


def _back(t, was_numpy):
    return t.detach().cpu().numpy() if was_numpy else t


def maxabs(t1, t2):
    """Elementwise, whichever of ``t1`` and ``t2`` lies farther from 0, sign kept (ties: the larger)."""
    a, was_numpy = _as_tensor(t1)
    b, _ = _as_tensor(t2)
    high, low = torch.maximum(a, b), torch.minimum(a, b)
    return _back(high.where(high >= -low, low), was_numpy)


def pooling2d(conv_out, pool_shape=(2, 2), mode='max'):
    """Pool the axes 2, 3 (x, y) of ``conv_out`` ``(bs, ch, x, y)`` by ``pool_shape`` (``'max'``/``'maxabs'``).

    Shapes:
        ``(bs, ch, x, y) -> (bs, ch, x // px, y // py)``
    """
    x, was_numpy = _as_tensor(conv_out)
    return _back(pool(x, tuple(int(p) for p in pool_shape), mode), was_numpy)


def pooling3d(conv_out, pool_shape=(2, 2, 2), mode='max'):
    """Pool the spatial axes of ``conv_out`` in the original's 3D layout ``(bs, z, ch, x, y)`` by
    ``pool_shape`` ``(pz, px, py)``.

    Shapes:
        ``(bs, z, ch, x, y) -> (bs, z // pz, ch, x // px, y // py)``
    """
    x, was_numpy = _as_tensor(conv_out)
    out = pool(x.transpose(1, 2), tuple(int(p) for p in pool_shape), mode).transpose(1, 2)
    return _back(out, was_numpy)


def my_max_pool_3d(sym_input, pool_shape=(2, 2, 2)):
    """The original's reference 3D max pooling: :func:`pooling3d` with ``'max'``."""
    return pooling3d(sym_input, pool_shape, 'max')


def maxout(conv_out, factor=2, mode='max', axis=1):
    """Pool groups of ``factor`` consecutive channels (axis 1, or 2 for the 3D layout) by ``'max'``/``'maxabs'``.

    Shapes:
        ``(bs, ch, ...) -> (bs, ch // factor, ...)`` (``axis=1``)
    """
    if factor < 2:
        raise ValueError('maxout needs a factor >= 2, got %r' % (factor,))
    if axis not in (1, 2):
        raise ValueError('maxout pools axis 1 or 2, got %r' % (axis,))
    x, was_numpy = _as_tensor(conv_out)
    sh = x.shape
    if sh[axis] % factor:
        raise ValueError('maxout: %i channels cannot be grouped by %i' % (sh[axis], factor))
    grouped = x.reshape(sh[:axis] + (sh[axis] // factor, factor) + sh[axis + 1:])
    high = grouped.amax(dim=axis + 1)
    if mode == 'max':
        return _back(high, was_numpy)
    if mode == 'maxabs':
        low = grouped.amin(dim=axis + 1)
        return _back(high.where(high >= -low, low), was_numpy)
    raise ValueError('pooling_mode must be one of %s, got %r' % (POOLING_MODES, mode))
