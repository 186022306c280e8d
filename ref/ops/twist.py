"""TWIST on integer probability codes, and the bounds an attention row's codes give A·V.

TWIST (trivial weights suppression transformation, SATA: seed 000 §4.3, Eq. 4.4–4.17)
takes one row of attention weights, calls a weight *trivial* when it is below a relative
threshold ``t`` times the row maximum, and replaces every trivial weight ``x_j`` by
``s·x_j² / Σ_trivial x_i`` (``s >= 0`` learnable); non-trivial weights pass unchanged.
Lemma 1 of the seed: the trivial weights then sum to at most ``s·x_max`` and none grows
when ``s <= 1``.

Integer semantics
-----------------
On a row of unsigned ``out_bits``-bit probability codes ``p`` (the softmax's output, scale
``1/(2^out_bits − 1)``), with the threshold ``t = t_num / 2^TWIST_SHIFT`` and the scale
``s = s_num / 2^TWIST_SHIFT`` as fixed-point constants::

    m = max_j p_j
    trivial_j  <=>  p_j · 2^TWIST_SHIFT < t_num · m              (exact comparison)
    S = Σ_{trivial} p_i                                           (one sum per row)
    D = max(S, 1) · 2^TWIST_SHIFT
    out_j = p_j                                                   (non-trivial)
    out_j = min(floor((2·s_num·p_j² + D) / (2·D)), 2^out_bits − 1)   (trivial: s·p_j²/S
                                                                    rounded half up)

The codes keep the softmax's scale, so the ``A·V`` matmul that follows reads them unchanged.
A row with ``S = 0`` has only zero trivial codes, which stay 0. The clamp only acts when
``s·t > 1`` (a trivial ``p_j < t·m`` gives ``s·p_j²/S <= s·p_j < s·t·m``).

A·V bound
---------
For probability codes ``p >= 0`` and value codes ``|v| <= V``, every output of ``A·V`` is
``|Σ_j p_j·v_j| <= V·Σ_j p_j``: the row sum of the codes bounds the accumulator, whatever the
sequence length. :func:`probability_row_sum_bound` gives the largest row sum the integer
softmax (and TWIST after it) can produce; :func:`av_accumulator_bits` the register width
that holds ``A·V`` exactly.
"""

import numpy as np

from wrapkit.common.checks import check_int

from .tensors import as_int64, check_fits_int64

__all__ = ["TWIST_SHIFT", "av_accumulator_bits", "probability_row_sum_bound", "twist",
           "twist_constants"]

#: Fraction bits of TWIST's threshold and scale constants.
TWIST_SHIFT = 16
#: Largest scale constant: s < 256.
_MAX_S_NUM = 1 << 24


def twist_constants(t, s):
    """``(t_num, s_num)``: the fixed-point threshold and scale for floats ``t`` and ``s``
    (round half up; ``0 <= t <= 1``, ``0 <= s < 256``).

    >>> twist_constants(0.1, 0.5)
    (6554, 32768)
    """
    t, s = float(t), float(s)
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"t must be in [0, 1], got {t}")
    if not 0.0 <= s < _MAX_S_NUM / (1 << TWIST_SHIFT):
        raise ValueError(f"s must be in [0, 256), got {s}")
    return (int(np.floor(t * (1 << TWIST_SHIFT) + 0.5)),
            int(np.floor(s * (1 << TWIST_SHIFT) + 0.5)))


def twist(p, t_num, s_num, *, out_bits):
    """Integer TWIST over the last axis of probability codes ``p`` (module docstring).

    Parameters
    ----------
    p : int array (..., n), codes in ``[0, 2^out_bits − 1]``
    t_num : int, 0..2^TWIST_SHIFT
        Threshold ``t·2^TWIST_SHIFT``.
    s_num : int, 0..2^24
        Scale ``s·2^TWIST_SHIFT``.
    out_bits : int, 1..16

    >>> twist(np.array([[200, 30, 10, 15]]), 6554, 32768, out_bits=8).tolist()
    [[200, 30, 2, 5]]
    """
    p = as_int64("p", p, min_ndim=1)
    out_bits = check_int("out_bits", out_bits, 1, 16)
    t_num = check_int("t_num", t_num, 0, 1 << TWIST_SHIFT)
    s_num = check_int("s_num", s_num, 0, _MAX_S_NUM)
    top = (1 << out_bits) - 1
    if p.size and (p.min() < 0 or p.max() > top):
        raise ValueError(f"p must hold {out_bits}-bit unsigned codes, got values in "
                         f"[{p.min()}, {p.max()}]")
    check_fits_int64("TWIST's row sum · 2^TWIST_SHIFT", (p.shape[-1] * top) << TWIST_SHIFT)
    m = p.max(axis=-1, keepdims=True)
    trivial = (p << TWIST_SHIFT) < t_num * m
    total = np.where(trivial, p, 0).sum(axis=-1, keepdims=True)
    d = np.maximum(total, 1) << TWIST_SHIFT
    shrunk = np.minimum((2 * s_num * p * p + d) // (2 * d), top)
    return np.where(trivial, shrunk, p)


def probability_row_sum_bound(out_bits, n):
    """Largest row sum of the integer softmax's ``out_bits``-bit codes over ``n`` tokens.

    Each code is ``round_shift(e_j·r, R)`` with ``r = floor((2^b − 1)·2^R / Σe)``, so
    ``Σ_j e_j·r <= (2^b − 1)·2^R`` and each rounding adds at most 1/2:
    ``Σ p_j <= 2^b − 1 + floor(n/2)``. TWIST with ``s <= 1`` never raises a code, so the
    bound holds after it too.

    >>> probability_row_sum_bound(8, 196)
    353
    """
    out_bits = check_int("out_bits", out_bits, 1, 16)
    n = check_int("n", n, 1)
    return (1 << out_bits) - 1 + n // 2


def av_accumulator_bits(out_bits, n, v_bits):
    """Signed register width that holds ``A·V`` exactly for ``out_bits``-bit probability
    codes over ``n`` tokens and signed ``v_bits``-bit values: ``|y| <= 2^(v_bits−1)·R``
    with ``R`` = :func:`probability_row_sum_bound`.

    >>> av_accumulator_bits(8, 196, 8)
    17
    """
    v_bits = check_int("v_bits", v_bits, 1, 32)
    bound = (1 << (v_bits - 1)) * probability_row_sum_bound(out_bits, n)
    return int(bound).bit_length() + 1
