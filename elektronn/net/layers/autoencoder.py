"""Tied autoencoder decoders: perceptron layers that mirror encoder perceptron layers.

A decoder of an encoder ``(n_in -> n_out, W)`` maps ``n_out -> n_in`` with the **transposed
encoder weights** ``W.T`` — the same tensor, not a copy, so every update of either layer moves
both — and a bias of its own. With ``tie_W=False`` it owns an independent ``W`` instead.

Shapes:
    encoder ``W`` ``(n_in, n_out)``; decoder input ``(bs, n_out)``, weight ``W.T`` ``(n_out, n_in)``,
    bias ``(n_in,)``, output ``(bs, n_in)``.
"""
from elektronn.net.layers.perceptron import PerceptronLayer

__all__ = ['TiedDecoderLayer', 'build_tied_chain']


def _transposed_weight(encoder):
    """What makes a decoder share ``encoder``'s weights transposed (see ``PerceptronLayer(W=...)``)."""
    if encoder.shares_W and encoder._W_transposed:
        return encoder._shared_W[0]  # the encoder already uses another layer's W.T: the decoder uses that W
    return encoder.weight.T


class TiedDecoderLayer(PerceptronLayer):
    """The mirror of perceptron layer ``encoder``: ``act(x @ encoder.W.T + b)``.

    Args:
        encoder: The :class:`~elektronn.net.layers.perceptron.PerceptronLayer` to invert.
        activation_func: Activation of the decoder (no maxout: the tied shapes would not match).
        enable_dropout: Whether the decoder has a dropout rate.
        input_noise: Std of Gaussian noise added to the decoder's input in training steps.
        tie_W: Share the encoder's weights (transposed); ``False`` gives the decoder its own.
    """

    def __init__(self, encoder, activation_func='tanh', enable_dropout=False, input_noise=None, tie_W=True):
        if not isinstance(encoder, PerceptronLayer):
            raise ValueError('a tied decoder mirrors a PerceptronLayer, got %s' % type(encoder).__name__)
        if encoder.maxout > 1:
            raise ValueError('cannot mirror a maxout layer (%r): its output has fewer units than its weights'
                             % encoder.activation_func)
        if isinstance(activation_func, str) and activation_func.startswith('maxout'):
            raise ValueError('activation_func %r: decoders cannot use maxout (their output must have %i units)'
                             % (activation_func, encoder.n_in))
        super().__init__(encoder.n_out, encoder.n_in, activation_func=activation_func, enable_dropout=enable_dropout,
                         input_noise=input_noise, W=_transposed_weight(encoder) if tie_W else None)
        # Kept outside the module tree: the encoder is registered (and saved) by the network, not here.
        self._mirror = [encoder]

    @property
    def mirror(self):
        """The encoder layer this decoder inverts."""
        return self._mirror[0]

    @property
    def tied(self):
        """Whether the decoder uses the transposed weights of its encoder."""
        return self.shares_W


def build_tied_chain(encoders, activation_func='tanh', input_noise=0.3, tie_W=True, enable_dropout=False):
    """Decoders for ``encoders`` (input side first), deepest first: the chain from the code back to the input.

    The first decoder (the one reading the code) gets the input noise.

    Returns:
        A list of :class:`TiedDecoderLayer`, to be applied in order after the deepest encoder.
    """
    chain = []
    for encoder in reversed(list(encoders)):
        chain.append(TiedDecoderLayer(encoder, activation_func=activation_func, enable_dropout=enable_dropout,
                                      input_noise=input_noise if not chain else None, tie_W=tie_W))
    return chain
