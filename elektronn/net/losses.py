"""Training objectives on the output layer (PyTorch layout, classes on axis 1).

All classification losses work on the *linear* output of the last layer (softmax over axis 1),
like the original. Labels ``< 0`` are "ignore": they contribute neither loss nor error.
"""
import math

import torch
from torch.nn import functional as F

__all__ = ['EPS', 'nll', 'classification_error', 'squared_error']

#: Stabiliser inside the log, as in the original: ``-log(p + 1e-6)``.
EPS = 1e-6


def nll(lin, labels, class_weights=None, example_weights=None):
    """Negative log-likelihood of the softmax of ``lin``, normalised by the labelled positions.

    ``loss = sum_i w_i * -log(p_i[label_i] + 1e-6) / #(label_i >= 0)`` where ``w_i`` is the
    class weight of the label times the example weight; the count ignores the weights and is at
    least 1.

    Shapes:
        ``lin`` ``(bs, n_lab, *spatial)``; ``labels`` ``(bs, *spatial)`` integer;
        ``class_weights`` ``(n_lab,)``; ``example_weights`` like ``labels``.

    Returns:
        ``(loss, loss_instance)``: the scalar loss and the weighted per-position loss
        (zero at ignored positions), shaped like ``labels``.
    """
    prob = F.softmax(lin, dim=1)
    valid = labels >= 0
    safe_labels = labels.clamp(min=0)
    p_true = prob.gather(1, safe_labels.unsqueeze(1)).squeeze(1)
    weight = valid.to(lin.dtype)
    if class_weights is not None:
        weight = weight * class_weights[safe_labels]
    if example_weights is not None:
        weight = weight * example_weights
    instance = -torch.log(p_true + EPS) * weight
    count = valid.sum().clamp(min=1)
    return instance.sum() / count, instance


def classification_error(lin, labels):
    """Fraction of labelled positions (``label >= 0``) whose arg-max class differs from the label.

    Returns:
        ``(error, prediction)``; ``error`` is NaN when no position is labelled.
    """
    prediction = lin.argmax(dim=1)
    valid = labels >= 0
    n = int(valid.sum())
    if n == 0:
        return torch.tensor(math.nan), prediction
    wrong = (prediction != labels) & valid
    return wrong.sum().to(torch.float64) / n, prediction


def squared_error(output, targets):
    """Mean squared error between the activated ``output`` and ``targets``.

    Shapes:
        ``output`` ``(bs, n_out, *spatial)`` or ``(bs, n_out)``; ``targets`` the same, or
        without the ``n_out`` axis for conv outputs (broadcast over it, as the original did).

    Returns:
        ``(mse, squared_error_per_element)``.
    """
    if targets.ndim == output.ndim - 1:
        targets = targets.unsqueeze(1)
    instance = (output - targets) ** 2
    return instance.mean(), instance
