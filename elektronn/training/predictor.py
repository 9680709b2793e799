"""Prediction with a trained network: rebuild it from its training run, predict large volumes,
profile the prediction speed.

* :func:`create_predncnn` (the original's function) rebuilds the network of a training config,
  optionally with max-fragment-pooling in every pooling layer and another input size, and loads
  the run's parameters.
* :func:`predict_run` is ``elektronn-predict``: a volume in an HDF5 file or Zarr store, predicted
  block by block into another one, here or on a Dask cluster (see
  :mod:`elektronn.inference.volume_prediction`).
* :func:`profile_speed` is ``elektronn-profile``: prediction speed over a sweep of input sizes,
  written to a CSV file.
"""
import logging
import os
import re
import time
import traceback
import warnings

import numpy as np

from elektronn.training.config import Config, ConfigError
from elektronn import volumes
from elektronn.inference.volume_prediction import (DEFAULT_MEMORY_GB, InputVolume, PredictionError,
                                                   check_distributed_output, parse_h5_spec, predict_volume)

logger = logging.getLogger(__name__)

__all__ = ['create_predncnn', 'locate_run', 'newest_params', 'predict_run', 'profile_speed', 'profile_shapes']

#: Layer types whose filters predict ``n_lab`` classes for each of 3 edge directions.
_AFFINITY_LAYERS = ('AffinityLayer3d', 'MalisLayer')


def locate_run(source):
    """The config file of a training run and its save directory.

    Args:
        source: A save directory (its ``Backup/config.py`` is used), a config file in the
            ``Backup/`` folder of a save directory, or any config file.

    Returns:
        ``(config_file, save_dir)``; ``save_dir`` is ``None`` when it comes from the config's
        ``save_path``.

    Raises:
        FileNotFoundError: naming the path.
    """
    path = os.path.abspath(os.path.expanduser(source))
    if os.path.isdir(path):
        config = os.path.join(path, 'Backup', 'config.py')
        if not os.path.isfile(config):
            raise FileNotFoundError('%s is not the save directory of a training run (it has no Backup/config.py)'
                                    % source)
        return config, os.path.join(path, '')
    if not os.path.isfile(path):
        raise FileNotFoundError('config file or save directory %s does not exist' % source)
    folder = os.path.dirname(path)
    if os.path.basename(folder) == 'Backup':
        return path, os.path.join(os.path.dirname(folder), '')
    return path, None


def _prediction_config(config_file, gpu, override_MFP_to_active, imposed_input_size):
    """The training config of ``config_file`` (a file or a save directory), read for prediction:
    the save directory is used as it is (nothing backed up or deleted) and the training data
    need not exist. The caller selects the device (``config.init_device()``) when it builds the
    network. Only an imposed input size gets the ``Info: ... changed to`` notes: the training's
    ``desired_input`` changed by the MFP rule is no news (the tile used is printed in any case)."""
    path, save_dir = locate_run(config_file)
    config = Config(path, gpu, None, use_existing_dir=True, override_MFP_to_active=override_MFP_to_active,
                    imposed_input_size=imposed_input_size, check_files=False,
                    size_notes=imposed_input_size is not None)
    if save_dir is not None:
        config.save_path = save_dir  # the run may have moved since it was trained
    config.param_file = None  # the trained parameters replace the initial ones
    config.mixed_precision = False  # the training's precision; a prediction's is chosen (and printed) on its own
    return config


#: The hourly snapshots ``<save_name>-<hours>h.param`` (hours as the trainer writes them: ``-2.0h``).
_SNAPSHOT = r'-(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?h\.param'


def newest_params(save_dir, save_name):
    """The newest complete parameter file a training run saved.

    Among ``<save_name>_end.param`` (end of the run), ``<save_name>-LAST.param`` (every history
    step) and the snapshots ``<save_name>-<hours>h.param`` in ``save_dir``, the one modified last
    (on a tie: ``_end`` before ``-LAST`` before a snapshot) that opens as a parameter file; one
    that does not (e.g. truncated by a full disk) is skipped with a warning. Prints which file is
    used.

    Returns:
        The path of the file.

    Raises:
        FileNotFoundError: there is none, naming the directory and the files looked for.
    """
    from elektronn.net.params import read_parameter_file
    fixed = {save_name + '_end.param': 0, save_name + '-LAST.param': 1}
    snapshot = re.compile(re.escape(save_name) + _SNAPSHOT + '$')
    try:
        names = os.listdir(save_dir)
    except OSError:
        names = None
    found = []
    for name in names or ():
        path = os.path.join(save_dir, name)
        if (name in fixed or snapshot.match(name)) and os.path.isfile(path):
            found.append((-os.stat(path).st_mtime_ns, fixed.get(name, 2), name, path))
    found.sort()
    broken = []
    for _, _, name, path in found:
        try:
            read_parameter_file(path)
        except Exception as e:  # truncated HDF5 (OSError), foreign file (ValueError), broken pickle, ...
            warnings.warn('skipping %s: not a complete parameter file (%s)' % (path, e), stacklevel=2)
            broken.append('%s (%s)' % (name, e))
            continue
        logger.info('Using parameters %s (newest of: %s)', path, ', '.join(entry[2] for entry in found))
        return path
    looked_for = '%s_end.param, %s-LAST.param and %s-<hours>h.param' % (save_name, save_name, save_name)
    if names is None:
        where = 'the save directory %s does not exist' % save_dir
    elif broken:
        where = 'no complete parameter file in the save directory %s (looked for %s; unreadable: %s)' % (
            save_dir, looked_for, '; '.join(broken))
    else:
        where = 'no parameter file in the save directory %s (looked for %s)' % (save_dir, looked_for)
    raise FileNotFoundError('%s; has the run saved parameters yet?' % where)


def _trained_params(config, param_file, option):
    """``param_file`` if given (it must exist), else the run's newest complete parameter file
    (:func:`newest_params`). Raises FileNotFoundError naming ``option`` as the way out."""
    if param_file is not None:
        path = os.path.expanduser(param_file)
        if not os.path.isfile(path):
            raise FileNotFoundError('parameter file %s does not exist' % path)
        return path
    try:
        return newest_params(config.save_path, config.save_name)
    except FileNotFoundError as e:
        raise FileNotFoundError('%s (give %s otherwise)' % (e, option)) from None


def create_predncnn(config_file, n_ch, n_lab, gpu=None, override_MFP_to_active=False, imposed_input_size=None,
                    param_file=None, precision='auto'):
    """Rebuild the network of a training config and load its trained parameters.

    The config is read with the existing save directory (nothing is backed up, replaced or
    deleted, and the training data need not be present), the network is built as the training
    built it (``netcreation.createNet``), and the parameters are loaded strictly (the
    architecture must match) from ``param_file`` or else from the newest complete parameter file
    of the run in ``save_path`` (``<save_name>_end.param``, ``-LAST.param`` or an hourly
    snapshot, see :func:`newest_params`).
    Unlike the original, the working directory is not changed.

    Args:
        config_file: The training config; also a save directory (its ``Backup/config.py``; the
            parameters are then looked up in that directory even if the run has moved).
        n_ch: Input channels of an image network (1 for grey values); for a vector network
            (``'vect-scalar'``) the number of input features (for a recurrent network the pair
            ``(n_taps, n_features)``).
        n_lab: Number of classes (outputs).
        gpu: ``False`` (CPU), ``'auto'`` or a GPU index; ``None`` takes the config's ``device``.
        override_MFP_to_active: Max-fragment-pooling in every pooling layer and batch size 1:
            a dense network for fast prediction (``predictDense`` needs one pass per tile).
        imposed_input_size: Input size instead of ``desired_input``, in the network's order
            (``(x, y)`` or ``(z, x, y)``). When every pooling layer uses MFP (e.g. with
            ``override_MFP_to_active``) any size of at least the field of view is used exactly;
            otherwise the nearest valid size, as for ``desired_input``.
        param_file: Parameters to load instead of the run's newest parameter file.
        precision: The precision of its predictions (see
            :meth:`~elektronn.net.convnet.MixedConvNN.setPrecision`): ``'auto'`` (bf16 where the
            device computes it natively, else float32), ``'fp32'``, ``'bf16'`` or ``'fp16'``. Printed.

    Returns:
        The compiled :class:`~elektronn.net.convnet.MixedConvNN` with the trained parameters.

    Raises:
        ConfigError: the config is invalid.
        FileNotFoundError: the config, save directory or parameter file does not exist.
        ValueError: the parameters do not fit the network (e.g. another ``n_ch`` or ``n_lab``).
    """
    config = _prediction_config(config_file, gpu, override_MFP_to_active, imposed_input_size)
    path = _trained_params(config, param_file, 'param_file')
    config.init_device()
    return _build(config, n_ch, n_lab, path, precision)


def _build(config, n_ch, n_lab, param_path, precision):
    from elektronn.training.netcreation import createNet
    if config.mode != 'vect-scalar':
        cnn = createNet(config, config.patch_size, n_ch, n_lab, config.dimensions)
    elif config.rnn_layer_kwargs is not None:
        n_taps, n_features = n_ch
        cnn = createNet(config, (int(n_features),), int(n_taps), n_lab, None)
    else:
        cnn = createNet(config, tuple(np.atleast_1d(n_ch).astype(int)), None, n_lab, None)
    try:
        # a network built for prediction has no optimiser state: no 'resetting momenta'
        cnn.loadParameters(param_path, strict=True, reset_momenta=False)
    except ValueError as e:
        raise ValueError('%s does not fit the network of %s built with n_ch=%r, n_lab=%r: %s'
                         % (param_path, config.config_file, n_ch, n_lab, e)) from None
    cnn.setPrecision(precision)
    return cnn


def _trained_shape(param_path):
    """``(n_ch, n_lab)`` of the image network whose parameters are in ``param_path``."""
    from elektronn.net.params import read_parameter_file
    try:
        layers, _ = read_parameter_file(param_path)
    except (FileNotFoundError, ValueError) as e:
        raise PredictionError(str(e)) from None
    first, last = (layers[0].get('W') if layers else None), (layers[-1].get('W') if layers else None)
    if first is None or first.ndim < 4 or last is None or last.ndim < 4:
        raise PredictionError('%s holds no conv network (elektronn-predict needs an image network trained in mode '
                              "'img-img')" % param_path)
    per_edge = 3 if layers[-1].get('type') in _AFFINITY_LAYERS else 1
    return int(first.shape[1]), int(last.shape[0]) // per_edge


def predict_run(run, input_spec, output_spec, param_file=None, layout=None, pad_raw=False, as_uint8=False,
                memory_gb=DEFAULT_MEMORY_GB, block_shape=None, resume=False, overwrite=False, gpu=None,
                show_progress=True, progress_interval=None, workers=None, threads=None, scheduler=None, client=None,
                precision='auto', tta=False):
    """``elektronn-predict``: predict a volume (HDF5 or Zarr) with a trained network, block by block.

    Args:
        run: A training save directory, or a training config file.
        input_spec: ``'file.h5:key'`` or ``'vol.zarr:key'`` of the raw data.
        output_spec: ``'file.h5:key'`` or ``'out.zarr:key'`` of the output (without a key: ``'prob'``).
        param_file: Parameters (default: the run's newest complete parameter file, see
            :func:`newest_params`).
        layout: ``'xyz'`` or ``'zxy'`` (default: ``'zxy'`` if the run's ``zchxy_order`` is set).
        block_shape: Output block shape ``(x, y, z)`` instead of one chosen from ``memory_gb``.
        gpu: In this process: ``False``, ``'auto'`` or an index (``None``: the config's ``device``).
            With workers: the GPUs, one worker each (``'all'``, ``'0,1'``, a list, an index or
            ``'auto'``); on an existing cluster (``scheduler``, ``client``) any GPU value makes each
            worker use its first visible GPU.
        workers: Start a local Dask cluster of this many worker processes (Zarr output).
        threads: Computing threads per worker (default: with ``workers`` the cores divided by the
            workers; on an existing cluster each worker's own thread count).
        scheduler: Address (``tcp://host:8786``) or scheduler file of an existing Dask cluster.
        client: A ``distributed.Client`` to use (instead of ``workers``/``scheduler``).
        precision: ``'auto'`` (bf16 where the device computes it natively, else float32), ``'fp32'``,
            ``'bf16'`` or ``'fp16'`` (see :mod:`elektronn.net.precision`); chosen again on each worker's
            device, printed and recorded with the output.
        tta: Test-time augmentation (``False``, ``True``, ``'xy'``, ``'xyz'``; see :mod:`elektronn.net.tta`).
        Others: as :func:`~elektronn.inference.volume_prediction.predict_volume`.

    Returns:
        The summary of :func:`~elektronn.inference.volume_prediction.predict_volume`.

    Raises:
        PredictionError, ConfigError, FileNotFoundError: naming what is wrong.
    """
    if sum(x is not None for x in (workers, scheduler, client)) > 1:
        raise PredictionError('give one of workers (--workers), scheduler (--scheduler) and client')
    distributed = workers is not None or scheduler is not None or client is not None
    input_path, input_key = parse_h5_spec(input_spec, 'input')
    output_path, output_key = parse_h5_spec(output_spec, 'output', default_key='prob')
    if distributed:
        check_distributed_output(output_path, output_key)
    gpus = _worker_gpus(gpu) if workers is not None else None
    # on an existing cluster the GPUs are the workers' own: this machine (a login node) has none to look at
    worker_device = 'cuda' if gpus is not None or (distributed and workers is None and _wants_gpu(gpu)) else 'cpu'
    config = _prediction_config(run, False if distributed else gpu, True, None)
    config.init_device()
    if config.mode != 'img-img':
        raise PredictionError("%s: mode %r predicts one value per patch; elektronn-predict needs an 'img-img' network"
                              % (config.config_file, config.mode))
    layout = layout or ('zxy' if config.zchxy_order else 'xyz')
    try:  # fail on a wrong input before building the network
        with volumes.open_container(input_path, 'r', 'input') as f:
            in_ch = InputVolume(f.volume(input_key), layout, name=volumes.describe(input_path, input_key)).n_ch
    except volumes.VolumeError as e:
        raise PredictionError(str(e)) from None
    try:
        param_path = _trained_params(config, param_file, '--params')
    except FileNotFoundError as e:
        raise PredictionError(str(e)) from None
    n_ch, n_lab = _trained_shape(param_path)
    if in_ch != n_ch:
        raise PredictionError('input %s:%s has %i channel(s) (layout %s) but the network of %s was trained on %i'
                              % (input_path, input_key, in_ch, layout, param_path, n_ch))
    try:
        cnn = _build(config, n_ch, n_lab, param_path, precision)
    except ValueError as e:  # parameters of another architecture than the config's (or a bad precision)
        raise PredictionError(str(e)) from None
    zxy_block = None if block_shape is None else tuple(block_shape)[-1:] + tuple(block_shape)[:-1]
    kwargs = dict(layout=layout, pad_raw=pad_raw, as_uint8=as_uint8, memory_gb=memory_gb, block_shape=zxy_block,
                  tta=tta, resume=resume, overwrite=overwrite, show_progress=show_progress,
                  progress_interval=progress_interval,
                  info=dict(param_file=os.path.abspath(param_path), config_file=config.config_file,
                            precision=cnn.precision))
    if not distributed:
        return predict_volume(cnn, (input_path, input_key), (output_path, output_key), **kwargs)
    from elektronn.inference.runners import ClusterError, cluster_client
    kwargs.update(worker_device=worker_device, threads=threads if workers is None else None)  # a local cluster's
    if client is not None:                                                                   # workers know theirs
        return predict_volume(cnn, (input_path, input_key), (output_path, output_key), client=client, **kwargs)
    try:
        with cluster_client(workers, threads, scheduler, gpus) as client:
            return predict_volume(cnn, (input_path, input_key), (output_path, output_key), client=client, **kwargs)
    except ClusterError as e:
        raise PredictionError('--workers %s, --gpu=%s: %s' % (workers, gpu, e)) from None


def _wants_gpu(gpu):
    """Whether a ``--gpu`` value asks for a GPU at all (``False``, ``'false'``, ``None``: no)."""
    from elektronn.net.device import parse_gpu, parse_gpu_list
    try:
        return parse_gpu_list(gpu) is not None or parse_gpu(gpu) != 'cpu'
    except ValueError as e:
        raise PredictionError(str(e)) from None


def _worker_gpus(gpu):
    """The GPU indices for one worker each, or ``None`` for CPU workers (see :func:`predict_run`)."""
    from elektronn.net.device import find_free_gpu, gpu_list_indices, parse_gpu, parse_gpu_list
    try:
        gpus = parse_gpu_list(gpu)
        if gpus == 'all':
            return gpu_list_indices(gpus, gpu, without='predicts on CPU workers')
        if gpus is not None:
            return gpus
        choice = parse_gpu(gpu)
    except ValueError as e:
        raise PredictionError(str(e)) from None
    if choice == 'cpu':
        return None
    if choice == 'auto':
        gpu_info, reason = find_free_gpu()
        logger.info('%s: %s', 'No free GPU found, the workers use the CPU' if gpu_info is None else
                    'The worker uses GPU %i' % gpu_info.cuda_index, reason)
        return None if gpu_info is None else [gpu_info.cuda_index]
    return [choice]


# ---------------------------------------------------------------------------------------------------
# elektronn-profile
# ---------------------------------------------------------------------------------------------------
#: z offsets around the base z of every xy size, as the original swept them.
PROFILE_Z_OFFSETS = (-16, -12, -8, -4, 0, 4, 8, 12, 16, 20, 24)
#: The original profiled the xy sizes ``valid_inputs[4:50]``.
PROFILE_XY_SLICE = slice(4, 50)
CSV_HEADER = 'z-shape\txy-shape\tpixel\tSpeed [MPix/s]\n'


def profile_shapes(dimensions, n_dim, xy_sizes=None, z_sizes=None):
    """The ``(z, xy)`` input shapes the original's profile sweeps (``z`` is 1 for 2D networks).

    xy: ``valid_inputs[4:50]`` of the x axis (also valid in y); z: the smallest valid z above
    ``xy / 8.5`` (or the smallest valid z) plus the offsets ``-16, -12, ..., 24``, where valid.
    Explicit ``xy_sizes``/``z_sizes`` replace either sweep.
    """
    valid = [list(v) for v in dimensions.valid_inputs]
    vx, vy = (valid[0], valid[1]) if n_dim == 2 else (valid[1], valid[2])
    if xy_sizes is None:
        xy_sizes = [x for x in vx if x in set(vy)][PROFILE_XY_SLICE]
    shapes = []
    for xy in xy_sizes:
        if n_dim == 2:
            shapes.append((1, int(xy)))
            continue
        if z_sizes is not None:
            zs = list(z_sizes)
        else:
            base = next((z for z in valid[0] if z > int(xy / 8.5)), valid[0][0])
            zs = [base + d for d in PROFILE_Z_OFFSETS if base + d in set(valid[0])]
        shapes.extend((int(z), int(xy)) for z in zs)
    return shapes


def profile_speed(config_file, gpu=None, csv_path=None, n_ch=1, n_lab=None, mfp=False, xy_sizes=None, z_sizes=None,
                  repeats=2, seed=0):
    """``elektronn-profile``: time ``class_probabilities`` over input sizes and append the speeds to a CSV file.

    The network of the config is built with random weights (batch size ``None``, as the original);
    the rows ``z-shape, xy-shape, pixel, Speed [MPix/s]`` (tab-separated, ``pixel`` = output
    voxels of one pass) are appended to ``csv_path`` (default ``Speed_<save_name>.csv`` in the
    working directory) after a header line, one row as soon as it is measured.

    Args:
        config_file: A training config (or save directory).
        gpu: Device (``None``: the config's ``device``).
        n_ch, n_lab: Input channels and classes (default ``n_lab``: the config's, else 3 as the
            original assumed).
        mfp: Build the network with max-fragment-pooling in every pooling layer (its input sizes
            then follow the MFP rule).
        xy_sizes, z_sizes: Sizes to profile instead of the original's sweep (:func:`profile_shapes`).
        repeats: Passes per shape; the fastest counts (the first pass of a shape also prepares
            its kernels).

    Returns:
        ``(csv_path, rows)``, rows as ``(z, xy, pixel, speed)``.
    """
    config = _prediction_config(config_file, gpu, mfp, None)
    if config.mode == 'vect-scalar':
        raise ConfigError('%s: elektronn-profile needs an image network (mode %r has no input size to sweep)'
                          % (config.config_file, config.mode))
    config.init_device()
    config.batch_size = None
    from elektronn.training.netcreation import createNet
    n_lab = n_lab or config.n_lab or 3
    cnn = createNet(config, config.patch_size, n_ch, n_lab, config.dimensions)
    shapes = profile_shapes(config.dimensions, config.n_dim, xy_sizes, z_sizes)
    csv_path = csv_path or 'Speed_%s.csv' % config.save_name
    with open(csv_path, 'a') as f:
        f.write(CSV_HEADER)
    rng = np.random.default_rng(seed)
    rows, work_total = [], float(sum(z * xy * xy for z, xy in shapes)) or 1.0
    work_done, t0 = 0.0, time.time()
    logger.info('Profiling %i input shapes of %s into %s', len(shapes), config.save_name, csv_path)
    for k, (z, xy) in enumerate(shapes, 1):
        shape = (1, n_ch, xy, xy) if config.n_dim == 2 else (1, z, n_ch, xy, xy)
        try:
            data = rng.random(shape, dtype=np.float32)
            best = np.inf
            for _ in range(max(1, repeats)):
                t = time.perf_counter()
                out = cnn.class_probabilities(data)
                best = min(best, time.perf_counter() - t)
        except (RuntimeError, ValueError, MemoryError):
            logger.info('[%i/%i] z=%i xy=%i: failed', k, len(shapes), z, xy)
            traceback.print_exc()
            continue
        finally:
            work_done += z * xy * xy
        n = int(np.prod(out.shape[2:]))
        speed = n / best / 1e6
        rows.append((z, xy, n, speed))
        with open(csv_path, 'a') as f:
            f.write('%i\t%i\t%i\t%f\n' % (z, xy, n, speed))
        elapsed = time.time() - t0
        logger.info('[%i/%i] z=%i xy=%i: %i output voxels, %.3f MPix/s | elapsed %.0f s | ETA %.0f s',
                    k, len(shapes), z, xy, n, speed, elapsed, elapsed / work_done * (work_total - work_done))
    return csv_path, rows
