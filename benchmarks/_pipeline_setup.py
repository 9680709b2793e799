"""Shared setup of the pipeline benchmarks: the MNIST CNN example config with a few overrides.

The example config is copied to a temporary run file with override lines appended (so it is read
exactly as ``elektronn-train`` reads it). ``--data-class path.py:Class`` replaces MNISTData, e.g. to
check a benchmark quickly on synthetic data (``tests/synthetic_data.py:BlobData`` with
``--data-kwargs '{"size": 26}'``).
"""
import contextlib
import io
import json
import os
import resource
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, '..')
EXAMPLE = os.path.join(ROOT, 'examples', 'MNIST_CNN_warp_config.py')
SHARED_MNIST = os.path.join(ROOT, '..', 'shared', 'data', 'mnist.pkl.gz')


def add_arguments(parser):
    parser.add_argument('--mnist', default=os.environ.get('ELEKTRONN_MNIST', SHARED_MNIST),
                        help='mnist.pkl.gz (default: ../shared/data/mnist.pkl.gz)')
    parser.add_argument('--data-class', default=None, metavar='PATH.py:CLASS',
                        help='use this data class instead of MNISTData (for a quick check of the script)')
    parser.add_argument('--data-kwargs', default='{}', help='JSON constructor kwargs for --data-class')
    parser.add_argument('--workdir', default=None, help='folder for the run (default: a temporary one)')
    parser.add_argument('--threads', type=int, default=None,
                        help='PyTorch intra-op threads (default: PyTorch\'s choice); reported with every figure')


def add_precision_argument(parser):
    parser.add_argument('--precision', choices=('fp32', 'bf16', 'fp16'), default=None,
                        help="training precision (config key mixed_precision; default: the config's)")


def precision_override(args):
    """The config override of ``--precision``: ``{}`` (the config's value) or ``{'mixed_precision': ...}``."""
    if args.precision is None:
        return {}
    return dict(mixed_precision=False if args.precision == 'fp32' else args.precision)


def make_trainer(args, quiet=True, **overrides):
    """A Trainer (data loaded, net created) for the example config plus ``overrides``."""
    import torch
    from elektronn.training.config import Config
    from elektronn.training.trainer import Trainer
    if args.threads:
        torch.set_num_threads(args.threads)
    workdir = args.workdir or tempfile.mkdtemp(prefix='elektronn-bench-')
    lines = [open(EXAMPLE).read(), '', '# --- benchmark overrides ---',
             'save_path = %r' % os.path.join(os.path.abspath(workdir), 'run', '')]
    if args.data_class:
        path, name = args.data_class.split(':')
        lines.append('data_class_name = (%r, %r)' % (os.path.abspath(path), name))
        lines.append('data_load_kwargs = %r' % json.loads(args.data_kwargs))
    else:
        if not os.path.exists(args.mnist):
            raise SystemExit('MNIST file %s not found (give --mnist)' % args.mnist)
        lines.append('data_load_kwargs = dict(data_load_kwargs, path=%r)' % os.path.abspath(args.mnist))
    for key, value in overrides.items():
        lines.append('%s = %r' % (key, value))
    path = os.path.join(workdir, 'bench_config.py')
    os.makedirs(workdir, exist_ok=True)
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    out = io.StringIO()
    with contextlib.redirect_stdout(out) if quiet else contextlib.nullcontext():
        config = Config(path, gpu=False)
        trainer = Trainer(config)
        trainer.loadData()
        trainer.createNet()
    trainer.interactive = False
    return trainer


def _live_process_cpu_seconds(pid):
    """utime + stime of a live process from /proc (0 when it is gone)."""
    try:
        with open('/proc/%i/stat' % pid) as f:
            fields = f.read().rsplit(')', 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def cpu_seconds(trainer=None):
    """CPU seconds of this process and its reaped children, plus the trainer's live background workers
    (a running ``Trainer.run`` has not reaped them yet)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    workers = getattr(trainer, 'workers', None)
    live = sum(_live_process_cpu_seconds(p) for p in workers.pids) if workers is not None else 0.0
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime + live


def emit(**figure):
    import torch
    figure.setdefault('torch_threads', torch.get_num_threads())
    figure.setdefault('OMP_WAIT_POLICY', os.environ.get('OMP_WAIT_POLICY', 'unset'))
    figure.setdefault('load_average_1min', round(os.getloadavg()[0], 2))
    print(json.dumps(figure), flush=True)


def example_trainer(example, config_path, save_path, **overrides):
    """A Trainer (data loaded, net created, non-interactive) for a copy of the example config ``example``
    written to ``config_path`` with the benchmark overrides (``save_path``, no time limit, no plots or
    previews, and ``overrides``: config values), read exactly as ``elektronn-train`` reads it."""
    from elektronn.training.config import Config
    from elektronn.training.trainer import Trainer
    with open(config_path, 'w') as f:
        f.write(open(example).read() + '\n# --- benchmark overrides ---\n'
                'save_path = %r\nmax_runtime = 10 ** 9\nplot_on = False\npreview_data_path = None\n'
                % os.path.join(save_path, '') + ''.join('%s = %r\n' % kv for kv in overrides.items()))
    with contextlib.redirect_stdout(io.StringIO()):
        trainer = Trainer(Config(config_path, gpu=False))
        trainer.loadData()
        trainer.createNet()
    trainer.interactive = False
    return trainer


def train_for_cpu_budget(trainer, budget):
    """Run ``trainer``'s loop (as elektronn-train does) until ``budget`` CPU seconds are spent by this
    process and its children, counted from now; returns the figure's training fields."""
    step = trainer._trainStep
    cpu_start = cpu_seconds(trainer)

    def step_within_budget(plotter):
        step(plotter)
        if cpu_seconds(trainer) - cpu_start >= budget:
            trainer.config.n_steps = trainer.state.step            # the loop ends after this step
    trainer._trainStep = step_within_budget
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        outcome = trainer.run()
    status = [line for line in log.getvalue().splitlines() if 'NLLm=' in line]
    return dict(steps=trainer.state.step, training_cpu_seconds=round(cpu_seconds(trainer) - cpu_start, 1),
                cpu_budget_s=budget, cpu_seconds_before_training=round(cpu_start, 1),
                training_seconds=round(trainer.state.t_passed, 1), outcome=outcome,
                last_status=status[-1] if status else None)
