"""ELEKTRONN: 2D/3D convolutional neural networks for electron-microscopy volumes.

``elektronn.net`` holds the network core (:class:`~elektronn.net.convnet.MixedConvNN`,
:func:`~elektronn.net.netutils.CNNCalculator`), ``elektronn.training`` the config-driven training
pipeline. Importing this package is cheap: PyTorch is loaded only with ``elektronn.net``.
"""
__version__ = '1.1.0.dev0'
