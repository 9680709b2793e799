"""``elektronn.training._warping``: the original's module path (its compiled Cython extension), kept for old scripts.

The warp kernels are NumPy code in :mod:`elektronn.training.warping` now.
"""
from elektronn.training.warping import warp2dFast, warp3dFast

__all__ = ['warp2dFast', 'warp3dFast']
