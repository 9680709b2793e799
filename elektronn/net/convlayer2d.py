"""``elektronn.net.convlayer2d``: the original's module path, kept for old scripts.

The 2D conv layer lives in :mod:`elektronn.net.layers.conv` now.
"""
from elektronn.net.layers.conv import ConvLayer2d

__all__ = ['ConvLayer2d']
