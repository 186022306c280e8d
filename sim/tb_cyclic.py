"""cocotb testbench: every input of many CyclicActivation designs, checked exhaustively.

The DUT is a *bank*: one Verilog top (written by :func:`wrapkit.sim.designs.cyclic_bank`)
that instantiates several generated ``cyclic_acc<b>_k<k>`` designs side by side, each with
its own ports ``m_<unit>``/``y_<unit>``. Compiling the whole sweep as one design keeps
Verilator to a single C++ build, and driving all units at once means ``2^max_b`` simulator
steps cover every input of every unit.

Structure::

    CyclicDriver ──on_input(step, unit, m)──► CyclicScoreboard ◄──on_output(step, unit, y)── CyclicMonitor
                                                   │
                                       wrapkit.ref.cyclic (reference)

Widths, signedness, k and the latency (0: combinational) come from each unit's manifest.
Parameters (environment): ``WRAPKIT_TB_MANIFEST`` (the bank's JSON, required),
``WRAPKIT_TB_SEED`` (order in which inputs are visited, default 1).
"""

import logging
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.triggers import Timer

from wrapkit.hw.manifest import load_manifest, port
from wrapkit.ref.datapath import cyclic, operand_range

from .testbench import PortIO, fmt_value, load_json, tb_param, write_report

# Settling time after driving a combinational input (any positive time will do in RTL).
SETTLE_NS = 1
MAX_LOGGED = 20


class _Unit:
    """One CyclicActivation instance in the bank: its manifest and typed ports."""

    def __init__(self, dut, bank_dir, entry):
        self.name = entry["instance"]
        self.manifest = load_manifest(Path(bank_dir) / entry["manifest"])
        if self.manifest["design"] != "cyclic":
            raise RuntimeError(f"{entry['manifest']} is a {self.manifest['design']!r} design")
        if self.manifest["latency"] != 0 or self.manifest["clock"] is not None:
            raise RuntimeError(f"{entry['manifest']}: this testbench drives combinational "
                               f"designs (latency 0, no clock), got latency "
                               f"{self.manifest['latency']}")
        self.acc_bits = int(self.manifest["config"]["acc_bits"])
        self.k = int(self.manifest["config"]["k"])
        self.m = PortIO(getattr(dut, entry["m"]), port(self.manifest, "m"))
        self.y = PortIO(getattr(dut, entry["y"]), port(self.manifest, "y"))
        lo, hi = operand_range(self.m.width, self.m.signed)
        self.domain = np.arange(lo, hi + 1, dtype=np.int64)


class CyclicDriver:
    """Step ``s`` drives input number ``s`` of each unit's (shuffled) input domain."""

    def __init__(self, units, rng, log):
        self.log = log.getChild("driver")
        self.units = units
        self.orders = [u.domain[rng.permutation(len(u.domain))].tolist() for u in units]
        self.steps = max(len(o) for o in self.orders)
        self._callbacks = []

    def add_callback(self, fn):
        self._callbacks.append(fn)

    def apply(self, step):
        """Drive step ``step``; returns the units that got a new input."""
        active = []
        for i, (unit, order) in enumerate(zip(self.units, self.orders)):
            if step < len(order):
                unit.m.write(order[step])
                active.append(i)
                for fn in self._callbacks:
                    fn(step, i, order[step])
        return active


class CyclicMonitor:
    """Reads the outputs of the units driven in a step."""

    def __init__(self, units, log):
        self.log = log.getChild("monitor")
        self.units = units
        self._callbacks = []

    def add_callback(self, fn):
        self._callbacks.append(fn)

    def sample(self, step, active):
        for i in active:
            value = self.units[i].y.read()
            for fn in self._callbacks:
                fn(step, i, value)


class CyclicScoreboard:
    """Checks every (input, output) pair against :func:`wrapkit.ref.cyclic`; counts all
    mismatches and that every unit saw each of its inputs exactly once."""

    def __init__(self, units, log):
        self.log = log.getChild("scoreboard")
        self.units = units
        self._inputs = [{} for _ in units]
        self._outputs = [{} for _ in units]
        self.mismatches = 0
        self.checked = 0
        self.examples = []
        self.per_unit = {}

    def on_input(self, step, unit, m):
        self._inputs[unit][step] = m

    def on_output(self, step, unit, y):
        self._outputs[unit][step] = y

    def check(self):
        for i, unit in enumerate(self.units):
            steps = sorted(self._inputs[i])
            m = np.array([self._inputs[i][s] for s in steps], dtype=np.int64)
            got = [self._outputs[i].get(s) for s in steps]
            expected = cyclic(m, unit.acc_bits, unit.k)
            unresolved = np.array([g is None for g in got], dtype=bool)
            got_arr = np.array([0 if g is None else g for g in got], dtype=np.int64)
            bad = np.flatnonzero(unresolved | (got_arr != expected))
            for j in bad:
                self.mismatches += 1
                if len(self.examples) < MAX_LOGGED:
                    msg = (f"step {steps[j]}: {unit.name} (acc_bits={unit.acc_bits}, "
                           f"k={unit.k}) m={fmt_value(int(m[j]), unit.m.width)}: y expected "
                           f"{fmt_value(int(expected[j]), unit.y.width)} got "
                           f"{fmt_value(got[j], unit.y.width)}")
                    self.examples.append(msg)
                    self.log.error("mismatch %s", msg)
            covered = np.array_equal(np.sort(m), unit.domain)
            self.per_unit[unit.name] = {"acc_bits": unit.acc_bits, "k": unit.k,
                                        "inputs": int(len(m)), "all_inputs": bool(covered),
                                        "mismatches": int(len(bad))}
            self.checked += len(m)


@cocotb.test()
async def test_exhaustive(dut):
    """Every input of every unit in the bank against the reference."""
    path = Path(tb_param("MANIFEST"))
    bank = load_json(path)
    log = logging.getLogger(f"cocotb.{bank['top']}.exhaustive")
    units = [_Unit(dut, path.parent, e) for e in bank["units"]]
    driver = CyclicDriver(units, np.random.default_rng(tb_param("SEED", 1, int)), log)
    monitor = CyclicMonitor(units, log)
    scoreboard = CyclicScoreboard(units, log)
    driver.add_callback(scoreboard.on_input)
    monitor.add_callback(scoreboard.on_output)

    t0 = time.perf_counter()
    settle = Timer(SETTLE_NS, unit="ns")
    for step in range(driver.steps):
        active = driver.apply(step)
        await settle
        monitor.sample(step, active)
    wall = time.perf_counter() - t0
    scoreboard.check()
    incomplete = [n for n, u in scoreboard.per_unit.items() if not u["all_inputs"]]
    write_report("test_exhaustive", {
        "design": bank["top"], "units": scoreboard.per_unit, "inputs_checked": scoreboard.checked,
        "mismatches": scoreboard.mismatches, "mismatch_examples": scoreboard.examples,
        "steps": driver.steps, "wall_s": wall,
        "inputs_per_s": scoreboard.checked / wall if wall > 0 else 0.0})
    log.info("%d units, %d inputs checked in %d steps, %d mismatches", len(units),
             scoreboard.checked, driver.steps, scoreboard.mismatches)
    assert scoreboard.mismatches == 0, (f"{scoreboard.mismatches} mismatches; first: "
                                        f"{scoreboard.examples[0]}")
    assert not incomplete, f"units that did not see every input: {incomplete}"
