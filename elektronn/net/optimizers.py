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
* **CG**: nonlinear conjugate gradient, ``n_steps`` backtracking line searches per call on the
  same batch (see :class:`CG`).
* **LBFGS**: ``scipy.optimize``'s L-BFGS-B on the flattened parameters (see :class:`LBFGS`).

CG and LBFGS evaluate the loss several times per call. The closure they receive takes a
``backward`` flag (``closure(backward=False)`` evaluates the loss only), and
:meth:`~elektronn.net.convnet.MixedConvNN.trainingStep` gives them the same dropout masks at
every evaluation of one call, so the line searches compare losses of one and the same function.
Both minimise ``loss + wd / 2 * sum(p ** 2)`` (the L2 penalty whose gradient is the weight decay
of SGD) and report the plain loss.

The original's entry points ``compileSGD``, ``compileAdam``, ``compileRPROP``, ``compileCG`` and
``compileLBFGS`` (and their base ``Optimizer``, here :class:`CompiledOptimizer`) compiled a Theano
update function for a network; here they set a network's hyper-parameters and return a callable
that runs :meth:`~elektronn.net.convnet.MixedConvNN.trainingStep` with their mode.
"""
import logging
import math
import time

import numpy as np
import torch

logger = logging.getLogger(__name__)

__all__ = ['SharedScalar', 'SGD', 'Adam', 'RPROP', 'CG', 'LBFGS', 'OPTIMIZERS', 'DEFAULT_PARAMS',
           'check_settings', 'CompiledOptimizer', 'compileSGD', 'compileAdam', 'compileRPROP', 'compileCG',
           'compileLBFGS']

#: Per-optimiser defaults used by ``MixedConvNN.setOptimizerParams``.
DEFAULT_PARAMS = {
    'SGD': dict(LR=0.001, momentum=0.9),
    'RPROP': dict(penalty=0.35, gain=0.2, beta=0.7, initial_update_size=1e-4),
    'Adam': dict(LR=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8),
    'CG': dict(n_steps=3, alpha=0.35, beta=0.7, max_step=0.02, min_step=8e-5, only_descent=False, show=False),
    'LBFGS': dict(maxfun=40, maxiter=4, m=10, factr=1e2, pgtol=1e-9, iprint=-1),
}

#: Extra L-BFGS-B settings accepted besides the defaults' keys (passed on to scipy).
_LBFGS_EXTRA = ('maxls',)

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
        """The value (float32)."""
        return np.float32(self._value)

    def set_value(self, value, borrow=False):  # ``borrow`` is accepted for compatibility
        """Set the value; the optimisers use it from their next step on."""
        self._value = float(value)

    def __float__(self):
        return self._value

    def __repr__(self):
        return '%s(%g)' % (self.name or 'SharedScalar', self._value)


def _per_parameter(values):
    """Whether a state entry holds one array per parameter (not a tuple of scalars)."""
    return len(values) > 0 and all(isinstance(v, np.ndarray) or torch.is_tensor(v) for v in values)


def _laid_out_like(tensor, like, copy=False):
    """``tensor`` with the device, dtype and strides of ``like``: itself when they match already
    (unless ``copy``), else a copy."""
    if tuple(tensor.shape) != tuple(like.shape):
        raise ValueError('a state array of shape %s belongs to a parameter of shape %s'
                         % (tuple(tensor.shape), tuple(like.shape)))
    if not copy and tensor.device == like.device and tensor.dtype == like.dtype and tensor.stride() == like.stride():
        return tensor
    # ``empty_like`` keeps the strides of a dense parameter (channels-last filters stay so).
    return torch.empty_like(like).copy_(tensor)


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
        """The learning rate (``settings['LR']``); setting it changes the next steps."""
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

    #: Whether ``step`` evaluates the closure more than once and so needs identical dropout masks
    #: at every evaluation.
    repeatable_closure = False

    def step(self, closure):
        """Evaluate ``closure`` and update.

        ``closure(backward=True)`` runs forward and backward (setting ``p.grad``) and returns
        ``(loss, loss_instance)``; ``closure(backward=False)`` only evaluates the loss.
        """
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
            if isinstance(v, (list, tuple)) and not _per_parameter(v):
                self.state[k] = tuple(v)  # a record of scalars (CG's last line search), as JSON gives it back
            elif isinstance(v, list):
                if len(v) != len(self.params):
                    raise ValueError('%s state %r has %i arrays, the network has %i parameters'
                                     % (self.name, k, len(v), len(self.params)))
                # A copy: ``as_tensor`` shares the caller's array.
                self.state[k] = [_laid_out_like(torch.as_tensor(np.asarray(a)), p, copy=True)
                                 for a, p in zip(v, self.params)]
            else:
                self.state[k] = v

    def follow_parameters(self, params=None):
        """Move the per-parameter state to the parameters' current device, dtype and memory layout.

        Args:
            params: Replacements for ``self.params`` (same order), for when ``nn.Module.to`` made
                new parameter tensors instead of converting the old ones in place (it does so
                for devices such as ``meta``); ``None`` keeps the list.
        """
        if params is not None:
            params = list(params)
            if len(params) != len(self.params):
                raise ValueError('%s optimises %i parameters, got %i replacements'
                                 % (self.name, len(self.params), len(params)))
            self.params = params
        for key, value in self.state.items():
            if isinstance(value, list):
                self.state[key] = [_laid_out_like(b, p) for b, p in zip(value, self.params)]


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
        """``None``: RPROP adapts a step size per element; setting it only logs a note."""
        return None  # RPROP adapts a step size per element; there is no learning rate to set

    @lr.setter
    def lr(self, value):
        logger.info('RPROP has no learning rate (it adapts per-element step sizes); LR unchanged')

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



def _penalty(params, wd):
    """``wd / 2 * sum(p ** 2)``: the L2 penalty whose gradient is the weight decay ``wd * p``."""
    if not wd:
        return 0.0
    return 0.5 * wd * float(sum(float(torch.sum(p.detach().double() ** 2)) for p in params))


def _gradient_copy(params, wd):
    """The gradient of loss + penalty: copies of ``p.grad`` (zeros where a parameter got none) plus ``wd * p``."""
    out = []
    for p in params:
        g = torch.zeros_like(p) if p.grad is None else p.grad.detach().clone()
        if wd:
            g.add_(p.detach(), alpha=wd)
        out.append(g)
    return out


def _dot(a, b):
    return float(sum(float(torch.sum(x.double() * y.double())) for x, y in zip(a, b)))


class CG(_Optimizer):
    """Nonlinear conjugate gradient with the original's backtracking line search.

    Settings (``setOptimizerParams(CG={...})``, defaults in :data:`DEFAULT_PARAMS`):

    * ``n_steps``: line searches per call, all on the same batch. The first searches along the
      negative gradient, later ones along ``-g + coeff * d`` with the Polak-Ribiere coefficient
      ``coeff = max(0, g.(g - g_last) / g_last.g_last)`` (``only_descent=True``: always ``coeff = 0``).
    * ``max_step``, ``min_step``, ``beta``: the search tries ``t = max_step, max_step * beta, ...``
      and never goes below ``min_step``: at most ``int(log(min_step / max_step) / log(beta))``
      shrinks, so every accepted ``t`` lies in ``[min_step, max_step]``.
    * ``alpha``: the Armijo constant; ``t`` is accepted when ``f(t) <= f(0) + alpha * t * slope``
      (``slope = g.d < 0``). The search also stops when the loss rises as ``t`` shrinks, and then
      keeps the previous, better step (the original kept the worse one; it also kept the last
      step when ``min_step`` was reached, where this search keeps the better of the last two).
    * ``show``: print one line per search.

    If a conjugate direction is not a descent direction (``slope >= 0``) the search restarts along
    the negative gradient (the original skipped the step instead). With a zero gradient the
    parameters stay put (``t = 0``).

    Every search appends ``[loss, t, coeff, count]`` (``count``: loss evaluations) to
    ``timeline``, the network's ``CG_timeline``.
    """

    name = 'CG'
    repeatable_closure = True

    def __init__(self, params, settings, weight_decay=0.0, timeline=None):
        super().__init__(params, settings, weight_decay)
        self.timeline = [] if timeline is None else timeline

    @property
    def lr(self):
        """``None``: CG chooses its steps by line search; setting it only logs a note."""
        return None  # CG chooses its step sizes by line search

    @lr.setter
    def lr(self, value):
        logger.info('CG has no learning rate (it chooses its steps by line search); LR unchanged')

    def _set_params(self, origin, direction, t):
        with torch.no_grad():
            for p, p0, d in zip(self.params, origin, direction):
                p.copy_(torch.add(p0, d, alpha=t))

    def _line_search(self, closure, f0, loss0, instance0, direction, slope):
        max_step, min_step = self._setting('max_step'), self._setting('min_step')
        beta, alpha = self._setting('beta'), self._setting('alpha')
        wd = float(self.weight_decay)
        max_count = max(0, int(math.log(min_step / max_step) / math.log(beta)))
        origin = [p.detach().clone() for p in self.params]

        def evaluate(t):
            self._set_params(origin, direction, t)
            loss, instance = closure(backward=False)
            return float(loss) + _penalty(self.params, wd), loss, instance

        t = max_step
        f, loss, instance = evaluate(t)
        count = 1
        previous = None
        for i in range(max_count + 1):
            if f <= f0 + t * alpha * slope:
                break
            if previous is not None and f > previous[0]:
                # The loss rises as the step shrinks: the longer step before was the better one.
                f, loss, instance, t = previous
                self._set_params(origin, direction, t)
                break
            if i == max_count:
                break  # min_step reached
            previous = (f, loss, instance, t)
            t *= beta
            f, loss, instance = evaluate(t)
            count += 1
        return loss, instance, t, count

    def step(self, closure):
        """``n_steps`` line searches on the batch of ``closure``; returns the loss after them."""
        n_steps = int(self._setting('n_steps'))
        only_descent = bool(self.settings.get('only_descent', False))
        show = bool(self.settings.get('show', False))
        wd = float(self.weight_decay)
        grad, direction = None, None
        loss = instance = None
        for i in range(n_steps):
            loss0, instance0 = closure()
            new_grad = _gradient_copy(self.params, wd)
            coeff = 0.0
            if grad is not None and not only_descent:
                denominator = _dot(grad, grad)
                if denominator > 0:
                    coeff = max(0.0, _dot(new_grad, [a - b for a, b in zip(new_grad, grad)]) / denominator)
            grad = new_grad
            direction = [-g for g in grad] if coeff == 0.0 else [coeff * d - g for d, g in zip(direction, grad)]
            slope = _dot(grad, direction)
            if slope >= 0 and coeff != 0.0:
                coeff = 0.0
                direction = [-g for g in grad]
                slope = _dot(grad, direction)
            if slope < 0:
                f0 = float(loss0) + _penalty(self.params, wd)
                loss, instance, t, count = self._line_search(closure, f0, loss0, instance0, direction, slope)
            else:  # zero gradient: nothing to improve along any direction
                loss, instance, t, count = loss0, instance0, 0.0, 0
            entry = [float(loss), float(t), float(coeff), int(count)]
            self.timeline.append(entry)
            self.state['last_search'] = tuple(entry)
            if show:
                logger.info('CG line search %i/%i: loss %.6g -> %.6g, t=%.3g, coeff=%.3g, %i evaluations',
                            i + 1, n_steps, float(loss0), float(loss), t, coeff, count)
        for p in self.params:
            p.grad = None
        return loss, instance


class LBFGS(_Optimizer):
    """L-BFGS through :func:`scipy.optimize.minimize` (method L-BFGS-B) on the flattened parameters.

    Settings (the original's ``fmin_l_bfgs_b`` keywords; defaults in :data:`DEFAULT_PARAMS`):
    ``maxfun`` (loss evaluations), ``maxiter`` (iterations), ``m`` (stored corrections),
    ``factr`` (stop when the relative loss change is below ``factr`` times the machine
    precision), ``pgtol`` (stop when the largest gradient entry is below it), ``iprint``
    (``>= 0``: print a line per iteration), ``maxls`` (line-search steps, scipy's default 20).

    Each call runs one optimisation on the given batch; no state carries over between calls.
    A run that ends abnormally (not by convergence or by its limits) prints ``L-BFGS aborted``
    with scipy's message.
    """

    name = 'LBFGS'
    repeatable_closure = True

    @property
    def lr(self):
        """``None``: L-BFGS chooses its steps by line search; setting it only logs a note."""
        return None

    @lr.setter
    def lr(self, value):
        logger.info('LBFGS has no learning rate (it chooses its steps by line search); LR unchanged')

    def _get_flat(self):
        return torch.cat([p.detach().reshape(-1).double().cpu() for p in self.params]).numpy()

    def _set_flat(self, vector):
        flat = torch.from_numpy(np.asarray(vector, dtype=np.float64))
        pos = 0
        with torch.no_grad():
            for p in self.params:
                n = p.numel()
                p.copy_(flat[pos:pos + n].view(p.shape).to(p.device, p.dtype))
                pos += n

    def _flat_grad(self, wd):
        return torch.cat([g.reshape(-1).double().cpu() for g in _gradient_copy(self.params, wd)]).numpy()

    def _options(self):
        s = self.settings
        options = dict(maxfun=int(s['maxfun']), maxiter=int(s['maxiter']), maxcor=int(s['m']),
                       ftol=float(s['factr']) * np.finfo(float).eps, gtol=float(s['pgtol']))
        for key in _LBFGS_EXTRA:
            if key in s:
                options[key] = int(s[key])
        return options

    def step(self, closure):
        from scipy.optimize import minimize

        wd = float(self.weight_decay)
        last = {}

        def loss_and_grad(vector):
            self._set_flat(vector)
            loss, instance = closure()
            last.update(x=np.array(vector, copy=True), loss=loss, instance=instance)
            return float(loss) + _penalty(self.params, wd), self._flat_grad(wd)

        counter = [0]

        def report(vector):
            counter[0] += 1
            logger.info('L-BFGS iteration %i: loss %.6g', counter[0], float(last['loss']))

        result = minimize(loss_and_grad, self._get_flat(), jac=True, method='L-BFGS-B', options=self._options(),
                          callback=report if int(self.settings.get('iprint', -1)) >= 0 else None)
        for p in self.params:
            p.grad = None
        if result.status not in (0, 1):
            logger.warning('L-BFGS aborted: %s', result.message)
        self.state['last_result'] = {'status': int(result.status), 'nfev': int(result.nfev), 'nit': int(result.nit)}
        self._set_flat(result.x)
        if 'x' in last and np.array_equal(last['x'], result.x):
            return last['loss'], last['instance']
        return closure(backward=False)


def check_settings(mode, settings):
    """Validate CG / LBFGS hyper-parameters (names and ranges).

    Raises:
        ValueError: naming the optimiser, the bad entry and what is accepted.
    """
    known = set(DEFAULT_PARAMS[mode]) | (set(_LBFGS_EXTRA) if mode == 'LBFGS' else set())
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ValueError('%s got unknown hyper-parameter(s) %s; known: %s' % (mode, unknown, sorted(known)))
    if mode == 'CG':
        s = settings
        if not (isinstance(s['n_steps'], (int, np.integer)) and s['n_steps'] >= 1):
            raise ValueError('CG n_steps must be a positive integer, got %r' % (s['n_steps'],))
        if not 0 < s['beta'] < 1:
            raise ValueError('CG beta (the step shrink factor) must lie in (0, 1), got %r' % (s['beta'],))
        if not 0 < s['min_step'] <= s['max_step']:
            raise ValueError('CG needs 0 < min_step <= max_step, got min_step=%r, max_step=%r'
                             % (s['min_step'], s['max_step']))
        if not 0 < s['alpha'] < 1:
            raise ValueError('CG alpha (the Armijo constant) must lie in (0, 1), got %r' % (s['alpha'],))
    elif mode == 'LBFGS':
        for key in ('maxfun', 'maxiter', 'm'):
            if not (isinstance(settings[key], (int, np.integer)) and settings[key] >= 1):
                raise ValueError('LBFGS %s must be a positive integer, got %r' % (key, settings[key]))


#: The optimiser classes by their ``mode`` name (``'SGD'``, ``'Adam'``, ``'RPROP'``, ``'CG'``, ``'LBFGS'``).
OPTIMIZERS = {cls.name: cls for cls in (SGD, Adam, RPROP, CG, LBFGS)}


# ---------------------------------------------------------------------------------------------------
# The original's compile* objects
# ---------------------------------------------------------------------------------------------------
class CompiledOptimizer:
    """The original's optimiser base (``elektronn.net.optimizer.Optimizer``) on a compiled network.

    Calling the object performs one update step on a batch: ``opt(data, labels, *aux)`` returns
    ``[loss, loss_instance]`` (the loss before the update, as the network's ``trainingStep``).

    Args:
        model_obj: A compiled :class:`~elektronn.net.convnet.MixedConvNN`.
        X, Y, Y_aux, top_loss, params: The original's symbolic Theano inputs, loss and parameters.
            There is no symbolic graph any more: giving them raises ``NotImplementedError``.
    """

    #: The ``trainingStep`` mode (``None``: the base has no update rule).
    mode = None

    def __init__(self, model_obj=None, X=None, Y=None, Y_aux=(), top_loss=None, params=None):
        who = type(self).__name__
        if any(v is not None for v in (X, Y, top_loss, params)) or (Y_aux is not None and len(Y_aux)):
            raise NotImplementedError(
                '%s(X=, Y=, Y_aux=, top_loss=, params=) compiled a Theano graph from symbolic variables, which '
                'no longer exist; pass the network instead (%s(model_obj=cnn)) or call '
                "cnn.trainingStep(data, labels, mode=%r)" % (who, who, self.mode or 'SGD'))
        if model_obj is None or not hasattr(model_obj, 'trainingStep'):
            raise NotImplementedError('%s needs the network: %s(model_obj=cnn) (a compiled MixedConvNN); the '
                                      "same step is cnn.trainingStep(data, labels, mode=%r)"
                                      % (who, who, self.mode or 'SGD'))
        model_obj._require_compiled(who, training=True)
        self.t_init = time.time()
        self.model_obj = model_obj
        self.params = model_obj.params
        self.optimizer_params = None

    def _settings(self):
        cnn = self.model_obj
        return cnn._SGD_params if self.mode == 'SGD' else getattr(cnn, '_%s_params' % self.mode)

    def updateOptimizerParams(self, optimizer_params):
        """Update the hyper-parameters of this optimiser (on the network: they act at the next step)."""
        if self.mode is None:
            raise NotImplementedError('the base Optimizer has no hyper-parameters; use compileSGD, compileAdam, '
                                      'compileRPROP, compileCG or compileLBFGS')
        optimizer_params = dict(optimizer_params)
        cnn = self.model_obj
        if self.mode == 'SGD':
            unknown = sorted(set(optimizer_params) - {'LR', 'momentum'})
            if unknown:
                raise ValueError('SGD has the hyper-parameters LR and momentum, got %s' % unknown)
            if 'LR' in optimizer_params:
                cnn.setSGDLR(float(optimizer_params['LR']))
            if 'momentum' in optimizer_params:
                cnn.setSGDMomentum(float(optimizer_params['momentum']))
        else:
            settings = self._settings()
            if self.mode in ('CG', 'LBFGS'):
                check_settings(self.mode, dict(settings, **optimizer_params))
            settings.update(optimizer_params)
        self.optimizer_params = self._settings()

    def get_loss(self, *args):
        """``[data, labels(, *aux)] -> (loss, loss_instance)`` without an update."""
        return self.model_obj.get_loss(*args)

    def __call__(self, *args):
        """One update step: ``[data, labels(, *aux)] -> [loss, loss_instance]``."""
        if self.mode is None:
            raise NotImplementedError('the base Optimizer has no update rule; use compileSGD, compileAdam, '
                                      'compileRPROP, compileCG or compileLBFGS (or cnn.trainingStep)')
        loss, instance, _ = self.model_obj.trainingStep(*args, mode=self.mode)
        return [np.float32(loss), instance]

    def compileGradients(self):
        """A function ``[data, labels(, *aux)] -> gradients`` of every array of ``cnn.params``, in the
        original's layout (see ``MixedConvNN.compileDebugFunctions``)."""
        return self.model_obj._debug_gradients


class _CompileMode(CompiledOptimizer):
    def __init__(self, optimizer_params, model_obj=None, X=None, Y=None, Y_aux=(), top_loss=None, params=None):
        super().__init__(model_obj, X, Y, Y_aux, top_loss, params)
        self.updateOptimizerParams(optimizer_params)
        model_obj._optimizer(self.mode)


class compileSGD(_CompileMode):
    """SGD with momentum on ``model_obj`` (``optimizer_params``: ``LR``, ``momentum``)."""
    mode = 'SGD'


class compileAdam(_CompileMode):
    """Adam on ``model_obj`` (``optimizer_params``: ``LR``, ``beta1``, ``beta2``, ``epsilon``)."""
    mode = 'Adam'


class compileRPROP(_CompileMode):
    """RPROP on ``model_obj`` (``optimizer_params``: ``penalty``, ``gain``, ``beta``, ``initial_update_size``)."""
    mode = 'RPROP'


class compileCG(_CompileMode):
    """Conjugate gradient on ``model_obj`` (``optimizer_params`` as :data:`DEFAULT_PARAMS` ``['CG']``)."""
    mode = 'CG'


class compileLBFGS(_CompileMode):
    """L-BFGS on ``model_obj`` (``optimizer_params`` as :data:`DEFAULT_PARAMS` ``['LBFGS']``)."""
    mode = 'LBFGS'
