"""DDP efficiency on this machine: 2 processes x 1 thread (gloo) against 1 process x 2 threads.

The neuro 3D example net of ``bench_net.py`` (batch 1 per process, input (x, y, z) = (127, 127, 7),
SGD with momentum) trains on fixed random batches:

* ``single``: one process with 2 threads, ``cnn.trainingStep`` on 2 x ``--steps`` batches;
* ``ddp``: two processes with 1 thread each, joined by ``torch.distributed`` (gloo) as torchrun
  would (``elektronn.training.distributed.setup`` + ``replicate``: DistributedDataParallel
  all-reduces the gradients), ``--steps`` steps each on their own batches; the wall time is rank
  0's, between two barriers.

Both train on the same number of examples. The figure is examples (steps x batch, summed over
ranks) per second; after one untimed warm-up round of each, ``--rounds`` rounds alternate the two
and each path's figure is its total examples over its total wall time (a stall counts). The
efficiency ``ddp / single`` has the target 0.8.

Usage: ``python benchmarks/bench_distributed.py [--steps 40] [--rounds 2]`` (about a minute on 2 cores;
``--steps 150 --rounds 3``, the figures in the docs, about 2 minutes).
One JSON line per figure.
"""
import argparse
import contextlib
import io
import json
import os
import socket
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_net import build_neuro3d  # noqa: E402  (the neuro 3D example net)


def batches(rank, n, cnn):
    """``n`` random (data, labels) batches of batch size 1 for ``cnn``, different per rank."""
    rng = np.random.default_rng(rank)
    x_shape = (1,) + tuple(cnn.input_shape[1:])
    y_shape = (1,) + tuple(cnn.output_shape[2:])
    return [(rng.random(x_shape, dtype=np.float32), rng.integers(0, 2, y_shape).astype(np.int16)) for _ in range(n)]


def build():
    with contextlib.redirect_stdout(io.StringIO()):
        torch.manual_seed(0)
        cnn = build_neuro3d()[0]
    return cnn


def train(cnn, data):
    with contextlib.redirect_stdout(io.StringIO()):
        for x, y in data:
            cnn.trainingStep(x, y, mode='SGD')


def single(steps):
    """Seconds of 2 x ``steps`` training steps in this process (2 threads)."""
    cnn = build()
    data = batches(0, 2 * steps, cnn)
    train(cnn, data[:3])  # the optimiser and the first passes of a shape are not timed
    t0 = time.perf_counter()
    train(cnn, data)
    return time.perf_counter() - t0


def _rank(rank, port, steps, results):
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), WORLD_SIZE='2', LOCAL_RANK=str(rank), MASTER_ADDR='127.0.0.1',
                      MASTER_PORT=str(port))
    from elektronn.training import distributed
    distributed.setup(cuda=False)
    try:
        cnn = build()
        distributed.replicate(cnn)
        data = batches(rank, steps, cnn)
        train(cnn, data[:3])
        dist.barrier()
        t0 = time.perf_counter()
        train(cnn, data)
        dist.barrier()
        if rank == 0:
            results.put(time.perf_counter() - t0)
    finally:
        distributed.shutdown()


def ddp(steps):
    """Seconds of ``steps`` DDP training steps on each of 2 processes (1 thread each)."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    ctx = mp.get_context('spawn')
    results = ctx.Queue()
    mp.spawn(_rank, args=(port, steps, results), nprocs=2, join=True)
    return results.get(timeout=10)


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--steps', type=int, default=40, help='steps per process of the DDP path')
    p.add_argument('--rounds', type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(2)
    common = dict(net='neuro_3d', batch_per_process=1, cores=os.cpu_count(), steps_per_process=args.steps)
    single(min(args.steps, 5))  # warm-up rounds
    ddp(min(args.steps, 5))
    totals = {'single': 0.0, 'ddp': 0.0}
    examples = 2 * args.steps
    for r in range(args.rounds):
        for name, fn in (('single', single), ('ddp', ddp)):
            seconds = fn(args.steps)
            totals[name] += seconds
            print(json.dumps(dict(figure='round', path=name, round=r, seconds=round(seconds, 2),
                                  examples_per_s=round(examples / seconds, 3), **common)), flush=True)
    rate = {k: examples * args.rounds / t for k, t in totals.items()}
    print(json.dumps(dict(figure='examples_per_s_single_process_2_threads', value=round(rate['single'], 3),
                          **common)))
    print(json.dumps(dict(figure='examples_per_s_ddp_2_processes_1_thread', value=round(rate['ddp'], 3), **common)))
    print(json.dumps(dict(figure='ddp_efficiency', value=round(rate['ddp'] / rate['single'], 3), target=0.8,
                          **common)))


if __name__ == '__main__':
    main()
