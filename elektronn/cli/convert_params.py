"""``elektronn-convert-params``: convert an ELEKTRONN 1.x parameter file into the HDF5 format.

Usage::

    elektronn-convert-params old.param [new.h5] [--force] [--quiet | --verbose]

The old file (consecutive pickle records, as the original's ``saveParameters`` wrote them) is read
through the restricted reader of :mod:`elektronn.net.legacy`, which refuses files that would run
code; filters are converted to this package's layouts. ``cnn.loadParameters`` reads either file.
"""
import argparse
import logging
import os
import sys

from elektronn.cli._common import add_verbosity_arguments, error, verbosity
from elektronn.net import legacy, params

__all__ = ['main']

logger = logging.getLogger('elektronn.cli.convert_params')  # not __name__: that is '__main__' under python -m
PROG = 'elektronn-convert-params'


def _parser():
    parser = argparse.ArgumentParser(
        prog=PROG,
        description='Convert an ELEKTRONN 1.x parameter file (.param, CNN.save) into the safe HDF5 parameter '
                    'format of this version.')
    parser.add_argument('input', help='the ELEKTRONN 1.x parameter file')
    parser.add_argument('output', nargs='?', help='the HDF5 file to write (default: the input name with .h5)')
    parser.add_argument('--force', action='store_true', help='overwrite an existing output file')
    add_verbosity_arguments(parser)
    return parser


def main(argv=None):
    """Run ``elektronn-convert-params``; returns the exit status (0 converted, 1 unreadable or unconvertible file, 2 bad arguments)."""
    parser = _parser()
    args = parser.parse_args(argv)
    output = args.output or os.path.splitext(args.input)[0] + '.h5'
    if os.path.abspath(output) == os.path.abspath(args.input):
        parser.error('the output %r would overwrite the input; name another output file' % output)
    if os.path.exists(output) and not args.force:
        parser.error('%r exists; use --force to overwrite it' % output)
    if not os.path.isfile(args.input):
        parser.error('%r does not exist' % args.input)
    with verbosity(PROG, args):
        return _convert(args.input, output)


def _convert(input_path, output):
    try:
        layers, poolings = legacy.read_legacy_param_file(input_path)
    except ValueError as e:
        error(PROG, e)
        return 1
    marked = [i for i, entry in enumerate(layers) if legacy.FLATTEN_ORDER_KEY in entry]
    if marked:
        error(PROG, 'layer(s) %s of %r are perceptron layers after a 3D conv layer; their weights depend on the conv '
                    'output shape, which the file does not record. Load the file directly with cnn.loadParameters(%r) '
                    'and save it with cnn.saveParameters(...).' % (marked, input_path, input_path))
        return 1
    params.save_parameter_entries(output, layers, poolings)
    for i, entry in enumerate(layers):
        shapes = ', '.join('%s %s' % (name, tuple(value.shape)) for name, value in entry.items() if name != 'type')
        logger.info('layer %i: %s: %s', i, entry['type'], shapes)
    logger.info('poolings: %s', poolings)
    logger.info('wrote %s', output)
    return 0


if __name__ == '__main__':  # pragma: no cover
    sys.exit(main())
