"""ELEKTRONN: 2D/3D convolutional neural networks for electron-microscopy volumes.

``elektronn.net`` holds the network core (:class:`~elektronn.net.convnet.MixedConvNN`,
:func:`~elektronn.net.netutils.CNNCalculator`), ``elektronn.training`` the config-driven training
pipeline. Importing this package is cheap: PyTorch is loaded only with ``elektronn.net``.

What the library reports goes to the ``elektronn`` logger (:mod:`elektronn.log`); how much of it is
shown is set with :func:`set_log_level` or the environment variable ``ELEKTRONN_LOG_LEVEL``.
"""
from elektronn.log import get_log_level, logger, set_log_level, use_log_level

#: The package version (PEP 440; ``.devN`` between releases).
__version__ = '1.1.0.dev0'
__all__ = ['logger', 'set_log_level', 'get_log_level', 'use_log_level', '__version__']
