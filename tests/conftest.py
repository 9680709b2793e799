"""Shared fixtures: seeded RNGs and paths to the optional real data."""
import os

import numpy as np
import pytest
import torch

# One thread: the suite's tensors are small, and OpenMP's spinning threads make small operations
# orders of magnitude slower whenever another process competes for the cores.
torch.set_num_threads(1)

SHARED_DATA = os.environ.get('ELEKTRONN_SHARED_DATA',
                             os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'data'))


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` are skipped where PyTorch sees no CUDA GPU."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason='no CUDA GPU')
    for item in items:
        if 'cuda' in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same NumPy and PyTorch RNG state."""
    np.random.seed(1234)
    torch.manual_seed(1234)
    yield


def shared_data_file(name):
    """Path of a file in ../shared/data, or skip the test when it is absent."""
    path = os.path.join(SHARED_DATA, name)
    if not os.path.exists(path):
        pytest.skip('real data %s not available' % name)
    return path
