"""A restricted unpickler that builds NumPy arrays and plain containers and nothing else.

Pickle files (the classic ``mnist.pkl.gz``, ELEKTRONN 1.x ``.param`` files) can make the loader run
arbitrary code. :class:`ArrayUnpickler` resolves only the few globals a pickle of NumPy arrays needs
(taken from NumPy itself, so names written by old ``numpy.core`` and new ``numpy._core`` both work)
and raises :class:`RefusedGlobal` for any other reference *before* anything can run.
"""
import pickle

import numpy as np

__all__ = ['ArrayUnpickler', 'RefusedGlobal']

_RECONSTRUCT = np.zeros(1).__reduce__()[0]
_SCALAR = np.float32(0).__reduce__()[0]
_FROMBUFFER = getattr(np, '_core', getattr(np, 'core', None)).numeric._frombuffer


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle referred to something other than NumPy arrays and plain containers."""


def _latin1_encode(text, encoding='latin1', errors='strict'):
    """Python 3 writes byte strings into protocol-2 pickles as ``_codecs.encode(text, 'latin1')``."""
    if not isinstance(text, str) or encoding.replace('-', '').lower() not in ('latin1', 'iso88591'):
        raise RefusedGlobal('_codecs.encode with encoding %r' % (encoding,))
    return text.encode('latin1', errors)


def _empty_bytes(*args):
    """Python 3 writes ``b''`` into protocol-2 pickles as ``bytes()``."""
    if args:
        raise RefusedGlobal('bytes with arguments')
    return b''


_ALLOWED_GLOBALS = {
    ('numpy', 'ndarray'): np.ndarray,
    ('numpy', 'dtype'): np.dtype,
    ('_codecs', 'encode'): _latin1_encode,
    ('__builtin__', 'bytes'): _empty_bytes,
    ('builtins', 'bytes'): _empty_bytes,
}
for _module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
    _ALLOWED_GLOBALS[(_module, '_reconstruct')] = _RECONSTRUCT
    _ALLOWED_GLOBALS[(_module, 'scalar')] = _SCALAR
for _module in ('numpy.core.numeric', 'numpy._core.numeric'):
    _ALLOWED_GLOBALS[(_module, '_frombuffer')] = _FROMBUFFER


class ArrayUnpickler(pickle.Unpickler):
    """Unpickler admitting NumPy arrays, NumPy scalars, numbers, strings, tuples, lists and dicts only.

    Use ``encoding='latin1'`` for Python 2 pickles (their array buffers are byte strings).
    """

    def find_class(self, module, name):
        """The allowed global ``module.name``; any other raises :class:`RefusedGlobal`."""
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise RefusedGlobal('%s.%s' % (module, name)) from None

    def persistent_load(self, pid):
        """Refuses persistent references (:class:`RefusedGlobal`): plain pickles have none."""
        raise RefusedGlobal('a persistent object reference')
