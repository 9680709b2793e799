"""What to segment and how: the settings of a segmentation, and which channels of a probability map it uses.

A :class:`Segmenter` only stores settings (it is sent to Dask workers and kept in the record of an
output); calling it segments an in-memory map with the functions of
:mod:`elektronn.segmentation.watershed` and :mod:`elektronn.segmentation.agglomeration`.
"""
import dataclasses

import numpy as np

from elektronn.segmentation.agglomeration import segment_affinities
from elektronn.segmentation.labels import check_label_dtype
from elektronn.segmentation.watershed import watershed_boundaries

__all__ = ['Segmenter', 'select_channels', 'KINDS']

#: ``'boundaries'``: one membrane/boundary probability map; ``'affinities'``: an affinity graph of
#: 3 edge directions (z, x, y).
KINDS = ('boundaries', 'affinities')


@dataclasses.dataclass(frozen=True)
class Segmenter:
    """Settings of a seeded watershed (and, on affinities, the agglomeration that follows).

    Args:
        kind: ``'boundaries'`` or ``'affinities'`` (see :data:`KINDS`); ``None``: whichever the
            map's channels suggest (:func:`select_channels`), decided by :func:`~elektronn.segmentation.segment_volume`.
        threshold: Voxels with a boundary probability below it are cell interior, where the seeds
            are (on affinities the boundary map is 1 - the mean affinity of a voxel's edges).
        min_seed_distance: Least distance between two seeds, in voxels.
        min_size: Segments of fewer voxels become 0 (unassigned).
        two_d: Segment each section (axis z) on its own: for anisotropic data such as ssTEM.
        merge_threshold: Affinities only: fragments are merged while the mean affinity between
            them is above it.
        sampling: Voxel size ``(z, x, y)`` for the distance transform in 3D (``None``: isotropic).
        dtype: ``'uint32'`` or ``'uint64'``: the labels' type.
    """
    kind: str = None
    threshold: float = 0.5
    min_seed_distance: int = 3
    min_size: int = 0
    two_d: bool = False
    merge_threshold: float = 0.5
    sampling: tuple = None
    dtype: str = 'uint32'

    def __post_init__(self):
        if self.kind not in KINDS + (None,):
            raise ValueError('kind must be one of %s (or None), got %r' % (', '.join(KINDS), self.kind))
        for name in ('threshold', 'merge_threshold'):
            value = getattr(self, name)
            if not 0 < value < 1:
                raise ValueError('%s must be between 0 and 1 (exclusive), got %r' % (name, value))
        if int(self.min_seed_distance) < 1:
            raise ValueError('min_seed_distance must be at least 1 voxel, got %r' % (self.min_seed_distance,))
        if int(self.min_size) < 0:
            raise ValueError('min_size must be >= 0 voxels, got %r' % (self.min_size,))
        if self.sampling is not None and len(self.sampling) != 3:
            raise ValueError('sampling must be the voxel size (z, x, y), got %r' % (self.sampling,))
        object.__setattr__(self, 'dtype', check_label_dtype(self.dtype).name)

    @property
    def n_maps(self):
        """Maps the segmentation reads: 1 boundary map or 3 affinity directions."""
        return 1 if self.kind == 'boundaries' else 3

    def __call__(self, maps, min_size=None):
        """Segment ``maps``.

        Args:
            maps: ``(n_maps, z, x, y)`` probabilities, float in [0, 1] or uint8 (divided by 255).
            min_size: Instead of :attr:`min_size` (block-wise work removes small segments only
                once the blocks are joined: ``0``).

        Returns:
            Labels ``(z, x, y)`` of :attr:`dtype`, ``1 .. n``, 0 = unassigned.
        """
        if self.kind is None:
            raise ValueError('the kind of segmentation is not set: Segmenter(kind=%s)' % ' or '.join(map(repr, KINDS)))
        maps = np.asarray(maps)
        if maps.ndim != 4 or maps.shape[0] != self.n_maps:
            raise ValueError('%s segmentation needs maps of shape (%i, z, x, y), got %s'
                             % (self.kind, self.n_maps, maps.shape))
        min_size = self.min_size if min_size is None else int(min_size)
        if self.kind == 'boundaries':
            return watershed_boundaries(maps[0], threshold=self.threshold, min_seed_distance=self.min_seed_distance,
                                        min_size=min_size, two_d=self.two_d, sampling=self.sampling,
                                        dtype=np.dtype(self.dtype))
        return segment_affinities(maps, thresholds=(self.merge_threshold,), threshold=self.threshold,
                                  min_seed_distance=self.min_seed_distance, min_size=min_size, two_d=self.two_d,
                                  dtype=np.dtype(self.dtype))[0]

    def describe(self):
        """A one-line summary for logs."""
        text = '%s watershed (%s, threshold %g, seeds >= %i voxels apart' % (
            'seeded' if self.kind == 'boundaries' else 'affinity', '2D per section' if self.two_d else '3D',
            self.threshold, self.min_seed_distance)
        if self.kind == 'affinities':
            text += ', merged while mean affinity > %g' % self.merge_threshold
        return text + (', segments < %i voxels removed)' % self.min_size if self.min_size else ')')


def select_channels(n_channels, kind=None, channel=None, name='the probability map'):
    """The kind of segmentation and the channels it reads from a map of ``n_channels`` channels.

    Without ``kind``, 3 channels (an affinity graph) or 6 (an ELEKTRONN affinity network's
    output: 2 classes per edge direction) mean affinities, anything else a boundary map. A
    boundary map is channel ``channel``, by default the only one or, of two, channel 1 (the
    membrane class of a 2-class network trained on ``barrier`` labels).

    Returns:
        ``(kind, channels)``.

    Raises:
        ValueError: the channels do not fit (the message says which option fixes it).
    """
    if kind is None:
        kind = 'affinities' if n_channels in (3, 6) and channel is None else 'boundaries'
    if kind not in KINDS:
        raise ValueError('kind must be one of %s, got %r' % (', '.join(KINDS), kind))
    if kind == 'affinities':
        if channel is not None:
            raise ValueError('a channel is chosen only for a boundary map; affinities use 3 channels')
        if n_channels == 3:
            return kind, (0, 1, 2)
        if n_channels == 6:
            return kind, (1, 3, 5)
        raise ValueError('%s has %i channels; affinities need 3 (z, x, y edges) or 6 (2 classes per edge)'
                         % (name, n_channels))
    if channel is None:
        if n_channels > 2:
            raise ValueError('%s has %i channels: choose the boundary channel (--channel)' % (name, n_channels))
        channel = n_channels - 1
    if not 0 <= int(channel) < n_channels:
        raise ValueError('channel %r does not exist: %s has %i channel(s) (0 .. %i)'
                         % (channel, name, n_channels, n_channels - 1))
    return kind, (int(channel),)
