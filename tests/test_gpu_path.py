"""The GPU path without a GPU: optimiser states follow ``cnn.to``, batches go to CUDA pinned and
asynchronously (the branch, mocked), batches staged ahead, and the CUDA RNG states in resume states.

The same paths on a real GPU: ``tests/test_cuda.py``."""
import h5py
import numpy as np
import pytest
import torch

from elektronn.net import net_inputs
from elektronn.net.convnet import MixedConvNN
from elektronn.net.layers.conv import _ConvLayer
from elektronn.training.trainer import Trainer

from pipeline_helpers import make_trainer

#: Optimisers whose state holds a tensor per parameter.
STATEFUL_MODES = ('SGD', 'Adam', 'RPROP')


def conv_net(n_dim=2):
    """A small conv net: 2D ``(1, 10, 10)`` images to 2 classes (conv, perceptron), or 3D
    ``(4, 1, 10, 10)`` volumes to 2 classes per voxel (two conv layers)."""
    if n_dim == 2:
        cnn = MixedConvNN((10, 10), input_depth=1)
        cnn.addConvLayer(4, 3, pool_shape=2, activation_func='relu')
        cnn.addPerceptronLayer(6, activation_func='tanh')
        cnn.addPerceptronLayer(2, activation_func='linear')
    else:
        cnn = MixedConvNN((4, 10, 10), input_depth=1)
        cnn.addConvLayer(3, (1, 3, 3), pool_shape=(1, 2, 2), activation_func='relu')
        cnn.addConvLayer(2, (2, 2, 2), pool_shape=1, activation_func='linear', is_last_layer=True)
    cnn.compileOutputFunctions(target='nll')
    cnn.setSGDLR(0.01)
    return cnn


def twin(cnn, n_dim=2):
    """Another network like ``conv_net(n_dim)`` with the weights of ``cnn``."""
    other = conv_net(n_dim)
    other.load_state_dict(cnn.state_dict())
    return other


def batches(cnn, n, batch_size=4, seed=0):
    """``n`` random ``(data, labels)`` batches for ``cnn``."""
    rng = np.random.RandomState(seed)
    shape = (batch_size,) + tuple(cnn.input_shape[1:])
    label_shape = cnn._target.label_shape(batch_size, cnn.output_shape)
    return [(rng.rand(*shape).astype(np.float32), rng.randint(0, 2, label_shape).astype(np.int16))
            for _ in range(n)]


def state_tensors(opt):
    """``(parameter, state tensor)`` pairs of an optimiser."""
    return [(p, t) for value in opt.state.values() if isinstance(value, list) for p, t in zip(opt.params, value)]


def train_every_mode(cnn, data, steps=2):
    for mode in STATEFUL_MODES:
        for x, y in data[:steps]:
            cnn.trainingStep(x, y, mode=mode)


# ------------------------------------------------------------------------------------------------
# Optimiser states follow the parameters
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('n_dim', [2, 3])
def test_to_another_device_moves_the_optimiser_states(n_dim):
    cnn = conv_net(n_dim)
    assert cnn.memory_format == (torch.channels_last if n_dim == 2 else torch.channels_last_3d)
    train_every_mode(cnn, batches(cnn, 2))
    assert set(cnn._optimizers) == set(STATEFUL_MODES)
    cnn.to('meta')  # nn.Module makes new parameters there, as it cannot convert them in place
    assert cnn.device.type == 'meta'
    current = cnn._unique_parameters()
    assert all(a is b for a, b in zip(cnn.params, current)) and len(cnn.params) == len(current)
    for name, opt in cnn._optimizers.items():
        assert all(a is b for a, b in zip(opt.params, current)), name
        pairs = state_tensors(opt)
        assert pairs, name
        for p, t in pairs:
            assert t.device.type == 'meta', name
            assert t.stride() == p.stride(), name
    # Channels-last is the CPU's choice; another kind of device chooses again.
    assert cnn.memory_format == torch.contiguous_format
    assert all(layer.W.is_contiguous() for layer in cnn.layers if isinstance(layer, _ConvLayer))


def test_a_dtype_round_trip_keeps_the_optimiser_states():
    cnn = conv_net()
    reference = twin(cnn)
    data = batches(cnn, 4)
    for net in (cnn, reference):
        train_every_mode(net, data)
    before = {name: [t.detach().clone() for _, t in state_tensors(opt)] for name, opt in cnn._optimizers.items()}
    cnn.double()
    for name, opt in cnn._optimizers.items():
        pairs = state_tensors(opt)
        assert all(t.dtype == torch.float64 and t.stride() == p.stride() for p, t in pairs), name
        for (_, t), old in zip(pairs, before[name]):
            torch.testing.assert_close(t, old.double(), rtol=0, atol=0)
    # The momenta carry on: the next steps are those of the network that stayed float32.
    for mode in ('SGD', 'Adam'):
        x, y = data[2]
        loss = cnn.trainingStep(x, y, mode=mode)[0]
        assert loss == pytest.approx(reference.trainingStep(x, y, mode=mode)[0], rel=1e-5)
    cnn.float()
    assert all(t.dtype == torch.float32 for opt in cnn._optimizers.values() for _, t in state_tensors(opt))
    x, y = data[3]
    assert cnn.trainingStep(x, y)[0] == pytest.approx(reference.trainingStep(x, y)[0], rel=1e-5)
    for a, b in zip(cnn.params, reference.params):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_weights_shared_between_layers_stay_shared_after_to():
    cnn = MixedConvNN(12, batch_size=None)
    encoder = cnn.addPerceptronLayer(5, activation_func='tanh')
    decoder, = cnn.addTiedAutoencoderChain(activation_func='linear', input_noise=None)
    cnn.compileOutputFunctions(target='regression')
    x = np.random.rand(3, 12).astype(np.float32)
    cnn.trainingStep(x, x, mode='SGD')
    cnn.to('meta')
    assert encoder.W.device.type == 'meta'
    assert decoder._shared_W[0] is encoder.W
    assert decoder.weight.device.type == 'meta'
    assert [id(p) for p in cnn.params] == [id(p) for p in cnn._unique_parameters()]


def test_set_memory_format_keeps_the_momenta():
    cnn = conv_net()
    reference = twin(cnn)
    data = batches(cnn, 3)
    for net in (cnn, reference):
        for x, y in data[:2]:
            net.trainingStep(x, y, mode='SGD')
    velocity = [t.clone() for t in cnn._optimizers['SGD'].state['velocity']]
    cnn.setMemoryFormat('contiguous')
    pairs = state_tensors(cnn._optimizers['SGD'])
    for (p, t), old in zip(pairs, velocity):
        assert t.stride() == p.stride()
        torch.testing.assert_close(t, old, rtol=0, atol=0)
    x, y = data[2]
    assert cnn.trainingStep(x, y)[0] == pytest.approx(reference.trainingStep(x, y)[0], rel=1e-6)
    for a, b in zip(cnn.params, reference.params):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_loaded_optimiser_states_are_laid_out_like_the_parameters():
    cnn = conv_net()
    train_every_mode(cnn, batches(cnn, 2))
    # As read back from a resume state: C-ordered arrays, whatever the layout of the parameters.
    saved = {name: {k: [a.copy(order='C') for a in v] if isinstance(v, list) else v for k, v in state.items()}
             for name, state in cnn.optimizer_state().items()}
    other = twin(cnn)
    other.load_optimizer_state(saved)
    for name, opt in other._optimizers.items():
        for (p, t), (_, original) in zip(state_tensors(opt), state_tensors(cnn._optimizers[name])):
            assert t.stride() == p.stride(), name
            torch.testing.assert_close(t, original, rtol=0, atol=0)
    arrays = saved['SGD']['velocity']
    other.load_optimizer_state(saved)
    assert not np.shares_memory(arrays[0], other._optimizers['SGD'].state['velocity'][0].numpy())


# ------------------------------------------------------------------------------------------------
# Batches to the device
# ------------------------------------------------------------------------------------------------
class _FakeCPUTensor:
    """Records how ``_host_to_device`` treats a CPU tensor bound for a GPU."""

    device = torch.device('cpu')

    def __init__(self, calls, pinned=False):
        self.calls, self.pinned = calls, pinned

    def is_pinned(self):
        return self.pinned

    def pin_memory(self):
        self.calls.append('pin_memory')
        return _FakeCPUTensor(self.calls, pinned=True)

    def to(self, *args, **kwargs):
        self.calls.append(('to', args, kwargs))
        return self


def test_the_cuda_branch_pins_and_copies_asynchronously():
    cuda = torch.device('cuda', 0)
    calls = []
    net_inputs._host_to_device(_FakeCPUTensor(calls), cuda, torch.float32)
    assert calls == ['pin_memory', ('to', (cuda,), {'non_blocking': True}),
                     ('to', (), {'device': cuda, 'dtype': torch.float32})]
    calls = []
    net_inputs._host_to_device(_FakeCPUTensor(calls, pinned=True), cuda)
    assert calls == [('to', (cuda,), {'non_blocking': True}), ('to', (), {'device': cuda, 'dtype': None})]


def test_cpu_batches_are_neither_pinned_nor_copied(monkeypatch):
    def refuse(self):
        raise AssertionError('pin_memory on the CPU path')

    monkeypatch.setattr(torch.Tensor, 'pin_memory', refuse)
    t = torch.zeros(3)
    assert net_inputs._host_to_device(t, torch.device('cpu')) is t
    assert net_inputs._host_to_device(t, torch.device('cpu'), torch.float32) is t
    assert net_inputs._host_to_device(t, torch.device('cpu'), torch.float64).dtype == torch.float64
    cnn = conv_net()
    x, y = batches(cnn, 1)[0]
    loss, instance, _ = cnn.trainingStep(x, y)
    assert np.isfinite(loss) and instance.shape == (4,)


def test_a_staged_batch_trains_like_its_arrays():
    cnn = conv_net(3)
    reference = twin(cnn, 3)
    data = batches(cnn, 3)
    staged = [cnn._stage_batch(x, y) for x, y in data]  # all ahead of their steps
    for s, (x, y) in zip(staged, data):
        a = cnn.trainingStep(s, mode='SGD')
        b = reference.trainingStep(x, y, mode='SGD')
        assert a[0] == b[0]
        np.testing.assert_array_equal(a[1], b[1])
    for a, b in zip(cnn.params, reference.params):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(TypeError, match='carries its auxiliary inputs'):
        cnn.trainingStep(cnn._stage_batch(*data[0]), class_weights=np.ones(2, np.float32))
    with pytest.raises(ValueError, match='labels must have shape'):
        cnn._stage_batch(data[0][0], data[0][1][:, :1])  # checked when staged


# ------------------------------------------------------------------------------------------------
# The Trainer: batches staged ahead, CUDA RNG states for --resume
# ------------------------------------------------------------------------------------------------
def blob_trainer(tmp_path, monkeypatch, **values):
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    return make_trainer(tmp_path, **values)


def test_batches_are_staged_ahead_only_on_cuda_with_workers(tmp_path, monkeypatch):
    t = blob_trainer(tmp_path, monkeypatch)
    assert not t._stages_ahead()
    t.workers = object()
    assert not t._stages_ahead()  # the CPU: nothing to overlap
    monkeypatch.setattr(MixedConvNN, 'device', property(lambda self: torch.device('cuda', 0)))
    assert t._stages_ahead()
    t.workers = None
    assert not t._stages_ahead()  # in-process batches stay in step (exact --resume)


def test_staging_ahead_trains_every_batch_once_in_order(tmp_path, monkeypatch):
    t = blob_trainer(tmp_path, monkeypatch, n_steps=12, history_freq=[5])
    monkeypatch.setattr(Trainer, '_stages_ahead', lambda self: True)  # as on CUDA with workers
    fetched, used = [], []
    next_batch, step = t._next_batch, t.cnn.trainingStep

    def fetch():
        fetched.append(next_batch())
        return fetched[-1]

    def record(*args, **kwargs):
        assert len(args) == 1 and isinstance(args[0], net_inputs._StagedBatch) and set(kwargs) == {'mode'}
        np.testing.assert_array_equal(args[0]._batch[0].numpy(), t.last_batch[0])
        used.append(t.last_batch)
        return step(*args, **kwargs)

    t._next_batch, t.cnn.trainingStep = fetch, record
    assert t.run() == 'finished'
    assert len(fetched) == 13 and all(a is b for a, b in zip(used, fetched[:12]))
    assert t._ahead is None


def _mock_cuda(monkeypatch, n_devices, initialized=True, states=None):
    """CUDA as seen by the Trainer's RNG code: ``n_devices`` GPUs; returns the calls made to set states."""
    calls = []
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: n_devices > 0)
    monkeypatch.setattr(torch.cuda, 'is_initialized', lambda: initialized)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: n_devices)
    monkeypatch.setattr(torch.cuda, 'get_rng_state_all', lambda: [s.clone() for s in states])
    monkeypatch.setattr(torch.cuda, 'set_rng_state_all', lambda new: calls.append(('all', [s.clone() for s in new])))
    monkeypatch.setattr(torch.cuda, 'set_rng_state',
                        lambda new, device='cuda': calls.append((device, new.clone())))
    return calls


def test_resume_states_hold_and_restore_the_cuda_rng_states(tmp_path, monkeypatch, capsys):
    t = blob_trainer(tmp_path, monkeypatch, n_steps=3, history_freq=[2])
    t.run()
    params = t._file('-LAST.param')
    states = [torch.arange(16, dtype=torch.uint8), torch.arange(16, 32, dtype=torch.uint8)]
    with monkeypatch.context() as m:
        _mock_cuda(m, 2, initialized=False, states=states)
        t.saveState(params)
    with h5py.File(t._file('-LAST.state.h5'), 'r') as f:
        assert 'cuda_rng' not in f  # CUDA unused: reading its states would initialise it
    with monkeypatch.context() as m:
        _mock_cuda(m, 2, states=states)
        t.saveState(params)
    with h5py.File(t._file('-LAST.state.h5'), 'r') as f:
        np.testing.assert_array_equal(f['cuda_rng'], np.stack([s.numpy() for s in states]))

    for n_devices, expected in ((2, [('all', states)]), (1, [(0, states[0])]), (0, [])):
        with monkeypatch.context() as m:
            calls = _mock_cuda(m, n_devices, states=states)
            capsys.readouterr()
            t.resume()
        assert [c[0] for c in calls] == [e[0] for e in expected]
        for (_, got), (_, want) in zip(calls, expected):
            for a, b in zip(got if isinstance(got, list) else [got], want if isinstance(want, list) else [want]):
                torch.testing.assert_close(a, b, rtol=0, atol=0)
        note = 'resume state holds the CUDA random generator states of 2 GPU(s), this machine has %i' % n_devices
        assert (note in capsys.readouterr().out) == (n_devices != 2)


def test_resume_states_without_cuda_rng_states_still_load(tmp_path, monkeypatch):
    t = blob_trainer(tmp_path, monkeypatch, n_steps=3, history_freq=[2])
    t.run()
    with h5py.File(t._file('-LAST.state.h5'), 'a') as f:
        if 'cuda_rng' in f:
            del f['cuda_rng']
    with monkeypatch.context() as m:
        calls = _mock_cuda(m, 1, states=[torch.zeros(16, dtype=torch.uint8)])
        t.resume()
    assert calls == [] and t.state.step == 3
