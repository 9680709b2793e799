"""A synthetic anisotropic EM-like volume with neuron-membrane ("barrier") labels.

The embedded default data: the 3D example trains on it without any download. The volume is
built section by section like serial-section EM of neuropil:

* neurites: a power (weighted Voronoi) diagram of seeds that drift, wobble and change weight
  along z, so cell profiles move, grow, shrink and vanish from section to section; boundaries are
  made irregular by a smooth displacement field;
* membranes: dark bands of realistic thickness (about 4-7 pixels) along the cell boundaries; the
  barrier label marks them;
* intracellular texture: per-cell brightness, fine granular texture, dark vesicles and darker
  mitochondria-like blobs spanning a few sections (distractors that are *not* barrier);
* imaging: in-plane blur, per-section brightness/contrast changes, noise, and small
  section-to-section shifts (misalignment jitter; labels shift with their section).

Everything is drawn from ``numpy.random.default_rng(seed)``: the same seed gives the same
volume. A 224 x 224 x 40 cube takes a few seconds.

Files (the layout of the original's neuro example, read by
:meth:`~elektronn.training.image_data.CNNData.addDataFromFile` with ``zchxy_order=False``):

* ``raw_<i>.h5``, dataset ``'raw'``: uint8 ``(x, y, z)``;
* ``barrier_int16_<i>.h5``, dataset ``'lab'``: int16 ``(x, y, z)``, 1 = barrier, 0 = cell
  interior, a centred sub-cube of the raw cube (the margin lets the network see around every
  labelled voxel);
* ``preview_cubes.h5``: raw cubes for preview predictions (datasets ``'0'``, ``'1'``, ...), uint8
  ``(x, y, z)``.

Use :func:`get_synthetic_neuro_data` to get the folder, generating it on first use; from the
shell: ``python -m elektronn.data.synthetic [folder]``. A config names the folder with
:func:`synthetic_neuro_folder`, which generates nothing: the training data loader (and the
preview loader) generate the data set when they open one of its files (:func:`provide`), so that
reading a config (e.g. ``elektronn-predict`` reading ``Backup/config.py``) stays cheap.
"""
import argparse
import json
import logging
import os
import sys
import time

import numpy as np
from scipy import ndimage

from elektronn.utils import atomic_path, atomic_write

logger = logging.getLogger('elektronn.data.synthetic')  # not __name__: that is '__main__' under python -m

__all__ = ['make_volume', 'write_dataset', 'get_synthetic_neuro_data', 'default_cache_dir', 'synthetic_neuro_folder',
           'provides', 'provide', 'GENERATOR_VERSION']

#: Bumped whenever the generator's output changes; a cache made by another version is rebuilt.
GENERATOR_VERSION = 1

#: Default parameters of the embedded data set (raw cube shape in (x, y, z); label margin per side).
DEFAULT_SETTINGS = dict(n_cubes=3, shape=(224, 224, 40), label_margin=(16, 16, 3), n_preview=2,
                        preview_shape=(160, 160, 24), seed=0)


def default_cache_dir():
    """``$ELEKTRONN_HOME/synthetic_neuro`` (``ELEKTRONN_HOME`` defaults to ``~/.ELEKTRONN``)."""
    home = os.environ.get('ELEKTRONN_HOME') or os.path.join(os.path.expanduser('~'), '.ELEKTRONN')
    return os.path.join(home, 'synthetic_neuro')


def _smooth_noise(rng, shape, sigma):
    """Gaussian-filtered white noise scaled to unit standard deviation."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode='wrap')
    return field / (field.std() + 1e-12)


def _seed_tracks(rng, shape, cell_size, margin):
    """Seed positions ``(z, n, 2)`` and power weights ``(z, n)`` of the neurite cross-sections."""
    X, Y, Z = shape
    area = (X + 2 * margin) * (Y + 2 * margin)
    n = max(4, int(round(1.6 * area / cell_size ** 2)))
    start = np.stack([rng.uniform(-margin, X + margin, n), rng.uniform(-margin, Y + margin, n)], axis=1)
    # neurites run mostly along z with a slant, plus a smooth wobble
    slant = rng.normal(0.0, 0.6, (n, 2))
    steps = rng.normal(0.0, 0.35, (Z, n, 2))
    wobble = ndimage.gaussian_filter1d(np.cumsum(steps, axis=0), 2.0, axis=0)
    z = np.arange(Z)[:, None, None]
    pos = start[None] + slant[None] * z + wobble
    # power weights: varied calibre; slowly changing so that profiles grow, shrink and vanish
    # a mixture of thin (axon-like) and thick (dendrite-like) profiles
    radius = cell_size * np.where(rng.random(n) < 0.55, 0.45, 0.8) * np.exp(rng.normal(0.0, 0.3, n))
    phase = rng.uniform(0, 2 * np.pi, n)
    period = rng.uniform(Z * 0.8, Z * 3.0, n)
    change = 1.0 + 0.45 * np.sin(2 * np.pi * np.arange(Z)[:, None] / period[None] + phase[None])
    weight = (radius[None] ** 2) * change - 0.25 * cell_size ** 2
    return pos, weight


def make_volume(shape=(224, 224, 40), seed=0, cell_size=38.0, membrane_px=5.0, noise=0.07, blur=0.9,
                shift_px=0.8):
    """Generate one synthetic EM volume and its barrier labels.

    Args:
        shape: ``(x, y, z)`` size in voxels; z is the (coarser) section axis.
        seed: Seed of the random stream; the same seed gives the same volume.
        cell_size: Typical neurite diameter in pixels.
        membrane_px: Mean membrane (barrier) thickness in pixels; varies by about +-30 %.
        noise: Standard deviation of the additive noise (grey values in [0, 1]).
        blur: In-plane Gaussian blur sigma in pixels.
        shift_px: Standard deviation of the section-to-section shift in pixels.

    Returns:
        ``(raw, barrier, segmentation)``: uint8 ``(x, y, z)``, int16 ``(x, y, z)`` (1 = barrier)
        and int32 ``(x, y, z)`` cell ids (1-based; the membrane voxels keep their cell's id).
    """
    X, Y, Z = (int(s) for s in shape)
    rng = np.random.default_rng(seed)
    margin = cell_size
    pos, weight = _seed_tracks(rng, (X, Y, Z), cell_size, margin)
    n = pos.shape[1]
    cell_tone = rng.uniform(0.62, 0.8, n)
    thickness = membrane_px * np.exp(rng.normal(0.0, 0.15, n))  # per-cell membrane thickness
    section_shift = np.cumsum(rng.normal(0.0, shift_px * 0.5, (Z, 2)), axis=0) * 0.3 + rng.normal(0.0, shift_px, (Z, 2))
    # smooth in-plane displacement (irregular boundaries), slowly varying along z
    disp = np.stack([_smooth_noise(rng, (X, Y, Z), (10, 10, 3)) for _ in range(2)]) * (0.09 * cell_size)
    # texture fields
    grain = _smooth_noise(rng, (X, Y, Z), (1.2, 1.2, 0.5))
    mito_field = _smooth_noise(rng, (X, Y, Z), (5.0, 3.0, 1.5))
    mito_level = np.quantile(mito_field, 0.965)
    gx, gy = np.meshgrid(np.arange(X, dtype=np.float32), np.arange(Y, dtype=np.float32), indexing='ij')
    pos, weight, disp = pos.astype(np.float32), weight.astype(np.float32), disp.astype(np.float32)

    raw = np.empty((X, Y, Z), np.float32)
    barrier = np.empty((X, Y, Z), np.int16)
    seg = np.empty((X, Y, Z), np.int32)
    for z in range(Z):
        cx = gx + section_shift[z, 0] + disp[0, :, :, z]
        cy = gy + section_shift[z, 1] + disp[1, :, :, z]
        px, py = pos[z, :, 0], pos[z, :, 1]
        power = np.square(cx[..., None] - px)
        power += np.square(cy[..., None] - py)
        power -= weight[z]
        first = np.argmin(power, axis=-1)
        d1 = np.take_along_axis(power, first[..., None], -1)[..., 0]
        np.put_along_axis(power, first[..., None], np.inf, -1)
        second = np.argmin(power, axis=-1)
        d2 = np.take_along_axis(power, second[..., None], -1)[..., 0]
        sep = np.hypot(px[first] - px[second], py[first] - py[second])
        dist = (d2 - d1) / (2.0 * np.maximum(sep, 1e-6))  # distance to the shared boundary (bisector)
        half = 0.5 * 0.5 * (thickness[first] + thickness[second])
        membrane = dist < half
        barrier[:, :, z] = membrane
        seg[:, :, z] = first + 1

        tone = cell_tone[first] * (1.0 + 0.06 * grain[:, :, z])
        # dark membrane band with a soft profile; slightly lighter halo on either side
        band = np.exp(-0.5 * (dist / (0.55 * half)) ** 2)
        img = tone * (1.0 - 0.68 * band) + 0.03 * np.exp(-0.5 * ((dist - 1.6 * half) / half) ** 2)
        # mitochondria: dark textured blobs with a darker rim, kept away from the membranes
        inside = dist > 2.5 * half
        mito = (mito_field[:, :, z] > mito_level) & inside
        rim = (mito_field[:, :, z] > mito_level - 0.25) & inside & ~mito
        img = np.where(mito, 0.5 * tone + 0.04 * grain[:, :, z], img)
        img = np.where(rim, 0.4 * tone, img)
        raw[:, :, z] = img

    _add_vesicles(rng, raw, barrier)
    raw = ndimage.gaussian_filter(raw, (blur, blur, 0.0))
    section_gain = 1.0 + rng.normal(0.0, 0.05, Z)
    section_bias = rng.normal(0.0, 0.025, Z)
    raw = raw * section_gain + section_bias
    raw += rng.normal(0.0, noise, raw.shape).astype(np.float32)
    raw = np.clip(raw, 0.0, 1.0)
    return (raw * 255 + 0.5).astype(np.uint8), barrier, seg


def _add_vesicles(rng, raw, barrier):
    """Darken small round spots (synaptic vesicles) inside cells, in place."""
    X, Y, Z = raw.shape
    count = int(X * Y * Z * 0.0012)
    x = rng.integers(0, X, count)
    y = rng.integers(0, Y, count)
    z = rng.integers(0, Z, count)
    keep = barrier[x, y, z] == 0
    spots = np.zeros(raw.shape, np.float32)
    np.add.at(spots, (x[keep], y[keep], z[keep]), 1.0)
    spots = ndimage.gaussian_filter(spots, (1.3, 1.3, 0.0)) * (2 * np.pi * 1.3 ** 2)
    raw *= 1.0 - 0.35 * np.clip(spots, 0.0, 1.5) * (barrier == 0)


def write_dataset(folder, n_cubes=3, shape=(224, 224, 40), label_margin=(16, 16, 3), n_preview=2,
                  preview_shape=(160, 160, 24), seed=0, verbose=True):
    """Write the synthetic training cubes and preview cubes into ``folder``.

    Cube ``i`` is ``make_volume(shape, seed=seed*1000 + i)``; its labels are the barrier volume
    without ``label_margin`` voxels on each side (x, y, z). Preview cubes use the following seeds.

    Returns:
        A dict with ``d_files``, ``l_files`` (lists of ``(file, key)``) and ``preview`` (file name).
    """
    os.makedirs(folder, exist_ok=True)
    mx, my, mz = (int(m) for m in label_margin)
    d_files, l_files = [], []
    t0 = time.time()
    for i in range(n_cubes):
        raw, barrier, _ = make_volume(shape, seed=seed * 1000 + i)
        lab = barrier[mx:barrier.shape[0] - mx, my:barrier.shape[1] - my, mz:barrier.shape[2] - mz]
        d_name, l_name = 'raw_%i.h5' % i, 'barrier_int16_%i.h5' % i
        _write_h5(os.path.join(folder, d_name), {'raw': raw}, dict(axis_order='xyz', seed=seed * 1000 + i))
        _write_h5(os.path.join(folder, l_name), {'lab': np.ascontiguousarray(lab)},
                  dict(axis_order='xyz', barrier_definition='1 = membrane (barrier), 0 = cell interior',
                       label_margin_xyz=np.array(label_margin)))
        d_files.append((d_name, 'raw'))
        l_files.append((l_name, 'lab'))
        if verbose:
            logger.info('Synthetic cube %i/%i: raw %s, labels %s, barrier %.1f%% (%.1f s)',
                        i + 1, n_cubes, raw.shape, lab.shape, 100.0 * lab.mean(), time.time() - t0)
    previews = {str(k): make_volume(preview_shape, seed=seed * 1000 + n_cubes + k)[0] for k in range(n_preview)}
    _write_h5(os.path.join(folder, 'preview_cubes.h5'), previews, dict(axis_order='xyz'))
    return dict(d_files=d_files, l_files=l_files, preview='preview_cubes.h5')


def _write_h5(path, datasets, attrs):
    import h5py
    with atomic_path(path) as tmp:
        with h5py.File(tmp, 'w') as f:
            for k, v in attrs.items():
                f.attrs[k] = v
            for key, arr in datasets.items():
                f.create_dataset(key, data=arr, chunks=True, compression='lzf')
        os.chmod(tmp, _file_mode())


def _file_mode():
    """Permissions of a newly created file under the current umask (temporary files get 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def get_synthetic_neuro_data(folder=None, verbose=True, **settings):
    """The folder of the synthetic neuro data set, generated on first use.

    A manifest (``manifest.json``) records the generator version and settings; a folder made by
    another version or with other settings is regenerated. Files are written atomically, so an
    interrupted run never leaves half-written cubes behind.

    Args:
        folder: Where the files live; default :func:`default_cache_dir`.
        verbose: Print what is generated.
        **settings: Overrides of ``DEFAULT_SETTINGS`` (``n_cubes``, ``shape``, ``label_margin``,
            ``n_preview``, ``preview_shape``, ``seed``).

    Returns:
        The folder path, with a trailing separator (ready for ``data_path``/``label_path``).
    """
    unknown = set(settings) - set(DEFAULT_SETTINGS)
    if unknown:
        raise TypeError('get_synthetic_neuro_data: unknown settings %s; known are %s'
                        % (sorted(unknown), sorted(DEFAULT_SETTINGS)))
    folder = os.path.abspath(os.path.expanduser(folder or default_cache_dir()))
    wanted = dict(DEFAULT_SETTINGS, **settings)
    wanted = {k: list(v) if isinstance(v, tuple) else v for k, v in wanted.items()}
    manifest = dict(version=GENERATOR_VERSION, settings=wanted)
    path = os.path.join(folder, 'manifest.json')
    try:
        with open(path) as f:
            current = json.load(f)
    except (OSError, ValueError):
        current = None
    if current != manifest or not all(os.path.exists(os.path.join(folder, name))
                                      for name in _expected_files(wanted)):
        if verbose:
            logger.info('Generating the synthetic neuro data set in %s', folder)
        write_dataset(folder, verbose=verbose, **{k: tuple(v) if isinstance(v, list) else v for k, v in wanted.items()})
        with atomic_write(path, 'w') as f:
            json.dump(manifest, f, indent=1)
            os.fchmod(f.fileno(), _file_mode())
    return os.path.join(folder, '')


def synthetic_neuro_folder():
    """The folder of the default data set, with a trailing separator, generating nothing (for configs).

    The training generates the data set there when it loads a file of it (see :func:`provide`).
    """
    return os.path.join(os.path.abspath(default_cache_dir()), '')


def provides(path):
    """Whether ``path`` is a file of the default data set (in :func:`default_cache_dir`), which
    :func:`provide` generates on demand."""
    path = os.path.abspath(os.path.expanduser(str(path)))
    return (os.path.dirname(path) == os.path.abspath(default_cache_dir())
            and os.path.basename(path) in _expected_files(DEFAULT_SETTINGS))


def provide(path):
    """Generate the default data set (as :func:`get_synthetic_neuro_data`) when ``path`` is one of its
    files and the set is missing, incomplete or made by another generator version; else do nothing.

    The loaders call it before they open a file, so that a config can name the data set without
    generating it.
    """
    if provides(path):
        get_synthetic_neuro_data()


def _expected_files(settings):
    names = ['preview_cubes.h5']
    for i in range(settings['n_cubes']):
        names += ['raw_%i.h5' % i, 'barrier_int16_%i.h5' % i]
    return names


def main(argv=None):
    parser = argparse.ArgumentParser(description='Generate the synthetic EM neuro data set (HDF5 cubes).')
    parser.add_argument('folder', nargs='?', default=None, help='target folder (default: %s)' % default_cache_dir())
    parser.add_argument('--seed', type=int, default=DEFAULT_SETTINGS['seed'])
    parser.add_argument('--n-cubes', type=int, default=DEFAULT_SETTINGS['n_cubes'])
    args = parser.parse_args(argv)
    # the folder is the command's result (for scripts), not a log message
    sys.stdout.write(get_synthetic_neuro_data(args.folder, seed=args.seed, n_cubes=args.n_cubes) + '\n')


if __name__ == '__main__':
    main()
