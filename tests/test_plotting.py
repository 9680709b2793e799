"""Training plots: all PNGs from histories, the CG plot only with CG data, drawing in the background."""
import os
import time

import numpy as np

from elektronn.training import plotting


def histories(n=120, freq=10, with_nan_valid=False):
    rng = np.random.default_rng(0)
    timeline = [[i, 0.5 * i, 0.7 * 0.99 ** i, 0.7 * 0.99 ** i + rng.normal(0, 0.02), rng.random()] for i in range(n)]
    history = [[i, 0.5 * i, 0.7 * 0.99 ** i, 0.6, 0.5, np.nan if with_nan_valid else 0.55, -1e-3, 0.01]
               for i in range(0, n, freq)]
    errors = [[i, 0.5 * i, 10 * 0.99 ** i, np.nan if with_nan_valid else 12 * 0.99 ** i] for i in range(0, n, freq)]
    return timeline, history, errors


def test_plots_and_histories_from_files(tmp_path):
    timeline, history, errors = histories()
    plotting.plotInfo(timeline, history, [], errors, 'run', str(tmp_path))
    names = set(os.listdir(tmp_path))
    assert {'run.timeline.png', 'run.history.png', 'run.Errors.png'} <= names and 'run.CGtimeline.png' not in names
    h = np.load(tmp_path / 'Backup' / 'run.history.npy')
    assert h.shape == (12, 8) and np.load(tmp_path / 'Backup' / 'run.CGtimeline.npy').shape == (0, 4)
    for name in ('run.timeline.png', 'run.history.png', 'run.Errors.png'):
        os.remove(tmp_path / name)
    cg = [[0.5 - 0.001 * k, 0.01, 0.3, 2] for k in range(40)]
    np.save(tmp_path / 'Backup' / 'run.CGtimeline.npy', np.array(cg))
    plotting.plotInfoFromFiles(str(tmp_path), 'run')
    assert {'run.timeline.png', 'run.history.png', 'run.Errors.png', 'run.CGtimeline.png'} <= set(os.listdir(tmp_path))


def test_plots_without_validation_data(tmp_path):
    timeline, history, errors = histories(with_nan_valid=True)
    plotting.plotInfo(timeline, history, [], errors, 'run', str(tmp_path))
    assert (tmp_path / 'run.Errors.png').exists()


def test_plotter_draws_in_the_background(tmp_path):
    timeline, history, errors = histories(n=3000)
    p = plotting.Plotter()
    t0 = time.perf_counter()
    p.submit(timeline, history, [], errors, 'run', str(tmp_path))
    p.submit(timeline, history, [], errors, 'run', str(tmp_path))  # waits, replaced by newer ones
    assert time.perf_counter() - t0 < 0.5
    p.close()
    assert (tmp_path / 'run.history.png').exists() and not (tmp_path / 'Backup').exists()


def test_filters_and_debug_batch(tmp_path):
    class Layer:
        def param_arrays(self):
            return [np.random.default_rng(0).normal(size=(6, 1, 3, 5, 5)).astype(np.float32)]

    class Net:
        layers = [Layer()]
    plotting.plot_filters(Net(), str(tmp_path / 'f.png'))
    plotting.plot_debug_batch(np.random.rand(20, 20), np.ones((10, 10)), str(tmp_path / 'd.png'))
    assert (tmp_path / 'f.png').exists() and (tmp_path / 'd.png').exists()


def test_step_axis_drops_ticks_outside_the_plotted_steps():
    """The Errors plot starts at the third entry: no step tick may be clamped to its edge."""
    fig = plotting._figure((8, 4))
    ax = fig.add_subplot(111)
    steps = np.array([200., 300., 400., 500., 600., 700., 800., 900., 1000.])
    minutes = 0.25 * np.arange(len(steps)) + 0.25
    ax.set_xlim(0, minutes[-1])
    plotting._step_axis(ax, minutes, steps)
    top = [a for a in fig.axes if a is not ax][0]
    labels = [int(t.get_text()) for t in top.get_xticklabels()]
    assert labels == [200, 400, 600, 800, 1000]  # not 0 at 0.25 min
    np.testing.assert_allclose(top.get_xticks(), np.interp(labels, steps, minutes))
