#!/usr/bin/env python
"""Make the figures of docs/tutorial.rst from a real run of the tutorial.

Follow the tutorial (docs/tutorial.rst) up to ``elektronn-evaluate ... --png evaluation.png``, then::

    python scripts/make_tutorial_figures.py [--run ~/CNN_Training/3D/tutorial] [--folder ~/tutorial] \
        [--out docs/figures/tutorial]

It writes, each as a palette PNG well below 200 KB:

* ``debug_batch.png``: the run's ``debugGetCNNBatch.png``, scaled down;
* ``errors.png``: the run's ``tutorial.Errors.png``, scaled down;
* ``previews.png``: slice 2 of preview cube 0, raw (cropped to the predicted region) and the
  membrane probability of every preview, side by side;
* ``evaluation.png``: the tutorial folder's ``evaluation.png``, scaled down.
"""
import argparse
import glob
import os
import re
import sys

LIMIT = 200 * 1024


def save_small(image, path, width, colors=256):
    """Scale ``image`` (PIL) to ``width`` pixels, reduce it to a palette of ``colors`` and save it."""
    from PIL import Image
    image = image.convert('RGB')
    if image.width > width:
        image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
    image = image.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    image.save(path, optimize=True)
    size = os.path.getsize(path)
    print('%s: %i x %i, %.0f KB' % (path, image.width, image.height, size / 1024))
    if size > LIMIT:
        sys.exit('%s is larger than %i KB' % (path, LIMIT // 1024))


def previews(run, name, cube=0, z=2):
    """A matplotlib figure: the raw preview slice and the prediction of every preview time."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np
    from PIL import Image
    raw = np.asarray(Image.open(os.path.join(run, '%s-raw-%i-z%i.png' % (name, cube, z))).convert('L'))
    pattern = re.compile(r'%s-pred-%i-c1-z%i-([\d.]+)hrs\.png$' % (re.escape(name), cube, z))
    found = sorted((float(pattern.search(p).group(1)), p)
                   for p in glob.glob(os.path.join(run, '%s-pred-%i-c1-z%i-*hrs.png' % (name, cube, z))))
    if not found:
        sys.exit('no previews of cube %i, slice %i in %s' % (cube, z, run))
    preds = [np.asarray(Image.open(p).convert('L')) for _, p in found]
    margin = (raw.shape[0] - preds[0].shape[0]) // 2
    raw = raw[margin:raw.shape[0] - margin, margin:raw.shape[1] - margin]
    fig, axes = plt.subplots(1, 1 + len(preds), figsize=(3.0 * (1 + len(preds)), 3.3))
    axes[0].imshow(raw, cmap='gray', vmin=0, vmax=255, interpolation='nearest')
    axes[0].set_title('raw (cube %i, slice %i)' % (cube, z))
    for ax, (hours, _), pred in zip(axes[1:], found, preds):
        ax.imshow(pred, cmap='gray', vmin=0, vmax=255, interpolation='nearest')
        ax.set_title('membrane after %.0f s' % (hours * 3600))   # the nominal preview time
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--run', default='~/CNN_Training/3D/tutorial', help='save directory of the tutorial run')
    p.add_argument('--folder', default='~/tutorial', help='the tutorial folder (evaluation.png)')
    p.add_argument('--out', default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'docs', 'figures',
                                                 'tutorial'))
    p.add_argument('--name', default='tutorial', help='save_name of the run')
    args = p.parse_args(argv)
    from PIL import Image
    run, folder, out = (os.path.expanduser(a) for a in (args.run, args.folder, args.out))
    os.makedirs(out, exist_ok=True)
    save_small(Image.open(os.path.join(run, 'debugGetCNNBatch.png')), os.path.join(out, 'debug_batch.png'), 900)
    save_small(Image.open(os.path.join(run, args.name + '.Errors.png')), os.path.join(out, 'errors.png'), 1000)
    fig = previews(run, args.name)
    tmp = os.path.join(out, '.previews-full.png')
    fig.savefig(tmp, dpi=100)
    save_small(Image.open(tmp), os.path.join(out, 'previews.png'), 900)
    os.remove(tmp)
    save_small(Image.open(os.path.join(folder, 'evaluation.png')), os.path.join(out, 'evaluation.png'), 760, colors=64)


if __name__ == '__main__':
    main()
