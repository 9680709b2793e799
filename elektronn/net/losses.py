"""Training objectives on the output layer (PyTorch layout, classes on axis 1).

All classification losses work on the *linear* output of the last layer, like the original.
Labels ``< 0`` are "ignore": they contribute neither loss nor error. Every loss returns
``(loss, loss_instance)``; the ``*_parts`` functions return the per-position loss and the
per-position count that normalises it, so that a loss over many chunks can be summed exactly.

Shapes: ``lin`` is ``(bs, n_lab, *spatial)``, ``labels`` ``(bs, *spatial)`` (for perceptron
outputs ``spatial`` is empty); the affinity losses take ``lin`` ``(bs, 3 * n_lab, z, x, y)`` and
labels ``(bs, 3, z, x, y)``.
"""
import math

import numpy as np
import torch
from torch.nn import functional as F

__all__ = ['EPS', 'nll', 'nll_parts', 'classification_error', 'squared_error', 'nll_weak', 'nll_weak_parts',
           'nll_multiple_binary', 'binary_parts', 'binary_probabilities',
           'affinity_probabilities', 'affinity_nll', 'affinity_parts', 'per_edge_sums', 'malis_counts', 'malis_parts',
           'malis_loss']

#: Stabiliser inside the log, as in the original: ``-log(p + 1e-6)``.
EPS = 1e-6


def _per_class(values, n_spatial):
    """``(bs, n_lab)`` -> ``(bs, n_lab, 1, ...)`` to broadcast against ``(bs, n_lab, *spatial)``."""
    return values.reshape(tuple(values.shape) + (1,) * n_spatial)


def _class_weight_view(class_weights, n_spatial):
    return class_weights.reshape((1, -1) + (1,) * n_spatial)


def nll_parts(prob, labels, class_weights=None, example_weights=None, mask_class_labeled=None,
              mask_class_not_present=None, label_prop_thresh=None):
    """Per-position negative log-likelihood with lazy labels and label propagation.

    Three kinds of terms, each weighted by the class weight and the example weight:

    * **up-votes** ``-log(p[label] + 1e-6)`` at labelled positions (``label >= 0``); with lazy
      labels only where ``mask_class_labeled[b, label] == 1``;
    * **label propagation** ``-log(p[k] + 1e-6)`` for every class ``k`` with ``p[k] >
      label_prop_thresh`` at positions without an up-vote (and, with lazy labels, only for classes
      with ``mask_class_labeled[b, k] == 0``);
    * **down-votes** ``-log(1 - p[k] + 1e-6)`` at every position of example ``b`` for each class
      flagged ``mask_class_not_present[b, k] == 1``.

    The count is the number of terms (weights not counted), so ``loss = sum(instance) /
    max(sum(count), 1)``.

    Args:
        prob: Class probabilities ``(bs, n_lab, *spatial)``.
        labels: Integer labels ``(bs, *spatial)``.
        class_weights: ``(n_lab,)``.
        example_weights: Like ``labels``.
        mask_class_labeled, mask_class_not_present: ``(bs, n_lab)`` 0/1 masks.
        label_prop_thresh: Probability threshold (a float or 0-d tensor).

    Returns:
        ``(instance, count)``, both shaped like ``labels``.
    """
    n_spatial = labels.ndim - 1
    dtype = prob.dtype
    valid = labels >= 0
    safe = labels.clamp(min=0)
    selected = valid
    if mask_class_labeled is not None:
        labelled_class = mask_class_labeled.gather(1, safe.reshape(safe.shape[0], -1)).reshape(safe.shape)
        selected = selected & (labelled_class > 0)
    p_true = prob.gather(1, safe.unsqueeze(1)).squeeze(1)
    weight = selected.to(dtype)
    if class_weights is not None:
        weight = weight * class_weights[safe]
    if example_weights is not None:
        weight = weight * example_weights
    instance = -torch.log(p_true + EPS) * weight
    count = selected.to(dtype)
    if label_prop_thresh is None and mask_class_not_present is None:
        return instance, count

    class_factor = 1.0 if class_weights is None else _class_weight_view(class_weights, n_spatial)
    example_factor = 1.0 if example_weights is None else example_weights.unsqueeze(1)
    if label_prop_thresh is not None:
        propagate = (prob.detach() > label_prop_thresh) & ~selected.unsqueeze(1)
        if mask_class_labeled is not None:
            propagate = propagate & (_per_class(mask_class_labeled, n_spatial) <= 0)
        propagate = propagate.to(dtype)
        instance = instance + (-torch.log(prob + EPS) * propagate * class_factor * example_factor).sum(1)
        count = count + propagate.sum(1)
    if mask_class_not_present is not None:
        absent = (_per_class(mask_class_not_present, n_spatial) > 0).to(dtype)
        instance = instance + (-torch.log(1.0 - prob + EPS) * absent * class_factor * example_factor).sum(1)
        count = count + absent.sum(1)
    return instance, count


def _mean(instance, count):
    return instance.sum() / count.sum().clamp(min=1)


def nll(lin, labels, class_weights=None, example_weights=None, mask_class_labeled=None,
        mask_class_not_present=None, label_prop_thresh=None):
    """Negative log-likelihood of the softmax of ``lin``, normalised by the number of terms.

    Without the lazy-label and propagation inputs this is ``sum_i w_i * -log(p_i[label_i] + 1e-6) /
    #(label_i >= 0)`` where ``w_i`` is the class weight of the label times the example weight;
    see :func:`nll_parts` for the other terms.

    Returns:
        ``(loss, loss_instance)``: the scalar loss and the weighted per-position loss (zero at
        positions without a term), shaped like ``labels``.
    """
    instance, count = nll_parts(F.softmax(lin, dim=1), labels, class_weights, example_weights,
                                mask_class_labeled, mask_class_not_present, label_prop_thresh)
    return _mean(instance, count), instance


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


# ----------------------------------------------------------------------------------------------------
# nll_weak
# ----------------------------------------------------------------------------------------------------
def nll_weak_parts(prob, labels, class_weights=None):
    """Cross-entropy against the soft target ``0.5 * one_hot(label) + 0.5 * p`` (self-training).

    ``instance = -sum_k target_k * log(p_k + 1e-6) * class_weight_k`` at every position; positions
    with ``label < 0`` keep only the ``0.5 * p`` half. As in the original the gradient also flows
    through the prediction inside the target (that half acts as entropy minimisation), and the
    count is the number of labelled positions.

    Returns:
        ``(instance, count)`` shaped like ``labels``.
    """
    n_spatial = labels.ndim - 1
    valid = labels >= 0
    hard = F.one_hot(labels.clamp(min=0), prob.shape[1]).movedim(-1, 1).to(prob.dtype) * valid.unsqueeze(1)
    target = 0.5 * hard + 0.5 * prob
    terms = -target * torch.log(prob + EPS)
    if class_weights is not None:
        terms = terms * _class_weight_view(class_weights, n_spatial)
    return terms.sum(1), valid.to(prob.dtype)


def nll_weak(lin, labels, class_weights=None):
    """The ``'nll_weak'`` loss (see :func:`nll_weak_parts`): ``(loss, loss_instance)``."""
    instance, count = nll_weak_parts(F.softmax(lin, dim=1), labels, class_weights)
    return _mean(instance, count), instance


# ----------------------------------------------------------------------------------------------------
# nll_mutiple_binary
# ----------------------------------------------------------------------------------------------------
def binary_probabilities(lin):
    """``(bs, n_out) -> (bs, n_out, 2)``: ``[sigmoid(lin), 1 - sigmoid(lin)]`` per output, as the
    original (class 1 is predicted where ``lin < 0``)."""
    return torch.stack([torch.sigmoid(lin), torch.sigmoid(-lin)], dim=-1)


def binary_parts(lin, labels, class_weights=None):
    """Independent two-class NLL per output (target ``'nll_mutiple_binary'``).

    ``instance = -log(p0 + 1e-6) * (1 - y) * cw[0] - log(p1 + 1e-6) * y * cw[1]`` with
    ``p0 = sigmoid(lin)``, ``p1 = 1 - p0``; labels ``y`` in {0, 1}, negative = ignore.

    Returns:
        ``(instance, count)`` shaped like ``labels`` ``(bs, n_out)``.
    """
    valid = (labels >= 0).to(lin.dtype)
    y = labels.clamp(min=0).to(lin.dtype)
    w0, w1 = (1.0, 1.0) if class_weights is None else (class_weights[0], class_weights[1])
    instance = (-torch.log(torch.sigmoid(lin) + EPS) * (1 - y) * w0
                - torch.log(torch.sigmoid(-lin) + EPS) * y * w1) * valid
    return instance, valid


def nll_multiple_binary(lin, labels, class_weights=None):
    """The ``'nll_mutiple_binary'`` loss (see :func:`binary_parts`): ``(loss, loss_instance)``."""
    instance, count = binary_parts(lin, labels, class_weights)
    return _mean(instance, count), instance


# ----------------------------------------------------------------------------------------------------
# affinity and malis
# ----------------------------------------------------------------------------------------------------
def _edge_view(lin, n_edges):
    """``(bs, n_edges * n_lab, *spatial)`` -> ``(bs, n_edges, n_lab, *spatial)``."""
    if lin.shape[1] % n_edges:
        raise ValueError('an affinity output needs %i x n_lab channels, got %i' % (n_edges, lin.shape[1]))
    return lin.reshape((lin.shape[0], n_edges, lin.shape[1] // n_edges) + tuple(lin.shape[2:]))


def affinity_probabilities(lin, n_edges=3):
    """Softmax over the classes of each edge direction: ``(bs, n_edges * n_lab, z, x, y)``, the
    classes of edge 0 first."""
    return F.softmax(_edge_view(lin, n_edges), dim=2).reshape(lin.shape)


def affinity_parts(lin, labels, class_weights=None, n_edges=3):
    """Per-edge NLL of an affinity output.

    Returns:
        ``(instance, count)`` shaped like ``labels`` ``(bs, n_edges, z, x, y)``; the loss is the
        mean over the edge directions of ``sum(instance[:, e]) / max(sum(count[:, e]), 1)``.
    """
    prob = F.softmax(_edge_view(lin, n_edges), dim=2).transpose(1, 2)  # (bs, n_lab, n_edges, ...)
    return nll_parts(prob, labels, class_weights)


def per_edge_sums(values):
    """Sums of ``(bs, n_edges, ...)`` values per edge direction: ``(n_edges,)``."""
    return values.transpose(0, 1).reshape(values.shape[1], -1).sum(1)


def affinity_nll(lin, labels, class_weights=None, n_edges=3):
    """The ``'affinity'`` loss: the mean of the per-edge-direction NLLs; ``(loss, loss_instance)``."""
    instance, count = affinity_parts(lin, labels, class_weights, n_edges)
    return (per_edge_sums(instance) / per_edge_sums(count).clamp(min=1)).mean(), instance


def malis_counts(connected, labels, seg_gt, unrestrict_neg=True):
    """MALIS pair counts for a batch (see :func:`elektronn.net.malis.malis_weights`).

    Args:
        connected: Predicted connection probabilities ``(bs, n_edges, z, x, y)`` (no gradient needed).
        labels: Ground-truth affinities, same shape (negative entries count as disconnected).
        seg_gt: Object IDs ``(bs, z, x, y)``.

    Returns:
        ``(pos_counts, neg_counts)`` as float tensors on ``connected``'s device.
    """
    from elektronn.net import malis

    pred = connected.detach().to(torch.float64).cpu().numpy()
    gt = labels.detach().clamp(min=0).cpu().numpy()
    seg = seg_gt.detach().cpu().numpy()
    pos, neg = np.zeros(pred.shape, np.int64), np.zeros(pred.shape, np.int64)
    for b in range(pred.shape[0]):
        pos[b], neg[b] = malis.malis_weights(pred[b], gt[b], seg[b], unrestrict_neg=unrestrict_neg)
    as_tensor = lambda a: torch.from_numpy(a).to(device=connected.device, dtype=connected.dtype)
    return as_tensor(pos), as_tensor(neg)


def malis_parts(lin, labels, seg_gt, class_weights=None, n_edges=3):
    """The MALIS loss terms of an affinity output with two classes per edge (0: disconnected, 1: connected).

    ``instance = -pos_count * log(p_connected + 1e-6) * cw[1] - neg_count * log(p_disconnected + 1e-6) * cw[0]``
    per edge; the loss is ``sum(instance) / (n_pairs + 1e-6)`` with ``n_pairs = sum(pos_count + neg_count)``.

    Returns:
        ``(instance, pos_count, neg_count, prob)`` with ``instance`` and the counts shaped like
        ``labels`` ``(bs, n_edges, z, x, y)`` and ``prob`` ``(bs, n_edges, 2, z, x, y)``.
    """
    prob = F.softmax(_edge_view(lin, n_edges), dim=2)
    if prob.shape[2] != 2:
        raise ValueError('the malis loss needs 2 classes per edge (disconnected, connected), got %i' % prob.shape[2])
    disconnected, connected = prob[:, :, 0], prob[:, :, 1]
    pos, neg = malis_counts(connected, labels, seg_gt)
    w0, w1 = (1.0, 1.0) if class_weights is None else (class_weights[0], class_weights[1])
    instance = -pos * torch.log(connected + EPS) * w1 - neg * torch.log(disconnected + EPS) * w0
    return instance, pos, neg, prob


def malis_loss(lin, labels, seg_gt, class_weights=None, n_edges=3):
    """The ``'malis'`` loss (see :func:`malis_parts`): ``(loss, loss_instance)``."""
    instance, pos, neg, _ = malis_parts(lin, labels, seg_gt, class_weights, n_edges)
    return instance.sum() / (pos.sum() + neg.sum() + 1e-6), instance
