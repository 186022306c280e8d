"""Elementwise node kinds: add of two tensors at different scales (residuals), concat.

Add
---
Inputs ``a`` (real value ``s_a·a``) and ``b`` (``s_b·b``) meet on a common fixed-point
scale ``s_out / 2^shift`` through integer multipliers, and the sum is rounded half up
(:func:`~wrapkit.ref.ops.fixed.round_shift`) and clamped to the output code range::

    out = clamp(round_shift(a·m_a + b·m_b, shift), lo, hi)

with ``m_x = floor(s_x / s_out · 2^shift + 1/2)`` (:func:`add_multipliers`). An unsigned
output (``lo = 0``) is the ReLU that follows a ResNet's residual add.

**Alignment error.** ``|m_x / 2^shift − s_x / s_out| <= 2^-(shift+1)``, so before rounding
the integer sum differs from the real ``(s_a·a + s_b·b) / s_out`` by at most
``(|a| + |b|) · 2^-(shift+1)``, and after rounding (before the clamp) ``out`` is within
``1/2 + (|a| + |b|)·2^-(shift+1)`` of it. :func:`add_multipliers` gives the larger
multiplier ``mult_bits`` significant bits; with 8-bit codes and the default 16 bits the
alignment term is at most ``510 · 2^-16 < 0.008`` output steps whenever both ratios are
below 1.
"""

import math

import numpy as np

from wrapkit.common.checks import check_int, check_positive_float

from ..datapath import operand_range
from .fixed import MAX_SHIFT, rescale, round_shift
from .tensors import as_int64, check_bits_range, check_bool, check_fits_int64, max_abs

__all__ = ["add", "add_multipliers", "concat"]


def add_multipliers(scale_a, scale_b, scale_out, mult_bits=16):
    """Integer ``(m_a, m_b, shift)`` for :func:`add` from the three real scales.

    ``shift = mult_bits − 1 − floor(log2 max(r_a, r_b))`` (clipped to ``[0, 61]``) with
    ``r_x = scale_x / scale_out``, and ``m_x = floor(r_x·2^shift + 1/2)``; unless the
    shift is clipped at 0, the larger multiplier is at most ``2^mult_bits``. The error
    bound is in the module docstring.

    >>> add_multipliers(0.05, 0.02, 0.1, 8)
    (128, 51, 8)
    """
    s_a = check_positive_float("scale_a", scale_a)
    s_b = check_positive_float("scale_b", scale_b)
    s_out = check_positive_float("scale_out", scale_out)
    mult_bits = check_int("mult_bits", mult_bits, 2, 31)
    r_a, r_b = s_a / s_out, s_b / s_out
    top = max(r_a, r_b)
    if top >= 2.0 ** 31:
        raise ValueError(f"scale_a / scale_out and scale_b / scale_out must be below 2^31, "
                         f"got {top}")
    shift = min(max(mult_bits - 1 - math.floor(math.log2(top)), 0), MAX_SHIFT - 1)
    m_a, m_b = (int(math.floor(math.ldexp(r, shift) + 0.5)) for r in (r_a, r_b))
    return m_a, m_b, shift


def add(a, b, m_a, m_b, shift, *, out_bits, out_signed):
    """``clamp(round_shift(a·m_a + b·m_b, shift))`` to the ``out_bits``-bit code range.

    Parameters
    ----------
    a, b : int arrays of the same shape
    m_a, m_b : int >= 0
        Multipliers (:func:`add_multipliers`).
    shift : int, 0..62
    out_bits : int, 1..32
    out_signed : bool
        Unsigned output clamps at 0 (a fused ReLU).

    >>> add(np.array([30, -20]), np.array([10, 10]), 128, 51, 8, out_bits=8,
    ...     out_signed=False).tolist()
    [17, 0]
    """
    a = as_int64("a", a)
    b = as_int64("b", b)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {list(a.shape)} and "
                         f"{list(b.shape)}")
    m_a = check_int("m_a", m_a, 0)
    m_b = check_int("m_b", m_b, 0)
    shift = check_int("shift", shift, 0, MAX_SHIFT - 1)
    out_bits = check_int("out_bits", out_bits, 1, 32)
    check_fits_int64("|a·m_a| + |b·m_b|", max_abs(a) * m_a + max_abs(b) * m_b)
    lo, hi = operand_range(out_bits, check_bool("out_signed", out_signed))
    return np.clip(round_shift(a * m_a + b * m_b, shift), lo, hi)


def concat(tensors, axis=1, *, rescales=None, out_bits=None, out_signed=None):
    """Concatenate integer tensors along ``axis`` (channels by default).

    Parameters
    ----------
    tensors : sequence of int arrays
        Equal shapes except along ``axis``.
    axis : int >= 1
        The batch axis 0 cannot be concatenated.
    rescales : sequence of ``(multiplier, shift)`` or None, optional
        Per input: bring it to the output scale with
        :func:`~wrapkit.ref.ops.fixed.rescale` (round half up, clamp), or None for an input
        already at the output scale (it must then lie in the output code range).
    out_bits, out_signed
        Output code range; required with ``rescales``.

    >>> concat([np.array([[1, 2]]), np.array([[10]])], rescales=[None, (1, 1)], out_bits=4,
    ...        out_signed=False).tolist()
    [[1, 2, 5]]
    """
    if isinstance(tensors, np.ndarray) or not len(tensors):
        raise ValueError("tensors must be a non-empty sequence of arrays")
    arrays = [as_int64(f"tensors[{i}]", t, min_ndim=2) for i, t in enumerate(tensors)]
    axis = check_int("axis", axis, 1, arrays[0].ndim - 1)
    if rescales is not None:
        if len(rescales) != len(arrays):
            raise ValueError(f"rescales must have one entry per tensor ({len(arrays)}), got "
                             f"{len(rescales)}")
        out_bits = check_int("out_bits", out_bits, 1, 32, range_in_type_error=True)
        out_signed = check_bool("out_signed", out_signed)
        arrays = [check_bits_range(f"tensors[{i}]", t, out_bits, out_signed) if r is None
                  else rescale(t, r[0], check_int(f"rescales[{i}] shift", r[1], 0, MAX_SHIFT),
                               out_bits, out_signed)
                  for i, (t, r) in enumerate(zip(arrays, rescales))]
    shapes = {t.shape[:axis] + t.shape[axis + 1:] for t in arrays}
    if len(shapes) != 1 or len({t.ndim for t in arrays}) != 1:
        raise ValueError(f"tensors must agree on every axis but {axis}, got shapes "
                         f"{[list(t.shape) for t in arrays]}")
    return np.concatenate(arrays, axis=axis)
