"""``elektronn.training.parallelisation``: the original's module path, kept for old scripts.

``BackgroundProc`` (over :class:`elektronn.training.workers.BackgroundWorkers`) and the stand-ins
for the original's ``SharedMem``, ``Proc`` and ``SharedQ`` live in :mod:`elektronn.training.background` now.
"""
from elektronn.training.background import BackgroundProc, Proc, SharedMem, SharedQ

__all__ = ['BackgroundProc', 'SharedMem', 'Proc', 'SharedQ']
