"""Formal proofs of the generated RTL: every cyclic unit b <= 16, k <= 8, and the six paper MACs.

Why: simulation checks the inputs it is given (the cyclic unit exhaustively up to 10 bits, the
MAC on random streams); ``wrapkit prove`` covers every input. This sweep runs it on

* every standalone cyclic activation unit with ``2 <= acc_bits <= 16`` and ``1 <= k <= 8``
  (the reference's ``cyclic_threshold`` accepts all of them): SAT equivalence with the
  formula, after simulating the behavioural model on all ``2^b`` inputs against
  ``wrapkit.ref.cyclic`` (Icarus);
* the six paper MACs in ``rtl/``: BMC plus k-induction against the behavioural model, after
  simulating that model on a random stream with clears and resets against ``ref.mac_stream``;
* deliberately broken designs (``wrapkit.formal.mutants``), each of which must be refuted.

Usage: .venv/bin/python benchmarks/formal_sweep.py [--out docs/results] [--depth 4]
Writes formal.json and formal.md into --out; exit 1 if a correct design is not proved or a
broken one is.
"""

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from wrapkit.common.files import atomic_write_json, atomic_write_text
from wrapkit.formal.mac_proof import DEFAULT_DEPTH
from wrapkit.formal.model_check import check_cyclic_model, check_mac_model
from wrapkit.formal.mutants import write_mutant
from wrapkit.formal.prove import prove_manifest
from wrapkit.hw.verilog import cyclic_design, write_designs
from wrapkit.hw.manifest import load_manifest, mac_config
from wrapkit.ref.configs import PAPER_MACS

REPO = Path(__file__).resolve().parent.parent
CYCLIC_BITS = range(2, 17)
CYCLIC_K = range(1, 9)
MAC_MODEL_OPS = 20000
# Broken designs: (design, mutation). Standalone cyclic units at two widths, both mutations
# on every paper MAC they apply to.
CYCLIC_MUTANTS = [(8, 2), (16, 3)]
# A broken 8-bit MAC whose bug needs more operations than the default depth to reach from
# reset is proved again this deep, to show the trace (3-bit x binary products reach
# the threshold after 13 operations and saturation after 19).
DEEP_DEPTH = 24


def _version(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.strip().splitlines()[0]


def _cpu():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def _cyclic_sweep(work, depth):
    rows = []
    for bits in CYCLIC_BITS:
        for k in CYCLIC_K:
            design = cyclic_design(bits, k)
            folder = work / design.name
            write_designs([design], folder)
            start = time.monotonic()
            checked = check_cyclic_model(bits, k, folder)
            model_seconds = time.monotonic() - start
            result = prove_manifest(folder / f"{design.name}.json", depth=depth)
            rows.append({**result.to_dict(), "acc_bits": bits, "k": k,
                         "threshold": design.manifest["config"]["threshold"],
                         "model_inputs_checked": checked,
                         "model_check_seconds": round(model_seconds, 3)})
            print(f"{design.name}: {result.status} in {result.seconds:.2f} s "
                  f"(model checked on {checked} inputs)", flush=True)
    return rows


def _mac_proofs(work, depth):
    rows = []
    for key, cfg in PAPER_MACS.items():
        path = REPO / "rtl" / f"{cfg.name}.json"
        manifest = load_manifest(path)
        folder = work / cfg.name
        folder.mkdir()
        start = time.monotonic()
        checked = check_mac_model(mac_config(manifest), manifest["latency"], folder,
                                  n_ops=MAC_MODEL_OPS)
        model_seconds = time.monotonic() - start
        result = prove_manifest(path, depth=depth)
        rows.append({**result.to_dict(), "config": key, "model_ops_checked": checked,
                     "model_check_seconds": round(model_seconds, 3)})
        print(f"{cfg.name}: {result.status} in {result.seconds:.1f} s", flush=True)
    return rows


def _mutant_proofs(work, depth):
    targets = []
    for bits, k in CYCLIC_MUTANTS:
        design = cyclic_design(bits, k)
        write_designs([design], work / "originals")
        targets.append((work / "originals" / f"{design.name}.json", "threshold_off_by_one"))
    for cfg in PAPER_MACS.values():
        path = REPO / "rtl" / f"{cfg.name}.json"
        if cfg.k is not None:
            targets.append((path, "threshold_off_by_one"))
        targets.append((path, "saturating_accumulator"))
    rows = []
    for path, mutation in targets:
        broken = write_mutant(path, mutation, work / "mutants" / f"{path.stem}_{mutation}")
        result = prove_manifest(broken, depth=depth)
        cex = result.counterexample
        row = {**result.to_dict(), "mutation": mutation,
               "failing_cycle": cex.failing_cycle if result.status == "failed" else None}
        if result.status == "unproved" and load_manifest(broken)["config"]["acc_bits"] <= 8:
            deep = prove_manifest(broken, depth=DEEP_DEPTH)
            row["deep"] = {"depth": DEEP_DEPTH, "status": deep.status,
                           "seconds": round(deep.seconds, 3),
                           "failing_cycle": deep.counterexample.failing_cycle
                           if deep.status == "failed" else None}
        rows.append(row)
        print(f"{path.stem} + {mutation}: {result.status} in {result.seconds:.1f} s"
              + (f"; depth {DEEP_DEPTH}: {row['deep']['status']}" if "deep" in row else ""),
              flush=True)
    return rows


def _markdown(report):
    cyc, macs, mutants = report["cyclic"], report["mac"], report["mutants"]
    proved = sum(r["status"] == "proved" for r in cyc)
    lines = [
        "# Formal proofs of the generated RTL",
        "",
        f"`wrapkit prove` (docs/verification.md, \"Formal proofs\"); {report['tools']['yosys']}, "
        f"{report['tools']['z3']}, one core of {report['machine']}. Written by "
        "`benchmarks/formal_sweep.py`.",
        "",
        "## Cyclic activation units: SAT equivalence with the formula, every input",
        "",
        f"{proved} of {len(cyc)} units proved (acc_bits {CYCLIC_BITS.start}..{CYCLIC_BITS.stop - 1}"
        f" x k {CYCLIC_K.start}..{CYCLIC_K.stop - 1}); each unit's behavioural model was first "
        f"simulated on all 2^b inputs against `wrapkit.ref.cyclic` "
        f"({sum(r['model_inputs_checked'] for r in cyc)} inputs in all). Proof time in "
        "seconds (Yosys `sat`, whole run including parsing):",
        "",
        "| acc_bits | " + " | ".join(f"k={k}" for k in CYCLIC_K) + " |",
        "|---|" + "---|" * len(CYCLIC_K),
    ]
    by_key = {(r["acc_bits"], r["k"]): r for r in cyc}
    for bits in CYCLIC_BITS:
        cells = []
        for k in CYCLIC_K:
            r = by_key[(bits, k)]
            mark = "" if r["status"] == "proved" else f" **{r['status']}**"
            cells.append(f"{r['seconds']:.2f}{mark}")
        lines.append(f"| {bits} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Total proof time {sum(r['seconds'] for r in cyc):.1f} s; slowest "
        f"{max(r['seconds'] for r in cyc):.2f} s.",
        "",
        f"## Paper MACs: BMC + k-induction against the behavioural model (depth {report['depth']})",
        "",
        f"Before each proof the model was simulated on {MAC_MODEL_OPS} random operations with "
        "clears and resets against `wrapkit.ref.mac_stream`.",
        "",
        "Property: `acc` (and `y` where the MAC has a cyclic unit) equal the model's on every "
        "cycle of every input sequence (clock, reset, operands, en, clr all free).",
        "",
        "| design | outputs | status | seconds |",
        "|---|---|---|---|",
    ]
    for r in macs:
        outputs = r["property"].split(" == ")[0]
        lines.append(f"| {r['design']} | {outputs} | {r['status']} | {r['seconds']:.1f} |")
    lines += [
        "",
        "## Broken designs (must be refuted)",
        "",
        "`failed`: BMC found a trace from reset (its failing cycle given); `unproved`: the "
        "bug needs more cycles than the depth to reach from reset, and the induction step "
        "refuses the proof (a larger `--depth` turns it into a trace).",
        "",
        f"| design | mutation | depth {report['depth']} | failing cycle | seconds | "
        f"depth {DEEP_DEPTH} (8-bit, if unproved) |",
        "|---|---|---|---|---|---|",
    ]
    for r in mutants:
        cycle = "" if r["failing_cycle"] is None else r["failing_cycle"]
        deep = r.get("deep")
        deep_text = "" if deep is None else (
            f"{deep['status']} at cycle {deep['failing_cycle']} ({deep['seconds']:.1f} s)"
            if deep["status"] == "failed" else f"{deep['status']} ({deep['seconds']:.1f} s)")
        lines.append(f"| {r['design']} | {r['mutation']} | {r['status']} | {cycle} | "
                     f"{r['seconds']:.1f} | {deep_text} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "results")
    parser.add_argument("--depth", type=int, default=DEFAULT_DEPTH)
    args = parser.parse_args(argv)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="formal-sweep-") as tmp:
        work = Path(tmp)
        (work / "cyclic").mkdir()
        (work / "mac").mkdir()
        cyc = _cyclic_sweep(work / "cyclic", args.depth)
        macs = _mac_proofs(work / "mac", args.depth)
        mutants = _mutant_proofs(work, args.depth)
    report = {
        "depth": args.depth,
        "machine": _cpu(),
        "tools": {"yosys": _version(["yosys", "-V"]), "z3": _version(["z3", "--version"])},
        "wall_seconds": round(time.monotonic() - start, 1),
        "cyclic": cyc, "mac": macs, "mutants": mutants,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "formal.json", report)
    atomic_write_text(args.out / "formal.md", _markdown(report))
    bad = [r["design"] for r in cyc + macs if r["status"] != "proved"]
    accepted = [f"{r['design']}+{r['mutation']}" for r in mutants
                if r["status"] == "proved" or r.get("deep", {}).get("status") == "proved"]
    print(f"formal_sweep: {len(cyc)} cyclic units, {len(macs)} MACs, {len(mutants)} broken "
          f"designs in {report['wall_seconds']} s")
    if bad or accepted:
        print(f"formal_sweep: not proved: {bad}; broken but proved: {accepted}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
