"""The MNIST file behind :class:`~elektronn.training.traindata.MNISTData`: reading, checking, caching, downloading.

:func:`load_mnist_pickle` reads ``mnist.pkl.gz`` (gzip'd or plain, Python 2 or 3) admitting only
arrays, tuples and lists; :func:`mnist_checksum` identifies its arrays; :func:`mnist_cache_path`
says where the downloaded copy is kept (``$ELEKTRONN_DATA_DIR`` or ``~/.ELEKTRONN``) and
:func:`download_mnist` fetches it from the known mirrors, keeping a file only if its arrays match
:data:`MNIST_SHA256`. The names are importable from :mod:`elektronn.training.traindata` as well.
"""
import gzip
import hashlib
import logging
import os
import pickle
import sys
import time
import urllib.request

import numpy as np

from elektronn import log
from elektronn.safe_pickle import ArrayUnpickler
from elektronn.utils import atomic_path

__all__ = ['load_mnist_pickle', 'mnist_checksum', 'mnist_cache_path', 'download_mnist', 'DATA_DIR_ENV', 'MNIST_URLS',
           'MNIST_SHA256']

logger = logging.getLogger(__name__)

#: Environment variable naming the folder where downloaded data sets are cached.
DATA_DIR_ENV = 'ELEKTRONN_DATA_DIR'

#: Where ``MNISTData(path=None)`` downloads from, in this order.
MNIST_URLS = (
    'http://www.elektronn.org/downloads/mnist.pkl.gz',
    'http://deeplearning.net/data/mnist/mnist.pkl.gz',
    'https://github.com/mnielsen/neural-networks-and-deep-learning/raw/master/data/mnist.pkl.gz',
)

#: SHA-256 of the decoded arrays (see :func:`mnist_checksum`): the classic deeplearning.net data.
#: Checking the arrays rather than the file accepts every copy of the same data (gzip level, pickle
#: protocol and Python 2/3 origin change the file's bytes, not the arrays).
MNIST_SHA256 = 'd70fcb5813e7caf5aa503988c81d6ed50dd999f58bed10b6cc81437bcbc1eaa4'

_MNIST_FILE = 'mnist.pkl.gz'


def _open_maybe_gzip(path):
    with open(path, 'rb') as f:
        magic = f.read(2)
    return gzip.open(path, 'rb') if magic == b'\x1f\x8b' else open(path, 'rb')


def _mnist_help(path):
    return ('Put the classic mnist.pkl.gz (a gzip\'d pickle of ((train_x, train_y), (valid_x, valid_y), '
            '(test_x, test_y)), e.g. from %s) at %s, or pass MNISTData(path=...).'
            % (MNIST_URLS[0], path if path else mnist_cache_path()))


def load_mnist_pickle(path):
    """Read an MNIST-format pickle (gzip'd or plain) safely.

    Only NumPy arrays, tuples and lists are admitted (Python 2 pickles are read with
    ``encoding='latin1'``); a pickle that refers to anything else is refused before it can run.

    Returns:
        ``((train_d, train_l), (valid_d, valid_l), (test_d, test_l))`` with data ``(N, features)``
        (or ``(N, 1, n, n)``) and labels ``(N,)``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is corrupt, not an MNIST-format pickle or refers to other objects.
    """
    path = os.path.expanduser(os.fspath(path))
    if not os.path.isfile(path):
        raise FileNotFoundError('MNIST data file %r does not exist. %s' % (path, _mnist_help(path)))
    try:
        with _open_maybe_gzip(path) as f:
            sets = ArrayUnpickler(f, encoding='latin1').load()
    except pickle.UnpicklingError as e:
        raise ValueError('%r cannot be loaded as MNIST data: it refers to %s, but only NumPy arrays, tuples and '
                         'lists are loaded. %s' % (path, e, _mnist_help(path))) from None
    except (EOFError, OSError, ValueError, TypeError, AttributeError, IndexError, KeyError) as e:
        raise ValueError('%r is not a readable MNIST pickle (corrupt or truncated?): %s: %s. %s'
                         % (path, type(e).__name__, e, _mnist_help(path))) from None
    _check_mnist_structure(sets, path)
    return tuple((np.asarray(d), np.asarray(l)) for d, l in sets)


def _check_mnist_structure(sets, path):
    def bad(why):
        return ValueError('%r is not MNIST-format data: %s. %s' % (path, why, _mnist_help(path)))

    if not isinstance(sets, (tuple, list)) or len(sets) != 3:
        raise bad('expected a 3-tuple (train, valid, test), got %s' % type(sets).__name__)
    for name, pair in zip(('train', 'valid', 'test'), sets):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise bad('the %s set must be a pair (data, labels)' % name)
        d, l = pair
        if not isinstance(d, np.ndarray) or not isinstance(l, np.ndarray):
            raise bad('the %s set must hold NumPy arrays' % name)
        if d.dtype.kind not in 'fiu' or l.dtype.kind not in 'iu':
            raise bad('the %s set has dtypes %s/%s (need numeric data and integer labels)' % (name, d.dtype, l.dtype))
        if d.ndim < 2 or l.ndim != 1 or len(d) != len(l):
            raise bad('the %s set has data %s and labels %s (need (N, features) and (N,))' % (name, d.shape, l.shape))


def mnist_checksum(sets):
    """SHA-256 over the arrays of an MNIST-format tuple (data as float32, labels as int64, with shapes)."""
    h = hashlib.sha256()
    for d, l in sets:
        for arr, dtype in ((d, '<f4'), (l, '<i8')):
            arr = np.ascontiguousarray(arr, dtype=dtype)
            h.update(repr(arr.shape).encode())
            h.update(arr.tobytes())
    return h.hexdigest()


def mnist_cache_path():
    """Where ``MNISTData(path=None)`` keeps ``mnist.pkl.gz``.

    ``$ELEKTRONN_DATA_DIR`` if set, else ``~/.ELEKTRONN`` (``%APPDATA%\\ELEKTRONN`` on Windows), as
    the original.
    """
    folder = os.environ.get(DATA_DIR_ENV)
    if not folder:
        if os.name == 'nt' and os.environ.get('APPDATA'):
            folder = os.path.join(os.environ['APPDATA'], 'ELEKTRONN')
        else:
            folder = os.path.join(os.path.expanduser('~'), '.ELEKTRONN')
    return os.path.join(os.path.expanduser(folder), _MNIST_FILE)


#: The opener used for downloads (tests replace it).
_urlopen = urllib.request.urlopen


def _progress(done, total, t0, name):
    if not log.shows():  # the line is INFO output: hidden with it
        return
    rate = done / max(time.time() - t0, 1e-6)
    if total:
        eta = (total - done) / rate if rate > 0 else float('inf')
        line = '\rDownloading %s: %3.0f%% %.1f/%.1f MB, %.1f MB/s, ETA %.0f s  ' % (
            name, 100.0 * done / total, done / 1e6, total / 1e6, rate / 1e6, eta)
    else:
        line = '\rDownloading %s: %.1f MB, %.1f MB/s  ' % (name, done / 1e6, rate / 1e6)
    sys.stdout.write(line)
    sys.stdout.flush()


def _download(url, f, timeout=60, chunk=1 << 20):
    """Copy ``url`` into the open file ``f``, showing a progress line."""
    with _urlopen(url, timeout=timeout) as response:
        total = int(response.headers.get('Content-Length') or 0) if getattr(response, 'headers', None) else 0
        done, t0, last = 0, time.time(), 0.0
        while True:
            block = response.read(chunk)
            if not block:
                break
            f.write(block)
            done += len(block)
            if time.time() - last > 0.2:
                _progress(done, total, t0, os.path.basename(url))
                last = time.time()
        _progress(done, total, t0, os.path.basename(url))
        if log.shows():
            sys.stdout.write('\n')
    if total and done != total:
        raise OSError('download incomplete: %i of %i bytes' % (done, total))


def download_mnist(dest=None, urls=MNIST_URLS):
    """Download MNIST to ``dest`` (default :func:`mnist_cache_path`), verifying its checksum.

    The file is written under a temporary name and moved into place only after it loaded and
    its arrays matched :data:`MNIST_SHA256`.

    Returns:
        The loaded sets, as :func:`load_mnist_pickle`.

    Raises:
        RuntimeError: no URL gave valid data (offline, moved, corrupt); the message lists the
            attempts and says where to put the file by hand.
    """
    dest = dest or mnist_cache_path()
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    errors = []
    for url in urls:
        logger.info('Downloading mnist data from')
        logger.info('%s', url)
        try:
            with atomic_path(dest) as tmp:  # moved onto dest only if the block succeeds
                with open(tmp, 'wb') as f:
                    _download(url, f)
                sets = load_mnist_pickle(tmp)
                checksum = mnist_checksum(sets)
                if checksum != MNIST_SHA256:
                    raise ValueError('checksum mismatch (got %s, expected %s)' % (checksum, MNIST_SHA256))
            logger.info('Saving data to %s', dest)
            return sets
        except Exception as e:  # any failure: try the next mirror, report all at the end
            errors.append('%s: %s: %s' % (url, type(e).__name__, e))
    raise RuntimeError('Could not download MNIST (offline, or the mirrors moved):\n  %s\nDownload mnist.pkl.gz by '
                       'hand and put it at %s (or set %s to its folder), or pass MNISTData(path=...).'
                       % ('\n  '.join(errors), dest, DATA_DIR_ENV))

