"""``MixedConvNN``'s parameter files and the original's debug and statistics helpers.

:class:`NetIOMixin` saves and loads parameters (HDF5, or the legacy pickles of ELEKTRONN 1.x),
returns every layer's activities, makes the debug callables and prints gradient, activation and
parameter statistics.
"""
import logging

import numpy as np
import torch

from elektronn.net import legacy, params as _params
from elektronn.net.layers.conv import _ConvLayer

logger = logging.getLogger(__name__)

__all__ = ['NetIOMixin']


class NetIOMixin:
    """Parameter I/O and introspection of :class:`~elektronn.net.convnet.MixedConvNN` (documented there)."""

    # ------------------------------------------------------------------------------------------------
    # Parameter files
    # ------------------------------------------------------------------------------------------------
    def _saveable_layers(self):
        chain = set(id(layer) for layer in self._autoencoder_chains)
        return [layer for layer in self.layers if id(layer) not in chain]

    def saveParameters(self, path='CNN.save', layers=None, show=True):
        """Save the parameters of ``layers`` (default: all but autoencoder chains) to an HDF5 file."""
        layers = self._saveable_layers() if layers is None else list(layers)
        if show:
            logger.info('Saving params to file')
            logger.info(' shapes are: %s', [tuple(a.shape) for layer in layers for a in layer.param_arrays()[:1]])
        _params.save_parameters(path, layers, self.poolings)

    def loadParameters(self, myfile='CNN.save', strict=False, n_layers_to_load=-1, reset_momenta=True):
        """Load parameters saved by :meth:`saveParameters` (or a legacy ``.param`` file).

        Args:
            myfile: The file.
            strict: Require exactly matching layers and shapes (``ValueError`` naming the first
                mismatch otherwise). The default adapts differing shapes (see :mod:`elektronn.net.params`).
            n_layers_to_load: Load only the first k layers (all if negative).
            reset_momenta: Reset the momenta first (printing ``CNN: resetting momenta``), as the
                original did; prediction, whose network has no optimiser state, passes ``False``.
        """
        if reset_momenta:
            self.resetMomenta()
        saved, _ = _params.read_parameter_file(myfile)
        legacy.reorder_flattened_inputs(saved, self._saveable_layers())
        _params.apply_parameters(self._saveable_layers(), saved, path=str(myfile), strict=strict,
                                 n_layers_to_load=n_layers_to_load)

    # ------------------------------------------------------------------------------------------------
    # Introspection
    # ------------------------------------------------------------------------------------------------
    def get_activities(self, data):
        """Outputs of every layer for ``data`` (original layouts), without dropout."""
        x = self._to_input(data)
        out = []
        with torch.no_grad():
            for layer in self.layers:
                x = layer(x)
                a = x.float().cpu().numpy()
                out.append(a.transpose(0, 2, 1, 3, 4) if a.ndim == 5 else a)
        return out

    def get_nonpooled_activities(self, data):
        """Linear convolution outputs before pooling (conv layers) for ``data``."""
        x = self._to_input(data)
        out = []
        with torch.no_grad():
            for layer in self.layers:
                if isinstance(layer, _ConvLayer):
                    a = layer.convolve(x).float().cpu().numpy()
                    out.append(a.transpose(0, 2, 1, 3, 4) if a.ndim == 5 else a)
                x = layer(x)
        return out

    def compileDebugFunctions(self, gradients=True):
        """Make the original's debug callables.

        * ``debug_functions``: one per layer, ``f(data)`` returns that layer's output (original layout);
        * ``debug_conv_output``: one per conv layer, its convolution output before pooling;
        * ``debug_gradients_function`` (with ``gradients``; needs a compiled network):
          ``f(data, labels, *aux)`` returns the gradient of the loss for every array of
          ``cnn.params``, in the original's layout (as ``param.get_value()``), computed as in a
          training step (with dropout).
        """
        self.debug_functions = [(lambda data, i=i: self.get_activities(data)[i]) for i in range(len(self.layers))]
        n_conv = sum(isinstance(layer, _ConvLayer) for layer in self.layers)
        self.debug_conv_output = [(lambda data, i=i: self.get_nonpooled_activities(data)[i]) for i in range(n_conv)]
        if gradients:
            self.debug_gradients_function = self._debug_gradients

    def _debug_gradients(self, data, labels, *aux, **aux_kwargs):
        self._require_compiled('debug_gradients_function', training=True)
        grads = self._gradients(data, labels, *aux, **aux_kwargs)
        return [p.to_original_layout(g) if hasattr(p, 'to_original_layout') else g for p, g in zip(self.params, grads)]

    def _gradients(self, data, labels, *aux, **aux_kwargs):
        x, y, a = self._prepare(data, labels, aux, aux_kwargs)
        for p in self.params:
            p.grad = None
        self.train()
        try:
            loss, _, _, _ = self._objective(x, y, a)
            loss.backward()
        finally:
            self.eval()
        grads = [p.grad.detach().cpu().numpy() if p.grad is not None else np.zeros(tuple(p.shape), np.float32)
                 for p in self.params]
        for p in self.params:
            p.grad = None
        return grads

    @staticmethod
    def _print_stats(title, arrays):
        """Log ``title``, then shape, mean and std of each array (the original's statistics printout)."""
        logger.info(title)
        for a in arrays:
            logger.info('shape=%s,\tmean=%f,\tstd=%f', a.shape, np.mean(a), np.std(a))

    def gradstats(self, data, labels, *aux, **aux_kwargs):
        """Print shape, mean and std of every parameter's gradient on a batch."""
        self._require_compiled('gradstats', training=True)
        self._print_stats('Gradient statistics', self._gradients(data, labels, *aux, **aux_kwargs))

    def actstats(self, data):
        """Print shape, mean and std of every layer's output on ``data``."""
        self._print_stats('Activation statistics', self.get_activities(data))

    def paramstats(self):
        """Print shape, mean and std of every parameter."""
        self._print_stats('Parameters statistics', [p.detach().cpu().numpy() for p in self._unique_parameters()])
