"""Compiling ``MixedConvNN``'s outputs, evaluating the loss and stepping its optimisers.

:class:`TrainingStepMixin` holds ``compileOutputFunctions``, the forward passes and the objective,
the evaluation callables (``get_error``, ``get_loss``, ``class_probabilities``, ``prediction``,
``malis_stats``, ``predictDense``), ``trainingStep`` with the optimiser settings and states, and
the dropout rates of :class:`~elektronn.net.convnet.MixedConvNN`.
"""
import logging
import math
import time
import warnings

import numpy as np
import torch

from elektronn.net import device as _device
from elektronn.net import precision as _precision
from elektronn.net import targets as _targets
from elektronn.net.layers.conv import _ConvLayer
from elektronn.net.net_builder import _check_flag, _printOps
from elektronn.net.net_inputs import _StagedBatch
from elektronn.net.optimizers import DEFAULT_PARAMS, OPTIMIZERS, RPROP_RESET_STEP, check_settings
from elektronn.net.prediction import predict_dense

logger = logging.getLogger(__name__)

__all__ = ['TrainingStepMixin', 'TARGETS', 'MODES']

#: Targets of ``compileOutputFunctions`` (``'nll_multiple_binary'`` is accepted for ``'nll_mutiple_binary'``).
TARGETS = _targets.TARGETS

#: Optimiser modes of ``trainingStep``.
MODES = ('SGD', 'Adam', 'RPROP', 'CG', 'LBFGS')

#: Evaluation is done in chunks whose activations take about this many bytes.
_EVAL_CHUNK_BYTES = 256 * 2 ** 20


class TrainingStepMixin:
    """The compiled callables, training and dropout of :class:`~elektronn.net.convnet.MixedConvNN`
    (documented there)."""

    # ------------------------------------------------------------------------------------------------
    # Compiling
    # ------------------------------------------------------------------------------------------------
    def compileOutputFunctions(self, target='nll', use_class_weights=False, use_example_weights=False,
                               use_lazy_labels=False, use_label_prop=False, only_forward=False):
        """Fix the loss and make ``get_error``, ``get_loss``, ``class_probabilities``, ``prediction``
        and ``trainingStep`` available.

        Args:
            target: ``'nll'`` (softmax negative log-likelihood, labels ``< 0`` ignored),
                ``'regression'`` (mean squared error on the activated output), ``'nll_weak'``
                (NLL against half label, half prediction), ``'nll_mutiple_binary'`` (also spelt
                ``'nll_multiple_binary'``: independent two-class outputs of a perceptron layer),
                ``'affinity'`` (affinity graphs, needs an affinity output layer) or ``'malis'``
                (MALIS loss on an affinity output). See :mod:`elektronn.net.targets`.
            use_class_weights: The loss takes ``class_weights`` ``(n_lab,)`` (``(2,)`` for
                ``'nll_mutiple_binary'`` and ``'malis'``).
            use_example_weights: The loss takes ``example_weights`` shaped like the labels (``'nll'``).
            use_lazy_labels: The loss takes the lazy-label masks ``mask_class_labeled`` and
                ``mask_class_not_present`` ``(bs, n_lab)`` (``'nll'``).
            use_label_prop: The loss takes ``label_prop_thresh`` (a scalar) for label propagation (``'nll'``).
            only_forward: Evaluation only (no ``trainingStep``).

        Auxiliary inputs follow data and labels, positionally in the order ``seg_gt`` (``'malis'``),
        ``mask_class_labeled, mask_class_not_present, class_weights, example_weights,
        label_prop_thresh`` (those enabled; ``cnn._aux_names`` lists them), or by keyword.
        """
        if not self.layers:
            raise RuntimeError('compileOutputFunctions: the network has no layers; add layers first')
        _targets.canonical_name(target)
        flags = {name: _check_flag(value, name) for name, value in (
            ('use_class_weights', use_class_weights), ('use_example_weights', use_example_weights),
            ('use_lazy_labels', use_lazy_labels), ('use_label_prop', use_label_prop), ('only_forward', only_forward))}
        self._append_pending_chain()
        last = self.layers[-1]
        n_out = last.output_shape_internal[1]
        target_obj = _targets.make_target(target, last, n_out, flags)

        logger.info('GLOBAL')
        _printOps(self.TotalForwardPassCost)
        self.t_graph = time.time()
        self.params = self._unique_parameters()
        self.param_count = int(sum(p.numel() for p in self.params))
        logger.info('Total Count of trainable Parameters: %s', self.param_count)
        logger.info('Building Computational Graph took %.3f s', self.t_graph - self.t_init)
        logger.info('Compiling output functions for %s target:', target)
        logger.info('\t%s', 'using class_weights' if flags['use_class_weights'] else 'using no class_weights')
        logger.info('\t%s', 'using example_weights' if flags['use_example_weights'] else 'using no example_weights')
        logger.info('\t%s', 'using lazy_labels' if flags['use_lazy_labels'] else 'using no lazy_labels')
        logger.info('\t%s', 'label propagation active' if flags['use_label_prop'] else 'label propagation inactive')
        if len(self._output_layers):
            warnings.warn('<compileOutputFunctions> only applies to the LAST layer in self.layers '
                          '(and ignores elements of self._output_layers)', stacklevel=2)

        self.target = target
        self._target = target_obj
        self.n_lab = target_obj.n_lab
        self._only_forward = flags['only_forward']
        self._aux_names = list(target_obj.aux_names)
        if isinstance(last, _ConvLayer):
            self.output_shape = (last.output_shape_internal[0], n_out) + tuple(last.output_shape_internal[2:])
            self.output_strides = [int(s) for s in np.prod(np.array(self.poolings), axis=0)]
            if self.mfp_strides is not None:
                self.output_strides = [s // m for s, m in zip(self.output_strides, self.mfp_strides)]
        else:
            self.output_shape = (last.output_shape_internal[0], n_out)
            self.output_strides = None
        self._eval_chunk = self._evaluation_chunk_size()
        self.to(_device.current_device() if not self._compiled else self.device)
        self.setMemoryFormat(self._default_memory_format())
        self._optimizers = {}
        self.eval()
        self._compiled = True
        logger.info(' Compiling done  - in %.3f s!', time.time() - self.t_graph)
        logger.info('-' * 60)
        logger.info('-' * 60)

    def _append_pending_chain(self):
        """Append an autoencoder chain kept aside (``add_layers_to_network=False``) to the layers."""
        pending = [layer for layer in self._autoencoder_chains if not any(layer is m for m in self.layers)]
        if not pending:
            return
        if self.layers[-1] is not pending[0].mirror:
            raise RuntimeError('compileOutputFunctions: layers were added after addTiedAutoencoderChain('
                               'add_layers_to_network=False); the chain must follow the layers it mirrors')
        self.layers.extend(pending)

    def _unique_parameters(self):
        seen, out = set(), []
        for layer in self.layers:
            for p in layer.own_parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    out.append(p)
        return out

    def _evaluation_chunk_size(self):
        per_example = sum(int(np.prod(layer.output_shape_internal[1:])) for layer in self.layers)
        per_example += int(np.prod(self._internal_input_shape()[1:]))
        return max(1, _EVAL_CHUNK_BYTES // (3 * 4 * per_example))

    def _internal_input_shape(self):
        if self.input_depth is not None and self.n_dim == 3:
            s = self.input_shape
            return (s[0], s[2], s[1], s[3], s[4])
        return self.input_shape
    def _require_compiled(self, what, training=False):
        if not self._compiled:
            raise RuntimeError('%s: call compileOutputFunctions() first' % what)
        if training and self._only_forward:
            raise RuntimeError('%s: the network was compiled with only_forward=True; compile it again without it'
                               % what)
    # ------------------------------------------------------------------------------------------------
    # Forward passes and the objective
    # ------------------------------------------------------------------------------------------------
    def _run(self, x):
        """Forward pass in PyTorch layout: ``(linear output, activated output)`` of the last layer.

        In reduced precision the layers run under autocast; the linear output is brought back to
        float32 before the activation, so that softmax, the loss and the outputs are float32.
        """
        last = self.layers[-1]
        with _precision.autocast(self._compute_precision, x.device):
            for layer in self.layers[:-1]:
                x = layer(x)
            lin = last.linear(x)
        if lin.dtype in (torch.bfloat16, torch.float16):
            lin = lin.float()
        return lin, last.activate(lin)

    def forward(self, x):
        """The network's (activated) output for a tensor ``x`` in the original input layout."""
        if self.n_dim == 3 and self.input_depth is not None:
            x = x.permute(0, 2, 1, 3, 4)
        return self._run(x)[1]

    def _objective(self, x, y, aux, replicated=False):
        """``(loss, loss_instance, lin, out)`` for a batch in PyTorch layout.

        With ``replicated`` (a forward pass that a backward pass follows) the output comes through the
        DistributedDataParallel wrapper, if any, whose backward pass all-reduces the gradients.
        """
        lin, out = self._run(x) if not replicated or self._ddp is None else self._ddp(x)
        loss, instance = self._target.loss(lin, out, y, aux)
        return loss, instance, lin, out

    def _chunks(self, n):
        step = self._eval_chunk
        return [(i, min(n, i + step)) for i in range(0, max(n, 1), step)]

    def _evaluate(self, x, y, aux):
        """Loss, error and predictions over all of ``x`` in memory-bounded chunks, without dropout."""
        was_training = self.training
        self.eval()
        target = self._target
        totals = counts = wrong = counted = 0
        instances, outputs = [], []
        try:
            with torch.no_grad():
                for a, b in self._chunks(x.shape[0]):
                    chunk_aux = {k: (v[a:b] if k in _targets.PER_EXAMPLE_AUX else v) for k, v in aux.items()}
                    lin, out = self._run(x[a:b])
                    total, count, instance = target.loss_terms(lin, out, y[a:b], chunk_aux)
                    totals = totals + total.double().cpu()
                    counts = counts + count.double().cpu()
                    instances.append(instance)
                    outputs.append(target.prediction(lin, out))
                    errors = target.error_terms(lin, out, y[a:b])
                    if errors is not None:
                        wrong = wrong + errors[0].double().cpu()
                        counted = counted + errors[1].double().cpu()
        finally:
            self.train(was_training)
        loss = np.float32(target.finish(totals, counts))
        error = math.nan if isinstance(counted, int) else _targets.error_rate(wrong.numpy(), counted.numpy())
        return loss, error, torch.cat(instances), torch.cat(outputs)

    # ------------------------------------------------------------------------------------------------
    # The compiled callables
    # ------------------------------------------------------------------------------------------------
    def get_error(self, data, labels, *aux, **aux_kwargs):
        """Loss, error and prediction on a (large) batch, without dropout.

        Returns:
            ``[loss, error_rate, class_prediction]`` for classification targets (error over the
            labelled positions); ``(mse, output)`` for ``'regression'``.
        """
        self._require_compiled('get_error')
        x, y, a = self._prepare(data, labels, aux, aux_kwargs)
        loss, error, _, outputs = self._evaluate(x, y, a)
        outputs = outputs.cpu().numpy()
        if self.target == 'regression':
            return loss, outputs
        return [loss, error, outputs]

    def get_loss(self, data, labels, *aux, **aux_kwargs):
        """``(loss, loss_instance)`` on a batch, without dropout (``loss_instance``: per example/position)."""
        self._require_compiled('get_loss')
        x, y, a = self._prepare(data, labels, aux, aux_kwargs)
        loss, _, instance, _ = self._evaluate(x, y, a)
        return loss, instance.cpu().numpy()

    def malis_stats(self, data, labels, seg_gt):
        """MALIS statistics on a batch (target ``'malis'``), without dropout.

        Returns:
            The original's list ``[nll, n_pos, n_neg, n_tot, false_splits, false_merges,
            rand_index, pos_count, neg_count]``: the MALIS loss, the numbers of voxel pairs that
            should be connected / separated (and their sum), the pair counts of edges predicted
            disconnected although their pairs belong together (false splits) and connected
            although they do not (false merges), ``(false_splits + false_merges) / n_tot``, and
            the per-edge pair counts ``(bs, 3, z, x, y)``.
        """
        self._require_compiled('malis_stats')
        if self._target.name != 'malis':
            raise RuntimeError("malis_stats needs a network compiled with target='malis', this one has %r"
                               % (self.target,))
        x = self._to_input(data)
        y = self._to_labels(labels, x.shape[0])
        seg = self._aux_tensor('seg_gt', seg_gt, y.shape)
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                lin, _ = self._run(x)
                return self._target.stats(lin, y, seg)
        finally:
            self.train(was_training)

    def class_probabilities(self, data):
        """Softmax of the output layer (``(bs, n_lab[, z], x, y)`` for conv outputs); for
        ``'regression'`` the activated output; ``(bs, n_out, 2)`` for ``'nll_mutiple_binary'``;
        ``(bs, 3 * n_lab, z, x, y)`` (one softmax per edge direction) for affinity outputs."""
        self._require_compiled('class_probabilities')
        x = self._to_input(data)
        return self._predict(x, probabilities=True)

    def prediction(self, data):
        """The activated output for ``'regression'``; the arg-max class for classification targets."""
        self._require_compiled('prediction')
        x = self._to_input(data)
        return self._predict(x, probabilities=False)

    def _predict(self, x, probabilities=True):
        was_training = self.training
        self.eval()
        parts = []
        try:
            with torch.no_grad():
                for a, b in self._chunks(x.shape[0]):
                    lin, out = self._run(x[a:b])
                    parts.append(self._target.probabilities(lin, out) if probabilities
                                 else self._target.prediction(lin, out))
        finally:
            self.train(was_training)
        result = torch.cat(parts)
        return (result.float() if probabilities else result).cpu().numpy()

    def predictDense(self, raw_img, show_progress=True, offset=None, as_uint8=False, pad_raw=False, precision=None,
                     tta=False):
        """Predict every voxel of an image ``(ch, x, y)`` or volume ``(ch, x, y, z)`` (xyz order; a 2D
        network predicts a volume slice by slice).

        Integer input is divided by 255. Returns ``(n_lab, x', y'[, z'])`` probabilities (float32, or
        uint8 scaled by 255 with ``as_uint8``), inset by the offset ``floor(fov / 2)`` per side, or
        of the input's shape with ``pad_raw`` (mirror padding). Prints the tiling, progress and speed.
        ``precision`` (``'fp32'``, ``'bf16'``, ``'fp16'``, ``'auto'``; default: the network's, see
        :meth:`setPrecision`) is the precision of this prediction. ``tta`` (``True``, ``'xy'``, ``'xyz'``)
        averages the predictions of flipped and xy-transposed inputs (see :mod:`elektronn.net.tta`).
        See :func:`elektronn.net.prediction.predict_dense` for the details and the voxel alignment.
        """
        return predict_dense(self, raw_img, show_progress=show_progress, offset=offset, as_uint8=as_uint8,
                             pad_raw=pad_raw, precision=precision, tta=tta)

    # ------------------------------------------------------------------------------------------------
    # Training
    # ------------------------------------------------------------------------------------------------
    def _optimizer(self, mode):
        if mode not in MODES:
            raise ValueError('mode must be one of %s, got %r' % (MODES, mode))
        if mode not in self._optimizers:
            t0 = time.time()
            logger.info('Compiling %s', mode)
            settings = self._SGD_params if mode == 'SGD' else getattr(self, '_%s_params' % mode)
            extra = {'timeline': self.CG_timeline} if mode == 'CG' else {}
            self._optimizers[mode] = OPTIMIZERS[mode](self.params, settings, self.global_weightdecay, **extra)
            logger.info(' Compiling done  - in %.3f s!', time.time() - t0)
        return self._optimizers[mode]

    def _is_stochastic(self):
        """Whether training-mode forward passes draw random numbers (dropout, input noise)."""
        return any(getattr(layer, 'dropout_rate', None) or getattr(layer, 'input_noise', None)
                   for layer in self.layers)

    def _closure(self, x, y, aux, repeatable):
        """The loss closure of one training step (see :meth:`_Optimizer.step`).

        With ``repeatable`` every call draws the same dropout masks and input noise, so that an
        optimiser evaluating the loss several times (CG, LBFGS) compares one and the same function.
        """
        seed = int(torch.randint(0, 2 ** 62, (1,))) if repeatable and self._is_stochastic() else None
        device = self.device
        rng_devices = [device.index if device.index is not None else torch.cuda.current_device()] \
            if device.type == 'cuda' else []

        scaler = self.loss_scaler if self._compute_precision == 'fp16' else None

        def evaluate(backward):
            for p in self.params:
                p.grad = None
            if not backward:
                with torch.no_grad():
                    loss, instance, _, _ = self._objective(x, y, aux)
                return loss, instance
            loss, instance, _, _ = self._objective(x, y, aux, replicated=True)
            if scaler is None:
                loss.backward()
            else:  # float16 gradients of a small loss underflow: scale up, and back down before the update
                (loss * scaler.scale).backward()
                scaler.update(scaler.unscale(self.params))  # an overflow drops the gradients: no update
            return loss.detach(), instance.detach()

        def closure(backward=True):
            if seed is None:
                return evaluate(backward)
            with torch.random.fork_rng(devices=rng_devices):
                torch.manual_seed(seed)
                return evaluate(backward)

        return closure

    def trainingStep(self, *args, mode='SGD', update_loss=False, **aux_kwargs):
        """One optimiser iteration on a batch.

        Signature: ``cnn.trainingStep(data, labels[, *aux], mode='SGD', update_loss=False)``; auxiliary
        inputs may also be given by keyword (``class_weights=...``). Instead of the arrays, the
        Trainer passes a batch staged ahead with ``_stage_batch``.

        Args:
            mode: ``'SGD'``, ``'Adam'``, ``'RPROP'``, ``'CG'`` or ``'LBFGS'``; each keeps its own
                state, so the mode can change between steps (see :mod:`elektronn.net.optimizers`).
            update_loss: Return the loss after the update instead of before it (CG and LBFGS
                always return the loss after their update).

        Returns:
            ``(loss, loss_instance, seconds)``: the float32 loss, the per-example (per-position)
            loss and the time the step took.
        """
        self._require_compiled('trainingStep', training=True)
        staged = len(args) == 1 and isinstance(args[0], _StagedBatch)
        if len(args) < 2 and not staged:
            raise TypeError('trainingStep needs data and labels, got %i positional argument(s)' % len(args))
        t0 = time.time()
        optimizer = self._optimizer(mode)
        if staged:
            if aux_kwargs:
                raise TypeError('trainingStep: a staged batch carries its auxiliary inputs, got %s'
                                % sorted(aux_kwargs))
            x, y, aux = args[0].take()
        else:
            x, y, aux = self._prepare(args[0], args[1], args[2:], aux_kwargs)
        # CG and LBFGS compute in float32: their line searches compare losses closely
        with self._computing_in('fp32' if mode in ('CG', 'LBFGS') else self.precision):
            closure = self._closure(x, y, aux, repeatable=optimizer.repeatable_closure)
            self.train()
            try:
                loss, instance = optimizer.step(closure)
            finally:
                self.eval()
        if update_loss:
            loss, _, instance, _ = self._evaluate(x, y, aux)
        loss = np.float32(float(loss))  # NumPy cannot read a GPU tensor itself
        return loss, instance.cpu().numpy(), (time.time() - t0) + 1e-10

    def setOptimizerParams(self, SGD={}, CG={}, RPROP={}, LBFGS={}, Adam={}, weight_decay=0.0):
        """Set optimiser hyper-parameters (defaults first, then the given entries) and the global weight decay.

        ``weight_decay`` is an L2 coefficient shared by all optimisers (``False`` means 0).
        The dicts of optimisers already in use are updated in place, so changes act at once.

        Raises:
            ValueError: an unknown or out-of-range CG / LBFGS hyper-parameter.
        """
        for name, value in (('SGD', SGD), ('CG', CG), ('RPROP', RPROP), ('LBFGS', LBFGS), ('Adam', Adam)):
            if not isinstance(value, dict):
                raise TypeError('%s must be a dict of hyper-parameters, got %r' % (name, value))
        checked = {}
        for name, value in (('CG', CG), ('LBFGS', LBFGS)):
            checked[name] = dict(DEFAULT_PARAMS[name], **value)
            check_settings(name, checked[name])
        self.setWeightDecay(0.0 if weight_decay is False or weight_decay is None else weight_decay)
        self.setSGDLR(SGD.get('LR', DEFAULT_PARAMS['SGD']['LR']))
        self.setSGDMomentum(SGD.get('momentum', DEFAULT_PARAMS['SGD']['momentum']))
        self._RPROP_params.clear()
        self._RPROP_params.update(DEFAULT_PARAMS['RPROP'], **RPROP)
        self._Adam_params.clear()
        self._Adam_params.update(DEFAULT_PARAMS['Adam'], **Adam)
        for name in ('CG', 'LBFGS'):
            params = getattr(self, '_%s_params' % name)
            params.clear()
            params.update(checked[name])

    def setSGDLR(self, value=0.09):
        """Set the SGD learning rate (``SGD_LR``), as the original's ``setSGDLR``."""
        self.SGD_LR.set_value(value)

    def setSGDMomentum(self, value=0.9):
        """Set the SGD momentum (``SGD_momentum``)."""
        self.SGD_momentum.set_value(value)

    def setWeightDecay(self, value=0.0005):
        """Set the global weight decay (a number >= 0, else ``ValueError``)."""
        if not np.isscalar(value) or value < 0:
            raise ValueError('weight_decay must be a non-negative number, got %r' % (value,))
        self.global_weightdecay.set_value(value)

    def getLR(self, mode='SGD'):
        """The learning rate of optimiser ``mode`` (``None`` for RPROP, CG and LBFGS, which have none)."""
        if mode == 'SGD':
            return float(self.SGD_LR)
        if mode in ('RPROP', 'CG', 'LBFGS'):
            return None
        params = getattr(self, '_%s_params' % mode, None)
        if params is None:
            raise ValueError('unknown optimiser %r' % (mode,))
        return params.get('LR')

    def setLR(self, value, mode='SGD'):
        """Set the learning rate of optimiser ``mode`` (what LR decay and the console's ``setlr`` use)."""
        if mode == 'SGD':
            self.setSGDLR(value)
        elif mode in ('RPROP', 'CG', 'LBFGS'):
            logger.info('%s has no learning rate (%s); LR unchanged',
                        mode, 'it adapts per-element step sizes' if mode == 'RPROP' else 'it searches its step sizes')
        else:
            params = getattr(self, '_%s_params' % mode, None)
            if params is None:
                raise ValueError('unknown optimiser %r' % (mode,))
            params['LR'] = float(value)

    def resetMomenta(self):
        """Forget every optimiser's accumulated state (momenta; RPROP step sizes go to 1e-3)."""
        logger.info('CNN: resetting momenta')
        for name, opt in self._optimizers.items():
            if name == 'RPROP':
                opt.reset(step_size=RPROP_RESET_STEP)
            else:
                opt.reset()

    def randomizeWeights(self, reset_momenta=True):
        """Draw new weights for every layer (Glorot uniform, as the original's re-initialisation)."""
        logger.info('CNN: Randomizing weights')
        for layer in list(self.layers) + list(self._output_layers):
            layer.reset_parameters(mode='uni')
        if reset_momenta:
            self.resetMomenta()

    def optimizer_state(self):
        """States of all optimisers used so far (NumPy arrays), e.g. to resume a training run."""
        return {name: opt.state_dict() for name, opt in self._optimizers.items()}

    def load_optimizer_state(self, states):
        """Restore what :meth:`optimizer_state` returned (e.g. when resuming a training run)."""
        for name, state in states.items():
            self._optimizer(name).load_state_dict(state)

    # ------------------------------------------------------------------------------------------------
    # Dropout
    # ------------------------------------------------------------------------------------------------
    def _dropout_layers(self):
        return [layer for layer in self.layers if layer.has_dropout]

    def getDropoutRates(self):
        """Dropout rates of the layers that have dropout, in layer order."""
        return [float(layer.dropout_rate) for layer in self._dropout_layers()]

    def setDropoutRates(self, rates):
        """Set dropout rates: one per layer (layers without dropout skip theirs), or one per layer
        that has dropout (the list ``getDropoutRates`` returns)."""
        rates = [float(r) for r in np.atleast_1d(np.asarray(rates, dtype=float))]
        for r in rates:
            if not 0.0 <= r <= 1.0:
                raise ValueError('dropout rates must lie in [0, 1], got %r' % (r,))
        with_dropout = self._dropout_layers()
        if len(rates) == len(with_dropout):
            targets = with_dropout
        elif len(rates) <= len(self.layers):
            targets = [layer for layer, _ in zip(self.layers, rates)]
        else:
            raise ValueError('got %i dropout rates; give one per layer (%i) or one per layer with dropout (%i)'
                             % (len(rates), len(self.layers), len(with_dropout)))
        for layer, r in zip(targets, rates):
            if layer.has_dropout:
                layer.dropout_rate = float(r)
