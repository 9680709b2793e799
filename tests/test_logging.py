"""The 'elektronn' logger: levels, the environment variable, what reaches the console and the run log."""
import contextlib
import io
import logging
import os
import subprocess
import sys
import textwrap

import pytest

import elektronn
from elektronn import log
from elektronn.training import runlog

from pipeline_helpers import write_config

# Everything a script of the original does on import, building, compiling, training, evaluating and
# predicting with a small net, and the shape maths.
_SCRIPT = textwrap.dedent('''
    import numpy as np
    import elektronn
    from elektronn.net.convnet import MixedConvNN
    from elektronn.net.netutils import CNNCalculator
    CNNCalculator([3, 3], [2, 1], desired_input=20, MFP=[0, 0], n_dim=2)
    cnn = MixedConvNN((20, 20), input_depth=1)
    cnn.addConvLayer(4, 3, pool_shape=2, activation_func='relu')
    cnn.addConvLayer(2, 3, pool_shape=1, activation_func='linear', is_last_layer=True)
    cnn.compileOutputFunctions(target='nll')
    cnn.setOptimizerParams(SGD={'LR': 0.01, 'momentum': 0.9})
    rng = np.random.default_rng(0)
    data = rng.random((2, 1, 20, 20), dtype=np.float32)
    labels = rng.integers(0, 2, (2, 7, 7)).astype(np.int16)
    for _ in range(3):
        cnn.trainingStep(data, labels, mode='SGD')
    cnn.get_error(data, labels)
    cnn.class_probabilities(data)
    cnn.predictDense(data[0], as_uint8=False)
''')


def _run(env_level):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    env.pop(log.ENV_VARIABLE, None)
    if env_level is not None:
        env[log.ENV_VARIABLE] = env_level
    return subprocess.run([sys.executable, '-c', _SCRIPT], env=env, capture_output=True, text=True, timeout=300)


def test_at_warning_level_importing_building_and_training_print_nothing():
    quiet, loud = _run('WARNING'), _run(None)
    assert quiet.returncode == 0 and loud.returncode == 0, quiet.stderr + loud.stderr
    assert quiet.stdout == ''
    assert quiet.stderr == ''
    # the same script prints the original's lines at the default level
    assert loud.stdout.startswith('Load ELEKTRONN Core\n')
    assert 'Total Computational Cost' in loud.stdout or 'Computational Cost' in loud.stdout


def test_a_bad_environment_level_warns_and_shows_info():
    r = subprocess.run([sys.executable, '-c', 'import elektronn; print(elektronn.get_log_level())'],
                       env=dict(os.environ, ELEKTRONN_LOG_LEVEL='loud'), capture_output=True, text=True)
    assert r.stdout.strip() == str(logging.INFO)
    assert "ELEKTRONN_LOG_LEVEL: 'loud' is not a log level" in r.stderr


@pytest.fixture
def restore_level():
    old = elektronn.get_log_level()
    yield
    elektronn.set_log_level(old)


@pytest.mark.parametrize('given, level', [('debug', logging.DEBUG), ('WARNING', logging.WARNING), (40, 40),
                                          (True, logging.INFO), (False, logging.WARNING), ('30', 30)])
def test_set_log_level_accepts_names_ints_and_bools(restore_level, given, level):
    elektronn.set_log_level(given)
    assert elektronn.get_log_level() == level


@pytest.mark.parametrize('bad', ['loud', 2.5, [10], ''])
def test_set_log_level_names_a_bad_value(restore_level, bad):
    with pytest.raises(ValueError, match='set_log_level: %s is not a log level' % repr(bad).replace('[', r'\[')):
        elektronn.set_log_level(bad)


def test_set_log_level_none_reads_the_environment(restore_level, monkeypatch):
    monkeypatch.setenv(log.ENV_VARIABLE, 'error')
    assert elektronn.set_log_level(None, return_old=True) is not None
    assert elektronn.get_log_level() == logging.ERROR
    monkeypatch.delenv(log.ENV_VARIABLE)
    elektronn.set_log_level(None)
    assert elektronn.get_log_level() == logging.INFO


def test_messages_go_to_the_current_stdout_and_follow_the_level(restore_level):
    child = logging.getLogger('elektronn.net.something')
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        child.info('shown %i', 1)
        child.debug('hidden')
        with elektronn.use_log_level('DEBUG'):
            child.debug('now shown')
        with elektronn.use_log_level('WARNING'):
            child.info('hidden too')
            child.warning('a warning')
        child.info('shown again')
    assert out.getvalue() == 'shown 1\nnow shown\na warning\nshown again\n'


def test_the_run_log_gets_what_the_level_hides_once_and_in_order(restore_level, tmp_path):
    child = logging.getLogger('elektronn.training.something')
    path = str(tmp_path / 'run.log')
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        tee = runlog.TeeOutput().start()
        try:
            child.info('before the file')
            child.debug('debug before the file')
            tee.attach(path)
            print('a plain print')
            elektronn.set_log_level('WARNING')
            child.info('info while quiet')
            child.warning('warning while quiet')
        finally:
            tee.stop()
        child.debug('after the log closed')
    assert out.getvalue() == 'before the file\na plain print\nwarning while quiet\n'
    assert open(path).read() == ('before the file\ndebug before the file\na plain print\ninfo while quiet\n'
                                 'warning while quiet\n')
    assert elektronn.logger.level == logging.WARNING  # no capture left behind


def test_console_replies_are_shown_at_any_level(restore_level, tmp_path, monkeypatch, capsys):
    from elektronn.training.config import Config
    from elektronn.training.trainer import Trainer
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    elektronn.set_log_level('ERROR')
    t = Trainer(Config(write_config(tmp_path), init_device=False))
    t.loadData()
    t.createNet()
    capsys.readouterr()
    t.console.execute('help', t._namespace())
    t.console.execute('1 + 1', t._namespace())
    out = capsys.readouterr().out
    assert 'ELEKTRONN MENU' in out and '\n2\n' in out


def test_a_quiet_training_run_still_logs_everything_to_its_file(tmp_path):
    config = write_config(tmp_path, n_steps=40, plot_on=False)
    env = dict(os.environ, HOME=str(tmp_path / 'home'), OMP_NUM_THREADS='1', ELEKTRONN_LOG_LEVEL='WARNING')
    r = subprocess.run([sys.executable, '-m', 'elektronn.train', config, '--gpu=false'], cwd=str(tmp_path),
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'NLLm=' not in r.stdout and 'End of Training' not in r.stdout
    logged = (tmp_path / 'run' / 'blob.log').read_text()
    assert '00020 NLLm=' in logged and 'End of Training' in logged
