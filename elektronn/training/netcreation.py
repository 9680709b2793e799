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
"""
from elektronn.net.convnet import MixedConvNN

__all__ = ['createNet']


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
    return cnn
