"""Losses and error rates against plain NumPy reference computations."""
import math

import numpy as np
import pytest
import torch

from elektronn.net import losses


def np_softmax(lin):
    e = np.exp(lin - lin.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def np_nll(lin, labels, cw=None, ew=None):
    """Direct transcription of the original's formula with one-hot selection."""
    prob = np_softmax(lin)
    n_lab = lin.shape[1]
    onehot = np.stack([labels == k for k in range(n_lab)], axis=1).astype(np.float64)
    weights = np.ones(n_lab) if cw is None else cw
    shape = (1, n_lab) + (1,) * (lin.ndim - 2)
    per_class = -np.log(prob + 1e-6) * onehot * weights.reshape(shape)
    if ew is not None:
        per_class = per_class * ew[:, None]
    n = max(onehot.sum(), 1)
    return per_class.sum() / n, per_class.sum(axis=1)


@pytest.mark.parametrize('shape', [(20,), (3, 5, 4), (2, 3, 4, 5)])
def test_nll_ignore_labels_and_weights_match_numpy(shape):
    rng = np.random.RandomState(0)
    n_lab = 4
    lin = rng.randn(shape[0], n_lab, *shape[1:])
    labels = rng.randint(-2, n_lab, shape)
    cw = rng.rand(n_lab) + 0.5
    ew = rng.rand(*shape)
    for kwargs in ({}, {'cw': cw}, {'ew': ew}, {'cw': cw, 'ew': ew}):
        ref_loss, ref_inst = np_nll(lin, labels, **kwargs)
        loss, inst = losses.nll(torch.from_numpy(lin), torch.from_numpy(labels),
                                None if 'cw' not in kwargs else torch.from_numpy(cw),
                                None if 'ew' not in kwargs else torch.from_numpy(ew))
        assert float(loss) == pytest.approx(ref_loss, rel=1e-10)
        np.testing.assert_allclose(inst.numpy(), ref_inst, rtol=1e-10, atol=1e-12)
        assert np.all(inst.numpy()[labels < 0] == 0)


def test_nll_all_ignored_is_zero_not_nan():
    lin = torch.randn(4, 3)
    loss, inst = losses.nll(lin, torch.full((4,), -1))
    assert float(loss) == 0.0 and torch.all(inst == 0)


def test_classification_error_over_labelled_positions_only():
    lin = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 3.0]])
    labels = torch.tensor([0, 0, -1, 1])
    err, pred = losses.classification_error(lin, labels)
    assert float(err) == pytest.approx(1 / 3)
    assert pred.tolist() == [0, 1, 0, 1]
    err, _ = losses.classification_error(lin, torch.full((4,), -1))
    assert math.isnan(float(err))


def test_squared_error_broadcasts_conv_targets():
    rng = np.random.RandomState(1)
    out = rng.randn(2, 3, 4, 5)
    target = rng.randn(2, 4, 5)
    mse, inst = losses.squared_error(torch.from_numpy(out), torch.from_numpy(target))
    ref = (out - target[:, None]) ** 2
    assert float(mse) == pytest.approx(ref.mean())
    np.testing.assert_allclose(inst.numpy(), ref)
