"""Arrays at ``MixedConvNN``'s boundary: checked, converted to tensors and moved to its device.

:class:`NetInputsMixin` turns data, labels and auxiliary loss inputs in the original layouts into
tensors in PyTorch layout (with messages that name the expected shapes); ``_StagedBatch`` copies a
batch to the GPU ahead of the step that uses it.
"""
import numpy as np
import torch

from elektronn.net.layers.perceptron import PerceptronLayer
from elektronn.net.net_builder import _shape_str

__all__ = ['NetInputsMixin']


def _host_to_device(tensor, device, dtype=None):
    """``tensor`` on ``device``, converted to ``dtype`` (``None``: its own).

    A CPU tensor goes to a GPU through pinned (page-locked) memory with an asynchronous copy:
    the host does not wait for it, and the kernels queued after it on the same stream see the
    data. The conversion happens on the device, after the (smaller) copy. Elsewhere this is
    ``tensor.to``; pinning would only cost.
    """
    if device.type == 'cuda' and tensor.device.type == 'cpu':
        if not tensor.is_pinned():
            tensor = tensor.pin_memory()
        tensor = tensor.to(device, non_blocking=True)
    return tensor.to(device=device, dtype=dtype)


class _StagedBatch:
    """A checked batch whose copy to the network's GPU runs on a side stream, so that it can
    overlap the step before the one that uses it (see ``MixedConvNN._stage_batch``).

    On the CPU there is no stream and the tensors are ready at once.
    """

    def __init__(self, cnn, args, aux_kwargs):
        device = cnn.device
        self._stream = torch.cuda.Stream(device) if device.type == 'cuda' else None
        with torch.cuda.stream(self._stream):  # a no-op for None
            self._batch = cnn._prepare(args[0], args[1], args[2:], aux_kwargs)

    def take(self):
        """``(x, y, aux)`` for use on the current stream, which first waits for the copies."""
        if self._stream is not None:
            current = torch.cuda.current_stream(self._stream.device)
            current.wait_stream(self._stream)
            x, y, aux = self._batch
            for t in [x, y] + list(aux.values()):
                # Made on the side stream: their memory must not be reused before the current
                # stream is done with them.
                t.record_stream(current)
            self._stream = None
        return self._batch


class NetInputsMixin:
    """Conversion of the arrays passed to :class:`~elektronn.net.convnet.MixedConvNN`'s callables.

    Needs a compiled network for labels and auxiliary inputs (the target fixes their shapes).
    """

    def _to_input(self, data):
        """NumPy data in the original layout -> tensor in PyTorch layout on the network's device."""
        if isinstance(data, torch.Tensor):
            x = data
        else:
            arr = np.asarray(data)
            if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
                raise TypeError('data must be a numeric array, got dtype %s' % arr.dtype)
            x = torch.from_numpy(np.ascontiguousarray(arr))
        expected = self.input_shape
        if x.ndim != len(expected):
            raise ValueError('data must have %i axes %s for this network, got shape %s'
                             % (len(expected), _shape_str(expected), tuple(x.shape)))
        if self.input_depth is None or self.n_dim == 1:
            if tuple(x.shape[1:]) != tuple(expected[1:]):
                raise ValueError('data must have shape %s for this network, got %s'
                                 % (_shape_str(expected), tuple(x.shape)))
        else:
            ch_axis = 2 if self.n_dim == 3 else 1
            if x.shape[ch_axis] != self.input_depth:
                raise ValueError('data has %i channel(s) on axis %i (shape %s) but the network expects %i; the layout is %s'
                                 % (x.shape[ch_axis], ch_axis, tuple(x.shape), self.input_depth, _shape_str(expected)))
            self._check_spatial(tuple(x.shape[ch_axis + 1:]) if self.n_dim == 2 else
                                (x.shape[1],) + tuple(x.shape[3:]), tuple(x.shape))
        x = _host_to_device(x, self.device, self.dtype)
        if self.n_dim == 3 and self.input_depth is not None:
            x = x.permute(0, 2, 1, 3, 4)
        if x.ndim > 2:
            x = x.contiguous(memory_format=self.memory_format)
        return x

    def _check_spatial(self, spatial, full_shape):
        has_perceptron = any(isinstance(layer, PerceptronLayer) for layer in self.layers)
        if has_perceptron:
            if tuple(spatial) != tuple(int(s) for s in self.patch_size):
                raise ValueError('data has spatial shape %s (array shape %s) but this network (with perceptron layers) '
                                 'needs exactly %s' % (tuple(spatial), full_shape, tuple(int(s) for s in self.patch_size)))
            return
        sizes = list(spatial)
        for layer in self.layers:
            sizes = layer.output_spatial(sizes)
            if min(sizes) < 1:
                raise ValueError('data of spatial shape %s (array shape %s) is smaller than the field of view of this '
                                 'network' % (tuple(spatial), full_shape))

    def _to_labels(self, labels, n_examples):
        arr = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
        expected = self._target.label_shape(n_examples, self.output_shape)
        if self.target == 'regression':
            out_shape = (n_examples,) + tuple(self.output_shape[1:])
            if arr.shape not in (expected, out_shape):
                raise ValueError('regression targets must have shape %s or %s, got %s' % (expected, out_shape, arr.shape))
            return _host_to_device(torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)), self.device,
                                   self.dtype)
        if arr.shape != expected:
            what = 'output position' if len(expected) > 1 else 'example'
            if self._target.name == 'nll_mutiple_binary':
                what = 'output unit (0 or 1)'
            elif self._target.name in ('affinity', 'malis'):
                what = 'edge direction (z, x, y) and output position'
            raise ValueError('labels must have shape %s (one class index per %s), got %s' % (expected, what, arr.shape))
        if not np.issubdtype(arr.dtype, np.integer):
            if np.issubdtype(arr.dtype, np.floating) and np.all(np.mod(arr, 1) == 0):
                arr = arr.astype(np.int64)
            else:
                raise TypeError("labels must be integer class indices for target %r, got dtype %s"
                                % (self.target, arr.dtype))
        n_classes = self._target.n_classes
        if arr.size and arr.max() >= n_classes:
            raise ValueError('labels contain class %i but the output has %i classes: labels must lie in 0..%i '
                             '(negative values mean "ignore")' % (arr.max(), n_classes, n_classes - 1))
        return _host_to_device(torch.from_numpy(np.ascontiguousarray(arr, dtype=np.int64)), self.device)

    def _to_aux(self, aux_args, aux_kwargs, labels_shape):
        """Auxiliary loss inputs (positional in compiled order, or by keyword) as tensors."""
        names = self._aux_names
        if len(aux_args) > len(names):
            raise ValueError('The number of auxiliary arguments for the loss is not matching the compiled signature %s: '
                             'got %i positional auxiliary argument(s)' % (names, len(aux_args)))
        values = dict(zip(names, aux_args))
        for key, value in aux_kwargs.items():
            if key not in names:
                raise TypeError('unexpected auxiliary argument %r; this network was compiled for %s'
                                % (key, names or 'no auxiliary inputs'))
            if key in values:
                raise TypeError('auxiliary argument %r given both by position and by keyword' % key)
            values[key] = value
        missing = [n for n in names if n not in values]
        if missing:
            raise ValueError('missing auxiliary argument(s) %s; the compiled signature is (data, labels, %s)'
                             % (missing, ', '.join(names)))
        return {name: self._aux_tensor(name, value, labels_shape) for name, value in values.items()}

    def _aux_tensor(self, name, value, labels_shape):
        """One auxiliary input as a tensor, after checking its shape and values."""
        arr = np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value)
        want = self._target.aux_shape(name, labels_shape)
        if name == 'label_prop_thresh' and arr.size == 1:
            arr = arr.reshape(())
        if arr.shape != want:
            raise ValueError('%s must have shape %s, got %s' % (name, want, arr.shape))
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
            raise TypeError('%s must be a numeric array, got dtype %s' % (name, arr.dtype))
        if name == 'seg_gt':
            return _host_to_device(torch.from_numpy(np.ascontiguousarray(arr, dtype=np.int64)), self.device)
        if name in ('mask_class_labeled', 'mask_class_not_present') and not np.isin(arr, (0, 1)).all():
            raise ValueError('%s must hold 0/1 flags per example and class, got values %s'
                             % (name, np.unique(arr)[:10].tolist()))
        return _host_to_device(torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)), self.device, self.dtype)

    def _prepare(self, data, labels, aux_args, aux_kwargs):
        x = self._to_input(data)
        y = self._to_labels(labels, x.shape[0])
        return x, y, self._to_aux(aux_args, aux_kwargs, y.shape)

    def _stage_batch(self, data, labels, *aux, **aux_kwargs):
        """Check a batch (arguments as for ``trainingStep``) and start its copy to the device.

        Returns:
            A batch to pass to ``trainingStep`` as its only positional argument; on a GPU it is
            copied on a side stream, so staging the next batch before a step overlaps the copy
            with that step.
        """
        self._require_compiled('trainingStep', training=True)
        return _StagedBatch(self, (data, labels) + aux, aux_kwargs)
