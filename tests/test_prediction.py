"""Dense prediction: ``predictDense``, max-fragment-pooling and the voxel alignment of the output."""
import itertools

import sys

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from elektronn.net.convnet import MixedConvNN
from elektronn.net.netutils import CNNCalculator
from elektronn.net.prediction import dense_geometry


def build(input_size, filters, pools, maps, mfp=False, acts='relu', n_lab=2, target='nll', weights=None,
          pooling_mode='max', dimension_calc=None):
    """A conv net with a 1x1 output layer; ``mfp`` a bool or one flag per layer."""
    cnn = MixedConvNN(input_size, input_depth=1, dimension_calc=dimension_calc)
    flags = mfp if isinstance(mfp, (list, tuple)) else [mfp] * len(filters)
    acts = acts if isinstance(acts, (list, tuple)) else [acts] * len(filters)
    weights = weights or [(None, None)] * (len(filters) + 1)
    for n, f, p, m, a, (W, b) in zip(maps, filters, pools, flags, acts, weights):
        cnn.addConvLayer(n, f, pool_shape=p, activation_func=a, use_fragment_pooling=m, pooling_mode=pooling_mode,
                         W=W, b=b)
    cnn.addConvLayer(n_lab, 1, pool_shape=1, activation_func='sigmoid' if target == 'regression' else 'linear',
                     is_last_layer=True, W=weights[-1][0], b=weights[-1][1])
    cnn.compileOutputFunctions(target=target)
    return cnn


def weights_of(cnn):
    return [layer.param_arrays() for layer in cnn.layers]


def plain_strided_forward(cnn, x):
    """The network's linear output, computed with plain PyTorch ops from its weights (PyTorch layout)."""
    conv = F.conv2d if cnn.n_dim == 2 else F.conv3d
    pool = F.max_pool2d if cnn.n_dim == 2 else F.max_pool3d
    acts = {'relu': torch.relu, 'tanh': torch.tanh, 'sigmoid': torch.sigmoid, 'linear': lambda v: v, 'abs': torch.abs}
    for i, layer in enumerate(cnn.layers):
        x = conv(x, layer.W.detach().contiguous(), None)
        if any(p > 1 for p in layer.pool):
            if layer.pooling_mode == 'maxabs':
                high, low = pool(x, layer.pool), -pool(-x, layer.pool)
                x = torch.where(high >= -low, high, low)
            else:
                x = pool(x, layer.pool)
        x = x + layer.b.detach().view((1, -1) + (1,) * cnn.n_dim)
        if i < len(cnn.layers) - 1 or cnn.target == 'regression':
            x = acts[layer.activation_func](x)
    return x


def brute_force(cnn, raw):
    """Slide a field-of-view window over ``raw`` (ch, x, y[, z]) voxel by voxel: (n_lab, x', y'[, z']).

    Output voxel k is window ``raw[k:k + fov]``; there are ``n - 2 * floor(fov / 2)`` of them per axis
    (for an even field of view the last possible window is not predicted, as in the original)."""
    geom = dense_geometry(cnn)
    fov = geom.fov
    vol = torch.from_numpy(np.moveaxis(raw, -1, 1) if raw.ndim == 4 else raw).float()
    out_shape = list(geom.prediction_shape(vol.shape[1:]))
    windows = torch.stack([vol[(slice(None),) + tuple(slice(k, k + f) for k, f in zip(idx, fov))]
                           for idx in itertools.product(*[range(s) for s in out_shape])])
    with torch.no_grad():
        lin = plain_strided_forward(cnn, windows)
    assert lin.shape[2:] == (1,) * cnn.n_dim
    prob = lin if cnn.target == 'regression' else torch.softmax(lin, dim=1)
    prob = prob.reshape(len(windows), -1).T.reshape([-1] + out_shape).numpy()
    return np.moveaxis(prob, 1, -1) if raw.ndim == 4 else prob


def quiet_predict(cnn, raw, capsys, **kw):
    out = cnn.predictDense(raw, **kw)
    return out, capsys.readouterr().out


# Per case: filters, pools and maps (network order), a training input size and a volume (xyz).
CASES_2D = {
    'one_pool': ([3, 3, 2], [2, 1, 1], [4, 5, 3], (16, 16), (1, 31, 27)),
    'two_pools': ([3, 3, 2], [2, 2, 1], [4, 5, 3], (22, 22), (1, 37, 41)),
    'anisotropic': ([(3, 2), (3, 3), (2, 2)], [(2, 1), (1, 3), 1], [4, 5, 3], (18, 16), (1, 35, 33)),
}
CASES_3D = {
    'one_pool': ([(1, 3, 3), (2, 3, 3)], [(1, 2, 2), 1], [3, 4], (4, 12, 12), (1, 19, 17, 7)),
    'anisotropic': ([(1, 3, 2), (2, 3, 3), (2, 2, 2)], [(1, 2, 1), (2, 1, 2), 1], [3, 4, 3], (7, 12, 10),
                    (1, 21, 18, 10)),
}


@pytest.mark.parametrize('case', sorted(CASES_2D.items()) + sorted(CASES_3D.items()),
                         ids=['2d-' + k for k in sorted(CASES_2D)] + ['3d-' + k for k in sorted(CASES_3D)])
def test_mfp_equals_stitched_and_brute_force(case, capsys):
    name, (filters, pools, maps, patch, shape) = case
    rng = np.random.RandomState(0)
    raw = rng.rand(*shape).astype(np.float32)
    stitched_net = build(patch, filters, pools, maps, acts=['relu', 'tanh', 'abs'][:len(filters)])
    weights = weights_of(stitched_net)
    assert stitched_net.output_strides != [1] * stitched_net.n_dim
    vol_zxy = shape[1:] if len(shape) == 3 else (shape[3], shape[1], shape[2])
    mfp_net = build(vol_zxy, filters, pools, maps, mfp=True, acts=['relu', 'tanh', 'abs'][:len(filters)],
                    weights=weights)
    assert mfp_net.output_strides == [1] * mfp_net.n_dim
    stitched, printed = quiet_predict(stitched_net, raw, capsys)
    blocks = [int(v) for v in printed.split('Blocks: (')[1].split(')')[0].split(',')]
    assert max(blocks) > 1  # several tiles, the last ones cut off by the volume's end
    dense, printed = quiet_predict(mfp_net, raw, capsys)
    assert 'in 1 Blocks' in printed
    small_patch = tuple(max(f + 2, v * 2 // 3) for f, v in zip(dense_geometry(stitched_net).fov, vol_zxy))
    mfp_tiled = build(small_patch, filters, pools, maps, mfp=True, acts=['relu', 'tanh', 'abs'][:len(filters)],
                      weights=weights)
    tiled, printed = quiet_predict(mfp_tiled, raw, capsys)
    assert 'in 1 Blocks' not in printed
    reference = brute_force(stitched_net, raw)
    assert stitched.shape == dense.shape == reference.shape
    np.testing.assert_allclose(stitched, reference, atol=1e-5)
    np.testing.assert_allclose(dense, stitched, atol=1e-5)
    np.testing.assert_allclose(tiled, stitched, atol=1e-5)


def fragment_reference(cnn, x):
    """The original's MFP: phase-shifted pooled crops stacked on the batch axis, then interleaved
    back into a dense map at ``cnn.mfp_offsets`` with ``cnn.mfp_strides`` (plain PyTorch)."""
    conv = F.conv2d if cnn.n_dim == 2 else F.conv3d
    pool = F.max_pool2d if cnn.n_dim == 2 else F.max_pool3d
    for i, layer in enumerate(cnn.layers):
        x = conv(x, layer.W.detach().contiguous(), layer.b.detach())
        P = layer.pool
        if any(p > 1 for p in P):
            size = x.shape[2:]
            crops = [x[(slice(None), slice(None)) + tuple(slice(q, s - p + q + 1) for q, s, p in zip(ph, size, P))]
                     for ph in np.ndindex(*P)]
            x = torch.cat([pool(c, P) for c in crops])  # new phase outer, old fragment inner
        if i < len(cnn.layers) - 1:
            x = torch.relu(x)
    prob = torch.softmax(x, dim=1)
    S = cnn.mfp_strides
    dense = torch.zeros((1, prob.shape[1]) + tuple(s * m for s, m in zip(prob.shape[2:], S)))
    for frag, off in zip(prob, cnn.mfp_offsets):
        dense[(0, slice(None)) + tuple(slice(o, None, m) for o, m in zip(off, S))] = frag
    return dense.numpy()


@pytest.mark.parametrize('n_dim', [2, 3])
def test_mfp_equals_the_originals_batch_fragments_at_valid_sizes(n_dim):
    filters = [3, 3, 2] if n_dim == 2 else [(1, 3, 3), (2, 3, 3), 1]
    pools = [2, 2, 1] if n_dim == 2 else [(1, 2, 2), (1, 2, 2), 1]
    calc = CNNCalculator(filters, pools, desired_input=30 if n_dim == 2 else [6, 30, 30], MFP=True, n_dim=n_dim)
    size = tuple(calc.input) if n_dim == 3 else (calc.input[0], calc.input[1])
    cnn = build(size, filters, pools, [3, 4, 3], mfp=True, dimension_calc=calc)
    assert cnn.mfp_strides == ([4, 4] if n_dim == 2 else [1, 4, 4])
    assert len(cnn.mfp_offsets) == 16
    x = np.random.rand(1, 1, *size).astype(np.float32)
    ours = cnn.class_probabilities(x if n_dim == 2 else x.transpose(0, 2, 1, 3, 4))
    reference = fragment_reference(cnn, torch.from_numpy(x))
    assert ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, atol=1e-6)


def test_mfp_bookkeeping_follows_the_original():
    cnn = MixedConvNN((30, 30), input_depth=1)
    cnn.addConvLayer(2, 3, pool_shape=2, use_fragment_pooling=True)
    assert cnn.mfp_strides == [2, 2]
    assert cnn.mfp_offsets.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    cnn.addConvLayer(2, 2, pool_shape=(1, 2), use_fragment_pooling=True)
    assert cnn.mfp_strides == [2, 4]
    assert cnn.mfp_offsets.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1], [0, 2], [0, 3], [1, 2], [1, 3]]
    last = cnn.addConvLayer(2, 1, pool_shape=1, is_last_layer=True)  # the last layer follows suit
    assert last.mfp
    cnn.compileOutputFunctions()
    assert cnn.output_strides == [1, 1]
    assert cnn.output_shape == (None, 2, 30 - 6 + 1, 30 - 8 + 1)  # every window of the field of view (6, 8)


@pytest.mark.parametrize('n_dim', [2, 3])
def test_cnncalculator_mfp_rule(n_dim):
    """For every input size the calculator accepts with MFP, the MFP net's dense output is the
    original's ``fragment size * stride`` and covers every window (input - fov + 1)."""
    filters = [4, 3, 2] if n_dim == 2 else [(1, 4, 4), (3, 3, 3), (1, 2, 2)]
    pools = [2, 2, 1] if n_dim == 2 else [(1, 2, 2), (1, 2, 2), 1]
    calc = CNNCalculator(filters, pools, MFP=True, n_dim=n_dim)
    xy = calc.valid_inputs[0] if n_dim == 2 else calc.valid_inputs[1]
    assert xy[:4] == [18, 22, 26, 30]  # out1 = in - 3 must be odd, out2 = (out1 - 1)/2 - 2 odd
    plain = CNNCalculator(filters, pools, MFP=False, n_dim=n_dim)
    assert set(xy[:4]).isdisjoint(plain.valid_inputs[0] if n_dim == 2 else plain.valid_inputs[1])
    for size in xy[:3]:
        c = CNNCalculator(filters, pools, desired_input=size if n_dim == 2 else [5, size, size], MFP=True, n_dim=n_dim)
        inp = (size, size) if n_dim == 2 else (5, size, size)
        cnn = build(inp, filters, pools, [2, 3, 2], mfp=True)
        assert list(cnn.output_shape[2:]) == [o * s for o, s in zip(c.output, c.pred_stride)]
        assert list(cnn.output_shape[2:]) == [i - f + 1 for i, f in zip(inp, c.fov)]


def test_partial_mfp():
    """MFP from the second pooling layer on: the output keeps the first layer's stride and
    predictDense stitches its phases; plain pooling after an MFP layer is refused."""
    filters, pools, maps = [3, 3, 2], [2, 2, 1], [3, 4, 2]
    stitched_net = build((22, 22), filters, pools, maps)
    partial = build((30, 30), filters, pools, maps, mfp=[False, True, False], weights=weights_of(stitched_net))
    assert partial.output_strides == [2, 2] and partial.mfp_strides == [2, 2]
    raw = np.random.rand(1, 40, 37).astype(np.float32)
    np.testing.assert_allclose(partial.predictDense(raw), stitched_net.predictDense(raw), atol=1e-5)
    cnn = MixedConvNN((30, 30), input_depth=1)
    cnn.addConvLayer(2, 3, pool_shape=2, use_fragment_pooling=True)
    with pytest.raises(ValueError, match='use_fragment_pooling=True in this layer too'):
        cnn.addConvLayer(2, 3, pool_shape=(1, 2))
    cnn.addConvLayer(2, 3, pool_shape=(1, 2), use_fragment_pooling=True)


def test_mfp_maxabs_and_maxout():
    filters, pools, maps = [3, 3, 2], [2, 2, 1], [4, 6, 2]
    acts = ['maxout 2', 'tanh', 'relu']
    stitched_net = build((22, 22), filters, pools, maps, acts=acts, pooling_mode='maxabs')
    mfp_net = build((35, 33), filters, pools, maps, acts=acts, pooling_mode='maxabs', mfp=True,
                    weights=weights_of(stitched_net))
    raw = np.random.randn(1, 35, 33).astype(np.float32)
    np.testing.assert_allclose(mfp_net.predictDense(raw), stitched_net.predictDense(raw), atol=1e-5)


def test_alignment_of_output_voxels(capsys):
    """A net that copies the centre voxel of its window: output k is input k + offset, and with
    pad_raw output k is input k (mirror padding at the border)."""
    W = np.zeros((1, 1, 3, 5, 3), np.float32)
    W[0, 0, 1, 2, 1] = 1.0  # the centre of a (z, x, y) = (3, 5, 3) window
    cnn = MixedConvNN((5, 9, 7), input_depth=1)
    cnn.addConvLayer(1, (3, 5, 3), pool_shape=1, activation_func='linear', W=W, b=np.zeros(1, np.float32),
                     is_last_layer=True)
    cnn.compileOutputFunctions(target='regression')
    raw = np.random.rand(1, 12, 10, 8).astype(np.float32)  # (ch, x, y, z)
    out = cnn.predictDense(raw)
    assert out.shape == (1, 12 - 4, 10 - 2, 8 - 2)
    np.testing.assert_array_equal(out[0], raw[0, 2:-2, 1:-1, 1:-1])
    padded = cnn.predictDense(raw, pad_raw=True)
    assert padded.shape == raw.shape
    np.testing.assert_array_equal(padded[0], raw[0])


@pytest.mark.parametrize('n_dim', [2, 3])
def test_pad_raw_mirrors_and_keeps_the_shape(n_dim, capsys):
    if n_dim == 2:
        cnn = build((16, 16), [3, 3, 2], [2, 1, 1], [3, 3, 2])
        raw = np.random.rand(1, 17, 11).astype(np.float32)
    else:
        cnn = build((4, 12, 12), [(1, 3, 3), (2, 3, 3)], [(1, 2, 2), 1], [3, 3])
        raw = np.random.rand(1, 15, 13, 5).astype(np.float32)
    off = dense_geometry(cnn).offset
    off_xyz = off if n_dim == 2 else off[1:] + off[:1]
    padded = cnn.predictDense(raw, pad_raw=True)
    assert padded.shape == (2,) + raw.shape[1:]
    mirrored = np.pad(raw, [(0, 0)] + [(o, o) for o in off_xyz], mode='symmetric')
    np.testing.assert_allclose(padded, brute_force(cnn, mirrored), atol=1e-5)


def test_uint8_input_and_output():
    cnn = build((16, 16), [3, 3, 2], [2, 1, 1], [3, 3, 2])
    raw = np.random.randint(0, 256, (1, 20, 18)).astype(np.uint8)
    floats = cnn.predictDense(raw)
    np.testing.assert_allclose(floats, cnn.predictDense(raw.astype(np.float32) / 255), atol=1e-6)
    as_uint8 = cnn.predictDense(raw, as_uint8=True)
    assert as_uint8.dtype == np.uint8 and floats.dtype == np.float32
    np.testing.assert_array_equal(as_uint8, (floats * 255).astype(np.uint8))
    assert 0 < as_uint8.mean() < 255


def test_regression_net_predicts_its_activated_output():
    cnn = build((4, 12, 12), [(1, 3, 3), (2, 3, 3)], [(1, 2, 2), 1], [3, 3], target='regression', n_lab=1)
    raw = np.random.rand(1, 14, 13, 6).astype(np.float32)
    out = cnn.predictDense(raw)
    np.testing.assert_allclose(out, brute_force(cnn, raw), atol=1e-5)
    assert out.min() >= 0 and out.max() <= 1  # sigmoid


def test_printout(capsys, monkeypatch):
    cnn = build((16, 16), [3, 3, 2], [2, 1, 1], [3, 3, 2])
    capsys.readouterr()
    monkeypatch.setattr(sys.stdout, 'isatty', lambda: True, raising=False)
    cnn.predictDense(np.random.rand(1, 31, 27).astype(np.float32))
    out = capsys.readouterr().out
    # fov 10, offset 5: 21 x 17 predictions, 8 x 8 per tile
    assert out.startswith('Predicting img (1, 31, 27, 1) in 9 Blocks: (3, 3, 1)\n')
    assert '\rProgress: 100.00% in t=0s; estimate: t=0s - done\n' in out
    monkeypatch.undo()
    cnn.predictDense(np.random.rand(1, 31, 27).astype(np.float32))   # to a log file or pipe: no carriage returns
    out = capsys.readouterr().out
    assert '\r' not in out and '\nProgress: 100.00% in t=0s; estimate: t=0s - done\n' in out
    assert 'Inference speed: ' in out and ' MB or MPix /s\n' in out
    cnn.predictDense(np.random.rand(1, 31, 27).astype(np.float32), show_progress=False)
    out = capsys.readouterr().out
    assert 'Progress' not in out and ' - done\n' in out


def test_offset_from_dimension_calc_or_argument_is_checked():
    calc = CNNCalculator([3, 3, 2], [2, 1, 1], desired_input=16, n_dim=2)  # fov 10 -> offset 5.0
    cnn = build((16, 16), [3, 3, 2], [2, 1, 1], [3, 3, 2], dimension_calc=calc)
    raw = np.random.rand(1, 20, 18).astype(np.float32)
    assert cnn.predictDense(raw, offset=[5.0, 5.0]).shape == (2, 10, 8)
    with pytest.raises(ValueError, match=r'offset argument \(4, 5\) does not match .* gives the offset \(5, 5\)'):
        cnn.predictDense(raw, offset=(4, 5))
    cnn.dimension_calc = CNNCalculator([3, 3], [2, 1], desired_input=16, n_dim=2)
    with pytest.raises(ValueError, match=r'offset of dimension_calc \(4, 4\) does not match'):
        cnn.predictDense(raw)


def test_clear_errors():
    cnn = build((16, 16), [3, 3, 2], [2, 1, 1], [3, 3, 2])
    with pytest.raises(ValueError, match=r'raw_img has 3 channel\(s\) \(axis 0 of shape \(3, 20, 20\)\) but the '
                                         r'network expects 1'):
        cnn.predictDense(np.zeros((3, 20, 20), np.float32))
    with pytest.raises(ValueError, match=r'raw_img of spatial shape \(9, 20\) \(xyz\) is smaller than the field of '
                                         r'view \(10, 10\)'):
        cnn.predictDense(np.zeros((1, 9, 20), np.float32))
    assert cnn.predictDense(np.zeros((1, 9, 20), np.float32), pad_raw=True).shape == (2, 9, 20)
    with pytest.raises(ValueError, match=r'must have shape \(ch, x, y\) .* got shape \(20, 20\)'):
        cnn.predictDense(np.zeros((20, 20), np.float32))
    mlp = MixedConvNN((13, 13), input_depth=1)
    mlp.addPerceptronLayer(2, activation_func='linear')
    with pytest.raises(RuntimeError, match='compileOutputFunctions'):
        mlp.predictDense(np.zeros((1, 20, 20), np.float32))
    mlp.compileOutputFunctions()
    with pytest.raises(ValueError, match='output layer is a conv layer'):
        mlp.predictDense(np.zeros((1, 20, 20), np.float32))


def test_mfp_net_trains_on_dense_labels():
    """An MFP net is an ordinary differentiable module: its loss is the mean NLL over the dense output."""
    cnn = build((30, 30), [3, 3, 2], [2, 2, 1], [3, 4, 2], mfp=True)
    data = np.random.rand(2, 1, 30, 30).astype(np.float32)
    labels = np.random.randint(0, 2, (2,) + cnn.output_shape[2:])
    prob = cnn.class_probabilities(data)
    expected = -np.log(np.take_along_axis(prob, labels[:, None], axis=1) + 1e-6).mean()
    assert cnn.get_loss(data, labels)[0] == pytest.approx(expected, rel=1e-5)
    before = cnn.get_loss(data, labels)[0]
    for _ in range(3):
        cnn.trainingStep(data, labels, mode='SGD')
    assert cnn.get_loss(data, labels)[0] < before


def test_affinity_output_with_mfp(capsys):
    """An affinity output layer (3 edge directions x 2 classes) after MFP layers: dense and equal
    to the stitched prediction."""
    def affinity_net(size, mfp, weights=None):
        weights = weights or [(None, None)] * 3
        cnn = MixedConvNN(size, input_depth=1)
        cnn.addConvLayer(3, (1, 3, 3), pool_shape=(1, 2, 2), activation_func='relu', use_fragment_pooling=mfp,
                         W=weights[0][0], b=weights[0][1])
        cnn.addConvLayer(4, (2, 3, 3), pool_shape=1, activation_func='tanh', W=weights[1][0], b=weights[1][1])
        cnn.addConvLayer(2, 1, pool_shape=1, affinity=True, is_last_layer=True, W=weights[2][0], b=weights[2][1])
        cnn.compileOutputFunctions(target='affinity')
        return cnn
    stitched_net = affinity_net((4, 12, 12), False)
    mfp_net = affinity_net((6, 20, 18), True, weights_of(stitched_net))
    assert mfp_net.layers[-1].mfp and mfp_net.output_strides == [1, 1, 1]
    raw = np.random.rand(1, 20, 18, 6).astype(np.float32)
    dense = mfp_net.predictDense(raw)
    assert dense.shape == (6, 20 - 8, 18 - 8, 6 - 2)
    np.testing.assert_allclose(dense, stitched_net.predictDense(raw), atol=1e-5)
    np.testing.assert_allclose(dense.reshape(3, 2, -1).sum(axis=1), 1, atol=1e-5)  # a softmax per edge direction


def test_2d_net_predicts_a_stack_slice_by_slice(capsys):
    cnn = build((16, 16), [3, 3, 2], [2, 1, 1], [3, 3, 2])
    stack = np.random.rand(1, 31, 27, 4).astype(np.float32)  # (ch, x, y, z)
    capsys.readouterr()
    out = cnn.predictDense(stack, pad_raw=True)
    assert capsys.readouterr().out.startswith('Predicting img (1, 41, 37, 4) in 64 Blocks: (4, 4, 4)\n')
    assert out.shape == (2, 31, 27, 4)
    for z in range(4):
        np.testing.assert_allclose(out[..., z], cnn.predictDense(stack[..., z], pad_raw=True), atol=1e-6)
