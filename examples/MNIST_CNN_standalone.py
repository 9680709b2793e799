"""MNIST with a small CNN, using the network API directly (no training pipeline).

The "Standalone CNN" of the documentation's examples page::

    python MNIST_CNN_standalone.py [path/to/mnist.pkl.gz] [--steps 5000]

Without a path the data comes from the cache folder (``~/.ELEKTRONN`` or ``$ELEKTRONN_DATA_DIR``)
and is downloaded there if missing.
"""
import argparse
import time

from elektronn.net.convnet import MixedConvNN
from elektronn.training.traindata import MNISTData


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('path', nargs='?', default=None, help='mnist.pkl.gz (default: the cached download)')
    parser.add_argument('--steps', type=int, default=5000, help='training iterations (default 5000)')
    args = parser.parse_args(argv)
    t0 = time.time()

    # Load Data #
    data = MNISTData(path=args.path, convert2image=True, shift_augment=False)

    # Create CNN #
    batch_size = 100
    cnn = MixedConvNN((28, 28), input_depth=1)  # input_depth: only 1 gray channel (no RGB or depth)
    cnn.addConvLayer(10, 5, pool_shape=2, activation_func="abs")  # (nof, filtersize)
    cnn.addConvLayer(8, 5, pool_shape=2, activation_func="abs")
    cnn.addPerceptronLayer(100, activation_func="abs")
    cnn.addPerceptronLayer(80, activation_func="abs")
    cnn.addPerceptronLayer(10, activation_func="abs")  # need 10 outputs as there are 10 classes in the data set
    cnn.compileOutputFunctions()
    cnn.setOptimizerParams(SGD={'LR': 1e-2, 'momentum': 0.9}, weight_decay=0)  # LR: learning rate

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
