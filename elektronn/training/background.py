"""The original's background-task interface (``elektronn.training.parallelisation``) over today's workers.

:class:`BackgroundProc` runs ``target(*target_args, **target_kwargs)`` repeatedly in ``n_proc``
worker processes and hands out the results in turn, as the original did; the processes are
:class:`~elektronn.training.workers.BackgroundWorkers`, so every worker is reseeded independently
(the target's object through its ``reseed``/``rng``, plus NumPy's and Python's global generators),
a failing target raises :class:`~elektronn.training.workers.WorkerError` with its traceback, and
the workers cannot outlive the calling process. Example::

    bg = BackgroundProc(data.getbatch, n_proc=2, target_args=(2,), target_kwargs={'flip': True})
    for i in range(100):
        d, l = bg.get()
    bg.shutdown()

The original's shared-memory plumbing (``SharedMem``, ``Proc``) and its unused ``SharedQ`` have no
counterpart: the classes of those names raise ``NotImplementedError`` naming the replacement.
"""
import logging
import time

import numpy as np

from elektronn.training import workers

logger = logging.getLogger(__name__)

__all__ = ['BackgroundProc', 'SharedMem', 'Proc', 'SharedQ']


class _TargetCall:
    """A "data object" for :class:`~elektronn.training.workers.BackgroundWorkers` whose batch is a call of ``target``."""

    def __init__(self, target, args, kwargs):
        self.target = target
        self.args = tuple(args)
        self.kwargs = dict(kwargs)

    def getbatch(self):
        return self.target(*self.args, **self.kwargs)

    def reseed(self, seed):
        owner = getattr(self.target, '__self__', None)
        if owner is not None and not isinstance(owner, type):
            workers.reseed(owner, seed)


class BackgroundProc:
    """Repeat ``target(*target_args, **target_kwargs)`` in ``n_proc`` background processes.

    Args:
        target: Callable returning a sequence of arrays (e.g. a data object's ``getbatch``).
        dtypes: Optional dtypes of the results: each result is cast to its dtype.
        shapes: Optional shapes of the results: each result is broadcast to its shape.
        n_proc: Number of worker processes.
        target_args, target_kwargs: Constant arguments of every call.
        profile: Print how long each :meth:`get` waited.

    Unlike the original, no call is made in the main process to learn the dtypes and shapes, and
    every worker has its own random state. Call :meth:`shutdown` (or use ``with``) when done.
    """

    def __init__(self, target, dtypes=None, shapes=None, n_proc=1, target_args=(), target_kwargs={},
                 profile=False):
        if not callable(target):
            raise TypeError('BackgroundProc: target must be callable, got %r' % (target,))
        if dtypes is not None and shapes is not None and len(dtypes) != len(shapes):
            raise ValueError('BackgroundProc: %i dtypes but %i shapes' % (len(dtypes), len(shapes)))
        self.target = target
        self.dtypes = None if dtypes is None else [np.dtype(d) for d in dtypes]
        self.shapes = None if shapes is None else [tuple(int(n) for n in s) for s in shapes]
        self.n_proc = int(n_proc)
        self.profile = bool(profile)
        self._workers = workers.BackgroundWorkers(_TargetCall(target, target_args, target_kwargs), {},
                                                  n_proc=self.n_proc)

    @property
    def procs(self):
        """The worker processes."""
        return self._workers.procs

    def _convert(self, result):
        result = tuple(result)
        for spec in (self.dtypes, self.shapes):
            if spec is not None and len(spec) != len(result):
                raise ValueError('BackgroundProc: the target returned %i values, %i dtypes/shapes were given'
                                 % (len(result), len(spec)))
        out = []
        for k, r in enumerate(result):
            r = np.asarray(r)
            if self.dtypes is not None:
                r = r.astype(self.dtypes[k], copy=False)
            if self.shapes is not None and r.shape != self.shapes[k]:
                r = np.array(np.broadcast_to(r, self.shapes[k]))
            out.append(r)
        return tuple(out)

    def get(self):
        """The next result (a tuple of arrays, the worker's own copies); blocks until one is ready.

        Raises:
            elektronn.training.workers.WorkerError: the target failed in a worker (with its traceback).
        """
        t0 = time.time()
        result = self._workers.get()
        if self.profile:
            logger.info('BackgroundProc: waited %.3g ms for a result', (time.time() - t0) * 1000)
        return self._convert(result) if (self.dtypes is not None or self.shapes is not None) else tuple(result)

    def reset(self):
        """Kept for compatibility (the original re-armed its workers after ctrl+c); nothing to do."""

    def shutdown(self):
        """Stop and reap the worker processes (idempotent)."""
        self._workers.shutdown()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.shutdown()


class _Replaced:
    """Base of the original's shared-memory classes that have no counterpart."""

    replacement = ''

    def __init__(self, *args, **kwargs):
        raise NotImplementedError('%s (ELEKTRONN 1.x shared-memory plumbing) no longer exists: %s'
                                  % (type(self).__name__, self.replacement))


class SharedMem(_Replaced):
    """The original's ``multiprocessing.Array`` helpers; raises ``NotImplementedError`` (batches travel
    through :class:`~elektronn.training.workers.BackgroundWorkers`' queue now)."""

    replacement = ('background results travel through elektronn.training.workers.BackgroundWorkers; use '
                   'BackgroundProc (or BackgroundWorkers) for background batches')


class Proc(_Replaced):
    """The original's reusable worker process; raises ``NotImplementedError`` (see :class:`BackgroundProc`)."""

    replacement = 'use BackgroundProc(target, n_proc=...) or elektronn.training.workers.BackgroundWorkers'


class SharedQ(_Replaced):
    """The original's (unused) one-process-per-item queue; raises ``NotImplementedError``."""

    replacement = ('use BackgroundProc(target, n_proc=...) for repeated background calls, or '
                   'multiprocessing / concurrent.futures for one-off tasks')
