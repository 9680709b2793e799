"""Training judged by segmentation scores: the config key valid_segmentation_metrics."""
import csv
import os

import numpy as np
import pytest

from elektronn.training.config import Config, ConfigError
from elektronn.training.segmentation_scores import ValidSegmentationScorer, normalise_settings
from elektronn.training.trainer import Trainer

from pipeline_helpers import TINY_EM_RUN, quiet, resumed_trainer, write_config

RUN = dict(TINY_EM_RUN, save_name='segrun', plot_on=True,
           valid_segmentation_metrics=dict(two_d=True, min_seed_distance=2))

pytestmark = pytest.mark.usefixtures('one_thread_home')


def config_file(tmp_path, folder, **values):
    return write_config(tmp_path, base=dict(RUN, data_path=folder, label_path=folder), **values)


def test_history_steps_score_the_segmentation_of_the_valid_cube(tmp_path, em_folder, capsys):
    cfg = config_file(tmp_path, em_folder)
    t = Trainer(Config(cfg, init_device=False))
    quiet(t.loadData)
    quiet(t.createNet)
    t.interactive = False
    t.run()
    out = capsys.readouterr().out
    assert out.count('Valid segmentation: Rand error') == 2   # steps 0 and 3
    assert ', seg: Rand=' in out                               # the status line shows score and cost
    assert len(t.segmentation) == 2 and [r[0] for r in t.segmentation] == [0, 3]
    rand, split, merge, are, seconds = t.segmentation[-1][2:]
    assert 0 <= rand <= 1 and split >= 0 and merge >= 0 and seconds > 0
    with open(os.path.join(t.save_path, 'segrun.history.csv')) as f:
        rows = list(csv.DictReader(f))
    assert float(rows[-1]['valid_rand_error']) == pytest.approx(rand)
    assert float(rows[-1]['valid_voi_split']) == pytest.approx(split)
    assert os.path.getsize(os.path.join(t.save_path, 'segrun.Segmentation.png')) > 1000
    assert 'Valid segmentation' in open(os.path.join(t.save_path, 'segrun.log')).read()
    # resuming keeps the scores
    again = quiet(resumed_trainer, cfg, 9)
    assert [r[0] for r in again.segmentation] == [0, 3]
    quiet(again.run)
    assert [r[0] for r in again.segmentation] == [0, 3, 6]


def test_scores_equal_a_direct_computation(tmp_path, em_folder):
    """The scorer predicts densely, crops the offset and scores as the evaluation functions do."""
    from elektronn.evaluation import gt_segmentation_from_boundaries, segmentation_scores
    from elektronn.segmentation import Segmenter
    t = Trainer(Config(config_file(tmp_path, em_folder), init_device=False))
    quiet(t.loadData)
    quiet(t.createNet)
    raw, lab = t.data.valid_d[0], t.data.valid_l[0]
    scores = t.seg_scorer.score(t.cnn, [(raw, lab)])
    prob = quiet(t.cnn.predictDense, np.ascontiguousarray(raw.transpose(1, 2, 3, 0))).transpose(0, 3, 1, 2)
    # raw (z, x, y) = (10, 40, 40), labels (6, 28, 28) centred in it, prediction (8, 34, 34): their overlap is
    # the labels' region, 1 voxel in z and 3 in x and y inside the prediction
    assert prob.shape[1:] == (8, 34, 34) and lab.shape == (6, 28, 28)
    seg = Segmenter(kind='boundaries', two_d=True, min_seed_distance=2)(prob[1:2, 1:7, 3:31, 3:31])
    gt = gt_segmentation_from_boundaries((lab == 1).astype(np.uint8), two_d=True)
    gt[lab < 0] = 0
    expected = segmentation_scores(seg, gt, two_d=True)
    for name in ('rand_error', 'voi_split', 'voi_merge', 'adapted_rand_error'):
        assert scores[name] == pytest.approx(expected[name])


def test_every_and_defaults():
    assert normalise_settings(None) is None and normalise_settings(False) is None
    assert normalise_settings(True) == dict(every=1, channel=None)
    assert normalise_settings(dict(min_size=3)) == dict(min_size=3, every=1, channel=None)
    scorer = ValidSegmentationScorer(dict(every=3), 'nll', (0, 0, 0))
    assert [scorer.due() for _ in range(7)] == [True, False, False, True, False, False, True]


@pytest.mark.parametrize('value, message', [
    (dict(treshold=0.5), "has no setting 'treshold'"),
    (dict(threshold=2), 'threshold must be between 0 and 1'),
    (dict(every=0), "setting 'every'"),
    (dict(channel=-1), "setting 'channel'"),
    ('yes', 'must be None, False, True or a dict'),
])
def test_bad_settings_name_the_key(tmp_path, em_folder, value, message):
    with pytest.raises(ConfigError, match='valid_segmentation_metrics') as e:
        Config(config_file(tmp_path, em_folder, valid_segmentation_metrics=value), init_device=False)
    assert message in str(e.value)


def test_only_for_img_img(tmp_path):
    from pipeline_helpers import BLOB_CNN
    with pytest.raises(ConfigError, match="valid_segmentation_metrics.*only possible in mode 'img-img'"):
        Config(write_config(tmp_path, base=BLOB_CNN, valid_segmentation_metrics=True), init_device=False)
