"""PackedAccumulator in Amaranth's Python simulator against ref.bitpack.packed_stream."""

import json

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned
from amaranth.lib.wiring import In, Out, Signature
from amaranth.sim import Simulator

from wrapkit.hw.packed_adder import (
    MODE_CODES,
    PackedAccumulator,
    packed_adder_design,
)
from wrapkit.hw.manifest import load_manifest
from wrapkit.ref.bitpack import PackSpec, packed_stream
from wrapkit.common.errors import UserError


def _simulate(dut, words, en, clr, modes):
    got = []

    async def testbench(ctx):
        for x, e, c, m in zip(words, en, clr, modes):
            ctx.set(dut.x, int(x))
            ctx.set(dut.en, int(e))
            ctx.set(dut.clr, int(c))
            ctx.set(dut.mode, int(m))
            await ctx.tick()
            got.append((ctx.get(dut.acc), ctx.get(dut.flags), ctx.get(dut.total)))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    return got


@pytest.mark.parametrize("lane_bits, lanes, word_bits", [(8, 4, 32), (2, 3, 32), (5, 6, 32),
                                                         (16, 4, 64), (12, 5, 64)])
def test_matches_reference(lane_bits, lanes, word_bits):
    dut = PackedAccumulator(lane_bits=lane_bits, lanes=lanes, word_bits=word_bits)
    spec = dut.spec
    rng = np.random.default_rng(lane_bits * lanes)
    n = 300
    # Half the words are lane codes with the top bit clear (as the buffer scheme packs them),
    # half any bits, so carries, guard-bit overflows and cross-lane ripples all happen.
    words = rng.integers(0, spec.used_mask, size=n, dtype=np.uint64, endpoint=True)
    clean = rng.random(n) < 0.5
    words[clean] &= np.uint64(~spec.guard_mask & spec.used_mask)
    en = rng.random(n) < 0.9
    clr = rng.random(n) < 0.08
    modes = rng.integers(0, 4, size=n)  # code 3 included: reserved, adds like carry
    ref = packed_stream(words, en, clr, np.where(modes == 3, 0, modes), spec)
    got = _simulate(dut, words, en, clr, modes)
    for i, (acc, flags, total) in enumerate(got):
        want_flags = int(sum(int(f) << j for j, f in enumerate(ref.flags[i])))
        assert (acc, flags, total) == (int(ref.acc[i]), want_flags, int(ref.total[i])), (
            f"op {i}: mode {modes[i]} got acc {acc:#x} flags {flags:#b} total {total}, "
            f"want {int(ref.acc[i]):#x} {want_flags:#b} {int(ref.total[i])}")
    assert ref.flags.sum() > 0


def test_signature_and_defaults():
    dut = PackedAccumulator()
    assert dut.spec == PackSpec(8, 4, 32)
    assert dut.signature == Signature({
        "x": In(unsigned(32)), "en": In(1), "clr": In(1), "mode": In(2),
        "acc": Out(unsigned(32)), "flags": Out(unsigned(4)), "total": Out(signed(8))})
    wide = PackedAccumulator(lane_bits=16, word_bits=64)
    assert wide.spec.lanes == 4
    # Built only to inspect, never elaborated: tell Amaranth that is intended.
    dut._MustUse__silence = wide._MustUse__silence = True
    assert MODE_CODES == {"carry": 0, "isolated": 1, "buffer": 2}


@pytest.mark.parametrize("kwargs, exc, msg", [
    (dict(lane_bits=1), ValueError, r"^lane_bits must be in \[2, 32\], got 1$"),
    (dict(lane_bits=40), ValueError, r"^lane_bits must be in \[2, 32\], got 40$"),
    (dict(lane_bits=8, lanes=5), ValueError,
     r"^lanes must be in \[1, 4\] for lane_bits=8 in a 32-bit word, got 5$"),
    (dict(word_bits=48), ValueError, r"^word_bits must be 32 or 64, got 48$"),
    (dict(lane_bits="8"), TypeError, r"^lane_bits must be an integer, not '8'$"),
])
def test_bad_parameters(kwargs, exc, msg):
    with pytest.raises(exc, match=msg):
        PackedAccumulator(**kwargs)


def test_design_manifest_roundtrip(tmp_path):
    from wrapkit.hw.verilog import write_designs

    design = packed_adder_design()
    assert design.name == "packed_acc_w32_l4x8"
    write_designs([design], tmp_path)
    m = load_manifest(tmp_path / "packed_acc_w32_l4x8.json")
    assert m["config"] == {"lane_bits": 8, "lanes": 4, "word_bits": 32,
                           "mode_codes": {"carry": 0, "isolated": 1, "buffer": 2}}
    assert m["latency"] == PackedAccumulator.LATENCY
    assert "module packed_acc_w32_l4x8" in (tmp_path / "packed_acc_w32_l4x8.v").read_text()
    # An edited Verilog file is refused.
    v = tmp_path / "packed_acc_w32_l4x8.v"
    v.write_text(v.read_text() + "\n// edited\n")
    with pytest.raises(UserError, match=r"does not match verilog_sha256"):
        load_manifest(tmp_path / "packed_acc_w32_l4x8.json")
    bad = json.loads((tmp_path / "packed_acc_w32_l4x8.json").read_text())
    bad["ports"][2]["width"] = 16
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(UserError, match=r"^RTL manifest .*bad\.json: ports .* disagree"):
        load_manifest(tmp_path / "bad.json")
