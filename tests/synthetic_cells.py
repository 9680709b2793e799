"""Synthetic EM-like volumes of known cells for the segmentation tests: a Voronoi tessellation and its maps."""
import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree


def voronoi_cells(shape, n_cells, seed=0):
    """Labels ``1 .. n_cells`` of the nearest of ``n_cells`` random points (cells of about equal size)."""
    rng = np.random.default_rng(seed)
    points = rng.uniform(0, 1, (n_cells, len(shape))) * shape
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing='ij'), -1).reshape(-1, len(shape))
    return (cKDTree(points).query(grid)[1].reshape(shape) + 1).astype(np.uint32)


def cell_boundaries(labels, axes=None):
    """True on voxels with a neighbour (along ``axes``, default all) of another label."""
    boundary = np.zeros(labels.shape, bool)
    for d in range(labels.ndim) if axes is None else axes:
        ahead = [slice(None)] * labels.ndim
        behind = [slice(None)] * labels.ndim
        ahead[d], behind[d] = slice(1, None), slice(None, -1)
        differ = labels[tuple(ahead)] != labels[tuple(behind)]
        boundary[tuple(ahead)] |= differ
        boundary[tuple(behind)] |= differ
    return boundary


def boundary_map(labels, seed=0, blur=1.0, noise=0.05, axes=None):
    """A membrane probability map of ``labels``: blurred boundaries with noise, float32 in [0, 1]."""
    rng = np.random.default_rng(seed)
    prob = ndimage.gaussian_filter(cell_boundaries(labels, axes).astype(np.float32), blur)
    prob = prob / prob.max() + rng.normal(0, noise, labels.shape)
    return np.clip(prob, 0, 1).astype(np.float32)


def affinity_map(labels, seed=0, noise=0.05):
    """``(3, z, x, y)`` affinities (+z, +x, +y neighbours share a label) with noise, float32 in [0, 1]."""
    rng = np.random.default_rng(seed)
    affs = np.zeros((3,) + labels.shape, np.float32)
    for d in range(3):
        ahead = [slice(None)] * 3
        behind = [slice(None)] * 3
        ahead[d], behind[d] = slice(1, None), slice(None, -1)
        affs[d][tuple(behind)] = labels[tuple(behind)] == labels[tuple(ahead)]
    return np.clip(affs + rng.normal(0, noise, affs.shape), 0, 1).astype(np.float32)


def same_partition(a, b):
    """Whether two labellings are equal up to a relabelling (a bijection of their labels)."""
    pairs = np.unique(np.stack([np.ravel(a), np.ravel(b)], 1), axis=0)
    return len(pairs) == len(np.unique(a)) == len(np.unique(b))
