"""ISBI 2012: the neuro 3D example network trained for a fixed budget of CPU time, then scored densely.

Config: ``examples/isbi2012_config.py`` (train on slices 0-23 of ``isbi2012_train.h5``, validate
on 24-29; warp_on = 0.7, flips, grey augmentation, 2 background processes, SGD), previews and
plots off. Training runs through ``Trainer.run`` as in ``elektronn-train`` and stops once the CPU
time spent since the start of the loop -- by this process plus its background workers (and any
other child processes) -- reaches the budget. Then the whole validation stack is predicted densely
(``cnn.predictDense``) and compared with its labels, on every voxel the network can predict
(the border of the network's offset is left out).

Figure (one JSON line): ``isbi2012_valid_pixel_error``: the pixel error on the validation slices
and the error of the all-background baseline (predicting "no membrane" everywhere) on the same
voxels.

Usage::

    python benchmarks/bench_isbi.py [--cpu-minutes 30] [--data /path/to/folder/with/isbi2012_train.h5]
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
EXAMPLE = os.path.join(ROOT, 'examples', 'isbi2012_config.py')
SHARED = os.path.join(ROOT, '..', 'shared', 'data')
sys.path.insert(0, HERE)
from _pipeline_setup import emit, example_trainer, train_for_cpu_budget  # noqa: E402


def dense_valid_error(trainer):
    """(pixel error, all-background error, #voxels) on the validation cube, predicted densely."""
    cnn, data = trainer.cnn, trainer.data
    raw, lab = data.valid_d[0], data.valid_l[0]              # (z, ch, x, y), (z, x, y), same size
    with contextlib.redirect_stdout(io.StringIO()):
        prob = cnn.predictDense(np.ascontiguousarray(raw.transpose(1, 2, 3, 0)))   # (n_lab, x', y', z')
    off = [int(o) for o in trainer.config.dimensions.offset]  # (z, x, y)
    z, x, y = lab.shape
    lab = lab[off[0]:z - off[0], off[1]:x - off[1], off[2]:y - off[2]]
    pred = prob.argmax(axis=0).transpose(2, 0, 1)             # (z', x', y')
    assert pred.shape == lab.shape, (pred.shape, lab.shape)
    known = lab >= 0
    return (float(np.mean(pred[known] != lab[known])), float(np.mean(lab[known] != 0)), int(known.sum()))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--cpu-minutes', type=float, default=30.0, help='CPU-time budget of the training')
    p.add_argument('--data', default=os.environ.get('ELEKTRONN_SHARED_DATA', SHARED),
                   help='folder holding isbi2012_train.h5 (default: $ELEKTRONN_SHARED_DATA or ../shared/data)')
    p.add_argument('--workdir', default=None, help='folder for the run (default: a temporary one)')
    p.add_argument('--threads', type=int, default=None, help='PyTorch threads (default: PyTorch\'s choice)')
    args = p.parse_args()
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    if not os.path.exists(os.path.join(args.data, 'isbi2012_train.h5')):
        raise SystemExit('isbi2012_train.h5 not found in %s (give --data)' % args.data)
    os.environ['ELEKTRONN_SHARED_DATA'] = os.path.abspath(args.data)
    workdir = os.path.abspath(args.workdir or tempfile.mkdtemp(prefix='elektronn-bench-isbi-'))
    os.makedirs(workdir, exist_ok=True)
    t_wall = time.time()
    trainer = example_trainer(EXAMPLE, os.path.join(workdir, 'bench_isbi_config.py'), os.path.join(workdir, 'run'))
    training = train_for_cpu_budget(trainer, 60.0 * args.cpu_minutes)
    error, baseline, n_vox = dense_valid_error(trainer)
    c = trainer.config
    emit(figure='isbi2012_valid_pixel_error', valid_pixel_error=round(error, 4),
         all_background_error=round(baseline, 4), ratio_to_baseline=round(error / baseline, 3),
         valid_voxels=n_vox, **training, wall_seconds=round(time.time() - t_wall, 1), input=list(c.patch_size),
         warp_on=c.warp_on, background_processes=c.background_processes, optimizer=c.optimizer,
         LR=c.SGD_params.get('LR'))


if __name__ == '__main__':
    main()
