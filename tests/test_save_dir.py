"""The save directory: reading a config has no side effects, re-running a config never destroys the earlier
run (it is moved aside), errors before training leave an earlier run untouched, and the explicit, idempotent
steps ``Config.init_device`` / ``prepare_save_dir`` / ``prepare_run``."""
import os
import re
import shutil

import h5py
import numpy as np
import pytest

from elektronn.cli import train as cli
from elektronn.net import device
from elektronn.training import config as cfg
from elektronn.training.config import Config, ConfigError

from pipeline_helpers import PREDICTION_RUN, quiet, write_config


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    """A private home (no ~/.elektronn.config); the working directory is restored after each test
    (elektronn-train works inside the save directory)."""
    home = tmp_path / 'home'
    home.mkdir()
    monkeypatch.setenv('HOME', str(home))
    monkeypatch.chdir(tmp_path)
    return home


@pytest.fixture
def gpu_calls(monkeypatch):
    """Every initGPU call's argument (the device is then the CPU)."""
    calls = []

    def init(gpu):
        calls.append(gpu)
        return device.resolve_device(False)
    monkeypatch.setattr(device, 'initGPU', init)
    return calls


def tree(folder):
    """``{relative path: content}`` of every file below ``folder`` (directories end with '/')."""
    out = {}
    for root, dirs, names in os.walk(str(folder)):
        rel = os.path.relpath(root, str(folder))
        for d in dirs:
            out[os.path.normpath(os.path.join(rel, d)) + '/'] = None
        for n in names:
            with open(os.path.join(root, n), 'rb') as f:
                out[os.path.normpath(os.path.join(rel, n))] = f.read()
    return out


def earlier_run(tmp_path, **values):
    """A config and a save directory with an earlier run's files in it (as ``Config.prepare_save_dir``
    makes them, plus results); returns ``(config file, save directory, its files)``."""
    path = write_config(tmp_path, **values)
    c = quiet(Config, path, init_device=False)
    c.prepare_save_dir()
    for name, text in (('blob_end.param', 'trained'), ('blob-LAST.param', 'last'), ('blob.history.csv', 'step\n0\n')):
        with open(os.path.join(c.save_path, name), 'w') as f:
            f.write(text)
    return path, c.save_path, tree(c.save_path)


def moved_aside(tmp_path, name='run'):
    return sorted(n for n in os.listdir(str(tmp_path)) if n.startswith(name + '.old-'))


# -- Config has no side effects ----------------------------------------------------------------------------
def test_reading_a_config_creates_moves_deletes_nothing_and_selects_no_device(tmp_path, gpu_calls):
    path, save_dir, files = earlier_run(tmp_path)
    before = tree(tmp_path)
    c = quiet(Config, path)  # the old signature's defaults: a new run (overwrite = True) with device selection
    Config(path, gpu='false', trainer_file=path)
    assert tree(tmp_path) == before and gpu_calls == []
    # a fresh save directory is not created either
    fresh = quiet(Config, write_config(tmp_path, name='fresh.py', save_path=str(tmp_path / 'fresh') + '/'))
    assert not os.path.exists(fresh.save_path) and gpu_calls == []
    assert c.save_path == save_dir


def test_prepare_run_does_each_step_once(tmp_path, gpu_calls, capsys):
    path, save_dir, files = earlier_run(tmp_path)
    c = quiet(Config, path, gpu='false', trainer_file=path)
    c.prepare_run()
    c.prepare_run()
    c.prepare_save_dir()
    c.init_device()
    assert gpu_calls == ['false']
    assert len(moved_aside(tmp_path)) == 1 and capsys.readouterr().out.count('Moved the earlier run') == 1
    assert sorted(os.listdir(os.path.join(save_dir, 'Backup'))) == ['config.py', 'elektronn-train']
    assert os.listdir(save_dir) == ['Backup']  # a fresh run
    # the constructor's arguments: the config's device, no directory step, no device step
    quiet(Config, path).init_device()
    assert gpu_calls == ['false', False]
    before = tree(tmp_path)
    Config(path, use_existing_dir=True, init_device=False).prepare_run()
    assert tree(tmp_path) == before and len(gpu_calls) == 2


# -- overwrite = True moves the earlier run aside -----------------------------------------------------------
def test_overwrite_moves_the_earlier_run_aside(tmp_path, capsys, monkeypatch):
    path, save_dir, files = earlier_run(tmp_path)
    c = quiet(Config, path, init_device=False)
    c.prepare_save_dir()
    aside = moved_aside(tmp_path)
    assert len(aside) == 1 and re.fullmatch(r'run\.old-\d{8}-\d{6}', aside[0])
    assert tree(tmp_path / aside[0]) == files  # every file of the earlier run, unchanged
    assert 'Moved the earlier run in %s aside to %s' % (save_dir, os.path.join(str(tmp_path), aside[0], '')) \
        in capsys.readouterr().out
    assert os.listdir(os.path.join(save_dir, 'Backup')) == ['config.py']
    # the same second: -2, -3
    monkeypatch.setattr(cfg.time, 'strftime', lambda fmt, *t: '20240101-120000')
    for _ in range(3):
        open(os.path.join(save_dir, 'result.txt'), 'w').write('x')
        quiet(Config, path, init_device=False).prepare_save_dir()
    assert moved_aside(tmp_path)[:3] == ['run.old-20240101-120000', 'run.old-20240101-120000-2',
                                         'run.old-20240101-120000-3']
    # an empty directory is simply used
    shutil.rmtree(os.path.join(save_dir, 'Backup'))
    quiet(Config, path, init_device=False).prepare_save_dir()
    assert len(moved_aside(tmp_path)) == 4 and os.listdir(save_dir) == ['Backup']


def test_rerunning_a_config_with_elektronn_train_keeps_the_earlier_run(tmp_path, capsys):
    path = write_config(tmp_path, n_steps=20, plot_on=False)
    assert cli.main([path, '--gpu=false']) == 0
    save_dir = os.path.join(str(tmp_path), 'run', '')
    first = tree(save_dir)
    assert 'blob_end.param' in first and 'Backup/config.py' in first and 'blob.log' in first
    os.chdir(str(tmp_path))
    capsys.readouterr()
    assert cli.main([path, '--gpu=false']) == 0
    out = capsys.readouterr().out
    aside = moved_aside(tmp_path)
    assert len(aside) == 1 and tree(tmp_path / aside[0]) == first
    assert 'Moved the earlier run in %s aside to %s' % (save_dir, os.path.join(str(tmp_path), aside[0], '')) in out
    assert os.path.exists(os.path.join(save_dir, 'blob_end.param'))
    log = open(os.path.join(save_dir, 'blob.log')).read()
    assert 'Moved the earlier run' in log and 'Reading config-file' in log  # the log holds the whole output


# -- errors before training leave an earlier run untouched ----------------------------------------------------
def cube_run(tmp_path, **values):
    """A config for the CNNData pipeline (h5 cubes in tmp_path)."""
    raw = np.random.default_rng(0).integers(0, 256, (40, 40, 12)).astype(np.uint8)
    with h5py.File(tmp_path / 'raw.h5', 'w') as f:
        f['raw'] = raw
    with h5py.File(tmp_path / 'lab.h5', 'w') as f:
        f['lab'] = (raw > 128).astype(np.int16)
    settings = dict(data_path=str(tmp_path) + '/', label_path=str(tmp_path) + '/')
    settings.update(values)
    return write_config(tmp_path, base=PREDICTION_RUN, **settings)


def test_config_and_data_errors_leave_the_earlier_run_untouched(tmp_path, capsys):
    _, save_dir, files = earlier_run(tmp_path, save_name='tiny')
    # a missing data file: the config check stops the run
    assert cli.main([cube_run(tmp_path, d_files=[('none.h5', 'raw')]), '--gpu=false']) == 2
    assert 'none.h5 does not exist' in capsys.readouterr().err
    assert tree(save_dir) == files
    # a data error when loading (the file has no such dataset)
    config = cube_run(tmp_path, d_files=[('raw.h5', 'nokey')])
    before = tree(tmp_path)
    assert cli.main([config, '--gpu=false']) == 2
    assert "has no dataset 'nokey'" in capsys.readouterr().err
    assert tree(tmp_path) == before
    # a network the data do not fit (createNet)
    assert cli.main([write_config(tmp_path, save_name='tiny', desired_input=16), '--gpu=false']) == 2
    assert 'the data class gives examples of shape (1, 12, 12)' in capsys.readouterr().err
    assert moved_aside(tmp_path) == [] and tree(save_dir) == files


def test_overwrite_false_refuses_before_loading_the_data(tmp_path, capsys):
    _, save_dir, _ = earlier_run(tmp_path, save_name='tiny')
    config = cube_run(tmp_path, overwrite=False, d_files=[('raw.h5', 'nokey')])  # the data would fail to load
    before = tree(tmp_path)
    assert cli.main([config, '--gpu=false']) == 2
    err = capsys.readouterr().err
    assert 'already exists and overwrite is False' in err and 'nokey' not in err
    assert tree(tmp_path) == before
    c = quiet(Config, config, init_device=False)
    with pytest.raises(ConfigError, match='already exists and overwrite is False'):
        c.prepare_save_dir()
    assert tree(tmp_path) == before


# -- protections ---------------------------------------------------------------------------------------------
def test_protected_and_foreign_folders_are_never_moved(tmp_path, _home, monkeypatch):
    cases = []
    (_home / 'Backup').mkdir()
    cases.append(('~/', 'is \\(or contains\\) the working or home directory'))
    cases.append((str(tmp_path) + '/', 'is \\(or contains\\) the working or home directory'))  # home's parent
    work = tmp_path / 'work'
    (work / 'sub' / 'Backup').mkdir(parents=True)
    foreign = tmp_path / 'mydata'
    foreign.mkdir()
    (foreign / 'precious.h5').write_text('data')
    cases.append((str(foreign) + '/', 'was not made by an ELEKTRONN run'))
    (tmp_path / 'afile').write_text('x')
    cases.append((str(tmp_path / 'afile'), 'is not a directory'))
    before = tree(tmp_path)
    for save_path, message in cases:
        c = quiet(Config, write_config(tmp_path, save_path=save_path), init_device=False)
        with pytest.raises(ConfigError, match=message):
            c.check_save_dir()
        with pytest.raises(ConfigError, match=message):
            c.prepare_save_dir()
    monkeypatch.chdir(work / 'sub')
    for save_path in ('./', '../'):  # the working directory and its parent
        c = quiet(Config, write_config(tmp_path, save_path=save_path), init_device=False)
        with pytest.raises(ConfigError, match='is \\(or contains\\) the working or home directory'):
            c.prepare_save_dir()
    after = tree(tmp_path)
    del after['cfg.py']
    assert after == before and not [n for n in os.listdir(str(tmp_path)) if '.old-' in n]


# -- scripts written for the original: Trainer(Config(...)) ------------------------------------------------
def test_old_scripts_get_their_save_directory_from_the_trainer(tmp_path, gpu_calls, capsys):
    """``Trainer(Config(cfg))``, ``loadData``, ``debugGetCNNBatch``, ``createNet``, ``run``: the trainer makes
    the save directory (moving an earlier run aside) when it first writes into it, and selects the device
    before it builds the network."""
    from elektronn.training.trainer import Trainer
    _, save_dir, files = earlier_run(tmp_path, save_name='tiny')
    config = cube_run(tmp_path, n_steps=3)
    for k in range(2):
        t = Trainer(quiet(Config, config, gpu=False))
        quiet(t.loadData)
        assert len(moved_aside(tmp_path)) == k  # not yet
        quiet(t.debugGetCNNBatch)
        quiet(t.createNet)
        assert len(gpu_calls) == 1 and gpu_calls[-1] is False
        t.interactive = False
        quiet(t.run)
        gpu_calls.clear()
        names = os.listdir(save_dir)
        assert {'Backup', 'debugGetCNNBatch.png', 'tiny_end.param', 'tiny.log'} <= set(names)
        assert len(moved_aside(tmp_path)) == k + 1
    assert tree(tmp_path / moved_aside(tmp_path)[0]) == files
