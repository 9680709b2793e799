"""Seeded watershed on boundary maps and on affinity graphs.

Volumes are ``(z, x, y)`` arrays (axis 0 = sections); 2D images ``(x, y)`` are accepted by
:func:`watershed_boundaries`. A boundary map is high on membranes: float in [0, 1] or uint8
(divided by 255). An affinity graph is ``(3, z, x, y)`` in ELEKTRONN's convention: ``affs[e, v]``
is the affinity between voxel ``v`` and its neighbour ``v + nhood[e]``, nhood = ((1, 0, 0),
(0, 1, 0), (0, 0, 1)) (the +z, +x, +y neighbours); the last slice along each direction has no
neighbour and is ignored. High affinity = same object.

Every step is local (no global normalisation or data-dependent global threshold), so a block cut
out with a large enough halo gives the whole volume's result in its core, up to relabelling; see
:func:`watershed_boundaries`.
"""
import numbers

import numpy as np
from scipy import ndimage
from skimage.segmentation import watershed

from elektronn.segmentation.labels import check_count, check_label_dtype, relabel

__all__ = ['watershed_boundaries', 'affinities_to_boundaries', 'watershed_affinities']


def as_unit_float(values, name):
    """``values`` as a float array in [0, 1]: uint8 is divided by 255 (float32), floats are kept."""
    values = np.asarray(values)
    if values.dtype == np.uint8:
        return values.astype(np.float32) / np.float32(255)
    if not np.issubdtype(values.dtype, np.floating):
        raise ValueError('%s must be float in [0, 1] or uint8, got dtype %s' % (name, values.dtype))
    if values.dtype.itemsize < 4:
        values = values.astype(np.float32)
    if values.size:
        low, high = values.min(), values.max()
        if not (low >= 0 and high <= 1):  # also catches NaN
            raise ValueError('%s values must lie in [0, 1], got min %s, max %s' % (name, low, high))
    return values


def as_affinities(affs):
    """``affs`` checked to be a ``(3, z, x, y)`` affinity graph in [0, 1] (uint8: divided by 255)."""
    shape = np.shape(affs)
    if len(shape) != 4 or shape[0] != 3:
        raise ValueError('affs must be (3, z, x, y), got shape %s' % (shape,))
    return as_unit_float(affs, 'affs')


def check_threshold(value, name='threshold', closed=False):
    """``value`` as a float in (0, 1), or [0, 1] if ``closed`` (ValueError echoing it)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and (
        0 <= value <= 1 if closed else 0 < value < 1)
    if not ok:
        raise ValueError('%s must be a number in %s, got %r' % (name, '[0, 1]' if closed else '(0, 1)', value))
    return float(value)


def edge_slices(axis):
    """Index tuples of the voxels ``v`` of the edges along ``axis`` (0, 1, 2) and of their ``v + nhood``."""
    low, high = [slice(None)] * 3, [slice(None)] * 3
    low[axis], high[axis] = slice(None, -1), slice(1, None)
    return tuple(low), tuple(high)


def edge_axes(two_d):
    """The edge directions used: x and y only when ``two_d``."""
    return (1, 2) if two_d else (0, 1, 2)


def _structure(two_d, connectivity):
    """3D neighbourhood of ``connectivity`` (1: faces, 3: all 26), in-plane only when ``two_d``."""
    structure = ndimage.generate_binary_structure(3, connectivity)
    if two_d:
        structure[[0, 2]] = False
    return structure


def _distance(interior, two_d, sampling):
    """Euclidean distance of interior voxels to the nearest non-interior voxel (float32).

    Per section when ``two_d``. Where there is no non-interior voxel at all (in the volume, or in
    the section), the distance is +inf everywhere: one plateau, so one seed.
    """
    if two_d:
        distance = np.empty(interior.shape, np.float32)
        for z, section in enumerate(interior):
            distance[z] = _distance(section, False, sampling[1:])
        return distance
    if interior.all():
        return np.full(interior.shape, np.inf, np.float32)
    return ndimage.distance_transform_edt(interior, sampling=sampling).astype(np.float32)


def _seeds(distance, interior, min_seed_distance, two_d):
    """Seed labels (int32): plateaus of local maxima of ``distance`` in interior voxels."""
    size = 2 * min_seed_distance + 1
    peaks = distance == ndimage.maximum_filter(distance, size=(1, size, size) if two_d else size)
    peaks &= interior
    return ndimage.label(peaks, structure=_structure(two_d, 3))[0]


def _flood_ranks(boundary, distance):
    """The flooding priority: each voxel's rank (float64) in the order (boundary, -distance, raster index).

    ``boundary`` is float32 >= 0 and ``distance`` float32 >= 0, so their bit patterns as uint32
    are ordered as their values (the sign bit is cleared to map -0.0 to 0). The ranks are unique,
    so skimage's watershed never breaks a tie by the order of its queue.
    """
    key = (boundary.view(np.uint32) & 0x7FFFFFFF).astype(np.uint64) << 32
    key |= ~distance.view(np.uint32)
    order = np.argsort(key.ravel(), kind='stable')
    del key
    ranks = np.empty(order.size, np.float64)
    ranks[order] = np.arange(order.size, dtype=np.float64)
    return ranks.reshape(boundary.shape)


def _check_sampling(sampling, ndim):
    if sampling is None:
        return (1.0,) * ndim
    values = np.asarray(sampling, dtype=object).ravel()
    if (len(values) != ndim or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) and 0 < v < np.inf
                                       for v in values)):
        raise ValueError('sampling must be %d positive voxel sizes (one per axis), got %r' % (ndim, sampling))
    return tuple(float(v) for v in values)


def watershed_boundaries(boundary, threshold=0.5, min_seed_distance=3, min_size=0, two_d=False, sampling=None,
                         dtype=np.uint32):
    """Seeded watershed of a boundary map.

    1. *Interior*: the voxels with ``boundary < threshold``.
    2. *Distance*: ``scipy.ndimage.distance_transform_edt`` of the interior: the distance of each
       interior voxel to the nearest non-interior voxel, per section when ``two_d``, in units of
       ``sampling`` (the voxel size per axis, e.g. ``(50, 4, 4)``; with ``two_d`` only the in-plane
       sizes count). The volume's border is not a boundary. Where a volume (``two_d``: a section)
       has no non-interior voxel, the distance is +inf everywhere.
    3. *Seeds*: interior voxels where the distance equals its maximum over a window of
       ``2 * min_seed_distance + 1`` voxels per axis (in-plane only when ``two_d``); touching seed
       voxels (26-neighbourhood; 8 in-plane when ``two_d``), e.g. a plateau, form one seed.
    4. *Flooding*: ``skimage.segmentation.watershed`` floods the whole volume (no mask) from the
       seeds over the 6-neighbourhood (4 in-plane when ``two_d``, so each section is flooded on
       its own; labels are unique across sections). Voxels are ordered by the boundary value (as
       float32), ties by the larger distance (from the cell centre outwards, which splits flat
       regions between seeds along their medial axis), remaining ties by raster order; the flood
       uses the ranks of this order, so it is deterministic and translation invariant. A voxel
       (``two_d``: a section) not connected to any seed stays 0.
    5. *Small segments*: segments of fewer than ``min_size`` voxels (counted in this whole
       call's volume, all sections together) become 0; then labels are made consecutive,
       ``1 .. n`` in the raster order of the seeds' first voxels.

    Locality: a voxel's label depends only on the voxels around it: the nearest non-interior
    voxel, the seed window and the flooding paths to the seeds. A block cut out with a halo of
    at least the largest object's diameter plus ``min_seed_distance + 1`` voxels on each side
    (in-plane only when ``two_d``) gives the whole volume's labels in its core, up to relabelling
    (with ``min_size`` > 0, only for segments that lie completely in the block).

    Args:
        boundary: ``(z, x, y)`` or ``(x, y)`` boundary map: float in [0, 1] or uint8.
        threshold: In (0, 1): voxels below it are interior.
        min_seed_distance: int >= 1, the seeds' window radius in voxels.
        min_size: int >= 0, the smallest segment size kept, in voxels.
        two_d: Segment each section (axis 0) on its own.
        sampling: Voxel size per axis (length ``boundary.ndim``), ``None``: isotropic.
        dtype: uint32 or uint64, the labels' type.

    Returns:
        Labels of ``boundary``'s shape and ``dtype``: ``1 .. n``, 0 = unassigned.

    Raises:
        ValueError: a bad argument (the message echoes it) or more segments than ``dtype`` holds.
    """
    boundary = as_unit_float(boundary, 'boundary')
    if boundary.ndim not in (2, 3):
        raise ValueError('boundary must be (z, x, y) or (x, y), got shape %s' % (boundary.shape,))
    threshold = check_threshold(threshold)
    min_seed_distance = check_count(min_seed_distance, 'min_seed_distance', 1)
    min_size = check_count(min_size, 'min_size', 0)
    sampling = _check_sampling(sampling, boundary.ndim)
    dtype = check_label_dtype(dtype)
    if boundary.ndim == 2:
        labels = watershed_boundaries(boundary[None], threshold, min_seed_distance, min_size, True,
                                      (1.0,) + sampling, dtype)
        return labels[0]
    two_d = bool(two_d)
    boundary = np.ascontiguousarray(boundary, dtype=np.float32)
    interior = boundary < threshold
    distance = _distance(interior, two_d, sampling)
    seeds = _seeds(distance, interior, min_seed_distance, two_d)
    ranks = _flood_ranks(boundary, distance)
    if two_d:  # section by section: the same result as one call with an in-plane neighbourhood, 3-4x faster
        flooded = np.stack([watershed(section, markers=markers) for section, markers in zip(ranks, seeds)])
    else:
        flooded = watershed(ranks, markers=seeds)
    return relabel(flooded, min_size, dtype)[0]


def affinities_to_boundaries(affs, two_d=False):
    """Boundary map ``(z, x, y)`` (float32) of an affinity graph: 1 - mean affinity of each voxel's edges.

    A voxel's edges are its own +z/+x/+y edges and its -z/-x/-y neighbours' edges pointing at it;
    edges leaving the volume do not count, and with ``two_d`` only the in-plane (x, y) edges
    count. A voxel without any edge (a volume of a single voxel, ``two_d``: in-plane) gets 0.
    """
    affs = as_affinities(affs)
    total = np.zeros(affs.shape[1:], np.float32)
    count = np.zeros(affs.shape[1:], np.uint8)
    for axis in edge_axes(two_d):
        low, high = edge_slices(axis)
        edges = affs[axis][low]
        total[low] += edges
        total[high] += edges
        count[low] += 1
        count[high] += 1
    mean = np.divide(total, count, out=np.ones_like(total), where=count > 0)
    return np.clip(1 - mean, 0, 1, out=mean)


def watershed_affinities(affs, threshold=0.5, min_seed_distance=3, two_d=False, dtype=np.uint32):
    """Fragments of an affinity graph: :func:`watershed_boundaries` of :func:`affinities_to_boundaries`.

    ``threshold`` applies to the boundary map (interior: 1 - mean affinity < threshold); no segment
    is removed (``min_size=0``). Returns ``(z, x, y)`` labels ``1 .. n`` of ``dtype``.
    """
    return watershed_boundaries(affinities_to_boundaries(affs, two_d), threshold=threshold,
                                min_seed_distance=min_seed_distance, min_size=0, two_d=two_d, dtype=dtype)
