"""Cost of warping augmentation against a training step of the matching network (same run).

Figures (one JSON line each):

* ``warp2d_mnist_batch``: warping a 50x1x26x26 MNIST batch as ``MNISTData(warp_on=True)`` does
  (every image with its own parameters) against a training step of the foundation's MNIST CNN
  (``bench_net.build_mnist``: batch 50, 26x26, conv 16/32, MLP 300/300/10).
* ``warp3d_patch_with_labels``: what a 3D data class does per training patch — draw parameters,
  compute the required source size, cut image and label regions from a cube and
  ``warp3dJoint`` them to a 1x1x7x127x127 patch with (3, 97, 97) labels — against a training
  step of the 3D example network (``bench_net.build_neuro3d``).

Each figure reports both rates and ``ratio_warp_time_over_step_time`` (target < 0.25). Rates are
the best of interleaved rounds.

Usage: ``python benchmarks/bench_warp.py [--seconds 2] [--rounds 3] [--threads N]``
"""
import argparse
import contextlib
import gzip
import io
import json
import os
import pickle
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_net  # noqa: E402  (the foundation's network definitions)

from elektronn.training import warping  # noqa: E402
from elektronn.training.traindata import MNISTData  # noqa: E402

PATCH_3D = (7, 127, 127)  # (z, x, y) of the 3D example network
OFFSET_3D = (2, 15, 15)   # its CNN offset: labels are PATCH_3D - 2 * OFFSET_3D


def mnist_warper(tmp):
    """A warping ``MNISTData`` on a small synthetic MNIST-format file, and the batch-warp callable."""
    rng = np.random.default_rng(0)
    sets = tuple((rng.random((n, 784)).astype(np.float32), np.arange(n) % 10) for n in (500, 10, 10))
    path = os.path.join(tmp, 'mnist.pkl.gz')
    with gzip.open(path, 'wb') as f:
        pickle.dump(sets, f, protocol=2)
    with contextlib.redirect_stdout(io.StringIO()):
        data = MNISTData(path=path, warp_on=True, seed=0)
    batch = data.getbatch(50)[0]
    assert batch.shape == (50, 1, 26, 26)
    return lambda: data.warpAugment(batch)


def patch3d_warper():
    """Draw parameters, cut and warp one 3D patch with labels from a (40, 1, 400, 400) cube."""
    rng = np.random.default_rng(0)
    cube = rng.random((40, 1, 400, 400)).astype(np.float32)
    labels = rng.integers(0, 2, (40, 400, 400)).astype(np.int16)
    oz, ox, oy = OFFSET_3D

    def warp():
        params = warping.draw_warp_params(PATCH_3D, rng=rng)
        req = warping.required_patch_size(PATCH_3D, *params)
        z, x, y = (int(rng.integers(0, s - r + 1)) for s, r in zip((40, 400, 400), req))
        img = cube[z:z + req[0], :, x:x + req[1], y:y + req[2]]
        lab = labels[z + oz:z + req[0] - oz, x + ox:x + req[1] - ox, y + oy:y + req[2] - oy]
        img, lab = warping.warp3dJoint(img, lab, PATCH_3D, *params)
        assert img.shape == (7, 1, 127, 127) and lab.shape == (3, 97, 97)
        return img, lab
    return warp


def stepper(build):
    with contextlib.redirect_stdout(io.StringIO()):
        cnn, _, data, labels = build()[:4]
        cnn.trainingStep(data, labels, mode='SGD')
    return lambda: cnn.trainingStep(data, labels, mode='SGD')


def measure(figure, warp, step, seconds, rounds, extra):
    best_warp = best_step = 0.0
    for _ in range(rounds):  # interleaved, best of each, to damp machine noise
        best_warp = max(best_warp, bench_net.rate(warp, seconds))
        best_step = max(best_step, bench_net.rate(step, seconds))
    print(json.dumps({'figure': figure, 'warps_per_s': round(best_warp, 1), 'training_steps_per_s': round(best_step, 2),
                      'ratio_warp_time_over_step_time': round(best_step / best_warp, 4), 'target_ratio': 0.25,
                      **extra, 'threads': torch.get_num_threads(), 'device': 'cpu'}), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--seconds', type=float, default=2.0, help='timing window per measurement')
    ap.add_argument('--rounds', type=int, default=3, help='interleaved rounds (best is reported)')
    ap.add_argument('--threads', type=int, default=None, help='torch.set_num_threads')
    ap.add_argument('--only', choices=['2d', '3d'], default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    np.random.seed(0)
    if args.only in (None, '2d'):
        with tempfile.TemporaryDirectory() as tmp:
            measure('warp2d_mnist_batch', mnist_warper(tmp), stepper(bench_net.build_mnist), args.seconds,
                    args.rounds, {'batch': [50, 1, 26, 26]})
    if args.only in (None, '3d'):
        measure('warp3d_patch_with_labels', patch3d_warper(), stepper(bench_net.build_neuro3d), args.seconds,
                args.rounds, {'patch': [1, 1, 7, 127, 127], 'labels': [3, 97, 97]})


if __name__ == '__main__':
    main()
