"""Nothing lost, whatever happens: the quick variant of ``benchmarks/fault_injection.py``.

A few trials of each kind, through the benchmark's own functions: SIGKILLs of elektronn-train with
--resume (readable files, no step lost beyond a history interval, parameters bit-identical to an
uninterrupted run of the same seed), a double ctrl+c without a terminal (no half-updated parameters),
SIGKILLs of elektronn-predict with --resume (the output equals an uninterrupted run's), a full disk
(earlier files intact, no partial files, one clear error) and bad inputs (one clear error each).
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'benchmarks'))
import fault_injection as fi  # noqa: E402

#: Groups of corrupt-input cases (name prefixes of ``fault_injection.corrupt_cases``).
CORRUPT_GROUPS = ('param_', 'resume_param', 'resume_state', 'predict_', 'cubes_', 'train_cli_', 'data_class_',
                  'config_', 'trainer_')


@pytest.fixture(scope='module')
def work(tmp_path_factory):
    """A work folder with its own HOME (no user config) for the whole module."""
    folder = str(tmp_path_factory.mktemp('faults'))
    home = os.path.join(folder, 'home')
    saved = os.environ.get('HOME')
    os.environ['HOME'] = home
    yield folder, fi.child_env(home)
    if saved is None:
        os.environ.pop('HOME', None)
    else:
        os.environ['HOME'] = saved


def _no_problems(figure):
    return '\n'.join(str(p) for p in figure.get('problems', []))


def test_sigkill_of_training_and_resume_lose_nothing(work):
    folder, env = work
    figure = fi.kill_train(folder, env, trials=3, seed=0, quick=True, log=lambda text: None)
    assert figure['trials'] == 3 and figure['chains'] >= 1
    assert figure['files_unreadable'] == 0, _no_problems(figure)
    assert figure['step_regressions_beyond_interval'] == 0, _no_problems(figure)
    assert figure['resume_failures'] == 0, _no_problems(figure)
    assert figure['last_pair_inconsistent'] == 0, _no_problems(figure)
    assert figure['param_mismatches'] == 0 and figure['history_mismatches'] == 0, _no_problems(figure)


def test_double_ctrl_c_without_a_terminal_saves_whole_steps(work):
    folder, env = work
    figure = fi.signals_train(folder, env, optimizers=('SGD',), kinds=('sigint2',), per_kind=1, seed=0,
                              log=lambda text: None)
    assert figure['trials'] == 1, _no_problems(figure)
    assert figure['half_updated'] == 0 and figure['step_mismatches'] == 0, _no_problems(figure)
    assert figure['files_unreadable'] == 0 and figure['last_pair_inconsistent'] == 0, _no_problems(figure)
    assert figure['resumes_ok'] == 1 and figure['resumed_params_equal'] == 1, _no_problems(figure)


def test_sigkill_of_prediction_and_resume_give_the_same_output(work):
    folder, env = work
    figure = fi.kill_predict(folder, env, trials=2, seed=0, quick=True, log=lambda text: None)
    assert figure['trials'] == 2 and figure['chains'] >= 1
    assert figure['outputs_unreadable'] == 0, _no_problems(figure)
    assert figure['outputs_equal'] == figure['chains'], _no_problems(figure)
    assert figure['resumes_ok'] == figure['resumes'], _no_problems(figure)


@pytest.fixture(scope='module')
def disk_full_figure(work):
    folder, env = work
    return fi.disk_full(folder, env, trials=1, seed=0, log=lambda text: None)


def test_a_full_disk_keeps_earlier_files_and_leaves_no_partial_ones(disk_full_figure):
    figure = disk_full_figure
    assert figure['trials'] == 1, _no_problems(figure)
    assert figure['previous_files_intact'] == 1, _no_problems(figure)
    assert figure['partial_files_left'] == 0, _no_problems(figure)
    assert figure['resumes_ok'] == 1, _no_problems(figure)


def test_a_full_disk_gives_one_clear_error(disk_full_figure):
    assert disk_full_figure['clear_errors'] == disk_full_figure['trials'], _no_problems(disk_full_figure)


@pytest.fixture(scope='module')
def corrupt_results(work):
    folder, _env = work
    return fi.corrupt_inputs(folder, seed=0, log=lambda text: None)


@pytest.mark.parametrize('group', CORRUPT_GROUPS)
def test_bad_inputs_give_one_clear_error(corrupt_results, group):
    cases = [c for c in corrupt_results['cases'] + corrupt_results['failures'] if c['case'].startswith(group)]
    failures = [f for f in corrupt_results['failures'] if f['case'].startswith(group)]
    assert cases, 'no case of group %r' % group
    assert not failures, '\n\n'.join('%(case)s (%(input)s): %(type)s: %(message)s' % f for f in failures)


# ------------------------------------------------------------------------------------------------------
# The fixes the suite forced (each of these failed before its fix)
# ------------------------------------------------------------------------------------------------------
def _params_file(tmp_path):
    import numpy as np
    from elektronn.net import params
    path = str(tmp_path / 'p.param')
    rng = np.random.default_rng(0)
    params.save_parameter_entries(path, [dict(type='ConvLayer2d', W=rng.normal(size=(4, 1, 3, 3)), b=np.zeros(4)),
                                         dict(type='PerceptronLayer', W=rng.normal(size=(36, 2)), b=np.ones(2))],
                                  [[2, 2]])
    return path


def test_a_truncated_parameter_file_gives_a_parameter_file_error_naming_it(tmp_path):
    from elektronn.net import params
    path = _params_file(tmp_path)
    fi._truncate(path, 0.5)
    with pytest.raises(params.ParameterFileError, match=r"p\.param' cannot be read .* damaged or incomplete"):
        params.read_parameter_file(path)
    fi._truncate(path, 0)
    with pytest.raises(ValueError, match=r"p\.param' is not an ELEKTRONN parameter file .*it is empty"):
        params.read_parameter_file(path)


def test_a_flipped_bit_in_the_weights_is_detected_by_the_checksum(tmp_path):
    import h5py
    from elektronn.net import params
    path = _params_file(tmp_path)
    layers, pools = params.read_parameter_file(path)
    assert pools == [[2, 2]] and layers[1]['W'].shape == (36, 2)
    fi._flip(path, fi._data_offset(path), 2)
    with pytest.raises(params.ParameterFileError, match=r"p\.param' is damaged: its parameters do not match"):
        params.read_parameter_file(path)
    # a file without the checksum (written before it existed) is read as it is
    with h5py.File(path, 'r+') as f:
        del f.attrs['content_sha256']
    assert len(params.read_parameter_file(path)[0]) == 2


def test_a_damaged_part_of_a_parameter_file_is_named(tmp_path):
    import h5py
    from elektronn.net import params
    path = _params_file(tmp_path)
    with h5py.File(path, 'r+') as f:
        f['layer001'].attrs['param_names'] = '["W", "b", "gone"]'
    with pytest.raises(params.ParameterFileError, match=r"p\.param' is a damaged parameter file: KeyError"):
        params.read_parameter_file(path)


def _cube_files(tmp_path, raw, lab):
    import h5py
    with h5py.File(tmp_path / 'r.h5', 'w') as f:
        f['raw'] = raw
    with h5py.File(tmp_path / 'l.h5', 'w') as f:
        f['lab'] = lab
    return [('r.h5', 'raw')], [('l.h5', 'lab')]


def _cnndata(**kw):
    from elektronn.training.CNNData import CNNData
    kw.setdefault('n_lab', 2)
    return CNNData(patch_size=(3, 9, 9), stride=1, offset=(1, 2, 2), n_dim=3, seed=0, **kw)


def test_nan_or_inf_in_raw_cubes_is_refused_naming_the_file(tmp_path, capsys):
    import numpy as np
    raw = np.random.default_rng(0).random((20, 20, 8)).astype(np.float32)
    raw[3, 4, 5] = np.nan
    raw[1, 1, 1] = np.inf
    d, l = _cube_files(tmp_path, raw, np.zeros((16, 16, 6), np.int16))
    with pytest.raises(ValueError, match=r'r\.h5\[raw\]: the raw data hold 2 NaN/Inf value\(s\) \(the first at index '
                                         r'\(1, 1, 1\)\)'):
        _cnndata().addDataFromFile(str(tmp_path), str(tmp_path), d, l)
    with pytest.raises(ValueError, match='directly_added_data_0: the raw data hold 2 NaN/Inf'):
        _cnndata().addDataFromNdarray(raw, np.zeros((16, 16, 6), np.int16))
    data = _cnndata()  # a cube read from its file: every patch is checked when it is cut
    data.max_in_memory_bytes = 100
    data.addDataFromFile(str(tmp_path), str(tmp_path), d, l)
    with pytest.raises(ValueError, match=r'r\.h5\[raw\]: the raw data hold \d+ NaN/Inf value\(s\) in the patch'):
        for _ in range(200):
            data.getbatch(4)


def test_nan_regression_targets_are_refused(tmp_path):
    import numpy as np
    lab = np.zeros((16, 16, 6), np.float32)
    lab[0, 0, 0] = np.nan
    d, l = _cube_files(tmp_path, np.zeros((20, 20, 8), np.uint8), lab)
    with pytest.raises(ValueError, match=r'l\.h5\[lab\]: the regression targets hold 1 NaN/Inf'):
        _cnndata(float_label=True, n_lab=None).addDataFromFile(str(tmp_path), str(tmp_path), d, l)


def test_a_label_cube_without_any_class_label_is_refused(tmp_path):
    import h5py
    import numpy as np
    d, l = _cube_files(tmp_path, np.zeros((20, 20, 8), np.uint8), np.full((16, 16, 6), -3, np.int16))
    with pytest.raises(ValueError, match=r'l\.h5\[lab\]: every label is negative \("ignore"\), so the cube has '
                                         r'nothing to train'):
        _cnndata().addDataFromFile(str(tmp_path), str(tmp_path), d, l)
    accepting = _cnndata()
    accepting.unlabelled_cubes = True  # e.g. for label propagation
    accepting.addDataFromFile(str(tmp_path), str(tmp_path), d, l)
    with h5py.File(tmp_path / 'l.h5', 'a') as f:  # lazy labels: a class flagged "not present" trains
        f['info'] = np.array([[0, 0], [1, 0]], np.int16)
    _cnndata().addDataFromFile(str(tmp_path), str(tmp_path), d, l)


def test_a_batch_larger_than_the_memory_is_refused_naming_batch_size(tmp_path):
    import numpy as np
    d, l = _cube_files(tmp_path, np.zeros((20, 20, 8), np.uint8), np.ones((16, 16, 6), np.int16))
    data = _cnndata()
    data.addDataFromFile(str(tmp_path), str(tmp_path), d, l)
    with pytest.raises(ValueError, match=r'batch_size=1000000000000: a batch of .* GB, more than the .* GB of memory'):
        data.getbatch(10 ** 12)


def test_data_classes_refuse_nan_data_and_labels_outside_n_lab():
    import numpy as np
    from elektronn.training.traindata import Data
    d = np.zeros((10, 3), np.float32)
    lab = np.array([0, 1] * 5, np.int16)
    bad = d.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match=r'Data: train_d: the data hold 1 NaN/Inf value\(s\) \(the first at index '
                                         r'\(2, 1\)\)'):
        Data(train_d=bad, train_l=lab)
    with pytest.raises(ValueError, match=r'Data: test_d: the data hold 1 NaN/Inf'):
        Data(train_d=d, train_l=lab, test_d=bad, test_l=lab)
    with pytest.raises(ValueError, match=r'Data: train_l holds label 5, outside 0\.\.1 for n_lab=2'):
        Data(train_d=d, train_l=np.where(lab == 1, 5, 0).astype(np.int16), n_lab=2)
    with pytest.raises(ValueError, match=r'valid_l\[1\] holds label 2, outside 0\.\.1 .*detected'):
        Data(train_d=d, train_l=lab, valid_d=[d[0], d[1]], valid_l=[np.array([0]), np.array([2])])
    Data(train_d=d, train_l=np.where(lab == 1, -1, 0).astype(np.int16), n_lab=2)  # negative: ignored, fine
