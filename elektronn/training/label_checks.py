"""Checks of the label cubes :class:`~elektronn.training.image_data.CNNData` loads: values, dtype, classes, lazy labels.

Class labels are whole numbers ``0 .. n_lab-1`` (negative: ignore) that fit the label dtype;
regression targets are finite floats; affinity labels are segment ids. :func:`label_range` gathers
a cube's value range (slab by slab for a cube left on disk) and checks the values,
:func:`check_label_cast` the dtype, :func:`count_classes` detects or checks ``n_lab`` and
:func:`check_labelled` refuses cubes with nothing to train on. :func:`read_lazy_info` reads a
label file's lazy-label masks and :func:`attach_lazy_info` gives every cube its pair of masks.
A cube is anything with the attributes ``label_range``, ``label_name``, ``info`` and ``info_name``.
"""
import numpy as np

from elektronn.training import cubes as _cubes

__all__ = ['label_range', 'check_label_cast', 'read_lazy_info', 'count_classes', 'check_labelled',
           'attach_lazy_info']


def label_range(slabs, name, float_label):
    """``(min, max)`` over the label arrays ``slabs`` (``None`` when all are empty).

    Regression targets (``float_label``) must be finite and float class labels whole numbers;
    ``name`` is the cube named in the errors.
    """
    lo, hi = np.inf, -np.inf
    for slab in slabs:
        if slab.size == 0:
            continue
        if float_label:
            _cubes.check_finite(slab, name, what='regression targets')
        elif np.issubdtype(slab.dtype, np.floating):
            if not np.all(np.isfinite(slab)) or np.any(np.mod(slab, 1) != 0):
                raise ValueError('%s: class labels must be whole numbers, but the float labels have fractional or '
                                 'non-finite values; use integer labels, or target=regression (float_label=True)'
                                 % name)
        lo, hi = min(lo, float(slab.min())), max(hi, float(slab.max()))
    return None if lo > hi else (lo, hi)


def check_label_cast(label_range, name, ldtype, float_label):
    """Refuse class labels in ``label_range`` that the integer label dtype ``ldtype`` cannot store."""
    if label_range is None or float_label:
        return
    info = np.iinfo(ldtype)
    for v in label_range:
        if v > info.max or v < info.min:
            raise ValueError('Loading of data: labels must be cast to %s, but %s cannot store value %g from %s '
                             '(allowed %i..%i). You may try to renumber labels.'
                             % (np.dtype(ldtype).name, np.dtype(ldtype).name, v, name, info.min, info.max))


def read_lazy_info(l_file, l_full):
    """The lazy-label ``'info'`` dataset of a label file or store: ``(labelled, not_present)`` masks, or ``None``.

    Args:
        l_file: The label file's open :class:`~elektronn.volumes.Container`.
        l_full: Its path, for messages.
    """
    if 'info' not in l_file:
        return None
    info = l_file.volume('info').read()
    if info.ndim != 2 or info.shape[0] != 2:
        raise ValueError('%s: the lazy-label dataset must be a pair of masks of shape (2, n_lab), got shape %s'
                         % (_cubes.describe(l_full, 'info'), info.shape))
    return info


def count_classes(cubes, n_lab, float_label, affinity):
    """The number of classes: ``n_lab`` checked against every cube's labels, or detected (largest label + 1).

    Regression targets and segment ids (``affinity``) are not classes: their ``n_lab`` defaults to 1.
    """
    if float_label or affinity:
        return 1 if n_lab is None else n_lab
    highest = max([c.label_range[1] for c in cubes if c.label_range is not None] or [-1])
    if n_lab is None:
        if highest < 0:
            raise ValueError('Cannot detect n_lab: the label cubes %s hold no class labels (all are negative, '
                             'i.e. ignored); set n_lab' % [c.label_name for c in cubes])
        n_lab = int(highest) + 1
    for c in cubes:
        if c.label_range is not None and c.label_range[1] >= n_lab:
            raise ValueError('%s holds label %g, outside 0..%i for n_lab=%i (negative labels mean "ignore"); '
                             'renumber the labels or raise n_lab'
                             % (c.label_name, c.label_range[1], n_lab - 1, n_lab))
    return n_lab


def check_labelled(cubes):
    """Refuse a cube of class labels that are all negative ("ignore"), unless its lazy-label info flags
    a class as not present (that cube still says where the class is not)."""
    for c in cubes:
        not_present = c.info is not None and np.any(np.asarray(c.info)[1])
        if (c.label_range is None or c.label_range[1] < 0) and not not_present:
            raise ValueError('%s: every label is negative ("ignore"), so the cube has nothing to train or '
                             'validate on; label some voxels (classes 0..n_lab-1) or leave the cube out (for '
                             'label propagation on unlabelled cubes set unlabelled_cubes = True)'
                             % c.label_name)


def attach_lazy_info(cubes, n_lab):
    """Replace each cube's ``info`` by its int16 masks ``(labelled, not_present)`` of length ``n_lab``
    (all classes labelled, none absent when the label file had no ``'info'``)."""
    for c in cubes:
        if c.info is None:
            c.info = (np.ones(n_lab, np.int16), np.zeros(n_lab, np.int16))
        else:
            if c.info.shape != (2, n_lab):
                raise ValueError('%s: the lazy-label info must have shape (2, n_lab) = (2, %i), got %s'
                                 % (c.info_name, n_lab, c.info.shape))
            c.info = (c.info[0].astype(np.int16), c.info[1].astype(np.int16))
