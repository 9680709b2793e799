"""The network core: layers, losses, optimisers, shape maths and parameter files.

``from elektronn.net import MixedConvNN, CNNCalculator`` works; the submodules keep the
original's paths (``elektronn.net.convnet.MixedConvNN``, ``elektronn.net.netutils.CNNCalculator``).
This package knows nothing of ``elektronn.training`` (except :mod:`elektronn.net.netcreation`, the
original's module path of ``createNet``, which re-exports it from there).
"""

__all__ = ['MixedConvNN', 'CNNCalculator']


def __getattr__(name):
    # Imported lazily so that ``import elektronn.net.netutils`` does not build the whole core.
    if name == 'MixedConvNN':
        from elektronn.net.convnet import MixedConvNN
        return MixedConvNN
    if name == 'CNNCalculator':
        from elektronn.net.netutils import CNNCalculator
        return CNNCalculator
    raise AttributeError('module %r has no attribute %r' % (__name__, name))
