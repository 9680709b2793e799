"""``elektronn.net.gaborfilters``: the original's module path, kept for old scripts.

The Gabor and blob filters live in :mod:`elektronn.net.netutils` now (used by
``ConvLayer2d.gaborInitialisation``).
"""
from elektronn.net.netutils import blob, makeGabor, makeGaborFilters

__all__ = ['makeGabor', 'makeGaborFilters', 'blob']
