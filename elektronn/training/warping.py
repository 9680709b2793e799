"""Warping augmentation: random rotation, shear, scale and perspective stretch of 2D/3D patches.

The transform is the original ELEKTRONN's (its C kernels ``fastwarp2d_opt`` and
``fastwarp3d_opt_zxy``), rewritten as vectorised NumPy index maths with nearest-neighbour
sampling, so labels can be warped jointly with the image and keep their values.

Geometry (all sizes per axis; 3D arrays are ``(z, ch, x, y)``, 2D ``(ch, x, y)``):

* Coordinates are centred on the **source** array's centre ``c = size / 2 - 0.5``. The destination
  is the central ``patch`` of the source: destination index ``i`` starts at source index
  ``i + (size - patch) // 2``.
* With ``x, y, z`` the centred destination coordinates, angles in radians, ``s`` the scales and
  ``st`` the stretches (``st[0]``, ``st[1]`` divided by the x/y centre offsets, ``st[2]``,
  ``st[3]`` and ``twist`` by the z centre offset)::

      r  = rot + twist * z                       (3D: the rotation changes along z)
      xt = x * (1/s_x + st[0] * y + st[2] * z)
      yt = y * (1/s_y + st[1] * x + st[3] * z)
      u  = xt * cos(r - shear) - yt * sin(r + shear) + c_x
      v  = yt * cos(r + shear) + xt * sin(r - shear) + c_y
      w  = z / s_z + c_z                         (z is never rotated into x/y: fine for anisotropic data)

* The value at destination ``(z, x, y)`` is the source value at the nearest grid point
  ``floor((w, u, v) + 0.5)`` (round half up); samples outside the source read ``fill`` (0).
  All channels share the mapping.
* Labels (``lab``, already reduced by the CNN offset) are placed centred in the image geometry
  (``off = (source size - label size) // 2`` per axis), mapped with the same transform and cut to
  ``patch - 2 * off``; so warped image and labels stay registered. Label values are copied, never
  interpolated, and keep their dtype.

Typical use in a data class (one fresh draw per patch, from the data object's own generator)::

    params = draw_warp_params(patch_size, amount=1.0, rng=self.rng)
    req = required_patch_size(patch_size, *params)         # cut this much from the cube
    img, lab = warp3dJoint(img_cut, lab_cut, patch_size, *params)

The original's functions keep their return values: :func:`getWarpParams` gives
``(req_size, rot, shear, scale, stretch, twist)`` and :func:`getRequiredPatchSize`
``(req_size, eff_size, left_exc)``.

Differences from the original: the 2D parameters scale both axes (the original forced the x scale
to 1, a z-scale left-over), every call draws from the ``rng`` it is given (or fresh OS entropy),
the required size is exact for this kernel (checked on every z slice), samples just left of the
source read ``fill`` (the C kernel's ``trunc(u + 0.5)`` read index 0 for ``-1.5 < u < -0.5``) and
the output keeps the input dtype.
"""
import warnings
from collections import namedtuple

import numpy as np

__all__ = ['WarpParams', 'draw_warp_params', 'required_patch_size', 'getWarpParams', 'getRequiredPatchSize',
           'warp2dFast', 'warp3dFast', 'warp2dJoint', 'warp3dJoint', 'warp2dBatch']

#: Maxima of the random warp parameters at ``amount=1`` (degrees / factors), as in the original.
ROT_MAX = 15.0
SHEAR_MAX = 3.0
SCALE_MAX = 0.1  # scale factors are drawn from [1, 1 + SCALE_MAX * amount]
STRETCH_MAX = 0.1

class WarpParams(namedtuple('WarpParams', ['rot', 'shear', 'scale', 'stretch', 'twist'])):
    """Random warp parameters, in the positional order the warp functions take them.

    Attributes:
        rot: Rotation about the z axis in degrees.
        shear: Shear angle in degrees (against the xy diagonal).
        scale: Scale factors, ``(s_x, s_y)`` in 2D or ``(s_x, s_y, s_z)`` in 3D.
        stretch: Perspective stretch fractions, 2 in 2D (x by y, y by x), 4 in 3D (+ x by z, y by z).
        twist: Change of the rotation angle from the z centre to the outer slice in degrees (``None`` in 2D).
    """
    __slots__ = ()


def _rng(rng):
    return np.random.default_rng() if rng is None else rng


def draw_warp_params(patch_size, amount=1.0, rng=None):
    """Draw random warp parameters for a patch, with the original's distributions.

    * shear ``U(-3, 3)`` degrees;
    * 2D: rotation ``U(-15, 15)`` degrees, scale ``U(1, 1.1)`` for x and y independently, stretch
      ``U(-0.1, 0.1)`` twice, no twist;
    * 3D: twist ``U(-15, 15)``, rotation ``min(15 - |twist|, U(0, 15))`` (so the total rotation of
      any slice stays within 15 degrees), scale ``U(1, 1.1)`` per axis, stretch ``U(-0.1, 0.1)``
      four times.

    All maxima are multiplied by ``amount``.

    Args:
        patch_size: ``(x, y)`` or ``(z, x, y)``; only its length (2D or 3D) matters.
        amount: Strength of the warp (0 gives the identity); above 1 needs much larger source patches
            (a warning is printed).
        rng: A ``numpy.random.Generator`` (or ``RandomState``) to draw from; ``None`` draws from fresh
            OS entropy, so that forked workers never repeat each other's parameters.

    Returns:
        :class:`WarpParams` ``(rot, shear, scale, stretch, twist)``.
    """
    n_dim = len(patch_size)
    if n_dim not in (2, 3):
        raise ValueError('patch_size must be (x, y) or (z, x, y), got %r' % (patch_size,))
    if isinstance(amount, bool) or not np.isscalar(amount) or not amount >= 0:
        raise ValueError('amount must be a non-negative number, got %r' % (amount,))
    if amount > 1:
        warnings.warn('warpAugment amount > 1 this requires more than 1.4 bigger patches before warping',
                      stacklevel=2)
    rng = _rng(rng)
    rot_max, shear_max, scale_max, stretch_max = ROT_MAX * amount, SHEAR_MAX * amount, SCALE_MAX * amount, \
        STRETCH_MAX * amount
    shear = float(rng.uniform(-shear_max, shear_max))
    if n_dim == 3:
        twist = float(rng.uniform(-rot_max, rot_max))
        rot = float(min(rot_max - abs(twist), rng.uniform(0, rot_max)))
        scale = 1 + scale_max * rng.uniform(0, 1, 3)
        stretch = rng.uniform(-stretch_max, stretch_max, 4)
    else:
        twist = None
        rot = float(rng.uniform(-rot_max, rot_max))
        scale = 1 + scale_max * rng.uniform(0, 1, 2)
        stretch = rng.uniform(-stretch_max, stretch_max, 2)
    return WarpParams(rot, shear, tuple(float(s) for s in scale), tuple(float(s) for s in stretch), twist)


# ------------------------------------------------------------------------------------------------
# Geometry
# ------------------------------------------------------------------------------------------------
def _centred_axis(src_len, dst_len):
    """Centred source coordinates of the destination samples along one axis, and the centre."""
    centre = src_len / 2.0 - 0.5
    return np.arange(dst_len, dtype=np.float32) + np.float32((src_len - dst_len) // 2 - centre), np.float32(centre)


def _normalised(value, centre):
    """``value / centre``, or 0 for an axis of extent 1 (nothing to stretch or twist across)."""
    return np.float32(value / centre) if centre > 0 else np.float32(0.0)


class _SliceMaps:
    """The warp as per-destination-slice affine-plus-bilinear maps ``(x, y) -> (u, v)`` and source slices.

    ``K`` destination slices (z slices of a 3D patch, the single slice of a 2D patch, or the examples
    of a 2D batch) each have a source slice coordinate ``w`` and the coefficients of
    ``xt = x * (ax + bx * y)``, ``yt = y * (ay + by * x)``, rotated by ``(r - shear, r + shear)``.
    """

    def __init__(self, w, ang, shear, ax, ay, bx, by, centre_xy):
        f32 = lambda a: np.broadcast_to(np.asarray(a, dtype=np.float32), np.shape(w)).reshape(-1, 1, 1)
        self.w = np.asarray(w, dtype=np.float32)
        ang, shear = np.asarray(ang, dtype=np.float64), np.asarray(shear, dtype=np.float64)
        self.cos_m, self.sin_m = f32(np.cos(ang - shear)), f32(np.sin(ang - shear))
        self.cos_p, self.sin_p = f32(np.cos(ang + shear)), f32(np.sin(ang + shear))
        self.ax, self.ay, self.bx, self.by = f32(ax), f32(ay), f32(bx), f32(by)
        self.cx, self.cy = centre_xy

    def uv(self, x, y):
        """Source coordinates ``(u, v)``, shape ``(K, len(x), len(y))``, for centred ``x``, ``y``."""
        X, Y = x[None, :, None], y[None, None, :]
        xt = X * (self.ax + self.bx * Y)
        yt = Y * (self.ay + self.by * X)
        return xt * self.cos_m - yt * self.sin_p + self.cx, yt * self.cos_p + xt * self.sin_m + self.cy


def _check_params(n_dim, scale, stretch):
    scale = np.asarray(scale, dtype=np.float64).reshape(-1)
    stretch = np.asarray(stretch, dtype=np.float64).reshape(-1)
    if scale.size != n_dim:
        raise ValueError('scale must have %i entries for a %iD warp, got %r' % (n_dim, n_dim, scale.tolist()))
    if stretch.size != 2 * (n_dim - 1):
        raise ValueError('stretch must have %i entries for a %iD warp, got %r'
                         % (2 * (n_dim - 1), n_dim, stretch.tolist()))
    if np.any(scale <= 0):
        raise ValueError('scale factors must be positive, got %r' % (scale.tolist(),))
    return scale, stretch


def _maps(src_shape, dst_shape, rot, shear, scale, stretch, twist):
    """The :class:`_SliceMaps` and centred x/y destination axes of a 2D (``len(src_shape) == 2``) or 3D warp."""
    n_dim = len(src_shape)
    scale, stretch = _check_params(n_dim, scale, stretch)
    inv = 1.0 / scale
    rot, shear = np.deg2rad(rot), np.deg2rad(shear)
    x, cx = _centred_axis(src_shape[-2], dst_shape[-2])
    y, cy = _centred_axis(src_shape[-1], dst_shape[-1])
    bx, by = _normalised(stretch[0], cx), _normalised(stretch[1], cy)
    if n_dim == 2:
        maps = _SliceMaps(np.zeros(1), rot, shear, inv[0], inv[1], bx, by, (cx, cy))
    else:
        z, cz = _centred_axis(src_shape[0], dst_shape[0])
        twist_z = _normalised(np.deg2rad(twist or 0.0), cz) * z
        maps = _SliceMaps(z * np.float32(inv[2]) + cz, rot + twist_z, shear,
                          inv[0] + _normalised(stretch[2], cz) * z, inv[1] + _normalised(stretch[3], cz) * z,
                          bx, by, (cx, cy))
    return maps, x, y


def _nearest(coord):
    return np.floor(coord + np.float32(0.5)).astype(np.intp)


def _sample(src, slice_index, maps, x, y, fill, offset_xy=(0, 0)):
    """Nearest-neighbour samples of ``src`` ``(Z, C, X, Y)`` at the mapped grid: ``(K, C, len(x), len(y))``.

    ``slice_index`` ``(K,)`` and ``offset_xy`` shift the mapped coordinates into ``src`` (labels are
    smaller than the geometry they are mapped in); anything outside ``src`` reads ``fill``.
    """
    u, v = maps.uv(x, y)
    Z, C, SX, SY = src.shape
    ui = _nearest(u) - offset_xy[0]
    vi = _nearest(v) - offset_xy[1]
    slice_index = np.asarray(slice_index, dtype=np.intp).reshape(-1, 1, 1)
    valid = (ui >= 0) & (ui < SX) & (vi >= 0) & (vi < SY) & (slice_index >= 0) & (slice_index < Z)
    flat = slice_index * (C * SX * SY) + ui * SY + vi
    all_valid = bool(valid.all())
    if not all_valid:
        flat = np.where(valid, flat, 0)
    if C > 1:
        flat = flat[:, None] + (np.arange(C, dtype=np.intp) * (SX * SY))[None, :, None, None]
    else:
        flat = flat[:, None]
    out = np.ascontiguousarray(src).reshape(-1).take(flat)
    if not all_valid:
        out[~np.broadcast_to(valid[:, None], out.shape)] = fill
    return out


def required_patch_size(patch_size, rot, shear, scale, stretch, twist=None):
    """Size of the source region to cut so that warping it to ``patch_size`` leaves no empty pixels.

    The region is centred on the patch (the original's convention): each axis grows by the same
    amount on both sides. The size is exact for this module's kernel: the mapped corners of every
    destination z slice are checked, since the twist bends the slices' outlines.

    Args:
        patch_size: ``(x, y)`` or ``(z, x, y)``.
        rot, shear, scale, stretch, twist: As returned by :func:`draw_warp_params`.

    Returns:
        ``numpy`` int array, one size per axis (``>= patch_size``).
    """
    ps = np.array(patch_size, dtype=np.intp).reshape(-1)
    if ps.size not in (2, 3) or np.any(ps < 1):
        raise ValueError('patch_size must be (x, y) or (z, x, y) with positive sizes, got %r' % (patch_size,))
    req = ps.copy()
    for _ in range(1000):
        maps, x, y = _maps(tuple(req), tuple(ps), rot, shear, scale, stretch, twist)
        u, v = maps.uv(x[[0, -1]], y[[0, -1]])
        lo = [u.min(), v.min()]
        hi = [u.max(), v.max()]
        if ps.size == 3:
            lo.insert(0, maps.w.min())
            hi.insert(0, maps.w.max())
        lo, hi = np.array(lo, dtype=np.float64), np.array(hi, dtype=np.float64)
        # floor(c + 0.5) must lie in [0, req - 1]
        deficit = np.maximum(-0.5 - lo, hi - (req - 0.5) + 1e-6)
        if np.all(deficit <= 0):
            return req
        req = req + 2 * np.ceil(np.maximum(deficit, 0)).astype(np.intp)
    raise ValueError('warp parameters rot=%r, shear=%r, scale=%r, stretch=%r, twist=%r need an unbounded source '
                     'region' % (rot, shear, scale, stretch, twist))


def getRequiredPatchSize(patch_size, rot, shear, scale, stretch, twist=None):
    """The original's form of :func:`required_patch_size`: ``(req_size, eff_size, left_exc)``.

    ``req_size`` is the source size to cut (:func:`required_patch_size`); ``eff_size`` (the extent of
    the warped patch corners, rounded up) and ``left_exc`` (how far the corners reach below 0,
    rounded down) come from mapping the ``2 ** n_dim`` corners of the patch, as the original did.

    Returns:
        Three int arrays, one entry per axis (``(x, y)`` or ``(z, x, y)``).
    """
    req = required_patch_size(patch_size, rot, shear, scale, stretch, twist)
    ps = tuple(int(p) for p in np.array(patch_size).reshape(-1))
    maps, x, y = _maps(ps, ps, rot, shear, scale, stretch, twist)
    u, v = maps.uv(x[[0, -1]], y[[0, -1]])  # (slices, 2, 2)
    if len(ps) == 3:
        ends = [0, len(maps.w) - 1]
        coords = [(maps.w[k], u[k, i, j], v[k, i, j]) for k in ends for i in (0, 1) for j in (0, 1)]
    else:
        coords = [(u[0, i, j], v[0, i, j]) for i in (0, 1) for j in (0, 1)]
    coords = np.array(coords, dtype=np.float64)
    eff_size = np.ceil(coords.max(axis=0) - coords.min(axis=0)).astype(int)
    left_exc = np.floor(np.abs(np.minimum(coords.min(axis=0), 0))).astype(int)
    return req, eff_size, left_exc


def getWarpParams(patch_size, amount=1.0, rng=None):
    """The original's form of :func:`draw_warp_params`: ``(req_size, rot, shear, scale, stretch, twist)``.

    ``req_size`` is :func:`required_patch_size` of the drawn parameters (an int array); ``scale``
    and ``stretch`` are float arrays, ``twist`` is ``None`` in 2D. ``rng`` (new) as in
    :func:`draw_warp_params`.
    """
    rot, shear, scale, stretch, twist = draw_warp_params(patch_size, amount, rng)
    req = required_patch_size(patch_size, rot, shear, scale, stretch, twist)
    return req, rot, shear, np.array(scale), np.array(stretch), twist


# ------------------------------------------------------------------------------------------------
# Transforms
# ------------------------------------------------------------------------------------------------
def _spatial_patch(patch_size, n_dim, img_spatial, name):
    ps = tuple(int(p) for p in np.array(patch_size).reshape(-1))
    if len(ps) != n_dim or min(ps) < 1:
        raise ValueError('%s: patch_size must have %i positive entries, got %r' % (name, n_dim, patch_size))
    if any(p > s for p, s in zip(ps, img_spatial)):
        raise ValueError('%s: the image (spatial shape %s) is smaller than the patch %s; cut a source region of '
                         'required_patch_size(...) first' % (name, tuple(img_spatial), ps))
    return ps


def _check_image(img, ndim, layout, name):
    img = np.asarray(img)
    if img.ndim != ndim:
        raise ValueError('%s: img must have %i axes %s, got shape %s' % (name, ndim, layout, img.shape))
    return img


def warp2dFast(img, patch_size, rot=0, shear=0, scale=(1, 1), stretch=(0, 0), *, fill=0):
    """Warp a 2D image ``(ch, x, y)`` about its centre and cut the central ``patch_size`` ``(px, py)``.

    Returns:
        ``(ch, px, py)`` array of ``img``'s dtype.
    """
    img = _check_image(img, 3, '(ch, x, y)', 'warp2dFast')
    ps = _spatial_patch(patch_size, 2, img.shape[1:], 'warp2dFast')
    maps, x, y = _maps(img.shape[1:], ps, rot, shear, scale, stretch, None)
    return _sample(img[None], [0], maps, x, y, fill)[0]


def warp3dFast(img, patch_size, rot=0, shear=0, scale=(1, 1, 1), stretch=(0, 0, 0, 0), twist=0, *, fill=0):
    """Warp a 3D image ``(z, ch, x, y)`` about its centre and cut the central ``patch_size`` ``(pz, px, py)``.

    Returns:
        ``(pz, ch, px, py)`` array of ``img``'s dtype.
    """
    img = _check_image(img, 4, '(z, ch, x, y)', 'warp3dFast')
    spatial = (img.shape[0],) + img.shape[2:]
    ps = _spatial_patch(patch_size, 3, spatial, 'warp3dFast')
    maps, x, y = _maps(spatial, ps, rot, shear, scale, stretch, twist)
    return _sample(img, _nearest(maps.w), maps, x, y, fill)


def _label_layout(lab, spatial, patch, name):
    """Offset of the label inside the image geometry and the warped label's shape (per axis)."""
    off = [(s - l) // 2 for s, l in zip(spatial, lab.shape)]
    out = [p - 2 * o for p, o in zip(patch, off)]
    if min(off) < 0 or min(out) < 1:
        raise ValueError('%s: labels of shape %s do not fit an image of spatial shape %s and patch %s; labels '
                         'must be the image region reduced by the same offset on both sides'
                         % (name, lab.shape, tuple(spatial), tuple(patch)))
    return off, out


def warp2dJoint(img, lab, patch_size, rot=0, shear=0, scale=(1, 1), stretch=(0, 0), twist=None, *, label_fill=0):
    """Warp a 2D image and its labels jointly.

    Args:
        img: ``(ch, x, y)``, at least ``patch_size`` (cut with :func:`required_patch_size` to avoid
            empty borders).
        lab: Labels ``(x', y')`` of the same region reduced by the CNN offset on each side (centred
            in ``img``); any other shape (scalar labels, ``None``) is returned untouched.
        patch_size: ``(px, py)``.
        rot, shear, scale, stretch: As from :func:`draw_warp_params` (degrees, factors).
        twist: Must be ``None`` or 0 (it is there so that ``warp2dJoint(img, lab, ps, *params)``
            takes a 2D :class:`WarpParams`).
        label_fill: Label value where the warped label region leaves the given labels (0 as in the
            original; -1 marks those pixels "ignore" for the NLL).

    Returns:
        ``(img, lab)``: ``(ch, px, py)`` and ``(px - 2 off_x, py - 2 off_y)`` with
        ``off = (x - x') // 2`` etc., in the input dtypes.
    """
    if twist:
        raise ValueError('warp2dJoint: twist=%r has no meaning in 2D (use warp3dJoint)' % (twist,))
    out = warp2dFast(img, patch_size, rot, shear, scale, stretch)
    spatial = np.shape(img)[1:]
    ps = _spatial_patch(patch_size, 2, spatial, 'warp2dJoint')
    if lab is not None and np.ndim(lab) == 2:
        lab = np.asarray(lab)
        off, lab_ps = _label_layout(lab, spatial, ps, 'warp2dJoint')
        lab_maps, lx, ly = _maps(spatial, lab_ps, rot, shear, scale, stretch, None)
        lab = _sample(lab[None, None], [0], lab_maps, lx, ly, label_fill, offset_xy=off)[0, 0]
    return out, lab


def warp3dJoint(img, lab, patch_size, rot=0, shear=0, scale=(1, 1, 1), stretch=(0, 0, 0, 0), twist=0, *,
                label_fill=0):
    """Warp a 3D image and its labels jointly.

    Args:
        img: ``(z, ch, x, y)``, at least ``patch_size`` (cut with :func:`required_patch_size`).
        lab: Labels ``(z', x', y')`` of the same region reduced by the CNN offset on each side;
            any other shape (e.g. img-scalar labels, ``None``) is returned untouched.
        patch_size: ``(pz, px, py)``.
        rot, shear, scale, stretch, twist: As from :func:`draw_warp_params`.
        label_fill: Label value where the warped label region leaves the given labels.

    Returns:
        ``(img, lab)``: ``(pz, ch, px, py)`` and ``(pz - 2 off_z, px - 2 off_x, py - 2 off_y)``, in
        the input dtypes.

    Shapes:
        For the 3D example network (patch ``(7, 127, 127)``, offset ``(2, 15, 15)``) and a source of
        ``(7, 1, 171, 171)``, the labels come as ``(3, 141, 141)`` and leave as ``(3, 97, 97)``.
    """
    out = warp3dFast(img, patch_size, rot, shear, scale, stretch, twist)
    spatial = (np.shape(img)[0],) + np.shape(img)[2:]
    ps = _spatial_patch(patch_size, 3, spatial, 'warp3dJoint')
    if lab is not None and np.ndim(lab) == 3:
        lab = np.asarray(lab)
        off, lab_ps = _label_layout(lab, spatial, ps, 'warp3dJoint')
        lab_maps, lx, ly = _maps(spatial, lab_ps, rot, shear, scale, stretch, twist)
        lab = _sample(lab[:, None], _nearest(lab_maps.w) - off[0], lab_maps, lx, ly, label_fill,
                      offset_xy=off[1:])[:, 0]
    return out, lab


def warp2dBatch(imgs, rot, shear, scale, stretch, *, fill=0):
    """Warp every image of a batch ``(n, ch, x, y)`` with its own parameters (no size change).

    Args:
        imgs: The batch.
        rot, shear: ``(n,)`` angles in degrees (or scalars for all).
        scale: ``(n, 2)`` scale factors ``(s_x, s_y)``.
        stretch: ``(n, 2)`` stretch fractions.
        fill: Value for pixels that map outside the image.

    Returns:
        ``(n, ch, x, y)`` array of ``imgs``' dtype.
    """
    imgs = _check_image(imgs, 4, '(n, ch, x, y)', 'warp2dBatch')
    n = imgs.shape[0]
    scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), (n, 2))
    stretch = np.broadcast_to(np.asarray(stretch, dtype=np.float64), (n, 2))
    if np.any(scale <= 0):
        raise ValueError('warp2dBatch: scale factors must be positive')
    spatial = imgs.shape[2:]
    x, cx = _centred_axis(spatial[0], spatial[0])
    y, cy = _centred_axis(spatial[1], spatial[1])
    maps = _SliceMaps(np.zeros(n), np.deg2rad(np.broadcast_to(rot, (n,))), np.deg2rad(np.broadcast_to(shear, (n,))),
                      1.0 / scale[:, 0], 1.0 / scale[:, 1], stretch[:, 0] / cx if cx > 0 else 0.0,
                      stretch[:, 1] / cy if cy > 0 else 0.0, (cx, cy))
    return _sample(imgs, np.arange(n), maps, x, y, fill)
