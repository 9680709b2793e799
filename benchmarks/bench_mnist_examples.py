"""Run the three standalone MNIST examples on real data and report test errors and run times.

Figures (one JSON line each):

* ``mnist_cnn_standalone``: test error of ``examples/MNIST_CNN_standalone.py`` (5000 steps by default);
* ``mnist_cnn_standalone_dropout``: the same for the dropout variant (10000 steps);
* ``mnist_denoising_autoencoder``: reconstruction MSE, the pre-trained classifier's test error and,
  as the baseline measured in the same run, the test error of the same classifier trained from a
  random initialisation for as many steps (``ratio_pretrained_over_scratch_error``).

The examples' own output goes to ``<out>/<name>.log``; their files (reconstruction PNG, parameter
file) to ``<out>``.

Usage: ``python benchmarks/bench_mnist_examples.py [--data mnist.pkl.gz] [--steps N] [--only NAME] [--out DIR]``
(``--steps`` shortens every run, e.g. ``--steps 200`` to check the script in a minute.)
"""
import argparse
import contextlib
import json
import os
import tempfile
import time

import numpy as np
import torch

DEFAULT_DATA = os.path.join(os.environ.get('ELEKTRONN_SHARED_DATA', os.path.join(
    os.path.dirname(os.path.abspath(__file__)), '..', '..', 'shared', 'data')), 'mnist.pkl.gz')


def _run_example(module_name, argv, log_path):
    import importlib
    module = importlib.import_module('elektronn.examples.' + module_name)
    with open(log_path, 'w') as log, contextlib.redirect_stdout(log):
        return module.main(argv)


def _scratch_classifier(data_path, steps, seed):
    """The autoencoder example's classifier without pre-training (the baseline)."""
    from elektronn.net.convnet import MixedConvNN
    from elektronn.training.traindata import MNISTData
    with contextlib.redirect_stdout(open(os.devnull, 'w')):
        data = MNISTData(path=data_path, convert2image=False, shift_augment=False, seed=seed)
        cnn = MixedConvNN(28 ** 2, input_depth=None)
        for n in (300, 200, 50, 10):
            cnn.addPerceptronLayer(n_outputs=n, activation_func='tanh')
        cnn.compileOutputFunctions(target='nll')
        cnn.setOptimizerParams(SGD={'LR': 0.005, 'momentum': 0.9}, weight_decay=0)
        for _ in range(steps):
            cnn.trainingStep(*data.getbatch(100), mode='SGD')
        return float(cnn.get_error(data.test_d, data.test_l)[1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--data', default=DEFAULT_DATA if os.path.exists(DEFAULT_DATA) else None,
                    help='mnist.pkl.gz (default: $ELEKTRONN_SHARED_DATA or ../shared/data, else the cached download)')
    ap.add_argument('--steps', type=int, default=None, help='override the number of steps of every run')
    ap.add_argument('--only', choices=['standalone', 'dropout', 'autoencoder'], default=None)
    ap.add_argument('--out', default=None, help='folder for logs and files (default: a temporary folder)')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--threads', type=int, default=None, help='torch.set_num_threads')
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = args.out or tempfile.mkdtemp(prefix='bench_mnist_')
    os.makedirs(out, exist_ok=True)
    data_arg = [os.path.abspath(args.data)] if args.data else []
    steps = [] if args.steps is None else ['--steps', str(args.steps)]
    common = {'threads': torch.get_num_threads(), 'device': 'cpu', 'data': args.data or 'cache', 'out': out}
    cwd = os.getcwd()
    os.chdir(out)
    try:
        for key, module, figure in (('standalone', 'MNIST_CNN_standalone', 'mnist_cnn_standalone'),
                                    ('dropout', 'MNIST_CNN_standalone_Dropout', 'mnist_cnn_standalone_dropout')):
            if args.only not in (None, key):
                continue
            torch.manual_seed(args.seed)
            np.random.seed(args.seed)
            r = _run_example(module, data_arg + steps, os.path.join(out, module + '.log'))
            print(json.dumps({'figure': figure, 'steps': r['steps'], 'test_error_percent': round(100 * r['test_error'], 2),
                              'test_loss': round(r['test_loss'], 4),
                              'last_valid_error_percent': round(100 * r['valid_error'], 2),
                              'seconds': round(r['seconds'], 1), **common}), flush=True)
        if args.only in (None, 'autoencoder'):
            torch.manual_seed(args.seed)
            np.random.seed(args.seed)
            ae_steps = steps + (['--finetune-steps', str(args.steps)] if args.steps is not None else [])
            r = _run_example('MNIST_Denoising_Autoencoder', data_arg + ae_steps,
                             os.path.join(out, 'MNIST_Denoising_Autoencoder.log'))
            torch.manual_seed(args.seed)
            np.random.seed(args.seed)
            t0 = time.time()
            scratch = _scratch_classifier(args.data, r['finetune_steps'], args.seed)
            print(json.dumps({'figure': 'mnist_denoising_autoencoder', 'steps': r['steps'],
                              'finetune_steps': r['finetune_steps'],
                              'reconstruction_mse': round(r['reconstruction_mse'], 5),
                              'pretrained_test_error_percent': round(100 * r['classifier_test_error'], 2),
                              'scratch_test_error_percent': round(100 * scratch, 2),
                              'ratio_pretrained_over_scratch_error': round(r['classifier_test_error'] / scratch, 3),
                              'autoencoder_seconds': round(r['autoencoder_seconds'], 1),
                              'seconds': round(r['seconds'], 1), 'scratch_seconds': round(time.time() - t0, 1),
                              **common}), flush=True)
    finally:
        os.chdir(cwd)


if __name__ == '__main__':
    main()
