"""Optimiser update rules against NumPy references, loss decrease, live settings and learning tasks."""
import numpy as np
import pytest
import torch

from elektronn.net.convnet import MixedConvNN


def linear_regression_net():
    cnn = MixedConvNN(4)
    cnn.addPerceptronLayer(3, activation_func='linear')
    cnn.compileOutputFunctions(target='regression')
    return cnn


def numpy_grads(W, b, x, y):
    out = x @ W + b
    diff = 2 * (out - y) / out.size
    return x.T @ diff, diff.sum(0)


def params(cnn):
    layer = cnn.layers[0]
    return layer.W.detach().numpy().astype(np.float64), layer.b.detach().numpy().astype(np.float64)


@pytest.fixture
def problem():
    rng = np.random.RandomState(3)
    return rng.randn(16, 4).astype(np.float32), rng.randn(16, 3).astype(np.float32)


def test_sgd_matches_original_formula(problem):
    x, y = problem
    cnn = linear_regression_net()
    cnn.setOptimizerParams(SGD={'LR': 0.05, 'momentum': 0.8}, weight_decay=0.01)
    W, b = params(cnn)
    vW, vb = np.zeros_like(W), np.zeros_like(b)
    for step in range(3):
        gW, gb = numpy_grads(W, b, x, y)
        vW, vb = gW + 0.8 * vW, gb + 0.8 * vb
        W, b = W - 0.05 * vW - 0.05 * 0.01 * W, b - 0.05 * vb - 0.05 * 0.01 * b
        cnn.trainingStep(x, y, mode='SGD')
    np.testing.assert_allclose(params(cnn)[0], W, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(params(cnn)[1], b, rtol=1e-4, atol=1e-6)


def test_adam_matches_formula_and_honours_lr_changes_and_weight_decay(problem):
    x, y = problem
    cnn = linear_regression_net()
    cnn.setOptimizerParams(Adam={'LR': 0.01}, weight_decay=0.1)
    W, b = params(cnn)
    state = {k: np.zeros_like(v) for k, v in (('mW', W), ('vW', W), ('mb', b), ('vb', b))}
    lrs = [0.01, 0.02, 0.005]
    for t, lr in enumerate(lrs, start=1):
        cnn.setLR(lr, mode='Adam')
        gW, gb = numpy_grads(W, b, x, y)
        a = lr * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
        new = []
        for name, p, g in (('W', W, gW), ('b', b, gb)):
            state['m' + name] = 0.9 * state['m' + name] + 0.1 * g
            state['v' + name] = 0.999 * state['v' + name] + 0.001 * g ** 2
            new.append(p * (1 - lr * 0.1) - a * state['m' + name] / (np.sqrt(state['v' + name]) + 1e-8))
        W, b = new
        cnn.trainingStep(x, y, mode='Adam')
    assert cnn.getLR('Adam') == 0.005
    np.testing.assert_allclose(params(cnn)[0], W, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(params(cnn)[1], b, rtol=1e-4, atol=1e-6)


def test_rprop_matches_formula(problem):
    x, y = problem
    cnn = linear_regression_net()
    cnn.setOptimizerParams(RPROP={'initial_update_size': 1e-3}, weight_decay=0.001)
    W, b = params(cnn)
    state = {'sW': np.full_like(W, 1e-3), 'sb': np.full_like(b, 1e-3), 'gW': np.zeros_like(W), 'gb': np.zeros_like(b)}
    for _ in range(4):
        gW, gb = numpy_grads(W, b, x, y)
        new = []
        for name, p, g in (('W', W, gW), ('b', b, gb)):
            s, last = state['s' + name], state['g' + name]
            prod = g * last
            factor = 1 - 0.35 * (prod < -1e-9) + 0.2 * (prod > 1e-11)
            new.append(p - s * g / (np.abs(g) + 1e-6) - 0.001 * p)
            state['s' + name] = np.clip(s * factor, 1e-7, 2e-3)
            state['g' + name] = g
        W, b = new
        cnn.trainingStep(x, y, mode='RPROP')
    np.testing.assert_allclose(params(cnn)[0], W, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize('mode, settings', [('SGD', dict(SGD={'LR': 0.05, 'momentum': 0.9})),
                                            ('Adam', dict(Adam={'LR': 0.01})),
                                            ('RPROP', dict())])
def test_every_optimiser_lowers_the_loss(mode, settings):
    rng = np.random.RandomState(0)
    x = rng.randn(64, 5).astype(np.float32)
    labels = (x[:, 0] + x[:, 1] > 0).astype(np.int16) + (x[:, 2] > 1)
    cnn = MixedConvNN(5)
    cnn.addPerceptronLayer(16, activation_func='tanh')
    cnn.addPerceptronLayer(3, activation_func='linear')
    cnn.compileOutputFunctions()
    cnn.setOptimizerParams(**settings)
    first = cnn.get_loss(x, labels)[0]
    for _ in range(60):
        cnn.trainingStep(x, labels, mode=mode)
    assert cnn.get_loss(x, labels)[0] < 0.8 * first


def test_update_loss_and_live_lr(problem):
    x, y = problem
    cnn = linear_regression_net()
    cnn.setOptimizerParams(SGD={'LR': 0.1, 'momentum': 0.0})
    before = cnn.get_loss(x, y)[0]
    loss, inst, seconds = cnn.trainingStep(x, y, mode='SGD')
    assert loss == pytest.approx(before) and inst.shape == (16, 3) and seconds > 0
    loss_after, _, _ = cnn.trainingStep(x, y, mode='SGD', update_loss=True)
    assert loss_after == pytest.approx(cnn.get_loss(x, y)[0])
    cnn.SGD_LR.set_value(0.0)  # the original's shared-variable interface acts live
    cnn.resetMomenta()
    W = params(cnn)[0]
    cnn.trainingStep(x, y, mode='SGD')
    np.testing.assert_array_equal(params(cnn)[0], W)


def test_switching_optimisers_keeps_separate_states(problem):
    x, y = problem
    cnn = linear_regression_net()
    cnn.setOptimizerParams(SGD={'LR': 0.01, 'momentum': 0.9}, Adam={'LR': 0.001})
    cnn.trainingStep(x, y, mode='SGD')
    velocity = [v.clone() for v in cnn._optimizers['SGD'].state['velocity']]
    cnn.trainingStep(x, y, mode='Adam')
    cnn.trainingStep(x, y, mode='RPROP')
    assert all(torch.equal(a, b) for a, b in zip(velocity, cnn._optimizers['SGD'].state['velocity']))
    assert cnn._optimizers['Adam'].state['t'] == 1
    state = cnn.optimizer_state()
    assert set(state) == {'SGD', 'Adam', 'RPROP'}
    other = linear_regression_net()
    other.load_optimizer_state(state)
    np.testing.assert_array_equal(other._optimizers['SGD'].state_dict()['velocity'][0], state['SGD']['velocity'][0])


def synthetic_2d(n, rng):
    """Images with a bright blob; the labels mark pixels brighter than a threshold ('membrane')."""
    img = rng.rand(n, 1, 18, 18).astype(np.float32)
    img = (img + np.roll(img, 1, 2) + np.roll(img, 1, 3)) / 3
    labels = (img[:, 0, 2:-2, 2:-2] > 0.5).astype(np.int16)
    return img, labels


def test_small_2d_conv_net_learns_a_pixel_task():
    rng = np.random.RandomState(0)
    cnn = MixedConvNN((18, 18), input_depth=1)
    cnn.addConvLayer(8, 3, pool_shape=1, activation_func='tanh')
    cnn.addConvLayer(2, 3, pool_shape=1, activation_func='linear', is_last_layer=True)
    cnn.compileOutputFunctions()
    cnn.setOptimizerParams(SGD={'LR': 0.1, 'momentum': 0.9})
    valid_d, valid_l = synthetic_2d(20, rng)
    baseline = min(valid_l.mean(), 1 - valid_l.mean())
    for _ in range(150):
        cnn.trainingStep(*synthetic_2d(4, rng), mode='SGD')
    error = cnn.get_error(valid_d, valid_l)[1]
    assert error < 0.1 < baseline


def test_small_3d_conv_net_learns_a_voxel_task():
    rng = np.random.RandomState(1)

    def batch(n):
        vol = rng.rand(n, 6, 1, 10, 10).astype(np.float32)  # (bs, z, ch, x, y)
        smooth = (vol + np.roll(vol, 1, 1) + np.roll(vol, 1, 3)) / 3
        labels = (smooth[:, 1:-1, 0, 1:-1, 1:-1] > 0.5).astype(np.int16)  # (bs, z, x, y)
        return smooth, labels

    cnn = MixedConvNN((6, 10, 10), input_depth=1)
    cnn.addConvLayer(6, 3, pool_shape=1, activation_func='tanh')
    cnn.addConvLayer(2, 1, pool_shape=1, activation_func='linear', is_last_layer=True)
    cnn.compileOutputFunctions()
    cnn.setOptimizerParams(SGD={'LR': 0.1, 'momentum': 0.9})
    valid_d, valid_l = batch(10)
    for _ in range(120):
        cnn.trainingStep(*batch(2), mode='SGD')
    assert cnn.get_error(valid_d, valid_l)[1] < 0.1
