"""Dense-prediction speed: max-fragment-pooling vs. shift-and-stitch vs. a plain PyTorch reference.

The neuro 3D example net (filters xyz [[4,4,1],[3,3,1],[3,3,3],[3,3,3],[2,2,1]], pools
[[2,2,1],[2,2,1],1,1,1], 10, 20, 40, 40, 40 maps, relu, a 1x1x1 output layer with 2 classes)
predicts a random volume of (z, x, y) = (64, 256, 256), i.e. ``raw`` of shape (1, 256, 256, 64)
in xyz order; all three paths use the same weights and give the same (226, 226, 60) output:

* ``mfp``: ``predictDense`` of the net rebuilt with ``use_fragment_pooling=True`` in every layer
  and the whole volume as input size (one tile, one pass; the prediction route the original
  recommends).
* ``shift_and_stitch``: ``predictDense`` of the net with its training input size (7, 127, 127):
  tiles of (7, 130, 130) with 16 stride phases each, as the original and the live previews do.
* ``plain_dilated``: a hand-written plain PyTorch module on the whole volume: ``nn.Conv3d`` with
  dilation, ``nn.ReLU(inplace=True)``, ``nn.MaxPool3d(stride=1, dilation)``, channels-last,
  then a softmax; no ELEKTRONN code.

Informational:

* ``shift_and_stitch_large_patch`` stitches the phases of a net with a large input
  (64, 255, 255), which shows how much of the gain comes from the larger input alone.
* ``plain_fragments``: the original's MFP formulation written in plain PyTorch (each pooling layer
  pools its ``prod(pool)`` phase-shifted crops separately and stacks them on the batch axis; the
  fragments are interleaved at the end), to compare with the dilated form that ELEKTRONN uses.
  Its equal-length fragments cover (224, 224, 60) of the (226, 226, 60) windows; its figure counts
  those.

Every figure is one JSON line: output voxels per second of each path (the fast paths ``mfp``,
``plain_dilated`` and ``plain_fragments`` run once untimed, then in ``--rounds`` interleaved rounds
of which the best counts; the stitching paths run once), then the ratios ``mfp / shift_and_stitch`` (target >= 3)
and ``mfp / plain_dilated`` (target >= 0.95), and the largest difference between the outputs.
Each line carries the 1-minute load average before and after and the CPU seconds the process
used: on a shared machine the wall-clock figures vary with the other work, the CPU times much
less (the ratios are also given by CPU time).

Usage: ``python benchmarks/bench_predict.py [--threads 2] [--rounds 3] [--quick]`` (about three
minutes on 2 cores)
(``--quick``: a (16, 128, 128) volume, to check that the script works).
"""
import argparse
import contextlib
import io
import json
import os
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

with contextlib.redirect_stdout(io.StringIO()):
    from elektronn.net.convnet import MixedConvNN

FILTERS = [(1, 4, 4), (1, 3, 3), (3, 3, 3), (3, 3, 3), (1, 2, 2)]  # (z, x, y)
POOLS = [(1, 2, 2), (1, 2, 2), (1, 1, 1), (1, 1, 1), (1, 1, 1)]
MAPS = [10, 20, 40, 40, 40]
TRAINING_INPUT = (7, 127, 127)


def build(input_size, mfp, weights=None):
    weights = weights or [(None, None)] * (len(MAPS) + 1)
    with contextlib.redirect_stdout(io.StringIO()):
        cnn = MixedConvNN(input_size, input_depth=1, batch_size=1)
        for n, f, p, (W, b) in zip(MAPS, FILTERS, POOLS, weights):
            cnn.addConvLayer(n, f, pool_shape=p, activation_func='relu', use_fragment_pooling=mfp, W=W, b=b)
        W, b = weights[-1]
        cnn.addConvLayer(2, 1, pool_shape=1, activation_func='linear', is_last_layer=True, W=W, b=b)
        cnn.compileOutputFunctions(only_forward=True)
    return cnn


def plain_dilated(weights):
    """The reference: the same network as plain ``torch.nn`` modules in the dilated form."""
    layers, dilation, ch = [], (1, 1, 1), 1
    for i, ((W, b), f, p) in enumerate(zip(weights, FILTERS + [(1, 1, 1)], POOLS + [(1, 1, 1)])):
        conv = nn.Conv3d(ch, W.shape[0], f, dilation=dilation)
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(W))
            conv.bias.copy_(torch.from_numpy(b))
        layers.append(conv)
        if i < len(FILTERS):  # the output layer is linear
            layers.append(nn.ReLU(inplace=True))
        if p != (1, 1, 1):
            layers.append(nn.MaxPool3d(p, stride=1, dilation=dilation))
            dilation = tuple(d * q for d, q in zip(dilation, p))
        ch = W.shape[0]
    layers.append(nn.Softmax(dim=1))
    return nn.Sequential(*layers).eval().to(memory_format=torch.channels_last_3d)


def plain_fragments(weights):
    """The original's batch-axis MFP in plain PyTorch: a function from the volume to (n_lab, x, y, z)."""
    convs, ch = [], 1
    for (W, b), f in zip(weights, FILTERS + [(1, 1, 1)]):
        conv = nn.Conv3d(ch, W.shape[0], f)
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(W))
            conv.bias.copy_(torch.from_numpy(b))
        convs.append(conv.to(memory_format=torch.channels_last_3d))
        ch = W.shape[0]
    offsets, strides = np.zeros((1, 3), int), np.ones(3, int)
    for p in POOLS:  # new phase outer, old fragment inner, as the original's bookkeeping
        offsets = np.array([o + np.multiply(phase, strides) for phase in np.ndindex(*p) for o in offsets])
        strides = strides * p

    def run(raw):
        x = torch.from_numpy(np.ascontiguousarray(raw.transpose(0, 3, 1, 2), dtype=np.float32) / 255)[None]
        x = x.contiguous(memory_format=torch.channels_last_3d)
        with torch.no_grad():
            for i, conv in enumerate(convs):
                x = conv(x)
                if i < len(FILTERS):
                    x = F.relu_(x)
                p = POOLS[i] if i < len(POOLS) else (1, 1, 1)
                if p != (1, 1, 1):
                    size = x.shape[2:]
                    x = torch.cat([F.max_pool3d(x[(slice(None), slice(None)) + tuple(
                        slice(q, s - k + q + 1) for q, s, k in zip(phase, size, p))], p) for phase in np.ndindex(*p)])
            prob = torch.softmax(x, dim=1)
        dense = np.zeros((prob.shape[1],) + tuple(s * m for s, m in zip(prob.shape[2:], strides)), np.float32)
        for frag, off in zip(prob.numpy(), offsets):
            dense[(slice(None),) + tuple(slice(o, None, m) for o, m in zip(off, strides))] = frag
        return dense.transpose(0, 2, 3, 1)
    return run


def run_plain(model, raw):
    """xyz uint8 volume in, (n_lab, x, y, z) float32 out, like predictDense."""
    x = torch.from_numpy(np.ascontiguousarray(raw.transpose(0, 3, 1, 2), dtype=np.float32) / 255)
    with torch.no_grad():
        out = model(x[None].contiguous(memory_format=torch.channels_last_3d))[0]
    return out.permute(0, 2, 3, 1).contiguous().numpy()


def timed(fn):
    """``(wall seconds, CPU seconds of this process, result)``."""
    t0, c0 = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(io.StringIO()):
        result = fn()
    return time.perf_counter() - t0, time.process_time() - c0, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--rounds', type=int, default=3, help='rounds of the fast paths (best one counts)')
    parser.add_argument('--quick', action='store_true', help='a small volume, to check the script')
    parser.add_argument('--skip-large-patch', action='store_true')
    parser.add_argument('--skip-fragments', action='store_true')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    zxy = (16, 128, 128) if args.quick else (64, 256, 256)
    rng = np.random.RandomState(0)
    raw = rng.randint(0, 256, (1, zxy[1], zxy[2], zxy[0])).astype(np.uint8)  # (ch, x, y, z)

    stitched_net = build(TRAINING_INPUT, mfp=False)
    weights = [layer.param_arrays() for layer in stitched_net.layers]
    mfp_net = build(zxy, mfp=True, weights=weights)
    reference = plain_dilated(weights)
    # The fast paths run in interleaved rounds so that a busy spell on a shared machine hits all
    # of them alike; the slow stitching paths run once.
    fast = [('mfp', lambda: mfp_net.predictDense(raw)), ('plain_dilated', lambda: run_plain(reference, raw))]
    if not args.skip_fragments:
        fragments = plain_fragments(weights)
        fast.append(('plain_fragments', lambda: fragments(raw)))
    slow = [('shift_and_stitch', lambda: stitched_net.predictDense(raw))]
    if not args.skip_large_patch:
        large_net = build((zxy[0], zxy[1] - 1, zxy[2] - 1), mfp=False, weights=weights)
        slow.append(('shift_and_stitch_large_patch', lambda: large_net.predictDense(raw)))

    wall, cpu, outputs = {}, {}, {}
    for name, fn in fast:  # untimed: oneDNN builds its kernels for each new shape on first use
        timed(fn)
    load_before = os.getloadavg()[0]
    for _ in range(args.rounds):
        for name, fn in fast:
            t, c, outputs[name] = timed(fn)
            wall[name], cpu[name] = min(t, wall.get(name, np.inf)), min(c, cpu.get(name, np.inf))
    for name, fn in slow:
        wall[name], cpu[name], outputs[name] = timed(fn)
    common = dict(volume_zxy=list(zxy), threads=args.threads, rounds=args.rounds,
                  loadavg_1min=[round(load_before, 2), round(os.getloadavg()[0], 2)])
    speed, cpu_speed = {}, {}
    for name, _ in fast + slow:
        speed[name] = outputs[name][0].size / wall[name]
        cpu_speed[name] = outputs[name][0].size / cpu[name]
        print(json.dumps(dict(figure='voxels_per_s_' + name, value=round(speed[name]), seconds=round(wall[name], 3),
                              cpu_seconds=round(cpu[name], 3), output_shape=list(outputs[name].shape), **common)))
    for other, target in (('shift_and_stitch', 3.0), ('plain_dilated', 0.95)):
        print(json.dumps(dict(figure='mfp_over_' + other, value=round(speed['mfp'] / speed[other], 3),
                              value_by_cpu_time=round(cpu_speed['mfp'] / cpu_speed[other], 3), target=target,
                              **common)))
    diff = max(float(np.abs(out - outputs['mfp'][tuple(slice(0, s) for s in out.shape)]).max())
               for out in outputs.values())
    print(json.dumps(dict(figure='max_abs_difference_between_paths', value=diff, **common)))


if __name__ == '__main__':
    main()
