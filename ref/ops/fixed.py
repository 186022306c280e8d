"""Fixed-point arithmetic shared by the rescaling node kinds: one rounding rule for all.

Every rescale in :mod:`wrapkit.ref.ops` multiplies by an integer ``m`` and shifts right by
``s``, rounding **half up** (towards +infinity), as :mod:`wrapkit.ref.requant` does::

    round_shift(x, s) = floor((x + 2^(s-1)) / 2^s) = floor(x / 2^s + 1/2)      (s >= 1)
    round_shift(x, 0) = x

Round half up needs one adder and an arithmetic shift in hardware; it differs from
round-half-even only on exact ties (``x / 2^s`` an odd multiple of 1/2), where it always
goes up: ``round_shift(5, 1) = 3``, ``round_shift(-5, 1) = -2``.

A real ratio ``r > 0`` becomes ``m = floor(r·2^s + 1/2)`` with ``s`` chosen so that ``m``
has ``mult_bits`` significant bits (:func:`fixed_multiplier`); then
``|m / 2^s − r| <= 2^-(s+1)``, a relative error of at most ``2^-mult_bits``.
"""

import math

import numpy as np

from wrapkit.common.checks import check_int

from ..datapath import operand_range
from .tensors import as_int64, check_bool, check_fits_int64, max_abs

__all__ = ["MAX_SHIFT", "fixed_multiplier", "rescale", "round_shift"]

#: Largest right shift any fixed-point constant uses.
MAX_SHIFT = 62


def round_shift(x, shift):
    """``floor(x / 2^shift + 1/2)`` (round half up) of int64 ``x``; ``shift`` int or array.

    >>> round_shift(np.array([5, -5, 6, -6, 7]), 1).tolist()
    [3, -2, 3, -3, 4]
    """
    x = as_int64("x", x)
    if isinstance(shift, (int, np.integer)) and not isinstance(shift, bool):
        shift = check_int("shift", shift, 0, MAX_SHIFT)
        return x if shift == 0 else (x + (1 << (shift - 1))) >> shift
    shift = as_int64("shift", shift)
    if shift.size and (shift.min() < 0 or shift.max() > MAX_SHIFT):
        raise ValueError(f"shift must be in [0, {MAX_SHIFT}], got "
                         f"{shift[(shift < 0) | (shift > MAX_SHIFT)].flat[0]}")
    half = (np.int64(1) << shift) >> 1
    return (x + half) >> shift


def fixed_multiplier(ratio, mult_bits=16):
    """Positive real ``ratio`` -> ``(m, s)`` with ``m / 2^s ≈ ratio``.

    ``s = mult_bits − 1 − floor(log2 ratio)`` clipped to ``[0, MAX_SHIFT − 1]`` (unless
    clipped, ``2^(mult_bits-1) <= m <= 2^mult_bits``); ``m = floor(ratio·2^s + 1/2)``;
    ``|m/2^s − ratio| <= 2^-(s+1)``.

    >>> fixed_multiplier(0.3, 8)
    (154, 9)
    """
    mult_bits = check_int("mult_bits", mult_bits, 2, 31)
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float, np.floating, np.integer)):
        raise TypeError(f"ratio must be a positive finite number, not {ratio!r}")
    if not (math.isfinite(ratio) and ratio > 0):
        raise ValueError(f"ratio must be a positive finite number, got {ratio}")
    if ratio >= 2.0 ** 31:
        raise ValueError(f"ratio must be below 2^31, got {ratio}")
    shift = (mult_bits - 1) - math.floor(math.log2(ratio))
    shift = min(max(shift, 0), MAX_SHIFT - 1)
    return int(math.floor(math.ldexp(ratio, shift) + 0.5)), shift


def rescale(x, multiplier, shift, out_bits, out_signed):
    """``clamp(round_shift(x·multiplier, shift))`` to the ``out_bits``-bit code range.

    ``multiplier`` and ``shift`` are integers (or arrays broadcasting against ``x``,
    e.g. one per channel).

    >>> rescale(np.array([10, 200]), 154, 9, 8, False).tolist()    # 10·0.3, 200·0.3
    [3, 60]
    """
    x = as_int64("x", x)
    m = as_int64("multiplier", multiplier)
    out_bits = check_int("out_bits", out_bits, 1, 32)
    check_fits_int64("|x·multiplier|", max_abs(x) * max_abs(m))
    lo, hi = operand_range(out_bits, check_bool("out_signed", out_signed))
    return np.clip(round_shift(x * m, shift), lo, hi)
