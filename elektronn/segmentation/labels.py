"""Small label utilities: consecutive relabelling, segment sizes, removal of small segments, label dtypes.

Label volumes are non-negative integer arrays of any shape; 0 means unassigned. Outputs of this
package are ``uint32`` or ``uint64`` with labels ``1 .. n`` (see :func:`check_label_dtype`).
"""
import numbers

import numpy as np

__all__ = ['check_label_dtype', 'segment_sizes', 'relabel_consecutive', 'remove_small_segments']

#: The label types of outputs.
LABEL_DTYPES = (np.dtype(np.uint32), np.dtype(np.uint64))
#: Label ids up to this many times the number of voxels (and at least up to 2**20) are counted with
#: np.bincount (one pass, no sort); larger ids with np.unique (a sort).
_DENSE_FACTOR = 2
_DENSE_MIN = 2 ** 20


def check_label_dtype(dtype, n_segments=None):
    """``np.dtype`` of ``dtype``, which must be uint32 or uint64; with ``n_segments``, check that they fit.

    Raises:
        ValueError: another dtype (the message echoes it), or ``n_segments`` larger than the
            dtype's largest value.
    """
    try:
        checked = np.dtype(dtype)
    except TypeError:
        checked = None
    if checked not in LABEL_DTYPES:
        raise ValueError('label dtype must be uint32 or uint64, got %r' % (dtype,))
    if n_segments is not None and n_segments > np.iinfo(checked).max:
        raise ValueError('%d segments do not fit %s: use dtype=uint64' % (n_segments, checked.name))
    return checked


def as_labels(labels, name='labels'):
    """``labels`` as a NumPy array of non-negative integers (ValueError otherwise)."""
    labels = np.asarray(labels)
    if labels.dtype == bool or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError('%s must be an integer array, got dtype %s' % (name, labels.dtype))
    if np.issubdtype(labels.dtype, np.signedinteger) and labels.size and labels.min() < 0:
        raise ValueError('%s must be >= 0, got a minimum of %d' % (name, labels.min()))
    return labels


def output_dtype(input_dtype, dtype):
    """``dtype`` checked, or (``None``) the input's dtype if it is uint32/uint64, else uint32."""
    if dtype is None:
        return np.dtype(input_dtype) if np.dtype(input_dtype) in LABEL_DTYPES else LABEL_DTYPES[0]
    return check_label_dtype(dtype)


def check_count(value, name, minimum):
    """``value`` as an int, which must be an integral number >= ``minimum`` (ValueError echoing it)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError('%s must be an integer >= %d, got %r' % (name, minimum, value))
    return int(value)


def _is_dense(labels):
    return labels.size == 0 or int(labels.max()) < max(_DENSE_MIN, _DENSE_FACTOR * labels.size)


def segment_sizes(labels):
    """Voxels per label: ``(ids, counts)``, the labels present in ascending order (0 too, if present).

    Counted with ``np.bincount`` where the largest id is moderate (below ``max(2**20, 2 * size)``),
    with ``np.unique`` otherwise.
    """
    labels = as_labels(labels)
    if not _is_dense(labels):
        return np.unique(labels, return_counts=True)
    counts = np.bincount(labels.ravel(), minlength=1)
    ids = np.flatnonzero(counts)
    return ids.astype(labels.dtype), counts[ids]


def relabel(labels, min_size=0, dtype=None):
    """Labels ``1 .. n`` in the order of the sorted old ids, dropping segments < ``min_size`` voxels."""
    labels = as_labels(labels)
    dtype = output_dtype(labels.dtype, dtype)
    if _is_dense(labels):
        counts = np.bincount(labels.ravel(), minlength=1)
        inverse = labels
    else:
        ids, inverse, counts = np.unique(labels.ravel(), return_inverse=True, return_counts=True)
        inverse = inverse.reshape(labels.shape)
        if ids[0] != 0:  # position 0 of the table must stand for label 0
            counts, inverse = np.concatenate([[0], counts]), inverse + 1
    keep = counts >= max(min_size, 1)
    keep[0] = False
    n = int(np.count_nonzero(keep))
    check_label_dtype(dtype, n)
    table = np.cumsum(keep, dtype=dtype)
    table *= keep
    return table[inverse], n


def relabel_consecutive(labels, dtype=None):
    """Labels ``1 .. n`` (0 stays 0), numbered in the order of the sorted old ids.

    The mapping is monotone: old id a < old id b gives new a < new b, independent of where the
    segments are in the volume.

    Args:
        labels: Non-negative integer array of any shape.
        dtype: uint32 or uint64; ``None``: the input's dtype if it is one of them, else uint32.

    Returns:
        ``(relabelled, n)``: an array of ``dtype`` and the number of segments.

    Raises:
        ValueError: float or negative labels, another dtype, or more segments than ``dtype`` holds.
    """
    return relabel(labels, 0, dtype)


def remove_small_segments(labels, min_size):
    """Labels with every segment of fewer than ``min_size`` voxels set to 0, then made consecutive.

    The output is numbered as by :func:`relabel_consecutive` and has the input's dtype if that is
    uint32 or uint64, else uint32.
    """
    return relabel(labels, check_count(min_size, 'min_size', 0), None)[0]
