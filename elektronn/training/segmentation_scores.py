"""Segmentation scores of the validation cubes during training (config ``valid_segmentation_metrics``).

At a history step the validation cubes of an ``'img-img'`` run are predicted densely (the
network's ``predictDense``, max-fragment-pooling), segmented with a
:class:`~elektronn.segmentation.Segmenter` and scored against their labels with
:func:`elektronn.evaluation.segmentation_scores`:

* ``'nll'`` targets (class labels): the labels of the boundary class (``channel``, default 1:
  ``barrier`` labels with 1 = membrane) are the ground-truth boundaries; the ground-truth
  segmentation is the connected components of the other voxels
  (:func:`~elektronn.evaluation.gt_segmentation_from_boundaries`, per section with ``two_d``);
  the segmentation reads the probability map of that class. Unlabelled voxels (``-1``) are
  ignored.
* ``'affinity'`` and ``'malis'`` targets: the labels are object IDs, the ground truth as it is
  (0 ignored); the segmentation reads the affinity graph.

The scores are averaged over the validation cubes (weighted by their labelled voxels), on the
voxels that are both predicted (inside the network's offset) and labelled (labels may be smaller
than the raw cube, centred in it).
"""
import contextlib
import dataclasses
import io
import time

import numpy as np

__all__ = ['SETTINGS', 'SCORE_NAMES', 'normalise_settings', 'ValidSegmentationScorer']

#: Settings of ``valid_segmentation_metrics`` besides the :class:`~elektronn.segmentation.Segmenter` fields.
SETTINGS = ('channel', 'every')
#: What is recorded per evaluation (the history CSV's ``valid_<name>`` columns).
SCORE_NAMES = ('rand_error', 'voi_split', 'voi_merge', 'adapted_rand_error')


def normalise_settings(value):
    """The config value as a dict with ``every`` and ``channel`` (``True``: the defaults; ``None``/``False``: ``None``).

    Raises:
        ValueError: an unknown setting or a bad value (the message names it).
    """
    from elektronn.segmentation import Segmenter
    if value is None or value is False:
        return None
    settings = {} if value is True else dict(value)
    fields = [f.name for f in dataclasses.fields(Segmenter)]
    unknown = [k for k in settings if k not in fields + list(SETTINGS)]
    if unknown:
        raise ValueError('has no setting %s (settings: %s)' % (', '.join(map(repr, unknown)),
                                                                ', '.join(fields + list(SETTINGS))))
    every = settings.get('every', 1)
    if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
        raise ValueError("setting 'every' (history steps between evaluations) must be an integer >= 1, got %r"
                         % (every,))
    channel = settings.get('channel')
    if channel is not None and (isinstance(channel, bool) or not isinstance(channel, (int, np.integer))
                                or channel < 0):
        raise ValueError("setting 'channel' must be a class index >= 0 or None, got %r" % (channel,))
    Segmenter(**{k: v for k, v in settings.items() if k in fields})  # validates the segmentation settings
    return dict(settings, every=int(every), channel=channel)


class ValidSegmentationScorer:
    """Predict, segment and score the validation cubes.

    Args:
        settings: The normalised config value (:func:`normalise_settings`).
        target: The training target (``'nll'``, ``'affinity'``, ``'malis'``).
        offset: The network's offset ``(z, x, y)`` (the border it cannot predict).
    """

    def __init__(self, settings, target, offset):
        self.settings, self.target, self.offset = dict(settings), target, tuple(int(o) for o in offset)
        self.every = int(self.settings.get('every', 1))
        self.evaluations = 0

    def due(self):
        """Whether this history step evaluates (every ``every``-th one, the first included)."""
        self.evaluations += 1
        return (self.evaluations - 1) % self.every == 0

    def _segmenter(self, n_channels):
        from elektronn.segmentation import Segmenter, select_channels
        fields = [f.name for f in dataclasses.fields(Segmenter)]
        segmenter = Segmenter(**{k: v for k, v in self.settings.items() if k in fields})
        affinities = self.target in ('affinity', 'malis')
        kind, channels = select_channels(n_channels, 'affinities' if affinities else 'boundaries',
                                         None if affinities else self.settings.get('channel'),
                                         'the network output')
        return dataclasses.replace(segmenter, kind=kind), channels

    def ground_truth(self, labels, segmenter, boundary_class):
        """The ground-truth segmentation of a label cube ``(z, x, y)`` (see the module docstring)."""
        from elektronn.evaluation import gt_segmentation_from_boundaries
        labels = np.asarray(labels)
        if self.target in ('affinity', 'malis'):
            return np.where(labels > 0, labels, 0).astype(np.uint64)
        gt = gt_segmentation_from_boundaries((labels == boundary_class).astype(np.uint8), two_d=segmenter.two_d)
        gt[labels < 0] = 0
        return gt

    def common_region(self, prob, labels, raw_shape):
        """The probabilities ``(n, z, x, y)`` and labels of the voxels that have both.

        The prediction covers the raw cube inset by the network's offset, the labels the raw cube
        inset by their margin (centred, as CNNData expects them); both are cut to the overlap.
        """
        raw_zxy = (raw_shape[0],) + tuple(raw_shape[2:])
        start = [max(o, (r - l) // 2) for o, r, l in zip(self.offset, raw_zxy, labels.shape)]
        stop = [r - s for r, s in zip(raw_zxy, start)]
        if any(b <= a for a, b in zip(start, stop)):
            raise ValueError('a validation cube of %s (z, x, y) voxels has no voxel both predicted (offset %s) and '
                             'labelled (labels %s)' % (raw_zxy, self.offset, labels.shape))
        pred_index = tuple(slice(a - o, b - o) for a, b, o in zip(start, stop, self.offset))
        lab_index = tuple(slice(a - (r - l) // 2, b - (r - l) // 2)
                          for a, b, r, l in zip(start, stop, raw_zxy, labels.shape))
        return prob[(slice(None),) + pred_index], labels[lab_index]

    def score(self, cnn, cubes):
        """Scores of ``cubes``, ``[(raw (z, ch, x, y), labels (z, x, y)), ...]``.

        Returns:
            A dict with :data:`SCORE_NAMES`, ``segments`` and ``seconds`` (the whole evaluation).
        """
        from elektronn.evaluation import segmentation_scores
        t0 = time.time()
        totals, weight, segments = dict.fromkeys(SCORE_NAMES, 0.0), 0, 0
        for raw, labels in cubes:
            with contextlib.redirect_stdout(io.StringIO()):  # predictDense reports its tiling
                prob = cnn.predictDense(np.ascontiguousarray(np.asarray(raw).transpose(1, 2, 3, 0)))
            prob = np.asarray(prob).transpose(0, 3, 1, 2)  # (n_lab, z', x', y')
            prob, labels = self.common_region(prob, np.asarray(labels), np.asarray(raw).shape)
            segmenter, channels = self._segmenter(prob.shape[0])
            seg = segmenter(prob[list(channels)])
            gt = self.ground_truth(labels, segmenter, channels[0])
            scores = segmentation_scores(seg, gt, two_d=segmenter.two_d)
            n = int(np.count_nonzero(gt))
            for name in SCORE_NAMES:
                totals[name] += float(scores[name]) * n
            weight += n
            segments += int(seg.max())
        result = {name: totals[name] / weight if weight else float('nan') for name in SCORE_NAMES}
        result.update(segments=segments, seconds=time.time() - t0)
        return result
