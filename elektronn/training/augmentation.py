"""Flips, axis transpositions and grey-value augmentation of image patches.

Every function draws its randomness from the ``rng`` (a :class:`numpy.random.Generator`) it is
given, never from the global NumPy state. Patches use the internal layouts: 2D data
``(ch, x, y)`` with labels ``(x', y')``, 3D data ``(z, ch, x, y)`` with labels ``(z', x', y')``.
"""
import itertools

import numpy as np

__all__ = ['allowed_permutations', 'random_flip', 'grey_augment_params', 'grey_augment']


def allowed_permutations(patch_size, offset=None, stride=None, anisotropic=True):
    """The spatial axis permutations a patch may undergo without changing its geometry.

    A permutation is allowed when it maps the patch size (and the network's offset and stride,
    so strided labels stay aligned with the output) onto itself. For anisotropic 3D data ``z``
    is never moved; so a non-square x/y patch is only mirrored, never transposed.

    Args:
        patch_size: ``(x, y)`` or ``(z, x, y)``.
        offset, stride: Per-axis network offset and output stride, or ``None``.
        anisotropic: 3D only: keep z in place.

    Returns:
        A list of permutation tuples over the spatial axes, the identity first.
    """
    n = len(patch_size)
    geometry = [tuple(patch_size)]
    for extra in (offset, stride):
        if extra is not None:
            geometry.append(tuple(extra))
    out = []
    for perm in itertools.permutations(range(n)):
        if n == 3 and anisotropic and perm[0] != 0:
            continue
        if all(tuple(g[p] for p in perm) == g for g in geometry):
            out.append(perm)
    return out


def random_flip(d, l, rng, permutations, upright_x=False):
    """Transpose and mirror data and labels jointly at random.

    A permutation is drawn uniformly from ``permutations`` (see :func:`allowed_permutations`),
    then each spatial axis is reversed with probability 0.5 — the original's distribution: a
    50 % x/y swap in 2D and anisotropic 3D, a uniformly random axis order for isotropic 3D.
    With ``upright_x`` (2D, e.g. handwriting) only y is mirrored, with probability 0.5.

    Args:
        d: Data patch, 2D ``(ch, x, y)`` or 3D ``(z, ch, x, y)``.
        l: Label patch over the same spatial axes, or ``None`` (scalar labels stay as they are).
        rng: ``numpy.random.Generator``.
        permutations: Allowed spatial permutations.
        upright_x: Only mirror y (2D only).

    Returns:
        ``(d, l)`` as views (no copy).
    """
    n_dim = d.ndim - 1
    spatial_d = (1, 2) if n_dim == 2 else (0, 2, 3)
    if upright_x and n_dim == 2:
        if rng.random() < 0.5:
            d = d[:, :, ::-1]
            l = None if l is None else l[:, ::-1]
        return d, l
    perm = permutations[int(rng.integers(len(permutations)))] if len(permutations) > 1 else tuple(range(n_dim))
    if perm != tuple(range(n_dim)):
        axes = list(range(d.ndim))
        for i, p in enumerate(perm):
            axes[spatial_d[i]] = spatial_d[p]
        d = d.transpose(axes)
        l = None if l is None else l.transpose(perm)
    flips = rng.integers(0, 2, n_dim).astype(bool)
    d_index = [slice(None)] * d.ndim
    l_index = [slice(None)] * n_dim
    for i, f in enumerate(flips):
        if f:
            d_index[spatial_d[i]] = slice(None, None, -1)
            l_index[i] = slice(None, None, -1)
    d = d[tuple(d_index)]
    l = None if l is None else l[tuple(l_index)]
    return d, l


def grey_augment_params(k, rng):
    """Draw the grey-value distortion for ``k`` channels, with the original's distributions.

    Returns:
        ``(alpha, c, gamma)`` arrays of length ``k``: contrast ``alpha`` in ``1 +- 0.15``, shift ``c``
        in ``+-0.15`` and exponent ``gamma = 2**u``, ``u`` uniform in ``[-1, 1]`` (so ``[0.5, 2]``).
    """
    alpha = 1 + (rng.random(k) - 0.5) * 0.3
    c = (rng.random(k) - 0.5) * 0.3
    gamma = 2.0 ** (rng.random(k) * 2 - 1)
    return alpha, c, gamma


def grey_augment(d, channels, rng):
    """Distort the grey values of ``channels`` of a patch in place: ``v <- clip(v*alpha + c, 0, 1)**gamma``.

    Data is assumed to lie in ``[0, 1]``. Each channel gets its own random ``alpha, c, gamma``
    (see :func:`grey_augment_params`).

    Args:
        d: A patch the caller owns (it is modified): 2D ``(ch, x, y)`` or 3D ``(z, ch, x, y)``.
        channels: Channel indices to distort (``[]`` does nothing).
        rng: ``numpy.random.Generator``.

    Returns:
        ``d``.
    """
    if len(channels) == 0:
        return d
    alpha, c, gamma = grey_augment_params(len(channels), rng)
    for ch, a, b, g in zip(channels, alpha, c, gamma):
        x = d[ch] if d.ndim == 3 else d[:, ch]
        np.multiply(x, np.float32(a), out=x)
        np.add(x, np.float32(b), out=x)
        np.clip(x, 0, 1, out=x)
        np.power(x, np.float32(g), out=x)
    return d
