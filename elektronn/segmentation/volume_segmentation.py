"""Segment a probability map of any size block by block, here or on a Dask cluster (``elektronn-segment``).

The map (a boundary map or an affinity graph, HDF5 or Zarr, as ``elektronn-predict`` writes it)
is cut into blocks (:class:`~elektronn.inference.blocks.BlockPlan`); three passes over the blocks,
each on the block machinery of prediction (:func:`~elektronn.inference.runners.run_blocks`: in
this process or on Dask workers, with a progress bar), make one consistent labelling:

1. *Fragments*: every block is segmented with a halo of context around it (the
   :class:`~elektronn.segmentation.segmenter.Segmenter`, small segments kept); the labels of its
   core are numbered ``1 .. n`` and written to a work array. Each block also writes the labels
   its segmentation gave to the first voxel plane of its upper neighbours (it sees them in its
   halo): the *face planes*.
2. *Matching*: for every face between two blocks, the upper block's own labels on its first
   plane are compared with the labels the lower block gave the same voxels. Two fragments are
   one segment when they share at least ``face_overlap`` of the smaller one's voxels on the
   plane. With a halo larger than the segmentation's reach (a few cell radii) both blocks label
   those voxels alike and the matching is exact. Fragments are joined over all faces
   (connected components), their sizes summed, segments below ``min_size`` voxels dropped (0),
   and the rest numbered ``1 .. N`` (in the order of their first block): the *mapping*, stored.
3. *Relabelling*: every block's fragments are mapped to the final labels and written to the
   output.

Progress is recorded after each block of passes 1 and 3 (:class:`~elektronn.inference.blocks.BlockLedger`)
and the mapping is stored before pass 3, so an interrupted run resumes where it stopped
(``resume=True`` / ``--resume``); pass 2 only reads and is repeated. The work arrays live in a
group ``<key>_work`` next to the output and are removed once it is complete. The output's
attribute ``elektronn_segmentation`` (JSON) records the input, the settings, the block shape and
the status (``'fragments'``, ``'relabelling'``, ``'complete'``) and, when complete, the number of
segments. Zarr outputs are OME-Zarr label images ``(z, x, y)``; HDF5 outputs keep the map's
spatial axis order.
"""
import dataclasses
import json
import logging
import os
import shutil
import time

import numpy as np

from elektronn import __version__
from elektronn import volumes
from elektronn.inference.blocks import BlockLedger, BlockPlan, even_blocks, min_blocks_for
from elektronn.inference.runners import BlockRunError, BlockTask, run_blocks
from elektronn.segmentation.segmenter import Segmenter, select_channels
from elektronn.segmentation.watershed import as_unit_float

logger = logging.getLogger(__name__)

__all__ = ['segment_volume', 'SegmentationError', 'MapLayout', 'INFO_ATTR', 'DEFAULT_MEMORY_GB', 'DEFAULT_HALO']

#: The output attribute that records the input, the settings, the block shape and the status.
INFO_ATTR = 'elektronn_segmentation'
#: Memory for a block with its halo, in GB, when none is given (``--memory-gb``).
DEFAULT_MEMORY_GB = 2.0
#: Halo ``(z, x, y)`` in voxels around each block; in 2D (per section) the z halo is 0.
DEFAULT_HALO = (32, 32, 32)
#: Working memory of the watershed per voxel of a block with its halo (maps, distances, labels, queues).
_BYTES_PER_VOXEL = 64
#: Keys of the record that must agree to resume.
_RESUME_KEYS = ('input_key', 'input_shape', 'axes', 'channels', 'segmenter', 'halo_zxy', 'face_overlap', 'dtype')


class SegmentationError(Exception):
    """A segmentation that cannot be run as asked (the message says why and what would fix it)."""


# ----------------------------------------------------------------------------------------------------
# Axis orders of probability maps
# ----------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class MapLayout:
    """The axis order of a probability map in its file, e.g. ``('c', 'z', 'x', 'y')``.

    ``'c'`` is the channel (class) axis, if any; the segmentation is written with the spatial axes
    in the same order (:attr:`seg_axes`).
    """
    axes: tuple

    @classmethod
    def parse(cls, text, ndim, name='the probability map'):
        """From ``'czxy'``, ``'(class, z, x, y)'`` (an ``elektronn-predict`` record) or a list of names."""
        if isinstance(text, str):
            cleaned = text.strip('()[] ').replace('class', 'c')
            names = [n.strip() for n in cleaned.split(',')] if ',' in cleaned else list(cleaned)
        else:
            names = [str(n) for n in text]
        names = tuple('c' if n in ('c', 'ch', 'channel') else n for n in names)
        spatial = sorted(n for n in names if n != 'c')
        if spatial != ['x', 'y', 'z'] or names.count('c') > 1 or len(names) != ndim:
            raise SegmentationError('%s has %i axes; the axis order %r does not fit (give z, x, y and, for a map with '
                                    'channels, c once, e.g. --axes czxy or --axes zxy)' % (name, ndim, text))
        return cls(names)

    @classmethod
    def of(cls, volume, axes=None):
        """The layout of ``volume``: ``axes``, else its record (``axes`` attribute), else ``zxy`` / ``czxy``."""
        if axes is None:
            axes = volume.attrs.get('axes')
            if axes is None:
                if volume.ndim not in (3, 4):
                    raise SegmentationError('%s has the shape %s; a probability map is (z, x, y) or (c, z, x, y)'
                                            % (volume.name, volume.shape))
                axes = 'zxy' if volume.ndim == 3 else 'czxy'
        return cls.parse(axes, volume.ndim, volume.name)

    @property
    def seg_axes(self):
        """The spatial axes in file order: the axis order of the segmentation."""
        return tuple(n for n in self.axes if n != 'c')

    def spatial(self, shape):
        """``(z, x, y)`` of a map of file shape ``shape``."""
        by_name = dict(zip(self.axes, shape))
        return tuple(int(by_name[n]) for n in 'zxy')

    def n_channels(self, shape):
        """The number of channels of a map of file shape ``shape`` (1 without a channel axis)."""
        return int(dict(zip(self.axes, shape)).get('c', 1))

    def read(self, volume, start, stop, channels):
        """``(len(channels), z, x, y)`` float32 probabilities of the region ``[start, stop)`` (zxy)."""
        bounds = dict(zip('zxy', zip(start, stop)))
        first, last = min(channels), max(channels) + 1
        index = tuple(slice(first, last) if n == 'c' else slice(*bounds[n]) for n in self.axes)
        values, axes = volume[index], self.axes
        if 'c' not in axes:
            values, axes = values[None], ('c',) + axes
        values = values.transpose([axes.index(n) for n in 'czxy'])
        return as_unit_float(values[[c - first for c in channels]], volume.name)

    def seg_shape(self, zxy):
        """The file shape of the segmentation of a map with the spatial shape ``zxy``."""
        by_name = dict(zip('zxy', zxy))
        return tuple(by_name[n] for n in self.seg_axes)

    def seg_region(self, start, stop):
        """The index of the region ``[start, stop)`` (zxy) in the segmentation's file order."""
        bounds = dict(zip('zxy', zip(start, stop)))
        return tuple(slice(*bounds[n]) for n in self.seg_axes)

    def to_file(self, labels_zxy):
        """Labels ``(z, x, y)`` in the segmentation's file order."""
        return np.ascontiguousarray(labels_zxy.transpose(['zxy'.index(n) for n in self.seg_axes]))

    def from_file(self, labels):
        """Labels in the segmentation's file order as ``(z, x, y)`` (the inverse of :meth:`to_file`)."""
        return labels.transpose([self.seg_axes.index(n) for n in 'zxy'])


# ----------------------------------------------------------------------------------------------------
# The job and its three passes
# ----------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Job:
    input_path: str
    input_key: str
    output_path: str
    output_key: str
    layout: MapLayout
    channels: tuple
    segmenter: Segmenter
    plan: BlockPlan
    halo: tuple
    face_overlap: float
    work_path: str = None

    @property
    def work_key(self):
        return self.output_key.rstrip('/') + '_work'

    def open_work(self, mode='a', output=None):
        """The container of the work arrays (``output``, when given and the same store)."""
        if output is not None and self.work_path == self.output_path:
            return output
        return volumes.open_container(self.work_path, mode, 'work store')

    def work(self, name):
        return '%s/%s' % (self.work_key, name)

    @property
    def face_axes(self):
        """Axes (0 = z) across which fragments are matched: not z when each section is segmented alone."""
        return tuple(d for d in range(3) if self.plan.grid[d] > 1 and not (d == 0 and self.segmenter.two_d))

    def grid_index(self, number):
        return tuple(int(i) for i in np.unravel_index(int(number), self.plan.grid))

    def block_number(self, index):
        return int(np.ravel_multi_index(index, self.plan.grid))


@dataclasses.dataclass
class _State:
    containers: list
    prob: object
    seg: object
    fragments: object
    faces: dict
    ledger: object = None
    mapping: object = None
    offsets: object = None


class _SegmentationTask(BlockTask):
    """One pass over the blocks (see the module docstring); ``stage`` is ``'fragments'``, ``'match'`` or ``'relabel'``."""

    def __init__(self, job, stage):
        super().__init__()
        self.job, self.stage = job, stage

    def open(self):
        job = self.job
        fin, fout = volumes.open_pair(job.input_path, job.output_path)
        state = _State([fin, fout], None, None, None, {})
        try:
            work = job.open_work('a', fout)
            state.containers.append(work)
            state.prob, state.seg = fin.volume(job.input_key), fout.volume(job.output_key)
            state.fragments = work.volume(job.work('fragments'))
            state.faces = {d: work.volume(job.work('faces_%s' % 'zxy'[d])) for d in job.face_axes}
            if self.stage == 'fragments':
                state.ledger = BlockLedger.open(work, job.work('fragments'))
            elif self.stage == 'relabel':
                state.ledger = BlockLedger.open(work, job.work('relabel'))
                state.mapping = work.volume(job.work('mapping'))
                state.offsets = work.volume(job.work('offsets'))[:]
        except BaseException:
            self.close(state)
            raise
        return state

    def close(self, state):
        fin, fout = state.containers[:2]
        volumes.close_pair(fin, fout)
        for extra in state.containers[2:]:
            if extra is not fout:
                extra.close()

    def run_block(self, state, number, start, stop):
        return getattr(self, '_' + self.stage)(state, number, start, stop)

    def _fragments(self, state, number, start, stop):
        job = self.job
        shape = job.plan.pred_shape
        lo = tuple(max(a - h, 0) for a, h in zip(start, job.halo))
        hi = tuple(min(b + h, s) for b, h, s in zip(stop, job.halo, shape))
        labels = job.segmenter(job.layout.read(state.prob, lo, hi, job.channels), min_size=0)
        core = labels[tuple(slice(a - l, b - l) for a, b, l in zip(start, stop, lo))]
        ids = np.unique(core)
        ids = ids[ids != 0]
        if len(ids) >= np.iinfo(core.dtype).max:
            raise SegmentationError('block %i holds %i fragments, more than %s labels allow: use dtype uint64'
                                    % (number, len(ids), core.dtype))
        state.fragments[_region(start, stop)] = _renumber(core, ids)
        index = self.job.grid_index(number)
        for d, faces in state.faces.items():
            if index[d] == job.plan.grid[d] - 1:
                continue
            plane = np.take(labels, stop[d] - lo[d], axis=d)
            other = [slice(a - l, b - l) for k, (a, b, l) in enumerate(zip(start, stop, lo)) if k != d]
            region = list(_region(start, stop))
            region[d] = slice(index[d], index[d] + 1)
            faces[tuple(region)] = np.expand_dims(_renumber(plane[tuple(other)], ids), d)
        state.fragments.flush()  # the block's data is in the store before its flag
        state.ledger.mark(number)
        return dict(voxels=BlockPlan.voxels(start, stop))

    def _match(self, state, number, start, stop):
        job = self.job
        core = state.fragments[_region(start, stop)]
        sizes = np.bincount(core.ravel().astype(np.int64))
        index = job.grid_index(number)
        pairs = [np.zeros((0, 4), np.int64)]
        for d, faces in state.faces.items():
            if index[d] == 0:
                continue
            region = list(_region(start, stop))
            region[d] = slice(index[d] - 1, index[d])
            theirs = np.take(faces[tuple(region)], 0, axis=d)  # the lower block's labels of our first plane
            ours = np.take(core, 0, axis=d)
            matched = _matching_fragments(theirs, ours, job.face_overlap)
            lower = job.block_number(tuple(i - (k == d) for k, i in enumerate(index)))
            pairs.append(np.column_stack([np.full(len(matched), lower), matched[:, 0],
                                          np.full(len(matched), number), matched[:, 1]]))
        return dict(voxels=BlockPlan.voxels(start, stop), sizes=sizes, pairs=np.concatenate(pairs))

    def _relabel(self, state, number, start, stop):
        first, last = (int(v) for v in state.offsets[number:number + 2])
        lut = np.zeros(last - first + 1, state.seg.dtype)
        lut[1:] = state.mapping[first + 1:last + 1]
        core = state.fragments[_region(start, stop)]
        state.seg[self.job.layout.seg_region(start, stop)] = self.job.layout.to_file(lut[core])
        state.seg.flush()
        state.ledger.mark(number)
        return dict(voxels=BlockPlan.voxels(start, stop))


def _region(start, stop):
    return tuple(slice(a, b) for a, b in zip(start, stop))


def _renumber(labels, ids):
    """``labels`` with ``ids[k]`` as ``k + 1`` and every other value (0, ids not listed) as 0."""
    if not len(ids):
        return np.zeros(labels.shape, labels.dtype)
    pos = np.minimum(np.searchsorted(ids, labels), len(ids) - 1)
    return np.where(ids[pos] == labels, pos + 1, 0).astype(labels.dtype)


def _matching_fragments(a, b, overlap):
    """``(k, 2)`` pairs of labels of two labellings of the same voxels that are one segment.

    A pair matches when it shares at least ``overlap`` of the voxels the smaller of the two has
    in this plane; 0 is never matched.
    """
    a, b = a.ravel().astype(np.int64), b.ravel().astype(np.int64)
    both = (a > 0) & (b > 0)
    if not both.any():
        return np.zeros((0, 2), np.int64)
    pairs, shared = np.unique(np.column_stack([a[both], b[both]]), axis=0, return_counts=True)
    area_a = np.bincount(a, minlength=int(a.max()) + 1)
    area_b = np.bincount(b, minlength=int(b.max()) + 1)
    smaller = np.minimum(area_a[pairs[:, 0]], area_b[pairs[:, 1]])
    return pairs[shared >= overlap * smaller]


def _final_mapping(sizes, pairs, min_size, dtype):
    """Offsets per block, the mapping from global fragment ids to final labels, and the segment count.

    Global fragment id ``offsets[b] + k`` is fragment ``k`` (1-based) of block ``b``.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    counts = np.array([len(s) - 1 for s in sizes], np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    n = int(offsets[-1]) + 1
    voxels = np.zeros(n, np.int64)
    for b, s in enumerate(sizes):
        voxels[offsets[b] + 1:offsets[b + 1] + 1] = s[1:]
    pairs = np.concatenate(pairs) if len(pairs) else np.zeros((0, 4), np.int64)
    left, right = offsets[pairs[:, 0]] + pairs[:, 1], offsets[pairs[:, 2]] + pairs[:, 3]
    graph = coo_matrix((np.ones(len(left), np.int8), (left, right)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    segment_voxels = np.bincount(component, weights=voxels)
    keep = segment_voxels >= max(int(min_size), 1)
    keep[component[0]] = False  # the id 0 stays 0
    final = np.zeros(len(keep), np.int64)
    final[keep] = np.arange(1, int(keep.sum()) + 1)
    n_segments = int(keep.sum())
    if n_segments > np.iinfo(dtype).max:
        raise SegmentationError('%i segments do not fit %s: segment again with dtype uint64 (--dtype uint64)'
                                % (n_segments, np.dtype(dtype)))
    return offsets, final[component].astype(np.uint64), n_segments


# ----------------------------------------------------------------------------------------------------
# segment_volume
# ----------------------------------------------------------------------------------------------------
def segment_volume(input_spec, output_spec, segmenter=None, channel=None, axes=None, block_shape=None, halo=None,
                   memory_gb=DEFAULT_MEMORY_GB, face_overlap=0.5, resume=False, overwrite=False, client=None,
                   show_progress=True, progress_interval=None):
    """Segment the probability map ``input_spec`` into the label volume ``output_spec``, block by block.

    Args:
        input_spec: ``'prob.h5:key'``, ``'prob.zarr:key'`` or ``(path, key)``: a boundary map or
            an affinity graph (see :func:`~elektronn.segmentation.segmenter.select_channels`).
        output_spec: The labels, likewise (created; without a key: ``'seg'``).
        segmenter: A :class:`~elektronn.segmentation.segmenter.Segmenter` (default: the default
            settings); one without a kind gets the kind the map's channels suggest.
        channel: The boundary channel of a map with several.
        axes: The map's axis order (``'czxy'``, ``'zxy'``, ``'cxyz'``, ...; default: its record, else
            ``zxy`` / ``czxy``).
        block_shape: Block shape ``(z, x, y)`` (default: as large as ``memory_gb`` allows; with a
            ``client`` at least two blocks per worker where the volume allows, as prediction plans).
        halo: Context ``(z, x, y)`` around each block (default :data:`DEFAULT_HALO`, z 0 in 2D).
        memory_gb: Memory for one block with its halo, per process.
        face_overlap: Share of a fragment's voxels on a block face that must match (see the module docstring).
        resume: Continue an interrupted segmentation into ``output_spec``.
        overwrite: Replace an existing output.
        client: A ``distributed.Client``: run the blocks on its workers (Zarr output).
        show_progress, progress_interval: The progress bars (see :func:`~elektronn.inference.runners.run_blocks`).

    Returns:
        dict: ``segments``, ``blocks``, ``block`` (zxy), ``shape`` (zxy), ``seconds``, and the
        seconds of each pass (``fragments_seconds``, ``match_seconds``, ``relabel_seconds``).

    Raises:
        SegmentationError: bad input or settings, an existing output without ``resume`` or
            ``overwrite``, or a failed block.
    """
    try:
        return _segment_volume(input_spec, output_spec, segmenter, channel, axes, block_shape, halo, memory_gb,
                               face_overlap, resume, overwrite, client, show_progress, progress_interval)
    except volumes.VolumeError as e:
        raise SegmentationError(str(e)) from None
    except BlockRunError as e:
        raise SegmentationError(str(e)) from e


def _spec(spec, what, default_key=None):
    if isinstance(spec, (tuple, list)):
        path, key = spec
    else:
        path, key = volumes.parse_spec(spec, what, default_key)
    if not key:
        raise SegmentationError('the %s %s needs a dataset key: %s:KEY' % (what, path, path))
    return os.path.abspath(os.path.expanduser(str(path))), key


def _segment_volume(input_spec, output_spec, segmenter, channel, axes, block_shape, halo, memory_gb, face_overlap,
                    resume, overwrite, client, show_progress, progress_interval):
    t0 = time.time()
    if resume and overwrite:
        raise SegmentationError('resume and overwrite exclude each other')
    if not 0 < face_overlap <= 1:
        raise SegmentationError('face_overlap must be in (0, 1], got %r' % (face_overlap,))
    input_path, input_key = _spec(input_spec, 'input')
    output_path, output_key = _spec(output_spec, 'output', 'seg')
    if volumes.same_file(input_path, output_path) and output_key.strip('/') == input_key.strip('/'):
        raise SegmentationError('the output %s would replace the input' % volumes.describe(output_path, output_key))
    if client is not None and volumes.storage_format(output_path, must_exist=False, what='output') == 'hdf5':
        raise SegmentationError('the output %s is an HDF5 file, which only one process may write; a distributed run '
                                '(--workers/--scheduler) needs a Zarr output, e.g. %s:%s'
                                % (output_path, os.path.splitext(output_path)[0] + '.zarr', output_key))
    with volumes.open_volume(input_path, input_key, what='input') as probe:
        layout = MapLayout.of(probe, axes)
        try:
            segmenter = segmenter or Segmenter()
            kind, channels = select_channels(layout.n_channels(probe.shape), segmenter.kind, channel, probe.name)
        except ValueError as e:
            raise SegmentationError(str(e)) from None
        if probe.dtype != np.uint8 and not np.issubdtype(probe.dtype, np.floating):
            raise SegmentationError('%s holds %s values; a probability map is float or uint8 (labels are segmented '
                                    'already)' % (probe.name, probe.dtype))
        shape = layout.spatial(probe.shape)
        voxel_size, translation = _spatial_geometry(probe, layout)
        input_shape = list(probe.shape)
    segmenter = dataclasses.replace(segmenter, kind=kind)
    halo = tuple(int(h) for h in (halo if halo is not None else DEFAULT_HALO))
    if len(halo) != 3 or min(halo) < 0:
        raise SegmentationError('halo must be 3 non-negative voxel counts (z, x, y), got %r' % (halo,))
    if segmenter.two_d:
        halo = (0,) + halo[1:]
    plan = BlockPlan(shape, _block_shape(shape, block_shape, halo, memory_gb, min_blocks_for(client)))
    halo = tuple(max(h, 1) if g > 1 and not (d == 0 and segmenter.two_d) else h
                 for d, (h, g) in enumerate(zip(halo, plan.grid)))
    job = _Job(input_path, input_key, output_path, output_key, layout, channels, segmenter, plan, halo,
               float(face_overlap), _work_path(output_path, output_key))
    record = dict(input_file=input_path, input_key=input_key, input_shape=input_shape, axes=''.join(layout.axes),
                  channels=list(channels), segmenter=_jsonable(dataclasses.asdict(segmenter)), halo_zxy=list(halo),
                  face_overlap=float(face_overlap), dtype=segmenter.dtype, block_zxy=list(plan.block),
                  elektronn_version=__version__)
    status, plan = _prepare_output(job, record, voxel_size, translation, resume, overwrite)
    job = dataclasses.replace(job, plan=plan)
    logger.info('Segmenting %s -> %s: %s (z, x, y) in %i blocks of %s with a halo of %s; %s',
                volumes.describe(input_path, input_key), volumes.describe(output_path, output_key), shape,
                plan.n_blocks, plan.block, halo, segmenter.describe())
    seconds = dict(fragments_seconds=0.0, match_seconds=0.0, relabel_seconds=0.0)
    run = dict(client=client, total_blocks=plan.n_blocks, show_progress=show_progress,
               progress_interval=progress_interval)
    if status == 'fragments':
        todo = _todo(job, 'fragments')
        if todo:
            stats = run_blocks(_SegmentationTask(job, 'fragments'), todo, what='Fragments', verb='segmented',
                               **run)
            seconds['fragments_seconds'] = stats['seconds']
        sizes, pairs = [None] * plan.n_blocks, []

        def collect(result):
            sizes[result['number']] = result['sizes']
            pairs.append(result['pairs'])

        stats = run_blocks(_SegmentationTask(job, 'match'), list(plan.blocks()), what='Matching faces',
                           verb='matched', on_result=collect, **run)
        seconds['match_seconds'] = stats['seconds']
        offsets, mapping, n_segments = _final_mapping(sizes, pairs, segmenter.min_size, np.dtype(segmenter.dtype))
        _store_mapping(job, offsets, mapping, n_segments)
    todo = _todo(job, 'relabel')
    if todo:
        stats = run_blocks(_SegmentationTask(job, 'relabel'), todo, what='Relabelling', verb='relabelled',
                           **run)
        seconds['relabel_seconds'] = stats['seconds']
    n_segments = _finish(job)
    total = time.time() - t0
    if status != 'complete':
        logger.info('Segmented %i voxels into %i segments in %.1f s (%.3f Mvoxel/s)',
                    BlockPlan.voxels((0, 0, 0), shape), n_segments, total,
                    BlockPlan.voxels((0, 0, 0), shape) / 1e6 / max(total, 1e-9))
    return dict(seconds, segments=n_segments, blocks=plan.n_blocks, block=plan.block, shape=shape, seconds=total)


def _jsonable(values):
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in values.items()}


def _spatial_geometry(probe, layout):
    """``((sizes, unit), translation)`` of the spatial axes in the segmentation's axis order (or ``None``)."""
    found, translation = probe.voxel_size(), probe.translation()
    voxel_size = None
    if found is not None and len(found[0]) == len(layout.axes):
        sizes = dict(zip(layout.axes, found[0]))
        voxel_size = [float(sizes[n]) for n in layout.seg_axes], found[1]
    if translation is not None and len(translation) == len(layout.axes):
        shift = dict(zip(layout.axes, translation))
        translation = [float(shift[n]) for n in layout.seg_axes]
    else:
        translation = None
    return voxel_size, translation


def _block_shape(shape, block_shape, halo, memory_gb, min_blocks=1):
    """``block_shape`` (checked), or the largest even blocks whose block and halo fit ``memory_gb``, split
    further into at least ``min_blocks`` blocks as long as a side is longer than 16 voxels."""
    if block_shape is not None:
        if len(block_shape) != 3 or min(int(b) for b in block_shape) < 1:
            raise SegmentationError('block_shape must be 3 positive voxel counts (z, x, y), got %r' % (block_shape,))
        return tuple(min(int(b), s) for b, s in zip(block_shape, shape))
    if not memory_gb > 0:
        raise SegmentationError('memory_gb must be positive, got %r' % (memory_gb,))
    budget = memory_gb * 1e9 / _BYTES_PER_VOXEL
    block = list(shape)
    while np.prod([b + 2 * h for b, h in zip(block, halo)]) > budget and max(block) > 16:
        d = int(np.argmax(block))  # halve the longest side until the block and its halo fit
        block[d] = -(-block[d] // 2)
    # ... and until every worker of a cluster has blocks (the labels are the same up to their numbering)
    while np.prod([-(-s // b) for s, b in zip(shape, block)]) < min_blocks and max(block) > 16:
        d = int(np.argmax(block))
        block[d] = -(-block[d] // 2)
    return even_blocks(shape, block)


def _work_path(output_path, output_key):
    """Where the work arrays go: the output's Zarr store, or a Zarr store beside an HDF5 output (an HDF5 file
    would keep the space of removed arrays)."""
    if volumes.storage_format(output_path, must_exist=False, what='output') == 'zarr':
        return output_path
    return '%s.%s_work.zarr' % (output_path, output_key.strip('/').replace('/', '_'))


def _prepare_output(job, record, voxel_size, translation, resume, overwrite):
    """Create, replace or resume the output; returns the status to continue from and the plan."""
    name = volumes.describe(job.output_path, job.output_key)
    with volumes.open_container(job.output_path, 'a', 'output') as container:
        exists = container.kind(job.output_key) is not None
        if exists and not resume and not overwrite:
            raise SegmentationError('output %s already exists; use --resume to continue an interrupted segmentation '
                                    'into it or --overwrite to replace it (or choose another output)' % name)
        if overwrite:
            if job.output_key in container:
                logger.info('Overwriting %s', name)
                container.delete(job.output_key)
            exists = False
        if not exists:
            _remove_work(job, container)  # left by a run whose output was removed since
            _create_output(container, job, record, voxel_size, translation)
            return 'fragments', job.plan
        saved = _saved_record(container, job, name)
    diffs = ['%s: %r (now %r)' % (k, saved.get(k), record.get(k)) for k in _RESUME_KEYS
             if saved.get(k) != record.get(k)]
    if diffs:
        raise SegmentationError('output %s holds another segmentation; it differs in %s. Use --overwrite to '
                                'replace it or choose another output' % (name, '; '.join(diffs)))
    plan = BlockPlan(job.plan.pred_shape, tuple(saved['block_zxy']))
    if saved['status'] == 'complete':
        logger.info('%s is complete already (%s segments)', name, saved.get('segments'))
    elif plan.block != job.plan.block:
        logger.info('Resuming with the block shape of the interrupted run, %s (z, x, y)', plan.block)
    return saved['status'], plan


def _create_output(container, job, record, voxel_size, translation):
    plan, layout = job.plan, job.layout
    seg = container.create_volume(job.output_key, layout.seg_shape(plan.pred_shape), job.segmenter.dtype,
                                  chunks=layout.seg_shape(plan.block), fill_value=0, allocate=True,
                                  ome_axes=[(n, 'space') for n in layout.seg_axes], voxel_size=voxel_size,
                                  translation=translation)
    seg.set_attrs(**{INFO_ATTR: json.dumps(dict(record, status='fragments')),
                     'axes': '(%s)' % ', '.join(layout.seg_axes)})
    container.flush()
    work = job.open_work('a', container)
    try:
        work.create_volume(job.work('fragments'), plan.pred_shape, job.segmenter.dtype, chunks=plan.block,
                           fill_value=0)
        for d in job.face_axes:
            shape, chunks = list(plan.pred_shape), list(plan.block)
            shape[d], chunks[d] = plan.grid[d] - 1, 1
            work.create_volume(job.work('faces_%s' % 'zxy'[d]), shape, job.segmenter.dtype, chunks=chunks,
                               fill_value=0)
        BlockLedger.create(work, job.work('fragments'), plan)
        work.flush()
    finally:
        if work is not container:
            work.close()


def _remove_work(job, output):
    """Remove the work arrays of ``job`` (its group in the output's store, or the store beside an HDF5 file)."""
    if job.work_path == job.output_path:
        output.delete(job.work_key)
    elif os.path.isdir(job.work_path):
        try:
            with volumes.open_container(job.work_path, 'r', 'work store') as work:
                ours = job.work_key in work
        except volumes.VolumeError:
            ours = False
        if not ours:
            raise SegmentationError('%s is in the way of the work arrays of %s and was not written by elektronn-segment; '
                                    'move it away' % (job.work_path, volumes.describe(job.output_path, job.output_key)))
        shutil.rmtree(job.work_path)


def _saved_record(container, job, name):
    try:
        saved = json.loads(container.volume(job.output_key).attrs[INFO_ATTR])
        if 'status' not in saved or 'block_zxy' not in saved:
            raise KeyError('status')
    except (KeyError, ValueError, TypeError):
        raise SegmentationError('output %s was not written by elektronn-segment (no %s record); use --overwrite to '
                                'replace it' % (name, INFO_ATTR)) from None
    if saved['status'] != 'complete':
        lost = not os.path.isdir(job.work_path) if job.work_path != job.output_path else job.work_key not in container
        if lost:
            raise SegmentationError('the interrupted segmentation %s has lost its work arrays (%s); use --overwrite'
                                    % (name, volumes.describe(job.work_path, job.work_key)))
    return saved


def _set_status(container, job, **entries):
    seg = container.volume(job.output_key)
    record = json.loads(seg.attrs[INFO_ATTR])
    record.update(entries)
    seg.set_attrs(**{INFO_ATTR: json.dumps(record)})
    container.flush()
    return record


def _todo(job, stage):
    """The blocks of ``stage`` (``'fragments'`` or ``'relabel'``) not yet recorded as done."""
    with volumes.open_container(job.output_path, 'r', 'output') as container:
        if json.loads(container.volume(job.output_key).attrs[INFO_ATTR])['status'] == 'complete':
            return []
    with volumes.open_container(job.work_path, 'r', 'work store') as work:
        done = BlockLedger.open(work, job.work(stage)).done()
    return [(n, a, b) for n, a, b in job.plan.blocks() if not done[n]]


def _store_mapping(job, offsets, mapping, n_segments):
    """Store the mapping and start pass 3 (the status says so only once everything is written)."""
    with volumes.open_container(job.work_path, 'a', 'work store') as work:
        for name in ('mapping', 'offsets', BlockLedger.key_for('relabel')):
            work.delete(job.work(name))
        work.create_volume(job.work('mapping'), mapping.shape, np.uint64, chunks=(1 << 20,))[:] = mapping
        work.create_volume(job.work('offsets'), offsets.shape, np.uint64)[:] = offsets
        BlockLedger.create(work, job.work('relabel'), job.plan)
        work.flush()
    with volumes.open_container(job.output_path, 'a', 'output') as container:
        _set_status(container, job, status='relabelling', segments=n_segments)


def _finish(job):
    """Mark the output complete and remove the work arrays; returns the number of segments."""
    with volumes.open_container(job.output_path, 'a', 'output') as container:
        record = _set_status(container, job, status='complete')
        _remove_work(job, container)
        container.flush()
    return int(record.get('segments', 0))
