"""MALIS pair counts: how many voxel pairs each edge of an affinity graph is the maximin edge of.

An affinity graph over a volume ``(z, x, y)`` has one edge per voxel and neighbourhood offset:
edge ``e`` at voxel ``p`` joins ``p`` and ``p + nhood[e]`` (with the default ``nhood`` = identity,
the three edges point to the next voxel along z, x and y; edges leaving the volume do not exist).
Graph arrays have the shape ``(#edges, z, x, y)``.

For two voxels, the *maximin* edge is the weakest edge on the path between them whose weakest
edge is strongest (the bottleneck of the maximum spanning tree path). MALIS (Turaga et al.,
NIPS 2009) trains the affinity of exactly these edges: up where the two voxels belong to the
same object, down where they belong to different objects. :func:`malis_weights` counts, for
every edge, the pairs whose maximin edge it is:

* ``pos_counts``: pairs of the same object (ID > 0), on the graph with weights
  ``min(prediction, ground truth)`` (paths may not leave the object);
* ``neg_counts``: pairs of different objects (both IDs > 0), on the graph with weights
  ``prediction`` (``unrestrict_neg=True``, the original's default) or ``max(prediction, ground truth)``.

Voxels with ID 0 (background) are not counted. This is our own implementation: the maximum
spanning tree comes from :func:`scipy.sparse.csgraph.minimum_spanning_tree`, a short loop over its
edges (Kruskal's merge order) builds the merge tree, and the pair counts of all merges are then
computed at once with NumPy from the leaf order of that tree.
"""
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import minimum_spanning_tree

__all__ = ['NHOOD', 'affinity_edges', 'maximin_pair_counts', 'malis_weights']

#: The neighbourhood of the original's affinity targets: one edge along each of z, x, y.
NHOOD = np.eye(3, dtype=np.int64)


def _check_nhood(nhood, n_dim):
    nhood = NHOOD if nhood is None else np.asarray(nhood)
    if nhood.ndim != 2 or nhood.shape[1] != n_dim or not np.issubdtype(nhood.dtype, np.integer):
        raise ValueError('nhood must be an integer array (#edges, %i) of voxel offsets, got %r'
                         % (n_dim, nhood.tolist() if hasattr(nhood, 'tolist') else nhood))
    return nhood.astype(np.int64)


def affinity_edges(shape, nhood=None):
    """The edges of an affinity graph over a volume of ``shape``.

    Args:
        shape: Spatial shape ``(z, x, y)`` (any number of dimensions).
        nhood: Offsets ``(#edges, n_dim)``; default :data:`NHOOD`.

    Returns:
        ``(node1, node2, index)``: flat voxel indices of the two ends of every existing edge and
        the flat index of that edge in a graph array ``(#edges, *shape)``.
    """
    shape = tuple(int(s) for s in shape)
    nhood = _check_nhood(nhood, len(shape))
    voxels = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)
    n_vox = voxels.size
    node1, node2, index = [], [], []
    for e, offset in enumerate(nhood):
        src = tuple(slice(max(0, -o), s - max(0, o)) for o, s in zip(offset, shape))
        dst = tuple(slice(max(0, o), s - max(0, -o)) for o, s in zip(offset, shape))
        start = voxels[src].ravel()
        node1.append(start)
        node2.append(voxels[dst].ravel())
        index.append(start + e * n_vox)
    return np.concatenate(node1), np.concatenate(node2), np.concatenate(index)


def _ragged_positions(starts, lengths):
    """``concatenate([arange(s, s + l) for s, l in zip(starts, lengths)])`` and the segment of each entry."""
    total = int(lengths.sum())
    segment = np.repeat(np.arange(len(lengths)), lengths)
    offsets = np.cumsum(lengths) - lengths
    return np.arange(total) - np.repeat(offsets - starts, lengths), segment


def maximin_pair_counts(n_nodes, node1, node2, weights, labels):
    """Per edge, the labelled voxel pairs whose maximin edge it is.

    Args:
        n_nodes: Number of voxels.
        node1, node2: Edge ends (flat voxel indices).
        weights: Edge weights; stronger edges merge first (ties: the earlier edge first).
        labels: Object ID per voxel (``0`` = background, not counted).

    Returns:
        ``(same, different)``: int64 arrays with one entry per edge: the number of voxel pairs of
        the same object / of two different objects whose maximin edge it is (zero for edges
        outside the maximum spanning tree).
    """
    node1 = np.asarray(node1, dtype=np.int64)
    node2 = np.asarray(node2, dtype=np.int64)
    n_edges = len(node1)
    same = np.zeros(n_edges, np.int64)
    different = np.zeros(n_edges, np.int64)
    if n_edges == 0 or n_nodes < 2:
        return same, different
    # Kruskal's order as distinct positive ranks: the spanning tree of the ranks is then unique and
    # scipy's minimum spanning tree of (rank + 1) is the maximum spanning tree of the weights.
    order = np.argsort(-np.asarray(weights, dtype=np.float64), kind='stable')
    rank = np.empty(n_edges, np.int64)
    rank[order] = np.arange(n_edges)
    graph = coo_matrix(((rank + 1).astype(np.float64), (node1, node2)), shape=(n_nodes, n_nodes)).tocsr()
    tree_ranks = np.sort(minimum_spanning_tree(graph).data).astype(np.int64) - 1
    merge_edges = order[tree_ranks]

    # Kruskal's merges over the tree edges: each joins two components whose voxels are kept as
    # linked lists, concatenated left + right, so every component is a contiguous run of the final
    # voxel order.
    parent = list(range(n_nodes))
    head = list(range(n_nodes))
    tail = list(range(n_nodes))
    size = [1] * n_nodes
    follow = [-1] * n_nodes
    n_merges = len(merge_edges)
    left_head = [0] * n_merges
    right_head = [0] * n_merges
    left_size = [0] * n_merges
    right_size = [0] * n_merges
    for t, (u, v) in enumerate(zip(node1[merge_edges].tolist(), node2[merge_edges].tolist())):
        while parent[u] != u:
            parent[u] = parent[parent[u]]
            u = parent[u]
        while parent[v] != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        left_head[t], right_head[t], left_size[t], right_size[t] = head[u], head[v], size[u], size[v]
        follow[tail[u]] = head[v]
        root, child = (v, u) if size[u] < size[v] else (u, v)
        parent[child] = root
        head[root], tail[root], size[root] = head[u], tail[v], size[u] + size[v]

    voxel_order = []
    for r in range(n_nodes):
        if parent[r] == r:
            i = head[r]
            while i != -1:
                voxel_order.append(i)
                i = follow[i]
    voxel_order = np.asarray(voxel_order, dtype=np.int64)
    position = np.empty(n_nodes, np.int64)
    position[voxel_order] = np.arange(n_nodes)

    # Both sides of every merge as [start, start + size) runs of the voxel order.
    left_start = position[np.asarray(left_head, dtype=np.int64)]
    left_size = np.asarray(left_size, dtype=np.int64)
    right_start = position[np.asarray(right_head, dtype=np.int64)]
    right_size = np.asarray(right_size, dtype=np.int64)

    labels = np.asarray(labels).ravel()
    ids = np.unique(labels, return_inverse=True)[1].reshape(-1).astype(np.int64) + 1
    ids[labels == 0] = 0  # consecutive IDs from 1; 0 stays background
    ordered_ids = ids[voxel_order]
    counted = ordered_ids > 0
    counted_before = np.concatenate([[0], np.cumsum(counted)])
    n_left = counted_before[left_start + left_size] - counted_before[left_start]
    n_right = counted_before[right_start + right_size] - counted_before[right_start]

    # Same-object pairs: for every voxel of the smaller side, count its ID on the other side; the
    # runs of one ID are found by binary search in the (ID, position)-sorted keys.
    small_left = left_size <= right_size
    s_start = np.where(small_left, left_start, right_start)
    s_size = np.where(small_left, left_size, right_size)
    o_start = np.where(small_left, right_start, left_start)
    o_end = o_start + np.where(small_left, right_size, left_size)
    pos, merge = _ragged_positions(s_start, s_size)
    voxel_ids = ordered_ids[pos]
    keep = voxel_ids > 0
    voxel_ids, merge = voxel_ids[keep], merge[keep]
    stride = n_nodes + 1
    keys = np.sort(ordered_ids[counted] * stride + np.flatnonzero(counted))
    base = voxel_ids * stride
    found = np.searchsorted(keys, base + o_end[merge]) - np.searchsorted(keys, base + o_start[merge])
    same_per_merge = np.bincount(merge, weights=found, minlength=n_merges).astype(np.int64)
    same[merge_edges] = same_per_merge
    different[merge_edges] = n_left * n_right - same_per_merge
    return same, different


def malis_weights(affinity_pred, affinity_gt, seg_gt, nhood=None, unrestrict_neg=True):
    """MALIS pair counts of every edge of a predicted affinity graph.

    Args:
        affinity_pred: Predicted connection probabilities ``(#edges, z, x, y)``.
        affinity_gt: Ground-truth affinity graph, same shape, 1 = connected, 0 = not.
        seg_gt: Ground-truth object IDs ``(z, x, y)``; 0 = background (not counted).
        nhood: Edge offsets ``(#edges, 3)``; default :data:`NHOOD`.
        unrestrict_neg: Count the different-object pairs on the predicted graph itself (``True``)
            or on ``max(prediction, ground truth)``.

    Returns:
        ``(pos_counts, neg_counts)``: int64 arrays shaped like ``affinity_pred``.
    """
    pred = np.asarray(affinity_pred, dtype=np.float64)
    gt = np.asarray(affinity_gt, dtype=np.float64)
    seg = np.asarray(seg_gt)
    if pred.shape != gt.shape or pred.shape[1:] != seg.shape:
        raise ValueError('malis_weights needs affinity_pred and affinity_gt of shape (#edges, *seg_gt.shape); got '
                         '%s, %s and seg_gt %s' % (pred.shape, gt.shape, seg.shape))
    node1, node2, index = affinity_edges(seg.shape, nhood)
    if len(_check_nhood(nhood, seg.ndim)) != pred.shape[0]:
        raise ValueError('affinity_pred has %i edge channels but nhood has %i edges'
                         % (pred.shape[0], len(_check_nhood(nhood, seg.ndim))))
    pred_e, gt_e = pred.ravel()[index], gt.ravel()[index]
    pos = np.zeros(pred.size, np.int64)
    neg = np.zeros(pred.size, np.int64)
    pos[index] = maximin_pair_counts(seg.size, node1, node2, np.minimum(pred_e, gt_e), seg)[0]
    neg_weights = pred_e if unrestrict_neg else np.maximum(pred_e, gt_e)
    neg[index] = maximin_pair_counts(seg.size, node1, node2, neg_weights, seg)[1]
    return pos.reshape(pred.shape), neg.reshape(pred.shape)
