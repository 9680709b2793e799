"""--gpu parsing and device choice (everything here runs without a GPU)."""
import pytest
import torch

from elektronn.net import device


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


def test_free_gpu_choice_from_used_memory():
    assert device.get_free_gpu(n_devices=0) is None
    assert device.get_free_gpu(n_devices=3, used_mb={0: 5000, 1: 10, 2: 200}) == 1
    assert device.get_free_gpu(n_devices=2, used_mb={0: 5000, 1: 8000}) is None
    gib = 2 ** 30
    assert device.get_free_gpu(n_devices=2, free_bytes={0: (10 * gib, 80 * gib), 1: (80 * gib - 2 ** 20, 80 * gib)}) == 1


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
