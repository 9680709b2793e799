"""``elektronn-train``: train a network from a config file.

Usage::

    elektronn-train <config> [--gpu {auto|false|<int>|<int>,<int>,...|all}] [--resume] [--quiet | --verbose]
    torchrun --nproc_per_node=N -m elektronn.train <config> [--gpu ...] [--resume] [--quiet | --verbose]

The run's files go to the config's ``save_path``; see ``elektronn-train --help``. Under torchrun
every process trains a replica (see :mod:`elektronn.training.distributed`); rank 0 prints and writes.
"""
import argparse
import importlib.resources
import logging
import os
import sys

from elektronn.cli._common import add_verbosity_arguments, error, verbosity, verbosity_flags

__all__ = ['main', 'find_config', 'parseargs']

logger = logging.getLogger('elektronn.cli.train')  # not __name__: that is '__main__' under python -m
PROG = 'elektronn-train'

_EPILOG = """\
what happens:
  The config (a Python file, see examples/config_template.py) is read on top of the master
  defaults and ~/.elektronn.config and checked; the data and the network are built. Only then the
  save directory is made and the config copied to <save_path>/Backup/: with overwrite = True an
  earlier run there is moved aside to <save_path>.old-<date>-<time>/ (never deleted); with
  overwrite = False the run stops. A config or data error leaves an earlier run untouched.
  The network is trained; the process works inside the save directory, which receives
  <save_name>.log (everything printed, and the messages that --quiet or the default level do not
  show), <save_name>.history.csv, the plots <save_name>.Errors.png, .history.png and
  .timeline.png, <save_name>-LAST.param at every history step, hourly <save_name>-<h>h.param
  snapshots and <save_name>_end.param at the end.

during training:
  ctrl+c opens the console: q (continue), abort (stop and save), kill (stop without saving),
  save/load [file], setlr <float>, setmom <float>, sethist <int>, params, sf, SGD/Adam/...,
  help, or any Python line with self, cnn, data, config, batch in scope, e.g.
      data.warp_on = False
      print(self.testModel('test'))
  Without a terminal (nohup, batch jobs, CI) ctrl+c and SIGTERM save <save_name>-LAST.param and
  the resume state and exit; continue later with --resume.

distributed training (one process per GPU, or gloo on the CPU with --gpu=false):
  elektronn-train CONFIG --gpu=0,1     (or --gpu=all: starts torchrun with one process per GPU)
  torchrun --nproc_per_node=2 -m elektronn.train CONFIG [--gpu=auto]
  Each process draws batch_size examples (the global batch is batch_size x processes) and
  DistributedDataParallel averages the gradients; the LR is multiplied by the number of processes
  only with lr_scale_with_world_size = True. Rank 0 prints and writes the save directory. There is
  no console: ctrl+c or SIGTERM on any process saves (once) and stops all. --resume restores every
  rank's random state (with another number of processes: a note says what starts afresh). CG and
  LBFGS are refused (use SGD, Adam or RPROP).

examples:
  elektronn-train MNIST_CNN_warp_config.py          (a bare name is looked up in the examples)
  elektronn-train ~/configs/neuro_3d.py --gpu=auto
  elektronn-train ~/CNN_Training/2D/MNIST_example_warp --resume
"""


def _gpu_value(text):
    from elektronn.net.device import parse_gpu, parse_gpu_list
    try:
        if parse_gpu_list(text) is None:
            parse_gpu(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _parser():
    p = argparse.ArgumentParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_EPILOG,
        description='Train a CNN/MLP with the ELEKTRONN pipeline as configured in CONFIG.')
    p.add_argument('config', help='config file; a bare file name that does not exist here is looked up in the '
                                  "package's examples (e.g. MNIST_CNN_warp_config.py); with --resume also a save "
                                  'directory')
    p.add_argument('--gpu', type=_gpu_value, default=None, metavar='{auto|false|<int>|<int>,<int>,...|all}',
                   help="device: 'auto' picks a GPU no other process uses (or the CPU when there is none), "
                        "'false' the CPU, an integer that GPU; a list such as 0,1 or 'all' trains with one process "
                        "per GPU (distributed data parallel, through torchrun); default: the config's 'device' "
                        "(False = CPU). Under torchrun every process uses the GPU of its LOCAL_RANK")
    p.add_argument('--resume', action='store_true',
                   help='continue the run in the existing save directory from its last saved state (parameters, '
                        'optimiser state, step, learning rate, schedule position, histories, random state); '
                        'n_steps and max_runtime count from the start of the first run')
    add_verbosity_arguments(p)
    return p


def parseargs(gpu=None, argv=None):
    """The original's ``trainutils.parseargs``: ``(config, gpu)`` from the command line ``argv``
    (default ``sys.argv[1:]``) of ``elektronn-train``.

    ``gpu`` is the default of ``--gpu``. The value comes back as the original gave it: ``'auto'``,
    ``False`` (CPU) or an int; a GPU list (``0,1``, ``all``, new) as the text.
    """
    from elektronn.net.device import parse_gpu, parse_gpu_list
    parser = _parser()
    parser.set_defaults(gpu=gpu)
    args = parser.parse_args(argv)
    value = args.gpu
    if isinstance(value, str) and parse_gpu_list(value) is None:
        value = parse_gpu(value)
        value = False if value == 'cpu' else value
    return args.config, value


def _example_names():
    try:
        return sorted(f.name for f in importlib.resources.files('elektronn.examples').iterdir()
                      if f.name.endswith('.py') and not f.name.startswith('_'))
    except (ModuleNotFoundError, FileNotFoundError):
        return []


def find_config(name):
    """Path of the config ``name``: the file itself, else an example config of that name.

    Raises:
        FileNotFoundError: naming the file and listing the example configs.
    """
    path = os.path.expanduser(name)
    if os.path.exists(path):
        return path
    if os.path.basename(name) == name:
        examples = importlib.resources.files('elektronn.examples')
        for candidate in (name, name + '.py'):
            resource = examples / candidate
            if resource.is_file():
                return str(resource)
    raise FileNotFoundError('config file %s not found (neither here nor among the example configs: %s)'
                            % (name, ', '.join(_example_names()) or 'none installed'))


def _resume_config(target):
    """The config file of a run to resume: ``target`` itself, or ``<target>/Backup/config.py``."""
    if os.path.isdir(target):
        backup = os.path.join(target, 'Backup', 'config.py')
        if not os.path.isfile(backup):
            raise FileNotFoundError('%s is not a save directory of an ELEKTRONN run (no Backup/config.py)' % target)
        return backup, os.path.join(os.path.abspath(target), '')
    return target, None


def _backup_resumed_config(config):
    """Keep the config a resumed run uses as Backup/config-resume<k>.py."""
    from elektronn.training.config import _copy_file
    backup = os.path.join(config.save_path, 'Backup')
    k = 1
    while os.path.exists(os.path.join(backup, 'config-resume%i.py' % k)):
        k += 1
    _copy_file(config.config_file, os.path.join(backup, 'config-resume%i.py' % k))


def main(argv=None):
    """Run ``elektronn-train``; returns the exit status."""
    args = _parser().parse_args(argv)
    from elektronn.net.device import parse_gpu_list
    gpus = parse_gpu_list(args.gpu)
    if gpus is not None:
        with verbosity(PROG, args):
            return _launch(args, gpus)
    import matplotlib
    matplotlib.use('Agg')
    from elektronn.training import runlog
    tee = runlog.TeeOutput().start()  # first: the run log gets every message, from the first on
    try:
        with verbosity(PROG, args):
            try:
                return _train(args, tee)
            except KeyboardInterrupt:
                logger.info('\nInterrupted')
                return 130
    finally:
        tee.stop()


def _launch(args, gpus):
    """``--gpu=0,1`` / ``--gpu=all``: run this command under torchrun with one process per GPU (their
    ``CUDA_VISIBLE_DEVICES`` lists just those, so every rank takes ``cuda:LOCAL_RANK``); the exit status."""
    import subprocess
    import torch
    if os.environ.get('WORLD_SIZE') is not None:
        error(PROG, '--gpu=%s starts its own processes; under torchrun give --gpu=auto (every process takes the GPU '
                    'of its LOCAL_RANK)' % args.gpu)
        return 2
    from elektronn.net.device import gpu_list_indices
    try:
        gpus = gpu_list_indices(gpus, args.gpu, without='trains on the CPU')
    except ValueError as e:
        error(PROG, e)
        return 2
    n_cuda = torch.cuda.device_count()
    visible = os.environ.get('CUDA_VISIBLE_DEVICES')
    entries = [e.strip() for e in visible.split(',')] if visible else [str(g) for g in range(n_cuda)]
    env = dict(os.environ, CUDA_VISIBLE_DEVICES=','.join(entries[g] for g in gpus))
    command = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=%i' % len(gpus),
               '-m', 'elektronn.train', args.config, '--gpu=0'] + (['--resume'] if args.resume else []) \
        + verbosity_flags(args)
    logger.info('Training with %i processes on GPUs %s (CUDA_VISIBLE_DEVICES=%s): %s',
                len(gpus), ','.join(map(str, gpus)), env['CUDA_VISIBLE_DEVICES'], ' '.join(command))
    proc = subprocess.Popen(command, env=env)
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:
            continue  # ctrl+c reaches the training processes too: they save and stop together


def _train(args, tee):
    from elektronn.training import distributed
    try:
        ctx = distributed.from_environment()
    except ValueError as e:
        error(PROG, e)
        return 2
    if ctx.world_size == 1:
        return _train_one(args, tee, ctx)[0]
    together = False
    saved = sys.stdout
    devnull = None
    if not ctx.is_main:
        tee.stop()  # rank 0 alone prints and logs; errors still reach stderr
        devnull = sys.stdout = open(os.devnull, 'w')
        tee = None
    try:
        status, together = _train_one(args, tee, ctx)
        return status
    finally:
        # after an error on this rank alone the others never come to say goodbye
        distributed.shutdown(wait=together)
        if devnull is not None:
            sys.stdout = saved
            devnull.close()


def _train_one(args, tee, ctx):
    """Read the config, (under torchrun) join the process group, train.

    Returns:
        ``(exit status, whether every rank ended the same way)``.
    """
    from elektronn.training import distributed
    from elektronn.training.config import ConfigError
    try:
        if args.resume:
            config_file, save_dir = _resume_config(os.path.expanduser(args.config))
        else:
            config_file, save_dir = find_config(args.config), None
        config = _make_config(config_file, args, save_dir, ctx)
    except (ConfigError, FileNotFoundError) as e:
        error(PROG, e)
        return 2, False
    try:
        distributed.check_optimizer(config.optimizer, ctx)
    except ValueError as e:
        error(PROG, "%s: parameter 'optimizer': %s" % (config.config_file, e))
        return 2, False
    try:
        if ctx.world_size > 1:
            _start_distributed(args, config)
        else:
            config.init_device()
    except RuntimeError as e:      # a GPU asked for that this machine does not have
        error(PROG, e)
        return 2, False
    return _run(args, tee, config)


def _start_distributed(args, config):
    """Join torchrun's process group (NCCL on ``cuda:LOCAL_RANK`` when the run asks for a GPU, else
    gloo) and select the device of this rank."""
    import torch
    from elektronn.net.device import initGPU, parse_gpu
    from elektronn.training import distributed
    choice = parse_gpu(config.device if args.gpu is None else args.gpu)
    cuda = choice != 'cpu' and (choice != 'auto' or torch.cuda.is_available())
    ctx = distributed.setup(cuda=cuda)
    initGPU(ctx.device)


def _prepare_save_dir(config, ctx):
    """Make the save directory (rank 0; on the other ranks the config uses the existing one, so
    this does nothing there). Returns rank 0's error message or ``None``, the same on every rank."""
    from elektronn.training.config import ConfigError
    message = None
    try:
        config.prepare_save_dir()
    except (ConfigError, OSError) as e:
        message = str(e)
    return ctx.broadcast(message)


def _run(args, tee, config):
    """Train as configured (``tee``: the output copy to attach the log to, or ``None``).

    The save directory is made (an earlier run moved aside) only after the data loaded and the
    network was built, so that an error there leaves an earlier run untouched.

    Returns:
        ``(exit status, whether every rank ended the same way)`` (see :func:`_train_one`).
    """
    from elektronn.training.config import ConfigError
    from elektronn.training.cubes import DataKeyError
    from elektronn.training.trainer import Trainer
    from elektronn.training.workers import WorkerError
    trainer = Trainer(config)
    main = trainer.dist.is_main
    try:
        trainer.loadData()
        trainer.createNet()
    except (ConfigError, DataKeyError, WorkerError, OSError, ValueError) as e:  # unreadable or bad data
        error(PROG, e)
        return 2, False
    try:
        problem = _prepare_save_dir(config, trainer.dist)
        if problem is not None:
            error(PROG, problem)
            return 2, True
        if tee is not None:  # the output so far is buffered: the log holds it too
            tee.attach(os.path.join(config.save_path, config.save_name + '.log'))
        os.chdir(config.save_path)  # the run works inside its save directory, as the original did
        if main:
            trainer.debugGetCNNBatch()
        if args.resume:
            try:
                trainer.resume()
            except (FileNotFoundError, ValueError) as e:
                error(PROG, '--resume: %s' % e)
                return 2, False
            if main:
                _backup_resumed_config(config)
        outcome = trainer.run()
    except (ConfigError, DataKeyError, WorkerError) as e:
        error(PROG, e)
        return 1, False
    except OSError as e:  # a full disk: the trainer has said what is kept and how to continue
        error(PROG, e)
        return 1, False
    return 1 if outcome == 'diverged' else 0, True  # under DDP the ranks agree on how the run ends


def _make_config(config_file, args, save_dir, ctx):
    """The run's Config (read and checked; nothing created yet). A resumed run uses its save
    directory as it is; under torchrun the process group selects the device (see
    :func:`_start_distributed`) and rank 0 alone makes the save directory."""
    from elektronn.training.config import Config, ConfigError
    config = Config(config_file, args.gpu, os.path.abspath(__file__),
                    use_existing_dir=args.resume or not ctx.is_main, init_device=ctx.world_size == 1)
    if not args.resume:
        config.check_save_dir()  # every rank: a directory that may not be replaced stops all before the data load
        return config
    if save_dir is not None:
        config.save_path = save_dir  # the directory may have moved since the run started
    if not os.path.isdir(config.save_path):
        raise ConfigError('--resume: save directory %s does not exist' % config.save_path)
    return config


if __name__ == '__main__':
    sys.exit(main())
