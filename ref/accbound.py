"""Worst-case dot products: the accumulator width a weight tensor can never overflow.

Accumulator-aware quantization (A2Q, A2Q+) promises that every dot product of a layer's
integer weights with inputs in their code range fits a ``P``-bit register. Per output channel
with weights ``w_j`` and inputs ``a_j ∈ [lo, hi]`` chosen independently, the extremes are

    z_max = Σ_j max(w_j·lo, w_j·hi),    z_min = Σ_j min(w_j·lo, w_j·hi)

(attained: pick each ``a_j`` at the end that maximises or minimises its own term), so the
guarantee holds exactly when ``-2^(P-1) <= z_min`` and ``z_max <= 2^(P-1) - 1`` for every
channel. For unsigned codes (``lo = 0``, ``hi = 2^N - 1``) this is
``z_max = hi·Σ w⁺`` and ``z_min = −hi·Σ w⁻``: A2Q bounds ``‖w‖₁`` (both sums together), A2Q+
each of them (zero-centred weights), the reason it allows twice the weight mass.

>>> channel_dot_ranges(np.array([[3, -2, 1]]), (0, 7))
(array([-14]), array([28]))
>>> guaranteed_bits(np.array([[3, -2, 1]]), (0, 7))
6
"""

import numpy as np

from .datapath import signed_bits_for_range

__all__ = ["channel_dot_ranges", "guaranteed_bits"]


def channel_dot_ranges(weight, a_range):
    """Per output channel (axis 0 of ``weight``): the smallest and largest dot product over
    all inputs in ``a_range = (lo, hi)``; two int64 arrays."""
    w = np.asarray(weight).astype(np.int64).reshape(len(weight), -1)
    lo, hi = int(a_range[0]), int(a_range[1])
    if lo > hi:
        raise ValueError(f"a_range must be (lo, hi) with lo <= hi, got {a_range}")
    at_lo, at_hi = w * lo, w * hi
    return np.minimum(at_lo, at_hi).sum(1), np.maximum(at_lo, at_hi).sum(1)


def guaranteed_bits(weight, a_range):
    """The narrowest signed register no input in ``a_range`` can overflow, for any channel."""
    z_min, z_max = channel_dot_ranges(weight, a_range)
    return signed_bits_for_range(int(z_min.min(initial=0)), int(z_max.max(initial=0)))
