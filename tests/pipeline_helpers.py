"""Helpers for the pipeline tests: small config files for the synthetic data classes, a trained run to
predict with, process checks."""
import contextlib
import io
import os

HERE = os.path.dirname(os.path.abspath(__file__))
SYNTHETIC = os.path.join(HERE, 'synthetic_data.py')

#: A small img-scalar CNN on BlobData (12x12 images, 2 classes).
BLOB_CNN = dict(
    save_name='blob', data_class_name=(SYNTHETIC, 'BlobData'), data_load_kwargs={}, mode='img-scalar', n_dim=2,
    desired_input=12, filters=[3], pool=[2], nof_filters=[4], MLP_layers=[8], batch_size=10, monitor_batch_size=50,
    n_steps=60, max_runtime=600, history_freq=[20], n_lab=2, SGD_params=dict(LR=0.05, momentum=0.9),
)


def write_config(folder, name='cfg.py', base=BLOB_CNN, lines=(), **values):
    """Write a config file to ``folder`` from ``base`` updated with ``values``; ``save_path`` defaults to
    ``<folder>/run/``. Extra source ``lines`` are appended verbatim."""
    settings = dict(base)
    settings.setdefault('save_path', os.path.join(str(folder), 'run', ''))
    settings.update(values)
    os.makedirs(str(folder), exist_ok=True)
    path = os.path.join(str(folder), name)
    with open(path, 'w') as f:
        for key, value in settings.items():
            f.write('%s = %r\n' % (key, value))
        for line in lines:
            f.write(line + '\n')
    return path


def process_alive(pid):
    """Whether process ``pid`` exists and is not a zombie (Linux /proc)."""
    try:
        with open('/proc/%i/stat' % pid) as f:
            return f.read().split(')')[-1].split()[0] != 'Z'
    except FileNotFoundError:
        return False


#: A tiny 3D img-img run on the CNNData pipeline; fov (x, y, z) = (11, 11, 3).
PREDICTION_RUN = dict(
    save_name='tiny', mode='img-img', n_dim=3, desired_input=[18, 18, 5], filters=[[4, 4, 1], [3, 3, 3], [2, 2, 1]],
    pool=[[2, 2, 1], 1, 1], nof_filters=[3, 4, 4], MLP_layers=[], batch_size=1, monitor_batch_size=2, n_lab=2,
    d_files=[('raw.h5', 'raw')], l_files=[('lab.h5', 'lab')], valid_cubes=[], n_steps=3, history_freq=[2],
    max_runtime=60, plot_on=False, background_processes=False, warp_on=False, SGD_params=dict(LR=0.01, momentum=0.9),
)


#: A tiny 3D img-img run on the synthetic EM cubes of the ``em_folder`` fixture (set data_path and label_path to
#: it); cube 1 validates.
TINY_EM_RUN = dict(
    save_name='em', n_dim=3, desired_input=[21, 21, 5], filters=[[2, 2, 1], [3, 3, 3]], pool=[[2, 2, 1], [1, 1, 1]],
    nof_filters=[4, 4], batch_size=1, mode='img-img', n_lab=2, d_files=[('raw_0.h5', 'raw'), ('raw_1.h5', 'raw')],
    l_files=[('barrier_int16_0.h5', 'lab'), ('barrier_int16_1.h5', 'lab')], valid_cubes=[1], anisotropic_data=True,
    n_steps=6, max_runtime=600, monitor_batch_size=2, history_freq=[3], plot_on=False, background_processes=False,
    SGD_params=dict(LR=0.01, momentum=0.9),
)


def quiet(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` with its printouts swallowed."""
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


def make_prediction_run(folder):
    """A save directory made by the Trainer (3 steps) in ``folder``, its config, and a raw volume (x, y, z) uint8.

    Returns:
        A dict: ``folder``, ``config``, ``save_dir``, ``raw`` (also in ``folder/raw.h5:raw``) and ``cnn``.
    """
    import h5py
    import numpy as np
    from elektronn.training.config import Config
    from elektronn.training.trainer import Trainer
    os.makedirs(str(folder), exist_ok=True)
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, (40, 40, 12)).astype(np.uint8)
    with h5py.File(folder / 'raw.h5', 'w') as f:
        f.create_dataset('raw', data=raw, chunks=(16, 16, 4))
    with h5py.File(folder / 'lab.h5', 'w') as f:
        f['lab'] = (raw > 128).astype(np.int16)
    config = write_config(folder, base=PREDICTION_RUN, data_path=str(folder) + '/', label_path=str(folder) + '/')
    home = os.environ.get('HOME')
    os.environ['HOME'] = str(folder / 'home')  # no user config
    try:
        trainer = quiet(Trainer, Config(config, init_device=False))
        quiet(trainer.loadData)
        quiet(trainer.createNet)
        trainer.interactive = False
        quiet(trainer.run)
    finally:
        os.environ['HOME'] = home
    save_dir = os.path.join(str(folder), 'run', '')
    assert os.path.exists(os.path.join(save_dir, 'tiny-LAST.param'))
    return dict(folder=folder, config=config, save_dir=save_dir, raw=raw, cnn=trainer.cnn)


def check_workers_draw_their_seeds(data, kw, seeds=(11, 22)):
    """Background workers seeded with ``seeds`` deliver the first batches that copies of ``data`` reseeded alike
    draw; returns ``(expected batches, the workers' pids)``."""
    import copy
    import numpy as np
    from elektronn.training.workers import BackgroundWorkers
    expected = []
    for seed in seeds:
        twin = copy.deepcopy(data)
        twin.reseed(seed)
        expected.append(twin.getbatch(**kw)[0])
    missing = list(expected)
    with BackgroundWorkers(data, kw, n_proc=len(seeds), seeds=list(seeds)) as w:
        # The workers' first batches arrive in any order, and on a busy machine one worker may
        # deliver many batches before the other's first: look until all are seen (or give up).
        for _ in range(200):
            got = w.get()[0]
            missing = [e for e in missing if not np.array_equal(got, e)]
            if not missing:
                break
        pids = w.pids
    assert not missing
    return expected, pids


def make_trainer(folder, **values):
    """A non-interactive Trainer of a config written to ``folder`` (see :func:`write_config`), with its data
    and network; plots off unless asked for."""
    from elektronn.training.config import Config
    from elektronn.training.trainer import Trainer
    values.setdefault('plot_on', False)
    t = Trainer(Config(write_config(folder, **values), init_device=False))
    t.loadData()
    t.createNet()
    t.interactive = False
    return t


def resumed_trainer(config_file, n_steps):
    """A non-interactive Trainer that resumes the run of ``config_file`` (its save directory as it is), to
    ``n_steps`` steps."""
    from elektronn.training.config import Config
    from elektronn.training.trainer import Trainer
    t = Trainer(Config(config_file, use_existing_dir=True, init_device=False))
    t.config.n_steps = n_steps
    t.loadData()
    t.createNet()
    t.interactive = False
    t.resume()
    return t


def write_block_volume(folder):
    """A tiny volume of 16 blocks with 1-voxel background gaps, ``raw.h5:raw`` (uint8, blocks bright) and
    ``seg.h5:seg`` (int16 block IDs, 0 between them), (x, y, z) = (32, 32, 8), in ``folder`` (made)."""
    import h5py
    import numpy as np
    rng = np.random.default_rng(0)
    seg = np.zeros((32, 32, 8), np.int16)
    for k, (x, y) in enumerate([(x, y) for x in range(0, 32, 8) for y in range(0, 32, 8)]):
        seg[x:x + 7, y:y + 7] = k + 1
    raw = np.where(seg > 0, 200, 40).astype(np.uint8) + rng.integers(0, 30, seg.shape).astype(np.uint8)
    os.makedirs(folder)
    with h5py.File(os.path.join(folder, 'raw.h5'), 'w') as f:
        f['raw'] = raw
    with h5py.File(os.path.join(folder, 'seg.h5'), 'w') as f:
        f['seg'] = seg
    return folder
