"""Segmentation quality of trained networks: seeded watershed on predicted membranes vs. on smoothed raw data.

Two figures, one JSON line each (``emit``), every baseline measured in the same run on the same
voxels with the same segmenter.

(a) ``isbi2012_segmentation`` -- ISBI 2012 (``isbi2012_train.h5``, ssTEM, 4 x 4 x 50 nm).

* **Training.** The example network of ``examples/isbi2012_config.py`` (sections 0-23 train,
  24-29 validate), copied with the overrides of ``bench_isbi.py`` (save path in the work folder,
  no plots/previews, no run-time limit), is trained through ``Trainer.run`` until the CPU time
  spent since the start of the loop (this process plus its background batch workers) reaches
  ``--cpu-minutes`` (default 30, as ``bench_isbi.py``).
* **Prediction.** The trained parameters are loaded into the same network built with
  max-fragment-pooling in every pooling layer (``create_predncnn(..., override_MFP_to_active=True)``:
  the same numbers as ``predictDense`` of the training network, one pass per tile) and sections
  18-29 of the raw stack are predicted with ``pad_raw=True`` (the example's 2D network section by
  section; a 3D network also gets the real sections before them that it sees, its z offset, e.g.
  16 and 17 for one with a field of view of 5 sections) and a mirror image (NumPy ``'symmetric'``)
  beyond the stack's end and beyond the image border, so that every pixel of sections 18-29 gets a
  prediction, aligned with its input pixel. The membrane probability is class 1 (``barrier`` 1 =
  membrane).
* **Segmentation.** ``Segmenter(kind='boundaries', two_d=True, threshold=T, min_seed_distance=D,
  min_size=0)`` per section (seg label 0 would be one ordinary segment for the metrics, so no
  segment is removed).
* **Ground truth and scores.** ``gt = gt_segmentation_from_boundaries(barrier, two_d=True)`` (4-connected
  cell interiors per section; membrane pixels are label 0 and not scored), scored with
  ``segmentation_scores(seg, gt, two_d=True)`` on the validation sections 24-29 (the mean over
  sections, each section on its own).
* **Baseline.** The same segmenter on ``1 - normalised Gaussian-smoothed raw`` (membranes are
  dark): the raw stack smoothed in-plane only (sigma ``s`` pixels, sections separately),
  normalised over the whole stack to [0, 1] by its 1st and 99th percentiles (clipped).
* **Parameters.** For each method separately, ``T`` in {0.3, 0.4, ..., 0.9}, ``D`` in
  {5, 10, 15, 25, 40} pixels (and, for the baseline, ``s`` in {1, 2}) are chosen on the *training*
  sections 18-23 (as many as the validation sections) by the smallest ``voi`` (split + merge; the
  Rand error, dominated by the few largest objects, jumps between neighbouring grid points and
  chooses less reliably); the validation sections 24-29 are then scored once with those
  parameters. Both methods get the same grid, criterion and tuning data (the network has seen
  the labels of those sections in training, the baseline has nothing to learn); nothing is tuned
  on the validation sections.

(b) ``fib_segmentation`` -- FIB-SEM (``neuroproof_fib_sample2.h5``, 10 nm isotropic, 250^3).

* **Training.** The isotropic 3D network of ``examples/neuroproof_fib_config.py`` (targets: the
  2-voxel-thick ``barrier`` between ground-truth bodies; z 0-179 train, 180-249 validate, a region
  of 70 x 250 x 250 voxels, large enough for a 3D score, so the regions are kept), same overrides,
  trained for ``--fib-cpu-minutes`` (default 20) CPU minutes.
* **Prediction.** As above, in 3D: z 95-249 of the raw volume are predicted with ``pad_raw=True``
  (field of view 31 voxels per axis: z 95-109 are context only, mirror padding beyond the
  volume), giving every voxel of z 110-249.
* **Segmentation.** ``Segmenter(kind='boundaries', two_d=False, threshold=T, min_seed_distance=D,
  min_size=0)`` in 3D.
* **Ground truth and scores.** The body ``segmentation`` of the same voxels (body id 0, a few dozen
  voxels of the region, ignored), ``segmentation_scores(seg, gt, two_d=False)`` over the validation
  region z 180-249 (3D VOI and Rand error).
* **Baseline.** The same 3D watershed on ``1 - normalised Gaussian-smoothed raw`` (isotropic
  sigma ``s``, percentiles of the whole volume).
* **Parameters.** ``T`` in {0.4, 0.5, ..., 0.9}, ``D`` in {4, 6, 10, 15} voxels (baseline: ``s`` in
  {1, 2}), chosen per method on the training slab z 110-179 (as large as the validation region:
  in 3D, merges through gaps grow with the volume) by the smallest ``voi``, as above.

Fields of each figure: ``<metric>_network``, ``<metric>_baseline`` and ``<metric>_ratio``
(network / baseline; below 1 = the network is better) for ``rand_error`` (ISBI 2012's Rand error,
1 - the Rand F-score over the pairs of voxels with a non-ignored gt label, i.e. foreground
restricted), ``adapted_rand_error`` (CREMI's; the same number by definition), ``voi_split``
(H(seg | gt), bits), ``voi_merge`` (H(gt | seg)) and ``voi``; ``network_params`` and
``baseline_params`` (the chosen ``threshold``, ``min_seed_distance``, ``min_size`` and, for the
baseline, ``sigma``); ``criterion`` (what the search minimised); ``tuning_voi_network`` /
``_baseline`` and ``tuning_rand_error_network`` / ``_baseline`` (the scores on the tuning region
at the chosen parameters); ``segments_network`` / ``_baseline`` / ``gt_segments`` in the scored region;
``tuning_region`` and ``scored_region`` (``[start, stop)`` along z); ``steps``,
``training_cpu_seconds``, ``cpu_budget_s``, ``cpu_seconds_before_training``, ``training_seconds``
(the trainer's clock), ``outcome``, ``last_status`` (the last training status line);
``prediction_seconds``, ``segmentation_seconds`` (the parameter search and the final scoring of
both methods), ``wall_seconds`` (the whole figure, set-up included); plus ``emit``'s
``torch_threads``, ``OMP_WAIT_POLICY`` and ``load_average_1min``.

Training output is captured; a progress line goes to stderr at the start and end of each stage.

Usage::

    python benchmarks/bench_segmentation.py [--cpu-minutes 30] [--fib-cpu-minutes 20] [--only isbi|fib]
        [--data FOLDER] [--workdir DIR] [--threads N]
"""
import argparse
import contextlib
import io
import itertools
import os
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, '..')
EXAMPLES = os.path.join(ROOT, 'examples')
SHARED = os.path.join(ROOT, '..', 'shared', 'data')
sys.path.insert(0, HERE)
from _pipeline_setup import emit, example_trainer, train_for_cpu_budget  # noqa: E402

METRICS = ('rand_error', 'adapted_rand_error', 'voi_split', 'voi_merge', 'voi')
#: What the parameter search minimises on the tuning region (see the module docstring).
CRITERION = 'voi'
#: Parameter grids (thresholds, min_seed_distances) and the baseline's smoothing sigmas.
ISBI_GRID = ((0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9), (5, 10, 15, 25, 40))
FIB_GRID = ((0.4, 0.5, 0.6, 0.7, 0.8, 0.9), (4, 6, 10, 15))
SIGMAS = (1.0, 2.0)


def progress(text):
    """A progress line on stderr, named after the running benchmark script (this one or one importing it)."""
    script = os.path.splitext(os.path.basename(sys.argv[0]))[0] or 'bench_segmentation'
    print('[%s %s] %s' % (script, time.strftime('%H:%M:%S'), text), file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------
# training and prediction
# ------------------------------------------------------------------------------------------------
def make_trainer(example, workdir, name):
    """A Trainer (data loaded, net created) for a copy of ``example`` with the benchmark overrides, and the
    copy's path."""
    config_path = os.path.join(workdir, 'bench_segmentation_%s_config.py' % name)
    return example_trainer(os.path.join(EXAMPLES, example), config_path, os.path.join(workdir, 'run_%s' % name)), \
        config_path


def predict_membranes(trainer, config_path, raw_zxy, tile_zxy, tta=False, precision='auto'):
    """Membrane probability (class 1) of every voxel of ``raw_zxy`` (uint8 ``(z, x, y)``, file order).

    The trained parameters go into the same network with max-fragment-pooling (dense: one pass
    per tile of input ``tile_zxy``); ``pad_raw=True`` mirror-pads the input by the network's offset,
    so output voxel k is the prediction for input voxel k; ``tta`` and ``precision`` as for
    ``predictDense``. Returns float32 ``(z, x, y)``.
    """
    param = os.path.join(trainer.save_path, 'bench_segmentation_trained.param')
    with contextlib.redirect_stdout(io.StringIO()):
        trainer.cnn.saveParameters(param, show=False)
    from elektronn.training.predictor import create_predncnn
    with contextlib.redirect_stdout(io.StringIO()):
        cnn = create_predncnn(config_path, 1, 2, gpu=False, override_MFP_to_active=True,
                              imposed_input_size=tuple(int(t) for t in tile_zxy), param_file=param,
                              precision=precision)
        prob = cnn.predictDense(np.ascontiguousarray(raw_zxy.transpose(1, 2, 0)[None]), show_progress=False,
                                pad_raw=True, tta=tta)          # (2, x, y, z)
    membrane = np.ascontiguousarray(prob[1].transpose(2, 0, 1), dtype=np.float32)
    assert membrane.shape == raw_zxy.shape, (membrane.shape, raw_zxy.shape)
    return np.clip(membrane, 0, 1, out=membrane)


def smoothed_raw_boundary(raw_zxy, sigma, two_d):
    """``1 - normalised Gaussian-smoothed raw``: high on the dark membranes; float32 in [0, 1].

    Smoothed in-plane only (each section on its own) when ``two_d``; normalised over the whole
    given volume by its 1st and 99th percentiles, clipped to [0, 1].
    """
    from scipy import ndimage
    smooth = ndimage.gaussian_filter(raw_zxy.astype(np.float32), (0, sigma, sigma) if two_d else sigma)
    low, high = np.percentile(smooth, (1, 99))
    out = 1 - np.clip((smooth - low) / max(high - low, 1e-6), 0, 1)
    return out.astype(np.float32)


# ------------------------------------------------------------------------------------------------
# segmentation and scores
# ------------------------------------------------------------------------------------------------
def segment_and_score(boundary, gt, two_d, threshold, min_seed_distance):
    from elektronn.evaluation import segmentation_scores
    from elektronn.segmentation import Segmenter
    segmenter = Segmenter(kind='boundaries', two_d=two_d, threshold=threshold, min_seed_distance=min_seed_distance,
                          min_size=0)
    seg = segmenter(boundary[None])
    scores = segmentation_scores(seg, gt, two_d=two_d)
    scores['segments'] = int(len(np.unique(seg[seg > 0])))
    return scores


def tune(boundaries, gt, two_d, grid):
    """The parameters with the smallest :data:`CRITERION` on the tuning region (first in grid order on ties).

    ``boundaries``: ``{extra_params_tuple: boundary map}`` (e.g. one map per smoothing sigma);
    ``grid``: ``(thresholds, seed_distances)``. Returns ``(params dict, scores at them)``.
    """
    best = None
    for extra, boundary in boundaries.items():
        for threshold, distance in itertools.product(*grid):
            scores = segment_and_score(boundary, gt, two_d, threshold, distance)
            if best is None or scores[CRITERION] < best[1][CRITERION]:
                best = (dict(extra, threshold=threshold, min_seed_distance=distance, min_size=0), scores)
    return best


# ------------------------------------------------------------------------------------------------
# the two figures
# ------------------------------------------------------------------------------------------------
def run_isbi(args, workdir):
    import h5py
    from elektronn.evaluation import gt_segmentation_from_boundaries
    with h5py.File(os.path.join(args.data, 'isbi2012_train.h5'), 'r') as f:
        raw, barrier = f['raw'][:], f['barrier'][:]                # (z, y, x) = ELEKTRONN's (z, x, y)
    tune_z, score_z = (18, 24), (24, 30)
    gt_tune = gt_segmentation_from_boundaries(barrier[tune_z[0]:tune_z[1]], two_d=True)
    gt_score = gt_segmentation_from_boundaries(barrier[score_z[0]:score_z[1]], two_d=True)
    run_case('ISBI 2012', 'isbi2012_segmentation', 'isbi2012_config.py', 'isbi2012', 60.0 * args.cpu_minutes,
             workdir, raw, tune_z, score_z, gt_tune, gt_score, two_d=True, grid=ISBI_GRID, tile=(None, 286, 286),
             unit='sections')


def run_fib(args, workdir):
    import h5py
    with h5py.File(os.path.join(args.data, 'neuroproof_fib_sample2.h5'), 'r') as f:
        raw, seg_gt = f['raw'][:], f['segmentation'][:]
    tune_z, score_z = (110, 180), (180, 250)
    run_case('FIB-SEM', 'fib_segmentation', 'neuroproof_fib_config.py', 'fib', 60.0 * args.fib_cpu_minutes, workdir,
             raw, tune_z, score_z, seg_gt[tune_z[0]:tune_z[1]], seg_gt[score_z[0]:score_z[1]], two_d=False,
             grid=FIB_GRID, tile=(108, 155, 155), unit='z')


def context_and_tile(trainer, z_range, tile):
    """``(context, tile)`` for predicting ``z_range`` sections: the sections of real raw data the network sees
    before (and after) one (its z offset; 0 for a 2D network, which predicts section by section) and the MFP
    input tile, ``tile``'s ``None`` in z replaced by the whole range with context, z dropped for a 2D network."""
    if trainer.config.n_dim == 2:
        return 0, tuple(tile[1:])
    context = int(np.floor(float(trainer.config.dimensions.offset[0])))
    return context, tuple(z_range + 3 * context if t is None else t for t in tile)


def run_case(title, figure, example, name, budget, workdir, raw, tune_z, score_z, gt_tune, gt_score, two_d,
             grid, tile, unit):
    """Train the example for ``budget`` CPU seconds, predict the tuning and scored regions (with the sections of
    real raw data before them that the network sees), tune and score network and baseline, print the figure."""
    t_wall = time.time()
    progress('%s: training for %.0f CPU seconds' % (title, budget))
    trainer, config_path = make_trainer(example, workdir, name)
    training = train_for_cpu_budget(trainer, budget)
    context, tile = context_and_tile(trainer, score_z[1] - tune_z[0], tile)
    progress('%s: training done: %i steps, %.0f CPU s' % (title, training['steps'], training['training_cpu_seconds']))
    progress('%s: predicting %s %i-%i' % (title, unit, tune_z[0], score_z[1] - 1))
    t0 = time.time()
    z0 = tune_z[0] - context
    membrane = predict_membranes(trainer, config_path, raw[z0:score_z[1]], tile)
    prediction_seconds = time.time() - t0
    progress('%s: prediction done in %.0f s' % (title, prediction_seconds))
    net_tune, net_score = membrane[tune_z[0] - z0:tune_z[1] - z0], membrane[score_z[0] - z0:score_z[1] - z0]
    fields = compare(net_tune, net_score, raw, tune_z, score_z, gt_tune, gt_score, two_d, grid)
    c = trainer.config
    emit(figure=figure, **fields, gt_segments=int(len(np.unique(gt_score[gt_score > 0]))),
         tuning_region=list(tune_z), scored_region=list(score_z), **training,
         prediction_seconds=round(prediction_seconds, 1), wall_seconds=round(time.time() - t_wall, 1),
         input=list(c.patch_size), warp_on=c.warp_on, background_processes=c.background_processes)


def compare(net_tune, net_score, raw, tune_z, score_z, gt_tune, gt_score, two_d, grid):
    """Tune and score the network and the baseline (its maps smoothed and normalised on the whole volume, then cut)."""
    t0 = time.time()
    progress('segmentation: parameter search on z %i-%i (network)' % (tune_z[0], tune_z[1] - 1))
    net_params, net_tuned = tune({(): net_tune}, gt_tune, two_d, grid)
    progress('segmentation: parameter search on z %i-%i (baseline)' % (tune_z[0], tune_z[1] - 1))
    base_maps = {s: smoothed_raw_boundary(raw, s, two_d) for s in SIGMAS}
    base_params, base_tuned = tune({(('sigma', s),): m[tune_z[0]:tune_z[1]] for s, m in base_maps.items()},
                                   gt_tune, two_d, grid)
    progress('segmentation: scoring z %i-%i' % (score_z[0], score_z[1] - 1))
    net = segment_and_score(net_score, gt_score, two_d, net_params['threshold'], net_params['min_seed_distance'])
    base = segment_and_score(base_maps[base_params['sigma']][score_z[0]:score_z[1]], gt_score, two_d,
                             base_params['threshold'], base_params['min_seed_distance'])
    fields = {}
    for m in METRICS:
        fields['%s_network' % m] = round(float(net[m]), 4)
        fields['%s_baseline' % m] = round(float(base[m]), 4)
        fields['%s_ratio' % m] = round(float(net[m]) / float(base[m]), 3) if base[m] > 0 else None
    fields.update(network_params=net_params, baseline_params=base_params,
                  criterion=CRITERION,
                  tuning_voi_network=round(float(net_tuned['voi']), 4),
                  tuning_voi_baseline=round(float(base_tuned['voi']), 4),
                  tuning_rand_error_network=round(float(net_tuned['rand_error']), 4),
                  tuning_rand_error_baseline=round(float(base_tuned['rand_error']), 4),
                  segments_network=net['segments'], segments_baseline=base['segments'],
                  segmentation_seconds=round(time.time() - t0, 1))
    progress('segmentation done in %.0f s: rand_error network %.4f, baseline %.4f; voi network %.3f, baseline %.3f'
             % (time.time() - t0, net['rand_error'], base['rand_error'], net['voi'], base['voi']))
    return fields


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--cpu-minutes', type=float, default=30.0, help='CPU-time budget of the ISBI 2012 training')
    p.add_argument('--fib-cpu-minutes', type=float, default=20.0, help='CPU-time budget of the FIB-SEM training')
    p.add_argument('--only', choices=('isbi', 'fib'), default=None, help='run one of the two figures')
    p.add_argument('--data', default=os.environ.get('ELEKTRONN_SHARED_DATA', SHARED),
                   help='folder holding isbi2012_train.h5 and neuroproof_fib_sample2.h5 '
                        '(default: $ELEKTRONN_SHARED_DATA or ../shared/data)')
    p.add_argument('--workdir', default=None, help='folder for the runs (default: a temporary one)')
    p.add_argument('--threads', type=int, default=None, help='PyTorch threads (default: PyTorch\'s choice)')
    args = p.parse_args()
    import torch
    # everything the stages use is imported now, so that a broken import fails before any training
    # (and the banner the network module prints does not land among the JSON lines on stdout)
    with contextlib.redirect_stdout(io.StringIO()):
        import elektronn.evaluation  # noqa: F401
        import elektronn.segmentation  # noqa: F401
        import elektronn.training.predictor  # noqa: F401
        import elektronn.training.trainer  # noqa: F401
    if args.threads:
        torch.set_num_threads(args.threads)
    wanted = {'isbi': 'isbi2012_train.h5', 'fib': 'neuroproof_fib_sample2.h5'}
    stages = [args.only] if args.only else ['isbi', 'fib']
    for stage in stages:
        if not os.path.exists(os.path.join(args.data, wanted[stage])):
            raise SystemExit('%s not found in %s (give --data)' % (wanted[stage], args.data))
    args.data = os.path.abspath(args.data)
    os.environ['ELEKTRONN_SHARED_DATA'] = args.data
    workdir = os.path.abspath(args.workdir or tempfile.mkdtemp(prefix='elektronn-bench-segmentation-'))
    os.makedirs(workdir, exist_ok=True)
    for stage in stages:
        (run_isbi if stage == 'isbi' else run_fib)(args, workdir)


if __name__ == '__main__':
    main()
