"""Prediction from a training run: create_predncnn, elektronn-predict (with a kill and --resume) and
elektronn-profile."""
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest

from elektronn.cli import predict as predict_cli
from elektronn.net.convnet import MixedConvNN
from elektronn.cli import profile as profile_cli
from elektronn.training.config import Config
from elektronn.training.predictor import create_predncnn, locate_run, newest_params, profile_shapes

from pipeline_helpers import PREDICTION_RUN, make_prediction_run, quiet, write_config

@pytest.fixture(scope='module')
def run(tmp_path_factory):
    return make_prediction_run(tmp_path_factory.mktemp('run'))


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))


def params_of(cnn):
    return [a for layer in cnn.layers for a in layer.param_arrays()]


# -- create_predncnn -------------------------------------------------------------------------------
def test_create_predncnn_round_trip(run):
    marker = os.path.join(run['save_dir'], 'keep.txt')
    open(marker, 'w').write('x')
    files = sorted(os.listdir(run['save_dir']))
    cwd = os.getcwd()
    for source in (run['config'], run['save_dir'], os.path.join(run['save_dir'], 'Backup', 'config.py')):
        cnn = quiet(create_predncnn, source, 1, 2, gpu=False)
        for a, b in zip(params_of(cnn), params_of(run['cnn'])):
            np.testing.assert_array_equal(a, b)
        assert tuple(cnn.patch_size) == (5, 17, 17) and cnn.output_strides == [1, 2, 2]
    assert sorted(os.listdir(run['save_dir'])) == files and os.getcwd() == cwd  # nothing changed or deleted
    raw = run['raw'][None, :30, :30, :8]
    trained = run['cnn'].predictDense(raw, show_progress=False)
    np.testing.assert_allclose(cnn.predictDense(raw, show_progress=False), trained, atol=1e-6)

    mfp = quiet(create_predncnn, run['save_dir'], 1, 2, gpu=False, override_MFP_to_active=True,
                imposed_input_size=(9, 28, 28))
    assert tuple(mfp.patch_size) == (9, 28, 28) and mfp.output_strides == [1, 1, 1] and mfp.batch_size == 1
    np.testing.assert_allclose(mfp.predictDense(raw, show_progress=False), trained, atol=1e-5)


def test_create_predncnn_param_file_and_errors(run, tmp_path):
    other = str(tmp_path / 'other.param')
    quiet(run['cnn'].saveParameters, other)
    cnn = quiet(create_predncnn, run['config'], 1, 2, gpu=False, param_file=other)
    np.testing.assert_array_equal(params_of(cnn)[0], params_of(run['cnn'])[0])
    with pytest.raises(ValueError, match=r'does not fit the network of .*cfg.py built with n_ch=2, n_lab=2: '):
        quiet(create_predncnn, run['config'], 2, 2, gpu=False)
    with pytest.raises(FileNotFoundError, match=r'parameter file .*none.param does not exist'):
        quiet(create_predncnn, run['config'], 1, 2, gpu=False, param_file=str(tmp_path / 'none.param'))
    empty = write_config(tmp_path, base=PREDICTION_RUN, save_path=str(tmp_path / 'empty') + '/', data_path='/nowhere/')
    with pytest.raises(FileNotFoundError, match=r'the save directory .*empty/ does not exist; has the run saved '
                                                r'parameters yet\? \(give param_file otherwise\)'):
        quiet(create_predncnn, empty, 1, 2, gpu=False)  # the training data need not exist, the parameters must
    with pytest.raises(FileNotFoundError, match='is not the save directory of a training run'):
        locate_run(str(tmp_path))


def test_imposed_input_size_is_used_exactly_with_mfp_everywhere(run, capsys):
    c = Config(run['config'], use_existing_dir=True, override_MFP_to_active=True, imposed_input_size=[9, 65, 65],
               init_device=False, check_files=False)
    assert c.patch_size == (9, 65, 65) and c.dimensions.input == [9, 65, 65] and c.MFP == [1, 0, 0]
    out = capsys.readouterr().out
    assert 'Info: input (65) changed to (64) (size not possible)' in out  # the original's MFP rule ...
    assert 'Info: imposed input [9, 65, 65] used as given' in out  # ... which the dilated MFP does not need
    cnn = quiet(create_predncnn, run['config'], 1, 2, gpu=False, override_MFP_to_active=True,
                imposed_input_size=(9, 65, 65))
    assert cnn.output_shape == (1, 2, 7, 55, 55)
    snapped = Config(run['config'], use_existing_dir=True, imposed_input_size=[9, 64, 64], init_device=False,
                     check_files=False)
    assert snapped.patch_size == (9, 63, 63)  # without MFP the pools must tile the maps
    rule = Config(run['config'], use_existing_dir=True, override_MFP_to_active=True, imposed_input_size=[9, 8, 64],
                  init_device=False, check_files=False)
    assert rule.patch_size[1] == 12  # smaller than the field of view: the smallest size of the MFP rule


# -- the trained parameters: the newest complete file ---------------------------------------------
def copy_of_run(run, tmp_path, keep, ages=None):
    """A copy of the run's save directory with only the parameter files ``keep`` (``tiny-LAST.param``,
    ``tiny_end.param`` or a snapshot name, copied from ``tiny_end.param`` when the run has no such file);
    ``ages``: ``{name: seconds before now}`` for their modification times."""
    folder = tmp_path / 'copy'
    shutil.copytree(run['save_dir'], folder, ignore=shutil.ignore_patterns('*.param', '*.state.h5'))
    now = time.time()
    for name in keep:
        source = os.path.join(run['save_dir'], name)
        shutil.copy(source if os.path.exists(source) else os.path.join(run['save_dir'], 'tiny_end.param'),
                    folder / name)
        age = (ages or {}).get(name, 0)
        os.utime(folder / name, (now - age, now - age))
    return str(folder) + '/'


def test_the_newest_parameter_file_is_used(run, tmp_path, capsys):
    # a run that finished: _end is newer than -LAST (and the snapshots)
    folder = copy_of_run(run, tmp_path, ['tiny-LAST.param', 'tiny_end.param', 'tiny-1.0h.param', 'tiny-2.0h.param'],
                         ages={'tiny-LAST.param': 60, 'tiny-1.0h.param': 7200, 'tiny-2.0h.param': 3600})
    assert newest_params(folder, 'tiny') == folder + 'tiny_end.param'
    assert 'Using parameters %stiny_end.param (newest of: tiny_end.param, tiny-LAST.param, tiny-2.0h.param, ' \
           'tiny-1.0h.param)' % folder in capsys.readouterr().out
    # a run resumed after it finished: -LAST is newer
    os.utime(os.path.join(folder, 'tiny_end.param'), (time.time() - 120, time.time() - 120))
    assert newest_params(folder, 'tiny') == folder + 'tiny-LAST.param'
    # the same time: _end, then -LAST
    t = time.time()
    for name in ('tiny_end.param', 'tiny-LAST.param'):
        os.utime(os.path.join(folder, name), (t, t))
    assert newest_params(folder, 'tiny') == folder + 'tiny_end.param'
    with pytest.raises(FileNotFoundError, match=r'no parameter file in the save directory .*copy/ \(looked for '
                                                r'other_end.param, other-LAST.param and other-<hours>h.param\)'):
        newest_params(folder, 'other')


def test_without_last_file_the_end_file_is_used(run, tmp_path, capsys):
    # history_freq = 0: no -LAST.param, only the snapshots and _end
    folder = copy_of_run(run, tmp_path, ['tiny_end.param', 'tiny-1.0h.param'], ages={'tiny-1.0h.param': 600})
    cnn = quiet(create_predncnn, folder, 1, 2, gpu=False)
    for a, b in zip(params_of(cnn), params_of(run['cnn'])):
        np.testing.assert_array_equal(a, b)
    out = tmp_path / 'out.h5'
    assert predict_cli.main([folder, '%s:raw' % (run['folder'] / 'raw.h5'), str(out), '--block-shape', '40,40,12']) == 0
    assert 'Using parameters %stiny_end.param (newest of: tiny_end.param, tiny-1.0h.param)' % folder \
        in capsys.readouterr().out
    with h5py.File(out, 'r') as f:
        assert json.loads(f['prob'].attrs['elektronn_prediction'])['param_file'] == folder + 'tiny_end.param'


def test_an_incomplete_newest_file_is_skipped_with_a_warning(run, tmp_path, capsys):
    folder = copy_of_run(run, tmp_path, ['tiny_end.param', 'tiny-LAST.param'], ages={'tiny-LAST.param': 60})
    end = os.path.join(folder, 'tiny_end.param')
    with open(end, 'r+b') as f:  # truncated (e.g. a full disk)
        f.truncate(os.path.getsize(end) // 2)
    with pytest.warns(UserWarning, match='skipping %s: not a complete parameter file' % re.escape(end)):
        assert newest_params(folder, 'tiny') == folder + 'tiny-LAST.param'
    out = capsys.readouterr().out
    assert 'Using parameters %stiny-LAST.param (newest of: tiny_end.param, tiny-LAST.param)' % folder in out
    # none complete: the error names them
    os.remove(os.path.join(folder, 'tiny-LAST.param'))
    with pytest.warns(UserWarning, match='skipping'), \
            pytest.raises(FileNotFoundError, match=r'no complete parameter file in the save directory .*copy/ \(looked '
                                                   r'for tiny_end.param, tiny-LAST.param and tiny-<hours>h.param; '
                                                   r'unreadable: tiny_end.param \(.*\)\); has the run saved '
                                                   r'parameters yet\?'):
        quiet(newest_params, folder, 'tiny')


def test_predict_without_parameters_names_what_it_looked_for(run, tmp_path, capsys):
    folder = copy_of_run(run, tmp_path, [])
    assert predict_cli.main([folder, '%s:raw' % (run['folder'] / 'raw.h5'), str(tmp_path / 'out.h5')]) == 2
    err = capsys.readouterr().err
    assert err.startswith('elektronn-predict: error: no parameter file in the save directory %s (looked for '
                          'tiny_end.param, tiny-LAST.param and tiny-<hours>h.param); has the run saved parameters '
                          'yet? (give --params otherwise)' % folder)
    # --params still overrides
    assert predict_cli.main([folder, '%s:raw' % (run['folder'] / 'raw.h5'), str(tmp_path / 'out.h5'), '--params',
                             os.path.join(run['save_dir'], 'tiny-LAST.param')]) == 0


def test_predict_prints_the_tile_once_and_nothing_about_momenta(run, tmp_path, capsys):
    folder = copy_of_run(run, tmp_path, ['tiny_end.param'])
    backup = os.path.join(folder, 'Backup', 'config.py')
    text = open(backup).read()
    with open(backup, 'w') as f:  # valid for training; the MFP rule of prediction changes 19 to 18
        f.write(text.replace('desired_input = [18, 18, 5]', 'desired_input = [19, 19, 5]'))
    assert predict_cli.main([folder, '%s:raw' % (run['folder'] / 'raw.h5'), str(tmp_path / 'out.h5')]) == 0
    out = capsys.readouterr().out
    assert out.count('Selected patch-size for CNN input: Input: [5, 18, 18]') == 1
    assert 'changed to' not in out and 'momenta' not in out
    cnn = create_predncnn(folder, 1, 2, gpu=False, override_MFP_to_active=True)
    out = capsys.readouterr().out
    assert 'changed to' not in out and 'momenta' not in out
    # an input size the caller imposes is still noted; other loads of parameters still reset the momenta
    create_predncnn(folder, 1, 2, gpu=False, imposed_input_size=(5, 20, 18))
    assert 'Info: input (20) changed to (19) (size not possible)' in capsys.readouterr().out
    cnn.loadParameters(os.path.join(folder, 'tiny_end.param'))
    assert 'CNN: resetting momenta' in capsys.readouterr().out


# -- elektronn-predict -----------------------------------------------------------------------------
def predict(*args):
    return quiet(predict_cli.main, [str(a) for a in args])


def test_cli_predict_equals_predict_dense(run, tmp_path, capsys):
    out = tmp_path / 'out.h5'
    assert predict(run['save_dir'], '%s:raw' % (run['folder'] / 'raw.h5'), out, '--block-shape', '13,9,4',
                   '--pad-raw', '--uint8') == 0
    with h5py.File(out, 'r') as f:
        got, info = f['prob'][...], json.loads(f['prob'].attrs['elektronn_prediction'])
        assert f['prob_done'][...].all()
    expected = run['cnn'].predictDense(run['raw'][None], pad_raw=True, as_uint8=True, show_progress=False)
    assert got.shape == expected.shape == (2, 40, 40, 12) and got.dtype == np.uint8
    assert np.abs(got.astype(int) - expected).max() <= 1  # truncation of floats equal to ~1e-7
    assert info['param_file'] == os.path.join(run['save_dir'], 'tiny_end.param')  # the newest
    assert info['origin_zxy'] == [0, 0, 0] and info['block_zxy'] == [4, 13, 9]
    # the default budget gives one block here; float32 output without padding
    assert predict(run['config'], '%s:raw' % (run['folder'] / 'raw.h5'), '%s:p2' % out) == 0
    with h5py.File(out, 'r') as f:
        np.testing.assert_allclose(f['p2'][...], run['cnn'].predictDense(run['raw'][None], show_progress=False),
                                   atol=1e-6)
        assert f['p2_done'].shape == (1,)


def test_cli_errors(run, tmp_path, capsys):
    raw = str(run['folder'] / 'raw.h5')
    out = str(tmp_path / 'out.h5')
    with h5py.File(tmp_path / 'in.h5', 'w') as f:
        f['two'] = np.zeros((2, 30, 30, 8), np.uint8)
        f['small'] = np.zeros((30, 10, 8), np.uint8)
    other = quiet(MixedConvNN, (5, 20, 20), input_depth=1)
    quiet(other.addConvLayer, 3, (3, 5, 5), pool_shape=1, activation_func='linear', is_last_layer=True)
    quiet(other.saveParameters, str(tmp_path / 'other.param'))
    cases = [
        ((run['save_dir'], str(tmp_path / 'no.h5') + ':raw', out), 'input file .*no.h5 does not exist'),
        ((run['save_dir'], raw + ':nokey', out), r"raw.h5 has no dataset 'nokey' \(it has: raw\)"),
        ((run['save_dir'], raw, out), r"input '.*raw.h5': give the HDF5 file and the dataset as file.h5:key"),
        ((run['save_dir'], '%s:two' % (tmp_path / 'in.h5'), out),
         r'in.h5:two has 2 channel\(s\) \(layout xyz\) but the network of .*tiny_end.param was trained on 1'),
        ((run['save_dir'], '%s:small' % (tmp_path / 'in.h5'), out),
         r'in.h5:small has the spatial shape \(30, 10, 8\) \(x, y, z\) but the field of view of the network is '
         r'\(11, 11, 3\)'),
        ((str(tmp_path), raw + ':raw', out), 'is not the save directory of a training run'),
        ((run['config'], raw + ':raw', out, '--params', str(tmp_path / 'x.param')), r'x.param does not exist'),
        ((run['config'], raw + ':raw', out, '--params', str(tmp_path / 'other.param')),
         r'other.param does not fit the network of .*cfg.py built with n_ch=1, n_lab=3: .* holds parameters for 1 '
         r'layers, the network has 4'),
    ]
    for args, message in cases:
        assert predict(*args) == 2
        err = capsys.readouterr().err
        assert err.startswith('elektronn-predict: error: ') and len(err.splitlines()) == 1
        assert re.search(message, err), (message, err)
    assert not os.path.exists(out)
    assert predict(run['save_dir'], raw + ':raw', out) == 0
    assert predict(run['save_dir'], raw + ':raw', out) == 2
    assert 'out.h5:prob already exists; use --resume' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        predict(run['save_dir'], raw + ':raw', out, '--resume', '--overwrite')
    with pytest.raises(SystemExit):
        predict(run['save_dir'], raw + ':raw', out, '--block-shape', '4,0,2')


#: Runs elektronn-predict and SIGKILLs the process when the network is asked for block KILL_AT + 1.
_KILLER = textwrap.dedent('''
    import os, signal, sys
    from elektronn.net.convnet import MixedConvNN
    from elektronn.cli import predict
    calls, original = [0], MixedConvNN.class_probabilities
    def class_probabilities(self, data):
        calls[0] += 1
        if calls[0] > int(os.environ['KILL_AT']):
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, data)
    MixedConvNN.class_probabilities = class_probabilities
    sys.exit(predict.main(sys.argv[1:]))
''')


def test_cli_resumes_after_being_killed(run, tmp_path, capsys):
    out = str(tmp_path / 'out.h5')
    args = [run['save_dir'], '%s:raw' % (run['folder'] / 'raw.h5'), out, '--block-shape', '10,10,4']
    env = dict(os.environ, KILL_AT='5', OMP_NUM_THREADS='1', PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run([sys.executable, '-c', _KILLER] + args, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == -9, proc.stderr
    assert 'in 27 blocks of (10, 10, 4) (x, y, z)' in proc.stdout
    with h5py.File(out, 'r+') as f:  # the killed run left a readable file with 5 finished blocks
        done = f['prob_done'][...]
        assert done.tolist() == [1] * 5 + [0] * 22
        f['prob'][:, :10, :10, :4] = 7.0  # block 0 is done: resuming must not predict it again
    assert predict(*args) == 2  # it exists: no silent overwrite
    assert predict(*args, '--resume') == 0
    with h5py.File(out, 'r') as f:
        got = f['prob'][...]
        assert f['prob_done'][...].all()
    assert np.all(got[:, :10, :10, :4] == 7.0)
    expected = run['cnn'].predictDense(run['raw'][None], show_progress=False)
    got[:, :10, :10, :4] = expected[:, :10, :10, :4]
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_cli_resume_reports_the_blocks_it_skips(run, tmp_path, capsys):
    out = str(tmp_path / 'out.h5')
    args = [run['save_dir'], '%s:raw' % (run['folder'] / 'raw.h5'), out, '--block-shape', '15,10,5']
    assert predict_cli.main(args) == 0
    with h5py.File(out, 'r+') as f:
        f['prob_done'][[0, 3]] = 0
    capsys.readouterr()
    assert predict_cli.main(args + ['--resume', '--memory-gb', '3']) == 0
    text = capsys.readouterr().out
    assert 'in 12 blocks of (15, 10, 5) (x, y, z); 10 already done' in text
    assert 'Predicted 2 blocks' in text and '100.0% [' in text and 'ETA' in text and 'voxel/s' in text


# -- elektronn-profile -----------------------------------------------------------------------------
def test_profile_writes_the_speed_csv(run, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert profile_cli.main([run['config'], '--gpu=false', '--xy-sizes', '19,27', '--z-sizes', '5,7',
                             '--repeats', '1']) == 0
    lines = open(tmp_path / 'Speed_tiny.csv').read().splitlines()
    assert lines[0] == 'z-shape\txy-shape\tpixel\tSpeed [MPix/s]' and len(lines) == 5
    rows = [line.split('\t') for line in lines[1:]]
    assert [(int(z), int(xy)) for z, xy, _, _ in rows] == [(5, 19), (7, 19), (5, 27), (7, 27)]
    assert int(rows[0][2]) == 3 * 5 * 5  # output voxels of (5, 19, 19): z 5 - 2, xy (19 - 3) // 2 - 2 - 1
    assert all(float(r[3]) > 0 for r in rows)
    out = capsys.readouterr().out
    assert '[4/4] z=7 xy=27:' in out and 'ETA' in out and 'Fastest: ' in out
    assert profile_cli.main([run['config'], '--gpu=false', '--mfp', '--xy-sizes', '21', '--z-sizes', '3',
                             '--csv', 'mfp.csv']) == 0
    mfp_row = open(tmp_path / 'mfp.csv').read().splitlines()[1].split('\t')
    assert mfp_row[:3] == ['3', '21', str(1 * 11 * 11)]  # dense: every window
    assert len(open(tmp_path / 'Speed_tiny.csv').read().splitlines()) == 5  # appended only to its own file


def test_profile_shapes_follow_the_original_sweep(run):
    c = quiet(Config, run['config'], use_existing_dir=True, init_device=False, check_files=False)
    shapes = profile_shapes(c.dimensions, 3)
    xy = sorted({s[1] for s in shapes})
    valid_xy = c.dimensions.valid_inputs[1]
    assert xy == valid_xy[4:50]
    for size in (xy[0], xy[-1]):
        zs = [z for z, s in shapes if s == size]
        base = next(z for z in c.dimensions.valid_inputs[0] if z > int(size / 8.5))
        assert zs == [base + d for d in (-16, -12, -8, -4, 0, 4, 8, 12, 16, 20, 24) if base + d >= 3]


def test_cli_ctrl_c_keeps_the_finished_blocks(run, tmp_path, monkeypatch, capsys):
    calls, original = [0], MixedConvNN.class_probabilities

    def interrupted(self, data):
        calls[0] += 1
        if calls[0] == 3:
            raise KeyboardInterrupt
        return original(self, data)

    monkeypatch.setattr(MixedConvNN, 'class_probabilities', interrupted)
    out = str(tmp_path / 'out.h5')
    assert predict_cli.main([run['save_dir'], '%s:raw' % (run['folder'] / 'raw.h5'), out,
                             '--block-shape', '15,10,5']) == 130
    captured = capsys.readouterr()
    assert 'Interrupted: 2 of 12 blocks done; predicted 2 blocks (1500 voxels)' in captured.out
    assert 'run the same command with --resume' in captured.err
    with h5py.File(out, 'r') as f:
        assert f['prob_done'][...].tolist() == [1, 1] + [0] * 10
