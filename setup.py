"""Packaging for ELEKTRONN.

The example configs live in the top-level ``examples/`` folder of the source tree and are
installed as the package ``elektronn.examples``, so that ``elektronn-train <bare config name>``
finds them from any folder.
"""
import os
import re

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))


def read_version():
    with open(os.path.join(HERE, 'elektronn', '__init__.py')) as f:
        return re.search(r"^__version__ = '([^']+)'", f.read(), re.M).group(1)


with open(os.path.join(HERE, 'README.rst')) as f:
    long_description = f.read()

setup(
    name='elektronn',
    version=read_version(),
    description='2D/3D convolutional neural networks for electron-microscopy volumes '
                '(neuron membrane detection, MNIST, autoencoders) on PyTorch',
    long_description=long_description,
    long_description_content_type='text/x-rst',
    license='GPL-3.0-or-later',
    python_requires='>=3.10',
    packages=['elektronn', 'elektronn.net', 'elektronn.net.layers', 'elektronn.training', 'elektronn.inference',
              'elektronn.segmentation', 'elektronn.evaluation', 'elektronn.cli', 'elektronn.data', 'elektronn.examples'],
    package_dir={'elektronn.examples': 'examples'},
    package_data={'elektronn.examples': ['*.py']},
    # zarr: Zarr stores (v2 and v3) behind elektronn.volumes; distributed: block-wise prediction on
    # Dask clusters (local, existing schedulers, dask-jobqueue); bokeh: the Dask dashboard;
    # nvidia-ml-py: NVML, to choose a free GPU for --gpu=auto without creating CUDA contexts;
    # scikit-image: the watershed (a well-tested priority-flood in C) and the reference metrics.
    install_requires=['numpy>=1.23', 'scipy>=1.9', 'h5py>=3.6', 'matplotlib>=3.5', 'torch>=2.2',
                      'scikit-image>=0.21',
                      'zarr>=3; python_version>="3.11"', 'numcodecs>=0.13', 'distributed>=2024.1', 'bokeh>=3.1',
                      'nvidia-ml-py'],
    extras_require={
        # ome-zarr-models: the tests validate the OME-Zarr metadata of outputs against the NGFF models;
        # hypothesis: property-based tests of the config validator; tensorboard: the tests read back
        # the records of the config key tensorboard = True
        'test': ['pytest>=7', 'ome-zarr-models>=0.1', 'hypothesis>=6', 'tensorboard>=2.10'],
        # torch.utils.tensorboard writes event files only with the tensorboard package
        'tensorboard': ['tensorboard>=2.10'],
        'docs': ['sphinx>=7.2'],
    },
    entry_points={'console_scripts': [
        'elektronn-train = elektronn.cli.train:main',
        'elektronn-convert-params = elektronn.cli.convert_params:main',
        'elektronn-predict = elektronn.cli.predict:main',
        'elektronn-profile = elektronn.cli.profile:main',
        'elektronn-segment = elektronn.cli.segment:main',
        'elektronn-evaluate = elektronn.cli.evaluate:main',
    ]},
    classifiers=[
        'Programming Language :: Python :: 3',
        'License :: OSI Approved :: GNU General Public License v3 or later (GPLv3+)',
        'Topic :: Scientific/Engineering :: Artificial Intelligence',
        'Topic :: Scientific/Engineering :: Image Recognition',
    ],
)
