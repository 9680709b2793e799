"""CG and LBFGS: they lower the loss, CG's line search honours its bounds, repeatable dropout
masks within one step, settings, and switching between all five optimisers."""
import math

import numpy as np
import pytest
import torch

from elektronn.net.convnet import MixedConvNN
from elektronn.net.optimizers import CG, DEFAULT_PARAMS


def classification_problem(seed=0):
    rng = np.random.RandomState(seed)
    x = rng.randn(64, 5).astype(np.float32)
    labels = (x[:, 0] + x[:, 1] > 0).astype(np.int16) + (x[:, 2] > 1)
    return x, labels


def mlp(enable_dropout=False):
    cnn = MixedConvNN(5, enable_dropout=enable_dropout)
    cnn.addPerceptronLayer(12, activation_func='tanh')
    cnn.addPerceptronLayer(3, activation_func='linear', force_no_dropout=True)
    cnn.compileOutputFunctions()
    return cnn


@pytest.mark.parametrize('mode', ['CG', 'LBFGS'])
def test_cg_and_lbfgs_lower_the_loss(mode):
    x, labels = classification_problem()
    cnn = mlp()
    cnn.setOptimizerParams(CG={'max_step': 1.0, 'min_step': 1e-3})  # the default steps suit bigger nets
    first = cnn.get_loss(x, labels)[0]
    for _ in range(8):
        loss, instance, seconds = cnn.trainingStep(x, labels, mode=mode)
    assert loss == pytest.approx(cnn.get_loss(x, labels)[0], rel=1e-5)  # the loss after the update
    assert instance.shape == (64,) and seconds > 0
    assert loss < 0.8 * first


def test_cg_timeline_and_bounds():
    x, labels = classification_problem(1)
    cnn = mlp()
    cnn.setOptimizerParams(CG={'n_steps': 4, 'max_step': 0.5, 'min_step': 0.01, 'beta': 0.5})
    for _ in range(3):
        cnn.trainingStep(x, labels, mode='CG')
    timeline = np.array(cnn.CG_timeline)
    assert timeline.shape == (12, 4)
    max_count = int(math.log(0.01 / 0.5) / math.log(0.5))
    for loss, t, coeff, count in timeline:
        assert t == 0 or 0.01 <= t <= 0.5
        assert 0 <= count <= max_count + 1 and coeff >= 0
        assert t == 0 or any(np.isclose(t, 0.5 * 0.5 ** k) for k in range(max_count + 1))
    assert timeline[0, 2] == 0  # the first search of every call goes along the negative gradient
    assert (timeline[:, 0][::4] >= timeline[:, 0][3::4] - 1e-6).all()  # losses fall within a call


def linear_regression():
    rng = np.random.RandomState(3)
    x, y = rng.randn(16, 4).astype(np.float32), rng.randn(16, 2).astype(np.float32)
    cnn = MixedConvNN(4)
    cnn.addPerceptronLayer(2, activation_func='linear')
    cnn.compileOutputFunctions(target='regression')
    return cnn, x, y


def numpy_gradient(cnn, x, y):
    W, b = cnn.layers[0].W.detach().numpy().astype(np.float64), cnn.layers[0].b.detach().numpy().astype(np.float64)
    diff = 2 * (x @ W + b - y) / y.size
    return W, b, x.T @ diff, diff.sum(0)


def test_cg_first_step_moves_t_along_the_negative_gradient():
    cnn, x, y = linear_regression()
    W, b, gW, gb = numpy_gradient(cnn, x, y)
    cnn.setOptimizerParams(CG={'n_steps': 1, 'max_step': 1e-4, 'min_step': 1e-6})
    cnn.trainingStep(x, y, mode='CG')
    loss, t, coeff, count = cnn.CG_timeline[-1]
    assert (t, count) == (1e-4, 1)  # a tiny first step always satisfies the Armijo condition
    np.testing.assert_allclose(cnn.layers[0].W.detach().numpy(), W - t * gW, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(cnn.layers[0].b.detach().numpy(), b - t * gb, rtol=1e-5, atol=1e-8)

    cnn, x, y = linear_regression()
    W, b, gW, gb = numpy_gradient(cnn, x, y)
    cnn.setOptimizerParams(CG={'n_steps': 1, 'max_step': 1e3, 'min_step': 1.0, 'beta': 0.5})
    cnn.trainingStep(x, y, mode='CG')
    loss, t, coeff, count = cnn.CG_timeline[-1]
    assert 1.0 <= t < 1e3 and count > 1  # far too long steps are shrunk, never below min_step
    np.testing.assert_allclose(cnn.layers[0].W.detach().numpy(), W - t * gW, rtol=1e-4, atol=1e-6)


def scalar_cg(values, **settings):
    """CG on one parameter p (starting at 0) with the loss f(p) = 1 - 2p + 2.925 p^2 - 0.975 p^3."""
    p = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))

    def closure(backward=True):
        loss = 1 - 2 * p + 2.925 * p ** 2 - 0.975 * p ** 3
        values.append(float(p.detach()))
        if backward:
            p.grad = None
            loss.backward()
        return loss.detach(), loss.detach().reshape(1)

    opt = CG([p], dict(DEFAULT_PARAMS['CG'], n_steps=1, **settings))
    opt.step(closure)
    return float(p.detach()), opt.timeline[-1]


def test_cg_line_search_armijo_and_rising_loss():
    # f(0) = 1 and the slope along d = -g = 2 is -4; p = 2t. f(2) = 0.9, f(1) = 0.95, f(0.5) = 0.609.
    visited = []
    p, (loss, t, coeff, count) = scalar_cg(visited, max_step=1.0, min_step=0.01, beta=0.5, alpha=0.35)
    # t = 1 fails Armijo (0.9 > 1 - 1.4); at t = 0.5 the loss rises (0.95 > 0.9): keep t = 1
    assert visited[1:] == [2.0, 1.0] and (t, count, p) == (1.0, 2, 2.0) and loss == pytest.approx(0.9)
    visited = []
    p, (loss, t, coeff, count) = scalar_cg(visited, max_step=0.25, min_step=0.01, beta=0.5, alpha=0.35)
    assert (t, count, p) == (0.25, 1, 0.5)  # 0.609 <= 1 - 0.35: Armijo holds at once
    visited = []
    p, (loss, t, coeff, count) = scalar_cg(visited, max_step=0.5, min_step=0.01, beta=0.5, alpha=0.35)
    assert (t, count, p) == (0.25, 2, 0.5)  # 0.95 fails, then 0.609 <= 1 - 0.35 * 0.25 * 4 holds
    visited = []
    p, (loss, t, coeff, count) = scalar_cg(visited, max_step=0.5, min_step=0.1, beta=0.5, alpha=0.99)
    # Armijo never holds; 0.609 < 0.95, then f(0.25) = 0.668 rises: back to t = 0.25
    assert visited[1:] == [1.0, 0.5, 0.25] and (t, count, p) == (0.25, 3, 0.5)
    visited = []
    p, (loss, t, coeff, count) = scalar_cg(visited, max_step=0.5, min_step=0.2, beta=0.5, alpha=0.99)
    assert (t, count) == (0.25, 2) and min(visited) >= 0  # int(log(0.4) / log(0.5)) = 1 shrink at most


def test_repeatable_dropout_masks_within_one_step():
    x, labels = classification_problem()
    cnn = mlp(enable_dropout=True)
    x_t, y_t, aux = cnn._prepare(x, labels, (), {})
    cnn.train()
    closure = cnn._closure(x_t, y_t, aux, repeatable=True)
    assert float(closure(False)[0]) == float(closure(False)[0]) == float(closure()[0])
    closure = cnn._closure(x_t, y_t, aux, repeatable=False)
    assert len({float(closure(False)[0]) for _ in range(4)}) > 1
    cnn.eval()
    cnn.trainingStep(x, labels, mode='CG')
    cnn.trainingStep(x, labels, mode='LBFGS')


def test_lbfgs_settings_are_honoured():
    x, labels = classification_problem(2)
    cnn = mlp()
    cnn.setOptimizerParams(LBFGS={'maxiter': 2, 'maxfun': 5})
    cnn.trainingStep(x, labels, mode='LBFGS')
    result = cnn._optimizers['LBFGS'].state['last_result']
    assert result['nit'] <= 2 and result['nfev'] <= 6


def test_all_five_optimisers_switch_and_keep_their_states():
    x, labels = classification_problem(3)
    cnn = mlp()
    cnn.setOptimizerParams(SGD={'LR': 0.05}, Adam={'LR': 0.01})
    cnn.trainingStep(x, labels, mode='SGD')
    velocity = [v.clone() for v in cnn._optimizers['SGD'].state['velocity']]
    for mode in ('CG', 'LBFGS', 'Adam', 'RPROP'):
        cnn.trainingStep(x, labels, mode=mode)
    assert all(torch.equal(a, b) for a, b in zip(velocity, cnn._optimizers['SGD'].state['velocity']))
    assert set(cnn.optimizer_state()) == {'SGD', 'CG', 'LBFGS', 'Adam', 'RPROP'}
    cnn.load_optimizer_state(cnn.optimizer_state())
    cnn.resetMomenta()
    cnn.trainingStep(x, labels, mode='CG')


def test_cg_and_lbfgs_settings_and_learning_rates(capsys):
    cnn = mlp()
    assert cnn._CG_params == DEFAULT_PARAMS['CG'] and cnn._CG_params['n_steps'] == 3
    cnn.setOptimizerParams(CG={'max_step': 0.1})
    assert cnn._CG_params['max_step'] == 0.1 and cnn._CG_params['beta'] == 0.7
    with pytest.raises(ValueError, match=r"CG got unknown hyper-parameter\(s\) \['maxstep'\]"):
        cnn.setOptimizerParams(CG={'maxstep': 0.1})
    with pytest.raises(ValueError, match='CG beta .* got 1.5'):
        cnn.setOptimizerParams(CG={'beta': 1.5})
    with pytest.raises(ValueError, match='min_step <= max_step'):
        cnn.setOptimizerParams(CG={'min_step': 0.5})
    with pytest.raises(ValueError, match='LBFGS maxiter must be a positive integer'):
        cnn.setOptimizerParams(LBFGS={'maxiter': 0})
    assert cnn.getLR('CG') is None and cnn.getLR('LBFGS') is None
    cnn.setLR(0.1, mode='LBFGS')
    assert 'LBFGS has no learning rate' in capsys.readouterr().out
    with pytest.raises(ValueError, match="mode must be one of .* got 'BFGS'"):
        cnn.trainingStep(*classification_problem(), mode='BFGS')
