"""Block-wise prediction on a Dask LocalCluster against the single-process path, from and to Zarr.

Three figures, each as JSON lines, all measured in the same run:

(a) ``throughput``: output voxels per second of ``--workers 2`` (two worker processes, 1 thread
    each) against the single-process path with 2 threads, on the (64, 256, 256) (z, x, y) volume of
    ``bench_predict.py`` with its neuro 3D example net (random weights), uint8 Zarr in, float32
    Zarr out, ``--memory-gb 1`` each. Both paths go through ``predict_volume`` with their default
    block plans (a cluster plans at least two blocks per worker). After one untimed round of each
    (oneDNN builds its kernels per shape on first use), ``--rounds`` rounds alternate the two paths;
    each path's figure is its total output voxels over its total wall time (no median, no best-of:
    a stall counts). The ratio's target is >= 0.9. A second pair uses one block shape for both
    paths (the cluster's plan), which separates the parallel efficiency from the block planning.
    The cluster's start-up is reported apart (paid once per run, not per block).
(b) ``scheduler_overhead``: wall time per block of a cluster run with a trivial network (one 1x1x1
    convolution) over many small blocks, next to the same run in one process; from it, the time a
    real block must take for the overhead to stay at 5 %, and the block count of the (a) volume
    at which the overhead would reach 5 % of the real blocks' time.
(c) ``peak_rss``: the peak resident memory (``VmHWM``) of each worker process predicting a
    (250, 1024, 1024) uint8 volume with the neuro 3D net, ``--memory-gb 1``, ``--pad-raw``,
    ``--uint8`` (target < 2 GB per worker); also the client process's peak.

Usage: ``python benchmarks/bench_predict_distributed.py [--parts a,b,c] [--rounds 2]
[--memory-shape 250,1024,1024] [--workdir /tmp]`` ((a) and (b) take about 3 minutes on 2 cores,
(c) about 15). Progress goes to stderr, the JSON lines to stdout.
"""
import argparse
import contextlib
import json
import os
import resource
import shutil
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_predict import build  # noqa: E402  (the neuro 3D example net)

from elektronn import volumes  # noqa: E402
from elektronn.inference.runners import start_local_cluster  # noqa: E402
from elektronn.inference.volume_prediction import predict_volume  # noqa: E402

THROUGHPUT_ZXY = (64, 256, 256)
WORKERS = 2


def emit(**figure):
    print(json.dumps(figure), flush=True)


def make_volume(path, shape_zxy, seed=0):
    """A random uint8 volume ``path:raw`` stored (x, y, z) in a Zarr store, written slab by slab."""
    z, x, y = shape_zxy
    rng = np.random.default_rng(seed)
    with volumes.open_container(path, 'a', 'benchmark input') as c:
        vol = c.create_volume('raw', (x, y, z), np.uint8, chunks=(min(x, 128), min(y, 128), min(z, 32)))
        for a in range(0, x, 64):
            b = min(x, a + 64)
            vol[a:b] = rng.integers(0, 256, (b - a, y, z), dtype=np.uint8)
    return path + ':raw'


def timed_prediction(cnn, src, out, **kwargs):
    """``(wall seconds, summary)`` of one prediction into a fresh output; its printouts go to stderr."""
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        summary = predict_volume(cnn, src, out + ':prob', progress_interval=30, **kwargs)
    return time.perf_counter() - t0, summary


def trivial_net(input_zxy):
    """One 1x1x1 convolution: the blocks' work is reading, writing and the scheduler."""
    from elektronn.net.convnet import MixedConvNN
    with contextlib.redirect_stdout(sys.stderr):
        cnn = MixedConvNN(input_zxy, input_depth=1)
        cnn.addConvLayer(2, 1, pool_shape=1, activation_func='linear', is_last_layer=True)
        cnn.compileOutputFunctions(only_forward=True)
    return cnn


def part_throughput(client, folder, rounds, common):
    cnn = build(THROUGHPUT_ZXY, mfp=True)
    src = make_volume(os.path.join(folder, 'raw.zarr'), THROUGHPUT_ZXY)
    out = os.path.join(folder, 'out.zarr')
    _, cluster_plan = timed_prediction(cnn, src, out, client=client)  # untimed warm-up of both paths
    _, local_plan = timed_prediction(cnn, src, out)
    paths = {
        'single_process': dict(),
        'workers': dict(client=client),
        'single_process_cluster_blocks': dict(block_shape=cluster_plan['block']),
        'workers_cluster_blocks': dict(client=client, block_shape=cluster_plan['block']),
    }
    totals = {name: [0.0, 0] for name in paths}
    for r in range(rounds):
        for name, kwargs in paths.items():
            wall, summary = timed_prediction(cnn, src, out, **kwargs)
            totals[name][0] += wall
            totals[name][1] += summary['voxels']
            emit(figure='throughput_round', path=name, round=r, seconds=round(wall, 2), blocks=summary['blocks'],
                 block_zxy=list(summary['block']), voxels_per_s=round(summary['voxels'] / wall), **common)
    speed = {name: v / t for name, (t, v) in totals.items()}
    for name in paths:
        emit(figure='throughput_voxels_per_s', path=name, value=round(speed[name]),
             seconds=round(totals[name][0], 2), **common)
    emit(figure='workers_over_single_process', value=round(speed['workers'] / speed['single_process'], 3),
         target=0.9, blocks_single=local_plan['blocks'], blocks_workers=cluster_plan['blocks'], **common)
    emit(figure='workers_over_single_process_same_blocks',
         value=round(speed['workers_cluster_blocks'] / speed['single_process_cluster_blocks'], 3),
         block_zxy=list(cluster_plan['block']), **common)
    return totals['workers'][0] / rounds, cluster_plan['blocks']


def part_overhead(client, folder, real, common):
    shape = THROUGHPUT_ZXY
    cnn = trivial_net(shape)
    src = os.path.join(folder, 'raw.zarr:raw')
    if not os.path.exists(os.path.join(folder, 'raw.zarr')):
        src = make_volume(os.path.join(folder, 'raw.zarr'), shape)
    out = os.path.join(folder, 'trivial.zarr')
    block = (8, 32, 32)
    timed_prediction(cnn, src, out, client=client, block_shape=block, show_progress=False)  # warm-up
    wall, summary = timed_prediction(cnn, src, out, client=client, block_shape=block, show_progress=False)
    local_wall, _ = timed_prediction(cnn, src, out, block_shape=block, show_progress=False)
    per_block = wall / summary['blocks']
    figure = dict(figure='scheduler_overhead_s_per_block', value=round(per_block, 5), blocks=summary['blocks'],
                  block_zxy=list(block), single_process_s_per_block=round(local_wall / summary['blocks'], 5),
                  real_block_seconds_for_5pct=round(per_block / 0.05, 3), **common)
    if real is not None:
        real_wall, real_blocks = real
        figure.update(real_run_seconds=round(real_wall, 2), real_blocks=real_blocks,
                      real_block_wall_seconds=round(real_wall / real_blocks, 2),
                      overhead_pct_of_real_block=round(100 * per_block / (real_wall / real_blocks), 3),
                      blocks_at_5pct_of_real_block_time=int(0.05 * real_wall / per_block))
    emit(**figure)


def part_memory(client, folder, shape, memory_gb, common):
    cnn = build((16, 64, 64), mfp=True)  # the network's input size does not matter for block-wise prediction
    src = make_volume(os.path.join(folder, 'large.zarr'), shape, seed=1)
    out = os.path.join(folder, 'large_out.zarr')
    client.restart()  # fresh worker processes: their peaks belong to this run alone
    before = dict(client.run(_peak_rss))
    wall, summary = timed_prediction(cnn, src, out, client=client, memory_gb=memory_gb, pad_raw=True, as_uint8=True)
    peaks = client.run(_peak_rss)
    worst = max(peaks.values())
    emit(figure='peak_rss_per_worker_gb', value=round(worst / 1e9, 3), target=2.0, ok=worst < 2e9,
         per_worker_gb=[round(v / 1e9, 3) for v in peaks.values()],
         idle_worker_gb=[round(v / 1e9, 3) for v in before.values()],
         client_gb=round(_peak_rss() / 1e9, 3), shape_zxy=list(shape), memory_gb=memory_gb,
         blocks=summary['blocks'], block_zxy=list(summary['block']), seconds=round(wall, 1),
         voxels_per_s=round(summary['voxels'] / wall), **common)


def _peak_rss():
    """Peak resident memory of this process (bytes): ``VmHWM`` on Linux.

    Not ``ru_maxrss``: it survives ``exec``, so a worker spawned from a large parent would report
    the parent's size.
    """
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KB on Linux


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--parts', default='a,b,c', help='which figures: a (throughput), b (overhead), c (memory)')
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--memory-shape', default='250,1024,1024', help='volume (z, x, y) of part c')
    p.add_argument('--memory-gb', type=float, default=1.0)
    p.add_argument('--workdir', default=None)
    args = p.parse_args()
    parts = set(args.parts.split(','))
    torch.set_num_threads(WORKERS)  # the single-process path: 2 threads
    common = dict(workers=WORKERS, threads_per_worker=1, single_process_threads=WORKERS, cores=os.cpu_count())
    folder = tempfile.mkdtemp(prefix='elektronn_bench_distributed_', dir=args.workdir)
    t0 = time.perf_counter()
    client = start_local_cluster(WORKERS, threads=1, dashboard=False)
    emit(figure='cluster_start_seconds', value=round(time.perf_counter() - t0, 2), **common)
    try:
        real = part_throughput(client, folder, args.rounds, common) if 'a' in parts else None
        if 'b' in parts:
            part_overhead(client, folder, real, common)
        if 'c' in parts:
            part_memory(client, folder, tuple(int(v) for v in args.memory_shape.split(',')), args.memory_gb, common)
    finally:
        cluster = client.cluster
        client.close()
        cluster.close()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == '__main__':
    main()
