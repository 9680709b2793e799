"""The figure of ``elektronn-evaluate --png``: a few sections with the worst splits and merges highlighted.

Matplotlib is imported when a figure is drawn, and only its Agg canvas is used (no pyplot, no
display needed).
"""

import numpy as np

__all__ = ['choose_sections', 'label_colors', 'plot_evaluation', 'save_figure', 'SPLIT_COLOR', 'MERGE_COLOR']

#: Overlay colour (RGB) of the worst splits (their gt objects).
SPLIT_COLOR = (1.0, 0.25, 0.1)
#: Overlay colour (RGB) of the worst merges (their seg segments).
MERGE_COLOR = (0.1, 0.6, 1.0)


def choose_sections(results, n_sections, max_sections=4):
    """Sections to show: those of the worst errors, largest first, then evenly spaced ones.

    Args:
        results: :func:`~elektronn.evaluation.evaluate`'s results (its ``worst_errors``).
        n_sections: Sections in the volume.
        max_sections: At most this many (and at least ``min(3, n_sections)``).

    Returns:
        Sorted list of section indices.
    """
    worst = results.get('worst_errors') or {}
    errors = sorted(worst.get('splits', []) + worst.get('merges', []), key=lambda e: -e['contribution'])
    chosen = []
    for e in errors:
        if e.get('z') is not None and e['z'] not in chosen and len(chosen) < max_sections:
            chosen.append(int(e['z']))
    for z in np.linspace(0, n_sections - 1, min(max_sections, n_sections)).round().astype(int):
        if len(chosen) >= min(3, n_sections):
            break
        if z not in chosen:
            chosen.append(int(z))
    return sorted(chosen)


def label_colors(labels):
    """RGB colours (floats, shape ``labels.shape + (3,)``) of integer labels: a fixed pseudo-random
    colour per label value (the same in every section and figure), black for 0."""
    h = np.asarray(labels).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    h ^= h >> np.uint64(29)
    rgb = np.stack([(h >> np.uint64(s)) & np.uint64(255) for s in (8, 24, 40)], axis=-1).astype(np.float32)
    rgb = 0.2 + 0.8 * rgb / 255.0
    rgb[np.asarray(labels) == 0] = 0.0
    return rgb


def _gray(image):
    image = np.asarray(image, np.float32)
    lo, hi = np.percentile(image, (0.5, 99.5)) if image.size else (0.0, 1.0)
    return np.clip((image - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(image)


def _edges(labels):
    """Pixels where the label changes to the next pixel along either axis."""
    e = np.zeros(labels.shape, bool)
    e[:-1] |= labels[:-1] != labels[1:]
    e[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    return e


def _overlay(seg, gt, raw, splits, merges):
    """RGB image of a section: raw (or gray), seg boundaries dark, the gt objects of ``splits`` and the
    seg segments of ``merges`` (label lists) tinted."""
    base = _gray(raw) if raw is not None else np.full(seg.shape, 0.6, np.float32)
    rgb = np.repeat(base[..., None], 3, axis=-1)
    for labels, ids, color in ((gt, splits, SPLIT_COLOR), (seg, merges, MERGE_COLOR)):
        where = np.isin(labels, ids)
        rgb[where] = 0.45 * rgb[where] + 0.55 * np.asarray(color, np.float32)
    rgb[_edges(seg)] *= 0.3
    return np.clip(rgb, 0, 1)


def plot_evaluation(seg, gt, results, raw=None, boundary=None, sections=None, max_sections=4, title=None):
    """Draw sections of the volumes: raw, boundary map, segmentation, ground truth and an error overlay.

    Args:
        seg, gt: Label volumes ``(z, x, y)``.
        results: :func:`~elektronn.evaluation.evaluate`'s results (scores for the title,
            ``worst_errors`` for the overlay and the choice of sections).
        raw: Optional raw EM volume (a column; the overlay's background).
        boundary: Optional membrane probability map (a column).
        sections: Section indices to show (default: :func:`choose_sections`).
        max_sections: Rows at most, when choosing the sections.
        title: Figure title (default: the main scores).

    Returns:
        A ``matplotlib.figure.Figure`` (with an Agg canvas).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    seg, gt = np.asarray(seg), np.asarray(gt)
    if seg.ndim == 2:
        seg, gt = seg[None], gt[None]
        raw = None if raw is None else np.asarray(raw)[None]
        boundary = None if boundary is None else np.asarray(boundary)[None]
    if sections is None:
        sections = choose_sections(results, seg.shape[0], max_sections)
    worst = results.get('worst_errors') or {}
    two_d = results.get('mode') == '2d'
    columns = [('raw', raw is not None), ('boundary prediction', boundary is not None), ('segmentation', True),
               ('ground truth', True), ('worst splits (red) / merges (blue)', True)]
    columns = [name for name, present in columns if present]
    aspect = seg.shape[1] / float(seg.shape[2])
    fig = Figure(figsize=(3.0 * len(columns), 3.0 * aspect * len(sections) + 0.9), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(sections), len(columns), squeeze=False)
    for row, z in enumerate(sections):
        for col, name in enumerate(columns):
            ax = axes[row, col]
            if name == 'raw':
                ax.imshow(_gray(raw[z]), cmap='gray', vmin=0, vmax=1, interpolation='nearest')
            elif name == 'boundary prediction':
                prob = np.asarray(boundary[z], np.float32) / (255.0 if boundary.dtype == np.uint8 else 1.0)
                ax.imshow(prob, cmap='magma', vmin=0, vmax=1, interpolation='nearest')
            elif name in ('segmentation', 'ground truth'):
                ax.imshow(label_colors(seg[z] if name == 'segmentation' else gt[z]), interpolation='nearest')
            else:  # 2D mode: an error belongs to its section only (labels of sections are unrelated)
                ids = {k: [e['label'] for e in worst.get(k, []) if not two_d or e.get('z') == z]
                       for k in ('splits', 'merges')}
                ax.imshow(_overlay(seg[z], gt[z], None if raw is None else raw[z], ids['splits'], ids['merges']),
                          interpolation='nearest')
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(name, fontsize=9)
            if col == 0:
                ax.set_ylabel('section z=%i' % z, fontsize=9)
    fig.suptitle(title or _title(results), fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return fig


def _title(results):
    s = results.get('segmentation', {})
    text = '%s: Rand error %.4f (V_rand split %.3f, merge %.3f) | VOI %.3f bits (split %.3f, merge %.3f)' % (
        results.get('mode', '3d').upper(), s.get('rand_error', np.nan), s.get('rand_split', np.nan),
        s.get('rand_merge', np.nan), s.get('voi', np.nan), s.get('voi_split', np.nan), s.get('voi_merge', np.nan))
    if results.get('boundary_best'):
        text += '\nboundary F1 %.3f at 0.5, best %.3f at %.2f' % (
            results['boundary']['f1'], results['boundary_best']['f1'], results['boundary_best']['threshold'])
    return text


def save_figure(fig, path):
    """Write ``fig`` as a PNG to ``path`` atomically (see :func:`elektronn.utils.atomic_write`)."""
    from elektronn.utils import atomic_write
    with atomic_write(path, 'wb') as f:
        fig.savefig(f, format='png')
