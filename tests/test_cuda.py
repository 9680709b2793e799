"""The GPU path on a real GPU: CPU and CUDA agree on training steps and dense prediction, networks
move between the devices mid-training, batches are staged ahead, and resumed runs continue their
dropout masks. Every test is marked ``cuda`` (skipped without a GPU, see ``conftest.py``)."""
import os

import h5py
import numpy as np
import pytest
import torch

from elektronn.net import device as device_module, net_inputs
from elektronn.net.layers.conv import _ConvLayer

from pipeline_helpers import make_trainer, resumed_trainer
from test_gpu_path import STATEFUL_MODES, batches, conv_net, state_tensors, train_every_mode, twin
from test_prediction import CASES_2D, CASES_3D, build, weights_of

pytestmark = pytest.mark.cuda

CUDA = torch.device('cuda', 0)


@pytest.fixture(autouse=True)
def _exact_float32(monkeypatch):
    """Full float32 precision on the GPU (TF32 would differ from the CPU by about 1e-3)."""
    monkeypatch.setattr(torch.backends.cudnn, 'allow_tf32', False)
    monkeypatch.setattr(torch.backends.cuda.matmul, 'allow_tf32', False)


@pytest.fixture
def deterministic(monkeypatch):
    """cuDNN algorithms that give the same result every time (for exact comparisons of runs)."""
    monkeypatch.setattr(torch.backends.cudnn, 'deterministic', True)
    monkeypatch.setattr(torch.backends.cudnn, 'benchmark', False)


@pytest.fixture
def gpu_default(tmp_path, monkeypatch):
    """Networks built during the test go to the GPU (as after ``elektronn-train --gpu=0``)."""
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    device_module.initGPU(0)
    yield CUDA
    device_module.initGPU(False)


def close_params(a, b, rtol=1e-4, atol=1e-6):
    for p, q in zip(a.params, b.params):
        torch.testing.assert_close(p.detach().cpu(), q.detach().cpu(), rtol=rtol, atol=atol)


@pytest.mark.parametrize('n_dim', [2, 3])
def test_training_steps_match_the_cpu(n_dim):
    cpu = conv_net(n_dim)
    gpu = twin(cpu, n_dim).to(CUDA)
    assert gpu.device == CUDA and gpu.memory_format == torch.contiguous_format
    data = batches(cpu, 5)
    for x, y in data[:4]:
        loss_cpu, instance_cpu, _ = cpu.trainingStep(x, y, mode='SGD')
        loss_gpu, instance_gpu, _ = gpu.trainingStep(x, y, mode='SGD')
        assert loss_gpu == pytest.approx(loss_cpu, rel=1e-4)
        np.testing.assert_allclose(instance_gpu, instance_cpu, rtol=1e-4, atol=1e-6)
    close_params(gpu, cpu)
    x, y = data[4]
    np.testing.assert_allclose(gpu.class_probabilities(x), cpu.class_probabilities(x), rtol=1e-4, atol=1e-6)
    assert gpu.get_error(x, y)[0] == pytest.approx(cpu.get_error(x, y)[0], rel=1e-4)


@pytest.mark.parametrize('case', [('2d', CASES_2D['two_pools']), ('3d', CASES_3D['anisotropic'])], ids=['2d', '3d'])
def test_predict_dense_with_mfp_equals_the_stitched_prediction(case):
    _, (filters, pools, maps, patch, shape) = case
    raw = np.random.RandomState(0).rand(*shape).astype(np.float32)
    acts = ['relu', 'tanh', 'abs'][:len(filters)]
    stitched_net = build(patch, filters, pools, maps, acts=acts)
    vol_zxy = shape[1:] if len(shape) == 3 else (shape[3], shape[1], shape[2])
    mfp_net = build(vol_zxy, filters, pools, maps, mfp=True, acts=acts, weights=weights_of(stitched_net))
    on_cpu = stitched_net.predictDense(raw, show_progress=False)
    stitched_net.to(CUDA)
    mfp_net.to(CUDA)
    stitched = stitched_net.predictDense(raw, show_progress=False)
    dense = mfp_net.predictDense(raw, show_progress=False)
    assert dense.shape == stitched.shape == on_cpu.shape
    np.testing.assert_allclose(stitched, on_cpu, atol=1e-5)
    np.testing.assert_allclose(dense, stitched, atol=1e-5)


def test_to_cuda_after_cpu_steps_keeps_the_optimiser_states_and_training_going():
    cnn = conv_net()
    reference = twin(cnn)  # stays on the CPU
    data = batches(cnn, 6)
    for net in (cnn, reference):
        train_every_mode(net, data)
    before = {name: [t.clone() for _, t in state_tensors(opt)] for name, opt in cnn._optimizers.items()}
    cnn.to(CUDA)
    assert cnn.memory_format == torch.contiguous_format
    assert all(layer.W.is_contiguous() for layer in cnn.layers if isinstance(layer, _ConvLayer))
    for name, opt in cnn._optimizers.items():
        assert all(a is b for a, b in zip(opt.params, cnn.params)), name
        pairs = state_tensors(opt)
        for (p, t), old in zip(pairs, before[name]):
            assert t.device == CUDA and t.stride() == p.stride(), name
            torch.testing.assert_close(t.cpu(), old, rtol=0, atol=0, check_stride=False)
    for mode in STATEFUL_MODES:
        for x, y in data[2:4]:
            loss = cnn.trainingStep(x, y, mode=mode)[0]
            expected = reference.trainingStep(x, y, mode=mode)[0]
            assert np.isfinite(loss)
            if mode != 'RPROP':  # RPROP's sign tests may flip on rounding; it must just run
                assert loss == pytest.approx(expected, rel=1e-4 if mode == 'SGD' else 1e-3)
    on_gpu = {name: [t.clone() for _, t in state_tensors(opt)] for name, opt in cnn._optimizers.items()}
    cnn.to('cpu')
    assert cnn.memory_format == torch.channels_last
    for name, opt in cnn._optimizers.items():
        for (p, t), old in zip(state_tensors(opt), on_gpu[name]):
            assert t.device.type == 'cpu' and t.stride() == p.stride(), name
            torch.testing.assert_close(t, old.cpu(), rtol=0, atol=0, check_stride=False)
    x, y = data[4]
    assert np.isfinite(cnn.trainingStep(x, y, mode='SGD')[0])


def test_batches_reach_the_gpu_through_pinned_memory():
    array = np.random.rand(3, 4).astype(np.float32)
    host = torch.from_numpy(array)
    on_gpu = net_inputs._host_to_device(host, CUDA, torch.float64)
    assert on_gpu.device == CUDA and on_gpu.dtype == torch.float64 and not host.is_pinned()
    np.testing.assert_array_equal(on_gpu.cpu().numpy(), array.astype(np.float64))
    pinned = host.pin_memory()
    assert net_inputs._host_to_device(pinned, CUDA).device == CUDA


def test_staged_batches_train_like_their_arrays(deterministic):
    cnn = conv_net(3).to(CUDA)
    reference = twin(cnn, 3).to(CUDA)
    data = batches(cnn, 4)
    ahead = cnn._stage_batch(*data[0])
    for k, (x, y) in enumerate(data):
        current, ahead = ahead, (cnn._stage_batch(*data[k + 1]) if k + 1 < len(data) else None)
        x_staged = current._batch[0]
        assert x_staged.device == CUDA
        loss, instance, _ = cnn.trainingStep(current, mode='SGD')
        expected, expected_instance, _ = reference.trainingStep(x, y, mode='SGD')
        assert loss == pytest.approx(expected, rel=1e-6)
        np.testing.assert_allclose(instance, expected_instance, rtol=1e-6, atol=1e-7)
    close_params(cnn, reference, rtol=1e-6, atol=1e-7)


def test_the_trainer_stages_batches_ahead_with_workers(tmp_path, gpu_default):
    t = make_trainer(tmp_path, n_steps=40, history_freq=[20], background_processes=2)
    assert t.cnn.device == CUDA
    kinds = []
    step = t.cnn.trainingStep

    def record(*args, **kwargs):
        kinds.append(type(args[0]))
        return step(*args, **kwargs)

    t.cnn.trainingStep = record
    assert t.run() == 'finished'
    assert kinds == [net_inputs._StagedBatch] * 40
    assert t._ahead is None and np.isfinite(t.state.nll)
    assert all(torch.isfinite(p).all() for p in t.cnn.params)
    with h5py.File(t._file('-LAST.state.h5'), 'r') as f:
        assert f['cuda_rng'].shape[0] == torch.cuda.device_count()


def test_resume_continues_the_dropout_masks_on_the_gpu(tmp_path, gpu_default, deterministic):
    values = dict(n_steps=60, dropout_rates=0.5, background_processes=False)
    np.random.seed(1234)
    torch.manual_seed(1234)
    whole = make_trainer(tmp_path / 'a', **values)
    assert whole.cnn.getDropoutRates() and whole.cnn.device == CUDA
    whole.run()
    np.random.seed(1234)
    torch.manual_seed(1234)  # the same initial weights (and CUDA generator) as `whole`
    first = make_trainer(tmp_path / 'b', **dict(values, n_steps=30))
    first.run()
    rng_after_first = torch.cuda.get_rng_state(CUDA)
    torch.manual_seed(99)  # the resumed run must not depend on the generators' state before resume()
    second = resumed_trainer(first.config.config_file, 60)
    assert second.state.step == 30
    assert torch.equal(torch.cuda.get_rng_state(CUDA), rng_after_first)
    second.run()
    assert second.state.step == 60
    close_params(second.cnn, whole.cnn, rtol=1e-5, atol=1e-6)  # the same batches and dropout masks
    np.testing.assert_allclose(np.array(second.timeline)[:, 3], np.array(whole.timeline)[:, 3], rtol=1e-5)
    assert os.path.exists(second._file('-LAST.state.h5'))


@pytest.mark.parametrize('n_dim', [2, 3])
@pytest.mark.parametrize('precision', ['bf16', 'fp16'])
def test_reduced_precision_on_the_gpu_agrees_with_float32(n_dim, precision):
    if precision == 'bf16' and torch.cuda.get_device_capability(CUDA) < (8, 0):
        pytest.skip('bf16 needs compute capability 8.0')
    exact = conv_net(n_dim).to(CUDA)
    reduced = twin(exact, n_dim).to(CUDA)
    assert reduced.setPrecision(precision) == precision
    fmt = torch.channels_last if n_dim == 2 else torch.channels_last_3d
    assert reduced.memory_format == fmt  # tensor-core kernels want channels-last
    x, y = batches(exact, 1)[0]
    p32, p16 = exact.class_probabilities(x), reduced.class_probabilities(x)
    assert p16.dtype == np.float32 and np.abs(p16 - p32).max() < 2e-2
    loss32, _, _ = exact.trainingStep(x, y, mode='SGD')
    loss16, _, _ = reduced.trainingStep(x, y, mode='SGD')
    assert loss16 == pytest.approx(loss32, rel=2e-2)
    assert {p.dtype for p in reduced.params} == {torch.float32}
    close_params(exact, reduced, rtol=5e-2, atol=5e-3)
    if n_dim == 3:  # a conv output: dense prediction of a (ch, x, y, z) volume
        raw = np.random.default_rng(0).random((1, 16, 16, 8), dtype=np.float32)
        d32 = exact.predictDense(raw, show_progress=False)
        d16 = exact.predictDense(raw, precision=precision, show_progress=False)
        assert d16.shape == d32.shape and np.abs(d16 - d32).max() < 2e-2
