"""The embedded synthetic EM volume: determinism, realism checks, caching, and loading by CNNData."""
import os

import h5py
import numpy as np
import pytest
from scipy import ndimage

from elektronn.data import synthetic
from elektronn.training.CNNData import CNNData

SMALL = dict(n_cubes=1, shape=(96, 96, 12), label_margin=(8, 8, 2), n_preview=1, preview_shape=(40, 40, 6))


@pytest.fixture(scope='module')
def volume():
    return synthetic.make_volume((128, 128, 16), seed=3)


def test_same_seed_same_volume_other_seed_other_volume(volume):
    raw, barrier, seg = volume
    again = synthetic.make_volume((128, 128, 16), seed=3)
    for a, b in zip(volume, again):
        np.testing.assert_array_equal(a, b)
    other = synthetic.make_volume((128, 128, 16), seed=4)
    assert np.mean(other[0] != raw) > 0.5 and np.mean(other[1] != barrier) > 0.1
    assert raw.dtype == np.uint8 and barrier.dtype == np.int16 and seg.dtype == np.int32
    assert raw.shape == barrier.shape == seg.shape == (128, 128, 16)


def test_membranes_are_dark_thin_and_cover_a_realistic_fraction(volume):
    raw, barrier, seg = volume
    assert set(np.unique(barrier)) == {0, 1}
    assert 0.1 < barrier.mean() < 0.35             # ISBI 2012: 22 %, FIB-SEM sample: 13 %
    assert raw[barrier == 1].mean() < raw[barrier == 0].mean() - 40
    # half thickness: distance to the nearest background pixel on the membrane's mid-line
    half = []
    for z in range(raw.shape[2]):
        dist = ndimage.distance_transform_edt(barrier[:, :, z])
        ridge = (dist == ndimage.maximum_filter(dist, 3)) & (dist > 0)
        half.append(dist[ridge])
    thickness = 2 * np.median(np.concatenate(half))
    assert 3 <= thickness <= 9


def test_intracellular_texture_and_distractors(volume):
    raw, barrier, seg = volume
    interior = ndimage.binary_erosion(barrier == 0, iterations=4)
    values = raw[interior].astype(float)
    assert values.std() > 12                        # textured, not flat
    # dark spots inside cells (vesicles, mitochondria) that are not barrier
    assert np.mean(values < raw[barrier == 1].mean()) > 0.005


def test_sections_change_along_z_but_stay_related(volume):
    raw, barrier, seg = volume
    ious = []
    for z in range(raw.shape[2] - 1):
        a, b = barrier[:, :, z] == 1, barrier[:, :, z + 1] == 1
        ious.append((a & b).sum() / float((a | b).sum()))
    assert 0.15 < np.mean(ious) < 0.9              # neighbouring sections overlap partially
    assert len(np.unique(seg)) > 10


def test_section_shifts_displace_whole_sections():
    still = synthetic.make_volume((96, 96, 8), seed=1, shift_px=0.0, noise=0.0)[1]
    shaky = synthetic.make_volume((96, 96, 8), seed=1, shift_px=3.0, noise=0.0)[1]
    assert np.mean(still != shaky) > 0.05


def test_cache_is_generated_once_and_rebuilt_when_settings_change(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv('ELEKTRONN_HOME', str(tmp_path / 'home'))
    assert synthetic.default_cache_dir() == str(tmp_path / 'home' / 'synthetic_neuro')
    folder = synthetic.get_synthetic_neuro_data(**SMALL)
    assert folder == os.path.join(synthetic.default_cache_dir(), '')
    assert 'Generating' in capsys.readouterr().out
    stamp = os.stat(os.path.join(folder, 'raw_0.h5')).st_mtime_ns
    assert synthetic.get_synthetic_neuro_data(**SMALL) == folder
    assert 'Generating' not in capsys.readouterr().out
    assert os.stat(os.path.join(folder, 'raw_0.h5')).st_mtime_ns == stamp
    with h5py.File(os.path.join(folder, 'raw_0.h5'), 'r') as f:
        first = f['raw'][()]
    synthetic.get_synthetic_neuro_data(**dict(SMALL, seed=5))
    with h5py.File(os.path.join(folder, 'raw_0.h5'), 'r') as f:
        assert not np.array_equal(f['raw'][()], first)
    os.remove(os.path.join(folder, 'preview_cubes.h5'))       # a missing file is regenerated
    synthetic.get_synthetic_neuro_data(**dict(SMALL, seed=5))
    assert os.path.exists(os.path.join(folder, 'preview_cubes.h5'))
    with pytest.raises(TypeError, match='unknown settings'):
        synthetic.get_synthetic_neuro_data(cubes=3)


def test_files_have_the_example_layout_and_load_registered(tmp_path):
    folder = synthetic.get_synthetic_neuro_data(str(tmp_path / 'syn'), verbose=False, **SMALL)
    with h5py.File(folder + 'raw_0.h5', 'r') as f:
        assert f['raw'].shape == (96, 96, 12) and f['raw'].dtype == np.uint8
    with h5py.File(folder + 'barrier_int16_0.h5', 'r') as f:
        assert f['lab'].shape == (80, 80, 8) and f['lab'].dtype == np.int16
    with h5py.File(folder + 'preview_cubes.h5', 'r') as f:
        assert list(f.keys()) == ['0'] and f['0'].shape == (40, 40, 6)
    data = CNNData((5, 41, 41), (1, 2, 2), (1, 8, 8), n_dim=3, n_lab=None, anisotropic_data=True, seed=0)
    data.addDataFromFile(folder, folder, [('raw_0.h5', 'raw')], [('barrier_int16_0.h5', 'lab')])
    assert data.n_lab == 2
    d, l = data.getbatch(8, strided=False)
    under = d[:, 1:-1, 0, 8:-8, 8:-8]
    assert under[l == 1].mean() < under[l == 0].mean() - 0.15     # labels sit on the dark membranes


def test_the_default_data_set_is_named_by_configs_and_generated_by_the_loaders(tmp_path, capsys, monkeypatch):
    from elektronn.training.config import Config, ConfigError
    from elektronn.training.previews import load_preview_cubes
    from pipeline_helpers import PREDICTION_RUN, write_config
    monkeypatch.setenv('ELEKTRONN_HOME', str(tmp_path / 'home'))
    monkeypatch.setattr(synthetic, 'DEFAULT_SETTINGS', dict(SMALL, seed=0))
    folder = synthetic.synthetic_neuro_folder()
    assert folder == os.path.join(synthetic.default_cache_dir(), '') and not os.path.exists(folder)
    assert synthetic.provides(folder + 'raw_0.h5') and synthetic.provides(folder + 'preview_cubes.h5')
    assert not synthetic.provides(folder + 'raw_1.h5') and not synthetic.provides(str(tmp_path / 'raw_0.h5'))
    files = dict(data_path=folder, label_path=folder, d_files=[('raw_0.h5', 'raw')],
                 l_files=[('barrier_int16_0.h5', 'lab')], preview_data_path=folder + 'preview_cubes.h5')
    Config(write_config(tmp_path, base=PREDICTION_RUN, **files), init_device=False)  # the files will be made
    assert not os.path.exists(folder)
    with pytest.raises(ConfigError, match='raw_1.h5 does not exist'):
        Config(write_config(tmp_path, base=PREDICTION_RUN, **dict(files, d_files=[('raw_1.h5', 'raw')])),
               init_device=False)
    capsys.readouterr()
    assert len(load_preview_cubes(folder + 'preview_cubes.h5')) == 1  # the first loader generates the set
    assert 'Generating the synthetic neuro data set in %s' % folder.rstrip('/') in capsys.readouterr().out
    data = CNNData((5, 41, 41), (1, 2, 2), (1, 8, 8), n_dim=3, n_lab=None, anisotropic_data=True, seed=0)
    data.addDataFromFile(folder, folder, files['d_files'], files['l_files'])
    assert 'Generating' not in capsys.readouterr().out and data.n_lab == 2
