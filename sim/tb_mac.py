"""cocotb testbench of a generated MAC design against the reference model.

Structure (as in cocotb's matrix_multiplier example)::

    MacDriver ──on_op(cycle, op)──► MacModel (wrapkit.ref, streamed) ─┐
        │ drives a, w, en, clr, rst on falling clock edges            ├─► MacScoreboard
    MacMonitor ──on_sample(cycle, acc, y)─────────────────────────────┘   (in order, counts
        samples acc, y on falling clock edges                              every mismatch)

Everything design-specific — port widths and signedness, the weight encoding, the latency,
the clock and reset names — comes from the manifest named by ``WRAPKIT_TB_MANIFEST``. An
operation driven on falling edge ``c`` is captured at the next rising edge and visible in
``acc`` ``latency`` rising edges later, so the monitor's sample on falling edge
``c + latency`` belongs to it; the scoreboard pairs them by cycle number.

Parameters (environment, set by :func:`wrapkit.sim.runner.run`):
``WRAPKIT_TB_MANIFEST`` (required), ``WRAPKIT_TB_OPS`` (random operations, default 20000),
``WRAPKIT_TB_SEED`` (stimulus seed, default 1), ``WRAPKIT_TB_HOLD_CAP`` (most cycles the
full-width accumulation test may hold its inputs, default 2^18).
"""

import logging
import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import FallingEdge, Timer

from wrapkit.hw.manifest import load_manifest, mac_config, port
from wrapkit.ref.datapath import decode_weights, wrap

from .mac_model import MacModel
from .stimulus import mac_stimulus, saturating_pair, stream_coverage
from .testbench import PortIO, fmt_value, tb_param, write_report

# The clock period is arbitrary for a zero-delay RTL simulation; 10 ns reads well in waves.
PERIOD_NS = 10
# Mismatches beyond this many are counted but not logged one by one.
MAX_LOGGED = 20
# Compare in blocks: one vectorized reference evaluation per block instead of per cycle.
FLUSH_EVERY = 4096
# Held-input run length when a full-width wrap is out of reach of the hold cap.
_UNREACHABLE_RUN = 4096


class MacDriver:
    """Drives operations onto the MAC's inputs, one per clock cycle, on falling edges.

    Callbacks registered with :meth:`add_callback` get ``(cycle, a, w, en, clr, rst)`` for
    every operation, ``cycle`` being the falling edge it was driven on.
    """

    def __init__(self, dut, manifest, log):
        self.log = log.getChild("driver")
        self.clk = getattr(dut, manifest["clock"])
        self.ports = {name: PortIO(getattr(dut, name), port(manifest, name))
                      for name in ("a", "w", "en", "clr")}
        self.rst = PortIO(getattr(dut, manifest["reset"]["port"]),
                          port(manifest, manifest["reset"]["port"]))
        self._callbacks = []
        self.ops = 0

    def add_callback(self, fn):
        self._callbacks.append(fn)

    def _apply(self, a, w, en, clr, rst):
        p = self.ports
        p["a"].write(a)
        p["w"].write(w)
        p["en"].write(en)
        p["clr"].write(clr)
        self.rst.write(rst)

    async def reset(self, cycles=2):
        """Hold reset for ``cycles`` cycles with idle inputs; returns on a falling edge."""
        self._apply(0, 0, 0, 0, 1)
        for _ in range(cycles):
            await FallingEdge(self.clk)
        self.rst.write(0)

    async def drive(self, a, w, en, clr, rst):
        """Drive one operation per cycle from the equal-length sequences given."""
        fe = FallingEdge(self.clk)
        callbacks = self._callbacks
        for op in zip(a.tolist(), w.tolist(), en.tolist(), clr.tolist(), rst.tolist()):
            await fe
            self._apply(*op)
            cycle = _cycle()
            for fn in callbacks:
                fn(cycle, *op)
            self.ops += 1

    async def drive_stream(self, stream):
        """Drive every operation of a :class:`~wrapkit.ref.opstream.MacOpStream`, in order."""
        await self.drive(*(x.astype(np.int64) for x in (stream.a, stream.w, stream.en,
                                                        stream.clr, stream.rst)))

    async def hold(self, op, cycles):
        """Drive the same operation for ``cycles`` cycles with a single timer wait."""
        await FallingEdge(self.clk)
        self._apply(*op)
        first = _cycle()
        for fn in self._callbacks:
            fn(first, *op, count=cycles)
        self.ops += cycles
        # The op occupies falling edges first .. first+cycles-1. Wake a quarter period before
        # edge first+cycles, which the next drive()/hold() awaits to present its first op.
        await Timer(cycles * PERIOD_NS * 1000 - PERIOD_NS * 250, unit="ps")
        self.log.debug("held %s for %d cycles from cycle %d", op, cycles, first)


class MacMonitor:
    """Samples ``acc`` (and ``y`` when the design has it) on every falling edge."""

    def __init__(self, dut, manifest, log):
        self.log = log.getChild("monitor")
        self.clk = getattr(dut, manifest["clock"])
        names = [p["name"] for p in manifest["ports"] if p["direction"] == "output"]
        self.outputs = [PortIO(getattr(dut, n), port(manifest, n)) for n in names]
        self._callbacks = []
        self.samples = 0

    def add_callback(self, fn):
        self._callbacks.append(fn)

    async def run(self):
        fe = FallingEdge(self.clk)
        outputs = self.outputs
        callbacks = self._callbacks
        while True:
            await fe
            values = [p.read() for p in outputs]
            cycle = _cycle()
            for fn in callbacks:
                fn(cycle, values)
            self.samples += 1


class MacScoreboard:
    """Pairs each monitor sample with the operation driven ``latency`` cycles before it and
    compares with the model, in order. Every mismatch is counted; the first
    :data:`MAX_LOGGED` are logged with cycle, operands, expected and actual values.

    Operations whose output cycle was never sampled (inside a held-input run) are counted as
    ``unobserved``, not checked.
    """

    def __init__(self, model, manifest, output_names, log):
        self.log = log.getChild("scoreboard")
        self.model = model
        self.latency = int(manifest["latency"])
        self.cfg = model.cfg
        self.widths = {p["name"]: p["width"] for p in manifest["ports"]}
        self.output_names = output_names
        self.ops_cycle = []        # cycle of op i (the driver's order)
        self.ops_fields = []       # (a, w, en, clr, rst) of op i, for messages
        self._next = 0             # first op not yet paired
        self._pairs = []           # (op index, sample cycle, values)
        self.checked = 0
        self.unobserved = 0
        self.mismatches = 0
        self.examples = []

    def on_op(self, cycle, a, w, en, clr, rst, count=1):
        if count == 1:
            self.model.push(a, w, en, clr, rst)
            self.ops_cycle.append(cycle)
            self.ops_fields.append((a, w, en, clr, rst))
        else:
            self.model.push_many(a, w, en, clr, rst, count)
            self.ops_cycle.extend(range(cycle, cycle + count))
            self.ops_fields.extend([(a, w, en, clr, rst)] * count)

    def on_sample(self, cycle, values):
        due = cycle - self.latency
        ops_cycle = self.ops_cycle
        while self._next < len(ops_cycle) and ops_cycle[self._next] < due:
            self._next += 1
            self.unobserved += 1
        if self._next < len(ops_cycle) and ops_cycle[self._next] == due:
            self._pairs.append((self._next, cycle, values))
            self._next += 1
            if len(self._pairs) >= FLUSH_EVERY:
                self.flush()

    def flush(self, final=False):
        """Compare every paired sample whose operation the model can settle."""
        if not self._pairs:
            return
        n_settled = len(self.model) if final else len(self.model) - 1
        ready = [p for p in self._pairs if p[0] < n_settled]
        self._pairs = [p for p in self._pairs if p[0] >= n_settled]
        if not ready:
            return
        idx = np.array([p[0] for p in ready], dtype=np.int64)
        exp_acc, exp_out = self.model.expected(idx, final=final)
        expected = {"acc": exp_acc, "y": exp_out}
        for j, name in enumerate(self.output_names):
            got = [p[2][j] for p in ready]
            unresolved = np.array([g is None for g in got])
            got_arr = np.array([0 if g is None else g for g in got], dtype=np.int64)
            bad = unresolved | (got_arr != expected[name])
            for k in np.flatnonzero(bad):
                self._report(ready[k], name, int(expected[name][k]), got[k])
        self.checked += len(ready)

    def _report(self, pair, name, expected, got):
        self.mismatches += 1
        i, cycle, _ = pair
        a, w, en, clr, rst = self.ops_fields[i]
        wval = int(decode_weights([w], self.cfg.weight_kind, self.cfg.weight_bits)[0])
        width = self.widths[name]
        msg = (f"cycle {cycle}: {name} expected {fmt_value(expected, width)} got "
               f"{fmt_value(got, width)} after op #{i} (driven at cycle {self.ops_cycle[i]}: "
               f"a={fmt_value(a, self.widths['a'])} w=0x{w:x} (weight {wval}) en={en} "
               f"clr={clr} rst={rst})")
        if len(self.examples) < MAX_LOGGED:
            self.examples.append(msg)
            self.log.error("mismatch %s", msg)


def _cycle():
    return int(get_sim_time("ns")) // PERIOD_NS


class MacBench:
    """The testbench objects for one test, wired together: driver, monitor, streamed
    reference model and scoreboard of the MAC named by ``WRAPKIT_TB_MANIFEST``."""

    def __init__(self, dut, name):
        path = tb_param("MANIFEST")
        self.manifest = load_manifest(path)
        if self.manifest["design"] != "mac":
            raise RuntimeError(f"{path} describes a {self.manifest['design']!r} design, "
                               "not a MAC")
        self.cfg = mac_config(self.manifest)
        self.log = logging.getLogger(f"cocotb.{self.manifest['top']}.{name}")
        self.dut = dut
        self.driver = MacDriver(dut, self.manifest, self.log)
        self.monitor = MacMonitor(dut, self.manifest, self.log)
        self.model = MacModel(self.cfg)
        outputs = [p.name for p in self.monitor.outputs]
        self.scoreboard = MacScoreboard(self.model, self.manifest, outputs, self.log)
        self.driver.add_callback(self.scoreboard.on_op)
        self.monitor.add_callback(self.scoreboard.on_sample)
        Clock(getattr(dut, self.manifest["clock"]), PERIOD_NS, unit="ns", impl="gpi").start()

    async def finish(self):
        """Let the last operation reach the outputs, stop monitoring, compare the rest."""
        for _ in range(self.scoreboard.latency + 1):
            await FallingEdge(self.driver.clk)
        self.scoreboard.flush(final=True)

    def summary(self, extra):
        sb = self.scoreboard
        return {"design": self.manifest["top"], "config": self.manifest["config"],
                "latency": sb.latency, "ops_driven": self.driver.ops, "ops_checked": sb.checked,
                "unobserved": sb.unobserved, "mismatches": sb.mismatches,
                "mismatch_examples": sb.examples, **extra}


@cocotb.test()
async def test_random_ops(dut):
    """A seeded random stream (see wrapkit.sim.stimulus) checked cycle by cycle."""
    bench = MacBench(dut, "random_ops")
    n_ops = tb_param("OPS", 20000, int)
    seed = tb_param("SEED", 1, int)
    stim = mac_stimulus(bench.cfg, n_ops, np.random.default_rng(seed))
    await bench.driver.reset()
    monitor = cocotb.start_soon(bench.monitor.run())
    t0 = time.perf_counter()
    await bench.driver.drive_stream(stim)
    await bench.finish()
    wall = time.perf_counter() - t0
    monitor.cancel()
    sb = bench.scoreboard
    coverage = stream_coverage(bench.cfg, stim, bench.model.wraps)
    report = bench.summary({"seed": seed, "wall_s": wall,
                            "ops_per_s": sb.checked / wall if wall > 0 else 0.0,
                            "phases": stim.phases, "coverage": coverage})
    write_report("test_random_ops", report)
    bench.log.info("%d ops checked, %d mismatches, %.0f ops/s; coverage %s",
                   sb.checked, sb.mismatches, report["ops_per_s"], coverage)
    assert sb.mismatches == 0, (f"{sb.mismatches} mismatches in {sb.checked} ops (seed {seed}); "
                                f"first: {sb.examples[0] if sb.examples else '?'}")
    assert sb.checked == n_ops and sb.unobserved == 0, \
        f"checked {sb.checked} of {n_ops} ops ({sb.unobserved} never sampled)"


@cocotb.test()
async def test_full_width_accumulation(dut):
    """Hold the largest product with en=1 for as many cycles as it takes the accumulator to
    wrap at its full width, then the most negative product likewise, checking the outputs
    cycle by cycle at the end of each run. Runs that would need more than
    WRAPKIT_TB_HOLD_CAP cycles are cut to 4096 cycles and reported with wrap_reached false.

    One timer wait per run keeps this cheap even for the 2^17 cycles that a 32-bit
    accumulator of 8x8 products needs.
    """
    bench = MacBench(dut, "full_width")
    cfg = bench.cfg
    cap = tb_param("HOLD_CAP", 1 << 18, int)
    runs = []
    for sign in (1, -1):
        a, w = saturating_pair(cfg, sign)
        prod = int(wrap(a * decode_weights([w], cfg.weight_kind, cfg.weight_bits)[0],
                        cfg.prod_bits))
        # Cycles until the exact sum passes the register's limit once, plus a margin. Out of
        # reach (3-bit x binary into 32 bits needs 3e8 cycles): a long run that cannot wrap.
        need = (1 << (cfg.acc_bits - 1)) // max(1, abs(prod)) + 3
        runs.append((a, w, prod, need if need <= cap else _UNREACHABLE_RUN))
    await bench.driver.reset()
    t0 = time.perf_counter()
    # Clear, then accumulate each product for its run; observe the tail of each run.
    for a, w, _, cycles in runs:
        await bench.driver.drive(*(np.array([v]) for v in (a, w, 1, 1, 0)))
        await bench.driver.hold((a, w, 1, 0, 0), cycles)
        monitor = cocotb.start_soon(bench.monitor.run())
        await bench.driver.drive(*(np.array(v) for v in ([a] * 4, [w] * 4, [1, 1, 0, 0],
                                                         [0] * 4, [0] * 4)))
        await bench.finish()
        monitor.cancel()
    wall = time.perf_counter() - t0
    sb = bench.scoreboard
    reached = [abs(p) * (c + 1) >= (1 << (cfg.acc_bits - 1)) for _, _, p, c in runs]
    report = bench.summary({"runs": [{"a": a, "w_code": w, "product": p, "cycles": c}
                                     for a, w, p, c in runs],
                            "wrap_reached": reached, "wraps": bench.model.wraps,
                            "wall_s": wall,
                            "cycles_per_s": bench.driver.ops / wall if wall > 0 else 0.0})
    write_report("test_full_width_accumulation", report)
    bench.log.info("held %s; wrap reached %s; %d samples checked, %d mismatches",
                   [r[3] for r in runs], reached, sb.checked, sb.mismatches)
    assert sb.mismatches == 0, (f"{sb.mismatches} mismatches; first: "
                                f"{sb.examples[0] if sb.examples else '?'}")
    assert sb.checked > 0, "no output was sampled"
