"""The reference semantics against brute-force definitions (exhaustive where small)."""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wrapkit.ref import (
    MacConfig,
    cyclic,
    cyclic_threshold,
    decode_weights,
    encode_weights,
    mac_dot,
    mac_stream,
    operand_range,
    product_bits,
    signed_bits_for_range,
    wrap,
)
from wrapkit.ref.configs import PAPER_MACS


def _wrap_scalar(x, b):
    """Two's complement by the textbook definition: keep the low b bits, reinterpret sign."""
    low = x % (1 << b)
    return low - (1 << b) if low >= (1 << (b - 1)) else low


def _cyclic_scalar(z, b, k):
    m = _wrap_scalar(z, b)
    t = (k * 2 ** (b - 1)) // (k + 1)
    if abs(m) <= t:
        return m
    return k * (2 ** (b - 1) - m) if m > t else -k * (2 ** (b - 1) + m)


@given(st.integers(-(2**40), 2**40), st.integers(1, 40))
def test_wrap_matches_textbook(x, b):
    assert wrap(x, b) == _wrap_scalar(x, b)


def test_wrap_examples():
    assert wrap([127, 128, 300, -129, -128], 8).tolist() == [127, -128, 44, 127, -128]


@pytest.mark.parametrize("b", range(2, 13))
@pytest.mark.parametrize("k", [1, 2, 3, 4, 10])
def test_cyclic_exhaustive(b, k):
    z = np.arange(-(2 ** b) * 2, 2 ** b * 2)  # two periods each way: wraps too
    got = cyclic(z, b, k)
    want = [_cyclic_scalar(int(v), b, k) for v in z]
    assert got.tolist() == want
    t = cyclic_threshold(b, k)
    assert got.min() >= -t and got.max() <= t


def test_cyclic_examples_and_continuity():
    assert cyclic([44, 100, -100, 128, 85, 86], 8, 2).tolist() == [44, 56, -56, 0, 85, 84]
    # Continuous: neighbouring inputs differ by at most k (the slope of the fold-back).
    for b, k in [(8, 2), (8, 4), (5, 1)]:
        m = np.arange(-(2 ** (b - 1)), 2 ** (b - 1))
        y = cyclic(m, b, k)
        assert np.abs(np.diff(y)).max() <= k
        # ... and across the wrap point from +max to -min.
        assert abs(int(y[0]) - int(y[-1])) <= k


def test_weight_encoding_roundtrip():
    for kind, bits, values in [
        ("binary", None, [-1, 1]),
        ("ternary", None, [-1, 0, 1]),
        ("uniform", 4, list(range(-8, 8))),
    ]:
        codes = encode_weights(values, kind, bits)
        assert decode_weights(codes, kind, bits).tolist() == values
    assert encode_weights([1, -1], "binary").tolist() == [0, 1]
    assert encode_weights([-1, 0, 1], "ternary").tolist() == [3, 0, 1]
    assert decode_weights([2], "ternary").tolist() == [0]  # spare code decodes to zero


def test_weight_encoding_rejects_out_of_range():
    with pytest.raises(ValueError, match=r"^binary weights must lie in \{-1, \+1\}$"):
        encode_weights([0], "binary")
    with pytest.raises(ValueError, match=r"^uniform weights must lie in \[-8, 7\], got 8$"):
        encode_weights([8], "uniform", 4)
    with pytest.raises(ValueError, match=r"^weight_kind must be one of binary, ternary, uniform"):
        encode_weights([1], "quaternary")


def test_product_bits_match_seed():
    assert PAPER_MACS["8x8_acc32"].prod_bits == 16
    assert PAPER_MACS["8x8_acc8_k2"].prod_bits == 8
    assert PAPER_MACS["3x1_acc32"].prod_bits == 4
    assert PAPER_MACS["3x1_acc8_k4"].prod_bits == 4
    assert product_bits(8, False, "uniform", 8) == 16  # 255 * -128 = -32640 still fits 16
    assert product_bits(9, False, "uniform", 8) == 17  # 511 * -128 = -65408 needs 17
    assert signed_bits_for_range(-128, 127) == 8
    assert signed_bits_for_range(0, 128) == 9


def test_config_validation_messages():
    with pytest.raises(ValueError, match=r"^acc_bits must be in \[2, 62\], got 1$"):
        MacConfig(8, True, "uniform", 8, 1)
    with pytest.raises(ValueError, match=r"^k must be >= 1, got 0$"):
        MacConfig(8, True, "uniform", 8, 8, 0)
    with pytest.raises(ValueError, match=r"^weight_bits must be in \[2, 16\], got 1$"):
        MacConfig(8, True, "uniform", 1, 8)
    with pytest.raises(ValueError, match=re.escape("weight_bits must be None for binary")):
        MacConfig(3, False, "binary", 4, 8)
    with pytest.raises(TypeError, match=r"^act_bits must be an integer"):
        MacConfig(8.0, True, "uniform", 8, 8)


@settings(deadline=None, max_examples=60)
@given(st.sampled_from(list(PAPER_MACS)), st.integers(1, 300), st.integers(0, 2**31))
def test_wrapped_products_equal_wrapped_dot_product(name, n, seed):
    """Modularity: wrapping every product and every partial sum == wrapping the exact sum."""
    cfg = PAPER_MACS[name]
    rng = np.random.default_rng(seed)
    lo, hi = operand_range(cfg.act_bits, cfg.act_signed)
    a = rng.integers(lo, hi + 1, size=n)
    w = rng.integers(0, 1 << cfg.weight_code_bits, size=n)
    acc, out = mac_dot(a, w, cfg)
    wv = decode_weights(w, cfg.weight_kind, cfg.weight_bits)
    running = 0
    for ai, wi in zip(a.tolist(), wv.tolist()):
        running = _wrap_scalar(running + _wrap_scalar(ai * wi, cfg.prod_bits), cfg.acc_bits)
    assert acc == running == _wrap_scalar(int(np.dot(a, wv)), cfg.acc_bits)
    if cfg.k:
        assert out == _cyclic_scalar(running, cfg.acc_bits, cfg.k)


@settings(deadline=None, max_examples=60)
@given(st.sampled_from(list(PAPER_MACS)), st.integers(1, 200), st.integers(0, 2**31))
def test_mac_stream_matches_step_by_step(name, n, seed):
    cfg = PAPER_MACS[name]
    rng = np.random.default_rng(seed)
    lo, hi = operand_range(cfg.act_bits, cfg.act_signed)
    a = rng.integers(lo, hi + 1, size=n)
    w = rng.integers(0, 1 << cfg.weight_code_bits, size=n)
    en = rng.random(n) < 0.8
    clr = rng.random(n) < 0.1
    acc, out = mac_stream(a, w, en, clr, cfg)
    wv = decode_weights(w, cfg.weight_kind, cfg.weight_bits)
    reg = 0
    for i in range(n):
        p = _wrap_scalar(int(a[i]) * int(wv[i]), cfg.prod_bits)
        reg = _wrap_scalar((0 if clr[i] else reg) + (p if en[i] else 0), cfg.acc_bits)
        assert acc[i] == reg
        if cfg.k:
            assert out[i] == _cyclic_scalar(reg, cfg.acc_bits, cfg.k)


def test_mac_rejects_out_of_range_activation():
    cfg = PAPER_MACS["3x1_acc8_k2"]
    with pytest.raises(ValueError, match=r"^activations must lie in \[0, 7\] for act_bits=3$"):
        mac_dot([8], [0], cfg)


def test_docs_worked_example():
    """The MAC example of docs/datapath.md §3, so the documentation cannot drift."""
    cfg = PAPER_MACS["8x8_acc8_k2"]
    a = [100, -50, 127, 7]
    w = encode_weights([3, 2, 1, 7], "uniform", 8)
    acc, out = mac_stream(a, w, [1, 1, 1, 0], [1, 0, 0, 0], cfg)
    assert acc.tolist() == [44, -56, 71, 71]
    assert out.tolist() == cyclic([44, -56, 71, 71], 8, 2).tolist()
    assert [cyclic_threshold(8, k) for k in (1, 2, 4)] == [64, 85, 102]
