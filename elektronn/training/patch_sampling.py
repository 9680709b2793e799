"""Cutting and augmenting training patches: the batch side of :class:`~elektronn.training.image_data.CNNData`.

:class:`PatchSampler`, a mixin of ``CNNData``, makes batches from the loaded cubes
(:meth:`PatchSampler.getbatch`): it picks a cube, cuts a patch at a random position (optionally
warped, :mod:`elektronn.training.warping`), mirrors and transposes it, distorts its grey values
(:mod:`elektronn.training.augmentation`), sub-samples the labels by the output stride and returns
data and labels in the layouts the network takes; :meth:`PatchSampler.getExampleWeights` derives
per-label weights from a previous prediction. :func:`plotTrainingTarget` draws one example.

Layouts of a batch (``ps`` the patch size, ``off`` the network offset, ``s`` its output stride):

==========  ==========================  ====================================================
network     data                        labels (img-img; img-scalar: ``(bs,)``)
==========  ==========================  ====================================================
2D          ``(bs, ch, x, y)`` float32  ``(bs, x', y')``, ``x' = x - 2*off_x`` [``::s_x``]
3D          ``(bs, z, ch, x, y)``       ``(bs, z', x', y')``
==========  ==========================  ====================================================

Labels are int16 class indices (negative = ignore) or float32 regression targets.
"""
import logging
import os

import numpy as np

from elektronn.training import cubes as _cubes
from elektronn.training.affinities import make_affinities
from elektronn.training.augmentation import grey_augment, random_flip

__all__ = ['PatchSampler', 'plotTrainingTarget']

logger = logging.getLogger(__name__)

#: A patch with too many ignore labels is re-cut at most this often before it is judged.
_MAX_RECUTS = 10
#: So many patches in a row discarded by the ignore threshold means no patch can pass it.
_MAX_DISCARDS = 1000
#: 2D patches: slice axis -> the two in-plane axes (internal spatial axes z=0, x=1, y=2).
#: Cutting across x or y (isotropic data) gives the planes (y, z) and (z, x), the original's orders.
_PLANES = {0: (1, 2), 1: (2, 0), 2: (0, 1)}
#: Array axis of each spatial axis in the internal data layout (z, ch, x, y).
_DATA_AXES = (0, 2, 3)


class _PatchDoesNotFit(Exception):
    """A (warp-enlarged) patch is larger than the labelled region of the cube."""


def _ignored_fraction(label):
    label = np.asarray(label)
    if label.size == 0:
        return 0.0
    return np.count_nonzero(label < 0) / float(label.size)


class PatchSampler:
    """Mixin of :class:`~elektronn.training.image_data.CNNData`: patches and batches cut from its cubes.

    Not usable on its own. It reads the host's settings (``patch_size``, ``offset``, ``stride``,
    ``n_dim``, ``mode``, ``aniso``, ``upright_x``, ``affinity``, ``ldtype``, ``n_ch``,
    ``warp_on``, ``_offset3``, ``_permutations``) and cubes (``_train``, ``_valid`` and the
    sampling distribution ``_cumulative``); it owns ``rng`` and the warp counters.
    """

    # ------------------------------------------------------------------------------------------------
    # Randomness
    # ------------------------------------------------------------------------------------------------
    def reseed(self, seed=None):
        """Start a new random stream: ``self.rng = numpy.random.default_rng(seed)``.

        Worker processes call this with a seed of their own. A process that uses the object
        without reseeding (e.g. after a plain ``fork``) gets a fresh stream automatically at its
        first batch, as in the original.
        """
        self.rng = np.random.default_rng(seed)
        self._pid = os.getpid()

    def _check_pid(self):
        if os.getpid() != self._pid:
            self.reseed(None)
            logger.info('Reseeding RNG in Process with PID: %s', self._pid)

    # ------------------------------------------------------------------------------------------------
    # Batches
    # ------------------------------------------------------------------------------------------------
    def _allocBatch(self, batch_size):
        ps = [int(p) for p in self.patch_size]
        if self.n_dim == 2:
            images = np.zeros((batch_size, self.n_ch, ps[0], ps[1]), dtype=np.float32)
        else:
            images = np.zeros((batch_size, ps[0], self.n_ch, ps[1], ps[2]), dtype=np.float32)
        if self.mode == 'img-img':
            label = np.zeros((batch_size,) + tuple(int(v) for v in self.patch_size - 2 * self.offset), dtype=self.ldtype)
        else:
            label = np.zeros((batch_size,), dtype=self.ldtype)
        return images, label

    def getbatch(self, batch_size=1, source='train', strided=True, flip=True, grey_augment_channels=[],
                 ret_info=False, warp_on=None, ignore_thresh=0.0, ret_example_weights=False):
        """Make a batch of randomly placed, augmented patches.

        Args:
            batch_size: Number of examples.
            source: ``'train'`` or ``'valid'``. Training cubes are drawn by their priorities,
                validation cubes uniformly.
            strided: Sub-sample the labels by the CNN's output stride (for networks without MFP).
            flip: Random mirroring and transposition of the spatial axes (z stays z for
                anisotropic data; axes of different patch size are never swapped).
            grey_augment_channels: Channels whose grey values are randomly distorted (training
                batches only).
            ret_info: Also return the lazy-label masks ``info1, info2`` of shape ``(bs, n_lab)``.
            warp_on: ``True`` to warp every patch, a fraction in (0, 1) to warp that share, ``False``
                never; ``None`` uses :attr:`~elektronn.training.image_data.CNNData.warp_on`.
            ignore_thresh: A patch whose share of negative (ignore) labels exceeds this is re-cut
                (up to 10 times) and then discarded unless its cube has "not present" flags.
                0 disables this.
            ret_example_weights: Also return per-label weights derived from the last input channel
                (a previous prediction), see :meth:`getExampleWeights`.

        Returns:
            ``(data, label[, seg][, info1, info2][, example_weights])``; ``label`` is the affinity
            graph ``(bs, 3, z, x, y)`` for ``affinity`` data, and ``seg`` the relabelled
            segmentation for ``'malis'``.
        """
        self._check_pid()
        if not self._train and not self._valid:
            raise RuntimeError('CNNData has no data yet: call addDataFromFile or addDataFromNdarray first')
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError('batch_size must be a positive integer, got %r' % (batch_size,))
        cubes = self._source_cubes(source)
        channels = self._check_channels(grey_augment_channels)
        warp = self._warp_fraction(self.warp_on if warp_on is None else warp_on)
        thresh = float(ignore_thresh or 0.0)
        self._check_batch_memory(batch_size)
        images, label = self._allocBatch(batch_size)
        infos = []
        n, discarded = 0, 0
        while n < batch_size:
            cube = self._getcube(source, cubes)
            d, l = self._warpAugment(cube, warp, thresh)
            if thresh and not np.any(cube.info[1]) and _ignored_fraction(l) > thresh:
                discarded += 1
                if discarded > _MAX_DISCARDS:
                    raise RuntimeError('%i patches in a row had more than ignore_thresh=%g ignore labels (< 0) and were '
                                       'discarded; lower example_ignore_threshold or label more voxels'
                                       % (_MAX_DISCARDS, thresh))
                continue
            discarded = 0
            if flip:
                d, l_flipped = random_flip(d, l if self.mode == 'img-img' else None, self.rng, self._permutations,
                                           self.upright_x)
                if self.mode == 'img-img':
                    l = l_flipped
            images[n] = d
            if source == 'train' and channels:
                grey_augment(images[n], channels, self.rng)
            label[n] = l
            infos.append(cube.info)
            n += 1

        weights = self.getExampleWeights(images, label, strided=strided) if ret_example_weights else None
        if strided and self.mode == 'img-img':
            label = np.ascontiguousarray(self._stridedLabels(label))
        ret = [images, label]
        if self.affinity:
            aff, seg = make_affinities(label, size_thresh=1)
            ret = [images, aff, seg] if self.affinity == 'malis' else [images, aff]
        if ret_info:
            ret += [np.array([i[0] for i in infos], dtype=np.int16), np.array([i[1] for i in infos], dtype=np.int16)]
        if ret_example_weights:
            ret.append(weights)
        return tuple(ret)

    def _check_batch_memory(self, batch_size):
        """Refuse a batch larger than the available memory with a message naming batch_size (instead of
        NumPy's allocation error from deep inside)."""
        per_example = int(np.prod(self.example_shape)) * 4
        if self.mode == 'img-img':
            per_example += int(np.prod(self.patch_size - 2 * self.offset)) * np.dtype(self.ldtype).itemsize
        need = float(batch_size) * per_example
        avail = _cubes.available_memory()
        if avail is not None and need > avail:
            raise ValueError('batch_size=%i: a batch of %i patches of shape %s needs %.3g GB, more than the %.3g GB '
                             'of memory available; lower batch_size (or monitor_batch_size)'
                             % (batch_size, batch_size, tuple(self.example_shape), need / 1e9, avail / 1e9))

    def _source_cubes(self, source):
        if source == 'train':
            if not self._train:
                raise ValueError("No training cubes: every cube is a validation cube (valid_cubes)")
            return self._train
        if source == 'valid':
            if not self._valid:
                raise ValueError("No validation cubes (valid_cubes is empty): source='valid' has no data")
            return self._valid
        raise ValueError("Unknown data source %r: use 'train' or 'valid'" % (source,))

    def _check_channels(self, channels):
        channels = list(channels or [])
        for ch in channels:
            if isinstance(ch, bool) or not isinstance(ch, (int, np.integer)) or not 0 <= ch < self.n_ch:
                raise ValueError('grey_augment_channels=%r: channel indices must lie in 0..%i for data with %i channel(s)'
                                 % (channels, self.n_ch - 1, self.n_ch))
        return channels

    @staticmethod
    def _warp_fraction(warp_on):
        if warp_on is True:
            return 1.0
        if warp_on is False or warp_on is None:
            return 0.0
        if isinstance(warp_on, (int, float, np.integer, np.floating)) and 0 <= warp_on <= 1:
            return float(warp_on)
        raise ValueError('warp_on must be True, False or a fraction in [0, 1], got %r' % (warp_on,))

    def _getcube(self, source, cubes):
        """Draw a cube: by the sampling priorities for training, uniformly for validation."""
        if source == 'train':
            i = int(np.searchsorted(self._cumulative, self.rng.random(), side='right'))
            return cubes[min(i, len(cubes) - 1)]
        return cubes[int(self.rng.integers(len(cubes)))]

    def _warpAugment(self, cube, warp, thresh):
        """Cut a patch from ``cube``; warp it with probability ``warp`` (falling back when too large)."""
        do_warp = warp >= 1.0 or (warp > 0 and self.rng.random() < warp)
        if not do_warp:
            return self._cutPatch(cube, self.patch_size, thresh)
        warping = _warping_module()
        ps = tuple(int(p) for p in self.patch_size)
        rot, shear, scale, stretch, twist = warping.draw_warp_params(ps, amount=1.0, rng=self.rng)
        ext = warping.required_patch_size(ps, rot, shear, scale, stretch, twist)
        try:
            d, l = self._cutPatch(cube, np.asarray(ext, dtype=np.int64), thresh)
        except _PatchDoesNotFit:
            self.n_failed_warp += 1
            return self._cutPatch(cube, self.patch_size, thresh)
        lab = l if self.mode == 'img-img' else None
        if self.n_dim == 2:
            d, lab = warping.warp2dJoint(d, lab, ps, rot, shear, scale, stretch)
        else:
            d, lab = warping.warp3dJoint(d, lab, ps, rot, shear, scale, stretch, twist)
        self.n_successful_warp += 1
        return d, (lab if self.mode == 'img-img' else l)

    def _placements(self, cube, ps):
        """Ways to place a patch of size ``ps`` in ``cube``: ``(slice_axis, size, offset, low, high)``.

        ``size``/``offset`` are over the spatial axes ``(z, x, y)``; the start position may be
        any of ``low..high`` (inclusive) per axis. A 3D patch has one placement (slice axis
        ``None``); a 2D patch one per usable slice direction (only z-slices for anisotropic data
        and img-scalar).
        """
        off = self.offset if self.mode == 'img-img' else np.zeros(self.n_dim, np.int64)
        if self.n_dim == 3:
            candidates = [(None, [int(v) for v in ps], [int(v) for v in off])]
        else:
            axes = (0,) if (self.aniso or self.mode == 'img-scalar') else (0, 1, 2)
            candidates = []
            for sa in axes:
                size, o = [1, 1, 1], [0, 0, 0]
                for k, ax in enumerate(_PLANES[sa]):
                    size[ax], o[ax] = int(ps[k]), int(off[k])
                candidates.append((sa, size, o))
        out = []
        D = cube.spatial_shape
        for sa, size, o in candidates:
            low, high = [], []
            for a in range(3):
                lo_a, hi_a = 0, D[a] - size[a]
                if cube.origin is not None:
                    g, L = int(cube.origin[a]), cube.label.shape[a]
                    lo_a, hi_a = max(lo_a, g - o[a]), min(hi_a, g + L + o[a] - size[a])
                low.append(lo_a)
                high.append(hi_a)
            if all(h >= lo for lo, h in zip(low, high)):
                out.append((sa, size, o, low, high))
        return out

    def _too_small_message(self, cube):
        if cube.origin is not None:
            L = np.array(cube.label.shape)
            usable = np.minimum(np.array(cube.spatial_shape), L + 2 * self._offset3)
            region = 'its labelled region plus the CNN offset spans %s' % (tuple(usable.tolist()),)
        else:
            region = 'its extent is %s' % (tuple(cube.spatial_shape),)
        patch = '%s %s' % (tuple(self.patch_size.tolist()), '(z, x, y)' if self.n_dim == 3 else '(x, y)')
        slices = ' (anisotropic: xy-slices only)' if self.n_dim == 2 and self.aniso else ''
        return ('%s (z, x, y) shape %s: the patch size %s does not fit; %s (z, x, y)%s. Use a smaller desired_input '
                'or larger cubes' % (cube.name, tuple(cube.spatial_shape), patch, region, slices))

    def _cutPatch(self, cube, ps, thresh=0.0):
        """Cut a patch of size ``ps`` at a random position; re-cut (up to 10 times) while more than
        ``thresh`` of its labels are negative.

        Returns:
            ``(data, label)`` views into the cube (or arrays read from its file). Labels are the
            offset-reduced ``ps - 2*offset`` patch (img-img) or the scalar label (img-scalar).

        Raises:
            _PatchDoesNotFit: The patch is larger than what the cube offers.
        """
        options = self._placements(cube, ps)
        if not options:
            raise _PatchDoesNotFit()
        for attempt in range(_MAX_RECUTS + 1):
            choice = options[int(self.rng.integers(len(options)))] if len(options) > 1 else options[0]
            d, l = self._cut_at(cube, *choice)
            if not thresh or _ignored_fraction(l) <= thresh:
                break
        return d, l

    def _cut_at(self, cube, slice_axis, size, off, low, high):
        s = self.rng.integers(np.asarray(low), np.asarray(high) + 1)
        d = cube.data[s[0]:s[0] + size[0], :, s[1]:s[1] + size[1], s[2]:s[2] + size[2]]
        if cube.origin is not None:
            a = s + np.asarray(off) - cube.origin
            b = s + np.asarray(size) - np.asarray(off) - cube.origin
            l = cube.label[a[0]:b[0], a[1]:b[1], a[2]:b[2]]
        else:
            l = cube.label[s[0]] if self.n_dim == 2 else cube.label[0]
        if slice_axis is not None:
            p0, p1 = _PLANES[slice_axis]
            d = d.transpose(_DATA_AXES[slice_axis], 1, _DATA_AXES[p0], _DATA_AXES[p1])[0]
            if cube.origin is not None:
                l = l.transpose(slice_axis, p0, p1)[0]
        return d, l

    def _stridedLabels(self, lab):
        """Labels ``(bs, [z,] x, y)`` sub-sampled by the CNN output stride."""
        index = (slice(None),) + tuple(slice(None, None, int(s)) for s in self.stride)
        return lab[index]

    def getExampleWeights(self, raw_rec, lab, gain=2.0, blurr=False, strided=True):
        """Per-label weights from the last input channel, a previous prediction of the labels.

        Misses (label above the prediction by more than 0.05) and clutter (below by more than 0.1)
        get ``1 + gain * excess``, everything else 1.

        Args:
            raw_rec: A data batch whose last channel is the previous prediction.
            lab: The (unstrided) label batch.
            gain: Weight per unit of excess.
            blurr: Not implemented.
            strided: Sub-sample the weights like strided labels.

        Returns:
            float32 weights of the shape of the (strided) labels.
        """
        if blurr:
            raise NotImplementedError('getExampleWeights(blurr=True) is not implemented')
        if self.mode != 'img-img':
            raise ValueError('example weights need img-img data')
        pred = raw_rec[:, :, -1] if self.n_dim == 3 else raw_rec[:, -1]
        index = (slice(None),) + tuple(slice(int(o), n - int(o)) for o, n in zip(self.offset, pred.shape[1:]))
        pred = pred[index]
        if strided:
            lab, pred = self._stridedLabels(lab), self._stridedLabels(pred)
        diff = lab.astype(np.float32) - pred
        weights = np.ones(lab.shape, dtype=np.float32)
        weights += (diff < -0.1) * gain * (-diff - 0.1)
        weights += (diff > 0.05) * gain * (diff - 0.05)
        return weights.astype(np.float32)


def _warping_module():
    try:
        from elektronn.training import warping
    except ImportError as e:
        raise RuntimeError('warp_on needs elektronn.training.warping, which cannot be imported (%s); '
                           'set warp_on=False' % e) from e
    return warping


def plotTrainingTarget(img, lab, stride=1, savename='training_target.png'):
    """Plot a training example as the original's ``plotTrainingTarget``: data | label | overlay.

    ``img`` and ``lab`` are 2D arrays (one slice of a batch). The label is repeated ``stride`` times
    along both axes (the output stride of the net) and zero-padded, centred, to the image size; the
    overlay is ``0.75*img + 0.25*(1-lab)``. The figure is written to ``savename``, which is returned.
    """
    from elektronn.training.plotting import plot_panels
    img = np.asarray(img, dtype=np.float32)
    lab = np.asarray(lab, dtype=np.float32)
    if img.ndim != 2 or lab.ndim != 2:
        raise ValueError('plotTrainingTarget: img and lab must be 2D arrays, got shapes %s and %s'
                         % (img.shape, lab.shape))
    stride = int(stride)
    if stride > 1:
        lab = np.repeat(np.repeat(lab, stride, axis=0), stride, axis=1)
    full = np.zeros(img.shape, dtype=np.float32)
    src, dst = [], []
    for i, l in zip(img.shape, lab.shape):
        off = abs(i - l) // 2
        n = min(i, l)
        src.append(slice(off, off + n) if l > i else slice(0, n))
        dst.append(slice(off, off + n) if i > l else slice(0, n))
    full[tuple(dst)] = lab[tuple(src)]
    lab = full
    return plot_panels((('data', img), ('label', lab), ('overlay', 0.75 * img + 0.25 * (1 - lab))), savename)
