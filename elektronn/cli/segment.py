"""``elektronn-segment``: a label volume from a boundary map or an affinity graph, block by block.

Usage::

    elektronn-segment PROB SEG [--threshold T] [--min-size N] [--min-seed-distance D] [--2d]
                      [--boundaries [--channel C] | --affinities [--merge-threshold M]] [--axes czxy]
                      [--dtype uint32|uint64] [--block-shape X,Y,Z] [--halo X,Y,Z] [--memory-gb GB]
                      [--resume | --overwrite] [--workers N | --scheduler ADDRESS|FILE] [--quiet | --verbose]

See ``elektronn-segment --help`` and :func:`elektronn.segmentation.segment_volume`.
"""
import argparse
import sys

from elektronn.cli._common import add_verbosity_arguments, error, interrupted, verbosity
from elektronn.cli.predict import _block_shape, _memory, _positive_int

__all__ = ['main']

PROG = 'elektronn-segment'

_EPILOG = """\
what happens:
  Boundary map (one channel; of a 2-class prediction the membrane class 1): voxels below
  --threshold are cell interior; seeds are the maxima of their distance to the nearest boundary,
  at least --min-seed-distance voxels apart; a watershed floods the boundary map from the seeds.
  Affinity graph (3 channels z, x, y, or the 6 of an ELEKTRONN affinity network): the same
  watershed on 1 - mean affinity gives fragments, which are merged while the mean affinity
  between two of them is above --merge-threshold. Segments below --min-size voxels become 0.
  --2d segments each section (z) on its own: for anisotropic data such as ssTEM.

large volumes:
  The map is cut into blocks that fit --memory-gb, each segmented with a halo of context
  (--halo); fragments that meet across a block face are joined where both blocks agree on the
  face's voxels, so the labels are consistent across blocks. Finished blocks are recorded: an
  interrupted run continues with --resume. --workers N runs the blocks on a local Dask cluster,
  --scheduler on an existing one (Zarr output); there the map is cut into at least two blocks
  per worker where it allows.

files:
  PROB and SEG are file.h5:key or store.zarr:key. The map's axis order comes from its
  elektronn-predict record, else (z, x, y) or (c, z, x, y); --axes overrides (e.g. cxyz for an
  HDF5 prediction of the xyz layout without its record). SEG has the map's spatial axis order
  (Zarr: an OME-Zarr label image (z, x, y) with the map's voxel size).

examples:
  elektronn-segment prob.h5:barrier seg.h5:seg --2d --threshold 0.5 --min-size 50
  elektronn-segment prob.zarr:prob seg.zarr:seg --min-size 200 --workers 2
  elektronn-segment affs.zarr:prob seg.zarr:seg --affinities --merge-threshold 0.7
  elektronn-evaluate seg.h5:seg gt.h5:labels --2d
"""


def _zxy(text):
    """``X,Y,Z`` on the command line (as in configs) -> ``(z, x, y)``."""
    x, y, z = _block_shape(text)
    return z, x, y


def _halo(text):
    try:
        values = [int(v) for v in text.split(',')]
    except ValueError:
        values = []
    if len(values) not in (1, 3) or min(values) < 0:
        raise argparse.ArgumentTypeError('must be X,Y,Z (or one value for all axes) voxel counts >= 0, got %r' % text)
    x, y, z = values * 3 if len(values) == 1 else values
    return z, x, y


def _fraction(text):
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError('must be a number between 0 and 1, got %r' % text)
    return value


def _non_negative_int(text):
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError('must be an integer >= 0, got %r' % text)
    return value


def _parser():
    p = argparse.ArgumentParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_EPILOG,
        description='Segment a boundary map or an affinity graph into a label volume (seeded watershed, '
                    'agglomeration), block by block, here or on a Dask cluster.')
    p.add_argument('prob', help='probability map as file.h5:key or store.zarr:key (e.g. the output of elektronn-predict)')
    p.add_argument('seg', help="labels to write as file.h5:key or store.zarr:key (without a key: 'seg')")
    p.add_argument('--threshold', type=_fraction, default=0.5, help='boundary probability below which a voxel is '
                                                                    'cell interior (default 0.5)')
    p.add_argument('--min-size', type=_non_negative_int, default=0, metavar='N',
                   help='segments of fewer voxels become 0 (default 0: keep all)')
    p.add_argument('--min-seed-distance', type=_positive_int, default=3, metavar='D',
                   help='least distance between two seeds in voxels (default 3)')
    p.add_argument('--2d', dest='two_d', action='store_true', help='segment each section (z) on its own')
    kind = p.add_mutually_exclusive_group()
    kind.add_argument('--boundaries', dest='kind', action='store_const', const='boundaries',
                      help='the map is a boundary map (default unless it has 3 or 6 channels)')
    kind.add_argument('--affinities', dest='kind', action='store_const', const='affinities',
                      help='the map is an affinity graph (default for 3 or 6 channels)')
    p.add_argument('--channel', type=_non_negative_int, help='the boundary channel of a map with several')
    p.add_argument('--merge-threshold', type=_fraction, default=0.5, metavar='M',
                   help='affinities: merge fragments while their mean affinity is above M (default 0.5)')
    p.add_argument('--axes', help='axis order of the map, e.g. czxy, zxy, cxyz (default: its record, else zxy/czxy)')
    p.add_argument('--dtype', choices=('uint32', 'uint64'), default='uint32', help='label type (default uint32)')
    p.add_argument('--block-shape', type=_zxy, metavar='X,Y,Z', help='voxels per block instead of a shape chosen '
                                                                     'from --memory-gb')
    p.add_argument('--halo', type=_halo, metavar='X,Y,Z', help='context around each block in voxels (default 32 '
                                                               'per axis; none along z with --2d)')
    p.add_argument('--memory-gb', type=_memory, default=None, metavar='GB',
                   help='memory for a block with its halo (default 2.0)')
    group = p.add_mutually_exclusive_group()
    group.add_argument('--resume', action='store_true', help='continue an interrupted segmentation into SEG')
    group.add_argument('--overwrite', action='store_true', help='replace an existing SEG')
    dist = p.add_mutually_exclusive_group()
    dist.add_argument('--workers', type=_positive_int, metavar='N',
                      help='segment on a local Dask cluster of N worker processes (Zarr output)')
    dist.add_argument('--scheduler', metavar='ADDRESS|FILE',
                      help='segment on an existing Dask cluster: tcp://host:port or a scheduler file (Zarr output)')
    add_verbosity_arguments(p)
    return p


def main(argv=None):
    """Run ``elektronn-segment``; returns the exit status (0 done, 2 bad input or failure, 130 interrupted)."""
    args = _parser().parse_args(argv)
    with verbosity(PROG, args):
        return _run(args)


def _run(args):
    from elektronn.inference.runners import ClusterError, cluster_client
    from elektronn.segmentation import SegmentationError, Segmenter, segment_volume
    from elektronn.segmentation.volume_segmentation import DEFAULT_MEMORY_GB
    try:
        segmenter = Segmenter(kind=args.kind, threshold=args.threshold, min_seed_distance=args.min_seed_distance,
                              min_size=args.min_size, two_d=args.two_d, merge_threshold=args.merge_threshold,
                              dtype=args.dtype)
        kwargs = dict(segmenter=segmenter, channel=args.channel, axes=args.axes, block_shape=args.block_shape,
                      halo=args.halo, resume=args.resume, overwrite=args.overwrite,
                      memory_gb=DEFAULT_MEMORY_GB if args.memory_gb is None else args.memory_gb)
        with cluster_client(args.workers, None, args.scheduler) as client:
            segment_volume(args.prob, args.seg, client=client, **kwargs)
    except (SegmentationError, ClusterError, ValueError, FileNotFoundError, ConnectionError) as e:
        error(PROG, e)
        return 2
    except KeyboardInterrupt:
        interrupted('the finished blocks are kept; run the same command with --resume to finish')
        return 130
    return 0


if __name__ == '__main__':
    sys.exit(main())
