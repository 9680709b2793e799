"""ISBI 2012: the example network trained for a fixed budget of CPU time, then scored densely.

Config: ``examples/isbi2012_config.py`` (train on slices 0-23 of ``isbi2012_train.h5``, validate
on 24-29; warp_on = 0.7, flips, grey augmentation, 2 background processes, SGD), previews and
plots off. Training runs through ``Trainer.run`` as in ``elektronn-train`` and stops once the CPU
time spent since the start of the loop -- by this process plus its background workers (and any
other child processes) -- reaches the budget. Then the whole validation stack is predicted densely
(``cnn.predictDense``) and compared with its labels, on every voxel the network can predict
(the border of the network's offset is left out).

Figures (one JSON line each):

* ``isbi2012_valid_pixel_error``: the pixel error on the validation slices (predicted in float32)
  and the error of the all-background baseline (predicting "no membrane" everywhere) on the same
  voxels, with the membrane F1 at probability 0.5; ``--precision bf16`` trains in bf16 (config key
  ``mixed_precision``), for the accuracy of reduced-precision training on the same CPU budget.
* ``isbi2012_prediction_precision``: the trained network's validation prediction in float32 and in
  bf16 (``predictDense(precision=...)``): the largest probability difference, and pixel error and
  F1 of each.
* ``isbi2012_tta``: the same network with test-time augmentation (``predictDense(tta=True)``, 8
  transforms): pixel error, membrane F1 at 0.5 and at the best threshold, without and with.

``--example neuro_3d_synthetic`` runs the same on the embedded synthetic example (its validation
cube), ``--example neuroproof_fib`` on the FIB-SEM cube; the figures are then named after the example.

``--compare`` (ISBI 2012 or FIB-SEM): the config shipped before the search for recommended settings
(``benchmarks/configs/<example>_config_before.py``) against the recommended one
(``examples/<example>_config.py``), each trained for the same CPU budget in the precision its config
sets, then scored on the held-back region without and with test-time augmentation. The region and
its context are predicted densely in float32 with max-fragment-pooling and mirror padding
(``pad_raw=True``), so every voxel of the region is scored (the same voxels for both configs,
whatever their field of view). Scores: pixel error (the fraction of pixels wrong) and membrane F1 at
0.5, the best F1 over all thresholds, the ISBI 2012 challenge's pixel error (``isbi_pixel_error``: 1 -
the best F-score of the interior pixels, the number its leaderboard quotes), and the seeded
watershed segmentation of ``bench_segmentation.py`` (its parameters chosen on the tuning region by
the smallest VOI, then the scored region segmented once): Rand error, VOI
split, merge and sum -- 2D per section for ISBI 2012 (tuning on sections 18-23, scored 24-29), 3D
against the body segmentation for FIB-SEM (tuning on z 110-179, scored 180-249).
One figure per config (``<example>_config_before`` / ``_recommended``) and
``<example>_config_comparison`` (each score of both and the ratio recommended / before, without and
with TTA, and ``recommended_tta_vs_before``: the recommended config with TTA against the shipped
config without). ``--parallel`` trains both configs at once in two processes (the budget is CPU
time, counted per process, so this changes the wall time only); ``--set`` applies to the
recommended config. Each predicted map is kept in the work folder
(``<config>_membrane[_tta]_z<first>-<stop>.npy``, float32 ``(z, x, y)``) for scoring it otherwise.

Usage::

    python benchmarks/bench_isbi.py [--cpu-minutes 30] [--data /path/to/folder/with/isbi2012_train.h5]
                                    [--precision fp32|bf16] [--example isbi2012|neuro_3d_synthetic|neuroproof_fib]
                                    [--set KEY=VALUE ...] [--compare [--parallel]]
"""
import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, '..')
EXAMPLES = {'isbi2012': os.path.join(ROOT, 'examples', 'isbi2012_config.py'),
            'neuro_3d_synthetic': os.path.join(ROOT, 'examples', 'neuro_3d_synthetic_config.py'),
            'neuroproof_fib': os.path.join(ROOT, 'examples', 'neuroproof_fib_config.py')}
DATA_FILES = {'isbi2012': 'isbi2012_train.h5', 'neuroproof_fib': 'neuroproof_fib_sample2.h5'}
SHARED = os.path.join(ROOT, '..', 'shared', 'data')
sys.path.insert(0, HERE)
from _pipeline_setup import (add_precision_argument, emit, example_trainer, precision_override,  # noqa: E402
                             train_for_cpu_budget)
from bench_segmentation import (FIB_GRID, ISBI_GRID, context_and_tile, predict_membranes, progress,  # noqa: E402
                                segment_and_score, tune)

#: ``--compare``: the held-back region of each example. ``tune_z`` / ``score_z``: the watershed's tuning
#: region and the scored one (``[start, stop)`` along z); ``tile``: the MFP input tile, ``None`` in z for
#: the whole predicted range in one tile.
CASES = {'isbi2012': dict(tune_z=(18, 24), score_z=(24, 30), two_d=True, grid=ISBI_GRID, tile=(None, 286, 286)),
         'neuroproof_fib': dict(tune_z=(110, 180), score_z=(180, 250), two_d=False, grid=FIB_GRID,
                                tile=(108, 155, 155))}
COMPARED = ('before', 'recommended')
SEGMENTATION_SCORES = ('rand_error', 'voi_split', 'voi_merge', 'voi')


def dense_valid_scores(trainer, precision=None, tta=False):
    """Pixel error, all-background error, membrane F1 at 0.5 and at the best threshold, #voxels and the
    probabilities of the validation cube, predicted densely (in ``precision``, default the network's; with
    test-time augmentation ``tta``)."""
    from elektronn.evaluation import best_boundary_prf
    cnn, data = trainer.cnn, trainer.data
    raw, lab = data.valid_d[0], data.valid_l[0]              # (z, ch, x, y), (z, x, y), same size
    with contextlib.redirect_stdout(io.StringIO()):
        prob = cnn.predictDense(np.ascontiguousarray(raw.transpose(1, 2, 3, 0)), precision=precision, tta=tta)
    off = np.array([int(o) for o in trainer.config.dimensions.offset])  # (z, x, y), or (x, y) of a 2D network
    off = np.r_[np.zeros(3 - len(off), int), off]
    pred = prob.argmax(axis=0).transpose(2, 0, 1)             # (z', x', y'): raw voxel j + off
    # label voxel i is raw voxel i + origin (cubes are registered by position; ISBI's are the same size)
    origin = getattr(data._valid[0], 'origin', None)
    start = (np.zeros(3, int) if origin is None else np.asarray(origin)) - off   # label voxel 0 in pred
    lo, hi = np.maximum(start, 0), np.minimum(start + lab.shape, pred.shape)
    region = tuple(slice(a, b) for a, b in zip(lo, hi))
    pred = pred[region]
    membrane = prob[1].transpose(2, 0, 1)[region]             # p(class 1), (z', x', y') on the labelled voxels
    lab = lab[tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, start))]
    assert pred.shape == lab.shape, (pred.shape, lab.shape)
    known = lab >= 0
    truth, found = lab[known] != 0, pred[known] != 0
    f1 = 2.0 * np.sum(truth & found) / max(np.sum(truth) + np.sum(found), 1)
    best = best_boundary_prf(membrane, (lab != 0).astype(np.uint8), mask=known)
    return dict(error=float(np.mean(found != truth)), baseline=float(np.mean(truth)), f1=float(f1),
                best_f1=float(best['f1']), best_threshold=float(best['threshold']), n_vox=int(known.sum()), prob=prob)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--cpu-minutes', type=float, default=30.0, help='CPU-time budget of the training')
    p.add_argument('--data', default=os.environ.get('ELEKTRONN_SHARED_DATA', SHARED),
                   help='folder holding isbi2012_train.h5 (default: $ELEKTRONN_SHARED_DATA or ../shared/data)')
    p.add_argument('--workdir', default=None, help='folder for the run (default: a temporary one)')
    p.add_argument('--threads', type=int, default=None, help='PyTorch threads (default: PyTorch\'s choice)')
    p.add_argument('--example', choices=sorted(EXAMPLES), default='isbi2012', help='the example config to train')
    p.add_argument('--set', action='append', default=[], metavar='KEY=VALUE', type=_setting,
                   help="a config value over the example's (a Python literal, e.g. --set warp_on=0.3); repeatable")
    p.add_argument('--compare', action='store_true',
                   help='the config shipped before against the recommended one, with segmentation scores')
    p.add_argument('--parallel', action='store_true', help='--compare: train both configs at once')
    p.add_argument('--arm', choices=COMPARED, default=None, help=argparse.SUPPRESS)   # one config of --parallel
    add_precision_argument(p)
    args = p.parse_args()
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    wanted = DATA_FILES.get(args.example)
    if wanted and not os.path.exists(os.path.join(args.data, wanted)):
        raise SystemExit('%s not found in %s (give --data)' % (wanted, args.data))
    if args.parallel and not args.compare:
        raise SystemExit('--parallel trains the two configs of --compare at once; give --compare too')
    if args.compare and args.example not in CASES:
        raise SystemExit('--compare needs --example %s' % ' or '.join(sorted(CASES)))
    os.environ['ELEKTRONN_SHARED_DATA'] = os.path.abspath(args.data)
    workdir = os.path.abspath(args.workdir or tempfile.mkdtemp(prefix='elektronn-bench-isbi-'))
    os.makedirs(workdir, exist_ok=True)
    if args.compare:
        return compare_configs(args, workdir)
    t_wall = time.time()
    trainer = example_trainer(EXAMPLES[args.example], os.path.join(workdir, 'bench_config.py'),
                              os.path.join(workdir, 'run'), **dict(precision_override(args), **dict(args.set)))
    training = train_for_cpu_budget(trainer, 60.0 * args.cpu_minutes)
    scores = dense_valid_scores(trainer, precision='fp32')  # the training's effect alone; bf16 prediction below
    c = trainer.config
    emit(figure='%s_valid_pixel_error' % args.example, valid_pixel_error=round(scores['error'], 4),
         all_background_error=round(scores['baseline'], 4), ratio_to_baseline=round(scores['error'] /
                                                                                    scores['baseline'], 3),
         membrane_f1=round(scores['f1'], 4), valid_voxels=scores['n_vox'], training_precision=trainer.cnn.precision,
         **training, wall_seconds=round(time.time() - t_wall, 1), input=list(c.patch_size), warp_on=c.warp_on,
         background_processes=c.background_processes, optimizer=c.optimizer, LR=c.SGD_params.get('LR'),
         overrides={k: v for k, v in args.set})
    # the same trained network predicting in float32 and in bf16 (the prediction tools' choice on native hardware)
    by_precision = dict(fp32=scores, bf16=dense_valid_scores(trainer, precision='bf16'))
    fp32, bf16 = by_precision['fp32'], by_precision['bf16']
    emit(figure='%s_prediction_precision' % args.example, training_precision=trainer.cnn.precision,
         max_abs_dp=float(np.abs(bf16['prob'] - fp32['prob']).max()),
         mean_abs_dp=float(np.abs(bf16['prob'] - fp32['prob']).mean()),
         pixel_error_fp32=round(fp32['error'], 5), pixel_error_bf16=round(bf16['error'], 5),
         f1_fp32=round(fp32['f1'], 5), f1_bf16=round(bf16['f1'], 5), f1_change=round(bf16['f1'] - fp32['f1'], 5),
         bf16_native=bf16_native())
    # test-time augmentation of the same network (float32): the flips and xy-swaps its training used
    tta = dense_valid_scores(trainer, precision='fp32', tta=True)
    emit(figure='%s_tta' % args.example, training_precision=trainer.cnn.precision,
         pixel_error=round(scores['error'], 5), pixel_error_tta=round(tta['error'], 5),
         f1_at_05=round(scores['f1'], 5), f1_at_05_tta=round(tta['f1'], 5), best_f1=round(scores['best_f1'], 5),
         best_f1_tta=round(tta['best_f1'], 5), best_threshold=scores['best_threshold'],
         best_threshold_tta=tta['best_threshold'])


# ------------------------------------------------------------------------------------------------
# --compare: the config shipped before against the recommended one
# ------------------------------------------------------------------------------------------------
def compare_configs(args, workdir):
    """Train and score both configs (or, with ``--arm``, one), print a figure per config and the comparison."""
    names = [args.arm] if args.arm else list(COMPARED)
    if args.parallel and not args.arm:
        results = _scores_from_processes(names, workdir)
    else:
        results = {name: score_config(name, args, workdir) for name in names}
    if len(results) == 2:
        emit(figure='%s_config_comparison' % args.example, **comparison(results['before'], results['recommended']))


def _scores_from_processes(names, workdir):
    """``score_config`` of each config in a process of its own, all at once; their figures are printed."""
    argv = [a for a in sys.argv[1:] if a != '--parallel']
    procs = {name: subprocess.Popen([sys.executable, os.path.abspath(__file__)] + argv +
                                    ['--arm', name, '--workdir', workdir], stdout=subprocess.PIPE, text=True)
             for name in names}
    results = {}
    for name, proc in procs.items():
        out, _ = proc.communicate()
        for line in out.splitlines():
            if line.startswith('{'):
                print(line, flush=True)
                figure = json.loads(line)
                if figure.get('figure', '').endswith('_config_' + name):
                    results[name] = figure
        if proc.returncode or name not in results:
            raise SystemExit('the %s config failed (exit status %s)' % (name, proc.returncode))
    return results


def score_config(name, args, workdir):
    """Train config ``name`` (``'before'`` or ``'recommended'``) for the CPU budget, score it on the held-back
    region without and with TTA; prints and returns the figure."""
    case = CASES[args.example]
    source = (EXAMPLES[args.example] if name == 'recommended' else
              os.path.join(HERE, 'configs', '%s_config_before.py' % args.example))
    overrides = dict(args.set) if name == 'recommended' else {}
    t_wall = time.time()
    config_path = os.path.join(workdir, '%s_config.py' % name)
    trainer = example_trainer(source, config_path, os.path.join(workdir, 'run_' + name), **overrides)
    progress('%s config: training for %.0f CPU minutes' % (name, args.cpu_minutes))
    training = train_for_cpu_budget(trainer, 60.0 * args.cpu_minutes)
    raw, labels, gt = _held_back_volumes(args.data, args.example, case)
    s0, s1 = case['score_z']
    context, tile = context_and_tile(trainer, s1 - case['tune_z'][0], case['tile'])
    z0 = case['tune_z'][0] - context
    c = trainer.config
    fields = dict(config=os.path.relpath(source, ROOT), overrides=overrides, training_precision=trainer.cnn.precision,
                  input=list(c.patch_size), **training)
    for tta in (False, True):
        progress('%s config: predicting z %i-%i%s' % (name, z0, s1 - 1, ' with TTA' if tta else ''))
        t_pred = time.time()
        membrane = predict_membranes(trainer, config_path, raw[z0:s1], tile, tta=tta, precision='fp32')
        suffix = '_tta' if tta else ''
        fields['prediction_seconds' + suffix] = round(time.time() - t_pred, 1)
        np.save(os.path.join(workdir, '%s_membrane%s_z%i-%i.npy' % (name, suffix, z0, s1)), membrane)  # for re-scoring
        for key, value in held_back_scores(membrane, z0, labels, gt, case).items():
            fields[key + suffix] = value
    fields.update(all_background_error=round(float(np.mean(labels[s0:s1] != 0)), 4),
                  wall_seconds=round(time.time() - t_wall, 1))
    emit(figure='%s_config_%s' % (args.example, name), **fields)
    return fields


def held_back_scores(membrane, z0, labels, gt, case):
    """Pixel and segmentation scores on the scored region of a membrane map (float ``(z, x, y)`` of the
    volume's sections from ``z0`` on; ``labels`` and ``gt``: the whole volume's), the watershed tuned on the
    tuning region."""
    from elektronn.evaluation import best_boundary_prf, boundary_prf, isbi_pixel_error
    (t0, t1), (s0, s1) = case['tune_z'], case['score_z']
    score_map, score_labels = membrane[s0 - z0:s1 - z0], labels[s0:s1]
    at_05 = boundary_prf(score_map, score_labels)
    best = best_boundary_prf(score_map, score_labels)
    params, _ = tune({(): membrane[t0 - z0:t1 - z0]}, gt[t0:t1], case['two_d'], case['grid'])
    seg = segment_and_score(score_map, gt[s0:s1], case['two_d'], params['threshold'], params['min_seed_distance'])
    scores = dict(pixel_error=at_05['error'], f1_at_05=at_05['f1'], best_f1=best['f1'],
                  best_threshold=best['threshold'],
                  isbi_pixel_error=isbi_pixel_error(score_map, score_labels)['pixel_error'],
                  **{m: float(seg[m]) for m in SEGMENTATION_SCORES})
    scores = {k: round(float(v), 4) for k, v in scores.items()}
    scores.update(segmentation_params=params, segments=seg['segments'])
    return scores


def _held_back_volumes(folder, example, case):
    """Raw, membrane labels and ground-truth segmentation ``(z, x, y)`` of the whole volume (the file order)."""
    import h5py
    from elektronn.evaluation import gt_segmentation_from_boundaries
    with h5py.File(os.path.join(folder, DATA_FILES[example]), 'r') as f:
        raw, labels = f['raw'][:], f['barrier'][:]
        if 'segmentation' in f:
            return raw, labels, f['segmentation'][:]
    gt = np.zeros(labels.shape, np.uint32)                  # cell interiors, numbered per section
    for z0, z1 in (case['tune_z'], case['score_z']):
        gt[z0:z1] = gt_segmentation_from_boundaries(labels[z0:z1], two_d=case['two_d'])
    return raw, labels, gt


def comparison(before, recommended):
    """Each score of both configs and recommended / before, without and with TTA."""
    fields = dict(cpu_budget_s=before['cpu_budget_s'], steps_before=before['steps'],
                  steps_recommended=recommended['steps'])
    for metric in ('pixel_error', 'isbi_pixel_error', 'f1_at_05', 'best_f1') + SEGMENTATION_SCORES:
        for suffix in ('', '_tta'):
            key = metric + suffix
            fields[key + '_before'], fields[key + '_recommended'] = before[key], recommended[key]
            fields[key + '_ratio'] = round(recommended[key] / before[key], 3) if before[key] else None
        fields[metric + '_recommended_tta_vs_before'] = (round(recommended[metric + '_tta'] / before[metric], 3)
                                                         if before[metric] else None)
    return fields


def _setting(text):
    """``KEY=VALUE`` (a Python literal) -> ``(key, value)``."""
    import ast
    key, sep, value = text.partition('=')
    try:
        if not sep or not key.isidentifier():
            raise ValueError
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        raise argparse.ArgumentTypeError('give KEY=VALUE with a Python literal, e.g. warp_on=0.3; got %r' % text)


def bf16_native():
    from elektronn.net import precision
    return precision.native('bf16', 'cpu')


if __name__ == '__main__':
    main()
