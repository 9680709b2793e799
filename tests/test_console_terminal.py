"""The console recipe of the original's examples page, typed verbatim into a terminal."""
from pipeline_helpers import write_config
from terminal_helpers import PtyRun, terminal_env


def test_examples_page_recipe_print_testmodel_typed_verbatim(tmp_path):
    # examples.rst: "Stop the training using ctrl+c:  >>> print self.testModel('test')  ->  (<NLL>, <Errors>)"
    config = write_config(tmp_path, n_steps=10 ** 6, history_freq=[20], plot_on=False)
    r = PtyRun([config, '--gpu=false'], str(tmp_path), terminal_env(tmp_path))
    try:
        r.expect(r'00020 NLLm=')
        r.send('\x03')
        r.expect(r'@ELEKTRONN: ')
        r.send("print self.testModel('test')\r")
        m = r.expect(r'\((\S+), (\S+)\)\r?\n')
        nll, error = float(m.group(1)), float(m.group(2))
        assert nll > 0 and 0 <= error <= 1
        r.expect(r'@ELEKTRONN: ')
        r.send('kill\r')
        r.expect(r'Killed: stopping without saving')
        assert r.wait() == 0
    finally:
        r.close()
    assert 'SyntaxError' not in r.out and 'Traceback' not in r.out

