"""Data classes for non-image and toy data: :class:`Data`, :class:`BalancedData`, :class:`MNISTData` and others.

Every data class follows the protocol the trainer and the background workers use:

* ``getbatch(batch_size, source='train')`` returns ``(data, labels)`` NumPy arrays; ``'train'``
  batches come from an epoch-wise random permutation, ``'valid'`` and ``'test'`` batches are the
  first ``batch_size`` examples of those sets;
* attributes ``n_lab``, ``n_ch``, ``example_shape``, ``valid_d``/``valid_l`` (may be empty) and
  ``test_d``/``test_l``;
* all randomness comes from ``self.rng`` (a ``numpy.random.Generator``); ``reseed(seed)`` replaces
  it, which the background workers do with an independent seed each. A copy of the object that
  finds itself in another process without having been reseeded draws fresh entropy, so forked
  workers never repeat each other's batches.

Switches such as ``data.warp_on`` are plain attributes and may be changed at any time (the
console forwards such changes to the workers).

A custom data class sets ``train_d``, ``train_l``, ``valid_d``, ``valid_l`` (and optionally
``test_d``, ``test_l``) and then calls ``Data.__init__``; or passes the arrays to it::

    class MyData(Data):
        def __init__(self, path):
            d, l = load_somehow(path)
            super().__init__(train_d=d[:900], train_l=l[:900], valid_d=d[900:], valid_l=l[900:])

The MNIST file itself (reading, checksum, cache folder, download) is handled by
:mod:`elektronn.training.mnist_files`; its names are importable from here as before.
"""
import logging
import os

import numpy as np

from elektronn.training import warping
# re-exported: the MNIST file functions were defined here, and code imports them from here
from elektronn.training.mnist_files import (DATA_DIR_ENV, MNIST_SHA256, MNIST_URLS, download_mnist,  # noqa: F401
                                            load_mnist_pickle, mnist_cache_path, mnist_checksum)

__all__ = ['Data', 'BalancedData', 'QueueData', 'MNISTData', 'AdultData', 'BuzzData', 'PianoData', 'GeneData',
           'load_mnist_pickle', 'mnist_cache_path', 'DATA_DIR_ENV']

logger = logging.getLogger(__name__)

_SOURCES = ('train', 'valid', 'test')


class Data:
    """Base class of in-memory data sets (examples along the first axis).

    Args:
        n_lab: Number of classes; by default the number of distinct training labels.
        train_d, train_l, valid_d, valid_l, test_d, test_l: The data, if not already set as
            attributes by a subclass. Lists of arrays (e.g. sequences of different length) are
            accepted as well as arrays.
        seed: Seed of ``self.rng`` (``None``: fresh entropy).

    Attributes:
        n_lab, n_ch, example_shape: Number of classes, channels (first axis of an example) and the
            shape of one example.
        rng: The ``numpy.random.Generator`` every random choice comes from.
    """

    def __init__(self, n_lab=None, train_d=None, train_l=None, valid_d=None, valid_l=None, test_d=None, test_l=None,
                 seed=None):
        for name, value in (('train_d', train_d), ('train_l', train_l), ('valid_d', valid_d), ('valid_l', valid_l),
                            ('test_d', test_d), ('test_l', test_l)):
            if value is not None:
                setattr(self, name, value)
        for name in ('train_d', 'train_l'):
            if getattr(self, name, None) is None:
                raise ValueError('%s: %s is not set; set train_d/train_l (and valid_d/valid_l) before calling '
                                 'Data.__init__, or pass them to it' % (type(self).__name__, name))
        for name in ('valid_d', 'valid_l', 'test_d', 'test_l'):
            if getattr(self, name, None) is None:
                setattr(self, name, np.zeros((0,) + tuple(np.shape(self.train_d[0])), np.float32)
                        if name.endswith('_d') else np.zeros((0,), np.int16))
        self._training_count = len(self.train_d)
        if self._training_count != len(self.train_l):
            raise ValueError('%s: %i training examples but %i training labels'
                             % (type(self).__name__, self._training_count, len(self.train_l)))
        if self._training_count == 0:
            raise ValueError('%s: the training set is empty' % type(self).__name__)
        if n_lab is None:
            labels = self.train_l if isinstance(self.train_l, np.ndarray) else np.hstack(
                [np.ravel(lab) for lab in self.train_l])
            n_lab = np.unique(labels).size
            self._n_lab_detected = True
        self.n_lab = int(n_lab)
        self._check_values()
        self.example_shape = tuple(np.shape(self.train_d[0]))
        self.n_ch = self.example_shape[0] if self.example_shape else 1
        logger.info('%r', self)
        self.reseed(seed)

    def _check_values(self):
        """Refuse NaN/Inf data and integer labels outside ``0 .. n_lab-1`` (negative ones mean "ignore")
        with a message naming the set, instead of training on them."""
        from elektronn.training.cubes import check_finite
        cls = type(self).__name__
        for name in ('train_d', 'valid_d', 'test_d', 'train_l', 'valid_l', 'test_l'):
            value = getattr(self, name)
            items = [value] if isinstance(value, np.ndarray) else list(value)
            for k, item in enumerate(items):
                where = '%s: %s' % (cls, name) if isinstance(value, np.ndarray) else '%s: %s[%i]' % (cls, name, k)
                if isinstance(item, np.ndarray) and item.dtype == object:
                    continue
                item = np.asarray(item)
                if name.endswith('_d'):
                    check_finite(item, where, what='data')
                    continue
                check_finite(item, where, what='labels')
                if np.issubdtype(item.dtype, np.integer) and item.size and item.max() >= self.n_lab:
                    raise ValueError('%s holds label %i, outside 0..%i for n_lab=%i (negative labels mean "ignore"); '
                                     'number the classes 0..n_lab-1%s'
                                     % (where, int(item.max()), self.n_lab - 1, self.n_lab,
                                        ' (n_lab was detected as the number of distinct training labels)'
                                        if getattr(self, '_n_lab_detected', False) else ' or raise n_lab'))

    # --------------------------------------------------------------------------------------------
    # Randomness
    # --------------------------------------------------------------------------------------------
    def reseed(self, seed=None):
        """Replace ``self.rng`` by ``numpy.random.default_rng(seed)`` (``None``: fresh entropy) and
        start a new epoch from it, so that workers reseeded differently also walk the training set
        in different orders."""
        self.rng = np.random.default_rng(seed)
        self._rng_pid = os.getpid()
        self._pos = 0
        self._perm = self.rng.permutation(self._training_count)

    def _check_process(self):
        # A copy in another process that nobody reseeded would repeat the parent's random stream.
        if getattr(self, '_rng_pid', None) != os.getpid():
            self.reseed(None)

    # --------------------------------------------------------------------------------------------
    # Batches
    # --------------------------------------------------------------------------------------------
    def __repr__(self):
        return '%i-class Data Set: #training examples: %i and #validing: %i' % (self.n_lab, self._training_count,
                                                                                 len(self.valid_d))

    def _check_batch_args(self, batch_size, source):
        if source not in _SOURCES:
            raise ValueError("source must be 'train', 'valid' or 'test', got %r" % (source,))
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError('batch_size must be a positive integer, got %r' % (batch_size,))

    def _next_train_indices(self, batch_size):
        """Indices of the next training batch: consecutive slices of a random permutation, redrawn when
        its rest cannot fill a batch (every example is drawn at most once per epoch)."""
        self._check_process()
        if self._pos + batch_size <= self._training_count:
            self._pos += batch_size
            return self._perm[self._pos - batch_size:self._pos]
        self._perm = self.rng.permutation(self._training_count)
        self._pos = batch_size
        return self._perm[:batch_size]

    @staticmethod
    def _take(data, labels, index):
        """``data[index], labels[index]`` for arrays; for lists, stacked arrays if the examples have
        one shape and lists otherwise (e.g. sequences of different length)."""
        if isinstance(data, np.ndarray):
            return data[index], np.asarray(labels)[index]

        def gather(items):
            items = [items[i] for i in index]
            return np.stack(items) if len({np.shape(x) for x in items}) == 1 else items
        return gather(data), gather(labels)

    def getbatch(self, batch_size, source='train'):
        """A batch ``(data, labels)``.

        Args:
            batch_size: Number of examples.
            source: ``'train'`` (random, each example once per epoch), ``'valid'`` or ``'test'``
                (the first ``batch_size`` examples). A set smaller than ``batch_size`` is returned
                whole (the training set shuffled), as the trainer's monitoring expects.
        """
        self._check_batch_args(batch_size, source)
        if source == 'train':
            return self._take(self.train_d, self.train_l, self._next_train_indices(batch_size))
        data, labels = (self.valid_d, self.valid_l) if source == 'valid' else (self.test_d, self.test_l)
        return data[:batch_size], labels[:batch_size]

    # --------------------------------------------------------------------------------------------
    # Splits and subsets
    # --------------------------------------------------------------------------------------------
    def createSplitPerm(self, size, subset_ratio=0.8, seed=None):
        """The first ``subset_ratio`` of a random permutation of ``range(size)`` (seeded if ``seed``)."""
        rng = self.rng if seed is None else np.random.default_rng(seed)
        return rng.permutation(size)[:int(size * subset_ratio)]

    def createCVSplit(self, data, label, n_folds=3, use_fold=2, shuffle=False, random_state=None):
        """Use fold ``use_fold`` of an ``n_folds``-fold split of ``data``/``label`` as validation set.

        Folds are contiguous (the first ``len(data) % n_folds`` folds one example larger) unless
        ``shuffle``, which permutes first with ``random_state`` as seed — as scikit-learn's KFold.
        """
        if not 0 <= use_fold < n_folds:
            raise ValueError('use_fold must lie in [0, n_folds), got use_fold=%r, n_folds=%r' % (use_fold, n_folds))
        n = len(data)
        order = np.random.default_rng(random_state).permutation(n) if shuffle else np.arange(n)
        sizes = np.full(n_folds, n // n_folds)
        sizes[:n % n_folds] += 1
        start = int(sizes[:use_fold].sum())
        valid_i = order[start:start + sizes[use_fold]]
        train_i = np.concatenate([order[:start], order[start + sizes[use_fold]:]])
        self.valid_d, self.valid_l = data[valid_i], label[valid_i]
        self.train_d, self.train_l = data[train_i], label[train_i]

    def splitData(self, data, label, valid_size, split_no=0):
        """Random split (seeded by ``split_no``) into ``valid_size`` validation and the rest training examples."""
        perm = np.random.default_rng(split_no).permutation(len(data))
        self.valid_d, self.valid_l = data[perm[:valid_size]], label[perm[:valid_size]]
        self.train_d, self.train_l = data[perm[valid_size:]], label[perm[valid_size:]]

    def makeExampleSubset(self, subset_ratio=0.8, seed=None):
        """Keep a random ``subset_ratio`` of the training examples."""
        ix = self.createSplitPerm(len(self.train_d), subset_ratio, seed)
        self.train_d, self.train_l = self.train_d[ix], self.train_l[ix]
        self._training_count = len(self.train_d)
        self._pos = 0
        self._perm = self.rng.permutation(self._training_count)

    def makeFeatureSubset(self, subset_ratio=0.8, seed=None):
        """Keep a random ``subset_ratio`` of the features (axis 1) in all sets."""
        ix = self.createSplitPerm(self.train_d.shape[1], subset_ratio, seed)
        self.train_d = self.train_d[:, ix]
        self.valid_d = self.valid_d[:, ix]
        self.test_d = self.test_d[:, ix]
        self.example_shape = tuple(self.train_d.shape[1:])


class BalancedData(Data):
    """:class:`Data` that can also draw class-balanced training batches (``getbatch(..., balanced=True)``).

    A balanced batch holds ``batch_size // n_lab`` examples of every class (the remainder goes to
    randomly chosen classes), each class walking through its own epoch-wise permutation. Classes
    are numbered ``0 .. n_lab - 1``.
    """

    def reseed(self, seed=None):
        super().reseed(seed)
        self._b_index = None  # class permutations are redrawn from the new generator

    def getbatch(self, batch_size, source='train', balanced=False):
        if balanced:
            if source != 'train':
                raise ValueError("balanced batches are drawn from the training set only, got source=%r" % (source,))
            return self.getbatch_balanced(batch_size)
        return super().getbatch(batch_size, source=source)

    def _init_balanced(self):
        labels = np.asarray(self.train_l)
        self._b_index = [np.flatnonzero(labels == k) for k in range(self.n_lab)]
        empty = [k for k, ix in enumerate(self._b_index) if len(ix) == 0]
        if empty:
            raise ValueError('balanced batches need training examples of every class 0..%i; none of class(es) %s'
                             % (self.n_lab - 1, empty))
        self._b_perm = [self.rng.permutation(len(ix)) for ix in self._b_index]
        self._b_pos = [0] * self.n_lab

    def _class_indices(self, k, n):
        out = []
        while n > 0:
            perm, pos = self._b_perm[k], self._b_pos[k]
            take = min(n, len(perm) - pos)
            out.append(self._b_index[k][perm[pos:pos + take]])
            self._b_pos[k] = pos + take
            n -= take
            if self._b_pos[k] == len(perm):
                self._b_perm[k] = self.rng.permutation(len(perm))
                self._b_pos[k] = 0
        return np.concatenate(out) if out else np.zeros(0, np.intp)

    def getbatch_balanced(self, batch_size):
        """A training batch with (as nearly as possible) the same number of examples per class."""
        self._check_batch_args(batch_size, 'train')
        self._check_process()
        if self._b_index is None:
            self._init_balanced()
        counts = np.full(self.n_lab, batch_size // self.n_lab)
        counts[self.rng.choice(self.n_lab, batch_size % self.n_lab, replace=False)] += 1
        index = np.concatenate([self._class_indices(k, int(c)) for k, c in enumerate(counts)])
        return self._take(self.train_d, self.train_l, index)


# ------------------------------------------------------------------------------------------------
# MNIST
# ------------------------------------------------------------------------------------------------
class MNISTData(Data):
    """MNIST digits (the classic ``mnist.pkl.gz``: 50 000 training, 10 000 validation, 10 000 test images).

    Args:
        path: The pickle (gzip'd or plain, ``~`` expanded). ``None`` uses the cached copy
            (:func:`~elektronn.training.mnist_files.mnist_cache_path`) and downloads it there if it is missing.
        convert2image: Batches and ``*_d`` arrays as images ``(N, 1, 28, 28)`` (or 26x26); with
            ``False`` as flat vectors ``(N, 784)`` (or 676).
        warp_on: Warp training batches (random shear, rotation, scale and stretch per image);
            validation and test batches are never warped. May be switched at any time.
        shift_augment: Crop valid/test images to the central 26x26 and replace the training set by
            all four 26x26 crops of each image (offsets ``{0, 1}^2``): 200 000 examples.
        center: Subtract each set's mean pixel value.
        seed: Seed of ``self.rng`` (``None``: fresh entropy).

    Prints ``10-class Data Set: #training examples: 200000 and #validing: 10000`` and
    ``MNIST data is converted/augmented to shape (1, 26, 26)`` as the original.
    """

    #: Warp ranges per image at amount 1 (the original's MNIST settings): degrees and fractions.
    WARP_ROT, WARP_SHEAR, WARP_SCALE, WARP_STRETCH = 5.0, 7.0, 0.15, 0.25

    def __init__(self, path=None, convert2image=True, warp_on=False, shift_augment=True, center=True, seed=None):
        if path is None:
            sets = self.download()
        else:
            sets = load_mnist_pickle(path)
        (train_d, train_l), (valid_d, valid_l), (test_d, test_l) = sets
        self.warp_on = warp_on
        self.shift_augment = bool(shift_augment)
        self.return_flat = not convert2image
        train_l, valid_l, test_l = (np.asarray(l).astype(np.int16) for l in (train_l, valid_l, test_l))
        train_d, valid_d, test_d = (np.asarray(d, dtype=np.float32) for d in (train_d, valid_d, test_d))
        self._background = 0.0
        if center:
            # The training mean becomes the warp's fill value: warped-in borders look like background.
            self._background = -float(train_d.mean())
            train_d, valid_d, test_d = (d - d.mean(dtype=np.float64).astype(np.float32) for d in
                                        (train_d, valid_d, test_d))
        train_d, valid_d, test_d = (self._as_images(d) for d in (train_d, valid_d, test_d))
        if self.shift_augment:
            valid_d, test_d = valid_d[:, :, 1:-1, 1:-1], test_d[:, :, 1:-1, 1:-1]
            train_d, train_l = self._shift_crops(train_d, train_l)
        if self.return_flat:
            train_d, valid_d, test_d = (np.ascontiguousarray(d.reshape(len(d), -1)) for d in (train_d, valid_d, test_d))
        else:
            valid_d, test_d = np.ascontiguousarray(valid_d), np.ascontiguousarray(test_d)
        super().__init__(train_d=train_d, train_l=train_l, valid_d=valid_d, valid_l=valid_l, test_d=test_d,
                         test_l=test_l, seed=seed)
        if self.return_flat:  # as the original: a plain int for vectors, and the one grey channel
            side = int(round(np.sqrt(self.train_d.shape[1])))
            self._image_shape = (1, side, side)
            self.example_shape = int(self.train_d.shape[1])
            self.n_ch = 1
        else:
            self._image_shape = self.example_shape
        logger.info('MNIST data is converted/augmented to shape %s', self.example_shape)

    @staticmethod
    def download():
        """The cached MNIST sets, downloaded first if missing (see
        :func:`~elektronn.training.mnist_files.mnist_cache_path`)."""
        dest = mnist_cache_path()
        if os.path.exists(dest):
            logger.info('Found existing mnist data')
            return load_mnist_pickle(dest)
        return download_mnist(dest)

    @staticmethod
    def _as_images(d):
        n = int(round(np.sqrt(d[0].size)))
        if n * n != d[0].size:
            raise ValueError('MNIST examples must be square images, got %i values per example' % d[0].size)
        return d.reshape(len(d), 1, n, n)

    @staticmethod
    def _shift_crops(data, labels, crop=2):
        """``crop**2`` shifted ``(n - crop)``-sized crops of every image (offsets ``0 .. crop - 1`` per axis,
        stacked crop by crop), as the original's ``_augmentMNIST(crop=2, factor=4)``."""
        size = data.shape[-1] - crop
        crops = [data[:, :, i:i + size, j:j + size] for i in range(crop) for j in range(crop)]
        return np.concatenate(crops), np.tile(labels, len(crops))

    def getbatch(self, batch_size, source='train'):
        """A batch ``(data, labels)``; training batches are warped when ``warp_on`` (True, or a
        probability in (0, 1))."""
        data, labels = super().getbatch(batch_size, source)
        if source == 'train' and self._warp_this_batch():
            flat = data.ndim == 2
            images = data.reshape((len(data),) + self._image_shape) if flat else data
            images = self.warpAugment(images)
            data = images.reshape(data.shape) if flat else images
        return data, labels

    def _warp_this_batch(self):
        w = self.warp_on
        if isinstance(w, (bool, np.bool_)) or w in (0, 1):
            return bool(w)
        if not 0 < w < 1:
            raise ValueError('warp_on must be True/False or a probability in (0, 1), got %r' % (w,))
        return self.rng.random() < w

    def warpAugment(self, images, amount=1.0):
        """Warp a batch ``(n, 1, x, y)``, every image with its own random parameters.

        Per image: rotation ``U(-5, 5)`` and shear ``U(-7, 7)`` degrees, scale ``U(1, 1.15)`` for
        x and y, stretch ``U(-0.25, 0.25)`` twice (maxima times ``amount``). Pixels warped in from
        outside read the background value.
        """
        n = len(images)
        rng = self.rng
        return warping.warp2dBatch(images, rng.uniform(-1, 1, n) * self.WARP_ROT * amount,
                                   rng.uniform(-1, 1, n) * self.WARP_SHEAR * amount,
                                   1 + rng.uniform(0, 1, (n, 2)) * self.WARP_SCALE * amount,
                                   rng.uniform(-1, 1, (n, 2)) * self.WARP_STRETCH * amount,
                                   fill=self._background)


# ------------------------------------------------------------------------------------------------
# The original's other data classes
# ------------------------------------------------------------------------------------------------
class QueueData(Data):
    """:class:`Data` with a priority queue over the training examples (the original's ``QueueData``):
    hard examples (high loss) are drawn again, and more often than easy ones.

    ``queueget(n)`` returns the ``n`` training examples of highest priority
    ``nll / (1 + 0.017 * count) - 0.004 * age`` (``count``: how often the example was updated,
    ``age``: iterations since its last update); examples never updated come first, in random order.
    After the training step, ``queueupdate(nlls, iteration)`` records the per-example losses of the
    examples of the last ``queueget``. ``queuereset()`` forgets everything; ``save(path)`` writes the
    queue's state. ``getbatch`` works as for :class:`Data`.
    """
    COUNT_DECAY = 0.017
    AGE_PENALTY = 0.004

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.queuereset()

    def queuereset(self):
        """Forget all losses, counts and ages: every example is unseen again."""
        n = self._training_count
        self.queue_nll = np.full(n, np.inf)
        self.queue_count = np.zeros(n, np.int64)
        self.queue_last = np.zeros(n, np.int64)
        self.queue_iteration = 0
        self._queue_taken = None

    def queuepriority(self):
        """The priority of every training example (``inf`` for examples never updated)."""
        age = self.queue_iteration - self.queue_last
        with np.errstate(invalid='ignore'):
            return self.queue_nll / (1 + self.COUNT_DECAY * self.queue_count) - self.AGE_PENALTY * age

    def queueget(self, n):
        """The ``n`` training examples of highest priority as ``(data, labels)`` (ties in random order)."""
        self._check_batch_args(n, 'train')
        self._check_process()
        n = min(int(n), self._training_count)
        order = self.rng.permutation(self._training_count)  # random tie-breaking
        prio = self.queuepriority()[order]
        index = order[np.argsort(-prio, kind='stable')[:n]]
        self._queue_taken = index
        return self._take(self.train_d, self.train_l, index)

    def queueupdate(self, nlls, iteration):
        """Record the losses ``nlls`` (one per example, in the order of the last :meth:`queueget`)
        at training iteration ``iteration``."""
        if self._queue_taken is None:
            raise RuntimeError('queueupdate: call queueget first')
        nlls = np.asarray(nlls, dtype=np.float64).reshape(-1)
        if len(nlls) != len(self._queue_taken):
            raise ValueError('queueupdate: %i losses for the %i examples of the last queueget'
                             % (len(nlls), len(self._queue_taken)))
        if not np.isfinite(nlls).all():
            raise ValueError('queueupdate: the losses must be finite')
        index = self._queue_taken
        self.queue_iteration = int(iteration)
        self.queue_nll[index] = nlls
        self.queue_count[index] += 1
        self.queue_last[index] = int(iteration)
        self._queue_taken = None

    def save(self, path):
        """Write the queue's state (a dict of ``nll``, ``count``, ``last``, ``iteration``) as a pickle
        that :func:`elektronn.utils.pickleLoad` reads."""
        from elektronn.utils import pickleSave
        pickleSave({'nll': self.queue_nll, 'count': self.queue_count, 'last': self.queue_last,
                    'iteration': self.queue_iteration}, path)
        return path


class _DownloadedData(Data):
    _DATASET = ''
    _URL = ''

    def __init__(self, *args, **kwargs):
        raise NotImplementedError(
            '%s downloaded the %s data set (%s); this rebuild does not download it. Load the data yourself and '
            'use Data(train_d=..., train_l=..., valid_d=..., valid_l=...) or a custom data class '
            "(config: data_class_name=('~/MyData.py', 'MyClass'))" % (type(self).__name__, self._DATASET, self._URL))


class AdultData(_DownloadedData):
    """The original's UCI "Adult" census-income data class (downloaded, normalised, cached). Not
    available here: the constructor raises ``NotImplementedError`` (use :class:`Data`)."""
    _DATASET = 'UCI Adult'
    _URL = 'https://archive.ics.uci.edu/ (data set "Adult")'


class BuzzData(_DownloadedData):
    """The original's "Buzz in social media" (Twitter) regression data class. Not available here:
    the constructor raises ``NotImplementedError`` (use :class:`Data`)."""
    _DATASET = 'Buzz in social media (Twitter)'
    _URL = 'https://archive.ics.uci.edu/ (data set "Buzz in social media")'


class GeneData(_DownloadedData):
    """The original's GEMLeR gene expression data class. Not available here: the constructor raises
    ``NotImplementedError`` (use :class:`Data`)."""
    _DATASET = 'GEMLeR gene expression'
    _URL = 'GEMLeR, the Gene Expression Machine Learning Repository'


class PianoData(Data):
    """Piano-roll sequences (the original's Nottingham data class) from a local pickle.

    Args:
        path: A pickle (read with :func:`elektronn.utils.pickleLoad`) holding the training,
            validation and test sets, as a dict ``{'train': ..., 'valid': ..., 'test': ...}`` or as
            three records / a 3-tuple. A set is a list of sequences; a sequence is an array
            ``(time, n_lab)`` of 0/1 (notes on) or a list of time steps, each a list of the indices
            (``0 .. n_lab-1``) of the notes on.
        n_tap: Length of the input window.
        n_lab: Number of notes (the width of a piano-roll step).

    ``getbatch(batch_size, source)`` returns ``(data, labels)``: ``(batch_size, n_tap, n_lab)``
    float32 windows of random sequences at random positions, and the following step
    ``(batch_size, n_lab)`` int16 as target. Validation and test windows are the same each call.
    """

    def __init__(self, path, n_tap=20, n_lab=58, seed=None):
        from elektronn.utils import pickleLoad
        sets = pickleLoad(os.path.expanduser(path))
        if isinstance(sets, dict):
            missing = [k for k in ('train', 'valid', 'test') if k not in sets]
            if missing:
                raise ValueError('PianoData: %s has no %s set(s)' % (path, ', '.join(missing)))
            sets = [sets['train'], sets['valid'], sets['test']]
        if not isinstance(sets, (list, tuple)) or len(sets) != 3:
            raise ValueError('PianoData: %s must hold the train, valid and test sets (a dict or 3 records)' % path)
        self.n_tap = self.n_taps = int(n_tap)
        if self.n_tap < 1:
            raise ValueError('PianoData: n_tap must be positive, got %r' % (n_tap,))
        self.n_lab = int(n_lab)
        self.train_d, self.valid_d, self.test_d = [self._encode(s, name) for s, name in
                                                   zip(sets, ('train', 'valid', 'test'))]
        self.train_l, self.valid_l, self.test_l = self.train_d, self.valid_d, self.test_d
        if not self.train_d:
            raise ValueError('PianoData: no training sequence longer than n_tap=%i in %s' % (self.n_tap, path))
        self._training_count = len(self.train_d)
        self.example_shape = (self.n_tap, self.n_lab)
        self.n_ch = self.n_tap
        logger.info('%r', self)
        self.reseed(seed)

    def _encode(self, sequences, name):
        out = []
        for k, seq in enumerate(sequences):
            if isinstance(seq, np.ndarray) and seq.ndim == 2:
                if seq.shape[1] != self.n_lab:
                    raise ValueError('PianoData: %s sequence %i has %i notes per step, n_lab=%i'
                                     % (name, k, seq.shape[1], self.n_lab))
                roll = (seq != 0).astype(np.float32)
            else:
                roll = np.zeros((len(seq), self.n_lab), np.float32)
                for t, notes in enumerate(seq):
                    notes = np.asarray(notes, dtype=np.int64).reshape(-1)
                    if notes.size and (notes.min() < 0 or notes.max() >= self.n_lab):
                        raise ValueError('PianoData: %s sequence %i step %i has notes outside 0..%i'
                                         % (name, k, t, self.n_lab - 1))
                    roll[t, notes] = 1
            if len(roll) > self.n_tap:  # a window and its target fit
                out.append(roll)
        return out

    def __repr__(self):
        return 'PianoData: %i notes, windows of %i steps, #training sequences: %i and #validing: %i' % (
            self.n_lab, self.n_tap, len(self.train_d), len(self.valid_d))

    def _windows(self, sequences, batch_size, rng):
        seq_i = rng.integers(0, len(sequences), batch_size)
        data = np.empty((batch_size, self.n_tap, self.n_lab), np.float32)
        labels = np.empty((batch_size, self.n_lab), np.int16)
        for b, s in enumerate(seq_i):
            seq = sequences[s]
            t = int(rng.integers(0, len(seq) - self.n_tap))
            data[b] = seq[t:t + self.n_tap]
            labels[b] = seq[t + self.n_tap]
        return data, labels

    def getbatch(self, batch_size, source='train'):
        self._check_batch_args(batch_size, source)
        if source == 'train':
            self._check_process()
            return self._windows(self.train_d, batch_size, self.rng)
        sequences = self.valid_d if source == 'valid' else self.test_d
        if not sequences:
            return (np.zeros((0, self.n_tap, self.n_lab), np.float32), np.zeros((0, self.n_lab), np.int16))
        return self._windows(sequences, batch_size, np.random.default_rng(0))
