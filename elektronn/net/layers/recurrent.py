"""Elman recurrent layer over the time axis.

Shapes:
    input ``(bs, time, n_in)`` — or ``(bs, n_in)``, repeated for ``iterations`` time steps —
    ``W_in`` ``(n_in, n_hid)``, ``W_hid`` ``(n_hid, n_hid)``, ``b_hid`` and ``hid_0`` ``(n_hid,)``,
    output ``(bs, n_hid)``: the last hidden state.

``h_t = act(x_t @ W_in + h_{t-1} @ W_hid + b_hid)`` with the trainable initial state ``h_0 = hid_0``.
"""
import numpy as np
import torch

from elektronn.net.layers.base import _Layer, check_positive_int, empty_parameter
from elektronn.net.netutils import initWeights

__all__ = ['RecurrentLayer']


class RecurrentLayer(_Layer):
    """A simple recurrent (Elman) layer returning its last hidden state.

    Args:
        n_in: Features per time step.
        n_hid: Hidden units.
        activation_func: ``'tanh'``, ``'relu'``, ``'sigmoid'``, ``'abs'`` or ``'linear'``.
        iterations: Time steps to repeat a 2D input ``(bs, n_in)`` for; ``None`` for sequence
            input ``(bs, time, n_in)``.

    Initialisation as the original: ``W_in`` Glorot uniform, ``W_hid`` uniform in +-1 divided by
    its largest singular value, ``b_hid`` uniform in +-1e-6, ``hid_0`` zeros.
    """

    param_names = ('W_in', 'W_hid', 'b_hid', 'hid_0')

    def __init__(self, n_in, n_hid, activation_func='tanh', iterations=None):
        super().__init__(activation_func, enable_dropout=False)
        if self.maxout > 1:
            raise ValueError('a recurrent layer cannot use maxout (%r); use tanh, relu, sigmoid, abs or linear'
                             % (self.activation_func,))
        self.n_in = check_positive_int(n_in, 'n_in')
        self.n_hid = check_positive_int(n_hid, 'n_hid')
        self.iterations = None if iterations is None else check_positive_int(iterations, 'iterations')
        self.W_in = empty_parameter(self.n_in, self.n_hid)
        self.W_hid = empty_parameter(self.n_hid, self.n_hid)
        self.b_hid = empty_parameter(self.n_hid)
        self.hid_0 = empty_parameter(self.n_hid)
        self.reset_parameters()

    def reset_parameters(self, mode='uni'):
        """Draw new weights (``mode`` applies to ``W_in``: Glorot ``'uni'`` or ``'normal'``)."""
        values = {'W_in': initWeights((self.n_in, self.n_hid), scale='glorot', mode=mode),
                  'W_hid': initWeights((self.n_hid, self.n_hid), mode='rnn'),
                  'b_hid': initWeights((self.n_hid,), scale=1e-6, mode='fix-uni'),
                  'hid_0': np.zeros(self.n_hid, np.float32)}
        with torch.no_grad():
            for name, value in values.items():
                getattr(self, name).copy_(torch.from_numpy(value))

    def n_multiplications(self, time_steps):
        """Multiplications of one forward pass for one example of ``time_steps`` steps."""
        return time_steps * self.n_in * self.n_hid + time_steps * self.n_hid ** 2

    def linear(self, x):
        """The pre-activation of the last hidden state, ``(bs, n_hid)``."""
        if x.ndim == 2:
            if self.iterations is None:
                raise ValueError('a recurrent layer without iterations needs input (bs, time, features), got %s'
                                 % (tuple(x.shape),))
            steps = [x @ self.W_in + self.b_hid] * self.iterations
        elif x.ndim == 3:
            drive = x @ self.W_in + self.b_hid
            steps = drive.unbind(1)
        else:
            raise ValueError('a recurrent layer needs input (bs, time, features) or (bs, features), got %s'
                             % (tuple(x.shape),))
        h = self.hid_0.expand(x.shape[0], self.n_hid)
        lin = None
        for i, drive_t in enumerate(steps):
            if i:
                h = self.activate(lin)
            lin = drive_t + h @ self.W_hid
        return lin
