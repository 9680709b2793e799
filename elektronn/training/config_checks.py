"""The value checks of the configuration parameters, and the nearest-name suggestion of their messages.

Each check (``_bool``, ``_int(minimum, maximum)``, ``_files`` ...; internal to the config modules)
takes a value and returns it normalised (e.g. tuples to lists), or raises ``_Invalid`` with the
rule the value breaks; :class:`~elektronn.training.config.Config` turns that into a ``ConfigError``
naming the file and the parameter. The parameter table
(:data:`~elektronn.training.config_schema.MASTER_PARAMS`) names one check per parameter. Also here:
:data:`MAX_SIZE`, :func:`levenshtein` and :func:`suggest_name` ("Did you mean ...?").
"""
import os

import numpy as np

__all__ = ['MAX_SIZE', 'levenshtein', 'suggest_name']


class _Invalid(Exception):
    """Raised by a parameter check with the rule that ``value`` breaks."""


# ---------------------------------------------------------------------------------------------------
# Parameter checks: each takes a value and returns it normalised, or raises _Invalid(rule)
# ---------------------------------------------------------------------------------------------------
def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_number(v):
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _is_seq(v):
    return isinstance(v, (list, tuple))


def _bool(v):
    if isinstance(v, (bool, np.bool_)) or (_is_int(v) and v in (0, 1)):
        return bool(v)
    raise _Invalid('must be True or False')


#: The largest count a size parameter takes (feature maps, units, batch size, classes, input and
#: filter sizes): beyond it a value is a typo, and would only fail later deep inside (or fill the memory).
MAX_SIZE = 10 ** 5


def _int(minimum=None, maximum=None):
    def check(v):
        if not _is_int(v) or (minimum is not None and v < minimum) or (maximum is not None and v > maximum):
            bounds = [] if minimum is None else ['>= %i' % minimum]
            bounds += [] if maximum is None else ['<= %i' % maximum]
            raise _Invalid('must be an integer' + (' ' + ' and '.join(bounds) if bounds else ''))
        return int(v)
    return check


def _number(low=None, high=None, low_open=False, high_open=False, allow_inf=False):
    def check(v):
        ok = _is_number(v) and (allow_inf or np.isfinite(v)) and not np.isnan(v)
        if ok and low is not None:
            ok = v > low if low_open else v >= low
        if ok and high is not None:
            ok = v < high if high_open else v <= high
        if not ok:
            rng = []
            if low is not None:
                rng.append('%s %g' % ('>' if low_open else '>=', low))
            if high is not None:
                rng.append('%s %g' % ('<' if high_open else '<=', high))
            raise _Invalid('must be a %snumber' % ('' if allow_inf else 'finite ') + (' ' + ' and '.join(rng) if rng
                                                                                    else ''))
        return float(v) if isinstance(v, (float, np.floating)) else v
    return check


def _optional(check, what='None'):
    def wrapped(v):
        if v is None:
            return None
        try:
            return check(v)
        except _Invalid as e:
            raise _Invalid('%s, or %s' % (e, what)) from None
    return wrapped


def _str(v):
    if not isinstance(v, str):
        raise _Invalid('must be a string')
    return v


def _choice(*options):
    def check(v):
        if v not in options:
            raise _Invalid('must be one of %s' % ', '.join(repr(o) for o in options))
        return v
    return check


def _list_of(item_check, what):
    def check(v):
        if not _is_seq(v):
            raise _Invalid('must be a list of %s' % what)
        try:
            return [item_check(x) for x in v]
        except _Invalid:
            raise _Invalid('must be a list of %s' % what) from None
    return check


def _dict(v):
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise _Invalid('must be a dict')
    return dict(v)


def _settings(allowed):
    """A dict of optimiser hyper-parameters: ``allowed`` maps each key to the check of its value
    (``None`` is accepted for every key: the optimiser's default)."""
    def check(v):
        v = _dict(v)
        for key, value in v.items():
            if key not in allowed:
                raise _Invalid('has no setting %r%s (settings: %s)' % (key, _did_you_mean(key, list(allowed)),
                                                                       ', '.join(allowed)))
            if value is None:
                continue
            try:
                v[key] = allowed[key](value)
            except _Invalid as e:
                raise _Invalid('setting %r %s (it is %r)' % (key, e, value)) from None
        return v
    return check


_POSITIVE = _number(0, low_open=True)
_FRACTION = _number(0, 1, high_open=True)



def _int_or_shape(rule):
    """A positive int, or a 2/3-tuple of positive ints (returned as a list)."""
    def check(v):
        if _is_int(v) and 1 <= v <= MAX_SIZE:
            return int(v)
        if _is_seq(v) and len(v) in (2, 3) and all(_is_int(x) and 1 <= x <= MAX_SIZE for x in v):
            return [int(x) for x in v]
        raise _Invalid(rule)
    return check


_shape_entry = _int_or_shape('must be a list of integers in 1..%i or of (x, y)/(x, y, z) tuples of them' % MAX_SIZE)
_desired_input = _int_or_shape('must be an integer in 1..%i or an (x, y)/(x, y, z) tuple of them' % MAX_SIZE)


def _shape_list(v):
    if not _is_seq(v):
        raise _Invalid('must be a list (one entry per conv layer) of positive integers or of (x, y)/(x, y, z) tuples')
    return [_shape_entry(x) for x in v]


def _activation(v):
    if isinstance(v, str):
        return v
    if _is_seq(v) and all(isinstance(x, str) for x in v):
        return list(v)
    raise _Invalid("must be a string such as 'relu' or a list of them (one per layer)")


def _segmentation_metrics(v):
    if v is None or v is False:
        return None
    if v is not True and not isinstance(v, dict):
        raise _Invalid('must be None, False, True or a dict of segmentation settings')
    from elektronn.training.segmentation_scores import normalise_settings
    try:
        return normalise_settings(v)
    except ValueError as e:
        raise _Invalid(str(e)) from None


def _pooling_mode(v):
    modes = ('max', 'maxabs')
    if isinstance(v, str) and v in modes:
        return v
    if _is_seq(v) and all(x in modes for x in v):
        return list(v)
    raise _Invalid("must be 'max' or 'maxabs', or a list of them (one per conv layer)")


def _mfp(v):
    if v is None or isinstance(v, (bool, np.bool_)):
        return v
    if _is_seq(v) and all(isinstance(x, (bool, np.bool_)) or (_is_int(x) and x in (0, 1)) for x in v):
        return [int(x) for x in v]
    raise _Invalid('must be True/False or a list of 0/1 (one per conv layer)')


def _dropout(v):
    if v is None:
        return None
    if _is_number(v) and 0 <= v < 1:
        return float(v)
    if _is_seq(v) and all(x is None or (_is_number(x) and 0 <= x < 1) for x in v):
        return list(v)
    raise _Invalid('must be a rate in [0, 1), a list of rates (one per layer) or None')


def _files(v):
    if not _is_seq(v) or not all(_is_seq(x) and len(x) in (2, 3) and all(isinstance(s, str) for s in x[:2])
                                 for x in v):
        raise _Invalid("must be a list of (file name, dataset key) pairs (HDF5 or Zarr), e.g. [('raw_0.h5', 'raw')], optionally "
                       "with a region: ('stack.h5', 'raw', dict(z=(0, 24)))")
    from elektronn.training.cubes import parse_file_entry
    for k, x in enumerate(v):
        if len(x) == 3:
            try:
                parse_file_entry(x, 'entry', k)
            except ValueError as e:
                raise _Invalid(str(e)) from None
    return [tuple(x) for x in v]


def _warp_on(v):
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if _is_number(v) and 0 <= v <= 1:
        return v
    raise _Invalid('must be True/False or the fraction of warped patches in [0, 1]')


def _downsample(v):
    if v is False or v is None:
        return False
    if _is_int(v) and v >= 1:
        return int(v)
    raise _Invalid('must be False or an integer factor >= 1')


def _background_processes(v):
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if _is_int(v) and v >= 0:
        return int(v)
    raise _Invalid('must be False, True (2 processes) or a number of processes')


def _data_class(v):
    if v is None:
        return None
    if isinstance(v, str) and v.isidentifier():
        return v
    if _is_seq(v) and len(v) == 2 and all(isinstance(s, str) for s in v) and v[1].isidentifier():
        return (os.path.expanduser(v[0]), v[1])
    raise _Invalid("must be None, a class name in elektronn.training.traindata such as 'MNISTData', "
                   "or a (path to a .py file, class name) pair")


def _history_freq(v):
    if _is_int(v) and v >= 0:
        return [int(v)]
    if isinstance(v, list) and len(v) == 1 and _is_int(v[0]) and v[0] >= 0:
        return [int(v[0])]
    raise _Invalid('must be a list holding one integer >= 0 (steps between history steps; 0 disables them)')


def _weight_decay(v):
    if v is False or v is None:
        return False
    return _number(0)(v)


def _class_weights(v):
    if v is None:
        return None
    if _is_seq(v) or isinstance(v, np.ndarray):
        arr = np.asarray(v)
        if arr.ndim == 1 and arr.size and np.issubdtype(arr.dtype, np.number) and np.all(arr >= 0):
            return [float(x) for x in arr]
    raise _Invalid('must be None or a list of non-negative weights, one per class')


def _lr_schedule(v):
    if v is None:
        return None
    rule = 'must be None or a list of (step, learning rate) pairs sorted by step'
    if not _is_seq(v):
        raise _Invalid(rule)
    out = []
    for entry in v:
        if not (_is_seq(entry) and len(entry) == 2 and _is_int(entry[0]) and entry[0] >= 0
                and _is_number(entry[1]) and np.isfinite(entry[1]) and entry[1] > 0):
            raise _Invalid(rule)
        out.append((int(entry[0]), float(entry[1])))
    if any(b[0] <= a[0] for a, b in zip(out, out[1:])):
        raise _Invalid(rule + ' (steps must increase)')
    return out


def _gpu(v):
    from elektronn.net.device import parse_gpu
    try:
        parse_gpu(v)
    except ValueError:
        raise _Invalid("must be False (CPU), 'auto' or a GPU index") from None
    return v


def _mixed_precision(v):
    if v is False or v is None:
        return False
    if v in ('bf16', 'fp16', 'auto'):
        return v
    raise _Invalid("must be False (float32), 'bf16', 'fp16' or 'auto'")


def _save_name(v):
    v = _str(v)
    if not v or os.sep in v or (os.altsep and os.altsep in v):
        raise _Invalid('must be a non-empty name without path separators')
    return v


# ---------------------------------------------------------------------------------------------------
# Nearest-name suggestion
# ---------------------------------------------------------------------------------------------------
def levenshtein(a, b):
    """Edit distance between two strings (insertions, deletions, substitutions)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def suggest_name(name, candidates):
    """The candidate nearest to ``name`` (edit distance, ignoring case first)."""
    return min(candidates, key=lambda c: (levenshtein(name.lower(), c.lower()), levenshtein(name, c)))


def _did_you_mean(name, candidates):
    return ' (did you mean %r?)' % suggest_name(name, candidates) if candidates else ''
