"""CNNCalculator shape maths and weight initialisation against hand computations."""
import numpy as np
import pytest

from elektronn.net.netutils import CNNCalculator, initWeights

MNIST_PRINTOUT = """Input: [26, 26]
Layer/Fragment sizes:\t[[12, 5], [12, 5]]
Unpooled Layer sizes:\t[[24, 10], [24, 10]]
Receptive fields:\t[[4, 10], [4, 10]]
Strides:\t\t[[2, 4], [2, 4]]
Overlap:\t\t[[2, 6], [2, 6]]
Offset:\t\t[5.0, 5.0].
If offset is non-int: output neurons lie centered on input neurons,they have an odd FOV
"""

NEURO_FILTERS = [[4, 4, 1], [3, 3, 1], [3, 3, 3], [3, 3, 3], [2, 2, 1]]
NEURO_POOLS = [[2, 2, 1], [2, 2, 1], [1, 1, 1], [1, 1, 1], [1, 1, 1]]


def test_mnist_printout_matches_examples_page(capsys):
    d = CNNCalculator([3, 3], [2, 2], 26, n_dim=2)
    out = capsys.readouterr().out
    assert out.count('WARNING: Receptive Fields are not centered with even field of view (10)') == 2
    assert repr(d) == MNIST_PRINTOUT


def test_neuro_3d_example_in_user_order():
    d = CNNCalculator(NEURO_FILTERS, NEURO_POOLS, [127, 127, 7], n_dim=3)
    assert d.input == [127, 127, 7]
    assert d.fov == [31, 31, 5]
    assert [f[-1] for f in d.fields] == [31, 31, 5]
    assert d.output == [25, 25, 3]
    assert d.pred_stride == [4, 4, 1]
    assert d.offset == [15.5, 15.5, 2.5]
    assert all(type(v) is int for v in d.input + d.output + d.pred_stride)
    # label patch used by the data pipeline: input - 2*floor(offset), subsampled by the stride
    label = [i - 2 * int(np.floor(o)) for i, o in zip(d.input, d.offset)]
    assert label == [97, 97, 3]
    assert [len(range(0, n, s)) for n, s in zip(label, d.pred_stride)] == d.output


def test_valid_inputs_and_snapping(capsys):
    d = CNNCalculator(NEURO_FILTERS, NEURO_POOLS, [128, 128, 7], n_dim=3)
    assert 'Info: input (128) changed to (127) (size not possible)' in capsys.readouterr().out
    assert d.valid_inputs[0][:3] == [31, 35, 39]
    assert d.valid_inputs[2][:3] == [5, 6, 7]
    d = CNNCalculator(NEURO_FILTERS, NEURO_POOLS, [10, 10, 7], n_dim=3)
    assert d.input[0] == 31
    assert 'Info: input (10) changed to (31) (size too small)' in capsys.readouterr().out


def test_mfp_rule_changes_valid_inputs():
    d = CNNCalculator(NEURO_FILTERS, NEURO_POOLS, [127, 127, 7], MFP=True, n_dim=3)
    assert d.input == [126, 126, 7]
    for inp in d.valid_inputs[0][:20]:
        out1 = inp - 4 + 1
        out2 = out1 // 2 - 3 + 1
        assert out1 % 2 == 1 and out2 % 2 == 1


def brute_force_valid(inp, filters, pools, mfp):
    size = inp
    for f, p, m in zip(filters, pools, mfp):
        out = size - f + 1
        if out <= 0 or out // p <= 0:
            return False
        if p > 1 and out % p != (1 if m else 0):
            return False
        size = out // p
    return True


@pytest.mark.parametrize('mfp', [[0, 0, 0], [1, 1, 0], [1, 0, 1]])
def test_valid_inputs_against_brute_force(mfp):
    filters, pools = [5, 3, 2], [2, 3, 2]
    d = CNNCalculator(filters, pools, MFP=mfp)
    expected = [i for i in range(2, 5000) if brute_force_valid(i, filters, pools, mfp)]
    assert d.valid_inputs == expected
    assert d.input == expected[-1]


def test_fields_strides_overlap_1d():
    d = CNNCalculator([3, 3], [2, 2], 26)
    assert d.fields == [4, 10]
    assert d.stride == [2, 4]
    assert d.overlap == [2, 6]
    assert d.out == [24, 10] and d.pool_out == [12, 5]
    assert d.offset == 5.0


def test_desired_output():
    d = CNNCalculator([3, 3], [2, 2], desired_output=7, n_dim=2)
    assert d.output == [7, 7] and d.input == [34, 34]
    d = CNNCalculator([3, 3], [2, 2], desired_output=1)
    assert d.output == 1 and d.input == 10


def test_desired_output_exact():
    d = CNNCalculator([3], [3], desired_output=4)
    assert d.output == 4 and d.input == 14
    d = CNNCalculator([3, 3], [2, 2], desired_output=10 ** 4)
    assert d.output == 10 ** 4 and d.input == 4 * 10 ** 4 + 6
    d = CNNCalculator([5], [1], desired_output=0 + 2)
    assert d.output == 2 and d.input == 6


def test_large_input_beyond_default_search():
    d = CNNCalculator([3], [1], desired_input=7000)
    assert d.input == 7000


def test_force_center_raises_for_even_fov():
    with pytest.raises(ValueError, match=r'field of view \(10\)'):
        CNNCalculator([3, 3], [2, 2], 26, force_center=True, n_dim=2)


@pytest.mark.parametrize('kwargs, match', [
    (dict(filters=[3, 3], poolings=[2]), 'same number of layers'),
    (dict(filters=[3, 0], poolings=[2, 2]), r'filters must contain integers >= 1, got 0'),
    (dict(filters=[3], poolings=[2], n_dim=4), r'n_dim must be 1, 2 or 3, got 4'),
    (dict(filters=[[3, 3]], poolings=[2], n_dim=3), r'filters\[0\] must have 3 entries'),
    (dict(filters=[3], poolings=[2], desired_input=-5), r'desired_input must contain integers >= 1, got -5'),
    (dict(filters=[3], poolings=[2], MFP=[1, 1]), 'MFP must be a bool or a list'),
])
def test_bad_arguments_echo_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CNNCalculator(**kwargs)


def test_impossible_architecture_explains():
    with pytest.raises(ValueError, match='No input size below'):
        CNNCalculator([6000], [1])


def test_init_weights_scales():
    rng = np.random.RandomState(0)
    W = initWeights((400, 600), 'glorot', 'uni', rng=rng)
    bound = np.sqrt(2.0 / 1000)
    assert W.dtype == np.float32 and W.shape == (400, 600)
    assert np.abs(W).max() <= bound and np.abs(W).max() > 0.95 * bound
    W = initWeights((64, 16, 3, 3), 'glorot', 'normal', pool=(2, 2), rng=rng)
    n_in, n_out = 16 * 9, 64 * 9 / 4
    assert abs(W.std() - np.sqrt(2.0 / (n_in + n_out))) < 0.01 * np.sqrt(2.0 / (n_in + n_out)) * 5
    assert np.all(initWeights((5,), 0.5, 'const') == 0.5)
    R = initWeights((20, 20), mode='rnn', rng=rng)
    assert abs(np.linalg.svd(R, compute_uv=False)[0] - 1) < 1e-5
    with pytest.raises(ValueError, match='square'):
        initWeights((3, 4), mode='rnn')
