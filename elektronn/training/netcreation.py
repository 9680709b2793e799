"""Build a :class:`~elektronn.net.convnet.MixedConvNN` from a training :class:`~elektronn.training.config.Config`.

The network is assembled as in the original pipeline:

1. ``MixedConvNN(input_size, n_ch, batch_size, enable_dropout, recurrent, dimension_calc)``;
2. one conv layer per ``(nof_filters, filters, pool, activation_func, MFP, pooling_mode)`` entry;
3. the recurrent layer of ``rnn_layer_kwargs`` (when given);
4. one perceptron layer per ``MLP_layers`` entry, with the activations following the conv ones;
5. the output layer, always linear with ``n_lab`` outputs: a perceptron (no dropout) after MLP or
   recurrent layers, otherwise a 1x1 conv layer (pool 1, ``is_last_layer=True``; affinity/MALIS
   layers for those targets);
6. ``compileOutputFunctions``, ``setOptimizerParams``, the dropout rates and the optional
   ``param_file`` (adaptive loading).

The network has ``len(nof_filters) + len(MLP_layers) + 1`` layers (plus the recurrent one).

:func:`createNetfromParams` rebuilds a conv-only network from a parameter file alone.
"""
import logging

import numpy as np

from elektronn.net.convnet import MixedConvNN

__all__ = ['createNet', 'createNetfromParams']

logger = logging.getLogger(__name__)


def createNet(config, input_size, n_ch, n_lab, dimension_calc):
    """A compiled network for ``config``.

    Args:
        config: A :class:`~elektronn.training.config.Config` (values in internal order).
        input_size: Spatial input shape: ``patch_size`` (``(x, y)``/``(z, x, y)``) for images, the
            example shape for vector data.
        n_ch: Input channels (``None`` for vector data; the sequence length for recurrent nets).
        n_lab: Number of classes / outputs.
        dimension_calc: The config's ``CNNCalculator`` result (``None`` for vector data).

    Returns:
        The :class:`~elektronn.net.convnet.MixedConvNN`, ready for ``trainingStep``.
    """
    rates = list(config.dropout_rates)
    enable_dropout = bool(rates) and rates[0] is not None
    rates = [0.0 if r is None else r for r in rates]
    recurrent = config.rnn_layer_kwargs is not None
    cnn = MixedConvNN(input_size, input_depth=n_ch, batch_size=config.batch_size, enable_dropout=enable_dropout,
                      recurrent=recurrent, dimension_calc=dimension_calc)

    n_conv = len(config.filters)
    for n, f, p, act, mfp, mode in zip(config.nof_filters, config.filters, config.pool,
                                       config.activation_func[:n_conv], config.MFP, config.pooling_mode):
        kwargs = {'use_fragment_pooling': True} if mfp else {}
        cnn.addConvLayer(n, f, p, act, pooling_mode=mode, **kwargs)

    if recurrent:
        cnn.addRecurrentLayer(**config.rnn_layer_kwargs)

    for n, act in zip(config.MLP_layers, config.activation_func[n_conv:]):
        cnn.addPerceptronLayer(n, act)

    if config.MLP_layers or recurrent:
        cnn.addPerceptronLayer(n_lab, 'linear', force_no_dropout=True)
    elif config.target in ('affinity', 'malis'):
        cnn.addConvLayer(n_lab, 1, 1, 'linear', is_last_layer=True,
                         affinity='malis' if config.target == 'malis' else True)
    else:
        cnn.addConvLayer(n_lab, 1, 1, 'linear', is_last_layer=True)

    cnn.compileOutputFunctions(config.target, config.class_weights is not None, config.use_example_weights,
                               config.lazy_labels, config.label_prop_thresh is not None)
    cnn.setOptimizerParams(config.SGD_params, config.CG_params, config.RPROP_params, config.LBFGS_params,
                           config.Adam_params, config.weight_decay)
    if enable_dropout:
        cnn.setDropoutRates(rates)
    if config.param_file is not None:
        cnn.loadParameters(config.param_file)
    if config.mixed_precision:
        cnn.setPrecision(config.mixed_precision)
    return cnn


_CONV_TYPES = ('ConvLayer2d', 'ConvLayer3d')


def createNetfromParams(param_file, patch_size, batch_size=1, activation_func='tanh', poolings=None, MFP=None,
                        only_prediction=False):
    """A compiled conv-only network built from a parameter file alone (no config), with its parameters.

    Filter counts, filter sizes and input channels come from the file's filter shapes, the poolings
    from the file's pool record (or ``poolings``). Every layer uses ``activation_func``; the last
    one is the output layer (``is_last_layer``) and the target is ``'nll'``. The input size is
    ``patch_size`` or, if the architecture does not allow it, the next valid one
    (:func:`~elektronn.net.netutils.CNNCalculator`, whose result becomes ``dimension_calc``). No
    optimiser is configured; the parameters are loaded strictly.

    Args:
        param_file: A parameter file (this package's HDF5 format or a legacy ``.param`` file).
        patch_size: Input size ``(x, y)`` or ``(z, x, y)`` (or a scalar for all axes).
        batch_size: The network's batch size.
        activation_func: Activation of all layers.
        poolings: Pool shapes per layer, for files without a pool record.
        MFP: Per layer 0/1: max-fragment-pooling (default: none).
        only_prediction: Compile for prediction only (no ``trainingStep``).

    Returns:
        The :class:`~elektronn.net.convnet.MixedConvNN`.

    Raises:
        ValueError: the file holds other than conv layers, or no pool shapes are known.
    """
    from elektronn.net.netutils import CNNCalculator
    from elektronn.net.params import read_parameter_file

    saved, file_poolings = read_parameter_file(param_file)
    if not saved:
        raise ValueError('%s holds no layers' % (param_file,))
    for i, entry in enumerate(saved):
        if entry.get('type') not in _CONV_TYPES or np.ndim(entry.get('W')) not in (4, 5):
            raise ValueError('createNetfromParams builds conv-only networks; layer %i of %s is a %s'
                             % (i, param_file, entry.get('type') or 'layer of unknown type'))
    shapes = [tuple(entry['W'].shape) for entry in saved]
    n_lay = len(shapes)
    n_dim = len(shapes[0]) - 2
    if any(len(sh) - 2 != n_dim for sh in shapes):
        raise ValueError('%s mixes 2D and 3D conv layers: %s' % (param_file, shapes))
    logger.info('Shapes are: %s', shapes)
    logger.info('#Layers = %s', n_lay)
    if file_poolings:
        poolings = file_poolings
        logger.info('Found Pooling info: %s', poolings)
    elif poolings is None:
        raise ValueError('No pooling info found in %s or provided: give poolings=[...] (one pool shape per layer)'
                         % (param_file,))
    poolings = [list(np.broadcast_to(np.asarray(p, dtype=int), (n_dim,))) for p in poolings]
    if len(poolings) != n_lay:
        raise ValueError('%i pool shapes for %i layers' % (len(poolings), n_lay))
    MFP = [0] * n_lay if MFP is None else list(MFP)
    if len(MFP) != n_lay:
        raise ValueError('MFP needs one entry per layer (%i), got %r' % (n_lay, MFP))
    nof_filters = [sh[0] for sh in shapes]
    filters = [list(sh[2:]) for sh in shapes]  # (x, y) or (z, x, y): this package's filter layout
    n_ch = shapes[0][1]
    dims = CNNCalculator(filters, poolings, desired_input=patch_size, MFP=MFP, force_center=False, n_dim=n_dim)
    cnn = MixedConvNN(dims.input, input_depth=n_ch, batch_size=batch_size, dimension_calc=dims)
    for i, (n, f, p, mfp) in enumerate(zip(nof_filters, filters, poolings, MFP)):
        if i < n_lay - 1:
            cnn.addConvLayer(n, f, p, activation_func, use_fragment_pooling=bool(mfp))
        else:
            cnn.addConvLayer(n, f, p, activation_func, is_last_layer=True)
    cnn.compileOutputFunctions(target='nll', only_forward=only_prediction)
    cnn.loadParameters(param_file, strict=True)
    return cnn
