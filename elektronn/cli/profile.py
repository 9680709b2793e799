"""``elektronn-profile``: prediction speed of a config's network over a sweep of input sizes.

Usage::

    elektronn-profile <config> [--gpu {auto|false|<int>}] [--mfp] [--csv FILE] [--xy-sizes 100,150] [--z-sizes 8,16]
                      [--quiet | --verbose]

Writes the rows ``z-shape, xy-shape, pixel, Speed [MPix/s]`` (tab-separated) to
``Speed_<save_name>.csv`` in the working directory, as the original did. See
:func:`elektronn.training.predictor.profile_speed`.
"""
import argparse
import logging
import sys

from elektronn.cli._common import add_verbosity_arguments, error, interrupted, verbosity
from elektronn.cli.train import _gpu_value, find_config

__all__ = ['main']

logger = logging.getLogger('elektronn.cli.profile')  # not __name__: that is '__main__' under python -m
PROG = 'elektronn-profile'


def _sizes(text):
    try:
        values = [int(v) for v in text.split(',')]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError('must be a comma-separated list of positive integers, got %r' % text)
    return values


def _parser():
    p = argparse.ArgumentParser(
        prog=PROG,
        description='Time the prediction (class_probabilities) of the network of CONFIG, with random weights, for a '
                    'sweep of input sizes, and append the speeds to a tab-separated CSV file (by default '
                    'Speed_<save_name>.csv here). The sweep is the original\'s: xy over valid_inputs[4:50], z '
                    'around xy / 8.5 (offsets -16 ... +24) for 3D networks.')
    p.add_argument('config', help='training config file (or save directory; a bare example name works too)')
    p.add_argument('--gpu', type=_gpu_value, default=None, metavar='{auto|false|<int>}',
                   help="device; default: the config's 'device' (False = CPU)")
    p.add_argument('--mfp', action='store_true', help='max-fragment-pooling in every pooling layer (the network '
                                                      'for fast dense prediction)')
    p.add_argument('--csv', metavar='FILE', help='CSV file to append to (default: Speed_<save_name>.csv)')
    p.add_argument('--xy-sizes', type=_sizes, metavar='N,N,...', help='xy sizes instead of the sweep')
    p.add_argument('--z-sizes', type=_sizes, metavar='N,N,...', help='z sizes instead of the sweep (3D)')
    p.add_argument('--n-ch', type=int, default=1, help='input channels (default 1)')
    p.add_argument('--n-lab', type=int, default=None, help="classes (default: the config's n_lab, else 3)")
    p.add_argument('--repeats', type=int, default=2, help='passes per shape, the fastest counts (default 2)')
    add_verbosity_arguments(p)
    return p


def main(argv=None):
    """Run ``elektronn-profile``; returns the exit status."""
    args = _parser().parse_args(argv)
    with verbosity(PROG, args):
        return _run(args)


def _run(args):
    from elektronn.training.config import ConfigError
    from elektronn.training.predictor import profile_speed
    try:
        path, rows = profile_speed(find_config(args.config), gpu=args.gpu, csv_path=args.csv, n_ch=args.n_ch,
                                   n_lab=args.n_lab, mfp=args.mfp, xy_sizes=args.xy_sizes, z_sizes=args.z_sizes,
                                   repeats=args.repeats)
    except (ConfigError, FileNotFoundError) as e:
        error(PROG, e)
        return 2
    except KeyboardInterrupt:
        interrupted('the rows measured so far are in the CSV file')
        return 130
    if rows:
        z, xy, _n, speed = max(rows, key=lambda r: r[3])
        logger.info('Fastest: z=%i xy=%i at %.3f MPix/s; all rows in %s', z, xy, speed, path)
    return 0 if rows else 1


if __name__ == '__main__':
    sys.exit(main())
