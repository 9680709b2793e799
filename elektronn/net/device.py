"""Where tensors live: the one place that turns a ``--gpu`` value into a ``torch.device``.

``elektronn-train --gpu=...`` calls :func:`initGPU` once; every network built afterwards
(:class:`~elektronn.net.convnet.MixedConvNN`) is placed on :func:`current_device`. The CPU is the
default, so everything runs without a GPU.

Accepted values (strings are not case-sensitive):

* ``False``, ``None``, ``'false'``, ``'none'``, ``'cpu'``: the CPU.
* an int ``k`` or ``'k'``: CUDA device ``k``.
* ``'cuda:k'``: the same.
* ``'auto'``: a GPU that other processes leave free (they use less than
  :data:`FREE_MEMORY_USED_MB` MiB of it), the least used one; the CPU when there is none.
  :func:`initGPU` prints which GPU it chose and why, or why it uses the CPU.

How ``'auto'`` looks at the GPUs without touching them: asking CUDA how much memory a GPU has
free (``torch.cuda.mem_get_info``) creates a CUDA context on it, hundreds of MiB, after which
every GPU looks busy. So nothing here creates a context until the chosen GPU is set:

1. :func:`query_gpus` lists the machine's GPUs as :class:`GpuInfo` records (nvidia-smi's index,
   UUID, PCI bus id, name, used and total MiB) from NVML (the ``nvidia-ml-py`` package, module
   ``pynvml``; MIG instances included) or, without it, from ``nvidia-smi``.
2. :func:`map_cuda_indices` gives each the CUDA index this process sees. nvidia-smi counts GPUs in
   PCI bus order, CUDA fastest first unless ``CUDA_DEVICE_ORDER=PCI_BUS_ID``, and only those
   that ``CUDA_VISIBLE_DEVICES`` names, in its order. The UUID and PCI bus id of every CUDA
   device, read from ``torch.cuda.get_device_properties`` (properties, no context), settle it.
   Where PyTorch cannot tell, ``CUDA_VISIBLE_DEVICES`` is read as CUDA reads it (indices,
   ``GPU-``/``MIG-`` UUIDs or unique prefixes of them; an unreadable entry ends the list) and its
   indices are taken in PCI bus order, which is CUDA's order with ``CUDA_DEVICE_ORDER=PCI_BUS_ID``
   or when all GPUs are the same model.
3. :func:`choose_gpu` picks among them.

:func:`find_free_gpu` runs the three steps; :func:`get_free_gpu` returns just the index.
"""
import dataclasses
import logging
import os
import re
import shutil
import subprocess
from collections import namedtuple

import torch

logger = logging.getLogger(__name__)

__all__ = ['parse_gpu', 'parse_gpu_list', 'gpu_list_indices', 'resolve_device', 'initGPU', 'current_device', 'get_free_gpu', 'find_free_gpu',
           'GpuInfo', 'GpuQueryError', 'query_gpus', 'map_cuda_indices', 'choose_gpu', 'FREE_MEMORY_USED_MB']

_current = torch.device('cpu')

#: A GPU counts as free when other processes use less than this much of its memory (MiB).
FREE_MEMORY_USED_MB = 300

_MIB = 2 ** 20


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


# ---------------------------------------------------------------------------------------------------
# 1. The machine's GPUs, from NVML or nvidia-smi
# ---------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class GpuInfo:
    """One GPU (or MIG instance) of the machine.

    Attributes:
        index: nvidia-smi's (NVML's) index, in PCI bus order; a MIG instance has its GPU's.
        uuid: ``'GPU-...'``, or ``'MIG-...'`` for a MIG instance.
        bus_id: PCI bus id, normalised to ``'0000:41:00.0'`` (``None`` when unknown).
        name: e.g. ``'NVIDIA H200'``.
        used_mib: memory used by other processes (``None`` when unknown).
        total_mib: memory size (``None`` when unknown).
        cuda_index: the CUDA device index in this process, ``None`` when it does not see the GPU
            (set by :func:`map_cuda_indices`).
    """
    index: int
    uuid: str
    bus_id: object
    name: str
    used_mib: object
    total_mib: object
    cuda_index: object = None

    @property
    def is_mig(self):
        """Whether this is a MIG instance (a slice of a GPU) rather than a whole GPU."""
        return self.uuid.upper().startswith('MIG-')

    def describe(self):
        """``'NVIDIA H200, GPU-..., bus 0000:41:00.0'``."""
        return '%s, %s, bus %s' % (self.name, self.uuid, self.bus_id or 'unknown')


class GpuQueryError(RuntimeError):
    """Neither NVML nor nvidia-smi could list the GPUs (the message says why)."""



def parse_gpu_list(value):
    """The GPUs of a ``--gpu`` value that names several, one process each: ``'all'``, or the indices of
    ``'0,1'`` (or of a list); ``None`` for a value naming one device or the CPU (see :func:`parse_gpu`).

    Raises:
        ValueError: a malformed list or a GPU named twice, echoing the value.
    """
    if value is None or value is False:
        return None
    if isinstance(value, (list, tuple)):
        parts = [str(v).strip() for v in value]
    else:
        text = str(value).strip().lower()
        if text == 'all':
            return 'all'
        if ',' not in text:
            return None
        parts = [p.strip() for p in text.split(',')]
    if not all(p.isdigit() for p in parts):
        raise ValueError('--gpu: a list of GPU indices such as 0,1 (one process each), got %r' % (value,))
    gpus = [int(p) for p in parts]
    for g in gpus:
        if gpus.count(g) > 1:
            raise ValueError('--gpu: GPU %i is named twice in %r; name each GPU once (one process per GPU)'
                             % (g, value))
    return gpus


def gpu_list_indices(gpus, value, without='uses the CPU'):
    """The CUDA indices of a :func:`parse_gpu_list` result (``'all'``: every GPU of the machine).

    Args:
        gpus: ``'all'`` or a list of indices.
        value: The ``--gpu`` value, for the message.
        without: What ``--gpu=false`` does instead, for the message (e.g. ``'trains on the CPU'``).

    Raises:
        ValueError: no GPU, or one this machine does not have.
    """
    n_cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    gpus = list(range(n_cuda)) if gpus == 'all' else list(gpus)
    if not gpus or max(gpus) >= n_cuda:
        raise ValueError('--gpu=%s: this machine has %i CUDA device(s)%s' % (
            value, n_cuda, '' if n_cuda else ' (PyTorch %s); --gpu=false %s' % (torch.__version__, without)))
    return gpus


def _bus_id(domain, bus, device, function=0):
    return '%04x:%02x:%02x.%x' % (domain, bus, device, function)


def _parse_bus_id(text):
    """``'00000000:41:00.0'`` -> ``'0000:41:00.0'``; ``None`` when it is not a PCI bus id."""
    if isinstance(text, bytes):
        text = text.decode('ascii', 'replace')
    m = re.fullmatch(r'\s*([0-9a-fA-F]{1,8}):([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})\.([0-7])\s*', text or '')
    return _bus_id(*(int(g, 16) for g in m.groups())) if m else None


def _text(value):
    return value.decode('utf-8', 'replace') if isinstance(value, bytes) else str(value)


def _gpus_from_nvml():
    """The GPUs (and MIG instances) as NVML lists them. Raises :class:`GpuQueryError`."""
    try:
        import pynvml
    except ImportError:
        raise GpuQueryError('NVML: the nvidia-ml-py package (module pynvml) is not installed') from None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        raise GpuQueryError('NVML: %s' % (e,)) from None
    try:
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            pci = pynvml.nvmlDeviceGetPciInfo(handle)
            bus = _bus_id(pci.domain, pci.bus, pci.device)
            gpus.append(_nvml_record(pynvml, handle, i, bus))
            for mig in _nvml_mig_handles(pynvml, handle):
                gpus.append(_nvml_record(pynvml, mig, i, bus))
        return gpus
    except pynvml.NVMLError as e:
        raise GpuQueryError('NVML: %s' % (e,)) from None
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass


def _nvml_mig_handles(pynvml, handle):
    """The MIG instances of a GPU in MIG mode (none otherwise)."""
    try:
        mode = pynvml.nvmlDeviceGetMigMode(handle)[0]
    except (pynvml.NVMLError, AttributeError):  # not supported by the GPU or the bindings
        return []
    if mode != getattr(pynvml, 'NVML_DEVICE_MIG_ENABLE', 1):
        return []
    handles = []
    for j in range(pynvml.nvmlDeviceGetMaxMigDeviceCount(handle)):
        try:
            handles.append(pynvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, j))
        except pynvml.NVMLError:  # an empty slot
            continue
    return handles


def _nvml_record(pynvml, handle, index, bus):
    """A :class:`GpuInfo` for an NVML handle; memory this process holds there does not count."""
    try:  # v2 reports the driver's reserved memory apart from the used memory, as nvidia-smi does
        mem = pynvml.nvmlDeviceGetMemoryInfo(handle, version=pynvml.nvmlMemory_v2)
    except (TypeError, AttributeError, pynvml.NVMLError):
        mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
    own = 0
    try:
        own = sum(p.usedGpuMemory or 0 for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
                  if p.pid == os.getpid())
    except pynvml.NVMLError:
        pass
    return GpuInfo(index=index, uuid=_text(pynvml.nvmlDeviceGetUUID(handle)), bus_id=bus,
                   name=_text(pynvml.nvmlDeviceGetName(handle)),
                   used_mib=max(mem.used - own, 0) / _MIB, total_mib=mem.total / _MIB)


_SMI_FIELDS = 'index,uuid,pci.bus_id,memory.used,memory.total,name'


def _run_nvidia_smi(args):
    """nvidia-smi's standard output. Raises :class:`GpuQueryError`."""
    exe = shutil.which('nvidia-smi')
    if exe is None:
        raise GpuQueryError('nvidia-smi: not found on the PATH')
    try:
        return subprocess.run([exe] + list(args), capture_output=True, text=True, timeout=20, check=True).stdout
    except subprocess.CalledProcessError as e:
        raise GpuQueryError('nvidia-smi: exit status %i: %s' % (e.returncode, (e.stderr or e.stdout or '').strip()))
    except (OSError, subprocess.SubprocessError) as e:
        raise GpuQueryError('nvidia-smi: %s' % (e,))


def _mib(text):
    try:
        return float(text)
    except ValueError:  # '[N/A]', e.g. for a GPU in MIG mode
        return None


def _gpus_from_nvidia_smi():
    """The GPUs as ``nvidia-smi --query-gpu`` lists them (no MIG instances). Raises :class:`GpuQueryError`."""
    out = _run_nvidia_smi(['--query-gpu=' + _SMI_FIELDS, '--format=csv,noheader,nounits'])
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(',', 5)]  # the name, last, may hold commas
        if len(parts) != 6 or not parts[0].isdigit():
            raise GpuQueryError('nvidia-smi: cannot read the line %r (expected %s)' % (line, _SMI_FIELDS))
        index, uuid, bus, used, total, name = parts
        gpus.append(GpuInfo(index=int(index), uuid=uuid, bus_id=_parse_bus_id(bus), name=name,
                            used_mib=_mib(used), total_mib=_mib(total)))
    return gpus


def query_gpus():
    """The machine's GPUs, all of them, from NVML or else nvidia-smi; creates no CUDA context.

    Returns:
        A list of :class:`GpuInfo` by nvidia-smi index, ``cuda_index`` not set.

    Raises:
        GpuQueryError: neither works; the message says why for both.
    """
    try:
        return _gpus_from_nvml()
    except GpuQueryError as nvml_error:
        try:
            return _gpus_from_nvidia_smi()
        except GpuQueryError as smi_error:
            raise GpuQueryError('%s; %s' % (nvml_error, smi_error)) from None


# ---------------------------------------------------------------------------------------------------
# 2. nvidia-smi's GPUs -> CUDA indices
# ---------------------------------------------------------------------------------------------------
#: A CUDA device as PyTorch sees it: ``uuid`` as lower-case hex digits (``''`` when unknown),
#: ``bus_id`` normalised (``None`` when unknown), ``name``.
CudaDevice = namedtuple('CudaDevice', 'uuid bus_id name')


def _uuid_hex(value):
    """The hex digits of a UUID (``'GPU-5b1a...'``, ``'MIG-...'``, torch's ``_CUuuid``), lower case; ``''`` if none."""
    digits = ''
    raw = getattr(value, 'bytes', None)  # torch's _CUuuid: 16 bytes (its str() is the dashed hex form)
    if raw is not None:
        try:
            digits = bytes(raw).hex()
        except (TypeError, ValueError):
            digits = ''
    if not digits.strip('0'):
        text = _text(value or '').strip().lower()
        if text.startswith(('gpu-', 'mig-')):
            text = text[4:]
        digits = ''.join(c for c in text if c in '0123456789abcdef')
    return digits if digits.strip('0') else ''


def _cuda_devices_from(properties):
    """``CudaDevice`` records for ``torch.cuda.get_device_properties`` results, in CUDA's order."""
    devices = []
    for p in properties:
        try:
            bus = _bus_id(p.pci_domain_id, p.pci_bus_id, p.pci_device_id)
        except (AttributeError, TypeError, ValueError):  # PyTorch < 2.7 has no PCI ids
            bus = None
        devices.append(CudaDevice(_uuid_hex(getattr(p, 'uuid', None)), bus, getattr(p, 'name', '?')))
    return devices


def _cuda_devices():
    """The CUDA devices this process sees, in CUDA's order, from their properties (no context).

    ``[]`` when PyTorch has no CUDA device; ``None`` when their properties cannot be read.
    """
    if not torch.cuda.is_available():
        return []
    try:
        return _cuda_devices_from([torch.cuda.get_device_properties(i) for i in range(torch.cuda.device_count())])
    except (RuntimeError, AssertionError):
        return None


def _by_uuid_prefix(gpus, entry):
    """The one GPU whose UUID starts with ``entry`` (``'GPU-5b1a'``), or a reason why there is none."""
    matches = [g for g in gpus if g.uuid.lower().startswith(entry.lower())]
    if len(matches) == 1:
        return matches[0], None
    return None, ('no GPU has such a UUID' if not matches else
                  'it is a prefix of %i GPUs\' UUIDs' % len(matches))


def map_cuda_indices(gpus, cuda_devices=None, environ=None):
    """The GPUs this process sees, each with its CUDA index, in CUDA's order.

    Args:
        gpus: :class:`GpuInfo` records of the machine (:func:`query_gpus`).
        cuda_devices: ``CudaDevice`` records in CUDA's order (``_cuda_devices()``); they already
            honour ``CUDA_VISIBLE_DEVICES`` and ``CUDA_DEVICE_ORDER``, so a GPU is matched by
            UUID, else by PCI bus id. ``None``, or records without either: read the environment.
        environ: where to read ``CUDA_VISIBLE_DEVICES`` and ``CUDA_DEVICE_ORDER`` (``os.environ``).

    Returns:
        ``(visible, notes)``: records with ``cuda_index`` set, by ``cuda_index``; and sentences
        on what could not be mapped (empty when all went well).
    """
    if cuda_devices is not None and cuda_devices and all(d.uuid or d.bus_id for d in cuda_devices):
        return _map_by_properties(gpus, cuda_devices)
    visible, notes = _map_by_environment(gpus, os.environ if environ is None else environ)
    if cuda_devices is not None and len(visible) > len(cuda_devices):
        visible = visible[:len(cuda_devices)]
    return visible, notes


def _map_by_properties(gpus, cuda_devices):
    by_uuid = {_uuid_hex(g.uuid): g for g in gpus if _uuid_hex(g.uuid)}
    visible, notes = [], []
    for k, dev in enumerate(cuda_devices):
        gpu = by_uuid.get(dev.uuid) if dev.uuid else None
        if gpu is None and dev.bus_id:
            on_bus = [g for g in gpus if g.bus_id == dev.bus_id and not g.is_mig]
            gpu = on_bus[0] if len(on_bus) == 1 else None
        if gpu is None:
            notes.append('CUDA device %i (%s, UUID %s, bus %s) is not among the GPUs that NVML/nvidia-smi list'
                         % (k, dev.name, dev.uuid or 'unknown', dev.bus_id or 'unknown'))
        else:
            visible.append(dataclasses.replace(gpu, cuda_index=k))
    return visible, notes


def _map_by_environment(gpus, environ):
    visible_env = environ.get('CUDA_VISIBLE_DEVICES')
    order = (environ.get('CUDA_DEVICE_ORDER') or 'FASTEST_FIRST').strip().upper()
    physical = sorted((g for g in gpus if not g.is_mig), key=lambda g: g.index)
    by_index = {g.index: g for g in physical}
    models = sorted({g.name for g in physical})
    # nvidia-smi's order is the PCI bus order; CUDA's is that too with PCI_BUS_ID, and with
    # FASTEST_FIRST (the default) as long as the GPUs are all alike
    pci_order = order == 'PCI_BUS_ID' or len(models) <= 1
    unknown_order = ('with CUDA_DEVICE_ORDER=%s and different GPU models (%s) the CUDA order of the GPUs is '
                     'unknown; set CUDA_DEVICE_ORDER=PCI_BUS_ID' % (order, ', '.join(models)))
    chosen, notes = [], []
    if visible_env is None:
        if pci_order:
            chosen = physical
        else:
            notes.append(unknown_order)
    elif not visible_env.strip():
        notes.append('CUDA_VISIBLE_DEVICES is empty, so no GPU is visible')
    else:
        for entry in (e.strip() for e in visible_env.split(',')):
            gpu, why = None, None
            if entry.isdigit():
                if not pci_order:
                    why = unknown_order
                elif int(entry) in by_index:
                    gpu = by_index[int(entry)]
                else:
                    why = 'nvidia-smi lists no GPU %s' % entry
            elif entry.upper().startswith(('GPU-', 'MIG-')):
                gpu, why = _by_uuid_prefix(gpus, entry)
            else:
                why = 'it is neither a GPU index nor a GPU-/MIG- UUID'
            if gpu is None:  # CUDA too stops at an invalid entry
                notes.append('CUDA_VISIBLE_DEVICES=%r: cannot map the entry %r (%s); it and those after it are '
                             'not considered' % (visible_env, entry, why))
                break
            if gpu in chosen:
                chosen = []
                notes.append('CUDA_VISIBLE_DEVICES=%r names GPU %s twice, so CUDA sees no GPU' % (visible_env, entry))
                break
            chosen.append(gpu)
    return [dataclasses.replace(g, cuda_index=k) for k, g in enumerate(chosen)], notes


# ---------------------------------------------------------------------------------------------------
# 3. The choice
# ---------------------------------------------------------------------------------------------------
def _mib_text(value):
    return 'unknown' if value is None else '%.0f MiB' % value


def choose_gpu(gpus, threshold_mb=None):
    """The free GPU with the least memory used by other processes (then the larger, then the lower index).

    Args:
        gpus: :class:`GpuInfo` records; those without ``cuda_index`` are not considered.
        threshold_mb: a GPU is free while other processes use less than this (MiB; default
            :data:`FREE_MEMORY_USED_MB`).

    Returns:
        ``(gpu, reason)``: the record or ``None``, and a sentence on why.
    """
    if threshold_mb is None:
        threshold_mb = FREE_MEMORY_USED_MB
    gpus = sorted((g for g in gpus if g.cuda_index is not None), key=lambda g: g.cuda_index)
    known = [g for g in gpus if g.used_mib is not None]
    free = [g for g in known if g.used_mib < threshold_mb]
    busy = [g for g in known if g.used_mib >= threshold_mb]
    unknown = [g for g in gpus if g.used_mib is None]
    others = []
    if busy:
        others.append('busy: %s' % ', '.join('GPU %i (%s used)' % (g.cuda_index, _mib_text(g.used_mib)) for g in busy))
    if unknown:
        others.append('memory use unknown: %s' % ', '.join('GPU %i' % g.cuda_index for g in unknown))
    if free:
        best = min(free, key=lambda g: (g.used_mib, -(g.total_mib or 0), g.cuda_index))
        also = [g for g in free if g is not best]
        if also:
            others.append('also free: %s' % ', '.join('GPU %i (%s used)' % (g.cuda_index, _mib_text(g.used_mib))
                                                      for g in also))
        reason = '%s of %s used by other processes' % (_mib_text(best.used_mib), _mib_text(best.total_mib))
        return best, '; '.join([reason] + others)
    if not gpus:
        return None, 'no GPU is visible'
    return None, '%s; a GPU counts as free while other processes use less than %i MiB of it' % (
        '; '.join(others), threshold_mb)


def _no_cuda_reason():
    visible = os.environ.get('CUDA_VISIBLE_DEVICES')
    if torch.version.cuda is None and getattr(torch.version, 'hip', None) is None:
        return 'this PyTorch (%s) is built without CUDA' % torch.__version__
    if visible is not None and not visible.strip():
        return 'CUDA_VISIBLE_DEVICES is empty, so no GPU is visible'
    return 'PyTorch finds no CUDA device (CUDA_VISIBLE_DEVICES=%s)' % (
        'unset' if visible is None else repr(visible))


def find_free_gpu(n_devices=None, threshold_mb=None):
    """A free GPU of this machine without creating a CUDA context: ``(gpu, reason)``.

    Runs :func:`query_gpus`, :func:`map_cuda_indices` and :func:`choose_gpu`. ``gpu`` is a
    :class:`GpuInfo` (``gpu.cuda_index`` the device index) or ``None``; ``reason`` says why.
    ``n_devices`` limits the choice to CUDA indices below it.
    """
    cuda_devices = _cuda_devices()
    if cuda_devices is not None and not cuda_devices:
        return None, _no_cuda_reason()
    try:
        gpus = query_gpus()
    except GpuQueryError as e:
        return None, ('cannot tell which GPU is free without creating a CUDA context on each (%s); '
                      'choose one with --gpu=INDEX' % (e,))
    visible, notes = map_cuda_indices(gpus, cuda_devices)
    if n_devices is not None:
        visible = [g for g in visible if g.cuda_index < n_devices]
    gpu, reason = choose_gpu(visible, threshold_mb)
    return gpu, '; '.join([reason] + notes)


def _choice_line(gpu, reason):
    if gpu is None:
        return 'No free GPU found, using the CPU: %s' % reason
    return 'Using gpu device %i (%s): %s' % (gpu.cuda_index, gpu.describe(), reason)


def _legacy_records(n_devices, used_mb, free_bytes):
    """:class:`GpuInfo` records for ``get_free_gpu``'s ``used_mb`` / ``free_bytes`` (CUDA index -> value)."""
    if used_mb is not None:
        values = {i: (used, None) for i, used in used_mb.items()}
    else:
        values = {i: ((total - free) / _MIB, total / _MIB) for i, (free, total) in free_bytes.items()}
    return [GpuInfo(index=i, uuid='GPU-%i' % i, bus_id=None, name='GPU %i' % i, used_mib=used, total_mib=total,
                    cuda_index=i) for i, (used, total) in sorted(values.items())
            if n_devices is None or i < n_devices]


def get_free_gpu(n_devices=None, used_mb=None, free_bytes=None, gpus=None, verbose=False):
    """CUDA index of a GPU that no other process is using, or ``None`` (see :func:`find_free_gpu`).

    Args:
        n_devices: consider CUDA indices below this only (0: none).
        used_mb: ``{cuda index: MiB used}`` instead of asking the machine (for tests).
        free_bytes: ``{cuda index: (free bytes, total bytes)}``, the same.
        gpus: :class:`GpuInfo` records with ``cuda_index`` set, the same.
        verbose: print the choice and why.
    """
    if n_devices == 0:
        gpu, reason = None, 'no GPU is visible'
    elif gpus is not None or used_mb is not None or free_bytes is not None:
        if gpus is None:
            gpus = _legacy_records(n_devices, used_mb, free_bytes)
        elif n_devices is not None:
            gpus = [g for g in gpus if g.cuda_index is not None and g.cuda_index < n_devices]
        gpu, reason = choose_gpu(gpus)
    else:
        gpu, reason = find_free_gpu(n_devices)
    if verbose:
        logger.info('%s', _choice_line(gpu, reason))
    return None if gpu is None else gpu.cuda_index


# ---------------------------------------------------------------------------------------------------
# The device
# ---------------------------------------------------------------------------------------------------
def _resolve(gpu):
    """``(torch.device, line to print or None)`` for a ``--gpu`` value."""
    choice = parse_gpu(gpu)
    if choice == 'cpu':
        return torch.device('cpu'), None
    if choice == 'auto':
        found, reason = find_free_gpu()
        device = torch.device('cpu') if found is None else torch.device('cuda', found.cuda_index)
        return device, _choice_line(found, reason)
    if not torch.cuda.is_available():
        raise RuntimeError('--gpu=%r: CUDA is not available in this PyTorch installation (%s); '
                           "use --gpu=false for the CPU or --gpu=auto" % (gpu, torch.__version__))
    n = torch.cuda.device_count()
    if choice >= n:
        raise RuntimeError('--gpu=%r: there are only %i CUDA device(s) (0..%i)' % (gpu, n, n - 1))
    return torch.device('cuda', choice), None


def resolve_device(gpu):
    """The ``torch.device`` for a ``--gpu`` value (see the module docstring).

    Raises:
        ValueError: a malformed value.
        RuntimeError: a GPU index was asked for but CUDA is not available or has fewer devices.
    """
    return _resolve(gpu)[0]


def initGPU(gpu):
    """Select the device for every network built from now on and print the choice (for ``'auto'``: why).

    Returns:
        The selected ``torch.device``.
    """
    global _current
    device, line = _resolve(gpu)
    if device.type == 'cuda':
        torch.cuda.set_device(device)  # creates the context, on this GPU only
        logger.info('%s', line or 'Using gpu device %i: %s' % (device.index, torch.cuda.get_device_name(device)))
    else:
        logger.info('%s', line or 'Using the CPU')
    _current = device
    return _current


def current_device():
    """The device selected by :func:`initGPU` (the CPU until then)."""
    return _current
