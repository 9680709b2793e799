"""MixedConvNN: printouts, layouts, the compiled callables, errors, dropout and parameter files."""
import re
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch
from torch.nn import functional as F

import elektronn
from elektronn.net import net_builder, net_inputs, net_io, training_step
from elektronn.net.convnet import MixedConvNN

MNIST_EXPECTED = """------------------------------------------------------------
Input shape   =  (50, 1, 26, 26) ; This is a 2 dimensional NN
---
2DConv: input= (50, 1, 26, 26) \tfilter= (16, 1, 3, 3)
Output = (50, 16, 12, 12) Dropout OFF, Act: relu pool: max
Computational Cost: 4.1 Mega Ops
---
2DConv: input= (50, 16, 12, 12) \tfilter= (32, 16, 3, 3)
Output = (50, 32, 5, 5) Dropout OFF, Act: relu pool: max
Computational Cost: 23.0 Mega Ops
---
PerceptronLayer( #Inputs = 800 #Outputs = 300 )
Computational Cost: 12.0 Mega Ops
---
PerceptronLayer( #Inputs = 300 #Outputs = 300 )
Computational Cost: 4.5 Mega Ops
---
PerceptronLayer( #Inputs = 300 #Outputs = 10 )
Computational Cost: 150.0 kilo Ops
---
GLOBAL
Computational Cost: 43.8 Mega Ops
Total Count of trainable Parameters: 338410
Building Computational Graph took X s
Compiling output functions for nll target:
\tusing no class_weights
\tusing no example_weights
\tusing no lazy_labels
\tlabel propagation inactive
"""


def mnist_cnn(batch_size=50, act='relu', **kw):
    cnn = MixedConvNN((26, 26), input_depth=1, batch_size=batch_size, **kw)
    cnn.addConvLayer(16, 3, pool_shape=2, activation_func=act)
    cnn.addConvLayer(32, 3, pool_shape=2, activation_func=act)
    cnn.addPerceptronLayer(300, activation_func=act)
    cnn.addPerceptronLayer(300, activation_func=act)
    cnn.addPerceptronLayer(10, activation_func='linear', force_no_dropout=True)
    return cnn


def small_3d(n_lab=2, **kw):
    cnn = MixedConvNN((5, 12, 12), input_depth=2, **kw)
    cnn.addConvLayer(4, (1, 3, 3), pool_shape=(1, 2, 2), activation_func='tanh')
    cnn.addConvLayer(5, (3, 2, 2), pool_shape=1, activation_func='relu')
    cnn.addConvLayer(n_lab, 1, pool_shape=1, activation_func='linear', is_last_layer=True)
    return cnn


def small_mlp(n_in=6, n_lab=3, **kw):
    cnn = MixedConvNN(n_in, **kw)
    cnn.addPerceptronLayer(8, activation_func='tanh')
    cnn.addPerceptronLayer(n_lab, activation_func='linear')
    return cnn


def test_mnist_printout_matches_examples_page(capsys):
    cnn = mnist_cnn()
    cnn.compileOutputFunctions()
    out = capsys.readouterr().out
    out = re.sub(r'took \d+\.\d{3} s', 'took X s', out)
    assert out.startswith(MNIST_EXPECTED)
    assert cnn.param_count == 338410
    assert cnn.TotalForwardPassCost == 43837200


def test_import_line_is_printed_once():
    code = 'import elektronn.net.convnet; import elektronn.net.convnet; from elektronn.net import MixedConvNN'
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout
    assert out == 'Load ELEKTRONN Core\n'


def test_printouts_follow_the_log_level(capsys):
    with elektronn.use_log_level('WARNING'):
        cnn = mnist_cnn()
        cnn.compileOutputFunctions()
        cnn.paramstats()
    assert capsys.readouterr().out == ''
    cnn.actstats(np.zeros((1, 1, 26, 26), np.float32))
    assert capsys.readouterr().out.startswith('Activation statistics\nshape=(1, 16, 12, 12),')


def test_risky_settings_warn_instead_of_printing(capsys):
    rnn = MixedConvNN(3, input_depth=6, recurrent=True)
    with pytest.warns(UserWarning, match=r'linear activation in recurrent layer with fanout-5! Is this the output'):
        rnn.addRecurrentLayer(n_hid=5, activation_func='linear')
    cnn = small_mlp()
    cnn.addPerceptronLayer(2, add_in_output_layers=True)
    with pytest.warns(UserWarning, match=r'only applies to the LAST layer in self.layers \(and ignores elements'):
        cnn.compileOutputFunctions()
    out = capsys.readouterr().out
    assert 'RecurrentLayer( #Inputs = 3 #Hidden =  5 )' in out and 'Warning' not in out


def test_one_class_composed_of_one_mixin_per_job():
    jobs = {net_builder.NetBuilderMixin: ('addConvLayer', 'addPerceptronLayer', 'addRecurrentLayer',
                                          'addTiedAutoencoderChain', '__repr__'),
            net_inputs.NetInputsMixin: ('_to_input', '_to_labels', '_prepare', '_stage_batch'),
            training_step.TrainingStepMixin: ('compileOutputFunctions', 'trainingStep', 'setOptimizerParams',
                                              'get_error', 'get_loss', 'class_probabilities', 'setDropoutRates'),
            net_io.NetIOMixin: ('saveParameters', 'loadParameters', 'compileDebugFunctions', 'gradstats',
                                'get_activities')}
    for mixin, names in jobs.items():
        assert issubclass(MixedConvNN, mixin)
        for name in names:
            assert getattr(MixedConvNN, name) is vars(mixin)[name], name
    assert repr(small_mlp()).startswith('MixedConvNN(input_shape=(None, 6), 2 layers)')


def test_3d_layout_printout_and_probabilities(capsys):
    cnn = small_3d()
    cnn.compileOutputFunctions()
    out = capsys.readouterr().out
    assert 'Input shape   =  (None, 5, 2, 12, 12) ; This is a 3 dimensional NN' in out
    assert '3DConv: input= (None, 5, 2, 12, 12) \tfilter= (4, 1, 2, 3, 3)' in out
    assert 'Output = (None, 5, 4, 5, 5) Dropout OFF, Act: tanh pool: max' in out
    assert 'Class Prob Output = (None, 2, 3, 4, 4)' in out
    data = np.random.rand(3, 5, 2, 12, 12).astype(np.float32)
    prob = cnn.class_probabilities(data)
    assert prob.shape == (3, 2, 3, 4, 4)
    np.testing.assert_allclose(prob.sum(axis=1), 1, rtol=1e-5)
    assert cnn.output_strides == [1, 2, 2]
    assert cnn.n_lab == 2


def test_3d_forward_equals_plain_torch_on_transposed_input():
    cnn = MixedConvNN((4, 7, 6), input_depth=2)
    cnn.addConvLayer(3, (2, 3, 2), pool_shape=(1, 1, 2), activation_func='tanh')
    cnn.addConvLayer(2, 1, pool_shape=1, activation_func='linear', is_last_layer=True)
    cnn.compileOutputFunctions()
    data = np.random.rand(2, 4, 2, 7, 6).astype(np.float32)  # (bs, z, ch, x, y)
    x = torch.from_numpy(data.transpose(0, 2, 1, 3, 4).copy())
    l0, l1 = cnn.layers
    h = torch.tanh(F.max_pool3d(F.conv3d(x, l0.W.detach(), l0.b.detach()), (1, 1, 2)))
    ref = torch.softmax(F.conv3d(h, l1.W.detach(), l1.b.detach()), dim=1).numpy()
    np.testing.assert_allclose(cnn.class_probabilities(data), ref, rtol=1e-5, atol=1e-6)


def test_2d_conv_output_layer_and_reference_loss():
    cnn = MixedConvNN((10, 9), input_depth=1)
    cnn.addConvLayer(4, 3, pool_shape=(2, 1), activation_func='abs', pooling_mode='maxabs')
    cnn.addConvLayer(3, 2, pool_shape=1, activation_func='linear', is_last_layer=True)
    cnn.compileOutputFunctions(use_class_weights=True)
    data = np.random.rand(4, 1, 10, 9).astype(np.float32)
    labels = np.random.randint(-1, 3, (4, 3, 6)).astype(np.int16)
    cw = np.array([0.5, 1.0, 2.0], np.float32)
    loss, err, pred = cnn.get_error(data, labels, cw)
    prob = cnn.class_probabilities(data).astype(np.float64)
    assert prob.shape == (4, 3, 3, 6)
    valid = labels >= 0
    p_true = np.take_along_axis(prob, np.maximum(labels, 0)[:, None].astype(np.int64), 1)[:, 0]
    ref = (-np.log(p_true + 1e-6) * cw[np.maximum(labels, 0)] * valid).sum() / valid.sum()
    assert loss == pytest.approx(ref, rel=1e-5)
    assert err == pytest.approx(((prob.argmax(1) != labels) & valid).sum() / valid.sum())
    assert pred.shape == (4, 3, 6)
    loss2, inst = cnn.get_loss(data, labels, class_weights=cw)
    assert loss2 == pytest.approx(loss, rel=1e-6) and inst.shape == labels.shape


def test_evaluation_in_chunks_equals_single_pass():
    cnn = small_mlp()
    cnn.compileOutputFunctions()
    data = np.random.randn(103, 6).astype(np.float32)
    labels = np.random.randint(0, 3, 103)
    whole = cnn.get_error(data, labels)
    cnn._eval_chunk = 10
    chunked = cnn.get_error(data, labels)
    assert chunked[0] == pytest.approx(whole[0], rel=1e-6)
    assert chunked[1] == whole[1]
    np.testing.assert_array_equal(chunked[2], whole[2])


def test_regression_get_error_returns_loss_and_output():
    cnn = small_mlp(n_lab=6)
    cnn.compileOutputFunctions(target='regression')
    data = np.random.randn(5, 6).astype(np.float32)
    loss, out = cnn.get_error(data, data)
    assert out.shape == (5, 6)
    assert loss == pytest.approx(((out - data) ** 2).mean(), rel=1e-5)
    np.testing.assert_allclose(cnn.prediction(data), out, rtol=1e-6)
    np.testing.assert_allclose(cnn.class_probabilities(data), out, rtol=1e-6)


def test_conv_regression_broadcasts_targets():
    cnn = MixedConvNN((6, 6), input_depth=1)
    cnn.addConvLayer(1, 3, pool_shape=1, activation_func='sigmoid', is_last_layer=True)
    cnn.compileOutputFunctions(target='regression')
    data = np.random.rand(2, 1, 6, 6).astype(np.float32)
    target = np.random.rand(2, 4, 4).astype(np.float32)
    loss, out = cnn.get_error(data, target)
    assert out.shape == (2, 1, 4, 4)
    assert loss == pytest.approx(((out[:, 0] - target) ** 2).mean(), rel=1e-5)
    assert cnn.trainingStep(data, target)[1].shape == (2, 1, 4, 4)


@pytest.mark.parametrize('build, match', [
    (lambda: MixedConvNN(), 'input_size is required'),
    (lambda: MixedConvNN((1, 2, 3, 4)), r'1, 2 or 3 entries .* got \(1, 2, 3, 4\)'),
    (lambda: MixedConvNN((10, -3)), r'positive integers, got \(10, -3\)'),
    (lambda: MixedConvNN((10, 10), input_depth=0), 'input_depth must be a positive integer or None, got 0'),
    (lambda: MixedConvNN((10, 10), batch_size=2.5), 'batch_size must be a positive integer or None, got 2.5'),
    (lambda: MixedConvNN(10).addConvLayer(2, 3), 'addConvLayer needs image input'),
    (lambda: MixedConvNN((9, 9), 1).addConvLayer(2, 3, activation_func='swish'), "got 'swish'"),
    (lambda: MixedConvNN((9, 9), 1).addConvLayer(2, 3, activation_func='maxout x'), "'maxout x'"),
    (lambda: MixedConvNN((9, 9), 1).addConvLayer(2, 3, pooling_mode='mean'), "got 'mean'"),
    (lambda: MixedConvNN((9, 9), 1).addConvLayer(0, 3), 'nof_filters must be a positive integer, got 0'),
    (lambda: MixedConvNN((9, 9), 1).addConvLayer(2, (3, 3, 3)), r'filter_size must be a scalar or have 2 entries'),
    (lambda: MixedConvNN((9, 9), 1).addConvLayer(2, 12), 'do not fit the layer input'),
    (lambda: MixedConvNN((9, 9), 1).addConvLayer(3, 3, activation_func='maxout 2'), 'divisible by the maxout'),
    (lambda: MixedConvNN(9).addPerceptronLayer(-1), 'n_outputs must be a positive integer, got -1'),
    (lambda: MixedConvNN(9).addPerceptronLayer(4, W=np.zeros((3, 4))), r'W must have shape \(9, 4\)'),
])
def test_bad_arguments_raise_with_the_value(build, match):
    with pytest.raises((ValueError, TypeError), match=match):
        build()


def test_conv_after_perceptron_is_refused():
    cnn = MixedConvNN((9, 9), 1)
    cnn.addPerceptronLayer(4)
    with pytest.raises(ValueError, match='on top of a perceptron'):
        cnn.addConvLayer(2, 3)


def test_features_of_later_versions_raise_not_implemented():
    cnn = MixedConvNN((9, 9), 1)
    cnn.addConvLayer(2, 3, pool_shape=1, is_last_layer=True)
    with pytest.raises(ValueError, match="target 'malis' needs an affinity output layer"):
        cnn.compileOutputFunctions(target='malis')
    with pytest.raises(ValueError, match="target must be one of .* got 'nl'"):
        cnn.compileOutputFunctions(target='nl')


def test_data_and_label_checks():
    cnn = mnist_cnn(batch_size=None)
    with pytest.raises(RuntimeError, match='compileOutputFunctions'):
        cnn.trainingStep(np.zeros((2, 1, 26, 26)), np.zeros(2))
    cnn.compileOutputFunctions()
    data = np.random.rand(2, 1, 26, 26).astype(np.float32)
    with pytest.raises(ValueError, match='labels contain class 10 .* 0..9'):
        cnn.trainingStep(data, np.array([1, 10]))
    with pytest.raises(ValueError, match=r'labels must have shape \(2,\)'):
        cnn.get_error(data, np.zeros((2, 3), int))
    with pytest.raises(ValueError, match=r'data has 3 channel\(s\)'):
        cnn.get_error(np.zeros((2, 3, 26, 26), np.float32), np.zeros(2, int))
    with pytest.raises(ValueError, match=r'needs exactly \(26, 26\)'):
        cnn.class_probabilities(np.zeros((2, 1, 28, 28), np.float32))
    with pytest.raises(TypeError, match='integer class indices'):
        cnn.get_error(data, np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="mode must be one of .* got 'SDG'"):
        cnn.trainingStep(data, np.array([1, 2]), mode='SDG')
    with pytest.raises(ValueError, match='not matching the compiled signature'):
        cnn.trainingStep(data, np.array([1, 2]), np.ones(10))
    assert cnn.get_error(data, np.array([-1, -1]))[1] != cnn.get_error(data, np.array([-1, -1]))[1]  # NaN error


def test_aux_class_weights_positional_and_keyword():
    cnn = small_mlp()
    cnn.compileOutputFunctions(use_class_weights=True, use_example_weights=True)
    data = np.random.randn(4, 6).astype(np.float32)
    labels = np.array([0, 1, 2, 1])
    cw, ew = np.array([1, 2, 3], np.float32), np.array([1, 0, 1, 1], np.float32)
    a = cnn.get_loss(data, labels, cw, ew)[0]
    b = cnn.get_loss(data, labels, example_weights=ew, class_weights=cw)[0]
    assert a == b
    with pytest.raises(ValueError, match=r"missing auxiliary argument\(s\) \['example_weights'\]"):
        cnn.get_loss(data, labels, cw)
    with pytest.raises(ValueError, match=r'class_weights must have shape \(3,\)'):
        cnn.get_loss(data, labels, np.ones(2), ew)
    with pytest.raises(TypeError, match="unexpected auxiliary argument 'weights'"):
        cnn.get_loss(data, labels, cw, ew, weights=1)


def test_dropout_rates_and_evaluation_without_dropout():
    cnn = small_mlp(enable_dropout=True)
    assert cnn.getDropoutRates() == [0.5, 0.5]
    cnn = MixedConvNN(6, enable_dropout=True)
    cnn.addPerceptronLayer(20, activation_func='tanh')
    cnn.addPerceptronLayer(20, activation_func='tanh')
    cnn.addPerceptronLayer(3, activation_func='linear', force_no_dropout=True)
    cnn.compileOutputFunctions()
    assert cnn.getDropoutRates() == [0.5, 0.5]
    cnn.setDropoutRates([0.1, 0.2])  # one per layer with dropout
    assert cnn.getDropoutRates() == [0.1, 0.2]
    cnn.setDropoutRates([0.3, 0.4, 0.9])  # one per layer: the last layer has none and is skipped
    assert cnn.getDropoutRates() == [0.3, 0.4]
    with pytest.raises(ValueError, match=r'\[0, 1\], got 1.5'):
        cnn.setDropoutRates([0.5, 1.5])
    data = np.random.randn(5, 6).astype(np.float32)
    p1, p2 = cnn.class_probabilities(data), cnn.class_probabilities(data)
    np.testing.assert_array_equal(p1, p2)
    # training steps do drop units: two losses on the same batch with LR 0 differ
    cnn.setOptimizerParams(SGD={'LR': 0.0, 'momentum': 0.0})
    labels = np.array([0, 1, 2, 0, 1])
    losses = {float(cnn.trainingStep(data, labels)[0]) for _ in range(4)}
    assert len(losses) > 1
    cnn.setDropoutRates([0.0, 0.0])
    losses = {float(cnn.trainingStep(data, labels)[0]) for _ in range(3)}
    assert len(losses) == 1


def test_conv_dropout_mask_is_shared_over_batch_and_channels():
    cnn = MixedConvNN((6, 6), input_depth=1, enable_dropout=True)
    layer = cnn.addConvLayer(3, 3, pool_shape=1, activation_func='linear')
    layer.train()
    layer.dropout_rate = 0.5
    x = torch.ones(2, 1, 6, 6)
    y = layer.linear(x) - layer.b.view(1, -1, 1, 1)
    ref = F.conv2d(x, layer.W)
    ratio = (y / ref).detach()
    dropped = ratio == 0
    assert dropped.any() and (~dropped).any()
    assert torch.all(dropped == dropped[:1, :1])  # one mask for every example and channel
    assert torch.allclose(ratio[~dropped], torch.tensor(2.0))


def test_shared_weights_are_counted_and_trained_once():
    cnn = MixedConvNN(5)
    first = cnn.addPerceptronLayer(5, activation_func='tanh')
    second = cnn.addPerceptronLayer(5, activation_func='linear', W=first.W)
    cnn.compileOutputFunctions()
    assert cnn.param_count == 25 + 5 + 5
    assert second.weight is first.W
    before = first.W.detach().clone()
    cnn.setOptimizerParams(SGD={'LR': 0.1})
    cnn.trainingStep(np.random.randn(8, 5).astype(np.float32), np.random.randint(0, 5, 8))
    assert not torch.equal(before, first.W.detach())
    assert second.weight is first.W
    transposed = MixedConvNN(4)
    enc = transposed.addPerceptronLayer(3)
    dec = transposed.addPerceptronLayer(4, W=enc.W.T)
    assert torch.equal(dec.weight, enc.W.t())


def test_save_load_round_trip(tmp_path):
    cnn = mnist_cnn(batch_size=None, act='tanh')
    cnn.compileOutputFunctions()
    data = np.random.rand(3, 1, 26, 26).astype(np.float32)
    path = tmp_path / 'net.param'
    cnn.saveParameters(str(path))
    with h5py.File(path) as f:
        assert f.attrs['format'] == 'ELEKTRONN parameters'
        assert f['layer000/W'].shape == (16, 1, 3, 3)
        assert f['layer002/W'].shape == (800, 300)
    other = mnist_cnn(batch_size=None, act='tanh')
    other.compileOutputFunctions()
    assert not np.allclose(other.class_probabilities(data), cnn.class_probabilities(data))
    other.loadParameters(str(path), strict=True)
    np.testing.assert_array_equal(other.class_probabilities(data), cnn.class_probabilities(data))
    assert not list(tmp_path.glob('.*tmp*'))  # no temporary left behind


def test_adaptive_load_of_smaller_net_into_bigger(tmp_path):
    small = MixedConvNN((12, 12), input_depth=1)
    small.addConvLayer(4, 3, pool_shape=1, activation_func='tanh')
    small.addConvLayer(2, 3, pool_shape=1, activation_func='linear', is_last_layer=True)
    small.compileOutputFunctions()
    small.saveParameters(str(tmp_path / 's.param'))
    big = MixedConvNN((12, 12), input_depth=2)
    big.addConvLayer(8, 5, pool_shape=1, activation_func='tanh')
    big.addConvLayer(3, 3, pool_shape=1, activation_func='tanh')
    big.addConvLayer(2, 1, pool_shape=1, activation_func='linear', is_last_layer=True)
    big.compileOutputFunctions()
    big.loadParameters(str(tmp_path / 's.param'))
    W_small = small.layers[0].W.detach().numpy()
    W_big = big.layers[0].W.detach().numpy()
    assert W_big.shape == (8, 2, 5, 5)
    for f in range(8):  # filters tiled, channels tiled, the 3x3 kernel centred in 5x5
        for c in range(2):
            np.testing.assert_array_equal(W_big[f, c, 1:4, 1:4], W_small[f % 4, 0])
    np.testing.assert_array_equal(big.layers[0].b.detach().numpy(), np.tile(small.layers[0].b.detach().numpy(), 2))
    assert big.layers[1].W.shape == (3, 8, 3, 3)
    np.testing.assert_array_equal(big.layers[1].W.detach().numpy()[:2, :2], small.layers[1].W.detach().numpy()[:, :2])
    with pytest.raises(ValueError, match=r'layer 0 \(ConvLayer2d\) parameter W has shape \(4, 1, 3, 3\) in the file '
                                         r'but \(8, 2, 5, 5\)'):
        big2 = MixedConvNN((12, 12), input_depth=2)
        big2.addConvLayer(8, 5, pool_shape=1)
        big2.addConvLayer(2, 3, pool_shape=1, is_last_layer=True)
        big2.loadParameters(str(tmp_path / 's.param'), strict=True)


def test_pretraining_loads_first_layers_only(tmp_path):
    ae = MixedConvNN(20)
    ae.addPerceptronLayer(10)
    ae.addPerceptronLayer(4)
    ae.compileOutputFunctions(target='regression')
    ae.saveParameters(str(tmp_path / 'enc.param'), layers=ae.layers[0:1])
    clf = MixedConvNN(20)
    clf.addPerceptronLayer(10)
    clf.addPerceptronLayer(3)
    clf.compileOutputFunctions()
    before = clf.layers[1].W.detach().clone()
    clf.loadParameters(str(tmp_path / 'enc.param'))
    assert torch.equal(clf.layers[0].W, ae.layers[0].W)
    assert torch.equal(clf.layers[1].W, before)
    clf.randomizeWeights()
    clf.loadParameters(str(tmp_path / 'enc.param'), n_layers_to_load=0)
    assert not torch.equal(clf.layers[0].W, ae.layers[0].W)


def test_load_errors(tmp_path):
    cnn = small_mlp()
    cnn.compileOutputFunctions()
    with pytest.raises(FileNotFoundError, match='missing.param'):
        cnn.loadParameters(str(tmp_path / 'missing.param'))
    (tmp_path / 'junk.param').write_text('not a parameter file')
    with pytest.raises(ValueError, match='not an ELEKTRONN parameter file'):
        cnn.loadParameters(str(tmp_path / 'junk.param'))
    with h5py.File(tmp_path / 'other.h5', 'w') as f:
        f['x'] = np.zeros(3)
    with pytest.raises(ValueError, match='HDF5 file but not an ELEKTRONN parameter file'):
        cnn.loadParameters(str(tmp_path / 'other.h5'))


def test_randomize_and_reset():
    cnn = small_mlp()
    cnn.compileOutputFunctions()
    W = cnn.layers[0].W.detach().clone()
    cnn.randomizeWeights()
    assert not torch.equal(W, cnn.layers[0].W)
    bound = np.sqrt(2.0 / (6 + 8))
    assert float(cnn.layers[0].W.detach().abs().max()) <= bound


def test_stats_printouts(capsys):
    cnn = small_3d()
    cnn.compileOutputFunctions()
    data = np.random.rand(1, 5, 2, 12, 12).astype(np.float32)
    labels = np.random.randint(0, 2, (1, 3, 4, 4))
    cnn.paramstats()
    cnn.gradstats(data, labels)
    cnn.actstats(data)
    out = capsys.readouterr().out
    assert 'Parameters statistics' in out and 'Gradient statistics' in out and 'Activation statistics' in out
    assert out.count('shape=') == 6 + 6 + 3
    acts = cnn.get_activities(data)
    assert [a.shape for a in acts] == [(1, 5, 4, 5, 5), (1, 3, 5, 4, 4), (1, 3, 2, 4, 4)]
    assert cnn.get_nonpooled_activities(data)[0].shape == (1, 5, 4, 10, 10)


def test_fixed_batch_size_accepts_other_batches():
    cnn = mnist_cnn(batch_size=50)
    cnn.compileOutputFunctions()
    assert cnn.class_probabilities(np.random.rand(7, 1, 26, 26).astype(np.float32)).shape == (7, 10)
