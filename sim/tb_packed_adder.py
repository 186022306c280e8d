"""cocotb testbench of the packed accumulator against :func:`wrapkit.ref.bitpack.packed_stream`.

Driver (inputs on falling edges) -> DUT; Monitor (outputs on falling edges) -> Scoreboard,
which compares every cycle with the reference trace of the whole stimulus and counts every
mismatch (the first :data:`MAX_LOGGED` logged in hex and decimal). Widths, lane layout and
latency come from the manifest named by ``WRAPKIT_TB_MANIFEST``.

Parameters (environment, set by :func:`wrapkit.sim.runner.run`): ``WRAPKIT_TB_MANIFEST``
(required); ``WRAPKIT_TB_OPS`` random operations (default 3000); ``WRAPKIT_TB_SEED``
(default 1); ``WRAPKIT_TB_STIMULUS`` an ``.npz`` of dot-product stimulus
(:meth:`wrapkit.sim.packed_adder_data.PackedStimulus.save` with ``segments`` and ``terms``;
required by ``test_real_layer``).

Reports (JSON beside the results): checked cycles, mismatches, and for the real layer the
register's final lane total and summed overflow flags of every dot product.
"""

import logging

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

from wrapkit.hw.manifest import load_manifest
from wrapkit.ref.bitpack import PackSpec, packed_stream

from .packed_adder_data import PackedStimulus, random_stimulus
from .testbench import PortIO, tb_param, write_report

PERIOD_NS = 10
MAX_LOGGED = 20


class Driver:
    def __init__(self, dut, ports):
        self.ports = ports
        self.clk = dut.clk

    async def drive(self, stim, on_op):
        fe = FallingEdge(self.clk)
        p = self.ports
        for i, (x, en, clr, mode) in enumerate(zip(stim.x.tolist(), stim.en.tolist(),
                                                   stim.clr.tolist(), stim.mode.tolist())):
            await fe
            on_op(i)  # sample what the previous operation left, before changing the inputs
            p["x"].write(x)
            p["en"].write(en)
            p["clr"].write(clr)
            p["mode"].write(mode)
        await fe
        on_op(len(stim.x))


class Monitor:
    def __init__(self, ports, n):
        self.ports = ports
        self.got = {name: [None] * n for name in ("acc", "flags", "total")}

    def sample(self, op):
        # Called on the falling edge after op's rising edge (latency 1).
        for name, values in self.got.items():
            values[op] = self.ports[name].read()


class Scoreboard:
    def __init__(self, spec, stim, log):
        self.log = log
        # Reserved mode code 3 adds like carry mode (documented in PackedAccumulator).
        self.ref = packed_stream(stim.x, stim.en, stim.clr, np.where(stim.mode == 3, 0,
                                                                     stim.mode), spec)
        self.stim = stim
        self.spec = spec
        self.mismatches = 0

    def check(self, got):
        flags_want = (self.ref.flags << np.arange(self.spec.lanes)).sum(axis=1)
        want = {"acc": self.ref.acc.astype(object), "flags": flags_want, "total": self.ref.total}
        widths = {"acc": self.spec.word_bits, "flags": self.spec.lanes,
                  "total": self.spec.lane_bits}
        for i in range(len(self.stim.x)):
            for name in ("acc", "flags", "total"):
                g, w = got[name][i], int(want[name][i])
                if g != w:
                    self.mismatches += 1
                    if self.mismatches <= MAX_LOGGED:
                        d = (widths[name] + 3) // 4
                        gs = "X" if g is None else f"{g} (0x{g & ((1 << widths[name]) - 1):0{d}x})"
                        self.log.error(
                            "op %d %s: got %s, want %d (0x%0*x); x=0x%x en=%d clr=%d mode=%d",
                            i, name, gs, w, d, w & ((1 << widths[name]) - 1),
                            int(self.stim.x[i]), self.stim.en[i], self.stim.clr[i],
                            self.stim.mode[i])
        return self.mismatches


async def _run(dut, stim, label):
    log = logging.getLogger(f"cocotb.tb_packed_adder.{label}")
    manifest = load_manifest(tb_param("MANIFEST"))
    cfg = manifest["config"]
    spec = PackSpec(cfg["lane_bits"], cfg["lanes"], cfg["word_bits"])
    if int(manifest["latency"]) != 1:
        raise RuntimeError(f"this testbench samples one cycle after each operation; the "
                           f"manifest says latency {manifest['latency']}")
    ports = {p["name"]: PortIO(getattr(dut, p["name"]), p) for p in manifest["ports"]}
    Clock(dut.clk, PERIOD_NS, unit="ns").start()
    for name in ("x", "en", "clr", "mode"):
        ports[name].write(0)
    ports["rst"].write(1)
    for _ in range(2):
        await FallingEdge(dut.clk)
    ports["rst"].write(0)

    monitor = Monitor(ports, len(stim.x))
    board = Scoreboard(spec, stim, log)
    await Driver(dut, ports).drive(stim, lambda i: i and monitor.sample(i - 1))
    mismatches = board.check(monitor.got)
    report = {"checked_ops": len(stim.x), "mismatches": mismatches, "spec": spec.to_dict()}
    if stim.segments is not None:
        last = stim.segments[:, 1]
        report["segment_totals"] = [monitor.got["total"][i] for i in last.tolist()]
        flags = np.array([[0 if f is None else (f >> j) & 1 for j in range(spec.lanes)]
                          for f in monitor.got["flags"]])
        report["segment_carries"] = [flags[a:b + 1].sum(axis=0).tolist()
                                     for a, b, _ in stim.segments.tolist()]
    write_report(f"test_{label}", report)
    assert mismatches == 0, f"{mismatches} mismatches over {len(stim.x)} operations"
    log.info("%d operations, all outputs equal the reference", len(stim.x))


@cocotb.test()
async def test_random(dut):
    """Random words (guard bits included), en, clr and mode codes 0..3."""
    manifest = load_manifest(tb_param("MANIFEST"))
    cfg = manifest["config"]
    spec = PackSpec(cfg["lane_bits"], cfg["lanes"], cfg["word_bits"])
    stim = random_stimulus(spec, tb_param("OPS", 3000, int), tb_param("SEED", 1, int))
    await _run(dut, stim, "random")


@cocotb.test()
async def test_real_layer(dut):
    """Dot products of a real Fashion-MNIST conv layer, one per mode in turn."""
    await _run(dut, PackedStimulus.load(tb_param("STIMULUS")), "real_layer")
