"""elektronn-train as users run it: in a terminal (driven through a pseudo-terminal), without one, --resume."""
import csv
import os
import re
import signal
import subprocess
import sys

import pytest

from elektronn.cli import train as cli

from pipeline_helpers import write_config
from terminal_helpers import TIMEOUT, PtyRun, terminal_env


@pytest.fixture
def run_pty(tmp_path):
    runs = []

    def start(args):
        r = PtyRun(args, str(tmp_path), terminal_env(tmp_path))
        runs.append(r)
        return r
    yield start
    for r in runs:
        r.close()


def _history(save_dir):
    with open(os.path.join(save_dir, 'blob.history.csv')) as f:
        return list(csv.DictReader(f))


def _config(tmp_path, log=None, **values):
    load = dict(warp_on=True, log_path=log) if log else {}
    settings = dict(n_steps=10 ** 6, history_freq=[20], plot_on=False, data_load_kwargs=load)
    settings.update(values)
    return write_config(tmp_path, **settings)


def test_console_in_a_terminal_changes_training_and_workers(tmp_path, run_pty):
    log = str(tmp_path / 'batches.log')
    r = run_pty([_config(tmp_path, log, background_processes=2), '--gpu=false'])
    r.expect(r'00020 NLLm=.*LR=0\.05000')
    r.send('\x03')
    r.expect(r'ELEKTRONN MENU')
    r.expect(r'@ELEKTRONN: ')
    r.send('setlr 0.002\r')
    r.expect(r'LR of SGD set to 0\.002')
    r.expect(r'@ELEKTRONN: ')
    r.send('data.warp_on = False\r')
    r.expect(r'@ELEKTRONN: ')
    r.send('data.warp_on\r')
    r.expect(r'False')
    r.expect(r'@ELEKTRONN: ')
    r.send('q\r')
    r.expect(r'Continuing Training')
    r.expect(r'Forwarded to the background workers: data\.warp_on')
    r.expect(r'\d{5} NLLm=.*LR=0\.00200')
    r.expect(r'\d{5} NLLm=.*LR=0\.00200')
    r.send('\x03')
    r.expect(r'@ELEKTRONN: ')
    r.send('abort\r')
    r.expect(r'End of Training')
    assert r.wait() == 0
    save_dir = tmp_path / 'run'
    assert (save_dir / 'blob_end.param').exists()
    lrs = [float(row['LR']) for row in _history(save_dir)]
    assert lrs[0] == 0.05 and lrs[-1] == 0.002
    lines = [line.split() for line in open(log)]
    last = dict(lines)  # pid -> warp_on of its last batch
    workers = [p for p in last if p != str(r.pid)]
    assert len(workers) == 2 and all(last[p] == 'False' for p in workers)
    logged = (save_dir / 'blob.log').read_text()
    assert 'setlr 0.002' in logged and 'End of Training' in logged  # the console session is in the log too


def test_kill_in_the_console_does_not_save(tmp_path, run_pty):
    r = run_pty([_config(tmp_path), '--gpu=false'])
    r.expect(r'00020 NLLm=')
    r.send('\x03')
    r.expect(r'@ELEKTRONN: ')
    r.send('kill\r')
    r.expect(r'Killed: stopping without saving')
    assert r.wait() == 0
    assert (tmp_path / 'run' / 'blob-LAST.param').exists()
    assert not (tmp_path / 'run' / 'blob_end.param').exists()


def _start_plain(tmp_path, args):
    return subprocess.Popen([sys.executable, '-m', 'elektronn.train'] + args, cwd=str(tmp_path), env=terminal_env(tmp_path),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_line(p, pattern):
    seen = []
    for line in p.stdout:
        seen.append(line)
        if re.search(pattern, line):
            return seen
    raise AssertionError('%r not seen:\n%s' % (pattern, ''.join(seen[-50:])))


def _interrupt_plain_run(tmp_path, signum, n_steps):
    p = _start_plain(tmp_path, [_config(tmp_path, n_steps=n_steps), '--gpu=false'])
    try:
        _wait_for_line(p, r'00040 NLLm=')
        p.send_signal(signum)
        out = p.communicate(timeout=TIMEOUT)[0]
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, out
    assert 'saving and stopping' in out and '--resume' in out
    save_dir = tmp_path / 'run'
    assert (save_dir / 'blob-LAST.param').exists() and (save_dir / 'blob-LAST.state.h5').exists()
    assert not (save_dir / 'blob_end.param').exists()
    return save_dir


def test_without_a_terminal_ctrl_c_saves_and_exits(tmp_path):
    _interrupt_plain_run(tmp_path, signal.SIGINT, 10 ** 6)


def test_sigterm_saves_and_resume_continues_the_run(tmp_path):
    save_dir = _interrupt_plain_run(tmp_path, signal.SIGTERM, 160)
    stopped = [int(row['step']) for row in _history(save_dir)]
    p = _start_plain(tmp_path, [str(save_dir), '--resume', '--gpu=false'])
    out = p.communicate(timeout=TIMEOUT)[0]
    assert p.returncode == 0, out
    step = int(re.search(r'Resuming blob at step (\d+)', out).group(1))
    assert step > stopped[-1]
    steps = [int(row['step']) for row in _history(save_dir)]
    assert steps == list(range(0, 160, 20))  # one continuous history, no step twice
    assert (save_dir / 'blob_end.param').exists()
    assert (save_dir / 'Backup' / 'config-resume1.py').exists()
    assert 'Resuming blob' in (save_dir / 'blob.log').read_text()


def test_help_explains_everything(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(['--help'])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for word in ('--gpu', "'auto'", '--resume', 'ctrl+c', 'setlr', 'MNIST_CNN_warp_config.py', 'SIGTERM'):
        assert word in out


def test_bare_config_names_come_from_the_examples(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = cli.find_config('MNIST_CNN_warp_config.py')
    assert os.path.isfile(path) and path.endswith(os.path.join('examples', 'MNIST_CNN_warp_config.py'))
    assert cli.find_config('MNIST_MLP_config') .endswith('MNIST_MLP_config.py')
    with pytest.raises(FileNotFoundError, match='not found .*MNIST_CNN_warp_config.py'):
        cli.find_config('no_such_config.py')


def test_errors_are_reported_without_a_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv('HOME', str(tmp_path))
    assert cli.main([write_config(tmp_path, batchsize=3), '--gpu=false']) == 2
    err = capsys.readouterr().err
    assert "elektronn-train: error:" in err and "Did you mean 'batch_size'" in err and 'Traceback' not in err
    with pytest.raises(SystemExit):
        cli.main(['cfg.py', '--gpu=fast'])
    assert "--gpu must be 'auto', 'false' or a GPU index" in capsys.readouterr().err
    assert cli.main([str(tmp_path / 'nothing'), '--resume']) == 2


def test_gpu_auto_falls_back_to_the_cpu(tmp_path, monkeypatch, capsys):
    import torch
    from elektronn.training.config import Config
    if torch.cuda.is_available():
        pytest.skip('a GPU is present')
    monkeypatch.setenv('HOME', str(tmp_path))
    Config(write_config(tmp_path), gpu='auto').init_device()
    assert 'No free GPU found, using the CPU' in capsys.readouterr().out


def test_a_gpu_index_the_machine_lacks_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    import torch
    monkeypatch.setenv('HOME', str(tmp_path))
    missing = torch.cuda.device_count() + 1          # also on a machine with GPUs
    assert cli.main([write_config(tmp_path), '--gpu=%i' % missing]) == 2
    err = capsys.readouterr().err
    assert err.count('elektronn-train: error:') == 1 and '--gpu=' in err and 'Traceback' not in err
    assert not os.path.exists(os.path.join(str(tmp_path), 'run'))  # nothing written before the device is known
