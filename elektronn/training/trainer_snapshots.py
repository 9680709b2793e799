"""What a training run leaves to look at along the way: preview images, parameter snapshots, history files and plots.

:class:`SnapshotMixin` holds these :class:`~elektronn.training.trainer.Trainer` methods:

* previews: ``debugGetCNNBatch`` (a training batch as a picture), ``previewSlice`` /
  ``predictAndWrite`` / ``previewSliceFromTrainData`` (dense predictions as PNGs, drawn by
  :mod:`elektronn.training.previews`), ``malisPreviewSlice`` (MALIS statistics of a batch);
* the timed outputs of an update step: ``<save_name>-<h>h.param`` every ``param_save_h`` hours and
  the previews on the ``initial_prev_h`` / ``prev_save_h`` schedule;
* the history files (``saveHistories``) and the plots made at history steps and at the end
  (:mod:`elektronn.training.plotting`).
"""
import logging
import os
import warnings

import numpy as np

from elektronn.training import plotting, previews, runlog

logger = logging.getLogger(__name__)

__all__ = ['SnapshotMixin']


class SnapshotMixin:
    """The :class:`~elektronn.training.trainer.Trainer` methods of previews, snapshots, history files and plots."""

    def debugGetCNNBatch(self):
        """img-img only: draw a monitor-sized, unstrided training batch without warping and plot its
        first example as ``debugGetCNNBatch.png`` (data | label | overlay; 3D: the z-slice at the
        network's z offset, which the first label slice belongs to).

        Returns:
            ``(data, label, info1, info2)``; affinity labels are reduced to the minimum over the edges.
        """
        c = self.config
        if c.mode != 'img-img' or c.data_class_name is not None:
            logger.info("debugGetCNNBatch(): only available for 'img-img' training on h5 cubes")
            return None
        batch = self.data.getbatch(c.monitor_batch_size, source='train', strided=False, flip=c.flip_data,
                                   grey_augment_channels=c.grey_augment_channels, ret_info=True, warp_on=False)
        data, label, info1, info2 = batch[0], batch[1], batch[-2], batch[-1]
        if label.ndim == 5:  # affinity graphs (bs, 3, z, x, y)
            logger.info('Plot Batch: showing the minimal affinity only.')
            label = label.min(axis=1)
        if c.n_dim == 2:
            image, lab = data[0, 0], label[0]
        else:
            z = int(c.dimensions.offset[0])
            image, lab = data[0, z, 0], label[0, 0]
        plotting.plot_debug_batch(image, lab, os.path.join(self.config.prepare_save_dir(), 'debugGetCNNBatch.png'))
        return data, label, info1, info2

    def predictAndWrite(self, raw_img, number=0, export_class='all', block_name='', z_thick=5):
        """Predict ``raw_img`` ``(ch, x, y, z)`` densely (``cnn.predictDense``) and save the central
        ``z_thick`` output slices as PNGs ``<save_name>-pred-<block>-c<class>-z<z>-<number>hrs.png``
        (and, once, the raw slices they belong to; see :mod:`elektronn.training.previews`)."""
        pred = self.cnn.predictDense(raw_img)
        offset = self.config.dimensions.offset
        z_off = int(offset[0]) if len(offset) == 3 else 0
        previews.write_preview_slices(pred, raw_img, self.config.prepare_save_dir(), self.config.save_name,
                                      block_name, number,
                                      export_class, z_thick, z_off, write_raw=not self.saved_raw_preview)
        if getattr(self, 'tensorboard', None) is not None:
            for tag, image in previews.central_slices(pred, export_class).items():
                self.tensorboard.image('preview/%s/%s' % (block_name, tag), self.state.step, image)

    def previewSlice(self, number=0, export_class='all', max_z_pred=5):
        """Preview predictions of the central slices of every cube of the preview file (see
        :meth:`predictAndWrite`)."""
        if self.config.mode != 'img-img':
            logger.info("previewSlice(): only available for 'img-img' training")
            return
        if self.preview_data is None:
            raise ValueError('previewSlice needs preview data: set preview_data_path in the config')
        z_thick = previews.preview_depth(self.cnn, max_z_pred)
        for k, raw in enumerate(self.preview_data):
            z_sh = raw.shape[-1]
            if z_thick > z_sh:
                raise ValueError('preview cube %i has %i z-slices; this CNN needs at least %i' % (k, z_sh, z_thick))
            start = (z_sh - z_thick) // 2
            self.predictAndWrite(raw[..., start:start + z_thick], number, export_class, k, max_z_pred)
        self.saved_raw_preview = True

    def previewSliceFromTrainData(self, cube_i=0, off=(0, 0, 0), sh=(10, 400, 400), number=0, export_class='all'):
        """Preview the prediction of a block of training cube ``cube_i`` (the original's helper).

        The block starts at ``off`` and has the shape ``sh``, both ``(z, x, y)``; for 3D networks its
        depth is raised to at least the network's input depth. (The original cut y with ``off[1]``
        and ``sh[1]``; here y uses ``off[2]`` and ``sh[2]``.) The PNGs are written as by
        :meth:`predictAndWrite`. Only for ``'img-img'`` training.
        """
        if self.config.mode != 'img-img':
            logger.info("previewSliceFromTrainData(): only available for 'img-img' training")
            return
        sh = [int(s) for s in sh]
        off = [int(o) for o in off]
        if self.cnn.n_dim == 3:
            sh[0] = max(sh[0], int(self.cnn.input_shape[1]))
        cube = self.data.train_d[cube_i]  # (z, ch, x, y)
        raw = np.asarray(cube[off[0]:off[0] + sh[0], :, off[1]:off[1] + sh[1], off[2]:off[2] + sh[2]])
        raw = np.ascontiguousarray(raw.transpose(1, 2, 3, 0))  # (ch, x, y, z)
        self.predictAndWrite(raw, number, export_class)
        self.saved_raw_preview = True

    def malisPreviewSlice(self, batch, name='A'):
        """MALIS statistics of ``batch`` (``(data, affinities, seg_gt, ...)``, target ``'malis'``): log
        a summary and save ``MALIS-<name>.pkl`` in the save directory (the original's helper).

        The pickle holds, as records (see :func:`elektronn.utils.pickleLoad`): the predicted connection
        probabilities ``(z, x, y, 3)``, the affinity labels ``(z, x, y, 3)``, the positive and
        ``log(1 + negative)`` pair counts per edge ``(z, x, y, 3)``, the segmentation ``(z, x, y)`` and the
        data's first channel ``(z, x, y)``, all of the batch's first example.
        """
        from elektronn.utils import pickleSave
        if batch is None:
            return None
        pred = self.cnn.class_probabilities(batch[0])[0]  # (6, z, x, y)
        (nll, n_pos, n_neg, n_tot, false_splits, false_merges, rand_index, pos_count,
         neg_count) = self.cnn.malis_stats(*batch[:3])
        logger.info('MALIS: NLL=%.4g, pairs total=%i pos=%i neg=%i, false splits=%i, false merges=%i, Rand index=%.4g',
                    nll, n_tot, n_pos, n_neg, false_splits, false_merges, rand_index)
        pred_slices = pred[1::2].transpose(1, 2, 3, 0)
        pos_slices = np.asarray(pos_count[0]).transpose(1, 2, 3, 0)
        neg_slices = np.log(np.asarray(neg_count[0]).transpose(1, 2, 3, 0) + 1)
        data = np.asarray(batch[0])[0, :, 0]
        aff_gt = np.asarray(batch[1])[0].transpose(1, 2, 3, 0)
        seg_gt = np.asarray(batch[2])[0]
        path = os.path.join(self.config.prepare_save_dir(), 'MALIS-%s.pkl' % (name,))
        pickleSave([pred_slices, aff_gt, pos_slices, neg_slices, seg_gt, data], path)
        return path

    def _timed_snapshots(self):
        """Step 5 of the loop: the hourly parameter snapshot and the preview predictions, when due."""
        c, st = self.config, self.state
        if (st.t_passed - st.last_save_t) / 3600.0 > c.param_save_h:
            st.last_save_t = st.t_passed
            if self.dist.is_main:
                self.cnn.saveParameters(self._file('-%sh.param' % round(st.save_time, 6)), show=False)
            st.save_time += c.param_save_h
        if self.preview_data is not None and self.dist.is_main and self._preview_due():
            st.last_prev_t = st.t_passed
            c.preview_kwargs['number'] = round(st.prev_number, 6)
            st.prev_number += c.prev_save_h
            try:
                self.previewSlice(**c.preview_kwargs)
            except Exception as e:
                warnings.warn('Preview predictions failed (%s: %s). Are the preview raw data in the right format?'
                              % (type(e).__name__, e), stacklevel=2)

    def _preview_due(self):
        st, c = self.state, self.config
        hours = st.t_passed / 3600.0
        if st.last_prev_t is None:
            return hours > c.initial_prev_h
        return (st.t_passed - st.last_prev_t) / 3600.0 > c.prev_save_h

    def saveHistories(self):
        """Write the history arrays (``Backup/*.npy``) and ``<save_name>.history.csv`` (rank 0 only)."""
        if not self.dist.is_main:
            return
        self.config.prepare_save_dir()
        plotting.saveHist(self.timeline, self.history, self.CG_timeline, self.errors, self.config.save_name,
                          self.save_path)
        runlog.write_history_csv(self._file('.history.csv'), self.history, self.errors,
                                 segmentation=self._segmentation_rows)

    def _submit_plots(self, plotter, step):
        """A history step's plots, drawn in the background (from step 31 on, as the original)."""
        if plotter is not None and step > 30:
            plotter.submit(self.timeline, self.history, self.CG_timeline, self.errors, self.config.save_name,
                           self.save_path, segmentation=self._segmentation_rows)

    def _final_plots(self):
        """The plots at the end of a run (rank 0, with ``plot_on``)."""
        c = self.config
        if c.plot_on and self.timeline and self.dist.is_main:
            plotting.plotInfo(self.timeline, self.history, self.CG_timeline, self.errors, c.save_name,
                              self.save_path, save_history=False,
                              segmentation=self._segmentation_rows)
