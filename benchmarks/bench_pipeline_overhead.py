"""Pipeline overhead: elektronn-train's steps per second against a bare ``trainingStep`` loop.

Both run in this process on the MNIST CNN example config (batch 50, warping in 3 background
processes, SGD): the *bare* loop calls ``cnn.trainingStep`` on batches made beforehand; the
*pipeline* is ``Trainer.run`` (batches from the workers, bookkeeping, history steps, plots). Rounds
alternate to share the machine's load fairly. Figures (one JSON line each):

* ``pipeline_overhead_loop``: update steps of ``Trainer.run`` outside history steps (what the status
  line's it/s shows) against the bare loop. Target: ratio >= 0.85.
* ``pipeline_overhead_total``: all of ``Trainer.run`` including the history steps, whose train/valid
  estimates on ``monitor_batch_size`` examples every ``history_freq`` steps are work the config asks
  for (reported for honesty, with the settings used).

Usage: ``python benchmarks/bench_pipeline_overhead.py [--steps 400] [--rounds 3] [--mnist PATH]``
"""
import argparse
import contextlib
import io
import time

import numpy as np

import _pipeline_setup as setup


def bare_step_times(trainer, batches, steps):
    """Seconds of each of ``steps`` bare ``cnn.trainingStep`` calls on the pre-made ``batches``."""
    cnn, mode = trainer.cnn, trainer.config.optimizer
    inputs = [trainer._split_batch(b) for b in batches]
    cnn.trainingStep(*inputs[0][0], mode=mode, **inputs[0][1])
    times = np.empty(steps)
    for k in range(steps):
        x, aux = inputs[k % len(inputs)]
        t0 = time.perf_counter()
        cnn.trainingStep(*x, mode=mode, **aux)
        times[k] = time.perf_counter() - t0
    return times


def pipeline_rates(trainer, steps):
    """(steps/s outside history steps, steps/s overall) of one Trainer.run over ``steps`` steps."""
    start = trainer.state.step
    trainer.config.n_steps = start + steps
    with contextlib.redirect_stdout(io.StringIO()):
        trainer.run()
    tl = np.array(trainer.timeline[start:])
    dt = np.diff(tl[:, 1])  # dt[k]: time of step tl[k+1], including the bookkeeping of step tl[k]
    freq = trainer.config.history_freq[0]
    after_history = (tl[:-1, 0] % freq == 0) if freq else np.zeros(len(dt), bool)
    loop = dt[~after_history]
    return 1.0 / np.median(loop), len(dt) / dt.sum()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--steps', type=int, default=400, help='update steps per round and side')
    p.add_argument('--rounds', type=int, default=3)
    setup.add_arguments(p)
    args = p.parse_args()
    trainer = setup.make_trainer(args, max_runtime=10 ** 9, n_steps=10 ** 12)
    c = trainer.config
    with contextlib.redirect_stdout(io.StringIO()):
        batches = [trainer.data.getbatch(**trainer.get_batch_kwargs) for _ in range(20)]
    bare, loop, total = [], [], []
    for _ in range(args.rounds):
        bare.append(1.0 / np.median(bare_step_times(trainer, batches, args.steps)))  # the loop's estimator
        lo, to = pipeline_rates(trainer, args.steps)
        loop.append(lo)
        total.append(to)
    b = float(np.median(bare))
    settings = dict(batch_size=c.batch_size, background_processes=c.background_processes,
                    history_freq=c.history_freq[0], monitor_batch_size=c.monitor_batch_size,
                    data=type(trainer.data).__name__, steps=args.steps, rounds=args.rounds)
    setup.emit(figure='pipeline_overhead_loop', bare_steps_per_s=round(b, 2),
               pipeline_steps_per_s=round(float(np.median(loop)), 2), ratio=round(float(np.median(loop)) / b, 3),
               target='>= 0.85', **settings)
    setup.emit(figure='pipeline_overhead_total', bare_steps_per_s=round(b, 2),
               pipeline_steps_per_s=round(float(np.median(total)), 2), ratio=round(float(np.median(total)) / b, 3),
               note='includes the history steps (train/valid estimates) the config asks for', **settings)


if __name__ == '__main__':
    main()
