"""The 3D example configs: original key names, and their data loads into CNNData as the trainer would."""
import os

import numpy as np
import pytest

from elektronn.net.netutils import CNNCalculator
from elektronn.training.CNNData import CNNData
from conftest import shared_data_file

EXAMPLES = os.path.join(os.path.dirname(__file__), '..', 'examples')

#: Config names of the original (inventory section 5.3).
KNOWN_KEYS = {
    'save_path', 'plot_on', 'print_status', 'device', 'param_save_h', 'initial_prev_h', 'prev_save_h', 'save_name',
    'overwrite', 'param_file', 'activation_func', 'batch_size', 'dropout_rates', 'n_dim', 'desired_input', 'filters',
    'pool', 'nof_filters', 'pooling_mode', 'MFP', 'rnn_layer_kwargs', 'MLP_layers', 'target', 'data_path',
    'label_path', 'd_files', 'l_files', 'cube_prios', 'valid_cubes', 'example_ignore_threshold',
    'grey_augment_channels', 'use_example_weights', 'flip_data', 'anisotropic_data', 'lazy_labels', 'warp_on',
    'border_mode', 'pre_process', 'zchxy_order', 'upright_x', 'downsample_xy', 'preview_data_path', 'preview_kwargs',
    'mode', 'n_lab', 'background_processes', 'data_class_name', 'data_load_kwargs', 'data_batch_kwargs', 'n_steps',
    'max_runtime', 'history_freq', 'monitor_batch_size', 'weight_decay', 'class_weights', 'label_prop_thresh',
    'optimizer', 'LR_decay', 'LR_schedule', 'SGD_params', 'SSGD_params', 'RPROP_params', 'Adam_params', 'CG_params',
    'LBFGS_params'}
MANDATORY = {'SGD_params', 'batch_size', 'max_runtime', 'monitor_batch_size', 'n_steps', 'n_lab', 'save_name', 'mode',
             'desired_input', 'filters', 'n_dim', 'nof_filters', 'pool', 'd_files', 'data_path', 'l_files',
             'label_path'}
CONFIGS = ['neuro_3d_config.py', 'neuro_3d_synthetic_config.py', 'isbi2012_config.py', 'neuroproof_fib_config.py']


def read_config(name):
    namespace = {}
    with open(os.path.join(EXAMPLES, name)) as f:
        exec(compile(f.read(), name, 'exec'), {}, namespace)
    return namespace


def cnndata_from_config(cfg):
    """Build and fill CNNData the way the training pipeline does (xyz -> zxy, CNNCalculator)."""
    def zxy(v):
        return [v[2], v[0], v[1]] if cfg['n_dim'] == 3 and hasattr(v, '__len__') else v
    calc = CNNCalculator([zxy(f) for f in cfg['filters']], [zxy(p) for p in cfg['pool']], zxy(cfg['desired_input']),
                         MFP=False, force_center=True, n_dim=cfg['n_dim'])
    data = CNNData(calc.input, calc.pred_stride, calc.offset, cfg['n_dim'], cfg['n_lab'], cfg['anisotropic_data'],
                   cfg['mode'], cfg.get('zchxy_order', False), cfg.get('border_mode', 'crop'),
                   cfg.get('pre_process'), cfg.get('upright_x', False), seed=0)
    data.addDataFromFile(cfg['data_path'], cfg['label_path'], cfg['d_files'], cfg['l_files'], cfg['cube_prios'],
                         cfg['valid_cubes'], cfg.get('downsample_xy', False))
    return data, calc


def check_registered_batches(data, calc, source):
    d, l = data.getbatch(4, source=source, strided=False, flip=True)
    if len(calc.offset) == 3:                                  # (bs, z, ch, x, y)
        oz, ox, oy = (int(o) for o in calc.offset)
        under = d[:, oz:d.shape[1] - oz, 0, ox:d.shape[3] - ox, oy:d.shape[4] - oy]
    else:                                                      # (bs, ch, x, y)
        ox, oy = (int(o) for o in calc.offset)
        under = d[:, 0, ox:d.shape[2] - ox, oy:d.shape[3] - oy]
    assert under.shape == l.shape
    assert set(np.unique(l)) <= {0, 1}
    assert under[l == 1].mean() < under[l == 0].mean() - 0.05   # membranes are dark in every data set


@pytest.mark.parametrize('name', CONFIGS)
def test_configs_use_the_original_keys(name, monkeypatch, tmp_path):
    monkeypatch.setenv('ELEKTRONN_HOME', str(tmp_path))
    cfg = read_config(name)
    # beyond the original's names only the precision, which the recommended EM configs set (docs/em_results.rst)
    assert set(cfg) <= KNOWN_KEYS | {'mixed_precision'}, sorted(set(cfg) - KNOWN_KEYS)
    assert MANDATORY <= set(cfg)
    assert cfg['save_path'].endswith(cfg['save_name'] + '/')
    assert len(cfg['d_files']) == len(cfg['l_files'])
    assert os.listdir(tmp_path) == []  # reading a config generates no data


def test_synthetic_config_trains_from_generated_data(monkeypatch, tmp_path):
    from elektronn.data import synthetic
    # the default data set, smaller (the cubes still hold the example's 127 x 127 x 7 patches)
    monkeypatch.setattr(synthetic, 'DEFAULT_SETTINGS', dict(n_cubes=3, shape=(160, 160, 12), label_margin=(16, 16, 3),
                                                            n_preview=1, preview_shape=(40, 40, 6), seed=0))
    monkeypatch.setenv('ELEKTRONN_HOME', str(tmp_path))
    folder = str(tmp_path / 'synthetic_neuro') + '/'
    cfg = read_config('neuro_3d_synthetic_config.py')
    assert cfg['data_path'] == folder and cfg['preview_data_path'] == folder + 'preview_cubes.h5'
    assert not os.path.exists(folder)  # generated when loaded, not when the config is read
    data, calc = cnndata_from_config(cfg)
    assert sorted(os.listdir(folder)) == ['barrier_int16_0.h5', 'barrier_int16_1.h5', 'barrier_int16_2.h5',
                                          'manifest.json', 'preview_cubes.h5', 'raw_0.h5', 'raw_1.h5', 'raw_2.h5']
    assert calc.input == [7, 127, 127] and data.n_lab == 2
    assert len(data.train_d) == 2 and len(data.valid_d) == 1
    d, l = data.getbatch(1, grey_augment_channels=cfg['grey_augment_channels'], flip=cfg['flip_data'])
    assert d.shape == (1, 7, 1, 127, 127) and l.shape == (1, 3, 25, 25)
    check_registered_batches(data, calc, 'valid')


@pytest.mark.realdata
def test_isbi_config_loads_same_size_labels_in_zchxy_order(monkeypatch):
    path = shared_data_file('isbi2012_train.h5')
    monkeypatch.setenv('ELEKTRONN_SHARED_DATA', os.path.dirname(path))
    data, calc = cnndata_from_config(read_config('isbi2012_config.py'))
    assert data.train_d[0].shape == (24, 1, 512, 512) and data.valid_d[0].shape == (6, 1, 512, 512)
    assert data.train_l[0].shape == (24, 512, 512)
    d, l = data.getbatch(1)                                    # the 2D network: single sections, stride 8
    assert d.shape == (1, 1, 255, 255) and l.shape == (1, 25, 25)
    check_registered_batches(data, calc, 'train')
    check_registered_batches(data, calc, 'valid')


@pytest.mark.realdata
def test_fib_config_loads_isotropic_data(monkeypatch):
    path = shared_data_file('neuroproof_fib_sample2.h5')
    monkeypatch.setenv('ELEKTRONN_SHARED_DATA', os.path.dirname(path))
    data, calc = cnndata_from_config(read_config('neuroproof_fib_config.py'))
    assert data.train_d[0].shape == (180, 1, 250, 250) and data.valid_d[0].shape == (70, 1, 250, 250)
    assert len(data._permutations) == 6
    check_registered_batches(data, calc, 'valid')


@pytest.mark.slow
def test_synthetic_example_learns_through_elektronn_train(tmp_path):
    """The README's first command: elektronn-train with the synthetic config generates the data on first
    use, writes the debug batch and previews, and the valid error falls well below the all-background
    level. (600 steps instead of 4.5 minutes, so that a busy machine gives the same result.)"""
    import csv
    import subprocess
    import sys
    config = tmp_path / 'neuro_3d_synthetic_config.py'
    config.write_text(open(os.path.join(EXAMPLES, 'neuro_3d_synthetic_config.py')).read()
                      + '\nn_steps = 600\nmax_runtime = 10 ** 6\ninitial_prev_h = 0.0\nprev_save_h = 100.0\n')
    env = dict(os.environ, HOME=str(tmp_path / 'home'), ELEKTRONN_HOME=str(tmp_path / 'home' / '.ELEKTRONN'))
    out = subprocess.run([sys.executable, '-m', 'elektronn.cli.train', str(config)], cwd=str(tmp_path), env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=1200)
    assert out.returncode == 0, out.stdout[-3000:]
    assert 'Generating the synthetic neuro data set' in out.stdout
    run = tmp_path / 'home' / 'CNN_Training' / '3D' / 'neuro_3d_synthetic'
    names = set(os.listdir(run))
    assert {'debugGetCNNBatch.png', 'neuro_3d_synthetic_end.param', 'neuro_3d_synthetic-pred-1-c1-z4-0.0hrs.png',
            'neuro_3d_synthetic-raw-1-z4.png'} <= names
    with open(run / 'neuro_3d_synthetic.history.csv') as f:
        valid = [float(r['valid_error']) for r in csv.DictReader(f)]
    assert valid[0] > 15 and max(valid[-2:]) < 13, valid     # all-background level ~22 %
