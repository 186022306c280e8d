"""Integer semantics of the WrapNet MAC datapath: wrap-around, operands, products, cyclic activation.

Every function is vectorized numpy on int64. The widths involved (at most 62 bits) keep every
intermediate exact in int64, so "wrap to b bits" is always applied to the exact mathematical value.

The key identity the whole project leans on: two's-complement wrap-around is arithmetic modulo
2^b, so accumulating wrapped products in a wrapping b-bit register gives exactly
``wrap(sum(a*w), b)`` — the order of additions and any intermediate overflow do not matter.
A product register narrower than the full product is therefore harmless as long as it is at
least as wide as the accumulator (which :func:`product_bits` guarantees).

Worked example (8-bit accumulator, k = 2): the exact dot product 300 wraps to
``wrap(300, 8) = 300 - 256 = 44``; the cyclic threshold is ``T = floor(2*128/3) = 85`` and
44 <= 85, so the activation is 44. The dot product 100 stays 100 > 85, so the activation folds
back: ``2*(128 - 100) = 56``.
"""

from dataclasses import dataclass, field

import numpy as np

from wrapkit.common.checks import ParameterTypeError, ParameterValueError, check_int

__all__ = [
    "MAX_BITS",
    "WEIGHT_KINDS",
    "MacConfig",
    "as_int64",
    "cyclic",
    "cyclic_threshold",
    "decode_weights",
    "encode_weights",
    "mac_dot",
    "mac_stream",
    "operand_range",
    "product_bits",
    "saturate",
    "signed_bits_for_range",
    "weight_range",
    "wrap",
]

#: Widest register the reference models; keeps every intermediate exact in int64.
MAX_BITS = 62

#: Weight kinds and their hardware encodings (see :func:`encode_weights`).
WEIGHT_KINDS = ("binary", "ternary", "uniform")


def _check_bits(name, bits, lo=1, hi=MAX_BITS):
    return check_int(name, bits, lo, hi)


def as_int64(x):
    """``x`` as an int64 array; floats only when every value is a finite integer (TypeError
    otherwise), so a stray fraction never truncates silently."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "iub":
        if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            return arr.astype(np.int64)
        raise TypeError(f"expected integer values, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def wrap(x, bits):
    """Two's-complement wrap-around of ``x`` to ``bits`` bits (result in [-2^(b-1), 2^(b-1))).

    >>> wrap([127, 128, 300, -129], 8).tolist()
    [127, -128, 44, 127]
    """
    bits = _check_bits("bits", bits)
    x = as_int64(x)
    half = np.int64(1) << (bits - 1)
    mask = (np.int64(1) << bits) - 1
    return ((x + half) & mask) - half


def saturate(x, bits, signed=True):
    """Clamp ``x`` to the range of a ``bits``-bit signed or unsigned integer."""
    lo, hi = operand_range(bits, signed)
    return np.clip(as_int64(x), lo, hi)


def operand_range(bits, signed):
    """Inclusive (min, max) of a ``bits``-bit two's-complement (signed) or unsigned integer."""
    bits = _check_bits("bits", bits)
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def signed_bits_for_range(lo, hi):
    """Fewest bits of a two's-complement register that holds every integer in [lo, hi]."""
    lo, hi = int(lo), int(hi)
    if lo > hi:
        raise ValueError(f"empty range [{lo}, {hi}]")
    bits = 1
    while not (-(1 << (bits - 1)) <= lo and hi <= (1 << (bits - 1)) - 1):
        bits += 1
    return bits


def weight_range(kind, bits=None):
    """Inclusive (min, max) of the weight values of a kind.

    binary: {-1, +1}; ternary: {-1, 0, +1}; uniform: signed ``bits``-bit two's complement.
    """
    kind = _check_kind(kind)
    if kind == "binary":
        return -1, 1
    if kind == "ternary":
        return -1, 1
    return operand_range(_check_bits("weight_bits", bits, 2), True)


def _check_kind(kind):
    if kind not in WEIGHT_KINDS:
        raise ParameterValueError("weight_kind",
                                  f"must be one of {', '.join(WEIGHT_KINDS)}, got {kind!r}")
    return kind


def weight_code_bits(kind, bits=None):
    """Width of a weight's hardware code: binary 1, ternary 2, uniform ``bits``."""
    kind = _check_kind(kind)
    return {"binary": 1, "ternary": 2}.get(kind) or _check_bits("weight_bits", bits, 2)


def encode_weights(values, kind, bits=None):
    """Integer weight values -> unsigned hardware codes.

    * binary: 1 bit, the sign bit: code 0 is +1, code 1 is -1.
    * ternary: 2 bits, {bit1 = negative, bit0 = non-zero}: +1 -> 0b01, -1 -> 0b11, 0 -> 0b00.
      These are the 2-bit two's-complement codes of the values; the spare code 0b10 decodes to 0.
    * uniform: ``bits``-bit two's complement.

    >>> encode_weights([1, -1], "binary").tolist(), encode_weights([-1, 0, 1], "ternary").tolist()
    ([0, 1], [3, 0, 1])
    """
    kind = _check_kind(kind)
    v = as_int64(values)
    lo, hi = weight_range(kind, bits)
    if kind == "binary":
        bad = (v != 1) & (v != -1)
    else:
        bad = (v < lo) | (v > hi)
    if np.any(bad):
        raise ValueError(
            f"{kind} weights must lie in {{-1, +1}}" if kind == "binary"
            else f"{kind} weights must lie in [{lo}, {hi}], got {v[bad].flat[0]}"
        )
    if kind == "binary":
        return (v < 0).astype(np.int64)
    nbits = weight_code_bits(kind, bits)
    return v & ((1 << nbits) - 1)


def decode_weights(codes, kind, bits=None):
    """Unsigned hardware codes -> integer weight values (inverse of :func:`encode_weights`).

    Every code of the width decodes to a value (ternary 0b10 decodes to 0), because the
    hardware must do something defined with every input it can receive.
    """
    kind = _check_kind(kind)
    c = as_int64(codes)
    nbits = weight_code_bits(kind, bits)
    if np.any((c < 0) | (c >= (1 << nbits))):
        raise ValueError(f"{kind} weight codes must lie in [0, {(1 << nbits) - 1}]")
    if kind == "binary":
        return 1 - 2 * c
    if kind == "ternary":
        nonzero = c & 1
        negative = (c >> 1) & 1
        return nonzero * (1 - 2 * negative)
    return wrap(c, nbits)


def product_bits(act_bits, act_signed, weight_kind, weight_bits=None, acc_bits=None):
    """Width of the product (pipeline) register.

    The full product needs ``signed_bits_for_range`` of the extreme products; with an
    accumulator narrower than that, the product register is cut to the accumulator width,
    which loses nothing because the accumulator wraps modulo 2^acc_bits anyway.
    Paper figures: 8x8 signed with a 32-bit accumulator -> 16; 8x8 with an 8-bit accumulator
    -> 8; 3-bit unsigned x binary -> 4.
    """
    a_lo, a_hi = operand_range(act_bits, act_signed)
    w_lo, w_hi = weight_range(weight_kind, weight_bits)
    corners = [a_lo * w_lo, a_lo * w_hi, a_hi * w_lo, a_hi * w_hi]
    full = signed_bits_for_range(min(corners), max(corners))
    if acc_bits is None:
        return full
    return min(full, _check_bits("acc_bits", acc_bits, 2))


def cyclic_threshold(bits, k):
    """T = floor(k * 2^(b-1) / (k+1)): the largest |m| the cyclic activation passes unchanged."""
    bits = _check_bits("acc_bits", bits, 2)
    k = _check_k(k)
    return (k << (bits - 1)) // (k + 1)


def _check_k(k):
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ParameterTypeError("k", f"must be an integer >= 1, not {k!r}")
    if k < 1:
        raise ParameterValueError("k", f"must be >= 1, got {k}")
    return int(k)


def cyclic(z, bits, k):
    """WrapNet's cyclic "smooth modulo" activation in integer form.

    m = wrap(z, b); T = floor(k*2^(b-1)/(k+1));
    f(m) = m for |m| <= T; k*(2^(b-1) - m) for m > T; -k*(2^(b-1) + m) for m < -T.
    The output lies in [-T, T], so it needs ``bits`` bits at most.

    >>> cyclic([44, 100, -100, 128], 8, 2).tolist()
    [44, 56, -56, 0]
    """
    t = cyclic_threshold(bits, k)
    k = int(k)
    m = wrap(z, bits)
    half = np.int64(1) << (bits - 1)
    return np.where(m > t, k * (half - m), np.where(m < -t, -k * (half + m), m))


def _check_operands(a, w_codes, cfg):
    a = as_int64(a)
    w = as_int64(w_codes)
    lo, hi = operand_range(cfg.act_bits, cfg.act_signed)
    if np.any((a < lo) | (a > hi)):
        raise ValueError(f"activations must lie in [{lo}, {hi}] for act_bits={cfg.act_bits}")
    return a, decode_weights(w, cfg.weight_kind, cfg.weight_bits)


@dataclass(frozen=True)
class MacConfig:
    """One MAC unit: multiplier -> product register -> wrapping accumulator -> optional cyclic.

    Parameters
    ----------
    act_bits : int, 1..32
        Activation operand width.
    act_signed : bool
        Activations are two's complement (True) or unsigned (False, WrapNet's post-ReLU codes).
    weight_kind : "binary" | "ternary" | "uniform"
    weight_bits : int or None
        Width of uniform weights (2..16); ignored (None) for binary and ternary.
    acc_bits : int, 2..MAX_BITS
        Accumulator width; it wraps modulo 2^acc_bits.
    k : int or None
        Cyclic activation slope (>= 1), or None for no cyclic unit.
    prod_bits : int
        Derived: see :func:`product_bits`.
    """

    act_bits: int
    act_signed: bool
    weight_kind: str
    weight_bits: int | None
    acc_bits: int
    k: int | None = None
    prod_bits: int = field(init=False)

    def __post_init__(self):
        _check_bits("act_bits", self.act_bits, 1, 32)
        if not isinstance(self.act_signed, (bool, np.bool_)):
            raise TypeError(f"act_signed must be a bool, not {self.act_signed!r}")
        _check_kind(self.weight_kind)
        if self.weight_kind == "uniform":
            _check_bits("weight_bits", self.weight_bits, 2, 16)
        elif self.weight_bits not in (None, weight_code_bits(self.weight_kind)):
            raise ValueError(
                f"weight_bits must be None for {self.weight_kind} weights, got {self.weight_bits}"
            )
        else:
            object.__setattr__(self, "weight_bits", None)
        _check_bits("acc_bits", self.acc_bits, 2)
        if self.k is not None:
            _check_k(self.k)
        object.__setattr__(
            self,
            "prod_bits",
            product_bits(self.act_bits, self.act_signed, self.weight_kind, self.weight_bits,
                         self.acc_bits),
        )

    @property
    def weight_code_bits(self):
        return weight_code_bits(self.weight_kind, self.weight_bits)

    @property
    def out_bits(self):
        """Width of the MAC's final output (accumulator, or cyclic activation when k is set)."""
        return self.acc_bits

    @property
    def name(self):
        """Stable design name, e.g. ``mac_a8s_wu8_acc32`` or ``mac_a3u_wb_acc8_k2``."""
        w = {"binary": "wb", "ternary": "wt"}.get(self.weight_kind, f"wu{self.weight_bits}")
        a = f"a{self.act_bits}{'s' if self.act_signed else 'u'}"
        k = f"_k{self.k}" if self.k is not None else ""
        return f"mac_{a}_{w}_acc{self.acc_bits}{k}"

    def to_dict(self):
        return {
            "act_bits": self.act_bits,
            "act_signed": bool(self.act_signed),
            "weight_kind": self.weight_kind,
            "weight_bits": self.weight_bits,
            "weight_code_bits": self.weight_code_bits,
            "acc_bits": self.acc_bits,
            "prod_bits": self.prod_bits,
            "k": self.k,
        }

    @classmethod
    def from_dict(cls, d):
        return cls(act_bits=d["act_bits"], act_signed=d["act_signed"],
                   weight_kind=d["weight_kind"], weight_bits=d.get("weight_bits"),
                   acc_bits=d["acc_bits"], k=d.get("k"))


def mac_dot(a, w_codes, cfg: MacConfig, axis=-1):
    """Final accumulator and output of one dot product per row, as the MAC computes it.

    Returns ``(acc, out)``: ``acc = wrap(sum(wrap(a*w, prod_bits)), acc_bits)`` (which equals
    ``wrap(sum(a*w), acc_bits)``) and ``out = cyclic(acc)`` when ``cfg.k`` is set, else ``acc``.
    """
    a, w = _check_operands(a, w_codes, cfg)
    prods = wrap(a * w, cfg.prod_bits)
    acc = wrap(prods.sum(axis=axis), cfg.acc_bits)
    out = cyclic(acc, cfg.acc_bits, cfg.k) if cfg.k is not None else acc
    return acc, out


def mac_stream(a, w_codes, en, clr, cfg: MacConfig):
    """Cycle-by-cycle accumulator contents for a stream of MAC operations.

    Operation ``i`` carries operands ``a[i]``, ``w_codes[i]`` and control bits ``en[i]``,
    ``clr[i]``. When it reaches the accumulator the register becomes
    ``(0 if clr[i] else acc) + (product if en[i] else 0)``, wrapped to ``acc_bits``; the product
    register holds ``wrap(a*w, prod_bits)``. Returns ``(acc, out)``, arrays with the
    accumulator (and cyclic output) just after operation ``i`` has been absorbed; in the RTL
    this value is visible ``latency`` cycles after the operation was presented (see the manifest).

    Vectorized with a segmented cumulative sum (segments start at every ``clr``): exact
    because wrap-around is modular.
    """
    a, w = _check_operands(a, w_codes, cfg)
    en = np.asarray(en).astype(bool)
    clr = np.asarray(clr).astype(bool)
    if not (a.shape == w.shape == en.shape == clr.shape) or a.ndim != 1:
        raise ValueError("a, w_codes, en and clr must be 1-D arrays of equal length")
    contrib = np.where(en, wrap(a * w, cfg.prod_bits), 0)
    total = np.cumsum(contrib)
    # Sum of everything before the most recent clear (inclusive of nothing before index 0).
    before = np.concatenate(([0], total[:-1]))
    seg_base = np.where(clr, before, 0)
    seg_start_idx = np.maximum.accumulate(np.where(clr, np.arange(len(a)), 0))
    base = np.where(clr[seg_start_idx], seg_base[seg_start_idx], 0)
    acc = wrap(total - base, cfg.acc_bits)
    out = cyclic(acc, cfg.acc_bits, cfg.k) if cfg.k is not None else acc
    return acc, out
