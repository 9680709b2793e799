"""``elektronn-evaluate``: score a segmentation (and a membrane probability map) against a ground truth.

Usage::

    elektronn-evaluate SEG GT [--boundary PROB [--channel C]] [--gt-boundary] [--2d]
                       [--json OUT.json] [--png OUT.png [--raw RAW]] [--worst N] [--quiet | --verbose]

SEG, GT, PROB and RAW are ``file.h5:key`` or ``store.zarr:key`` specs. See
``elektronn-evaluate --help`` and :mod:`elektronn.evaluation`.
"""
import argparse
import json
import logging
import os
import sys

import numpy as np

from elektronn.cli._common import add_verbosity_arguments, error, note, verbosity
from elektronn.utils import atomic_write

__all__ = ['main']

logger = logging.getLogger('elektronn.cli.evaluate')  # not __name__: that is '__main__' under python -m
PROG = 'elektronn-evaluate'

_EPILOG = """\
metrics (voxels with GT label 0 are not scored; SEG label 0 is an ordinary segment):
  Rand error       1 - V_rand, the adapted Rand error of CREMI/SNEMI3D (0 = perfect)
  V_rand           F-score of the two pair scores below (pairs of different voxels)
  V_rand split     pairs in one GT object that SEG puts in one segment too (recall; 1 = no splits)
  V_rand merge     pairs in one SEG segment that GT puts in one object too (precision; 1 = no merges)
  VOI split        H(SEG | GT) in bits: over-segmentation (0 = no splits)
  VOI merge        H(GT | SEG) in bits: under-segmentation (0 = no merges); VOI = split + merge
  boundary P/R/F1  pixels with PROB >= threshold against the GT membrane (--gt-boundary), at 0.5
                   and at the threshold of the best F1; pixel error = fraction of pixels wrong
  ISBI 2012 pixel error  1 - the best F-score of the interior pixels: the challenge's "pixel
                   error" (the number its leaderboard and papers quote; not the fraction wrong)
  worst split/merge  the GT objects / SEG segments with the largest share of VOI split / merge
  --2d             every section (axis 0) is scored on its own; the scores are averaged with
                   equal weight per section (sections whose GT is all 0 are skipped)

files:
  .h5/.hdf5: HDF5 (h5py), .zarr: Zarr stores; give file.h5:key or store.zarr:key. Volumes are
  (z, x, y), or any order recorded in their 'axes' attribute (elektronn-predict and
  elektronn-segment outputs, e.g. an HDF5 prediction (class, x, y, z) of the xyz layout).
  PROB may be (class, z, x, y): --channel picks the membrane class (default 1).
  uint8 probabilities are divided by 255. With --gt-boundary, GT is a 0/1 membrane map
  (1 = membrane, as ISBI 2012's barrier): its connected non-membrane regions (per section with
  --2d) are the GT objects, and the map itself is the truth of the boundary pixel scores.

examples:
  elektronn-evaluate seg.h5:seg gt.h5:labels
  elektronn-evaluate seg.h5:seg gt.h5:labels --2d --json scores.json --png errors.png --raw raw.h5:raw
  elektronn-evaluate seg.h5:seg isbi.h5:barrier --gt-boundary --2d --boundary prob.h5:prob
  elektronn-evaluate seg.zarr:seg gt.zarr:labels --boundary prob.zarr:prob --channel 1 --png errors.png
"""


def _parser():
    p = argparse.ArgumentParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_EPILOG,
        description='Score a segmentation against a ground truth: Rand error (V_rand and its split and merge parts), '
                    'variation of information, the worst splits and merges, and the pixel scores of a boundary '
                    'probability map.')
    p.add_argument('seg', metavar='SEG', help='segmentation (integer labels) as file.h5:key or store.zarr:key')
    p.add_argument('gt', metavar='GT', help='ground truth (integer labels, or a 0/1 membrane map with --gt-boundary)')
    p.add_argument('--boundary', metavar='PROB', help='membrane probability map (z, x, y) or (class, z, x, y)')
    p.add_argument('--channel', type=int, metavar='C',
                   help='class of a (class, z, x, y) PROB to score (default 1, the membrane class of 2-class maps)')
    p.add_argument('--gt-boundary', action='store_true',
                   help='GT is a 0/1 membrane map (1 = membrane): its connected components are the GT objects')
    p.add_argument('--2d', dest='two_d', action='store_true', help='score every section on its own and average')
    p.add_argument('--json', metavar='OUT.json', help='write all results (and the input specs) as JSON')
    p.add_argument('--png', metavar='OUT.png', help='draw a few sections with the worst splits and merges')
    p.add_argument('--raw', metavar='RAW', help='raw EM volume for the --png figure')
    p.add_argument('--worst', type=int, default=5, metavar='N', help='worst splits and merges to list (default 5)')
    add_verbosity_arguments(p)
    return p


def _check_output(path, option):
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError('cannot write %s %s: the folder %s does not exist' % (option, path, folder))


def _json_value(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError('%r is not JSON serialisable' % (value,))


class _Inputs:
    """The input volumes, opened, checked (shapes, dtypes, channel) and then read."""

    def __init__(self, args):
        from elektronn.volumes import open_volume
        self.args, self.volumes, self.channel = args, {}, None
        try:
            for what, spec in (('SEG', args.seg), ('GT', args.gt), ('PROB', args.boundary), ('RAW', args.raw)):
                if spec is not None:
                    self.volumes[what] = open_volume(spec, what=what)
            self.orders = {what: _zxy_order(vol) for what, vol in self.volumes.items()}
            self._check()
            self.arrays = {what: self._read(what) for what in self.volumes}
        finally:
            for vol in self.volumes.values():
                vol.close()

    def name(self, what):
        return '%s %s' % (what, getattr(self.args, {'PROB': 'boundary'}.get(what, what.lower())))

    def shape(self, what):
        """The shape of a volume in (z, x, y) order (see :func:`_zxy_order`)."""
        shape = self.volumes[what].shape
        return tuple(shape[a] for a in self.orders[what]) if self.orders[what] else shape

    def _check(self):
        vols, args = self.volumes, self.args
        shape = self.shape('SEG')
        for what in ('GT', 'RAW'):
            if what in vols and self.shape(what) != shape:
                raise ValueError('%s has shape %s but %s has shape %s: both must be the same (z, x, y) volume'
                                 % (self.name('SEG'), shape, self.name(what), self.shape(what)))
        for what in ('SEG',) + (() if args.gt_boundary else ('GT',)):
            dtype = vols[what].dtype
            if dtype.kind not in 'iu':
                hint = (' (a probability map? segment it first with elektronn-segment)' if dtype.kind == 'f' else '')
                if what == 'GT' and dtype.kind in 'fb':
                    hint += ' (a 0/1 membrane map? add --gt-boundary)'
                raise ValueError('%s must hold integer labels, got %s%s' % (self.name(what), dtype, hint))
        if 'PROB' in vols:
            prob, prob_shape = vols['PROB'], self.shape('PROB')
            if prob.ndim == len(shape) + 1:
                self.channel = 1 if args.channel is None else args.channel
                if not 0 <= self.channel < prob_shape[0]:
                    raise ValueError('--channel %i is out of range: %s has %i channels (shape %s); give --channel '
                                     '0..%i' % (self.channel, self.name('PROB'), prob_shape[0], prob_shape,
                                                prob_shape[0] - 1))
            elif prob.ndim == len(shape):
                if args.channel is not None:
                    raise ValueError('--channel %i given, but %s has no channel axis (shape %s)'
                                     % (args.channel, self.name('PROB'), prob_shape))
            else:
                raise ValueError('%s has shape %s: give (z, x, y) or (class, z, x, y) probabilities for SEG of '
                                 'shape %s' % (self.name('PROB'), prob_shape, shape))
            if prob_shape[-len(shape):] != shape:
                raise ValueError('%s has shape %s but %s has shape %s: both must be the same (z, x, y) volume'
                                 % (self.name('SEG'), shape, self.name('PROB'), prob_shape[-len(shape):]))
            if prob.dtype != np.uint8 and prob.dtype.kind != 'f':
                raise ValueError('%s must hold probabilities (floats in [0, 1], or uint8 = p * 255), got %s'
                                 % (self.name('PROB'), prob.dtype))

    def _read(self, what):
        values = self.volumes[what].read()
        if self.orders[what]:
            values = values.transpose(self.orders[what])
        return values[self.channel] if what == 'PROB' and self.channel is not None else values


def _zxy_order(volume):
    """The axis permutation to ``((class,) z, x, y)`` of a volume whose ``axes`` attribute records its order
    (written by elektronn-predict and elektronn-segment, e.g. ``'(class, x, y, z)'``), or ``None``: taken as it is."""
    recorded = volume.attrs.get('axes')
    if not isinstance(recorded, str):
        return None
    from elektronn.segmentation.volume_segmentation import MapLayout, SegmentationError
    try:
        axes = MapLayout.parse(recorded, volume.ndim, volume.name).axes
    except SegmentationError:
        return None
    return tuple(axes.index(n) for n in 'czxy' if n in axes)


def _run(args):
    from elektronn.evaluation import NothingToScore, evaluate, format_table, gt_segmentation_from_boundaries
    for path, option in ((args.json, '--json'), (args.png, '--png')):
        if path:
            _check_output(path, option)
    if args.worst < 1:
        raise ValueError('--worst must be a positive number, got %i' % args.worst)
    if args.raw and not args.png:
        note(PROG, '--raw is only drawn in the --png figure; not reading it')
        args.raw = None
    if args.boundary and not args.gt_boundary:
        note(PROG, 'boundary pixel scores need a 0/1 membrane ground truth (--gt-boundary); PROB is %s'
             % ('only drawn in the figure' if args.png else 'not used'))
        if not args.png:
            args.boundary = None
    inputs = _Inputs(args)
    seg, gt = inputs.arrays['SEG'], inputs.arrays['GT']
    gt_boundary = None
    if args.gt_boundary:
        gt_boundary = gt
        try:
            gt = gt_segmentation_from_boundaries(gt_boundary, two_d=args.two_d)
        except ValueError as e:
            raise ValueError('%s: %s' % (inputs.name('GT'), e)) from None
    prob = inputs.arrays.get('PROB')
    try:
        results = evaluate(seg, gt, boundary=prob if args.gt_boundary else None,
                           gt_boundary=gt_boundary if prob is not None else None, two_d=args.two_d,
                           n_worst=args.worst)
    except NothingToScore as e:
        raise ValueError('%s: %s' % (inputs.name('GT'), e)) from None
    # the scores are the command's report, not data for scripts (those read --json): INFO, hidden by --quiet
    logger.info('%s: %s against %s', PROG, args.seg, args.gt)
    logger.info('%s', format_table(results))
    if args.json:
        record = dict(inputs=dict(seg=args.seg, gt=args.gt, gt_boundary=args.gt_boundary, boundary=args.boundary,
                                  channel=inputs.channel, two_d=args.two_d), **results)
        with atomic_write(args.json, 'w') as f:
            json.dump(record, f, indent=1, default=_json_value)
        logger.info('results written to %s', args.json)
    if args.png:
        from elektronn.evaluation.figures import plot_evaluation, save_figure
        fig = plot_evaluation(seg, gt, results, raw=inputs.arrays.get('RAW'), boundary=prob)
        save_figure(fig, args.png)
        logger.info('figure written to %s', args.png)
    return 0


def main(argv=None):
    """Run ``elektronn-evaluate``; returns the exit status (0 done, 2 bad input or arguments)."""
    from elektronn.volumes import VolumeError
    args = _parser().parse_args(argv)
    with verbosity(PROG, args):
        try:
            return _run(args)
        except (VolumeError, ValueError, OSError) as e:
            error(PROG, e)
            return 2


if __name__ == '__main__':
    sys.exit(main())
