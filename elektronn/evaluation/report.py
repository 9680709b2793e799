"""Everything ``elektronn-evaluate`` reports: all scores that apply (:func:`evaluate`) and their text table
(:func:`format_table`)."""
import numpy as np

from elektronn.evaluation.boundary import best_boundary_prf, boundary_prf, isbi_pixel_error
from elektronn.evaluation.metrics import _ignore, _label_pair, _same_shape, segmentation_scores, worst_errors

__all__ = ['evaluate', 'format_table']


def evaluate(seg, gt, boundary=None, gt_boundary=None, two_d=False, ignore_gt=(0,), n_worst=5):
    """All scores that apply: segmentation scores, worst errors and (with both maps) boundary pixel scores.

    Args:
        seg, gt: Integer label volumes ``(z, x, y)`` (see :func:`segmentation_scores`).
        boundary: Optional membrane probability map (floats or uint8), same shape.
        gt_boundary: Optional 0/1 ground-truth membrane map, same shape; boundary scores are
            computed when both maps are given (pooled over the volume in either mode).
        two_d: Per-section scores, averaged (see :func:`segmentation_scores`).
        ignore_gt: Gt labels whose voxels are not scored.
        n_worst: Splits and merges to list (:func:`worst_errors`).

    Returns:
        dict: ``mode`` ('2d' or '3d'), ``shape``, ``ignore_gt``, ``segmentation``
        (:func:`segmentation_scores`), ``worst_errors`` (:func:`worst_errors`) and, with both
        maps, ``boundary`` (:func:`boundary_prf` at 0.5), ``boundary_best``
        (:func:`best_boundary_prf`) and ``isbi_pixel_error`` (:func:`isbi_pixel_error`).
    """
    seg, gt = _label_pair(seg, gt)
    if (boundary is None) != (gt_boundary is None):
        raise ValueError('boundary and gt_boundary go together: give both for boundary scores, or neither')
    results = dict(mode='2d' if two_d else '3d', shape=list(seg.shape), ignore_gt=list(_ignore(ignore_gt, 'ignore_gt')),
                   segmentation=segmentation_scores(seg, gt, two_d=two_d, ignore_gt=ignore_gt),
                   worst_errors=worst_errors(seg, gt, n=n_worst, ignore_gt=ignore_gt, two_d=two_d))
    if boundary is not None:
        _same_shape(np.asarray(boundary), seg, 'boundary', 'seg')
        results['boundary'] = boundary_prf(boundary, gt_boundary, 0.5)
        results['boundary_best'] = best_boundary_prf(boundary, gt_boundary)
        results['isbi_pixel_error'] = isbi_pixel_error(boundary, gt_boundary)
    return results


_TABLE_ROWS = (
    ('rand_error', 'Rand error (1 - V_rand)'),
    ('rand_fscore', 'V_rand (Rand F-score)'),
    ('rand_split', 'V_rand split (pair recall)'),
    ('rand_merge', 'V_rand merge (pair precision)'),
    ('adapted_rand_error', 'adapted Rand error (CREMI)'),
    ('voi_split', 'VOI split H(seg|gt) [bits]'),
    ('voi_merge', 'VOI merge H(gt|seg) [bits]'),
    ('voi', 'VOI total [bits]'),
)


def format_table(results):
    """A text table of :func:`evaluate`'s results (or of :func:`segmentation_scores`): one metric a line.

    Returns:
        str: lines ``metric  value``, the values aligned in one column.
    """
    if 'segmentation' not in results:
        results = dict(segmentation=results, mode='2d' if 'sections' in results else '3d')
    seg = results['segmentation']
    rows = [('metric', 'value')]
    if results.get('mode') == '2d':
        rows.append(('mode', '2D: mean of %i sections (%i skipped: gt all ignored)'
                     % (len(seg['sections']), seg['skipped_sections'])))
    else:
        rows.append(('mode', '3D: whole volume'))
    rows += [(label, '%.4f' % seg[key]) for key, label in _TABLE_ROWS]
    for name, key in (('0.5', 'boundary'), ('best', 'boundary_best')):
        r = results.get(key)
        if r:
            if name == 'best':
                rows.append(('boundary best threshold', '%.4f' % r['threshold']))
            rows += [('boundary %s @%s' % (m, name), '%.4f' % r[m]) for m in ('precision', 'recall', 'f1')]
            rows.append(('pixel error @%s' % name, '%.4f' % r['error']))
    if results.get('isbi_pixel_error'):
        rows.append(('ISBI 2012 pixel error', '%.4f' % results['isbi_pixel_error']['pixel_error']))
    worst = results.get('worst_errors') or {}
    for kind, own, other in (('splits', 'gt object', 'segments'), ('merges', 'segment', 'gt objects')):
        for i, e in enumerate(worst.get(kind, []), 1):
            where = '' if e.get('z') is None else ', section %i' % e['z']
            rows.append(('worst %s %i' % (kind[:-1], i), '%.4f bits: %s %i (%i voxels) over %i %s%s'
                         % (e['contribution'], own, e['label'], e['voxels'], e['n_other'], other, where)))
    width = max(len(r[0]) for r in rows) + 2
    return '\n'.join(name.ljust(width) + value for name, value in rows)
