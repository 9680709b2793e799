"""CNNData: file contract, registration, patch sampling, augmentation, errors and randomness.

Raw cubes in most tests hold *coordinate codes* (the voxel's own x, y or z position, or a
number made from them), so every patch tells where it was cut from and labels can be checked
against the data voxel they belong to.
"""
import copy
import os
import pickle
import warnings

import h5py
import numpy as np
import pytest

from elektronn.training.CNNData import CNNData
from elektronn.training import cubes as cubes_mod
from elektronn.training.augmentation import allowed_permutations, grey_augment_params
from pipeline_helpers import check_workers_draw_their_seeds, process_alive


# ----------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------
def write_h5(path, **datasets):
    with h5py.File(path, 'w') as f:
        for k, v in datasets.items():
            f[k] = v
    return path


def coords(shape):
    """Arrays x, y, z of the voxel coordinates of an (x, y, z) volume."""
    return np.meshgrid(*[np.arange(s) for s in shape], indexing='ij')


def code(x, y, z):
    """A unique number per voxel; fits int16 for coordinates below 32."""
    return x + 32 * y + 1024 * z


def decode(c):
    c = np.asarray(c).astype(int)
    return c % 32, (c // 32) % 32, c // 1024


def coded_pair(tmp_path, raw_shape, lab_shape, name='c'):
    """Raw cube (x, y, z) whose voxels hold their own code, and centred labels holding the code of
    the raw voxel they lie on."""
    assert max(raw_shape) <= 32
    x, y, z = coords(raw_shape)
    raw = code(x, y, z).astype(np.float32)
    origin = [(r - l) // 2 for r, l in zip(raw_shape, lab_shape)]
    lx, ly, lz = coords(lab_shape)
    lab = code(lx + origin[0], ly + origin[1], lz + origin[2]).astype(np.int16)
    write_h5(tmp_path / ('%s_raw.h5' % name), raw=raw)
    write_h5(tmp_path / ('%s_lab.h5' % name), lab=lab)
    return [('%s_raw.h5' % name, 'raw')], [('%s_lab.h5' % name, 'lab')]


def load(tmp_path, d_files, l_files, **kw):
    add = {k: kw.pop(k) for k in ('cube_prios', 'valid_cubes', 'downsample_xy') if k in kw}
    kw.setdefault('seed', 0)
    data = CNNData(**kw)
    data.addDataFromFile(str(tmp_path), str(tmp_path), d_files, l_files, **add)
    return data


def inner(data_patch, off):
    """The data voxels under the labels: the patch without ``off`` on each side (3D patches
    ``(z, ch, x, y)``, channel 0)."""
    d = data_patch[:, 0]
    return d[off[0]:d.shape[0] - off[0], off[1]:d.shape[1] - off[1], off[2]:d.shape[2] - off[2]]


# ----------------------------------------------------------------------------------------------------
# Registration and offsets
# ----------------------------------------------------------------------------------------------------
def test_registration_1d_hand_example(tmp_path):
    # Label length 5 centred in image length 7, offset 1: image[i+1] carries label[i].
    raw = np.zeros((7, 3, 3), np.float32)
    raw[:, :, :] = np.arange(7)[:, None, None] * 10
    lab = np.zeros((5, 3, 3), np.int16)
    lab[:, :, :] = np.arange(5)[:, None, None]
    write_h5(tmp_path / 'r.h5', raw=raw)
    write_h5(tmp_path / 'l.h5', lab=lab)
    data = load(tmp_path, [('r.h5', 'raw')], [('l.h5', 'lab')], patch_size=(3, 3, 3), stride=1, offset=(0, 1, 0),
                n_dim=3, n_lab=5)
    seen = set()
    for _ in range(200):
        d, l = data.getbatch(1, flip=False, strided=False)
        x_img = d[0, 0, 0, 1, 0]          # image x at the label position (offset 1)
        assert l[0, 0, 0, 0] == x_img / 10 - 1   # label[i] <-> image[i+1]
        seen.add(int(d[0, 0, 0, 0, 0] / 10))
    # every start 0..4 occurs: the last valid position is drawn too (the original never drew it)
    assert seen == {0, 1, 2, 3, 4}


@pytest.mark.parametrize('raw_shape,lab_shape', [
    ((30, 26, 12), (20, 16, 8)),    # labels smaller than the raw cube
    ((24, 20, 10), (24, 20, 10)),   # labels as large as the raw cube
    ((20, 18, 9), (24, 22, 11)),    # labels larger than the raw cube (cut)
])
def test_registration_against_hand_computation(tmp_path, raw_shape, lab_shape, recwarn):
    d_files, l_files = coded_pair(tmp_path, raw_shape, lab_shape)
    off = (1, 3, 2)  # (z, x, y)
    data = load(tmp_path, d_files, l_files, patch_size=(5, 11, 9), stride=1, offset=off, n_dim=3, n_lab=32767)
    origin = [(r - l) // 2 for r, l in zip(raw_shape, lab_shape)]
    assert data.train_l[0].shape == (lab_shape[2], lab_shape[0], lab_shape[1])
    label_codes = set()
    for _ in range(60):
        d, l = data.getbatch(2, flip=True, strided=False)
        for b in range(2):
            np.testing.assert_array_equal(l[b], inner(d[b], off))
            label_codes.update(np.unique(l[b]).tolist())
    # hand computation of the voxels that may carry training labels: inside the label cube and at
    # least the offset away from the raw cube's border
    x, y, z = coords(raw_shape)
    ok = ((x >= max(origin[0], off[1])) & (x < min(origin[0] + lab_shape[0], raw_shape[0] - off[1])) &
          (y >= max(origin[1], off[2])) & (y < min(origin[1] + lab_shape[1], raw_shape[1] - off[2])) &
          (z >= max(origin[2], off[0])) & (z < min(origin[2] + lab_shape[2], raw_shape[2] - off[0])))
    assert label_codes <= set(code(x, y, z)[ok].tolist())
    # per axis, both ends of the usable region are reached (uniform starts include the last one)
    seen = np.array(sorted(label_codes))
    for axis_values, seen_values in zip((x, y, z), decode(seen)):
        assert set(seen_values) == set(axis_values[ok].tolist())
    if lab_shape[0] > raw_shape[0] - 2 * off[1]:
        assert any('labels are cut off' in str(w.message) for w in recwarn.list)


def test_2d_patches_from_anisotropic_cube_are_xy_slices(tmp_path):
    d_files, l_files = coded_pair(tmp_path, (30, 26, 12), (20, 16, 8))
    data = load(tmp_path, d_files, l_files, patch_size=(9, 9), stride=1, offset=(2, 2), n_dim=2, n_lab=32767,
                anisotropic_data=True)
    for _ in range(30):
        d, l = data.getbatch(1, flip=False, strided=False)
        z = decode(d[0, 0])[2]
        assert np.all(z == z[0, 0]) and 2 <= z[0, 0] < 10  # one z-slice, inside the label cube's z range
        np.testing.assert_array_equal(l[0], d[0, 0, 2:-2, 2:-2])


def test_2d_patches_from_isotropic_cube_use_all_three_slice_directions(tmp_path):
    d_files, l_files = coded_pair(tmp_path, (24, 22, 20), (20, 18, 16))
    data = load(tmp_path, d_files, l_files, patch_size=(9, 9), stride=1, offset=(2, 2), n_dim=2, n_lab=32767,
                anisotropic_data=False)
    directions = set()
    for _ in range(200):
        d, l = data.getbatch(1, flip=False, strided=False)
        img = d[0, 0]
        x, y, z = decode(img)
        constant = tuple(int(np.all(a == a.flat[0])) for a in (x, y, z))
        assert sum(constant) == 1
        directions.add(constant)
        np.testing.assert_array_equal(l[0], img[2:-2, 2:-2])
        # in-plane axes in the original's orders: xy-slices (x, y), y-slices (z, x), x-slices (y, z)
        if constant == (0, 0, 1):
            assert np.all(np.diff(x, axis=0) == 1) and np.all(np.diff(y, axis=1) == 1)
        elif constant == (0, 1, 0):
            assert np.all(np.diff(z, axis=0) == 1) and np.all(np.diff(x, axis=1) == 1)
        else:
            assert np.all(np.diff(y, axis=0) == 1) and np.all(np.diff(z, axis=1) == 1)
    assert directions == {(0, 0, 1), (0, 1, 0), (1, 0, 0)}


def test_zchxy_order_and_region_give_the_same_patches(tmp_path):
    d_files, l_files = coded_pair(tmp_path, (30, 26, 12), (20, 16, 8))
    with h5py.File(tmp_path / 'c_raw.h5', 'r') as f:
        raw = f['raw'][()]
    with h5py.File(tmp_path / 'c_lab.h5', 'r') as f:
        lab = f['lab'][()]
    write_h5(tmp_path / 'z_raw.h5', raw=raw.transpose(2, 0, 1))
    write_h5(tmp_path / 'z_lab.h5', lab=lab.transpose(2, 0, 1))
    kw = dict(patch_size=(5, 11, 9), stride=(1, 2, 2), offset=(1, 3, 2), n_dim=3, n_lab=32767)
    a = load(tmp_path, d_files, l_files, **kw)
    b = load(tmp_path, [('z_raw.h5', 'raw')], [('z_lab.h5', 'lab')], zchxy_order=True, **kw)
    for _ in range(5):
        for x, y in zip(a.getbatch(3), b.getbatch(3)):
            np.testing.assert_array_equal(x, y)
    # regions: raw slices 2..7 and the 4 label slices centred in them (raw 3..6 = label 1..4, as the
    # label cube starts at raw z 2); registration applies to the selected regions
    c = load(tmp_path, [('c_raw.h5', 'raw', dict(z=(2, 8)))], [('c_lab.h5', 'lab', dict(z=(1, 5)))], **kw)
    assert c.train_d[0].shape == (6, 1, 30, 26) and c.train_l[0].shape == (4, 20, 16)
    d, l = c.getbatch(4, strided=False)
    assert set(np.unique(decode(d[:, :, 0])[2])) <= set(range(2, 8))
    for k in range(4):
        np.testing.assert_array_equal(l[k], inner(d[k], (1, 3, 2)))


# ----------------------------------------------------------------------------------------------------
# Strided labels against a network whose output is a known function of its input
# ----------------------------------------------------------------------------------------------------
def centre_value_net(n_dim, patch):
    """A net whose 3 outputs are the values of input channels 0, 1, 2 at the centre of each output
    neuron's field of view, for inputs that are linear ramps along one axis.

    Layer 1 (filter 2, pool 2): per channel the max and -min over two pooling windows, one shifted
    by a pixel; layer 2 (filter 3, centre tap) averages the four extremes: the ramp value at the
    centre of the field of view (input position 3 + 2k in x/y, 1 + k in z).
    """
    from elektronn.net.convnet import MixedConvNN
    from elektronn.net.netutils import CNNCalculator
    if n_dim == 2:
        filters, pools = [[2, 2], [3, 3]], [[2, 2], [1, 1]]
        d0, d1, centre = (0, 0), (1, 1), (1, 1)
    else:
        filters, pools = [[1, 2, 2], [3, 3, 3]], [[1, 2, 2], [1, 1, 1]]
        d0, d1, centre = (0, 0, 0), (0, 1, 1), (1, 1, 1)
    calc = CNNCalculator(filters, pools, list(patch), n_dim=n_dim)
    W1 = np.zeros((12, 3) + tuple(filters[0]), np.float32)
    W2 = np.zeros((3, 12) + tuple(filters[1]), np.float32)
    for c in range(3):
        for k, (tap, sign) in enumerate([(d0, 1), (d0, -1), (d1, 1), (d1, -1)]):
            W1[4 * c + k, c][tap] = sign
            W2[c, 4 * c + k][centre] = 0.25 * sign
    cnn = MixedConvNN(tuple(calc.input), input_depth=3)
    cnn.addConvLayer(12, filters[0], pool_shape=pools[0], activation_func='linear', W=W1, b=np.zeros(12, np.float32))
    cnn.addConvLayer(3, filters[1], pool_shape=pools[1], activation_func='linear', W=W2, b=np.zeros(3, np.float32),
                     is_last_layer=True)
    cnn.compileOutputFunctions(target='regression')
    return cnn, calc


def ramp_cube(tmp_path, raw_shape, lab_shape):
    """3-channel raw cube: channel c holds coordinate c (x, y, z); labels are a hash of the raw
    coordinates of their voxel."""
    x, y, z = coords(raw_shape)
    write_h5(tmp_path / 'ramp_raw.h5', raw=np.stack([x, y, z]).astype(np.float32))
    origin = [(r - l) // 2 for r, l in zip(raw_shape, lab_shape)]
    lx, ly, lz = coords(lab_shape)
    write_h5(tmp_path / 'ramp_lab.h5', lab=label_hash(lx + origin[0], ly + origin[1], lz + origin[2]))
    return [('ramp_raw.h5', 'raw')], [('ramp_lab.h5', 'lab')]


def label_hash(x, y, z):
    return ((7 * x + 3 * y + 5 * z) % 11).astype(np.int16)


@pytest.mark.parametrize('n_dim,patch,aniso', [(2, (21, 21), True), (2, (21, 21), False), (3, (5, 21, 21), True)])
def test_strided_labels_match_network_output(tmp_path, n_dim, patch, aniso):
    cnn, calc = centre_value_net(n_dim, patch)
    d_files, l_files = ramp_cube(tmp_path, (44, 40, 30), (34, 30, 24))
    data = load(tmp_path, d_files, l_files, patch_size=calc.input, stride=calc.pred_stride, offset=calc.offset,
                n_dim=n_dim, n_lab=11, anisotropic_data=aniso)
    for _ in range(6):
        d, l = data.getbatch(4, flip=True, strided=True)
        out = cnn.class_probabilities(d)   # (bs, 3, [z,] x', y'): raw coordinates at each output neuron
        assert out.shape[2:] == l.shape[1:]
        gx, gy, gz = (np.rint(out[:, c]).astype(int) for c in range(3))
        np.testing.assert_allclose(out, np.rint(out), atol=1e-3)
        np.testing.assert_array_equal(l, label_hash(gx, gy, gz))


# ----------------------------------------------------------------------------------------------------
# Flips and transpositions
# ----------------------------------------------------------------------------------------------------
def axis_of_variation(channel):
    """Index of the single axis along which a patch channel varies (None if constant)."""
    varying = [ax for ax in range(channel.ndim) if np.any(np.diff(channel, axis=ax) != 0)]
    assert len(varying) <= 1
    return varying[0] if varying else None


def test_anisotropic_3d_flips_never_move_z(tmp_path):
    d_files, l_files = ramp_cube(tmp_path, (30, 30, 12), (24, 24, 8))
    data = load(tmp_path, d_files, l_files, patch_size=(5, 9, 9), stride=1, offset=(1, 2, 2), n_dim=3, n_lab=11,
                anisotropic_data=True)
    orders, signs = set(), set()
    for _ in range(150):
        d, l = data.getbatch(1, flip=True, strided=False)
        p = d[0]                         # (z, ch, x, y)
        ax_x, ax_y, ax_z = (axis_of_variation(p[:, c]) for c in range(3))
        assert ax_z == 0                 # z stays on the z axis
        assert {ax_x, ax_y} == {1, 2}
        orders.add((ax_x, ax_y))
        signs.add(np.sign(np.diff(p[:, 2], axis=0).flat[0]))
        np.testing.assert_array_equal(l[0], label_hash(*(inner(p[:, c:c + 1], (1, 2, 2)).astype(int)
                                                         for c in range(3))))
    assert orders == {(1, 2), (2, 1)} and signs == {-1, 1}


def test_isotropic_3d_flips_use_every_axis_order(tmp_path):
    d_files, l_files = ramp_cube(tmp_path, (20, 20, 20), (16, 16, 16))
    data = load(tmp_path, d_files, l_files, patch_size=(7, 7, 7), stride=1, offset=1, n_dim=3, n_lab=11,
                anisotropic_data=False)
    orders = set()
    for _ in range(300):
        d, l = data.getbatch(1, flip=True, strided=False)
        p = d[0]
        order = tuple(axis_of_variation(p[:, c]) for c in range(3))
        orders.add(order)
        np.testing.assert_array_equal(l[0], label_hash(*(inner(p[:, c:c + 1], (1, 1, 1)).astype(int)
                                                         for c in range(3))))
    assert len(orders) == 6


def test_non_square_patches_are_mirrored_but_not_transposed(tmp_path):
    d_files, l_files = ramp_cube(tmp_path, (30, 30, 12), (24, 24, 8))
    data = load(tmp_path, d_files, l_files, patch_size=(5, 11, 9), stride=1, offset=(1, 2, 2), n_dim=3, n_lab=11,
                anisotropic_data=True)
    signs = set()
    for _ in range(60):
        d, l = data.getbatch(1, flip=True, strided=False)
        assert axis_of_variation(d[0][:, 0]) == 1 and axis_of_variation(d[0][:, 1]) == 2
        signs.add(np.sign(np.diff(d[0][:, 0], axis=1).flat[0]))
    assert signs == {-1, 1}
    assert allowed_permutations((5, 11, 9), (1, 2, 2), (1, 1, 1)) == [(0, 1, 2)]
    # equal sizes but different strides must not be swapped either (strided labels would misalign)
    assert allowed_permutations((9, 9), (2, 2), (1, 2)) == [(0, 1)]


def test_upright_x_only_mirrors_y(tmp_path):
    d_files, l_files = ramp_cube(tmp_path, (30, 30, 12), (24, 24, 8))
    data = load(tmp_path, d_files, l_files, patch_size=(9, 9), stride=1, offset=2, n_dim=2, n_lab=11,
                anisotropic_data=True, upright_x=True)
    y_signs = set()
    for _ in range(60):
        d, _ = data.getbatch(1, flip=True)
        assert axis_of_variation(d[0, 0]) == 0 and np.all(np.diff(d[0, 0], axis=0) == 1)  # x: never mirrored
        assert axis_of_variation(d[0, 1]) == 1
        y_signs.add(np.sign(np.diff(d[0, 1], axis=1).flat[0]))
    assert y_signs == {-1, 1}


# ----------------------------------------------------------------------------------------------------
# Grey-value augmentation
# ----------------------------------------------------------------------------------------------------
def test_grey_augment_parameter_distributions():
    alpha, c, gamma = grey_augment_params(20000, np.random.default_rng(0))
    assert 0.85 <= alpha.min() < 0.851 and 1.149 < alpha.max() <= 1.15
    assert -0.15 <= c.min() < -0.149 and 0.149 < c.max() <= 0.15
    assert 0.5 <= gamma.min() < 0.502 and 1.99 < gamma.max() <= 2.0
    assert abs(np.mean(np.log2(gamma))) < 0.02


def test_grey_augment_on_training_batches_only_and_listed_channels(tmp_path):
    raw = np.full((2, 20, 20, 10), 128, np.uint8)
    write_h5(tmp_path / 'r.h5', raw=raw)
    write_h5(tmp_path / 'l.h5', lab=np.zeros((20, 20, 10), np.int16))
    data = load(tmp_path, [('r.h5', 'raw')] * 2, [('l.h5', 'lab')] * 2, valid_cubes=[1], patch_size=(3, 9, 9),
                stride=1, offset=1, n_dim=3, n_lab=2)
    v = 128 / 255.0
    lo, hi = (v * 0.85 - 0.15) ** 2, (v * 1.15 + 0.15) ** 0.5
    values = []
    for _ in range(200):
        d, _ = data.getbatch(1, grey_augment_channels=[0])
        ch0 = d[0, :, 0]
        assert np.all(ch0 == ch0.flat[0])            # one distortion per patch and channel
        values.append(ch0.flat[0])
        np.testing.assert_array_equal(d[0, :, 1], np.float32(v))   # channel 1 is not listed
    assert lo - 1e-6 <= min(values) and max(values) <= hi + 1e-6
    assert min(values) < v - 0.1 and max(values) > v + 0.1
    d, _ = data.getbatch(5, source='valid', grey_augment_channels=[0, 1])
    np.testing.assert_array_equal(d, np.float32(v))
    # the loaded cube is never modified by augmentation
    np.testing.assert_array_equal(data.train_d[0], np.float32(v))


# ----------------------------------------------------------------------------------------------------
# Ignore threshold, lazy labels, example weights
# ----------------------------------------------------------------------------------------------------
def ignore_cube(tmp_path, ignored_fraction_x, info=None):
    lab = np.ones((40, 12, 6), np.int16)
    lab[:int(40 * ignored_fraction_x)] = -1
    raw = np.zeros((40, 12, 6), np.uint8)
    write_h5(tmp_path / 'r.h5', raw=raw)
    if info is None:
        write_h5(tmp_path / 'l.h5', lab=lab)
    else:
        write_h5(tmp_path / 'l.h5', lab=lab, info=info)
    return [('r.h5', 'raw')], [('l.h5', 'lab')]


def test_ignore_threshold_discards_patches(tmp_path):
    d_files, l_files = ignore_cube(tmp_path, 0.5)
    data = load(tmp_path, d_files, l_files, patch_size=(2, 10, 10), stride=1, offset=0, n_dim=3, n_lab=2)
    fractions = [np.mean(data.getbatch(1)[1] < 0) for _ in range(100)]
    assert max(fractions) > 0.5
    fractions = [np.mean(data.getbatch(1, ignore_thresh=0.3)[1] < 0) for _ in range(100)]
    assert max(fractions) <= 0.3


def test_ignore_threshold_keeps_patches_of_cubes_with_not_present_flags(tmp_path):
    d_files, l_files = ignore_cube(tmp_path, 0.9, info=np.array([[1, 1], [0, 1]], np.int16))
    data = load(tmp_path, d_files, l_files, patch_size=(2, 10, 10), stride=1, offset=0, n_dim=3, n_lab=2)
    d, l, info1, info2 = data.getbatch(20, ignore_thresh=0.05, ret_info=True)
    assert np.mean(l < 0) > 0.5
    np.testing.assert_array_equal(info1, [[1, 1]] * 20)
    np.testing.assert_array_equal(info2, [[0, 1]] * 20)
    assert info1.dtype == np.int16 and info1.shape == (20, 2)


def test_ignore_threshold_that_no_patch_can_pass_raises(tmp_path):
    # one labelled x-row of 40: a patch 4 wide holds at most 25 % labels (a wholly ignored cube is refused at loading)
    d_files, l_files = ignore_cube(tmp_path, 0.975)
    data = load(tmp_path, d_files, l_files, patch_size=(2, 4, 4), stride=1, offset=0, n_dim=3, n_lab=2)
    with pytest.raises(RuntimeError, match='ignore_thresh=0.5'):
        data.getbatch(1, ignore_thresh=0.5)


def test_example_weights_from_last_channel():
    data = CNNData(patch_size=(1, 4, 4), stride=(1, 2, 2), offset=(0, 1, 1), n_dim=3, n_lab=2, seed=0)
    raw = np.zeros((1, 1, 2, 4, 4), np.float32)
    raw[0, 0, 1, 1:3, 1:3] = [[0.0, 1.0], [0.5, 0.3]]   # previous prediction in the last channel
    lab = np.array([[[[1, 1], [0, 0]]]], np.int16)
    w = data.getExampleWeights(raw, lab, strided=False)
    diff = np.array([[1.0, 0.0], [-0.5, -0.3]])
    expect = 1 + 2 * np.where(diff > 0.05, diff - 0.05, 0) + 2 * np.where(diff < -0.1, -diff - 0.1, 0)
    np.testing.assert_allclose(w[0, 0], expect, rtol=1e-6)
    np.testing.assert_allclose(data.getExampleWeights(raw, lab)[0, 0], expect[::2, ::2], rtol=1e-6)


def test_getbatch_returns_example_weights_matching_labels(tmp_path):
    raw = np.zeros((2, 20, 20, 8), np.float32)
    raw[1] = 0.5
    write_h5(tmp_path / 'r.h5', raw=raw)
    write_h5(tmp_path / 'l.h5', lab=np.ones((16, 16, 6), np.int16))
    data = load(tmp_path, [('r.h5', 'raw')], [('l.h5', 'lab')], patch_size=(3, 9, 9), stride=(1, 2, 2),
                offset=(1, 2, 2), n_dim=3, n_lab=2)
    for strided in (True, False):
        d, l, w = data.getbatch(2, strided=strided, ret_example_weights=True)
        assert w.shape == l.shape and w.dtype == np.float32
        np.testing.assert_allclose(w, 1 + 2 * (0.5 - 0.05))


# ----------------------------------------------------------------------------------------------------
# img-scalar border modes
# ----------------------------------------------------------------------------------------------------
def scalar_stack(tmp_path, shape=(6, 5, 3)):
    raw = (np.arange(np.prod(shape)).reshape(shape) + 1).astype(np.float32)
    write_h5(tmp_path / 's_raw.h5', raw=raw)
    write_h5(tmp_path / 's_lab.h5', lab=np.arange(shape[2], dtype=np.int16))
    return raw.transpose(2, 0, 1)  # (z, x, y)


def scalar_data(tmp_path, border_mode, patch):
    return load(tmp_path, [('s_raw.h5', 'raw')], [('s_lab.h5', 'lab')], patch_size=patch, n_dim=2, n_lab=3,
                mode='img-scalar', border_mode=border_mode)


def slices_of(data, n=30):
    """Map z -> every patch drawn from that slice (the label is the slice index)."""
    out = {}
    for _ in range(n):
        d, l = data.getbatch(1, flip=False)
        out.setdefault(int(l[0]), []).append(d[0, 0])
    return out


@pytest.mark.parametrize('mode', ['crop', 'mirror', '0-pad', 'c-pad'])
def test_border_modes_against_hand_computation(tmp_path, mode):
    zxy = scalar_stack(tmp_path)
    patch = (4, 4) if mode == 'crop' else (8, 4)   # crop: x 6->4, y 5->4; pads: x 6->8, y 5->4
    data = scalar_data(tmp_path, mode, patch)
    for z, patches in slices_of(data).items():
        img = zxy[z]
        if mode == 'crop':
            expect = img[1:5, 0:4]
        else:
            body = img[:, 0:4]                     # y is larger than the patch: centre crop
            if mode == 'mirror':
                expect = np.pad(body, [(1, 1), (0, 0)], mode='symmetric')
            elif mode == '0-pad':
                expect = np.pad(body, [(1, 1), (0, 0)])
            else:
                ring = np.concatenate([body[0], body[-1], body[1:-1, 0], body[1:-1, -1]])
                expect = np.pad(body, [(1, 1), (0, 0)], constant_values=ring.mean())
        for p in patches:
            np.testing.assert_allclose(p, expect, rtol=1e-6)


def test_border_mode_keep_cuts_shifted_windows(tmp_path):
    zxy = scalar_stack(tmp_path)
    data = scalar_data(tmp_path, 'keep', (4, 4))
    shifts = set()
    for z, patches in slices_of(data, 80).items():
        for p in patches:
            sx, sy = np.argwhere(zxy[z] == p[0, 0])[0]
            np.testing.assert_array_equal(p, zxy[z][sx:sx + 4, sy:sy + 4])
            shifts.add((sx, sy))
    assert shifts == {(a, b) for a in range(3) for b in range(2)}


def test_border_mode_reject_and_crop_too_small(tmp_path):
    scalar_stack(tmp_path)
    with pytest.raises(ValueError, match="s_raw.h5.*border_mode='reject'"):
        scalar_data(tmp_path, 'reject', (4, 4))
    scalar_data(tmp_path, 'reject', (6, 5))
    with pytest.raises(ValueError, match="s_raw.h5.*smaller than the patch size.*'crop'"):
        scalar_data(tmp_path, 'crop', (8, 4))
    with pytest.raises(ValueError, match="s_raw.h5.*smaller than the patch size.*'keep'"):
        scalar_data(tmp_path, 'keep', (8, 4))


def test_img_scalar_flip_leaves_labels(tmp_path):
    scalar_stack(tmp_path)
    data = scalar_data(tmp_path, 'crop', (4, 4))
    d, l = data.getbatch(10, flip=True)
    assert l.shape == (10,) and set(l.tolist()) <= {0, 1, 2}
    assert np.all((d[:, 0] - 1) % 3 == l[:, None, None])   # the data still comes from the labelled slice


# ----------------------------------------------------------------------------------------------------
# Loading options
# ----------------------------------------------------------------------------------------------------
def test_n_lab_detection_ignores_negative_labels(tmp_path):
    lab = np.zeros((10, 10, 4), np.int16)
    lab[0] = -1
    lab[1] = 2
    write_h5(tmp_path / 'r.h5', raw=np.zeros((10, 10, 4), np.uint8))
    write_h5(tmp_path / 'l.h5', lab=lab)
    data = load(tmp_path, [('r.h5', 'raw')], [('l.h5', 'lab')], patch_size=(5, 5), stride=1, offset=1)
    assert data.n_lab == 3
    assert repr(data) == '3-class Data Set with 1 input channel(s):\n#train cubes: 1 and #valid cubes: 0'


def test_uint8_scaling_standardise_and_empty_labels(tmp_path):
    raw = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 6)).astype(np.uint8)
    write_h5(tmp_path / 'r.h5', raw=raw)
    write_h5(tmp_path / 'l.h5', lab=np.zeros((0,), np.int16))
    data = load(tmp_path, [('r.h5', 'raw')], [('l.h5', 'lab')], patch_size=(3, 8, 8), stride=1, offset=1, n_dim=3,
                n_lab=2)
    np.testing.assert_allclose(data.train_d[0], raw.transpose(3, 0, 1, 2) / np.float32(255), rtol=1e-6)
    assert data.train_l[0].shape == (6, 16, 16) and not np.any(data.train_l[0])
    std = load(tmp_path, [('r.h5', 'raw')], [('l.h5', 'lab')], patch_size=(3, 8, 8), stride=1, offset=1, n_dim=3,
               n_lab=2, pre_process='standardise')
    f = raw / 255.0
    assert std.data_mean == pytest.approx(f.mean(), rel=1e-5) and std.data_std == pytest.approx(f.std(), rel=1e-5)
    assert abs(std.train_d[0].mean()) < 1e-4 and std.train_d[0].std() == pytest.approx(1.0, rel=1e-4)


def test_cube_prios_in_file_order_and_by_label_size(tmp_path):
    files_d, files_l = [], []
    for i, size in enumerate([8, 8, 16]):
        write_h5(tmp_path / ('r%i.h5' % i), raw=np.full((size, size, 4), i, np.uint8))
        write_h5(tmp_path / ('l%i.h5' % i), lab=np.zeros((size, size, 4), np.int16))
        files_d.append(('r%i.h5' % i, 'raw'))
        files_l.append(('l%i.h5' % i, 'lab'))
    kw = dict(patch_size=(4, 4), stride=1, offset=0, n_lab=1)

    def cube_counts(data, n=400):
        d, _ = data.getbatch(n, flip=False)
        return np.bincount(np.rint(d[:, 0, 0, 0] * 255).astype(int), minlength=3)

    counts = cube_counts(load(tmp_path, files_d, files_l, valid_cubes=[1], cube_prios=[1, 100, 0], **kw))
    assert counts.tolist() == [400, 0, 0]          # d_files order: cube 1 is validation, cube 2 weight 0
    counts = cube_counts(load(tmp_path, files_d, files_l, valid_cubes=[1], cube_prios=[0, 1], **kw))
    assert counts.tolist() == [0, 0, 400]          # one entry per training cube (the original's form)
    counts = cube_counts(load(tmp_path, files_d, files_l, **kw))
    assert 0.6 < counts[2] / 400 < 0.74            # proportional to label size: 4/6


def test_downsample_xy_averages_data_and_votes_labels(tmp_path):
    # raw x codes; labels hold the raw x code of their voxel; label origin x = 3 (odd) for f = 2
    raw = np.zeros((14, 8, 4), np.float32)
    raw[:] = np.arange(14)[:, None, None]
    lab = np.zeros((8, 8, 4), np.int16)
    lab[:] = (np.arange(8) + 3)[:, None, None]
    write_h5(tmp_path / 'r.h5', raw=raw)
    write_h5(tmp_path / 'l.h5', lab=lab)
    data = load(tmp_path, [('r.h5', 'raw')], [('l.h5', 'lab')], downsample_xy=2, patch_size=(3, 3), stride=1,
                offset=1, n_dim=2, n_lab=100)
    assert data.train_d[0].shape == (4, 1, 6, 4) and data.train_l[0].shape == (4, 4, 4)
    np.testing.assert_allclose(data.train_d[0][0, 0, :, 0], [1.5, 3.5, 5.5, 7.5, 9.5, 11.5])
    # each label block holds x codes (x, x+1): a tie, resolved to the nearest-neighbour sample x+1
    np.testing.assert_array_equal(data.train_l[0][0, :, 0], [4, 6, 8, 10])
    for _ in range(20):
        d, l = data.getbatch(1, flip=False)
        np.testing.assert_array_equal(l[0], d[0, 0, 1:-1, 1:-1] + 0.5)


def test_majority_vote_downsampling():
    lab = np.array([[0, 1, 1, 1],
                    [1, 1, 2, 2],
                    [5, 5, 3, 4],
                    [6, 6, 0, 1]], np.int16)[None]
    out = cubes_mod.downsample_labels_xy(lab, 2)
    # blocks: {0,1,1,1} -> 1; {1,1,2,2} tie, centre pixel 2 -> 2; {5,5,6,6} tie, centre 6 -> 6;
    # {3,4,0,1} four-way tie, centre 1 -> 1
    np.testing.assert_array_equal(out[0], [[1, 2], [6, 1]])
    np.testing.assert_array_equal(cubes_mod.downsample_labels_xy(lab.astype(np.float32), 2, float_label=True)[0],
                                  [[0.75, 1.5], [5.5, 2.0]])


def test_addDataFromNdarray_uses_arrays_without_copy(tmp_path):
    x, y, z = coords((20, 18, 10))
    raw = np.ascontiguousarray(code(x, y, z).astype(np.float32).transpose(2, 0, 1)[:, None])  # (z, ch, x, y)
    lab = code(x, y, z)[3:17, 3:15, 2:8].astype(np.int16).transpose(2, 0, 1)
    data = CNNData(patch_size=(3, 9, 9), stride=1, offset=(1, 2, 2), n_dim=3, n_lab=32767, zchxy_order=True, seed=0)
    data.addDataFromNdarray(raw, lab, [raw], [lab])
    assert np.shares_memory(data.train_d[0], raw)
    assert data.names == ['directly_added_data_0', 'directly_added_data_1']
    assert len(data.train_d) == 1 and len(data.valid_d) == 1
    for source in ('train', 'valid'):
        d, l = data.getbatch(3, source=source, strided=False)
        for k in range(3):
            np.testing.assert_array_equal(l[k], inner(d[k], (1, 2, 2)))


def test_cubes_too_large_for_memory_are_read_from_disk(tmp_path):
    d_files, l_files = coded_pair(tmp_path, (30, 26, 12), (20, 16, 8))
    kw = dict(patch_size=(5, 11, 9), stride=(1, 2, 2), offset=(1, 3, 2), n_dim=3, n_lab=32767)
    mem = load(tmp_path, d_files, l_files, **kw)
    disk = CNNData(seed=0, **kw)
    disk.max_in_memory_bytes = 0
    disk.addDataFromFile(str(tmp_path), str(tmp_path), d_files, l_files)
    assert isinstance(disk.train_d[0], cubes_mod.DiskVolume) and isinstance(disk.train_l[0], cubes_mod.DiskVolume)
    for _ in range(4):
        for a, b in zip(mem.getbatch(3, grey_augment_channels=[]), disk.getbatch(3, grey_augment_channels=[])):
            np.testing.assert_array_equal(a, b)
    clone = pickle.loads(pickle.dumps(disk))   # picklable for worker processes (reopens the file)
    np.testing.assert_array_equal(clone.getbatch(1)[0], disk.getbatch(1)[0])
    disk.close()
    # down-sampling and standardisation work the same on disk
    mem2 = load(tmp_path, d_files, l_files, downsample_xy=2, pre_process='standardise', **kw)
    disk2 = CNNData(seed=0, pre_process='standardise', **kw)
    disk2.max_in_memory_bytes = 0
    disk2.addDataFromFile(str(tmp_path), str(tmp_path), d_files, l_files, downsample_xy=2)
    assert disk2.data_mean == pytest.approx(mem2.data_mean) and disk2.data_std == pytest.approx(mem2.data_std)
    for a, b in zip(mem2.getbatch(3), disk2.getbatch(3)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    # regions of files in (z, x, y) order
    with h5py.File(tmp_path / 'c_raw.h5', 'r') as f:
        write_h5(tmp_path / 'z_raw.h5', raw=f['raw'][()].transpose(2, 0, 1))
    with h5py.File(tmp_path / 'c_lab.h5', 'r') as f:
        write_h5(tmp_path / 'z_lab.h5', lab=f['lab'][()].transpose(2, 0, 1))
    files = [('z_raw.h5', 'raw', dict(z=(2, 9), x=(1, 29)))], [('z_lab.h5', 'lab', dict(z=(1, 6), x=(1, 19)))]
    mem3 = load(tmp_path, *files, zchxy_order=True, **kw)
    disk3 = CNNData(seed=0, zchxy_order=True, **kw)
    disk3.max_in_memory_bytes = 0
    disk3.addDataFromFile(str(tmp_path), str(tmp_path), *files)
    assert disk3.train_d[0].shape == mem3.train_d[0].shape == (7, 1, 28, 26)
    for a, b in zip(mem3.getbatch(3), disk3.getbatch(3)):
        np.testing.assert_array_equal(a, b)


def test_affinity_labels_from_segment_ids():
    """Segment ids of any size become affinity graphs (n_lab = 2 classes per edge) and, for MALIS, the
    relabelled segmentation in which objects of a single voxel are background (size_thresh=1)."""
    from elektronn.training.affinities import make_affinities
    rng = np.random.default_rng(5)
    seg = rng.integers(0, 4, (8, 14, 14)).astype(np.int16) * 100    # ids 0..300, many one-voxel pieces
    seg[:, 2:9, 3:10] = 7                                             # and one big object
    raw = seg.astype(np.float32)[:, None]                             # (z, ch, x, y): the data shows the ids
    for target in ('affinity', 'malis'):
        data = CNNData(patch_size=(4, 10, 10), stride=1, offset=(1, 2, 2), n_dim=3, affinity=target,
                       zchxy_order=True, seed=0)
        data.addDataFromNdarray(raw, seg)
        assert data.n_lab == 2
        batch = data.getbatch(2, strided=False, flip=False)
        assert len(batch) == (3 if target == 'malis' else 2)
        ids = np.stack([inner(d, (1, 2, 2)) for d in batch[0]]).astype(np.int16)
        aff, relabelled = make_affinities(ids, size_thresh=1)
        np.testing.assert_array_equal(batch[1], aff)
        assert batch[1].shape == (2, 3, 2, 6, 6) and batch[1].dtype == np.int16
        if target == 'malis':
            np.testing.assert_array_equal(batch[2], relabelled)
            assert not np.array_equal(relabelled, make_affinities(ids, size_thresh=0)[1])
    with pytest.raises(ValueError, match='n_lab counts the classes per edge'):
        CNNData(patch_size=(4, 10, 10), stride=1, offset=(1, 2, 2), n_dim=3, affinity='malis', n_lab=3)


# ----------------------------------------------------------------------------------------------------
# Messages: the loading printout (INFO) and warnings about risky data or settings
# ----------------------------------------------------------------------------------------------------
def test_loading_printout_is_the_originals_and_follows_the_log_level(tmp_path, capsys):
    from elektronn.log import use_log_level
    d_files, l_files = coded_pair(tmp_path, (30, 26, 12), (20, 16, 8))
    settings = dict(patch_size=(5, 11, 9), stride=1, offset=(1, 3, 2), n_dim=3, n_lab=32767)
    load(tmp_path, d_files, l_files, **settings)
    assert capsys.readouterr().out == ('Loading c_raw.h5[raw] and c_lab.h5[lab]\n'
                                       'Internal data.shape=(12, 1, 30, 26), label.shape=(8, 20, 16)\n'
                                       '---\n'
                                       '32767-class Data Set with 1 input channel(s):\n'
                                       '#train cubes: 1 and #valid cubes: 0\n'
                                       '\n')
    with use_log_level('WARNING'):
        load(tmp_path, d_files, l_files, **settings)
    assert capsys.readouterr().out == ''


def test_risky_data_and_settings_warn_at_the_callers_line(tmp_path):
    with pytest.warns(UserWarning, match="'upright_x'-flag is active, but it works only for 2d") as rec:
        data = CNNData(patch_size=(3, 9, 9), stride=1, offset=(1, 3, 3), n_dim=3, n_lab=2, upright_x=True, seed=0)
    assert rec[0].filename == __file__
    raw = np.full((12, 12, 6), 300, np.uint16)
    with pytest.warns(UserWarning, match=r'directly_added_data_0 holds integers above 255 \(dtype uint16\)') as rec:
        data.addDataFromNdarray(raw, np.ones((12, 12, 6), np.int16))
    assert {w.filename for w in rec} == {__file__}
    write_h5(tmp_path / 'r.h5', raw=raw)
    write_h5(tmp_path / 'l.h5', lab=np.ones((12, 12, 6), np.int16))
    with pytest.warns(UserWarning) as rec:   # the file's cube, and the offset cutting off labels at its border
        load(tmp_path, [('r.h5', 'raw')], [('l.h5', 'lab')], patch_size=(3, 9, 9), stride=1, offset=(1, 3, 3),
             n_dim=3, n_lab=2)
    assert ['integers above 255' in str(w.message) for w in rec] == [True, False]
    assert 'labels are cut off!\nOn each side of the cube [1, 3, 3] (z, x, y)' in str(rec[1].message)
    assert {w.filename for w in rec} == {__file__}   # the call in load(), not inside elektronn



def test_cubes_of_one_dataset_are_named_by_their_region(tmp_path):
    """A training and a validation region of one file each get their warning (Python shows a text once)."""
    write_h5(tmp_path / 'r.h5', raw=np.full((12, 12, 12), 100, np.uint8))
    write_h5(tmp_path / 'l.h5', lab=np.ones((12, 12, 12), np.int16))
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter('default')  # Python's default: a warning's text once per place
        load(tmp_path, [('r.h5', 'raw', dict(z=(0, 6))), ('r.h5', 'raw', dict(z=(6, 12)))],
             [('l.h5', 'lab', dict(z=(0, 6))), ('l.h5', 'lab', dict(z=(6, 12)))], valid_cubes=[1],
             patch_size=(3, 9, 9), stride=1, offset=(1, 3, 3), n_dim=3, n_lab=2)
    cut = [str(w.message) for w in rec if 'labels are cut off' in str(w.message)]
    assert [m.split('cannot predict them from ')[1] for m in cut] == [
        '%s[raw] region z=(0, 6)' % (tmp_path / 'r.h5'), '%s[raw] region z=(6, 12)' % (tmp_path / 'r.h5')]
    assert cubes_mod.describe('r.h5', 'raw', dict(y=(1, 5), x=(0, 4))) == 'r.h5[raw] region x=(0, 4), y=(1, 5)'
    assert cubes_mod.describe('r.h5', 'raw', {}) == cubes_mod.describe('r.h5', 'raw') == 'r.h5[raw]'


# ----------------------------------------------------------------------------------------------------
# Errors name the file and key
# ----------------------------------------------------------------------------------------------------
def test_label_checks_on_their_own():
    from types import SimpleNamespace as Cube
    from elektronn.training import label_checks as lc
    assert lc.label_range([np.array([[-1, 3]]), np.zeros((0,))], 'a', False) == (-1.0, 3.0)
    assert lc.label_range([np.zeros((0,))], 'a', False) is None
    with pytest.raises(ValueError, match='a: class labels must be whole numbers'):
        lc.label_range([np.array([0.5])], 'a', False)
    cubes = [Cube(label_range=(-1.0, 3.0), label_name='a', info=None, info_name='a[info]'),
             Cube(label_range=(0.0, 1.0), label_name='b', info=np.array([[1, 1, 0, 0], [0, 0, 1, 0]]),
                  info_name='b[info]')]
    assert lc.count_classes(cubes, None, False, False) == 4
    assert lc.count_classes(cubes, None, True, False) == 1 == lc.count_classes(cubes, None, False, 'malis')
    with pytest.raises(ValueError, match=r'a holds label 3, outside 0\.\.2 for n_lab=3'):
        lc.count_classes(cubes, 3, False, False)
    with pytest.raises(ValueError, match=r"Cannot detect n_lab: the label cubes \['c'\]"):
        lc.count_classes([Cube(label_range=(-1.0, -1.0), label_name='c')], None, False, False)
    lc.check_labelled(cubes)
    with pytest.raises(ValueError, match=r'c: every label is negative'):
        lc.check_labelled([Cube(label_range=None, label_name='c', info=None)])
    lc.attach_lazy_info(cubes, 4)
    assert cubes[0].info[0].tolist() == [1, 1, 1, 1] and cubes[0].info[1].tolist() == [0, 0, 0, 0]
    assert cubes[1].info[1].tolist() == [0, 0, 1, 0] and cubes[1].info[1].dtype == np.int16


@pytest.fixture
def ok_files(tmp_path):
    write_h5(tmp_path / 'r.h5', raw=np.zeros((20, 20, 8), np.uint8))
    write_h5(tmp_path / 'l.h5', lab=np.zeros((16, 16, 6), np.int16))
    return tmp_path


GEOM = dict(patch_size=(3, 9, 9), stride=1, offset=(1, 2, 2), n_dim=3, n_lab=2)


def test_error_missing_file(ok_files):
    with pytest.raises(FileNotFoundError, match=r"nope\.h5.*'raw'.*d_files"):
        load(ok_files, [('nope.h5', 'raw')], [('l.h5', 'lab')], **GEOM)
    with pytest.raises(FileNotFoundError, match=r"nope\.h5.*'lab'.*l_files"):
        load(ok_files, [('r.h5', 'raw')], [('nope.h5', 'lab')], **GEOM)


def test_error_missing_dataset(ok_files):
    with pytest.raises(KeyError, match=r"r\.h5 has no dataset 'data'.*\['raw'\]"):
        load(ok_files, [('r.h5', 'data')], [('l.h5', 'lab')], **GEOM)
    with pytest.raises(KeyError, match=r"l\.h5 has no dataset 'labels'"):
        load(ok_files, [('r.h5', 'raw')], [('l.h5', 'labels')], **GEOM)
    # the listing names datasets inside groups by their paths; a group is no cube
    write_h5(ok_files / 'g.h5', **{'grp/raw': np.zeros((20, 20, 8), np.uint8)})
    with pytest.raises(KeyError, match=r"g\.h5 has no dataset 'raw'; it contains \['grp/raw'\]"):
        load(ok_files, [('g.h5', 'raw')], [('l.h5', 'lab')], **GEOM)
    with pytest.raises(cubes_mod.DataKeyError, match=r"g\.h5: 'grp' is a group, not a dataset; check d_files"):
        load(ok_files, [('g.h5', 'grp')], [('l.h5', 'lab')], **GEOM)


def test_error_unreadable_file(ok_files):
    (ok_files / 'junk.h5').write_bytes(b'not an HDF5 file')
    with pytest.raises(OSError, match=r"Cannot read label file .*junk\.h5 \(key 'lab'\).*HDF5"):
        load(ok_files, [('r.h5', 'raw')], [('junk.h5', 'lab')], **GEOM)


def test_error_shape_mismatch_that_no_offset_explains(ok_files):
    write_h5(ok_files / 'odd.h5', lab=np.zeros((15, 16, 6), np.int16))
    with pytest.raises(ValueError, match=r"r\.h5\[raw\].*odd\.h5\[lab\].*centred.*\(2, 5, 4\)"):
        load(ok_files, [('r.h5', 'raw')], [('odd.h5', 'lab')], **GEOM)


def test_error_label_overflow(ok_files):
    write_h5(ok_files / 'big.h5', lab=np.full((16, 16, 6), 40000, np.int32))
    with pytest.raises(ValueError, match=r"int16 cannot store value 40000 from .*big\.h5\[lab\].*renumber"):
        load(ok_files, [('r.h5', 'raw')], [('big.h5', 'lab')], **dict(GEOM, n_lab=None))


def test_error_labels_outside_n_lab(ok_files):
    write_h5(ok_files / 'three.h5', lab=np.full((16, 16, 6), 2, np.int16))
    with pytest.raises(ValueError, match=r"three\.h5\[lab\] holds label 2, outside 0\.\.1 for n_lab=2"):
        load(ok_files, [('r.h5', 'raw')], [('three.h5', 'lab')], **GEOM)
    write_h5(ok_files / 'frac.h5', lab=np.full((16, 16, 6), 0.5, np.float32))
    with pytest.raises(ValueError, match=r"frac\.h5\[lab\]: class labels must be whole numbers"):
        load(ok_files, [('r.h5', 'raw')], [('frac.h5', 'lab')], **GEOM)
    data = load(ok_files, [('r.h5', 'raw')], [('frac.h5', 'lab')], float_label=True, **GEOM)  # regression: fine
    assert data.getbatch(1)[1].dtype == np.float32


def test_error_patch_larger_than_cube(ok_files):
    with pytest.raises(ValueError, match=r"r\.h5\[raw\].*patch size \(3, 21, 9\).*does not fit"):
        load(ok_files, [('r.h5', 'raw')], [('l.h5', 'lab')], **dict(GEOM, patch_size=(3, 21, 9)))
    # labels 16 wide + 2*offset 2 = 20: a 21-wide patch cannot have labels under every output
    write_h5(ok_files / 'r2.h5', raw=np.zeros((30, 30, 8), np.uint8))
    write_h5(ok_files / 'l2.h5', lab=np.zeros((16, 16, 6), np.int16))
    with pytest.raises(ValueError, match=r"r2\.h5\[raw\].*labelled region plus the CNN offset spans \(8, 20, 20\)"):
        load(ok_files, [('r2.h5', 'raw')], [('l2.h5', 'lab')], **dict(GEOM, patch_size=(3, 21, 9)))


def test_error_bad_layouts_and_lists(ok_files):
    write_h5(ok_files / 'flat.h5', raw=np.zeros((20, 20), np.uint8))
    with pytest.raises(ValueError, match=r"flat\.h5\[raw\]: raw data must be \(x, y, z\)"):
        load(ok_files, [('flat.h5', 'raw')], [('l.h5', 'lab')], **GEOM)
    write_h5(ok_files / 'l4.h5', lab=np.zeros((1, 16, 16, 6), np.int16))
    with pytest.raises(ValueError, match=r"l4\.h5\[lab\]: img-img labels must be a \(x, y, z\) volume"):
        load(ok_files, [('r.h5', 'raw')], [('l4.h5', 'lab')], **GEOM)
    write_h5(ok_files / 'r2ch.h5', raw=np.zeros((2, 20, 20, 8), np.uint8))
    with pytest.raises(ValueError, match=r"r2ch\.h5\[raw\] has 2 channel\(s\) but the cubes loaded before have 1"):
        load(ok_files, [('r.h5', 'raw'), ('r2ch.h5', 'raw')], [('l.h5', 'lab')] * 2, **GEOM)
    with pytest.raises(ValueError, match='same length'):
        load(ok_files, [('r.h5', 'raw')] * 2, [('l.h5', 'lab')], **GEOM)
    with pytest.raises(ValueError, match=r"d_files\[0\] must be a tuple"):
        load(ok_files, ['r.h5'], [('l.h5', 'lab')], **GEOM)
    with pytest.raises(ValueError, match=r"r\.h5\[raw\]: region z=\(0, 99\) exceeds the dataset"):
        load(ok_files, [('r.h5', 'raw', dict(z=(0, 99)))], [('l.h5', 'lab')], **GEOM)
    with pytest.raises(ValueError, match='valid_cubes'):
        load(ok_files, [('r.h5', 'raw')], [('l.h5', 'lab')], valid_cubes=[3], **GEOM)
    with pytest.raises(ValueError, match='cube_prios'):
        load(ok_files, [('r.h5', 'raw')] * 2, [('l.h5', 'lab')] * 2, cube_prios=[1, 2, 3], **GEOM)
    with pytest.raises(ValueError, match='cube_prios'):
        load(ok_files, [('r.h5', 'raw')], [('l.h5', 'lab')], cube_prios=[-1], **GEOM)


def test_error_bad_info_dataset(ok_files):
    write_h5(ok_files / 'li.h5', lab=np.zeros((16, 16, 6), np.int16), info=np.ones((2, 5), np.int16))
    with pytest.raises(ValueError, match=r"li\.h5\[info\].*\(2, 2\)"):
        load(ok_files, [('r.h5', 'raw')], [('li.h5', 'lab')], **GEOM)


def test_error_img_scalar_label_count(tmp_path):
    write_h5(tmp_path / 'r.h5', raw=np.zeros((8, 8, 5), np.uint8))
    write_h5(tmp_path / 'l.h5', lab=np.zeros((4,), np.int16))
    with pytest.raises(ValueError, match=r"l\.h5\[lab\]: 4 img-scalar label\(s\) for a raw cube of 5 z-slice"):
        load(tmp_path, [('r.h5', 'raw')], [('l.h5', 'lab')], patch_size=(8, 8), n_dim=2, n_lab=2, mode='img-scalar')


def test_constructor_errors():
    with pytest.raises(ValueError, match='n_dim'):
        CNNData((5, 5), 1, 1, n_dim=4)
    with pytest.raises(ValueError, match="vect-scalar.*traindata"):
        CNNData((5, 5), 1, 1, mode='vect-scalar')
    with pytest.raises(ValueError, match='border_mode'):
        CNNData((5, 5), 1, 1, border_mode='wrap')
    with pytest.raises(NotImplementedError, match='normalise'):
        CNNData((5, 5), 1, 1, pre_process='normalise')
    with pytest.raises(ValueError, match='stride and offset'):
        CNNData((5, 5))
    with pytest.raises(ValueError, match='patch_size'):
        CNNData(None, 1, 1)
    with pytest.raises(ValueError, match='label patch'):
        CNNData((5, 5), 1, 3)
    with pytest.raises(TypeError, match='contradict'):
        CNNData((5, 5), 1, 1, anistropic_data=True, anisotropic_data=False)
    assert CNNData((5, 5), 1, 1, anisotropic_data=True).aniso is True
    assert CNNData((5, 5), 1, 1, anistropic_data=True).aniso is True
    d = CNNData((5, 5), (2, 2), (1.5, 2.5))
    assert d.offset.tolist() == [1, 2]          # offsets are floored, as the original's int cast


def test_getbatch_errors(ok_files):
    empty = CNNData(**GEOM)
    with pytest.raises(RuntimeError, match='no data'):
        empty.getbatch(1)
    data = load(ok_files, [('r.h5', 'raw')], [('l.h5', 'lab')], **GEOM)
    with pytest.raises(ValueError, match="'test'"):
        data.getbatch(1, source='test')
    with pytest.raises(ValueError, match='No validation cubes'):
        data.getbatch(1, source='valid')
    with pytest.raises(ValueError, match=r'grey_augment_channels=\[1\]'):
        data.getbatch(1, grey_augment_channels=[1])
    with pytest.raises(ValueError, match='warp_on'):
        data.getbatch(1, warp_on=2)
    with pytest.raises(ValueError, match='batch_size'):
        data.getbatch(0)


# ----------------------------------------------------------------------------------------------------
# Randomness
# ----------------------------------------------------------------------------------------------------
def test_reseeded_copies_draw_independent_streams(ok_files):
    data = load(ok_files, [('r.h5', 'raw')], [('l.h5', 'lab')], **GEOM)
    write_h5(ok_files / 'r.h5', raw=np.random.default_rng(3).integers(0, 255, (20, 20, 8)).astype(np.uint8))
    data = load(ok_files, [('r.h5', 'raw')], [('l.h5', 'lab')], **GEOM)
    state = np.random.get_state()
    kw = dict(grey_augment_channels=[0])
    reference = copy.deepcopy(data)
    a, b, c = pickle.loads(pickle.dumps(data)), copy.deepcopy(data), copy.deepcopy(data)
    a.reseed(1)
    b.reseed(2)
    c.reseed(1)
    batch_a, batch_b, batch_c = a.getbatch(4, **kw)[0], b.getbatch(4, **kw)[0], c.getbatch(4, **kw)[0]
    np.testing.assert_array_equal(batch_a, batch_c)              # same seed, same stream
    assert not np.array_equal(batch_a, batch_b)                  # different seeds differ
    np.testing.assert_array_equal(data.getbatch(4, **kw)[0], reference.getbatch(4, **kw)[0])  # copies don't touch it
    assert all(np.array_equal(x, y) for x, y in zip(np.random.get_state(), state) if isinstance(x, np.ndarray))
    # a process that uses the object without reseeding gets a fresh stream (simulated PID change)
    d1 = copy.deepcopy(data)
    d1._pid = -1
    assert not np.array_equal(d1.getbatch(4, **kw)[0], copy.deepcopy(data).getbatch(4, **kw)[0])


# ----------------------------------------------------------------------------------------------------
# Warping
# ----------------------------------------------------------------------------------------------------
class StubWarping:
    """Stand-in for elektronn.training.warping with the agreed interface: an identity 'warp' that
    needs a margin of 2 voxels per side and records the calls."""

    def __init__(self):
        self.calls = []

    def draw_warp_params(self, patch_size, amount=1.0, rng=None):
        assert isinstance(rng, np.random.Generator)
        return 0.0, 0.0, 1.0, 0.0, (0.0 if len(patch_size) == 3 else None)

    def required_patch_size(self, patch_size, rot, shear, scale, stretch, twist=None):
        return tuple(p + 4 for p in patch_size)

    def _crop(self, img, lab, patch_size):
        n = len(patch_size)
        self.calls.append((img.shape, None if lab is None else lab.shape))
        sp = img[(slice(2, -2), slice(None)) + (slice(2, -2),) * (n - 1)] if n == 3 else img[:, 2:-2, 2:-2]
        return sp, (None if lab is None else lab[(slice(2, -2),) * n])

    def warp2dJoint(self, img, lab, patch_size, rot, shear, scale, stretch):
        return self._crop(img, lab, patch_size)

    def warp3dJoint(self, img, lab, patch_size, rot, shear, scale, stretch, twist):
        return self._crop(img, lab, patch_size)


def test_warp_on_calls_the_warping_interface_and_falls_back(tmp_path, monkeypatch):
    import sys
    import elektronn.training
    stub = StubWarping()
    monkeypatch.setitem(sys.modules, 'elektronn.training.warping', stub)
    # once the real module was imported, ``from elektronn.training import warping`` finds the attribute
    monkeypatch.setattr(elektronn.training, 'warping', stub, raising=False)
    d_files, l_files = coded_pair(tmp_path, (32, 30, 16), (26, 24, 12))
    data = load(tmp_path, d_files, l_files, patch_size=(5, 15, 13), stride=1, offset=(1, 3, 2), n_dim=3,
                n_lab=32767)
    for _ in range(5):
        d, l = data.getbatch(2, warp_on=True, strided=False)
        for k in range(2):
            np.testing.assert_array_equal(l[k], inner(d[k], (1, 3, 2)))
    assert data.n_successful_warp == 10 and data.n_failed_warp == 0
    assert stub.calls[0] == ((9, 1, 19, 17), (7, 13, 13))     # enlarged patch, offset-reduced labels
    data.warp_on = 0.3                                         # the attribute is getbatch's default
    data.getbatch(100)
    assert 10 + 15 < data.n_successful_warp < 10 + 45
    data.getbatch(10, warp_on=False)
    n = data.n_successful_warp
    data.warp_on = False
    data.getbatch(10)
    assert data.n_successful_warp == n
    # an enlarged patch that does not fit: counted, and an unwarped patch is used
    tight = load(tmp_path, d_files, l_files, patch_size=(5, 29, 13), stride=1, offset=(1, 3, 2), n_dim=3,
                 n_lab=32767)
    d, l = tight.getbatch(3, warp_on=True, strided=False)
    assert tight.n_failed_warp == 3 and tight.n_successful_warp == 0
    np.testing.assert_array_equal(l[0], inner(d[0], (1, 3, 2)))
    # 2D: the 2D warp is used with (ch, x, y) patches
    flat = load(tmp_path, d_files, l_files, patch_size=(11, 11), stride=1, offset=2, n_dim=2, n_lab=32767)
    d, l = flat.getbatch(2, warp_on=True, strided=False)
    assert stub.calls[-1] == ((1, 15, 15), (11, 11)) and flat.n_successful_warp == 2
    np.testing.assert_array_equal(l[0], d[0, 0, 2:-2, 2:-2])


def test_warp_on_without_warping_module_says_so(ok_files, monkeypatch):
    import sys
    import elektronn.training
    monkeypatch.setitem(sys.modules, 'elektronn.training.warping', None)
    monkeypatch.delattr(elektronn.training, 'warping', raising=False)
    data = load(ok_files, [('r.h5', 'raw')], [('l.h5', 'lab')], **GEOM)
    data.getbatch(1, warp_on=False)
    with pytest.raises(RuntimeError, match='elektronn.training.warping'):
        data.getbatch(1, warp_on=True)


def _is_plain_crop(patch):
    """Whether a coded 3D patch ``(z, ch, x, y)`` is an axis-aligned crop (codes step by 1 along y)."""
    x, y, z = decode(patch[:, 0])
    return bool(np.all(np.diff(y, axis=2) == 1) and np.all(np.diff(x, axis=1) == 1))


def test_warping_keeps_3d_registration_and_counts(tmp_path):
    """The real 3D warp: data and labels stay registered voxel by voxel; ``warp_on=0.7`` warps about
    70 % of the patches (the attribute being getbatch's default); enlarged patches that do not fit
    fall back to plain ones and are counted."""
    d_files, l_files = coded_pair(tmp_path, (32, 32, 16), (30, 30, 14))
    data = load(tmp_path, d_files, l_files, patch_size=(3, 13, 13), stride=1, offset=(1, 3, 3), n_dim=3,
                n_lab=32767)
    warped = 0
    for _ in range(10):
        d, l = data.getbatch(1, warp_on=True, flip=False, strided=False)
        np.testing.assert_array_equal(l[0], inner(d[0], (1, 3, 3)))
        warped += not _is_plain_crop(d[0])
    assert data.n_successful_warp == 10 and data.n_failed_warp == 0
    assert warped >= 8                       # rotation, shear, stretch: (almost) never an axis-aligned crop
    data.warp_on = 0.7
    d, l = data.getbatch(200, flip=False, strided=False)
    assert data.n_failed_warp == 0 and 10 + 120 < data.n_successful_warp < 10 + 160
    plain = sum(_is_plain_crop(p) for p in d)
    assert 200 - (data.n_successful_warp - 10) <= plain <= 200 - (data.n_successful_warp - 10) + 10
    for k in range(200):
        np.testing.assert_array_equal(l[k], inner(d[k], (1, 3, 3)))
    big = load(tmp_path, d_files, l_files, patch_size=(3, 31, 31), stride=1, offset=(1, 3, 3), n_dim=3, n_lab=32767)
    d, l = big.getbatch(20, warp_on=0.7, flip=False, strided=False)
    assert big.n_failed_warp + big.n_successful_warp in range(8, 21) and big.n_failed_warp >= 8
    for k in range(20):
        np.testing.assert_array_equal(l[k], inner(d[k], (1, 3, 3)))


# ----------------------------------------------------------------------------------------------------
# Background workers with CNNData
# ----------------------------------------------------------------------------------------------------
def _warp_data(tmp_path):
    d_files, l_files = coded_pair(tmp_path, (32, 32, 16), (30, 30, 14))
    return load(tmp_path, d_files, l_files, patch_size=(3, 13, 13), stride=1, offset=(1, 3, 3), n_dim=3,
                n_lab=32767)


def test_workers_draw_the_streams_of_their_own_seeds(tmp_path):
    expected, pids = check_workers_draw_their_seeds(_warp_data(tmp_path), dict(batch_size=2, warp_on=0.7))
    assert not np.array_equal(*expected)
    assert not any(process_alive(p) for p in pids)                  # shut down and reaped


def test_console_change_of_warp_on_reaches_the_workers_and_a_bad_one_is_reported(tmp_path):
    from elektronn.training.workers import BackgroundWorkers, WorkerError
    data = _warp_data(tmp_path)
    with BackgroundWorkers(data, dict(batch_size=4, flip=False), n_proc=2, seeds=[1, 2]) as w:
        assert all(_is_plain_crop(p) for _ in range(3) for p in w.get()[0])          # warp_on=False
        data.warp_on = True                                                            # as in the console
        assert w.update({'warp_on': True}) == ['warp_on']
        batches = [w.get() for _ in range(4)]
        assert sum(_is_plain_crop(p) for d, _ in batches for p in d) <= 1
        for d, l in batches:
            np.testing.assert_array_equal(l[0], inner(d[0], (1, 3, 3)))
        w.update({'warp_on': 5})
        with pytest.raises(WorkerError,
                           match=r'(?s)Traceback.*patch_sampling\.py.*warp_on must be True, False or a fraction'):
            for _ in range(20):
                w.get()


@pytest.mark.skipif(not os.path.exists('/proc/self/smaps_rollup'), reason='needs Linux /proc/<pid>/smaps_rollup')
def test_workers_share_the_loaded_cubes_instead_of_copying_them():
    from elektronn.training.workers import BackgroundWorkers
    raw = np.full((24, 1, 1024, 1024), 0.5, np.float32)       # 96 MiB, every page touched
    lab = np.ones((20, 1000, 1000), np.int16)
    data = CNNData(patch_size=(3, 13, 13), stride=1, offset=(1, 3, 3), n_dim=3, n_lab=2, zchxy_order=True, seed=0)
    data.addDataFromNdarray(raw, lab)
    assert np.shares_memory(data.train_d[0], raw)
    with BackgroundWorkers(data, dict(batch_size=4), n_proc=2, seeds=[1, 2]) as w:
        for _ in range(20):
            w.get()
        private = []
        for pid in w.pids:
            with open('/proc/%i/smaps_rollup' % pid) as f:
                fields = dict(line.split(':', 1) for line in f if ':' in line)
            private.append(sum(int(fields[k].split()[0]) for k in ('Private_Clean', 'Private_Dirty')) * 1024)
    assert max(private) < raw.nbytes / 4, private
