"""Layer families, one module each; all derive from :class:`~elektronn.net.layers.base._Layer`."""
from elektronn.net.layers.autoencoder import TiedDecoderLayer
from elektronn.net.layers.conv import ConvLayer2d, ConvLayer3d
from elektronn.net.layers.perceptron import PerceptronLayer

__all__ = ['ConvLayer2d', 'ConvLayer3d', 'PerceptronLayer', 'TiedDecoderLayer']
