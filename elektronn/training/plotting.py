"""Plots of a training run: ``.Errors.png``, ``.history.png``, ``.timeline.png``, ``.CGtimeline.png``,
``.Segmentation.png``.

The arrays are the trainer's histories (one row per entry):

* ``timeline``: ``[step, seconds, smoothed loss, loss, mean label of the batch]`` per update step;
* ``history``: ``[step, seconds, smoothed loss, loss, train loss, valid loss, loss gain, LR]`` per
  history step;
* ``errors``: ``[step, seconds, train error, valid error]`` per history step;
* ``CG_timeline``: ``[loss, step size, conjugacy coefficient, line-search count]`` per CG line search;
* ``segmentation``: ``[step, seconds, Rand error, VOI split, VOI merge, adapted Rand error, seconds
  of the evaluation]`` per evaluation of ``valid_segmentation_metrics``.

Everything uses matplotlib's object API with the Agg canvas (no ``pyplot`` state, no display), and
every PNG is written atomically. :class:`Plotter` draws in a background process (a thread where
processes cannot be forked) so that training never waits for a plot.

:func:`previewDiffPlot` overlays the preview predictions of several runs pairwise.
"""
import logging
import multiprocessing as mp
import os
import threading

import numpy as np

from elektronn.utils import atomic_path

logger = logging.getLogger(__name__)

__all__ = ['saveHist', 'plotInfo', 'plotInfoFromFiles', 'Plotter', 'plot_filters', 'plot_debug_batch',
           'previewDiffPlot', 'HISTORY_NAMES']

#: File stems of the history arrays in ``Backup/`` (``<save_name>.<stem>.npy``).
HISTORY_NAMES = ('history', 'timeline', 'errors', 'CGtimeline')
_WIDTHS = {'history': 8, 'timeline': 5, 'errors': 4, 'CGtimeline': 4}
_MAX_POINTS = 2000


def _as_table(rows, width):
    arr = np.asarray(rows, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, width))
    return arr.reshape(len(arr), -1)


def saveHist(timeline, history, CG_timeline, errors, save_name, folder='.'):
    """Write the four history arrays to ``<folder>/Backup/<save_name>.<name>.npy`` (atomically)."""
    backup = os.path.join(folder, 'Backup')
    os.makedirs(backup, exist_ok=True)
    arrays = {'history': history, 'timeline': timeline, 'errors': errors, 'CGtimeline': CG_timeline}
    for name in HISTORY_NAMES:
        with atomic_path(os.path.join(backup, '%s.%s.npy' % (save_name, name))) as tmp:
            np.save(tmp, _as_table(arrays[name], _WIDTHS[name]))


def _figure(size):
    from matplotlib.figure import Figure
    fig = Figure(figsize=size)
    fig.subplots_adjust(left=0.06, right=0.94, bottom=0.07, top=0.92, hspace=0.35)  # room for the step axis
    return fig


def _save(fig, path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp)  # fixed margins: 'tight' bounding boxes would draw every figure twice


def _thin(arr):
    return arr[::max(1, len(arr) // _MAX_POINTS)]


def _sma(values, n):
    """Running mean over the last ``n`` values (shorter at the start)."""
    c = np.cumsum(np.asarray(values, dtype=np.float64))
    out = c.copy()
    out[n:] = c[n:] - c[:-n]
    counts = np.minimum(np.arange(1, len(c) + 1), n)
    return out / counts


def _step_axis(ax, minutes, steps):
    """A second x axis on top of ``ax`` labelled with update steps."""
    top = ax.twiny()
    top.set_xlim(ax.get_xlim())
    n = int(steps[-1]) if len(steps) else 0
    if n > 0 and len(minutes) > 1 and np.all(np.diff(steps) >= 0):
        ticks = np.unique(np.linspace(0, n, 6).round(-int(np.log10(max(n, 10))) + 1))
        # np.interp clamps outside the plotted steps: a tick before the first or after
        # the last step would be drawn at the edge with a wrong (or repeated) label.
        ticks = ticks[(ticks >= steps[0]) & (ticks <= steps[-1])]
        top.set_xticks(np.interp(ticks, steps, minutes))
        top.set_xticklabels(['%i' % t for t in ticks])
    top.set_xlabel('update steps (%s)' % format(n, ','))


def _runtime(minutes):
    last = minutes[-1] if len(minutes) else 0.0
    return '%i mins' % last if last < 120 else '%.1f hrs' % (last / 60.0)


def _loss_cap(history, autoscale):
    if not autoscale or len(history) == 0:
        return None
    column = 5 if not np.any(np.isnan(history[:, 5])) else 4
    ref = history[min(2, len(history) - 1)]
    cap = max(ref[column], ref[2]) + 0.2
    return cap if np.isfinite(cap) and cap > 0 else None


def _finish_loss_axes(ax, minutes, steps, cap, runtime):
    if cap is not None:
        ax.set_ylim(0, cap)
    ax.set_xlim(0, max(minutes[-1], 1e-3))
    ax.set_xlabel('time [min] (%s)' % runtime)
    ax.set_ylabel('loss')
    ax.legend(loc='best')
    _step_axis(ax, minutes, steps)


def _plot_timeline(timeline, cap, save_name, folder, runtime):
    fig = _figure((16, 12))
    ax = fig.add_subplot(211)
    minutes = timeline[:, 1] / 60.0
    ax.plot(minutes, timeline[:, 3], 'b-', label='update loss')
    ax.plot(minutes, timeline[:, 2], 'k-', linewidth=3, label='smoothed update loss')
    recent = timeline[-30:, 2].mean()
    ax.axhline(recent, color='gray', linestyle=':', label='recent mean %.4f' % recent)
    _finish_loss_axes(ax, minutes, timeline[:, 0], cap, runtime)
    ax2 = fig.add_subplot(212)
    sc = ax2.scatter(timeline[:, 4], timeline[:, 3], c=timeline[:, 0], cmap='viridis', s=6, edgecolors='none')
    fig.colorbar(sc, ax=ax2, label='update step')
    ax2.set_xlabel('mean label of the batch')
    ax2.set_ylabel('update loss')
    _save(fig, os.path.join(folder, '%s.timeline.png' % save_name))


def _plot_history(history, cap, save_name, folder, runtime):
    fig = _figure((16, 12))
    ax = fig.add_subplot(211)
    minutes = history[:, 1] / 60.0
    ax.plot(minutes, history[:, 2], 'b-', linewidth=3, label='smoothed update loss')
    ax.plot(minutes, history[:, 4], 'g-', linewidth=3, label='train loss')
    if not np.all(np.isnan(history[:, 5])):
        ax.plot(minutes, history[:, 5], 'r-', linewidth=3, label='valid loss')
    _finish_loss_axes(ax, minutes, history[:, 0], cap, runtime)
    ax2 = fig.add_subplot(212)
    ax2.plot(minutes, history[:, 6], 'b-', label='loss gain at update')
    ax2.axhline(0, color='gray', linestyle=':')
    spread = 2 * np.nanstd(history[3:, 6]) if len(history) > 3 else 0.0
    if np.isfinite(spread) and spread > 0:
        ax2.set_ylim(-spread, spread)
    ax2.set_xlabel('time [min] (%s)' % runtime)
    ax2.set_ylabel('loss after - before update')
    lr = ax2.twinx()
    lr.plot(minutes, history[:, 7], 'r-', label='learning rate')
    lr.set_ylabel('learning rate')
    handles = ax2.get_legend_handles_labels()[0] + lr.get_legend_handles_labels()[0]
    ax2.legend(handles, [h.get_label() for h in handles], loc='best')
    _save(fig, os.path.join(folder, '%s.history.png' % save_name))


def _plot_errors(errors, save_name, folder, runtime):
    if len(errors) > 3:
        errors = errors[2:]  # the first estimates are noise from the untrained net
    fig = _figure((16, 6))
    ax = fig.add_subplot(111)
    minutes = errors[:, 1] / 60.0
    has_valid = not np.all(np.isnan(errors[:, 3]))
    ax.plot(minutes, errors[:, 2], 'g--', linewidth=1, label='train error')
    ax.plot(minutes, _sma(errors[:, 2], 8), 'g-', linewidth=3, label='smoothed train error')
    if has_valid:
        ax.plot(minutes, errors[:, 3], 'r--', linewidth=1, label='valid error')
        ax.plot(minutes, _sma(errors[:, 3], 8), 'r-', linewidth=3, label='smoothed valid error')
    ref = errors[:, 3] if has_valid else errors[:, 2]
    cap = 3 * np.nanmean(ref)
    if np.isfinite(cap) and cap > 0:
        ax.set_ylim(0, cap)
    ax.set_xlim(0, max(minutes[-1], 1e-3))
    ax.grid(True)
    ax.set_xlabel('time [min] (%s)' % runtime)
    ax.set_ylabel('error')
    ax.legend(loc='best')
    _step_axis(ax, minutes, errors[:, 0])
    _save(fig, os.path.join(folder, '%s.Errors.png' % save_name))


def _plot_cg(cg, cap, save_name, folder):
    fig = _figure((16, 12))
    ax = fig.add_subplot(211)
    ax.plot(cg[:, 0], label='CG update loss')
    if cap is not None:
        ax.set_ylim(0, cap)
    ax.grid(True)
    ax.legend(loc='best')
    ax.set_xlabel('line searches')
    ax2 = fig.add_subplot(212)
    jitter = (np.random.default_rng(0).random(len(cg)) - 0.5) * 1e-3
    ax2.scatter(cg[:, 2], cg[:, 1] + jitter, s=6)
    ax2.set_xlabel('conjugacy coefficient')
    ax2.set_ylabel('accepted step')
    ax2.set_title('mean step %.6f, step std %.6f, mean line-search count %.1f'
                  % (cg[:, 1].mean(), cg[:, 1].std(), cg[:, 3].mean()))
    _save(fig, os.path.join(folder, '%s.CGtimeline.png' % save_name))


def plotInfo(timeline, history, CG_timeline, errors, save_name, folder='.', autoscale=True, save_history=True,
             segmentation=None):
    """Draw the PNG plots into ``folder`` (and save the history arrays, unless ``save_history`` is False).

    ``segmentation``: rows ``[step, seconds, rand error, VOI split, VOI merge, ...]`` of the
    validation segmentation scores (``valid_segmentation_metrics``): ``.Segmentation.png``.

    ``autoscale`` clips the axes to the interesting range (loss below the early loss, errors below
    three times their mean); ``False`` leaves matplotlib's limits. (The original's signature had
    ``autoscale`` as the sixth argument: a bool there is taken as ``autoscale``.)
    """
    if isinstance(folder, (bool, np.bool_)):
        folder, autoscale = '.', bool(folder)
    timeline, history = _as_table(timeline, 5), _as_table(history, 8)
    errors, cg = _as_table(errors, 4), _as_table(CG_timeline, 4)
    if save_history:
        saveHist(timeline, history, cg, errors, save_name, folder)
    timeline, history, errors, cg = _thin(timeline), _thin(history), _thin(errors), _thin(cg)
    cap = _loss_cap(history, autoscale)
    runtime = _runtime(timeline[:, 1] / 60.0)
    if len(timeline):
        _plot_timeline(timeline, cap, save_name, folder, runtime)
    if len(history):
        _plot_history(history, cap, save_name, folder, runtime)
    if len(errors):
        _plot_errors(errors, save_name, folder, runtime)
    if len(cg):
        _plot_cg(cg, cap, save_name, folder)
    if segmentation is not None and len(segmentation):
        _plot_segmentation(_as_table(segmentation, 7), errors, save_name, folder, runtime)


def _plot_segmentation(scores, errors, save_name, folder, runtime):
    """Rand error beside the pixel error (left) and VOI split/merge (right) of the validation cubes."""
    fig = _figure((16, 6))
    left, right = fig.add_subplot(121), fig.add_subplot(122)
    minutes = scores[:, 1] / 60.0
    if len(errors) and not np.all(np.isnan(errors[:, 3])):
        left.plot(errors[:, 1] / 60.0, errors[:, 3] / 100.0, 'r--', linewidth=1, label='valid pixel error')
    left.plot(minutes, scores[:, 2], 'b.-', linewidth=2, label='valid Rand error')
    left.set_ylabel('error (fraction)')
    right.plot(minutes, scores[:, 3], 'm.-', linewidth=2, label='VOI split')
    right.plot(minutes, scores[:, 4], 'c.-', linewidth=2, label='VOI merge')
    right.plot(minutes, scores[:, 3] + scores[:, 4], 'k.-', linewidth=1, label='VOI')
    right.set_ylabel('variation of information [bits]')
    for ax in (left, right):
        ax.set_xlim(0, max(minutes[-1], 1e-3))
        ax.set_ylim(bottom=0)
        ax.grid(True)
        ax.set_xlabel('time [min] (%s)' % runtime)
        ax.legend(loc='best')
    fig.suptitle('%s: segmentation of the validation cubes' % save_name)
    _save(fig, os.path.join(folder, '%s.Segmentation.png' % save_name))


def plotInfoFromFiles(path, save_name, autoscale=True):
    """Draw the plots of a run again from its ``Backup/<save_name>.*.npy`` files (into ``path``)."""
    arrays = {}
    for name in HISTORY_NAMES:
        f = os.path.join(path, 'Backup', '%s.%s.npy' % (save_name, name))
        arrays[name] = np.load(f) if os.path.exists(f) else np.zeros((0, _WIDTHS[name]))
    plotInfo(arrays['timeline'], arrays['history'], arrays['CGtimeline'], arrays['errors'], save_name, path,
             autoscale)


def _plot_job(args, kwargs):
    try:
        plotInfo(*args, save_history=False, **kwargs)
    except Exception as e:  # a failed plot must never stop training
        logger.warning('Plotting failed: %s: %s', type(e).__name__, e)


def _plot_process_job(args, kwargs):
    # Plots are for people, training is the job: at low priority the plot process uses idle CPU
    # instead of taking a core from the training loop and the batch workers (on 2 cores it cost
    # the MNIST example 20 % of its steps at normal priority).
    try:
        os.nice(10)
    except (AttributeError, OSError):
        pass
    _plot_job(args, kwargs)


class Plotter:
    """Draw :func:`plotInfo` plots in the background, one job at a time.

    A job submitted while another runs waits and is replaced by any newer one (only the newest state
    matters); :meth:`close` waits for the running job and drops a waiting one (the trainer draws the
    final plots itself).
    """

    def __init__(self):
        self._running = None
        self._pending = None
        methods = mp.get_all_start_methods()
        self._ctx = mp.get_context('fork') if 'fork' in methods else None

    def _start(self, job):
        args, kwargs = job
        if self._ctx is not None:  # the forked child sees the histories as they are now
            p = self._ctx.Process(target=_plot_process_job, args=(args, kwargs), name='elektronn-plot', daemon=True)
        else:
            args = tuple([list(r) for r in a] if isinstance(a, list) else a for a in args)
            kwargs = {k: None if v is None else [list(r) for r in v] for k, v in kwargs.items()}
            p = threading.Thread(target=_plot_job, args=(args, kwargs), name='elektronn-plot', daemon=True)
        p.start()
        self._running = p

    def _busy(self):
        if self._running is not None and not self._running.is_alive():
            self._running.join()
            self._running = None
        return self._running is not None

    def submit(self, timeline, history, CG_timeline, errors, save_name, folder='.', segmentation=None):
        """Plot the given history lists (as they are when the job starts); returns at once."""
        job = (timeline, history, CG_timeline, errors, save_name, folder), dict(segmentation=segmentation)
        if self._busy():
            self._pending = job
        else:
            self._start(job)

    def poll(self):
        """Start the waiting job if the previous one has finished."""
        if self._pending is not None and not self._busy():
            job, self._pending = self._pending, None
            self._start(job)

    def close(self, timeout=120):
        """Wait for the running job (terminating it after ``timeout`` seconds); drop a waiting one."""
        if self._running is not None:
            self._running.join(timeout)
            if self._running.is_alive() and hasattr(self._running, 'terminate'):
                self._running.terminate()
                self._running.join(5)
            self._running = None
        self._pending = None


def plot_filters(cnn, path, layer=0):
    """Draw the filters of conv layer ``layer`` (first input channel, central z-slice) as a grid."""
    W = cnn.layers[layer].param_arrays()[0]
    if W.ndim < 4:
        raise ValueError('layer %i is not a conv layer (weights of shape %s)' % (layer, W.shape))
    filters = W[:, 0]
    if filters.ndim == 4:  # 3D filters (nof, z, x, y)
        filters = filters[:, filters.shape[1] // 2]
    n = len(filters)
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    fig = _figure((2 * cols, 2 * rows))
    for k, f in enumerate(filters):
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.imshow(f, cmap='gray', interpolation='nearest')
        ax.set_axis_off()
    fig.suptitle('layer %i filters %s' % (layer, W.shape))
    _save(fig, path)
    return path


def plot_debug_batch(image, label, path):
    """Input | label | overlay of one training example (2D arrays), as ``debugGetCNNBatch.png``.

    The label is zero-padded to the image size (centred), so a registration error between data and
    labels shows as a shift in the overlay.
    """
    image = np.asarray(image, dtype=np.float32)
    label = np.asarray(label, dtype=np.float32)
    pad = [((i - l) // 2, i - l - (i - l) // 2) for i, l in zip(image.shape, label.shape)]
    if all(a >= 0 and b >= 0 for a, b in pad):
        label = np.pad(label, pad)
    panels = (('data', image), ('label', label))
    if label.shape == image.shape:
        top = max(float(label.max()), 1e-6)
        panels += (('overlay', 0.75 * image + 0.25 * (1 - label / top)),)
    return plot_panels(panels, path)


def plot_panels(panels, path):
    """Grey images side by side (at most three), each ``(title, 2D array)``, as a PNG at ``path``; returns it."""
    fig = _figure((15, 5))
    for k, (title, arr) in enumerate(panels):
        ax = fig.add_subplot(1, 3, k + 1)
        ax.imshow(arr, cmap='gray', interpolation='nearest')
        ax.set_title(title)
        ax.set_axis_off()
    _save(fig, path)
    return path


def _read_grey_png(path):
    from matplotlib.image import imread
    if not os.path.exists(path):
        raise FileNotFoundError('previewDiffPlot: no preview image %s' % path)
    img = np.asarray(imread(path), dtype=np.float32)
    if img.ndim == 3:
        img = img[..., :3].mean(axis=2)
    if img.max() > 1.0:  # integer images
        img = img / float(np.iinfo(np.uint16).max if img.max() > 255 else 255)
    return img


def _centre_crop(img, shape):
    starts = [(s - t) // 2 for s, t in zip(img.shape, shape)]
    return img[starts[0]:starts[0] + shape[0], starts[1]:starts[1] + shape[1]]


def _preview_path(root_dir, name, block_name, c, z, number):
    """The preview PNG of run ``name``; ``number`` as the trainer writes it (``1.0``) or as given (``1``)."""
    candidates = [str(number)]
    if isinstance(number, (int, np.integer)) or float(number).is_integer():
        candidates += [str(float(number)), str(int(float(number)))]
    for n in candidates:
        path = os.path.join(root_dir, name, '%s-pred-%s-c%i-z%i-%shrs.png' % (name, block_name, c, z, n))
        if os.path.exists(path):
            return path
    return os.path.join(root_dir, name, '%s-pred-%s-c%i-z%i-%shrs.png' % (name, block_name, c, z, number))


def previewDiffPlot(names, root_dir='~/CNN_Training/3D', block_name=0, c=1, z=0, number=1, save=True):
    """Compare the preview predictions of several runs, pairwise, as RGB overlays.

    For every pair ``(a, b)`` of ``names`` the preview ``<root_dir>/<a>/<a>-pred-<block_name>-c<c>-
    z<z>-<number>hrs.png`` of ``a`` and that of ``b`` (centre-cropped to a common size) are combined
    to an RGB image: green = ``a``, blue = ``b``, red = the minimum of both, so that agreement is
    grey/white and differences are green or blue.

    Args:
        names: Save names (folder names under ``root_dir``) of the runs, at least two.
        root_dir: Folder holding the runs' save directories.
        block_name: Number (or name) of the preview cube.
        c: Class index of the preview images.
        z: z slice of the preview images.
        number: The preview's nominal hours (``1`` also finds ``...-1.0hrs.png``).
        save: Write ``<a>_vs_<b>_pred-<block>-c<c>-z<z>-<number>hrs.png`` for every pair and
            ``Compare_pred-<block>-c<c>-z<z>-<number>hrs.png`` with all pairs into ``root_dir``
            (the original wrote them after changing the working directory to ``root_dir``).

    Returns:
        List of ``(a, b, rgb_image)``.
    """
    names = list(names)
    if len(names) < 2:
        raise ValueError('previewDiffPlot needs at least two run names, got %r' % (names,))
    root_dir = os.path.expanduser(root_dir)
    tag = 'pred-%s-c%i-z%i-%shrs' % (block_name, c, z, number)
    pairs = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            p1 = _read_grey_png(_preview_path(root_dir, a, block_name, c, z, number))
            p2 = _read_grey_png(_preview_path(root_dir, b, block_name, c, z, number))
            shape = np.minimum(p1.shape, p2.shape)
            p1, p2 = _centre_crop(p1, shape), _centre_crop(p2, shape)
            pairs.append((a, b, np.clip(np.dstack([np.minimum(p1, p2), p1, p2]), 0.0, 1.0)))
    if save:
        from matplotlib.image import imsave
        for a, b, img in pairs:
            with atomic_path(os.path.join(root_dir, '%s_vs_%s_%s.png' % (a, b, tag))) as tmp:
                imsave(tmp, img)
        n = len(pairs)
        cols = max(1, int(np.sqrt(n * 16.0 / 9)))
        rows = -(-n // cols)
        fig = _figure((16, 9))
        for k, (a, b, img) in enumerate(pairs):
            ax = fig.add_subplot(rows, cols, k + 1)
            ax.imshow(img, interpolation='none')
            ax.set_title('%s (green) vs. %s (blue)' % (a, b))
            ax.set_axis_off()
        _save(fig, os.path.join(root_dir, 'Compare_%s.png' % tag))
    return pairs
