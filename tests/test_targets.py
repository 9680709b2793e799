"""Targets: lazy labels, label propagation and example weights against NumPy references (perceptron,
2D and 3D, every combination), nll_weak, nll_mutiple_binary, affinity, the aux-input order and
gradient checks of every new loss."""
import itertools

import numpy as np
import pytest
import torch

from elektronn.net import losses
from elektronn.net.convnet import MixedConvNN


def np_softmax(lin, axis=1):
    e = np.exp(lin - lin.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def np_nll_reference(prob, labels, cw=None, ew=None, labelled=None, not_present=None, thresh=None):
    """The loss written out term by term, position by position (the documented semantics)."""
    n_lab = prob.shape[1]
    instance = np.zeros(labels.shape)
    count = 0
    for index in np.ndindex(*labels.shape):
        b, pos = index[0], index[1:]
        label = labels[index]
        w_example = 1.0 if ew is None else ew[index]
        selected = label >= 0 and (labelled is None or labelled[b, label] == 1)
        if selected:
            w_class = 1.0 if cw is None else cw[label]
            instance[index] += -np.log(prob[(b, label) + pos] + 1e-6) * w_class * w_example
            count += 1
        for k in range(n_lab):
            p = prob[(b, k) + pos]
            w_class = 1.0 if cw is None else cw[k]
            if thresh is not None and not selected and p > thresh and (labelled is None or labelled[b, k] == 0):
                instance[index] += -np.log(p + 1e-6) * w_class * w_example
                count += 1
            if not_present is not None and not_present[b, k] == 1:
                instance[index] += -np.log(1 - p + 1e-6) * w_class * w_example
                count += 1
    return instance.sum() / max(count, 1), instance


COMBINATIONS = list(itertools.product([False, True], repeat=4))  # class weights, example weights, lazy, propagation
SHAPES = {'perceptron': (5,), '2d': (2, 3, 4), '3d': (2, 2, 3, 3)}


def random_problem(shape, n_lab=3, seed=0):
    rng = np.random.RandomState(seed)
    lin = rng.randn(shape[0], n_lab, *shape[1:]) * 2
    labels = rng.randint(-1, n_lab, shape)
    aux = dict(class_weights=rng.rand(n_lab) + 0.5, example_weights=rng.rand(*shape) + 0.5,
               mask_class_labeled=rng.randint(0, 2, (shape[0], n_lab)),
               mask_class_not_present=rng.randint(0, 2, (shape[0], n_lab)), label_prop_thresh=0.4)
    return lin, labels, aux


def reference_kwargs(aux, use_cw, use_ew, lazy, prop):
    return dict(cw=aux['class_weights'] if use_cw else None, ew=aux['example_weights'] if use_ew else None,
                labelled=aux['mask_class_labeled'] if lazy else None,
                not_present=aux['mask_class_not_present'] if lazy else None,
                thresh=aux['label_prop_thresh'] if prop else None)


@pytest.mark.parametrize('kind', sorted(SHAPES))
@pytest.mark.parametrize('use_cw, use_ew, lazy, prop', COMBINATIONS)
def test_nll_every_combination_matches_numpy(kind, use_cw, use_ew, lazy, prop):
    lin, labels, aux = random_problem(SHAPES[kind])
    ref = reference_kwargs(aux, use_cw, use_ew, lazy, prop)
    ref_loss, ref_instance = np_nll_reference(np_softmax(lin), labels, **ref)
    t = lambda a: None if a is None else torch.as_tensor(a, dtype=torch.float64)
    loss, instance = losses.nll(torch.from_numpy(lin), torch.from_numpy(labels), t(ref['cw']), t(ref['ew']),
                                t(ref['labelled']), t(ref['not_present']), ref['thresh'])
    assert float(loss) == pytest.approx(ref_loss, rel=1e-10)
    np.testing.assert_allclose(instance.numpy(), ref_instance, rtol=1e-10, atol=1e-12)


def conv_net(n_dim, n_lab=3):
    if n_dim == 2:
        cnn = MixedConvNN((6, 7), input_depth=2)
        cnn.addConvLayer(4, 3, pool_shape=1, activation_func='tanh')
        cnn.addConvLayer(n_lab, 1, pool_shape=1, activation_func='linear', is_last_layer=True)
        return cnn, np.random.RandomState(5).rand(2, 2, 6, 7).astype(np.float32), (2, 4, 5)
    cnn = MixedConvNN((4, 5, 5), input_depth=2)
    cnn.addConvLayer(4, 2, pool_shape=1, activation_func='tanh')
    cnn.addConvLayer(n_lab, 1, pool_shape=1, activation_func='linear', is_last_layer=True)
    return cnn, np.random.RandomState(5).rand(2, 4, 2, 5, 5).astype(np.float32), (2, 3, 4, 4)


@pytest.mark.parametrize('n_dim', [2, 3])
@pytest.mark.parametrize('use_cw, use_ew, lazy, prop', COMBINATIONS)
def test_network_aux_inputs_every_combination(n_dim, use_cw, use_ew, lazy, prop):
    cnn, data, label_shape = conv_net(n_dim)
    cnn.compileOutputFunctions(use_class_weights=use_cw, use_example_weights=use_ew, use_lazy_labels=lazy,
                               use_label_prop=prop)
    _, labels, aux = random_problem(label_shape, seed=n_dim)
    aux = {k: (v.astype(np.float32) if isinstance(v, np.ndarray) and v.dtype == np.float64 else v)
           for k, v in aux.items()}
    aux['mask_class_labeled'] = aux['mask_class_labeled'].astype(np.int16)  # as CNNData returns them
    aux['mask_class_not_present'] = aux['mask_class_not_present'].astype(np.int16)
    names = cnn._aux_names
    expected_order = [n for n, on in (('mask_class_labeled', lazy), ('mask_class_not_present', lazy),
                                      ('class_weights', use_cw), ('example_weights', use_ew),
                                      ('label_prop_thresh', prop)) if on]
    assert names == expected_order
    positional = [aux[n] for n in names]
    prob = cnn.class_probabilities(data).astype(np.float64)
    ref_loss, ref_instance = np_nll_reference(prob, labels, **reference_kwargs(aux, use_cw, use_ew, lazy, prop))
    loss, instance = cnn.get_loss(data, labels, *positional)
    assert loss == pytest.approx(ref_loss, rel=2e-5, abs=1e-6)
    np.testing.assert_allclose(instance, ref_instance, rtol=2e-4, atol=1e-5)
    assert cnn.get_loss(data, labels, **{n: aux[n] for n in names})[0] == loss
    step_loss = cnn.trainingStep(data, labels, *positional, mode='SGD')[0]
    assert step_loss == pytest.approx(loss, rel=1e-5)


def test_perceptron_lazy_labels_example_weights_and_propagation():
    cnn = MixedConvNN(4)
    cnn.addPerceptronLayer(3, activation_func='linear')
    cnn.compileOutputFunctions(use_class_weights=True, use_example_weights=True, use_lazy_labels=True,
                               use_label_prop=True)
    rng = np.random.RandomState(2)
    data = rng.randn(6, 4).astype(np.float32)
    _, labels, aux = random_problem((6,), seed=3)
    prob = cnn.class_probabilities(data).astype(np.float64)
    ref_loss, _ = np_nll_reference(prob, labels, **reference_kwargs(aux, True, True, True, True))
    assert cnn.get_loss(data, labels, **aux)[0] == pytest.approx(ref_loss, rel=2e-5)


def test_label_propagation_without_lazy_labels_uses_unlabelled_positions():
    prob = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], dtype=torch.float64)
    labels = torch.tensor([0, -1, -1])
    instance, count = losses.nll_parts(prob, labels, label_prop_thresh=0.7)
    expected = -np.log(np.array([0.9, 0.8, 0.0]) + 1e-6) * np.array([1, 1, 0])
    np.testing.assert_allclose(instance.numpy(), expected)
    assert count.tolist() == [1, 1, 0]


def test_aux_checks_name_the_problem():
    cnn, data, label_shape = conv_net(2)
    cnn.compileOutputFunctions(use_lazy_labels=True, use_label_prop=True)
    labels = np.zeros(label_shape, np.int16)
    good = dict(mask_class_labeled=np.ones((2, 3)), mask_class_not_present=np.zeros((2, 3)), label_prop_thresh=0.7)
    cnn.get_loss(data, labels, **good)
    with pytest.raises(ValueError, match=r'mask_class_labeled must have shape \(2, 3\)'):
        cnn.get_loss(data, labels, **dict(good, mask_class_labeled=np.ones(3)))
    with pytest.raises(ValueError, match='mask_class_not_present must hold 0/1 flags'):
        cnn.get_loss(data, labels, **dict(good, mask_class_not_present=np.full((2, 3), 2)))
    with pytest.raises(ValueError, match=r'label_prop_thresh must have shape \(\)'):
        cnn.get_loss(data, labels, **dict(good, label_prop_thresh=[0.5, 0.6]))


@pytest.mark.parametrize('target, flag', [('regression', 'use_class_weights'), ('nll_weak', 'use_lazy_labels'),
                                          ('nll_weak', 'use_example_weights'), ('affinity', 'use_label_prop')])
def test_flags_a_target_does_not_support_are_refused(target, flag):
    cnn = MixedConvNN((4, 5, 5), input_depth=1)
    cnn.addConvLayer(2, 1, pool_shape=1, activation_func='linear', is_last_layer=True,
                     affinity=target == 'affinity')
    with pytest.raises(ValueError, match='target %r does not support %s=True' % (target, flag)):
        cnn.compileOutputFunctions(target=target, **{flag: True})


# ------------------------------------------------------------------------------------------------
# nll_weak, nll_mutiple_binary, affinity
# ------------------------------------------------------------------------------------------------
def test_nll_weak_matches_numpy():
    rng = np.random.RandomState(4)
    lin = rng.randn(3, 4, 2, 2)
    labels = rng.randint(-1, 4, (3, 2, 2))
    cw = rng.rand(4) + 0.5
    prob = np_softmax(lin)
    hard = np.stack([labels == k for k in range(4)], axis=1)
    target = 0.5 * hard + 0.5 * prob
    ref_instance = -(target * np.log(prob + 1e-6) * cw[None, :, None, None]).sum(1)
    loss, instance = losses.nll_weak(torch.from_numpy(lin), torch.from_numpy(labels), torch.from_numpy(cw))
    np.testing.assert_allclose(instance.numpy(), ref_instance, rtol=1e-10)
    assert float(loss) == pytest.approx(ref_instance.sum() / (labels >= 0).sum())


def test_nll_weak_network():
    cnn = MixedConvNN(3)
    cnn.addPerceptronLayer(2, activation_func='linear')
    cnn.compileOutputFunctions(target='nll_weak', use_class_weights=True)
    data = np.random.RandomState(0).randn(8, 3).astype(np.float32)
    labels = np.array([0, 1, 1, 0, -1, 1, 0, 1])
    loss, error, prediction = cnn.get_error(data, labels, np.array([1.0, 2.0], np.float32))
    assert np.isfinite(loss) and 0 <= error <= 1 and prediction.shape == (8,)
    cnn.trainingStep(data, labels, np.array([1.0, 2.0], np.float32), mode='Adam')


@pytest.mark.parametrize('target', ['nll_mutiple_binary', 'nll_multiple_binary'])
def test_multiple_binary_loss_error_rate_and_probabilities(target):
    cnn = MixedConvNN(4)
    cnn.addPerceptronLayer(6, activation_func='tanh')
    cnn.addPerceptronLayer(3, activation_func='linear')
    cnn.compileOutputFunctions(target=target, use_class_weights=True)
    rng = np.random.RandomState(1)
    data = rng.randn(10, 4).astype(np.float32)
    labels = rng.randint(0, 2, (10, 3)).astype(np.int16)
    labels[0, 0] = -1
    cw = np.array([0.5, 2.0], np.float32)
    probs = cnn.class_probabilities(data).astype(np.float64)
    assert probs.shape == (10, 3, 2)
    np.testing.assert_allclose(probs.sum(-1), 1, rtol=1e-6)
    p0, p1 = probs[..., 0], probs[..., 1]
    valid = labels >= 0
    ref = (-np.log(p0 + 1e-6) * (1 - labels) * cw[0] - np.log(p1 + 1e-6) * labels * cw[1]) * valid
    loss, error, prediction = cnn.get_error(data, labels, cw)
    assert loss == pytest.approx(ref.sum() / valid.sum(), rel=1e-5)
    np.testing.assert_array_equal(prediction, (p1 > p0).astype(int))
    assert error == pytest.approx(((prediction != labels) & valid).sum() / valid.sum())  # an error rate
    first = loss
    for _ in range(30):
        cnn.trainingStep(data, labels, cw, mode='Adam')
    assert cnn.get_loss(data, labels, cw)[0] < first


def test_multiple_binary_needs_a_perceptron_output():
    cnn = MixedConvNN((5, 5), input_depth=1)
    cnn.addConvLayer(2, 1, pool_shape=1, is_last_layer=True)
    with pytest.raises(ValueError, match='needs a perceptron output layer'):
        cnn.compileOutputFunctions(target='nll_mutiple_binary')


def affinity_net(n_lab=2, affinity=True):
    cnn = MixedConvNN((4, 7, 7), input_depth=1)
    cnn.addConvLayer(3, (2, 3, 3), pool_shape=1, activation_func='tanh')
    cnn.addConvLayer(n_lab, 1, pool_shape=1, activation_func='linear', is_last_layer=True, affinity=affinity)
    return cnn


def test_affinity_layer_shapes_loss_and_error_match_numpy():
    cnn = affinity_net(n_lab=2)
    cnn.compileOutputFunctions(target='affinity', use_class_weights=True)
    assert cnn.n_lab == 6 and cnn.output_shape[1:] == (6, 3, 5, 5)
    rng = np.random.RandomState(3)
    data = rng.rand(2, 4, 1, 7, 7).astype(np.float32)
    labels = rng.randint(-1, 2, (2, 3, 3, 5, 5)).astype(np.int16)
    cw = np.array([0.7, 1.3], np.float32)
    prob = cnn.class_probabilities(data).astype(np.float64)
    assert prob.shape == (2, 6, 3, 5, 5)
    np.testing.assert_allclose(prob.reshape(2, 3, 2, 3, 5, 5).sum(2), 1, rtol=1e-6)
    per_edge, errors = [], []
    for e in range(3):
        p = prob[:, 2 * e:2 * e + 2]
        per_edge.append(np_nll_reference(p, labels[:, e], cw=cw)[0])
        valid = labels[:, e] >= 0
        errors.append(((p.argmax(1) != labels[:, e]) & valid).sum() / valid.sum())
    loss, error, prediction = cnn.get_error(data, labels, cw)
    assert loss == pytest.approx(np.mean(per_edge), rel=1e-5)
    assert error == pytest.approx(np.mean(errors))
    assert prediction.shape == (2, 3, 3, 5, 5)
    first = loss
    for _ in range(20):
        cnn.trainingStep(data, labels, cw, mode='Adam')
    assert cnn.get_loss(data, labels, cw)[0] < first


def test_affinity_layer_initialisation_and_errors():
    cnn = affinity_net(n_lab=2)
    layer = cnn.layers[-1]
    assert tuple(layer.W.shape) == (6, 3, 1, 1, 1) and tuple(layer.b.shape) == (6,)
    with pytest.raises(ValueError, match="compile it with target='affinity' or 'malis'"):
        affinity_net().compileOutputFunctions(target='nll')
    with pytest.raises(ValueError, match='affinity output layers need a 3D network'):
        cnn2 = MixedConvNN((6, 6), input_depth=1)
        cnn2.addConvLayer(2, 1, affinity=True)
    with pytest.raises(ValueError, match="affinity must be False, True, 'affinity' or 'malis'"):
        MixedConvNN((4, 7, 7), input_depth=1).addConvLayer(2, 1, affinity='yes')
    with pytest.raises(ValueError, match=r'labels must have shape \(2, 3, 3, 5, 5\)'):
        c = affinity_net()
        c.compileOutputFunctions(target='affinity')
        c.get_loss(np.zeros((2, 4, 1, 7, 7), np.float32), np.zeros((2, 3, 5, 5), np.int16))


# ------------------------------------------------------------------------------------------------
# gradient checks (float64)
# ------------------------------------------------------------------------------------------------
def test_gradient_nll_with_every_aux_input():
    lin, labels, aux = random_problem((2, 3, 3), seed=7)
    lin = torch.from_numpy(lin).requires_grad_()
    t = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in aux.items() if k != 'label_prop_thresh'}
    fn = lambda z: losses.nll(z, torch.from_numpy(labels), t['class_weights'], t['example_weights'],
                              t['mask_class_labeled'], t['mask_class_not_present'], 0.4)[0]
    assert torch.autograd.gradcheck(fn, (lin,), eps=1e-6, atol=1e-6, fast_mode=True)


def test_gradient_nll_weak_binary_and_affinity():
    rng = np.random.RandomState(8)
    lin = torch.from_numpy(rng.randn(3, 4, 2)).requires_grad_()
    labels = torch.from_numpy(rng.randint(-1, 4, (3, 2)))
    cw = torch.from_numpy(rng.rand(4) + 0.5)
    assert torch.autograd.gradcheck(lambda z: losses.nll_weak(z, labels, cw)[0], (lin,), fast_mode=True)
    lin = torch.from_numpy(rng.randn(5, 3)).requires_grad_()
    labels = torch.from_numpy(rng.randint(-1, 2, (5, 3)))
    cw = torch.tensor([0.5, 1.5], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda z: losses.nll_multiple_binary(z, labels, cw)[0], (lin,), fast_mode=True)
    lin = torch.from_numpy(rng.randn(2, 6, 2, 3, 3)).requires_grad_()
    labels = torch.from_numpy(rng.randint(-1, 2, (2, 3, 2, 3, 3)))
    assert torch.autograd.gradcheck(lambda z: losses.affinity_nll(z, labels, cw)[0], (lin,), fast_mode=True)


def test_unknown_target_lists_the_known_ones():
    cnn = MixedConvNN(3)
    cnn.addPerceptronLayer(2)
    with pytest.raises(ValueError, match="target must be one of .*'nll_multiple_binary'.* got 'nl'"):
        cnn.compileOutputFunctions(target='nl')
