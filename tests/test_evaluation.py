"""elektronn.evaluation: segmentation metrics against scikit-image and brute force, boundary scores, worst errors."""
import time

import numpy as np
import pytest
from skimage.metrics import adapted_rand_error as sk_adapted_rand_error
from skimage.metrics import variation_of_information as sk_variation_of_information

from elektronn.evaluation import (SCORE_KEYS, Contingency, NothingToScore, adapted_rand_error, best_boundary_prf,
                                  boundary_prf, contingency, evaluate, format_table,
                                  gt_segmentation_from_boundaries, isbi_pixel_error, per_section, rand_scores,
                                  segmentation_scores, variation_of_information, worst_errors)


# ----------------------------------------------------------------------------------------------------
# brute-force references
# ----------------------------------------------------------------------------------------------------
def brute_rand(seg, gt, ignore_gt=(0,)):
    """(fscore, precision, recall) by explicit comparison of every ordered pair of different voxels."""
    keep = ~np.isin(gt, ignore_gt)
    s, g = seg[keep], gt[keep]
    other = ~np.eye(s.size, dtype=bool)
    same_s = (s[:, None] == s[None, :]) & other
    same_g = (g[:, None] == g[None, :]) & other
    both = np.count_nonzero(same_s & same_g)
    n_s, n_g = np.count_nonzero(same_s), np.count_nonzero(same_g)
    return 2.0 * both / (n_s + n_g), both / n_s, both / n_g


def brute_voi(seg, gt, ignore_gt=(0,)):
    """(H(seg|gt), H(gt|seg)) in bits by direct entropy sums over the label values."""
    keep = ~np.isin(gt, ignore_gt)
    s, g = seg[keep].tolist(), gt[keep].tolist()
    n = float(len(s))

    def entropy(values):
        return -sum(c / n * np.log2(c / n) for c in (values.count(v) for v in set(values)))

    joint = entropy(list(zip(s, g)))
    return joint - entropy(g), joint - entropy(s)


def random_pair(rng, shape=(2, 4, 4), n_seg=5, n_gt=4, dtype=np.uint32):
    return rng.integers(0, n_seg, shape).astype(dtype), rng.integers(0, n_gt, shape).astype(dtype)


def two_objects():
    """gt with two objects (1: top half, 2: bottom half) of a 2x4x4 volume and a band of background 0."""
    gt = np.ones((2, 4, 4), np.uint32)
    gt[:, 2:] = 2
    gt[:, :, 0] = 0
    return gt


# ----------------------------------------------------------------------------------------------------
# contingency
# ----------------------------------------------------------------------------------------------------
def test_contingency_counts_pairs_and_ignores_gt_background():
    seg = np.array([[5, 5, 7, 7, 7, 9]], np.uint64)
    gt = np.array([[1, 1, 1, 2, 0, 0]], np.uint64)
    c = contingency(seg, gt)
    assert isinstance(c, Contingency)
    assert c.total == 4
    assert c.seg_labels.tolist() == [5, 7] and c.gt_labels.tolist() == [1, 2]
    assert c.table.toarray().tolist() == [[2, 0], [1, 1]]
    assert c.seg_sizes.tolist() == [2, 2] and c.gt_sizes.tolist() == [3, 1]
    everything = contingency(seg, gt, ignore_gt=())
    assert everything.total == 6 and everything.gt_labels.tolist() == [0, 1, 2]
    no_seven = contingency(seg, gt, ignore_seg=(7,))
    assert no_seven.total == 2 and no_seven.seg_labels.tolist() == [5]


@pytest.mark.parametrize('offset,dtype', [(0, np.uint32), (2 ** 40, np.uint64), (-50, np.int64)])
def test_contingency_matches_pair_counting_for_any_label_values(offset, dtype):
    rng = np.random.default_rng(3)
    seg, gt = random_pair(rng, (3, 20, 20), 40, 30, np.int64)
    seg, gt = (seg * 7919 + offset).astype(dtype), (gt + 1).astype(dtype)
    c = contingency(seg, gt, ignore_gt=())
    pairs, counts = np.unique(np.stack([seg.ravel(), gt.ravel()]), axis=1, return_counts=True)
    got = {(int(c.seg_labels[r]), int(c.gt_labels[k])): int(n) for r, k, n in zip(c.rows, c.cols, c.counts)}
    assert got == {(int(a), int(b)): int(n) for (a, b), n in zip(pairs.T, counts)}


def test_contingency_sorting_path_for_many_labels_is_fast():
    """Many labels (a table too large to count densely) on a 512x512x30 volume of uint64 labels."""
    rng = np.random.default_rng(0)
    gt = (np.arange(30 * 512 * 512, dtype=np.uint64).reshape(30, 512, 512) // 16) % 50000
    seg = gt // 2 * np.uint64(2 ** 33) + rng.integers(0, 2, gt.shape).astype(np.uint64)
    start = time.perf_counter()
    scores = segmentation_scores(seg, gt)
    elapsed = time.perf_counter() - start
    assert scores['voi_merge'] > 0 and scores['voi_split'] > 0
    assert elapsed < 15, 'segmentation_scores took %.1f s on a 512x512x30 volume' % elapsed


# ----------------------------------------------------------------------------------------------------
# Rand scores
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('seed', range(4))
def test_adapted_rand_error_matches_skimage(seed):
    rng = np.random.default_rng(seed)
    seg, gt = random_pair(rng, (4, 9, 11), 6 + seed, 5, np.uint64)
    ours = adapted_rand_error(seg, gt)
    are, sk_second, sk_third = sk_adapted_rand_error(gt, seg, ignore_labels=(0,))
    assert ours['are'] == pytest.approx(are, abs=1e-12)
    # scikit-image returns (are, recall, precision) in the naming used here (scikit-image issue #6485)
    assert ours['recall'] == pytest.approx(sk_second, abs=1e-12)
    assert ours['precision'] == pytest.approx(sk_third, abs=1e-12)


def test_adapted_rand_error_matches_skimage_on_hand_made_labelings():
    gt = two_objects()
    split = gt.copy()
    split[0][gt[0] == 1] = 3
    merged = np.where(gt == 2, 1, gt)
    for seg in (gt, split, merged, np.zeros_like(gt)):
        assert adapted_rand_error(seg, gt)['are'] == pytest.approx(sk_adapted_rand_error(gt, seg)[0], abs=1e-12)


@pytest.mark.parametrize('seed', range(5))
def test_rand_scores_match_brute_force_pair_counting(seed):
    rng = np.random.default_rng(seed)
    seg, gt = random_pair(rng)
    fscore, precision, recall = brute_rand(seg, gt)
    r = rand_scores(seg, gt)
    assert r['rand_fscore'] == pytest.approx(fscore, abs=1e-12)
    assert r['rand_merge'] == pytest.approx(precision, abs=1e-12)
    assert r['rand_split'] == pytest.approx(recall, abs=1e-12)
    assert r['rand_error'] == pytest.approx(1 - fscore, abs=1e-12)
    a = adapted_rand_error(seg, gt)
    assert (a['are'], a['precision'], a['recall']) == (r['rand_error'], r['rand_merge'], r['rand_split'])


# ----------------------------------------------------------------------------------------------------
# variation of information
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('seed', range(4))
def test_voi_matches_skimage_without_ignored_labels(seed):
    rng = np.random.default_rng(10 + seed)
    seg, gt = random_pair(rng, (3, 10, 10), 7, 4 + seed)
    v = variation_of_information(seg, gt, ignore_gt=())
    split, merge = sk_variation_of_information(gt, seg)  # [H(seg|gt), H(gt|seg)]
    assert v['split'] == pytest.approx(split, abs=1e-10)
    assert v['merge'] == pytest.approx(merge, abs=1e-10)
    assert v['total'] == pytest.approx(split + merge, abs=1e-10)
    assert v['split'] != pytest.approx(v['merge'])  # the order matters in this test


@pytest.mark.parametrize('seed', range(3))
def test_voi_with_background_matches_skimage_and_brute_force(seed):
    rng = np.random.default_rng(20 + seed)
    seg, gt = random_pair(rng)
    v = variation_of_information(seg, gt)
    split, merge = brute_voi(seg, gt)
    assert (v['split'], v['merge']) == (pytest.approx(split, abs=1e-10), pytest.approx(merge, abs=1e-10))
    assert v['split'] == pytest.approx(sk_variation_of_information(gt, seg, ignore_labels=[0])[0], abs=1e-10)


def test_voi_ignore_seg_drops_those_voxels():
    rng = np.random.default_rng(5)
    seg, gt = random_pair(rng, (2, 6, 6))
    keep = seg != 2
    v = variation_of_information(seg, gt, ignore_seg=(2,), ignore_gt=())
    split, merge = brute_voi(seg[keep], gt[keep], ignore_gt=())
    assert (v['split'], v['merge']) == (pytest.approx(split), pytest.approx(merge))
    assert v['split'] != pytest.approx(variation_of_information(seg, gt, ignore_gt=())['split'])


# ----------------------------------------------------------------------------------------------------
# hand-made cases
# ----------------------------------------------------------------------------------------------------
def test_perfect_segmentation_and_any_relabelling_score_zero_error():
    gt = two_objects()
    relabelled = np.choose(gt, [0, 2 ** 40, 17]).astype(np.uint64)
    for seg in (gt, relabelled):
        s = segmentation_scores(seg, gt)
        assert s['rand_error'] == 0 and s['adapted_rand_error'] == 0
        assert s['rand_fscore'] == s['rand_split'] == s['rand_merge'] == 1
        assert s['voi_split'] == s['voi_merge'] == s['voi'] == 0


def test_one_object_split_in_two():
    gt = two_objects()
    seg = gt.copy()
    seg[1][gt[1] == 1] = 3  # object 1 cut into its two sections: 6 + 6 voxels
    s = segmentation_scores(seg, gt)
    assert s['voi_split'] == pytest.approx(12 / 24 * 1.0)  # object 1 holds half the voxels, 1 bit each
    assert s['voi_merge'] == 0
    assert s['rand_merge'] == 1 and s['rand_split'] < 1
    assert s['rand_split'] == pytest.approx(brute_rand(seg, gt)[2])


def test_two_objects_merged():
    gt = two_objects()
    seg = np.where(gt > 0, 4, 9).astype(np.uint32)
    s = segmentation_scores(seg, gt)
    assert s['voi_merge'] == pytest.approx(1.0)  # two equally large objects in one segment
    assert s['voi_split'] == 0
    assert s['rand_split'] == 1 and s['rand_merge'] < 1


def test_gt_background_voxels_do_not_change_the_scores():
    rng = np.random.default_rng(7)
    gt = two_objects()
    seg = rng.integers(1, 4, gt.shape).astype(np.uint32)
    reference = segmentation_scores(seg, gt)
    for fill in (0, 1, 2, 99):
        other = seg.copy()
        other[gt == 0] = fill if fill != 99 else rng.integers(0, 50, np.count_nonzero(gt == 0))
        assert segmentation_scores(other, gt) == reference


def test_seg_label_zero_is_an_ordinary_segment():
    gt = two_objects()
    s = segmentation_scores(np.zeros_like(gt), gt)
    assert s['voi_merge'] == pytest.approx(1.0) and s['voi_split'] == 0
    assert s['rand_split'] == 1


def test_wrong_inputs_raise_value_errors_naming_the_parameter():
    gt = two_objects()
    with pytest.raises(ValueError, match=r'seg has shape \(2, 4, 3\) but gt has shape \(2, 4, 4\): both must be '
                                         r'the same \(z, x, y\) volume'):
        segmentation_scores(gt[:, :, :3], gt)
    with pytest.raises(ValueError, match='seg must hold integer labels, got float32 .a probability map'):
        adapted_rand_error(gt.astype(np.float32), gt)
    with pytest.raises(ValueError, match='gt must hold integer labels, got bool'):
        variation_of_information(gt, gt > 0)
    with pytest.raises(NothingToScore, match='no voxel is left'):
        rand_scores(gt, np.zeros_like(gt))
    with pytest.raises(ValueError, match='ignore_gt must be a sequence of integer labels'):
        contingency(gt, gt, ignore_gt=['background'])


# ----------------------------------------------------------------------------------------------------
# per-section scores
# ----------------------------------------------------------------------------------------------------
def test_two_d_scores_average_sections_equally_and_skip_empty_ones():
    rng = np.random.default_rng(11)
    seg, gt = random_pair(rng, (3, 6, 6), 4, 3)
    gt[1] = 0  # nothing to score in section 1
    gt[2, :5] = 0  # a small section: weighted as much as section 0
    s = segmentation_scores(seg, gt, two_d=True)
    assert s['skipped_sections'] == 1
    assert [sec['z'] for sec in s['sections']] == [0, 2]
    by_hand = [segmentation_scores(seg[z], gt[z]) for z in (0, 2)]
    for key in SCORE_KEYS:
        assert s[key] == pytest.approx((by_hand[0][key] + by_hand[1][key]) / 2)
        assert [sec[key] for sec in s['sections']] == [by_hand[0][key], by_hand[1][key]]
    assert s['voi'] != pytest.approx(segmentation_scores(seg, gt)['voi'])


def test_two_d_ignores_label_identity_across_sections():
    gt = np.stack([np.full((4, 4), 1), np.full((4, 4), 2)]).astype(np.uint32)
    seg = np.full(gt.shape, 5, np.uint32)  # one 3D segment over two gt objects, correct in each section
    assert segmentation_scores(seg, gt)['voi_merge'] == pytest.approx(1.0)
    flat = segmentation_scores(seg, gt, two_d=True)
    assert flat['voi'] == 0 and flat['rand_error'] == 0
    with pytest.raises(NothingToScore):
        segmentation_scores(seg, np.zeros_like(gt), two_d=True)


def test_per_section_works_with_any_metric():
    rng = np.random.default_rng(12)
    prob, gt = rng.random((3, 5, 5)), rng.random((3, 5, 5)) > 0.5
    r = per_section(boundary_prf, prob, gt, threshold=0.3)
    assert r['skipped_sections'] == 0 and len(r['sections']) == 3
    assert r['f1'] == pytest.approx(np.mean([boundary_prf(prob[z], gt[z], 0.3)['f1'] for z in range(3)]))


# ----------------------------------------------------------------------------------------------------
# boundary pixel scores
# ----------------------------------------------------------------------------------------------------
def numpy_prf(prob, gt, threshold, mask=None):
    mask = np.ones(gt.shape, bool) if mask is None else mask
    pred, truth = (prob >= threshold)[mask], (gt == 1)[mask]
    tp = np.sum(pred & truth)
    return dict(precision=tp / pred.sum(), recall=tp / truth.sum(), f1=2 * tp / (pred.sum() + truth.sum()),
                error=np.mean(pred != truth))


@pytest.mark.parametrize('threshold', [0.2, 0.5, 0.8])
def test_boundary_prf_matches_numpy_counts(threshold):
    rng = np.random.default_rng(13)
    gt = (rng.random((3, 12, 12)) < 0.3).astype(np.uint8)
    prob = np.clip(gt * 0.5 + rng.random(gt.shape) * 0.6, 0, 1).astype(np.float32)
    mask = rng.random(gt.shape) < 0.7
    for m in (None, mask):
        r = boundary_prf(prob, gt, threshold, mask=m)
        expected = numpy_prf(prob, gt, threshold, m)
        assert r['threshold'] == threshold
        for key, value in expected.items():
            assert r[key] == pytest.approx(value, abs=1e-12)
    as_uint8 = np.round(prob * 255).astype(np.uint8)
    r8 = boundary_prf(as_uint8, gt, threshold)
    assert r8['f1'] == pytest.approx(numpy_prf(as_uint8 / 255.0, gt, threshold)['f1'], abs=1e-12)


def test_boundary_prf_conventions_and_errors():
    gt = np.zeros((2, 3, 3), np.uint8)
    gt[:, 1] = 1
    r = boundary_prf(np.zeros(gt.shape, np.float32), gt)  # nothing predicted
    assert r['precision'] == 1 and r['recall'] == 0 and r['f1'] == 0
    assert r['error'] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match=r'gt_boundary must be a 0/1 membrane map .* 255 \(a 0/255 image'):
        boundary_prf(np.zeros(gt.shape), gt * 255)
    with pytest.raises(ValueError, match='boundary must hold probabilities .* got uint16'):
        boundary_prf(gt.astype(np.uint16), gt)
    with pytest.raises(ValueError, match='boundary has shape'):
        boundary_prf(np.zeros((2, 3, 4)), gt)


def test_best_boundary_prf_finds_the_best_threshold_exactly():
    rng = np.random.default_rng(14)
    gt = (rng.random((2, 15, 15)) < 0.4).astype(np.uint8)
    prob = np.clip(gt * 0.35 + rng.random(gt.shape) * 0.65, 0, 1)
    best = best_boundary_prf(prob, gt)
    candidates = np.unique(prob)
    f1 = np.array([numpy_prf(prob, gt, t)['f1'] for t in candidates])
    assert best['f1'] == pytest.approx(f1.max(), abs=1e-12)
    assert best['threshold'] == candidates[np.argmax(f1)]
    for key, value in numpy_prf(prob, gt, best['threshold']).items():
        assert best[key] == pytest.approx(value, abs=1e-12)
    curve = best['curve']
    assert curve['thresholds'][0] == 0.05 and curve['thresholds'][-1] == 0.95 and len(curve['f1']) == 19
    for t, p, r, f in zip(curve['thresholds'], curve['precision'], curve['recall'], curve['f1']):
        expected = boundary_prf(prob, gt, t)
        assert (p, r, f) == (pytest.approx(expected['precision']), pytest.approx(expected['recall']),
                             pytest.approx(expected['f1']))


def test_best_boundary_prf_with_given_thresholds_and_uint8_maps():
    rng = np.random.default_rng(15)
    gt = (rng.random((2, 10, 10)) < 0.4).astype(bool)
    prob8 = np.clip(gt * 90 + rng.integers(0, 166, gt.shape), 0, 255).astype(np.uint8)
    exact = best_boundary_prf(prob8, gt)
    levels = np.unique(prob8) / 255.0
    f1 = [boundary_prf(prob8, gt, t)['f1'] for t in levels]
    assert exact['f1'] == pytest.approx(max(f1)) and exact['threshold'] == levels[int(np.argmax(f1))]
    assert exact['f1'] == pytest.approx(best_boundary_prf(prob8 / 255.0, gt)['f1'])
    grid = best_boundary_prf(prob8, gt, thresholds=[0.7, 0.1, 0.4])
    assert grid['curve']['thresholds'] == [0.1, 0.4, 0.7]
    f1_grid = [boundary_prf(prob8, gt, t)['f1'] for t in (0.1, 0.4, 0.7)]
    assert grid['curve']['f1'] == pytest.approx(f1_grid)
    assert grid['threshold'] == (0.1, 0.4, 0.7)[int(np.argmax(f1_grid))]


@pytest.mark.parametrize('as_uint8', [False, True])
def test_isbi_pixel_error_is_one_minus_the_best_interior_fscore(as_uint8):
    """The challenge script's definition, by brute force: interior (non-membrane) pixels positive, a pixel
    predicted interior when 1 - p > t, the F-score maximised over t."""
    rng = np.random.default_rng(17)
    gt = (rng.random((2, 20, 20)) < 0.2).astype(np.uint8)      # ~20 % membrane, as ISBI 2012
    prob = np.clip(gt * 0.4 + rng.random(gt.shape) * 0.6, 0, 1)
    if as_uint8:
        prob = np.round(prob * 255).astype(np.uint8)
    p = prob / 255.0 if as_uint8 else prob
    interior_truth = gt == 0

    def interior_f(t):
        found = (1 - p) > t
        return 2.0 * np.sum(found & interior_truth) / (found.sum() + interior_truth.sum())

    thresholds = np.r_[-1.0, np.unique(1 - p)]                  # "> t" at every level and below all of them
    expected = 1 - max(interior_f(t) for t in thresholds)
    r = isbi_pixel_error(prob, gt)
    assert r['pixel_error'] == pytest.approx(expected, abs=1e-12) and r['f1'] == pytest.approx(1 - expected)
    found = p < r['threshold'] + 1e-12                         # the reported threshold reproduces the F-score
    assert 2.0 * np.sum(found & interior_truth) / (found.sum() + interior_truth.sum()) == pytest.approx(r['f1'])
    # a different number from the misclassification rate, smaller for a majority interior class
    assert r['pixel_error'] < best_boundary_prf(prob, gt)['error']
    # the mask restricts the pixels, as for the other boundary scores
    mask = np.zeros(gt.shape, bool)
    mask[0] = True
    assert isbi_pixel_error(prob, gt, mask=mask) == isbi_pixel_error(prob[:1], gt[:1])


# ----------------------------------------------------------------------------------------------------
# gt from a membrane map
# ----------------------------------------------------------------------------------------------------
def test_gt_segmentation_from_boundaries_labels_components_per_section():
    membrane = np.zeros((2, 4, 5), np.uint8)
    membrane[:, :, 2] = 1  # a vertical membrane: two regions per section
    membrane[1] = [[0, 1, 0, 0, 0],  # section 1: five regions; pixels (0, 0), (1, 1) and (2, 0)
                   [1, 0, 1, 1, 1],  # touch diagonally only (4-connectivity: apart)
                   [0, 1, 0, 0, 0],
                   [0, 1, 0, 0, 0]]
    labels = gt_segmentation_from_boundaries(membrane)
    assert labels.dtype == np.uint32 and labels.shape == membrane.shape
    assert np.all(labels[membrane == 1] == 0) and np.all(labels[membrane == 0] > 0)
    assert np.unique(labels[0]).tolist() == [0, 1, 2]
    assert labels[0, 0, 0] != labels[0, 0, 4]
    assert np.unique(labels[1]).tolist() == [0, 3, 4, 5, 6, 7]  # continues after section 0
    assert len({labels[1, 0, 0], labels[1, 1, 1], labels[1, 2, 0]}) == 3
    three_d = gt_segmentation_from_boundaries(membrane, two_d=False)
    assert three_d[0, 0, 0] == three_d[1, 2, 0]  # connected through the sections
    assert gt_segmentation_from_boundaries(membrane[0]).tolist() == labels[0].tolist()  # one (x, y) image


def test_gt_segmentation_from_boundaries_rejects_non_binary_maps():
    with pytest.raises(ValueError, match='gt_boundary must be a 0/1 membrane map'):
        gt_segmentation_from_boundaries(np.array([[[0, 2], [1, 0]]]))


# ----------------------------------------------------------------------------------------------------
# worst errors, evaluate, table
# ----------------------------------------------------------------------------------------------------
def planted():
    """gt: 4x4 blocks of 8x8 in 6 sections; seg: correct but for a split of object 6 in sections 3-5 (cut
    into halves) and a merge of objects 10 and 11 in all sections."""
    gt = np.kron(np.arange(1, 17).reshape(4, 4), np.ones((8, 8), int)).astype(np.uint32)
    gt = np.repeat(gt[None], 6, axis=0)
    seg = gt + 100
    seg[3:, 8:12, 8:16][gt[3:, 8:12, 8:16] == 6] = 500
    seg[(gt == 10) | (gt == 11)] = 777
    return seg, gt


def test_worst_errors_find_the_planted_split_and_merge():
    seg, gt = planted()
    w = worst_errors(seg, gt, n=3)
    assert [e['label'] for e in w['splits']] == [6]
    split = w['splits'][0]
    assert split['other_labels'] == [106, 500] and split['n_other'] == 2 and split['voxels'] == 6 * 64
    assert split['z'] in (3, 4, 5)
    assert [e['label'] for e in w['merges']] == [777]
    assert sorted(w['merges'][0]['other_labels']) == [10, 11] and w['merges'][0]['voxels'] == 2 * 6 * 64
    scores = segmentation_scores(seg, gt)
    assert split['contribution'] == pytest.approx(scores['voi_split'])
    assert w['merges'][0]['contribution'] == pytest.approx(scores['voi_merge'])
    w2 = worst_errors(seg, gt, n=4, two_d=True)
    assert {e['z'] for e in w2['splits']} == {3, 4, 5} and {e['label'] for e in w2['splits']} == {6}
    assert sum(e['contribution'] for e in w2['splits']) == pytest.approx(
        segmentation_scores(seg, gt, two_d=True)['voi_split'])
    assert len(w2['merges']) == 4 and all(e['label'] == 777 for e in w2['merges'])


def test_evaluate_and_format_table():
    seg, gt = planted()
    rng = np.random.default_rng(16)
    membrane = (rng.random(gt.shape) < 0.2).astype(np.uint8)
    prob = rng.random(gt.shape).astype(np.float32)
    r = evaluate(seg, gt, boundary=prob, gt_boundary=membrane, two_d=True)
    assert r['mode'] == '2d' and r['shape'] == [6, 32, 32]
    assert r['segmentation'] == segmentation_scores(seg, gt, two_d=True)
    assert r['boundary'] == boundary_prf(prob, membrane, 0.5)
    assert r['boundary_best']['f1'] >= r['boundary']['f1']
    assert r['isbi_pixel_error'] == isbi_pixel_error(prob, membrane)
    assert 'boundary' not in evaluate(seg, gt)
    with pytest.raises(ValueError, match='boundary and gt_boundary go together'):
        evaluate(seg, gt, boundary=prob)
    table = format_table(r)
    lines = table.splitlines()
    assert lines[0].split() == ['metric', 'value']
    column = lines[0].index('value')
    assert all(line[column - 2:column] == '  ' and line[column] != ' ' for line in lines)
    assert 'Rand error (1 - V_rand)' in table and '%.4f' % r['segmentation']['rand_error'] in table
    assert 'VOI split H(seg|gt) [bits]' in table and 'worst merge 1' in table
    assert 'boundary f1 @best' in table and '2D: mean of 6 sections' in table
    assert 'ISBI 2012 pixel error %.4f' % r['isbi_pixel_error']['pixel_error'] in [' '.join(l.split()) for l in lines]
    assert format_table(segmentation_scores(seg, gt)).splitlines()[1].split()[1] == '3D:'
