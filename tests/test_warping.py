"""Warping: parameters, required source size, the 2D/3D transform against a per-pixel reference,
joint image/label registration, batches and errors."""
import math

import numpy as np
import pytest

from elektronn.training import warping
from elektronn.training.warping import (required_patch_size, draw_warp_params, warp2dBatch, warp2dFast, warp2dJoint,
                                        warp3dFast, warp3dJoint)


def reference_warp3d(img, ps, rot, shear, scale, stretch, twist):
    """Per-voxel loops over the original C kernel's formulas (round half up as floor(c + 0.5))."""
    Z, C, X, Y = img.shape
    rot, shear, twist = math.radians(rot), math.radians(shear), math.radians(twist)
    cz, cx, cy = Z / 2 - 0.5, X / 2 - 0.5, Y / 2 - 0.5
    sx, sy, sz = (1.0 / s for s in scale)
    st = [stretch[0] / cx, stretch[1] / cy, stretch[2] / cz if cz else 0, stretch[3] / cz if cz else 0]
    tw = twist / cz if cz else 0
    out = np.zeros((ps[0], C, ps[1], ps[2]), img.dtype)
    for k in range(ps[0]):
        z = k + (Z - ps[0]) // 2 - cz
        a = rot + z * tw
        wi = math.floor(z * sz + cz + 0.5)
        for i in range(ps[1]):
            x = i + (X - ps[1]) // 2 - cx
            for j in range(ps[2]):
                y = j + (Y - ps[2]) // 2 - cy
                xt = x * (sx + st[0] * y + st[2] * z)
                yt = y * (sy + st[1] * x + st[3] * z)
                ui = math.floor(xt * math.cos(a - shear) - yt * math.sin(a + shear) + cx + 0.5)
                vi = math.floor(yt * math.cos(a + shear) + xt * math.sin(a - shear) + cy + 0.5)
                if 0 <= ui < X and 0 <= vi < Y and 0 <= wi < Z:
                    out[k, :, i, j] = img[wi, :, ui, vi]
    return out


def params3d(rng, amount=1.0):
    return draw_warp_params((5, 9, 9), amount=amount, rng=rng)


def test_identity_leaves_data_unchanged():
    rng = np.random.default_rng(0)
    img2 = rng.random((2, 13, 11)).astype(np.float32)
    lab2 = rng.integers(0, 3, (9, 7)).astype(np.int16)
    out, lab = warp2dJoint(img2, lab2, (13, 11))
    np.testing.assert_array_equal(out, img2)
    np.testing.assert_array_equal(lab, lab2)
    out, lab = warp2dJoint(img2, lab2, (9, 7))  # identity + central crop
    np.testing.assert_array_equal(out, img2[:, 2:11, 2:9])
    np.testing.assert_array_equal(lab, lab2[2:7, 2:5])
    img3 = rng.random((6, 2, 12, 10)).astype(np.float32)
    lab3 = rng.integers(0, 3, (4, 8, 6)).astype(np.int16)
    out, lab = warp3dJoint(img3, lab3, (6, 12, 10))
    np.testing.assert_array_equal(out, img3)
    np.testing.assert_array_equal(lab, lab3)
    out, _ = warp3dJoint(img3, None, (4, 9, 7))
    np.testing.assert_array_equal(out, img3[1:5, :, 1:10, 1:8])
    assert draw_warp_params((9, 9), amount=0, rng=rng) == (0.0, 0.0, (1.0, 1.0), (0.0, 0.0), None)
    np.testing.assert_array_equal(required_patch_size((5, 9, 9), *draw_warp_params((5, 9, 9), 0, rng)), [5, 9, 9])


@pytest.mark.filterwarnings('ignore:warpAugment amount > 1')
@pytest.mark.parametrize('seed', range(4))
def test_3d_transform_matches_per_voxel_reference(seed):
    rng = np.random.default_rng(seed)
    img = rng.random((9, 2, 23, 21)).astype(np.float32)
    p = params3d(rng, amount=1.5 if seed % 2 else 1.0)
    ours = warp3dFast(img, (5, 15, 13), *p)
    ref = reference_warp3d(img, (5, 15, 13), *p)
    assert ours.shape == (5, 2, 15, 13)
    # float32 vs float64 rounding may flip a sample lying exactly between two pixels
    assert np.mean(ours != ref) < 1e-3


def test_2d_transform_is_the_single_slice_3d_transform():
    rng = np.random.default_rng(1)
    img = rng.random((3, 25, 22)).astype(np.float32)
    for _ in range(3):
        rot, shear, scale, stretch, twist = draw_warp_params((17, 15), rng=rng)
        assert twist is None
        ours = warp2dFast(img, (17, 15), rot, shear, scale, stretch)
        ref = reference_warp3d(img[None], (1, 17, 15), rot, shear, tuple(scale) + (1.0,), tuple(stretch) + (0, 0), 0)
        assert np.mean(ours != ref[0]) < 1e-3


def test_warped_labels_stay_registered_with_the_image():
    """Labels cut from the image itself must equal the warped image's central crop."""
    rng = np.random.default_rng(2)
    for patch, off in (((31, 27), (4, 3)), ((7, 33, 29), (2, 5, 4))):
        p = draw_warp_params(patch, rng=rng)
        req = required_patch_size(patch, *p)
        classes = rng.integers(0, 5, tuple(req)).astype(np.int16)
        if len(patch) == 2:
            img, lab = classes[None].astype(np.float32), classes[off[0]:-off[0], off[1]:-off[1]]
            w_img, w_lab = warp2dJoint(img, lab, patch, *p, label_fill=-1)
            crop = w_img[0, off[0]:-off[0], off[1]:-off[1]]
        else:
            img = classes[:, None].astype(np.float32)
            lab = classes[off[0]:-off[0], off[1]:-off[1], off[2]:-off[2]]
            w_img, w_lab = warp3dJoint(img, lab, patch, *p, label_fill=-1)
            crop = w_img[off[0]:-off[0], 0, off[1]:-off[1], off[2]:-off[2]]
        assert w_lab.dtype == np.int16
        assert w_lab.shape == tuple(s - 2 * o for s, o in zip(patch, off))
        known = w_lab >= 0
        assert known.mean() > 0.99
        np.testing.assert_array_equal(w_lab[known], crop[known].astype(np.int16))
        assert not np.array_equal(w_lab, lab[tuple(slice((a - b) // 2, (a - b) // 2 + b)
                                                   for a, b in zip(lab.shape, w_lab.shape))])


@pytest.mark.filterwarnings('ignore:warpAugment amount > 1')
def test_required_patch_size_leaves_no_empty_pixels():
    rng = np.random.default_rng(3)
    for patch in ((26, 26), (9, 40, 36), (1, 31, 31), (7, 127, 127)):
        for _ in range(10):
            p = draw_warp_params(patch, amount=1.5, rng=rng)
            req = required_patch_size(patch, *p)
            assert np.all(req >= patch) and np.all((req - patch) % 2 == 0)
            ones = np.ones((1,) + tuple(req), np.float32) if len(patch) == 2 else \
                np.ones((req[0], 1, req[1], req[2]), np.float32)
            out = (warp2dFast if len(patch) == 2 else warp3dFast)(ones, patch, *p[:4 if len(patch) == 2 else 5])
            assert out.min() == 1.0, (patch, p)


def test_parameter_distributions_and_fresh_draws():
    rng = np.random.default_rng(4)
    draws2 = [draw_warp_params((20, 20), rng=rng) for _ in range(300)]
    scales = np.array([d.scale for d in draws2])
    assert scales.min() >= 1.0 and scales.max() <= 1.1
    assert scales[:, 0].std() > 0.02 and scales[:, 1].std() > 0.02  # both axes are scaled (original: y only)
    assert max(abs(d.rot) for d in draws2) <= 15 and max(abs(d.shear) for d in draws2) <= 3
    assert min(d.rot for d in draws2) < -10 < 10 < max(d.rot for d in draws2)
    draws3 = [draw_warp_params((5, 20, 20), rng=rng) for _ in range(300)]
    assert all(d.rot >= 0 and d.rot + abs(d.twist) <= 15 + 1e-9 for d in draws3)
    assert all(len(d.scale) == 3 and len(d.stretch) == 4 and max(map(abs, d.stretch)) <= 0.1 for d in draws3)
    # every call draws anew; equal seeds reproduce; no rng means fresh entropy each call
    assert draws2[0] != draws2[1]
    assert draw_warp_params((9, 9), rng=np.random.default_rng(7)) == draw_warp_params((9, 9), rng=np.random.default_rng(7))
    assert draw_warp_params((9, 9)) != draw_warp_params((9, 9))
    assert draw_warp_params((9, 9), rng=np.random.RandomState(0)).twist is None


def test_dtype_and_non_image_labels_are_kept():
    img = (np.arange(2 * 12 * 12) % 250).astype(np.uint8).reshape(2, 12, 12)
    out, lab = warp2dJoint(img, np.array([3], np.int16), (10, 10), 5.0, 1.0, (1.05, 1.0), (0.02, 0.0))
    assert out.dtype == np.uint8 and out.shape == (2, 10, 10)
    np.testing.assert_array_equal(lab, [3])
    float_lab = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    _, lab = warp2dJoint(img.astype(np.float32), float_lab, (10, 10), 3.0)
    assert lab.dtype == np.float32 and lab.shape == (6, 6)
    assert set(np.unique(lab)) <= set(np.unique(float_lab))  # nearest neighbour: no new values
    _, lab = warp3dJoint(np.zeros((3, 1, 8, 8), np.float32), np.int16(1), (3, 8, 8), 2.0)
    assert lab == 1


def test_batch_warp_uses_one_parameter_set_per_example():
    rng = np.random.default_rng(5)
    imgs = rng.random((6, 1, 26, 26)).astype(np.float32)
    rot, shear = rng.uniform(-5, 5, 6), rng.uniform(-7, 7, 6)
    scale, stretch = rng.uniform(1, 1.15, (6, 2)), rng.uniform(-0.25, 0.25, (6, 2))
    out = warp2dBatch(imgs, rot, shear, scale, stretch, fill=-0.5)
    for k in range(6):
        single = warp2dFast(imgs[k], (26, 26), rot[k], shear[k], scale[k], stretch[k], fill=-0.5)
        assert np.mean(out[k] != single) < 1e-3
    np.testing.assert_array_equal(warp2dBatch(imgs, 0, 0, 1, 0), imgs)
    assert np.any(out == -0.5)  # pixels warped in from outside read the fill value


def test_bad_input_gives_clear_errors():
    img = np.zeros((1, 10, 10), np.float32)
    with pytest.raises(ValueError, match='smaller than the patch'):
        warp2dFast(img, (12, 10))
    with pytest.raises(ValueError, match='img must have 3 axes'):
        warp2dFast(np.zeros((10, 10)), (8, 8))
    with pytest.raises(ValueError, match='scale must have 2 entries'):
        warp2dFast(img, (8, 8), 0, 0, (1, 1, 1))
    with pytest.raises(ValueError, match='stretch must have 4 entries'):
        warp3dFast(np.zeros((3, 1, 9, 9)), (3, 9, 9), 0, 0, (1, 1, 1), (0, 0))
    with pytest.raises(ValueError, match='do not fit'):
        warp2dJoint(img, np.zeros((11, 11), np.int16), (10, 10))
    with pytest.raises(ValueError, match='twist'):
        warp2dJoint(img, None, (8, 8), 0, 0, (1, 1), (0, 0), 5.0)
    with pytest.raises(ValueError, match='patch_size'):
        draw_warp_params((4,))
    with pytest.raises(ValueError, match='amount'):
        draw_warp_params((4, 4), amount=-1)
    with pytest.raises(ValueError, match='positive'):
        required_patch_size((0, 4), 0, 0, (1, 1), (0, 0))


def test_amount_above_one_warns():
    with pytest.warns(UserWarning, match='warpAugment amount > 1'):
        draw_warp_params((9, 9), amount=2, rng=np.random.default_rng(0))


def test_module_exports_the_documented_interface():
    for name in ('draw_warp_params', 'required_patch_size', 'getWarpParams', 'getRequiredPatchSize', 'warp2dJoint',
                 'warp3dJoint', 'WarpParams'):
        assert name in warping.__all__


def test_original_tuples():
    """getWarpParams / getRequiredPatchSize return what the original's did."""
    for patch in ((17, 15), (5, 19, 21)):
        req, rot, shear, scale, stretch, twist = warping.getWarpParams(patch, rng=np.random.default_rng(3))
        assert (rot, shear, tuple(scale), tuple(stretch), twist) == tuple(
            draw_warp_params(patch, rng=np.random.default_rng(3)))
        np.testing.assert_array_equal(req, required_patch_size(patch, rot, shear, scale, stretch, twist))
        req2, eff, left = warping.getRequiredPatchSize(patch, rot, shear, scale, stretch, twist)
        np.testing.assert_array_equal(req2, req)
        assert eff.shape == left.shape == (len(patch),) and eff.dtype.kind == left.dtype.kind == 'i'
        assert np.all(left >= 0) and np.all(eff >= np.array(patch) - 1)
    # no warp: the corners stay where they are
    req, eff, left = warping.getRequiredPatchSize((9, 11), 0, 0, (1, 1), (0, 0))
    np.testing.assert_array_equal(req, [9, 11])
    np.testing.assert_array_equal(eff, [8, 10])
    np.testing.assert_array_equal(left, [0, 0])
    # a rotation by 15 degrees pushes corners below 0
    _, eff, left = warping.getRequiredPatchSize((20, 20), 15, 0, (1, 1), (0, 0))
    assert np.all(left > 0) and np.all(eff > 19)
