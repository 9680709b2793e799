"""Finite-difference gradient checks (float64) of every layer type, activation, pooling mode and loss."""
import pytest
import torch
from torch.func import functional_call

from elektronn.net import losses
from elektronn.net.layers import ConvLayer2d, ConvLayer3d, PerceptronLayer

ACTIVATIONS = ['tanh', 'relu', 'sigmoid', 'abs', 'linear', 'maxout 2']


def check_layer(layer, x, train=False, seed=7):
    layer = layer.double().train(train)
    names = list(layer.param_names)
    params = [getattr(layer, n).detach().clone().requires_grad_() for n in names]
    x = x.double().requires_grad_()

    def fn(x, *ps):
        torch.manual_seed(seed)  # the same dropout mask / noise at every evaluation
        return functional_call(layer, dict(zip(names, ps)), (x,))

    assert torch.autograd.gradcheck(fn, (x, *params), eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=True)


@pytest.mark.parametrize('act', ACTIVATIONS)
@pytest.mark.parametrize('mode', ['max', 'maxabs'])
def test_conv2d(act, mode):
    layer = ConvLayer2d((2, 3, 9, 8), 4, (3, 2), (2, 3), activation_func=act, pooling_mode=mode)
    check_layer(layer, torch.randn(2, 3, 9, 8))


@pytest.mark.parametrize('act', ACTIVATIONS)
@pytest.mark.parametrize('mode', ['max', 'maxabs'])
def test_conv3d(act, mode):
    layer = ConvLayer3d((1, 2, 5, 7, 6), 4, (2, 2, 1), (2, 3, 1), activation_func=act, pooling_mode=mode)
    check_layer(layer, torch.randn(1, 2, 5, 7, 6))


@pytest.mark.parametrize('mode', ['max', 'maxabs'])
def test_conv_with_dropout(mode):
    layer = ConvLayer2d((2, 2, 6, 6), 3, 3, 2, activation_func='tanh', enable_dropout=True, pooling_mode=mode)
    layer.dropout_rate = 0.3
    check_layer(layer, torch.randn(2, 2, 6, 6), train=True)
    layer = ConvLayer3d((1, 2, 4, 6, 6), 4, 3, (1, 2, 2), activation_func='relu', enable_dropout=True)
    check_layer(layer, torch.randn(1, 2, 4, 6, 6), train=True)


@pytest.mark.parametrize('act', ACTIVATIONS)
def test_perceptron(act):
    check_layer(PerceptronLayer(7, 6, activation_func=act), torch.randn(4, 7))


def test_perceptron_dropout_and_input_noise():
    layer = PerceptronLayer(5, 4, activation_func='tanh', enable_dropout=True, input_noise=0.2)
    check_layer(layer, torch.randn(3, 5), train=True)


def test_perceptron_flattens_image_input():
    check_layer(PerceptronLayer(2 * 3 * 3, 4, activation_func='sigmoid'), torch.randn(2, 2, 3, 3))


def _lin_and_labels(shape, n_lab=3):
    lin = torch.randn((shape[0], n_lab) + shape[1:], dtype=torch.float64, requires_grad=True)
    labels = torch.randint(-1, n_lab, shape)
    return lin, labels


@pytest.mark.parametrize('shape', [(6,), (2, 4, 5), (1, 3, 4, 4)])
def test_nll_gradient(shape):
    lin, labels = _lin_and_labels(shape)
    cw = torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64)
    ew = torch.rand(shape, dtype=torch.float64)
    for kwargs in ({}, {'class_weights': cw}, {'example_weights': ew}, {'class_weights': cw, 'example_weights': ew}):
        assert torch.autograd.gradcheck(lambda z: losses.nll(z, labels, **kwargs)[0], (lin,), eps=1e-6, atol=1e-6)


def test_squared_error_gradient():
    out = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    target = torch.randn(2, 4, 4, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda z: losses.squared_error(z, target)[0], (out,))
    target = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda z: losses.squared_error(z, target)[0], (out,))
