"""Integer requantization: BatchNorm + ReLU + the next layer's quantizer as fixed point.

Between two WrapNet layers the float network computes, per output channel ``c``,

    code = clamp(round(M_c · y + C_c), 0, qmax)

where ``y`` is the MAC output (wrapped accumulator or cyclic activation), ``M_c`` folds the
weight scale, the input step, BatchNorm's ``gamma / sqrt(var + eps)`` and the next layer's
step, ``C_c`` folds BatchNorm's shift and the next step, and the clamp at 0 is the ReLU
(``qmax = 2^bits - 1`` is the next layer's activation range). As in integer-only inference
in gemmlowp/TFLite, the export stores instead an integer multiplier ``m_c``, a right shift
``s_c`` and an integer bias ``b_c``::

    code = clamp((y · m_c + b_c) >> s_c, 0, qmax)        (>> is an arithmetic shift: floor)

    m_c = round(M_c · 2^s_c),    b_c = floor((C_c + 1/2) · 2^s_c)

so ``(y·m_c + b_c) / 2^s_c ≈ M_c·y + C_c + 1/2`` and the floor rounds half *up*
(PyTorch's ``round`` rounds half to even; the two differ only on exact ties). ``s_c`` is
chosen so that ``2^(MULT_BITS-1) <= |m_c| < 2^MULT_BITS`` (29 significant bits, more than the
24 of the float32 arithmetic the PyTorch model uses), within ``[0, MAX_SHIFT]``.

Every intermediate fits int64: ``|y| <= 2^(acc_bits-1) <= 2^31``, ``|m_c| <= 2^29`` and
``C_c`` is first clamped to ``[-(|M_c|·2^(acc_bits-1) + 1), |M_c|·2^(acc_bits-1) + qmax + 1]``,
which changes no output (beyond those limits every ``y`` gives 0, or every ``y`` gives qmax)
and bounds ``|b_c|`` by about ``2^61``; :func:`check_bounds` proves ``|y·m| + |b| < 2^62``.

Worked example: ``M = 0.3, C = 1.2, y = 10`` is ``round(4.2) = 4`` in float. Here
``floor(log2 0.3) = -2`` so ``s = 28 - (-2) = 30``, ``m = round(0.3·2^30) = 322122547``,
``b = floor(1.7·2^30) = 1825361100``, and ``(10·m + b) >> 30 = 5046586570 >> 30 = 4``.
"""

import numpy as np

__all__ = ["MAX_SHIFT", "MULT_BITS", "check_bounds", "fixed_point", "requantize",
           "requantize_real"]

#: Significant bits of the multiplier: |m| < 2^MULT_BITS (plus one for rounding up).
MULT_BITS = 29
#: Largest right shift; multipliers below 2^(MULT_BITS - 1 - MAX_SHIFT) lose precision, which
#: is harmless because ``|M·y|`` then stays below 2^-10 for every 32-bit ``y``.
MAX_SHIFT = 48
#: ``|y·m| + |b|`` must stay below 2^INT64_HEADROOM (int64 holds 2^63).
INT64_HEADROOM = 62


def _float_vector(name, x):
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array (one value per channel), got shape "
                         f"{arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {arr[~np.isfinite(arr)][0]}")
    return arr


def fixed_point(scale, offset, *, qmax, acc_bits, lo=0):
    """Per-channel real ``(M, C)`` -> int64 ``(m, b, shift)`` (see the module docstring).

    Parameters
    ----------
    scale, offset : array_like of float, shape (channels,)
        ``M_c`` and ``C_c``.
    qmax : int, 1..255
        Largest output code.
    lo : int, -256..0
        Smallest output code: 0 for unsigned codes (the fused ReLU), ``-(qmax + 1)`` for
        signed codes (a residual branch before its add); the output range is ``[lo, qmax]``.
    acc_bits : int, 2..32
        Width of the accumulator whose outputs ``y`` are requantized (bounds ``|y|``).

    Returns
    -------
    m, b, shift : ndarray of int64, shape (channels,)

    Raises
    ------
    ValueError
        Non-finite values, mismatched shapes, out-of-range ``qmax``/``acc_bits``, or
        ``|M| >= 2^MULT_BITS`` (no such scale arises from a trained network).
    """
    m_real = _float_vector("scale", scale)
    c_real = _float_vector("offset", offset)
    if m_real.shape != c_real.shape:
        raise ValueError(f"scale and offset must have the same shape, got {m_real.shape} and "
                         f"{c_real.shape}")
    if isinstance(qmax, bool) or not isinstance(qmax, (int, np.integer)) or not 1 <= qmax <= 255:
        raise ValueError(f"qmax must be an integer in [1, 255], got {qmax!r}")
    if isinstance(acc_bits, bool) or not isinstance(acc_bits, (int, np.integer)) \
            or not 2 <= acc_bits <= 32:
        raise ValueError(f"acc_bits must be an integer in [2, 32], got {acc_bits!r}")
    big = np.abs(m_real) >= 2.0 ** MULT_BITS
    if np.any(big):
        raise ValueError(f"scale must be below 2^{MULT_BITS} in magnitude, got "
                         f"{m_real[big][0]}")
    if isinstance(lo, bool) or not isinstance(lo, (int, np.integer)) or not -256 <= lo <= 0:
        raise ValueError(f"lo must be an integer in [-256, 0], got {lo!r}")
    half = float(1 << (acc_bits - 1))
    reach = np.abs(m_real) * half
    c_real = np.clip(c_real, lo - (reach + 1.0), reach + qmax + 1.0)
    nonzero = m_real != 0
    exp = np.floor(np.log2(np.where(nonzero, np.abs(m_real), 1.0)))
    shift = np.where(nonzero, (MULT_BITS - 1) - exp, 0)
    shift = np.clip(shift, 0, MAX_SHIFT).astype(np.int64)
    pow2 = np.ldexp(1.0, shift)
    m = np.rint(m_real * pow2).astype(np.int64)
    b = np.floor((c_real + 0.5) * pow2).astype(np.int64)
    check_bounds(m, b, shift, acc_bits)
    return m, b, shift


def check_bounds(m, b, shift, acc_bits):
    """Raise ValueError unless ``(y·m + b) >> shift`` is exact in int64 for every ``y`` of
    an ``acc_bits`` accumulator and ``0 <= shift <= 62``."""
    m = np.asarray(m)
    b = np.asarray(b)
    shift = np.asarray(shift)
    if np.any((shift < 0) | (shift > INT64_HEADROOM)):
        raise ValueError(f"shift must be in [0, {INT64_HEADROOM}], got "
                         f"{shift[(shift < 0) | (shift > INT64_HEADROOM)].flat[0]}")
    # Python ints: the check itself must not overflow.
    worst = max((abs(int(mi)) << (acc_bits - 1)) + abs(int(bi))
                for mi, bi in zip(m.ravel(), b.ravel())) if m.size else 0
    if worst >= 1 << INT64_HEADROOM:
        raise ValueError(f"requantization constants overflow int64: |y·m| + |b| reaches "
                         f"{worst} >= 2^{INT64_HEADROOM} for acc_bits={acc_bits}")


def requantize(y, m, b, shift, qmax, lo=0):
    """``clamp((y·m + b) >> shift, lo, qmax)`` per channel; channels on the last axis of ``y``
    (or any axis, with ``m``, ``b``, ``shift`` shaped to broadcast against it).

    ``y`` must be int64 (or an integer type that converts); the result is int64. ``lo = 0``
    is the fused ReLU of an unsigned output; a signed output (a residual branch before its
    add) clamps at ``lo = -2^(bits-1)``.

    >>> requantize(np.array([[10]]), np.array([322122547]), np.array([1825361100]),
    ...            np.array([30]), 255).tolist()
    [[4]]
    """
    y = np.asarray(y).astype(np.int64, copy=False)
    t = y * m
    t += b
    t >>= shift
    return np.clip(t, lo, qmax, out=t)


def requantize_real(y, scale, offset, qmax):
    """The float reference: ``clamp(round_half_even(M·y + C), 0, qmax)`` in float64."""
    u = np.asarray(y, dtype=np.float64) * scale + offset
    return np.clip(np.rint(u), 0, qmax).astype(np.int64)
