"""The targets of ``compileOutputFunctions``: labels, auxiliary inputs, loss, error and outputs.

A target object knows, for one kind of output layer, what the labels look like, which auxiliary
inputs the loss takes, how to compute the loss and the error from the output layer's linear and
activated outputs, and what ``class_probabilities`` and ``prediction`` return. The network
(:class:`~elektronn.net.convnet.MixedConvNN`) only converts arrays and runs the layers.

Losses come as *terms*: ``(total, count, instance)`` where ``total`` and ``count`` are vectors
with one entry per group (one group, or one per edge direction for affinity outputs); summing the
terms of several chunks of a batch and calling :meth:`_Target.finish` gives exactly the loss of
the whole batch.

Auxiliary inputs, always in this order (each only when enabled), the original's compiled order:

==========================  ==========================  ==========================================
name                        shape                       used by
==========================  ==========================  ==========================================
``seg_gt``                  ``(bs, z, x, y)`` int       ``'malis'`` (always)
``mask_class_labeled``      ``(bs, n_lab)`` 0/1         ``'nll'`` with ``use_lazy_labels``
``mask_class_not_present``  ``(bs, n_lab)`` 0/1         ``'nll'`` with ``use_lazy_labels``
``class_weights``           ``(n_lab,)``                all but ``'regression'`` (``use_class_weights``)
``example_weights``         like the labels             ``'nll'`` with ``use_example_weights``
``label_prop_thresh``       scalar                      ``'nll'`` with ``use_label_prop``
==========================  ==========================  ==========================================
"""
import math

import numpy as np
import torch
from torch.nn import functional as F

from elektronn.net import losses
from elektronn.net.layers.affinity import AffinityLayer3d
from elektronn.net.layers.conv import _ConvLayer
from elektronn.net.layers.perceptron import PerceptronLayer
from elektronn.net.layers.recurrent import RecurrentLayer

__all__ = ['TARGETS', 'TARGET_ALIASES', 'AUX_ORDER', 'make_target']

#: The original's target names (``'nll_mutiple_binary'`` with its typo).
TARGETS = ('nll', 'regression', 'nll_weak', 'nll_mutiple_binary', 'affinity', 'malis')
#: Accepted other spellings.
TARGET_ALIASES = {'nll_multiple_binary': 'nll_mutiple_binary'}
#: Order of the auxiliary inputs (positional arguments after data and labels).
AUX_ORDER = ('seg_gt', 'mask_class_labeled', 'mask_class_not_present', 'class_weights', 'example_weights',
             'label_prop_thresh')
#: Auxiliary inputs with one entry per example (split when evaluating in chunks).
PER_EXAMPLE_AUX = ('seg_gt', 'mask_class_labeled', 'mask_class_not_present', 'example_weights')

_FLAG_AUX = {'use_lazy_labels': ('mask_class_labeled', 'mask_class_not_present'),
             'use_class_weights': ('class_weights',), 'use_example_weights': ('example_weights',),
             'use_label_prop': ('label_prop_thresh',)}


class _Target:
    """Base of all targets.

    Args:
        layer: The output layer.
        n_out: Its number of output channels / units.
        flags: The ``use_*`` flags of ``compileOutputFunctions``.
    """

    name = None
    #: ``use_*`` flags this target accepts.
    flags_accepted = ()
    #: Auxiliary inputs required whatever the flags.
    required_aux = ()
    #: Integer class labels (else float regression targets).
    integer_labels = True

    def __init__(self, layer, n_out, flags):
        self.layer = layer
        self.n_out = n_out
        for flag, value in flags.items():
            if value and flag in _FLAG_AUX and flag not in self.flags_accepted:
                accepted = ', '.join(self.flags_accepted) or 'none of the use_* options'
                raise ValueError("target %r does not support %s=True (it accepts %s)" % (self.name, flag, accepted))
        wanted = set(self.required_aux)
        for flag, names in _FLAG_AUX.items():
            if flags.get(flag):
                wanted.update(names)
        self.aux_names = [name for name in AUX_ORDER if name in wanted]
        self.check_layer()

    # -- set-up ---------------------------------------------------------------------------------
    def check_layer(self):
        if isinstance(self.layer, RecurrentLayer):
            raise ValueError('a recurrent layer cannot be the output layer; add a perceptron layer after it')
        if isinstance(self.layer, AffinityLayer3d):
            raise ValueError("the output layer is an affinity layer: compile it with target='affinity' or 'malis', "
                             "not %r" % (self.name,))
        if isinstance(self.layer, _ConvLayer) and self.layer.maxout > 1:
            raise ValueError('the output layer must not use maxout (%r)' % self.layer.activation_func)

    @property
    def n_lab(self):
        """The network's ``n_lab``: channels of ``class_probabilities``."""
        return self.n_out

    @property
    def n_classes(self):
        """Classes a label may name (labels lie in ``0 .. n_classes - 1``)."""
        return self.n_out

    @property
    def n_class_weights(self):
        return self.n_classes

    def label_shape(self, n_examples, output_shape):
        """Expected label shape for ``n_examples`` given the network's ``output_shape``."""
        return (n_examples,) + tuple(output_shape[2:])

    def aux_shape(self, name, labels_shape):
        """Expected shape of auxiliary input ``name``."""
        if name == 'class_weights':
            return (self.n_class_weights,)
        if name in ('mask_class_labeled', 'mask_class_not_present'):
            return (labels_shape[0], self.n_classes)
        if name == 'label_prop_thresh':
            return ()
        if name == 'seg_gt':
            return (labels_shape[0],) + tuple(labels_shape[2:])
        return tuple(labels_shape)

    # -- computations ---------------------------------------------------------------------------
    def loss_terms(self, lin, out, labels, aux):  # pragma: no cover - abstract
        raise NotImplementedError

    def finish(self, total, count):
        """The loss from summed terms: the mean over groups of ``total / max(count, 1)``."""
        return (total / count.clamp(min=1)).mean()

    def loss(self, lin, out, labels, aux):
        """``(loss, loss_instance)`` on one batch."""
        total, count, instance = self.loss_terms(lin, out, labels, aux)
        return self.finish(total, count), instance

    def error_terms(self, lin, out, labels):
        """``(wrong, counted)`` per group (the error is the mean over groups of their ratio)."""
        valid = labels >= 0
        wrong = (lin.argmax(dim=1) != labels) & valid
        return wrong.sum().reshape(1), valid.sum().reshape(1)

    def probabilities(self, lin, out):
        return F.softmax(lin, dim=1)

    def prediction(self, lin, out):
        return lin.argmax(dim=1)


def _sum1(tensor):
    return tensor.sum().reshape(1)


class NLL(_Target):
    """``'nll'``: softmax NLL with class/example weights, lazy labels and label propagation."""

    name = 'nll'
    flags_accepted = ('use_class_weights', 'use_example_weights', 'use_lazy_labels', 'use_label_prop')

    def check_layer(self):
        super().check_layer()
        if self.n_out < 2:
            raise ValueError("target 'nll' needs an output layer with at least 2 units (classes), got %i" % self.n_out)

    def loss_terms(self, lin, out, labels, aux):
        instance, count = losses.nll_parts(F.softmax(lin, dim=1), labels, aux.get('class_weights'),
                                           aux.get('example_weights'), aux.get('mask_class_labeled'),
                                           aux.get('mask_class_not_present'), aux.get('label_prop_thresh'))
        return _sum1(instance), _sum1(count), instance


class NLLWeak(NLL):
    """``'nll_weak'``: NLL against ``0.5 * one_hot + 0.5 * prediction``."""

    name = 'nll_weak'
    flags_accepted = ('use_class_weights',)

    def loss_terms(self, lin, out, labels, aux):
        instance, count = losses.nll_weak_parts(F.softmax(lin, dim=1), labels, aux.get('class_weights'))
        return _sum1(instance), _sum1(count), instance


class MultipleBinary(_Target):
    """``'nll_mutiple_binary'``: independent two-class outputs of a perceptron layer."""

    name = 'nll_mutiple_binary'
    flags_accepted = ('use_class_weights',)

    def check_layer(self):
        super().check_layer()
        if not isinstance(self.layer, PerceptronLayer):
            raise ValueError("target 'nll_mutiple_binary' needs a perceptron output layer, got %s"
                             % type(self.layer).__name__)

    @property
    def n_classes(self):
        return 2

    def label_shape(self, n_examples, output_shape):
        return (n_examples, self.n_out)

    def aux_shape(self, name, labels_shape):
        return (2,) if name == 'class_weights' else super().aux_shape(name, labels_shape)

    def loss_terms(self, lin, out, labels, aux):
        instance, count = losses.binary_parts(lin, labels, aux.get('class_weights'))
        return _sum1(instance), _sum1(count), instance

    def error_terms(self, lin, out, labels):
        valid = labels >= 0
        return _sum1((self.prediction(lin, out) != labels) & valid), _sum1(valid)

    def probabilities(self, lin, out):
        return losses.binary_probabilities(lin)

    def prediction(self, lin, out):
        return (lin < 0).to(torch.int64)


class Affinity(_Target):
    """``'affinity'``: per-edge-direction softmax NLL of an :class:`AffinityLayer3d`."""

    name = 'affinity'
    flags_accepted = ('use_class_weights',)

    def check_layer(self):
        if not isinstance(self.layer, AffinityLayer3d):
            raise ValueError("target %r needs an affinity output layer: add the last layer with "
                             "addConvLayer(..., affinity=%r) in a 3D network; got %s"
                             % (self.name, 'malis' if self.name == 'malis' else True, type(self.layer).__name__))

    @property
    def n_edges(self):
        return self.layer.n_edges

    @property
    def n_classes(self):
        return self.layer.n_lab_per_edge

    def label_shape(self, n_examples, output_shape):
        return (n_examples, self.n_edges) + tuple(output_shape[2:])

    def loss_terms(self, lin, out, labels, aux):
        instance, count = losses.affinity_parts(lin, labels, aux.get('class_weights'), self.n_edges)
        return losses.per_edge_sums(instance), losses.per_edge_sums(count), instance

    def error_terms(self, lin, out, labels):
        valid = labels >= 0
        wrong = (self.prediction(lin, out) != labels) & valid
        return losses.per_edge_sums(wrong), losses.per_edge_sums(valid)

    def probabilities(self, lin, out):
        return losses.affinity_probabilities(lin, self.n_edges)

    def prediction(self, lin, out):
        sh = lin.shape
        return lin.reshape((sh[0], self.n_edges, sh[1] // self.n_edges) + tuple(sh[2:])).argmax(dim=2)


class Malis(Affinity):
    """``'malis'``: the MALIS loss of an affinity output against a ground-truth segmentation."""

    name = 'malis'
    required_aux = ('seg_gt',)

    def check_layer(self):
        super().check_layer()
        if self.layer.n_lab_per_edge != 2:
            raise ValueError("target 'malis' needs 2 classes per edge (disconnected, connected), the output layer has %i"
                             % self.layer.n_lab_per_edge)

    def finish(self, total, count):
        return (total / (count + 1e-6)).mean()

    def loss_terms(self, lin, out, labels, aux):
        instance, pos, neg, _ = losses.malis_parts(lin, labels, aux['seg_gt'], aux.get('class_weights'), self.n_edges)
        return _sum1(instance), _sum1(pos) + _sum1(neg), instance

    def stats(self, lin, labels, seg_gt):
        """The original's ``malis_stats`` values (see ``MixedConvNN.malis_stats``)."""
        instance, pos, neg, prob = losses.malis_parts(lin, labels, seg_gt, None, self.n_edges)
        connected = prob[:, :, 1]
        n_pos, n_neg = float(pos.sum()), float(neg.sum())
        n_tot = n_pos + n_neg
        false_splits = float(((connected < 0.5).to(pos.dtype) * pos).sum())
        false_merges = float(((connected > 0.5).to(neg.dtype) * neg).sum())
        nll = float(instance.sum()) / (n_tot + 1e-6)
        return [np.float32(nll), int(n_pos), int(n_neg), int(n_tot), int(false_splits), int(false_merges),
                np.float32((false_splits + false_merges) / (n_tot + 1e-6)),
                pos.cpu().numpy().astype(np.int64), neg.cpu().numpy().astype(np.int64)]


class Regression(_Target):
    """``'regression'``: mean squared error of the activated output."""

    name = 'regression'
    integer_labels = False

    def check_layer(self):
        if isinstance(self.layer, RecurrentLayer):
            raise ValueError('a recurrent layer cannot be the output layer; add a perceptron layer after it')

    def finish(self, total, count):
        return (total / count).mean()

    def loss_terms(self, lin, out, labels, aux):
        _, instance = losses.squared_error(out, labels)
        return _sum1(instance), torch.full((1,), instance.numel(), dtype=instance.dtype,
                                           device=instance.device), instance

    def error_terms(self, lin, out, labels):
        return None

    def probabilities(self, lin, out):
        return out

    def prediction(self, lin, out):
        return out


_CLASSES = {cls.name: cls for cls in (NLL, NLLWeak, MultipleBinary, Affinity, Malis, Regression)}


def canonical_name(target):
    """The original's name of ``target`` (accepting the corrected spelling of ``nll_mutiple_binary``).

    Raises:
        ValueError: an unknown target.
    """
    name = TARGET_ALIASES.get(target, target)
    if name not in _CLASSES:
        raise ValueError('target must be one of %s (or %s), got %r'
                         % (TARGETS, ', '.join(repr(a) for a in TARGET_ALIASES), target))
    return name


def make_target(target, layer, n_out, flags):
    """The target object for ``target`` on output ``layer`` (``n_out`` channels or units).

    Raises:
        ValueError: an unknown target, a ``use_*`` flag the target does not support, or an
            output layer that does not fit the target.
    """
    return _CLASSES[canonical_name(target)](layer, n_out, flags)


def error_rate(wrong, counted):
    """Mean over groups of ``wrong / counted`` (groups without labels left out); NaN without labels."""
    wrong = np.asarray(wrong, dtype=np.float64)
    counted = np.asarray(counted, dtype=np.float64)
    has = counted > 0
    return float(np.mean(wrong[has] / counted[has])) if has.any() else math.nan
