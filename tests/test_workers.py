"""Background batch workers: independent seeds, forwarded attribute changes, errors, no zombies."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from elektronn.training.workers import AttributeWatcher, BackgroundWorkers, WorkerError

from pipeline_helpers import process_alive as _alive
from synthetic_data import ProbeData

HERE = os.path.dirname(os.path.abspath(__file__))


def _wait_gone(pids, seconds=5.0):
    end = time.time() + seconds
    while time.time() < end and any(_alive(p) for p in pids):
        time.sleep(0.05)
    return not any(_alive(p) for p in pids)


def test_every_worker_draws_from_its_own_seed():
    seeds = [11, 22, 33]
    with BackgroundWorkers(ProbeData(delay=0.02), dict(batch_size=4), n_proc=3, seeds=seeds) as w:
        firsts = {}
        for _ in range(60):
            draws, pid, _ = w.get()
            firsts.setdefault(int(pid[0]), draws)
            if len(firsts) == 3:
                break
        assert set(firsts) == set(w.pids)
    expected = {tuple(np.random.default_rng(s).random(4)) for s in seeds}
    assert {tuple(v) for v in firsts.values()} == expected  # distinct, and exactly the seeded streams


def test_attribute_changes_reach_every_worker_and_stale_batches_are_dropped():
    data = ProbeData(flag=0, delay=0.01)
    with BackgroundWorkers(data, dict(batch_size=1), n_proc=2, seeds=[1, 2]) as w:
        for _ in range(4):
            assert w.get()[2][0] == 0
        data.flag = 7
        assert w.update({'flag': 7}) == ['flag']
        seen = set()
        for _ in range(40):
            _, pid, flag = w.get()
            assert flag[0] == 7  # nothing made before the change comes through
            seen.add(int(pid[0]))
            if len(seen) == 2:
                break
        assert seen == set(w.pids)
        w.update(batch_kwargs=dict(batch_size=3))
        assert len(w.get()[0]) == 3


def test_unpicklable_values_are_skipped_with_a_message():
    with BackgroundWorkers(ProbeData(), dict(batch_size=1), n_proc=2, seeds=[1, 2]) as w:
        with pytest.warns(UserWarning, match='data.hook cannot be sent to the background workers'):
            assert w.update({'hook': lambda x: x, 'flag': 3}) == ['flag']


def test_worker_error_carries_the_traceback():
    with BackgroundWorkers(ProbeData(fail_after=2), dict(batch_size=1), n_proc=2, seeds=[1, 2]) as w:
        with pytest.raises(WorkerError, match=r'(?s)failed in data\.getbatch.*Traceback.*ValueError: probe failure'):
            for _ in range(10):
                w.get()


def test_a_silently_dying_worker_is_reported():
    with BackgroundWorkers(ProbeData(delay=0.05), dict(batch_size=1), n_proc=2, seeds=[1, 2]) as w:
        w.get()
        os.kill(w.pids[0], signal.SIGKILL)
        with pytest.raises(WorkerError, match='died with exit code -9'):
            for _ in range(200):
                w.get()


def test_shutdown_reaps_all_workers():
    w = BackgroundWorkers(ProbeData(), dict(batch_size=1), n_proc=3, seeds=[1, 2, 3])
    w.get()
    pids = w.pids
    w.shutdown()
    w.shutdown()  # idempotent
    assert all(p.exitcode is not None for p in w.procs)
    assert _wait_gone(pids, 1.0)
    with pytest.raises(RuntimeError, match='shut down'):
        w.get()


def test_workers_die_when_the_trainer_is_killed():
    script = ('import sys, time; sys.path.insert(0, %r)\n'
              'from synthetic_data import ProbeData\n'
              'from elektronn.training.workers import BackgroundWorkers\n'
              'w = BackgroundWorkers(ProbeData(), dict(batch_size=1), n_proc=2, seeds=[1, 2])\n'
              'w.get(); print(*w.pids, flush=True); time.sleep(60)\n' % HERE)
    p = subprocess.Popen([sys.executable, '-c', script], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(x) for x in p.stdout.readline().split()]
        assert len(pids) == 2 and all(_alive(x) for x in pids)
    finally:
        p.kill()
        p.wait()
    assert _wait_gone(pids, 5.0)


def test_attribute_watcher_sees_reassignments_and_small_in_place_changes():
    data = ProbeData()
    data.items = [1, 2]
    data.big = np.zeros(1 << 19)  # 4 MB: compared by identity
    watch = AttributeWatcher(data)
    assert watch.changes() == {}
    data.flag = 5
    data.items.append(3)
    data.new = 'x'
    data.big[0] = 1  # in-place change of a big array: not seen (documented)
    assert set(watch.changes()) == {'flag', 'items', 'new'}
    data.big = np.ones(3)
    assert set(watch.changes()) == {'big'}
