"""``elektronn-predict``: predict a volume of any size with a trained network, here or on a Dask cluster.

Usage::

    elektronn-predict <save dir | config> <in.h5:key | in.zarr:key> <out.h5[:key] | out.zarr[:key]>
                      [--params FILE] [--layout xyz|zxy] [--pad-raw] [--uint8] [--memory-gb GB]
                      [--block-shape X,Y,Z] [--resume | --overwrite] [--gpu GPU]
                      [--workers N [--threads T] | --scheduler ADDRESS|FILE] [--quiet | --verbose]

See ``elektronn-predict --help`` and :func:`elektronn.training.predictor.predict_run`.
"""
import argparse
import sys

from elektronn.cli._common import add_verbosity_arguments, error, interrupted, note, verbosity
from elektronn.cli.train import _gpu_value

__all__ = ['main']

PROG = 'elektronn-predict'

_EPILOG = """\
what happens:
  The network of the training run is rebuilt with max-fragment-pooling in every pooling layer
  (a dense network: the same numbers as predictDense, much faster) and its parameters are
  loaded. The input is cut into blocks that fit --memory-gb; each block is predicted and
  written to the output at once, and the finished blocks are recorded in <key>_done next to
  it. An interrupted run (ctrl+c, kill, a crash) keeps every finished block: run the same
  command with --resume to predict the rest (also when the interrupted run was distributed).

files:
  .h5/.hdf5: HDF5 (h5py); .zarr: Zarr (v2 or v3 stores; KEY is an array path, e.g. raw or
  volumes/raw/s0, or an OME-Zarr image group). A .zarr output is an OME-Zarr (NGFF 0.4) image
  <out.zarr>/<key> (array <key>/0, axes (class, z, x, y)), compressed, chunked as the blocks,
  with the input's voxel size: open it in napari (napari out.zarr/prob) or neuroglancer.

distributed (Zarr output):
  --workers N     a local Dask cluster of N worker processes on this machine; each predicts one
                  block at a time with --threads threads (default: cores / N). With --gpu=all or
                  --gpu=0,1,...: one worker per GPU, each seeing only its own GPU.
  --scheduler A   an existing Dask cluster (tcp://host:8786 or a scheduler file), e.g. started
                  by dask-jobqueue on SLURM/PBS; any --gpu value but false makes each worker use
                  its first visible GPU. Each worker predicts one block at a time with --threads
                  threads (default: its own thread count, dask worker --nthreads).
  Workers read their input regions straight from the store and write their output blocks;
  only block coordinates travel through the scheduler. A worker that dies has its block
  recomputed by another. The Dask dashboard's address is printed.

layouts:
  xyz (default): input (x, y, z) or (ch, x, y, z) -> output (class, x', y', z')
  zxy (default when the run used zchxy_order):  (z, x, y) or (z, ch, x, y) -> (z', class, x', y')
  (HDF5 outputs; a Zarr output is (class, z', x', y') for either layout: what viewers expect)
  Integer input is divided by 255. Output voxel k belongs to input voxel k + offset per axis
  (offset = floor(field of view / 2)), or to input voxel k with --pad-raw, which mirror-pads the
  input so that the output has the input's shape. The dataset's attribute elektronn_prediction
  records origin_zxy, the input voxel of output voxel 0.

examples:
  elektronn-predict ~/CNN_Training/3D/neuro_3d raw.h5:raw prob.h5:barrier --pad-raw --uint8
  elektronn-predict ~/CNN_Training/3D/neuro_3d raw.h5:raw prob.h5:barrier --pad-raw --uint8 --resume
  elektronn-predict my_config.py raw.h5:raw prob.h5 --params net_end.param --memory-gb 4 --gpu=0
  elektronn-predict ~/CNN_Training/3D/neuro_3d raw.zarr:raw prob.zarr:barrier --pad-raw --workers 2
  elektronn-predict ~/CNN_Training/3D/neuro_3d raw.zarr:raw prob.zarr --gpu=all --workers 4
  elektronn-predict ~/CNN_Training/3D/neuro_3d raw.zarr:raw prob.zarr --scheduler scheduler.json
"""


def _block_shape(text):
    try:
        values = [int(v) for v in text.split(',')]
    except ValueError:
        values = []
    if len(values) not in (2, 3) or min(values) < 1:
        raise argparse.ArgumentTypeError('must be X,Y,Z (or X,Y for an image) positive integers, got %r' % text)
    return tuple(values) if len(values) == 3 else tuple(values) + (1,)


def _memory(text):
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError('must be a positive number of GB, got %r' % text)
    return value


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError('must be a positive integer, got %r' % text)
    return value


def _gpus_value(text):
    """``--gpu``: as elektronn-train's, and for workers also ``all`` or a list ``0,1``."""
    from elektronn.net.device import parse_gpu_list
    try:
        gpus = parse_gpu_list(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return _gpu_value(text) if gpus is None else gpus


def _tta_mode(text):
    if text in ('xy', 'xyz'):
        return text
    raise argparse.ArgumentTypeError("give xy or xyz (or --tta alone), not %r" % text)


def _parser():
    p = argparse.ArgumentParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_EPILOG,
        description='Predict class probabilities of a volume in an HDF5 file or Zarr store, block by block, with a '
                    'trained network, in this process or on a Dask cluster.')
    p.add_argument('run', help='save directory of the training run (its Backup/config.py and the newest of its '
                               '<save_name>_end.param, -LAST.param and -<h>h.param), '
                               'or a training config file')
    p.add_argument('input', help='raw data as file.h5:key or store.zarr:key')
    p.add_argument('output', help="output as file.h5:key or out.zarr:key (without a key: 'prob'); the file or store is "
                                  'created if needed')
    p.add_argument('--params', metavar='FILE', help='parameter file (default: the newest of <save_name>_end.param, '
                                                    '-LAST.param and -<h>h.param of the run)')
    p.add_argument('--layout', choices=('xyz', 'zxy'), help="axis order of the input (default: the run's "
                                                            "zchxy_order, i.e. xyz unless it is set)")
    p.add_argument('--pad-raw', action='store_true', help='mirror-pad the input so that the output has its shape')
    p.add_argument('--uint8', action='store_true', help='write uint8 probabilities (p * 255) instead of float32')
    p.add_argument('--memory-gb', type=_memory, default=None, metavar='GB',
                   help='memory for a block: input, activations and output (default 1.0; the process needs about '
                        '0.35 GB more)')
    p.add_argument('--block-shape', type=_block_shape, metavar='X,Y,Z',
                   help='output voxels per block instead of a shape chosen from --memory-gb')
    group = p.add_mutually_exclusive_group()
    group.add_argument('--resume', action='store_true',
                       help='continue an interrupted prediction into the existing output (finished blocks are kept)')
    group.add_argument('--overwrite', action='store_true', help='replace an existing output dataset')
    p.add_argument('--gpu', type=_gpus_value, default=None, metavar='{auto|false|<int>|all|0,1,..}',
                   help="device; default: the config's 'device' (False = CPU); with --workers the GPUs, one worker "
                        'each')
    dist = p.add_mutually_exclusive_group()
    dist.add_argument('--workers', type=_positive_int, metavar='N',
                      help='predict on a local Dask cluster of N worker processes (Zarr output)')
    dist.add_argument('--scheduler', metavar='ADDRESS|FILE',
                      help='predict on an existing Dask cluster: tcp://host:port or a scheduler file (Zarr output)')
    p.add_argument('--precision', choices=('auto', 'fp32', 'bf16', 'fp16'), default='auto',
                   help='arithmetic of the prediction: auto (default) is bf16 where the device computes it natively '
                        '(CPUs with AVX512_BF16 or AMX, GPUs of compute capability 8.0 and higher), else fp32; '
                        'fp16 on GPUs')
    p.add_argument('--tta', nargs='?', const=True, default=False, choices=(True, 'xy', 'xyz'), type=_tta_mode,
                   help='test-time augmentation: average the predictions of the flipped and xy-transposed input '
                        '(8 transforms; xyz: also flipped along z, 16, for isotropic data; without a value: xyz for '
                        '3D networks with the same field of view along z, x and y, else xy); costs that many '
                        'predictions')
    p.add_argument('--threads', type=_positive_int, metavar='T',
                   help='computing threads per worker (default: with --workers the cores divided by the workers, '
                        "with --scheduler each worker's own thread count)")
    add_verbosity_arguments(p)
    return p


def main(argv=None):
    """Run ``elektronn-predict``; returns the exit status (0 done, 1 failed, 2 bad input, 130 interrupted)."""
    args = _parser().parse_args(argv)
    if args.workers is None and args.scheduler is None and (isinstance(args.gpu, list) or args.gpu == 'all'):
        _parser().error('--gpu=%s needs --workers (one worker per GPU)' % (args.gpu,))
    with verbosity(PROG, args):
        return _run(args)


def _run(args):
    if args.memory_gb is not None and args.block_shape is not None:
        note(PROG, '--block-shape given, --memory-gb is not used')
    from elektronn.training.config import ConfigError
    from elektronn.training.predictor import predict_run
    from elektronn.inference.volume_prediction import DEFAULT_MEMORY_GB, PredictionError
    try:
        predict_run(args.run, args.input, args.output, param_file=args.params, layout=args.layout,
                    pad_raw=args.pad_raw, as_uint8=args.uint8,
                    memory_gb=DEFAULT_MEMORY_GB if args.memory_gb is None else args.memory_gb,
                    block_shape=args.block_shape, resume=args.resume, overwrite=args.overwrite, gpu=args.gpu,
                    workers=args.workers, threads=args.threads, scheduler=args.scheduler, precision=args.precision,
                    tta=args.tta)
    except (PredictionError, ConfigError, FileNotFoundError, ConnectionError) as e:
        error(PROG, e)
        return 2
    except KeyboardInterrupt:
        interrupted('the finished blocks are kept; run the same command with --resume to predict the rest')
        return 130
    return 0


if __name__ == '__main__':
    sys.exit(main())
