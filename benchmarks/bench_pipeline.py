"""The image pipeline on the neuro 3D example network: background batch workers and end-to-end training.

Config: ``examples/neuro_3d_synthetic_config.py`` (the network of the original's neuro 3D example,
input 127 x 127 x 7, batch 1, SGD; warp_on = 0.7, flips, grey-value augmentation, 2 background
processes) on the embedded synthetic volume (generated on first use). Previews are switched off
(they are work the schedule asks for, not pipeline overhead). Figures, one JSON line each:

* ``worker_batches_vs_training_steps``: training batches per second that the background workers
  (as many as the trainer starts) deliver, taking every batch as soon as it is ready, against the
  update steps per second of a bare ``cnn.trainingStep`` loop on batches made beforehand. Target:
  ratio >= 1.0 (the workers keep the training fed).
* ``end_to_end_vs_bare_loop``: update steps per second of ``elektronn-train`` (the CLI in a
  subprocess: workers, bookkeeping, history steps with train/valid estimates, plots; measured from
  the run's timeline, so start-up is excluded) against the bare loop. Every elektronn-train round
  is compared with the bare-loop rounds just before and after it (the load of a shared machine
  drifts); the figure is the median of these ratios. Target: ratio >= 0.8. ``loop_only_ratio``
  leaves out the steps followed by a history step.

Usage::

    python benchmarks/bench_pipeline.py [--seconds 30] [--bare-steps 100] [--rounds 4] [--threads N]
"""
import argparse
import contextlib
import io
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, '..')
EXAMPLE = os.path.join(ROOT, 'examples', 'neuro_3d_synthetic_config.py')
sys.path.insert(0, HERE)
from _pipeline_setup import emit  # noqa: E402
from bench_pipeline_overhead import bare_step_times  # noqa: E402


def write_config(workdir, name, max_runtime):
    lines = [open(EXAMPLE).read(), '', '# --- benchmark overrides ---',
             'save_path = %r' % os.path.join(workdir, name, ''), 'save_name = %r' % name,
             'max_runtime = %r' % float(max_runtime), 'initial_prev_h = 1e6', 'overwrite = True']
    path = os.path.join(workdir, name + '.py')
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return path


def make_trainer(config_path):
    from elektronn.training.config import Config
    from elektronn.training.trainer import Trainer
    with contextlib.redirect_stdout(io.StringIO()):
        trainer = Trainer(Config(config_path, gpu=False))
        trainer.loadData()
        trainer.createNet()
    return trainer


def worker_rate(trainer, n_batches):
    """Batches per second delivered by the trainer's number of background workers."""
    from elektronn.training.workers import BackgroundWorkers
    n_proc = max(2, int(trainer.config.background_processes))
    with BackgroundWorkers(trainer.data, trainer.get_batch_kwargs, n_proc=n_proc) as workers:
        for _ in range(2 * n_proc):
            workers.get()
        t0 = time.perf_counter()
        for _ in range(n_batches):
            workers.get()
        return n_batches / (time.perf_counter() - t0), n_proc


def cli_rates(config_path, name, workdir, env):
    """(overall steps/s, steps/s outside history steps, steps) of one elektronn-train run."""
    cmd = [sys.executable, '-m', 'elektronn.cli.train', config_path]
    out = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if out.returncode != 0:
        raise SystemExit('elektronn-train failed:\n' + out.stdout[-3000:])
    tl = np.load(os.path.join(workdir, name, 'Backup', name + '.timeline.npy'))
    hist = np.load(os.path.join(workdir, name, 'Backup', name + '.history.npy'))
    steps, t = tl[:, 0], tl[:, 1]
    dt = np.diff(t)  # dt[k]: duration of step k+1, including the bookkeeping after step k
    after_history = np.isin(steps[:-1], hist[:, 0])
    return (len(dt) / dt.sum(), 1.0 / np.median(dt[~after_history]), int(steps[-1]) + 1)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--seconds', type=float, default=30, help='training time of each elektronn-train round')
    p.add_argument('--bare-steps', type=int, default=100, help='steps of each bare-loop round')
    p.add_argument('--worker-batches', type=int, default=300, help='batches taken from the workers')
    p.add_argument('--rounds', type=int, default=4)
    p.add_argument('--threads', type=int, default=None, help='PyTorch threads (default: PyTorch\'s choice)')
    p.add_argument('--workdir', default=None, help='folder for the runs (default: a temporary one)')
    args = p.parse_args()
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    workdir = os.path.abspath(args.workdir or tempfile.mkdtemp(prefix='elektronn-bench-pipeline-'))
    os.makedirs(workdir, exist_ok=True)
    env = dict(os.environ)
    if args.threads:
        env['OMP_NUM_THREADS'] = str(args.threads)
    name = 'bench_pipeline'
    config_path = write_config(workdir, name, args.seconds)
    trainer = make_trainer(config_path)
    c = trainer.config
    with contextlib.redirect_stdout(io.StringIO()):
        batches = [trainer.data.getbatch(**trainer.get_batch_kwargs) for _ in range(20)]

    # the machine's load may change during the benchmark: every elektronn-train round is compared with
    # bare-loop rounds just before and after it, and the figure is the median of these ratios
    # (each side with the same estimator: overall rates as steps / total time, loop-only rates as
    # 1 / median step time)
    bare, bare_median, total, loop, cli_steps, ratios, loop_ratios = [], [], [], [], [], [], []

    def bare_round():
        times = bare_step_times(trainer, batches, args.bare_steps)
        bare.append(len(times) / times.sum())
        bare_median.append(1.0 / np.median(times))
    bare_round()
    for _ in range(args.rounds):
        tot, lo, n = cli_rates(config_path, name, workdir, env)
        bare_round()
        total.append(tot)
        loop.append(lo)
        cli_steps.append(n)
        ratios.append(tot / (0.5 * (bare[-2] + bare[-1])))
        loop_ratios.append(lo / (0.5 * (bare_median[-2] + bare_median[-1])))
    wrate, n_proc = worker_rate(trainer, args.worker_batches)
    b = float(np.median(bare))
    settings = dict(network='neuro_3d (input %s, zxy)' % (tuple(c.patch_size),), batch_size=c.batch_size,
                    warp_on=c.warp_on, flip_data=c.flip_data, grey_augment_channels=c.grey_augment_channels,
                    background_processes=n_proc, cpu_count=os.cpu_count())
    emit(figure='worker_batches_vs_training_steps', worker_batches_per_s=round(wrate, 2),
         bare_steps_per_s=round(b, 2), ratio=round(wrate / b, 2), target='>= 1.0',
         worker_batches=args.worker_batches, **settings)
    emit(figure='end_to_end_vs_bare_loop', elektronn_train_steps_per_s=round(float(np.median(total)), 2),
         bare_steps_per_s=round(b, 2), ratio=round(float(np.median(ratios)), 3), target='>= 0.8',
         round_ratios=[round(r, 3) for r in ratios], loop_only_ratio=round(float(np.median(loop_ratios)), 3),
         history_freq=c.history_freq[0], monitor_batch_size=c.monitor_batch_size, plot_on=c.plot_on,
         seconds_per_round=args.seconds, rounds=args.rounds, elektronn_train_steps=cli_steps,
         bare_rounds=[round(x, 2) for x in bare], **settings)

if __name__ == '__main__':
    main()
