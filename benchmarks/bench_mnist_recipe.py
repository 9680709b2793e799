"""The documented MNIST recipe with elektronn-train's pipeline: test error and time.

Phase 1 trains the MNIST CNN example config (warping in background processes, SGD LR 0.02) for
``--warp-minutes``; phase 2 does what the examples page tells users to type into the console —
``data.warp_on = False`` and ``setlr 0.002`` — and fine-tunes for ``--finetune-minutes``. Then
``self.testModel('test')`` on the 10000 test images. Figures (one JSON line each):

* ``mnist_recipe_test_error``: test error in % (target <= 0.5, the original's documented result);
* ``mnist_recipe_time``: wall and CPU seconds (this process and its workers; target <= 45 min CPU),
  update steps.

Training minutes count as ``max_runtime`` does (history steps included). ``--history-freq`` and
``--monitor-batch-size`` override the config's estimates (every 100 steps on 10000 images cost much
CPU time on a small machine). Usage::

    python benchmarks/bench_mnist_recipe.py [--warp-minutes 30] [--finetune-minutes 8] [--threads 1]
    python benchmarks/bench_mnist_recipe.py --quick        # a 1-minute check of the script
"""
import argparse
import contextlib
import io
import os
import time

import _pipeline_setup as setup


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--warp-minutes', type=float, default=30.0)
    p.add_argument('--finetune-minutes', type=float, default=8.0)
    p.add_argument('--history-freq', type=int, default=1000)
    p.add_argument('--monitor-batch-size', type=int, default=10000)
    p.add_argument('--quick', action='store_true', help='0.5 + 0.25 minutes, to check the script')
    p.add_argument('--verbose', action='store_true', help='show the status lines')
    setup.add_arguments(p)
    setup.add_precision_argument(p)
    args = p.parse_args()
    if args.quick:
        args.warp_minutes, args.finetune_minutes, args.history_freq = 0.5, 0.25, 200
    t_wall, t_cpu = time.time(), setup.cpu_seconds()
    trainer = setup.make_trainer(args, max_runtime=args.warp_minutes * 60, n_steps=10 ** 12,
                                 history_freq=[args.history_freq], monitor_batch_size=args.monitor_batch_size,
                                 plot_on=False, **setup.precision_override(args))
    quiet = contextlib.nullcontext() if args.verbose else contextlib.redirect_stdout(io.StringIO())
    with quiet:
        trainer.run()                                  # phase 1: warped training
        steps_warp = trainer.state.step
        trainer.data.warp_on = False                   # the console recipe: data.warp_on = False
        trainer.cnn.setLR(0.002, mode=trainer.config.optimizer)  # setlr 0.002
        trainer.config.max_runtime += args.finetune_minutes * 60
        trainer.run()                                  # phase 2: fine-tuning
        trainer.get_batch_kwargs_test['batch_size'] = 10000
        test_loss, test_error = trainer.testModel('test')
        valid_loss, valid_error = trainer.testModel('valid')
    wall, cpu = time.time() - t_wall, setup.cpu_seconds() - t_cpu
    setup.emit(figure='mnist_recipe_test_error', test_error_percent=round(100 * test_error, 3),
               valid_error_percent=round(100 * valid_error, 3), test_loss=round(test_loss, 5), target='<= 0.5',
               data=type(trainer.data).__name__, precision=trainer.cnn.precision)
    setup.emit(figure='mnist_recipe_time', wall_s=round(wall, 1), cpu_s=round(cpu, 1), target_cpu_s=45 * 60,
               steps_warped=steps_warp, steps_total=trainer.state.step, warp_minutes=args.warp_minutes,
               finetune_minutes=args.finetune_minutes, history_freq=args.history_freq, cores=os.cpu_count(),
               save_path=trainer.save_path)


if __name__ == '__main__':
    main()
