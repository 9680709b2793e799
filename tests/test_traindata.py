"""Data, BalancedData and MNISTData with small synthetic MNIST-format pickles (and the real file if present)."""
import gzip
import io
import os
import pickle
import re
import urllib.error

import numpy as np
import pytest

from elektronn.training import mnist_files, traindata
from elektronn.training.traindata import BalancedData, Data, MNISTData, load_mnist_pickle, mnist_checksum

from conftest import shared_data_file


def synthetic_sets(n_train=40, n_valid=12, n_test=12, side=28, seed=0):
    rng = np.random.default_rng(seed)

    def one(n):
        return (rng.random((n, side * side)).astype(np.float32),
                np.arange(n, dtype=np.int64) % 10)
    return one(n_train), one(n_valid), one(n_test)


def write_pickle(path, sets, gz=True):
    raw = pickle.dumps(sets, protocol=2)
    with (gzip.open(path, 'wb') if gz else open(path, 'wb')) as f:
        f.write(raw)
    return path


@pytest.fixture
def mnist_file(tmp_path):
    sets = synthetic_sets()
    return write_pickle(str(tmp_path / 'mnist.pkl.gz'), sets), sets


def test_loading_shift_augmentation_and_printout(mnist_file, capsys):
    path, sets = mnist_file
    data = MNISTData(path=path, seed=0)
    out = capsys.readouterr().out
    assert '10-class Data Set: #training examples: 160 and #validing: 12' in out
    assert 'MNIST data is converted/augmented to shape (1, 26, 26)' in out
    assert data.train_d.shape == (160, 1, 26, 26) and data.train_d.dtype == np.float32
    assert data.valid_d.shape == data.test_d.shape == (12, 1, 26, 26)
    assert data.train_l.dtype == np.int16 and data.train_l.shape == (160,)
    assert (data.n_lab, data.n_ch, data.example_shape) == (10, 1, (1, 26, 26))
    # the four crops of image 3 at offsets {0, 1}^2, and the central crop of a validation image
    img = sets[0][0][3].reshape(28, 28) - sets[0][0].mean()
    crops = [data.train_d[3 + 40 * k, 0] for k in range(4)]
    for crop, (i, j) in zip(crops, [(0, 0), (0, 1), (1, 0), (1, 1)]):
        np.testing.assert_allclose(crop, img[i:i + 26, j:j + 26], atol=1e-6)
    assert all(data.train_l[3 + 40 * k] == 3 for k in range(4))
    v = sets[1][0][5].reshape(28, 28) - sets[1][0].mean()
    np.testing.assert_allclose(data.valid_d[5, 0], v[1:27, 1:27], atol=1e-6)


def test_centring_flat_output_and_no_shift(mnist_file):
    path, sets = mnist_file
    data = MNISTData(path=path, convert2image=False, shift_augment=False, center=True, seed=0)
    for d in (data.train_d, data.valid_d, data.test_d):
        assert abs(float(d.mean())) < 1e-5
    assert data.train_d.shape == (40, 784) and data.valid_d.shape == (12, 784)
    assert data.example_shape == 784 and data.n_ch == 1
    d, l = data.getbatch(7)
    assert d.shape == (7, 784) and l.shape == (7,)
    raw = MNISTData(path=path, convert2image=True, shift_augment=False, center=False, seed=0)
    assert raw.train_d.shape == (40, 1, 28, 28)
    np.testing.assert_array_equal(raw.train_d[:, 0].reshape(40, -1), sets[0][0])
    flat_shift = MNISTData(path=path, convert2image=False, shift_augment=True, seed=0)
    assert flat_shift.getbatch(5)[0].shape == (5, 676) and flat_shift.test_d.shape == (12, 676)


def test_plain_pickle_and_tilde_path(tmp_path, monkeypatch):
    write_pickle(str(tmp_path / 'mnist.pkl'), synthetic_sets(), gz=False)
    monkeypatch.setenv('HOME', str(tmp_path))
    data = MNISTData(path='~/mnist.pkl', shift_augment=False)
    assert data.train_d.shape == (40, 1, 28, 28)


class _RunsCode:
    def __reduce__(self):
        return (os.system, ('touch %s' % _RunsCode.marker,))


def test_restricted_unpickler_refuses_code(tmp_path):
    _RunsCode.marker = str(tmp_path / 'pwned')
    evil = str(tmp_path / 'evil.pkl')
    with open(evil, 'wb') as f:
        pickle.dump(((_RunsCode(), np.zeros(2)), (np.zeros((1, 4)), np.zeros(1)), (np.zeros((1, 4)), np.zeros(1))), f,
                    protocol=2)
    with pytest.raises(ValueError, match=r'refers to (posix|nt|os)\.system.*only NumPy arrays'):
        load_mnist_pickle(evil)
    assert not os.path.exists(_RunsCode.marker)
    # _codecs.encode (Python 3 protocol-2 bytes) is admitted for latin-1 only
    codec = str(tmp_path / 'codec.pkl')
    with open(codec, 'wb') as f:
        f.write(b'\x80\x02c_codecs\nencode\nq\x00X\x01\x00\x00\x00xX\x04\x00\x00\x00zlibq\x01\x86R.')
    with pytest.raises(ValueError, match="_codecs.encode with encoding 'zlib'"):
        load_mnist_pickle(codec)


def test_missing_corrupt_and_wrong_files_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match='does not exist.*Put the classic mnist.pkl.gz'):
        MNISTData(path=str(tmp_path / 'nope.pkl.gz'))
    good = write_pickle(str(tmp_path / 'good.pkl.gz'), synthetic_sets())
    truncated = str(tmp_path / 'truncated.pkl.gz')
    with open(good, 'rb') as f, open(truncated, 'wb') as g:
        g.write(f.read()[:3000])
    with pytest.raises(ValueError, match='corrupt or truncated.*Put the classic mnist.pkl.gz'):
        MNISTData(path=truncated)
    junk = str(tmp_path / 'junk.pkl')
    with open(junk, 'wb') as f:
        f.write(b'this is not a pickle at all')
    with pytest.raises(ValueError, match='junk.pkl'):
        load_mnist_pickle(junk)
    wrong = str(tmp_path / 'wrong.pkl')
    with open(wrong, 'wb') as f:
        pickle.dump([np.zeros(3)], f, protocol=2)
    with pytest.raises(ValueError, match=r'not MNIST-format data: expected a 3-tuple'):
        load_mnist_pickle(wrong)


class _FakeResponse(io.BytesIO):
    def __init__(self, payload):
        super().__init__(payload)
        self.headers = {'Content-Length': str(len(payload))}


def test_download_with_checksum_and_progress(tmp_path, monkeypatch, capsys):
    sets = synthetic_sets()
    payload = gzip.compress(pickle.dumps(sets, protocol=2))
    urls = []

    def opener(url, timeout=None):
        urls.append(url)
        if len(urls) == 1:
            raise urllib.error.URLError('mirror gone')
        return _FakeResponse(payload)

    monkeypatch.setenv(traindata.DATA_DIR_ENV, str(tmp_path / 'cache'))
    monkeypatch.setattr(mnist_files, '_urlopen', opener)
    monkeypatch.setattr(mnist_files, 'MNIST_SHA256', mnist_checksum(sets))
    data = MNISTData(path=None, shift_augment=False, seed=0)
    out = capsys.readouterr().out
    dest = tmp_path / 'cache' / 'mnist.pkl.gz'
    assert dest.is_file() and urls == list(traindata.MNIST_URLS[:2])
    assert re.search(r'Downloading mnist.pkl.gz: 100% ', out) and 'Saving data to %s' % dest in out
    assert data.train_d.shape == (40, 1, 28, 28)
    assert [p.name for p in (tmp_path / 'cache').iterdir()] == ['mnist.pkl.gz']  # no temporary left
    # the second time the cached file is used, the opener is not called
    monkeypatch.setattr(mnist_files, '_urlopen', None)
    MNISTData(path=None, seed=0)
    assert 'Found existing mnist data' in capsys.readouterr().out


def test_download_is_silent_below_info_and_the_names_stay_in_traindata(tmp_path, monkeypatch, capsys):
    from elektronn.log import use_log_level
    for name in ('load_mnist_pickle', 'mnist_checksum', 'mnist_cache_path', 'download_mnist', 'DATA_DIR_ENV',
                 'MNIST_URLS', 'MNIST_SHA256'):
        assert getattr(traindata, name) is getattr(mnist_files, name)
    sets = synthetic_sets()
    payload = gzip.compress(pickle.dumps(sets, protocol=2))
    monkeypatch.setattr(mnist_files, '_urlopen', lambda url, timeout=None: _FakeResponse(payload))
    monkeypatch.setattr(mnist_files, 'MNIST_SHA256', mnist_checksum(sets))
    with use_log_level('WARNING'):
        loaded = traindata.download_mnist(str(tmp_path / 'mnist.pkl.gz'))
    assert capsys.readouterr().out == ''          # neither the messages nor the \r progress line
    assert mnist_checksum(loaded) == mnist_checksum(sets)


def test_download_failures_leave_nothing_and_say_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv(traindata.DATA_DIR_ENV, str(tmp_path))
    payload = gzip.compress(pickle.dumps(synthetic_sets(), protocol=2))
    monkeypatch.setattr(mnist_files, '_urlopen', lambda url, timeout=None: _FakeResponse(payload))
    with pytest.raises(RuntimeError) as err:
        MNISTData(path=None)
    msg = str(err.value)
    assert 'checksum mismatch' in msg and str(tmp_path / 'mnist.pkl.gz') in msg and 'by hand' in msg
    assert list(tmp_path.iterdir()) == []

    def offline(url, timeout=None):
        raise urllib.error.URLError('no network')
    monkeypatch.setattr(mnist_files, '_urlopen', offline)
    with pytest.raises(RuntimeError, match='no network'):
        MNISTData(path=None)
    assert list(tmp_path.iterdir()) == []


def test_cache_folder_default_and_override(monkeypatch, tmp_path):
    monkeypatch.delenv(traindata.DATA_DIR_ENV, raising=False)
    assert traindata.mnist_cache_path() == os.path.join(os.path.expanduser('~'), '.ELEKTRONN', 'mnist.pkl.gz')
    monkeypatch.setenv(traindata.DATA_DIR_ENV, str(tmp_path))
    assert traindata.mnist_cache_path() == str(tmp_path / 'mnist.pkl.gz')


def test_epochs_valid_test_batches_and_warping(mnist_file):
    path, _ = mnist_file
    data = MNISTData(path=path, shift_augment=False, center=False, warp_on=True, seed=1)
    seen = np.concatenate([data.getbatch(10)[1] for _ in range(4)])  # one epoch of 40
    assert sorted(seen.tolist()) == sorted((np.arange(40) % 10).tolist())
    vd, vl = data.getbatch(5, 'valid')
    np.testing.assert_array_equal(vd, data.valid_d[:5])  # never warped
    np.testing.assert_array_equal(vl, data.valid_l[:5])
    np.testing.assert_array_equal(data.getbatch(50, 'test')[0], data.test_d)
    # warped training batches differ from the same examples unwarped; the switch is a plain attribute
    data.reseed(3)
    warped, lw = data.getbatch(8)
    data.reseed(3)
    data.warp_on = False
    plain, lp = data.getbatch(8)
    np.testing.assert_array_equal(lw, lp)
    assert warped.shape == plain.shape and not np.array_equal(warped, plain)
    assert np.abs(warped - plain).mean() < np.abs(plain).mean()  # a deformation, not noise
    clone = pickle.loads(pickle.dumps(data))
    assert clone.warp_on is False and clone.getbatch(4)[0].shape == (4, 1, 28, 28)


def test_reseed_and_process_change(mnist_file):
    path, _ = mnist_file
    a = MNISTData(path=path, shift_augment=False, seed=5)
    b = MNISTData(path=path, shift_augment=False, seed=5)
    np.testing.assert_array_equal(a.getbatch(6)[1], b.getbatch(6)[1])
    a.reseed(1)
    b.reseed(2)
    assert not np.array_equal([a.getbatch(6)[1] for _ in range(3)], [b.getbatch(6)[1] for _ in range(3)])
    # a copy that lands in another process without being reseeded draws fresh entropy
    b.reseed(1)
    b._rng_pid = -1
    rng_before = b.rng
    b.getbatch(6)
    assert b.rng is not rng_before


def test_bad_batch_arguments(mnist_file):
    data = MNISTData(path=mnist_file[0], shift_augment=False)
    with pytest.raises(ValueError, match="source must be 'train', 'valid' or 'test'"):
        data.getbatch(4, 'validation')
    with pytest.raises(ValueError, match='batch_size must be a positive integer'):
        data.getbatch(0)
    d, l = data.getbatch(41)  # more than there is: the whole training set, shuffled
    assert sorted(l.tolist()) == sorted(data.train_l.tolist()) and len(d) == 40
    data.warp_on = 1.5
    with pytest.raises(ValueError, match='warp_on'):
        data.getbatch(4)


def test_warp_probability(mnist_file):
    data = MNISTData(path=mnist_file[0], shift_augment=False, center=False, warp_on=0.5, seed=0)
    warped = 0
    for _ in range(40):
        state = data._pos, data._perm.copy()
        d, _ = data.getbatch(4)
        idx = state[1][state[0]:state[0] + 4] if state[0] + 4 <= 40 else data._perm[:4]
        warped += not np.array_equal(d, data.train_d[idx])
    assert 8 < warped < 32


def test_data_base_class_generic_use(capsys):
    rng = np.random.default_rng(0)
    d = rng.random((30, 4)).astype(np.float32)
    l = (np.arange(30) % 3).astype(np.int16)
    data = Data(train_d=d[:24], train_l=l[:24], valid_d=d[24:], valid_l=l[24:], seed=0)
    assert capsys.readouterr().out.strip() == '3-class Data Set: #training examples: 24 and #validing: 6'
    assert repr(data) == '3-class Data Set: #training examples: 24 and #validing: 6'
    assert (data.n_lab, data.example_shape, data.n_ch) == (3, (4,), 4)
    assert data.test_d.shape == (0, 4)
    seqs = [np.ones((k % 3 + 2, 2), np.float32) for k in range(10)]
    seq_data = Data(train_d=seqs, train_l=[np.array([k % 2]) for k in range(10)], valid_d=[], valid_l=[])
    assert seq_data.n_lab == 2 and len(seq_data.getbatch(4)[0]) == 4
    data.createCVSplit(d, l, n_folds=3, use_fold=2)
    np.testing.assert_array_equal(data.valid_d, d[20:])
    np.testing.assert_array_equal(data.train_d, d[:20])
    data.splitData(d, l, valid_size=5, split_no=1)
    assert len(data.valid_d) == 5 and len(data.train_d) == 25
    data.makeExampleSubset(0.8, seed=0)
    assert len(data.train_d) == 20 and data.getbatch(20)[0].shape == (20, 4)
    data.makeFeatureSubset(0.5, seed=0)
    assert data.train_d.shape[1] == data.valid_d.shape[1] == 2
    with pytest.raises(ValueError, match='train_d is not set'):
        Data()


def test_balanced_batches():
    rng = np.random.default_rng(1)
    labels = np.array([0] * 50 + [1] * 7 + [2] * 3, np.int16)
    data = BalancedData(train_d=rng.random((60, 5)).astype(np.float32), train_l=labels, seed=0)
    for _ in range(5):
        d, l = data.getbatch(9, balanced=True)
        assert d.shape == (9, 5) and np.bincount(l, minlength=3).tolist() == [3, 3, 3]
    d, l = data.getbatch(10, balanced=True)
    assert sorted(np.bincount(l, minlength=3).tolist()) == [3, 3, 4]
    assert data.getbatch(9)[0].shape == (9, 5)
    with pytest.raises(ValueError, match='training set only'):
        data.getbatch(9, source='valid', balanced=True)
    gap = BalancedData(train_d=np.zeros((4, 2)), train_l=np.array([0, 0, 2, 2]), n_lab=3)
    with pytest.raises(ValueError, match=r'none of class\(es\) \[1\]'):
        gap.getbatch(3, balanced=True)


@pytest.mark.realdata
def test_real_mnist_file():
    path = shared_data_file('mnist.pkl.gz')
    sets = load_mnist_pickle(path)
    assert mnist_checksum(sets) == traindata.MNIST_SHA256
    data = MNISTData(path=path, seed=0)
    assert data.train_d.shape == (200000, 1, 26, 26) and data.valid_d.shape == (10000, 1, 26, 26)
    assert data.n_lab == 10
