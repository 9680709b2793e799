"""Shape maths of valid-convolution CNNs (:func:`CNNCalculator`) and weight initialisation.

The calculator answers, for a stack of valid convolutions with non-overlapping pooling, which
input sizes are possible, how large the receptive field (field of view) of the output neurons
is, how far apart output neurons lie in the input (stride) and by how much the output is
inset from the input (offset).

Per dimension and layer (``in`` the layer's input size, ``f`` its filter, ``p`` its pool)::

    out      = in - f + 1          (must be > 0)
    pool_out = out // p            (must be > 0)
    out % p == 0                   (plain pooling: the pool must tile the map exactly)
    out % p == 1                   (max-fragment-pooling, MFP, when p > 1)

    field_i  = receptive field of a pooled unit of layer i, from rf <- rf * p + f - 1 backwards
    stride_i = p_0 * p_1 * ... * p_i
    overlap  = field - stride
    offset   = field_last / 2      (a float: non-integer means the output neurons sit centred on
                                    input pixels, i.e. the field of view is odd)

:func:`makeGabor`, :func:`makeGaborFilters` and :func:`blob` make the Gabor and Gaussian filters of
the original's ``ConvLayer2d.gaborInitialisation`` (its module ``elektronn.net.gaborfilters``).
"""
import logging

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ['CNNCalculator', 'initWeights', 'makeGabor', 'makeGaborFilters', 'blob']

#: Valid input sizes are searched from 2 up to this bound (or further when a larger input or
#: output is asked for).
MIN_SEARCH_BOUND = 5000


def _is_sequence(x):
    return hasattr(x, '__len__') and not isinstance(x, (str, bytes))


def _layer_sizes(inp, filters, poolings, mfp):
    """Unpooled and pooled sizes of every layer for input size ``inp``.

    Returns:
        ``(out, pool_out)`` lists, or ``None`` when ``inp`` is not a valid input size.
    """
    out, pool_out = [], []
    size = inp
    for f, p, m in zip(filters, poolings, mfp):
        o = size - f + 1
        if o <= 0:
            return None
        if p > 1:
            if m and o % p != 1:
                return None
            if not m and o % p != 0:
                return None
        size = o // p
        if size <= 0:
            return None
        out.append(o)
        pool_out.append(size)
    return out, pool_out


def _receptive_fields(filters, poolings):
    """Field of view, in input pixels, of a pooled unit of each layer."""
    fields = []
    for i in range(1, len(filters) + 1):
        rf = 1
        for f, p in zip(filters[:i][::-1], poolings[:i][::-1]):
            rf = rf * p + f - 1
        fields.append(rf)
    return fields


class _CNNCalculator:
    """Shape maths for one spatial dimension; built by :func:`CNNCalculator`."""

    def __init__(self, filters, poolings, desired_input=None, MFP=None, force_center=False,
                 desired_output=None, axis_name='', notes=True):
        self._notes = notes
        mfp = [bool(m) for m in (MFP if MFP is not None else [False] * len(filters))]
        self.mfp = mfp
        self.fields = _receptive_fields(filters, poolings)
        fov = self.fields[-1]
        where = (' in dimension %s' % axis_name) if axis_name else ''
        if fov % 2 == 0:
            if force_center:
                raise ValueError('Receptive Fields are not centered with field of view (%i)%s; '
                                 'change a filter size by one so that the field of view becomes odd'
                                 % (fov, where))
            # part of the original's printout, kept as it was (INFO, not a Python warning)
            logger.info('WARNING: Receptive Fields are not centered with even field of view (%i)', fov)
        self.offset = fov / 2.0

        total_stride = int(np.prod(poolings))
        bound = MIN_SEARCH_BOUND
        if desired_input is not None:
            bound = max(bound, int(desired_input) + total_stride + 1)
        if desired_output is not None:
            bound = max(bound, (int(desired_output) + 2) * total_stride + fov + 1)

        valid_inputs, valid_outputs = [], []
        for inp in range(2, bound):
            sizes = _layer_sizes(inp, filters, poolings, mfp)
            if sizes is not None:
                valid_inputs.append(inp)
                valid_outputs.append(sizes[1][-1])
        if not valid_inputs:
            raise ValueError('No input size below %i is valid for filters %s and poolings %s%s (MFP %s); '
                             'the pools must tile the maps exactly (MFP: leave a remainder of 1)'
                             % (bound, list(filters), list(poolings), where, mfp))
        self.valid_inputs = valid_inputs

        if desired_output is not None:
            inp = self._pick(int(desired_output), valid_outputs, valid_inputs, 'output')
        else:
            inp = self._pick(None if desired_input is None else int(desired_input),
                             valid_inputs, valid_inputs, 'input')
        self.input = inp
        self.out, self.pool_out = _layer_sizes(inp, filters, poolings, mfp)
        self.stride = [int(s) for s in np.cumprod(poolings)]
        self.pred_stride = self.stride[-1]
        self.overlap = [fi - s for fi, s in zip(self.fields, self.stride)]
        self.fov = fov
        self.output = self.pool_out[-1]

    def _pick(self, desired, candidates, inputs, what):
        """Input size for a desired ``what`` (input or output) size, with the original's notes."""
        if desired is None:
            return inputs[-1]
        if desired in candidates:
            return inputs[candidates.index(desired)]
        if desired < candidates[0]:
            i = 0
            reason = 'size too small'
        else:
            i = max(k for k, c in enumerate(candidates) if c <= desired)
            reason = 'size not possible'
        if self._notes:
            logger.info('Info: %s (%i) changed to (%i) (%s)', what, desired, candidates[i], reason)
        return inputs[i]

    def __repr__(self):
        return _format_calculator(self.input, self.pool_out, self.out, self.fields, self.stride,
                                  self.overlap, self.offset)


class _MultiCNNCalculator:
    """Per-dimension results of several :class:`_CNNCalculator`, each attribute a list over dimensions."""

    _attributes = ('input', 'offset', 'pred_stride', 'valid_inputs', 'fields', 'stride', 'out',
                   'pool_out', 'overlap', 'mfp', 'fov', 'output')

    def __init__(self, calcs):
        self.calculators = calcs
        for name in self._attributes:
            setattr(self, name, [getattr(c, name) for c in calcs])

    def __repr__(self):
        return _format_calculator(self.input, self.pool_out, self.out, self.fields, self.stride,
                                  self.overlap, self.offset)


def _format_calculator(inp, pool_out, out, fields, stride, overlap, offset):
    # Layout of the original's documentation: per-dimension lists, layers in forward order.
    return ('Input: %r\nLayer/Fragment sizes:\t%r\nUnpooled Layer sizes:\t%r\nReceptive fields:\t%r\n'
            'Strides:\t\t%r\nOverlap:\t\t%r\nOffset:\t\t%r.\n'
            'If offset is non-int: output neurons lie centered on input neurons,they have an odd FOV\n'
            % (inp, pool_out, out, fields, stride, overlap, offset))


def _check_positive_ints(values, name, minimum):
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
            raise ValueError('%s must contain integers >= %i, got %r' % (name, minimum, v))


def _per_dimension(value, n_dim, name):
    """Broadcast a scalar to ``n_dim`` entries; check a sequence has ``n_dim`` entries."""
    if _is_sequence(value):
        if len(value) != n_dim:
            raise ValueError('%s must have %i entries (one per dimension) or be a scalar, got %r'
                             % (name, n_dim, value))
        return list(value)
    return [value] * n_dim


def CNNCalculator(filters, poolings, desired_input=None, MFP=False, force_center=False,
                  desired_output=None, n_dim=1, notes=True):
    """Compute valid input sizes, fields of view, strides and offsets of a CNN.

    A *function* returning an object whose attributes describe the architecture; print it for
    an overview. For ``n_dim > 1`` every attribute is a list over dimensions, in the order the
    dimensions were given (the training pipeline passes ``(z, x, y)`` for 3D).

    Args:
        filters: Filter size per layer; an int or a per-dimension sequence each.
        poolings: Pooling factor per layer; an int or a per-dimension sequence each.
        desired_input: Wanted input size (int or per-dimension). ``None`` takes the largest valid
            size below 5000; an impossible size is changed to the next smaller valid one (or the
            smallest, if it is too small) with an ``Info:`` note.
        MFP: Per layer whether max-fragment-pooling is used (changes which sizes are valid:
            the unpooled size modulo the pool must be 1). ``False``/``None``/``[]`` for none,
            ``True`` for all.
        force_center: Raise ``ValueError`` if the field of view is even (output neurons not
            centred on input pixels) instead of printing a warning.
        desired_output: Alternative to ``desired_input``: wanted output size.
        n_dim: Number of spatial dimensions (1, 2 or 3).
        notes: Print the ``Info:`` note when a desired size is changed (as the original did).

    Returns:
        An object with the attributes ``input``, ``offset``, ``pred_stride``, ``valid_inputs``,
        ``fields``, ``fov``, ``stride``, ``out`` (unpooled sizes), ``pool_out`` (pooled sizes),
        ``output`` (last pooled size), ``overlap`` and ``mfp``.

    Example::

        >>> d = CNNCalculator([[4,4,1],[3,3,1],[3,3,3],[3,3,3],[2,2,1]],
        ...                   [[2,2,1],[2,2,1],[1,1,1],[1,1,1],[1,1,1]], [127,127,7], n_dim=3)
        >>> d.fov, d.output, d.pred_stride, d.offset
        ([31, 31, 5], [25, 25, 3], [4, 4, 1], [15.5, 15.5, 2.5])
    """
    if n_dim not in (1, 2, 3):
        raise ValueError('n_dim must be 1, 2 or 3, got %r' % (n_dim,))
    if not _is_sequence(filters) or not _is_sequence(poolings):
        raise TypeError('filters and poolings must be lists (one entry per layer), got %r and %r'
                        % (filters, poolings))
    if len(filters) != len(poolings):
        raise ValueError('filters and poolings must have the same number of layers, got %i filters %r '
                         'and %i poolings %r' % (len(filters), filters, len(poolings), poolings))
    if len(filters) == 0:
        raise ValueError('filters is empty: a CNN needs at least one conv layer')
    if MFP is False or MFP is None or (_is_sequence(MFP) and len(MFP) == 0):
        MFP = [False] * len(filters)
    elif MFP is True:
        MFP = [True] * len(filters)
    if not _is_sequence(MFP) or len(MFP) != len(filters):
        raise ValueError('MFP must be a bool or a list with one entry per layer (%i), got %r'
                         % (len(filters), MFP))

    per_layer = {
        'filters': [_per_dimension(f, n_dim, 'filters[%i]' % i) for i, f in enumerate(filters)],
        'poolings': [_per_dimension(p, n_dim, 'poolings[%i]' % i) for i, p in enumerate(poolings)],
        'MFP': [_per_dimension(m, n_dim, 'MFP[%i]' % i) for i, m in enumerate(MFP)],
    }
    _check_positive_ints([v for f in per_layer['filters'] for v in f], 'filters', 1)
    _check_positive_ints([v for p in per_layer['poolings'] for v in p], 'poolings', 1)
    inputs = _per_dimension(desired_input, n_dim, 'desired_input')
    outputs = _per_dimension(desired_output, n_dim, 'desired_output')
    for name, values in (('desired_input', inputs), ('desired_output', outputs)):
        _check_positive_ints([v for v in values if v is not None], name, 1)

    calcs = []
    for d in range(n_dim):
        calcs.append(_CNNCalculator([f[d] for f in per_layer['filters']],
                                    [p[d] for p in per_layer['poolings']],
                                    inputs[d], [m[d] for m in per_layer['MFP']], force_center,
                                    outputs[d], axis_name=str(d) if n_dim > 1 else '', notes=notes))
    if n_dim == 1:
        return calcs[0]
    return _MultiCNNCalculator(calcs)


def initWeights(shape, scale='glorot', mode='normal', pool=None, rng=None):
    """Initial values for a parameter array, as the original initialised them.

    Args:
        shape: Parameter shape. 2D arrays are ``(n_in, n_out)`` matrices; conv filters are
            ``(nof, ch, *spatial)``.
        scale: ``'glorot'`` (std or bound ``sqrt(2 / (n_in + n_out))``) or a number (for
            ``'const'`` and ``'fix-uni'``).
        mode: ``'normal'`` / ``'uni'`` (Glorot normal / uniform), ``'const'`` (all ``scale``),
            ``'fix-uni'`` (uniform in ``+-scale``) or ``'rnn'`` (uniform in +-1, divided by the
            largest singular value).
        pool: Pooling factors of a conv layer; the fan-out is divided by their product.
        rng: A ``numpy.random.RandomState``/``Generator``; the global NumPy RNG by default.

    Returns:
        A float32 array of ``shape``.
    """
    rng = np.random if rng is None else rng
    shape = tuple(int(s) for s in shape)
    if mode == 'const':
        return np.full(shape, scale, dtype=np.float32)
    if mode == 'fix-uni':
        return rng.uniform(-scale, scale, shape).astype(np.float32)
    if mode == 'rnn':
        if len(shape) != 2 or shape[0] != shape[1]:
            raise ValueError("mode 'rnn' needs a square matrix shape, got %r" % (shape,))
        W = rng.uniform(-1.0, 1.0, shape)
        return (W / np.linalg.svd(W, compute_uv=False)[0]).astype(np.float32)
    if scale != 'glorot' or mode not in ('normal', 'uni'):
        raise ValueError("Invalid weight initialisation: scale=%r, mode=%r" % (scale, mode))
    if len(shape) == 2:
        n_in, n_out = shape
    elif len(shape) >= 3:
        pool_volume = float(np.prod(pool)) if pool is not None else 1.0
        n_in = float(np.prod(shape[1:]))
        n_out = shape[0] * float(np.prod(shape[2:])) / pool_volume
    else:
        raise ValueError('Glorot initialisation needs a matrix or filter shape, got %r' % (shape,))
    w_scale = np.sqrt(2.0 / (n_in + n_out))
    if mode == 'normal':
        W = rng.normal(0, w_scale, shape)
    else:
        W = rng.uniform(-w_scale, w_scale, shape)
    return W.astype(np.float32)


# ---------------------------------------------------------------------------------------------------
# Gabor filters (the original's elektronn.net.gaborfilters)
# ---------------------------------------------------------------------------------------------------
_GABOR_SIGMA = 0.35
_GABOR_FREQUENCY = 1.6 / np.pi  # spatial frequency per mode, in cycles per unit of the normalised grid


def makeGabor(filter_angle, n_modes, size, offset):
    """A square Gabor filter: a Gaussian envelope times a cosine wave, zero mean.

    The grid runs over ``size`` points from ``-m`` to ``m`` with ``m = size // 2`` (``X`` along the
    columns, ``Y`` along the rows), normalised by ``m + 1`` and rotated by ``filter_angle``::

        u =  X / (m + 1) cos(a) + Y / (m + 1) sin(a)
        v = -X / (m + 1) sin(a) + Y / (m + 1) cos(a)
        g = exp(-(u^2 + v^2) / (2 * 0.35^2)) * cos(2 pi (n_modes * 1.6 / pi * v + offset_rad))

    then ``g - mean(g)``, divided by ``sum(g^2)`` (of the centred filter).

    Args:
        filter_angle: Orientation in degrees, ``0 <= angle < 360``.
        n_modes: Number of modes (1, 2, ...): scales the frequency.
        size: Filter size (the filter is ``size x size``).
        offset: Phase offset of the wave in degrees.

    Returns:
        float32 array ``(size, size)``.
    """
    if not 0 <= filter_angle < 360:
        raise ValueError('filter_angle must lie in [0, 360) degrees, got %r' % (filter_angle,))
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError('size must be a positive integer, got %r' % (size,))
    m = int(size) // 2
    theta = np.deg2rad(float(filter_angle))
    phase = np.deg2rad(float(offset))
    grid = np.linspace(-m, m, int(size))
    X, Y = np.meshgrid(grid, grid)
    X, Y = X / (m + 1.0), Y / (m + 1.0)
    u = X * np.cos(theta) + Y * np.sin(theta)
    v = -X * np.sin(theta) + Y * np.cos(theta)
    gabor = np.exp(-0.5 * (u ** 2 + v ** 2) / _GABOR_SIGMA ** 2) * \
        np.cos(2.0 * np.pi * (n_modes * _GABOR_FREQUENCY * v + phase))
    gabor = gabor - gabor.mean()
    return (gabor / np.square(gabor).sum()).astype(np.float32)


def makeGaborFilters(size, number):
    """``number`` first-order and ``number`` second-order Gabor filters.

    First order: ``makeGabor(k * 360 / number, 1, size, 45)``; second order:
    ``makeGabor(k * 180 / number, 2, size, 0)``, for ``k = 0 .. number - 1``.

    Returns:
        float32 array ``(2 * number, size, size)``.
    """
    number = int(number)
    if number < 1:
        raise ValueError('number must be a positive integer, got %r' % (number,))
    first = [makeGabor(k * 360.0 / number, 1, size, 45) for k in range(number)]
    second = [makeGabor(k * 180.0 / number, 2, size, 0) for k in range(number)]
    return np.array(first + second)


def blob(size):
    """A Gaussian blob filter ``exp(-(x^2 + y^2) / 2)`` on a ``size x size`` grid over [-2, 2], divided by
    the sum of its squares (float64, as the original)."""
    grid = np.linspace(-2, 2, int(size))
    x, y = np.meshgrid(grid, grid)
    ret = np.exp(-0.5 * (np.square(x) + np.square(y)))
    return ret / np.square(ret).sum()
