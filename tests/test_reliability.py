"""Nothing lost: reproducible seeds, parameters and optimiser state of one step, stops between steps only,
the configured number of batch processes and PyTorch threads."""
import json
import os
import signal

import h5py
import numpy as np
import pytest
import torch

from elektronn.net import params as param_files
from elektronn.training.trainer import Trainer

from pipeline_helpers import TINY_EM_RUN, make_trainer, quiet, resumed_trainer


def final_params(t):
    return [p.detach().clone() for p in t.cnn.params]


def assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


def test_the_same_seed_gives_the_same_run_and_another_seed_another(tmp_path):
    runs = []
    for name, seed in (('a', 7), ('b', 7), ('c', 8)):
        torch.manual_seed(len(runs))  # the global state before the run must not matter
        np.random.seed(len(runs))
        t = quiet(make_trainer, tmp_path / name, seed=seed, n_steps=30)
        quiet(t.run)
        runs.append(final_params(t))
    assert_same(runs[0], runs[1])
    assert not all(torch.equal(x, y) for x, y in zip(runs[0], runs[2]))


def test_the_same_seed_on_warped_cubes(tmp_path, em_folder):
    """CNNData with warping and flips: sampling and augmentation follow the seed too."""
    settings = dict(TINY_EM_RUN, data_path=em_folder, label_path=em_folder, warp_on=0.5, flip_data=True, n_steps=5,
                    history_freq=[0], seed=3)
    runs = []
    for name in ('a', 'b'):
        torch.manual_seed(len(runs))
        t = quiet(make_trainer, tmp_path / name, base=settings)
        quiet(t.run)
        runs.append(final_params(t))
    assert_same(*runs)


def test_resume_takes_the_parameters_saved_with_the_state(tmp_path, capsys):
    """A stop between writing -LAST.param and the state: the state's own parameters are used."""
    t = quiet(make_trainer, tmp_path, seed=1, n_steps=40, history_freq=[20])
    quiet(t.run)
    with h5py.File(os.path.join(t.save_path, 'blob-LAST.state.h5'), 'r') as f:
        named = os.path.join(t.save_path, json.loads(f.attrs['info'])['params_file'])   # blob_end.param at the end
    with_state = final_params(t)
    t.cnn.randomizeWeights()  # a newer parameter file whose state was never written
    quiet(t.cnn.saveParameters, named)
    again = resumed_trainer(t.config.config_file, 40)
    assert 'is from another step than the resume state' in capsys.readouterr().out
    assert_same(final_params(again), with_state)


def test_an_old_state_with_parameters_of_another_step_is_refused(tmp_path):
    t = quiet(make_trainer, tmp_path, seed=1, n_steps=40, history_freq=[20])
    quiet(t.run)
    state = os.path.join(t.save_path, 'blob-LAST.state.h5')
    with h5py.File(state, 'a') as f:  # as states were written before they held their parameters and a checksum
        del f['params_file']
        del f.attrs['content_sha256']
        named = os.path.join(t.save_path, json.loads(f.attrs['info'])['params_file'])
    t.cnn.randomizeWeights()
    quiet(t.cnn.saveParameters, named)
    with pytest.raises(ValueError, match='blob_end.param and the resume state .*blob-LAST.state.h5 are from '
                                         'different steps'):
        quiet(resumed_trainer, t.config.config_file, 40)


@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGTERM])
def test_a_second_signal_waits_for_the_step_to_finish(tmp_path, signum):
    """Two signals during an update (as ctrl+c twice): the step completes, and what is saved is one step's."""
    t = quiet(make_trainer, tmp_path, seed=1, n_steps=1000, history_freq=[5])
    real_step, done = t.cnn.trainingStep, []

    def step_hit_by_signals(*args, **kwargs):
        if len(done) == 12:
            os.kill(os.getpid(), signum)
            os.kill(os.getpid(), signum)  # the second one would cut the step short
        result = real_step(*args, **kwargs)
        done.append(1)
        return result
    t.cnn.trainingStep = step_hit_by_signals
    try:
        outcome = quiet(t.run)
    except KeyboardInterrupt:
        outcome = 'raised'
    assert outcome == 'interrupted'
    assert t.state.step == len(done) == 13       # the 13th step was completed and counted
    saved, _ = param_files.read_parameter_file(os.path.join(t.save_path, 'blob-LAST.param'))
    live = final_params(t)
    flat = [np.asarray(v) for layer in saved for k, v in sorted(layer.items()) if k != 'type']
    assert sum(a.size for a in flat) == sum(p.numel() for p in live)
    resumed = quiet(resumed_trainer, t.config.config_file, 20)
    assert resumed.state.step == 13
    assert_same(final_params(resumed), live)


def test_background_processes_and_threads_as_configured(tmp_path, monkeypatch, capsys):
    seen = {}

    def record(t):
        real = t.cnn.trainingStep

        def step(*args, **kwargs):
            seen['threads'] = torch.get_num_threads()
            seen['processes'] = t.workers.n_proc if t.workers is not None else 0
            return real(*args, **kwargs)
        t.cnn.trainingStep = step
    monkeypatch.setattr('elektronn.training.trainer.available_cores', lambda: 4)
    before = torch.get_num_threads()
    t = quiet(make_trainer, tmp_path / 'a', background_processes=1, n_steps=3)
    record(t)
    t.run()
    assert seen == dict(threads=min(before, 3), processes=1)   # 1 process, not 2; 4 cores - 1 for PyTorch
    t = quiet(make_trainer, tmp_path / 'b', background_processes=2, torch_threads=2, n_steps=3)
    record(t)
    t.run()
    assert seen == dict(threads=2, processes=2)
    assert 'Training with 2 PyTorch thread(s) and 2 batch process(es) on 4 CPU core(s)' in capsys.readouterr().out
    assert torch.get_num_threads() == before                   # restored after the run


@pytest.mark.parametrize('damage', ['truncate', 'flip', 'empty'])
def test_a_damaged_resume_state_is_one_clear_error(tmp_path, damage):
    from elektronn.training.trainer import StateFileError
    t = quiet(make_trainer, tmp_path, seed=1, n_steps=20, history_freq=[10])
    quiet(t.run)
    state = os.path.join(t.save_path, 'blob-LAST.state.h5')
    data = open(state, 'rb').read()
    if damage == 'truncate':
        data = data[:len(data) // 2]
    elif damage == 'flip':
        with h5py.File(state, 'r') as f:   # a bit of the optimiser's momenta
            name = 'optimizer/SGD/' + sorted(f['optimizer/SGD'])[0]
            offset = f[name + '/' + sorted(f[name])[0]].id.get_offset()
        data = bytearray(data)
        data[offset + 3] ^= 0x10
        data = bytes(data)
    else:
        data = b''
    open(state, 'wb').write(data)
    with pytest.raises(StateFileError, match='the resume state .*blob-LAST.state.h5 (is damaged|cannot be read)'):
        quiet(resumed_trainer, t.config.config_file, 30)


def test_trainer_without_config_seed_draws_fresh_entropy():
    a, b = Trainer(None), Trainer(None)
    assert a.seed_seq.entropy != b.seed_seq.entropy


@pytest.mark.parametrize('optimizer', ['CG', 'RPROP'])
def test_runs_of_every_optimizer_resume_exactly(tmp_path, optimizer):
    whole = quiet(make_trainer, tmp_path / 'a', seed=2, n_steps=12, history_freq=[6], optimizer=optimizer)
    quiet(whole.run)
    first = quiet(make_trainer, tmp_path / 'b', seed=2, n_steps=6, history_freq=[6], optimizer=optimizer)
    quiet(first.run)
    second = quiet(resumed_trainer, first.config.config_file, 12)
    quiet(second.run)
    assert second.state.step == 12
    assert_same(final_params(second), final_params(whole))
