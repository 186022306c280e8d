"""Accumulator modes and the integer GEMM every MAC-type node reduces to.

A MAC-type node (conv2d, linear, matmul) forms dot products ``z = Σ_j a_j·b_j`` over a
reduction index ``j`` and passes them through its accumulator:

========== ==================================================== ================
mode       output                                               order-dependent
========== ==================================================== ================
exact      ``z`` (a register wide enough never to overflow)     no
wrap       ``wrap(z, bits)`` (:func:`wrapkit.ref.wrap`)          no
cyclic     ``cyclic(z, bits, k)`` (:func:`wrapkit.ref.cyclic`)   no
saturate   step-by-step ``acc ← clamp(acc + a_j·b_j)``            **yes**
========== ==================================================== ================

Wrap-around is arithmetic modulo ``2^bits``, so a wrapping register ends with
``wrap(exact sum)`` whatever the order (docs/datapath.md §1): those modes compute the exact
int64 sum once and wrap it. Saturation is not modular — ``clamp(clamp(100 + 100) − 100)``
is 27 for 8 bits, not 100 — so its result depends on the order of the additions, and this
module fixes that order to the one the MAC streams its operands in
(:func:`wrapkit.ref.mac_stream` absorbs operation ``i`` after operation ``i − 1``, and the
engine's layer streams put each dot product's fan-in innermost, in ascending reduction
index): ``j = 0, 1, …, K − 1``. For a convolution ``j`` runs over
``(c_in, ky, kx)`` of the group, PyTorch's weight layout; for linear over the input
features; for matmul over the shared dimension. The accumulator starts at 0 and every
product enters at full width (a saturating datapath must not cut the product register,
unlike a wrapping one, :func:`wrapkit.ref.product_bits`).

Exactness
---------
Every partial sum, in any order, is bounded by ``K · max|a_j·b_j|``
(:func:`dot_product_bound`). The exact modes require that bound below 2^62 and then compute
in int64 without overflow. A fast engine may hand the same GEMM to an **int32** kernel
whenever ``dot_product_bound(...) <= 2^31 − 1``: every partial sum then fits, so the result
is exact in any order (8-bit unsigned codes × int8 weights: ``K <= 65 793``). Two caveats
for such kernels: an int8 kernel that pairs products into int16 first (x86
``vpmaddubsw``) saturates at 2^15 unless ``2·max|a·b| <= 2^15 − 1``; and for ``wrap``/
``cyclic`` with ``bits <= 32`` a kernel whose int32 additions wrap (rather than saturate)
is exact modulo 2^32 for any ``K``, hence gives the same ``wrap(z, bits)``.
"""

from dataclasses import dataclass

import numpy as np

from wrapkit.common.checks import check_int

from ..datapath import MAX_BITS, cyclic, wrap
from .tensors import as_int64, check_fits_int64, check_integer, max_abs

__all__ = ["ACC_MODES", "INT32_MAX", "AccumulatorMode", "dot_product_bound", "integer_matmul"]

ACC_MODES = ("exact", "wrap", "cyclic", "saturate")
INT32_MAX = (1 << 31) - 1


@dataclass(frozen=True)
class AccumulatorMode:
    """How a MAC-type node finishes its dot products.

    Parameters
    ----------
    mode : "exact" | "wrap" | "cyclic" | "saturate"
    bits : int or None
        Register width, 2..62; None for ``exact`` (required otherwise).
    k : int or None
        Cyclic slope >= 1 for ``cyclic``; None otherwise.

    >>> AccumulatorMode("cyclic", 8, 2).finish(np.array([44, 100, 300])).tolist()
    [44, 56, 44]
    """

    mode: str = "exact"
    bits: int | None = None
    k: int | None = None

    def __post_init__(self):
        if self.mode not in ACC_MODES:
            raise ValueError(f"mode must be one of {', '.join(ACC_MODES)}, got {self.mode!r}")
        if self.mode == "exact":
            if self.bits is not None:
                raise ValueError(f"bits must be None for an exact accumulator, got {self.bits!r}")
        else:
            object.__setattr__(self, "bits", check_int("bits", self.bits, 2, MAX_BITS,
                                                       range_in_type_error=True))
        if self.mode == "cyclic":
            object.__setattr__(self, "k", check_int("k", self.k, 1, range_in_type_error=True))
        elif self.k is not None:
            raise ValueError(f"k must be None for a {self.mode} accumulator, got {self.k!r}")

    @property
    def order_dependent(self):
        """True for ``saturate``: the result depends on the reduction order."""
        return self.mode == "saturate"

    def finish(self, z):
        """The output for exact sums ``z`` (every mode but ``saturate``)."""
        if self.mode == "saturate":
            raise ValueError("a saturating accumulator depends on the reduction order; "
                             "use integer_matmul, not finish, on the operands")
        if self.mode == "exact":
            return as_int64("z", z)
        if self.mode == "wrap":
            return wrap(z, self.bits)
        return cyclic(z, self.bits, self.k)

    def to_dict(self):
        return {"mode": self.mode, "bits": self.bits, "k": self.k}

    @classmethod
    def from_dict(cls, d):
        return cls(d["mode"], d.get("bits"), d.get("k"))


def dot_product_bound(fan_in, a_range, b_range):
    """Largest ``|partial sum|`` of a dot product of length ``fan_in``, in any order.

    Parameters
    ----------
    fan_in : int >= 0
    a_range, b_range : (lo, hi)
        Inclusive operand ranges.

    >>> dot_product_bound(576, (0, 255), (-128, 127))
    18800640
    """
    fan_in = check_int("fan_in", fan_in, 0)
    (a_lo, a_hi), (b_lo, b_hi) = a_range, b_range
    corners = (a_lo * b_lo, a_lo * b_hi, a_hi * b_lo, a_hi * b_hi)
    return fan_in * max(abs(int(c)) for c in corners)


def integer_matmul(a, b, acc=AccumulatorMode(), gemm=None, *, a_max=None):
    """``a @ b`` over the last axis of ``a``, finished by the accumulator ``acc``.

    Parameters
    ----------
    a : int array (..., M, K)
    b : int array (..., K, N)
        Leading axes broadcast as in ``numpy.matmul``.
    acc : AccumulatorMode
    gemm : callable ``(a, b, bound) -> int64 a @ b`` or None
        A faster kernel for the exact sums of the order-free modes (exact, wrap, cyclic);
        it gets the operands in their own (possibly narrower) integer types and ``bound``,
        the largest ``|partial sum|`` (:func:`dot_product_bound`), and must return the exact
        sums (module docstring: when float or int32 kernels are exact). None: numpy's int64
        matmul. A saturating accumulator always runs here.
    a_max : int or None
        A known bound on ``max|a|`` (saves a pass over large operands, e.g. convolution
        patches bounded by their input); None: computed.

    Returns
    -------
    int64 array (..., M, N)
        Reduction index ``j`` runs ``0..K-1`` (the order that matters for ``saturate``).

    Raises
    ------
    ValueError
        Mismatched shapes, or ``K·max|a|·max|b| >= 2^62`` (int64 would not be exact).
    """
    a = check_integer("a", a, min_ndim=2)
    b = check_integer("b", b, min_ndim=2)
    if not isinstance(acc, AccumulatorMode):
        raise TypeError(f"acc must be an AccumulatorMode, not {acc!r}")
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"a has {a.shape[-1]} columns but b has {b.shape[-2]} rows")
    fan_in = a.shape[-1]
    bound = fan_in * (max_abs(a) if a_max is None else a_max) * max_abs(b)
    check_fits_int64("the dot products' magnitude K·max|a|·max|b|", bound)
    if acc.mode != "saturate":
        if gemm is not None:
            return acc.finish(as_int64("gemm result", gemm(a, b, bound)))
        return acc.finish(np.matmul(a.astype(np.int64, copy=False),
                                    b.astype(np.int64, copy=False)))
    a = a.astype(np.int64, copy=False)
    b = b.astype(np.int64, copy=False)
    lo, hi = -(1 << (acc.bits - 1)), (1 << (acc.bits - 1)) - 1
    out = np.zeros(np.broadcast_shapes(a.shape[:-1] + (1,), b.shape[:-2] + (1, b.shape[-1])),
                   dtype=np.int64)
    for j in range(fan_in):
        out += a[..., :, j:j + 1] * b[..., j:j + 1, :]
        np.clip(out, lo, hi, out=out)
    return out
