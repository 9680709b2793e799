"""Where tensors live: the one place that turns a ``--gpu`` value into a ``torch.device``.

``elektronn-train --gpu=...`` calls :func:`initGPU` once; every network built afterwards
(:class:`~elektronn.net.convnet.MixedConvNN`) is placed on :func:`current_device`. The CPU is the
default, so everything runs without a GPU.

Accepted values (strings are not case-sensitive):

* ``False``, ``None``, ``'false'``, ``'none'``, ``'cpu'``: the CPU.
* an int ``k`` or ``'k'``: CUDA device ``k``.
* ``'cuda:k'``: the same.
* ``'auto'``: a GPU that no other process is using (the one with most free memory), or the
  CPU when there is none.
"""
import os
import shutil
import subprocess

import torch

__all__ = ['parse_gpu', 'resolve_device', 'initGPU', 'current_device', 'get_free_gpu']

_current = torch.device('cpu')

#: A GPU counts as free when other processes use less than this much of its memory.
FREE_MEMORY_USED_MB = 300


def parse_gpu(value):
    """Normalise a ``--gpu`` value to ``'cpu'``, ``'auto'`` or a device index.

    Raises:
        ValueError: for anything else, naming the value and the accepted forms.
    """
    if value is None or value is False:
        return 'cpu'
    if value is True:
        return 'auto'
    if isinstance(value, int):
        if value < 0:
            raise ValueError('--gpu: a device index must be >= 0, got %r' % (value,))
        return value
    if isinstance(value, torch.device):
        return 'cpu' if value.type == 'cpu' else (value.index or 0)
    if isinstance(value, str):
        v = value.strip().lower()
        if v in ('false', 'none', 'cpu', ''):
            return 'cpu'
        if v == 'auto':
            return 'auto'
        if v.startswith('cuda:'):
            v = v[len('cuda:'):]
        elif v.startswith('gpu'):
            v = v[len('gpu'):]
        if v.isdigit():
            return int(v)
    raise ValueError("--gpu must be 'auto', 'false' or a GPU index such as 0, got %r" % (value,))


def _used_memory_by_nvidia_smi():
    """``{index: used MiB}`` from nvidia-smi, or ``None`` when it is not available."""
    exe = shutil.which('nvidia-smi')
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, '--query-gpu=index,memory.used', '--format=csv,noheader,nounits'],
                             capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    used = {}
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(',')]
        if len(parts) == 2 and parts[0].isdigit():
            try:
                used[int(parts[0])] = float(parts[1])
            except ValueError:
                continue
    return used


def get_free_gpu(n_devices=None, used_mb=None, free_bytes=None):
    """Index of a GPU that no other process is using, or ``None``.

    Prefers nvidia-smi's per-GPU used memory (it sees other processes); falls back to
    ``torch.cuda.mem_get_info``. Among free GPUs the one with the least used memory wins.
    The arguments exist for testing and are read from the machine when ``None``.
    """
    if n_devices is None:
        n_devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n_devices == 0:
        return None
    visible = list(range(n_devices))
    if used_mb is None and free_bytes is None:
        if not os.environ.get('CUDA_VISIBLE_DEVICES'):
            used_mb = _used_memory_by_nvidia_smi()
        if used_mb is None:
            free_bytes = {}
            for i in visible:
                free, total = torch.cuda.mem_get_info(i)
                free_bytes[i] = (free, total)
    if used_mb is not None:
        candidates = [(used_mb[i], i) for i in visible if i in used_mb and used_mb[i] < FREE_MEMORY_USED_MB]
    else:
        candidates = [((total - free) / 2 ** 20, i) for i, (free, total) in free_bytes.items()
                      if (total - free) / 2 ** 20 < FREE_MEMORY_USED_MB]
    if not candidates:
        return None
    return min(candidates)[1]


def resolve_device(gpu):
    """The ``torch.device`` for a ``--gpu`` value (see the module docstring).

    Raises:
        ValueError: a malformed value.
        RuntimeError: a GPU index was asked for but CUDA is not available or has fewer devices.
    """
    choice = parse_gpu(gpu)
    if choice == 'cpu':
        return torch.device('cpu')
    if choice == 'auto':
        index = get_free_gpu()
        return torch.device('cpu') if index is None else torch.device('cuda', index)
    if not torch.cuda.is_available():
        raise RuntimeError('--gpu=%r: CUDA is not available in this PyTorch installation (%s); '
                           "use --gpu=false for the CPU or --gpu=auto" % (gpu, torch.__version__))
    n = torch.cuda.device_count()
    if choice >= n:
        raise RuntimeError('--gpu=%r: there are only %i CUDA device(s) (0..%i)' % (gpu, n, n - 1))
    return torch.device('cuda', choice)


def initGPU(gpu):
    """Select the device for every network built from now on and print the choice.

    Returns:
        The selected ``torch.device``.
    """
    global _current
    _current = resolve_device(gpu)
    if _current.type == 'cuda':
        torch.cuda.set_device(_current)
        print('Using gpu device %i: %s' % (_current.index, torch.cuda.get_device_name(_current)))
    else:
        if parse_gpu(gpu) == 'auto':
            print('No free GPU found, using the CPU')
        else:
            print('Using the CPU')
    return _current


def current_device():
    """The device selected by :func:`initGPU` (the CPU until then)."""
    return _current
