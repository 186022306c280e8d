"""The paper's six MAC configurations through the synthesis flow (Tables 2.11-2.13, Fig. 2.2).

Runs ``wrapkit synth paper`` -- Yosys onto OSU018, OpenSTA, SDF-timed Icarus simulation of
random operands, energy from the liberty tables -- into a fresh cache, then once more from the
cache, and prints the measured 8-bit vs 32-bit accumulator gains and the cache speed-up (both
measured in this run).

Usage: .venv/bin/python benchmarks/mac_synthesis.py [--ops 2000] [--out docs/results]
Writes mac_synthesis.{md,json,png} into --out.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from wrapkit.cli import main as wrapkit_main


def _run(args, out):
    argv = ["synth", "paper", "--ops", str(args.ops), "--out", str(out), "--goal", args.goal,
            "--rtl-dir", str(args.rtl_dir)]
    start = time.perf_counter()
    code = wrapkit_main(argv)
    if code:
        sys.exit(code)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=2000, help="operations per design")
    parser.add_argument("--goal", choices=("delay", "area"), default="delay")
    parser.add_argument("--rtl-dir", default="rtl", type=Path)
    parser.add_argument("--out", default="docs/results", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wrapkit-bench-cache-") as cache:
        os.environ["WRAPKIT_CACHE_DIR"] = cache
        print("stage: cold run (synthesis, timing, simulation)", file=sys.stderr)
        cold = _run(args, args.out)
        print("stage: warm run (everything from the cache)", file=sys.stderr)
        warm = _run(args, args.out)
    doc = json.loads((args.out / "mac_synthesis.json").read_text())
    print("\n8-bit vs 32-bit accumulator (32-bit figure / 8-bit figure):")
    for g in doc["gains_8bit_vs_32bit"]:
        print(f"  {g['multiplier']} k={g['k']}: area efficiency {g['area_efficiency_gain']:.2f}x "
              f"(seed {g['paper_area_efficiency_gain']:.2f}x), energy {g['energy_gain']:.2f}x "
              f"(seed {g['paper_energy_gain']:.2f}x)")
    print(f"\ncold run {cold:.1f} s, cached rerun {warm:.1f} s: {cold / warm:.1f}x faster "
          f"from the cache")


if __name__ == "__main__":
    main()
