"""Property-based tests of the config validator: a wrong type, a negative or an absurd size of a numeric, shape
or list parameter of ``MASTER_PARAMS`` makes ``Config`` raise ONE ``ConfigError`` naming the parameter -- never
another exception, never acceptance.

Every example writes a small valid config (a 2D img-scalar CNN on a data class) with one parameter replaced and
reads it as prediction and ``--resume`` do (``use_existing_dir=True, check_files=False``). Deterministic
(``derandomize=True``) and fast (at most 50 examples per test).
"""
import contextlib
import io
import math
import os
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from elektronn.net.netutils import MIN_SEARCH_BOUND
from elektronn.training.config import Config, ConfigError

from pipeline_helpers import SYNTHETIC

SETTINGS = settings(max_examples=50, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

#: A valid config: every example replaces one of its values.
BASE = dict(save_name='prop', data_class_name=(SYNTHETIC, 'BlobData'), data_load_kwargs={}, mode='img-scalar',
            n_dim=2, desired_input=12, filters=[3], pool=[2], nof_filters=[4], MLP_layers=[8], batch_size=10,
            monitor_batch_size=50, n_steps=60, max_runtime=600, history_freq=[20], n_lab=2,
            SGD_params=dict(LR=0.05, momentum=0.9), plot_on=False)


@pytest.fixture(scope='module')
def folder():
    """A folder for the config files, and an empty HOME (no user config)."""
    with tempfile.TemporaryDirectory(prefix='elektronn-config-props-') as tmp:
        saved = os.environ.get('HOME')
        os.environ['HOME'] = os.path.join(tmp, 'home')
        try:
            yield tmp
        finally:
            if saved is None:
                os.environ.pop('HOME', None)
            else:
                os.environ['HOME'] = saved


def literal(value):
    """Python source for ``value`` (NaN and infinities included)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "float('%s')" % value
    if isinstance(value, list):
        return '[%s]' % ', '.join(literal(v) for v in value)
    if isinstance(value, tuple):
        return '(%s)' % ''.join(literal(v) + ', ' for v in value)
    if isinstance(value, dict):
        return '{%s}' % ', '.join('%s: %s' % (literal(k), literal(v)) for k, v in value.items())
    return repr(value)


def config_error(folder, **values):
    """The ``ConfigError`` message of the base config with ``values``; fails on acceptance or another exception."""
    settings_ = dict(BASE, save_path=os.path.join(folder, 'run', ''))
    settings_.update(values)
    path = os.path.join(folder, 'cfg.py')
    with open(path, 'w') as f:
        for key, value in settings_.items():
            f.write('%s = %s\n' % (key, literal(value)))
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            Config(path, init_device=False, use_existing_dir=True, check_files=False)
    except ConfigError as e:
        return str(e)
    except Exception as e:  # noqa: BLE001 -- any other type is the finding
        pytest.fail('%s: %s raised instead of ConfigError: %s' % (values, type(e).__name__, e))
    pytest.fail('%s was accepted' % (values,))


def assert_names(message, name):
    assert name in message, message


# -- strategies ------------------------------------------------------------------------------------------
texts = st.text(max_size=4)
any_floats = st.floats(allow_nan=True, allow_infinity=True)
bad_numbers = st.one_of(st.just(float('nan')), st.just(float('inf')), st.just(float('-inf')))
#: Values that are no integer: strings, floats (also whole ones: 2.0 is no int), booleans, containers.
not_int = st.one_of(texts, any_floats, st.booleans(), st.lists(st.integers(1, 9), min_size=1, max_size=3),
                    st.dictionaries(texts, st.integers(), min_size=1, max_size=2), st.tuples(st.integers(1, 9)))
non_positive = st.integers(-10 ** 12, 0)
#: A bad entry of a per-layer list of sizes.
bad_size_entry = st.one_of(non_positive, texts, any_floats, st.booleans(), st.none(),
                           st.lists(st.integers(1, 5), min_size=1, max_size=1),                  # (x,): 1 axis
                           st.lists(st.integers(1, 5), min_size=4, max_size=5),                  # > 3 axes
                           st.tuples(st.integers(1, 5), non_positive))                           # (3, -1)

INT_MINIMUM = dict(batch_size=1, monitor_batch_size=1, n_steps=0, n_lab=1)


# -- integers --------------------------------------------------------------------------------------------
@SETTINGS
@given(name=st.sampled_from(sorted(INT_MINIMUM)), value=st.one_of(not_int, st.none()))
def test_integer_parameters_reject_other_types(folder, name, value):
    if value is None and name == 'n_lab':
        return  # n_lab = None: detect it from the data
    assert_names(config_error(folder, **{name: value}), name)


@SETTINGS
@given(name=st.sampled_from(sorted(INT_MINIMUM)), data=st.data())
def test_integer_parameters_reject_values_below_their_minimum(folder, name, data):
    value = data.draw(st.integers(-10 ** 12, INT_MINIMUM[name] - 1))
    assert_names(config_error(folder, **{name: value}), name)


# -- shapes and per-layer lists ------------------------------------------------------------------------
@SETTINGS
@given(value=st.one_of(non_positive, texts, any_floats, st.booleans(), st.none(),
                       st.tuples(st.integers(1, 30), non_positive), st.tuples(non_positive, st.integers(1, 30)),
                       st.lists(st.integers(8, 30), min_size=3, max_size=4),    # 3 or 4 axes for a 2D network
                       st.lists(st.integers(8, 30), min_size=1, max_size=1)))
def test_desired_input_rejects_bad_sizes(folder, value):
    assert_names(config_error(folder, desired_input=value), 'desired_input')


@SETTINGS
@given(name=st.sampled_from(['filters', 'pool']),
       value=st.one_of(bad_size_entry.map(lambda e: [e]), texts, st.integers(1, 5), st.dictionaries(texts, texts)))
def test_filters_and_pool_reject_bad_entries(folder, name, value):
    assert_names(config_error(folder, **{name: value}), name)


@SETTINGS
@given(size=st.integers(MIN_SEARCH_BOUND, 10 ** 7))
def test_filters_larger_than_any_input_size_searched_are_refused(folder, size):
    # (a filter a bit larger than desired_input is no error: the nearest valid input size is used)
    assert_names(config_error(folder, filters=[size]), 'filters')


@SETTINGS
@given(name=st.sampled_from(['nof_filters', 'MLP_layers']),
       value=st.one_of(st.one_of(non_positive, texts, any_floats, st.booleans(), st.none()).map(lambda e: [e]),
                       texts, st.integers(1, 5), st.floats()))
def test_layer_widths_reject_bad_entries(folder, name, value):
    assert_names(config_error(folder, **{name: value}), name)


@SETTINGS
@given(value=st.one_of(st.integers(-10 ** 6, -1), st.lists(st.integers(-10 ** 6, -1), min_size=1, max_size=1),
                       st.lists(st.integers(0, 50), min_size=2, max_size=3), texts, any_floats,
                       st.lists(any_floats, min_size=1, max_size=1), st.none()))
def test_history_freq_rejects_bad_values(folder, value):
    assert_names(config_error(folder, history_freq=value), 'history_freq')


# -- learning rates and schedules --------------------------------------------------------------------------
@SETTINGS
@given(optimizer=st.sampled_from(['SGD_params', 'Adam_params']),
       lr=st.one_of(st.floats(max_value=0, exclude_max=True), bad_numbers, texts, st.lists(st.floats(0.1, 1)))
       )
def test_learning_rates_must_be_positive_finite_numbers(folder, optimizer, lr):
    good = dict(BASE[optimizer]) if optimizer in BASE else {'LR': 0.001}
    good['LR'] = lr
    assert_names(config_error(folder, **{optimizer: good}), optimizer)


@SETTINGS
@given(momentum=st.one_of(st.floats(max_value=0, exclude_max=True), st.floats(min_value=1, exclude_min=True),
                          bad_numbers, texts))
def test_momentum_must_lie_in_0_1(folder, momentum):
    assert_names(config_error(folder, SGD_params=dict(LR=0.05, momentum=momentum)), 'SGD_params')


@SETTINGS
@given(value=st.one_of(st.floats(max_value=0), bad_numbers, texts, st.booleans(), st.none()))
def test_lr_decay_must_be_a_positive_finite_number(folder, value):
    assert_names(config_error(folder, LR_decay=value), 'LR_decay')


@SETTINGS
@given(value=st.one_of(
    st.lists(st.tuples(st.integers(-10 ** 6, -1), st.floats(0.001, 1)), min_size=1, max_size=2),   # negative step
    st.lists(st.tuples(st.integers(0, 100), st.one_of(st.floats(max_value=0), bad_numbers)),
             min_size=1, max_size=2),                                                           # bad LR
    st.lists(st.tuples(st.integers(0, 100)), min_size=1, max_size=2),                           # no LR
    st.just([(50, 0.01), (10, 0.02)]),                                                          # unsorted
    texts, st.integers(), st.floats()))
def test_lr_schedule_rejects_bad_entries(folder, value):
    assert_names(config_error(folder, LR_schedule=value), 'LR_schedule')


# -- augmentation and run time --------------------------------------------------------------------------------
@SETTINGS
@given(value=st.one_of(st.floats(min_value=1, exclude_min=True), st.floats(max_value=0, exclude_max=True),
                       st.integers(2, 10 ** 6), st.integers(-10 ** 6, -1), bad_numbers, texts,
                       st.lists(st.floats(0, 1), min_size=1, max_size=2), st.none()))
def test_warp_on_is_a_switch_or_a_fraction(folder, value):
    assert_names(config_error(folder, warp_on=value), 'warp_on')


@SETTINGS
@given(name=st.sampled_from(['max_runtime', 'param_save_h', 'prev_save_h']),
       value=st.one_of(st.floats(max_value=0), st.integers(-10 ** 6, 0), st.just(float('nan')), texts, st.none()))
def test_durations_must_be_positive(folder, name, value):
    assert_names(config_error(folder, **{name: value}), name)


@SETTINGS
@given(value=st.one_of(st.floats(min_value=1), st.floats(max_value=0, exclude_max=True), st.just(float('nan')),
                       texts, st.lists(st.floats(min_value=1), min_size=2, max_size=2)))
def test_dropout_rates_lie_in_0_1(folder, value):
    assert_names(config_error(folder, dropout_rates=value), 'dropout_rates')


# -- absurd sizes: far beyond any memory ------------------------------------------------------------------
ABSURD = dict(nof_filters=st.integers(10 ** 7, 10 ** 15).map(lambda v: [v]),
              MLP_layers=st.integers(10 ** 8, 10 ** 15).map(lambda v: [v]),
              batch_size=st.integers(10 ** 9, 10 ** 15),
              monitor_batch_size=st.integers(10 ** 9, 10 ** 15),
              n_lab=st.integers(10 ** 8, 10 ** 15))


@SETTINGS
@given(name=st.sampled_from(sorted(ABSURD)), data=st.data())
def test_absurd_sizes_are_refused(folder, name, data):
    value = data.draw(ABSURD[name])
    values = {name: value}
    if name == 'batch_size':
        values['monitor_batch_size'] = value
    assert_names(config_error(folder, **values), name)


def test_an_absurd_input_size_is_refused_at_once(folder):
    import time
    t0 = time.monotonic()
    message = config_error(folder, desired_input=10 ** 6)
    assert time.monotonic() - t0 < 0.5, 'desired_input = 10**6 took %.1f s to check' % (time.monotonic() - t0)
    assert_names(message, 'desired_input')
