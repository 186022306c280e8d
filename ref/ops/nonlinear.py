"""Integer softmax and layer norm after I-BERT (Kim et al., ICML 2021), and integer sqrt.

All three are exact integer definitions: the float numbers of I-BERT (the input scale, the
polynomial's coefficients, γ and β) enter only through integer constants computed once at
export (:meth:`ExpConstants.from_scale`, :func:`layer_norm_constants`).

i-exp (I-BERT §3.4, Algorithm 2)
---------------------------------
For max-subtracted scores ``d <= 0`` of scale ``S`` (real ``x = S·d``), write
``x = −ln2·z + p`` with ``z = floor(−d / q_ln2)``, ``p = d + z·q_ln2 ∈ (−q_ln2, 0]`` and
evaluate I-BERT's second-order fit ``exp(p) ≈ a·(p² + b'·p + c')`` (``a = 0.35815147``,
``b' = 0.96963238 / a``, ``c' = 1 / a``, the coefficients of I-BERT's reference code)::

    L = max(p·(p + q_b) + q_c, 0)      q_ln2 = floor(ln2 / S), q_b = floor(b' / S),
    i_exp(d) = L >> min(z, 62)         q_c = floor(c' / S²);   output scale a·S²

Softmax
-------
Over the last axis (row length ``n``), to unsigned ``out_bits``-bit probability codes of
scale ``1 / (2^out_bits − 1)``, with one integer reciprocal per row (``R = SOFTMAX_SHIFT``)::

    e = i_exp(q − max(q));   r = floor((2^out_bits − 1)·2^R / Σe);   p = round_shift(e·r, R)

Every ``p`` lies in ``[0, 2^out_bits − 1]`` (``e <= Σe``), each is within 1/2 + ε of
``(2^out_bits − 1)·e / Σe``, so a row sums to ``2^out_bits − 1`` within ``n/2 + 1``.

Layer norm (I-BERT §3.5)
------------------------
Over the last axis (``n`` channels), with per-channel constants ``m_c, b_c`` and a shift::

    μ = floor(Σq / n + 1/2);  y = q − μ;  v = Σy²;  r = max(isqrt(v), 1)
    u = y · floor(2^NORM_BITS / r)                 (|u| <= 2^NORM_BITS; ≈ 2^31·y/(√n·σ))
    out = clamp(round_shift(u·m_c + b_c, shift))   (the fixed-point affine γ, β)

``isqrt`` is the exact ``floor(√v)`` by I-BERT's Newton iteration (Algorithm 4). A
constant row (``v = 0``) gives ``y = 0`` and so the output ``round_shift(b_c, shift)``
(β); there is no ε.
"""

import math
from dataclasses import dataclass

import numpy as np

from wrapkit.common.checks import check_int, check_positive_float

from ..datapath import operand_range
from .fixed import MAX_SHIFT, round_shift
from .tensors import as_int64, check_bool, check_fits_int64, max_abs

__all__ = ["I_EXP_COEFFICIENTS", "NORM_BITS", "SOFTMAX_SHIFT", "ExpConstants", "i_exp",
           "isqrt", "layer_norm", "layer_norm_constants", "softmax"]

#: I-BERT's fit exp(p) ≈ a·p² + b·p + c on (−ln2, 0] (its reference code's constants).
I_EXP_COEFFICIENTS = (0.35815147, 0.96963238, 1.0)
#: Reciprocal precision of the softmax: (2^16 − 1)·2^46 < 2^62 keeps e·r exact in int64.
SOFTMAX_SHIFT = 46
#: Precision of the layer norm's per-row reciprocal ``floor(2^NORM_BITS / r)``.
NORM_BITS = 31


@dataclass(frozen=True)
class ExpConstants:
    """Integer constants of i-exp: ``q_ln2 >= 1``, ``q_b >= 0``, ``q_c >= 1``."""

    q_ln2: int
    q_b: int
    q_c: int

    def __post_init__(self):
        check_int("q_ln2", self.q_ln2, 1, 1 << 30, range_in_type_error=True)
        check_int("q_b", self.q_b, 0, 1 << 31, range_in_type_error=True)
        check_int("q_c", self.q_c, 1, 1 << 61, range_in_type_error=True)

    @classmethod
    def from_scale(cls, scale):
        """The constants for input scale ``S`` (I-BERT's floors).

        >>> ExpConstants.from_scale(1 / 16)
        ExpConstants(q_ln2=11, q_b=43, q_c=714)
        """
        s = check_positive_float("scale", scale)
        a, b, c = I_EXP_COEFFICIENTS
        if s > math.log(2) or s < 2.0 ** -28:
            raise ValueError(f"scale must be in [2^-28, ln 2] for i-exp, got {s}")
        return cls(int(math.floor(math.log(2) / s)), int(math.floor(b / a / s)),
                   int(math.floor(c / a / s ** 2)))

    @property
    def output_scale_factor(self):
        """``a``: the output scale of :func:`i_exp` is ``a·S²``."""
        return I_EXP_COEFFICIENTS[0]

    def to_dict(self):
        return {"q_ln2": self.q_ln2, "q_b": self.q_b, "q_c": self.q_c}


def i_exp(d, consts):
    """I-BERT's integer exponential of max-subtracted scores ``d <= 0`` (module docstring).

    >>> i_exp(np.array([0, -11, -12, -40]), ExpConstants(11, 43, 714)).tolist()
    [714, 357, 336, 57]
    """
    d = as_int64("d", d)
    if not isinstance(consts, ExpConstants):
        raise TypeError(f"consts must be an ExpConstants, not {consts!r}")
    if d.size and d.max() > 0:
        raise ValueError(f"d must be <= 0 (subtract the row maximum first), got {d.max()}")
    z = (-d) // consts.q_ln2
    p = d + z * consts.q_ln2
    poly = np.maximum(p * (p + consts.q_b) + consts.q_c, 0)
    return poly >> np.minimum(z, 62)


def softmax(q, consts, *, out_bits):
    """Integer softmax over the last axis to ``out_bits``-bit probability codes (1..16 bits).

    >>> softmax(np.array([[0, -11, -40]]), ExpConstants(11, 43, 714), out_bits=8).tolist()
    [[161, 81, 13]]
    """
    q = as_int64("q", q, min_ndim=2)
    out_bits = check_int("out_bits", out_bits, 1, 16)
    e = i_exp(q - q.max(axis=-1, keepdims=True), consts)
    check_fits_int64("a row's Σ i_exp", q.shape[-1] * consts.q_c)
    total = e.sum(axis=-1, keepdims=True)
    r = (((1 << out_bits) - 1) << SOFTMAX_SHIFT) // total
    return round_shift(e * r, SOFTMAX_SHIFT)


def isqrt(v):
    """``floor(√v)`` of int64 ``v >= 0`` by Newton's iteration from above (I-BERT Alg. 4).

    >>> isqrt(np.array([0, 1, 15, 16, 2**62 - 1])).tolist()
    [0, 1, 3, 4, 2147483647]
    """
    v = as_int64("v", v)
    if v.size and v.min() < 0:
        raise ValueError(f"v must be >= 0, got {v.min()}")
    # x0 = 2^ceil(bits(v)/2) >= √v; float rounding can only raise the exponent.
    _, exp = np.frexp(v.astype(np.float64))
    x = np.left_shift(np.int64(1), (exp.astype(np.int64) + 1) // 2)
    while True:
        # Every floor(√v) with v >= 1 is >= 1, so x never needs to drop below 1.
        nxt = np.maximum((x + v // x) >> 1, 1)
        done = nxt >= x
        if np.all(done):
            return np.where(v == 0, 0, x)
        x = np.where(done, x, nxt)


def layer_norm_constants(gamma, beta, *, n, out_scale, mult_bits=16):
    """Per-channel ``(m, b, shift)`` of :func:`layer_norm` for float ``γ, β`` (length ``n``).

    ``m_c ≈ γ_c·√n·2^(shift − NORM_BITS) / out_scale`` and
    ``b_c ≈ β_c·2^shift / out_scale`` (round half up), with one shift for all channels
    that gives the largest ``|m_c|`` ``mult_bits`` significant bits.
    """
    n = check_int("n", n, 1)
    s_out = check_positive_float("out_scale", out_scale)
    mult_bits = check_int("mult_bits", mult_bits, 2, 30)
    gamma = np.asarray(gamma, dtype=np.float64)
    beta = np.asarray(beta, dtype=np.float64)
    if gamma.shape != (n,) or beta.shape != (n,):
        raise ValueError(f"gamma and beta must have shape [{n}], got {list(gamma.shape)} and "
                         f"{list(beta.shape)}")
    if not (np.all(np.isfinite(gamma)) and np.all(np.isfinite(beta))):
        raise ValueError("gamma and beta must be finite")
    ratio = gamma * math.sqrt(n) / (s_out * 2.0 ** NORM_BITS)
    top = float(np.abs(ratio).max())
    shift = MAX_SHIFT - 1 if top == 0 else mult_bits - 1 - math.floor(math.log2(top))
    shift = min(max(shift, 0), MAX_SHIFT - 1)
    m = np.floor(np.ldexp(ratio, shift) + 0.5).astype(np.int64)
    b = np.floor(np.ldexp(beta / s_out, shift) + 0.5)
    if np.abs(b).max() >= 2.0 ** 61 or np.abs(m).max() >= 2.0 ** 30:
        raise ValueError("beta / out_scale or gamma / out_scale is too large for the layer "
                         "norm's fixed-point affine")
    return m, b.astype(np.int64), shift


def layer_norm(q, m, b, shift, *, out_bits, out_signed):
    """I-BERT integer layer norm over the last axis with a fixed-point affine (module doc).

    Parameters
    ----------
    q : int array (..., n)
    m, b : int arrays (n,) or ints
    shift : int, 0..61
    out_bits : int, 1..32
    out_signed : bool

    >>> m, b, shift = layer_norm_constants([1.0] * 4, [0.0] * 4, n=4, out_scale=1 / 16)
    >>> layer_norm(np.array([[10, 20, 30, 60]]), m, b, shift, out_bits=8,
    ...            out_signed=True).tolist()
    [[-17, -9, 0, 26]]
    """
    q = as_int64("q", q, min_ndim=2)
    n = q.shape[-1]
    m = as_int64("m", m)
    b = as_int64("b", b)
    for name, arr in (("m", m), ("b", b)):
        if arr.ndim > 1 or (arr.ndim == 1 and len(arr) != n):
            raise ValueError(f"{name} must be an integer or have one value per channel ({n}), "
                             f"got shape {list(arr.shape)}")
    shift = check_int("shift", shift, 0, MAX_SHIFT - 1)
    out_bits = check_int("out_bits", out_bits, 1, 32)
    # |q − μ| <= 2·max|q|, so Σy² <= n·4·max|q|².
    check_fits_int64("the layer norm's Σ(q − μ)²", n * 4 * max_abs(q) ** 2)
    check_fits_int64("|u·m| + |b|", (max_abs(m) << NORM_BITS) + max_abs(b))
    mu = (2 * q.sum(axis=-1, keepdims=True) + n) // (2 * n)
    y = q - mu
    r = np.maximum(isqrt((y * y).sum(axis=-1, keepdims=True)), 1)
    u = y * ((1 << NORM_BITS) // r)
    lo, hi = operand_range(out_bits, check_bool("out_signed", out_signed))
    return np.clip(round_shift(u * m + b, shift), lo, hi)
