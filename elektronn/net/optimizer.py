"""``elektronn.net.optimizer``: the original's module path, kept for old scripts.

The optimisers live in :mod:`elektronn.net.optimizers` now: the classes ``SGD``, ``Adam``,
``RPROP``, ``CG`` and ``LBFGS``, and the original's entry points ``compileSGD`` ... ``compileLBFGS``
with their base ``Optimizer`` (:class:`~elektronn.net.optimizers.CompiledOptimizer`), which run a
network's ``trainingStep``.
"""
from elektronn.net.optimizers import CG, LBFGS, RPROP, SGD, Adam
from elektronn.net.optimizers import CompiledOptimizer as Optimizer
from elektronn.net.optimizers import compileAdam, compileCG, compileLBFGS, compileRPROP, compileSGD

__all__ = ['Optimizer', 'compileSGD', 'compileAdam', 'compileRPROP', 'compileCG', 'compileLBFGS',
           'SGD', 'Adam', 'RPROP', 'CG', 'LBFGS']
