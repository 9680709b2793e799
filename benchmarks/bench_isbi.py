"""ISBI 2012: the neuro 3D example network trained for a fixed budget of CPU time, then scored densely.

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
cube), the figures then named ``neuro_3d_synthetic_...``.

Usage::

    python benchmarks/bench_isbi.py [--cpu-minutes 30] [--data /path/to/folder/with/isbi2012_train.h5]
                                    [--precision fp32|bf16] [--example isbi2012|neuro_3d_synthetic]
                                    [--set KEY=VALUE ...]
"""
import argparse
import contextlib
import io
import os
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, '..')
EXAMPLES = {'isbi2012': os.path.join(ROOT, 'examples', 'isbi2012_config.py'),
            'neuro_3d_synthetic': os.path.join(ROOT, 'examples', 'neuro_3d_synthetic_config.py')}
SHARED = os.path.join(ROOT, '..', 'shared', 'data')
sys.path.insert(0, HERE)
from _pipeline_setup import (add_precision_argument, emit, example_trainer, precision_override,  # noqa: E402
                             train_for_cpu_budget)


def dense_valid_scores(trainer, precision=None, tta=False):
    """Pixel error, all-background error, membrane F1 at 0.5 and at the best threshold, #voxels and the
    probabilities of the validation cube, predicted densely (in ``precision``, default the network's; with
    test-time augmentation ``tta``)."""
    from elektronn.evaluation import best_boundary_prf
    cnn, data = trainer.cnn, trainer.data
    raw, lab = data.valid_d[0], data.valid_l[0]              # (z, ch, x, y), (z, x, y), same size
    with contextlib.redirect_stdout(io.StringIO()):
        prob = cnn.predictDense(np.ascontiguousarray(raw.transpose(1, 2, 3, 0)), precision=precision, tta=tta)
    off = np.array([int(o) for o in trainer.config.dimensions.offset])  # (z, x, y)
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
    add_precision_argument(p)
    args = p.parse_args()
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.example == 'isbi2012' and not os.path.exists(os.path.join(args.data, 'isbi2012_train.h5')):
        raise SystemExit('isbi2012_train.h5 not found in %s (give --data)' % args.data)
    os.environ['ELEKTRONN_SHARED_DATA'] = os.path.abspath(args.data)
    workdir = os.path.abspath(args.workdir or tempfile.mkdtemp(prefix='elektronn-bench-isbi-'))
    os.makedirs(workdir, exist_ok=True)
    t_wall = time.time()
    trainer = example_trainer(EXAMPLES[args.example], os.path.join(workdir, 'bench_config.py'),
                              os.path.join(workdir, 'run'), mixed_precision=precision_override(args),
                              **dict(args.set))
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
