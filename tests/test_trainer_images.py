"""img-img training on h5 cubes through the Trainer: CNNData, debugGetCNNBatch, previews, workers,
and the affinity/MALIS targets, on a tiny synthetic EM volume."""
import os
import signal

import h5py
import numpy as np
import pytest
from matplotlib.image import imread

from elektronn.training import previews
from elektronn.training.config import Config, ConfigError
from elektronn.training.trainer import Trainer
from elektronn.training.workers import WorkerError

from pipeline_helpers import process_alive, write_block_volume, write_config

#: A tiny 3D net: input (z, x, y) = (5, 21, 21), field of view (3, 7, 7), output (3, 8, 8) at stride (1, 2, 2).
TINY_3D = dict(
    save_name='tiny', n_dim=3, desired_input=[21, 21, 5], filters=[[2, 2, 1], [3, 3, 3]], pool=[[2, 2, 1], [1, 1, 1]],
    nof_filters=[4, 4], activation_func='relu', batch_size=1, mode='img-img', n_lab=2,
    d_files=[('raw_0.h5', 'raw'), ('raw_1.h5', 'raw')],
    l_files=[('barrier_int16_0.h5', 'lab'), ('barrier_int16_1.h5', 'lab')],
    valid_cubes=[1], grey_augment_channels=[0], flip_data=True, anisotropic_data=True, warp_on=0.5,
    n_steps=30, max_runtime=600, monitor_batch_size=2, history_freq=[10], plot_on=False,
    SGD_params=dict(LR=0.01, momentum=0.9), initial_prev_h=0.0, prev_save_h=100.0,
    preview_kwargs=dict(export_class='all', max_z_pred=2),
)


pytestmark = pytest.mark.usefixtures('one_thread_home')


def make_trainer(tmp_path, folder, **values):
    settings = dict(TINY_3D, data_path=folder, label_path=folder, preview_data_path=folder + 'preview_cubes.h5')
    settings.update(values)
    t = Trainer(Config(write_config(tmp_path, base=settings), init_device=False))
    t.loadData()
    t.interactive = False
    return t


def test_img_img_run_debug_batch_previews_and_workers(tmp_path, em_folder):
    t = make_trainer(tmp_path, em_folder, background_processes=2)
    assert type(t.data).__name__ == 'CNNData' and t.data.n_lab == 2 and len(t.preview_data) == 2
    assert t.get_batch_kwargs['strided'] and t.get_batch_kwargs['warp_on'] is None and t.data.warp_on == 0.5
    assert t.get_batch_kwargs_test['warp_on'] is False
    data, label, info1, info2 = t.debugGetCNNBatch()
    assert data.shape == (2, 5, 1, 21, 21) and label.shape == (2, 3, 15, 15)     # unstrided: 21 - 2 * 3
    assert info1.shape == info2.shape == (2, 2) and (info1 == 1).all() and (info2 == 0).all()
    png = imread(os.path.join(t.save_path, 'debugGetCNNBatch.png'))
    assert png.ndim == 3 and png.shape[1] > 2 * png.shape[0]                      # three panels side by side
    t.createNet()
    pids = []
    step = t._trainStep

    def record_pids(plotter):
        step(plotter)
        if t.workers is not None and not pids:
            pids.extend(t.workers.pids)
    t._trainStep = record_pids
    assert t.run() == 'finished' and t.state.step == 30
    assert len(pids) == 2 and t.workers is None and not any(process_alive(p) for p in pids)   # reaped: no zombies
    names = set(os.listdir(t.save_path))
    # one preview (at 0 h; the next is due after 100 h) of both cubes: output z-slices 0 and 1, both classes
    for k in (0, 1):
        for z in (0, 1):
            assert 'tiny-raw-%i-z%i.png' % (k, z) in names
            for c in (0, 1):
                assert 'tiny-pred-%i-c%i-z%i-0.0hrs.png' % (k, c, z) in names
    pred = imread(os.path.join(t.save_path, 'tiny-pred-0-c1-z0-0.0hrs.png'))
    raw = imread(os.path.join(t.save_path, 'tiny-raw-0-z0.png'))
    assert pred.shape[:2] == (30 - 6, 30 - 6) and raw.shape[:2] == (30, 30)
    assert not [n for n in names if n.endswith('.tmp.png')]


def test_previews_follow_the_schedule(tmp_path, em_folder):
    t = make_trainer(tmp_path, em_folder, initial_prev_h=0.0, prev_save_h=0.5 / 3600, n_steps=10 ** 6,
                     max_runtime=2.2, history_freq=[0], preview_kwargs=dict(export_class=1, max_z_pred=1))
    t.createNet()
    t.run()
    hours = sorted(float(n.split('-')[-1][:-7]) for n in os.listdir(t.save_path) if n.startswith('tiny-pred-0-c1-z0-'))
    assert hours[:3] == [0.0, round(0.5 / 3600, 6), round(1.0 / 3600, 6)] and 4 <= len(hours) <= 6
    assert not [n for n in os.listdir(t.save_path) if '-c0-' in n]               # export_class=1 only


def test_console_change_of_data_reaches_the_workers_and_their_failure_is_reported(tmp_path, em_folder):
    t = make_trainer(tmp_path, em_folder, background_processes=2, n_steps=10 ** 6, max_runtime=60,
                     preview_data_path=None)
    t.createNet()
    step = t._trainStep

    def ctrl_c_at_5(plotter):
        step(plotter)
        if t.state.step == 5:
            os.kill(os.getpid(), signal.SIGINT)
    t._trainStep = ctrl_c_at_5
    lines = ['data.warp_on = 7', 'q']
    t.interactive = True
    t.console.input_func = lambda prompt: lines.pop(0)
    t.console._readline = None
    with pytest.raises(WorkerError, match=r'(?s)Traceback.*patch_sampling\.py.*warp_on must be True, False or a fraction'):
        t.run()
    assert lines == [] and t.workers is None
    assert 'tiny_end.param' in os.listdir(t.save_path)


def test_preview_file_errors_name_the_file(tmp_path, em_folder):
    bad = str(tmp_path / 'bad_preview.h5')
    with h5py.File(bad, 'w') as f:
        f['0'] = np.zeros((30, 30), np.uint8)
    with pytest.raises(ConfigError, match=r"'preview_data_path'.*bad_preview\.h5\[0\] has the shape \(30, 30\)"):
        make_trainer(tmp_path, em_folder, preview_data_path=bad)


def test_preview_cubes_are_scaled_like_training_data(tmp_path):
    path = str(tmp_path / 'p.h5')
    with h5py.File(path, 'w') as f:
        f['10'] = np.full((4, 4, 3), 0.25, np.float32)        # float: taken as it is
        f['2'] = np.full((2, 4, 4, 3), 51, np.uint8)          # integer: / 255; already with channels
    first, second = previews.load_preview_cubes(path)
    assert first.shape == (2, 4, 4, 3) and np.allclose(first, 0.2)   # '2' sorts before '10'
    assert second.shape == (1, 4, 4, 3) and np.allclose(second, 0.25)
    standardised = previews.load_preview_cubes(path, mean=0.2, std=0.1)
    assert np.allclose(standardised[0], 0.0) and np.allclose(standardised[1], 0.5)


def test_preview_slices_belong_to_their_raw_slices(tmp_path):
    """Prediction slice j of a prediction inset by z_off is raw slice j + z_off (+ the crop to z_thick)."""
    raw = np.zeros((1, 12, 12, 11), np.float32)
    for z in range(11):
        raw[0, :, :, z] = z / 10.0
        raw[0, 0, 0, z], raw[0, 0, 1, z] = 1.0, 0.0           # the same grey scale in every slice
    pred = np.zeros((2, 8, 8, 7), np.float32)                 # z_off 2: prediction slice j <-> raw slice j + 2
    for j in range(7):
        pred[1, :, :, j] = (j + 2) / 10.0
    pred[0] = 1 - pred[1]
    paths = previews.write_preview_slices(pred, raw, str(tmp_path), 'n', 3, 0.5, export_class=1, z_thick=3, z_off=2)
    assert sorted(os.path.basename(p) for p in paths) == sorted(
        ['n-pred-3-c1-z%i-0.5hrs.png' % z for z in range(3)] + ['n-raw-3-z%i.png' % z for z in range(3)])
    for z in range(3):                                        # central 3 of 7 prediction slices: 2, 3, 4
        p = imread(str(tmp_path / ('n-pred-3-c1-z%i-0.5hrs.png' % z)))[4, 4, 0]
        r = imread(str(tmp_path / ('n-raw-3-z%i.png' % z)))[4, 4, 0]
        assert abs(p - (z + 4) / 10.0) < 0.01 and abs(r - (z + 4) / 10.0) < 0.01
    aff = np.random.default_rng(0).random((6, 8, 8, 2)).astype(np.float32)
    paths = previews.write_preview_slices(aff, raw, str(tmp_path), 'a', 0, 1, export_class='affinity', z_thick=2,
                                          write_raw=False)
    assert [os.path.basename(p) for p in paths] == ['a-pred-0-aff-z0-1hrs.png', 'a-pred-0-aff-z1-1hrs.png']
    assert imread(paths[0]).shape[2] in (3, 4)


@pytest.mark.parametrize('target', ['affinity', 'malis'])
def test_affinity_and_malis_training_end_to_end(tmp_path, target):
    """Segment ids -> affinity graphs in CNNData; netcreation builds 2 classes per edge (6 outputs); the
    trainer passes the MALIS segmentation as seg_gt; the loss falls on a tiny volume of blocks."""
    folder = write_block_volume(str(tmp_path / 'aff') + '/')
    settings = dict(TINY_3D, data_path=folder, label_path=folder, target=target, d_files=[('raw.h5', 'raw')] * 2,
                    l_files=[('seg.h5', 'seg')] * 2, filters=[[3, 3, 1], [3, 3, 3]], pool=[[1, 1, 1], [1, 1, 1]],
                    desired_input=[12, 12, 5], warp_on=False, n_steps=60, history_freq=[20],
                    SGD_params=dict(LR=0.05, momentum=0.9), preview_data_path=None)
    t = Trainer(Config(write_config(tmp_path, base=settings), init_device=False))
    t.loadData()
    t.interactive = False
    data, label, _, _ = t.debugGetCNNBatch()
    assert label.shape == (2, 3, 8, 8) and set(np.unique(label)) <= {0, 1}       # min over the 3 edges
    cnn = t.createNet()
    batch = t.data.getbatch(**t.get_batch_kwargs)
    inputs, aux = t._split_batch(batch)
    assert batch[1].shape == (1, 3, 3, 8, 8)
    assert cnn.class_probabilities(inputs[0]).shape == (1, 6, 3, 8, 8)
    assert (list(aux) == ['seg_gt'] and aux['seg_gt'].shape == (1, 3, 8, 8)) if target == 'malis' else aux == {}
    assert t.run() == 'finished'
    losses = np.array(t.timeline)[:, 3]
    assert np.isfinite(losses).all() and losses[-10:].mean() < losses[:10].mean()
