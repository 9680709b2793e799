"""Recurrent layers and networks: forward pass against NumPy, broadcasting, a small sequence task,
parameter files and errors."""
import numpy as np
import pytest
import torch

from elektronn.net.convnet import MixedConvNN
from elektronn.net.layers import RecurrentLayer


def numpy_rnn(x, W_in, W_hid, b, h0, act=np.tanh):
    h = np.broadcast_to(h0, (x.shape[0], len(h0)))
    for t in range(x.shape[1]):
        h = act(x[:, t] @ W_in + h @ W_hid + b)
    return h


def params(layer):
    return [getattr(layer, n).detach().numpy().astype(np.float64) for n in layer.param_names]


@pytest.mark.parametrize('act, fn', [('tanh', np.tanh), ('relu', lambda z: z * (z > 0)), ('abs', np.abs),
                                     ('sigmoid', lambda z: 1 / (1 + np.exp(-z))), ('linear', lambda z: z)])
def test_forward_matches_numpy(act, fn):
    layer = RecurrentLayer(3, 5, activation_func=act)
    with torch.no_grad():
        layer.hid_0.normal_()
    x = np.random.RandomState(0).randn(4, 6, 3)
    out = layer(torch.from_numpy(x).float()).detach().numpy()
    np.testing.assert_allclose(out, numpy_rnn(x, *params(layer), act=fn), rtol=1e-4, atol=1e-5)


def test_initialisation():
    layer = RecurrentLayer(4, 6)
    W_in, W_hid, b, h0 = params(layer)
    assert np.abs(W_in).max() <= np.sqrt(2.0 / 10)
    assert np.linalg.svd(W_hid, compute_uv=False)[0] == pytest.approx(1.0, rel=1e-5)
    assert np.abs(b).max() <= 1e-6 and not h0.any()


def test_network_with_sequence_input_and_printout(capsys):
    cnn = MixedConvNN(3, input_depth=6, batch_size=4, recurrent=True)
    cnn.addRecurrentLayer(n_hid=5, activation_func='tanh')
    cnn.addPerceptronLayer(2, activation_func='linear')
    cnn.compileOutputFunctions()
    out = capsys.readouterr().out
    assert 'Input shape   =  (4, 6, 3) ; This is a 1 dimensional NN' in out
    assert 'RecurrentLayer( #Inputs = 3 #Hidden =  5 )' in out
    assert 'Total Count of trainable Parameters: %i' % (15 + 25 + 5 + 5 + 12) in out
    x = np.random.RandomState(1).randn(4, 6, 3).astype(np.float32)
    rnn, out_layer = cnn.layers
    h = numpy_rnn(x.astype(np.float64), *params(rnn))
    lin = h @ params(out_layer)[0] + params(out_layer)[1]
    prob = np.exp(lin) / np.exp(lin).sum(1, keepdims=True)
    np.testing.assert_allclose(cnn.class_probabilities(x), prob, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match=r'data must have shape \(4, 6, 3\)'):
        cnn.class_probabilities(x[:, :5])


def test_broadcast_over_iterations():
    cnn = MixedConvNN(3, recurrent=True)
    assert cnn.input_shape == (None, 3)
    rnn = cnn.addRecurrentLayer(4, activation_func='tanh', iterations=5)
    cnn.addPerceptronLayer(2, activation_func='linear')
    cnn.compileOutputFunctions()
    x = np.random.RandomState(2).randn(3, 3)
    h = numpy_rnn(np.repeat(x[:, None], 5, axis=1), *params(rnn))
    np.testing.assert_allclose(cnn.get_activities(x.astype(np.float32))[0], h, rtol=1e-4, atol=1e-6)

    mlp = MixedConvNN(3)  # a perceptron's output repeated over time
    mlp.addPerceptronLayer(4)
    mlp.addRecurrentLayer(3, iterations=2)
    assert mlp.layers[-1].input_shape == (None, 2, 4)


def test_rnn_learns_a_sequence_task():
    """Remember the sign of the first input through 8 steps of noise."""
    rng = np.random.RandomState(0)

    def batch(n):
        x = rng.randn(n, 8, 2).astype(np.float32) * 0.5
        labels = (x[:, 0, 0] > 0).astype(np.int16)
        x[:, 0, 0] = np.where(labels, 1.0, -1.0)
        return x, labels

    cnn = MixedConvNN(2, input_depth=8, recurrent=True)
    cnn.addRecurrentLayer(n_hid=12, activation_func='tanh')
    cnn.addPerceptronLayer(2, activation_func='linear')
    cnn.compileOutputFunctions()
    cnn.setOptimizerParams(Adam={'LR': 0.02})
    valid = batch(200)
    assert cnn.get_error(*valid)[1] > 0.2
    for _ in range(150):
        cnn.trainingStep(*batch(32), mode='Adam')
    assert cnn.get_error(*valid)[1] < 0.05


def test_parameter_file_round_trip(tmp_path):
    def build():
        cnn = MixedConvNN(3, input_depth=4, recurrent=True)
        cnn.addRecurrentLayer(5)
        cnn.addPerceptronLayer(2, activation_func='linear')
        cnn.compileOutputFunctions()
        return cnn

    a, b = build(), build()
    a.saveParameters(str(tmp_path / 'rnn.h5'), show=False)
    b.loadParameters(str(tmp_path / 'rnn.h5'), strict=True)
    for pa, pb in zip(a.params, b.params):
        assert torch.equal(pa, pb)
    assert [n for n in a.layers[0].param_names] == ['W_in', 'W_hid', 'b_hid', 'hid_0']
    b.randomizeWeights()


def test_errors_name_the_problem():
    cnn = MixedConvNN((8, 8), input_depth=1)
    cnn.addConvLayer(2, 3)
    with pytest.raises(ValueError, match='addRecurrentLayer needs input'):
        cnn.addRecurrentLayer(4)
    cnn = MixedConvNN(3)
    with pytest.raises(ValueError, match='give iterations'):
        cnn.addRecurrentLayer(4)
    with pytest.raises(ValueError, match='needs n_hid'):
        cnn.addRecurrentLayer()
    with pytest.raises(ValueError, match='cannot use maxout'):
        cnn.addRecurrentLayer(4, activation_func='maxout 2', iterations=2)
    with pytest.raises(ValueError, match='input_size must be the number of features'):
        MixedConvNN((4, 4), input_depth=2, recurrent=True)
    seq = MixedConvNN(3, input_depth=4, recurrent=True)
    with pytest.raises(ValueError, match='iterations=3 is only for input without one'):
        seq.addRecurrentLayer(4, iterations=3)
    seq.addRecurrentLayer(4)
    with pytest.raises(ValueError, match='recurrent layer cannot be the output layer'):
        seq.compileOutputFunctions()


@pytest.mark.parametrize('shape, iterations', [((2, 4, 3), None), ((2, 3), 3)])
def test_gradient(shape, iterations):
    layer = RecurrentLayer(3, 4, activation_func='tanh', iterations=iterations).double()
    names = list(layer.param_names)
    values = [getattr(layer, n).detach().clone().requires_grad_() for n in names]
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    fn = lambda x, *ps: torch.func.functional_call(layer, dict(zip(names, ps)), (x,))
    assert torch.autograd.gradcheck(fn, (x, *values), fast_mode=True)
