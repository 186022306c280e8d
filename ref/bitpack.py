"""Bit-packing (SWAR) arithmetic on CPUs without vector instructions, bit-exact.

Several narrow integers ("lanes") share one 32- or 64-bit word and are added with the CPU's
ordinary scalar adder. Three semantics are modelled (``PackSpec.mode``):

``"carry"``
    A scalar adder: a lane that overflows passes its carry into the next lane up (carry
    contamination, WrapNet §2.3.4). The top lane's carry leaves the lanes and is dropped, as
    in any scalar register; bits above the top lane are kept zero.
``"isolated"``
    What a vector unit does: each lane wraps modulo ``2^b`` on its own. (A CPU without vector
    instructions can still get this with the SWAR identity in :func:`packed_add`.)
``"buffer"``
    Each ``b``-bit lane holds ``b-1`` data bits under one guard ("buffer") bit. The scalar adder
    runs, then the guard bits are cleared with one AND, so every lane wraps modulo ``2^(b-1)``.

Layout: lane ``j`` occupies bits ``[j*b, (j+1)*b)`` of the word (lane 0 least significant);
a stream of terms ``v_0, v_1, ...`` is packed term ``i`` -> word ``i // L``, lane ``i % L``
(the paper's "bit-pack groups of numbers v_i into ceil(n/L) registers"), zero-padded. After the
words are accumulated, the ``L`` lanes are added into one scalar ``d``-bit register
(:func:`lane_reduce`), ``d`` being the data width (``b``, or ``b-1`` with a buffer bit).

Why carries matter, in one line: with ``S_j`` the sum of lane ``j``'s unsigned codes and
``c_j = floor((S_j + c_(j-1)) / 2^b)`` the carries out of lane ``j``, the packed dot product is
``wrap_b(sum(v) + sum_(j<L-1) c_j)``; the contamination ``C = sum_(j<L-1) c_j`` is what the
carry correction subtracts (:func:`carry_correct`). Every addition of a negative number
(unsigned code ``2^b - |v|``) tends to produce one carry, so ``C`` is large.

Algorithm 1 of the paper (App. 2.6.1) is a simpler per-neuron model used in training: it sums
the unsigned codes ``u`` of a whole dot product in one ``b``-bit register and feeds every carry
back into that register until none is left ("end-around carry"); :func:`alg1_carries` gives
its closed form ``r = 1 + (u-1) mod (2^b-1)``, ``c = (u - r) / (2^b - 1)``.

Worked example (4 lanes of 8 bits in 32 bits, terms ``[3, -2, 5, 1, -1, 4, 0, 2]``):
words ``0x0105FE03`` and ``0x020004FF``; carry mode: lane 0 gets ``0x03 + 0xFF = 0x102`` (a
carry into lane 1), lane 1 ``0xFE + 0x04 + 1 = 0x103`` (a carry into lane 2), lane 2
``0x05 + 0x00 + 1 = 6``, lane 3 ``1 + 2 = 3``; the packed result is ``2 + 3 + 6 + 3 = 14``
while the true sum is 12: ``C = 2`` carries contaminated it, and ``carry_correct(14, 2, 8)``
gives 12. Isolated lanes give ``2 + 2 + 5 + 3 = 12`` directly.

All functions are vectorized numpy: words are ``uint64`` (a 32-bit word lives in the low half,
the high half kept zero), lane values ``int64``. Wrap-around in ``uint64`` sums is exact
because ``2^(L*b)`` divides ``2^64``.
"""

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from wrapkit.common.checks import ParameterValueError, check_int

from .datapath import as_int64, wrap

__all__ = [
    "PACK_MODES",
    "WORD_BITS",
    "Accumulated",
    "PackSpec",
    "PackedDot",
    "StreamTrace",
    "accumulate",
    "accumulate_steps",
    "add_with_carries",
    "alg1_carries",
    "alg1_carries_iterative",
    "carry_correct",
    "contamination",
    "lane_carries",
    "lane_fields",
    "lane_reduce",
    "not_negate_terms",
    "pack",
    "pack_stream",
    "packed_add",
    "packed_dot",
    "packed_gemm",
    "packed_stream",
    "unpack",
    "unsigned_view",
]

#: Lane semantics (see the module docstring).
PACK_MODES = ("carry", "isolated", "buffer")
#: Supported machine word widths.
WORD_BITS = (32, 64)

_U64 = np.uint64


@dataclass(frozen=True)
class PackSpec:
    """How lanes sit in a machine word, and how the word is added.

    Parameters
    ----------
    lane_bits : int, 2..word_bits
        ``b``, the width of one lane including the guard bit in ``"buffer"`` mode.
    lanes : int, 1..word_bits // lane_bits
        ``L``, the number of lanes in a word.
    word_bits : 32 | 64
        The scalar register width.
    mode : "carry" | "isolated" | "buffer"

    Raises
    ------
    TypeError
        A width that is not an integer.
    ValueError
        ``word_bits`` not 32/64, ``lane_bits`` < 2 or wider than the word, lanes that do not
        fit the word, or an unknown mode; the message names the parameter, range and value.

    Examples
    --------
    >>> s = PackSpec(lane_bits=8, lanes=4, word_bits=32, mode="buffer")
    >>> s.data_bits, hex(s.guard_mask)
    (7, '0x80808080')
    """

    lane_bits: int = 8
    lanes: int = 4
    word_bits: int = 32
    mode: str = "carry"

    def __post_init__(self):
        word_bits = check_int("word_bits", self.word_bits)
        if word_bits not in WORD_BITS:
            raise ParameterValueError("word_bits", f"must be 32 or 64, got {word_bits}")
        b = check_int("lane_bits", self.lane_bits)
        if not 2 <= b <= word_bits:
            raise ParameterValueError("lane_bits", f"must be in [2, {word_bits}], got {b}")
        lanes = check_int("lanes", self.lanes)
        if not 1 <= lanes <= word_bits // b:
            raise ParameterValueError(
                "lanes", f"must be in [1, {word_bits // b}] for lane_bits={b} in a "
                         f"{word_bits}-bit word, got {lanes}")
        if self.mode not in PACK_MODES:
            raise ValueError(f"mode must be one of {', '.join(PACK_MODES)}, got {self.mode!r}")

    # Derived constants, Python ints (exact up to 64 bits).
    @property
    def data_bits(self):
        """``d``: bits of a lane that hold data (``b - 1`` in buffer mode, else ``b``)."""
        return self.lane_bits - 1 if self.mode == "buffer" else self.lane_bits

    @property
    def used_bits(self):
        return self.lanes * self.lane_bits

    @property
    def used_mask(self):
        """Ones over all lanes; bits above the top lane are always zero."""
        return (1 << self.used_bits) - 1

    @property
    def guard_mask(self):
        """The top bit of every lane: the buffer bits, and the SWAR isolation mask."""
        return sum(1 << (j * self.lane_bits + self.lane_bits - 1) for j in range(self.lanes))

    @property
    def data_mask_word(self):
        """Every lane's data field set (the NOT-negation mask of :func:`not_negate_terms`)."""
        return sum(((1 << self.data_bits) - 1) << (j * self.lane_bits) for j in range(self.lanes))

    def with_mode(self, mode):
        return PackSpec(self.lane_bits, self.lanes, self.word_bits, mode)

    def to_dict(self):
        return {"lane_bits": self.lane_bits, "lanes": self.lanes, "word_bits": self.word_bits,
                "mode": self.mode, "data_bits": self.data_bits}


def _check_spec(spec):
    if not isinstance(spec, PackSpec):
        raise TypeError(f"spec must be a PackSpec, not {type(spec).__name__}")
    return spec


def _as_words(words, spec):
    w = np.asarray(words)
    if w.dtype.kind not in "iu":
        raise TypeError(f"words must be integers, got dtype {w.dtype}")
    if w.dtype.kind == "i" and np.any(w < 0):
        raise ValueError("words must be non-negative (unsigned machine words)")
    w = w.astype(_U64)
    if np.any(w & _U64(~spec.used_mask & ((1 << 64) - 1))):
        raise ValueError(
            f"words must fit the {spec.used_bits} lane bits (mask {spec.used_mask:#x}); "
            "bits above the top lane are never set"
        )
    return w


def pack(values, spec):
    """Pack ``values[..., L]`` (one value per lane) into words ``[...]`` (uint64).

    Each value goes into its lane's data field as a ``d``-bit two's-complement code, so it
    must lie in ``[-2^(d-1), 2^d - 1]`` (signed or unsigned ``d``-bit numbers both fit).

    >>> hex(int(pack([3, -2, 5, 1], PackSpec())))
    '0x105fe03'
    """
    spec = _check_spec(spec)
    v = as_int64(values)
    if v.ndim == 0 or v.shape[-1] != spec.lanes:
        raise ValueError(f"values must have a last axis of length lanes={spec.lanes}, "
                         f"got shape {v.shape}")
    d = spec.data_bits
    lo, hi = -(1 << (d - 1)), (1 << d) - 1
    if np.any((v < lo) | (v > hi)):
        bad = v[(v < lo) | (v > hi)].flat[0]
        raise ValueError(f"values must lie in [{lo}, {hi}] for {d} data bits, got {bad}")
    codes = (v & ((1 << d) - 1)).astype(_U64)
    shifts = (np.arange(spec.lanes, dtype=_U64) * _U64(spec.lane_bits))
    return np.bitwise_or.reduce(codes << shifts, axis=-1)


def lane_fields(words, spec):
    """The full ``b``-bit field of every lane, unsigned: ``int64[..., L]`` (guard bit included)."""
    spec = _check_spec(spec)
    w = _as_words(words, spec)
    shifts = np.arange(spec.lanes, dtype=_U64) * _U64(spec.lane_bits)
    return ((w[..., None] >> shifts) & _U64((1 << spec.lane_bits) - 1)).astype(np.int64)


def unpack(words, spec, signed=True):
    """Lane data fields of ``words`` -> ``int64[..., L]``; inverse of :func:`pack`.

    ``signed`` reinterprets each ``d``-bit field as two's complement. In buffer mode the guard
    bit is not part of the data and is ignored.
    """
    spec = _check_spec(spec)
    f = lane_fields(words, spec) & ((1 << spec.data_bits) - 1)
    return wrap(f, spec.data_bits) if signed else f


def pack_stream(terms, spec):
    """Pack a stream of terms ``[..., N]`` into words ``[..., ceil(N/L)]``.

    Term ``i`` goes to word ``i // L``, lane ``i % L``; the last word is zero-padded.
    """
    spec = _check_spec(spec)
    t = as_int64(terms)
    if t.ndim == 0:
        raise ValueError("terms must have at least one axis (the reduction axis, last)")
    n = t.shape[-1]
    pad = (-n) % spec.lanes
    if pad:
        t = np.concatenate([t, np.zeros(t.shape[:-1] + (pad,), np.int64)], axis=-1)
    return pack(t.reshape(t.shape[:-1] + (-1, spec.lanes)), spec)


def packed_add(x, y, spec):
    """One addition of two packed words with the semantics of ``spec.mode``.

    * carry: ``(x + y) & used_mask`` - the scalar adder.
    * isolated: ``((x & ~H) + (y & ~H)) ^ ((x ^ y) & H)`` with ``H`` the lane top bits - the
      SWAR identity: add the low ``b-1`` bits of every lane (no carry can leave a lane), then
      set each top bit to the XOR of the two top bits and the carry into it.
    * buffer: ``(x + y) & used_mask & ~G`` with ``G`` the guard bits - scalar add, then clear.
    """
    spec = _check_spec(spec)
    x, y = _as_words(x, spec), _as_words(y, spec)
    used = _U64(spec.used_mask)
    if spec.mode == "carry":
        return (x + y) & used
    h = _U64(spec.guard_mask)
    if spec.mode == "isolated":
        low = ~h & used
        return (((x & low) + (y & low)) ^ ((x ^ y) & h)) & used
    return (x + y) & used & ~h


class Accumulated(NamedTuple):
    """Final accumulator word and carries out of each lane, ``int64[..., L]``.

    ``carries[..., j]`` counts the additions in which lane ``j``'s field overflowed: in carry
    mode that carry entered lane ``j+1`` (the top lane's left the word); in isolated mode it
    was discarded; in buffer mode it set the guard bit, which was then cleared.
    """

    word: np.ndarray
    carries: np.ndarray


def add_with_carries(x, y, spec):
    """:func:`packed_add` plus each lane's overflow flag, ``int64[..., L]`` (0 or 1).

    The flag of lane ``j`` is the carry out of its field (carry mode: into lane ``j+1``, or out
    of the word for the top lane; isolated: discarded), or in buffer mode the carry into its
    guard bit. Computed by an explicit per-lane ripple, independent of :func:`packed_add`.
    """
    spec = _check_spec(spec)
    x, y = _as_words(x, spec), _as_words(y, spec)
    fx, fy = lane_fields(x, spec), lane_fields(y, spec)
    b, d = spec.lane_bits, spec.data_bits
    dmask = (1 << d) - 1
    cin = np.zeros(np.broadcast_shapes(x.shape, y.shape), np.int64)
    flags = np.zeros(cin.shape + (spec.lanes,), np.int64)
    for j in range(spec.lanes):
        if spec.mode == "buffer":
            flags[..., j] = ((fx[..., j] & dmask) + (fy[..., j] & dmask) + cin) >> d
            cin = (fx[..., j] + fy[..., j] + cin) >> b
        else:
            s = fx[..., j] + fy[..., j] + (cin if spec.mode == "carry" else 0)
            cin = s >> b
            flags[..., j] = cin
    return packed_add(x, y, spec), flags


def accumulate_steps(words, spec, init=0):
    """Accumulate ``words[..., N]`` one addition at a time (the reference by construction).

    Starts from ``init`` (a word, broadcast) and applies :func:`add_with_carries` along the
    last axis, summing the overflow flags. Slow (a Python loop over N); :func:`accumulate` is
    its closed form.
    """
    spec = _check_spec(spec)
    w = _as_words(words, spec)
    acc = np.broadcast_to(_as_words(init, spec), w.shape[:-1]).copy()
    carries = np.zeros(w.shape[:-1] + (spec.lanes,), np.int64)
    for t in range(w.shape[-1]):
        acc, flags = add_with_carries(acc, w[..., t], spec)
        carries += flags
    return Accumulated(acc, carries)


class StreamTrace(NamedTuple):
    """Per-cycle contents of a packed accumulator register (see :func:`packed_stream`)."""

    acc: np.ndarray
    flags: np.ndarray
    total: np.ndarray


def packed_stream(words, en, clr, modes, spec):
    """Cycle-by-cycle packed accumulator with enable, clear and a per-cycle mode.

    Operation ``i`` makes the register ``packed_add(0 if clr[i] else acc, x if en[i] else 0)``
    in mode ``modes[i]`` (an index into :data:`PACK_MODES`, or a mode name); ``spec.mode`` is
    ignored. Returns :class:`StreamTrace` with, just after operation ``i``: ``acc[i]`` the
    word, ``flags[i, j]`` the lane overflow flags of that addition (:func:`add_with_carries`)
    and ``total[i]`` the lane reduction :func:`lane_reduce` in that cycle's mode. This is the
    behaviour of :class:`wrapkit.hw.packed_adder.PackedAccumulator`.
    """
    spec = _check_spec(spec)
    w = _as_words(words, spec)
    en = np.asarray(en).astype(bool)
    clr = np.asarray(clr).astype(bool)
    m = np.asarray(modes)
    if m.dtype.kind in "US":
        m = np.array([PACK_MODES.index(str(v)) for v in m], np.int64)
    if not (w.ndim == 1 and w.shape == en.shape == clr.shape == m.shape):
        raise ValueError("words, en, clr and modes must be 1-D arrays of equal length")
    if np.any((m < 0) | (m >= len(PACK_MODES))):
        raise ValueError(f"modes must lie in [0, {len(PACK_MODES) - 1}]")
    n = len(w)
    acc_out = np.zeros(n, _U64)
    flags_out = np.zeros((n, spec.lanes), np.int64)
    total = np.zeros(n, np.int64)
    specs = [spec.with_mode(mode) for mode in PACK_MODES]
    acc = _U64(0)
    for i in range(n):
        s = specs[int(m[i])]
        acc, flags_out[i] = add_with_carries(_U64(0) if clr[i] else acc,
                                             w[i] if en[i] else _U64(0), s)
        acc_out[i] = acc
        total[i] = lane_reduce(acc, s)
    return StreamTrace(acc_out, flags_out, total)


def lane_carries(lane_sums, lane_bits):
    """Carries out of each lane after a carry-mode accumulation, from the lane sums.

    ``lane_sums[..., j]`` is ``S_j``, the exact sum of lane ``j``'s unsigned ``b``-bit codes
    over all added words (the initial word included). Lane ``j`` receives every carry of lane
    ``j-1`` and its field only ever grows, so it overflowed ``c_j = floor((S_j + c_(j-1)) / 2^b)``
    times. ``c_(L-1)`` is the top lane's carries, which leave the word.
    """
    b = check_int("lane_bits", lane_bits)
    if not 2 <= b <= 62:
        raise ValueError(f"lane_bits must be in [2, 62], got {b}")
    s = as_int64(lane_sums)
    out = np.empty_like(s)
    c = np.zeros(s.shape[:-1], np.int64)
    for j in range(s.shape[-1]):
        c = (s[..., j] + c) >> b
        out[..., j] = c
    return out


def _check_sum_range(n_words, spec):
    # Exact lane sums in int64 need N * 2^b < 2^62.
    if spec.lane_bits > 40 or n_words >= (1 << (62 - spec.lane_bits)):
        raise ValueError(
            f"closed-form lane sums need lane_bits <= 40 and fewer than 2^(62 - lane_bits) "
            f"words, got lane_bits={spec.lane_bits}, {n_words} words; use accumulate_steps"
        )


def accumulate(words, spec, init=0):
    """Closed form of :func:`accumulate_steps` (same results, vectorized, no loop over N).

    * carry: the word is the modular sum of all words; carries by :func:`lane_carries`.
    * isolated: every lane sums its fields modulo ``2^b``; ``floor(S_j / 2^b)`` overflows.
    * buffer: exact when every input word has its guard bits clear (which :func:`pack`
      guarantees): each lane sums its data fields modulo ``2^(b-1)``. Raises ValueError for
      words with a guard bit set, whose carries would cross lanes.
    """
    spec = _check_spec(spec)
    w = _as_words(words, spec)
    init = np.broadcast_to(_as_words(init, spec), w.shape[:-1])
    _check_sum_range(w.shape[-1] + 1, spec)
    if spec.mode == "buffer":
        if np.any(w & _U64(spec.guard_mask)) or np.any(init & _U64(spec.guard_mask)):
            raise ValueError("buffer-mode words must have their guard bits clear "
                             f"(mask {spec.guard_mask:#x}); pack() produces such words")
    sums = lane_fields(w, spec).sum(axis=-2) + lane_fields(init, spec)
    if spec.mode == "carry":
        word = (w.sum(axis=-1, dtype=_U64) + init) & _U64(spec.used_mask)
        return Accumulated(word, lane_carries(sums, spec.lane_bits))
    d = spec.data_bits
    fields = sums & ((1 << d) - 1)
    shifts = np.arange(spec.lanes, dtype=_U64) * _U64(spec.lane_bits)
    word = np.bitwise_or.reduce(fields.astype(_U64) << shifts, axis=-1)
    return Accumulated(word, sums >> d)


def lane_reduce(words, spec, offset=0):
    """Add the lanes of each word into one scalar ``d``-bit register: ``wrap_d(sum_j f_j + offset)``.

    ``f_j`` are the lane data fields (signed or unsigned does not matter modulo ``2^d``);
    ``offset`` is a per-output constant added in the same register (the number of NOT-negated
    terms, see :func:`not_negate_terms`).
    """
    spec = _check_spec(spec)
    f = unpack(words, spec, signed=False)
    return wrap(f.sum(axis=-1) + as_int64(offset), spec.data_bits)


def contamination(carries, spec):
    """Carries that landed inside the word, ``C = sum_(j<L-1) c_j`` (0 unless carry mode)."""
    spec = _check_spec(spec)
    c = as_int64(carries)
    if spec.mode != "carry":
        return np.zeros(c.shape[:-1], np.int64)
    return c[..., :-1].sum(axis=-1)


class PackedDot(NamedTuple):
    """Result of a packed dot product: the ``d``-bit result, per-lane carries, contamination."""

    result: np.ndarray
    carries: np.ndarray
    contamination: np.ndarray


def packed_dot(terms, spec, offset=0):
    """Dot products (already multiplied terms ``[..., N]``) computed by bit-packing.

    Packs the terms (:func:`pack_stream`), accumulates the words (:func:`accumulate`) and
    reduces the lanes (:func:`lane_reduce`). Identity (tested): the result equals
    ``wrap_d(sum(terms) + offset + contamination)``.
    """
    spec = _check_spec(spec)
    acc = accumulate(pack_stream(terms, spec), spec)
    return PackedDot(lane_reduce(acc.word, spec, offset), acc.carries,
                     contamination(acc.carries, spec))


def carry_correct(result, carries, bits):
    """Subtract (estimated) carries from a contaminated result: ``wrap_bits(result - round(c))``.

    ``carries`` may be a float estimate (a running mean); it is rounded to the nearest integer
    (halves to even) because the correction is one integer subtraction at inference.
    """
    c = np.asarray(carries)
    c = np.rint(c).astype(np.int64) if c.dtype.kind == "f" else as_int64(c)
    return wrap(as_int64(result) - c, bits)


def unsigned_view(v, bits):
    """Unsigned ``bits``-bit code of each term: ``v mod 2^bits`` (Algorithm 1's first line).

    The paper writes it with ``(sign(v)+1)/2``, which gives ``2^(b-1)`` for ``v = 0`` if
    ``sign(0) = 0``; the register's code of 0 is 0, which is what this returns.
    """
    bits = check_int("bits", bits)
    if not 2 <= bits <= 62:
        raise ValueError(f"bits must be in [2, 62], got {bits}")
    return as_int64(v) & ((1 << bits) - 1)


def _check_u(u, bits):
    bits = check_int("bits", bits)
    if not 2 <= bits <= 62:
        raise ValueError(f"bits must be in [2, 62], got {bits}")
    u = as_int64(u)
    if np.any(u < 0):
        raise ValueError(f"u (a sum of unsigned codes) must be >= 0, got {u[u < 0].flat[0]}")
    return u, bits


def alg1_carries_iterative(u, bits):
    """Algorithm 1 of the paper, step by step: returns ``(c, r)``.

    ``c_0 = u, r_0 = 0``; while ``c_i != 0``: ``c_(i+1) = floor((c_i + r_i) / 2^b)``,
    ``r_(i+1) = (c_i + r_i) mod 2^b``, ``c += c_(i+1)``. ``u`` is the sum of the unsigned codes
    of one dot product (:func:`unsigned_view`), ``c`` the total carries when every carry is fed
    back into the same ``b``-bit register, ``r`` what the register holds at the end.
    """
    u, bits = _check_u(u, bits)
    ci, ri = u.copy(), np.zeros_like(u)
    total = np.zeros_like(u)
    while np.any(ci != 0):
        s = ci + ri
        ci, ri = s >> bits, s & ((1 << bits) - 1)
        total += ci
    # Lanes that stopped early keep their r: once c_i = 0, r_(i+1) = r_i and c stays 0.
    return total, ri


def alg1_carries(u, bits):
    """Closed form of :func:`alg1_carries_iterative`: ``(c, r)``.

    Every carry turns ``2^b`` of ``u`` into 1, i.e. removes ``2^b - 1``, so
    ``r = u - c (2^b - 1)`` with ``r`` in ``[1, 2^b - 1]`` (0 only for ``u = 0``):
    ``r = 1 + (u - 1) mod (2^b - 1)``, ``c = (u - r) / (2^b - 1)``. Also
    ``r ≡ sum(v) + c (mod 2^b)``: the register holds the true sum contaminated by ``c``.

    >>> [int(x) for x in alg1_carries(300, 8)]
    [1, 45]
    """
    u, bits = _check_u(u, bits)
    m = (1 << bits) - 1
    r = np.where(u == 0, 0, 1 + (u - 1) % m)
    return (u - r) // m, r


def not_negate_terms(a, w):
    """Terms and offsets of a binary/ternary dot product negated with bitwise NOT.

    Without a multiplier, ``a * (-1) = -a = ~a + 1``: a kernel XORs the activation with an
    all-ones mask (``~a``, a lane-local operation) and adds the ``+1`` of every negated term
    once at the end as a constant (the weights are known in advance). For ``a[..., N]`` and
    integer weights ``w[..., N]`` in {-1, 0, +1} (broadcast together) this returns
    ``(terms, offset)`` with ``terms = a, 0, ~a = -a-1`` for ``w = +1, 0, -1`` and
    ``offset = count(w == -1)``; ``sum(terms) + offset == sum(a * w)``.
    """
    a, w = as_int64(a), as_int64(w)
    if np.any((w < -1) | (w > 1)):
        raise ValueError("weights must be binary/ternary values in {-1, 0, +1} for the packed "
                         f"path, got {w[(w < -1) | (w > 1)].flat[0]}")
    a, w = np.broadcast_arrays(a, w)
    terms = np.where(w > 0, a, np.where(w < 0, -a - 1, 0))
    return terms, (w < 0).sum(axis=-1)


def packed_gemm(a, w, spec):
    """What a bit-packed binary/ternary GEMM kernel computes, without packing anything.

    ``a[N, K]`` unsigned activations (lanes along K: ``k -> lane k % L``), ``w[M, K]`` weight
    values in {-1, 0, +1}, negation by NOT (:func:`not_negate_terms`). Returns ``PackedDot``
    with ``result[M, N]`` (``d``-bit), ``carries[M, N, L]`` and ``contamination[M, N]``.

    Equal to ``packed_dot(*not_negate_terms(a[None], w[:, None]))`` but computed from per-lane
    sums with float64 matrix products (exact: every sum stays far below 2^53), so it runs on
    full ResNet-18 layers: ``S_j = A_j (w>0)^T + (D - A_j)(w<0)^T`` with ``D = 2^d - 1``.
    """
    spec = _check_spec(spec)
    a, w = as_int64(a), as_int64(w)
    if a.ndim != 2 or w.ndim != 2 or a.shape[1] != w.shape[1]:
        raise ValueError(f"a must be [N, K] and w [M, K] with the same K, got {a.shape} "
                         f"and {w.shape}")
    d = spec.data_bits
    if np.any((a < 0) | (a > (1 << d) - 1)):
        raise ValueError(f"activations must lie in [0, {(1 << d) - 1}] for {d} data bits")
    if np.any((w < -1) | (w > 1)):
        raise ValueError("weights must be binary/ternary values in {-1, 0, +1} for the packed "
                         f"path, got {w[(w < -1) | (w > 1)].flat[0]}")
    k = a.shape[1]
    if k * (1 << spec.lane_bits) >= 1 << 52:
        raise ValueError(f"K={k} too large for exact float64 lane sums at lane_bits="
                         f"{spec.lane_bits}")
    lane = np.arange(k) % spec.lanes
    pos, neg = (w > 0).astype(np.float64), (w < 0).astype(np.float64)
    af = a.astype(np.float64)
    dmax = float((1 << d) - 1)
    sums = np.empty((w.shape[0], a.shape[0], spec.lanes), np.int64)
    for j in range(spec.lanes):
        sel = lane == j
        aj = af[:, sel]
        s = pos[:, sel] @ aj.T + neg[:, sel] @ (dmax - aj).T
        sums[..., j] = np.rint(s).astype(np.int64)
    offset = (w < 0).sum(axis=1)[:, None]
    if spec.mode == "carry":
        carries = lane_carries(sums, spec.lane_bits)
        prev = np.concatenate([np.zeros(carries.shape[:-1] + (1,), np.int64),
                               carries[..., :-1]], axis=-1)
        fields = (sums + prev) & ((1 << spec.lane_bits) - 1)
    else:
        carries = sums >> d
        fields = sums & ((1 << d) - 1)
    result = wrap(fields.sum(axis=-1) + offset, d)
    return PackedDot(result, carries, contamination(carries, spec))
