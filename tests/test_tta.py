"""Test-time augmentation against a reference: every output voxel's field-of-view window, transformed,
through plain PyTorch ops (``test_prediction.plain_strided_forward``), averaged."""
import itertools

import numpy as np
import pytest
import torch

from elektronn.net import tta as tta_module
from elektronn.net.prediction import dense_geometry

from test_prediction import build, plain_strided_forward


def _windows(cnn, raw):
    """The field-of-view windows of every output voxel of ``raw`` as ``(ch, z, x, y)`` arrays, and the
    output grid ``(z', x', y')`` (z' = 1 for a 2D image)."""
    geom = dense_geometry(cnn)
    fov = tuple(geom.fov) if cnn.n_dim == 3 else (1,) + tuple(geom.fov)
    vol = np.moveaxis(raw, -1, 1) if raw.ndim == 4 else raw[:, None]          # (ch, z, x, y)
    grid = tuple(s - 2 * (f // 2) for s, f in zip(vol.shape[1:], fov))
    windows = {idx: vol[(slice(None),) + tuple(slice(k, k + f) for k, f in zip(idx, fov))]
               for idx in itertools.product(*[range(g) for g in grid])}
    return windows, grid


def _forward(cnn, windows, n_edges=0):
    """Probabilities ``(n, channels)`` of ``(ch, z, x, y)`` windows computed with plain PyTorch ops."""
    x = torch.from_numpy(np.stack([np.ascontiguousarray(w) for w in windows])).float()
    if cnn.n_dim == 2:
        x = x[:, :, 0]
    with torch.no_grad():
        lin = plain_strided_forward(cnn, x).reshape(len(windows), -1)
    if n_edges:
        return torch.softmax(lin.reshape(len(windows), n_edges, -1), dim=2).reshape(len(windows), -1).numpy()
    return torch.softmax(lin, dim=1).numpy()


def reference(cnn, raw, transforms, n_edges=0):
    """The TTA prediction by its definition: output voxel k averages f(t(window_k)) over the transforms;
    for an affinity edge along a flipped axis the transformed window is that of the edge's far voxel."""
    windows, grid = _windows(cnn, raw)
    keys = list(windows)
    probs = {}
    for t in transforms:
        out = _forward(cnn, [t.forward(windows[k]) for k in keys], n_edges)
        probs[t] = dict(zip(keys, out))
    n_out = next(iter(probs[transforms[0]].values())).shape[0]
    result = np.zeros((n_out,) + grid, np.float64)
    per = n_out // n_edges if n_edges else n_out
    for k in keys:
        if not n_edges:
            result[(slice(None),) + k] = np.mean([probs[t][k] for t in transforms], axis=0)
            continue
        for e in range(n_edges):
            values = []
            for t in transforms:
                source = list(k)
                if e in t.flips:
                    source[e] += 1                     # the edge joining k and k + e is the flipped window's of k + e
                    if source[e] >= grid[e]:
                        continue
                channel = {1: 2, 2: 1}.get(e, e) if t.transpose else e
                values.append(probs[t][tuple(source)][channel * per:(channel + 1) * per])
            result[(slice(e * per, (e + 1) * per),) + k] = np.mean(values, axis=0)
    result = result.astype(np.float32)
    return np.moveaxis(result, 1, -1) if raw.ndim == 4 else result[:, 0]


def _transforms(cnn, mode):
    geom = dense_geometry(cnn)
    fov = tuple(geom.fov) if cnn.n_dim == 3 else (1,) + tuple(geom.fov)
    strides = tuple(geom.strides) if cnn.n_dim == 3 else (1,) + tuple(geom.strides)
    return tta_module.plan(mode, fov, cnn.n_dim, strides)[0]


# name: filters, pools, maps, input size, raw shape (ch, x, y[, z]), tta mode, number of transforms
CASES = {
    '2d-odd': ([3, 2], [1, 1], [3, 2], (12, 12), (1, 13, 11), 'xy', 8),
    '2d-even': ([4, 1], [1, 1], [3, 2], (12, 12), (1, 12, 13), 'xy', 8),
    '2d-pooled': ([3, 2], [2, 1], [3, 2], (12, 12), (1, 15, 14), True, 8),
    '3d-anisotropic': ([(1, 3, 3), (2, 2, 2)], [1, 1], [3, 2], (4, 10, 10), (1, 12, 11, 6), True, 8),
    '3d-isotropic': ([(3, 3, 3), (2, 2, 2)], [1, 1], [3, 2], (6, 10, 10), (1, 9, 10, 8), True, 16),
    '3d-pooled-xyz': ([(2, 3, 3), (2, 2, 2)], [(1, 2, 2), 1], [3, 2], (6, 12, 12), (1, 14, 13, 8), 'xyz', 16),
}


@pytest.mark.parametrize('name', sorted(CASES))
def test_tta_equals_the_mean_of_the_transformed_windows(name, capsys):
    filters, pools, maps, patch, shape, mode, n = CASES[name]
    torch.manual_seed(1)
    cnn = build(patch, filters, pools, maps[:-1], n_lab=maps[-1], acts='tanh')
    raw = np.random.default_rng(0).random(shape, dtype=np.float32)
    got = cnn.predictDense(raw, tta=mode, show_progress=False)
    transforms = _transforms(cnn, mode)
    assert len(transforms) == n
    assert 'Test-time augmentation: %i transforms' % n in capsys.readouterr().out
    expected = reference(cnn, raw, transforms)
    assert got.shape == expected.shape == cnn.predictDense(raw, show_progress=False).shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6)


@pytest.mark.parametrize('mode', ['xy', 'xyz'])
def test_tta_of_affinities_moves_the_edges_with_the_flips(mode):
    from elektronn.net.convnet import MixedConvNN
    torch.manual_seed(2)
    cnn = MixedConvNN((5, 9, 9), input_depth=1)
    cnn.addConvLayer(3, (2, 3, 3), pool_shape=1, activation_func='tanh')
    cnn.addConvLayer(2, 1, pool_shape=1, activation_func='linear', is_last_layer=True, affinity=True)
    cnn.compileOutputFunctions(target='affinity')
    raw = np.random.default_rng(3).random((1, 9, 8, 6), dtype=np.float32)
    got = cnn.predictDense(raw, tta=mode, show_progress=False)
    expected = reference(cnn, raw, _transforms(cnn, mode), n_edges=3)
    assert got.shape == expected.shape == (6, 7, 6, 4)
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6)
    np.testing.assert_allclose(got.reshape(3, 2, -1).sum(axis=1), 1, atol=1e-5)  # still a softmax per edge


@pytest.mark.parametrize('n_dim', [2, 3])
def test_tta_with_mfp_equals_tta_with_strided_prediction(n_dim):
    if n_dim == 2:
        args = ((14, 14), [3, 3, 2], [2, 2, 1], [3, 4])
        raw = np.random.default_rng(4).random((1, 29, 27), dtype=np.float32)
    else:
        args = ((5, 12, 12), [(1, 3, 3), (2, 2, 2)], [(1, 2, 2), 1], [3])
        raw = np.random.default_rng(4).random((1, 19, 17, 7), dtype=np.float32)
    torch.manual_seed(5)
    strided = build(*args, acts='tanh')
    dense = build(*args, mfp=True, acts='tanh', weights=[layer.param_arrays() for layer in strided.layers])
    a = strided.predictDense(raw, tta=True, show_progress=False)
    b = dense.predictDense(raw, tta=True, show_progress=False)
    np.testing.assert_allclose(a, b, rtol=0, atol=2e-6)
    assert np.abs(a - strided.predictDense(raw, show_progress=False)).max() > 1e-3  # TTA changed something


def test_a_network_invariant_to_the_transforms_predicts_the_same_with_tta():
    torch.manual_seed(6)
    cnn = build((10, 10), [3], [1], [], n_lab=2, acts='tanh')
    W = cnn.layers[0].W.detach().numpy()
    W = W + W[..., ::-1, :] + W[..., :, ::-1] + W[..., ::-1, ::-1]
    W = W + np.swapaxes(W, -1, -2)                                   # symmetric under flips and transposes
    with torch.no_grad():
        cnn.layers[0].W.copy_(torch.from_numpy(np.ascontiguousarray(W)))
    raw = np.random.default_rng(7).random((1, 16, 15), dtype=np.float32)
    plain = cnn.predictDense(raw, show_progress=False)
    np.testing.assert_allclose(cnn.predictDense(raw, tta=True, show_progress=False), plain, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(cnn.predictDense(raw, tta=True, show_progress=False, as_uint8=True),
                                  cnn.predictDense(raw, show_progress=False, as_uint8=True))


def test_the_plan_follows_the_network_and_refuses_bad_values():
    assert len(tta_module.plan(False, (1, 5, 5), 2)[0]) == 1
    assert len(tta_module.plan(True, (1, 5, 5), 2)[0]) == 8
    assert len(tta_module.plan(True, (3, 7, 7), 3)[0]) == 8              # anisotropic field of view
    assert len(tta_module.plan(True, (7, 7, 7), 3)[0]) == 16
    transforms, note = tta_module.plan('xy', (1, 5, 7), 2)
    assert len(transforms) == 4 and not any(t.transpose for t in transforms)
    assert 'xy-transposes left out' in note and '5, 7' in note
    assert tta_module.plan(True, (1, 5, 5), 2)[0][0].is_identity
    with pytest.raises(ValueError, match=r"tta must be False, True, 'xy' or 'xyz', got 'yes'"):
        tta_module.plan('yes', (1, 5, 5), 2)
    with pytest.raises(ValueError, match="tta='xyz' flips along z, which a 2D network does not have"):
        tta_module.plan('xyz', (1, 5, 5), 2)


# -- block by block (elektronn-predict) --------------------------------------------------------------------------

def _h5(path, key, data):
    import h5py
    with h5py.File(path, 'a') as f:
        f.create_dataset(key, data=data)
    return str(path)


def _read(path, key):
    import h5py
    import json
    from elektronn.inference.volume_prediction import INFO_ATTR
    with h5py.File(path, 'r') as f:
        return f[key][...], json.loads(f[key].attrs[INFO_ATTR])


@pytest.mark.parametrize('n_dim, pad_raw', [(3, False), (3, True), (2, False)])
def test_block_wise_tta_equals_predict_dense_with_tta(tmp_path, n_dim, pad_raw, capsys):
    from elektronn.inference.volume_prediction import predict_volume_h5
    torch.manual_seed(8)
    if n_dim == 3:  # fov (z, x, y) = (2, 6, 6): even along every axis
        cnn = build((6, 14, 14), [(1, 3, 3), (2, 2, 2)], [(1, 2, 2), 1], [3], mfp=True, acts='tanh')
        raw = np.random.default_rng(9).random((23, 19, 9), dtype=np.float32)
    else:
        cnn = build((14, 14), [3, 2], [2, 1], [3], mfp=True, acts='tanh')
        raw = np.random.default_rng(9).random((21, 18, 3), dtype=np.float32)
    src = _h5(tmp_path / 'raw.h5', 'raw', raw)
    predict_volume_h5(cnn, src, 'raw', str(tmp_path / 'out.h5'), 'prob', pad_raw=pad_raw, block_shape=(3, 7, 8),
                      tta=True)
    out, info = _read(tmp_path / 'out.h5', 'prob')
    assert 'Test-time augmentation: 8 transforms' in capsys.readouterr().out
    expected = cnn.predictDense(raw[None], pad_raw=pad_raw, tta=True, show_progress=False)
    assert out.shape == expected.shape and info['tta_transforms'] == 8
    np.testing.assert_allclose(out, expected, rtol=0, atol=2e-6)
    with pytest.raises(Exception, match='tta_transforms: 8 \\(now 1\\)'):  # a resume must augment alike
        predict_volume_h5(cnn, src, 'raw', str(tmp_path / 'out.h5'), 'prob', pad_raw=pad_raw, block_shape=(3, 7, 8),
                          resume=True)


def test_elektronn_predict_takes_tta():
    from elektronn.cli import predict
    parse = predict._parser().parse_args
    assert parse(['run', 'in.h5:raw', 'out.h5']).tta is False
    assert parse(['run', 'in.h5:raw', 'out.h5', '--tta']).tta is True
    assert parse(['run', 'in.h5:raw', 'out.h5', '--tta', 'xyz']).tta == 'xyz'
    with pytest.raises(SystemExit):
        parse(['run', 'in.h5:raw', 'out.h5', '--tta', 'z'])
