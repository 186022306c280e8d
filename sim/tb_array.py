"""cocotb testbench of a generated layer array (``wrapkit rtl array``) on whole layers.

For each layer of the job file it loads the layer through the array's load port, starts it,
waits for ``done`` (the simulator runs freely: no Python per cycle while the array works),
reads the output buffer back and compares every output with the reference, bit for bit::

    ArrayDriver ── load_program(cfg, job) ──► ld_* ports, start ──► done ──► rd_addr/rd_data
         │                                                                       │
    reference_outputs(job)  (wrapkit.ref only) ──────────► ArrayScoreboard ◄─────┘
    layer_cycles(cfg, shape) (cycle model)     ──────────►  (cycles port, sim time)

Everything about the design — port widths, the load codes, the read latency, the clock and
reset — comes from the manifest (``WRAPKIT_TB_MANIFEST``); the layers come from a job file
holding :func:`wrapkit.hw.array.jobs.jobs_bytes` (``WRAPKIT_TB_JOBS``). The layers run
back to back without a reset in between, so each one also checks that nothing of the
previous layer leaks into it. Per layer the report holds the cycle counts (the ``cycles``
port, the count from simulation time, the cycle model), the MAC utilisation, the mismatches
and the wall time of each phase; the output words are saved as ``<test>_<i>_out.npy``.
"""

import io
import logging
import os
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import FallingEdge, RisingEdge, with_timeout

from wrapkit.hw.array.config import ArrayConfig
from wrapkit.hw.array.cycles import layer_cycles
from wrapkit.hw.array.jobs import (
    check_job,
    load_jobs,
    load_program,
    reference_outputs,
    words_to_outputs,
)
from wrapkit.hw.manifest import load_manifest, port
from wrapkit.common.files import atomic_write_bytes

from .runner import REPORT_DIR_ENV
from .testbench import PortIO, fmt_value, tb_param, write_report

PERIOD_NS = 10
MAX_LOGGED = 20
# Generous bound on the wait for done: the cycle model's count plus this margin.
TIMEOUT_MARGIN = 1000


def _bit(port):
    """A 1-bit port as 0/1 (None if X/Z); cocotb hands back a ``Logic``, not an array."""
    value = port.handle.value
    return int(value) if value.is_resolvable else None


class ArrayDriver:
    """Drives the load port, the start pulse and the read port on falling clock edges."""

    def __init__(self, dut, manifest, log):
        self.log = log.getChild("driver")
        self.clk = getattr(dut, manifest["clock"])
        self.io = {p["name"]: PortIO(getattr(dut, p["name"]), p) for p in manifest["ports"]
                   if p["name"] not in (manifest["clock"],)}
        self.rst = self.io[manifest["reset"]["port"]]
        self.codes = manifest["interface"]["load_targets"]
        self.read_latency = int(manifest["latency"])

    async def reset(self, cycles=2):
        for name in ("ld_en", "start", "ld_sel", "ld_addr", "ld_data", "rd_addr"):
            self.io[name].write(0)
        self.rst.write(1)
        for _ in range(cycles):
            await FallingEdge(self.clk)
        self.rst.write(0)

    async def load(self, sel, addr, data):
        """One write per cycle; ``data`` as two's complement on the 64-bit bus."""
        fe = FallingEdge(self.clk)
        io = self.io
        en, s_port, a_port, d_port = io["ld_en"], io["ld_sel"], io["ld_addr"], io["ld_data"]
        for s, a, v in zip(sel.tolist(), addr.tolist(), data.tolist()):
            await fe
            en.write(1)
            s_port.write(s)
            a_port.write(a)
            d_port.write(v)
        await fe
        en.write(0)

    async def run(self, timeout_cycles):
        """Pulse start; wait for done. Returns (cycles port, cycles by sim time, busy ok)."""
        io = self.io
        await FallingEdge(self.clk)
        io["start"].write(1)
        start_edge_ns = get_sim_time("ns") + PERIOD_NS / 2
        await FallingEdge(self.clk)
        io["start"].write(0)
        busy_ok = _bit(io["busy"]) == 1
        await with_timeout(RisingEdge(io["done"].handle), timeout_cycles * PERIOD_NS, "ns")
        done_edge_ns = get_sim_time("ns")
        await FallingEdge(self.clk)
        busy_ok = busy_ok and _bit(io["done"]) == 1 and _bit(io["busy"]) == 0
        by_time = round((done_edge_ns - start_edge_ns) / PERIOD_NS)
        return io["cycles"].read(), by_time, busy_ok

    async def read_back(self, n):
        """Output words 0 .. n-1, one address per cycle (pipelined by the read latency)."""
        fe = FallingEdge(self.clk)
        addr, data = self.io["rd_addr"], self.io["rd_data"]
        words = []
        lat = self.read_latency
        for a in range(n + lat):
            if a < n:
                addr.write(a)
            if a >= lat:
                words.append(data.read())
            await fe
        return words


class ArrayScoreboard:
    """Compares a layer's outputs with ``reference_outputs``; counts every mismatch."""

    def __init__(self, log, out_bits):
        self.log = log.getChild("scoreboard")
        self.out_bits = out_bits
        self.checked = 0
        self.mismatches = 0
        self.examples = []

    def compare(self, job, got, unresolved):
        ref = reference_outputs(job)
        exp = ref["out"]
        bad = unresolved | (got != exp)
        ow = job.shape.out_w
        for o, p in zip(*np.nonzero(bad)):
            self.mismatches += 1
            if len(self.examples) < MAX_LOGGED:
                g = None if unresolved[o, p] else int(got[o, p])
                msg = (f"{job.name}: output (channel {o}, y {p // ow}, x {p % ow}) expected "
                       f"{fmt_value(int(exp[o, p]), self.out_bits)} got "
                       f"{fmt_value(g, self.out_bits)} (dot product {int(ref['z'][o, p])}, "
                       f"MAC output {int(ref['y'][o, p])})")
                self.examples.append(msg)
                self.log.error("mismatch %s", msg)
        self.checked += exp.size
        return int(bad.sum())


def _save_npy(name, array):
    folder = os.environ.get(REPORT_DIR_ENV)
    if folder:
        buf = io.BytesIO()
        np.save(buf, array)
        atomic_write_bytes(Path(folder) / name, buf.getvalue())


@cocotb.test()
async def test_layers(dut):
    """Every layer of the job file, end to end, outputs and cycle counts checked."""
    manifest = load_manifest(tb_param("MANIFEST"))
    if manifest["design"] != "array":
        raise RuntimeError(f"{manifest['top']} is a {manifest['design']!r} design, not an "
                           "array")
    cfg = ArrayConfig.from_dict(manifest["config"])
    jobs = load_jobs(tb_param("JOBS"))
    log = logging.getLogger(f"cocotb.{manifest['top']}.layers")
    driver = ArrayDriver(dut, manifest, log)
    board = ArrayScoreboard(log, port(manifest, "rd_data")["width"])
    Clock(driver.clk, PERIOD_NS, unit="ns", impl="gpi").start()
    await driver.reset()
    layers = []
    cycle_errors = []
    for i, job in enumerate(jobs):
        check_job(cfg, job)
        model = layer_cycles(cfg, job.shape)
        sel, addr, data = load_program(cfg, job)
        t0 = time.perf_counter()
        await driver.load(sel, addr, data)
        t1 = time.perf_counter()
        cycles, by_time, handshake_ok = await driver.run(model.total + TIMEOUT_MARGIN)
        t2 = time.perf_counter()
        n = job.shape.out_channels * job.shape.positions
        raw = await driver.read_back(n)
        t3 = time.perf_counter()
        unresolved = np.array([w is None for w in raw]).reshape(job.shape.out_channels, -1)
        words = np.array([0 if w is None else w for w in raw], dtype=np.int64)
        got = words_to_outputs(cfg, job, words)
        bad = board.compare(job, got, unresolved)
        _save_npy(f"test_layers_{i}_out.npy", got)
        # x/z words read back as 0 in `got`: the host needs the mask to count them.
        _save_npy(f"test_layers_{i}_unresolved.npy", unresolved)
        if not (cycles == by_time == model.total) or not handshake_ok:
            cycle_errors.append(f"{job.name}: cycles port {cycles}, by simulation time "
                                f"{by_time}, cycle model {model.total}, busy/done handshake "
                                f"{'ok' if handshake_ok else 'wrong'}")
        layers.append({
            "name": job.name, "layer": job.shape.describe(), "outputs": int(n),
            "mismatches": bad, "cycles": cycles, "cycles_by_sim_time": by_time,
            "model": model.to_dict(), "load_words": int(len(sel)),
            "wall_s": {"load": t1 - t0, "compute": t2 - t1, "read_back": t3 - t2},
            "compute_cycles_per_s": cycles / (t2 - t1) if t2 > t1 else 0.0,
        })
        log.info("%s (%s): %d outputs, %d mismatches, %d cycles (model %d), utilisation "
                 "%.3f, %.2f s compute", job.name, job.shape.describe(), n, bad, cycles,
                 model.total, model.utilisation, t2 - t1)
    report = {"design": manifest["top"], "config": manifest["config"], "layers": layers,
              "outputs_checked": board.checked, "mismatches": board.mismatches,
              "mismatch_examples": board.examples, "cycle_errors": cycle_errors}
    write_report("test_layers", report)
    assert board.mismatches == 0, (f"{board.mismatches} mismatches in {board.checked} outputs;"
                                   f" first: {board.examples[0]}")
    assert not cycle_errors, "; ".join(cycle_errors)
    assert board.checked > 0, "no output was checked"
