"""MNIST with a small CNN and dropout in the perceptron layers, using the network API directly.

::

    python MNIST_CNN_standalone_Dropout.py [path/to/mnist.pkl.gz] [--steps 10000]

Dropout acts only in training steps: ``get_error`` always evaluates the whole network, so the
dropout rates need not be set to 0 for validation (doing so, as in ELEKTRONN 1.x, is harmless).
"""
import argparse
import time

from elektronn.net.convnet import MixedConvNN
from elektronn.training.traindata import MNISTData


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('path', nargs='?', default=None, help='mnist.pkl.gz (default: the cached download)')
    parser.add_argument('--steps', type=int, default=10000, help='training iterations (default 10000)')
    args = parser.parse_args(argv)
    t0 = time.time()

    # Load Data #
    data = MNISTData(path=args.path, convert2image=True, shift_augment=False)

    # Create CNN: every layer gets a dropout rate of 0.5 unless force_no_dropout=True #
    batch_size = 100
    cnn = MixedConvNN((28, 28), input_depth=1, enable_dropout=True)
    cnn.addConvLayer(10, 5, pool_shape=2, activation_func="tanh", force_no_dropout=True)  # (nof, filtersize)
    cnn.addConvLayer(8, 5, pool_shape=2, activation_func="tanh", force_no_dropout=True)
    cnn.addPerceptronLayer(200, activation_func="tanh")
    cnn.addPerceptronLayer(150, activation_func="tanh")
    cnn.addPerceptronLayer(10, activation_func="tanh", force_no_dropout=True)  # 10 classes; no dropout in the output
    cnn.compileOutputFunctions()
    cnn.setOptimizerParams(SGD={'LR': 1e-2, 'momentum': 0.9}, weight_decay=0)
    print("dropout rates:", cnn.getDropoutRates())

    print("training...")
    for i in range(args.steps):
        d, l = data.getbatch(batch_size)
        loss, loss_instance, time_per_step = cnn.trainingStep(d, l, mode="SGD")

        if i % 100 == 0:
            valid_loss, valid_error, valid_predictions = cnn.get_error(data.valid_d, data.valid_l)
            print("update:", i, "; Validation loss:", valid_loss, "Validation error:", round(valid_error * 100., 3), "%")

    loss, error, test_predictions = cnn.get_error(data.test_d, data.test_l)
    print("Test loss:", loss, "Test error:", round(error * 100., 3), "%")
    print("Done.")
    return {'steps': args.steps, 'test_loss': float(loss), 'test_error': float(error),
            'valid_error': float(valid_error), 'seconds': time.time() - t0}


if __name__ == '__main__':
    main()
