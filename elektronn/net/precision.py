"""Reduced precision: bf16/fp16 autocast for the forward pass, float32 for everything that accumulates.

A network computes in one of three precisions (:data:`PRECISIONS`):

* ``'fp32'``: everything in float32 (the default, as ELEKTRONN 1.x).
* ``'bf16'``: the convolutions and matrix products of the forward pass (and so of the backward pass)
  in bfloat16 under :func:`torch.autocast`; parameters, gradients, optimiser states, the last layer's
  activation and the loss stay float32. bf16 has float32's range, so no loss scaling is needed.
* ``'fp16'``: the same in float16, with dynamic loss scaling (:class:`LossScaler`) against gradient
  underflow.

Reduced precision pays only where the hardware computes it natively: CPUs with AVX512_BF16 or AMX
(bf16) / AVX512_FP16 or AMX-FP16 (fp16), CUDA GPUs of compute capability 8.0 or higher (bf16) or 7.0
(fp16 tensor cores). Elsewhere it is emulated and slower than float32, so :func:`resolve` falls back
to float32 with a warning. ``'auto'`` (:func:`auto_precision`) is bf16 where it is native, else float32.
"""
import contextlib
import functools
import math
import os
import warnings

import torch

__all__ = ['PRECISIONS', 'canonical', 'resolve', 'auto_precision', 'native', 'autocast', 'LossScaler',
           'cpu_flags', 'describe']

#: The precisions a network computes in.
PRECISIONS = ('fp32', 'bf16', 'fp16')

_ALIASES = {'fp32': 'fp32', 'float32': 'fp32', 'float': 'fp32', 'bf16': 'bf16', 'bfloat16': 'bf16',
            'fp16': 'fp16', 'float16': 'fp16', 'half': 'fp16'}
_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}
# CPU flags (Linux /proc/cpuinfo names) of native reduced-precision arithmetic
_CPU_FLAGS = {'bf16': ('avx512_bf16', 'amx_bf16'), 'fp16': ('avx512_fp16', 'amx_fp16')}


def canonical(precision, what='precision', allow_auto=False):
    """``'fp32'``, ``'bf16'`` or ``'fp16'`` (or ``'auto'``) for a precision or one of its aliases.

    ``False`` and ``None`` mean ``'fp32'``; ``'float32'``, ``'bfloat16'``, ``'float16'``/``'half'`` are
    accepted. ``what`` names the parameter in the error message.
    """
    if precision is None or precision is False:
        return 'fp32'
    if isinstance(precision, str):
        name = precision.strip().lower()
        if allow_auto and name == 'auto':
            return 'auto'
        if name in _ALIASES:
            return _ALIASES[name]
    choices = "'fp32' (or False), 'bf16', 'fp16'" + (", 'auto'" if allow_auto else '')
    raise ValueError('%s must be one of %s, got %r' % (what, choices, precision))


@functools.lru_cache(maxsize=1)
def _proc_cpu_flags():
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('flags'):
                    return frozenset(line.split(':', 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_flags():
    """The CPU's feature flags (Linux; empty elsewhere). ``ELEKTRONN_CPU_FLAGS`` (space-separated) replaces
    them, to try the fall-back on a machine that has the features (``ELEKTRONN_CPU_FLAGS=none``)."""
    forced = os.environ.get('ELEKTRONN_CPU_FLAGS')
    if forced is not None:
        return frozenset(f for f in forced.split() if f != 'none')
    return _proc_cpu_flags()


def native(precision, device):
    """Whether ``device`` computes ``precision`` natively (float32 always)."""
    precision = canonical(precision)
    if precision == 'fp32':
        return True
    device = torch.device(device)
    if device.type == 'cuda':
        major, minor = torch.cuda.get_device_capability(device)
        return (major, minor) >= ((8, 0) if precision == 'bf16' else (7, 0))
    if device.type == 'cpu':
        return any(f in cpu_flags() for f in _CPU_FLAGS[precision])
    return False


def auto_precision(device):
    """bf16 where ``device`` computes it natively, else float32 (the default of the prediction tools)."""
    return 'bf16' if native('bf16', device) else 'fp32'


def resolve(precision, device, what='precision', stacklevel=3):
    """The precision to use on ``device``: ``precision`` (``'auto'`` allowed) where it is native, else
    float32 with a warning that names the missing feature (``stacklevel`` as for :func:`warnings.warn`, counted
    from this function: 3 points at the caller of the function that calls this one)."""
    precision = canonical(precision, what, allow_auto=True)
    if precision == 'auto':
        return auto_precision(device)
    if native(precision, device):
        return precision
    device = torch.device(device)
    needs = ('CPU flags %s' % ' or '.join(_CPU_FLAGS[precision]) if device.type == 'cpu'
             else 'compute capability %s' % ('8.0' if precision == 'bf16' else '7.0'))
    warnings.warn('%s=%r: %s has no native %s arithmetic (it needs %s); it would be emulated and slower than '
                  'float32, so float32 is used' % (what, precision, device, precision, needs), stacklevel=stacklevel)
    return 'fp32'


def describe(precision):
    """The printed name of a precision."""
    return {'fp32': 'float32', 'bf16': 'bf16 (bfloat16 autocast, float32 parameters)',
            'fp16': 'fp16 (float16 autocast with loss scaling, float32 parameters)'}[precision]


def autocast(precision, device):
    """A context in which ``device``'s forward computations run in ``precision`` (no-op for float32)."""
    if precision == 'fp32':
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=_DTYPES[precision])


class LossScaler:
    """Dynamic loss scaling for fp16 training (gradients of small losses would underflow in float16).

    The loss is multiplied by :attr:`scale` before the backward pass and the gradients divided by it
    after; a step whose gradients overflowed is skipped and the scale halved; after ``growth_interval``
    good steps in a row the scale doubles. The state is part of a run's resume state.
    """

    def __init__(self, scale=2.0 ** 16, growth_interval=2000):
        self.scale = float(scale)  #: The current factor of the loss.
        self.growth_interval = int(growth_interval)
        self.good_steps = 0
        self.skipped = 0

    def unscale(self, params):
        """Divide the gradients of ``params`` by the scale; ``True`` when all are finite, else the
        gradients are dropped (``grad = None``: the optimisers then leave the step out) and ``False``."""
        grads = [p.grad for p in params if p.grad is not None]
        if grads:
            torch._foreach_mul_(grads, 1.0 / self.scale)
            finite = bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())
        else:
            finite = True
        if not finite:
            for p in params:
                p.grad = None
        return finite

    def update(self, finite):
        """Adapt the scale after a step whose gradients were ``finite`` or not."""
        if finite:
            self.good_steps += 1
            if self.good_steps >= self.growth_interval:
                self.scale = min(self.scale * 2.0, 2.0 ** 24)
                self.good_steps = 0
        else:
            self.skipped += 1
            self.scale = max(self.scale / 2.0, 1.0)
            self.good_steps = 0

    def state_dict(self):
        """The scale and the step counts, for the resume state."""
        return {'scale': self.scale, 'good_steps': self.good_steps, 'skipped': self.skipped}

    def load_state_dict(self, state):
        """Restore a :meth:`state_dict`; a scale that is not a finite number >= 1 raises ``ValueError``."""
        scale = float(state['scale'])
        if not (math.isfinite(scale) and scale >= 1):
            raise ValueError('LossScaler: the saved scale %r is not a finite number >= 1' % (state['scale'],))
        self.scale, self.good_steps, self.skipped = scale, int(state['good_steps']), int(state['skipped'])
