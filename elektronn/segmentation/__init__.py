"""From probabilities to neurons: seeded watershed, affinity agglomeration, block-wise segmentation of volumes.

In memory (NumPy arrays ``(z, x, y)``, labels ``1 .. n`` with 0 unassigned):

* :func:`watershed_boundaries`: seeded watershed of a boundary (membrane) map, 2D per section or 3D;
* :func:`watershed_affinities`, :func:`agglomerate`, :func:`segment_affinities`: watershed on an
  affinity graph and agglomeration of its fragments by mean affinity, at one or several thresholds;
* :class:`Segmenter`: the settings of a segmentation, callable on a map.

Volumes of any size (HDF5 or Zarr, here or on a Dask cluster): :func:`segment_volume` and the
command ``elektronn-segment``. Scores of a segmentation: :mod:`elektronn.evaluation`.
"""
from elektronn.segmentation.agglomeration import agglomerate, segment_affinities
from elektronn.segmentation.labels import relabel_consecutive, remove_small_segments, segment_sizes
from elektronn.segmentation.segmenter import KINDS, Segmenter, select_channels
from elektronn.segmentation.volume_segmentation import SegmentationError, segment_volume
from elektronn.segmentation.watershed import affinities_to_boundaries, watershed_affinities, watershed_boundaries

__all__ = ['watershed_boundaries', 'affinities_to_boundaries', 'watershed_affinities', 'agglomerate',
           'segment_affinities', 'relabel_consecutive', 'remove_small_segments', 'segment_sizes', 'Segmenter',
           'select_channels', 'KINDS', 'segment_volume', 'SegmentationError']
