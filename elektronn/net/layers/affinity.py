"""Affinity output layers (3D): one softmax per edge direction of an affinity graph.

An :class:`AffinityLayer3d` is a 3D conv layer with ``3 * n_lab`` filters: filters
``[e * n_lab, (e + 1) * n_lab)`` predict the classes of edge direction ``e`` (z, x, y), each group
with its own softmax, as the original's three sub-layers sharing one ``W``/``b`` did.

Shapes (PyTorch layout inside the network):
    input ``(bs, ch, z, x, y)``, ``W`` ``(3 * n_lab, ch, fz, fx, fy)``, ``b`` ``(3 * n_lab,)``,
    output ``(bs, 3 * n_lab, z', x', y')``; probabilities have the same shape, the classes of edge 0
    first; labels are affinity graphs ``(bs, 3, z', x', y')``.
"""
import numpy as np
import torch

from elektronn.net.layers.conv import ConvLayer3d
from elektronn.net.netutils import initWeights

__all__ = ['AffinityLayer3d', 'MalisLayer', 'N_EDGES']

#: Edge directions of the original's affinity graphs (nhood = identity: z, x, y).
N_EDGES = 3


class AffinityLayer3d(ConvLayer3d):
    """3D conv layer predicting ``n_lab`` classes for each of the 3 edge directions.

    Args:
        input_shape: ``(bs, ch, z, x, y)`` of the layer input.
        n_lab: Classes per edge direction (normally 2: disconnected, connected).
        filter_size, pool_shape, activation_func, enable_dropout, pooling_mode: As for
            :class:`~elektronn.net.layers.conv.ConvLayer3d`.
        W, b: Initial values of shape ``(3 * n_lab, ch, fz, fx, fy)`` and ``(3 * n_lab,)``.
        use_fragment_pooling, dilation: Max-fragment-pooling, as for ``ConvLayer3d``.
    """

    n_edges = N_EDGES

    def __init__(self, input_shape, n_lab, filter_size, pool_shape=1, activation_func='linear',
                 enable_dropout=False, pooling_mode='max', W=None, b=None, use_fragment_pooling=False, dilation=None):
        if isinstance(n_lab, bool) or not isinstance(n_lab, (int, np.integer)) or n_lab < 1:
            raise ValueError('an affinity layer needs a positive number of classes per edge, got %r' % (n_lab,))
        self.n_lab_per_edge = int(n_lab)
        super().__init__(input_shape, self.n_edges * int(n_lab), filter_size, pool_shape=pool_shape,
                         activation_func=activation_func, enable_dropout=enable_dropout, pooling_mode=pooling_mode,
                         W=W, b=b, use_fragment_pooling=use_fragment_pooling, dilation=dilation)
        if self.maxout > 1:
            raise ValueError('an affinity layer cannot use maxout (%r)' % (self.activation_func,))

    def reset_parameters(self, mode='normal'):
        """Three independent draws of ``n_lab`` filters (Glorot scale of one direction), bias repeated."""
        n_lab = self.nof_filters // self.n_edges
        shape = (n_lab,) + self.filter_shape[1:]
        W = np.concatenate([initWeights(shape, scale='glorot', mode=mode, pool=self.pool) for _ in range(self.n_edges)])
        b = np.tile(self._initial_bias(n_lab, relu_value=1.0 / float(np.prod(self.filter_size))), self.n_edges)
        with torch.no_grad():
            self.W.copy_(torch.from_numpy(W))
            self.b.copy_(torch.from_numpy(b))


class MalisLayer(AffinityLayer3d):
    """An :class:`AffinityLayer3d` for the ``'malis'`` target (2 classes per edge)."""
