"""Legacy ELEKTRONN 1.x parameter files: written here in the original's format (consecutive
protocol-2 pickle records, Theano's filter layouts and true convolutions), loaded, and checked
against a true-convolution reference and against the same weights set directly; malicious files
are refused; the converter writes our HDF5 format."""
import os
import pickle
import struct

import numpy as np
import pytest
from scipy.signal import convolve

from elektronn.cli import convert_params
from elektronn.net import legacy
from elektronn.net.convnet import MixedConvNN


class Py2Pickler(pickle._Pickler):
    """Protocol 2 as Python 2 wrote it: byte strings as ``str`` opcodes, NumPy 1's module names."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_bytes(self, obj):
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack('<i', len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes

    def save_global(self, obj, name=None):
        module = getattr(obj, '__module__', '')
        if module.startswith('numpy._core'):
            self.write(pickle.GLOBAL + (module.replace('numpy._core', 'numpy.core') + '\n' + obj.__name__ + '\n')
                       .encode('ascii'))
            self.memoize(obj)
            return
        super().save_global(obj, name)

    dispatch[type(np.zeros)] = save_global


def write_original(path, layers, poolings, py2=True):
    """The original's saveParameters: shapes of params[0], then params[0], params[1](, [2], [3]), then poolings."""
    with open(path, 'wb') as f:
        dump = (lambda obj: Py2Pickler(f, protocol=2).dump(obj)) if py2 else (lambda obj: pickle.dump(obj, f, 2))
        dump([p[0].shape for p in layers])
        for p in layers:
            for a in p:
                dump(a)
        dump(poolings)


def true_conv2d(x, W, b):
    """Theano's conv2d (a true convolution): x (bs, ch, X, Y), W (nof, ch, fx, fy)."""
    out = np.zeros((x.shape[0], W.shape[0], x.shape[2] - W.shape[2] + 1, x.shape[3] - W.shape[3] + 1))
    for n in range(x.shape[0]):
        for k in range(W.shape[0]):
            out[n, k] = sum(convolve(x[n, c], W[k, c], mode='valid') for c in range(x.shape[1])) + b[k]
    return out


def true_conv3d(x, W, b):
    """Theano's conv3d2d: x (bs, z, ch, X, Y), W (nof, fz, ch, fx, fy) -> (bs, z', nof, x', y')."""
    out = np.zeros((x.shape[0], x.shape[1] - W.shape[1] + 1, W.shape[0], x.shape[3] - W.shape[3] + 1,
                    x.shape[4] - W.shape[4] + 1))
    for n in range(x.shape[0]):
        for k in range(W.shape[0]):
            out[n, :, k] = sum(convolve(x[n, :, c], W[k, :, c], mode='valid') for c in range(x.shape[2])) + b[k]
    return out


def softmax(lin):
    e = np.exp(lin - lin.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def net_2d(**weights):
    cnn = MixedConvNN((7, 6), input_depth=2)
    cnn.addConvLayer(3, (3, 2), pool_shape=1, activation_func='tanh', W=weights.get('W1'), b=weights.get('b1'))
    cnn.addPerceptronLayer(2, activation_func='linear', W=weights.get('W2'), b=weights.get('b2'))
    cnn.compileOutputFunctions()
    return cnn


@pytest.mark.parametrize('py2, perceptron_order', [(True, 'bW'), (False, 'bW'), (True, 'Wb')])
def test_2d_file_loads_and_predicts_like_theano(tmp_path, py2, perceptron_order):
    rng = np.random.RandomState(0)
    W1, b1 = rng.randn(3, 2, 3, 2).astype(np.float32), rng.randn(3).astype(np.float32)
    W2, b2 = rng.randn(3 * 5 * 5, 2).astype(np.float32), rng.randn(2).astype(np.float32)
    perceptron = [b2, W2] if perceptron_order == 'bW' else [W2, b2]
    write_original(tmp_path / 'net.param', [[W1, b1], perceptron], [(1, 1)], py2=py2)
    x = rng.rand(4, 2, 7, 6).astype(np.float32)
    reference = softmax(np.tanh(true_conv2d(x.astype(np.float64), W1, b1)).reshape(4, -1) @ W2 + b2)

    cnn = net_2d()
    cnn.loadParameters(str(tmp_path / 'net.param'), strict=True)
    np.testing.assert_allclose(cnn.class_probabilities(x), reference, rtol=1e-4, atol=1e-6)
    direct = net_2d(W1=W1[:, :, ::-1, ::-1], b1=b1, W2=W2, b2=b2)  # our filters: cross-correlation kernels
    np.testing.assert_allclose(cnn.class_probabilities(x), direct.class_probabilities(x), rtol=1e-6)
    layers, poolings = legacy.read_legacy_param_file(tmp_path / 'net.param')
    assert [e['type'] for e in layers] == ['ConvLayer2d', 'PerceptronLayer'] and poolings == [[1, 1]]


def net_3d(with_perceptron, **weights):
    cnn = MixedConvNN((4, 6, 5), input_depth=2)
    cnn.addConvLayer(3, (2, 3, 2), pool_shape=1, activation_func='tanh', W=weights.get('W1'), b=weights.get('b1'))
    if with_perceptron:
        cnn.addPerceptronLayer(2, activation_func='linear', W=weights.get('W2'), b=weights.get('b2'))
    else:
        cnn.addConvLayer(2, 1, pool_shape=1, activation_func='linear', is_last_layer=True, W=weights.get('W2'),
                         b=weights.get('b2'))
    cnn.compileOutputFunctions()
    return cnn


def test_3d_conv_file_loads_and_predicts_like_theano(tmp_path):
    rng = np.random.RandomState(1)
    W1, b1 = rng.randn(3, 2, 2, 3, 2).astype(np.float32), rng.randn(3).astype(np.float32)  # (nof, fz, ch, fx, fy)
    W2, b2 = rng.randn(2, 1, 3, 1, 1).astype(np.float32), rng.randn(2).astype(np.float32)
    write_original(tmp_path / 'net3d.param', [[W1, b1], [W2, b2]], [(1, 1, 1), (1, 1, 1)])
    x = rng.rand(2, 4, 2, 6, 5).astype(np.float32)  # (bs, z, ch, x, y)
    hidden = np.tanh(true_conv3d(x.astype(np.float64), W1, b1))
    lin = true_conv3d(hidden, W2, b2)  # (bs, z, n_lab, x, y)
    reference = softmax(lin.transpose(0, 2, 1, 3, 4))

    cnn = net_3d(False)
    cnn.loadParameters(str(tmp_path / 'net3d.param'))
    np.testing.assert_allclose(cnn.class_probabilities(x), reference, rtol=1e-4, atol=1e-6)
    ours = lambda W: W.transpose(0, 2, 1, 3, 4)[:, :, ::-1, ::-1, ::-1]
    direct = net_3d(False, W1=ours(W1), b1=b1, W2=ours(W2), b2=b2)
    np.testing.assert_allclose(cnn.class_probabilities(x), direct.class_probabilities(x), rtol=1e-6)


def test_3d_conv_then_perceptron_uses_the_original_flatten_order(tmp_path):
    rng = np.random.RandomState(2)
    W1, b1 = rng.randn(3, 2, 2, 3, 2).astype(np.float32), rng.randn(3).astype(np.float32)
    W2, b2 = rng.randn(3 * 3 * 4 * 4, 2).astype(np.float32), rng.randn(2).astype(np.float32)
    write_original(tmp_path / 'mlp3d.param', [[W1, b1], [b2, W2]], [(1, 1, 1)])
    x = rng.rand(2, 4, 2, 6, 5).astype(np.float32)
    hidden = np.tanh(true_conv3d(x.astype(np.float64), W1, b1))  # (bs, z, ch, x, y) flattened in that order
    reference = softmax(hidden.reshape(2, -1) @ W2 + b2)
    cnn = net_3d(True)
    cnn.loadParameters(str(tmp_path / 'mlp3d.param'))
    np.testing.assert_allclose(cnn.class_probabilities(x), reference, rtol=1e-4, atol=1e-6)


def test_recurrent_layers_and_adaptive_loading(tmp_path):
    rng = np.random.RandomState(3)
    rnn = [rng.randn(3, 4), rng.randn(4, 4), rng.randn(4), rng.randn(4)]
    out = [rng.randn(2), rng.randn(4, 2)]
    write_original(tmp_path / 'rnn.param', [[a.astype(np.float32) for a in rnn], out], [])
    cnn = MixedConvNN(3, input_depth=5, recurrent=True)
    cnn.addRecurrentLayer(4)
    cnn.addPerceptronLayer(2, activation_func='linear')
    cnn.compileOutputFunctions()
    cnn.loadParameters(str(tmp_path / 'rnn.param'), strict=True)
    for name, value in zip(('W_in', 'W_hid', 'b_hid', 'hid_0'), rnn):
        np.testing.assert_allclose(getattr(cnn.layers[0], name).detach().numpy(), value, rtol=1e-6)
    np.testing.assert_allclose(cnn.layers[1].W.detach().numpy(), out[1], rtol=1e-6)

    rng = np.random.RandomState(4)  # a smaller saved conv net initialises a bigger one (adaptive)
    W_small = rng.randn(2, 2, 3, 2).astype(np.float32)
    write_original(tmp_path / 'small.param', [[W_small, np.zeros(2, np.float32)]], [(1, 1)])
    big = net_2d()
    big.loadParameters(str(tmp_path / 'small.param'))
    W_big = big.layers[0].W.detach().numpy()
    np.testing.assert_allclose(W_big[:2], W_small[:, :, ::-1, ::-1], rtol=1e-6)  # flipped, then tiled
    np.testing.assert_allclose(W_big[2], W_small[0, :, ::-1, ::-1], rtol=1e-6)


class Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return os.system, ('touch %s' % self.target,)


def test_malicious_pickles_are_refused(tmp_path):
    canary = tmp_path / 'pwned'
    with open(tmp_path / 'evil.param', 'wb') as f:
        pickle.dump([(2, 2)], f, protocol=2)
        pickle.dump(Evil(canary), f, protocol=2)
    cnn = net_2d()
    with pytest.raises(ValueError, match=r"evil.param' was refused: its record 1 references (posix|os|nt)\.system"):
        cnn.loadParameters(str(tmp_path / 'evil.param'))
    assert not canary.exists()

    with open(tmp_path / 'eval.param', 'wb') as f:
        f.write(b'\x80\x02cbuiltins\neval\nq\x00X\x04\x00\x00\x001+1)q\x01\x85q\x02Rq\x03.')
    with pytest.raises(ValueError, match='references builtins.eval'):
        legacy.read_legacy_param_file(tmp_path / 'eval.param')

    with open(tmp_path / 'objects.param', 'wb') as f:
        pickle.dump([(2,)], f, protocol=2)
        pickle.dump(np.array([1, 'a'], dtype=object), f, protocol=2)
    with pytest.raises(ValueError, match='dtype object; a parameter file holds numbers only'):
        legacy.read_legacy_param_file(tmp_path / 'objects.param')

    data = (tmp_path / 'objects.param').read_bytes()
    (tmp_path / 'cut.param').write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match='not a readable ELEKTRONN 1.x parameter file'):
        legacy.read_legacy_param_file(tmp_path / 'cut.param')


def test_mismatching_records_name_the_layer(tmp_path):
    rng = np.random.RandomState(5)
    with open(tmp_path / 'bad.param', 'wb') as f:
        pickle.dump([(3, 2, 3, 2)], f, protocol=2)
        pickle.dump(rng.randn(3, 2, 2, 2), f, protocol=2)
    with pytest.raises(ValueError, match=r'layer 0 should start with an array of shape \(3, 2, 3, 2\)'):
        legacy.read_legacy_param_file(tmp_path / 'bad.param')
    with open(tmp_path / 'short.param', 'wb') as f:
        pickle.dump([(3, 2, 3, 2)], f, protocol=2)
        pickle.dump(rng.randn(3, 2, 3, 2), f, protocol=2)
    with pytest.raises(ValueError, match='layer 0 lacks its bias'):
        legacy.read_legacy_param_file(tmp_path / 'short.param')


def test_convert_params_cli(tmp_path, capsys):
    rng = np.random.RandomState(6)
    W1, b1 = rng.randn(3, 2, 3, 2).astype(np.float32), rng.randn(3).astype(np.float32)
    W2, b2 = rng.randn(75, 2).astype(np.float32), rng.randn(2).astype(np.float32)
    write_original(tmp_path / 'net.param', [[W1, b1], [b2, W2]], [(1, 1)])
    assert convert_params.main([str(tmp_path / 'net.param')]) == 0
    assert 'wrote %s' % (tmp_path / 'net.h5') in capsys.readouterr().out
    a, b = net_2d(), net_2d()
    a.loadParameters(str(tmp_path / 'net.param'))
    b.loadParameters(str(tmp_path / 'net.h5'), strict=True)
    x = rng.rand(2, 2, 7, 6).astype(np.float32)
    np.testing.assert_allclose(a.class_probabilities(x), b.class_probabilities(x), rtol=1e-6)
    with pytest.raises(SystemExit):
        convert_params.main([str(tmp_path / 'net.param')])  # never overwrites without --force
    assert 'exists; use --force' in capsys.readouterr().err
    assert convert_params.main([str(tmp_path / 'net.param'), str(tmp_path / 'net.h5'), '--force']) == 0

    write_original(tmp_path / 'mlp3d.param', [[rng.randn(3, 2, 2, 3, 2).astype(np.float32), b1], [b2, W2]], [])
    assert convert_params.main([str(tmp_path / 'mlp3d.param')]) == 1
    assert 'perceptron layers after a 3D conv layer' in capsys.readouterr().err
    with open(tmp_path / 'evil.param', 'wb') as f:
        pickle.dump(Evil(tmp_path / 'pwned'), f, protocol=2)
    assert convert_params.main([str(tmp_path / 'evil.param')]) == 1
    assert 'refused' in capsys.readouterr().err and not (tmp_path / 'pwned').exists()
    assert convert_params.main([str(tmp_path / 'net.h5'), str(tmp_path / 'again.h5')]) == 1
    assert 'already an HDF5 parameter file' in capsys.readouterr().err and not (tmp_path / 'again.h5').exists()
