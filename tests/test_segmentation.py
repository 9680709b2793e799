"""In-memory segmentation: seeded watershed on boundary maps and affinities, mean-affinity agglomeration
and label utilities, on synthetic Voronoi cells (known ground truth) and hand-made cases."""
import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial import cKDTree
from skimage.metrics import adapted_rand_error

from elektronn.segmentation.agglomeration import agglomerate, region_graph, segment_affinities
from elektronn.segmentation.labels import (check_label_dtype, relabel_consecutive, remove_small_segments,
                                           segment_sizes)
from elektronn.segmentation.watershed import affinities_to_boundaries, watershed_affinities, watershed_boundaries

SHAPE = (24, 48, 48)
N_CELLS = 20
#: Bound on the adapted Rand error of a segmentation of the synthetic cells.
MAX_ERROR = 0.05


# ----------------------------------------------------------------------------- synthetic data

def voronoi(shape, n_cells, seed):
    """Labels 1 .. n_cells of the nearest of ``n_cells`` random points (a Voronoi tessellation)."""
    rng = np.random.default_rng(seed)
    points = rng.uniform(0, 1, (n_cells, len(shape))) * shape
    grid = np.indices(shape).reshape(len(shape), -1).T
    return (cKDTree(points).query(grid)[1] + 1).reshape(shape).astype(np.uint32)


def shifted(axis):
    """Index tuples of the voxels v and v + 1 along ``axis`` (the two ends of the edges along it)."""
    low, high = [slice(None)] * 3, [slice(None)] * 3
    low[axis], high[axis] = slice(None, -1), slice(1, None)
    return tuple(low), tuple(high)


def on_boundary(gt):
    """True on voxels with a 6-neighbour of another label."""
    boundary = np.zeros(gt.shape, bool)
    for axis in range(3):
        low, high = shifted(axis)
        differ = gt[low] != gt[high]
        boundary[low] |= differ
        boundary[high] |= differ
    return boundary


def boundary_map(gt, seed, noise=0.1):
    """1 on boundary voxels, blurred, with Gaussian noise, in [0, 1] (float32)."""
    rng = np.random.default_rng(seed)
    blurred = ndimage.gaussian_filter(on_boundary(gt).astype(np.float32), 0.7) * 1.5
    return np.clip(blurred + rng.normal(0, noise, gt.shape), 0, 1).astype(np.float32)


def affinity_graph(gt, seed, noise=0.1):
    """1 where a voxel and its +z/+x/+y neighbour share a label, else 0, with noise, in [0, 1]."""
    rng = np.random.default_rng(seed)
    affs = np.zeros((3,) + gt.shape, np.float32)
    for axis in range(3):
        low, high = shifted(axis)
        affs[axis][low] = gt[low] == gt[high]
    return np.clip(affs + rng.normal(0, noise, affs.shape), 0, 1).astype(np.float32)


def per_section(labels):
    """Labels made unique per section (a cell cut by two sections is two objects)."""
    sections = np.arange(labels.shape[0], dtype=np.int64)[:, None, None]
    return np.where(labels > 0, labels + sections * (int(labels.max()) + 1), 0)


def rand_error(gt, seg):
    return adapted_rand_error(gt, seg, ignore_labels=(0,))[0]


def is_bijection(a, b):
    """Whether the labels of ``a`` and ``b`` correspond one to one (equal up to relabelling)."""
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]


def is_coarsening(fine, coarse):
    """Whether every segment of ``fine`` lies in one segment of ``coarse`` (0 only in 0)."""
    pairs = np.unique(np.stack([fine.ravel(), coarse.ravel()]), axis=1)
    return len(np.unique(pairs[0])) == pairs.shape[1] and np.all((pairs[0] == 0) == (pairs[1] == 0))


def assert_consecutive(labels):
    ids = np.unique(labels)
    ids = ids[ids > 0]
    assert np.array_equal(ids, np.arange(1, len(ids) + 1))


@pytest.fixture(scope='module')
def cells():
    return voronoi(SHAPE, N_CELLS, seed=0)


@pytest.fixture(scope='module')
def boundary(cells):
    return boundary_map(cells, seed=1)


@pytest.fixture(scope='module')
def affs(cells):
    return affinity_graph(cells, seed=2)


# ----------------------------------------------------------------------------- watershed on boundaries

def test_watershed_boundaries_recovers_cells_3d(cells, boundary):
    seg = watershed_boundaries(boundary)
    assert seg.dtype == np.uint32 and seg.shape == SHAPE
    assert seg.min() == 1  # no mask: every voxel is flooded
    assert_consecutive(seg)
    assert rand_error(np.where(on_boundary(cells), 0, cells), seg) < MAX_ERROR


def test_watershed_boundaries_recovers_cells_2d(cells, boundary):
    seg = watershed_boundaries(boundary, two_d=True)
    assert_consecutive(seg)
    for z in range(SHAPE[0] - 1):  # labels never continue into the next section
        assert not np.intersect1d(seg[z], seg[z + 1]).size
    assert rand_error(per_section(np.where(on_boundary(cells), 0, cells)), seg) < MAX_ERROR


def test_watershed_of_an_image_is_that_of_a_one_section_volume(boundary):
    image = boundary[5]
    expected = watershed_boundaries(image[None], two_d=True, sampling=(1, 2, 3))[0]
    assert np.array_equal(watershed_boundaries(image, sampling=(2, 3)), expected)
    assert np.array_equal(watershed_boundaries(image, two_d=True, sampling=(2, 3)), expected)


def test_uint8_boundary_map_is_scaled(boundary):
    as_uint8 = np.round(boundary * 255).astype(np.uint8)
    seg = watershed_boundaries(as_uint8)
    assert np.array_equal(seg, watershed_boundaries(as_uint8.astype(np.float32) / np.float32(255)))


def test_min_size_removes_small_segments_only(boundary):
    plain = watershed_boundaries(boundary, two_d=True)
    sizes = np.bincount(plain.ravel())
    min_size = int(np.median(sizes[1:]))
    seg = watershed_boundaries(boundary, min_size=min_size, two_d=True)
    assert_consecutive(seg)
    assert np.bincount(seg.ravel())[1:].min() >= min_size
    kept = sizes[plain] >= min_size
    assert np.array_equal(seg > 0, kept)
    assert is_bijection(plain[kept], seg[kept])


def test_watershed_is_deterministic_and_layout_independent(boundary):
    first = watershed_boundaries(boundary, sampling=(2, 1, 1))
    assert np.array_equal(first, watershed_boundaries(boundary.copy(), sampling=(2, 1, 1)))
    assert np.array_equal(first, watershed_boundaries(np.asfortranarray(boundary), sampling=(2, 1, 1)))


def test_uint64_labels(boundary, affs):
    assert watershed_boundaries(boundary, dtype=np.uint64).dtype == np.uint64
    fragments = watershed_affinities(affs, dtype='uint64')
    assert fragments.dtype == np.uint64
    assert agglomerate(affs, fragments)[0].dtype == np.uint64
    assert agglomerate(affs, fragments, dtype=np.uint32)[0].dtype == np.uint32
    assert segment_affinities(affs, dtype=np.uint64)[0].dtype == np.uint64


def test_no_interior_leaves_everything_unassigned():
    assert not watershed_boundaries(np.ones((2, 5, 5), np.float32)).any()


def test_no_boundary_gives_one_segment():
    assert np.all(watershed_boundaries(np.zeros((2, 5, 5), np.float32)) == 1)
    assert np.array_equal(np.unique(watershed_boundaries(np.zeros((2, 5, 5), np.float32), two_d=True)), [1, 2])


@pytest.mark.parametrize('two_d', [False, True])
def test_block_with_halo_equals_the_whole_volume(two_d):
    """Cells of radius ~8: a halo of 16 voxels (2x the radius) gives the whole volume's core labels."""
    gt = voronoi((32, 96, 96), 150, seed=3)
    boundary = boundary_map(gt, seed=4)
    whole = watershed_boundaries(boundary, two_d=two_d)
    core = (slice(8, 24), slice(32, 64), slice(32, 64))
    halo = (0 if two_d else 16, 16, 16)
    block = tuple(slice(max(c.start - h, 0), c.stop + h) for c, h in zip(core, halo))
    labels = watershed_boundaries(boundary[block], two_d=two_d)
    in_block = tuple(slice(c.start - b.start, c.stop - b.start) for c, b in zip(core, block))
    assert is_bijection(whole[core], labels[in_block])


# ----------------------------------------------------------------------------- affinities

def reference_affinities_to_boundaries(affs, two_d):
    """Voxel by voxel: 1 - the mean of the affinities of the edges at each voxel."""
    shape = affs.shape[1:]
    boundary = np.zeros(shape, np.float32)
    for v in np.ndindex(*shape):
        values = []
        for axis in ((1, 2) if two_d else (0, 1, 2)):
            step = np.eye(3, dtype=int)[axis]
            if v[axis] + 1 < shape[axis]:
                values.append(affs[(axis,) + v])
            if v[axis] > 0:
                values.append(affs[(axis,) + tuple(np.subtract(v, step))])
        boundary[v] = 1 - np.mean(values)
    return boundary


@pytest.mark.parametrize('two_d', [False, True])
def test_affinities_to_boundaries_matches_reference(two_d):
    affs = np.random.default_rng(5).uniform(0, 1, (3, 3, 4, 5)).astype(np.float32)
    result = affinities_to_boundaries(affs, two_d=two_d)
    assert result.dtype == np.float32 and result.shape == (3, 4, 5)
    np.testing.assert_allclose(result, reference_affinities_to_boundaries(affs, two_d), atol=1e-6)


def test_affinities_to_boundaries_of_uint8():
    affs = np.full((3, 2, 3, 3), 255, np.uint8)
    affs[1, :, 0] = 0  # edges between x = 0 and x = 1
    boundary = affinities_to_boundaries(affs)
    assert boundary[0, 0, 0] == pytest.approx(1 / 3)  # edges: +z, +x (0), +y
    assert boundary[0, 2, 1] == 0


def test_affinity_segmentation_recovers_cells(cells, affs):
    fragments = watershed_affinities(affs)
    assert fragments.max() >= N_CELLS
    thresholds = (0.9, 0.7, 0.5, 0.3, 0.1)
    segs = agglomerate(affs, fragments, thresholds)
    assert len(segs) == len(thresholds)
    assert rand_error(cells, segs[1]) < MAX_ERROR
    counts = [int(seg.max()) for seg in segs]
    assert counts == sorted(counts, reverse=True) and counts[-1] < counts[0]
    for fine, coarse in zip([fragments] + segs, segs):
        assert_consecutive(coarse)
        assert is_coarsening(fine, coarse)
    assert all(np.array_equal(a, b) for a, b in zip(segment_affinities(affs, thresholds), segs))


def test_affinity_segmentation_2d(cells, affs):
    seg = segment_affinities(affs, thresholds=(0.7,), two_d=True)[0]
    for z in range(SHAPE[0] - 1):
        assert not np.intersect1d(seg[z], seg[z + 1]).size
    assert rand_error(per_section(cells), seg) < MAX_ERROR


def test_segment_affinities_min_size(affs):
    plain, = segment_affinities(affs, thresholds=(0.95,))
    sizes = np.bincount(plain.ravel())
    small, = segment_affinities(affs, thresholds=(0.95,), min_size=int(sizes[1:].max()))
    assert np.array_equal(small > 0, sizes[plain] == sizes[1:].max())


# ----------------------------------------------------------------------------- agglomeration by hand

def test_agglomeration_of_a_line_by_hand():
    """Fragments 1 1 2 2 3 3: 2-3 (0.75) merge first, then 1-(23) (0.25)."""
    fragments = np.array([1, 1, 2, 2, 3, 3], np.uint32).reshape(1, 1, 6)
    affs = np.zeros((3, 1, 1, 6), np.float32)
    affs[2, 0, 0] = [1, 0.25, 1, 0.75, 1, 0]
    low, high, middle = agglomerate(affs, fragments, thresholds=(0.2, 0.8, 0.5))
    assert middle.ravel().tolist() == [1, 1, 2, 2, 2, 2]
    assert high.ravel().tolist() == [1, 1, 2, 2, 3, 3]
    assert low.ravel().tolist() == [1] * 6
    # the mean must be above the threshold: 0.75 and 0.25 merge nothing more at their own values
    assert agglomerate(affs, fragments, thresholds=(0.75,))[0].ravel().tolist() == [1, 1, 2, 2, 3, 3]
    assert agglomerate(affs, fragments, thresholds=0.25)[0].ravel().tolist() == [1, 1, 2, 2, 2, 2]


def test_merged_edges_average_all_voxel_edges():
    """Fragments    1 1 1 2   (1, 2): 0.875 (1 edge); (1, 3): (1 + 0.75 + 0.5) / 3 = 0.75; (2, 3): 0.
                    3 3 3 3   After merging 1 and 2: (1 + 0.75 + 0.5 + 0) / 4 = 0.5625 (not a mean of means)."""
    fragments = np.array([[1, 1, 1, 2], [3, 3, 3, 3]], np.uint32)[None]
    affs = np.ones((3, 1, 2, 4), np.float32)
    affs[2, 0, 0, 2] = 0.875
    affs[1, 0, 0] = [1, 0.75, 0.5, 0]
    pairs, sums, counts = region_graph(affs, fragments, 3)
    assert pairs.tolist() == [[1, 2], [1, 3], [2, 3]]
    assert sums.tolist() == [0.875, 2.25, 0] and counts.tolist() == [1, 3, 1]
    segs = agglomerate(affs, fragments, thresholds=(0.9, 0.8, 0.6, 0.5625, 0.56))
    expected = [np.array([[1, 1, 1, 2], [3, 3, 3, 3]]), np.array([[1, 1, 1, 1], [2, 2, 2, 2]]),
                np.array([[1, 1, 1, 1], [2, 2, 2, 2]]), np.array([[1, 1, 1, 1], [2, 2, 2, 2]]), np.ones((2, 4))]
    for seg, labels in zip(segs, expected):
        assert np.array_equal(seg[0], labels)


def test_label_zero_never_merges_and_two_d_ignores_z_edges():
    fragments = np.array([[[1, 0, 2]], [[3, 3, 3]]], np.uint32)
    affs = np.ones((3, 2, 1, 3), np.float32)
    merged, = agglomerate(affs, fragments, thresholds=(0.5,))
    assert merged.tolist() == [[[1, 0, 1]], [[1, 1, 1]]]
    per_section_only, = agglomerate(affs, fragments, thresholds=(0.5,), two_d=True)
    assert per_section_only.tolist() == [[[1, 0, 2]], [[3, 3, 3]]]


def reference_agglomeration(affs, fragments, threshold):
    """Naive greedy merging: recompute every mean from the voxel edges after each merge."""
    edges = []  # (fragment a, fragment b, affinity) of every voxel edge between two fragments
    for axis in range(3):
        low, high = shifted(axis)
        a, b, w = fragments[low].ravel(), fragments[high].ravel(), affs[axis][low].ravel()
        keep = (a != b) & (a > 0) & (b > 0)
        edges += zip(a[keep].tolist(), b[keep].tolist(), w[keep].astype(np.float64).tolist())
    region = {f: f for f in np.unique(fragments[fragments > 0]).tolist()}
    while True:
        totals = {}
        for a, b, w in edges:
            ra, rb = region[a], region[b]
            if ra != rb:
                key = (min(ra, rb), max(ra, rb))
                total, count = totals.get(key, (0.0, 0))
                totals[key] = (total + w, count + 1)
        if not totals:
            break
        key = max(totals, key=lambda k: totals[k][0] / totals[k][1])
        if totals[key][0] / totals[key][1] <= threshold:
            break
        region = {f: key[0] if r == key[1] else r for f, r in region.items()}
    return np.vectorize(lambda f: region.get(f, 0))(fragments)


@pytest.mark.parametrize('seed', [6, 7])
def test_agglomeration_matches_naive_reference(seed):
    rng = np.random.default_rng(seed)
    fragments = np.repeat(np.repeat(rng.integers(0, 12, (2, 4, 4)), 2, axis=1), 2, axis=2).astype(np.uint32)
    affs = rng.uniform(0, 1, (3,) + fragments.shape).astype(np.float32)
    thresholds = (0.6, 0.5, 0.4)
    for seg, threshold in zip(agglomerate(affs, fragments, thresholds), thresholds):
        assert is_bijection(seg, reference_agglomeration(affs, fragments, threshold))


# ----------------------------------------------------------------------------- label utilities

def test_relabel_consecutive():
    labels = np.array([[0, 7, 3], [7, 0, 100]], np.int64)
    relabelled, n = relabel_consecutive(labels)
    assert n == 3 and relabelled.dtype == np.uint32
    assert relabelled.tolist() == [[0, 2, 1], [2, 0, 3]]  # in the order of the sorted old ids
    huge = np.array([2 ** 40, 5, 2 ** 40, 0], np.uint64)  # ids far above the size: np.unique
    relabelled, n = relabel_consecutive(huge)
    assert n == 2 and relabelled.dtype == np.uint64 and relabelled.tolist() == [2, 1, 2, 0]
    assert relabel_consecutive(np.array([4, 4], np.uint8), dtype='uint64')[0].tolist() == [1, 1]
    assert relabel_consecutive(np.array([2 ** 40, 3], np.uint64))[0].tolist() == [2, 1]  # no 0 present


def test_remove_small_segments_and_sizes():
    labels = np.array([0, 5, 5, 5, 9, 2, 2, 0], np.uint32)
    ids, counts = segment_sizes(labels)
    assert ids.tolist() == [0, 2, 5, 9] and counts.tolist() == [2, 2, 3, 1]
    ids, counts = segment_sizes(labels.astype(np.uint64) * 2 ** 40)
    assert ids.tolist() == [0, 2 * 2 ** 40, 5 * 2 ** 40, 9 * 2 ** 40] and counts.tolist() == [2, 2, 3, 1]
    assert remove_small_segments(labels, 2).tolist() == [0, 2, 2, 2, 0, 1, 1, 0]
    assert remove_small_segments(labels, 0).tolist() == [0, 2, 2, 2, 3, 1, 1, 0]
    assert remove_small_segments(labels, 4).tolist() == [0] * 8


def test_check_label_dtype():
    assert check_label_dtype('uint32') == np.uint32
    assert check_label_dtype(np.uint64, n_segments=2 ** 40) == np.uint64
    with pytest.raises(ValueError, match='4294967296 segments do not fit uint32: use dtype=uint64'):
        check_label_dtype(np.uint32, n_segments=2 ** 32)


# ----------------------------------------------------------------------------- argument validation

VOLUME = np.zeros((2, 6, 6), np.float32)
AFFS = np.ones((3, 2, 6, 6), np.float32)
FRAGMENTS = np.ones((2, 6, 6), np.uint32)


@pytest.mark.parametrize('call, message', [
    (lambda: watershed_boundaries(np.zeros((1, 2, 6, 6))), r'boundary must be \(z, x, y\) or \(x, y\), got shape \(1, 2, 6, 6\)'),
    (lambda: watershed_boundaries(VOLUME.astype(np.int64)), r'boundary must be float in \[0, 1\] or uint8, got dtype int64'),
    (lambda: watershed_boundaries(VOLUME + 1.5), r'boundary values must lie in \[0, 1\], got min 1.5, max 1.5'),
    (lambda: watershed_boundaries(VOLUME + np.nan), r'boundary values must lie in \[0, 1\], got min nan'),
    (lambda: watershed_boundaries(VOLUME, threshold=0), r'threshold must be a number in \(0, 1\), got 0'),
    (lambda: watershed_boundaries(VOLUME, threshold=1.5), r'threshold must be a number in \(0, 1\), got 1.5'),
    (lambda: watershed_boundaries(VOLUME, threshold='0.5'), r"threshold must be a number in \(0, 1\), got '0.5'"),
    (lambda: watershed_boundaries(VOLUME, min_seed_distance=0), 'min_seed_distance must be an integer >= 1, got 0'),
    (lambda: watershed_boundaries(VOLUME, min_seed_distance=2.5), 'min_seed_distance must be an integer >= 1, got 2.5'),
    (lambda: watershed_boundaries(VOLUME, min_size=-1), 'min_size must be an integer >= 0, got -1'),
    (lambda: watershed_boundaries(VOLUME, sampling=(1, 2)), r'sampling must be 3 positive voxel sizes \(one per axis\), got \(1, 2\)'),
    (lambda: watershed_boundaries(VOLUME, sampling=(0, 1, 1)), r'sampling must be 3 positive .*got \(0, 1, 1\)'),
    (lambda: watershed_boundaries(VOLUME, dtype=np.int32), "label dtype must be uint32 or uint64, got <class 'numpy.int32'>"),
    (lambda: watershed_boundaries(VOLUME, dtype='foo'), "label dtype must be uint32 or uint64, got 'foo'"),
    (lambda: affinities_to_boundaries(np.ones((2, 2, 6, 6))), r'affs must be \(3, z, x, y\), got shape \(2, 2, 6, 6\)'),
    (lambda: watershed_affinities(np.ones((3, 6, 6))), r'affs must be \(3, z, x, y\), got shape \(3, 6, 6\)'),
    (lambda: watershed_affinities(AFFS * 2), r'affs values must lie in \[0, 1\], got min 2.0, max 2.0'),
    (lambda: agglomerate(AFFS, FRAGMENTS.astype(np.float64)), 'fragments must be an integer array, got dtype float64'),
    (lambda: agglomerate(AFFS, -FRAGMENTS.astype(np.int32)), 'fragments must be >= 0, got a minimum of -1'),
    (lambda: agglomerate(AFFS, FRAGMENTS[0]), r'fragments must have the shape of affs without its channel axis, \(2, 6, 6\), got \(6, 6\)'),
    (lambda: agglomerate(AFFS, FRAGMENTS, thresholds=()), r'thresholds must name at least one threshold, got \[\]'),
    (lambda: agglomerate(AFFS, FRAGMENTS, thresholds=(0.5, 1.5)), r'each of thresholds must be a number in \[0, 1\], got 1.5'),
    (lambda: agglomerate(AFFS, FRAGMENTS, thresholds=None), r'thresholds must be a sequence of numbers in \[0, 1\], got None'),
    (lambda: agglomerate(AFFS, FRAGMENTS, dtype=np.float32), "label dtype must be uint32 or uint64, got <class 'numpy.float32'>"),
    (lambda: segment_affinities(AFFS, min_size=-3), 'min_size must be an integer >= 0, got -3'),
    (lambda: relabel_consecutive(np.ones(3)), 'labels must be an integer array, got dtype float64'),
    (lambda: relabel_consecutive(np.ones(3, bool)), 'labels must be an integer array, got dtype bool'),
    (lambda: remove_small_segments(FRAGMENTS, -1), 'min_size must be an integer >= 0, got -1'),
    (lambda: segment_sizes(np.array([1.5])), 'labels must be an integer array, got dtype float64'),
    (lambda: check_label_dtype(np.int64), "label dtype must be uint32 or uint64, got <class 'numpy.int64'>"),
])
def test_validation_messages(call, message):
    with pytest.raises(ValueError, match=message):
        call()
