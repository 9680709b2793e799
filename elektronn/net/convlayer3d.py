"""``elektronn.net.convlayer3d``: the original's module path, kept for old scripts.

The 3D conv layer lives in :mod:`elektronn.net.layers.conv`, the affinity and MALIS output layers
in :mod:`elektronn.net.layers.affinity` now.
"""
from elektronn.net.layers.affinity import AffinityLayer3d, MalisLayer
from elektronn.net.layers.conv import ConvLayer3d

__all__ = ['ConvLayer3d', 'AffinityLayer3d', 'MalisLayer']
