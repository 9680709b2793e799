"""Small, seeded data classes following the data protocol, for the pipeline tests.

``BlobData``: 1-channel images with a bright blob; the class is the half (left/right) it lies in.
With ``flat=True`` the examples are vectors (for 'vect-scalar'). ``warp_on`` is a plain attribute
(as in MNISTData): while on, training batches are randomly shifted. Every training batch appends
``<pid> <warp_on>`` to ``log_path`` when given, so tests can see what each worker process used.

Events for tests, counted in training batches of the drawing process: ``fail_in_worker_after`` raises
in a worker process after that many batches; ``raise_at`` raises in any process; ``nan_at`` returns
NaN data; ``signal_at=(k, signum)`` sends a signal to the process that created the object (the
trainer) at batch ``k``.
"""
import os

import numpy as np


class BlobData:
    def __init__(self, n_train=400, n_valid=100, n_test=100, size=12, warp_on=False, flat=False, log_path=None,
                 fail_in_worker_after=None, raise_at=None, nan_at=None, signal_at=None, seed=0):
        self.rng = np.random.default_rng(seed)
        self.size = size
        self.flat = flat
        self.warp_on = warp_on
        self.log_path = log_path
        self.fail_in_worker_after = fail_in_worker_after
        self.raise_at, self.nan_at, self.signal_at = raise_at, nan_at, signal_at
        self._creator = os.getpid()
        self._count = 0
        self.train_d, self.train_l = self._make(n_train)
        self.valid_d, self.valid_l = self._make(n_valid)
        self.test_d, self.test_l = self._make(n_test)
        self.n_lab = 2
        self.example_shape = self.train_d.shape[1:]
        self.n_ch = self.example_shape[0]

    def _make(self, n):
        s = self.size
        d = self.rng.normal(0, 0.3, (n, 1, s, s)).astype(np.float32)
        labels = self.rng.integers(0, 2, n).astype(np.int16)
        for k, lab in enumerate(labels):
            x = self.rng.integers(1, s - 2)
            y = self.rng.integers(1, s // 2 - 2) + (s // 2 if lab else 0)
            d[k, 0, x - 1:x + 2, y - 1:y + 2] += 2.0
        if self.flat:
            d = d.reshape(n, -1)
        return d, labels

    def reseed(self, seed):
        self.rng = np.random.default_rng(seed)

    def getbatch(self, batch_size, source='train'):
        if source == 'train':
            self._count += 1
            if (self.fail_in_worker_after is not None and os.getpid() != self._creator
                    and self._count > self.fail_in_worker_after):
                raise RuntimeError('synthetic failure in batch %i' % self._count)
            if self._count == self.raise_at:
                raise RuntimeError('synthetic failure in batch %i' % self._count)
            if self.signal_at is not None and self._count == self.signal_at[0]:
                os.kill(self._creator, self.signal_at[1])
            idx = self.rng.integers(0, len(self.train_d), batch_size)
            d, lab = self.train_d[idx].copy(), self.train_l[idx]
            if self.warp_on and not self.flat:
                d = np.roll(d, self.rng.integers(-1, 2), axis=2)
            if self._count == self.nan_at:
                d[:] = np.nan
            if self.log_path:
                with open(self.log_path, 'a') as f:
                    f.write('%i %s\n' % (os.getpid(), bool(self.warp_on)))
            return d, lab
        d, lab = getattr(self, source + '_d'), getattr(self, source + '_l')
        return d[:batch_size], lab[:batch_size]


class ProbeData:
    """Batches that report who made them: ``(first random draw, [pid], [value of self.flag])``."""

    def __init__(self, flag=0, fail_after=None, delay=0.0):
        self.rng = np.random.default_rng(0)
        self.flag = flag
        self.fail_after = fail_after
        self.delay = delay
        self.n_lab, self.n_ch, self.example_shape = 2, 1, (1,)
        self.valid_d, self.valid_l = [], []
        self._count = 0

    def reseed(self, seed):
        self.rng = np.random.default_rng(seed)

    def getbatch(self, batch_size, source='train'):
        import time
        self._count += 1
        if self.fail_after is not None and self._count > self.fail_after:
            raise ValueError('probe failure after %i batches' % self.fail_after)
        if self.delay:
            time.sleep(self.delay)
        return self.rng.random(batch_size), np.array([os.getpid()]), np.array([self.flag])
