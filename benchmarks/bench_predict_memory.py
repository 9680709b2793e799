"""Peak resident memory of ``elektronn-predict`` on a large volume (target: below 2 GB).

The neuro 3D example net (``examples/neuro_3d_config.py``: filters xyz [[4,4,1],[3,3,1],[3,3,3],
[3,3,3],[2,2,1]], pools [[2,2,1],[2,2,1],1,1,1], 10, 20, 40, 40, 40 maps, 2 classes; random
weights saved as a training run's ``neuro_3d-LAST.param``) predicts a random uint8 volume of
``--shape`` (z, x, y) (default (250, 1024, 1024), 262 MB, stored as (x, y, z) in a chunked HDF5
file) into a uint8 output with ``--pad-raw``, in a separate ``elektronn-predict`` process, which reports
its peak resident set size (``ru_maxrss``) when it ends.

Baseline in the same run: the same command on a (16, 64, 64) volume (one small block): the memory
of Python, PyTorch, the network and the libraries; the difference is what the blocks take, to be
compared with ``--memory-gb``.

``--seconds S`` interrupts the prediction (SIGINT, as ctrl+c) after S seconds and then resumes it
with ``--resume`` until it is done (``--no-resume``: stop after the interruption); both
processes' peaks are reported. The volume and the outputs are written to a temporary folder
(``--workdir``) and deleted at the end.

One JSON line per figure: ``baseline_rss`` (GB), then per prediction process ``peak_rss`` (GB,
with blocks done, seconds and output voxels per second), and ``summary`` (the largest peak, the
target of 2 GB and whether it holds).

Usage: ``python benchmarks/bench_predict_memory.py [--shape 250,1024,1024] [--memory-gb 1.0]
[--seconds S [--no-resume]] [--threads 2] [--workdir /tmp]`` (the full default volume takes
about 10-20 minutes on 2 CPU cores; ``--shape 64,1024,1024`` about 3-5 minutes).
"""
import argparse
import contextlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASELINE_SHAPE = (16, 64, 64)
#: elektronn-predict, reporting its own peak resident set size (Linux: KB) when it ends.
_WRAPPER = ('import resource, sys\n'
            'from elektronn.cli.predict import main\n'
            'rc = main(sys.argv[1:])\n'
            'print("PEAK_RSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n'
            'sys.exit(rc)\n')


def make_run(folder):
    """A save directory ``<folder>/neuro_3d`` with the example config and random parameters."""
    from elektronn.training.config import Config
    from elektronn.training.netcreation import createNet
    run = os.path.join(folder, 'neuro_3d')
    os.makedirs(os.path.join(run, 'Backup'))
    shutil.copy(os.path.join(ROOT, 'examples', 'neuro_3d_config.py'), os.path.join(run, 'Backup', 'config.py'))
    with contextlib.redirect_stdout(io.StringIO()):
        config = Config(os.path.join(run, 'Backup', 'config.py'), use_existing_dir=True, init_device=False,
                        check_files=False)
        cnn = createNet(config, config.patch_size, 1, 2, config.dimensions)
        cnn.saveParameters(os.path.join(run, 'neuro_3d-LAST.param'))
    return run


def make_volume(path, shape_zxy, seed=0):
    """A random uint8 volume stored (x, y, z), written slab by slab (little memory)."""
    z, x, y = shape_zxy
    rng = np.random.default_rng(seed)
    with h5py.File(path, 'w') as f:
        d = f.create_dataset('raw', shape=(x, y, z), dtype=np.uint8, chunks=(min(x, 128), min(y, 128), min(z, 32)))
        for a in range(0, x, 64):
            b = min(x, a + 64)
            d[a:b] = rng.integers(0, 256, (b - a, y, z), dtype=np.uint8)


def predict(run, src, out, args, extra=(), seconds=None):
    """Run elektronn-predict in a child process; returns (peak RSS bytes, seconds, output text)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONUNBUFFERED='1')
    cmd = [sys.executable, '-c', _WRAPPER, run, src + ':raw', out + ':prob', '--pad-raw', '--uint8',
           '--memory-gb', str(args.memory_gb)] + list(extra)
    t0 = time.time()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if seconds is not None:
        try:
            text, _ = proc.communicate(timeout=seconds)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            text, _ = proc.communicate()
    else:
        text, _ = proc.communicate()
    peak = re.search(r'^PEAK_RSS_KB (\d+)$', text, re.M)
    if peak is None:
        raise RuntimeError('elektronn-predict ended without reporting its memory (exit %i):\n%s'
                           % (proc.returncode, text[-3000:]))
    return int(peak.group(1)) * 1024, time.time() - t0, text, proc.returncode


def blocks_done(out):
    with h5py.File(out, 'r') as f:
        done = f['prob_done'][...]
    return int(done.sum()), int(done.size)


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--shape', default='250,1024,1024', help='volume (z, x, y)')
    p.add_argument('--memory-gb', type=float, default=1.0)
    p.add_argument('--seconds', type=float, default=None, help='interrupt after this many seconds, then resume')
    p.add_argument('--no-resume', action='store_true', help='stop after the interruption')
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--workdir', default=None)
    args = p.parse_args()
    shape = tuple(int(v) for v in args.shape.split(','))
    folder = tempfile.mkdtemp(prefix='elektronn_bench_memory_', dir=args.workdir)
    try:
        run = make_run(folder)
        base_src, src = os.path.join(folder, 'small.h5'), os.path.join(folder, 'raw.h5')
        make_volume(base_src, BASELINE_SHAPE)
        base_rss, _, text, rc = predict(run, base_src, os.path.join(folder, 'small_out.h5'), args)
        if rc != 0:
            raise RuntimeError('the baseline prediction failed:\n' + text[-3000:])
        print(json.dumps(dict(figure='baseline_rss', gb=round(base_rss / 1e9, 3), shape_zxy=BASELINE_SHAPE)),
              flush=True)
        make_volume(src, shape)
        out = os.path.join(folder, 'out.h5')
        peaks = []
        phases = [('first', (), args.seconds)]
        if args.seconds is not None and not args.no_resume:
            phases.append(('resumed', ('--resume',), None))
        for name, extra, seconds in phases:
            rss, wall, text, rc = predict(run, src, out, args, extra, seconds)
            done, total = blocks_done(out)
            plan = re.search(r'in (\d+) blocks of (\([^)]*\))', text)
            voxels = re.search(r'[Pp]redicted \d+ blocks \((\d+) voxels\) in ([\d.]+) s', text)
            peaks.append(rss)
            print(json.dumps(dict(
                figure='peak_rss', process=name, gb=round(rss / 1e9, 3), blocks_gb=round((rss - base_rss) / 1e9, 3),
                memory_gb=args.memory_gb, shape_zxy=shape, exit_code=rc, blocks_done=done, blocks=total,
                block_xyz=plan.group(2) if plan else None, wall_s=round(wall, 1),
                voxels_per_s=round(int(voxels.group(1)) / float(voxels.group(2))) if voxels else None)), flush=True)
            if rc not in (0, 130):
                raise RuntimeError('elektronn-predict failed (exit %i):\n%s' % (rc, text[-3000:]))
        print(json.dumps(dict(figure='summary', peak_rss_gb=round(max(peaks) / 1e9, 3), target_gb=2.0,
                              ok=max(peaks) < 2e9, baseline_gb=round(base_rss / 1e9, 3), threads=args.threads)))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == '__main__':
    main()
