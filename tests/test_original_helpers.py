"""The original's smaller helpers: the ``CNNData`` module path, ``plotTrainingTarget``,
``Trainer.previewSliceFromTrainData``, ``Trainer.malisPreviewSlice`` and the data classes
``QueueData``, ``PianoData``, ``AdultData``, ``BuzzData`` and ``GeneData``."""
import inspect
import os

import numpy as np
import pytest
from matplotlib.image import imread

from elektronn.utils import pickleLoad, pickleSave

from pipeline_helpers import TINY_EM_RUN, make_trainer, quiet, write_block_volume, write_config


def test_training_cnndata_is_the_module():
    from elektronn.training import CNNData
    assert inspect.ismodule(CNNData) and inspect.isclass(CNNData.CNNData)
    assert CNNData.__name__ == 'elektronn.training.CNNData'


def test_plot_training_target_writes_the_three_panels(tmp_path):
    from elektronn.training.CNNData import plotTrainingTarget
    rng = np.random.default_rng(0)
    img = rng.random((40, 40)).astype(np.float32)
    lab = (rng.random((15, 15)) > 0.5).astype(np.int16)
    path = str(tmp_path / 'target.png')
    assert plotTrainingTarget(img, lab, stride=2, savename=path) == path
    png = imread(path)
    assert png.ndim == 3 and png.shape[1] > 2 * png.shape[0]  # three panels side by side
    # stride 1 and a label as large as the image; the default file name
    cwd = os.getcwd()
    os.chdir(str(tmp_path))
    try:
        assert plotTrainingTarget(img, (img > 0.5).astype(np.int16)) == 'training_target.png'
    finally:
        os.chdir(cwd)
    assert os.path.getsize(str(tmp_path / 'training_target.png')) > 0
    with pytest.raises(ValueError, match='2D'):
        plotTrainingTarget(img[None], lab)


@pytest.mark.usefixtures('one_thread_home')
def test_preview_slice_from_train_data(tmp_path, em_folder, capsys):
    t = quiet(make_trainer, tmp_path, base=dict(TINY_EM_RUN, data_path=em_folder, label_path=em_folder))
    assert not t.saved_raw_preview
    # z raised from 3 to the net's input depth 5; y cut with off[2]/sh[2] (the original used off[1]/sh[1])
    quiet(t.previewSliceFromTrainData, cube_i=0, off=(1, 2, 4), sh=(3, 30, 26), number=7, export_class=1)
    assert t.saved_raw_preview
    names = sorted(os.listdir(t.save_path))
    preds = [n for n in names if n.startswith('em-pred-') and n.endswith('-7hrs.png')]
    raws = [n for n in names if n.startswith('em-raw-')]
    assert preds and raws and not [n for n in preds if '-c0-' in n]  # export_class=1 only
    raw_png = imread(os.path.join(t.save_path, raws[0]))
    assert raw_png.shape[:2] == (30, 26)
    pred_png = imread(os.path.join(t.save_path, preds[0]))
    assert pred_png.shape[:2] == (30 - 6, 26 - 6)
    # the raw slices are not written again
    for n in raws:
        os.remove(os.path.join(t.save_path, n))
    quiet(t.previewSliceFromTrainData, 0, (0, 0, 0), (5, 21, 21), number=8)
    assert not [n for n in os.listdir(t.save_path) if n.startswith('em-raw-')]
    assert [n for n in os.listdir(t.save_path) if n.endswith('-8hrs.png')]
    t.config.mode = 'img-scalar'
    capsys.readouterr()
    assert t.previewSliceFromTrainData() is None
    assert "only available for 'img-img'" in capsys.readouterr().out


@pytest.mark.usefixtures('one_thread_home')
def test_malis_preview_slice_is_written_at_history_steps(tmp_path, capsys):
    from elektronn.training.config import Config
    from elektronn.training.trainer import Trainer
    folder = write_block_volume(str(tmp_path / 'aff') + '/')
    settings = dict(TINY_EM_RUN, save_name='m', data_path=folder, label_path=folder, target='malis',
                    d_files=[('raw.h5', 'raw')] * 2, l_files=[('seg.h5', 'seg')] * 2, filters=[[3, 3, 1], [3, 3, 3]],
                    pool=[[1, 1, 1], [1, 1, 1]], desired_input=[12, 12, 5], n_steps=8, history_freq=[4])
    t = Trainer(Config(write_config(tmp_path, base=settings), init_device=False))
    quiet(t.loadData)
    t.interactive = False
    quiet(t.createNet)
    capsys.readouterr()
    assert t.run() == 'finished'
    out = capsys.readouterr().out
    assert 'MALIS: NLL=' in out and 'false splits=' in out and 'Rand index=' in out
    files = sorted(n for n in os.listdir(t.save_path) if n.startswith('MALIS-'))
    assert files and all(n.endswith('.pkl') for n in files)
    pred, aff_gt, pos, neg, seg_gt, data = pickleLoad(os.path.join(t.save_path, files[0]))
    assert pred.shape == aff_gt.shape == pos.shape == neg.shape == (3, 8, 8, 3)
    assert seg_gt.shape == (3, 8, 8) and data.shape == (5, 12, 12)
    assert 0 <= pred.min() and pred.max() <= 1 and set(np.unique(aff_gt)) <= {0, 1}
    assert (pos >= 0).all() and (neg >= 0).all() and pos.sum() > 0
    # directly, with a name
    batch = t.data.getbatch(**t.get_batch_kwargs)
    path = quiet(t.malisPreviewSlice, batch, name='A')
    assert os.path.basename(path) == 'MALIS-A.pkl' and len(pickleLoad(path)) == 6


# ---------------------------------------------------------------------------------------------------
# Data classes
# ---------------------------------------------------------------------------------------------------
def _queue(n=6):
    from elektronn.training.traindata import QueueData
    d = np.arange(n, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    l = (np.arange(n) % 2).astype(np.int16)
    return quiet(QueueData, train_d=d, train_l=l, seed=0)


def test_queue_data_priorities(tmp_path):
    q = _queue()
    # unseen examples first: two draws of 3 cover all 6
    d1, l1 = q.queueget(3)
    assert d1.shape == (3, 3) and l1.shape == (3,)
    first = d1[:, 0].astype(int)
    q.queueupdate([5.0, 1.0, 3.0], iteration=1)
    d2, _ = q.queueget(3)
    second = d2[:, 0].astype(int)
    assert sorted(np.concatenate([first, second]).tolist()) == list(range(6))
    q.queueupdate([0.5, 0.2, 0.1], iteration=2)
    # now the highest nll / (1 + 0.017 count) - 0.004 age comes first
    prio = q.queuepriority()
    np.testing.assert_allclose(prio[first], np.array([5.0, 1.0, 3.0]) / 1.017 - 0.004)
    np.testing.assert_allclose(prio[second], np.array([0.5, 0.2, 0.1]) / 1.017)
    d3, _ = q.queueget(2)
    assert d3[:, 0].astype(int).tolist() == [first[0], first[2]]
    q.queueupdate([0.0, 0.0], iteration=10)
    assert q.queue_count[first[0]] == 2 and q.queue_last[first[0]] == 10
    np.testing.assert_allclose(q.queuepriority()[first[1]], 1.0 / 1.017 - 0.004 * 9)
    path = q.save(str(tmp_path / 'queue.pkl'))
    state = pickleLoad(path)
    assert state['iteration'] == 10 and state['count'].tolist() == q.queue_count.tolist()
    with pytest.raises(ValueError, match='2 examples'):
        q.queueget(2)
        q.queueupdate([1.0], 11)
    q.queuereset()
    assert np.isinf(q.queuepriority()).all() and q.queue_count.sum() == 0
    with pytest.raises(RuntimeError, match='queueget first'):
        q.queueupdate([1.0], 12)
    assert q.getbatch(2)[0].shape == (2, 3)  # plain Data batches still work


@pytest.mark.parametrize('name', ['AdultData', 'BuzzData', 'GeneData'])
def test_downloading_data_classes_name_the_replacement(name):
    from elektronn.training import traindata
    cls = getattr(traindata, name)
    assert issubclass(cls, traindata.Data)
    with pytest.raises(NotImplementedError, match=r'Data\(train_d=.*data_class_name'):
        cls()


def test_piano_data_windows_and_next_step_targets(tmp_path):
    from elektronn.training.traindata import PianoData
    rng = np.random.default_rng(1)
    train = [(rng.random((30, 6)) > 0.7).astype(np.int8) for _ in range(3)] + [np.zeros((4, 6), np.int8)]  # too short
    valid = [[[0, 2], [], [5], [1, 3]] * 3]  # note-index lists
    path = str(tmp_path / 'piano.pkl')
    pickleSave([{'train': train, 'valid': valid, 'test': valid}], path)
    p = quiet(PianoData, path, n_tap=5, n_lab=6, seed=0)
    assert len(p.train_d) == 3 and p.example_shape == (5, 6)
    d, l = p.getbatch(8)
    assert d.shape == (8, 5, 6) and d.dtype == np.float32 and l.shape == (8, 6) and l.dtype == np.int16
    for b in range(8):  # every window is followed by its target in some training sequence
        assert any(np.array_equal(s[t:t + 5], d[b]) and np.array_equal(s[t + 5], l[b])
                   for s in train[:3] for t in range(len(s) - 5))
    v1, vl1 = p.getbatch(4, 'valid')
    v2, _ = p.getbatch(4, 'valid')
    np.testing.assert_array_equal(v1, v2)
    assert vl1.shape == (4, 6) and set(np.unique(v1)) <= {0, 1}
    with pytest.raises(ValueError, match='outside'):
        pickleSave([{'train': train, 'valid': [[[7]] * 9], 'test': []}], path)
        quiet(PianoData, path, n_tap=5, n_lab=6)
