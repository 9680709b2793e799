"""Pictures of a network's insides: filter mosaics, activation maps and histograms.

Figures are drawn with matplotlib's Agg canvas (no display needed, safe in worker processes)
and written atomically as PNG files; the original showed them on screen instead (its ``no_show``
arguments are accepted and change nothing).
"""
import logging
import os
import warnings

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from elektronn.utils import atomic_path

logger = logging.getLogger(__name__)

__all__ = ['embedMatricesInGray', 'plotFilters', 'showParamHistogram', 'showActivations', 'showActivityHistogram',
           'showMultipleFiguresAdd']


def embedMatricesInGray(mat, border_width=1, normalize=False, output_ratio=1.7, fixed_n_horizontal=0):
    """Tile many small matrices into one big image, row by row.

    Args:
        mat: ``(n, rows, cols)`` matrices.
        border_width: Pixels of (zero) border after each tile.
        normalize: Scale every tile to [0, 1] by its own min and max.
        output_ratio: Aimed width/height ratio in tiles: ``int(sqrt(n * output_ratio))`` columns.
        fixed_n_horizontal: Use this many columns instead (if > 0).

    Returns:
        float32 array ``(n_rows * (rows + border_width), n_cols * (cols + border_width))`` with
        ``n_rows = ceil(n / n_cols)`` (the original added a spare empty row when ``n_cols`` divided ``n``).
    """
    mat = np.asarray(mat, dtype=np.float32)
    if mat.ndim != 3 or mat.shape[0] == 0:
        raise ValueError('embedMatricesInGray needs a non-empty stack of matrices (n, rows, cols), got shape %s'
                         % (mat.shape,))
    if border_width < 0:
        raise ValueError('border_width must be >= 0, got %r' % (border_width,))
    n, rows, cols = mat.shape
    n_hor = int(fixed_n_horizontal) if fixed_n_horizontal and fixed_n_horizontal > 0 else \
        max(1, int(np.sqrt(n * output_ratio)))
    n_vert = -(-n // n_hor)
    if normalize:
        lo = mat.min(axis=(1, 2), keepdims=True)
        mat = (mat - lo) / (mat.max(axis=(1, 2), keepdims=True) - lo + 1e-8)
    tiles = np.zeros((n_vert * n_hor, rows + border_width, cols + border_width), np.float32)
    tiles[:n, :rows, :cols] = mat
    return tiles.reshape(n_vert, n_hor, rows + border_width, cols + border_width).transpose(0, 2, 1, 3).reshape(
        n_vert * (rows + border_width), n_hor * (cols + border_width))


def _save(fig, savename):
    FigureCanvasAgg(fig)
    with atomic_path(savename) as tmp:
        fig.savefig(tmp, bbox_inches='tight')


def _filter_stack(layer, channel):
    """``(tiles, n_horizontal, rgb)`` for a layer's filters: conv filters per (filter[, z]), or the
    incoming weights of each unit of a perceptron layer whose input is a square image."""
    W = layer.weight if hasattr(layer, 'weight') else layer.W
    W = W.detach().cpu().float().numpy()
    if W.ndim == 2:  # perceptron (n_in, n_out): one tile per unit, if the input is a square image
        side = int(round(np.sqrt(W.shape[0])))
        if side * side != W.shape[0]:
            raise ValueError('plotFilters: this perceptron layer has %i inputs, not a square image; nothing to show'
                             % W.shape[0])
        return W.T.reshape(-1, side, side), 0, False
    n_ch = W.shape[1]
    if channel is None and n_ch == 3 and W.ndim == 4:
        return W.transpose(0, 2, 3, 1), 0, True
    ch = 0 if channel is None else int(channel)
    if not 0 <= ch < n_ch:
        raise ValueError('plotFilters: channel must lie in [0, %i), got %r' % (n_ch, channel))
    W = W[:, ch]
    if W.ndim == 4:  # 3D filters (nof, z, x, y): one row per filter, one column per z slice
        return W.reshape(-1, W.shape[2], W.shape[3]), W.shape[1], False
    return W, 0, False


def plotFilters(cnn, layer=0, channel=None, normalize=False, savename='filters_layer0.png'):
    """Save a mosaic of a layer's filters as PNG and return it.

    Conv layers show one tile per filter (3D filters: one row per filter, a tile per z slice);
    three input channels are shown as RGB unless ``channel`` picks one. A perceptron layer whose
    input is a square image (e.g. 784 = 28x28) shows each unit's incoming weights.

    Args:
        cnn: A :class:`~elektronn.net.convnet.MixedConvNN`.
        layer: Index into ``cnn.layers``.
        channel: Input channel to show (default: the first, or RGB for three channels).
        normalize: Scale each filter to its own range.
        savename: PNG file to write (``None``: do not save).

    Returns:
        The mosaic, ``(H, W)`` or ``(H, W, 3)`` float array.
    """
    tiles, n_hor, rgb = _filter_stack(cnn.layers[layer], channel)
    if rgb:
        mosaic = np.dstack([embedMatricesInGray(tiles[..., c], normalize=normalize) for c in range(3)])
        mosaic = (mosaic - min(0.0, mosaic.min())) / (np.ptp(mosaic) + 1e-8)
    else:
        mosaic = embedMatricesInGray(tiles, normalize=normalize, fixed_n_horizontal=n_hor)
    if savename:
        fig = Figure()
        ax = fig.add_subplot(111)
        ax.imshow(mosaic, interpolation='none', cmap='gray')
        ax.set_title('Layer %i filters' % layer)
        ax.axis('off')
        logger.info('Saving filter image as %s', savename)
        _save(fig, savename)
    return mosaic


def showParamHistogram(cnn, no_show=False, onlyW=True, savename='param_histogram.png', bins=100):
    """Print statistics of every layer's parameters and save their histograms in one PNG.

    Prints per parameter ``Layer  1: mean=..., median=..., mean(abs)=..., median(abs)=...`` and its
    shape, as the original.

    Args:
        cnn: A :class:`~elektronn.net.convnet.MixedConvNN`.
        no_show: Kept for compatibility; nothing is ever shown on screen.
        onlyW: Only the weights (not the biases).
        savename: PNG file to write (``None``: do not save).
        bins: Histogram bins.

    Returns:
        List of ``(layer_number, name, counts, bin_edges)``.
    """
    entries = []
    for i, layer in enumerate(cnn.layers):
        for name in layer.param_names:
            if onlyW and name != 'W':
                continue
            p = getattr(layer, name).detach().cpu().float().numpy()
            logger.info('Layer %2d: mean=%3.6e, median=%3.6e, mean(abs)=%2.6e, median(abs)=%2.6e',
                        i + 1, np.mean(p), np.median(p), np.mean(np.abs(p)), np.median(np.abs(p)))
            logger.info('Layer  %i: filter_shape = %s', i + 1, p.shape)
            counts, edges = np.histogram(p.ravel(), bins=bins)
            entries.append((i + 1, name, counts, edges))
    if savename and entries:
        n = len(entries)
        cols = int(np.ceil(np.sqrt(n)))
        rows = -(-n // cols)
        fig = Figure(figsize=(4 * cols, 3 * rows))
        for k, (number, name, counts, edges) in enumerate(entries):
            ax = fig.add_subplot(rows, cols, k + 1)
            ax.bar((edges[:-1] + edges[1:]) / 2, counts, width=0.7 * (edges[1] - edges[0]), align='center')
            ax.set_xlabel('%s %s values' % (name, tuple(getattr(cnn.layers[number - 1], name).shape)))
            ax.set_ylabel('# (Layer %i)' % number)
        fig.tight_layout()
        _save(fig, savename)
    return entries


def _grid(n):
    """Rows and columns of a near-square grid of at least ``n`` cells (the original's rule)."""
    rows = int(np.sqrt(n) + 0.9999)
    cols = int(n / float(rows) + 0.9999)
    if rows * cols < n:
        if rows < cols:
            rows += 1
        else:
            cols += 1
    return rows, cols


def showMultipleFiguresAdd(fig, n, i, image, title, isGray=True):
    """Add ``image`` as the ``i``-th (counting from 0) of ``n`` subplots of the matplotlib figure ``fig``.

    The subplots form a near-square grid. Returns the new axes.
    """
    if not 0 <= i < n:
        raise ValueError('showMultipleFiguresAdd: i must lie in [0, %i), got %r' % (n, i))
    rows, cols = _grid(n)
    ax = fig.add_subplot(rows, cols, i + 1)
    ax.set_title(title)
    ax.imshow(image, interpolation='nearest', cmap='gray' if isGray else None)
    return ax


def _debug_functions(cnn):
    if len(cnn.debug_functions) != len(cnn.layers):
        logger.debug('Compiling the debug functions (cnn.compileDebugFunctions)')
        cnn.compileDebugFunctions(gradients=False)
    return cnn.debug_functions


def showActivations(cnn, data, show_first_class_prob=False, no_show=False, savename='activations.png'):
    """Draw the activation maps of every conv layer for the first example of ``data``.

    Uses ``cnn.debug_functions`` (compiled on demand). A 2D layer's maps ``(ch, x, y)`` form one
    mosaic, each map normalised to its own range; a 3D layer's maps ``(z, ch, x, y)`` one row per
    z slice. Perceptron layers (no maps) are skipped.

    Args:
        cnn: A :class:`~elektronn.net.convnet.MixedConvNN`.
        data: A batch in the network's input layout.
        show_first_class_prob: Also draw the probability map of class 0 of the first example
            (conv output layers), saved as ``<savename stem>_class0.png``.
        no_show: Kept for compatibility (nothing is ever shown on screen).
        savename: PNG file to write (``None``: do not save).

    Returns:
        The list of mosaics, one per conv layer.
    """
    images, titles = [], []
    for i, f in enumerate(_debug_functions(cnn)):
        activity = np.asarray(f(data))[0]
        if activity.ndim == 3:
            image = embedMatricesInGray(activity, 1, True)
        elif activity.ndim == 4:  # (z, ch, x, y): one row per z slice
            image = embedMatricesInGray(activity.reshape((-1,) + activity.shape[2:]), 1, True,
                                        fixed_n_horizontal=activity.shape[1])
        else:
            continue
        images.append(image)
        titles.append('Layer-%i Activity' % i)
    if savename and images:
        fig = Figure(figsize=(15, 14))
        for k, (image, title) in enumerate(zip(images, titles)):
            showMultipleFiguresAdd(fig, len(images), k, image, title)
        fig.tight_layout()
        _save(fig, savename)
    if show_first_class_prob:
        prob = np.asarray(cnn.class_probabilities(data))
        if prob.ndim >= 4:
            image = prob[0, 0] if prob.ndim == 4 else prob[0, 0, prob.shape[2] // 2]
            if savename:
                fig = Figure()
                ax = fig.add_subplot(111)
                ax.imshow(image, interpolation='nearest', cmap='gray')
                ax.set_title('prediction map of first class')
                stem, ext = os.path.splitext(savename)
                _save(fig, stem + '_class0' + (ext or '.png'))
        else:
            warnings.warn('showActivations: the output has no spatial map (%s); no class map drawn' % (prob.shape,),
                          stacklevel=2)
    return images


def showActivityHistogram(cnn, data, no_show=False, savename='activity_histogram.png', bins=100):
    """Histograms of every layer's activations for ``data`` (via ``cnn.debug_functions``), in one PNG.

    Returns:
        List of ``(layer_number, counts, bin_edges)`` (layers counted from 1).
    """
    entries = []
    for i, f in enumerate(_debug_functions(cnn)):
        activity = np.asarray(f(data), dtype=np.float64).ravel()
        counts, edges = np.histogram(activity, bins=bins)
        entries.append((i + 1, counts, edges, activity.size))
    if savename and entries:
        rows, cols = _grid(len(entries))
        fig = Figure(figsize=(4 * cols, 3 * rows))
        for k, (number, counts, edges, size) in enumerate(entries):
            ax = fig.add_subplot(rows, cols, k + 1)
            ax.bar((edges[:-1] + edges[1:]) / 2, counts, width=0.7 * (edges[1] - edges[0]), align='center')
            ax.set_xlabel('%i activations' % size)
            ax.set_ylabel('# (Layer %i)' % number)
        fig.tight_layout()
        _save(fig, savename)
    return [(number, counts, edges) for number, counts, edges, _ in entries]
