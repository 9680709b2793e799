"""Layer families, one module each; all derive from :class:`~elektronn.net.layers.base._Layer`."""
from elektronn.net.layers.affinity import AffinityLayer3d, MalisLayer
from elektronn.net.layers.autoencoder import TiedDecoderLayer
from elektronn.net.layers.conv import ConvLayer2d, ConvLayer3d
from elektronn.net.layers.perceptron import PerceptronLayer
from elektronn.net.layers.recurrent import RecurrentLayer

__all__ = ['ConvLayer2d', 'ConvLayer3d', 'PerceptronLayer', 'RecurrentLayer', 'AffinityLayer3d', 'MalisLayer',
           'TiedDecoderLayer']
