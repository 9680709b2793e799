"""A denoising autoencoder on MNIST (784-300-200-50 and back, tied weights), then pre-training.

The "Auto encoder Example" of the documentation's examples page::

    python MNIST_Denoising_Autoencoder.py [path/to/mnist.pkl.gz] [--steps 10000] [--finetune-steps 10000]

It writes ``AE-reconstruction.png`` (validation images and their reconstructions) and
``AE-pretraining.param`` (the encoder), and then trains a classifier whose first three layers
start from the encoder.
"""
import argparse
import time

import matplotlib

matplotlib.use('Agg')  # write files, need no display
import matplotlib.pyplot as plt  # noqa: E402

from elektronn.net.convnet import MixedConvNN  # noqa: E402
from elektronn.net.introspection import embedMatricesInGray  # noqa: E402
from elektronn.training.traindata import MNISTData  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('path', nargs='?', default=None, help='mnist.pkl.gz (default: the cached download)')
    parser.add_argument('--steps', type=int, default=10000, help='autoencoder training iterations (default 10000)')
    parser.add_argument('--finetune-steps', type=int, default=10000,
                        help='iterations of the pre-trained classifier (default 10000)')
    parser.add_argument('--figure', default='AE-reconstruction.png', help='reconstruction figure (PNG)')
    args = parser.parse_args(argv)
    t0 = time.time()

    # Load Data: flat vectors of 784 pixels #
    data = MNISTData(path=args.path, convert2image=False, shift_augment=False)

    # Create Autoencoder #
    batch_size = 100
    cnn = MixedConvNN((28**2), input_depth=None)
    cnn.addPerceptronLayer(n_outputs=300, activation_func="tanh")
    cnn.addPerceptronLayer(n_outputs=200, activation_func="tanh")
    cnn.addPerceptronLayer(n_outputs=50, activation_func="tanh")
    cnn.addTiedAutoencoderChain(n_layers=None, activation_func="tanh", input_noise=0.3, add_layers_to_network=True)
    cnn.compileOutputFunctions(target="regression")  # compiles the cnn.get_error function as well
    cnn.setOptimizerParams(SGD={'LR': 5e-1, 'momentum': 0.9}, weight_decay=0)

    print("training...")
    for i in range(args.steps):
        d, l = data.getbatch(batch_size)
        loss, loss_instance, time_per_step = cnn.trainingStep(d, d, mode="SGD")

        if i % 100 == 0:
            print("update:", i, "; Training error:", loss)

    loss, test_predictions = cnn.get_error(data.valid_d, data.valid_d)
    print("Reconstruction error (MSE) on the validation set:", loss)
    t_ae = time.time() - t0

    plt.figure(figsize=(14, 6))
    plt.subplot(121)
    images = embedMatricesInGray(data.valid_d[:200].reshape((200, 28, 28)), 1)
    plt.imshow(images, interpolation='none', cmap='gray')
    plt.title('Data')
    plt.subplot(122)
    recon = test_predictions.clip(data.valid_d.min(), data.valid_d.max())  # the same grey scale as the data
    recon = embedMatricesInGray(recon[:200].reshape((200, 28, 28)), 1)
    plt.imshow(recon, interpolation='none', cmap='gray')
    plt.title('Reconstruction')
    plt.savefig(args.figure, bbox_inches='tight')
    plt.close('all')
    print("Saved", args.figure)

    # Use the pre-trained weights of the compression part to initialise a classifier #
    cnn.saveParameters('AE-pretraining.param', layers=cnn.layers[0:3])  # save the parameters for the compression part
    cnn2 = MixedConvNN((28**2), input_depth=None)  # Create a new NN
    cnn2.addPerceptronLayer(n_outputs=300, activation_func="tanh")
    cnn2.addPerceptronLayer(n_outputs=200, activation_func="tanh")
    cnn2.addPerceptronLayer(n_outputs=50, activation_func="tanh")
    cnn2.addPerceptronLayer(n_outputs=10, activation_func="tanh")  # Add a layer for 10-class classification
    cnn2.compileOutputFunctions(target="nll")  # target function nll for classification
    cnn2.setOptimizerParams(SGD={'LR': 0.005, 'momentum': 0.9}, weight_decay=0)
    cnn2.loadParameters('AE-pretraining.param')  # loads only the first 3 layers: the file holds 3

    print("training the pre-trained classifier...")
    for i in range(args.finetune_steps):
        d, l = data.getbatch(batch_size)
        loss, loss_instance, time_per_step = cnn2.trainingStep(d, l, mode="SGD")

        if i % 100 == 0:
            valid_loss, valid_error, _ = cnn2.get_error(data.valid_d, data.valid_l)
            print("update:", i, "; NLL:", loss, "Validation error:", round(valid_error * 100., 3), "%")

    test_loss, test_error, _ = cnn2.get_error(data.test_d, data.test_l)
    print("Pre-trained classifier: Test loss:", test_loss, "Test error:", round(test_error * 100., 3), "%")
    print("Done.")
    return {'steps': args.steps, 'finetune_steps': args.finetune_steps,
            'reconstruction_mse': float(cnn.get_error(data.valid_d, data.valid_d)[0]),
            'classifier_test_error': float(test_error), 'classifier_test_loss': float(test_loss),
            'autoencoder_seconds': t_ae, 'seconds': time.time() - t0}


if __name__ == '__main__':
    main()
