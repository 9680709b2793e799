"""Background batch workers: ``N`` processes that call ``data.getbatch`` ahead of the training loop.

Works with any data class that follows the data protocol (``getbatch(batch_size, source='train',
**kw)`` returning a tuple of NumPy arrays, ``reseed(seed)``). Compared with the original's
``BackgroundProc``:

* every worker is **reseeded independently** (``data.reseed(seed)``, plus NumPy's and Python's
  global generators), so no two workers draw the same augmentation parameters;
* attribute changes made to ``data`` in the main process (e.g. ``data.warp_on = False`` in the
  ctrl+c console) and changes of the batch keyword arguments are **forwarded** to the workers with
  :meth:`BackgroundWorkers.update`; batches prepared before the change are discarded;
* a worker that fails reports its **traceback**, and the trainer raises :class:`WorkerError` with it;
  a worker that dies silently is detected too;
* workers **die with the trainer**: :meth:`~BackgroundWorkers.shutdown` stops and reaps them, they
  are daemonic, and each one exits when its parent process disappears (even after ``kill -9``);
* no batch is computed in the main process just to learn shapes.

Batches travel through a ``multiprocessing`` queue (pickle protocol 5); processes are forked where
the platform allows it (so the data is shared copy-on-write) and spawned elsewhere (then ``data``
must be picklable). A receiver thread in the trainer's process takes batches off that queue while
the training step runs: reading a batch larger than the pipe's buffer waits for the worker's feeder
thread several times; done inline it cost the MNIST example's training loop 0.74 ms a step, with
the thread 0.26 ms.

Example::

    with BackgroundWorkers(data, dict(batch_size=50), n_proc=3, seeds=[1, 2, 3]) as workers:
        for i in range(1000):
            batch = workers.get()
"""
import ctypes
import multiprocessing as mp
import os
import pickle
import queue
import random
import signal
import sys
import threading
import time
import traceback
import warnings
import weakref

import numpy as np

__all__ = ['BackgroundWorkers', 'WorkerError', 'reseed', 'AttributeWatcher']

#: Seconds between checks (parent alive, commands) while a worker waits to deliver a batch.
_POLL_S = 0.25


class WorkerError(RuntimeError):
    """A background worker failed; the message holds its traceback."""


def reseed(data, seed):
    """Give ``data`` (and the process's global generators) a fresh random state from ``seed``."""
    seed = int(seed)
    if hasattr(data, 'reseed'):
        data.reseed(seed)
    elif isinstance(getattr(data, 'rng', None), np.random.Generator):
        data.rng = np.random.default_rng(seed)
    np.random.seed(seed % 2 ** 32)
    random.seed(seed)


def _die_with_parent():
    """Ask Linux to send SIGTERM to this process when its parent exits (best effort)."""
    if not sys.platform.startswith('linux'):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _apply(data, batch_kwargs, message):
    _, _generation, attributes, new_kwargs = message
    for name, value in attributes.items():
        setattr(data, name, value)
    if new_kwargs is not None:
        batch_kwargs.clear()
        batch_kwargs.update(new_kwargs)


def _worker_main(index, data, batch_kwargs, seed, commands, results, parent_pid):
    """Loop of one worker process: apply commands, make a batch, deliver it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # ctrl+c belongs to the trainer's console
    _die_with_parent()
    batch_kwargs = dict(batch_kwargs)
    generation = 0
    try:
        reseed(data, seed)
    except Exception:
        results.put(('error', index, 'data.reseed(%r) failed:\n%s' % (seed, traceback.format_exc())))
        return

    def handle_commands():
        nonlocal generation
        while commands.poll():
            message = commands.recv()
            if message[0] == 'stop':
                return False
            generation = message[1]
            _apply(data, batch_kwargs, message)
        return os.getppid() == parent_pid

    def leave():
        results.cancel_join_thread()  # do not wait at exit to deliver batches nobody will take

    while True:
        try:
            if not handle_commands():
                return leave()
            batch = data.getbatch(**batch_kwargs)
            if not isinstance(batch, tuple):
                batch = tuple(batch) if isinstance(batch, list) else (batch,)
        except (EOFError, OSError):
            return leave()  # the trainer went away
        except Exception:
            results.put(('error', index, traceback.format_exc()))  # delivered before this process exits
            return
        made_for = generation
        while True:
            try:
                results.put(('batch', index, made_for, batch), timeout=_POLL_S)
                break
            except queue.Full:
                try:
                    if not handle_commands():
                        return leave()
                except (EOFError, OSError):
                    return leave()
                if generation != made_for:
                    break  # stale: made before a change of data attributes


def _receive(results, ready, stop):
    """Receiver thread: move items from the workers' queue to the local ``ready`` queue until ``stop``."""
    while not stop.is_set():
        try:
            item = results.get(timeout=_POLL_S)
        except queue.Empty:
            continue
        except (EOFError, OSError, ValueError):
            return  # the queue was closed
        while not stop.is_set():
            try:
                ready.put(item, timeout=_POLL_S)
                break
            except queue.Full:
                continue


def _context():
    methods = mp.get_all_start_methods()
    return mp.get_context('fork' if 'fork' in methods else 'spawn')


class BackgroundWorkers:
    """``n_proc`` processes preparing training batches with ``data.getbatch(**batch_kwargs)``.

    Args:
        data: The data object (any class following the data protocol).
        batch_kwargs: Keyword arguments of ``getbatch`` (``batch_size`` included).
        n_proc: Number of worker processes.
        seeds: One seed per worker (ints); default: fresh entropy.
        prefetch: Batches kept ready per worker.
    """

    def __init__(self, data, batch_kwargs, n_proc=2, seeds=None, prefetch=2):
        if n_proc < 1:
            raise ValueError('n_proc must be >= 1, got %r' % (n_proc,))
        if seeds is None:
            seeds = [int(s.generate_state(1)[0]) for s in np.random.SeedSequence().spawn(n_proc)]
        if len(seeds) != n_proc:
            raise ValueError('need one seed per worker (%i), got %i' % (n_proc, len(seeds)))
        ctx = _context()
        self.n_proc = n_proc
        self.generation = 0
        self._closed = False
        self._last_check = time.time()
        self._results = ctx.Queue(maxsize=max(1, prefetch * n_proc))
        self._results.cancel_join_thread()
        self._pipes = []
        self.procs = []
        for k in range(n_proc):
            here, there = ctx.Pipe()
            p = ctx.Process(target=_worker_main, name='elektronn-batch-worker-%i' % k, daemon=True,
                            args=(k, data, dict(batch_kwargs), int(seeds[k]), there, self._results, os.getpid()))
            p.start()
            there.close()
            self._pipes.append(here)
            self.procs.append(p)
        # The thread gets no reference to self, so that an abandoned instance is still finalised.
        self._ready = queue.Queue(maxsize=max(1, prefetch))
        self._stop_receiving = threading.Event()
        self._receiver = threading.Thread(target=_receive, name='elektronn-batch-receiver', daemon=True,
                                          args=(self._results, self._ready, self._stop_receiving))
        self._receiver.start()
        self._finalizer = weakref.finalize(self, BackgroundWorkers._stop, self.procs, self._pipes,
                                           self._stop_receiving, self._receiver)

    @property
    def pids(self):
        """The process ids of the workers."""
        return [p.pid for p in self.procs]

    def _raise_error(self, item):
        _, k, tb = item
        raise WorkerError('background worker %i (pid %s) failed in data.getbatch:\n%s' % (k, self.procs[k].pid, tb))

    def _check_alive(self):
        self._last_check = time.time()
        for k, p in enumerate(self.procs):
            if not p.is_alive():
                deadline = time.time() + 0.5  # a failed worker sent its traceback before exiting: prefer that
                try:
                    while time.time() < deadline:
                        item = self._ready.get(timeout=max(0.01, deadline - time.time()))
                        if item[0] == 'error':
                            self._raise_error(item)
                except queue.Empty:
                    pass
                raise WorkerError('background worker %i (pid %s) died with exit code %s without reporting an error '
                                  '(out of memory? killed?)' % (k, p.pid, p.exitcode))

    def get(self, timeout=None):
        """The next batch (a tuple of arrays); blocks until one is ready.

        Raises:
            WorkerError: a worker failed (its traceback is in the message) or died.
            TimeoutError: ``timeout`` seconds passed without a batch.
        """
        if self._closed:
            raise RuntimeError('the background workers were shut down')
        t_end = None if timeout is None else time.time() + timeout
        while True:
            if time.time() - self._last_check > 0.5:
                self._check_alive()
            try:
                item = self._ready.get(timeout=0.5)
            except queue.Empty:
                self._check_alive()
                if t_end is not None and time.time() > t_end:
                    raise TimeoutError('no batch from the background workers within %.0f s' % timeout) from None
                continue
            if item[0] == 'error':
                self._raise_error(item)
            _, _k, generation, batch = item
            if generation == self.generation:
                return batch

    def update(self, attributes=None, batch_kwargs=None):
        """Forward changed ``data`` attributes and/or new batch keyword arguments to every worker.

        Batches made before the change are discarded. Values that cannot be pickled are skipped
        with a message naming them.

        Returns:
            The names of the attributes sent.
        """
        sendable = {}
        for name, value in (attributes or {}).items():
            try:
                pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as e:
                warnings.warn('data.%s cannot be sent to the background workers (%s: %s); they keep the old value'
                              % (name, type(e).__name__, e), stacklevel=2)
                continue
            sendable[name] = value
        if not sendable and batch_kwargs is None:
            return []
        self.generation += 1
        message = ('update', self.generation, sendable, None if batch_kwargs is None else dict(batch_kwargs))
        for pipe in self._pipes:
            try:
                pipe.send(message)
            except (BrokenPipeError, OSError):
                pass  # a dead worker is reported by get()
        return sorted(sendable)

    @staticmethod
    def _stop(procs, pipes, stop_receiving, receiver, grace=2.0):
        stop_receiving.set()
        for pipe in pipes:
            try:
                pipe.send(('stop',))
            except (BrokenPipeError, OSError):
                pass
        deadline = time.time() + grace
        for p in procs:
            p.join(max(0.0, deadline - time.time()))
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(1.0)
            if p.is_alive():
                p.kill()
                p.join(1.0)
        for pipe in pipes:
            pipe.close()
        receiver.join(2 * _POLL_S + 1.0)

    def shutdown(self):
        """Stop and reap all workers (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._finalizer()
        self._results.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.shutdown()


# ---------------------------------------------------------------------------------------------------
# Detecting attribute changes (what the console changed on ``data``)
# ---------------------------------------------------------------------------------------------------
_BIG_BYTES = 1 << 20
_MAX_ITEMS = 1000


def _fingerprint(value, depth=0):
    """A cheap comparable summary of ``value``; large arrays and opaque objects by identity only."""
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes, np.generic)):
        return (type(value).__name__, value)
    if isinstance(value, np.ndarray):
        if value.nbytes > _BIG_BYTES:
            return ('bigarray', id(value), value.shape, value.dtype.str)
        return ('array', value.shape, value.dtype.str, value.tobytes())
    if isinstance(value, (list, tuple, dict, set, frozenset)) and depth < 4:
        items = list(value.items()) if isinstance(value, dict) else list(value)
        if len(items) > _MAX_ITEMS:
            return ('bigcontainer', id(value), len(items))
        if isinstance(value, dict):
            return ('dict', tuple((repr(k), _fingerprint(v, depth + 1)) for k, v in items))
        return (type(value).__name__, tuple(_fingerprint(v, depth + 1) for v in items))
    return ('object', id(value))


class AttributeWatcher:
    """Remember an object's attributes and report which ones changed since.

    Plain values (numbers, strings, small arrays, lists and dicts of them) are compared by value,
    so in-place changes like ``data.some_list.append(x)`` are seen; large arrays and other objects
    are compared by identity (re-assigning them is seen, changing them in place is not).
    """

    def __init__(self, obj):
        self.obj = obj
        self._snapshot = self._take()

    def _take(self):
        return {name: _fingerprint(value) for name, value in vars(self.obj).items()}

    def changes(self, reset=True):
        """``{name: current value}`` of the attributes that were added or changed."""
        current = self._take()
        changed = {name: getattr(self.obj, name) for name, fp in current.items() if self._snapshot.get(name) != fp}
        if reset:
            self._snapshot = current
        return changed
