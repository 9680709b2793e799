"""MALIS pair counts against a brute-force maximin reference, the malis target, and the affinity
helpers of the data side."""
import itertools

import numpy as np
import pytest
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from elektronn.net import losses, malis
from elektronn.net.convnet import MixedConvNN
from elektronn.training import affinities


def brute_force_counts(n, node1, node2, weights, labels, kinds=('same', 'different')):
    """For every labelled voxel pair (of the given kinds), find its maximin edge by thresholding: the
    pair is first connected by the edges of weight >= t at t = its maximin value, which (weights
    distinct) is the weight of exactly one edge."""
    thresholds = np.unique(weights)[::-1]
    components = []
    for t in thresholds:
        keep = weights >= t
        graph = coo_matrix((np.ones(keep.sum()), (node1[keep], node2[keep])), shape=(n, n))
        components.append(connected_components(graph, directed=False)[1])
    components = np.array(components)
    same, different = np.zeros(len(weights), np.int64), np.zeros(len(weights), np.int64)
    for u, v in itertools.combinations(range(n), 2):
        if labels[u] == 0 or labels[v] == 0 or ('same' if labels[u] == labels[v] else 'different') not in kinds:
            continue
        level = np.flatnonzero(components[:, u] == components[:, v])[0]
        edge = np.flatnonzero(weights == thresholds[level])
        assert len(edge) == 1, 'the maximin edge of this pair is not unique'
        (same if labels[u] == labels[v] else different)[edge] += 1
    return same, different


@pytest.mark.parametrize('shape', [(2, 3, 4), (1, 4, 4), (3, 3, 3)])
def test_maximin_pair_counts_match_brute_force(shape):
    rng = np.random.RandomState(sum(shape))
    n = int(np.prod(shape))
    node1, node2, _ = malis.affinity_edges(shape)
    for _ in range(3):
        weights = rng.rand(len(node1))
        labels = rng.randint(0, 4, n) * 7  # IDs need not be consecutive; 0 is background
        same, different = malis.maximin_pair_counts(n, node1, node2, weights, labels)
        ref_same, ref_different = brute_force_counts(n, node1, node2, weights, labels)
        np.testing.assert_array_equal(same, ref_same)
        np.testing.assert_array_equal(different, ref_different)


@pytest.mark.parametrize('unrestrict_neg', [True, False])
def test_malis_weights_restricted_passes_match_brute_force(unrestrict_neg):
    rng = np.random.RandomState(3)
    seg = affinities.affgraph_to_seg(affinities.seg_to_affgraph(rng.randint(0, 3, (2, 4, 4))), size_thresh=0)
    aff_gt = affinities.seg_to_affgraph(seg)
    pred = rng.rand(*aff_gt.shape)
    pos, neg = malis.malis_weights(pred, aff_gt, seg, unrestrict_neg=unrestrict_neg)
    node1, node2, index = malis.affinity_edges(seg.shape)
    p, g = pred.ravel()[index], aff_gt.ravel()[index]
    ref_pos = brute_force_counts(seg.size, node1, node2, np.minimum(p, g), seg.ravel(), kinds=('same',))[0]
    ref_neg = brute_force_counts(seg.size, node1, node2, p if unrestrict_neg else np.maximum(p, g), seg.ravel(),
                                 kinds=('different',))[1]
    np.testing.assert_array_equal(pos.ravel()[index], ref_pos)
    np.testing.assert_array_equal(neg.ravel()[index], ref_neg)
    missing = np.ones(pos.size, bool)
    missing[index] = False
    assert not pos.ravel()[missing].any() and not neg.ravel()[missing].any()  # edges leaving the volume
    # every same-object pair and every pair of different objects is counted exactly once
    sizes = np.bincount(seg.ravel())[1:]
    assert pos.sum() == (sizes * (sizes - 1) // 2).sum()
    assert neg.sum() == (sizes.sum() ** 2 - (sizes ** 2).sum()) // 2


def test_malis_counts_are_fast_enough_for_training_patches():
    rng = np.random.RandomState(0)
    seg = rng.randint(0, 20, (8, 24, 24))
    pred = rng.rand(3, 8, 24, 24)
    pos, neg = malis.malis_weights(pred, affinities.seg_to_affgraph(seg), seg)
    assert pos.shape == neg.shape == pred.shape and pos.sum() > 0 and neg.sum() > 0


def test_seg_to_affgraph_and_back():
    seg = np.array([[[1, 1, 0],
                     [2, 2, 2],
                     [3, 0, 3]]])  # (z=1, x=3, y=3)
    aff = affinities.seg_to_affgraph(seg)
    assert aff.dtype == np.int16 and aff.shape == (3, 1, 3, 3)
    assert not aff[0].any()  # z has one slice: no z edges
    np.testing.assert_array_equal(aff[1, 0], [[0, 0, 0], [0, 0, 0], [0, 0, 0]])  # x neighbours never share IDs
    np.testing.assert_array_equal(aff[2, 0], [[1, 0, 0], [1, 1, 0], [0, 0, 0]])
    relabelled = affinities.affgraph_to_seg(aff)
    # the two voxels of ID 3 are not connected, isolated voxels fall below size_thresh=1
    np.testing.assert_array_equal(relabelled[0], [[1, 1, 0], [2, 2, 2], [0, 0, 0]])
    loop = np.zeros_like(aff)
    for e, offset in enumerate(np.eye(3, dtype=int)):
        for p in np.ndindex(*seg.shape):
            q = tuple(np.add(p, offset))
            if all(c < s for c, s in zip(q, seg.shape)):
                loop[(e,) + p] = seg[p] == seg[q] and seg[p] > 0
    np.testing.assert_array_equal(aff, loop)


def test_make_affinities_batches():
    labels = np.random.RandomState(1).randint(0, 3, (2, 3, 4, 4)).astype(np.int16)
    aff, seg = affinities.make_affinities(labels)
    assert aff.shape == (2, 3, 3, 4, 4) and aff.dtype == np.int16
    assert seg.shape == (2, 3, 4, 4) and seg.dtype == np.int32
    for b in range(2):
        np.testing.assert_array_equal(aff[b], affinities.seg_to_affgraph(labels[b]))
        np.testing.assert_array_equal(affinities.seg_to_affgraph(seg[b]), aff[b])  # same connectivity
    with pytest.raises(ValueError, match=r'\(bs, z, x, y\)'):
        affinities.make_affinities(labels[0])


def malis_net(**kw):
    cnn = MixedConvNN((4, 8, 8), input_depth=1)
    cnn.addConvLayer(4, (2, 3, 3), pool_shape=1, activation_func='tanh')
    cnn.addConvLayer(2, 1, pool_shape=1, activation_func='linear', is_last_layer=True, affinity='malis')
    cnn.compileOutputFunctions(target='malis', **kw)
    return cnn


def test_malis_target_loss_stats_and_training():
    rng = np.random.RandomState(2)
    cnn = malis_net()
    assert cnn._aux_names == ['seg_gt']
    data = rng.rand(2, 4, 1, 8, 8).astype(np.float32)
    aff, seg = affinities.make_affinities(rng.randint(0, 3, (2, 3, 6, 6)))
    prob = cnn.class_probabilities(data).astype(np.float64).reshape(2, 3, 2, 3, 6, 6)
    pos = np.zeros(aff.shape, np.int64)
    neg = np.zeros(aff.shape, np.int64)
    for b in range(2):
        pos[b], neg[b] = malis.malis_weights(prob[b, :, 1], aff[b], seg[b])
    ref = (-(pos * np.log(prob[:, :, 1] + 1e-6) + neg * np.log(prob[:, :, 0] + 1e-6))).sum() / (pos.sum() + neg.sum())
    loss, error, prediction = cnn.get_error(data, aff, seg)
    assert loss == pytest.approx(ref, rel=1e-5)
    assert prediction.shape == aff.shape and 0 <= error <= 1
    stats = cnn.malis_stats(data, aff, seg)
    nll, n_pos, n_neg, n_tot, splits, merges, rand_index, pos_count, neg_count = stats
    assert nll == pytest.approx(ref, rel=1e-5)
    assert (n_pos, n_neg, n_tot) == (pos.sum(), neg.sum(), pos.sum() + neg.sum())
    assert splits == (pos * (prob[:, :, 1] < 0.5)).sum() and merges == (neg * (prob[:, :, 1] > 0.5)).sum()
    assert rand_index == pytest.approx((splits + merges) / n_tot, rel=1e-5)
    np.testing.assert_array_equal(pos_count, pos)
    for _ in range(5):
        cnn.trainingStep(data, aff, seg, mode='SGD')
    assert cnn.get_loss(data, aff, seg)[0] < loss


def test_malis_class_weights_and_checks():
    cnn = malis_net(use_class_weights=True)
    assert cnn._aux_names == ['seg_gt', 'class_weights']
    rng = np.random.RandomState(4)
    data = rng.rand(1, 4, 1, 8, 8).astype(np.float32)
    aff, seg = affinities.make_affinities(rng.randint(0, 3, (1, 3, 6, 6)))
    plain = cnn.get_loss(data, aff, seg, np.ones(2, np.float32))[0]
    double = cnn.get_loss(data, aff, class_weights=np.full(2, 2.0, np.float32), seg_gt=seg)[0]
    assert double == pytest.approx(2 * plain, rel=1e-5)
    with pytest.raises(ValueError, match=r'seg_gt must have shape \(1, 3, 6, 6\)'):
        cnn.get_loss(data, aff, seg[0], np.ones(2))
    other = MixedConvNN((4, 8, 8), input_depth=1)
    other.addConvLayer(3, 1, pool_shape=1, is_last_layer=True, affinity='malis')
    with pytest.raises(ValueError, match="needs 2 classes per edge"):
        other.compileOutputFunctions(target='malis')


def test_malis_loss_gradient():
    rng = np.random.RandomState(6)
    lin = torch.from_numpy(rng.randn(1, 6, 2, 3, 3)).requires_grad_()
    aff, seg = affinities.make_affinities(rng.randint(0, 3, (1, 2, 3, 3)))
    labels, seg = torch.from_numpy(aff.astype(np.int64)), torch.from_numpy(seg.astype(np.int64))
    cw = torch.tensor([0.8, 1.2], dtype=torch.float64)
    # the pair counts are constant for perturbations that keep the order of the affinities
    assert torch.autograd.gradcheck(lambda z: losses.malis_loss(z, labels, seg, cw)[0], (lin,), eps=1e-7,
                                    fast_mode=True)
