"""--quiet and --verbose of the elektronn-* commands: what they show, that the log keeps everything, that
the level is restored after an in-process run, and that the two flags exclude each other."""
import argparse
import logging
import os
import subprocess
import sys
import warnings

import h5py
import numpy as np
import pytest

import elektronn
from elektronn.cli import _common, convert_params, evaluate, predict, profile, segment, train

from pipeline_helpers import write_config

TIMEOUT = 120
#: Every command with arguments that get it past argparse.
COMMANDS = {'elektronn-train': (train, ['cfg.py']), 'elektronn-predict': (predict, ['run', 'in.h5:raw', 'out.h5']),
            'elektronn-segment': (segment, ['prob.h5:p', 'seg.h5:s']),
            'elektronn-evaluate': (evaluate, ['s.h5:s', 'g.h5:g']), 'elektronn-profile': (profile, ['cfg.py']),
            'elektronn-convert-params': (convert_params, ['old.param'])}


def _env(tmp_path, **extra):
    env = dict(os.environ, HOME=str(tmp_path / 'home'), OMP_NUM_THREADS='1')
    env.pop('ELEKTRONN_LOG_LEVEL', None)
    env.update(extra)
    os.makedirs(env['HOME'], exist_ok=True)
    return env


def _train(tmp_path, *flags):
    config = write_config(tmp_path, n_steps=40, plot_on=False)
    return subprocess.run([sys.executable, '-m', 'elektronn.train', config, '--gpu=false'] + list(flags),
                          cwd=str(tmp_path), env=_env(tmp_path), stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=TIMEOUT)


@pytest.mark.parametrize('prog', sorted(COMMANDS))
def test_quiet_and_verbose_exclude_each_other(prog, capsys):
    module, argv = COMMANDS[prog]
    with pytest.raises(SystemExit) as e:
        module.main(argv + ['--quiet', '--verbose'])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith('usage: %s ' % prog) and 'argument --verbose: not allowed with argument --quiet' in err
    with pytest.raises(SystemExit):
        module.main(['--help'])
    assert '--quiet' in capsys.readouterr().out


def test_train_quiet_prints_nothing_and_its_log_keeps_everything(tmp_path):
    done = _train(tmp_path, '--quiet')
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == '' and done.stderr == ''
    logged = (tmp_path / 'run' / 'blob.log').read_text()
    assert 'End of Training' in logged and '00020 NLLm=' in logged


def test_train_verbose_shows_debug_messages(tmp_path):
    done = _train(tmp_path, '--verbose')
    assert done.returncode == 0, done.stdout + done.stderr
    assert "elektronn-train options: config='%s'" % (tmp_path / 'cfg.py') in done.stdout  # DEBUG
    assert 'End of Training' in done.stdout  # and INFO as usual
    assert 'elektronn-train options:' in (tmp_path / 'run' / 'blob.log').read_text()


def test_train_passes_the_flag_on_to_its_torchrun_processes(monkeypatch):
    import torch
    from elektronn.net import device
    commands = []

    class Popen:
        def __init__(self, command, env):
            commands.append(command)

        def wait(self):
            return 0

    monkeypatch.delenv('WORLD_SIZE', raising=False)
    monkeypatch.delenv('CUDA_VISIBLE_DEVICES', raising=False)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 2)
    monkeypatch.setattr(device, 'gpu_list_indices', lambda gpus, text, without: [0, 1])
    monkeypatch.setattr(subprocess, 'Popen', Popen)
    for flags in (['--quiet'], ['--verbose'], []):
        assert train.main(['cfg.py', '--gpu=0,1'] + flags) == 0
        assert commands[-1][-len(flags) - 1:] == ['--gpu=0'] + flags
    assert commands[0][commands[0].index('-m', 2):][:3] == ['-m', 'elektronn.train', 'cfg.py']


@pytest.fixture
def info_level():
    """The default level of the suite (INFO), whatever ELEKTRONN_LOG_LEVEL says."""
    with elektronn.use_log_level('INFO'):
        yield


@pytest.fixture
def volumes(tmp_path):
    gt = np.zeros((2, 12, 10), np.uint32)
    gt[:, :5], gt[:, 6:] = 1, 2
    seg = gt.astype(np.uint64) + 10
    seg[:, :2] = 30  # one split
    path = tmp_path / 'v.h5'
    with h5py.File(path, 'w') as f:
        f['seg'], f['gt'] = seg, gt
    return str(path)


def _evaluate(capsys, volumes, *flags):
    level = elektronn.get_log_level()
    rc = evaluate.main([volumes + ':seg', volumes + ':gt'] + [str(f) for f in flags])
    assert elektronn.get_log_level() == level  # an in-process run leaves the level as it was
    out, err = capsys.readouterr()
    assert rc == 0, err
    return out, err


def test_evaluate_quiet_verbose_and_default(volumes, tmp_path, capsys, info_level):
    out, err = _evaluate(capsys, volumes)
    assert 'elektronn-evaluate: %s:seg against %s:gt' % (volumes, volumes) in out and 'Rand error' in out
    assert 'options:' not in out and err == ''
    # the scores are a report, INFO: --quiet leaves them to --json
    out, err = _evaluate(capsys, volumes, '--quiet', '--json', tmp_path / 's.json')
    assert out == '' and err == '' and (tmp_path / 's.json').exists()
    out, err = _evaluate(capsys, volumes, '--verbose')
    assert out.startswith('elektronn-evaluate options: ') and 'Rand error' in out
    # notes and errors stay on stderr under --quiet
    out, err = _evaluate(capsys, volumes, '--quiet', '--raw', volumes + ':gt')
    assert out == '' and err == 'elektronn-evaluate: note: --raw is only drawn in the --png figure; not reading it\n'
    assert evaluate.main([volumes + ':nothing', volumes + ':gt', '--quiet']) == 2
    assert capsys.readouterr().err.startswith('elektronn-evaluate: error: ')


def test_evaluate_follows_the_environment_without_a_flag(volumes, tmp_path):
    command = [sys.executable, '-m', 'elektronn.cli.evaluate', volumes + ':seg', volumes + ':gt']
    quiet = subprocess.run(command, env=_env(tmp_path, ELEKTRONN_LOG_LEVEL='warning'), capture_output=True, text=True,
                           timeout=TIMEOUT)
    assert quiet.returncode == 0 and quiet.stdout == '', quiet.stderr
    shown = subprocess.run(command + ['--verbose'], env=_env(tmp_path, ELEKTRONN_LOG_LEVEL='warning'),
                           capture_output=True, text=True, timeout=TIMEOUT)
    assert 'options:' in shown.stdout and 'Rand error' in shown.stdout  # the flag wins


def test_warnings_read_as_the_command_s_own_lines(info_level):
    args = argparse.Namespace(quiet=True, verbose=False)
    original = warnings.formatwarning
    with _common.verbosity('elektronn-x', args):
        assert elektronn.get_log_level() == logging.WARNING
        assert warnings.formatwarning('a risky setting', UserWarning, 'f.py', 1) == \
            'elektronn-x: warning: a risky setting\n'
        assert warnings.formatwarning('old', DeprecationWarning, 'f.py', 1) == 'elektronn-x: DeprecationWarning: old\n'
    assert warnings.formatwarning is original and elektronn.get_log_level() == logging.INFO
    assert _common.verbosity_flags(args) == ['--quiet']
    assert _common.verbosity_flags(argparse.Namespace(quiet=False, verbose=False)) == []


def test_local_dask_workers_show_what_the_command_shows(monkeypatch):
    distributed = pytest.importorskip('distributed')
    from elektronn.inference.runners import start_local_cluster
    seen = {}

    class Stop(Exception):
        pass

    def spec_cluster(workers=None, **kwargs):
        seen.update(workers)
        raise Stop

    monkeypatch.setattr(distributed, 'SpecCluster', spec_cluster)
    with elektronn.use_log_level('WARNING'), pytest.raises(Stop):
        start_local_cluster(2, 1, dashboard=False)
    assert [w['options']['env']['ELEKTRONN_LOG_LEVEL'] for w in seen.values()] == [str(logging.WARNING)] * 2
