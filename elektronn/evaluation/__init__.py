"""Segmentation error metrics for EM volumes, and the scores of a boundary (membrane) probability map.

All segmentation metrics come from one contingency table (:func:`contingency`) of the
segmentation ``seg`` against the ground truth ``gt``, over the voxels whose gt label is not
ignored (default: gt label 0, unlabelled or boundary). Seg label 0 is an ordinary segment.
Arrays are ``(z, x, y)``; with ``two_d=True`` every section along axis 0 is scored on its own
and the scores are averaged, weighting sections equally.

* :func:`adapted_rand_error` (CREMI, SNEMI3D; as scikit-image's): 1 - F-score of the pair
  precision (pairs of voxels in one seg segment that are in one gt object too; lowered by
  merges) and the pair recall (pairs in one gt object that are in one seg segment too; lowered
  by splits).
* :func:`rand_scores` (ISBI 2012 names): V_rand = that F-score, V_rand_split = the recall,
  V_rand_merge = the precision, Rand error = 1 - V_rand (the adapted Rand error).
* :func:`variation_of_information` (CREMI): split = H(seg | gt), merge = H(gt | seg), in bits.
* :func:`segmentation_scores` (all of these, 3D or per section), :func:`per_section`,
  :func:`worst_errors` (the largest splits and merges by their VOI share).
* :func:`boundary_prf` and :func:`best_boundary_prf` (:mod:`elektronn.evaluation.boundary`): pixel precision, recall and F1 of the
  thresholded map against a 0/1 membrane ground truth, at one threshold or the best one;
  :func:`isbi_pixel_error`, the ISBI 2012 challenge's pixel error (1 - the best F-score of the interior);
  :func:`gt_segmentation_from_boundaries` turns such a membrane map into a gt segmentation.
* :func:`evaluate` (everything that applies) and :func:`format_table` (a text table;
  :mod:`elektronn.evaluation.report`), as used by
  ``elektronn-evaluate``; :mod:`elektronn.evaluation.figures` draws its ``--png`` figure.

For example, a segmentation that cuts one of two objects in halves::

    >>> import numpy as np
    >>> from elektronn.evaluation import rand_scores, variation_of_information
    >>> gt = np.array([[[1, 1, 1, 1, 2, 2, 2, 2]]])     # (z, x, y): two objects
    >>> seg = np.array([[[1, 1, 3, 3, 2, 2, 2, 2]]])    # the first one split
    >>> scores = rand_scores(seg, gt)
    >>> round(scores['rand_split'], 3), scores['rand_merge'], round(scores['rand_error'], 3)
    (0.667, 1.0, 0.2)
    >>> variation_of_information(seg, gt)               # bits
    {'split': 0.5, 'merge': 0.0, 'total': 0.5}
    >>> variation_of_information(gt, seg)               # the other way round: a merge
    {'split': 0.0, 'merge': 0.5, 'total': 0.5}
"""
from elektronn.evaluation.boundary import (DEFAULT_THRESHOLDS, best_boundary_prf, boundary_prf,
                                           gt_segmentation_from_boundaries, isbi_pixel_error)
from elektronn.evaluation.metrics import (SCORE_KEYS, Contingency, NothingToScore, adapted_rand_error, contingency,
                                          per_section, rand_scores, segmentation_scores, variation_of_information,
                                          worst_errors)
from elektronn.evaluation.report import evaluate, format_table

__all__ = ['DEFAULT_THRESHOLDS', 'SCORE_KEYS', 'Contingency', 'NothingToScore', 'adapted_rand_error',
           'best_boundary_prf', 'boundary_prf', 'contingency', 'evaluate', 'format_table',
           'gt_segmentation_from_boundaries', 'isbi_pixel_error', 'per_section', 'rand_scores', 'segmentation_scores',
           'variation_of_information', 'worst_errors']
