"""Console commands, run one by one (the interactive loop is driven through a pty in test_cli.py)."""
import os

import numpy as np
import pytest

from elektronn.training.config import Config
from elektronn.training.trainer import Trainer

from pipeline_helpers import write_config


@pytest.fixture
def console(tmp_path, monkeypatch):
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    t = Trainer(Config(write_config(tmp_path), init_device=False))
    t.loadData()
    t.createNet()
    ns = t._namespace()
    return t, t.console, ns


def test_control_commands(console, capsys):
    t, con, ns = console
    assert con.execute('q', ns) == 'q' and 'Continuing Training' in capsys.readouterr().out
    assert con.execute('abort', ns) == 'abort' and con.execute('  kill ', ns) == 'kill'
    assert con.execute('', ns) is None
    con.execute('help', ns)
    assert 'ELEKTRONN MENU' in capsys.readouterr().out


def test_set_commands(console, capsys):
    t, con, ns = console
    con.execute('setlr 0.002', ns)
    assert t.cnn.getLR() == pytest.approx(0.002)
    con.execute('setmom 0.5', ns)
    assert float(t.cnn.SGD_momentum) == 0.5
    con.execute('sethist 7', ns)
    assert t.config.history_freq == [7]
    con.execute('sethist x', ns)
    con.execute('setlr fast', ns)
    out = capsys.readouterr().out
    assert "sethist needs a whole number of steps" in out and "setlr needs a number, got 'fast'" in out
    assert t.config.history_freq == [7] and t.cnn.getLR() == pytest.approx(0.002)
    con.execute('Adam', ns)
    con.execute('setlr 0.0005', ns)
    assert t.config.optimizer == 'Adam' and t.cnn.getLR('Adam') == pytest.approx(0.0005)


def test_unavailable_optimiser_is_refused(console, capsys, monkeypatch):
    from elektronn.net import optimizers
    t, con, ns = console
    monkeypatch.delitem(optimizers.OPTIMIZERS, 'RPROP')
    con.execute('RPROP', ns)
    assert t.config.optimizer == 'SGD' and 'not available' in capsys.readouterr().out


def test_save_load_and_filters_go_to_the_save_directory(console, capsys):
    t, con, ns = console
    w = t.cnn.params[0].detach().clone()
    con.execute('save', ns)
    con.execute('save mine.param', ns)
    assert os.path.exists(os.path.join(t.save_path, 'CNN.save'))
    assert os.path.exists(os.path.join(t.save_path, 'mine.param'))
    with np.errstate(all='ignore'):
        t.cnn.params[0].data.zero_()
    con.execute('load mine.param', ns)
    assert (t.cnn.params[0] == w).all()
    con.execute('sf', ns)
    assert os.path.exists(os.path.join(t.save_path, 'filters_layer0.png'))
    con.execute('params', ns)
    out = capsys.readouterr().out
    assert 'Saving done' in out and 'Loaded!' in out and 'param  0 shape=(4, 1, 3, 3)' in out


def test_python_lines(console, capsys):
    t, con, ns = console
    con.execute('data.warp_on = True', ns)
    assert t.data.warp_on is True
    con.execute('data.warp_on', ns)
    con.execute('print(self.testModel("test")[1] <= 1)', ns)
    con.execute('config.save_name', ns)
    out = capsys.readouterr().out
    assert 'True\nTrue\n' in out and "'blob'" in out
    con.execute('1 / 0', ns)
    con.execute('undefined_name.x = 3', ns)
    err = capsys.readouterr().err
    assert 'ZeroDivisionError' in err and "NameError: name 'undefined_name'" in err
    assert 'console.py' not in err  # the traceback shows the user's code, not the console's


def test_interact_reads_until_an_action(console, capsys):
    t, con, ns = console
    lines = iter(['setlr 0.01', 'oops(', 'q'])
    con.input_func = lambda prompt: next(lines)
    con._readline = None
    assert con.interact(ns, status='STATUS LINE') == 'q'
    out = capsys.readouterr()
    assert 'STATUS LINE' in out.out and 'ELEKTRONN MENU' in out.out and 'SyntaxError' in out.err
    assert t.cnn.getLR() == pytest.approx(0.01)

    def eof(prompt):
        raise EOFError
    con.input_func = eof
    assert con.interact(ns) == 'q'


def test_ctrl_c_at_the_prompt_cancels_the_line(console, capsys):
    t, con, ns = console
    calls = iter([KeyboardInterrupt, 'abort'])

    def read(prompt):
        item = next(calls)
        if item is KeyboardInterrupt:
            raise KeyboardInterrupt
        return item
    con.input_func = read
    con._readline = None
    assert con.interact(ns) == 'abort'
    assert 'type q to continue training' in capsys.readouterr().out
