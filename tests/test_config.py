"""Config files: the three levels, every error path, save-directory safety and the generated documents."""
import os
import runpy

import numpy as np
import pytest

from elektronn.training import config as cfg
from elektronn.training.config import Config, ConfigError

from pipeline_helpers import BLOB_CNN, write_config

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    """A private home directory: no real ~/.elektronn.config, and '~' paths stay inside tmp_path."""
    home = tmp_path / 'home'
    home.mkdir()
    monkeypatch.setenv('HOME', str(home))
    return home


def make(tmp_path, **values):
    return Config(write_config(tmp_path, **values), init_device=False)


def test_master_defaults_hold_every_documented_parameter():
    d = cfg.master_defaults()
    assert len(d) == len(cfg.MASTER_PARAMS) == 71
    assert d['history_freq'] == [500] and d['desired_input'] == 100 and d['LR_decay'] == 0.993
    assert d['save_path'] == '~/CNN_Training/Test/' and d['batch_size'] == 1 and d['n_steps'] == 10 ** 12
    assert d['CG_params'] == dict(n_steps=4, alpha=0.35, beta=0.75, max_step=0.02, min_step=8e-5)
    d['history_freq'].append(1)
    assert cfg.master_defaults()['history_freq'] == [500]  # fresh copies, no shared mutable state


def test_reads_values_and_converts(tmp_path, capsys):
    c = make(tmp_path, monitor_batch_size=55)
    assert c.monitor_batch_size == 50  # rounded down to a multiple of batch_size
    assert c.patch_size == (12, 12) and c.dimensions.pred_stride == [2, 2]
    assert c.activation_func == ['relu', 'relu'] and c.pooling_mode == ['max'] and c.MFP == [0]
    assert c.dropout_rates == []
    assert make(tmp_path, dropout_rates=None).dropout_rates == [None, None]
    assert make(tmp_path, dropout_rates=0.3).dropout_rates == [0.3, 0.3]
    assert c.save_path == os.path.join(str(tmp_path), 'run', '')
    out = capsys.readouterr().out
    assert 'Selected patch-size for CNN input:' in out and 'monitor_batch_size 55 changed to 50' in out


def test_xyz_becomes_zxy_for_3d(tmp_path):
    c = make(tmp_path, mode='img-img', n_dim=3, filters=[[4, 4, 1], 3], pool=[[2, 2, 1], 1], nof_filters=[2, 2],
             MLP_layers=[], desired_input=[19, 21, 5], data_class_name=BLOB_CNN['data_class_name'])
    assert c.filters == [[1, 4, 4], 3] and c.pool == [[1, 2, 2], 1]
    assert c.desired_input == [5, 19, 21] and c.patch_size == (5, 19, 21)
    assert c.dimensions.offset == [1.5, 4.5, 4.5]


def test_tilde_expansion_everywhere(tmp_path, _home):
    (_home / 'data.py').write_text(open(BLOB_CNN['data_class_name'][0]).read())
    (_home / 'w.param').write_text('x')
    c = make(tmp_path, save_path='~/runs/x/', data_class_name=('~/data.py', 'BlobData'), param_file='~/w.param')
    assert c.save_path == os.path.join(str(_home), 'runs', 'x', '')
    assert c.data_class_name == (os.path.join(str(_home), 'data.py'), 'BlobData')
    assert c.param_file == os.path.join(str(_home), 'w.param')


def test_save_path_default_uses_save_name(tmp_path, _home):
    path = write_config(tmp_path, save_name='myrun')
    src = open(path).read().replace("save_path = '%s'\n" % os.path.join(str(tmp_path), 'run', ''), '')
    open(path, 'w').write(src)
    c = Config(path, init_device=False)
    assert c.save_path == os.path.join(str(_home), 'CNN_Training', 'myrun', '')
    # the original's idiom in a config file keeps working
    c = make(tmp_path, lines=["save_path = '%s/base/'" % tmp_path, "save_path += save_name + '/'"])
    assert c.save_path == os.path.join(str(tmp_path), 'base', 'blob', '')


def test_user_config_file_is_the_middle_level(tmp_path, _home):
    (_home / '.elektronn.config').write_text('plot_on = False\nprint_status = False\nbatch_size = 5\n')
    c = make(tmp_path)
    assert c.plot_on is False and c.print_status is False
    assert c.batch_size == 10  # the run file wins
    (_home / '.elektronn.config').write_text('plot_onn = False\n')
    with pytest.raises(ConfigError, match=r"\.elektronn\.config: 'plot_onn' is not a valid .*Did you mean 'plot_on'"):
        make(tmp_path)


def test_imports_helpers_and_comprehensions_are_allowed(tmp_path):
    c = make(tmp_path, lines=['import math', 'def _helper(k):', '    return 2 * k',
                              'nof_filters = [_helper(k) for k in [2]]', 'max_runtime = math.ceil(99.5)'])
    assert c.nof_filters == [4] and c.max_runtime == 100


@pytest.mark.parametrize('key, suggestion', [('SGD_param', 'SGD_params'), ('warpon', 'warp_on'), ('batchsize', 'batch_size'),
                                             ('history_frq', 'history_freq'), ('MLP_layer', 'MLP_layers')])
def test_typo_suggests_the_nearest_name(tmp_path, key, suggestion):
    with pytest.raises(ConfigError, match=r"cfg\.py: '%s' is not a valid configuration parameter\. Did you mean '%s'"
                       % (key, suggestion)):
        make(tmp_path, **{key: 1})


@pytest.mark.parametrize('key, value, rule', [
    ('batch_size', '50', "'batch_size' must be an integer >= 1 and <= 100000, got '50'"),
    ('batch_size', 0, "'batch_size' must be an integer >= 1 and <= 100000, got 0"),
    ('plot_on', 'yes', "'plot_on' must be True or False"),
    ('n_dim', 4, "'n_dim' must be one of 2, 3"),
    ('mode', 'img-vect', "'mode' must be one of 'img-img', 'img-scalar', 'vect-scalar'"),
    ('target', 'nl', "'target' must be one of"),
    ('history_freq', [10, 20], "'history_freq' must be a list holding one integer"),
    ('warp_on', 1.5, "'warp_on' must be True/False or the fraction"),
    ('d_files', [('raw.h5', 'raw', dict(t=(0, 2)))], "'d_files' entry.0.: the region must be a dict"),
    ('LR_schedule', [(100, 0.01), (50, 0.001)], "'LR_schedule' must be None or a list of .*steps must increase"),
    ('SGD_params', dict(lr=0.1), r"'SGD_params' has no setting 'lr' \(did you mean 'LR'\?\)"),
    ('label_prop_thresh', 0.3, "'label_prop_thresh' must be a finite number > 0.5 and < 1, or None"),
    ('d_files', ['raw.h5'], "'d_files' must be a list of \\(file name, dataset key\\) pairs \\(HDF5 or Zarr\\)"),
    ('data_class_name', 'My Data', "'data_class_name' must be None, a class name"),
    ('device', 'fast', "'device' must be False \\(CPU\\), 'auto' or a GPU index"),
    ('save_name', 'a/b', "'save_name' must be a non-empty name without path separators"),
])
def test_bad_types_name_parameter_and_rule(tmp_path, key, value, rule):
    with pytest.raises(ConfigError, match=r'cfg\.py: parameter ' + rule):
        make(tmp_path, **{key: value})


@pytest.mark.parametrize('values, rule', [
    (dict(pool=[2, 2]), "'filters' filters, pool and nof_filters must have one entry per conv layer"),
    (dict(dropout_rates=[0.5]), "'dropout_rates' needs one rate per layer \\(1 conv \\+ 1 MLP = 2\\)"),
    (dict(activation_func=['relu']), "'activation_func' needs one entry per layer"),
    (dict(activation_func='relux'), "'activation_func' activation_func must be one of"),
    (dict(MFP=[1, 1]), "'MFP' needs one entry per conv layer"),
    (dict(MLP_layers=[]), "'MLP_layers' must not be empty in mode 'img-scalar'"),
    (dict(mode='img-img'), "'MLP_layers' must be empty in mode 'img-img'"),
    (dict(mode='vect-scalar'), "'filters' must be empty in mode 'vect-scalar'"),
    (dict(filters=[], pool=[], nof_filters=[]), "'filters' needs at least one conv layer in mode 'img-scalar'"),
    (dict(lazy_labels=True), "'lazy_labels' is only possible in mode 'img-img'"),
    (dict(rnn_layer_kwargs=dict(n_hid=5)), "'rnn_layer_kwargs' \\(a recurrent layer\\) is only possible"),
    (dict(class_weights=[1.0, 2.0, 3.0]), "'class_weights' needs one weight per class \\(n_lab=2\\)"),
    (dict(filters=[[3, 3, 3]]), "'filters' entries must be ints or 2-tuples for n_dim=2"),
    (dict(data_class_name=None, mode='vect-scalar', filters=[], pool=[], nof_filters=[]),
     "'data_class_name' is needed in mode 'vect-scalar'"),
])
@pytest.mark.filterwarnings('ignore:the following important config variables')  # (no data files: expected)
def test_inconsistent_settings_name_the_rule(tmp_path, values, rule):
    with pytest.raises(ConfigError, match=r'cfg\.py: parameter ' + rule):
        make(tmp_path, **values)


def test_invalid_architecture_and_border_mode_reject(tmp_path):
    with pytest.raises(ConfigError, match='do not give a valid CNN: Receptive Fields are not centered'):
        make(tmp_path, mode='img-img', MLP_layers=[], filters=[4], pool=[1])
    with pytest.raises(ConfigError, match="'border_mode' is 'reject', but desired_input \\[13, 13\\] is not a valid"):
        make(tmp_path, desired_input=13, border_mode='reject')
    assert make(tmp_path, desired_input=13, border_mode='crop').patch_size == (12, 12)
    assert make(tmp_path, desired_input=13, border_mode='mirror').patch_size == (14, 14)


def test_missing_files_name_the_path(tmp_path):
    data = tmp_path / 'data'
    data.mkdir()
    (data / 'raw.h5').write_text('')
    with pytest.raises(ConfigError, match="parameter 'l_files': file %s does not exist" % (data / 'lab.h5')):
        make(tmp_path, data_class_name=None, mode='img-img', MLP_layers=[], filters=[3, 3], pool=[1, 1],
             nof_filters=[2, 2], data_path=str(data) + '/', label_path=str(data) + '/',
             d_files=[('raw.h5', 'raw')], l_files=[('lab.h5', 'lab')])
    with pytest.raises(ConfigError, match="'data_class_name': file /nowhere/data.py does not exist"):
        make(tmp_path, data_class_name=('/nowhere/data.py', 'X'))
    with pytest.raises(ConfigError, match="'param_file': file %s does not exist" % (tmp_path / 'no.param')):
        make(tmp_path, param_file=str(tmp_path / 'no.param'))
    with pytest.raises(ConfigError, match='config file %s does not exist' % (tmp_path / 'none.py')):
        Config(str(tmp_path / 'none.py'), init_device=False)


def test_file_errors_name_file_and_line(tmp_path):
    path = write_config(tmp_path, lines=['x = 1 / 0'])
    with pytest.raises(ConfigError, match=r"cfg\.py, line \d+, raised ZeroDivisionError"):
        Config(path, init_device=False)
    path = write_config(tmp_path, lines=['print "hello"'])
    with pytest.raises(ConfigError, match=r"cfg\.py, line \d+: syntax error.*Python 2 print"):
        Config(path, init_device=False)


def test_missing_mandatory_names_only_warn(tmp_path):
    path = tmp_path / 'min.py'
    path.write_text("save_path = %r\ndata_class_name = %r\nmode = 'vect-scalar'\nMLP_layers = [5]\n"
                    % (str(tmp_path / 'r') + '/', BLOB_CNN['data_class_name']))
    with pytest.warns(UserWarning, match='the following important config variables are not set') as record:
        c = Config(str(path), init_device=False)
    message = str(record[0].message)
    for name in ('SGD_params', 'batch_size', 'n_steps', 'save_name'):
        assert repr(name) in message
    assert record[0].filename == __file__  # it points at the Config(...) call
    assert c.dimensions is None and c.patch_size is None


# -- save directory (more in test_save_dir.py) ---------------------------------------------------------
def test_save_directory_backup(tmp_path):
    script = tmp_path / 'driver.py'
    script.write_text('# driver')
    c = Config(write_config(tmp_path), trainer_file=str(script), init_device=False)
    assert not os.path.exists(c.save_path)  # reading a config creates nothing
    assert c.prepare_save_dir() == c.save_path
    backup = os.path.join(c.save_path, 'Backup')
    assert open(os.path.join(backup, 'config.py')).read() == open(c.config_file).read()
    assert open(os.path.join(backup, 'elektronn-train')).read() == '# driver'
    assert os.stat(os.path.join(backup, 'config.py')).st_mode & 0o777 == 0o755


def test_overwrite_moves_only_earlier_runs_aside(tmp_path, capsys):
    path = write_config(tmp_path)
    c = Config(path, trainer_file=None, init_device=False)
    c.prepare_save_dir()
    marker = os.path.join(c.save_path, 'old.txt')
    open(marker, 'w').write('old run')
    Config(path, init_device=False).prepare_save_dir()
    assert not os.path.exists(marker) and 'Moved the earlier run in' in capsys.readouterr().out
    aside = [n for n in os.listdir(tmp_path) if n.startswith('run.old-')]
    assert len(aside) == 1 and (tmp_path / aside[0] / 'old.txt').read_text() == 'old run'
    c = Config(write_config(tmp_path, overwrite=False), init_device=False)
    with pytest.raises(ConfigError, match='already exists and overwrite is False'):
        c.prepare_save_dir()
    # a folder that is not a save directory of a run is never moved or deleted
    other = tmp_path / 'mydata'
    other.mkdir()
    (other / 'precious.h5').write_text('data')
    c = Config(write_config(tmp_path, save_path=str(other) + '/'), init_device=False)
    with pytest.raises(ConfigError, match="was not made by an ELEKTRONN run .* Did you forget save_path"):
        c.prepare_save_dir()
    assert (other / 'precious.h5').exists() and not os.path.exists(str(other) + '.old-')


def test_never_moves_working_or_home_directory(tmp_path, _home, monkeypatch):
    (_home / 'Backup').mkdir()
    c = Config(write_config(tmp_path, save_path='~/'), init_device=False)
    with pytest.raises(ConfigError, match='is \\(or contains\\) the working or home directory'):
        c.prepare_save_dir()
    work = tmp_path / 'work'
    (work / 'Backup').mkdir(parents=True)
    monkeypatch.chdir(work)
    c = Config(write_config(tmp_path, save_path='./'), init_device=False)
    with pytest.raises(ConfigError, match='is \\(or contains\\) the working or home directory'):
        c.prepare_save_dir()
    assert (work / 'Backup').is_dir() and (_home / 'Backup').is_dir()


def test_use_existing_dir_touches_nothing(tmp_path):
    path = write_config(tmp_path)
    c = Config(path, init_device=False)
    c.prepare_save_dir()
    marker = os.path.join(c.save_path, 'keep.txt')
    open(marker, 'w').write('x')
    before = sorted(os.listdir(tmp_path))
    Config(path, use_existing_dir=True, override_MFP_to_active=True, init_device=False).prepare_run()
    assert os.path.exists(marker) and sorted(os.listdir(tmp_path)) == before


def test_override_mfp_and_imposed_input(tmp_path):
    c = Config(write_config(tmp_path), use_existing_dir=True, override_MFP_to_active=True, imposed_input_size=[21, 21],
               init_device=False)
    assert c.MFP == [1] and c.batch_size == 1 and c.desired_input == [21, 21] and c.patch_size == (21, 21)


def test_class_weights_become_float32(tmp_path):
    c = make(tmp_path, class_weights=[1, 3])
    assert c.class_weights.dtype == np.float32 and list(c.class_weights) == [1.0, 3.0]


def test_device_selection(tmp_path, capsys):
    c = Config(write_config(tmp_path), gpu='false')
    assert 'Using the CPU' not in capsys.readouterr().out  # selected when asked for, once
    assert c.init_device().type == 'cpu' and c.init_device().type == 'cpu'
    assert capsys.readouterr().out.count('Using the CPU') == 1
    assert Config(write_config(tmp_path), gpu='false', init_device=False).init_device() is None


# -- generated documents ---------------------------------------------------------------------------
def test_template_is_generated_from_the_master_defaults():
    path = os.path.join(ROOT, 'examples', 'config_template.py')
    assert open(path).read() == cfg.render_template(), 'regenerate: python -m elektronn.training.config --template'
    values = {k: v for k, v in runpy.run_path(path).items() if not k.startswith('_')}
    assert values == cfg.master_defaults()


def test_docs_table_is_generated_from_the_master_defaults():
    path = os.path.join(ROOT, 'docs', 'config_parameters.inc')
    assert open(path).read() == cfg.render_rst_table(), 'regenerate: python -m elektronn.training.config --rst'
    text = cfg.render_rst_table()
    for p in cfg.MASTER_PARAMS:
        assert '``%s``' % p.name in text


@pytest.mark.parametrize('name', ['MNIST_CNN_warp_config.py', 'MNIST_MLP_config.py'])
def test_example_configs_use_only_known_parameters(name):
    values = {k: v for k, v in runpy.run_path(os.path.join(ROOT, 'examples', name)).items() if not k.startswith('_')}
    assert set(values) <= set(cfg.master_defaults())
    assert values['data_class_name'] == 'MNISTData' and values['SGD_params'] == dict(LR=0.02, momentum=0.9)


def test_the_template_is_a_valid_user_config(tmp_path, _home):
    (_home / '.elektronn.config').write_text(open(os.path.join(ROOT, 'examples', 'config_template.py')).read())
    assert make(tmp_path).plot_on is True


def test_suggest_name():
    assert cfg.suggest_name('nof_filter', ['nof_filters', 'filters']) == 'nof_filters'
    assert cfg.levenshtein('kitten', 'sitting') == 3
