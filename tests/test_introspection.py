"""Filter mosaics and parameter histograms (matplotlib Agg, PNG files)."""
import numpy as np
import pytest
import torch
from matplotlib.image import imread

from elektronn.net.convnet import MixedConvNN
from elektronn.net.introspection import embedMatricesInGray, plotFilters, showParamHistogram


def test_embed_matrices_layout():
    mats = np.arange(5 * 2 * 3, dtype=np.float32).reshape(5, 2, 3) + 1
    out = embedMatricesInGray(mats, border_width=1)
    n_hor = int(np.sqrt(5 * 1.7))  # 2 columns, 3 rows
    assert out.shape == (3 * 3, n_hor * 4)
    np.testing.assert_array_equal(out[0:2, 0:3], mats[0])
    np.testing.assert_array_equal(out[0:2, 4:7], mats[1])
    np.testing.assert_array_equal(out[3:5, 0:3], mats[2])
    np.testing.assert_array_equal(out[6:8, 0:3], mats[4])
    assert out[2].sum() == 0 and out[:, 3].sum() == 0 and out[6:8, 4:7].sum() == 0  # borders, empty slot
    fixed = embedMatricesInGray(mats, border_width=0, fixed_n_horizontal=5)
    assert fixed.shape == (2, 15)
    np.testing.assert_array_equal(fixed[:, 12:15], mats[4])
    norm = embedMatricesInGray(mats, normalize=True)
    assert norm.max() <= 1.0 and np.isclose(norm[0:2, 0:3].min(), 0) and np.isclose(norm[0:2, 0:3].max(), 1, 1e-6)
    with pytest.raises(ValueError, match=r'\(n, rows, cols\)'):
        embedMatricesInGray(np.zeros((4, 4)))


def test_plot_filters_of_conv_and_perceptron_layers(tmp_path, capsys):
    cnn = MixedConvNN((12, 12), input_depth=3)
    cnn.addConvLayer(4, 3, pool_shape=2)
    cnn.addConvLayer(6, (2, 3), pool_shape=1)
    cnn.addPerceptronLayer(5)
    rgb = plotFilters(cnn, 0, savename=str(tmp_path / 'f0.png'))
    assert rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.min() >= 0 and rgb.max() <= 1 + 1e-6
    assert 'Saving filter image as %s' % (tmp_path / 'f0.png') in capsys.readouterr().out
    assert imread(str(tmp_path / 'f0.png')).shape[0] > 50
    one = plotFilters(cnn, 1, channel=2, savename=None)
    W = cnn.layers[1].W.detach().numpy()
    np.testing.assert_allclose(one[0:2, 0:3], W[0, 2], rtol=1e-6)
    with pytest.raises(ValueError, match='channel must lie in'):
        plotFilters(cnn, 1, channel=4, savename=None)
    with pytest.raises(ValueError, match='not a square image'):
        plotFilters(cnn, 2, savename=None)

    mlp = MixedConvNN(16)
    mlp.addPerceptronLayer(7)
    units = plotFilters(mlp, 0, savename=str(tmp_path / 'mlp.png'))
    np.testing.assert_allclose(units[0:4, 0:4], mlp.layers[0].W.detach().numpy()[:, 0].reshape(4, 4), rtol=1e-6)

    cube = MixedConvNN((3, 8, 8), input_depth=1)
    cube.addConvLayer(2, (2, 3, 3), pool_shape=1)
    tiles = plotFilters(cube, 0, savename=str(tmp_path / 'f3d.png'))
    assert tiles.shape == (2 * 4, 2 * 4)  # one row per filter, one tile per z slice
    np.testing.assert_allclose(tiles[4:7, 4:7], cube.layers[0].W.detach().numpy()[1, 0, 1], rtol=1e-6)


def test_param_histogram(tmp_path, capsys):
    cnn = MixedConvNN((10, 10), input_depth=1)
    cnn.addConvLayer(3, 3, pool_shape=2)
    cnn.addPerceptronLayer(4)
    with torch.no_grad():
        cnn.layers[1].W.fill_(0.25)
    entries = showParamHistogram(cnn, savename=str(tmp_path / 'hist.png'))
    out = capsys.readouterr().out
    assert [(n, name) for n, name, _, _ in entries] == [(1, 'W'), (2, 'W')]
    assert 'Layer  2: mean=2.500000e-01, median=2.500000e-01' in out
    assert 'Layer  1: filter_shape = (3, 1, 3, 3)' in out
    assert entries[1][2].sum() == cnn.layers[1].W.numel()
    assert (tmp_path / 'hist.png').stat().st_size > 1000
    with_b = showParamHistogram(cnn, onlyW=False, savename=None)
    assert [name for _, name, _, _ in with_b] == ['W', 'b', 'W', 'b']
