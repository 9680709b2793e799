"""Block-wise prediction from and to Zarr and HDF5, in this process and on a Dask LocalCluster of 2 worker
processes: equal numbers to predictDense, a worker killed mid-block, a killed client resumed, OME-Zarr metadata,
GPU pinning of local workers and the error paths."""
import json
import os
import signal
import subprocess
import sys
import time

import cloudpickle
import numpy as np
import pytest
import zarr

import kill_helpers
from elektronn import volumes
from elektronn.inference import runners
from elektronn.inference.blocks import BlockLedger, BlockPlan
from elektronn.inference.volume_prediction import PredictionError, predict_volume
from elektronn.cli import predict as predict_cli
from pipeline_helpers import make_prediction_run, quiet
from test_volume_prediction import dense_net

cloudpickle.register_pickle_by_value(kill_helpers)  # the workers do not import the tests


@pytest.fixture(scope='module')
def client():
    """A LocalCluster of 2 worker processes (1 thread each) on the loopback interface."""
    c = runners.start_local_cluster(2, threads=1, dashboard=False)
    yield c
    cluster = c.cluster
    c.close()
    cluster.close()


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    return make_prediction_run(tmp_path_factory.mktemp('run'))


@pytest.fixture(scope='module')
def net():
    return quiet(dense_net)


@pytest.fixture(scope='module')
def raw():
    return np.random.default_rng(3).random((30, 26, 9)).astype(np.float32)


@pytest.fixture(scope='module')
def expected(net, raw):
    return net.predictDense(raw[None], show_progress=False)


def write(path, key, data, chunks=None, **attrs):
    """``data`` as ``path:key`` (HDF5 or Zarr, by the suffix)."""
    with volumes.open_container(str(path), 'a', 'test data') as c:
        vol = c.create_volume(key, data.shape, data.dtype, chunks=chunks or data.shape)
        vol[...] = data
        if attrs:
            vol.set_attrs(**attrs)
    return str(path)


def read(spec):
    with volumes.open_volume(str(spec)) as vol:
        return vol[...]


def read_prob(spec):
    """An output in predictDense's layout (class, x, y, z): HDF5 outputs have it, Zarr outputs are (class, z, x, y)."""
    with volumes.open_volume(str(spec)) as vol:
        return vol[...].transpose(0, 2, 3, 1) if vol.format == 'zarr' else vol[...]


def done_flags(path, key='prob'):
    with volumes.open_container(str(path)) as c:
        return BlockLedger.open(c, key).done()


@pytest.mark.parametrize('src_ext,out_ext', [('h5', 'zarr'), ('zarr', 'h5'), ('zarr', 'zarr'), ('h5', 'h5')])
def test_every_format_pair_equals_predict_dense(tmp_path, net, raw, expected, src_ext, out_ext, capsys):
    src = write(tmp_path / ('raw.' + src_ext), 'volumes/raw', raw, chunks=(16, 16, 9))
    out = tmp_path / ('out.' + out_ext)
    summary = predict_volume(net, '%s:volumes/raw' % src, '%s:prob' % out, block_shape=(3, 8, 8))
    assert summary['computed'] == summary['blocks'] == 3 * 3 * 2
    np.testing.assert_allclose(read_prob('%s:prob' % out), expected, atol=1e-6)
    assert done_flags(out).all()


@pytest.mark.parametrize('src_ext', ['h5', 'zarr'])
def test_workers_give_the_numbers_of_predict_dense(tmp_path, client, net, raw, expected, src_ext, capsys):
    src = write(tmp_path / ('raw.' + src_ext), 'raw', raw, chunks=(16, 16, 9))
    out = str(tmp_path / 'out.zarr')
    summary = predict_volume(net, '%s:raw' % src, out + ':prob', block_shape=(2, 7, 7), client=client,
                             progress_interval=0)
    assert summary['computed'] == summary['blocks'] == 4 * 3 * 3
    np.testing.assert_allclose(read_prob(out + ':prob'), expected, atol=1e-6)
    assert done_flags(out).all()
    text = capsys.readouterr().out
    assert 'blocks/s' in text and 'voxel/s' in text and 'ETA' in text
    # a resumed run, distributed or not, finds every block done
    assert predict_volume(net, '%s:raw' % src, out + ':prob', resume=True)['computed'] == 0


def test_zarr_output_is_class_z_x_y_for_the_zxy_layout_too(tmp_path, client, net, raw, expected, capsys):
    zxy = np.ascontiguousarray(raw.transpose(2, 0, 1))
    src = write(tmp_path / 'raw.zarr', 'raw', (zxy * 255).astype(np.uint8))
    out = str(tmp_path / 'out.zarr')
    predict_volume(net, src + ':raw', out + ':prob', layout='zxy', as_uint8=True, client=client,
                   block_shape=(4, 10, 10))
    got = read(out + ':prob')
    ref = net.predictDense((zxy * 255).astype(np.uint8).transpose(1, 2, 0)[None], as_uint8=True,
                           show_progress=False)  # (class, x, y, z)
    assert got.shape == (2, 7, 20, 16) and got.dtype == np.uint8
    assert np.abs(got.astype(int) - ref.transpose(0, 3, 1, 2)).max() <= 1


def test_a_worker_killed_mid_block_still_gives_the_full_output(tmp_path, client, raw, expected, capsys):
    killer = quiet(dense_net)
    killer.__class__ = kill_helpers.KillOnceNet
    killer.marker, killer.kill_at = str(tmp_path / 'killed'), 3
    src = write(tmp_path / 'raw.zarr', 'raw', raw)
    out = str(tmp_path / 'out.zarr')
    pids = set(client.run(os.getpid).values())
    summary = predict_volume(killer, src + ':raw', out + ':prob', block_shape=(2, 7, 7), client=client,
                             show_progress=False)
    killed = int(open(killer.marker).read())
    assert killed in pids  # a worker process really died (SIGKILL) inside a block
    assert summary['computed'] == summary['blocks'] == 36
    np.testing.assert_allclose(read_prob(out + ':prob'), killer.predictDense(raw[None], show_progress=False), atol=1e-6)
    assert done_flags(out).all()
    client.wait_for_workers(2, timeout=60)  # the nanny restarted it


_CLIENT = '''
import sys
from elektronn.cli.predict import main
sys.exit(main(sys.argv[1:]))
'''


def start_client_until(run, tmp_path, out, n_done):
    """``elektronn-predict --workers 2`` in a session of its own, once ``n_done`` blocks are flagged done.

    Returns:
        ``(process, args)``; the process still runs (its output is piped).
    """
    src = write(tmp_path / 'raw.zarr', 'raw', run['raw'], chunks=(20, 20, 12))
    args = [run['save_dir'], src + ':raw', out, '--block-shape', '3,3,2', '--workers', '2', '--threads', '1']
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), HOME=str(tmp_path / 'home'))
    proc = subprocess.Popen([sys.executable, '-c', _CLIENT] + args, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True, text=True)
    ledger = os.path.join(out, 'prob_done')
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if os.path.isdir(ledger) and sum(n.isdigit() for n in os.listdir(ledger)) >= n_done:
            return proc, args
        time.sleep(0.05)
    proc.kill()
    raise AssertionError('no %i blocks done in time:\n%s' % (n_done, proc.communicate()[0]))


def check_flagged_blocks_and_resume(run, out, args):
    """Every block flagged done is complete and right; --resume (in this process) completes the output."""
    done = done_flags(out)
    assert 20 <= done.sum() < done.size
    expected = run['cnn'].predictDense(run['raw'][None], show_progress=False)
    got = read_prob(out + ':prob')
    plan = BlockPlan((10, 30, 30), (2, 3, 3))
    for number in np.flatnonzero(done):
        start, stop = plan.block_bounds(number)
        region = (slice(None),) + tuple(slice(a, b) for a, b in zip(start[1:] + start[:1], stop[1:] + stop[:1]))
        np.testing.assert_allclose(got[region], expected[region], atol=1e-6)
    assert quiet(predict_cli.main, args[:5] + ['--resume']) == 0  # locally this time
    assert done_flags(out).all()
    np.testing.assert_allclose(read_prob(out + ':prob'), expected, atol=1e-6)


def test_a_killed_client_loses_at_most_the_blocks_in_flight_and_resume_completes(tmp_path, run):
    out = str(tmp_path / 'out.zarr')
    proc, args = start_client_until(run, tmp_path, out, 20)
    os.killpg(proc.pid, signal.SIGKILL)  # the client and its local cluster, as a lost login session would
    proc.communicate(timeout=30)
    check_flagged_blocks_and_resume(run, out, args)


def test_the_cancel_race_of_distributed_sync_is_not_reported_after_ctrl_c():
    """ctrl+c before distributed's sync() has its future makes its cancel callback raise this NameError, which
    tornado logs with a traceback (seen once in CI); the client's filter drops exactly that report."""
    import logging

    def record(error):
        return logging.LogRecord('tornado.application', logging.ERROR, __file__, 1, 'Exception in callback %r',
                                 ('cancel',), (type(error), error, None) if error else None)
    race = NameError("cannot access free variable 'future' where it is not associated with a value in enclosing "
                     "scope")
    flt = runners._CANCEL_RACE_FILTER
    assert not flt.filter(record(race))
    assert flt.filter(record(NameError("name 'blocks' is not defined"))) and flt.filter(record(ValueError('x')))
    assert flt.filter(record(None))


def test_ctrl_c_stops_client_and_workers_cleanly(tmp_path, run):
    out = str(tmp_path / 'out.zarr')
    proc, args = start_client_until(run, tmp_path, out, 20)
    os.killpg(proc.pid, signal.SIGINT)  # as ctrl+c in a terminal: to the client and its workers alike
    text = proc.communicate(timeout=60)[0]
    assert proc.returncode == 130, text
    assert 'Interrupted: the finished blocks are kept; run the same command with --resume' in text
    assert 'Traceback' not in text and 'KeyboardInterrupt' not in text  # the workers leave ctrl+c to the client
    deadline = time.time() + 15
    while subprocess.run(['pgrep', '-g', str(proc.pid)], capture_output=True).returncode == 0:
        assert time.time() < deadline, 'processes of the run are left over'
        time.sleep(0.2)
    check_flagged_blocks_and_resume(run, out, args)


def test_ome_zarr_metadata_is_valid_and_carries_the_voxel_size(tmp_path, net, raw, capsys):
    from ome_zarr_models.v04 import Image
    src = write(tmp_path / 'raw.h5', 'raw', raw, resolution=[4.0, 4.0, 30.0], unit='nanometer')  # (x, y, z)
    out = str(tmp_path / 'out.zarr')
    predict_volume(net, src + ':raw', out + ':prob')
    image = Image.from_zarr(zarr.open_group(out + '/prob', mode='r'))
    ms = image.attributes.multiscales[0]
    assert [a.name for a in ms.axes] == ['c', 'z', 'x', 'y']  # what viewers expect: the image plane last
    assert [a.type for a in ms.axes] == ['channel', 'space', 'space', 'space']
    scale, translation = ms.datasets[0].coordinateTransformations
    assert list(scale.scale) == [1.0, 30.0, 4.0, 4.0]
    assert list(translation.translation) == [0.0, 1 * 30.0, 5 * 4.0, 5 * 4.0]  # the offset (z, x, y) = (1, 5, 5)
    assert ms.axes[1].unit == 'nanometer'
    meta = json.load(open(os.path.join(out, 'prob', '0', '.zarray')))
    assert meta['compressor']['cname'] == 'zstd' and meta['dimension_separator'] == '/'
    assert meta['chunks'] == [2, 7, 20, 16]  # one chunk per block
    # the OME-Zarr output reads back as an input, e.g. for segmentation, by the group's key
    assert read(out + ':prob').shape == (2, 7, 20, 16)
    assert json.loads(volumes.open_volume(out + ':prob').attrs['elektronn_prediction'])['n_out'] == 2


def test_relative_paths_reach_workers_in_other_folders(tmp_path, client, net, raw, expected, monkeypatch, capsys):
    write(tmp_path / 'raw.zarr', 'raw', raw)
    monkeypatch.chdir(tmp_path)  # the workers stay where they started
    predict_volume(net, 'raw.zarr:raw', 'out.zarr', client=client, show_progress=False)
    np.testing.assert_allclose(read_prob(tmp_path / 'out.zarr:prob'), expected, atol=1e-6)


def test_a_scheduler_neither_unpickles_the_task_nor_logs_a_traceback_when_a_client_closes(tmp_path, client, net, raw,
                                                                                          expected, monkeypatch):
    """As ``elektronn-predict --scheduler``: a client of its own. The local cluster's scheduler runs in this process,
    so what it unpickles and logs is seen here."""
    import logging
    import threading
    from elektronn.inference.volume_prediction import PredictionTask
    unpickled = []
    monkeypatch.setattr(PredictionTask, '__setstate__',
                        lambda self, state: (unpickled.append(threading.current_thread().name),
                                             self.__dict__.update(state)))

    class Records(logging.Handler):
        messages = []

        def emit(self, record):
            self.messages.append(record.getMessage() + (' (traceback)' if record.exc_info else ''))

    handler, batched = Records(), logging.getLogger('distributed.batched')
    level = batched.level
    batched.addHandler(handler)
    batched.setLevel(logging.INFO)  # the local cluster silences it
    try:
        src = write(tmp_path / 'raw.zarr', 'raw', raw)
        with runners.cluster_client(scheduler=client.scheduler.address) as other:
            quiet(predict_volume, net, src + ':raw', str(tmp_path / 'out.zarr:prob'), block_shape=(4, 13, 13),
                  client=other, show_progress=False)
        time.sleep(1.0)  # the scheduler's answers to a closed client fail (and are logged) a moment later
    finally:
        batched.removeHandler(handler)
        batched.setLevel(level)
    np.testing.assert_allclose(read_prob(tmp_path / 'out.zarr:prob'), expected, atol=1e-6)
    assert unpickled == []  # the workers unpickle the task (and its network), not the scheduler
    assert not [m for m in Records.messages if 'Comm Closed' in m or 'traceback' in m], Records.messages


def test_an_image_in_a_zarr_v3_store_gets_ngff_0_5(tmp_path, net, raw, capsys):
    from ome_zarr_models.v05 import Image
    zarr.open_group(str(tmp_path / 'v3.zarr'), mode='w', zarr_format=3)
    src = write(tmp_path / 'v3.zarr', 'raw', raw)
    predict_volume(net, src + ':raw', src + ':prob', show_progress=False)
    Image.from_zarr(zarr.open_group(str(tmp_path / 'v3.zarr/prob'), mode='r'))  # raises if not valid NGFF 0.5
    np.testing.assert_allclose(read_prob(src + ':prob'), net.predictDense(raw[None], show_progress=False), atol=1e-6)


def test_local_gpu_workers_each_see_only_their_gpu():
    c = runners.start_local_cluster(gpus=[1, 0], threads=1, dashboard=False)
    try:
        seen = sorted(c.run(lambda: os.environ.get('CUDA_VISIBLE_DEVICES')).values())
        threads = set(c.run(lambda: os.environ.get('OMP_NUM_THREADS')).values())
    finally:
        cluster = c.cluster
        c.close()
        cluster.close()
    assert seen == ['0', '1'] and threads == {'1'}
    with pytest.raises(ValueError, match='one worker per GPU: 3 workers for the GPUs 0,1'):
        runners.start_local_cluster(3, gpus=[0, 1])


@pytest.mark.cuda
def test_gpu_workers_give_the_numbers_of_predict_dense(tmp_path, net, raw, expected, capsys):
    import torch
    c = runners.start_local_cluster(gpus=[0], threads=1, dashboard=False)
    try:
        assert list(c.run(torch.cuda.device_count).values()) == [1]  # the worker sees its GPU alone
        src = write(tmp_path / 'raw.zarr', 'raw', raw)
        out = str(tmp_path / 'out.zarr')
        predict_volume(net, src + ':raw', out + ':prob', block_shape=(3, 10, 10), client=c, worker_device='cuda')
    finally:
        cluster = c.cluster
        c.close()
        cluster.close()
    np.testing.assert_allclose(read_prob(out + ':prob'), expected, atol=2e-3)  # cuDNN may use TF32


def test_errors_name_the_file_and_the_fix(tmp_path, client, net, raw):
    src = write(tmp_path / 'raw.zarr', 'raw', raw)
    write(src, 'grp/a', raw[:2])
    with pytest.raises(PredictionError, match=r'out.h5 is an HDF5 file, which only one process may write; .* '
                                              r'needs a Zarr output, e.g. .*out.zarr:prob'):
        predict_volume(net, src + ':raw', str(tmp_path / 'out.h5'), client=client)
    with pytest.raises(PredictionError, match=r'input store .*none.zarr does not exist'):
        predict_volume(net, str(tmp_path / 'none.zarr:raw'), str(tmp_path / 'o.zarr'))
    with pytest.raises(PredictionError, match=r"raw.zarr has no dataset 'rwa' \(it has: grp/a, raw\)"):
        predict_volume(net, src + ':rwa', str(tmp_path / 'o.zarr'))
    with pytest.raises(PredictionError, match=r'raw.zarr:grp is a group, not a dataset \(its datasets: a\)'):
        predict_volume(net, src + ':grp', str(tmp_path / 'o.zarr'))
    with pytest.raises(PredictionError, match=r"output .*o.tif: unsupported suffix '.tif'; name HDF5 files .h5"):
        predict_volume(net, src + ':raw', str(tmp_path / 'o.tif'))
    predict_volume(net, src + ':raw', str(tmp_path / 'o.zarr'), show_progress=False)
    with pytest.raises(PredictionError, match=r'o.zarr:prob already exists; use --resume'):
        predict_volume(net, src + ':raw', str(tmp_path / 'o.zarr'))
    with pytest.raises(PredictionError, match=r'differs in dtype'):
        predict_volume(net, src + ':raw', str(tmp_path / 'o.zarr'), resume=True, as_uint8=True)
    assert not (tmp_path / 'none.zarr').exists() and not (tmp_path / 'o.tif').exists()


def test_cli_distributed_options(tmp_path, run, capsys):
    with pytest.raises(SystemExit):
        predict_cli.main(['run', 'a.zarr:raw', 'b.zarr', '--workers', '0'])
    assert 'must be a positive integer' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        predict_cli.main(['run', 'a.zarr:raw', 'b.zarr', '--workers', '2', '--scheduler', 'tcp://x:1'])
    assert 'not allowed with argument' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        predict_cli.main(['run', 'a.zarr:raw', 'b.zarr', '--gpu', '0,1'])
    assert '--gpu=[0, 1] needs --workers' in capsys.readouterr().err
    src = write(tmp_path / 'raw.zarr', 'raw', run['raw'])
    assert predict_cli.main([run['save_dir'], src + ':raw', str(tmp_path / 'o.h5'), '--workers', '2']) == 2
    assert 'needs a Zarr output' in capsys.readouterr().err
    # the GPUs of an existing cluster are the workers': none need be here (a login node)
    assert predict_cli.main([run['save_dir'], src + ':raw', str(tmp_path / 'o.zarr'), '--gpu', 'all',
                             '--scheduler', str(tmp_path / 'missing.json')]) == 2
    assert 'scheduler file' in capsys.readouterr().err and not (tmp_path / 'o.zarr').exists()
    assert predict_cli.main([run['save_dir'], src + ':raw', str(tmp_path / 'o.zarr'), '--gpu', '0,1',
                             '--workers', '3']) == 2
    assert 'one worker per GPU: 3 workers for the GPUs 0,1' in capsys.readouterr().err


class _CountingTask(runners.BlockTask):
    """Records the blocks it runs; counts how often a process opens it."""
    opened = 0

    def open(self):
        type(self).opened += 1
        return []

    def run_block(self, state, number, start, stop):
        state.append(number)
        return dict(voxels=BlockPlan.voxels(start, stop))


def test_a_worker_opens_a_task_once_for_all_its_blocks():
    task = _CountingTask()
    results = [runners._run_on_worker(task, n, (n,), (n + 2,)) for n in range(3)]
    assert _CountingTask.opened == 1 and runners._STATES[task.token][1] == [0, 1, 2]
    assert [r['voxels'] for r in results] == [2, 2, 2] and all(r['ended'] >= r['began'] for r in results)
    runners._run_on_worker(_CountingTask(), 0, (0,), (1,))  # another task: the old state is let go
    assert task.token not in runners._STATES and _CountingTask.opened == 2


def test_any_block_task_runs_here_with_progress(capsys):
    plan = BlockPlan((5, 4), (2, 3))
    task = _CountingTask()
    stats = runners.run_blocks(task, list(plan.blocks()), progress_interval=0)
    assert stats['computed'] == plan.n_blocks == 6 and stats['voxels'] == 20
    assert '6/6 blocks' in capsys.readouterr().out
