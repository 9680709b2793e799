"""CNNData trains from a Zarr cube exactly as from the same HDF5 cube.

The same raw cube, labels and lazy-label masks are written once to HDF5 files and once to Zarr
stores (format v2 and v3, chunked unlike the contiguous HDF5 datasets); loaded with the same seed
they must give identical cubes, batches and training runs, in memory and read from disk (also in
pickled copies and background workers), and the loading errors must name the store and key.
"""
import pickle

import numpy as np
import pytest
import torch

from elektronn import volumes
from elektronn.training.CNNData import CNNData
from elektronn.training import cubes as cubes_mod

from pipeline_helpers import check_workers_draw_their_seeds, write_config

RAW_SHAPE, LAB_SHAPE = (30, 26, 12), (20, 16, 8)   # (x, y, z): labels centred in the raw cube
INFO = np.array([[1, 1, 1], [0, 0, 1]], np.int16)  # lazy labels: (labelled, not present) per class
GEOM = dict(patch_size=(5, 11, 9), stride=(1, 2, 2), offset=(1, 3, 2), n_dim=3, n_lab=3)


def write(path, zarr_format=2, **arrays):
    """Write ``arrays`` (key -> array) through :mod:`elektronn.volumes`: HDF5 contiguous, Zarr in chunks of 8."""
    zarr = str(path).endswith('.zarr')
    if zarr and zarr_format == 3:
        import zarr as zarr_mod
        zarr_mod.open_group(str(path), mode='w', zarr_format=3)  # volumes makes new stores in format v2
    with volumes.open_container(path, 'a') as c:
        for key, arr in arrays.items():
            c.create_volume(key, arr.shape, arr.dtype, chunks=(8,) * arr.ndim if zarr else None)[...] = arr
    return path


@pytest.fixture(params=[2, 3], ids=['zarr-v2', 'zarr-v3'])
def folder(tmp_path, request):
    """``raw.h5``/``lab.h5`` and ``raw.zarr``/``lab.zarr`` holding the same arrays (seeded)."""
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, RAW_SHAPE).astype(np.uint8)
    lab = rng.integers(-1, 3, LAB_SHAPE).astype(np.int16)
    for suffix in ('h5', 'zarr'):
        write(tmp_path / ('raw.' + suffix), request.param, raw=raw)
        write(tmp_path / ('lab.' + suffix), request.param, lab=lab, info=INFO)
    return tmp_path


def file_lists(suffix):
    """A training cube and a validation cube (z-regions of the same arrays, labels centred in them)."""
    return ([('raw.' + suffix, 'raw'), ('raw.' + suffix, 'raw', dict(z=(2, 10)))],
            [('lab.' + suffix, 'lab'), ('lab.' + suffix, 'lab', dict(z=(0, 8)))])


def load(folder, suffix, max_in_memory_bytes=None, downsample_xy=False, **kw):
    data = CNNData(seed=0, **dict(GEOM, **kw))
    data.max_in_memory_bytes = max_in_memory_bytes
    data.addDataFromFile(str(folder), str(folder), *file_lists(suffix), valid_cubes=[1], downsample_xy=downsample_xy)
    return data


def batches(data, n=4):
    """Augmented training batches (warps, flips, grey values, lazy-label masks) and validation batches."""
    out = []
    for _ in range(n):
        out += data.getbatch(3, grey_augment_channels=[0], warp_on=0.5, ret_info=True)
        out += data.getbatch(2, source='valid')
    return out


def assert_same_arrays(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_zarr_cubes_and_batches_equal_hdf5(folder):
    h5, zr = load(folder, 'h5'), load(folder, 'zarr')
    for name in ('train_d', 'train_l', 'valid_d', 'valid_l'):
        assert_same_arrays(getattr(h5, name), getattr(zr, name))
    for a, b in zip(h5.train_i + h5.valid_i, zr.train_i + zr.valid_i):
        assert_same_arrays(a, b)
        assert_same_arrays(a, INFO)
    assert_same_arrays(batches(h5), batches(zr))
    assert zr.n_successful_warp > 0


def test_zarr_cube_read_from_disk_equals_hdf5_in_memory(folder):
    mem = load(folder, 'h5')
    disk = load(folder, 'zarr', max_in_memory_bytes=0)
    assert all(isinstance(v, cubes_mod.DiskVolume) for v in disk.train_d + disk.train_l + disk.valid_d + disk.valid_l)
    assert_same_arrays(batches(mem), batches(disk))
    clone = pickle.loads(pickle.dumps(disk))   # as sent to a spawned worker: the clone opens the store again
    assert_same_arrays(clone.getbatch(2), disk.getbatch(2))
    disk.close()
    assert_same_arrays(batches(clone, 1), batches(disk, 1))   # a closed store is opened again when read
    # down-sampling and standardisation work the same on disk
    mem2 = load(folder, 'h5', downsample_xy=2, pre_process='standardise')
    disk2 = load(folder, 'zarr', max_in_memory_bytes=0, downsample_xy=2, pre_process='standardise')
    assert disk2.data_mean == pytest.approx(mem2.data_mean) and disk2.data_std == pytest.approx(mem2.data_std)
    for a, b in zip(batches(mem2, 2), batches(disk2, 2)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_background_workers_read_a_zarr_cube_from_disk(folder):
    data = load(folder, 'zarr', max_in_memory_bytes=0)
    data.getbatch(1)   # the store is open in this process before the workers fork
    check_workers_draw_their_seeds(data, dict(batch_size=2, warp_on=0.5))


def test_lazy_label_info_in_a_zarr_store(folder):
    data = load(folder, 'zarr')
    _, _, info1, info2 = data.getbatch(4, ret_info=True)
    assert_same_arrays([info1, info2], [[INFO[0]] * 4, [INFO[1]] * 4])
    write(folder / 'li.zarr', lab=np.zeros(LAB_SHAPE, np.int16), info=np.ones((2, 5), np.int16))
    with pytest.raises(ValueError, match=r"li\.zarr\[info\].*\(2, 3\)"):
        data.addDataFromFile(str(folder), str(folder), [('raw.zarr', 'raw')], [('li.zarr', 'lab')])


def test_an_ome_zarr_image_is_read_as_its_full_resolution_array(folder):
    raw = load(folder, 'h5').train_d[0]
    with volumes.open_container(folder / 'raw.zarr', 'r') as c:
        arr = c.volume('raw').read()
    axes = [(name, 'space') for name in 'xyz']
    with volumes.open_container(folder / 'ome.zarr', 'a') as c:
        c.create_volume('raw', arr.shape, arr.dtype, ome_axes=axes)[...] = arr   # the array is raw/0
    data = CNNData(seed=0, **GEOM)
    data.addDataFromFile(str(folder), str(folder), [('ome.zarr', 'raw')], [('lab.zarr', 'lab')])
    np.testing.assert_array_equal(data.train_d[0], raw)


def test_errors_name_the_zarr_store_and_key(folder):
    def load_files(raw, lab):
        CNNData(seed=0, **GEOM).addDataFromFile(str(folder), str(folder), [raw], [lab])

    with pytest.raises(FileNotFoundError, match=r"Data store not found: .*nope\.zarr.*'raw'.*d_files and data_path"):
        load_files(('nope.zarr', 'raw'), ('lab.zarr', 'lab'))
    with pytest.raises(FileNotFoundError, match=r"Label store not found: .*nope\.zarr.*'lab'.*l_files and label_path"):
        load_files(('raw.zarr', 'raw'), ('nope.zarr', 'lab'))
    with pytest.raises(cubes_mod.DataKeyError, match=r"raw\.zarr has no dataset 'data'; it contains \['raw'\]"):
        load_files(('raw.zarr', 'data'), ('lab.zarr', 'lab'))
    with pytest.raises(KeyError, match=r"lab\.zarr has no dataset 'labels'; it contains \['info', 'lab'\]"):
        load_files(('raw.zarr', 'raw'), ('lab.zarr', 'labels'))
    with volumes.open_container(folder / 'raw.zarr', 'a') as c:
        c.create_volume('grp/raw', RAW_SHAPE, np.uint8)
    with pytest.raises(cubes_mod.DataKeyError, match=r"raw\.zarr: 'grp' is a group, not a dataset; check d_files"):
        load_files(('raw.zarr', 'grp'), ('lab.zarr', 'lab'))
    (folder / 'bad.zarr').mkdir()
    (folder / 'bad.zarr' / '.zgroup').write_text('{not json')
    with pytest.raises(OSError, match=r"Cannot read label store .*bad\.zarr \(key 'lab'\).*Zarr"):
        load_files(('raw.zarr', 'raw'), ('bad.zarr', 'lab'))


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))   # no user config
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


#: A tiny 3D img-img run: input (z, x, y) = (5, 21, 21), output (3, 8, 8) at stride (1, 2, 2).
TINY_RUN = dict(
    save_name='tiny', mode='img-img', n_dim=3, desired_input=[21, 21, 5], filters=[[2, 2, 1], [3, 3, 3]],
    pool=[[2, 2, 1], [1, 1, 1]], nof_filters=[4, 4], activation_func='relu', MLP_layers=[], batch_size=2, n_lab=3,
    valid_cubes=[1], grey_augment_channels=[0], flip_data=True, warp_on=0.5, lazy_labels=True, n_steps=4,
    monitor_batch_size=2, history_freq=[2], max_runtime=600, plot_on=False, background_processes=False,
    SGD_params=dict(LR=0.01, momentum=0.9),
)


def train(folder, suffix):
    """Losses and parameters of a short training run on the cubes of ``folder`` (same seeds every time)."""
    from elektronn.training.config import Config
    from elektronn.training.trainer import Trainer
    d_files, l_files = file_lists(suffix)
    run = folder / ('run_' + suffix)
    config = write_config(run, base=TINY_RUN, data_path=str(folder) + '/', label_path=str(folder) + '/',
                          d_files=d_files, l_files=l_files, save_path=str(run / 'save') + '/')
    t = Trainer(Config(config, init_device=False))
    t.loadData()
    t.data.reseed(0)
    np.random.seed(0)   # the initial weights
    torch.manual_seed(0)
    t.createNet()
    t.interactive = False
    assert t.run() == 'finished'
    return [row[3] for row in t.timeline], [p.detach().clone() for p in t.cnn.params]


def test_training_from_a_zarr_config_equals_training_from_hdf5(folder, home):
    h5_losses, h5_params = train(folder, 'h5')
    zr_losses, zr_params = train(folder, 'zarr')
    assert len(h5_losses) == TINY_RUN['n_steps'] and np.all(np.isfinite(h5_losses))
    assert h5_losses == zr_losses
    for a, b in zip(h5_params, zr_params):
        assert torch.equal(a, b)
