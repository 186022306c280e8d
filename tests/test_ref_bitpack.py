"""Bit-packing reference against independent brute-force models (Python ints, bit by bit)."""


import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wrapkit.ref import wrap
from wrapkit.ref import bitpack as bp


@st.composite
def specs(draw, modes=bp.PACK_MODES):
    word_bits = draw(st.sampled_from(bp.WORD_BITS))
    lane_bits = draw(st.integers(2, min(word_bits, 20)))
    lanes = draw(st.integers(1, word_bits // lane_bits))
    return bp.PackSpec(lane_bits, lanes, word_bits, draw(st.sampled_from(modes)))


def _brute_add(x, y, spec):
    """One addition by the definition of each mode, on Python ints; returns (word, carries).

    Carries come from the carry vector of a full-width addition, ``(x+y) ^ x ^ y``: its bit at
    a lane boundary is the carry that crossed it. Independent of the reference's per-lane ripple.
    """
    b, n = spec.lane_bits, spec.lanes
    used = (1 << (b * n)) - 1
    if spec.mode == "isolated":
        word, carries = 0, []
        for j in range(n):
            s = ((x >> j * b) & ((1 << b) - 1)) + ((y >> j * b) & ((1 << b) - 1))
            word |= (s & ((1 << b) - 1)) << j * b
            carries.append(s >> b)
        return word, carries
    full = x + y
    cvec = full ^ x ^ y
    if spec.mode == "carry":
        return full & used, [(cvec >> (j + 1) * b) & 1 for j in range(n)]
    guards = sum(1 << (j * b + b - 1) for j in range(n))
    # Buffer: the overflow of a data field is the carry into its guard bit.
    return full & used & ~guards, [(cvec >> (j * b + b - 1)) & 1 for j in range(n)]


def _brute_accumulate(words, spec, init=0):
    acc, total = init, [0] * spec.lanes
    for w in words:
        acc, c = _brute_add(acc, int(w), spec)
        total = [t + ci for t, ci in zip(total, c)]
    return acc, total


# ---------------------------------------------------------------- validation

@pytest.mark.parametrize("kwargs, exc, msg", [
    (dict(lane_bits=1), ValueError, r"^lane_bits must be in \[2, 32\], got 1$"),
    (dict(lane_bits=33), ValueError, r"^lane_bits must be in \[2, 32\], got 33$"),
    (dict(lane_bits=8, lanes=5), ValueError,
     r"^lanes must be in \[1, 4\] for lane_bits=8 in a 32-bit word, got 5$"),
    (dict(lane_bits=8, lanes=9, word_bits=64), ValueError,
     r"^lanes must be in \[1, 8\] for lane_bits=8 in a 64-bit word, got 9$"),
    (dict(lanes=0), ValueError, r"^lanes must be in \[1, 4\] .* got 0$"),
    (dict(word_bits=16), ValueError, r"^word_bits must be 32 or 64, got 16$"),
    (dict(mode="vector"), ValueError,
     r"^mode must be one of carry, isolated, buffer, got 'vector'$"),
    (dict(lane_bits=8.0), TypeError, r"^lane_bits must be an integer, not 8\.0$"),
    (dict(lanes=True), TypeError, r"^lanes must be an integer, not True$"),
])
def test_spec_errors(kwargs, exc, msg):
    with pytest.raises(exc, match=msg):
        bp.PackSpec(**kwargs)


def test_value_errors():
    s = bp.PackSpec()
    with pytest.raises(ValueError, match=r"^values must lie in \[-128, 255\] for 8 data bits, got 256$"):
        bp.pack([256, 0, 0, 0], s)
    with pytest.raises(ValueError, match=r"^values must lie in \[-64, 127\] for 7 data bits, got 128$"):
        bp.pack([128, 0, 0, 0], s.with_mode("buffer"))
    with pytest.raises(ValueError, match=r"^values must have a last axis of length lanes=4"):
        bp.pack([1, 2, 3], s)
    with pytest.raises(ValueError, match=r"^words must fit the 24 lane bits"):
        bp.unpack(np.uint64(1 << 24), bp.PackSpec(8, 3))
    with pytest.raises(ValueError, match=r"^buffer-mode words must have their guard bits clear"):
        bp.accumulate(np.array([0x80], np.uint64), s.with_mode("buffer"))
    with pytest.raises(ValueError, match=r"^weights must be binary/ternary values in \{-1, 0, \+1\} "
                                         r"for the packed path, got 2$"):
        bp.not_negate_terms([1, 2], [1, 2])
    with pytest.raises(ValueError, match=r"^u \(a sum of unsigned codes\) must be >= 0, got -1$"):
        bp.alg1_carries(-1, 8)
    with pytest.raises(ValueError, match=r"^bits must be in \[2, 62\], got 1$"):
        bp.unsigned_view(3, 1)


# ---------------------------------------------------------------- packing

@settings(max_examples=150, deadline=None)
@given(specs(), st.data())
def test_pack_unpack_roundtrip(spec, data):
    d = spec.data_bits
    signed = data.draw(st.booleans())
    lo, hi = (-(1 << (d - 1)), (1 << (d - 1)) - 1) if signed else (0, (1 << d) - 1)
    vals = np.array(data.draw(st.lists(st.integers(lo, hi), min_size=spec.lanes * 3,
                                       max_size=spec.lanes * 3))).reshape(3, spec.lanes)
    words = bp.pack(vals, spec)
    assert words.dtype == np.uint64 and words.shape == (3,)
    assert np.array_equal(bp.unpack(words, spec, signed=signed), vals)
    # Bits above the top lane and (buffer) guard bits stay clear.
    assert not np.any(words & np.uint64(~spec.used_mask & (2**64 - 1)))
    if spec.mode == "buffer":
        assert not np.any(words & np.uint64(spec.guard_mask))
    # Unpack then pack is the identity on words.
    assert np.array_equal(bp.pack(bp.unpack(words, spec), spec), words)


def test_pack_stream_layout():
    s = bp.PackSpec()
    w = bp.pack_stream([3, -2, 5, 1, -1, 4, 0, 2, 7], s)
    assert [hex(int(x)) for x in w] == ["0x105fe03", "0x20004ff", "0x7"]


# ---------------------------------------------------------------- addition, accumulation

@settings(max_examples=300, deadline=None)
@given(specs(), st.data())
def test_packed_add_matches_definition(spec, data):
    x = data.draw(st.integers(0, spec.used_mask))
    y = data.draw(st.integers(0, spec.used_mask))
    want, _ = _brute_add(x, y, spec)
    assert int(bp.packed_add(np.uint64(x), np.uint64(y), spec)) == want


@settings(max_examples=150, deadline=None)
@given(specs(), st.data())
def test_accumulate_steps_matches_brute_force(spec, data):
    # Any words, guard bits included: the step model defines what the hardware does with them.
    n = data.draw(st.integers(0, 12))
    words = np.array(data.draw(st.lists(st.integers(0, spec.used_mask), min_size=n,
                                        max_size=n)), np.uint64)
    init = data.draw(st.integers(0, spec.used_mask))
    got = bp.accumulate_steps(words, spec, init=np.uint64(init))
    want_word, want_carries = _brute_accumulate(words.tolist(), spec, init)
    assert int(got.word) == want_word
    assert got.carries.tolist() == want_carries


@settings(max_examples=60, deadline=None)
@given(specs(), st.data())
def test_packed_stream_matches_brute_force(spec, data):
    n = data.draw(st.integers(1, 25))
    words = data.draw(st.lists(st.integers(0, spec.used_mask), min_size=n, max_size=n))
    en = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    clr = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    modes = data.draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    tr = bp.packed_stream(np.array(words, np.uint64), en, clr, modes, spec)
    acc = 0
    for i in range(n):
        s = spec.with_mode(bp.PACK_MODES[modes[i]])
        acc, flags = _brute_add(0 if clr[i] else acc, words[i] if en[i] else 0, s)
        assert int(tr.acc[i]) == acc and tr.flags[i].tolist() == flags
        d = s.data_bits
        fields = [(acc >> j * s.lane_bits) & ((1 << d) - 1) for j in range(s.lanes)]
        assert int(tr.total[i]) == int(wrap(sum(fields), d))


@settings(max_examples=150, deadline=None)
@given(specs(), st.data())
def test_closed_form_accumulate_equals_steps(spec, data):
    """Vectorized closed form == step-by-step simulation, batched over leading axes."""
    n = data.draw(st.integers(1, 40))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    if spec.mode == "buffer":
        vals = rng.integers(-(1 << (spec.data_bits - 1)), 1 << (spec.data_bits - 1),
                            size=(3, n, spec.lanes))
        words, init = bp.pack(vals, spec), np.uint64(0)
    else:
        words = rng.integers(0, spec.used_mask, size=(3, n), dtype=np.uint64, endpoint=True)
        init = rng.integers(0, spec.used_mask, size=3, dtype=np.uint64, endpoint=True)
    fast, slow = bp.accumulate(words, spec, init), bp.accumulate_steps(words, spec, init)
    assert np.array_equal(fast.word, slow.word)
    assert np.array_equal(fast.carries, slow.carries)


@settings(max_examples=200, deadline=None)
@given(specs(), st.data())
def test_packed_dot_identity(spec, data):
    """result == wrap_d(sum + offset + contamination); contamination only in carry mode."""
    d = spec.data_bits
    terms = np.array(data.draw(st.lists(st.integers(-(1 << (d - 1)), (1 << (d - 1)) - 1),
                                        min_size=1, max_size=60)))
    offset = data.draw(st.integers(0, 50))
    r = bp.packed_dot(terms, spec, offset)
    assert int(r.result) == int(wrap(terms.sum() + offset + r.contamination, d))
    if spec.mode != "carry":
        assert int(r.contamination) == 0
    # The exact contamination corrects the result back to the vector-unit answer.
    assert int(bp.carry_correct(r.result, r.contamination, d)) == int(wrap(terms.sum() + offset, d))
    # Against brute force: step-wise accumulation, then lanes added one by one.
    acc, carries = _brute_accumulate(bp.pack_stream(terms, spec).tolist(), spec)
    fields = [(acc >> j * spec.lane_bits) & ((1 << d) - 1) for j in range(spec.lanes)]
    assert int(r.result) == int(wrap(sum(fields) + offset, d))
    assert r.carries.tolist() == carries


def test_worked_example():
    s = bp.PackSpec()
    t = [3, -2, 5, 1, -1, 4, 0, 2]
    r = bp.packed_dot(t, s)
    assert (int(r.result), r.carries.tolist(), int(r.contamination)) == (14, [1, 1, 0, 0], 2)
    assert int(bp.carry_correct(14, 2, 8)) == 12
    assert int(bp.packed_dot(t, s.with_mode("isolated")).result) == 12


# ---------------------------------------------------------------- Algorithm 1

def _alg1_literal(v, b):
    """Algorithm 1 as printed, on Python ints (sign(0) taken as +1, see unsigned_view)."""
    u = sum(x if x >= 0 else x + 2**b for x in v)
    c_i, r_i, c = u, 0, 0
    while c_i != 0:
        c_i, r_i = (c_i + r_i) // 2**b, (c_i + r_i) % 2**b
        c += c_i
    return c, r_i


@settings(max_examples=300, deadline=None)
@given(st.integers(2, 16), st.data())
def test_alg1_closed_form_matches_literal(b, data):
    v = data.draw(st.lists(st.integers(-(1 << (b - 1)), (1 << (b - 1)) - 1), max_size=80))
    u = int(bp.unsigned_view(np.array(v, np.int64), b).sum()) if v else 0
    c, r = bp.alg1_carries(u, b)
    assert (int(c), int(r)) == _alg1_literal(v, b)
    ci, ri = bp.alg1_carries_iterative(u, b)
    assert (int(ci), int(ri)) == (int(c), int(r))
    # The register holds the true sum contaminated by c.
    assert int(wrap(r - c, b)) == int(wrap(sum(v), b))


@given(st.lists(st.integers(0, 2**40), min_size=1, max_size=30), st.integers(2, 20))
def test_alg1_vectorized_large_u(us, b):
    u = np.array(us, np.int64)
    c, r = bp.alg1_carries(u, b)
    ci, ri = bp.alg1_carries_iterative(u, b)
    assert np.array_equal(c, ci) and np.array_equal(r, ri)


# ---------------------------------------------------------------- binary/ternary GEMM model

@pytest.mark.parametrize("spec", [bp.PackSpec(8, 4, 32, m) for m in bp.PACK_MODES]
                         + [bp.PackSpec(8, 8, 64, "carry"), bp.PackSpec(6, 5, 32, "buffer")])
@pytest.mark.parametrize("kind", ["binary", "ternary"])
def test_packed_gemm_equals_packed_dot(spec, kind):
    rng = np.random.default_rng(7)
    m, n, k = 5, 6, 37
    a = rng.integers(0, 8, size=(n, k))
    w = rng.choice([-1, 1] if kind == "binary" else [-1, 0, 1], size=(m, k))
    g = bp.packed_gemm(a, w, spec)
    terms, offset = bp.not_negate_terms(a[None, :, :], w[:, None, :])
    want = bp.packed_dot(terms, spec, offset)
    assert np.array_equal(g.result, want.result)
    assert np.array_equal(g.carries, want.carries)
    assert np.array_equal(g.contamination, want.contamination)
    exact = a @ w.T
    if spec.mode != "carry":
        assert np.array_equal(g.result, wrap(exact.T, spec.data_bits))
    else:
        assert np.array_equal(bp.carry_correct(g.result, g.contamination, 8), wrap(exact.T, 8))


def test_not_negate_terms_identity():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 8, size=(4, 50))
    w = rng.choice([-1, 0, 1], size=(4, 50))
    t, off = bp.not_negate_terms(a, w)
    assert np.array_equal(t.sum(-1) + off, (a * w).sum(-1))
