"""``elektronn.net.perceptronlayer``: the original's module path, kept for old scripts.

The perceptron layer lives in :mod:`elektronn.net.layers.perceptron`, the recurrent layer in
:mod:`elektronn.net.layers.recurrent` now.
"""
from elektronn.net.layers.perceptron import PerceptronLayer
from elektronn.net.layers.recurrent import RecurrentLayer

__all__ = ['PerceptronLayer', 'RecurrentLayer']
