"""Segmentation error metrics for EM volumes (pure NumPy/SciPy): Rand scores, VOI, the worst errors.

Every segmentation metric is computed from one contingency table (:func:`contingency`): the
number of voxels ``n_ij`` that have label ``i`` in the segmentation ``seg`` and label ``j`` in
the ground truth ``gt``, over the voxels that are not ignored. Arrays are ``(z, x, y)`` volumes
(any shape for the 3D metrics); the per-section ("2D") variants score every section along
axis 0 on its own and average, weighting sections equally.

Notation used in the docstrings, after removing voxels whose ``gt`` label is ignored (and whose
``seg`` label is ignored, where a function has ``ignore_seg``)::

    n_ij   voxels with seg label i and gt label j        N = sum_ij n_ij
    a_i    = sum_j n_ij  (size of seg segment i)        b_j = sum_i n_ij  (size of gt object j)
"""
import numbers

import numpy as np

__all__ = ['Contingency', 'NothingToScore', 'contingency', 'adapted_rand_error', 'rand_scores',
           'variation_of_information', 'segmentation_scores', 'per_section', 'worst_errors', 'SCORE_KEYS']

#: The keys of :func:`segmentation_scores` (and of each of its per-section entries).
SCORE_KEYS = ('rand_error', 'rand_fscore', 'rand_split', 'rand_merge', 'adapted_rand_error', 'voi_split',
              'voi_merge', 'voi')
#: Overlapping labels listed per entry of :func:`worst_errors`.
_MAX_OTHER_LABELS = 10


class NothingToScore(ValueError):
    """No voxel is left to score (every voxel of the volume or section has an ignored label)."""


# ----------------------------------------------------------------------------------------------------
# input checks
# ----------------------------------------------------------------------------------------------------
def _labels(arr, name):
    """``arr`` as an integer NumPy array; ValueError naming ``name`` for any other dtype."""
    arr = np.asarray(arr)
    if arr.dtype.kind not in 'iu':
        hint = {'f': ' (a probability map? segment it first with elektronn-segment)',
                'b': ' (a mask? label its connected components first, e.g. with scipy.ndimage.label)'}
        raise ValueError('%s must hold integer labels, got %s%s' % (name, arr.dtype, hint.get(arr.dtype.kind, '')))
    return arr


def _same_shape(a, b, name_a, name_b):
    if a.shape != b.shape:
        raise ValueError('%s has shape %s but %s has shape %s: both must be the same (z, x, y) volume'
                         % (name_a, a.shape, name_b, b.shape))


def _label_pair(seg, gt):
    seg, gt = _labels(seg, 'seg'), _labels(gt, 'gt')
    _same_shape(seg, gt, 'seg', 'gt')
    return seg, gt


def _ignore(values, name):
    """``values`` (None, one label or a sequence of labels) as a tuple of ints."""
    if values is None:
        return ()
    if isinstance(values, numbers.Integral):
        return (int(values),)
    try:
        return tuple(int(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError('%s must be a sequence of integer labels, got %r' % (name, values)) from None


def _keep(arr, ignore):
    """Boolean mask of the voxels of ``arr`` whose label is not in ``ignore`` (None: all of them)."""
    keep = None
    for value in ignore:
        k = arr != value
        keep = k if keep is None else np.logical_and(keep, k, out=keep)
    return keep


def _sections(arr, name):
    """``arr`` as a ``(z, x, y)`` stack of sections (a 2D image is one section)."""
    if arr.ndim == 2:
        return arr[None]
    if arr.ndim != 3:
        raise ValueError('%s has shape %s: per-section scores need a (z, x, y) volume or an (x, y) image'
                         % (name, arr.shape))
    return arr


# ----------------------------------------------------------------------------------------------------
# contingency table
# ----------------------------------------------------------------------------------------------------
class Contingency:
    """Joint label counts of a segmentation and a ground truth (rows: seg labels, columns: gt labels).

    Only non-zero entries are stored (as a sparse matrix in COO form): entry ``e`` says that
    ``counts[e]`` voxels have seg label ``seg_labels[rows[e]]`` and gt label ``gt_labels[cols[e]]``.

    Attributes:
        rows, cols, counts: int64 arrays, one value per non-zero entry.
        seg_labels, gt_labels: The label values of the rows and columns (ascending).
        seg_sizes, gt_sizes: Row and column sums ``a_i`` and ``b_j`` (voxels per segment / object).
        total: ``N``, the number of voxels counted.
    """

    def __init__(self, rows, cols, counts, seg_labels, gt_labels):
        self.rows, self.cols, self.counts = rows, cols, counts
        self.seg_labels, self.gt_labels = seg_labels, gt_labels
        self.seg_sizes = np.bincount(rows, counts, minlength=len(seg_labels)).astype(np.int64)
        self.gt_sizes = np.bincount(cols, counts, minlength=len(gt_labels)).astype(np.int64)
        self.total = int(counts.sum())

    @property
    def table(self):
        """The table as a ``scipy.sparse.csr_array`` of shape ``(len(seg_labels), len(gt_labels))``."""
        from scipy import sparse
        return sparse.csr_array((self.counts, (self.rows, self.cols)), shape=(len(self.seg_labels),
                                                                               len(self.gt_labels)))

    def __repr__(self):
        return 'Contingency(%i seg segments x %i gt objects, %i non-zero entries, %i voxels)' % (
            len(self.seg_labels), len(self.gt_labels), len(self.counts), self.total)


def _compact(values):
    """``(labels, index)``: the distinct values (ascending) and each value's position among them."""
    if values.min() >= 0 and values.max() < 4 * values.size + 4096:  # small labels: O(N)
        as_index = values.astype(np.intp, copy=False)
        labels = np.flatnonzero(np.bincount(as_index))
        lut = np.empty(int(labels[-1]) + 1, np.intp)
        lut[labels] = np.arange(labels.size)
        return labels.astype(values.dtype), lut[as_index]
    labels = np.unique(values)
    return labels, np.searchsorted(labels, values)


def _count_pairs(code, n_codes):
    """``(codes, counts)``: the distinct values of the int array ``code`` (all in [0, n_codes)) and their counts."""
    if n_codes <= max(4 * code.size, 1 << 20):
        counts = np.bincount(code, minlength=n_codes)
        code = np.flatnonzero(counts)
        return code, counts[code]
    # a stable (radix or run-merging) sort is fast on label volumes, whose voxels come in runs
    code = np.sort(code.astype(np.uint32 if n_codes <= 2 ** 32 else np.int64), kind='stable')
    starts = np.flatnonzero(np.r_[True, code[1:] != code[:-1]])
    return code[starts].astype(np.int64), np.diff(np.r_[starts, code.size])


def contingency(seg, gt, ignore_seg=(), ignore_gt=(0,)):
    """Contingency table of ``seg`` against ``gt`` over the voxels whose labels are not ignored.

    Args:
        seg: Integer label volume (the segmentation to score).
        gt: Integer label volume of the same shape (the ground truth).
        ignore_seg: Seg labels whose voxels are left out (default: none).
        ignore_gt: Gt labels whose voxels are left out (default: 0, unlabelled/boundary).

    Returns:
        A :class:`Contingency`: ``n_ij`` = voxels with seg label ``i`` and gt label ``j``, for
        every pair that occurs (its ``.table`` is the scipy.sparse matrix).

    Raises:
        ValueError: non-integer labels or different shapes.
        NothingToScore: every voxel is ignored.
    """
    seg, gt = _label_pair(seg, gt)
    ignore_seg, ignore_gt = _ignore(ignore_seg, 'ignore_seg'), _ignore(ignore_gt, 'ignore_gt')
    keep_seg, keep_gt = _keep(seg, ignore_seg), _keep(gt, ignore_gt)
    keep = keep_gt if keep_seg is None else keep_seg if keep_gt is None else keep_seg & keep_gt
    s = seg.ravel() if keep is None else seg[keep]
    g = gt.ravel() if keep is None else gt[keep]
    if s.size == 0:
        raise NothingToScore('nothing to score: no voxel is left after leaving out gt labels %s and seg labels %s'
                             % (list(ignore_gt), list(ignore_seg)))
    seg_labels, si = _compact(s)
    gt_labels, gi = _compact(g)
    n_gt = len(gt_labels)
    code, counts = _count_pairs(si * n_gt + gi, len(seg_labels) * n_gt)
    rows, cols = np.divmod(code, n_gt)
    return Contingency(rows.astype(np.int64), cols.astype(np.int64), counts.astype(np.int64), seg_labels, gt_labels)


# ----------------------------------------------------------------------------------------------------
# Rand scores and variation of information (from a contingency table)
# ----------------------------------------------------------------------------------------------------
def _ratio(num, den):
    """``num / den``, and 1.0 when there is nothing to compare (``den == 0``)."""
    return float(num) / float(den) if den else 1.0


def _sum_sq(x, total):
    x = np.asarray(x, np.int64)
    if total < 3_000_000_000:  # N^2 fits into int64: exact
        return int(x @ x)
    x = x.astype(np.float64)
    return float(x @ x)


def _rand(c):
    """``(fscore, precision, recall)`` on ordered pairs of distinct voxels (see :func:`adapted_rand_error`)."""
    n = c.total
    both = _sum_sq(c.counts, n) - n
    seg_pairs = _sum_sq(c.seg_sizes, n) - n
    gt_pairs = _sum_sq(c.gt_sizes, n) - n
    return _ratio(2 * both, seg_pairs + gt_pairs), _ratio(both, seg_pairs), _ratio(both, gt_pairs)


def _voi_terms(c):
    """Per-entry terms of ``H(seg|gt)`` and ``H(gt|seg)`` in bits (their sums are the VOI split and merge)."""
    counts = c.counts.astype(np.float64)
    log_counts = np.log2(counts)
    split = counts * (np.log2(c.gt_sizes[c.cols]) - log_counts) / c.total
    merge = counts * (np.log2(c.seg_sizes[c.rows]) - log_counts) / c.total
    return split, merge


def _scores(c):
    fscore, precision, recall = _rand(c)
    split, merge = (float(t.sum()) for t in _voi_terms(c))
    return dict(rand_error=1.0 - fscore, rand_fscore=fscore, rand_split=recall, rand_merge=precision,
                adapted_rand_error=1.0 - fscore, voi_split=split, voi_merge=merge, voi=split + merge)


def adapted_rand_error(seg, gt, ignore_gt=(0,)):
    """Adapted Rand error of CREMI and SNEMI3D: 1 - F-score of the Rand pair precision and recall.

    Definition (n_ij, a_i, b_j, N as in the module docstring; pairs are ordered pairs of two
    different voxels, so every sum below is twice the number of unordered pairs)::

        TP        = sum_ij n_ij^2 - N      pairs in the same segment in seg AND in gt
        precision = TP / (sum_i a_i^2 - N) fraction of seg's same-segment pairs that gt joins too
                                           (lowered by merges)
        recall    = TP / (sum_j b_j^2 - N) fraction of gt's same-object pairs that seg joins too
                                           (lowered by splits)
        are       = 1 - 2 TP / ((sum_i a_i^2 - N) + (sum_j b_j^2 - N))
                  = 1 - 2 precision recall / (precision + recall)

    A ratio without pairs to compare (denominator 0) is 1. Background: voxels whose gt label is
    in ``ignore_gt`` are left out; seg label 0 is an ordinary segment (all seg-0 voxels are one
    segment). This is ``skimage.metrics.adapted_rand_error(gt, seg, ignore_labels=(0,))``'s
    error; skimage returns precision and recall in the swapped order (scikit-image issue
    #6485): its second value is the recall defined here.

    Args:
        seg: Integer label volume.
        gt: Integer ground-truth label volume of the same shape.
        ignore_gt: Gt labels whose voxels are not scored.

    Returns:
        dict(are, precision, recall) of floats.
    """
    fscore, precision, recall = _rand(contingency(seg, gt, ignore_gt=ignore_gt))
    return dict(are=1.0 - fscore, precision=precision, recall=recall)


def rand_scores(seg, gt, ignore_gt=(0,)):
    """Foreground-restricted Rand scores of ISBI 2012: V_rand, its split and merge parts, Rand error.

    Definition (TP, a_i, b_j, N as in :func:`adapted_rand_error`, on gt foreground only)::

        rand_split  = V_rand_split = TP / (sum_j b_j^2 - N)   (1: no splits; = recall)
        rand_merge  = V_rand_merge = TP / (sum_i a_i^2 - N)   (1: no merges; = precision)
        rand_fscore = V_rand = 2 / (1 / rand_split + 1 / rand_merge)
        rand_error  = 1 - V_rand   (== adapted_rand_error(...)['are'], always)

    Conventions: voxels whose gt label is in ``ignore_gt`` (gt background 0) are left out; seg
    label 0 is an ordinary segment (SNEMI3D / scikit-image). ISBI 2012's Fiji script
    (``RandError.foregroundRestrictedStatsN2``) differs in two details: it counts pairs with
    ``n_ij^2`` (a voxel paired with itself included) instead of ``n_ij^2 - n_ij``, and treats
    seg-0 voxels as singletons; its numbers can therefore differ slightly from these, most for
    small sections and segmentations with many seg-0 voxels inside gt objects.

    Args:
        seg, gt, ignore_gt: As :func:`adapted_rand_error`.

    Returns:
        dict(rand_error, rand_fscore, rand_split, rand_merge) of floats.
    """
    fscore, precision, recall = _rand(contingency(seg, gt, ignore_gt=ignore_gt))
    return dict(rand_error=1.0 - fscore, rand_fscore=fscore, rand_split=recall, rand_merge=precision)


def variation_of_information(seg, gt, ignore_seg=(), ignore_gt=(0,)):
    """Variation of information (CREMI): split and merge conditional entropies in bits (log base 2).

    Definition (p_ij = n_ij / N, p_i = a_i / N, q_j = b_j / N)::

        split = H(seg | gt) = - sum_ij p_ij log2(p_ij / q_j)   over-segmentation (0: no splits)
        merge = H(gt | seg) = - sum_ij p_ij log2(p_ij / p_i)   under-segmentation (0: no merges)
        total = split + merge

    As CREMI's ``voi(reconstruction, groundtruth, ignore_groundtruth=[0])``: voxels whose gt label
    is in ``ignore_gt`` (or seg label in ``ignore_seg``) are left out before the probabilities
    are formed; seg label 0 is an ordinary segment unless it is in ``ignore_seg``.
    ``skimage.metrics.variation_of_information(gt, seg, ignore_labels=ignore_gt)`` returns
    ``[split, merge]`` in this order.

    Args:
        seg: Integer label volume.
        gt: Integer ground-truth label volume of the same shape.
        ignore_seg, ignore_gt: Labels whose voxels are not scored.

    Returns:
        dict(split, merge, total) of floats, in bits.
    """
    split, merge = (float(t.sum()) for t in _voi_terms(contingency(seg, gt, ignore_seg, ignore_gt)))
    return dict(split=split, merge=merge, total=split + merge)


# ----------------------------------------------------------------------------------------------------
# per-section scores
# ----------------------------------------------------------------------------------------------------
def per_section(metric, *volumes, **kwargs):
    """Apply ``metric`` to every section (along axis 0) and average its values, weighting sections equally.

    Args:
        metric: A function of one section of each volume (and ``kwargs``, passed unchanged)
            returning a dict of numbers; it raises :class:`NothingToScore` for a section
            without voxels to score (all ignored), which is then skipped.
        *volumes: ``(z, x, y)`` arrays of one shape (an ``(x, y)`` image is one section).

    Returns:
        dict: for every numeric value of ``metric``, its mean over the scored sections; and
        ``sections``, the list of the per-section dicts (each with its section index ``z``);
        ``skipped_sections``, the number of sections skipped.

    Raises:
        NothingToScore: every section was skipped.
    """
    names = ('seg', 'gt') if len(volumes) == 2 else ['volume %i' % i for i in range(len(volumes))]
    volumes = [_sections(np.asarray(v), name) for v, name in zip(volumes, names)]
    for v, name in zip(volumes[1:], names[1:]):
        _same_shape(volumes[0], v, names[0], name)
    sections, skipped = [], 0
    for z in range(volumes[0].shape[0]):
        try:
            result = metric(*[v[z] for v in volumes], **kwargs)
        except NothingToScore:
            skipped += 1
            continue
        sections.append(dict(z=z, **result))
    if not sections:
        raise NothingToScore('nothing to score: all %i sections hold only ignored voxels' % skipped)
    keys = [k for k, v in sections[0].items()
            if k != 'z' and isinstance(v, numbers.Real) and not isinstance(v, bool)]
    mean = {k: float(np.mean([s[k] for s in sections])) for k in keys}
    return dict(mean, sections=sections, skipped_sections=skipped)


def segmentation_scores(seg, gt, two_d=False, ignore_gt=(0,)):
    """All segmentation scores of ``seg`` against ``gt``, of the volume or per section.

    Args:
        seg: Integer label volume ``(z, x, y)``.
        gt: Integer ground-truth label volume of the same shape.
        two_d: Score each section along axis 0 on its own (labels of different sections are
            unrelated) and average, weighting sections equally; sections whose gt is all
            ignored are skipped.
        ignore_gt: Gt labels whose voxels are not scored (seg label 0 is an ordinary segment).

    Returns:
        dict with ``rand_error``, ``rand_fscore``, ``rand_split``, ``rand_merge`` (see
        :func:`rand_scores`), ``adapted_rand_error`` (:func:`adapted_rand_error`, the same
        number as ``rand_error``), ``voi_split``, ``voi_merge`` and ``voi`` in bits
        (:func:`variation_of_information`). With ``two_d``: these are the means over the
        scored sections, ``sections`` lists the per-section dicts (with ``z``) and
        ``skipped_sections`` counts the skipped sections.
    """
    seg, gt = _label_pair(seg, gt)
    if two_d:
        return per_section(segmentation_scores, seg, gt, ignore_gt=ignore_gt)
    return _scores(contingency(seg, gt, ignore_gt=ignore_gt))


# ----------------------------------------------------------------------------------------------------
# worst errors
# ----------------------------------------------------------------------------------------------------
def _largest(c, n):
    """The ``n`` largest splits and merges of one contingency table (entries without ``z``)."""
    split_terms, merge_terms = _voi_terms(c)
    out = {}
    for kind, groups, others, terms, labels, other_labels, sizes in (
            ('splits', c.cols, c.rows, split_terms, c.gt_labels, c.seg_labels, c.gt_sizes),
            ('merges', c.rows, c.cols, merge_terms, c.seg_labels, c.gt_labels, c.seg_sizes)):
        per_group = np.bincount(groups, terms, minlength=len(labels))
        order = np.argsort(-per_group, kind='stable')[:n]
        entries = []
        for g in order[per_group[order] > 0]:
            sel = np.flatnonzero(groups == g)
            sel = sel[np.argsort(-c.counts[sel], kind='stable')]
            entries.append(dict(label=int(labels[g]), contribution=float(per_group[g]),
                                voxels=int(sizes[g]), n_other=int(sel.size),
                                other_labels=[int(v) for v in other_labels[others[sel[:_MAX_OTHER_LABELS]]]],
                                other_voxels=[int(v) for v in c.counts[sel[:_MAX_OTHER_LABELS]]]))
        out[kind] = entries
    return out


def worst_errors(seg, gt, n=5, ignore_gt=(0,), two_d=False):
    """The ``n`` largest splits and merges, ranked by their share of the VOI split and merge.

    A split is a gt object cut into several seg segments; its contribution is its term of
    H(seg | gt), ``-sum_i n_ij / N log2(n_ij / b_j)`` for gt object ``j`` (the contributions of all
    gt objects sum to the VOI split). A merge is a seg segment covering several gt objects, with
    contribution ``-sum_j n_ij / N log2(n_ij / a_i)`` for segment ``i`` (summing to the VOI merge).
    Voxels with gt labels in ``ignore_gt`` are left out, as for the scores.

    Args:
        seg, gt: Integer label volumes ``(z, x, y)`` of one shape (or ``(x, y)`` images).
        n: How many of each to return.
        ignore_gt: Gt labels whose voxels are not scored.
        two_d: Rank the errors of every section on its own (as :func:`segmentation_scores`
            with ``two_d``): contributions are divided by the number of scored sections, so
            they sum to the section-averaged VOI split and merge.

    Returns:
        dict(splits=[...], merges=[...]), each a list of up to ``n`` dicts, largest first, with
        only errors of positive contribution: ``label`` (the gt object of a split, the seg
        segment of a merge), ``contribution`` (bits), ``voxels`` (its size), ``other_labels``
        and ``other_voxels`` (the overlapping labels of the other side, largest overlap first,
        at most 10), ``n_other`` (how many overlap it), and ``z``: the section where the error
        shows most (3D: the section with the most voxels of the object outside its largest
        overlap; 2D: the section it was found in).
    """
    seg, gt = _label_pair(seg, gt)
    if not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError('n must be a positive number of errors, got %r' % (n,))
    if two_d:
        seg_s, gt_s = _sections(seg, 'seg'), _sections(gt, 'gt')
        found = []
        for z in range(seg_s.shape[0]):
            try:
                found.append((z, _largest(contingency(seg_s[z], gt_s[z], ignore_gt=ignore_gt), n)))
            except NothingToScore:
                continue
        if not found:
            raise NothingToScore('nothing to score: all %i sections hold only ignored voxels' % seg_s.shape[0])
        out = {}
        for kind in ('splits', 'merges'):
            entries = [dict(e, contribution=e['contribution'] / len(found), z=z) for z, f in found for e in f[kind]]
            out[kind] = sorted(entries, key=lambda e: -e['contribution'])[:n]
        return out
    out = _largest(contingency(seg, gt, ignore_gt=ignore_gt), n)
    if seg.ndim not in (2, 3):
        return out
    keep_gt = _keep(gt, _ignore(ignore_gt, 'ignore_gt'))
    for kind, own, other in (('splits', gt, seg), ('merges', seg, gt)):
        for e in out[kind]:
            where = (own == e['label']) & (other != e['other_labels'][0])
            if kind == 'merges' and keep_gt is not None:
                where &= keep_gt
            e['z'] = 0 if seg.ndim == 2 else int(np.argmax(where.reshape(where.shape[0], -1).sum(axis=1)))
    return out
