"""Test-time augmentation (TTA): dense predictions averaged over flips and xy-transposes of the input.

A network trained with ``flip_data`` has seen every patch mirrored along x and y and with x and y
swapped (and, for isotropic 3D data, mirrored along z too); averaging its predictions over those
transforms of the input removes the part of its errors that is not invariant to them. The group:

* ``'xy'`` (8 transforms): the flips along x and y and the xy-transpose — 2D networks and
  anisotropic 3D data (ssTEM: z is coarser, so z is never flipped or swapped);
* ``'xyz'`` (16): the same, each also flipped along z — isotropic 3D data (FIB-SEM).

``tta=True`` picks ``'xyz'`` for 3D networks whose field of view is the same along z, x and y,
else ``'xy'``. Transposes need the same field of view along x and y; where it differs they are
left out (and said so).

Geometry: every transform is undone on the output so that each output voxel keeps the input voxel
it belongs to (see :mod:`elektronn.net.prediction`). Where a flipped axis has an even field of view
and the output is inset by ``fov / 2`` on both sides (one window less than the valid ones), the
flipped input gets one more voxel at its far end and the first output voxel is dropped.
Affinity outputs (``n_edges * n_lab`` channels, edge ``e`` of voxel ``v`` joining ``v`` and
``v + e``) also swap their x and y channels under a transpose, and under a flip along an edge's axis
the edge of a voxel becomes that of its neighbour: its values move by one voxel, and the last voxel
along that axis (which has no forward neighbour) averages over the transforms that did not flip it.
"""
import dataclasses
import itertools

import numpy as np

__all__ = ['Transform', 'plan', 'average', 'describe', 'TTA_MODES']

#: Values of the ``tta`` argument besides ``False``/``None`` (off) and ``True`` (chosen per network).
TTA_MODES = ('xy', 'xyz')


@dataclasses.dataclass(frozen=True)
class Transform:
    """Flip the spatial axes ``flips`` (indices into ``(z, x, y)``), then swap x and y if ``transpose``.

    Arrays are ``(channels, z, x, y)``.
    """

    flips: tuple = ()
    transpose: bool = False

    @property
    def is_identity(self):
        """Whether the transform leaves the input as it is (no flips, no transposition)."""
        return not self.flips and not self.transpose

    def forward(self, view, pad=(0, 0, 0)):
        """The transformed input; ``pad[a]`` extra voxels at the far end of flipped axis ``a`` (edge values)."""
        out = view
        for a in self.flips:
            out = np.flip(out, axis=1 + a)
            if pad[a]:
                widths = [(0, 0)] * out.ndim
                widths[1 + a] = (0, pad[a])
                out = np.pad(out, widths, mode='edge')
        if self.transpose:
            out = out.swapaxes(2, 3)
        return out

    def inverse(self, out, pad=(0, 0, 0), n_edges=0):
        """Output of the transformed input back in the original frame (``pad`` as given to :meth:`forward`).

        Args:
            n_edges: ``> 0`` for affinity outputs of ``n_edges`` (z, x, y) edge directions: their
                channels are moved along (see the module docstring).

        Returns:
            ``(out, valid)``: the output, and for affinity outputs a bool ``(n_edges, z, x, y)`` mask
            of the voxels that got a value (``None`` otherwise).
        """
        if self.transpose:
            out = out.swapaxes(2, 3)
            if n_edges:
                out = _swap_edge_channels(out, n_edges)
        for a in self.flips:
            if pad[a]:  # the windows of the extra voxel's side: not of this input
                out = np.delete(out, slice(0, pad[a]), axis=1 + a)
            out = np.flip(out, axis=1 + a)
        if not n_edges:
            return out, None
        return _shift_flipped_edges(out, self.flips, n_edges)


def _swap_edge_channels(out, n_edges):
    """Exchange the channel groups of the x and y edges (edges 1 and 2 of z, x, y)."""
    if n_edges < 3:
        return out
    per = out.shape[0] // n_edges
    order = list(range(out.shape[0]))
    order[per:2 * per], order[2 * per:3 * per] = order[2 * per:3 * per], order[per:2 * per]
    return out[order]


def _shift_flipped_edges(out, flips, n_edges):
    """Edges along a flipped axis: the value at voxel ``v`` belongs to the edge of ``v - 1``."""
    per = out.shape[0] // n_edges
    shifted = np.empty_like(out)
    valid = np.ones((n_edges,) + out.shape[1:], dtype=bool)
    for e in range(n_edges):
        group = out[e * per:(e + 1) * per]
        if e < 3 and e in flips:
            axis = 1 + e
            head = [slice(None)] * out.ndim
            tail = [slice(None)] * out.ndim
            head[axis], tail[axis] = slice(0, -1), slice(1, None)
            target = shifted[e * per:(e + 1) * per]
            target[tuple(head)] = group[tuple(tail)]
            last = [slice(None)] * out.ndim
            last[axis] = slice(-1, None)
            target[tuple(last)] = 0
            valid[e][tuple(last[1:])] = False
        else:
            shifted[e * per:(e + 1) * per] = group
    return shifted, valid


def plan(tta, fov, n_dim, strides=(1, 1, 1)):
    """The transforms of ``tta`` for a network with field of view ``fov`` and output strides ``strides``
    (``(z, x, y)``; z = 1 in 2D).

    Args:
        tta: ``False``/``None`` (no TTA: the identity alone), ``True`` (``'xyz'`` for 3D networks
            with the same field of view along all axes, else ``'xy'``), ``'xy'`` or ``'xyz'``.

    Returns:
        ``(transforms, note)``: the list of :class:`Transform` (the identity first) and a text saying
        what was left out and why (``''`` when nothing was).

    Raises:
        ValueError: an unknown ``tta`` value, or ``'xyz'`` for a 2D network.
    """
    if tta is None or tta is False:
        return [Transform()], ''
    if tta is True:
        mode = 'xyz' if n_dim == 3 and fov[0] == fov[1] == fov[2] else 'xy'
    elif tta in TTA_MODES:
        mode = tta
    else:
        raise ValueError("tta must be False, True, 'xy' or 'xyz', got %r" % (tta,))
    if mode == 'xyz' and n_dim != 3:
        raise ValueError("tta='xyz' flips along z, which a 2D network does not have; use 'xy' or True")
    axes = (0, 1, 2) if mode == 'xyz' else (1, 2)
    transposes = (False, True)
    note = ''
    if fov[1] != fov[2] or strides[1] != strides[2]:
        transposes = (False,)
        note = ('xy-transposes left out: the network differs along x and y (field of view %i, %i; strides %i, %i)'
                % (fov[1], fov[2], strides[1], strides[2]))
    transforms = []
    for transpose in transposes:
        for chosen in itertools.product((False, True), repeat=len(axes)):
            transforms.append(Transform(tuple(a for a, c in zip(axes, chosen) if c), transpose))
    return transforms, note


def average(predict, view, transforms, pad=lambda transform: (0, 0, 0), n_edges=0):
    """The mean of ``predict`` over ``transforms`` of ``view``, each output transformed back.

    Args:
        predict: ``(channels, z, x, y)`` input -> ``(n_out, z', x', y')`` float32 output.
        view: The input ``(channels, z, x, y)``.
        pad: The extra voxels of each transform's flipped axes (see :meth:`Transform.forward`).
        n_edges: Edge directions of an affinity output (0 for class probabilities).

    Returns:
        float32 ``(n_out, z', x', y')``.
    """
    total = counts = None
    for t in transforms:
        p = pad(t)
        back, valid = t.inverse(predict(np.ascontiguousarray(t.forward(view, p))), p, n_edges)
        total = back.astype(np.float32) if total is None else total + back
        if valid is not None:
            counts = valid.astype(np.float32) if counts is None else counts + valid
    if counts is None:
        return total / np.float32(len(transforms))
    return total / np.repeat(counts, total.shape[0] // n_edges, axis=0)


def describe(transforms, note=''):
    """One line: how many transforms and what they cost."""
    if len(transforms) == 1:
        return ''
    flipped = sorted({'zxy'[a] for t in transforms for a in t.flips})
    what = 'flips along %s' % ', '.join(flipped) + (' and xy-transposes' if any(t.transpose for t in transforms)
                                                      else '')
    return ('Test-time augmentation: %i transforms (%s); %i times the time of one prediction%s'
            % (len(transforms), what, len(transforms), '; ' + note if note else ''))
