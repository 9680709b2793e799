"""Reduced precision (``setPrecision``, :mod:`elektronn.net.precision`): bf16/fp16 results against float32
ones of the same weights on every kind of layer, training steps (SGD, Adam, CG, LBFGS), max-fragment-pooling,
``predictDense(precision=...)``, the float32 fall-back, loss scaling and parameter files.

The CPU flags are forced with ``ELEKTRONN_CPU_FLAGS`` (:func:`elektronn.net.precision.cpu_flags`): with
``avx512_bf16 avx512_fp16`` both reduced precisions count as native (fp16 is then emulated on a CPU without
AVX512_FP16: slower, but the numbers are those of float16), with ``none`` neither does.
"""
import json
import math
import re
import warnings

import h5py
import numpy as np
import pytest
import torch

from elektronn import log
from elektronn.net import precision as P
from elektronn.net.convnet import MixedConvNN

from test_prediction import build as build_conv_net

# Tolerances, in units of the unit roundoff u of each format (half the spacing of the numbers near 1).
# bf16 keeps 8 significant bits (7 stored + 1 implicit: ~2.4 decimal digits), u = 2^-8 ~ 3.9e-3; fp16 keeps
# 11 (~3.3 digits), u = 2^-11 ~ 4.9e-4. The autocast forward pass rounds every conv / matrix-product output
# to that format (accumulating in float32), so each layer adds a relative error of about u.
UNIT_ROUNDOFF = {'bf16': 2.0 ** -8, 'fp16': 2.0 ** -11}
#: Probabilities (and the tanh outputs of the autoencoder) lie in [-1, 1]: absolute tolerance 2u. Measured on
#: these nets (also predictDense and MFP): bf16 <= 3.0e-3 (0.77u), fp16 <= 2.9e-4 (0.60u).
PROB_ATOL = {k: 2 * u for k, u in UNIT_ROUNDOFF.items()}
#: Loss (mean NLL / MSE, a sum of many rounded terms whose errors partly cancel): relative tolerance u.
#: Measured: bf16 <= 7.6e-4 (0.19u), fp16 <= 4.5e-5 (0.09u).
LOSS_RTOL = dict(UNIT_ROUNDOFF)
#: A training step's parameter update (||update - update_fp32|| / ||update_fp32|| over all parameters): 10u.
#: The backward pass repeats the rounding of the forward pass and gradients are sums with cancellation,
#: so the relative error is a few u. Measured (SGD updates, Adam's first moments): bf16 <= 6.1e-3 (1.6u),
#: fp16 <= 1.0e-3 (2.0u); with other random data up to 9u (see conv3d_anisotropic for what relu can do).
TRAIN_RTOL = {k: 10 * u for k, u in UNIT_ROUNDOFF.items()}
#: Adam divides every gradient entry by its own magnitude, so an entry whose float32 gradient is ~0 takes a
#: step of +-LR whatever the sign of its rounding noise: its update is compared only where the float32
#: gradient is at least this fraction of the largest one (the first moment, i.e. the gradient, everywhere).
#: Over all entries the bf16 Adam update differs by up to 12% (30u) here, over these < 1e-4.
ADAM_GRADIENT_FLOOR = 1e-2

BOTH_FLAGS = 'avx512_bf16 avx512_fp16'
REDUCED = ('bf16', 'fp16')


@pytest.fixture
def native(monkeypatch):
    """Both reduced precisions count as native on this CPU."""
    monkeypatch.setenv('ELEKTRONN_CPU_FLAGS', BOTH_FLAGS)


@pytest.fixture(autouse=True)
def _quiet():
    """No printouts unless a test asks for them (keeps the captured output of the failures short)."""
    with log.use_log_level('WARNING'):
        yield


# ----------------------------------------------------------------------------------------------------
# Small networks of every kind: builder() -> (cnn, data, labels, n_classes per softmax or None)
# ----------------------------------------------------------------------------------------------------
def mnist_like():
    cnn = MixedConvNN((16, 16), input_depth=1)
    cnn.addConvLayer(4, 3, pool_shape=2, activation_func='relu')
    cnn.addPerceptronLayer(12, activation_func='tanh')
    cnn.addPerceptronLayer(3, activation_func='linear')
    cnn.compileOutputFunctions()
    rng = np.random.RandomState(0)
    return cnn, rng.rand(6, 1, 16, 16).astype(np.float32), rng.randint(0, 3, 6).astype(np.int16), 3


def conv3d_anisotropic():
    """tanh, not relu, in the middle: this net's gradients cancel strongly (random labels), and a relu gate whose
    input lies within rounding of 0 flips in bf16 and moves a whole position's contribution (one such flip among
    216 gates made a bf16 update differ by 38% with relu here). mnist_like and mfp3d keep relu."""
    cnn = MixedConvNN((5, 10, 10), input_depth=2)
    cnn.addConvLayer(4, (1, 3, 3), pool_shape=(1, 2, 2), activation_func='tanh')
    cnn.addConvLayer(4, (3, 2, 2), pool_shape=1, activation_func='tanh')
    cnn.addConvLayer(2, 1, pool_shape=1, activation_func='linear', is_last_layer=True)
    cnn.compileOutputFunctions()
    rng = np.random.RandomState(1)
    labels = rng.randint(0, 2, (2,) + cnn.output_shape[2:]).astype(np.int16)
    return cnn, rng.rand(2, 5, 2, 10, 10).astype(np.float32), labels, 2


def mfp3d():
    cnn = MixedConvNN((4, 12, 12), input_depth=1)
    cnn.addConvLayer(3, (1, 3, 3), pool_shape=(1, 2, 2), activation_func='relu', use_fragment_pooling=True)
    cnn.addConvLayer(4, (2, 3, 3), pool_shape=1, activation_func='tanh')
    cnn.addConvLayer(2, 1, pool_shape=1, activation_func='linear', is_last_layer=True)
    cnn.compileOutputFunctions()
    assert cnn.output_strides == [1, 1, 1]
    rng = np.random.RandomState(2)
    labels = rng.randint(0, 2, (1,) + cnn.output_shape[2:]).astype(np.int16)
    return cnn, rng.rand(1, 4, 1, 12, 12).astype(np.float32), labels, 2


def maxout_maxabs():
    """Maxout over filter pairs and maxabs pooling. Both pick one of several values, so where two candidates
    are (nearly) tied in float32 a rounding error flips the choice and the output jumps (with random float
    weights about 1 in 100 outputs differ by up to 0.2 in bf16). The first layer's inputs, filters and biases
    are therefore multiples of 1/4, 1/8 and 1/8: its sums are multiples of 1/32 below 5, exact in bf16 and
    fp16, so both precisions make the same choices; the output layer has random weights."""
    rng = np.random.RandomState(3)
    cnn = MixedConvNN((14, 14), input_depth=1)
    cnn.addConvLayer(4, 3, pool_shape=2, activation_func='maxout 2', pooling_mode='maxabs',
                     W=rng.randint(-4, 5, (4, 1, 3, 3)).astype(np.float32) / 8,
                     b=rng.randint(-2, 3, 4).astype(np.float32) / 8)
    cnn.addConvLayer(3, 2, pool_shape=1, activation_func='linear', is_last_layer=True)
    cnn.compileOutputFunctions()
    data = rng.randint(-4, 5, (3, 1, 14, 14)).astype(np.float32) / 4
    labels = rng.randint(0, 3, (3,) + cnn.output_shape[2:]).astype(np.int16)
    return cnn, data, labels, 3


def recurrent():
    """A vect-scalar network: a recurrent layer over (bs, time, features), a perceptron output."""
    cnn = MixedConvNN(3, input_depth=6, recurrent=True)
    cnn.addRecurrentLayer(n_hid=5, activation_func='tanh')
    cnn.addPerceptronLayer(2, activation_func='linear')
    cnn.compileOutputFunctions()
    rng = np.random.RandomState(4)
    return cnn, rng.randn(8, 6, 3).astype(np.float32), rng.randint(0, 2, 8).astype(np.int16), 2


def affinity():
    cnn = MixedConvNN((4, 7, 7), input_depth=1)
    cnn.addConvLayer(3, (2, 3, 3), pool_shape=1, activation_func='tanh')
    cnn.addConvLayer(2, 1, pool_shape=1, activation_func='linear', is_last_layer=True, affinity=True)
    cnn.compileOutputFunctions(target='affinity')
    rng = np.random.RandomState(5)
    labels = rng.randint(-1, 2, (2, 3, 3, 5, 5)).astype(np.int16)
    return cnn, rng.rand(2, 4, 1, 7, 7).astype(np.float32), labels, 2


def tied_autoencoder():
    cnn = MixedConvNN(36, input_depth=None)
    for n in (20, 12, 5):
        cnn.addPerceptronLayer(n_outputs=n, activation_func='tanh')
    cnn.addTiedAutoencoderChain(n_layers=None, activation_func='tanh', input_noise=0.3)
    cnn.compileOutputFunctions(target='regression')
    data = np.random.default_rng(0).random((16, 36)).astype(np.float32) - 0.5
    return cnn, data, data, None


NETS = {f.__name__: f for f in (mnist_like, conv3d_anisotropic, mfp3d, maxout_maxabs, recurrent, affinity,
                                tied_autoencoder)}


def build(name, precision='fp32'):
    """A network of kind ``name``, its weights drawn from a fixed seed (the same for every call)."""
    torch.manual_seed(0)
    np.random.seed(0)
    net = NETS[name]()
    assert net[0].setPrecision(precision) == precision
    return net


def snapshot(cnn):
    return [p.detach().clone() for p in cnn.params]


def rel_diff(a, b):
    """||a - b|| / ||b|| over lists of arrays / tensors."""
    a = np.concatenate([np.asarray(v, np.float64).ravel() for v in a])
    b = np.concatenate([np.asarray(v, np.float64).ravel() for v in b])
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def top2_margin(prob, pred_shape, n_classes):
    """Per predicted position: the largest class probability minus the second largest."""
    grouped = np.sort(prob.reshape(prob.shape[:1] + (-1, n_classes) + prob.shape[2:]), axis=2)
    return (grouped[:, :, -1] - grouped[:, :, -2]).reshape(pred_shape)


# ----------------------------------------------------------------------------------------------------
# 1. Evaluation in bf16 / fp16 against float32
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('precision', REDUCED)
@pytest.mark.parametrize('name', sorted(NETS))
def test_evaluation_agrees_with_float32(name, precision, native):
    cnn, data, labels, n_classes = build(name)
    prob32 = cnn.class_probabilities(data)
    result32 = cnn.get_error(data, labels)
    loss32, instance32 = cnn.get_loss(data, labels)

    assert cnn.setPrecision(precision) == precision and cnn.precision == precision
    prob = cnn.class_probabilities(data)
    result = cnn.get_error(data, labels)
    loss, instance = cnn.get_loss(data, labels)

    assert prob.dtype == np.float32 and prob.shape == prob32.shape
    assert not np.array_equal(prob, prob32)  # it did compute in reduced precision
    np.testing.assert_allclose(prob, prob32, rtol=0, atol=PROB_ATOL[precision])
    assert loss == pytest.approx(loss32, rel=LOSS_RTOL[precision])
    assert result[0] == pytest.approx(result32[0], rel=LOSS_RTOL[precision]) and result[0] == loss
    assert instance.dtype == np.float32 and instance.shape == instance32.shape
    if n_classes is None:  # regression: (loss, activated output)
        np.testing.assert_allclose(result[1], result32[1], rtol=0, atol=PROB_ATOL[precision])
    else:  # [loss, error rate, class prediction]: the same classes wherever float32 is not nearly tied
        pred, pred32 = result[2], result32[2]
        margin = top2_margin(prob32, pred32.shape, n_classes)
        clear = margin > 2 * PROB_ATOL[precision]
        assert clear.mean() > 0.8
        np.testing.assert_array_equal(pred[clear], pred32[clear])
        assert abs(result[1] - result32[1]) <= (~clear).mean() + 1e-12

    assert all(p.dtype == torch.float32 for p in cnn.params)
    assert cnn.setPrecision('fp32') == 'fp32'  # and back: float32 exactly as before
    np.testing.assert_array_equal(cnn.class_probabilities(data), prob32)


# ----------------------------------------------------------------------------------------------------
# 2. Training steps
# ----------------------------------------------------------------------------------------------------
def one_step(name, precision, mode):
    """Parameters before and after one ``mode`` step from the same weights and random state, and the
    optimiser state."""
    cnn, data, labels, _ = build(name, precision)
    before = snapshot(cnn)
    torch.manual_seed(7)  # the autoencoder's input noise
    loss, instance, _ = cnn.trainingStep(data, labels, mode=mode)
    assert np.isfinite(loss) and np.isfinite(instance).all()
    return cnn, before, snapshot(cnn), cnn.optimizer_state()[mode]


@pytest.mark.parametrize('mode', ['SGD', 'Adam'])
@pytest.mark.parametrize('precision', REDUCED)
@pytest.mark.parametrize('name', sorted(NETS))
def test_training_step_moves_the_parameters_like_float32(name, precision, mode, native):
    _, before32, after32, state32 = one_step(name, 'fp32', mode)
    cnn, before, after, state = one_step(name, precision, mode)
    for a, b in zip(before, before32):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # the same start
    update32 = [(a - b).numpy() for a, b in zip(after32, before32)]
    update = [(a - b).numpy() for a, b in zip(after, before)]
    assert any(u.any() for u in update)

    # parameters, their gradients and the optimiser's buffers stay float32
    assert all(p.dtype == torch.float32 and (p.grad is None or p.grad.dtype == torch.float32) for p in cnn.params)
    buffers = [b for v in state.values() if isinstance(v, list) for b in v]
    assert buffers and all(b.dtype == np.float32 for b in buffers)
    assert [b.shape for b in buffers] == [b.shape for v in state32.values() if isinstance(v, list) for b in v]

    if mode == 'SGD':
        assert rel_diff(update, update32) < TRAIN_RTOL[precision]
    else:
        assert state['t'] == state32['t'] == 1
        assert rel_diff(state['m'], state32['m']) < TRAIN_RTOL[precision]  # m = (1 - beta1) * gradient
        g32 = np.concatenate([m.ravel() for m in state32['m']])
        clear = np.abs(g32) >= ADAM_GRADIENT_FLOOR * np.abs(g32).max()
        u, u32 = (np.concatenate([v.ravel() for v in x]) for x in (update, update32))
        assert rel_diff([u[clear]], [u32[clear]]) < TRAIN_RTOL[precision]
    # later steps compute in the same precision again
    assert cnn.precision == precision


@pytest.mark.parametrize('mode', ['CG', 'LBFGS'])
@pytest.mark.parametrize('precision', REDUCED)
def test_cg_and_lbfgs_compute_in_float32(precision, mode, native):
    """Their line searches compare losses closely: a bf16/fp16 network steps exactly as a float32 one, and
    evaluates in its own precision again afterwards."""
    results = {}
    for p in ('fp32', precision):
        cnn, data, labels, _ = build('mnist_like', p)
        cnn.setOptimizerParams(CG={'max_step': 1.0, 'min_step': 1e-3})
        first = cnn.get_loss(data, labels)[0]
        losses = [cnn.trainingStep(data, labels, mode=mode)[0] for _ in range(2)]
        results[p] = cnn, first, losses, snapshot(cnn), [list(t) for t in cnn.CG_timeline]
    cnn32, first32, losses32, params32, timeline32 = results['fp32']
    cnn, first, losses, params, timeline = results[precision]
    assert losses == losses32 and timeline == timeline32
    assert losses[-1] < 0.9 * first32  # it trained
    assert first != first32  # the loss before, evaluated in reduced precision
    for a, b in zip(params, params32):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert cnn.precision == precision
    loss32, loss = cnn32.get_loss(data, labels)[0], cnn.get_loss(data, labels)[0]
    assert loss != loss32 and loss == pytest.approx(loss32, rel=LOSS_RTOL[precision])
    if precision == 'fp16':  # no loss scaling in the float32 steps
        assert cnn.loss_scaler.state_dict() == P.LossScaler().state_dict()


def test_precision_set_before_compiling_is_kept(native):
    torch.manual_seed(0)
    cnn = MixedConvNN((16, 16), input_depth=1)
    cnn.addConvLayer(4, 3, pool_shape=2, activation_func='relu')
    cnn.addPerceptronLayer(3, activation_func='linear')
    assert cnn.setPrecision('bf16') == 'bf16'
    cnn.compileOutputFunctions()
    assert cnn.precision == 'bf16'
    data = np.random.RandomState(0).rand(4, 1, 16, 16).astype(np.float32)
    prob = cnn.class_probabilities(data)
    cnn.setPrecision('fp32')
    prob32 = cnn.class_probabilities(data)
    assert not np.array_equal(prob, prob32)
    np.testing.assert_allclose(prob, prob32, atol=PROB_ATOL['bf16'])


# ----------------------------------------------------------------------------------------------------
# 3. Max-fragment-pooling in reduced precision
# ----------------------------------------------------------------------------------------------------
def mfp_or_strided(input_size, mfp, weights=None):
    return build_conv_net(input_size, [(1, 3, 3), (2, 3, 3)], [(1, 2, 2), 1], [3, 4], mfp=[mfp, False], acts=['relu', 'tanh'],
                 weights=weights)


@pytest.mark.parametrize('precision', REDUCED)
def test_mfp_equals_strided_prediction_in_reduced_precision(precision, native):
    strided = mfp_or_strided((4, 12, 12), False)
    mfp = mfp_or_strided((6, 20, 18), True, [layer.param_arrays() for layer in strided.layers])
    assert strided.output_strides == [1, 2, 2] and mfp.output_strides == [1, 1, 1]
    raw = np.random.RandomState(0).rand(1, 20, 18, 6).astype(np.float32)  # (ch, x, y, z)
    reference = strided.predictDense(raw, show_progress=False)
    for cnn in (strided, mfp):
        assert cnn.setPrecision(precision) == precision
    stitched = strided.predictDense(raw, show_progress=False)
    dense = mfp.predictDense(raw, show_progress=False)
    assert dense.shape == stitched.shape == (2, 20 - 8, 18 - 8, 6 - 2)
    np.testing.assert_allclose(dense, stitched, rtol=0, atol=PROB_ATOL[precision])
    assert not np.array_equal(stitched, reference)
    np.testing.assert_allclose(stitched, reference, rtol=0, atol=PROB_ATOL[precision])


# ----------------------------------------------------------------------------------------------------
# 4. predictDense(precision=...)
# ----------------------------------------------------------------------------------------------------
def dense_net():
    torch.manual_seed(0)
    np.random.seed(0)
    cnn = MixedConvNN((16, 16), input_depth=1)
    cnn.addConvLayer(3, 3, pool_shape=2, activation_func='relu')
    cnn.addConvLayer(3, 3, pool_shape=1, activation_func='tanh')
    cnn.addConvLayer(2, 2, pool_shape=1, activation_func='linear', is_last_layer=True)
    cnn.compileOutputFunctions()
    return cnn


def predict_printed(cnn, raw, capsys, **kw):
    capsys.readouterr()
    with log.use_log_level('INFO'):
        out = cnn.predictDense(raw, show_progress=False, **kw)
    return out, capsys.readouterr().out


def test_predict_dense_precision_overrides_per_call(native, capsys):
    cnn = dense_net()
    raw = np.random.RandomState(0).rand(1, 31, 27).astype(np.float32)
    probe = np.random.RandomState(1).rand(2, 1, 16, 16).astype(np.float32)
    prob32 = cnn.class_probabilities(probe)
    out32, printed = predict_printed(cnn, raw, capsys)
    assert 'Predicting img' in printed and 'Precision' not in printed
    _, printed = predict_printed(cnn, raw, capsys, precision='fp32')
    assert 'Precision' not in printed

    for precision in REDUCED:
        out, printed = predict_printed(cnn, raw, capsys, precision=precision)
        assert 'Precision: %s' % precision in printed
        assert out.dtype == np.float32 and out.shape == out32.shape
        assert not np.array_equal(out, out32)
        np.testing.assert_allclose(out, out32, rtol=0, atol=PROB_ATOL[precision])
        assert cnn.precision == 'fp32'  # the network's setting is untouched
        np.testing.assert_array_equal(cnn.class_probabilities(probe), prob32)
    np.testing.assert_array_equal(cnn.predictDense(raw, show_progress=False), out32)

    # and the other way round: a bf16 network predicts in float32 when asked
    cnn.setPrecision('bf16')
    out_bf16, printed = predict_printed(cnn, raw, capsys)
    assert 'Precision: bf16' in printed
    out, printed = predict_printed(cnn, raw, capsys, precision='fp32')
    assert 'Precision' not in printed
    np.testing.assert_array_equal(out, out32)
    assert cnn.precision == 'bf16'
    np.testing.assert_array_equal(cnn.predictDense(raw, show_progress=False), out_bf16)


def test_predict_dense_restores_the_precision_after_an_error(native, monkeypatch):
    cnn = dense_net()
    probe = np.random.RandomState(1).rand(2, 1, 16, 16).astype(np.float32)
    prob32 = cnn.class_probabilities(probe)

    def broken(*args, **kwargs):
        raise RuntimeError('out of memory (simulated)')

    monkeypatch.setattr(cnn, '_predict', broken)
    with pytest.raises(RuntimeError, match='simulated'):
        cnn.predictDense(np.zeros((1, 20, 20), np.float32), show_progress=False, precision='bf16')
    monkeypatch.undo()
    assert cnn.precision == 'fp32'
    np.testing.assert_array_equal(cnn.class_probabilities(probe), prob32)


# ----------------------------------------------------------------------------------------------------
# 5. Fall-back to float32, 'auto', bad values
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('precision, flags, missing', [
    ('bf16', 'none', 'avx512_bf16 or amx_bf16'),
    ('fp16', 'none', 'avx512_fp16 or amx_fp16'),
    ('fp16', 'avx512_bf16', 'avx512_fp16 or amx_fp16'),
])
def test_fallback_to_float32_warns(precision, flags, missing, monkeypatch):
    monkeypatch.setenv('ELEKTRONN_CPU_FLAGS', flags)
    cnn, data, labels, _ = build('mnist_like')
    prob32 = cnn.class_probabilities(data)
    with pytest.warns(UserWarning, match=missing) as record:
        assert cnn.setPrecision(precision) == 'fp32'
    assert len(record) == 1 and "setPrecision='%s'" % precision in str(record[0].message)
    assert record[0].filename == __file__  # it points at the caller's line
    assert cnn.precision == 'fp32' and cnn.loss_scaler is None
    np.testing.assert_array_equal(cnn.class_probabilities(data), prob32)
    with pytest.warns(UserWarning, match=missing):
        out = dense_net().predictDense(np.ones((1, 20, 20), np.float32), show_progress=False, precision=precision)
    np.testing.assert_array_equal(out, dense_net().predictDense(np.ones((1, 20, 20), np.float32),
                                                                show_progress=False))


def test_predict_dense_fallback_warning_points_at_the_caller(monkeypatch):
    monkeypatch.setenv('ELEKTRONN_CPU_FLAGS', 'none')
    cnn = dense_net()
    with pytest.warns(UserWarning, match='avx512_bf16 or amx_bf16') as record:
        cnn.predictDense(np.ones((1, 20, 20), np.float32), show_progress=False, precision='bf16')
    assert record[0].filename == __file__


def test_flags_with_only_bf16_keep_bf16(monkeypatch):
    monkeypatch.setenv('ELEKTRONN_CPU_FLAGS', 'amx_bf16')
    cnn = build('recurrent')[0]
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert cnn.setPrecision('bf16') == 'bf16'


@pytest.mark.parametrize('flags, expected', [('none', 'fp32'), (BOTH_FLAGS, 'bf16'), ('avx512_bf16', 'bf16'),
                                             ('avx512_fp16', 'fp32')])
def test_auto_is_bf16_where_native_else_float32_without_warning(flags, expected, monkeypatch):
    monkeypatch.setenv('ELEKTRONN_CPU_FLAGS', flags)
    cnn = build('mnist_like')[0]
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert cnn.setPrecision('auto') == expected
        assert cnn.setPrecision(' AUTO ') == expected
    assert cnn.precision == expected
    assert P.auto_precision('cpu') == expected


@pytest.mark.parametrize('value', ['int8', 3, True, 'bf 16', 16.0])
def test_bad_precisions_raise_naming_the_value(value, native):
    cnn = build('mnist_like', 'bf16')[0]
    with pytest.raises(ValueError, match='setPrecision .*got %s' % (repr(value).replace('.', r'\.'),)):
        cnn.setPrecision(value)
    assert cnn.precision == 'bf16'  # unchanged
    with pytest.raises(ValueError, match='got %s' % (repr(value).replace('.', r'\.'),)):
        dense_net().predictDense(np.ones((1, 20, 20), np.float32), show_progress=False, precision=value)


@pytest.mark.parametrize('alias, expected', [(None, 'fp32'), (False, 'fp32'), ('float32', 'fp32'),
                                             ('bfloat16', 'bf16'), ('Float16', 'fp16'), ('half', 'fp16')])
def test_aliases(alias, expected, native):
    assert build('recurrent')[0].setPrecision(alias) == expected


# ----------------------------------------------------------------------------------------------------
# 6. Loss scaling (fp16)
# ----------------------------------------------------------------------------------------------------
def test_fp16_networks_have_a_loss_scaler_that_survives_resetting(native):
    cnn = build('mnist_like', 'fp16')[0]
    scaler = cnn.loss_scaler
    assert isinstance(scaler, P.LossScaler) and scaler.scale == 2.0 ** 16
    scaler.scale = 2.0 ** 10
    assert cnn.setPrecision('fp16') == 'fp16' and cnn.loss_scaler is scaler and scaler.scale == 2.0 ** 10
    assert cnn.setPrecision('bf16') == 'bf16' and cnn.loss_scaler is None  # bf16 has float32's range
    assert cnn.setPrecision('fp16') == 'fp16' and cnn.loss_scaler.scale == 2.0 ** 16


@pytest.mark.parametrize('mode', ['SGD', 'Adam'])
def test_overflow_skips_the_step_and_halves_the_scale(mode, native):
    cnn, data, labels, _ = build('conv3d_anisotropic', 'fp16')
    scaler = cnn.loss_scaler
    scaler.scale = 2.0 ** 40  # the scaled gradients overflow float16
    before = snapshot(cnn)
    loss, instance, _ = cnn.trainingStep(data, labels, mode=mode)
    assert np.isfinite(loss) and np.isfinite(instance).all()  # the loss is reported unscaled
    assert loss == pytest.approx(cnn.get_loss(data, labels)[0], rel=1e-6)
    for a, b in zip(snapshot(cnn), before):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # skipped
    assert all(p.grad is None for p in cnn.params)  # the gradients were dropped
    assert scaler.state_dict() == {'scale': 2.0 ** 39, 'good_steps': 0, 'skipped': 1}
    state = cnn.optimizer_state()[mode]
    assert state.get('t', 0) == 0  # Adam did not count the step
    assert all(not b.any() for v in state.values() if isinstance(v, list) for b in v)  # nor the momenta

    scaler.scale, scaler.growth_interval = 2.0 ** 8, 2
    cnn.trainingStep(data, labels, mode=mode)
    assert scaler.state_dict() == {'scale': 2.0 ** 8, 'good_steps': 1, 'skipped': 1}
    moved = snapshot(cnn)
    assert any(not torch.equal(a, b) for a, b in zip(moved, before))
    cnn.trainingStep(data, labels, mode=mode)
    assert scaler.state_dict() == {'scale': 2.0 ** 9, 'good_steps': 0, 'skipped': 1}  # grown
    assert any(not torch.equal(a, b) for a, b in zip(snapshot(cnn), moved))


def test_fp16_steps_with_different_scales_agree(native):
    """The scale is divided out again: with 2^4 and 2^14 the update is the same within fp16's rounding."""
    updates = []
    for scale in (2.0 ** 4, 2.0 ** 14):
        cnn, data, labels, _ = build('affinity', 'fp16')
        cnn.loss_scaler.scale = scale
        before = snapshot(cnn)
        cnn.trainingStep(data, labels, mode='SGD')
        assert cnn.loss_scaler.skipped == 0
        updates.append([(a - b).numpy() for a, b in zip(snapshot(cnn), before)])
    assert rel_diff(updates[0], updates[1]) < TRAIN_RTOL['fp16']


def parameter_with_grad(values):
    p = torch.nn.Parameter(torch.zeros(len(values)))
    p.grad = torch.tensor(values, dtype=torch.float32)
    return p


def test_loss_scaler_unscale():
    scaler = P.LossScaler(scale=8.0)
    a, b = parameter_with_grad([8.0, -16.0]), parameter_with_grad([4.0, 0.0])
    none = torch.nn.Parameter(torch.zeros(2))
    assert scaler.unscale([a, none, b]) is True
    torch.testing.assert_close(a.grad, torch.tensor([1.0, -2.0]), rtol=0, atol=0)
    torch.testing.assert_close(b.grad, torch.tensor([0.5, 0.0]), rtol=0, atol=0)
    assert none.grad is None
    for bad in (math.inf, -math.inf, math.nan):
        a, b = parameter_with_grad([1.0, bad]), parameter_with_grad([2.0, 3.0])
        assert scaler.unscale([a, b]) is False
        assert a.grad is None and b.grad is None  # all gradients dropped, also the finite ones
    assert scaler.unscale([torch.nn.Parameter(torch.zeros(1))]) is True  # no gradients: nothing overflowed
    assert scaler.state_dict() == {'scale': 8.0, 'good_steps': 0, 'skipped': 0}  # update() adapts, not unscale()


def test_loss_scaler_update_growth_and_bounds():
    scaler = P.LossScaler(scale=4.0, growth_interval=3)
    for _ in range(2):
        scaler.update(True)
    assert (scaler.scale, scaler.good_steps) == (4.0, 2)
    scaler.update(False)  # an overflow halves the scale and restarts the count
    assert scaler.state_dict() == {'scale': 2.0, 'good_steps': 0, 'skipped': 1}
    for _ in range(3):
        scaler.update(True)
    assert scaler.state_dict() == {'scale': 4.0, 'good_steps': 0, 'skipped': 1}
    floor = P.LossScaler(scale=1.5)
    floor.update(False)
    floor.update(False)
    assert floor.scale == 1.0 and floor.skipped == 2
    cap = P.LossScaler(scale=2.0 ** 24, growth_interval=1)
    cap.update(True)
    assert cap.scale == 2.0 ** 24


def test_loss_scaler_state_round_trip():
    scaler = P.LossScaler(scale=2.0 ** 12, growth_interval=5)
    for finite in (True, True, False, True):
        scaler.update(finite)
    state = scaler.state_dict()
    assert state == {'scale': 2.0 ** 11, 'good_steps': 1, 'skipped': 1}
    for saved in (state, json.loads(json.dumps(state))):  # resume states are stored as JSON
        other = P.LossScaler()
        other.load_state_dict(saved)
        assert other.state_dict() == state
    state['scale'] = 3  # an int is fine
    other.load_state_dict(state)
    assert other.scale == 3.0 and isinstance(other.scale, float)


@pytest.mark.parametrize('scale', [math.nan, math.inf, 0.5, 0.0, -4.0])
def test_loss_scaler_refuses_a_bad_saved_scale(scale):
    scaler = P.LossScaler(scale=64.0)
    scaler.update(False)
    before = scaler.state_dict()
    bad = {'scale': scale, 'good_steps': 0, 'skipped': 0}
    for saved in (bad, json.loads(json.dumps(bad))):  # also as it comes back from a JSON resume state
        with pytest.raises(ValueError, match=r'saved scale %s is not a finite number >= 1' % re.escape(repr(scale))):
            scaler.load_state_dict(saved)
        assert scaler.state_dict() == before


# ----------------------------------------------------------------------------------------------------
# 7. Parameter files of reduced-precision networks
# ----------------------------------------------------------------------------------------------------
def test_bf16_trained_parameters_are_saved_as_float32(native, tmp_path):
    cnn, data, labels, _ = build('conv3d_anisotropic', 'bf16')
    for _ in range(3):
        cnn.trainingStep(data, labels, mode='Adam')
    path = str(tmp_path / 'bf16.h5')
    cnn.saveParameters(path, show=False)
    datasets = {}
    with h5py.File(path, 'r') as f:
        f.visititems(lambda name, obj: datasets.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    expected = {'layer%03d/%s' % (i, name): getattr(layer, name).detach().numpy()
                for i, layer in enumerate(cnn.layers) for name in layer.param_names}
    assert sorted(datasets) == sorted(expected)
    assert {a.dtype for a in datasets.values()} == {np.dtype(np.float32)}
    for key, value in expected.items():
        np.testing.assert_array_equal(datasets[key], value)

    fresh, _, _, _ = NETS['conv3d_anisotropic']()  # other random weights, float32
    assert fresh.precision == 'fp32'
    assert not np.array_equal(fresh.class_probabilities(data), cnn.class_probabilities(data))
    fresh.loadParameters(path)
    cnn.setPrecision('fp32')
    np.testing.assert_array_equal(fresh.class_probabilities(data), cnn.class_probabilities(data))
    assert fresh.get_loss(data, labels)[0] == cnn.get_loss(data, labels)[0]
