"""Shared fixtures: seeded RNGs and paths to the optional real data."""
import os

import numpy as np
import pytest
import torch

# One thread: the suite's tensors are small, and OpenMP's spinning threads make small operations
# orders of magnitude slower whenever another process competes for the cores.
torch.set_num_threads(1)

# The prediction tools choose bf16 where the CPU computes it natively ('auto'); the suite's exact
# comparisons with float32 must not depend on the machine, so it sees a CPU without those features
# (tests of reduced precision force them with monkeypatch; subprocesses inherit this).
os.environ.setdefault('ELEKTRONN_CPU_FLAGS', 'none')

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


@pytest.fixture(scope='module')
def em_folder(tmp_path_factory):
    """Two synthetic EM cubes (x, y, z) = (40, 40, 10) with barrier labels inset by (6, 6, 2), and 2 preview cubes."""
    from elektronn.data.synthetic import write_dataset
    folder = str(tmp_path_factory.mktemp('em')) + '/'
    write_dataset(folder, n_cubes=2, shape=(40, 40, 10), label_margin=(6, 6, 2), n_preview=2, preview_shape=(30, 30, 8),
                  verbose=False)
    return folder


@pytest.fixture
def one_thread_home(tmp_path, monkeypatch):
    """A fresh HOME (no user config) and one PyTorch thread, restored afterwards."""
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
