"""Argument checks for integer tensors, shared by the node kinds of :mod:`wrapkit.ref.ops`.

Every check names the parameter in its one-line message, like :mod:`wrapkit.common.checks`
does for scalars.
"""

import numpy as np

from wrapkit.common.checks import check_int

__all__ = ["INT64_LIMIT", "as_int64", "check_bits_range", "check_bool", "check_fits_int64",
           "check_integer", "max_abs", "narrowest_int", "pair"]

#: Every intermediate of :mod:`wrapkit.ref.ops` stays below this magnitude (int64 holds 2^63).
INT64_LIMIT = 1 << 62


def as_int64(name, x, ndim=None, min_ndim=None):
    """``x`` as an int64 ndarray; TypeError unless it holds an integer dtype (bool excluded).

    ``ndim`` / ``min_ndim`` check the number of axes (ValueError).
    """
    arr = np.asarray(x)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array, got dtype {arr.dtype}")
    if arr.dtype == np.uint64 and arr.size and int(arr.max()) >= 1 << 63:
        raise ValueError(f"{name} holds {int(arr.max())}, beyond int64")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} axes, got shape {list(arr.shape)}")
    if min_ndim is not None and arr.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} axes, got shape "
                         f"{list(arr.shape)}")
    return arr.astype(np.int64, copy=False)


def check_integer(name, x, ndim=None, min_ndim=None):
    """``x`` as an ndarray of an integer dtype (not converted: narrow codes stay narrow);
    the checks of :func:`as_int64`."""
    arr = np.asarray(x)
    if arr.dtype == np.uint64:
        return as_int64(name, arr, ndim, min_ndim)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array, got dtype {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} axes, got shape {list(arr.shape)}")
    if min_ndim is not None and arr.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} axes, got shape "
                         f"{list(arr.shape)}")
    return arr


def narrowest_int(lo, hi):
    """The narrowest signed numpy integer type holding ``[lo, hi]``."""
    for t in (np.int8, np.int16, np.int32):
        info = np.iinfo(t)
        if info.min <= lo and hi <= info.max:
            return t
    return np.int64


def check_bool(name, value):
    """``value`` as a ``bool``; TypeError for anything else (0 and 1 included)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, not {value!r}")
    return bool(value)


def max_abs(x):
    """Largest magnitude in ``x`` as a Python int (0 for an empty array)."""
    if not np.size(x):
        return 0
    # Two reductions without a temporary |x| array (and no overflow at the int64 minimum).
    return max(int(np.max(x)), -int(np.min(x)))


def check_fits_int64(what, bound):
    """ValueError unless the Python integer ``bound`` is below :data:`INT64_LIMIT`."""
    if bound >= INT64_LIMIT:
        raise ValueError(f"{what} reaches {bound} >= 2^62, beyond exact int64 arithmetic; "
                         "use narrower operands")


def check_bits_range(name, x, bits, signed):
    """ValueError unless every value of int64 ``x`` fits a ``bits``-bit (un)signed code."""
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if x.size and (int(x.min()) < lo or int(x.max()) > hi):
        bad = x[(x < lo) | (x > hi)].flat[0]
        kind = "signed" if signed else "unsigned"
        raise ValueError(f"{name} must lie in [{lo}, {hi}] ({bits}-bit {kind}), got {bad}")
    return x


def pair(name, value, lo):
    """An int or a pair of ints, each >= ``lo``, as a tuple ``(h, w)``."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an integer or a pair of integers, got {value!r}")
        return tuple(check_int(name, v, lo) for v in value)
    v = check_int(name, value, lo)
    return (v, v)
