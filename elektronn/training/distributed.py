"""Distributed data parallel training: one replica of the network per process, PyTorch's own engine.

Started by ``torchrun`` (``python -m torch.distributed.run``)::

    torchrun --nproc_per_node=2 -m elektronn.train config.py

every process trains one replica; ``torch.nn.parallel.DistributedDataParallel`` broadcasts rank 0's
parameters when it wraps the network and all-reduces (averages) the gradients during ``backward``,
so all replicas take the same update: that of one process on the concatenation of all ranks'
batches (the losses are batch means and every rank draws ``batch_size`` examples). NCCL connects
the processes on CUDA (each on ``cuda:LOCAL_RANK``), gloo on the CPU.

Without torchrun's variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), or with ``WORLD_SIZE=1``,
nothing here changes anything: :func:`context` is a single-process context whose collectives
return their input.

What the rest of the pipeline does with it: ``elektronn-train`` (:mod:`elektronn.cli.train`) joins
the group (:func:`setup`), silences the other ranks' output and lets rank 0 make the save directory;
``elektronn-train --gpu=0,1`` (or ``--gpu=all``) starts torchrun itself. The
:class:`~elektronn.training.trainer.Trainer` wraps the network (:func:`replicate`), seeds every
rank's data and workers apart (:func:`rank_seed_sequence`), lets the ranks agree at every step on
stopping, averages the history estimates, writes only on rank 0 (with every rank's random states in
the resume state) and refuses line-search optimisers (:func:`check_optimizer`).
"""
import dataclasses
import gc
import os
import warnings
import weakref

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

__all__ = ['DistContext', 'from_environment', 'setup', 'context', 'shutdown', 'replicate', 'check_optimizer',
           'LINE_SEARCH_OPTIMIZERS', 'rank_seed_sequence']

#: Optimisers that search along a direction with several loss evaluations on one (full) batch: under
#: DDP every rank would search on its own batch and the replicas would drift apart.
LINE_SEARCH_OPTIMIZERS = ('CG', 'LBFGS')


@dataclasses.dataclass(frozen=True)
class DistContext:
    """Where this process stands in a distributed run.

    Attributes:
        rank: The process's rank, ``0 <= rank < world_size``.
        world_size: Number of processes (1: no distributed training).
        local_rank: Rank on this machine (chooses the GPU).
        device: The device of this rank's replica, or ``None`` before :func:`setup` (and always in a
            single-process run, which keeps its usual device choice).
        backend: ``'nccl'``, ``'gloo'`` or ``None`` (no process group).
    """
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = None
    backend: str = None

    @property
    def is_main(self):
        """Whether this process prints and writes the save directory (rank 0)."""
        return self.rank == 0

    @property
    def active(self):
        """Whether a process group of more than one process is running."""
        return self.world_size > 1 and self.backend is not None and dist.is_initialized()

    # -- collectives (single process: the input) -----------------------------------------------------
    def _tensor(self, values, dtype=torch.float64):
        # NCCL reduces CUDA tensors only; gloo CPU tensors.
        return torch.tensor(values, dtype=dtype, device=self.device if self.backend == 'nccl' else 'cpu')

    def all_reduce_mean(self, values):
        """The mean over the ranks of each of ``values`` (floats), as a list of floats."""
        if not self.active:
            return [float(v) for v in values]
        t = self._tensor([float(v) for v in values])
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return (t / self.world_size).tolist()

    def all_reduce_max(self, values):
        """The maximum over the ranks of each of ``values`` (ints), as a list of ints."""
        if not self.active:
            return [int(v) for v in values]
        t = self._tensor([int(v) for v in values], dtype=torch.int64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return [int(v) for v in t.tolist()]

    def broadcast(self, obj, src=0):
        """Rank ``src``'s ``obj`` (any picklable object) on every rank."""
        if not self.active:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=src, device=self.device if self.backend == 'nccl' else None)
        return box[0]

    def gather(self, obj, dst=0):
        """The list of every rank's ``obj`` (picklable) on rank ``dst``, ``None`` on the others."""
        if not self.active:
            return [obj]
        box = [None] * self.world_size if self.rank == dst else None
        dist.gather_object(obj, box, dst=dst)
        return box


_SINGLE = DistContext()
_context = _SINGLE


def _env_int(environ, name, default):
    text = environ.get(name)
    if text is None or text == '':
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError('environment variable %s must be an integer (torchrun sets it), got %r' % (name, text)) \
            from None


def from_environment(environ=None):
    """The :class:`DistContext` that torchrun's variables ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``
    describe (a single process without them); no process group yet.

    Raises:
        ValueError: the variables are malformed or inconsistent.
    """
    environ = os.environ if environ is None else environ
    world_size = _env_int(environ, 'WORLD_SIZE', 1)
    rank = _env_int(environ, 'RANK', 0)
    local_rank = _env_int(environ, 'LOCAL_RANK', rank)
    if world_size < 1 or not 0 <= rank < world_size or local_rank < 0:
        raise ValueError('inconsistent torchrun environment: RANK=%r WORLD_SIZE=%r LOCAL_RANK=%r (need '
                         '0 <= RANK < WORLD_SIZE)' % (rank, world_size, local_rank))
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank)


def setup(cuda, environ=None):
    """Join the process group that torchrun's environment describes; a no-op for a single process.

    Args:
        cuda: Train on GPUs: rank ``r`` uses ``cuda:LOCAL_RANK`` and NCCL; else the CPU and gloo.

    Returns:
        The :class:`DistContext`, also returned by :func:`context` from now on.
    """
    global _context
    ctx = from_environment(environ)
    if ctx.world_size == 1:
        return _context
    if cuda:
        if not torch.cuda.is_available():
            raise RuntimeError('distributed training on GPUs: CUDA is not available in this PyTorch installation '
                               '(%s); use --gpu=false to train on the CPU with gloo' % torch.__version__)
        if ctx.local_rank >= torch.cuda.device_count():
            raise RuntimeError('LOCAL_RANK %i has no GPU: this machine has %i; start at most that many processes '
                               'per node (--nproc_per_node)' % (ctx.local_rank, torch.cuda.device_count()))
        device, backend = torch.device('cuda', ctx.local_rank), 'nccl'
        torch.cuda.set_device(device)
    else:
        device, backend = torch.device('cpu'), 'gloo'
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=ctx.rank, world_size=ctx.world_size)
    _context = dataclasses.replace(ctx, device=device, backend=backend)
    return _context


def context():
    """This process's :class:`DistContext` (single-process until :func:`setup` joined a group)."""
    return _context


def shutdown(wait=True):
    """Leave the process group (if any); :func:`context` is single-process again.

    Args:
        wait: Meet the other ranks first: a rank that tears the group down while another one still
            talks to it can abort (SIGABRT) at exit. Pass False where the others may never arrive
            (after an error on this rank alone).
    """
    global _context
    if dist.is_available() and dist.is_initialized():
        gc.collect()  # DDP wrappers of networks nobody holds go while their group still exists
        if wait:
            dist.barrier()
        dist.destroy_process_group()
    _context = _SINGLE


class _Replica(nn.Module):
    """The module DDP wraps: the network's layers, and as forward pass the network's ``_run`` (linear
    and activated output), which the training objective needs.

    Only the layers are registered (not the network itself), so the network does not become its own
    grandchild, and parameters outside the layers (kept-aside output layers) are no part of the
    gradient all-reduce. The network is held by a weak reference: without a reference cycle the
    wrapper goes with its network at once, not at some later garbage collection, which may come
    after the process group is gone (gloo then aborts the process).
    """

    def __init__(self, cnn):
        super().__init__()
        self.layers = cnn.layers
        self._net = weakref.ref(cnn)  # not registered as a submodule

    def forward(self, x):
        return self._net()._run(x)


def replicate(cnn, ctx=None):
    """Route ``cnn``'s training forward passes through a ``DistributedDataParallel`` wrapper.

    The wrapper broadcasts rank 0's parameters now and averages the gradients in every backward
    pass. Move the network to its device before (``cnn.to``): the wrapper does not follow later moves.

    Returns:
        The wrapper (also kept as ``cnn._ddp``).
    """
    ctx = ctx or context()
    if not ctx.active:
        raise RuntimeError('replicate: no process group; call elektronn.training.distributed.setup() under torchrun')
    if cnn.device != ctx.device and not (cnn.device.type == ctx.device.type == 'cpu'):
        raise RuntimeError('replicate: the network is on %s but rank %i trains on %s; move it there first'
                           % (cnn.device, ctx.rank, ctx.device))
    device_ids = [ctx.device.index] if ctx.device.type == 'cuda' else None
    # Filters with only size-1 spatial axes (1x1x1 output layers) have ambiguous channels-last strides, and
    # their gradients come out with the other, equivalent ones: DDP then copies these few values into its
    # bucket each step and warns about it at every step's first backward. Nothing to act on.
    warnings.filterwarnings('ignore', message='Grad strides do not match bucket view strides')
    wrapper = nn.parallel.DistributedDataParallel(_Replica(cnn), device_ids=device_ids)
    cnn.__dict__['_ddp'] = wrapper  # not a submodule (see MixedConvNN._objective)
    return wrapper


def check_optimizer(name, ctx=None):
    """Raise ``ValueError`` if optimiser ``name`` cannot train under DDP (see :data:`LINE_SEARCH_OPTIMIZERS`)."""
    ctx = ctx or context()
    if ctx.world_size > 1 and name in LINE_SEARCH_OPTIMIZERS:
        raise ValueError("optimizer %r searches its step on one full batch, which distributed training cannot "
                         "share between processes (each rank would search on its own batch); use 'SGD', 'Adam' "
                         "or 'RPROP' under torchrun, or train %s in a single process" % (name, name))


def rank_seed_sequence(seed_seq, ctx=None):
    """This rank's ``numpy.random.SeedSequence``: rank 0's entropy, spawn key ``(rank,)``, so that the
    ranks' data streams and background workers differ and the run is described by one entropy."""
    ctx = ctx or context()
    entropy = ctx.broadcast(seed_seq.entropy)
    return np.random.SeedSequence(entropy, spawn_key=(ctx.rank,))
