"""``elektronn-train``: train a network from a config file.

Usage::

    elektronn-train <config> [--gpu {auto|false|<int>}] [--resume]

The run's files go to the config's ``save_path``; see ``elektronn-train --help``.
"""
import argparse
import importlib.resources
import os
import sys

__all__ = ['main', 'find_config']

_EPILOG = """\
what happens:
  The config (a Python file, see examples/config_template.py) is read on top of the master
  defaults and ~/.elektronn.config, checked, and copied to <save_path>/Backup/. The data and the
  network are built and trained; the process works inside the save directory, which receives
  <save_name>.log (everything printed), <save_name>.history.csv, the plots <save_name>.Errors.png,
  .history.png and .timeline.png, <save_name>-LAST.param at every history step, hourly
  <save_name>-<h>h.param snapshots and <save_name>_end.param at the end.

during training:
  ctrl+c opens the console: q (continue), abort (stop and save), kill (stop without saving),
  save/load [file], setlr <float>, setmom <float>, sethist <int>, params, sf, SGD/Adam/...,
  help, or any Python line with self, cnn, data, config, batch in scope, e.g.
      data.warp_on = False
      print(self.testModel('test'))
  Without a terminal (nohup, batch jobs, CI) ctrl+c and SIGTERM save <save_name>-LAST.param and
  the resume state and exit; continue later with --resume.

examples:
  elektronn-train MNIST_CNN_warp_config.py          (a bare name is looked up in the examples)
  elektronn-train ~/configs/neuro_3d.py --gpu=auto
  elektronn-train ~/CNN_Training/2D/MNIST_example_warp --resume
"""


def _gpu_value(text):
    from elektronn.net.device import parse_gpu
    try:
        parse_gpu(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _parser():
    p = argparse.ArgumentParser(
        prog='elektronn-train', formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_EPILOG,
        description='Train a CNN/MLP with the ELEKTRONN pipeline as configured in CONFIG.')
    p.add_argument('config', help='config file; a bare file name that does not exist here is looked up in the '
                                  "package's examples (e.g. MNIST_CNN_warp_config.py); with --resume also a save "
                                  'directory')
    p.add_argument('--gpu', type=_gpu_value, default=None, metavar='{auto|false|<int>}',
                   help="device: 'auto' picks a GPU no other process uses (or the CPU when there is none), "
                        "'false' the CPU, an integer that GPU; default: the config's 'device' (False = CPU)")
    p.add_argument('--resume', action='store_true',
                   help='continue the run in the existing save directory from its last saved state (parameters, '
                        'optimiser state, step, learning rate, schedule position, histories, random state); '
                        'n_steps and max_runtime count from the start of the first run')
    return p


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
    import matplotlib
    matplotlib.use('Agg')
    from elektronn.training import runlog
    tee = runlog.TeeOutput().start()
    try:
        return _train(args, tee)
    except KeyboardInterrupt:
        print('\nInterrupted')
        return 130
    finally:
        tee.stop()


def _train(args, tee):
    from elektronn.training.config import ConfigError
    try:
        if args.resume:
            config_file, save_dir = _resume_config(os.path.expanduser(args.config))
        else:
            config_file, save_dir = find_config(args.config), None
        config = _make_config(config_file, args, save_dir)
    except (ConfigError, FileNotFoundError) as e:
        print('elektronn-train: error: %s' % e, file=sys.stderr)
        return 2
    tee.attach(os.path.join(config.save_path, config.save_name + '.log'))
    os.chdir(config.save_path)  # the run works inside its save directory, as the original did

    from elektronn.training.trainer import Trainer
    from elektronn.training.workers import WorkerError
    trainer = Trainer(config)
    try:
        trainer.loadData()
        trainer.debugGetCNNBatch()
        trainer.createNet()
        if args.resume:
            try:
                trainer.resume()
            except (FileNotFoundError, ValueError) as e:
                print('elektronn-train: error: --resume: %s' % e, file=sys.stderr)
                return 2
            _backup_resumed_config(config)
        outcome = trainer.run()
    except (ConfigError, WorkerError) as e:
        print('elektronn-train: error: %s' % e, file=sys.stderr)
        return 1
    return 1 if outcome == 'diverged' else 0


def _make_config(config_file, args, save_dir):
    from elektronn.training.config import Config, ConfigError
    this_file = os.path.abspath(__file__)
    if not args.resume:
        return Config(config_file, args.gpu, this_file)
    config = Config(config_file, args.gpu, this_file, use_existing_dir=True)
    if save_dir is not None:
        config.save_path = save_dir  # the directory may have moved since the run started
    if not os.path.isdir(config.save_path):
        raise ConfigError('--resume: save directory %s does not exist' % config.save_path)
    return config


if __name__ == '__main__':
    sys.exit(main())
