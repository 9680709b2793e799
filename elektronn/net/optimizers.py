"""Optimisers behind one interface: ``step(closure) -> (loss, loss_instance)``.

Each optimiser keeps its own state (momenta, step sizes), so switching ``trainingStep(mode=...)``
between them at runtime never mixes states. Hyper-parameters are read at every step from a live
settings dict (values may be :class:`SharedScalar`), so changing the learning rate or momentum
between steps takes effect at once.

Update rules (``g`` gradient, ``wd`` the network's global weight decay):

* **SGD** (the original's form): ``v <- g + momentum * v``; ``p <- p - LR * v - LR * wd * p``.
* **Adam**: ``m <- b1 m + (1 - b1) g``; ``v <- b2 v + (1 - b2) g^2``;
  ``p <- p - LR sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps) - LR * wd * p``. Unlike the
  original, the LR is live (decay, ``setlr``) and weight decay is applied.
* **RPROP**: per-element step sizes ``s`` (start ``initial_update_size``) are multiplied by
  ``1 - penalty`` when the gradient's sign flips (``g * g_last < -1e-9``) and by ``1 + gain`` when it
  holds (``> 1e-11``), clipped to ``[1e-7, 2e-3]``; ``p <- p - s * g / (|g| + 1e-6) - wd * p`` with the
  step size from before the adaptation, as in the original.
"""
import time

import numpy as np
import torch

__all__ = ['SharedScalar', 'SGD', 'Adam', 'RPROP', 'OPTIMIZERS', 'DEFAULT_PARAMS']

#: Per-optimiser defaults used by ``MixedConvNN.setOptimizerParams``.
DEFAULT_PARAMS = {
    'SGD': dict(LR=0.001, momentum=0.9),
    'RPROP': dict(penalty=0.35, gain=0.2, beta=0.7, initial_update_size=1e-4),
    'Adam': dict(LR=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8),
}

#: RPROP step sizes after ``resetMomenta`` (the original's constant).
RPROP_RESET_STEP = 1e-3


class SharedScalar:
    """A mutable float with the ``get_value``/``set_value`` interface of the original's shared variables.

    Scripts written for the original (``cnn.SGD_LR.set_value(0.01)``) keep working, and the
    optimisers read the current value at every step.
    """

    def __init__(self, value, name=''):
        self.name = name
        self._value = float(value)

    def get_value(self):
        return np.float32(self._value)

    def set_value(self, value, borrow=False):  # ``borrow`` is accepted for compatibility
        self._value = float(value)

    def __float__(self):
        return self._value

    def __repr__(self):
        return '%s(%g)' % (self.name or 'SharedScalar', self._value)


def _grads(params):
    """Parameters that received a gradient, and those gradients."""
    ps = [p for p in params if p.grad is not None]
    return ps, [p.grad for p in ps]


class _Optimizer:
    """Base: a list of parameters, a live settings dict and a weight-decay scalar.

    Args:
        params: The parameters to optimise (each once).
        settings: Live dict of hyper-parameters (read at every step).
        weight_decay: Live global weight decay (a :class:`SharedScalar` or float).
    """

    name = None

    def __init__(self, params, settings, weight_decay=0.0):
        self.params = list(params)
        self.settings = settings
        self.weight_decay = weight_decay
        self.t_init = time.time()
        self.reset()

    def _setting(self, key):
        try:
            return float(self.settings[key])
        except KeyError:
            raise KeyError('%s needs the hyper-parameter %r; set it with setOptimizerParams(%s={%r: ...})'
                           % (self.name, key, self.name, key)) from None

    @property
    def lr(self):
        return self._setting('LR')

    @lr.setter
    def lr(self, value):
        if isinstance(self.settings.get('LR'), SharedScalar):
            self.settings['LR'].set_value(value)
        else:
            self.settings['LR'] = float(value)

    def reset(self):
        """Forget the accumulated state (momenta, moments, step sizes)."""
        self.state = {}

    def _buffers(self, key, fill=0.0):
        if key not in self.state:
            self.state[key] = [torch.full_like(p, fill) for p in self.params]
        return self.state[key]

    def _select(self, key, params):
        """The state buffers of ``key`` belonging to ``params`` (a subset of ``self.params``)."""
        index = {id(p): i for i, p in enumerate(self.params)}
        buffers = self._buffers(key)
        return [buffers[index[id(p)]] for p in params]

    def step(self, closure):
        """Evaluate ``closure`` (forward + backward, returns ``(loss, loss_instance)``) and update."""
        loss, instance = closure()
        with torch.no_grad():
            self._update()
        return loss, instance

    def _update(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def state_dict(self):
        """State as NumPy arrays, for saving a run."""
        return {k: ([b.detach().cpu().numpy() for b in v] if isinstance(v, list) else v)
                for k, v in self.state.items()}

    def load_state_dict(self, state):
        self.reset()
        for k, v in state.items():
            if isinstance(v, list):
                if len(v) != len(self.params):
                    raise ValueError('%s state %r has %i arrays, the network has %i parameters'
                                     % (self.name, k, len(v), len(self.params)))
                self.state[k] = [torch.as_tensor(np.asarray(a), dtype=p.dtype, device=p.device).clone()
                                 for a, p in zip(v, self.params)]
            else:
                self.state[k] = v


class SGD(_Optimizer):
    """Stochastic gradient descent with the original's momentum and weight-decay form."""

    name = 'SGD'

    def _update(self):
        params, grads = _grads(self.params)
        if not params:
            return
        lr, momentum, wd = self._setting('LR'), self._setting('momentum'), float(self.weight_decay)
        velocity = self._select('velocity', params)
        if momentum != 0:
            torch._foreach_mul_(velocity, momentum)
            torch._foreach_add_(velocity, grads)
        else:
            torch._foreach_copy_(velocity, grads)
        if wd:
            torch._foreach_mul_(params, 1.0 - lr * wd)
        torch._foreach_add_(params, velocity, alpha=-lr)


class Adam(_Optimizer):
    """Adam with the original's bias-corrected step size and epsilon placement."""

    name = 'Adam'

    def _update(self):
        params, grads = _grads(self.params)
        if not params:
            return
        lr, wd = self._setting('LR'), float(self.weight_decay)
        beta1, beta2, eps = self._setting('beta1'), self._setting('beta2'), self._setting('epsilon')
        t = self.state.get('t', 0) + 1
        self.state['t'] = t
        m, v = self._select('m', params), self._select('v', params)
        torch._foreach_lerp_(m, grads, 1.0 - beta1)
        torch._foreach_mul_(v, beta2)
        torch._foreach_addcmul_(v, grads, grads, value=1.0 - beta2)
        denom = torch._foreach_sqrt(v)
        torch._foreach_add_(denom, eps)
        if wd:
            torch._foreach_mul_(params, 1.0 - lr * wd)
        step = lr * np.sqrt(1.0 - beta2 ** t) / (1.0 - beta1 ** t)
        torch._foreach_addcdiv_(params, m, denom, value=-step)


class RPROP(_Optimizer):
    """Resilient back-propagation with the original's constants."""

    name = 'RPROP'

    @property
    def lr(self):
        return None  # RPROP adapts a step size per element; there is no learning rate to set

    @lr.setter
    def lr(self, value):
        print('RPROP has no learning rate (it adapts per-element step sizes); LR unchanged')

    def reset(self, step_size=None):
        super().reset()
        self._reset_step = step_size

    def _update(self):
        params, grads = _grads(self.params)
        if not params:
            return
        wd = float(self.weight_decay)
        init = self._reset_step if self._reset_step is not None else self._setting('initial_update_size')
        if 'step_size' not in self.state:
            self.state['step_size'] = [torch.full_like(p, init) for p in self.params]
        penalty, gain = self._setting('penalty'), self._setting('gain')
        steps, last = self._select('step_size', params), self._select('last_grad', params)
        for p, g, s, g_last in zip(params, grads, steps, last):
            product = g * g_last
            factor = 1.0 - penalty * (product < -1e-9).to(g.dtype) + gain * (product > 1e-11).to(g.dtype)
            if wd:
                p.mul_(1.0 - wd)
            p.addcdiv_(s * g, g.abs() + 1e-6, value=-1.0)
            s.mul_(factor).clamp_(1e-7, 2e-3)
            g_last.copy_(g)


OPTIMIZERS = {cls.name: cls for cls in (SGD, Adam, RPROP)}
