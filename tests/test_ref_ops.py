"""The graph node kinds of wrapkit.ref.ops against direct definitions (exhaustive where small)."""

import math
import re
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from wrapkit.ref import cyclic, wrap
from wrapkit.ref.ops import (
    AccumulatorMode,
    ExpConstants,
    add,
    add_multipliers,
    avg_divider,
    avg_pool2d,
    concat,
    conv2d,
    dot_product_bound,
    fixed_multiplier,
    flatten,
    gelu_table,
    i_exp,
    integer_matmul,
    isqrt,
    layer_norm,
    layer_norm_constants,
    linear,
    lookup,
    matmul,
    max_pool2d,
    pixel_shuffle,
    pixel_unshuffle,
    reshape,
    rescale,
    round_shift,
    sigmoid_table,
    softmax,
    transpose,
    upsample_nearest,
)
from wrapkit.ref.ops.accumulator import INT32_MAX
from wrapkit.ref.ops.lut import gelu, sigmoid

MODES = [AccumulatorMode(), AccumulatorMode("wrap", 10), AccumulatorMode("cyclic", 10, 2),
         AccumulatorMode("saturate", 10)]


def _round_half_up(q):
    """floor(q + 1/2) of a Fraction, the rounding rule of every ref.ops rescale."""
    return math.floor(q + Fraction(1, 2))


def _finish_stream(products, acc):
    """One dot product, step by step in the given order, as the register would."""
    if acc.mode != "saturate":
        return int(acc.finish(np.array(sum(products))))
    lo, hi = -(1 << (acc.bits - 1)), (1 << (acc.bits - 1)) - 1
    reg = 0
    for p in products:
        reg = min(max(reg + p, lo), hi)
    return reg


def _naive_conv(x, w, stride, padding, dilation, groups, acc):
    n, c_in, h, wd = x.shape
    c_out, cg, kh, kw = w.shape
    oh = (h + 2 * padding - dilation * (kh - 1) - 1) // stride + 1
    ow = (wd + 2 * padding - dilation * (kw - 1) - 1) // stride + 1
    out = np.zeros((n, c_out, oh, ow), dtype=np.int64)
    per_group = c_out // groups
    for b in range(n):
        for o in range(c_out):
            g = o // per_group
            for oy in range(oh):
                for ox in range(ow):
                    prods = []                     # stream order: (c, ky, kx), c outermost
                    for c in range(cg):
                        for ky in range(kh):
                            for kx in range(kw):
                                iy = oy * stride - padding + ky * dilation
                                ix = ox * stride - padding + kx * dilation
                                inside = 0 <= iy < h and 0 <= ix < wd
                                v = int(x[b, g * cg + c, iy, ix]) if inside else 0
                                prods.append(v * int(w[o, c, ky, kx]))
                    out[b, o, oy, ox] = _finish_stream(prods, acc)
    return out


# -- MAC-type nodes -------------------------------------------------------------------------

@settings(deadline=None, max_examples=80)
@given(st.integers(1, 2), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3),
       st.integers(1, 7), st.integers(1, 7), st.integers(1, 3), st.integers(1, 3),
       st.integers(0, 2), st.integers(1, 2), st.sampled_from(MODES), st.integers(0, 2**31))
def test_conv2d_matches_naive_loop(n, groups, cg, per_group, h, w, k, stride, padding, dilation,
                                   acc, seed):
    assume(h + 2 * padding >= dilation * (k - 1) + 1 and w + 2 * padding >= dilation * (k - 1) + 1)
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, groups * cg, h, w))
    wt = rng.integers(-128, 128, (groups * per_group, cg, k, k))
    got = conv2d(x, wt, stride=stride, padding=padding, dilation=dilation, groups=groups, acc=acc)
    assert got.dtype == np.int64
    assert np.array_equal(got, _naive_conv(x, wt, stride, padding, dilation, groups, acc))


def test_depthwise_conv_is_one_filter_per_channel():
    x = np.arange(2 * 3 * 4 * 4).reshape(2, 3, 4, 4)
    w = np.array([1, -2, 3]).reshape(3, 1, 1, 1) * np.ones((3, 1, 3, 3), dtype=np.int64)
    got = conv2d(x, w, padding=1, groups=3)
    for c in range(3):
        assert np.array_equal(got[:, c:c + 1], conv2d(x[:, c:c + 1], w[c:c + 1], padding=1))


@settings(deadline=None, max_examples=60)
@given(st.integers(1, 40), st.integers(1, 5), st.integers(1, 5), st.sampled_from(MODES),
       st.integers(0, 2**31))
def test_matmul_and_linear_match_step_by_step(k, m, p, acc, seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, (2, m, k))
    b = rng.integers(-128, 128, (2, k, p))
    got = matmul(a, b, acc=acc)
    want = [[[_finish_stream([int(a[i, r, j]) * int(b[i, j, c]) for j in range(k)], acc)
              for c in range(p)] for r in range(m)] for i in range(2)]
    assert got.tolist() == want
    assert np.array_equal(linear(a, b[0].T, acc=acc), matmul(a, np.stack([b[0]] * 2), acc=acc))


def test_saturation_depends_on_order_wrap_does_not():
    sat, wrp = AccumulatorMode("saturate", 8), AccumulatorMode("wrap", 8)
    a = np.array([[100, 100, -100]])
    b = np.ones((3, 1), dtype=np.int64)
    assert integer_matmul(a, b, sat).item() == 27                 # clamp(200) = 127; 127 - 100
    assert integer_matmul(a[:, ::-1], b, sat).item() == 100       # 100 - 100 + 100
    assert integer_matmul(a, b, wrp).item() == integer_matmul(a[:, ::-1], b, wrp).item() == 100


def test_accumulator_modes_finish():
    z = np.arange(-600, 600)
    assert np.array_equal(AccumulatorMode("wrap", 9).finish(z), wrap(z, 9))
    assert np.array_equal(AccumulatorMode("cyclic", 9, 3).finish(z), cyclic(z, 9, 3))
    assert np.array_equal(AccumulatorMode().finish(z), z)
    assert AccumulatorMode.from_dict(AccumulatorMode("cyclic", 8, 2).to_dict()) == \
        AccumulatorMode("cyclic", 8, 2)


def test_exactness_bounds():
    # 8-bit unsigned codes × int8 weights: an int32 GEMM is exact up to fan-in 65 793.
    assert dot_product_bound(65793, (0, 255), (-128, 127)) <= INT32_MAX
    assert dot_product_bound(65794, (0, 255), (-128, 127)) > INT32_MAX
    with pytest.raises(ValueError, match=r"beyond exact int64 arithmetic"):
        linear(np.full((1, 4), 2**30), np.full((1, 4), 2**30))


def test_mac_node_errors():
    with pytest.raises(ValueError, match=r"^mode must be one of exact, wrap, cyclic, saturate"):
        AccumulatorMode("round")
    with pytest.raises(TypeError, match=r"^bits must be an integer in \[2, 62\], not None$"):
        AccumulatorMode("wrap")
    with pytest.raises(ValueError, match=r"^k must be None for a wrap accumulator, got 2$"):
        AccumulatorMode("wrap", 8, 2)
    with pytest.raises(ValueError, match=r"^groups must divide both C_in=4 and C_out=6, got 4$"):
        conv2d(np.zeros((1, 4, 3, 3), np.int64), np.zeros((6, 1, 1, 1), np.int64), groups=4)
    with pytest.raises(ValueError, match=r"^stride must be >= 1, got 0$"):
        conv2d(np.zeros((1, 1, 3, 3), np.int64), np.zeros((1, 1, 1, 1), np.int64), stride=0)
    with pytest.raises(TypeError, match=r"^x must be an integer array, got dtype float64$"):
        conv2d(np.zeros((1, 1, 3, 3)), np.zeros((1, 1, 1, 1), np.int64))
    with pytest.raises(ValueError, match=r"^a and b must have the same leading axes"):
        matmul(np.zeros((2, 3, 4), np.int64), np.zeros((3, 4, 5), np.int64))


# -- fixed point and elementwise ------------------------------------------------------------

@given(st.integers(-(2**50), 2**50), st.integers(0, 12))
def test_round_shift_is_round_half_up(x, s):
    assert round_shift(np.array(x), s) == _round_half_up(Fraction(x, 2**s))
    assert round_shift(np.array([x]), np.array([s])).tolist() == [_round_half_up(Fraction(x, 2**s))]


@given(st.floats(1e-6, 1e6), st.integers(2, 30))
def test_fixed_multiplier_error(ratio, bits):
    m, s = fixed_multiplier(ratio, bits)
    assert abs(Fraction(m, 2**s) - Fraction(ratio)) <= Fraction(1, 2 ** (s + 1))
    assert m <= 2**bits or s == 0     # ratios >= 2^(bits-1) need no fraction bits


@settings(max_examples=200)
@given(st.floats(1e-3, 1.0), st.floats(1e-3, 1.0), st.floats(1e-3, 1.0), st.integers(4, 20),
       st.lists(st.tuples(st.integers(0, 255), st.integers(-128, 127)), min_size=1, max_size=8))
def test_add_alignment_error_bound(s_a, s_b, s_out, bits, pairs):
    m_a, m_b, shift = add_multipliers(s_a, s_b, s_out, bits)
    assert max(m_a, m_b) <= 2**bits or shift == 0
    a = np.array([p[0] for p in pairs])
    b = np.array([p[1] for p in pairs])
    got = add(a, b, m_a, m_b, shift, out_bits=20, out_signed=True)     # wide: no clamping
    for ai, bi, gi in zip(a.tolist(), b.tolist(), got.tolist()):
        assert gi == _round_half_up(Fraction(ai * m_a + bi * m_b, 2**shift))
        real = (Fraction(s_a) * ai + Fraction(s_b) * bi) / Fraction(s_out)
        assert abs(gi - real) <= Fraction(1, 2) + Fraction(abs(ai) + abs(bi), 2 ** (shift + 1))


def test_add_clamps_to_the_output_codes():
    m_a, m_b, shift = add_multipliers(0.05, 0.02, 0.1, 8)
    assert (m_a, m_b, shift) == (128, 51, 8)
    assert add(np.array([30, -20, 600]), np.array([10, 10, 0]), m_a, m_b, shift, out_bits=8,
               out_signed=False).tolist() == [17, 0, 255]
    with pytest.raises(TypeError, match=r"^out_signed must be a bool, not 1$"):
        add(np.zeros(2, np.int64), np.zeros(2, np.int64), 1, 1, 0, out_bits=8, out_signed=1)
    with pytest.raises(ValueError, match=r"^a and b must have the same shape, got \[2\] and "
                                         r"\[3\]$"):
        add(np.zeros(2, np.int64), np.zeros(3, np.int64), 1, 1, 0, out_bits=8, out_signed=True)


def test_concat_with_and_without_rescale():
    a = np.arange(8).reshape(1, 2, 2, 2)
    b = np.arange(4).reshape(1, 1, 2, 2) * 10
    assert np.array_equal(concat([a, b]), np.concatenate([a, b], axis=1))
    got = concat([a, b], rescales=[None, (1, 1)], out_bits=4, out_signed=False)
    assert np.array_equal(got[:, 2], np.minimum(round_shift(b[:, 0], 1), 15))
    assert np.array_equal(got[:, 2], rescale(b[:, 0], 1, 1, 4, False))
    with pytest.raises(ValueError, match=r"^tensors\[0\] must lie in \[0, 3\] \(2-bit unsigned\), "
                                         r"got 4$"):
        concat([a, b], rescales=[None, (1, 0)], out_bits=2, out_signed=False)


# -- shape ----------------------------------------------------------------------------------

@pytest.mark.parametrize("area", [1, 2, 3, 4, 9, 25, 49, 64])
def test_avg_divider_exact_for_every_sum(area):
    bound = 255 * area
    m, b, s = avg_divider(area, bound)
    sums = np.arange(-bound, bound + 1)
    want = [_round_half_up(Fraction(int(v), area)) for v in sums]
    assert ((sums * m + b) >> s).tolist() == want


@settings(deadline=None, max_examples=60)
@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 3), st.integers(0, 1),
       st.booleans(), st.integers(0, 2**31))
def test_pools_match_naive(k, extra, stride, padding, signed, seed):
    assume(2 * padding <= k)
    rng = np.random.default_rng(seed)
    h = w = k + extra
    x = rng.integers(-128 if signed else 0, 128 if signed else 256, (2, 3, h, w))
    avg, mx = avg_pool2d(x, k, stride, padding), max_pool2d(x, k, stride, padding)
    xp = np.pad(x, ((0, 0), (0, 0), (padding,) * 2, (padding,) * 2))
    xm = np.pad(x, ((0, 0), (0, 0), (padding,) * 2, (padding,) * 2),
                constant_values=np.iinfo(np.int64).min)
    for oy in range(avg.shape[2]):
        for ox in range(avg.shape[3]):
            win = np.s_[:, :, oy * stride:oy * stride + k, ox * stride:ox * stride + k]
            sums = xp[win].sum(axis=(2, 3))
            want = [[_round_half_up(Fraction(int(v), k * k)) for v in row] for row in sums]
            assert avg[:, :, oy, ox].tolist() == want
            assert np.array_equal(mx[:, :, oy, ox], xm[win].max(axis=(2, 3)))


@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 4), st.integers(1, 4))
def test_pixel_shuffle_round_trip_and_definition(r, c, h, w):
    x = np.arange(2 * c * r * r * h * w).reshape(2, c * r * r, h, w)
    y = pixel_shuffle(x, r)
    assert y.shape == (2, c, h * r, w * r)
    assert np.array_equal(pixel_unshuffle(y, r), x)
    for ch, i, j in [(0, 0, 0), (c - 1, r - 1, r - 1), (c - 1, 0, r - 1)]:
        assert y[1, ch, (h - 1) * r + i, (w - 1) * r + j] == x[1, ch * r * r + i * r + j, h - 1,
                                                                w - 1]


def test_layout_nodes():
    x = np.arange(2 * 3 * 2 * 2).reshape(2, 3, 2, 2)
    assert upsample_nearest(x, 2)[0, 0].tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3],
                                                       [2, 2, 3, 3]]
    assert np.array_equal(flatten(x), x.reshape(2, 12))
    assert np.array_equal(reshape(x, (6, 2)), x.reshape(2, 6, 2))
    assert np.array_equal(transpose(x, (0, 2, 3, 1)), x.transpose(0, 2, 3, 1))
    with pytest.raises(ValueError, match=r"^axes must be a permutation of 0\.\.3 starting with 0"):
        transpose(x, (1, 0, 2, 3))
    with pytest.raises(ValueError, match=r"^shape \[5\] does not hold the 12 values"):
        reshape(x, (5,))
    with pytest.raises(ValueError, match=r"^pixel_shuffle needs channels divisible by "
                                         r"factor² = 4"):
        pixel_shuffle(x, 2)


# -- nonlinear --------------------------------------------------------------------------------

@given(st.lists(st.integers(0, 2**62 - 1), min_size=1, max_size=20))
def test_isqrt_is_floor_sqrt(values):
    edges = [0, 1, 2, 3, 4, 2**62 - 1, (2**31 - 1) ** 2, (2**31 - 1) ** 2 - 1]
    v = np.array(values + edges)
    assert isqrt(v).tolist() == [math.isqrt(int(i)) for i in v]


@pytest.mark.parametrize("scale", [1 / 8, 1 / 16, 1 / 100, 2**-10])
def test_i_exp_close_to_exp(scale):
    c = ExpConstants.from_scale(scale)
    d = np.arange(-int(10 / scale), 1)
    got = i_exp(d, c) * (0.35815147 * scale**2)
    err = np.abs(got - np.exp(d * scale))
    # I-BERT's fit is within ~2e-3 of exp on (-ln2, 0]; the floors add O(S) near 0.
    assert err.max() <= 2.5e-3 + 2 * scale
    assert np.all(np.diff(i_exp(d, c)) >= 0)       # monotone, so softmax codes are too


@settings(deadline=None, max_examples=100)
@given(st.integers(1, 40), st.sampled_from([1 / 16, 1 / 64, 2**-12]), st.integers(2, 16),
       st.integers(0, 2**31))
def test_softmax_rows(n, scale, bits, seed):
    rng = np.random.default_rng(seed)
    q = rng.integers(-int(8 / scale), int(8 / scale), (3, n))
    c = ExpConstants.from_scale(scale)
    p = softmax(q, c, out_bits=bits)
    top = (1 << bits) - 1
    assert p.min() >= 0 and p.max() <= top
    assert np.all(np.abs(p.sum(axis=-1) - top) <= n / 2 + 1)
    order = np.argsort(q, axis=-1, kind="stable")     # monotone: larger score, larger code
    assert np.all(np.diff(np.take_along_axis(p, order, axis=-1), axis=-1) >= 0)
    real = np.exp(q * scale - (q * scale).max(axis=-1, keepdims=True))
    real = top * real / real.sum(axis=-1, keepdims=True)
    assert np.abs(p - real).max() <= 0.5 + top * (0.004 + 2 * scale)


@settings(deadline=None, max_examples=100)
@given(st.integers(2, 64), st.floats(8.0, 400.0), st.integers(0, 2**31))
def test_layer_norm_close_to_float(n, spread, seed):
    rng = np.random.default_rng(seed)
    q = np.round(rng.normal(0, spread, (4, n)) + rng.integers(-500, 500)).astype(np.int64)
    assume(np.all(q.std(axis=-1) >= 8))
    gamma, beta = rng.uniform(-2, 2, n), rng.uniform(-1, 1, n)
    out_scale = 1 / 16
    m, b, s = layer_norm_constants(gamma, beta, n=n, out_scale=out_scale)
    got = layer_norm(q, m, b, s, out_bits=12, out_signed=True)
    x = q.astype(np.float64)
    norm = (x - x.mean(axis=-1, keepdims=True)) / x.std(axis=-1, keepdims=True)
    real = (norm * gamma + beta) / out_scale
    # The normalised value is off by at most 1/r (isqrt's floor) relative plus 1/(2σ) (the
    # rounded mean): with σ >= 8 codes, that is < 0.2 of |γ|/out_scale <= 32 plus rounding.
    sigma = x.std(axis=-1, keepdims=True)
    r = np.sqrt(n) * sigma
    tol = 0.5 + np.abs(gamma) / out_scale * (np.abs(norm) * 1.5 / r + 0.6 / sigma) + 1e-6
    assert np.all(np.abs(got - real) <= tol)


def test_layer_norm_of_a_constant_row_is_beta():
    m, b, s = layer_norm_constants([1.0, 2.0], [0.5, -0.25], n=2, out_scale=1 / 8)
    assert layer_norm(np.array([[7, 7]]), m, b, s, out_bits=8, out_signed=True).tolist() == \
        [[4, -2]]


@pytest.mark.parametrize("in_scale,out_scale", [(1 / 32, 1 / 64), (1 / 8, 1 / 32), (0.05, 0.1)])
def test_gelu_and_sigmoid_tables_exhaustive_int8(in_scale, out_scale):
    codes = np.arange(-128, 128)
    g = lookup(codes, gelu_table(in_bits=8, in_scale=in_scale, out_scale=out_scale, out_bits=8),
               in_bits=8, in_signed=True)
    real = gelu(codes * in_scale) / out_scale
    clipped = np.clip(real, -128, 127)
    assert np.all(np.abs(g - clipped) <= 0.5)
    sg = lookup(codes, sigmoid_table(in_bits=8, in_scale=in_scale, out_bits=8), in_bits=8,
                in_signed=True)
    assert np.all(np.abs(sg - 255 * sigmoid(codes * in_scale)) <= 0.5)
    assert np.all(np.diff(sg) >= 0)


def test_nonlinear_errors():
    c = ExpConstants.from_scale(1 / 16)
    with pytest.raises(ValueError, match=r"^d must be <= 0 \(subtract the row maximum first\)"):
        i_exp(np.array([1]), c)
    with pytest.raises(ValueError, match=r"^q_ln2 must be in \[1, 1073741824\], got 0$"):
        ExpConstants(0, 1, 1)
    with pytest.raises(ValueError, match=r"^x must lie in \[-2, 1\] \(2-bit signed\), got 2$"):
        lookup(np.array([2]), np.zeros(4, np.int64), in_bits=2, in_signed=True)
    with pytest.raises(ValueError, match=re.escape("table must have 2^in_bits = 4 entries")):
        lookup(np.array([0]), np.zeros(3, np.int64), in_bits=2, in_signed=True)


# -- documentation ------------------------------------------------------------------------------

def test_docstring_examples():
    import doctest
    import importlib

    for name in ("accumulator", "elementwise", "fixed", "linear", "lut", "nonlinear", "shape"):
        module = importlib.import_module(f"wrapkit.ref.ops.{name}")
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0, module.__name__


def test_docs_graph_node_examples():
    """Every number of docs/datapath.md §6, so the documentation cannot drift."""
    from pathlib import Path
    doc = (Path(__file__).parents[1] / "docs" / "datapath.md").read_text().replace("−", "-")
    section = doc[doc.index("## 6. Graph node semantics"):]

    def shown(*texts):
        for text in texts:
            assert text in section, text

    x = np.arange(9).reshape(1, 1, 3, 3)
    ones = np.ones((1, 1, 2, 2), dtype=np.int64)
    assert conv2d(x, ones)[0, 0].tolist() == [[8, 12], [20, 24]]
    assert conv2d(x, ones, acc=AccumulatorMode("wrap", 4))[0, 0].tolist() == [[-8, -4], [4, -8]]
    dw = conv2d(np.arange(18).reshape(1, 2, 3, 3),
                np.array([1, -1]).reshape(2, 1, 1, 1) * np.ones((2, 1, 2, 2), np.int64), groups=2)
    assert dw[0, 1].tolist() == [[-44, -48], [-56, -60]]
    shown("`[[8, 12], [20, 24]]`", "`[[-8, -4], [4, -8]]`", "`[[-44, -48], [-56, -60]]`")
    sat = AccumulatorMode("saturate", 8)
    column = np.ones((3, 1), np.int64)
    assert integer_matmul(np.array([[100, 100, -100]]), column, sat).item() == 27
    assert integer_matmul(np.array([[-100, 100, 100]]), column, sat).item() == 100
    shown("`127 - 100 = 27`", "the result is `100`")
    a, b = np.array([[[1, 2], [3, 4]]]), np.array([[[5, 6], [7, 8]]])
    assert matmul(a, b, acc=AccumulatorMode("saturate", 6))[0].tolist() == [[19, 22], [31, 31]]
    assert matmul(a, b)[0].tolist() == [[19, 22], [43, 50]]
    shown("`[[19, 22], [31, 31]]`", "`[[19, 22], [43, 50]]`")
    assert dot_product_bound(65793, (0, 255), (-128, 127)) <= INT32_MAX
    shown("**65 793**")

    assert add_multipliers(0.05, 0.02, 0.1, 8) == (128, 51, 8)
    assert 30 * 128 + 10 * 51 == 4350 and round_shift(np.array(4350), 8) == 17
    assert add(np.array([30, -20]), np.array([10, 10]), 128, 51, 8, out_bits=8,
               out_signed=False).tolist() == [17, 0]
    shown("`(m_a, m_b, shift) = (128, 51, 8)`", "`round_shift(4350, 8) = 17`", "clamps to `0`")
    assert concat([np.array([[1, 2]]), np.array([[10]])], rescales=[None, (1, 1)], out_bits=4,
                  out_signed=False).tolist() == [[1, 2, 5]]
    shown("`[[1, 2, 5]]`")

    assert max_pool2d(np.arange(16).reshape(1, 1, 4, 4), 2)[0, 0].tolist() == [[5, 7], [13, 15]]
    assert upsample_nearest(np.array([[[[1, 2]]]]), 2)[0, 0].tolist() == [[1, 1, 2, 2],
                                                                          [1, 1, 2, 2]]
    assert pixel_shuffle(np.arange(4).reshape(1, 4, 1, 1), 2)[0, 0].tolist() == [[0, 1], [2, 3]]
    assert transpose(np.arange(6).reshape(1, 2, 3), (0, 2, 1))[0].tolist() == [[0, 3], [1, 4],
                                                                                [2, 5]]
    shown("= [[5, 7], [13, 15]]`", "= [[1, 1, 2, 2], [1, 1, 2, 2]]`", "is `[[0, 1], [2, 3]]`",
          "`[[0, 3], [1, 4], [2, 5]]`")
    windows = np.array([[[[1, 2], [2, 2]], [[3, 3], [0, 0]], [[-3, -3], [0, 0]]]])
    assert avg_divider(4, 12) == (64, 140, 8)
    assert avg_pool2d(windows, 2).ravel().tolist() == [2, 2, -1]
    shown("`(m, b, s) = (64, 140, 8)`", "| 7 | 1.75 | 2 |", "| 6 | 1.5 | 2 (half up) |",
          "| -6 | -1.5 | -1 (half up) |")

    c = ExpConstants.from_scale(1 / 16)
    assert (c.q_ln2, c.q_b, c.q_c) == (11, 43, 714)
    e = i_exp(np.array([0, -11, -40]), c)
    assert e.tolist() == [714, 357, 57]
    assert (255 << 46) // 1128 == 15907827806120
    assert softmax(np.array([[0, -11, -40]]), c, out_bits=8).tolist() == [[161, 81, 13]]
    shown("`(11, 43, 714)`", "`e = [714, 357, 57]`", "`r = 15907827806120`", "`[161, 81, 13]`")
    assert gelu_table(in_bits=3, in_scale=0.5, out_scale=0.25, out_bits=4).tolist() == \
        [0, 0, -1, -1, 0, 1, 3, 6]
    assert sigmoid_table(in_bits=2, in_scale=1.0, out_bits=8).tolist() == [30, 69, 128, 186]
    shown("`[0, 0, -1, -1, 0, 1, 3, 6]`", "`[30, 69, 128, 186]`")
    m, b, s = layer_norm_constants([1.0] * 4, [0.0] * 4, n=4, out_scale=1 / 16)
    assert (m.tolist(), b.tolist(), s) == ([32768] * 4, [0] * 4, 41)
    assert isqrt(np.array(1400)) == 37 and (1 << 31) // 37 == 58040098
    assert layer_norm(np.array([[10, 20, 30, 60]]), m, b, s, out_bits=8,
                      out_signed=True).tolist() == [[-17, -9, 0, 26]]
    shown("`v = 1400`, `r = 37`", "58040098", "`(m, b, shift) = (32768, 0, 41)`",
          "`[-17, -9, 0, 26]`")
