"""TensorBoard records (config key ``tensorboard``): what is written, read back with TensorBoard's reader."""
import numpy as np
import pytest

from elektronn.training.tensorboard_log import TensorBoardLog, tensorboard_missing

pytest.importorskip('tensorboard')
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def read_events(folder):
    """{tag: [(step, value)]} of the scalars and {tag: [(step, height, width)]} of the images in ``folder``."""
    acc = EventAccumulator(str(folder), size_guidance={'scalars': 0, 'images': 0})
    acc.Reload()
    tags = acc.Tags()
    scalars = {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in tags['scalars']}
    images = {t: [(e.step, e.height, e.width) for e in acc.Images(t)] for t in tags['images']}
    return scalars, images


def test_scalars_and_images_are_written_under_their_tags(tmp_path):
    assert tensorboard_missing() is None
    tb = TensorBoardLog(str(tmp_path / 'tb'))
    tb.scalars(20, {'loss_smoothed': 0.5, 'valid_error': float('nan'), 'LR': 0.01, 'step_time_s': 0.2,
                    'seg/VOI': 1.5, 'train_error': None})
    tb.scalars(40, {'loss_smoothed': 0.25, 'LR': 0.005})
    grey = np.linspace(-1, 3, 6 * 4).reshape(6, 4)
    tb.image('preview/c1', 40, grey)
    tb.image('preview/aff', 40, np.random.default_rng(0).random((6, 4, 3)))
    tb.close()
    scalars, images = read_events(tmp_path / 'tb')
    assert scalars['loss/smoothed'] == [(20, 0.5), (40, 0.25)]
    assert [s for s, _ in scalars['LR']] == [20, 40] and np.isclose(scalars['LR'][1][1], 0.005)
    assert 'error/valid' not in scalars and 'error/train' not in scalars  # NaN and None are left out
    assert np.isclose(scalars['time/step_s'][0][1], 0.2) and np.isclose(scalars['seg/VOI'][0][1], 1.5)
    assert images['preview/c1'] == [(40, 6, 4)] and images['preview/aff'] == [(40, 6, 4)]


def test_a_resumed_run_drops_the_later_events_of_the_session_before(tmp_path):
    tb = TensorBoardLog(str(tmp_path))
    for step in (10, 20, 30):
        tb.scalars(step, {'loss': step})
    tb.close()
    tb = TensorBoardLog(str(tmp_path), start_step=20)  # resumed: steps 20 and later run again
    tb.scalars(30, {'loss': 3.0})
    tb.close()
    scalars, _ = read_events(tmp_path)
    assert scalars['loss/batch'] == [(10, 10.0), (30, 3.0)]


def test_a_bad_image_is_refused_naming_its_tag(tmp_path):
    tb = TensorBoardLog(str(tmp_path))
    with pytest.raises(ValueError, match="'preview/x' has shape \\(2, 3, 4\\)"):
        tb.image('preview/x', 0, np.zeros((2, 3, 4)))
    tb.close()


def test_without_the_package_the_key_names_the_fix(monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec', lambda name, *a: None if name == 'tensorboard' else real(name, *a))
    assert 'pip install tensorboard' in tensorboard_missing()
    with pytest.raises(ImportError, match="config key 'tensorboard': the tensorboard package is not installed"):
        TensorBoardLog('unused')


# -- the config key in training runs ---------------------------------------------------------------------------

def test_a_run_with_tensorboard_writes_the_history_and_resumes_without_folding_back(tmp_path, one_thread_home):
    from pipeline_helpers import make_trainer, resumed_trainer
    t = make_trainer(tmp_path, tensorboard=True, n_steps=41, history_freq=[20])
    assert t.run() == 'finished' and t.tensorboard is None  # closed at the end
    folder = tmp_path / 'run' / 'tensorboard'
    scalars, _ = read_events(folder)
    for tag in ('loss/smoothed', 'loss/batch', 'loss/train', 'loss/valid', 'LR', 'error/train', 'error/valid',
                'time/step_s', 'time/train_step_s'):
        assert [s for s, _ in scalars[tag]] == [0, 20, 40], tag
    history = {row[0]: row for row in t.history}
    assert np.isclose(scalars['loss/smoothed'][1][1], history[20][2])
    assert np.isclose(scalars['error/valid'][2][1], t.errors[-1][3])
    r = resumed_trainer(str(tmp_path / 'cfg.py'), n_steps=61)
    assert r.run() == 'finished'
    scalars, _ = read_events(folder)
    assert [s for s, _ in scalars['loss/smoothed']] == [0, 20, 40, 60]


def test_a_run_without_tensorboard_writes_nothing_of_it(tmp_path, one_thread_home):
    from pipeline_helpers import make_trainer
    t = make_trainer(tmp_path, n_steps=3, history_freq=[2])
    assert t.config.tensorboard is False
    assert t.run() == 'finished'
    assert not (tmp_path / 'run' / 'tensorboard').exists()


def test_preview_images_reach_tensorboard(tmp_path, em_folder, one_thread_home):
    from test_trainer_images import make_trainer as make_image_trainer
    t = make_image_trainer(tmp_path, em_folder, tensorboard=True, n_steps=3, warp_on=False,
                           preview_kwargs=dict(export_class=1, max_z_pred=1))
    t.createNet()
    assert t.run() == 'finished'
    _, images = read_events(tmp_path / 'run' / 'tensorboard')
    assert sorted(images) == ['preview/0/c1', 'preview/1/c1']
    assert images['preview/0/c1'] == [(1, 24, 24)]  # the preview at step 1, the prediction of a 30x30 section


def test_the_key_without_the_package_is_a_config_error_naming_the_fix(tmp_path, monkeypatch):
    import importlib.util
    from elektronn.training.config import Config, ConfigError
    from pipeline_helpers import write_config
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec', lambda name, *a: None if name == 'tensorboard' else real(name, *a))
    with pytest.raises(ConfigError, match=r"cfg\.py: parameter 'tensorboard' is True but the tensorboard package is "
                                          r"not installed; install it \(pip install tensorboard"):
        Config(write_config(tmp_path, tensorboard=True), init_device=False)
