"""``elektronn-convert-params``: convert an ELEKTRONN 1.x parameter file into the HDF5 format.

Usage::

    elektronn-convert-params old.param [new.h5] [--force]

The old file (consecutive pickle records, as the original's ``saveParameters`` wrote them) is read
through the restricted reader of :mod:`elektronn.net.legacy`, which refuses files that would run
code; filters are converted to this package's layouts. ``cnn.loadParameters`` reads either file.
"""
import argparse
import os
import sys

from elektronn.net import legacy, params

__all__ = ['main']


def _parser():
    parser = argparse.ArgumentParser(
        prog='elektronn-convert-params',
        description='Convert an ELEKTRONN 1.x parameter file (.param, CNN.save) into the safe HDF5 parameter '
                    'format of this version.')
    parser.add_argument('input', help='the ELEKTRONN 1.x parameter file')
    parser.add_argument('output', nargs='?', help='the HDF5 file to write (default: the input name with .h5)')
    parser.add_argument('--force', action='store_true', help='overwrite an existing output file')
    return parser


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    output = args.output or os.path.splitext(args.input)[0] + '.h5'
    if os.path.abspath(output) == os.path.abspath(args.input):
        parser.error('the output %r would overwrite the input; name another output file' % output)
    if os.path.exists(output) and not args.force:
        parser.error('%r exists; use --force to overwrite it' % output)
    if not os.path.isfile(args.input):
        parser.error('%r does not exist' % args.input)
    try:
        layers, poolings = legacy.read_legacy_param_file(args.input)
    except ValueError as e:
        print('elektronn-convert-params: error: %s' % e, file=sys.stderr)
        return 1
    marked = [i for i, entry in enumerate(layers) if legacy.FLATTEN_ORDER_KEY in entry]
    if marked:
        print('elektronn-convert-params: error: layer(s) %s of %r are perceptron layers after a 3D conv layer; their '
              'weights depend on the conv output shape, which the file does not record. Load the file directly with '
              'cnn.loadParameters(%r) and save it with cnn.saveParameters(...).' % (marked, args.input, args.input),
              file=sys.stderr)
        return 1
    params.save_parameter_entries(output, layers, poolings)
    for i, entry in enumerate(layers):
        shapes = ', '.join('%s %s' % (name, tuple(value.shape)) for name, value in entry.items() if name != 'type')
        print('layer %i: %s: %s' % (i, entry['type'], shapes))
    print('poolings: %s' % (poolings,))
    print('wrote %s' % output)
    return 0


if __name__ == '__main__':  # pragma: no cover
    sys.exit(main())
