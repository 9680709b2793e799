"""``elektronn.net.netcreation``: the original's module path, kept for old scripts.

``createNet`` and ``createNetfromParams`` live in :mod:`elektronn.training.netcreation` now (this
shim is the one place where ``elektronn.net`` imports from ``elektronn.training``).
"""
from elektronn.training.netcreation import createNet, createNetfromParams

__all__ = ['createNet', 'createNetfromParams']
