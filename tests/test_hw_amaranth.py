"""Fast checks of the Amaranth components in Amaranth's own Python simulator, against ref/.

The cocotb testbenches (sim/) check the generated Verilog at volume; these tests check the
generators themselves: exhaustive for the small combinational and multiplier cases, random
streams with clear/enable for the MAC, signatures, and every constructor error message.
"""

import re

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Fragment, Module, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from wrapkit.hw.accumulator import Accumulator
from wrapkit.hw.cyclic import CyclicActivation
from wrapkit.hw.mac import MAC
from wrapkit.hw.multiplier import Multiplier
from wrapkit.hw.weights import decode_weight
from wrapkit.ref import (
    MacConfig,
    cyclic,
    cyclic_threshold,
    decode_weights,
    encode_weights,
    mac_stream,
    wrap,
)
from wrapkit.ref.configs import PAPER_MACS
from wrapkit.ref.datapath import operand_range

# Paper configurations plus corners the paper does not exercise: ternary weights (and their
# spare code), signed narrow activations, an accumulator narrower than the full product with
# k = 3 (not a power of two), the smallest legal MAC, a wide odd accumulator.
EXTRA_MACS = {
    "4x2t_acc6_k3": MacConfig(4, False, "ternary", None, 6, 3),
    "5sx4_acc12": MacConfig(5, True, "uniform", 4, 12, None),
    "6ux3_acc5_k1": MacConfig(6, False, "uniform", 3, 5, 1),
    "1sx1_acc2_k1": MacConfig(1, True, "binary", None, 2, 1),
    "8x8_acc45_k7": MacConfig(8, True, "uniform", 8, 45, 7),
}
ALL_MACS = {**PAPER_MACS, **EXTRA_MACS}


def _fmt(v, bits):
    return f"{v} (0x{v & ((1 << bits) - 1):0{(bits + 3) // 4}x})"


def _elaborated(component):
    """Elaborate ``component`` (it must build) and return it for signature inspection."""
    Fragment.get(component, None)
    return component


def _clocked(dut):
    """Wrap ``dut`` with an explicit ``sync`` domain so a testbench can drive its reset."""
    top = Module()
    top.domains.sync = cd = ClockDomain("sync")
    top.submodules.dut = dut
    return top, cd


# --- CyclicActivation ---------------------------------------------------------------------

@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("b", range(2, 9))
def test_cyclic_exhaustive(b, k):
    dut = CyclicActivation(b, k)
    inputs = list(range(-(1 << (b - 1)), 1 << (b - 1)))
    got = []

    async def testbench(ctx):
        for m in inputs:
            ctx.set(dut.m, m)
            got.append(ctx.get(dut.y))

    sim = Simulator(dut)
    sim.add_testbench(testbench)
    sim.run()
    want = cyclic(inputs, b, k).tolist()
    bad = [(m, w, g) for m, w, g in zip(inputs, want, got) if w != g]
    assert not bad, (f"b={b} k={k}: {len(bad)} mismatches, first m={_fmt(bad[0][0], b)} "
                     f"expected {_fmt(bad[0][1], b)} got {_fmt(bad[0][2], b)}")


@pytest.mark.parametrize(("b", "k"), [(3, 5), (4, 100), (12, 3), (16, 4)])
def test_cyclic_large_k_and_sampled_wide(b, k):
    """Slopes beyond 2^(b-1) (only -2^(b-1) folds, to 0) and wider inputs, by sampling
    the extremes, the thresholds and random values."""
    dut = CyclicActivation(b, k)
    half, t = 1 << (b - 1), cyclic_threshold(b, k)
    rng = np.random.default_rng(b * 1000 + k)
    inputs = sorted({-half, -half + 1, -t - 1, -t, -t + 1, -1, 0, 1, t - 1, t, t + 1,
                     half - 1, *rng.integers(-half, half, 200).tolist()}
                    & set(range(-half, half)))
    got = []

    async def testbench(ctx):
        for m in inputs:
            ctx.set(dut.m, m)
            got.append(ctx.get(dut.y))

    sim = Simulator(dut)
    sim.add_testbench(testbench)
    sim.run()
    assert got == cyclic(inputs, b, k).tolist()


def test_cyclic_signature_and_properties():
    dut = _elaborated(CyclicActivation(8, 2))
    assert dut.signature == wiring.Signature({"m": In(signed(8)), "y": Out(signed(8))})
    assert (dut.acc_bits, dut.k, dut.threshold, dut.LATENCY) == (8, 2, 85, 0)
    assert _elaborated(CyclicActivation(acc_bits=5, k=1)).signature.members["y"].shape == signed(5)


@pytest.mark.parametrize(("args", "exc", "message"), [
    ((1, 2), ValueError, r"^acc_bits must be in \[2, 62\], got 1$"),
    ((63, 2), ValueError, r"^acc_bits must be in \[2, 62\], got 63$"),
    ((8, 0), ValueError, r"^k must be >= 1, got 0$"),
    ((8, -3), ValueError, r"^k must be >= 1, got -3$"),
    (("8", 2), TypeError, r"^acc_bits must be an integer, not '8'$"),
    ((True, 2), TypeError, r"^acc_bits must be an integer, not True$"),
    ((8, 2.0), TypeError, r"^k must be an integer >= 1, not 2\.0$"),
    ((8, None), TypeError, r"^k must be an integer >= 1, not None$"),
])
def test_cyclic_errors(args, exc, message):
    with pytest.raises(exc, match=message):
        CyclicActivation(*args)


# --- weight decoder and multiplier stage --------------------------------------------------

@pytest.mark.parametrize("cfg", [
    MacConfig(3, False, "binary", None, 8),
    MacConfig(3, True, "binary", None, 8),
    MacConfig(3, False, "ternary", None, 8),
    MacConfig(4, True, "ternary", None, 3),
    MacConfig(3, True, "uniform", 3, 16),
    MacConfig(4, False, "uniform", 3, 4),
    MacConfig(4, True, "uniform", 4, 5),
], ids=lambda c: c.name)
def test_multiplier_exhaustive(cfg):
    """Every (activation, weight code) pair, spare ternary code included; 1 cycle latency."""
    dut = Multiplier(cfg)
    lo, hi = operand_range(cfg.act_bits, cfg.act_signed)
    pairs = [(a, c) for a in range(lo, hi + 1) for c in range(1 << cfg.weight_code_bits)]
    got = []

    async def testbench(ctx):
        for a, c in pairs:
            ctx.set(dut.a, a)
            ctx.set(dut.w, c)
            await ctx.tick()
            got.append(ctx.get(dut.prod))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    a = np.array([p[0] for p in pairs])
    w = decode_weights([p[1] for p in pairs], cfg.weight_kind, cfg.weight_bits)
    want = wrap(a * w, cfg.prod_bits).tolist()
    bad = [(p, x, y) for p, x, y in zip(pairs, want, got) if x != y]
    assert not bad, (f"{cfg.name}: first mismatch (a, code)={bad[0][0]} want {bad[0][1]} "
                     f"got {bad[0][2]}")
    assert dut.signature == wiring.Signature({
        "a": In(signed(cfg.act_bits) if cfg.act_signed else unsigned(cfg.act_bits)),
        "w": In(unsigned(cfg.weight_code_bits)),
        "prod": Out(signed(cfg.prod_bits)),
    })


@pytest.mark.parametrize(("kind", "bits"), [("binary", None), ("ternary", None),
                                          ("uniform", 2), ("uniform", 5)])
def test_decode_weight_exhaustive(kind, bits):
    """Every code of the width, including the spare ternary code 0b10, against the reference."""
    nbits = {"binary": 1, "ternary": 2}.get(kind, bits)
    code = Signal(nbits)
    value = Signal(signed(max(nbits, 2)))
    mod = Module()
    mod.d.comb += value.eq(decode_weight(code, kind, bits))
    got = []

    async def testbench(ctx):
        for c in range(1 << nbits):
            ctx.set(code, c)
            got.append(ctx.get(value))

    sim = Simulator(mod)
    sim.add_testbench(testbench)
    sim.run()
    assert got == decode_weights(list(range(1 << nbits)), kind, bits).tolist()


def test_multiplier_and_decoder_errors():
    with pytest.raises(TypeError, match=r"^config must be a MacConfig, not '8x8_acc32'$"):
        Multiplier("8x8_acc32")
    with pytest.raises(ValueError,
                       match=r"^code must be 2 bits wide for ternary weights, got 3$"):
        decode_weight(Signal(3), "ternary")


# --- accumulator stage --------------------------------------------------------------------

def test_accumulator_signature():
    dut = _elaborated(Accumulator(prod_bits=4, acc_bits=8))
    assert dut.signature == wiring.Signature({
        "prod": In(signed(4)), "en": In(1), "clr": In(1), "acc": Out(signed(8))})
    assert (dut.prod_bits, dut.acc_bits, dut.LATENCY) == (4, 8, 1)


@pytest.mark.parametrize(("kwargs", "exc", "message"), [
    ({"prod_bits": 9, "acc_bits": 8}, ValueError, r"^prod_bits must be in \[1, 8\], got 9$"),
    ({"prod_bits": 0, "acc_bits": 8}, ValueError, r"^prod_bits must be in \[1, 8\], got 0$"),
    ({"prod_bits": 4, "acc_bits": 1}, ValueError, r"^acc_bits must be in \[2, 62\], got 1$"),
    ({"prod_bits": 4, "acc_bits": 8.0}, TypeError, r"^acc_bits must be an integer, not 8\.0$"),
    ({"prod_bits": "4", "acc_bits": 8}, TypeError, r"^prod_bits must be an integer, not '4'$"),
])
def test_accumulator_errors(kwargs, exc, message):
    with pytest.raises(exc, match=message):
        Accumulator(**kwargs)


# --- MAC ----------------------------------------------------------------------------------

def _random_stream(cfg, n, rng):
    """Operands with the extremes over-represented, en/clr covering all four pairs (idle
    runs, clears without enable, back-to-back clears), and a middle third with long
    same-sign runs so that even a 3x1 product stream overflows an 8-bit accumulator."""
    lo, hi = operand_range(cfg.act_bits, cfg.act_signed)
    a = rng.integers(lo, hi + 1, n)
    extreme = rng.random(n) < 0.25
    a[extreme] = rng.choice([lo, hi], extreme.sum())
    codes = rng.integers(0, 1 << cfg.weight_code_bits, n)
    if cfg.weight_kind == "uniform":
        w_lo, w_hi = operand_range(cfg.weight_bits, True)
        extreme = rng.random(n) < 0.25
        codes[extreme] = encode_weights(rng.choice([w_lo, w_hi], extreme.sum()), "uniform",
                                        cfg.weight_bits)
    en = rng.random(n) < 0.8
    clr = rng.random(n) < 0.05
    drift = np.arange(n // 3, 2 * n // 3)
    biggest = lo if abs(lo) > abs(hi) else hi
    a[drift] = np.where(rng.random(len(drift)) < 0.7, biggest, a[drift])
    w_big = -(1 << (cfg.weight_bits - 1)) if cfg.weight_kind == "uniform" else 1
    codes[drift] = encode_weights([w_big], cfg.weight_kind, cfg.weight_bits)[0]
    clr[drift] = False
    return a, codes, en, clr


def _run_mac(cfg, a, codes, en, clr, reset_at=()):
    """Drive one operation per cycle; return acc (and y) observed after each edge."""
    dut = MAC(cfg)
    top, cd = _clocked(dut)
    n = len(a)
    accs, ys = [], []

    async def testbench(ctx):
        for i in range(n + dut.LATENCY):
            if i < n:
                ctx.set(dut.a, int(a[i]))
                ctx.set(dut.w, int(codes[i]))
                ctx.set(dut.en, int(en[i]))
                ctx.set(dut.clr, int(clr[i]))
            else:  # drain the pipeline with idle operations
                ctx.set(dut.en, 0)
                ctx.set(dut.clr, 0)
            ctx.set(cd.rst, int(i in reset_at))
            await ctx.tick()
            accs.append(ctx.get(dut.acc))
            ys.append(ctx.get(dut.y) if cfg.k is not None else None)

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    return accs, ys


@pytest.mark.parametrize("name", list(ALL_MACS))
def test_mac_random_stream(name):
    cfg = ALL_MACS[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    n = 1000
    a, codes, en, clr = _random_stream(cfg, n, rng)
    accs, ys = _run_mac(cfg, a, codes, en, clr)
    want_acc, want_out = mac_stream(a, codes, en, clr, cfg)
    lat = MAC.LATENCY
    # Before the first operation reaches the accumulator it holds its reset value.
    assert accs[:lat - 1] == [0] * (lat - 1)
    for i in range(n):
        got = accs[i + lat - 1]
        assert got == want_acc[i], (
            f"{name}: op {i} (cycle {i + lat - 1}) a={int(a[i])} w=0x{int(codes[i]):x} "
            f"en={int(en[i])} clr={int(clr[i])}: acc expected "
            f"{_fmt(int(want_acc[i]), cfg.acc_bits)} got {_fmt(got, cfg.acc_bits)}")
        if cfg.k is not None:
            assert ys[i + lat - 1] == want_out[i], (
                f"{name}: op {i}: y expected {int(want_out[i])} got {ys[i + lat - 1]}")
    # Wrap-around really happened (the test would be weak without): the exact segment sums,
    # from the reference with the widest accumulator, leave the accumulator's range.
    wide = MacConfig(cfg.act_bits, cfg.act_signed, cfg.weight_kind, cfg.weight_bits, 62)
    exact = mac_stream(a, codes, en, clr, wide)[0]
    if cfg.acc_bits <= 16:
        assert np.abs(exact).max() >= 1 << (cfg.acc_bits - 1)


def test_mac_worked_example_and_hold():
    """docs/datapath.md's example: (100,3,1,1) (-50,2,1,0) (127,1,1,0) (7,7,0,0)
    -> 44, -56, 71, 71; then idle cycles hold, clr without en zeroes. Index = clock edge."""
    cfg = PAPER_MACS["8x8_acc8_k2"]
    a = [100, -50, 127, 7, 0, 0, 5]
    w = [3, 2, 1, 7, 0, 0, 9]
    en = [1, 1, 1, 0, 0, 0, 0]
    clr = [1, 0, 0, 0, 0, 1, 0]
    accs, ys = _run_mac(cfg, np.array(a), np.array(w), np.array(en), np.array(clr))
    assert accs == [0, 44, -56, 71, 71, 71, 0, 0, 0]
    assert ys == cyclic(accs, 8, 2).tolist()


def test_mac_synchronous_reset():
    """rst high over an edge clears every register: the operation in the product register
    and the one presented at that edge are both lost, later ones accumulate from 0."""
    cfg = PAPER_MACS["8x8_acc32"]
    a = np.array([10, 20, 30, 40, 50, 60])
    w = np.array([1, 1, 1, 1, 1, 1])
    en = np.ones(6, bool)
    clr = np.zeros(6, bool)
    accs, _ = _run_mac(cfg, a, w, en, clr, reset_at={2})
    # edge 0: prod=10; edge 1: acc=10, prod=20; edge 2 (rst): all 0; edge 3: acc=0+0, prod=40;
    # edge 4: acc=40; edge 5: acc=90; edge 6: acc=150, then held.
    assert accs == [0, 10, 0, 0, 40, 90, 150, 150]


def test_mac_signature():
    cfg = PAPER_MACS["3x1_acc8_k4"]
    assert _elaborated(MAC(cfg)).signature == wiring.Signature({
        "a": In(unsigned(3)), "w": In(unsigned(1)), "en": In(1), "clr": In(1),
        "acc": Out(signed(8)), "y": Out(signed(8))})
    assert _elaborated(MAC(PAPER_MACS["8x8_acc32"])).signature == wiring.Signature({
        "a": In(signed(8)), "w": In(unsigned(8)), "en": In(1), "clr": In(1),
        "acc": Out(signed(32))})
    # Keyword construction gives the same component as a MacConfig.
    kw = _elaborated(MAC(act_bits=3, act_signed=False, weight_kind="binary", acc_bits=8,
                          k=4))
    assert kw.signature == _elaborated(MAC(cfg)).signature and kw.config == cfg
    assert _elaborated(MAC.from_config(cfg)).config is cfg
    assert MAC.LATENCY == 2


_GOOD = dict(act_bits=8, act_signed=True, weight_kind="uniform", weight_bits=8, acc_bits=8, k=2)


@pytest.mark.parametrize(("change", "exc", "message"), [
    ({"act_bits": 0}, ValueError, r"^act_bits must be in \[1, 32\], got 0$"),
    ({"act_bits": 33}, ValueError, r"^act_bits must be in \[1, 32\], got 33$"),
    ({"act_signed": 1}, TypeError, r"^act_signed must be a bool, not 1$"),
    ({"weight_kind": "quaternary"}, ValueError,
     r"^weight_kind must be one of binary, ternary, uniform, got 'quaternary'$"),
    ({"weight_bits": 1}, ValueError, r"^weight_bits must be in \[2, 16\], got 1$"),
    ({"weight_bits": 17}, ValueError, r"^weight_bits must be in \[2, 16\], got 17$"),
    ({"weight_bits": None}, TypeError, r"^weight_bits must be an integer, not None$"),
    ({"weight_kind": "binary", "weight_bits": 4}, ValueError,
     r"^weight_bits must be None for binary weights, got 4$"),
    ({"acc_bits": 1}, ValueError, r"^acc_bits must be in \[2, 62\], got 1$"),
    ({"acc_bits": 64}, ValueError, r"^acc_bits must be in \[2, 62\], got 64$"),
    ({"acc_bits": 8.5}, TypeError, r"^acc_bits must be an integer, not 8\.5$"),
    ({"k": 0}, ValueError, r"^k must be >= 1, got 0$"),
    ({"k": "2"}, TypeError, r"^k must be an integer >= 1, not '2'$"),
])
def test_mac_parameter_errors(change, exc, message):
    with pytest.raises(exc, match=message):
        MAC(**{**_GOOD, **change})


def test_mac_call_errors():
    cfg = PAPER_MACS["8x8_acc32"]
    with pytest.raises(TypeError, match=r"^config must be a MacConfig, not '8x8_acc32'$"):
        MAC("8x8_acc32")
    with pytest.raises(TypeError, match=r"^MAC\(\) takes a MacConfig or keyword parameters, "
                                        r"not both \(got acc_bits, k\)$"):
        MAC(cfg, acc_bits=8, k=2)
    with pytest.raises(TypeError, match=r"^MAC\(\) needs a MacConfig or the keyword parameters "
                                        r"act_bits, act_signed, weight_kind, weight_bits, "
                                        r"acc_bits, k: .*'acc_bits'$"):
        MAC(act_bits=8, act_signed=True, weight_kind="uniform", weight_bits=8)
    with pytest.raises(TypeError, match=re.escape("unexpected keyword argument 'slope'")):
        MAC(**_GOOD, slope=2)
