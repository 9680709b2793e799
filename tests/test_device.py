"""--gpu parsing and device choice (everything here but the ``cuda`` test runs without a GPU).

The GPU tests fake what NVML / nvidia-smi and PyTorch's CUDA device properties say; the fake
``torch.cuda.mem_get_info`` raises, since asking it creates a CUDA context on every GPU.
"""
import dataclasses
import json
import os
import subprocess
import sys
import types

import pytest
import torch

from elektronn.net import device
from elektronn.net.device import GpuInfo

MIB = 2 ** 20
A100 = 'NVIDIA A100-SXM4-80GB'
H200 = 'NVIDIA H200'


def uuid(n):
    return 'GPU-%08x-1111-2222-3333-%012x' % (n, n)


def gpu(index, bus, name=H200, used=5, total=143771):
    return GpuInfo(index=index, uuid=uuid(index), bus_id='0000:%02x:00.0' % bus, name=name,
                   used_mib=used, total_mib=total)


#: Two H200 in PCI bus order after an A100: nvidia-smi counts A100, H200, H200; CUDA (fastest
#: first) H200, H200, A100.
MIXED = [gpu(0, 0x01, A100, used=80012, total=81920), gpu(1, 0x41, used=12), gpu(2, 0x81, used=90000)]
#: Four alike GPUs, all free.
ALIKE = [gpu(i, 0x10 * (i + 1)) for i in range(4)]


def props(g, with_uuid=True, with_bus=True):
    """What ``torch.cuda.get_device_properties`` says about a GPU (torch prints the UUID without ``GPU-``)."""
    p = types.SimpleNamespace(name=g.name, total_memory=int(g.total_mib * MIB))
    if with_uuid:
        p.uuid = g.uuid[len('GPU-'):]
    if with_bus:
        domain, bus, rest = g.bus_id.split(':')
        p.pci_domain_id, p.pci_bus_id, p.pci_device_id = int(domain, 16), int(bus, 16), int(rest.split('.')[0], 16)
    return p


@pytest.fixture
def machine(monkeypatch):
    """``machine(gpus, cuda_order)``: NVML lists ``gpus``; PyTorch sees the GPUs ``cuda_order`` names
    (nvidia-smi indices, or property objects) as CUDA devices 0, 1, ... Returns the calls to set_device."""
    set_device_calls = []

    def forbidden(*args, **kwargs):
        raise AssertionError('torch.cuda.mem_get_info creates a CUDA context; it must not be used to choose a GPU')

    monkeypatch.setattr(torch.cuda, 'mem_get_info', forbidden)
    monkeypatch.setattr(torch.cuda, 'set_device', set_device_calls.append)
    if torch.version.cuda is None:
        monkeypatch.setattr(torch.version, 'cuda', '12.8')
    monkeypatch.delenv('CUDA_VISIBLE_DEVICES', raising=False)
    monkeypatch.delenv('CUDA_DEVICE_ORDER', raising=False)

    def setup(gpus, cuda_order=()):
        by_index = {g.index: g for g in gpus}
        cuda = [props(by_index[c]) if isinstance(c, int) else c for c in cuda_order]
        monkeypatch.setattr(device, '_gpus_from_nvml', lambda: list(gpus))
        monkeypatch.setattr(torch.cuda, 'is_available', lambda: bool(cuda))
        monkeypatch.setattr(torch.cuda, 'device_count', lambda: len(cuda))
        monkeypatch.setattr(torch.cuda, 'get_device_properties', lambda i: cuda[i])
        return set_device_calls

    yield setup
    device.initGPU(False)


# ---------------------------------------------------------------------------------------------------
# --gpu values
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('value, expected', [
    (False, 'cpu'), (None, 'cpu'), ('false', 'cpu'), ('False', 'cpu'), ('cpu', 'cpu'), ('none', 'cpu'),
    ('auto', 'auto'), ('Auto', 'auto'), (True, 'auto'), (0, 0), (3, 3), ('1', 1), ('cuda:2', 2), ('gpu0', 0),
])
def test_parse_gpu(value, expected):
    assert device.parse_gpu(value) == expected


@pytest.mark.parametrize('value', ['fast', -1, '1.5', 2.0])
def test_parse_gpu_rejects_with_the_value(value):
    with pytest.raises(ValueError, match=repr(value).replace('.', r'\.')):
        device.parse_gpu(value)


def test_resolve_device_on_this_machine(capsys):
    assert device.resolve_device(False) == torch.device('cpu')
    if not torch.cuda.is_available():
        assert device.resolve_device('auto') == torch.device('cpu')
        with pytest.raises(RuntimeError, match='CUDA is not available'):
            device.resolve_device(0)
        assert device.initGPU('auto') == torch.device('cpu')
        assert 'No free GPU found, using the CPU' in capsys.readouterr().out
    device.initGPU(False)
    assert device.current_device() == torch.device('cpu')


# ---------------------------------------------------------------------------------------------------
# The choice among GPUs with known CUDA indices
# ---------------------------------------------------------------------------------------------------
def test_free_gpu_choice_from_used_memory(capsys):
    assert device.get_free_gpu(n_devices=0) is None
    assert device.get_free_gpu(n_devices=3, used_mb={0: 5000, 1: 10, 2: 200}) == 1
    assert device.get_free_gpu(n_devices=2, used_mb={0: 5000, 1: 8000}) is None
    gib = 2 ** 30
    assert device.get_free_gpu(n_devices=2, free_bytes={0: (10 * gib, 80 * gib), 1: (80 * gib - 2 ** 20, 80 * gib)}) == 1
    assert device.get_free_gpu(n_devices=1, used_mb={0: 5000, 1: 10}, verbose=True) is None
    assert capsys.readouterr().out == ('No free GPU found, using the CPU: busy: GPU 0 (5000 MiB used); '
                                       'a GPU counts as free while other processes use less than 300 MiB of it\n')


def test_choose_gpu_least_used_and_reasons():
    gpus = [dataclasses.replace(g, cuda_index=k) for k, g in enumerate(MIXED)]
    chosen, reason = device.choose_gpu(gpus)
    assert chosen.cuda_index == 1 and reason == ('12 MiB of 143771 MiB used by other processes; '
                                                 'busy: GPU 0 (80012 MiB used), GPU 2 (90000 MiB used)')
    unknown = dataclasses.replace(ALIKE[0], cuda_index=3, used_mib=None)
    chosen, reason = device.choose_gpu([gpus[0], gpus[2], unknown])
    assert chosen is None
    assert reason.startswith('busy: GPU 0 (80012 MiB used), GPU 2 (90000 MiB used); memory use unknown: GPU 3; ')
    assert device.choose_gpu([]) == (None, 'no GPU is visible')
    assert device.choose_gpu(MIXED) == (None, 'no GPU is visible')  # no CUDA index: not visible


# ---------------------------------------------------------------------------------------------------
# Listing the machine's GPUs
# ---------------------------------------------------------------------------------------------------
def test_gpus_from_nvidia_smi(monkeypatch):
    def no_nvml():
        raise device.GpuQueryError('NVML: libnvidia-ml.so.1 not found')

    monkeypatch.setattr(device, '_gpus_from_nvml', no_nvml)
    calls = []

    def smi(args):
        calls.append(args)
        return ('0, GPU-aaaa, 00000000:01:00.0, 80012, 81920, NVIDIA A100-SXM4-80GB\n'
                '1, GPU-bbbb, 00000000:41:00.0, 12, 143771, NVIDIA H200\n'
                '2, GPU-cccc, 00000000:C1:00.0, [N/A], [N/A], NVIDIA H100, with a comma\n')

    monkeypatch.setattr(device, '_run_nvidia_smi', smi)
    gpus = device.query_gpus()
    assert calls == [['--query-gpu=index,uuid,pci.bus_id,memory.used,memory.total,name', '--format=csv,noheader,nounits']]
    assert gpus == [GpuInfo(0, 'GPU-aaaa', '0000:01:00.0', A100, 80012.0, 81920.0),
                    GpuInfo(1, 'GPU-bbbb', '0000:41:00.0', H200, 12.0, 143771.0),
                    GpuInfo(2, 'GPU-cccc', '0000:c1:00.0', 'NVIDIA H100, with a comma', None, None)]
    monkeypatch.setattr(device, '_run_nvidia_smi', lambda args: 'garbage\n')
    with pytest.raises(device.GpuQueryError, match="'garbage'"):
        device.query_gpus()

    def no_smi(args):
        raise device.GpuQueryError('nvidia-smi: not found on the PATH')

    monkeypatch.setattr(device, '_run_nvidia_smi', no_smi)
    with pytest.raises(device.GpuQueryError, match='NVML: libnvidia-ml.so.1 not found; nvidia-smi: not found'):
        device.query_gpus()


def fake_pynvml():
    """A ``pynvml`` module for two GPUs: 0 free but for this process's 500 MiB; 1 in MIG mode with one instance."""
    nvml = types.ModuleType('pynvml')

    class NVMLError(Exception):
        pass

    state = {'init': 0}
    memory = {('gpu', 0): (500 * MIB, 80 * 1024 * MIB), ('gpu', 1): (30000 * MIB, 80 * 1024 * MIB),
              ('mig', 1, 0): (3 * MIB, 10 * 1024 * MIB)}

    def memory_info(handle, version=None):
        assert version == nvml.nvmlMemory_v2
        used, total = memory[handle]
        return types.SimpleNamespace(used=used, total=total, reserved=400 * MIB)

    def processes(handle):
        if handle == ('gpu', 0):
            return [types.SimpleNamespace(pid=os.getpid(), usedGpuMemory=500 * MIB),
                    types.SimpleNamespace(pid=-1, usedGpuMemory=None)]
        return []

    def mig_mode(handle):
        if handle == ('gpu', 1):
            return 1, 1
        raise NVMLError('Not Supported')

    def mig_handle(handle, j):
        if j == 0:
            return ('mig', handle[1], 0)
        raise NVMLError('Not Found')

    nvml.NVMLError = NVMLError
    nvml.nvmlMemory_v2 = 'v2'
    nvml.NVML_DEVICE_MIG_ENABLE = 1
    nvml.nvmlInit = lambda: state.__setitem__('init', state['init'] + 1)
    nvml.nvmlShutdown = lambda: state.__setitem__('init', state['init'] - 1)
    nvml.nvmlDeviceGetCount = lambda: 2
    nvml.nvmlDeviceGetHandleByIndex = lambda i: ('gpu', i)
    nvml.nvmlDeviceGetPciInfo = lambda h: types.SimpleNamespace(domain=0, bus=[0x17, 0xca][h[1]], device=0)
    nvml.nvmlDeviceGetUUID = lambda h: (uuid(h[1]).encode() if h[0] == 'gpu' else 'MIG-%08x-aaaa-bbbb-cccc-dddddddddddd' % h[1])
    nvml.nvmlDeviceGetName = lambda h: 'NVIDIA A100' if h[0] == 'gpu' else 'NVIDIA A100 MIG 1g.10gb'
    nvml.nvmlDeviceGetMemoryInfo = memory_info
    nvml.nvmlDeviceGetComputeRunningProcesses = processes
    nvml.nvmlDeviceGetMigMode = mig_mode
    nvml.nvmlDeviceGetMaxMigDeviceCount = lambda h: 2
    nvml.nvmlDeviceGetMigDeviceHandleByIndex = mig_handle
    return nvml, state


def test_gpus_from_nvml(monkeypatch):
    nvml, state = fake_pynvml()
    monkeypatch.setitem(sys.modules, 'pynvml', nvml)
    monkeypatch.setattr(device, '_run_nvidia_smi', lambda args: pytest.fail('nvidia-smi asked although NVML works'))
    gpus = device.query_gpus()
    assert state['init'] == 0  # shut down again
    assert gpus == [GpuInfo(0, uuid(0), '0000:17:00.0', 'NVIDIA A100', 0.0, 81920.0),
                    GpuInfo(1, uuid(1), '0000:ca:00.0', 'NVIDIA A100', 30000.0, 81920.0),
                    GpuInfo(1, 'MIG-00000001-aaaa-bbbb-cccc-dddddddddddd', '0000:ca:00.0', 'NVIDIA A100 MIG 1g.10gb',
                            3.0, 10240.0)]
    assert gpus[2].is_mig and not gpus[1].is_mig

    def failing_init():
        raise nvml.NVMLError('Driver Not Loaded')

    nvml.nvmlInit = failing_init
    monkeypatch.setattr(device, '_run_nvidia_smi', lambda args: '')
    assert device.query_gpus() == []  # nvidia-smi answered: no GPU
    with pytest.raises(device.GpuQueryError, match='NVML: Driver Not Loaded'):
        device._gpus_from_nvml()


# ---------------------------------------------------------------------------------------------------
# nvidia-smi's GPUs -> CUDA indices
# ---------------------------------------------------------------------------------------------------
def cuda_view(visible):
    """``{cuda index: nvidia-smi index}``."""
    return {g.cuda_index: g.index for g in visible}


def test_map_without_cuda_visible_devices():
    visible, notes = device.map_cuda_indices(ALIKE, None, environ={})
    assert cuda_view(visible) == {0: 0, 1: 1, 2: 2, 3: 3} and notes == []
    # different models: fastest first is not nvidia-smi's order, and the environment cannot tell
    visible, notes = device.map_cuda_indices(MIXED, None, environ={})
    assert visible == [] and 'set CUDA_DEVICE_ORDER=PCI_BUS_ID' in notes[0]
    visible, notes = device.map_cuda_indices(MIXED, None, environ={'CUDA_DEVICE_ORDER': 'PCI_BUS_ID'})
    assert cuda_view(visible) == {0: 0, 1: 1, 2: 2} and notes == []


def test_map_cuda_visible_devices_indices():
    visible, notes = device.map_cuda_indices(ALIKE, None, environ={'CUDA_VISIBLE_DEVICES': '2,0'})
    assert cuda_view(visible) == {0: 2, 1: 0} and notes == []
    assert visible[0].uuid == uuid(2)
    env = {'CUDA_VISIBLE_DEVICES': '2,0', 'CUDA_DEVICE_ORDER': 'PCI_BUS_ID'}
    assert cuda_view(device.map_cuda_indices(MIXED, None, environ=env)[0]) == {0: 2, 1: 0}
    visible, notes = device.map_cuda_indices(MIXED, None, environ={'CUDA_VISIBLE_DEVICES': '2,0'})
    assert visible == [] and "cannot map the entry '2'" in notes[0] and 'CUDA_DEVICE_ORDER=PCI_BUS_ID' in notes[0]


def test_map_cuda_visible_devices_uuids():
    env = {'CUDA_VISIBLE_DEVICES': '%s,%s' % (uuid(3), uuid(1))}
    visible, notes = device.map_cuda_indices(ALIKE, None, environ=env)
    assert cuda_view(visible) == {0: 3, 1: 1} and notes == []
    # UUIDs need no order, even with different models; prefixes are enough when unique
    env = {'CUDA_VISIBLE_DEVICES': '%s,%s' % (uuid(2)[:12], uuid(0))}
    assert cuda_view(device.map_cuda_indices(MIXED, None, environ=env)[0]) == {0: 2, 1: 0}
    visible, notes = device.map_cuda_indices(MIXED, None, environ={'CUDA_VISIBLE_DEVICES': 'GPU-0000,GPU-1'})
    assert visible == [] and "the entry 'GPU-0000' (it is a prefix of 3 GPUs' UUIDs)" in notes[0]


def test_map_cuda_visible_devices_empty_or_malformed():
    assert device.map_cuda_indices(ALIKE, None, environ={'CUDA_VISIBLE_DEVICES': ''}) == (
        [], ['CUDA_VISIBLE_DEVICES is empty, so no GPU is visible'])
    visible, notes = device.map_cuda_indices(ALIKE, None, environ={'CUDA_VISIBLE_DEVICES': '1,fast,0'})
    assert cuda_view(visible) == {0: 1}
    assert notes == ["CUDA_VISIBLE_DEVICES='1,fast,0': cannot map the entry 'fast' (it is neither a GPU index "
                     "nor a GPU-/MIG- UUID); it and those after it are not considered"]
    visible, notes = device.map_cuda_indices(ALIKE, None, environ={'CUDA_VISIBLE_DEVICES': '1,7'})
    assert cuda_view(visible) == {0: 1} and "the entry '7' (nvidia-smi lists no GPU 7)" in notes[0]
    visible, notes = device.map_cuda_indices(ALIKE, None, environ={'CUDA_VISIBLE_DEVICES': '1,0,1'})
    assert visible == [] and 'twice' in notes[0]


def test_map_by_cuda_properties_fastest_first_and_pci_order():
    # fastest first (CUDA's default): the H200s come first, whatever CUDA_VISIBLE_DEVICES says
    fastest_first = [props(MIXED[1]), props(MIXED[2]), props(MIXED[0])]
    visible, notes = device.map_cuda_indices(MIXED, device._cuda_devices_from(fastest_first), environ={})
    assert cuda_view(visible) == {0: 1, 1: 2, 2: 0} and notes == []
    # CUDA_DEVICE_ORDER=PCI_BUS_ID: as nvidia-smi
    pci_order = [props(g) for g in MIXED]
    env = {'CUDA_DEVICE_ORDER': 'PCI_BUS_ID'}
    assert cuda_view(device.map_cuda_indices(MIXED, device._cuda_devices_from(pci_order), environ=env)[0]) == {
        0: 0, 1: 1, 2: 2}
    # by PCI bus id when the UUID is unknown; by UUID when the bus id is
    mixed_props = [props(MIXED[2], with_uuid=False), props(MIXED[0], with_bus=False)]
    assert cuda_view(device.map_cuda_indices(MIXED, device._cuda_devices_from(mixed_props))[0]) == {0: 2, 1: 0}
    # a device NVML does not list
    stranger = props(gpu(9, 0x99))
    visible, notes = device.map_cuda_indices(MIXED, device._cuda_devices_from([props(MIXED[1]), stranger]))
    assert cuda_view(visible) == {0: 1}
    assert notes == ['CUDA device 1 (NVIDIA H200, UUID %s, bus 0000:99:00.0) is not among the GPUs that '
                     'NVML/nvidia-smi list' % uuid(9)[4:].replace('-', '')]


def test_map_mig_instance_by_uuid():
    mig = GpuInfo(1, 'MIG-0123abcd-aaaa-bbbb-cccc-dddddddddddd', MIXED[1].bus_id, 'NVIDIA H200 MIG 1g.18gb', 3, 16384)
    gpus = MIXED + [mig]
    cuda = device._cuda_devices_from([types.SimpleNamespace(name=mig.name, uuid=mig.uuid[4:], pci_domain_id=0,
                                                            pci_bus_id=0x41, pci_device_id=0)])
    assert device.map_cuda_indices(gpus, cuda)[0] == [dataclasses.replace(mig, cuda_index=0)]
    env = {'CUDA_VISIBLE_DEVICES': 'MIG-0123abcd'}
    assert device.map_cuda_indices(gpus, None, environ=env)[0] == [dataclasses.replace(mig, cuda_index=0)]


# ---------------------------------------------------------------------------------------------------
# --gpu=auto from end to end, with a faked machine
# ---------------------------------------------------------------------------------------------------
def test_auto_picks_the_free_gpu_in_cuda_numbering(machine, capsys):
    set_device_calls = machine(MIXED, cuda_order=[1, 2, 0])  # fastest first
    assert device.initGPU('auto') == torch.device('cuda', 0)
    assert set_device_calls == [torch.device('cuda', 0)]
    assert device.current_device() == torch.device('cuda', 0)
    assert capsys.readouterr().out == (
        'Using gpu device 0 (NVIDIA H200, %s, bus 0000:41:00.0): 12 MiB of 143771 MiB used by other processes; '
        'busy: GPU 1 (90000 MiB used), GPU 2 (80012 MiB used)\n' % uuid(1))
    machine(MIXED, cuda_order=[0, 1, 2])  # CUDA_DEVICE_ORDER=PCI_BUS_ID
    assert device.get_free_gpu() == 1
    assert device.get_free_gpu(n_devices=1) is None


def test_auto_honours_cuda_visible_devices(machine, monkeypatch, capsys):
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '%s,%s' % (uuid(2), uuid(0)))
    machine(MIXED, cuda_order=[2, 0])
    assert device.resolve_device('auto') == torch.device('cpu')
    assert device.initGPU('auto') == torch.device('cpu')
    out = capsys.readouterr().out
    assert out.startswith('No free GPU found, using the CPU: busy: GPU 0 (90000 MiB used), GPU 1 (80012 MiB used); ')
    assert 'less than 300 MiB' in out
    busy_h200 = dataclasses.replace(MIXED[1], used_mib=4000)
    machine([MIXED[0], busy_h200, MIXED[2]], cuda_order=[1])
    assert device.get_free_gpu(verbose=True) is None
    assert 'busy: GPU 0 (4000 MiB used)' in capsys.readouterr().out


def test_auto_without_cuda(machine, monkeypatch, capsys):
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '')
    machine(ALIKE, cuda_order=[])
    assert device.initGPU('auto') == torch.device('cpu')
    assert capsys.readouterr().out == ('No free GPU found, using the CPU: '
                                       'CUDA_VISIBLE_DEVICES is empty, so no GPU is visible\n')
    monkeypatch.setattr(torch.version, 'cuda', None)
    assert device.get_free_gpu(verbose=True) is None
    assert 'is built without CUDA' in capsys.readouterr().out


def test_auto_without_nvml_or_nvidia_smi_uses_the_cpu(machine, monkeypatch, capsys):
    machine(ALIKE, cuda_order=[0, 1])

    def unavailable(*args):
        raise device.GpuQueryError('unavailable')

    monkeypatch.setattr(device, '_gpus_from_nvml', unavailable)
    monkeypatch.setattr(device, '_run_nvidia_smi', unavailable)
    assert device.initGPU('auto') == torch.device('cpu')
    out = capsys.readouterr().out
    assert out.startswith('No free GPU found, using the CPU: cannot tell which GPU is free without creating a '
                          'CUDA context on each (unavailable; unavailable)')


def test_auto_with_unreadable_cuda_properties_reads_the_environment(machine, monkeypatch):
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '1,2')
    machine(ALIKE, cuda_order=[types.SimpleNamespace(name=H200), types.SimpleNamespace(name=H200)])
    assert device.get_free_gpu() == 0  # all free and alike: the first, nvidia-smi's GPU 1
    monkeypatch.setattr(device, '_gpus_from_nvml', lambda: [dataclasses.replace(ALIKE[1], used_mib=1000)] + ALIKE[2:])
    assert device.get_free_gpu() == 1


# ---------------------------------------------------------------------------------------------------
# A real GPU
# ---------------------------------------------------------------------------------------------------
_CONTEXT_CHECK = r'''
import ctypes, json, torch
from elektronn.net import device
chosen = device.initGPU('auto')
cuda = ctypes.CDLL('libcuda.so.1')
assert cuda.cuInit(0) == 0
active = []
for i in range(torch.cuda.device_count()):
    dev, flags, on = ctypes.c_int(), ctypes.c_uint(), ctypes.c_int()
    assert cuda.cuDeviceGet(ctypes.byref(dev), i) == 0
    assert cuda.cuDevicePrimaryCtxGetState(dev, ctypes.byref(flags), ctypes.byref(on)) == 0
    active.append(bool(on.value))
print(json.dumps({'chosen': chosen.index if chosen.type == 'cuda' else None, 'active': active}))
'''


@pytest.mark.cuda
def test_auto_creates_no_context_on_the_other_gpus():
    """In a fresh process: ``initGPU('auto')`` chooses, and no GPU but the chosen one has a context."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, '-c', _CONTEXT_CHECK], capture_output=True, text=True, timeout=300, cwd=root)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert lines[0].startswith('Using gpu device %s (' % result['chosen'] if result['chosen'] is not None
                               else 'No free GPU found, using the CPU: '), lines[0]
    others = [i for i, on in enumerate(result['active']) if on and i != result['chosen']]
    assert others == [], 'initGPU(auto) created CUDA contexts on GPUs %s: %s' % (others, r.stdout)
