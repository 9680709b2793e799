"""Affinity-graph labels from segmentations, for the ``'affinity'`` and ``'malis'`` targets.

An affinity graph holds one 0/1 value per voxel and edge direction: ``aff[e, z, x, y] = 1`` when
the voxel and its neighbour ``(z, x, y) + nhood[e]`` belong to the same object (same ID > 0).
With the original's neighbourhood (identity: one edge each along z, x and y) the last slice
along each direction has no neighbour and is 0.

Label batches ``(bs, z, x, y)`` of object IDs become, with :func:`make_affinities`,

* ``aff`` ``(bs, 3, z, x, y)`` int16: the labels of the ``'affinity'`` and ``'malis'`` targets;
* ``seg`` ``(bs, z, x, y)`` int32: the objects relabelled as the connected components of ``aff``
  (``1 .. n`` per example, 0 = background and objects of at most ``size_thresh`` voxels) — the
  ``seg_gt`` auxiliary input of ``'malis'``. Relabelling makes an ID that falls apart into
  several pieces within a patch count as several objects, as the connectivity the network has
  to learn is that of the patch.

Pure NumPy/SciPy, no network involved.
"""
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from elektronn.net.malis import NHOOD, affinity_edges

__all__ = ['NHOOD', 'seg_to_affgraph', 'affgraph_to_seg', 'make_affinities']


def seg_to_affgraph(seg, nhood=None):
    """Affinity graph of a segmentation.

    Args:
        seg: Object IDs ``(z, x, y)``; 0 (and negative IDs) = background, never connected.
        nhood: Edge offsets ``(#edges, 3)``; default :data:`NHOOD` (identity).

    Returns:
        int16 array ``(#edges, z, x, y)``: 1 where voxel and neighbour have the same ID > 0.
    """
    seg = np.asarray(seg)
    node1, node2, index = affinity_edges(seg.shape, nhood)
    flat = seg.ravel()
    n_edges = len(NHOOD) if nhood is None else len(nhood)
    aff = np.zeros(n_edges * seg.size, np.int16)
    aff[index] = (flat[node1] == flat[node2]) & (flat[node1] > 0)
    return aff.reshape((n_edges,) + seg.shape)


def affgraph_to_seg(aff, nhood=None, size_thresh=1):
    """Connected components of an affinity graph.

    Args:
        aff: Affinity graph ``(#edges, z, x, y)`` (non-zero = connected).
        nhood: Edge offsets; default :data:`NHOOD`.
        size_thresh: Components of at most this many voxels become background (0); with the
            default 1 isolated voxels (background included) are 0.

    Returns:
        int32 array ``(z, x, y)`` of component IDs ``1 .. n`` (in order of first appearance), 0 =
        background.
    """
    aff = np.asarray(aff)
    shape = aff.shape[1:]
    n_vox = int(np.prod(shape))
    node1, node2, index = affinity_edges(shape, nhood)
    on = aff.ravel()[index] != 0
    graph = coo_matrix((np.ones(int(on.sum()), np.int8), (node1[on], node2[on])), shape=(n_vox, n_vox))
    _, components = connected_components(graph, directed=False)
    sizes = np.bincount(components)
    kept = sizes[components] > size_thresh
    _, first = np.unique(components[kept], return_index=True)
    new_id = np.zeros(len(sizes), np.int32)
    new_id[components[kept][np.sort(first)]] = np.arange(1, len(first) + 1, dtype=np.int32)
    return np.where(kept, new_id[components], 0).astype(np.int32).reshape(shape)


def make_affinities(labels, nhood=None, size_thresh=1):
    """Affinity graphs and relabelled segmentations of a label batch (what ``CNNData`` returns for
    the ``'affinity'`` / ``'malis'`` targets).

    Args:
        labels: Object IDs ``(bs, z, x, y)``.
        nhood: Edge offsets; default :data:`NHOOD` (3 edges along z, x, y).
        size_thresh: See :func:`affgraph_to_seg`.

    Returns:
        ``(aff, seg)``: int16 ``(bs, #edges, z, x, y)`` and int32 ``(bs, z, x, y)``.

    Raises:
        ValueError: ``labels`` is not a batch of 3D volumes.
    """
    labels = np.asarray(labels)
    if labels.ndim != 4:
        raise ValueError('make_affinities needs labels of shape (bs, z, x, y), got %s' % (labels.shape,))
    aff = np.stack([seg_to_affgraph(l, nhood) for l in labels])
    seg = np.stack([affgraph_to_seg(a, nhood, size_thresh) for a in aff])
    return aff, seg
