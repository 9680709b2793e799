"""Tied autoencoder chains: tying, training, gradients, the examples page's code and pre-training."""
import h5py
import numpy as np
import pytest
import torch
from torch.nn import functional as F

from elektronn.net.convnet import MixedConvNN
from elektronn.net.introspection import embedMatricesInGray
from elektronn.net.layers.autoencoder import TiedDecoderLayer, build_tied_chain
from elektronn.net.layers.perceptron import PerceptronLayer


def autoencoder(n_in=36, sizes=(20, 12, 5), input_noise=0.3, **chain_kw):
    cnn = MixedConvNN(n_in, input_depth=None)
    for n in sizes:
        cnn.addPerceptronLayer(n_outputs=n, activation_func='tanh')
    cnn.addTiedAutoencoderChain(n_layers=None, activation_func='tanh', input_noise=input_noise, **chain_kw)
    cnn.compileOutputFunctions(target='regression')
    cnn.setOptimizerParams(SGD={'LR': 0.05, 'momentum': 0.9}, weight_decay=0)
    return cnn


def data(n=64, n_in=36, seed=0):
    return np.random.default_rng(seed).random((n, n_in)).astype(np.float32) - 0.5


def test_decoders_use_the_transposed_encoder_weights_and_stay_tied():
    cnn = autoencoder()
    enc, dec = cnn.layers[:3], cnn.layers[3:]
    assert [type(layer) for layer in dec] == [TiedDecoderLayer] * 3
    assert [(layer.n_in, layer.n_out) for layer in dec] == [(5, 12), (12, 20), (20, 36)]
    for e, d in zip(enc, reversed(dec)):
        assert d.mirror is e and d.tied
        assert d.weight.data_ptr() == e.W.data_ptr()  # the same storage, not a copy
        assert torch.equal(d.weight, e.W.t())
    assert dec[0].input_noise == 0.3 and dec[1].input_noise is None
    # trainable parameters: 3 W + 3 b of the encoders, 3 decoder biases; W not duplicated
    assert len(cnn.params) == 9
    assert cnn.param_count == sum(e.W.numel() + e.b.numel() for e in enc) + sum(d.b.numel() for d in dec)
    before = [e.W.detach().clone() for e in enc]
    x = data()
    for _ in range(5):
        cnn.trainingStep(x, x, mode='SGD')
    for e, d, w0 in zip(enc, reversed(dec), before):
        assert not torch.equal(e.W, w0)
        assert torch.equal(d.weight, e.W.t())
    assert cnn.get_error(x, x)[0] < float(np.mean(x ** 2))


def test_gradients_match_a_plain_pytorch_autoencoder():
    cnn = autoencoder(input_noise=0)
    x = data(seed=1)
    grads = cnn._gradients(x, x)
    enc, dec = cnn.layers[:3], cnn.layers[3:]
    Ws = [e.W.detach().double().clone().requires_grad_() for e in enc]
    bs = [e.b.detach().double().clone().requires_grad_() for e in enc]
    cs = [d.b.detach().double().clone().requires_grad_() for d in dec]
    h = torch.from_numpy(x).double()
    for W, b in zip(Ws, bs):
        h = torch.tanh(h @ W + b)
    for W, c in zip(reversed(Ws), cs):
        h = torch.tanh(h @ W.t() + c)
    F.mse_loss(h, torch.from_numpy(x).double()).backward()
    expected = [t.grad.numpy() for pair in zip(Ws, bs) for t in pair] + [c.grad.numpy() for c in cs]
    assert len(grads) == len(expected)
    for g, e in zip(grads, expected):
        np.testing.assert_allclose(g, e, rtol=2e-4, atol=1e-6)


def test_finite_difference_gradient_through_a_tied_pair():
    enc = PerceptronLayer(6, 4, activation_func='tanh').double()
    dec = TiedDecoderLayer(enc, activation_func='sigmoid').double()
    W, b, c = (t.detach().clone().requires_grad_() for t in (enc.W, enc.b, dec.b))

    def fn(x, W, b, c):
        return torch.sigmoid(torch.tanh(x @ W + b) @ W.t() + c)

    x = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fn, (x, W, b, c), eps=1e-6, atol=1e-5)
    with torch.no_grad():
        np.testing.assert_allclose(dec(enc(x)).numpy(), fn(x, enc.W, enc.b, dec.b).numpy(), rtol=1e-12)


def test_examples_page_code_runs_as_written(tmp_path, monkeypatch, capsys):
    """The autoencoder section of the examples page (Python 3 print), on synthetic 28x28 data."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(2)
    valid_d = rng.random((200, 784)).astype(np.float32)

    batch_size = 20
    cnn = MixedConvNN((28**2), input_depth=None)
    cnn.addPerceptronLayer(n_outputs=300, activation_func="tanh")
    cnn.addPerceptronLayer(n_outputs=200, activation_func="tanh")
    cnn.addPerceptronLayer(n_outputs=50, activation_func="tanh")
    cnn.addTiedAutoencoderChain(n_layers=None, activation_func="tanh", input_noise=0.3, add_layers_to_network=True)
    cnn.compileOutputFunctions(target="regression")
    cnn.setOptimizerParams(SGD={'LR': 5e-1, 'momentum': 0.9}, weight_decay=0)
    for i in range(3):
        d = valid_d[i * batch_size:(i + 1) * batch_size]
        loss, loss_instance, time_per_step = cnn.trainingStep(d, d, mode="SGD")
        if i % 100 == 0:
            print("update:", i, "; Training error:", loss)
    loss, test_predictions = cnn.get_error(valid_d, valid_d)
    images = embedMatricesInGray(valid_d[:200].reshape((200, 28, 28)), 1)
    recon = embedMatricesInGray(test_predictions[:200].reshape((200, 28, 28)), 1)
    assert images.shape == recon.shape and np.isfinite(loss)
    cnn.saveParameters('AE-pretraining.param')
    cnn.saveParameters('AE-pretraining.param', layers=cnn.layers[0:3])

    cnn2 = MixedConvNN((28**2), input_depth=None)
    cnn2.addPerceptronLayer(n_outputs=300, activation_func="tanh")
    cnn2.addPerceptronLayer(n_outputs=200, activation_func="tanh")
    cnn2.addPerceptronLayer(n_outputs=50, activation_func="tanh")
    cnn2.addPerceptronLayer(n_outputs=10, activation_func="tanh")
    cnn2.compileOutputFunctions(target="nll")
    cnn2.setOptimizerParams(SGD={'LR': 0.005, 'momentum': 0.9}, weight_decay=0)
    w_out = cnn2.layers[3].W.detach().clone()
    cnn2.loadParameters('AE-pretraining.param')
    for a, b in zip(cnn.layers[:3], cnn2.layers[:3]):
        assert torch.equal(a.W, b.W) and torch.equal(a.b, b.b)
    assert torch.equal(cnn2.layers[3].W, w_out)  # the new output layer keeps its own initialisation
    labels = np.arange(batch_size) % 10
    cnn2.trainingStep(valid_d[:batch_size], labels, mode="SGD")
    assert 'update: 0 ; Training error:' in capsys.readouterr().out


def test_save_parameters_leaves_the_chain_out(tmp_path):
    cnn = autoencoder()
    cnn.saveParameters(str(tmp_path / 'ae.h5'))
    with h5py.File(tmp_path / 'ae.h5', 'r') as f:
        assert sorted(f.keys()) == ['layer000', 'layer001', 'layer002']
        assert f['layer002/W'].shape == (12, 5)
    fresh = autoencoder()
    fresh.loadParameters(str(tmp_path / 'ae.h5'), strict=True)  # strict: the encoder layers match exactly
    for a, b in zip(cnn.layers[:3], fresh.layers[:3]):
        assert torch.equal(a.W, b.W) and torch.equal(a.b, b.b)
    assert torch.equal(fresh.layers[5].weight, fresh.layers[0].W.t())  # loading kept the tie


def test_deferred_chain_and_untied_weights():
    x = data(8)
    np.random.seed(0)
    now = autoencoder(add_layers_to_network=True)
    np.random.seed(0)
    cnn = MixedConvNN(36, input_depth=None)
    for n in (20, 12, 5):
        cnn.addPerceptronLayer(n_outputs=n, activation_func='tanh')
    chain = cnn.addTiedAutoencoderChain(add_layers_to_network=False)
    assert len(cnn.layers) == 3 and cnn._autoencoder_chains == chain
    cnn.compileOutputFunctions(target='regression')
    assert len(cnn.layers) == 6 and cnn.layers[3] is chain[0]
    np.testing.assert_allclose(cnn.prediction(x), now.prediction(x), rtol=1e-6)
    untied = autoencoder(tie_W=False)
    assert not any(layer.tied for layer in untied.layers[3:])
    assert len(untied.params) == 12 and untied.layers[5].W.shape == (20, 36)


def test_bad_chains_are_refused():
    conv = MixedConvNN((8, 8), input_depth=1)
    conv.addConvLayer(2, 3, pool_shape=1)
    conv.addPerceptronLayer(4)
    with pytest.raises(ValueError, match='perceptron layers only.*ConvLayer2d'):
        conv.addTiedAutoencoderChain()
    mlp = MixedConvNN(10)
    mlp.addPerceptronLayer(6)
    mlp.addPerceptronLayer(3)
    with pytest.raises(NotImplementedError, match='branches off'):
        mlp.addTiedAutoencoderChain(n_layers=1)
    with pytest.raises(ValueError, match='n_layers must be between 1 and'):
        mlp.addTiedAutoencoderChain(n_layers=3)
    with pytest.raises(ValueError, match='maxout'):
        mlp.addTiedAutoencoderChain(activation_func='maxout 2')
    mlp.addTiedAutoencoderChain(add_layers_to_network=False)
    with pytest.raises(RuntimeError, match='already has an autoencoder chain'):
        mlp.addTiedAutoencoderChain()
    mlp.addPerceptronLayer(2)
    with pytest.raises(RuntimeError, match='layers were added after addTiedAutoencoderChain'):
        mlp.compileOutputFunctions(target='regression')
    done = autoencoder()
    with pytest.raises(RuntimeError, match='already compiled'):
        done.addTiedAutoencoderChain()
    with pytest.raises(ValueError, match='mirrors a PerceptronLayer'):
        TiedDecoderLayer(done)


def test_chain_builder_order_and_sharing_of_shared_layers():
    a = PerceptronLayer(8, 5)
    b = PerceptronLayer(5, 8, W=a.W.T)  # b already uses a.W transposed
    chain = build_tied_chain([a, b], input_noise=0.1)
    assert [d.mirror for d in chain] == [b, a]
    assert chain[0].weight.data_ptr() == a.W.data_ptr() and chain[0].weight.shape == (8, 5)
    assert torch.equal(chain[0].weight, a.W) and torch.equal(chain[1].weight, a.W.t())
    assert chain[0].input_noise == 0.1 and chain[1].input_noise is None


def test_dropout_in_the_chain():
    cnn = MixedConvNN(12, input_depth=None, enable_dropout=True)
    cnn.addPerceptronLayer(6, force_no_dropout=True)
    cnn.addTiedAutoencoderChain()
    assert cnn.layers[1].has_dropout
    plain = MixedConvNN(12, input_depth=None, enable_dropout=True)
    plain.addPerceptronLayer(6, force_no_dropout=True)
    plain.addTiedAutoencoderChain(force_no_dropout=True)
    assert not plain.layers[1].has_dropout
