"""Block-wise prediction of HDF5 volumes (the engine of elektronn-predict): numbers, alignment,
layouts, block planning, restart bookkeeping and errors."""
import io
import json

import h5py
import numpy as np
import pytest

from elektronn.net.convnet import MixedConvNN
from elektronn.training import volume_prediction as vp
from elektronn.training.volume_prediction import PredictionError, predict_volume_h5
from elektronn.utils import ProgressBar

FILTERS = [(1, 4, 4), (3, 3, 3), (1, 2, 2)]  # (z, x, y); fov (3, 11, 11)
POOLS = [(1, 2, 2), 1, 1]


def dense_net(mfp=True, n_ch=1, weights=None, input_size=(5, 20, 20)):
    weights = weights or [(None, None)] * 4
    cnn = MixedConvNN(input_size, input_depth=n_ch)
    for n, f, p, (W, b) in zip([3, 4, 4], FILTERS, POOLS, weights):
        cnn.addConvLayer(n, f, pool_shape=p, activation_func='relu', use_fragment_pooling=mfp, W=W, b=b)
    cnn.addConvLayer(2, 1, pool_shape=1, activation_func='linear', is_last_layer=True, W=weights[3][0],
                     b=weights[3][1])
    cnn.compileOutputFunctions(only_forward=True)
    return cnn


def centre_copy_net():
    """Output = the centre voxel of a (z, x, y) = (3, 5, 3) window (regression, linear)."""
    W = np.zeros((1, 1, 3, 5, 3), np.float32)
    W[0, 0, 1, 2, 1] = 1.0
    cnn = MixedConvNN((5, 9, 7), input_depth=1)
    cnn.addConvLayer(1, (3, 5, 3), pool_shape=1, activation_func='linear', W=W, b=np.zeros(1, np.float32),
                     is_last_layer=True)
    cnn.compileOutputFunctions(target='regression', only_forward=True)
    return cnn


def write_h5(path, key, data, chunks=None):
    with h5py.File(path, 'a') as f:
        f.create_dataset(key, data=data, chunks=chunks)
    return str(path)


def read(path, key):
    with h5py.File(path, 'r') as f:
        return f[key][...], json.loads(f[key].attrs[vp.INFO_ATTR]), f[key + '_done'][...]


@pytest.fixture(scope='module')
def net():
    return dense_net()


@pytest.mark.parametrize('pad_raw', [False, True])
def test_chunked_volume_equals_predict_dense(tmp_path, net, pad_raw, capsys):
    raw = np.random.randint(0, 256, (37, 29, 13)).astype(np.uint8)  # (x, y, z), no multiple of the blocks
    src = write_h5(tmp_path / 'raw.h5', 'raw', raw, chunks=(8, 8, 4))
    summary = predict_volume_h5(net, src, 'raw', str(tmp_path / 'out.h5'), 'prob', pad_raw=pad_raw,
                                block_shape=(4, 9, 12))
    out, info, done = read(tmp_path / 'out.h5', 'prob')
    expected = net.predictDense(raw[None], pad_raw=pad_raw, show_progress=False)
    assert out.shape == expected.shape and out.dtype == np.float32
    assert out.shape == ((2, 37, 29, 13) if pad_raw else (2, 37 - 10, 29 - 10, 13 - 2))
    np.testing.assert_allclose(out, expected, atol=1e-6)
    n_blocks = (4 * 5 * 3) if pad_raw else (3 * 3 * 2)  # ceil((z, x, y) / (4, 9, 12))
    assert summary['computed'] == summary['blocks'] == done.size == done.sum() == n_blocks
    assert info['origin_zxy'] == ([0, 0, 0] if pad_raw else [1, 5, 5]) and info['block_zxy'] == [4, 9, 12]
    assert info['axes'] == '(class, x, y, z)' and info['input_key'] == 'raw'
    assert 'in %i blocks of (9, 12, 4) (x, y, z)' % n_blocks in capsys.readouterr().out


@pytest.mark.parametrize('pad_raw', [False, True])
def test_alignment_of_output_voxels(tmp_path, pad_raw, capsys):
    """Output voxel k is input voxel k + offset (without pad_raw) or k (with it), also across block borders."""
    raw = np.random.rand(14, 11, 9).astype(np.float32)
    src = write_h5(tmp_path / 'raw.h5', 'raw', raw)
    predict_volume_h5(centre_copy_net(), src, 'raw', str(tmp_path / 'out.h5'), 'p', pad_raw=pad_raw,
                      block_shape=(2, 3, 4))
    out, info, _ = read(tmp_path / 'out.h5', 'p')
    if pad_raw:
        np.testing.assert_array_equal(out[0], raw)
        assert info['origin_zxy'] == [0, 0, 0]
    else:
        np.testing.assert_array_equal(out[0], raw[2:-2, 1:-1, 1:-1])  # offset (x, y, z) = (2, 1, 1)
        assert info['origin_zxy'] == [1, 2, 1] and info['fov_zxy'] == [3, 5, 3]


def test_mirror_padding_equals_numpy_symmetric(tmp_path):
    raw = np.arange(5 * 7 * 3, dtype=np.float32).reshape(5, 7, 3)
    with h5py.File(tmp_path / 'r.h5', 'w') as f:
        f['raw'] = raw
        vol = vp.InputVolume(f['raw'], 'xyz', pad=(4, 9, 2))  # pads larger than the extent are mirrored again
        got = vol.read((0, 0, 0), vol.padded)
    expected = np.pad(raw, [(9, 9), (2, 2), (4, 4)], mode='symmetric')
    np.testing.assert_array_equal(got[:, 0], expected.transpose(2, 0, 1))


def test_zxy_layout_uint8_output_and_two_channels(tmp_path, capsys):
    cnn = dense_net(n_ch=2)
    raw = np.random.rand(2, 25, 21, 8).astype(np.float32)  # (ch, x, y, z)
    src = write_h5(tmp_path / 'raw.h5', 'raw', raw.transpose(3, 0, 1, 2))  # (z, ch, x, y)
    predict_volume_h5(cnn, src, 'raw', str(tmp_path / 'out.h5'), 'prob', layout='zxy', as_uint8=True,
                      block_shape=(3, 7, 7))
    out, info, _ = read(tmp_path / 'out.h5', 'prob')
    expected = cnn.predictDense(raw, as_uint8=True, show_progress=False)  # (2, x, y, z)
    assert out.dtype == np.uint8 and info['axes'] == '(z, class, x, y)'
    assert np.abs(out.astype(int) - expected.transpose(3, 0, 1, 2)).max() <= 1  # truncation of equal floats


def test_2d_network_predicts_a_stack_slice_by_slice(tmp_path, capsys):
    cnn = MixedConvNN((16, 16), input_depth=1)
    cnn.addConvLayer(3, 3, pool_shape=2, activation_func='relu', use_fragment_pooling=True)
    cnn.addConvLayer(2, 2, pool_shape=1, activation_func='linear', is_last_layer=True)
    cnn.compileOutputFunctions(only_forward=True)
    raw = np.random.rand(19, 17, 5).astype(np.float32)
    src = write_h5(tmp_path / 'raw.h5', 'raw', raw)
    predict_volume_h5(cnn, src, 'raw', str(tmp_path / 'out.h5'), 'prob', block_shape=(2, 8, 8))
    np.testing.assert_allclose(read(tmp_path / 'out.h5', 'prob')[0], cnn.predictDense(raw[None], show_progress=False),
                               atol=1e-6)
    src = write_h5(tmp_path / 'raw.h5', 'image', raw[..., 0])  # a single image (x, y)
    predict_volume_h5(cnn, src, 'image', str(tmp_path / 'out.h5'), 'image_prob', memory_gb=0.5)
    np.testing.assert_allclose(read(tmp_path / 'out.h5', 'image_prob')[0],
                               cnn.predictDense(raw[None, ..., 0], show_progress=False), atol=1e-6)


def test_output_into_the_input_file(tmp_path, net, capsys):
    raw = np.random.rand(20, 20, 6).astype(np.float32)
    src = write_h5(tmp_path / 'data.h5', 'raw', raw)
    predict_volume_h5(net, src, 'raw', src, 'prob')
    np.testing.assert_allclose(read(src, 'prob')[0], net.predictDense(raw[None], show_progress=False), atol=1e-6)
    with pytest.raises(PredictionError, match='would replace the input'):
        predict_volume_h5(net, src, 'raw', src, 'raw', overwrite=True)


def test_existing_output_needs_resume_or_overwrite(tmp_path, net, capsys):
    raw = np.random.rand(20, 20, 6).astype(np.float32)
    src = write_h5(tmp_path / 'raw.h5', 'raw', raw)
    out = str(tmp_path / 'out.h5')
    first = predict_volume_h5(net, src, 'raw', out, 'prob', block_shape=(2, 5, 5))
    with pytest.raises(PredictionError, match=r'out.h5:prob already exists; use --resume .* or --overwrite'):
        predict_volume_h5(net, src, 'raw', out, 'prob')
    again = predict_volume_h5(net, src, 'raw', out, 'prob', resume=True, memory_gb=2.0)
    assert again['computed'] == 0 and again['block'] == first['block'] == (2, 5, 5)
    assert 'All 8 blocks were already done' in capsys.readouterr().out
    replaced = predict_volume_h5(net, src, 'raw', out, 'prob', overwrite=True, block_shape=(2, 10, 5))
    assert replaced['computed'] == replaced['blocks'] == 4
    assert 'Overwriting output dataset' in capsys.readouterr().out
    assert read(out, 'prob')[2].shape == (4,)
    # another network (or input, padding, dtype) must not be mixed into the same dataset
    with pytest.raises(PredictionError, match=r'holds another prediction; it differs in network_sha256'):
        predict_volume_h5(dense_net(), src, 'raw', out, 'prob', resume=True)
    with pytest.raises(PredictionError, match=r'differs in pad_raw: False \(now True\)'):
        predict_volume_h5(net, src, 'raw', out, 'prob', resume=True, pad_raw=True)
    with h5py.File(out, 'a') as f:
        f['other'] = np.zeros(3)
    with pytest.raises(PredictionError, match='was not written by elektronn-predict'):
        predict_volume_h5(net, src, 'raw', out, 'other', resume=True)
    with h5py.File(out, 'r') as f:
        assert np.all(f['other'][...] == 0)  # untouched


def test_resume_predicts_only_unfinished_blocks(tmp_path, net, capsys):
    raw = np.random.rand(20, 20, 6).astype(np.float32)
    src = write_h5(tmp_path / 'raw.h5', 'raw', raw)
    out = str(tmp_path / 'out.h5')
    predict_volume_h5(net, src, 'raw', out, 'prob', block_shape=(2, 5, 5))
    with h5py.File(out, 'a') as f:  # as if the run had stopped after some blocks
        f['prob_done'][[1, 4, 5, 7]] = 0
        f['prob'][:, :5, :5, :2] = -1.0  # block 0 is flagged done: its contents must stay
    summary = predict_volume_h5(net, src, 'raw', out, 'prob', resume=True)
    assert summary['computed'] == 4 and summary['skipped'] == 4
    assert '8 blocks of (5, 5, 2) (x, y, z); 4 already done' in capsys.readouterr().out
    got, _, done = read(out, 'prob')
    assert done.all() and np.all(got[:, :5, :5, :2] == -1.0)
    expected = net.predictDense(raw[None], show_progress=False)
    got[:, :5, :5, :2] = expected[:, :5, :5, :2]
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_clear_errors(tmp_path, net):
    raw = np.random.rand(20, 20, 6).astype(np.float32)
    src = write_h5(tmp_path / 'raw.h5', 'raw', raw)
    write_h5(src, 'small', raw[:10, :20, :2])
    write_h5(src, 'two_channels', np.stack([raw, raw]))
    write_h5(src, 'five_d', raw[None, None])
    with h5py.File(src, 'a') as f:
        f.create_group('grp')
    out = str(tmp_path / 'out.h5')
    with pytest.raises(PredictionError, match=r'input file .*nothere.h5 does not exist'):
        predict_volume_h5(net, str(tmp_path / 'nothere.h5'), 'raw', out)
    with pytest.raises(PredictionError, match=r"raw.h5 has no dataset 'rwa' \(it has: five_d, raw, small, two_"):
        predict_volume_h5(net, src, 'rwa', out)
    with pytest.raises(PredictionError, match=r'raw.h5:grp is a group, not a dataset'):
        predict_volume_h5(net, src, 'grp', out)
    with pytest.raises(PredictionError, match=r'raw.h5:two_channels has 2 channel\(s\) \(shape \(2, 20, 20, 6\), '
                                              r'layout xyz\) but the network expects 1'):
        predict_volume_h5(net, src, 'two_channels', out)
    with pytest.raises(PredictionError, match=r'raw.h5:small has the spatial shape \(10, 20, 2\) \(x, y, z\) but the '
                                              r'field of view of the network is \(11, 11, 3\) \(x, y, z\); give a '
                                              r'larger volume or pad the input'):
        predict_volume_h5(net, src, 'small', out)
    with pytest.raises(PredictionError, match=r'five_d has shape \(1, 1, 20, 20, 6\); expected \(x, y, z\) or'):
        predict_volume_h5(net, src, 'five_d', out)
    with pytest.raises(PredictionError, match=r'not dense \(output strides \[1, 2, 2\]\).*override_MFP_to_active'):
        predict_volume_h5(dense_net(mfp=False), src, 'raw', out)
    with pytest.raises(PredictionError, match='a memory budget of 0.001 GB is too small'):
        predict_volume_h5(net, src, 'raw', out, memory_gb=0.001)
    with pytest.raises(PredictionError, match='give the HDF5 file and the dataset as file.h5:key'):
        vp.parse_h5_spec('raw.h5', 'input')
    assert vp.parse_h5_spec('out.h5', 'output', default_key='prob') == ('out.h5', 'prob')
    assert vp.parse_h5_spec('a/b.h5:grp/raw') == ('a/b.h5', 'grp/raw')
    assert not (tmp_path / 'out.h5').exists()  # no failed call left an output behind
    padded = predict_volume_h5(net, src, 'small', out, pad_raw=True)  # padding makes a small volume fit
    assert padded['shape'] == (2, 10, 20, 2)


def test_block_plan_fits_the_budget_and_covers_the_volume(net):
    fov = (3, 11, 11)
    for shape, gb in [((246, 994, 994), 1.0), ((9, 40, 300), 0.3), ((1, 7, 7), 0.2), ((13, 97, 61), 0.18)]:
        plan = vp.plan_blocks(net, shape, fov, gb * 1e9)
        assert vp.estimate_block_bytes(net, plan.block, fov) <= gb * 1e9
        assert all(1 <= b <= s for b, s in zip(plan.block, shape))
        if np.prod(shape) > 1e6:
            continue
        covered = np.zeros(shape, bool)
        for _, start, stop in plan.blocks():
            region = tuple(slice(a, b) for a, b in zip(start, stop))
            assert not covered[region].any()
            covered[region] = True
        assert covered.all()
    small = vp.plan_blocks(net, (246, 994, 994), fov, 0.4e9).block
    large = vp.plan_blocks(net, (246, 994, 994), fov, 4e9).block
    assert np.prod(small) < np.prod(large)
    assert vp.plan_blocks(net, (20, 60, 60), fov, 4e9).block == (20, 60, 60)  # one block when it fits
    spread = vp.plan_blocks(net, (20, 60, 60), fov, 4e9, min_blocks=4)  # e.g. two blocks for each of 2 workers
    assert spread.n_blocks >= 4 and vp.estimate_block_bytes(net, spread.block, fov) <= 4e9
    assert vp.plan_blocks(net, (1, 2, 1), fov, 4e9, min_blocks=4).n_blocks == 2  # as many as the volume allows


def test_estimate_counts_the_largest_layer():
    net = dense_net()
    small = vp.estimate_block_bytes(net, (4, 20, 20), (3, 11, 11))
    big = vp.estimate_block_bytes(net, (8, 40, 40), (3, 11, 11))
    fixed = vp._BLOCK_OVERHEAD_BYTES
    assert 4 < (big - fixed) / (small - fixed) < 9  # between the growth of the input region and of the block


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_on_a_terminal_and_in_a_log():
    term = _Terminal()
    bar = ProgressBar(4, work=4e6, what='Predicting', step_name='blocks', work_name='voxel', stream=term, done=1,
                      interval=0)
    for _ in range(3):
        bar.update(1, work=1e6)
    text = term.getvalue()
    assert text.count('\r') == 3 and text.endswith('\n') and '100.0% [' in text and '4/4 blocks' in text
    assert 'voxel/s' in text and 'ETA' in text
    log = io.StringIO()
    bar = ProgressBar(10, stream=log, interval=3600)
    for _ in range(10):
        bar.update()
    lines = log.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith(' 10.0% [') and lines[1].startswith('100.0% [')  # first and last


def test_nan_in_the_input_is_an_error_naming_it(tmp_path, net):
    raw = np.random.rand(20, 20, 6).astype(np.float32)
    raw[12, 3, 4] = np.nan
    src = write_h5(tmp_path / 'raw.h5', 'raw', raw)
    with pytest.raises(PredictionError, match=r'raw.h5:raw holds NaN/Inf values .*nan_to_num'):
        predict_volume_h5(net, src, 'raw', str(tmp_path / 'out.h5'), show_progress=False)
