"""Cell area of three formulations of the cyclic activation circuit (same function).

Why: ``hw/cyclic.py`` picks one circuit structure among logically equivalent ones; this script
is the measurement behind that choice (docs/hardware.md). Each variant is first checked
against ``ref.cyclic`` in Amaranth's simulator, then synthesized alone with Yosys + ABC onto
the OSU 0.18um library (area-oriented default ABC script), and its chip area is read from
``stat -liberty``.

Variants:
  wrapkit   hw.cyclic.CyclicActivation: sign-bit flip s = wrap(m + 2^(b-1)), fold = -k*s on
            the low n+1 bits of s only, two nested selections.
  direct    the textbook formula: m > T ? k*(2^(b-1) - m) : m < -T ? -k*(2^(b-1) + m) : m.
  flip_mux  sign-bit flip on the full width, one selection on (m > T) | (m < -T).

Usage: .venv/bin/python benchmarks/cyclic_area.py [--out docs/results]
Writes cyclic_area.json and cyclic_area.md into --out.
"""

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from amaranth.back import verilog
from amaranth.hdl import Cat, Module, Mux, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator
from tqdm import tqdm

from wrapkit.hw.cyclic import CyclicActivation
from wrapkit.ref.datapath import cyclic, cyclic_threshold
from wrapkit.common.files import atomic_write_json, atomic_write_text

LIBERTY = Path("/usr/share/qflow/tech/osu018/osu018_stdcells.lib")
# The paper's two slopes on its 8-bit accumulator, a slope that is not a power of two, and
# wider accumulators.
CONFIGS = [(8, 2), (8, 4), (8, 3), (12, 3), (16, 4)]
VARIANTS = ("wrapkit", "direct", "flip_mux")


class _Alternative(wiring.Component):
    """The comparison circuits (same ports and function as CyclicActivation)."""

    def __init__(self, acc_bits, k, variant):
        self._b, self._k, self._variant = acc_bits, k, variant
        super().__init__({"m": In(signed(acc_bits)), "y": Out(signed(acc_bits))})

    def elaborate(self, platform):
        mod = Module()
        b, k = self._b, self._k
        half, t = 1 << (b - 1), cyclic_threshold(b, k)
        m = self.m
        if self._variant == "direct":
            mod.d.comb += self.y.eq(Mux(m > t, k * (half - m), Mux(m < -t, -k * (half + m), m)))
        else:
            s = Cat(m[:b - 1], ~m[b - 1]).as_signed()
            mod.d.comb += self.y.eq(Mux((m > t) | (m < -t), s * -k, m))
        return mod


def _build(variant, b, k):
    return CyclicActivation(b, k) if variant == "wrapkit" else _Alternative(b, k, variant)


def _check(variant, b, k):
    """The variant computes ref.cyclic (exhaustive up to 12 bits, 4096 samples beyond)."""
    dut = _build(variant, b, k)
    half = 1 << (b - 1)
    if b <= 12:
        inputs = np.arange(-half, half)
    else:
        inputs = np.random.default_rng(b * 100 + k).integers(-half, half, 4096)
    got = []

    async def testbench(ctx):
        for v in inputs.tolist():
            ctx.set(dut.m, v)
            got.append(ctx.get(dut.y))

    sim = Simulator(dut)
    sim.add_testbench(testbench)
    sim.run()
    want = cyclic(inputs, b, k).tolist()
    if got != want:
        first = next(i for i, (g, w) in enumerate(zip(got, want)) if g != w)
        raise AssertionError(f"{variant} b={b} k={k}: m={inputs[first]} expected {want[first]} "
                             f"got {got[first]}")


def _area(variant, b, k):
    text = verilog.convert(_build(variant, b, k), name="cyc", emit_src=False)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "cyc.v"
        src.write_text(text)
        script = (f"read_verilog {src}; synth -flatten -top cyc; "
                  f"abc -liberty {LIBERTY}; stat -liberty {LIBERTY}")
        proc = subprocess.run(["yosys", "-p", script], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"yosys failed for {variant} b={b} k={k}: {proc.stderr[-500:]}")
    areas = re.findall(r"Chip area for module '\\?cyc': ([0-9.]+)", proc.stdout)
    return float(areas[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/results", type=Path)
    args = parser.parse_args(argv)
    if shutil.which("yosys") is None or not LIBERTY.exists():
        print(f"cyclic_area: needs yosys and {LIBERTY}; run `make setup`", file=sys.stderr)
        return 2
    rows = []
    for b, k in tqdm(CONFIGS, desc="cyclic area (check, synthesize)"):
        row = {"acc_bits": b, "k": k, "threshold": cyclic_threshold(b, k)}
        for variant in VARIANTS:
            _check(variant, b, k)
            row[variant] = _area(variant, b, k)
        rows.append(row)

    lines = ["# Cyclic activation: cell area of three equivalent circuits", "",
             f"Yosys `synth -flatten; abc -liberty` onto {LIBERTY.name} (area units of the "
             "library, um^2); every variant checked against `ref.cyclic` first.", "",
             "| acc_bits | k | T | wrapkit | direct | flip_mux | wrapkit / direct |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['acc_bits']} | {r['k']} | {r['threshold']} | {r['wrapkit']:.0f} | "
                     f"{r['direct']:.0f} | {r['flip_mux']:.0f} | "
                     f"{r['wrapkit'] / r['direct']:.3f} |")
    atomic_write_json(args.out / "cyclic_area.json",
                      {"liberty": str(LIBERTY), "variants": list(VARIANTS), "rows": rows})
    atomic_write_text(args.out / "cyclic_area.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {args.out / 'cyclic_area.json'} and {args.out / 'cyclic_area.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
