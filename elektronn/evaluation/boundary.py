"""Scores of a boundary (membrane) probability map against a 0/1 membrane ground truth (pure NumPy/SciPy).

:func:`boundary_prf` (pixel precision, recall and F1 at one threshold), :func:`best_boundary_prf`
(at the best threshold of a curve), :func:`isbi_pixel_error` (the ISBI 2012 challenge's pixel error,
the number its leaderboards and papers quote) and :func:`gt_segmentation_from_boundaries` (a gt
segmentation from a membrane map, for the segmentation metrics of :mod:`elektronn.evaluation.metrics`).
"""
import numbers

import numpy as np

from elektronn.evaluation.metrics import NothingToScore, _ratio, _same_shape, _sections

__all__ = ['boundary_prf', 'best_boundary_prf', 'isbi_pixel_error', 'gt_segmentation_from_boundaries',
           'DEFAULT_THRESHOLDS']

#: Thresholds of the precision/recall curve of :func:`best_boundary_prf`: 0.05, 0.10, ..., 0.95.
DEFAULT_THRESHOLDS = tuple(round(0.05 * k, 2) for k in range(1, 20))


def _check_probabilities(b):
    """ValueError unless ``b`` holds probabilities: floats (without NaN), uint8 (p * 255) or bool."""
    if b.dtype == np.uint8 or b.dtype == bool:
        return
    if b.dtype.kind != 'f':
        raise ValueError('boundary must hold probabilities (floats in [0, 1], or uint8 = p * 255), got %s' % b.dtype)
    if np.isnan(b).any():
        raise ValueError('boundary holds NaN values')


def _probabilities(b):
    """Probabilities of a checked map: uint8 divided by 255 (float64), bool as 0.0/1.0, floats as they are."""
    if b.dtype == np.uint8:
        return b / 255.0
    return b.astype(np.float32) if b.dtype == bool else b


def _membrane(gt_boundary, name='gt_boundary'):
    """A 0/1 membrane map (1 = membrane) as a boolean array; ValueError for other values."""
    g = np.asarray(gt_boundary)
    if g.dtype == bool:
        return g
    if g.dtype.kind not in 'iuf':
        raise ValueError('%s must be a 0/1 membrane map (1 = membrane), got dtype %s' % (name, g.dtype))
    bad = (g != 0) & (g != 1)
    if bad.any():
        values = np.unique(g[bad])
        hint = ' (a 0/255 image? divide it by 255)' if 255 in values else ''
        raise ValueError('%s must be a 0/1 membrane map (1 = membrane), but it holds the values %s%s'
                         % (name, ', '.join('%g' % v for v in values[:5]) + (', ...' if len(values) > 5 else ''),
                            hint))
    return g != 0


def _boundary_inputs(boundary, gt_boundary, mask):
    """Flat probabilities (uint8 kept as is), flat membrane truth, of the voxels in ``mask``."""
    b, g = np.asarray(boundary), _membrane(gt_boundary)
    _same_shape(b, g, 'boundary', 'gt_boundary')
    _check_probabilities(b)
    if mask is not None:
        mask = np.asarray(mask)
        _same_shape(mask, g, 'mask', 'gt_boundary')
        mask = mask.astype(bool, copy=False)
        b, g = b[mask], g[mask]
    b, g = b.ravel(), g.ravel()
    if b.size == 0:
        raise NothingToScore('nothing to score: the mask selects no voxel')
    return b, g


def _prf(tp, n_pred, n_gt, n, threshold):
    return dict(precision=_ratio(tp, n_pred), recall=_ratio(tp, n_gt), f1=_ratio(2 * tp, n_pred + n_gt),
                threshold=float(threshold), error=float(n_pred + n_gt - 2 * tp) / n)


def boundary_prf(boundary, gt_boundary, threshold=0.5, mask=None):
    """Pixel precision, recall and F1 of a thresholded boundary (membrane) probability map.

    Definition: predicted membrane P = ``boundary >= threshold`` (uint8 maps are divided by 255
    first), true membrane G = ``gt_boundary == 1``, counted over the voxels in ``mask``
    (default: all)::

        precision = |P and G| / |P|     (1 if nothing is predicted)
        recall    = |P and G| / |G|     (1 if there is no true membrane)
        f1        = 2 |P and G| / (|P| + |G|)
        error     = (|P and not G| + |G and not P|) / n   (fraction of pixels classified wrongly)

    Args:
        boundary: Membrane probabilities, floats in [0, 1] or uint8 (p * 255).
        gt_boundary: The 0/1 ground-truth membrane map (1 = membrane), same shape.
        threshold: Probability at and above which a pixel is membrane.
        mask: Optional boolean array: score only these voxels.

    Returns:
        dict(precision, recall, f1, threshold, error) of floats.
    """
    b, g = _boundary_inputs(boundary, gt_boundary, mask)
    if not isinstance(threshold, numbers.Real):
        raise ValueError('threshold must be a number, got %r' % (threshold,))
    predicted = _probabilities(b) >= np.float64(threshold)
    return _prf(int(np.count_nonzero(predicted & g)), int(np.count_nonzero(predicted)), int(np.count_nonzero(g)),
                b.size, threshold)


def _threshold_counts(b, g):
    """``(levels, n_pred, tp)``: the distinct probabilities (ascending) and, for each as threshold,
    the voxels predicted as membrane and the true membrane voxels among them."""
    if b.dtype == np.uint8:
        hist = np.bincount(b, minlength=256)
        hist_gt = np.bincount(b[g], minlength=256)
        levels = np.flatnonzero(hist)
        n_pred, tp = np.cumsum(hist[::-1])[::-1], np.cumsum(hist_gt[::-1])[::-1]
        return levels / 255.0, n_pred[levels], tp[levels]
    p = np.sort(_probabilities(b).astype(np.float64))
    first = np.flatnonzero(np.r_[True, p[1:] != p[:-1]])
    levels = p[first]
    p_gt = np.sort(_probabilities(b[g]).astype(np.float64))
    return levels, p.size - first, p_gt.size - np.searchsorted(p_gt, levels, 'left')


def best_boundary_prf(boundary, gt_boundary, thresholds=None, mask=None):
    """:func:`boundary_prf` at the threshold that maximises F1, and the precision/recall curve.

    Args:
        boundary, gt_boundary, mask: As :func:`boundary_prf`.
        thresholds: The candidate thresholds. ``None``: exact search over every distinct value
            of the map (a uint8 map: its levels k / 255; a float map: each value, found by
            sorting), i.e. the best F1 over all thresholds; the curve is then reported at
            :data:`DEFAULT_THRESHOLDS` (0.05, 0.10, ..., 0.95). Of equally good thresholds the
            smallest is chosen.

    Returns:
        dict(precision, recall, f1, threshold, error) at the best threshold, and ``curve``:
        dict(thresholds, precision, recall, f1) of lists.
    """
    b, g = _boundary_inputs(boundary, gt_boundary, mask)
    levels, n_pred, tp = _threshold_counts(b, g)
    n_gt, n = int(np.count_nonzero(g)), b.size

    def at(ts):
        """Counts ``(n_pred, tp)`` with thresholds ``ts``: those of the smallest level >= t."""
        i = np.searchsorted(levels, ts, 'left')
        return np.r_[n_pred, 0][i], np.r_[tp, 0][i]

    if thresholds is None:
        candidates, curve_t = levels, np.asarray(DEFAULT_THRESHOLDS)
        cand_pred, cand_tp = n_pred, tp
    else:
        try:
            candidates = np.sort(np.asarray(thresholds, np.float64).ravel())
        except (TypeError, ValueError):
            raise ValueError('thresholds must be a sequence of numbers, got %r' % (thresholds,)) from None
        if candidates.size == 0:
            raise ValueError('thresholds must not be empty')
        curve_t = candidates
        cand_pred, cand_tp = at(candidates)
    f1 = np.where(cand_pred + n_gt > 0, 2.0 * cand_tp / np.maximum(cand_pred + n_gt, 1), 1.0)
    k = int(np.argmax(f1))
    best = _prf(int(cand_tp[k]), int(cand_pred[k]), n_gt, n, candidates[k])
    points = [_prf(int(t_p), int(p_n), n_gt, n, t) for t, p_n, t_p in zip(curve_t, *at(curve_t))]
    best['curve'] = dict(thresholds=[p['threshold'] for p in points],
                         **{m: [p[m] for p in points] for m in ('precision', 'recall', 'f1')})
    return best


def isbi_pixel_error(boundary, gt_boundary, mask=None):
    """The ISBI 2012 challenge's pixel error: 1 - the maximal F-score of pixel similarity.

    This is the "pixel error" of the challenge's leaderboard and of the papers that quote it
    (e.g. U-Net's 0.0611), computed as the challenge's evaluation script does: the positive class
    is the cell interior (non-membrane; the white pixels of its label images), a pixel is predicted
    interior when its interior probability ``1 - boundary`` exceeds a threshold, and the F-score of
    the interior is maximised over the thresholds (here over every distinct value of the map, the
    script steps by 0.1, so this is at most as large as the script's). It is *not* the fraction of
    misclassified pixels (``boundary_prf(...)['error']``): with about 80 % interior pixels it is
    roughly that fraction divided by 1.6-1.8.

    Args:
        boundary, gt_boundary, mask: As :func:`boundary_prf` (membrane probabilities, 0/1 membrane truth).

    Returns:
        dict with ``pixel_error`` (``1 - f1``), ``f1`` (the best F-score of the interior) and
        ``threshold`` (the membrane probability at or below which a pixel counts as interior there).

    Example::

        >>> import numpy as np
        >>> gt = np.array([[0, 0, 0, 1]])                     # one membrane pixel of four
        >>> p = np.array([[0.1, 0.8, 0.3, 0.6]])             # membrane probabilities
        >>> boundary_prf(p, gt)['error']                      # one pixel of four wrong at 0.5
        0.25
        >>> round(isbi_pixel_error(p, gt)['pixel_error'], 4)  # all interior at p < 0.9: F = 6/7
        0.1429
    """
    b, g = _boundary_inputs(boundary, gt_boundary, mask)
    levels, n_pred, tp = _threshold_counts(b, g)
    n, n_interior = b.size, b.size - int(np.count_nonzero(g))
    # Interior at p <= levels[k - 1]: the complement of the membrane counts at levels[k]; k = 0: nothing interior,
    # k = len(levels): everything. The same counts as best_boundary_prf's, so no second sort of the map.
    found = np.r_[n - n_pred, n]
    hits = np.r_[n_interior - (n_pred - tp), n_interior]
    f1 = np.where(found + n_interior > 0, 2.0 * hits / np.maximum(found + n_interior, 1), 1.0)
    k = len(f1) - 1 - int(np.argmax(f1[::-1]))       # of equal F-scores the largest interior, as the script's sweep
    threshold = float(levels[k - 1]) if k else float(np.nextafter(levels[0], -np.inf))
    return dict(pixel_error=1.0 - float(f1[k]), f1=float(f1[k]), threshold=threshold)


def gt_segmentation_from_boundaries(gt_boundary, two_d=True):
    """Ground-truth segmentation from a 0/1 membrane map: connected components of the non-membrane voxels.

    Args:
        gt_boundary: 0/1 membrane map ``(z, x, y)`` or ``(x, y)`` (1 = membrane, as ISBI
            2012's ``barrier``); bool, integer or float with only the values 0 and 1.
        two_d: Label each section along axis 0 on its own, with 4-connectivity (as the ISBI
            2012 scripts), numbering the components of all sections consecutively so that
            labels are unique across sections; ``False``: 3D components with 6-connectivity.

    Returns:
        numpy.ndarray: uint32 labels of the same shape: 1, 2, ... for the components, 0 on membrane voxels.
    """
    from scipy import ndimage
    membrane = _membrane(gt_boundary)
    if membrane.ndim not in (2, 3):
        raise ValueError('gt_boundary has shape %s: give a (z, x, y) volume or an (x, y) image' % (membrane.shape,))
    if not two_d:
        labels, _ = ndimage.label(~membrane, ndimage.generate_binary_structure(membrane.ndim, 1), output=np.uint32)
        return labels
    sections = _sections(membrane, 'gt_boundary')
    out = np.zeros(sections.shape, np.uint32)
    structure, offset = ndimage.generate_binary_structure(2, 1), 0
    for z in range(sections.shape[0]):
        labels, count = ndimage.label(~sections[z], structure, output=np.uint32)
        labels[labels > 0] += np.uint32(offset)
        out[z], offset = labels, offset + count
    return out.reshape(membrane.shape)
