"""Training-step speed of ``MixedConvNN.trainingStep`` against a hand-written plain PyTorch module.

Two networks, as in the documentation:

* ``mnist_cnn``: batch 50, input 26x26, conv 16@3x3 pool 2, conv 32@3x3 pool 2, MLP 300, 300, 10,
  relu, SGD with momentum.
* ``neuro_3d``: batch 1, input (x, y, z) = (127, 127, 7), filters [[4,4,1],[3,3,1],[3,3,3],[3,3,3],[2,2,1]],
  pools [[2,2,1],[2,2,1],1,1,1], 10, 20, 40, 40, 40 maps, relu, a 1x1x1 output layer with 2 classes.

The plain module uses the same layers, ``F.cross_entropy`` and ``torch.optim.SGD`` with momentum;
it runs in its default and its channels-last memory format and the faster one is the baseline.
Every figure is one JSON line: steps per second of both, the ratio
``plain step time / ELEKTRONN step time`` (target >= 0.95) and the achieved GFLOP/s (forward +
backward counted as 3x the forward multiply-adds, 2 FLOPs each).

``--device cuda``: both run on the GPU (ELEKTRONN's network is built after
``elektronn.net.device.initGPU(0)``, as ``elektronn-train --gpu=0`` does). Batches still start as
NumPy arrays on the host, as in real training: ``trainingStep`` gets them as arrays and copies them
through pinned memory, and the plain step copies its arrays the same way (pinned,
``non_blocking``) every step. The clocks are read after ``torch.cuda.synchronize()``. The lines then
also carry the GPU's name, the plain module's GFLOP/s and the cuDNN settings (TF32 for
convolutions is PyTorch's default, the same for both sides).

Usage: ``python benchmarks/bench_net.py [--seconds 3] [--rounds 5] [--threads N] [--device cpu|cuda]``
"""
import argparse
import contextlib
import copy
import io
import json
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

with contextlib.redirect_stdout(io.StringIO()):
    from elektronn.net.convnet import MixedConvNN

from _bench_device import select_device  # noqa: E402  (benchmarks/ is the script's folder)


def build_mnist():
    cnn = MixedConvNN((26, 26), input_depth=1, batch_size=50)
    cnn.addConvLayer(16, 3, pool_shape=2, activation_func='relu')
    cnn.addConvLayer(32, 3, pool_shape=2, activation_func='relu')
    cnn.addPerceptronLayer(300, activation_func='relu')
    cnn.addPerceptronLayer(300, activation_func='relu')
    cnn.addPerceptronLayer(10, activation_func='linear')
    cnn.compileOutputFunctions()
    cnn.setOptimizerParams(SGD={'LR': 0.01, 'momentum': 0.9})
    plain = nn.Sequential(nn.Conv2d(1, 16, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Linear(800, 300), nn.ReLU(), nn.Linear(300, 300),
                          nn.ReLU(), nn.Linear(300, 10))
    rng = np.random.RandomState(0)
    data = rng.rand(50, 1, 26, 26).astype(np.float32)
    labels = rng.randint(0, 10, 50).astype(np.int16)
    return cnn, plain, data, labels, data, labels


NEURO_FILTERS = [(1, 4, 4), (1, 3, 3), (3, 3, 3), (3, 3, 3), (1, 2, 2)]  # (z, x, y)
NEURO_POOLS = [(1, 2, 2), (1, 2, 2), (1, 1, 1), (1, 1, 1), (1, 1, 1)]
NEURO_MAPS = [10, 20, 40, 40, 40]


def build_neuro3d():
    cnn = MixedConvNN((7, 127, 127), input_depth=1, batch_size=1)
    for n, f, p in zip(NEURO_MAPS, NEURO_FILTERS, NEURO_POOLS):
        cnn.addConvLayer(n, f, pool_shape=p, activation_func='relu')
    cnn.addConvLayer(2, 1, pool_shape=1, activation_func='linear', is_last_layer=True)
    cnn.compileOutputFunctions()
    cnn.setOptimizerParams(SGD={'LR': 0.01, 'momentum': 0.9})
    layers, ch = [], 1
    for n, f, p in zip(NEURO_MAPS, NEURO_FILTERS, NEURO_POOLS):
        layers += [nn.Conv3d(ch, n, f), nn.ReLU()]
        if p != (1, 1, 1):
            layers.append(nn.MaxPool3d(p))
        ch = n
    layers.append(nn.Conv3d(ch, 2, 1))
    plain = nn.Sequential(*layers)
    rng = np.random.RandomState(0)
    data = rng.rand(1, 7, 1, 127, 127).astype(np.float32)  # original layout (bs, z, ch, x, y)
    labels = rng.randint(0, 2, (1, 3, 25, 25)).astype(np.int16)
    plain_data = np.ascontiguousarray(data.transpose(0, 2, 1, 3, 4))  # (bs, ch, z, x, y)
    return cnn, plain, data, labels, plain_data, labels


def host_batch(data, labels, memory_format, device):
    """The batch as tensors on ``device``, from the host every step as ``trainingStep`` takes it (on CUDA:
    pinned, asynchronous)."""
    x = torch.from_numpy(data)
    y = torch.from_numpy(labels).long()
    if device.type == 'cuda':
        x = x.pin_memory().to(device, non_blocking=True)
        y = y.pin_memory().to(device, non_blocking=True)
    return x.contiguous(memory_format=memory_format), y


def plain_stepper(model, data, labels, memory_format, device=torch.device('cpu')):
    model = model.to(device=device, memory_format=memory_format)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step():
        x, y = host_batch(data, labels, memory_format, device)
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()
    return step


def _no_sync():
    pass


def rate(step, seconds, sync=_no_sync):
    """Steps per second; ``sync`` (``torch.cuda.synchronize`` on a GPU) runs before each clock reading."""
    for _ in range(3):
        step()
    sync()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step()
        n += 1
    sync()
    return n / (time.perf_counter() - t0)


def measure(name, build, seconds, rounds, device=torch.device('cpu')):
    cnn, plain, data, labels, plain_data, plain_labels = build()
    cuda = device.type == 'cuda'
    if cuda and cnn.device != device:
        raise RuntimeError('%s: the ELEKTRONN network is on %s, not on %s' % (name, cnn.device, device))
    sync = (lambda: torch.cuda.synchronize(device)) if cuda else _no_sync
    formats = {'default': torch.contiguous_format,
               'channels_last': torch.channels_last if data.ndim == 4 else torch.channels_last_3d}
    plain_steps = {k: plain_stepper(copy.deepcopy(plain), plain_data, plain_labels, f, device)
                   for k, f in formats.items()}

    def ours():
        return cnn.trainingStep(data, labels, mode='SGD')[0]

    best = {'elektronn': 0.0, **{k: 0.0 for k in formats}}
    for _ in range(rounds):  # interleaved rounds, best of each, to damp machine noise
        best['elektronn'] = max(best['elektronn'], rate(ours, seconds, sync))
        for k, s in plain_steps.items():
            best[k] = max(best[k], rate(s, seconds, sync))
    plain_format = max(formats, key=lambda k: best[k])
    flops_per_step = 2 * 3 * cnn.TotalForwardPassCost * (1 if cnn.batch_size else 1)
    result = {
        'figure': '%s_training_steps_per_s' % name,
        'elektronn_steps_per_s': round(best['elektronn'], 2),
        'plain_steps_per_s': round(best[plain_format], 2),
        'plain_default_steps_per_s': round(best['default'], 2),
        'plain_channels_last_steps_per_s': round(best['channels_last'], 2),
        'plain_format': plain_format,
        'ratio_plain_time_over_elektronn_time': round(best['elektronn'] / best[plain_format], 3),
        'target_ratio': 0.95,
        'elektronn_gflops': round(flops_per_step * best['elektronn'] / 1e9, 2),
        'threads': torch.get_num_threads(),
        'device': device.type,
    }
    if cuda:
        result.update({
            'plain_gflops': round(flops_per_step * best[plain_format] / 1e9, 2),
            'gpu': torch.cuda.get_device_name(device),
            'elektronn_memory_format': 'channels_last' if cnn.memory_format in (
                torch.channels_last, torch.channels_last_3d) else 'default',
            'cudnn_allow_tf32': torch.backends.cudnn.allow_tf32,
            'cudnn_benchmark': torch.backends.cudnn.benchmark,
            'torch': torch.__version__,
        })
    print(json.dumps(result), flush=True)
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--seconds', type=float, default=3.0, help='timing window per measurement')
    ap.add_argument('--rounds', type=int, default=5, help='interleaved rounds (best is reported)')
    ap.add_argument('--threads', type=int, default=None, help='torch.set_num_threads')
    ap.add_argument('--only', choices=['mnist_cnn', 'neuro_3d'], default=None)
    ap.add_argument('--device', choices=['cpu', 'cuda'], default='cpu',
                    help='where both networks train (cuda: GPU 0; the batches still come from host memory)')
    args = ap.parse_args()
    device = select_device(args.device, ap)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    np.random.seed(0)
    for name, build in (('mnist_cnn', build_mnist), ('neuro_3d', build_neuro3d)):
        if args.only in (None, name):
            measure(name, lambda b=build: _quiet(b), args.seconds, args.rounds, device)


def _quiet(build):
    """Build without the network printout (and make the first, optimiser-creating step quietly)."""
    with contextlib.redirect_stdout(io.StringIO()):
        built = build()
        cnn, _, data, labels = built[:4]
        cnn.trainingStep(data, labels, mode='SGD')
    return built


if __name__ == '__main__':
    main()
