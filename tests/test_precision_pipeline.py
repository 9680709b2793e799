"""Reduced precision in the pipeline: the config key mixed_precision, resuming, the prediction tools."""
import h5py
import numpy as np
import pytest
import torch

from elektronn.training.config import Config, ConfigError
from elektronn.training.predictor import create_predncnn, predict_run

from pipeline_helpers import make_prediction_run, make_trainer, quiet, resumed_trainer, write_config

NATIVE = 'avx512_bf16 avx512_fp16'  # CPU flags that make bf16 and fp16 count as native (fp16 is emulated here)


@pytest.fixture
def native_cpu(monkeypatch):
    monkeypatch.setenv('ELEKTRONN_CPU_FLAGS', NATIVE)


def _params(t):
    return [p.detach().clone() for p in t.cnn.params]


@pytest.mark.parametrize('precision', ['bf16', 'fp16'])
def test_a_mixed_precision_run_trains_in_it_and_resumes_exactly(tmp_path, native_cpu, one_thread_home, precision):
    whole = quiet(make_trainer, tmp_path / 'a', seed=3, n_steps=12, history_freq=[6], mixed_precision=precision,
                  optimizer='Adam')
    assert whole.cnn.precision == precision and (whole.cnn.loss_scaler is not None) == (precision == 'fp16')
    quiet(whole.run)
    assert {p.dtype for p in whole.cnn.params} == {torch.float32}
    first = quiet(make_trainer, tmp_path / 'b', seed=3, n_steps=6, history_freq=[6], mixed_precision=precision,
                  optimizer='Adam')
    quiet(first.run)
    if precision == 'fp16':
        first.cnn.loss_scaler.scale = 1024.0  # a state that must come back from the resume state
        first._saveLast()
    second = quiet(resumed_trainer, first.config.config_file, 12)
    assert second.cnn.precision == precision
    if precision == 'fp16':
        assert second.cnn.loss_scaler.scale == 1024.0
        return  # the scale was changed by hand: the rest of the run differs on purpose
    quiet(second.run)
    for a, b in zip(_params(second), _params(whole)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with h5py.File(str(tmp_path / 'a' / 'run' / 'blob_end.param'), 'r') as f:
        dtypes = set()
        f.visititems(lambda name, obj: dtypes.add(obj.dtype) if isinstance(obj, h5py.Dataset) and
                     obj.dtype.kind == 'f' else None)
    assert dtypes == {np.dtype(np.float32)}  # parameter files stay float32


def test_mixed_precision_falls_back_to_float32_with_a_warning(tmp_path, one_thread_home, monkeypatch):
    monkeypatch.setenv('ELEKTRONN_CPU_FLAGS', 'none')
    with pytest.warns(UserWarning, match=r"setPrecision='bf16': cpu has no native bf16 arithmetic \(it needs CPU "
                                         r"flags avx512_bf16 or amx_bf16\)"):
        t = quiet(make_trainer, tmp_path, mixed_precision='bf16', n_steps=2)
    assert t.cnn.precision == 'fp32'


@pytest.mark.parametrize('flags, used', [('none', 'fp32'), ('avx512_bf16', 'bf16')])
def test_mixed_precision_auto_is_bf16_where_native_else_float32_silently(tmp_path, one_thread_home, monkeypatch,
                                                                         flags, used):
    import warnings
    monkeypatch.setenv('ELEKTRONN_CPU_FLAGS', flags)
    with warnings.catch_warnings():
        warnings.simplefilter('error')      # no fall-back warning: float32 is what 'auto' asks for there
        t = quiet(make_trainer, tmp_path, mixed_precision='auto', n_steps=2)
    assert t.cnn.precision == used


@pytest.mark.parametrize('bad', ['bfloat', True, 16])
def test_a_bad_mixed_precision_is_a_config_error(tmp_path, bad):
    with pytest.raises(ConfigError, match=r"parameter 'mixed_precision' must be False \(float32\), 'bf16', 'fp16' or 'auto', "
                                          r"got %s" % repr(bad)):
        Config(write_config(tmp_path, mixed_precision=bad), init_device=False)


@pytest.fixture(scope='module')
def prediction_run(tmp_path_factory):
    return make_prediction_run(tmp_path_factory.mktemp('run'))


def test_the_prediction_tools_take_bf16_where_it_is_native_and_say_so(prediction_run, native_cpu, capsys):
    run = prediction_run
    auto = create_predncnn(run['config'], 1, 2, override_MFP_to_active=True, imposed_input_size=(12, 40, 40))
    assert auto.precision == 'bf16' and 'Computing in bf16' in capsys.readouterr().out
    exact = create_predncnn(run['config'], 1, 2, override_MFP_to_active=True, imposed_input_size=(12, 40, 40),
                            precision='fp32')
    assert exact.precision == 'fp32' and 'Computing in float32' in capsys.readouterr().out
    p_bf16, p_fp32 = auto.predictDense(run['raw'][None]), exact.predictDense(run['raw'][None])
    assert np.abs(p_bf16 - p_fp32).max() < 2e-2 and not np.array_equal(p_bf16, p_fp32)


def test_elektronn_predict_records_its_precision(prediction_run, native_cpu, tmp_path):
    run = prediction_run
    raw = '%s:raw' % (run['folder'] / 'raw.h5')
    out = {}
    for precision in ('fp32', 'bf16'):
        path = tmp_path / ('%s.h5' % precision)
        quiet(predict_run, run['save_dir'], raw, '%s:prob' % path, precision=precision, show_progress=False)
        with h5py.File(path, 'r') as f:
            out[precision] = f['prob'][()]
            assert precision in str(dict(f['prob'].attrs))
    assert np.abs(out['bf16'] - out['fp32']).max() < 2e-2


def test_elektronn_predict_refuses_a_bad_precision():
    from elektronn.cli import predict
    with pytest.raises(SystemExit):
        predict._parser().parse_args(['run', 'in.h5:raw', 'out.h5', '--precision', 'int8'])
