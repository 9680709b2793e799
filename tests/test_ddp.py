"""Distributed data parallel training (2 processes, gloo, CPU): DDP's averaged gradients, the Trainer
under torchrun, stopping every rank from one."""
import csv
import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as tmp

from elektronn.training import distributed

K_STEPS = 3
BATCH = 5


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _small_net(seed):
    from elektronn.net.convnet import MixedConvNN
    torch.manual_seed(seed)
    np.random.seed(seed)
    cnn = MixedConvNN((12, 12), input_depth=1)
    cnn.addConvLayer(4, 3, pool_shape=2, activation_func='tanh')
    cnn.addPerceptronLayer(8, activation_func='tanh')
    cnn.addPerceptronLayer(2, activation_func='linear')
    cnn.compileOutputFunctions()
    cnn.setOptimizerParams(SGD=dict(LR=0.05, momentum=0.9))
    return cnn


def _batches(step):
    """The two ranks' batches of ``step``: ``[(data, labels) of rank 0, ... of rank 1]``."""
    rng = np.random.default_rng(100 + step)
    return [(rng.normal(size=(BATCH, 1, 12, 12)).astype(np.float32), rng.integers(0, 2, BATCH).astype(np.int16))
            for _ in range(2)]


def _replica_main(rank, port, out, precision='fp32'):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE='2',
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    ctx = distributed.setup(cuda=False)
    try:
        cnn = _small_net(seed=rank)  # different weights: DDP must broadcast rank 0's
        cnn.setPrecision(precision)
        distributed.replicate(cnn, ctx)
        for step in range(K_STEPS):
            cnn.trainingStep(*_batches(step)[rank], mode='SGD')
        np.savez(os.path.join(out, 'rank%i.npz' % rank), *[p.detach().numpy() for p in cnn.params])
        del cnn  # its DDP wrapper goes before the process group does
    finally:
        distributed.shutdown()


# bf16: the two halves of a batch are computed in bf16 apart or together (other kernels, other roundings)
@pytest.mark.parametrize('precision, atol', [('fp32', 1e-5), ('bf16', 2e-3)])
def test_ddp_equals_one_process_on_the_concatenated_batches(tmp_path, monkeypatch, precision, atol):
    monkeypatch.setenv('ELEKTRONN_CPU_FLAGS', 'avx512_bf16')  # the spawned ranks inherit it
    _spawn(_replica_main, (_free_port(), str(tmp_path), precision))
    cnn = _small_net(seed=0)
    cnn.setPrecision(precision)
    for step in range(K_STEPS):
        (d0, l0), (d1, l1) = _batches(step)
        cnn.trainingStep(np.concatenate([d0, d1]), np.concatenate([l0, l1]), mode='SGD')
    reference = [p.detach().numpy() for p in cnn.params]
    initial = [p.detach().numpy() for p in _small_net(seed=0).params]
    for rank in (0, 1):
        with np.load(tmp_path / ('rank%i.npz' % rank)) as f:
            got = [f['arr_%i' % k] for k in range(len(reference))]
        for g, r, init in zip(got, reference, initial):
            assert not np.allclose(r, init)  # training moved the parameters
            np.testing.assert_allclose(g, r, rtol=0, atol=atol)


def test_context_from_the_environment():
    ctx = distributed.from_environment({})
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.is_main, ctx.active) == (0, 1, 0, True, False)
    ctx = distributed.from_environment(dict(RANK='3', WORLD_SIZE='4', LOCAL_RANK='1'))
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.is_main) == (3, 4, 1, False)
    assert ctx.all_reduce_mean([1.5]) == [1.5]  # no group: the input
    with pytest.raises(ValueError, match='RANK'):
        distributed.from_environment(dict(RANK='2', WORLD_SIZE='2'))
    with pytest.raises(ValueError, match='WORLD_SIZE'):
        distributed.from_environment(dict(WORLD_SIZE='two'))
    # WORLD_SIZE=1 (or nothing): setup changes nothing
    assert distributed.setup(cuda=False, environ=dict(RANK='0', WORLD_SIZE='1')) is distributed.context()
    assert not distributed.context().active


# ---------------------------------------------------------------------------------------------------
# The Trainer under torchrun (python -m torch.distributed.run), 2 processes on the CPU
# ---------------------------------------------------------------------------------------------------
#: A BlobData that logs ``<RANK> <pid> <batch size> <hash of the batch>`` per training batch (also from workers, which
#: inherit RANK) and, on rank ``kill_rank``, sends ``signum`` to its own process at batch ``kill_at``. On rank
#: ``flip_valid_rank`` the validation labels are swapped (0 <-> 1).
RANK_DATA = '''
import os, sys, zlib
sys.path.insert(0, %r)
from synthetic_data import BlobData

RANK = os.environ.get('RANK', '0')


class RankData(BlobData):
    def __init__(self, batch_log, kill_rank=None, kill_at=None, signum=None, flip_valid_rank=None, **kwargs):
        super().__init__(**kwargs)
        self.batch_log, self.kill_rank, self.kill_at, self.signum = batch_log, kill_rank, kill_at, signum
        if RANK == str(flip_valid_rank):
            self.valid_l = 1 - self.valid_l

    def getbatch(self, batch_size, source='train'):
        d, lab = super().getbatch(batch_size, source)
        if source == 'train':
            with open(self.batch_log, 'a') as f:
                f.write('%%s %%i %%i %%i\\n' %% (RANK, os.getpid(), len(d), zlib.crc32(d.tobytes())))
            if self._count == self.kill_at and RANK == str(self.kill_rank):
                os.kill(os.getpid(), self.signum)
        return d, lab
''' % os.path.dirname(os.path.abspath(__file__))


def _torchrun(tmp_path, timeout=120, name='cfg.py', resume=False, **values):
    """Train the BLOB_CNN config updated with ``values`` (written to ``name``) with 2 processes (``resume``:
    continue the run); ``(completed process, save dir, [(rank, pid, batch size, batch hash)])``."""
    import subprocess
    import sys
    from pipeline_helpers import write_config
    with open(tmp_path / 'rankdata.py', 'w') as f:
        f.write(RANK_DATA)
    log = tmp_path / 'batches.txt'
    load = dict(batch_log=str(log), **values.pop('load', {}))
    values = dict(dict(plot_on=False, background_processes=False, n_steps=30, history_freq=[10]), **values)
    config = write_config(tmp_path, name=name, data_class_name=(str(tmp_path / 'rankdata.py'), 'RankData'),
                          data_load_kwargs=load, **values)
    env = dict(os.environ, HOME=str(tmp_path / 'home'), OMP_NUM_THREADS='1')
    for name in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT'):
        env.pop(name, None)
    proc = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2',
                           '-m', 'elektronn.train', config, '--gpu=false'] + (['--resume'] if resume else []),
                          cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=timeout)
    batches = [line.split() for line in open(log)] if log.exists() else []
    return proc, tmp_path / 'run', batches


def test_trainer_under_torchrun_with_workers(tmp_path):
    proc, save, batches = _torchrun(tmp_path, background_processes=2, lr_scale_with_world_size=True,
                                    load=dict(flip_valid_rank=1))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert out.count('global batch 10 x 2 = 20 examples per step') == 1  # rank 0 alone prints
    assert out.count('End of Training') == 1
    assert {'blob-LAST.param', 'blob_end.param', 'blob.history.csv', 'blob.log'} <= set(os.listdir(save))
    with open(save / 'blob.log') as f:
        assert f.read().count('End of Training') == 1
    with open(save / 'blob.history.csv') as f:
        rows = list(csv.DictReader(f))
    assert [row['step'] for row in rows] == ['0', '10', '20']
    for row in rows:
        assert float(row['LR']) == pytest.approx(0.1)  # 0.05 x 2 processes (lr_scale_with_world_size)
        # the estimates are means over the ranks: rank 1's valid labels are rank 0's swapped and the replicas
        # equal, so its error is 100% minus rank 0's
        assert float(row['valid_error']) == pytest.approx(50.0)
    # every rank and worker draws its own batches: 2 ranks x 2 workers (the ranks themselves draw the
    # monitor batches of 50), no batch twice
    assert len({(rank, pid) for rank, pid, size, _ in batches if size == '10'}) == 4
    hashes = [h for _, _, _, h in batches]
    assert len(set(hashes)) == len(hashes)


@pytest.mark.parametrize('rank, signum', [(1, 'SIGTERM'), (0, 'SIGINT')])
def test_a_signal_to_one_rank_stops_all(tmp_path, rank, signum):
    import signal
    proc, save, _ = _torchrun(tmp_path, n_steps=10 ** 6, history_freq=[1000],
                              load=dict(kill_rank=rank, kill_at=8, signum=int(getattr(signal, signum))))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert out.count('saving and stopping') == 1, out
    assert out.count('continue with: elektronn-train') == 1
    assert 'blob-LAST.param' in os.listdir(save) and 'blob_end.param' not in os.listdir(save)
    with open(save / 'blob.history.csv') as f:
        assert len(f.read().split()) == 2  # the header and step 0: the stop came long before step 1000


def test_line_search_optimisers_are_refused(tmp_path, capsys):
    from pipeline_helpers import make_trainer
    with pytest.raises(ValueError, match="use 'SGD', 'Adam' or 'RPROP'"):
        distributed.check_optimizer('CG', distributed.DistContext(world_size=2))
    distributed.check_optimizer('CG', distributed.DistContext())  # a single process may
    t = make_trainer(tmp_path)
    t.dist = distributed.DistContext(rank=0, world_size=2)
    t.console.execute('LBFGS', {})
    assert t.config.optimizer == 'SGD'
    assert "optimizer 'LBFGS' searches its step" in capsys.readouterr().out


def test_lr_scale_needs_more_than_one_process(tmp_path):
    from pipeline_helpers import make_trainer
    t = make_trainer(tmp_path, lr_scale_with_world_size=True, n_steps=3, history_freq=[2])
    assert t.run() == 'finished'
    assert [row[-1] for row in t.history] == [0.05, 0.05]


def _spawn(fn, args, timeout=90):
    """Run ``fn(rank, *args)`` in 2 spawned processes; fail (and stop them) after ``timeout`` seconds."""
    import time
    procs = tmp.start_processes(fn, args=args, nprocs=2, start_method='spawn', join=False)
    deadline = time.time() + timeout
    while not procs.join(timeout=1):
        if time.time() > deadline:
            for p in procs.processes:
                p.kill()
            pytest.fail('the ranks did not finish within %i s (a collective that only one rank reached?)' % timeout)


def _console_rank_main(rank, port, folder):
    import json
    import signal
    from elektronn.training.console import Console
    from pipeline_helpers import make_trainer, quiet
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE='2',
                      LOCAL_RANK=str(rank), HOME=os.path.join(folder, 'home'))
    torch.set_num_threads(1)
    distributed.setup(cuda=False)
    try:
        # rank 0 is interrupted at its 7th batch (step 5; step 0 drew a monitor batch too) and its console changes
        # the settings
        load = dict(signal_at=(7, int(signal.SIGINT))) if rank == 0 else {}
        t = quiet(make_trainer, os.path.join(folder, 'rank%i' % rank), n_steps=14, history_freq=[5],
                  data_load_kwargs=load)
        lines = ['setlr 0.02', 'setmom 0.5', 'sethist 4', 'data.warp_on = True', 'q']
        t.interactive = True
        t.console = Console(t, input_func=lambda prompt: lines.pop(0))
        outcome = quiet(t.run)
        with open(os.path.join(folder, 'rank%i.json' % rank), 'w') as f:
            json.dump(dict(outcome=outcome, lr=t.cnn.getLR('SGD'), momentum=float(t.cnn.SGD_momentum),
                           steps=[int(row[0]) for row in t.history], warp_on=bool(t.data.warp_on),
                           lines_left=len(lines), params=[p.detach().numpy().tolist() for p in t.cnn.params]), f)
        del t  # its DDP wrapper goes before the process group does (see distributed.shutdown)
    finally:
        distributed.shutdown()


def test_console_changes_on_rank_0_reach_every_rank(tmp_path):
    import json
    _spawn(_console_rank_main, (_free_port(), str(tmp_path)))
    results = []
    for rank in (0, 1):
        with open(tmp_path / ('rank%i.json' % rank)) as f:
            results.append(json.load(f))
    for r in results:
        assert r['outcome'] == 'finished'
        assert r['lr'] == pytest.approx(0.02) and r['momentum'] == pytest.approx(0.5) and r['warp_on']
        assert r['steps'] == [0, 5, 8, 12]  # sethist 4 at step 5
    assert results[0]['lines_left'] == 0 and results[1]['lines_left'] == 5  # one console: rank 0's
    for a, b in zip(results[0]['params'], results[1]['params']):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_resume_restores_every_ranks_random_states(tmp_path, monkeypatch, capsys):
    import h5py
    import json
    import signal
    import zlib
    from pipeline_helpers import resumed_trainer
    from synthetic_data import BlobData
    proc, save, _ = _torchrun(tmp_path, n_steps=10 ** 6, history_freq=[5],
                              load=dict(kill_rank=1, kill_at=8, signum=int(signal.SIGTERM)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with h5py.File(save / 'blob-LAST.state.h5', 'r') as f:
        ranks = json.loads(f.attrs['ranks'])
        step = json.loads(f.attrs['info'])['loop']['step']
    assert len(ranks) == 2 and ranks[0]['data'] != ranks[1]['data']
    os.remove(tmp_path / 'batches.txt')
    proc, save, batches = _torchrun(tmp_path, name='cfg2.py', resume=True, n_steps=step + 3, history_freq=[5])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count('Restored the random states of all 2 ranks') == 1
    # each rank's first batch after the resume is the one its saved data generator draws next
    train = BlobData().train_d
    for rank in (0, 1):
        rng = np.random.default_rng()
        rng.bit_generator.state = ranks[rank]['data']
        expected = zlib.crc32(train[rng.integers(0, len(train), 10)].copy().tobytes())
        first = [h for r, _, size, h in batches if r == str(rank) and size == '10'][0]
        assert int(first) == expected
    # one process resuming the run of two says what it cannot continue
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    capsys.readouterr()
    resumed_trainer(str(tmp_path / 'cfg2.py'), step + 4)
    assert 'trained by 2 process(es) and is resumed by 1' in capsys.readouterr().out


def test_gpu_list_starts_torchrun_with_one_process_per_gpu(monkeypatch, capsys):
    import subprocess
    from elektronn.cli import train as cli
    started = []

    class FakePopen:
        def __init__(self, command, env):
            started.append((command, env['CUDA_VISIBLE_DEVICES']))

        def wait(self):
            return 0

    monkeypatch.setattr(subprocess, 'Popen', FakePopen)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 4)
    for name in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'CUDA_VISIBLE_DEVICES'):
        monkeypatch.delenv(name, raising=False)
    assert cli.main(['cfg.py', '--gpu=1,3', '--resume']) == 0
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '4,5,6,7')
    assert cli.main(['cfg.py', '--gpu=all']) == 0
    (first, visible1), (second, visible2) = started
    assert first[1:] == ['-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', '-m', 'elektronn.train',
                         'cfg.py', '--gpu=0', '--resume']
    assert visible1 == '1,3'  # rank k takes cuda:k of these
    assert '--nproc_per_node=4' in second and visible2 == '4,5,6,7'
    assert cli.main(['cfg.py', '--gpu=2,4']) == 2
    assert 'has 4 CUDA device(s)' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(['cfg.py', '--gpu=1,1'])
    assert 'GPU 1 is named twice' in capsys.readouterr().err
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    assert cli.main(['cfg.py', '--gpu=all']) == 2
    assert '--gpu=false trains on the CPU' in capsys.readouterr().err
    assert len(started) == 2
