"""Reduced precision (bf16, fp16 on CUDA) against float32: training steps/s and MFP prediction speed.

What is measured (every figure is one JSON line on stdout, the library's printouts are silenced):

1. Training (``MixedConvNN.trainingStep``, SGD with momentum) of the two networks of
   ``bench_net.py`` (``mnist_cnn`` and ``neuro_3d``, built by its functions), after
   ``setPrecision(p)`` and ``setMemoryFormat(f)``, for every precision ``p`` (float32 and each reduced
   one that the device computes natively) and both memory formats ``f`` (contiguous, channels-last).
   Beside them the plain PyTorch module of ``bench_net.py`` in PyTorch's own mixed-precision recipe:
   its forward pass under ``torch.autocast(device, dtype)``, the output brought back to float32 for
   ``F.cross_entropy`` (float32 loss, parameters and optimiser, as in ELEKTRONN), backward and step
   outside autocast (``bench_net.plain_stepper`` on an autocast wrapper); fp16 adds PyTorch's
   ``GradScaler`` (ELEKTRONN scales fp16 losses too). The plain module runs in both memory formats and
   the faster one is its baseline; it also runs in float32, for context only.

   * ``<net>_train_<p>_memory_format`` (one line per precision): ``value`` = steps/s in the memory
     format that ``setPrecision(p)`` chooses (the library's default for ``p`` on this device),
     ``baseline`` = steps/s in the other format, target ratio >= 1 (the default is the faster
     format; within the timing noise of a few per cent it is a tie).
   * ``<net>_train_<p>_over_fp32``: ``value`` = ELEKTRONN ``p``, ``baseline`` = ELEKTRONN float32,
     each in its default memory format; target >= 2.5 for bf16 on ``neuro_3d`` on a CPU with
     AVX512_BF16/AMX (none elsewhere). Context: the same ratio between the faster formats, and the
     plain module's ``p`` over its float32 (what PyTorch/oneDNN themselves gain, a ceiling of sorts).
   * ``<net>_train_<p>_elektronn_over_plain``: ``value`` = ELEKTRONN ``p`` (default format),
     ``baseline`` = plain ``p`` autocast (faster format), target >= 0.95.

2. Dense prediction (``predictDense``) of the neuro_3d net with max-fragment-pooling in every layer
   and the whole block as input (one tile, as ``bench_predict.py``'s ``mfp`` path, built by its
   ``build``) on a random uint8 block of (x, y, z) = (200, 200, 20) (``--volume Z,X,Y``; on CUDA
   (512, 512, 64) by default, as ``bench_predict.py``): one network per precision, the same weights,
   ``setPrecision(p)`` (so its default memory format) and ``predictDense(raw, precision=p)``.

   * ``mfp_predict_<p>_over_fp32``: output voxels/s in ``p`` and in float32, target >= 3 for bf16
     on the CPU; also by CPU time.
   * ``mfp_predict_<p>_max_abs_dp``: the largest (and the mean) |p_<p> - p_fp32| of the class
     probabilities, and the fraction of voxels whose most probable class differs.

   A precision that the device does not compute natively (fp16 on most CPUs; bf16 on CPUs without
   AVX512_BF16/AMX and GPUs before compute capability 8.0) would make ``setPrecision`` fall back to
   float32 with a warning; it is left out and one line per section says so (``value`` null,
   ``skipped``: the library's warning).

How: as ``bench_net.py``, every configuration of a network is timed by ``bench_net.rate`` (3 untimed
steps, then steps for ``--seconds``, total steps / total time) in ``--rounds`` interleaved rounds, and
the best round counts: on a shared machine other work only ever slows a round down, so the best one
is the least disturbed, and interleaving exposes all configurations to the same spells. Prediction
follows ``bench_predict.py``: one untimed run per network (oneDNN builds its kernels for each new
shape), then ``--rounds`` interleaved rounds, the fastest counts (by wall and, separately, by CPU
time). Only same-run ratios are meant to be compared between machines. Each line has ``figure``,
``value``, ``baseline``, ``ratio`` (value / baseline), ``target``, ``unit``, then context: the
memory formats, the device, threads, rounds, the 1-minute load average before and after the section,
the CPU's reduced-precision flags.

``--device cuda``: everything on GPU 0 (networks built after ``elektronn.net.device.initGPU(0)``,
batches and volumes still come from host memory, clocks read after ``torch.cuda.synchronize()``), with
fp16 beside bf16 where the GPU computes them natively; the lines carry the GPU's name and the cuDNN
settings.

Usage: ``python benchmarks/bench_precision.py [--seconds 3] [--rounds 5] [--threads N]
[--only mnist_cnn|neuro_3d|predict] [--volume Z,X,Y] [--device cpu|cuda]``
(about five minutes with the defaults; ``--seconds 0.5 --rounds 1
--volume 8,64,64`` checks that it works).
"""
import argparse
import contextlib
import copy
import io
import json
import os
import warnings

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

with contextlib.redirect_stdout(io.StringIO()):
    from elektronn.net import precision as _precision

from _bench_device import select_device  # noqa: E402  (benchmarks/ is the script's folder)
from bench_net import _no_sync, _quiet, build_mnist, build_neuro3d, host_batch, plain_stepper, rate  # noqa: E402
import bench_predict  # noqa: E402

REDUCED = ('bf16', 'fp16')
DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}
FORMATS = ('contiguous', 'channels_last')
TRAIN_TARGETS = {('neuro_3d', 'bf16', 'cpu'): 2.5}  # reduced over float32, ELEKTRONN training
PREDICT_TARGETS = {('bf16', 'cpu'): 3.0}  # reduced over float32, MFP prediction
PLAIN_TARGET = 0.95  # ELEKTRONN over plain PyTorch in the same precision
CPU_PRECISION_FLAGS = ('avx512_bf16', 'amx_bf16', 'avx512_fp16', 'amx_fp16')


def _torch_format(name, n_dim):
    """The ``torch.memory_format`` called ``name`` for a tensor of ``n_dim`` axes."""
    if name == 'contiguous':
        return torch.contiguous_format
    return torch.channels_last if n_dim == 4 else torch.channels_last_3d


def _format_name(memory_format):
    return 'channels_last' if memory_format in (torch.channels_last, torch.channels_last_3d) else 'contiguous'


def precisions(device):
    """``(measured, skipped)``: float32 and the reduced precisions ``device`` computes natively, and
    ``{precision: the library's fall-back warning}`` for the others."""
    measured, skipped = ['fp32'], {}
    for p in REDUCED:
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter('always')
            used = _precision.resolve(p, device)
        if used == p:
            measured.append(p)
        else:
            skipped[p] = ' '.join(str(w.message) for w in said) or '%s is not native on %s' % (p, device)
    return measured, skipped


class Autocast(nn.Module):
    """A plain module's forward pass under ``torch.autocast``, the output back in float32 (for a float32 loss)."""

    def __init__(self, module, device_type, dtype):
        super().__init__()
        self.module, self.device_type, self.dtype = module, device_type, dtype

    def forward(self, x):
        with torch.autocast(self.device_type, dtype=self.dtype):
            out = self.module(x)
        return out.float()


def _grad_scaler(device):
    try:
        return torch.amp.GradScaler(device.type)
    except AttributeError:  # PyTorch < 2.3
        return torch.cuda.amp.GradScaler()


def plain_fp16_stepper(model, data, labels, memory_format, device):
    """``bench_net.plain_stepper``'s step in PyTorch's float16 recipe: autocast forward pass, float32
    loss, ``GradScaler`` (dynamic loss scaling, as ELEKTRONN's fp16 training) for backward and step."""
    model = model.to(device=device, memory_format=memory_format)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scaler = _grad_scaler(device)

    def step():
        x, y = host_batch(data, labels, memory_format, device)
        opt.zero_grad()
        with torch.autocast(device.type, dtype=torch.float16):
            out = model(x)
        loss = F.cross_entropy(out.float(), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return loss.item()
    return step


def _plain_step(plain, data, labels, precision, memory_format, device):
    model = copy.deepcopy(plain)
    if precision == 'fp32':
        return plain_stepper(model, data, labels, memory_format, device)
    if precision == 'fp16':
        return plain_fp16_stepper(model, data, labels, memory_format, device)
    return plain_stepper(Autocast(model, device.type, DTYPES[precision]), data, labels, memory_format, device)


def _context(device, args):
    flags = _precision.cpu_flags()
    ctx = {'device': device.type, 'threads': torch.get_num_threads(), 'rounds': args.rounds,
           'cpu_precision_flags': [f for f in CPU_PRECISION_FLAGS if f in flags], 'torch': torch.__version__}
    if device.type == 'cuda':
        ctx.update(gpu=torch.cuda.get_device_name(device), cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
                   cudnn_benchmark=torch.backends.cudnn.benchmark)
    return ctx


def _line(figure, value, baseline, target, unit, digits=2, **context):
    ratio = None if value is None or baseline is None else round(value / baseline, 3)
    rnd = (lambda v: None if v is None else round(v, digits))
    print(json.dumps(dict(figure=figure, value=rnd(value), baseline=rnd(baseline), ratio=ratio, target=target,
                          unit=unit, **context)), flush=True)


def _skipped(figure, reason, unit, **context):
    print(json.dumps(dict(figure=figure, value=None, baseline=None, ratio=None, target=None, unit=unit,
                          skipped=reason, **context)), flush=True)


def measure_training(name, build, args, device, measured, skipped):
    """Steps/s of ELEKTRONN in every precision and memory format and of the plain module, best of
    ``args.rounds`` interleaved rounds; prints the training lines of ``name``."""
    cuda = device.type == 'cuda'
    sync = (lambda: torch.cuda.synchronize(device)) if cuda else _no_sync
    steps, default_format, cost = {}, {}, None
    plain = None
    for p in measured:
        for f in FORMATS:
            torch.manual_seed(0)
            np.random.seed(0)
            built = _quiet(build)  # also makes the first (optimiser-creating) step, in float32
            cnn, plain_module, data, labels, plain_data, plain_labels = built
            if cuda and cnn.device != device:
                raise RuntimeError('%s: the ELEKTRONN network is on %s, not on %s' % (name, cnn.device, device))
            with contextlib.redirect_stdout(io.StringIO()):
                if cnn.setPrecision(p) != p:
                    raise RuntimeError('%s: setPrecision(%r) fell back to %s' % (name, p, cnn.precision))
                default_format[p] = _format_name(cnn.memory_format)  # what setPrecision chose
                cnn.setMemoryFormat(f)
            cost = 2 * 3 * cnn.TotalForwardPassCost  # forward + backward: 3x the forward multiply-adds
            steps[('elektronn', p, f)] = (lambda c=cnn, d=data, y=labels: c.trainingStep(d, y, mode='SGD')[0])
            if plain is None:
                plain = (plain_module, plain_data, plain_labels)
    plain_module, plain_data, plain_labels = plain
    for p in measured:
        for f in FORMATS:
            steps[('plain', p, f)] = _plain_step(plain_module, plain_data, plain_labels, p,
                                                 _torch_format(f, plain_data.ndim), device)

    best = dict.fromkeys(steps, 0.0)
    load_before = os.getloadavg()[0]
    with contextlib.redirect_stdout(io.StringIO()):
        for _ in range(args.rounds):  # interleaved rounds, best of each, to damp machine noise
            for key, step in steps.items():
                best[key] = max(best[key], rate(step, args.seconds, sync))
    common = dict(_context(device, args), seconds=args.seconds,
                  loadavg_1min=[round(load_before, 2), round(os.getloadavg()[0], 2)])

    def ours(p, f=None):
        return best[('elektronn', p, f or default_format[p])]

    def plain_best(p):
        f = max(FORMATS, key=lambda f: best[('plain', p, f)])
        return best[('plain', p, f)], f

    for p in measured:
        other = [f for f in FORMATS if f != default_format[p]][0]
        _line('%s_train_%s_memory_format' % (name, p), ours(p), ours(p, other), 1.0, 'steps/s',
              precision=p, default_format=default_format[p], baseline_format=other,
              **{'%s_steps_per_s' % f: round(ours(p, f), 2) for f in FORMATS}, **common)
    for p in measured:
        if p == 'fp32':
            continue
        ours_best = max(ours(p, f) for f in FORMATS)
        fp32_best = max(ours('fp32', f) for f in FORMATS)
        _line('%s_train_%s_over_fp32' % (name, p), ours(p), ours('fp32'),
              TRAIN_TARGETS.get((name, p, device.type)), 'steps/s', precision=p,
              memory_format=default_format[p], baseline_memory_format=default_format['fp32'],
              ratio_between_faster_formats=round(ours_best / fp32_best, 3),
              plain_ratio_over_its_fp32=round(plain_best(p)[0] / plain_best('fp32')[0], 3),
              gflops=round(cost * ours(p) / 1e9, 2), baseline_gflops=round(cost * ours('fp32') / 1e9, 2), **common)
    for p in measured:
        if p == 'fp32':
            continue
        plain_rate, plain_format = plain_best(p)
        _line('%s_train_%s_elektronn_over_plain' % (name, p), ours(p), plain_rate, PLAIN_TARGET, 'steps/s',
              precision=p, memory_format=default_format[p], plain_format=plain_format,
              **{'plain_%s_steps_per_s' % f: round(best[('plain', p, f)], 2) for f in FORMATS},
              plain_fp32_steps_per_s=round(plain_best('fp32')[0], 2), plain_fp32_format=plain_best('fp32')[1],
              gflops=round(cost * ours(p) / 1e9, 2), **common)
    for p, reason in skipped.items():
        _skipped('%s_train_%s' % (name, p), reason, 'steps/s', precision=p, **common)


def measure_prediction(args, device, measured, skipped):
    """Voxels/s of ``predictDense`` of the MFP neuro_3d net in every precision; prints the prediction lines."""
    zxy = args.volume or ((64, 512, 512) if device.type == 'cuda' else (20, 200, 200))
    rng = np.random.RandomState(0)
    raw = rng.randint(0, 256, (1, zxy[1], zxy[2], zxy[0])).astype(np.uint8)  # (ch, x, y, z)
    torch.manual_seed(0)
    np.random.seed(0)
    nets, weights, formats = {}, None, {}
    for p in measured:
        cnn = bench_predict.build(zxy, mfp=True, weights=weights)
        weights = weights or [layer.param_arrays() for layer in cnn.layers]
        with contextlib.redirect_stdout(io.StringIO()):
            if cnn.setPrecision(p) != p:
                raise RuntimeError('predict: setPrecision(%r) fell back to %s' % (p, cnn.precision))
        formats[p] = _format_name(cnn.memory_format)
        nets[p] = (lambda c=cnn, p=p: c.predictDense(raw, precision=p))
    for fn in nets.values():  # untimed: oneDNN builds its kernels for each new shape on first use
        bench_predict.timed(fn)
    wall, cpu, outputs = {}, {}, {}
    load_before = os.getloadavg()[0]
    for _ in range(args.rounds):
        for p, fn in nets.items():
            t, c, outputs[p] = bench_predict.timed(fn)
            wall[p], cpu[p] = min(t, wall.get(p, np.inf)), min(c, cpu.get(p, np.inf))
    common = dict(_context(device, args), volume_zxy=list(zxy), output_shape=list(outputs['fp32'].shape),
                  loadavg_1min=[round(load_before, 2), round(os.getloadavg()[0], 2)])
    n = outputs['fp32'][0].size
    for p in measured:
        if p == 'fp32':
            continue
        diff = np.abs(outputs[p] - outputs['fp32'])
        disagree = float(np.mean(outputs[p].argmax(0) != outputs['fp32'].argmax(0)))
        _line('mfp_predict_%s_over_fp32' % p, n / wall[p], n / wall['fp32'], PREDICT_TARGETS.get((p, device.type)),
              'voxels/s', digits=0, precision=p, memory_format=formats[p], baseline_memory_format=formats['fp32'],
              ratio_by_cpu_time=round(cpu['fp32'] / cpu[p], 3), seconds=round(wall[p], 3),
              baseline_seconds=round(wall['fp32'], 3), cpu_seconds=round(cpu[p], 3),
              baseline_cpu_seconds=round(cpu['fp32'], 3), max_abs_dp=float(diff.max()), **common)
        print(json.dumps(dict(figure='mfp_predict_%s_max_abs_dp' % p, value=float(diff.max()), baseline=None,
                              ratio=None, target=None, unit='probability', precision=p,
                              mean_abs_dp=float(diff.mean()), argmax_disagreement=disagree, **common)), flush=True)
    for p, reason in skipped.items():
        _skipped('mfp_predict_%s' % p, reason, 'voxels/s', precision=p, **common)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--seconds', type=float, default=3.0, help='timing window per training measurement')
    ap.add_argument('--rounds', type=int, default=5, help='interleaved rounds (the best is reported)')
    ap.add_argument('--threads', type=int, default=None, help='torch.set_num_threads')
    ap.add_argument('--only', choices=['mnist_cnn', 'neuro_3d', 'predict'], default=None)
    ap.add_argument('--volume', type=bench_predict._zxy, default=None, metavar='Z,X,Y',
                    help='prediction block (default (20, 200, 200) on the CPU, (64, 512, 512) on cuda)')
    ap.add_argument('--device', choices=['cpu', 'cuda'], default='cpu',
                    help='where everything runs (cuda: GPU 0; the batches still come from host memory)')
    args = ap.parse_args()
    device = select_device(args.device, ap)
    if args.threads:
        torch.set_num_threads(args.threads)
    measured, skipped = precisions(device)
    for name, build in (('mnist_cnn', build_mnist), ('neuro_3d', build_neuro3d)):
        if args.only in (None, name):
            measure_training(name, build, args, device, measured, skipped)
    if args.only in (None, 'predict'):
        measure_prediction(args, device, measured, skipped)


if __name__ == '__main__':
    main()
