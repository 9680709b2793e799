"""Run a block-wise task in this process or on a Dask cluster, with progress and resumability.

A :class:`BlockTask` says what to do with one block: :meth:`BlockTask.open` prepares what every
block needs (opens the stores, builds the network: once per process, not per block) and
:meth:`BlockTask.run_block` reads the block's input, computes, writes the block's output and marks
the block done in its :class:`~elektronn.inference.blocks.BlockLedger`. :func:`run_blocks` runs a
list of blocks:

* without a client, one after the other in this process;
* with a ``distributed.Client``, on the cluster's workers. The task object is sent to every worker
  once; then only block numbers and coordinates go to the workers and only small results (voxel
  counts, seconds) come back: voxel arrays never travel through the scheduler. Each worker process
  opens the task once and keeps it for all its blocks. A worker that dies mid-block (killed, out of
  memory) has its block recomputed by another one (Dask reschedules it); since a block's flag is set
  only after its data is written, the output is complete and every block written in full.

:func:`start_local_cluster` starts a ``distributed`` cluster of worker processes on this machine
(one per GPU when GPUs are given, each seeing only its own GPU through ``CUDA_VISIBLE_DEVICES``),
:func:`connect` a client to an existing scheduler.
"""
import contextlib
import logging
import os
import pickle
import threading
import time
import uuid

from elektronn import log
from elektronn.inference.blocks import BlockPlan
from elektronn.utils import available_cores

logger = logging.getLogger(__name__)

__all__ = ['BlockTask', 'run_blocks', 'start_local_cluster', 'connect', 'cluster_client', 'available_cores',
           'worker_threads', 'BlockRunError', 'ClusterError']


class BlockRunError(RuntimeError):
    """A block failed (the message names it and the cause)."""


class ClusterError(ValueError):
    """A local cluster cannot be started as asked (the message says why)."""


class BlockTask:
    """Work on the blocks of a volume; subclass it and define :meth:`open` and :meth:`run_block`.

    The object must be picklable: with a cluster it is sent to every worker once. Keep open files
    and devices out of it; :meth:`open` makes them in the process that runs the blocks.

    Attributes:
        token: Identifies the task (the workers keep one opened state per token).
        threads: Threads for the computation in each process (``None``: leave as it is).
    """

    def __init__(self, threads=None):
        self.token = uuid.uuid4().hex
        self.threads = threads

    def open(self):
        """Prepare a process to run blocks; returns the state passed to :meth:`run_block`."""
        raise NotImplementedError

    def run_block(self, state, number, start, stop):
        """Process block ``number`` (``[start, stop)``); write its output, then mark it done.

        Returns:
            A small dict; ``'voxels'`` (the block's output voxels) feeds the progress bar.
        """
        raise NotImplementedError

    def close(self, state):
        """Release what :meth:`open` made."""


# ----------------------------------------------------------------------------------------------------
# Worker side
# ----------------------------------------------------------------------------------------------------
def worker_threads():
    """Computing threads for the blocks of this worker process.

    A worker of :func:`start_local_cluster` is told (``ELEKTRONN_WORKER_THREADS``); any other Dask
    worker gets its own thread count (``dask worker --nthreads``, by default its share of the
    cores): blocks run one at a time per process, each with all of the worker's threads.
    """
    told = os.environ.get('ELEKTRONN_WORKER_THREADS')
    if told:
        return max(1, int(told))
    try:
        from distributed import get_worker
        return max(1, int(get_worker().state.nthreads))
    except (ImportError, ValueError, AttributeError):  # not in a Dask worker
        return available_cores()


_LOCALHOST = '127.0.0.1'
_STATES = {}
_STATES_LOCK = threading.Lock()


def _worker_state(task):
    """The opened state of ``task`` in this process (opened on first use; other tasks' states closed)."""
    with _STATES_LOCK:
        entry = _STATES.get(task.token)
        if entry is None:
            for token in list(_STATES):
                old_task, old_state, _ = _STATES.pop(token)
                old_task.close(old_state)
            entry = _STATES[task.token] = (task, task.open(), threading.Lock())
        return entry


def _run_on_worker(task, number, start, stop):
    """Run one block in a worker process (one block at a time per process and task).

    The result carries the wall-clock times when the call ``called``, the block ``began`` (after any
    wait for the process's lock) and ``ended``, to see where a cluster's time goes.
    """
    called = time.time()
    task, state, lock = _worker_state(task)
    with lock:
        began, t0 = time.time(), time.perf_counter()
        result = dict(task.run_block(state, number, start, stop) or {})
    result.setdefault('voxels', 0)
    result.update(number=int(number), seconds=time.perf_counter() - t0, pid=os.getpid(), called=called,
                  began=began, ended=time.time())
    return result


# ----------------------------------------------------------------------------------------------------
# Runners
# ----------------------------------------------------------------------------------------------------
def run_blocks(task, todo, client=None, total_blocks=None, show_progress=True, progress_interval=None,
               what='Processing', verb='processed', on_result=None):
    """Run ``task`` on the blocks ``todo``.

    Args:
        task: A :class:`BlockTask`.
        todo: ``[(number, start, stop), ...]``, the blocks to process.
        client: A ``distributed.Client`` to run on its cluster, or ``None`` (this process).
        total_blocks: All blocks of the plan (for the progress bar; default ``len(todo)``).
        show_progress: Print a progress bar with blocks/s, voxels/s and ETA.
        progress_interval: Seconds between progress lines (default: 0.25 on a terminal, else 10).
        what: Text in front of the bar.
        verb: What is done to a block (``'predicted'``), for the summary after an interruption.
        on_result: Called with the dict :meth:`BlockTask.run_block` returned (plus ``number``
            and ``seconds``) of every finished block, in the order they finish.

    Returns:
        dict: ``computed`` (blocks), ``voxels``, ``seconds`` (wall), ``block_seconds`` (summed
        time inside :meth:`BlockTask.run_block`).

    Raises:
        BlockRunError: a block failed (naming it); KeyboardInterrupt after the blocks done so far
            were reported.
    """
    from elektronn.utils import ProgressBar
    todo = list(todo)
    total_blocks = len(todo) if total_blocks is None else int(total_blocks)
    voxels = sum(BlockPlan.voxels(a, b) for _, a, b in todo)
    bar = ProgressBar(total_blocks, work=voxels, what=what, step_name='blocks', work_name='voxel',
                      interval=progress_interval, done=total_blocks - len(todo)) if show_progress else None
    stats = dict(computed=0, voxels=0, block_seconds=0.0)
    t0 = time.time()

    def finished(result):
        stats['computed'] += 1
        stats['voxels'] += int(result.get('voxels', 0))
        stats['block_seconds'] += float(result.get('seconds', 0.0))
        if bar is not None:
            bar.update(1, work=int(result.get('voxels', 0)))
        if on_result is not None:
            on_result(result)

    try:
        if client is None:
            _run_here(task, todo, finished)
        else:
            _run_on_cluster(task, todo, client, finished)
    except BaseException as e:
        if bar is not None:
            bar.close()
        seconds = time.time() - t0
        if isinstance(e, KeyboardInterrupt):
            logger.info('Interrupted: %i of %i blocks done; %s %i blocks (%i voxels) in %.1f s: %.3f Mvoxel/s',
                        total_blocks - len(todo) + stats['computed'], total_blocks, verb, stats['computed'],
                        stats['voxels'], seconds, stats['voxels'] / 1e6 / max(seconds, 1e-9))
        raise
    if bar is not None:
        bar.close()
    stats['seconds'] = time.time() - t0
    return stats


def _run_here(task, todo, finished):
    state = task.open()
    try:
        for number, start, stop in todo:
            t = time.perf_counter()
            result = dict(task.run_block(state, number, start, stop) or {})
            result.setdefault('seconds', time.perf_counter() - t)
            result.setdefault('number', int(number))
            finished(result)
    finally:
        task.close(state)


class _CancelRaceFilter(logging.Filter):
    """Drops tornado's report of a harmless race in ``distributed.utils.sync``: ctrl+c before its future
    exists makes the cancel callback it schedules raise ``NameError`` (there was nothing to cancel). The
    user pressed ctrl+c and gets the one-line summary, not a library traceback."""

    def filter(self, record):
        error = record.exc_info[1] if record.exc_info else None
        return not (isinstance(error, NameError) and "'future'" in str(error))


_CANCEL_RACE_FILTER = _CancelRaceFilter()


def _run_on_cluster(task, todo, client, finished):
    import cloudpickle
    from distributed import as_completed
    from distributed.scheduler import KilledWorker
    if not todo:
        return
    logging.getLogger('tornado.application').addFilter(_CANCEL_RACE_FILTER)  # idempotent: a filter is added once
    # The task travels once, as the result of a task that returns it: workers fetch it from each other, and the
    # scheduler can make it again should every worker holding it die (scattered data would be lost then).
    # It travels pickled: the scheduler unpickles the graphs it gets, and would else import (and hold) whatever
    # the task holds, e.g. a network (printing 'Load ELEKTRONN Core'); only the workers unpickle it.
    task_future = client.submit(pickle.loads, cloudpickle.dumps(task), key='elektronn-task-%s' % task.token,
                                pure=False)
    # Every worker holds it before the first block: else the blocks cling to the worker that has it and the
    # others get theirs late, by work stealing.
    client.replicate([task_future])
    window = _Window(client)
    pending = iter(todo)
    queue = as_completed()
    prefix = 'elektronn-block-%s' % task.token[:12]

    def submit_next():
        for number, start, stop in pending:
            queue.add(client.submit(_run_on_worker, task_future, number, start, stop, key='%s-%i' % (prefix, number),
                                    pure=False))
            return True
        return False

    while queue.count() < window.size() and submit_next():
        pass
    try:
        for future in queue:
            try:
                result = future.result()
            except KilledWorker as e:
                raise BlockRunError('%s: the block killed %s worker processes in a row (out of memory? give the '
                                    'workers more memory, or predict again with a lower --memory-gb and --overwrite: '
                                    'a resumed run keeps its block shape); the blocks done so far are kept'
                                    % (future.key, _failures())) from e
            except Exception as e:
                raise BlockRunError('%s failed on a worker: %s: %s' % (future.key, type(e).__name__, e)) from e
            finished(result)
            while queue.count() < window.size() and submit_next():  # workers may have joined
                pass
    except BaseException:
        client.cancel(list(queue.futures) + [task_future])
        raise
    # Released, not cancelled: a cancellation makes the scheduler report the cancelled keys back to the client,
    # which may be closing by then (a CommClosedError traceback in the scheduler's log). Released keys are
    # forgotten without a reply, and the workers free the task alike.
    task_future.release()


class _Window:
    """How many blocks to keep submitted: enough for every worker thread, without flooding the scheduler.

    Looked up again every few seconds, so that workers that join a running cluster get blocks too.
    """
    refresh_seconds = 5.0

    def __init__(self, client):
        self.client, self.checked, self.value = client, -float('inf'), 16

    def size(self):
        now = time.monotonic()
        if now - self.checked > self.refresh_seconds:
            self.checked = now
            self.value = max(16, 4 * (sum(self.client.nthreads().values()) or 1))
        return self.value


def _failures():
    import dask
    return dask.config.get('distributed.scheduler.allowed-failures', 3) + 1


# ----------------------------------------------------------------------------------------------------
# Clusters
# ----------------------------------------------------------------------------------------------------
def start_local_cluster(n_workers=None, threads=None, gpus=None, dashboard=True, memory_limit='auto',
                        silence_logs=True):
    """A ``distributed`` cluster of worker processes on this machine and a client connected to it.

    Each worker runs one block at a time (Dask ``nthreads=1``) and computes with ``threads`` threads.

    Args:
        n_workers: Worker processes (default: one per GPU, or 1).
        threads: Computing threads per worker (default: the cores divided by the workers).
        gpus: GPU indices (``CUDA_VISIBLE_DEVICES`` numbering); worker ``i`` sees only
            ``gpus[i]`` (as its ``cuda:0``). ``n_workers`` must then be ``None`` or ``len(gpus)``.
        dashboard: Serve the Dask dashboard (on port 8787, or a free one).
        memory_limit: Per worker, as Dask (``'auto'``: the machine's memory divided by the workers).

    Returns:
        A ``distributed.Client``; ``client.cluster`` is the cluster (close both when done).
    """
    import logging
    import dask
    from distributed import Client, Nanny, Scheduler, SpecCluster
    from distributed.system import MEMORY_LIMIT
    gpus = None if gpus is None else [str(g) for g in gpus]
    if gpus is not None:
        if n_workers not in (None, len(gpus)):
            raise ValueError('one worker per GPU: %i workers for the GPUs %s' % (n_workers, ','.join(gpus)))
        n_workers = len(gpus)
    n_workers = int(n_workers or 1)
    if n_workers < 1:
        raise ValueError('n_workers must be at least 1, got %r' % (n_workers,))
    threads = int(threads or max(1, available_cores() // n_workers))
    if memory_limit == 'auto':
        memory_limit = int(MEMORY_LIMIT // n_workers)
    workers = {}
    for i in range(n_workers):
        env = {'OMP_NUM_THREADS': str(threads), 'MKL_NUM_THREADS': str(threads),
               'ELEKTRONN_WORKER_THREADS': str(threads),
               # the workers start afresh: they show what this process shows (e.g. nothing but warnings)
               log.ENV_VARIABLE: str(log.get_log_level())}
        if gpus is not None:
            env['CUDA_VISIBLE_DEVICES'] = gpus[i]
        workers[i] = {'cls': Nanny, 'options': dict(nthreads=1, env=env, memory_limit=memory_limit, host=_LOCALHOST,
                                                    preload=['elektronn.inference.worker_setup'],
                                                    silence_logs=logging.WARNING if silence_logs else None)}
    # a local cluster listens on the loopback interface only: nothing outside this machine can reach it
    scheduler = {'cls': Scheduler, 'options': dict(host=_LOCALHOST, dashboard=bool(dashboard),
                                                   dashboard_address='%s:%i' % (_LOCALHOST, 8787 if dashboard else 0))}
    # One block per worker thread at a time: a block waiting on a busy worker would wait long while another
    # worker idles (Dask's default keeps some extra tasks on each worker for short tasks).
    with dask.config.set({'distributed.scheduler.worker-saturation': 1.0}):
        cluster = SpecCluster(workers=workers, scheduler=scheduler,
                              silence_logs=logging.WARNING if silence_logs else None, name='elektronn')
    client = Client(cluster)
    client.wait_for_workers(n_workers)
    return client


def connect(scheduler):
    """A ``distributed.Client`` of an existing cluster.

    Args:
        scheduler: The scheduler's address (``tcp://host:8786``) or a scheduler file (JSON, as
            written by ``dask scheduler --scheduler-file`` or dask-jobqueue).
    """
    from distributed import Client
    text = str(scheduler)
    if os.path.isfile(os.path.expanduser(text)):
        kwargs = dict(scheduler_file=os.path.expanduser(text))
    elif text.endswith('.json'):
        raise FileNotFoundError('scheduler file %s does not exist' % scheduler)
    else:
        kwargs = dict(address=text if '://' in text else 'tcp://' + text)
    try:
        return Client(timeout='30s', **kwargs)
    except (OSError, TimeoutError) as e:
        raise ConnectionError('cannot reach the Dask scheduler %s: %s; is it running, and is the address (or '
                              'scheduler file) right?' % (scheduler, e)) from None


@contextlib.contextmanager
def cluster_client(workers=None, threads=None, scheduler=None, gpus=None):
    """A client of a new local cluster of ``workers`` processes, or of the cluster at ``scheduler``.

    Yields ``None`` when neither is given (work in this process). A local cluster is closed on
    exit; an existing one is left running. Prints what it started or reached and the dashboard.

    Raises:
        ClusterError: ``workers`` and ``scheduler`` both given, or workers that do not fit ``gpus``.
        ConnectionError, FileNotFoundError: the scheduler cannot be reached.
    """
    if workers is not None and scheduler is not None:
        raise ClusterError('give workers (--workers) or a scheduler (--scheduler), not both')
    if workers is None and scheduler is None:
        yield None
        return
    if workers is not None:
        try:
            client = start_local_cluster(workers, threads, gpus=gpus)
        except ValueError as e:
            raise ClusterError(str(e)) from None
        logger.info('Started a local Dask cluster: %i worker process(es) x %s thread(s)%s',
                    len(client.nthreads()), ','.join(sorted(set(str(t) for t in client.run(worker_threads).values()))),
                    '' if gpus is None else ', GPUs %s (one each)' % ','.join(str(g) for g in gpus))
    else:
        client = connect(scheduler)
        logger.info('Connected to the Dask scheduler %s: %i worker(s)', client.scheduler.address,
                    len(client.nthreads()))
    logger.info('Dask dashboard: %s', client.dashboard_link)
    try:
        yield client
    finally:
        cluster = client.cluster if workers is not None else None
        client.close()
        if cluster is not None:
            cluster.close()
