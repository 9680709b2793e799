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

``--device cuda``: every path runs on GPU 0 (the ELEKTRONN networks are built after
``elektronn.net.device.initGPU(0)``); the volume still starts as a uint8 array on the host and the
probabilities end as a NumPy array there, for every path. The default volume is then
(64, 512, 512) (``--volume`` sets any); the plain reference runs in its default and its
channels-last memory format and the faster one counts as ``plain_dilated`` (its lines name the
format); the lines carry the GPU's name and whether cuDNN may use TF32 (PyTorch's default for
convolutions, which makes the paths differ by about 1e-3). ``--skip-stitch`` leaves out both
stitching paths, which are slow (many small tiles) and beside the point on a GPU; the
``mfp_over_shift_and_stitch`` line is then left out too.

Usage: ``python benchmarks/bench_predict.py [--threads 2] [--rounds 3] [--quick] [--device cpu|cuda]
[--volume Z,X,Y] [--skip-stitch]`` (about three minutes on 2 cores)
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

from _bench_device import select_device  # noqa: E402  (benchmarks/ is the script's folder)

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


def plain_dilated(weights, device=torch.device('cpu'), memory_format=torch.channels_last_3d):
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
    return nn.Sequential(*layers).eval().to(device=device, memory_format=memory_format)


def plain_fragments(weights, device=torch.device('cpu')):
    """The original's batch-axis MFP in plain PyTorch: a function from the volume to (n_lab, x, y, z)."""
    convs, ch = [], 1
    for (W, b), f in zip(weights, FILTERS + [(1, 1, 1)]):
        conv = nn.Conv3d(ch, W.shape[0], f)
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(W))
            conv.bias.copy_(torch.from_numpy(b))
        convs.append(conv.to(device=device, memory_format=torch.channels_last_3d))
        ch = W.shape[0]
    offsets, strides = np.zeros((1, 3), int), np.ones(3, int)
    for p in POOLS:  # new phase outer, old fragment inner, as the original's bookkeeping
        offsets = np.array([o + np.multiply(phase, strides) for phase in np.ndindex(*p) for o in offsets])
        strides = strides * p

    def run(raw):
        x = torch.from_numpy(np.ascontiguousarray(raw.transpose(0, 3, 1, 2), dtype=np.float32) / 255)[None]
        x = x.to(device).contiguous(memory_format=torch.channels_last_3d)
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
        for frag, off in zip(prob.cpu().numpy(), offsets):
            dense[(slice(None),) + tuple(slice(o, None, m) for o, m in zip(off, strides))] = frag
        return dense.transpose(0, 2, 3, 1)
    return run


def run_plain(model, raw, device=torch.device('cpu'), memory_format=torch.channels_last_3d):
    """xyz uint8 volume in, (n_lab, x, y, z) float32 out, like predictDense (both on the host)."""
    x = torch.from_numpy(np.ascontiguousarray(raw.transpose(0, 3, 1, 2), dtype=np.float32) / 255)
    with torch.no_grad():
        out = model(x[None].to(device).contiguous(memory_format=memory_format))[0]
    return out.permute(0, 2, 3, 1).contiguous().cpu().numpy()


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
    parser.add_argument('--skip-stitch', action='store_true',
                        help='leave out both shift-and-stitch paths (slow; meant for --device cuda)')
    parser.add_argument('--device', choices=['cpu', 'cuda'], default='cpu',
                        help='where every path runs (cuda: GPU 0; the volume still comes from host memory)')
    parser.add_argument('--volume', type=_zxy, default=None, metavar='Z,X,Y',
                        help='volume shape (default (64, 256, 256) on the CPU, (64, 512, 512) on cuda)')
    args = parser.parse_args()
    device = select_device(args.device, parser)
    cuda = device.type == 'cuda'
    torch.set_num_threads(args.threads)
    zxy = args.volume or ((16, 128, 128) if args.quick else (64, 512, 512) if cuda else (64, 256, 256))
    rng = np.random.RandomState(0)
    raw = rng.randint(0, 256, (1, zxy[1], zxy[2], zxy[0])).astype(np.uint8)  # (ch, x, y, z)

    stitched_net = build(TRAINING_INPUT, mfp=False)
    weights = [layer.param_arrays() for layer in stitched_net.layers]
    mfp_net = build(zxy, mfp=True, weights=weights)
    # The fast paths run in interleaved rounds so that a busy spell on a shared machine hits all
    # of them alike; the slow stitching paths run once.
    fast = [('mfp', lambda: mfp_net.predictDense(raw))]
    if cuda:  # channels-last need not be the faster layout there: both run, the faster one counts
        plain_formats = {'default': torch.contiguous_format, 'channels_last': torch.channels_last_3d}
        for k, f in plain_formats.items():
            model = plain_dilated(weights, device, f)
            fast.append(('plain_dilated_' + k, lambda m=model, f=f: run_plain(m, raw, device, f)))
    else:
        reference = plain_dilated(weights)
        fast.append(('plain_dilated', lambda: run_plain(reference, raw)))
    if not args.skip_fragments:
        fragments = plain_fragments(weights, device)
        fast.append(('plain_fragments', lambda: fragments(raw)))
    slow = [] if args.skip_stitch else [('shift_and_stitch', lambda: stitched_net.predictDense(raw))]
    if not (args.skip_large_patch or args.skip_stitch):
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
    names = [name for name, _ in fast + slow]
    if cuda:
        common.update(device='cuda', gpu=torch.cuda.get_device_name(device),
                      cudnn_allow_tf32=torch.backends.cudnn.allow_tf32, torch=torch.__version__)
        plain_format = min(plain_formats, key=lambda k: wall['plain_dilated_' + k])
        for d in (wall, cpu, outputs):
            d['plain_dilated'] = d['plain_dilated_' + plain_format]
        names.append('plain_dilated')
    speed, cpu_speed = {}, {}
    for name in names:
        speed[name] = outputs[name][0].size / wall[name]
        cpu_speed[name] = outputs[name][0].size / cpu[name]
        print(json.dumps(dict(figure='voxels_per_s_' + name, value=round(speed[name]), seconds=round(wall[name], 3),
                              cpu_seconds=round(cpu[name], 3), output_shape=list(outputs[name].shape), **common,
                              **(dict(plain_format=plain_format) if cuda and name == 'plain_dilated' else {}))))
    for other, target in (('shift_and_stitch', 3.0), ('plain_dilated', 0.95)):
        if other not in speed:
            continue
        print(json.dumps(dict(figure='mfp_over_' + other, value=round(speed['mfp'] / speed[other], 3),
                              value_by_cpu_time=round(cpu_speed['mfp'] / cpu_speed[other], 3), target=target,
                              **common, **(dict(plain_format=plain_format) if cuda and other == 'plain_dilated'
                                           else {}))))
    diff = max(float(np.abs(out - outputs['mfp'][tuple(slice(0, s) for s in out.shape)]).max())
               for out in outputs.values())
    print(json.dumps(dict(figure='max_abs_difference_between_paths', value=diff, **common)))


def _zxy(text):
    """``'64,512,512'`` -> ``(64, 512, 512)``, for ``--volume``."""
    try:
        zxy = tuple(int(v) for v in text.split(','))
    except ValueError:
        zxy = ()
    if len(zxy) != 3 or min(zxy) < 1:
        raise argparse.ArgumentTypeError('expected three positive integers Z,X,Y, got %r' % (text,))
    return zxy


if __name__ == '__main__':
    main()
