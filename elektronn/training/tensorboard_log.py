"""TensorBoard records of a training run (config key ``tensorboard = True``).

:class:`TensorBoardLog` writes the history scalars (losses, errors, the learning rate, step times,
segmentation scores) and the preview images to ``<save_path>/tensorboard/`` with
:class:`torch.utils.tensorboard.SummaryWriter`; watch a run with ``tensorboard --logdir <save_path>``.
Only rank 0 of a distributed run writes. With the key off nothing of this is imported.
"""
import importlib.util
import math

import numpy as np

__all__ = ['TensorBoardLog', 'tensorboard_missing', 'SCALAR_TAGS']

#: TensorBoard tag of each history value (names of :data:`elektronn.training.runlog.HISTORY_COLUMNS`).
SCALAR_TAGS = {
    'loss_smoothed': 'loss/smoothed', 'loss': 'loss/batch', 'train_loss': 'loss/train', 'valid_loss': 'loss/valid',
    'loss_gain': 'loss/gain', 'train_error': 'error/train', 'valid_error': 'error/valid', 'LR': 'LR',
    'step_time_s': 'time/step_s', 'train_step_time_s': 'time/train_step_s',
}


def tensorboard_missing():
    """Why TensorBoard records cannot be written here (a message), or ``None`` when they can."""
    if importlib.util.find_spec('tensorboard') is None:
        return ('the tensorboard package is not installed; install it (pip install tensorboard, or '
                'pip install elektronn[tensorboard]) or set tensorboard = False')
    return None


class TensorBoardLog:
    """Scalars and images of one run in a TensorBoard folder.

    Args:
        folder: The event folder (``<save_path>/tensorboard``); made if missing.
        start_step: The first step a resumed session runs: events of an earlier session from that
            step on are dropped (those steps are trained again), so the curves do not fold back.
    """

    def __init__(self, folder, start_step=None):
        problem = tensorboard_missing()
        if problem is not None:
            raise ImportError("config key 'tensorboard': " + problem)
        from torch.utils.tensorboard import SummaryWriter
        self.folder = folder
        self._writer = SummaryWriter(log_dir=folder, purge_step=start_step or None)

    def scalars(self, step, values):
        """Write the finite numbers of ``values`` (history names as in :data:`SCALAR_TAGS`, others under
        their own name) at ``step``."""
        for name, value in values.items():
            if value is None:
                continue
            value = float(value)
            if math.isfinite(value):
                self._writer.add_scalar(SCALAR_TAGS.get(name, name), value, int(step))
        self._writer.flush()

    def image(self, tag, step, image):
        """Write one image at ``step``.

        Args:
            image: ``(x, y)`` grey values or ``(x, y, 3)`` colours, any range (scaled to [0, 1] unless
                already in it).

        Shapes:
            Shown with x down and y across, as the preview PNGs.
        """
        a = np.asarray(image, dtype=np.float32)
        if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] != 3):
            raise ValueError('TensorBoardLog.image: %r has shape %s; give (x, y) or (x, y, 3)' % (tag, a.shape))
        low, high = float(np.nanmin(a)), float(np.nanmax(a))
        if low < 0 or high > 1:
            a = (a - low) / (high - low) if high > low else np.zeros_like(a)
        a = np.nan_to_num(a)
        self._writer.add_image(tag, a, int(step), dataformats='HW' if a.ndim == 2 else 'HWC')
        self._writer.flush()

    def close(self):
        """Flush and close the event file."""
        self._writer.close()
