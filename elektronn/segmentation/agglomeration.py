"""Agglomeration of watershed fragments by mean affinity, and the whole affinity segmentation.

:func:`agglomerate` builds the region adjacency graph of the fragments, weighted by the mean
affinity of all voxel pairs that connect two fragments, and merges greedily, always the pair of
highest mean affinity next (as waterz does with its mean-affinity scoring); several thresholds
come out of one pass. :func:`segment_affinities` is watershed, agglomeration and small-segment
removal in one call.
"""
import heapq
import numbers

import numpy as np

from elektronn.segmentation.labels import as_labels, check_count, output_dtype, relabel, remove_small_segments
from elektronn.segmentation.watershed import (as_affinities, check_threshold, edge_axes, edge_slices,
                                              watershed_affinities)

__all__ = ['agglomerate', 'segment_affinities']


def region_graph(affs, fragments, n, two_d=False):
    """Edges between fragments ``1 .. n``: ``(pairs, sums, counts)``.

    ``pairs`` (m, 2) int64 are the fragment pairs ``a < b`` that touch (sorted), ``sums`` (float64)
    the sums of the affinities of all voxel edges between them and ``counts`` the numbers of those
    edges. Edges touching label 0 are left out; with ``two_d`` only in-plane edges count.
    """
    keys, weights = [], []
    for axis in edge_axes(two_d):
        low, high = edge_slices(axis)
        a, b = fragments[low], fragments[high]
        between = (a != b) & (a != 0) & (b != 0)
        a, b = a[between].astype(np.uint64), b[between].astype(np.uint64)
        keys.append(np.minimum(a, b) * np.uint64(n + 1) + np.maximum(a, b))
        weights.append(affs[axis][low][between])
    keys, inverse = np.unique(np.concatenate(keys), return_inverse=True)
    sums = np.bincount(inverse, weights=np.concatenate(weights).astype(np.float64), minlength=len(keys))
    counts = np.bincount(inverse, minlength=len(keys))
    pairs = np.stack([keys // np.uint64(n + 1), keys % np.uint64(n + 1)], axis=1).astype(np.int64)
    return pairs, sums, counts


def _roots(parent):
    """The root of every node of a union-find forest ``parent`` (an array; pointer jumping, vectorised)."""
    roots = parent.copy()
    while True:
        jumped = roots[roots]
        if np.array_equal(jumped, roots):
            return roots
        roots = jumped


def merge_fragments(n, pairs, sums, counts, thresholds):
    """Greedy mean-affinity merging of fragments ``1 .. n``; a root table per threshold.

    Always merges the adjacent pair of highest mean affinity (``sum / count``; ties: the pair of
    smaller region ids, a region keeping the id of one of its fragments) while that mean is above
    the threshold; a merged region's edges add up their
    sums and counts. Thresholds are taken from high to low: the table of a threshold is taken
    when the next best mean falls to or below it (or no edge is left).

    Returns:
        ``{threshold: roots}``, ``roots[i]`` the region (a fragment id) of fragment ``i``
        (``roots[0] = 0``).
    """
    parent = list(range(n + 1))
    adjacency = [{} for _ in range(n + 1)]  # region -> {neighbour region: (sum, count)}
    heap = []
    for (a, b), total, count in zip(pairs.tolist(), sums.tolist(), counts.tolist()):
        adjacency[a][b] = adjacency[b][a] = (total, count)
        heap.append((-total / count, a, b))
    heapq.heapify(heap)
    pending = sorted(set(thresholds), reverse=True)
    tables = {}
    while heap and pending:
        negative_mean, a, b = heap[0]
        edge = adjacency[a].get(b) if adjacency[a] is not None else None  # merged-away regions are None
        if edge is None or edge[0] / edge[1] != -negative_mean:  # stale entry
            heapq.heappop(heap)
            continue
        while pending and -negative_mean <= pending[0]:
            tables[pending.pop(0)] = _roots(np.array(parent))
        if not pending:
            break
        heapq.heappop(heap)
        # The region with more neighbours stays (fewer dictionary updates); ties: the smaller id.
        keep, gone = (a, b) if len(adjacency[a]) >= len(adjacency[b]) else (b, a)
        parent[gone] = keep
        kept = adjacency[keep]
        del kept[gone]
        for neighbour, (total, count) in adjacency[gone].items():
            if neighbour == keep:
                continue
            del adjacency[neighbour][gone]
            if neighbour in kept:
                old_total, old_count = kept[neighbour]
                total, count = old_total + total, old_count + count
            kept[neighbour] = adjacency[neighbour][keep] = (total, count)
            heapq.heappush(heap, (-total / count, min(keep, neighbour), max(keep, neighbour)))
        adjacency[gone] = None
    for threshold in pending:
        tables[threshold] = _roots(np.array(parent))
    return tables


def _check_thresholds(thresholds):
    if isinstance(thresholds, numbers.Real) and not isinstance(thresholds, bool):
        thresholds = (thresholds,)
    try:
        thresholds = list(thresholds)
    except TypeError:
        raise ValueError('thresholds must be a sequence of numbers in [0, 1], got %r' % (thresholds,)) from None
    if not thresholds:
        raise ValueError('thresholds must name at least one threshold, got %r' % (thresholds,))
    return [check_threshold(t, 'each of thresholds', closed=True) for t in thresholds]


def agglomerate(affs, fragments, thresholds=(0.5,), two_d=False, dtype=None):
    """Merge fragments greedily by the mean affinity between them; one labelling per threshold.

    The region adjacency graph joins two fragments that touch; its weight is the MEAN affinity of
    all affinity edges (voxel pairs) between the two (only in-plane edges when ``two_d``). The
    pair of highest mean is merged next (ties: the pair of smaller ids), the merged region's
    edges adding up their (sum, count), while that mean is above the threshold. All thresholds
    come from one pass from high to low: a threshold's labelling is taken when the next best
    mean falls to or below it, so the labelling of a lower threshold is a coarsening of that of
    a higher one. Label 0 stays 0 and never merges.

    Args:
        affs: ``(3, z, x, y)`` affinity graph (float in [0, 1] or uint8).
        fragments: ``(z, x, y)`` non-negative integer labels (e.g. :func:`watershed_affinities`).
        thresholds: Numbers in [0, 1] (or one number): 1 merges nothing, 0 every pair of
            positive mean affinity.
        two_d: Merge only within sections (in-plane edges only).
        dtype: uint32 or uint64; ``None``: the fragments' dtype if it is one of them, else uint32.

    Returns:
        A list of label arrays of ``dtype``, one per threshold in the order given: ``1 .. n``,
        the segments numbered in the order of their smallest fragment id (after the fragments
        are made consecutive as by :func:`~elektronn.segmentation.labels.relabel_consecutive`).
    """
    affs = as_affinities(affs)
    fragments = as_labels(fragments, 'fragments')
    if fragments.shape != affs.shape[1:]:
        raise ValueError('fragments must have the shape of affs without its channel axis, %s, got %s'
                         % (affs.shape[1:], fragments.shape))
    thresholds = _check_thresholds(thresholds)
    dtype = output_dtype(fragments.dtype, dtype)
    fragments, n = relabel(fragments)
    tables = merge_fragments(n, *region_graph(affs, fragments, n, bool(two_d)), thresholds)
    tables = {threshold: _segment_table(roots, dtype) for threshold, roots in tables.items()}
    return [tables[threshold][fragments] for threshold in thresholds]


def _segment_table(roots, dtype):
    """Fragment -> segment ``1 .. n`` (0 -> 0), segments numbered in the order of their smallest fragment."""
    _, first, inverse = np.unique(roots[1:], return_index=True, return_inverse=True)
    number = np.empty(len(first), dtype)
    number[np.argsort(first)] = np.arange(1, len(first) + 1, dtype=dtype)
    return np.concatenate([np.zeros(1, dtype), number[inverse]])


def segment_affinities(affs, thresholds=(0.5,), threshold=0.5, min_seed_distance=3, min_size=0, two_d=False,
                       dtype=np.uint32):
    """Segment an affinity graph: :func:`watershed_affinities`, :func:`agglomerate`, then small-segment removal.

    Args:
        affs: ``(3, z, x, y)`` affinity graph (float in [0, 1] or uint8).
        thresholds: Agglomeration thresholds (see :func:`agglomerate`).
        threshold, min_seed_distance, two_d: Of the watershed (see :func:`watershed_affinities`).
        min_size: Segments of fewer voxels become 0 in each result (then labels are consecutive).
        dtype: uint32 or uint64.

    Returns:
        A list of ``(z, x, y)`` label arrays of ``dtype``, one per threshold in the order given.
    """
    min_size = check_count(min_size, 'min_size', 0)
    fragments = watershed_affinities(affs, threshold=threshold, min_seed_distance=min_seed_distance, two_d=two_d,
                                     dtype=dtype)
    return [remove_small_segments(labels, min_size)
            for labels in agglomerate(affs, fragments, thresholds, two_d=two_d, dtype=dtype)]
