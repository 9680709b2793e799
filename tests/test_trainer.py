"""The Trainer on synthetic data: outputs, the loop's schedule, resume, the console in-process, stops."""
import csv
import os
import signal

import numpy as np
import pytest
import torch

from elektronn.training.config import Config, ConfigError
from elektronn.training.trainer import Trainer
from elektronn.training.workers import WorkerError

from pipeline_helpers import BLOB_CNN, resumed_trainer, write_config


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny nets: one thread is fastest and immune to a busy machine
    yield
    torch.set_num_threads(threads)


def trainer(tmp_path, load=None, **values):
    values.setdefault('plot_on', False)
    if load:
        values['data_load_kwargs'] = load
    c = Config(write_config(tmp_path, **values), init_device=False)
    t = Trainer(c)
    t.loadData()
    t.createNet()
    t.interactive = False
    return t


def files(t):
    return set(os.listdir(t.save_path))


def read_history(t):
    with open(os.path.join(t.save_path, 'blob.history.csv')) as f:
        return list(csv.DictReader(f))


def params(cnn):
    return [p.detach().clone() for p in cnn.params]


def scripted(t, *lines, sleep=0.0):
    """Make ``t`` interactive with a console reading ``lines`` (a list per console opening)."""
    import time
    queue = [list(block) for block in lines]

    def read(prompt):
        if sleep:
            time.sleep(sleep)
        line = queue[0].pop(0)
        if not queue[0]:
            queue.pop(0)
        return line

    t.interactive = True
    t.console.input_func = read
    t.console._readline = None
    return queue


def test_a_run_writes_all_outputs(tmp_path, capsys):
    t = trainer(tmp_path, n_steps=60, plot_on=True)
    assert t.run() == 'finished'
    names = files(t)
    for name in ('blob-LAST.param', 'blob_end.param', 'blob-LAST.state.h5', 'blob.log', 'blob.history.csv',
                 'blob.Errors.png', 'blob.history.png', 'blob.timeline.png', 'Backup'):
        assert name in names
    assert 'blob.CGtimeline.png' not in names  # only when CG was used
    backup = set(os.listdir(os.path.join(t.save_path, 'Backup')))
    assert {'config.py', 'blob.history.npy', 'blob.timeline.npy', 'blob.errors.npy', 'blob.CGtimeline.npy'} <= backup
    assert not [n for n in names | backup if n.endswith('.tmp') or n.startswith('.')]  # atomic writes finished
    umask = os.umask(0)
    os.umask(umask)
    for name in ('blob-LAST.param', 'blob.history.csv', 'blob.Errors.png'):  # not private temp-file modes
        assert os.stat(os.path.join(t.save_path, name)).st_mode & 0o777 == 0o666 & ~umask
    hist = np.load(os.path.join(t.save_path, 'Backup', 'blob.history.npy'))
    assert hist.shape == (3, 8) and list(hist[:, 0]) == [0, 20, 40]
    assert np.load(os.path.join(t.save_path, 'Backup', 'blob.timeline.npy')).shape == (60, 5)
    rows = read_history(t)
    assert [r['step'] for r in rows] == ['0', '20', '40'] and float(rows[0]['LR']) == 0.05
    out = capsys.readouterr().out
    assert out.count('NLLm=') == 3 and 'End of Training' in out and '00040 NLLm=' in out
    log = open(os.path.join(t.save_path, 'blob.log')).read()
    assert '00040 NLLm=' in log and 'End of Training' in log
    assert float(rows[-1]['valid_error']) < 25  # it learns the blobs


def test_vector_data_with_background_workers(tmp_path):
    t = trainer(tmp_path, load=dict(flat=True), mode='vect-scalar', filters=[], pool=[], nof_filters=[],
                MLP_layers=[16], background_processes=True, n_steps=40)
    assert t.cnn.input_shape == (10, 144)
    assert t.run() == 'finished'
    assert t.workers is None and t.state.step == 40


def test_test_model_switches_dropout_off_and_back(tmp_path):
    t = trainer(tmp_path, dropout_rates=[0.5, 0.5])
    assert t.cnn.getDropoutRates() == [0.5, 0.5]
    calls = []
    get_error = t.cnn.get_error
    t.cnn.get_error = lambda *a, **k: calls.append(t.cnn.getDropoutRates()) or get_error(*a, **k)
    loss, err = t.testModel('test')
    assert calls == [[0.0, 0.0]] and t.cnn.getDropoutRates() == [0.5, 0.5]
    assert np.isfinite(loss) and 0 <= err <= 1
    t.data.valid_d = []
    assert np.isnan(t.testModel('valid')).all()


def test_lr_schedule_and_decay_after_every_1000_steps(tmp_path):
    t = trainer(tmp_path, n_steps=3, history_freq=[0], LR_decay=0.5, LR_schedule=[(1, 0.02)])
    t.run()
    assert t.cnn.getLR() == pytest.approx(0.02)  # step 0 does not decay; the schedule hit at step 1
    t.state.step = 999
    t.config.n_steps = 1002
    t.run()
    assert t.cnn.getLR() == pytest.approx(0.01)  # decayed once, at step 1000


def test_hourly_snapshots(tmp_path):
    t = trainer(tmp_path, n_steps=30, history_freq=[0], param_save_h=1e-6)
    t.run()
    snaps = [n for n in files(t) if n.endswith('h.param')]
    assert 'blob-1e-06h.param' in snaps and 'blob-3e-06h.param' in snaps and len(snaps) > 3


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path):
    np.random.seed(1234)
    torch.manual_seed(1234)
    schedule = [(30, 0.02), (70, 0.01)]
    whole = trainer(tmp_path / 'a', n_steps=100, LR_schedule=schedule)
    whole.run()
    np.random.seed(1234)
    torch.manual_seed(1234)  # the same initial weights as `whole`
    first = trainer(tmp_path / 'b', n_steps=50, LR_schedule=schedule)
    first.run()
    assert first.cnn.getLR() == pytest.approx(0.02)
    second = resumed_trainer(first.config.config_file, 100)
    assert second.state.step == 50 and second.cnn.getLR() == pytest.approx(0.02)
    assert len(second.history) == 3 and len(second.timeline) == 50
    second.run()
    assert second.state.step == 100 and second.cnn.getLR() == pytest.approx(0.01)
    assert [r[0] for r in second.history] == [0, 20, 40, 60, 80]
    for a, b in zip(params(whole.cnn), params(second.cnn)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # same batches, same updates: identical
    np.testing.assert_array_equal(np.array(whole.history)[:, [0, 2, 3, 4, 5, 6, 7]],
                                  np.array(second.history)[:, [0, 2, 3, 4, 5, 6, 7]])


def test_resume_needs_a_saved_state(tmp_path):
    t = trainer(tmp_path)
    with pytest.raises(FileNotFoundError, match='no resume state'):
        t.resume()


def test_console_changes_reach_training_and_workers(tmp_path):
    log = str(tmp_path / 'batches.log')
    t = trainer(tmp_path, load=dict(warp_on=True, log_path=log), background_processes=2, n_steps=10 ** 6,
                history_freq=[10])
    step = t._trainStep

    def step_with_ctrl_c(plotter):  # ctrl+c at steps 30 and 80
        step(plotter)
        if t.state.step in (30, 80):
            os.kill(os.getpid(), signal.SIGINT)
    t._trainStep = step_with_ctrl_c
    queue = scripted(t, ['setlr 0.002', 'data.warp_on = False', 'x = 1 / 0', 'print(self.testModel("test")[1] < 1)',
                         'q'], ['abort'])
    assert t.run() == 'finished'
    assert queue == [] and t.state.step == 80
    assert 'blob_end.param' in files(t)
    lrs = [float(r['LR']) for r in read_history(t)]
    assert lrs[:3] == [0.05] * 3 and lrs[-1] == 0.002
    lines = [line.split() for line in open(log)]
    worker_pids = {p for p, _ in lines} - {str(os.getpid())}
    last = {p: w for p, w in lines}
    assert len(worker_pids) == 2 and all(last[p] == 'False' for p in worker_pids)
    assert all(w == 'True' for p, w in lines[:10])


def test_console_kill_does_not_save(tmp_path):
    t = trainer(tmp_path, load=dict(signal_at=(15, int(signal.SIGINT))), n_steps=10 ** 6, history_freq=[10])
    scripted(t, ['kill'])
    assert t.run() == 'killed'
    assert 'blob_end.param' not in files(t) and 'blob-LAST.param' in files(t)


def test_console_time_does_not_count_as_training_time(tmp_path):
    t = trainer(tmp_path, load=dict(signal_at=(10, int(signal.SIGINT))), n_steps=20, history_freq=[0])
    scripted(t, ['q'], sleep=1.0)
    t.run()
    times = np.array(t.timeline)[:, 1]
    assert times[-1] < 0.9 and np.diff(times).max() < 0.5


@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGTERM])
def test_without_a_terminal_ctrl_c_and_sigterm_save_and_stop(tmp_path, signum, capsys):
    t = trainer(tmp_path, load=dict(signal_at=(25, int(signum))), n_steps=10 ** 6, history_freq=[10])
    assert t.run() == 'interrupted'
    assert {'blob-LAST.param', 'blob-LAST.state.h5'} <= files(t) and 'blob_end.param' not in files(t)
    assert 20 <= t.state.step <= 26
    assert '--resume' in capsys.readouterr().out
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored


def test_nan_loss_without_terminal_keeps_the_last_good_parameters(tmp_path, capsys):
    t = trainer(tmp_path, load=dict(nan_at=25), n_steps=10 ** 6, history_freq=[10])
    assert t.run() == 'diverged'
    assert 'diverged to a NaN/Inf loss (step 2' in capsys.readouterr().out
    good = Trainer(t.config)
    good.data = t.data
    good.createNet()
    good.cnn.loadParameters(os.path.join(t.save_path, 'blob-LAST.param'), strict=True)
    assert all(torch.isfinite(p).all() for p in good.cnn.params)
    assert 'blob_end.param' not in files(t)


def test_nan_loss_opens_the_console(tmp_path):
    t = trainer(tmp_path, load=dict(nan_at=5), n_steps=10 ** 6, history_freq=[10])
    queue = scripted(t, ['load blob-LAST.param', 'abort'])
    t.run()
    assert queue == [] and all(torch.isfinite(p).all() for p in t.cnn.params)


def test_an_error_ends_the_run_with_end_param(tmp_path, capsys):
    t = trainer(tmp_path, load=dict(raise_at=15), n_steps=100)
    with pytest.raises(RuntimeError, match='synthetic failure in batch 15'):
        t.run()
    assert 'blob_end.param' in files(t)
    assert 'Training stopped by an error at step 1' in capsys.readouterr().out


def test_a_worker_crash_is_reported_with_its_traceback(tmp_path):
    t = trainer(tmp_path, load=dict(fail_in_worker_after=5), n_steps=100, background_processes=2)
    with pytest.raises(WorkerError, match=r'(?s)Traceback.*synthetic_data\.py.*synthetic failure in batch 6'):
        t.run()


def test_create_net_checks_the_data(tmp_path):
    with pytest.raises(ConfigError, match="'n_lab' is 3 but the data has 2 classes"):
        trainer(tmp_path, n_lab=3)
    with pytest.raises(ConfigError, match=r'examples of shape \(1, 12, 12\) .* input size is \(10, 10\)'):
        trainer(tmp_path, desired_input=10)


def test_reset_clears_histories(tmp_path):
    t = trainer(tmp_path, n_steps=25)
    t.run()
    before = params(t.cnn)
    t.reset()
    assert t.history == [] and t.timeline == [] and t.state.step == 0 and t.cnn.getLR() == 0.05
    assert any((a != b).any() for a, b in zip(before, params(t.cnn)))


def test_unknown_data_class_name_suggests(tmp_path):
    c = Config(write_config(tmp_path, data_class_name=(BLOB_CNN['data_class_name'][0], 'BlobDat')),
               init_device=False)
    with pytest.raises(ConfigError, match="defines no 'BlobDat' \\(did you mean 'BlobData'\\?\\)"):
        Trainer(c).loadData()


def test_every_method_of_the_original_is_a_method_of_trainer_and_the_state_names_import_from_here():
    """Trainer is one class whose methods live in modules by job; its module still exports the state's names."""
    from elektronn.training import trainer, trainer_state
    for name in ('loadData', 'createNet', 'debugGetCNNBatch', 'testModel', 'predictAndWrite', 'previewSlice',
                 'previewSliceFromTrainData', 'malisPreviewSlice', 'saveHistories', 'saveState', 'resume', 'reset',
                 'run'):
        assert callable(getattr(Trainer, name)), name
    assert trainer.StateFileError is trainer_state.StateFileError and issubclass(trainer.StateFileError, ValueError)
    assert (trainer.STATE_FORMAT, trainer.STATE_VERSION) == (trainer_state.STATE_FORMAT, trainer_state.STATE_VERSION)


def test_status_lines_follow_the_log_level_and_the_run_log_keeps_them(tmp_path, capsys):
    from elektronn.log import use_log_level
    t = trainer(tmp_path, n_steps=25)
    capsys.readouterr()
    with use_log_level('WARNING'):
        assert t.run() == 'finished'
    assert 'NLLm=' not in capsys.readouterr().out
    log = open(os.path.join(t.save_path, 'blob.log')).read()
    assert '00020 NLLm=' in log and 'End of Training' in log


def test_a_failing_preview_warns_and_training_goes_on(tmp_path):
    t = trainer(tmp_path, n_steps=5, history_freq=[0], initial_prev_h=0)
    t.preview_data = ['a preview cube']

    def fail(**kwargs):
        raise ValueError('unreadable preview')
    t.previewSlice = fail
    with pytest.warns(UserWarning, match=r'Preview predictions failed \(ValueError: unreadable preview\)'):
        assert t.run() == 'finished'
    assert t.state.step == 5


def test_segmentation_scores_without_validation_cubes_warn(tmp_path, em_folder):
    from pipeline_helpers import TINY_EM_RUN
    c = Config(write_config(tmp_path, base=TINY_EM_RUN, data_path=em_folder, label_path=em_folder, valid_cubes=[],
                            valid_segmentation_metrics=True), init_device=False)
    t = Trainer(c)
    t.loadData()
    with pytest.warns(UserWarning, match='valid_segmentation_metrics is set but the data have no validation cubes'):
        t.createNet()
    assert t.seg_scorer is None
