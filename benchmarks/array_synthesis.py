"""The layer array in silicon: 8-bit (WrapNet, k = 2) vs 32-bit accumulators, array level.

Why: the MAC-level comparison (docs/results/mac_synthesis.md) charges every MAC its own cyclic
activation; in the array one cyclic unit and one requantizer serve all R x C PEs. This
benchmark synthesizes whole arrays (``wrapkit synth`` on an array manifest:
:mod:`wrapkit.hw.synth.array_synth`) with 8x8-bit multipliers, 8-bit wrapping accumulators
with k = 2 against 32-bit ones, times them with OpenSTA and takes the energy from an
SDF-timed gate-level simulation of a slice of a trained layer (real activation codes,
weights and requantization constants of the network in --model), and tabulates area, cycle
time, area efficiency, energy per MAC and per inference (the network's integer layers,
each at the cycle count of the cycle model).

Usage::

    .venv/bin/python benchmarks/array_synthesis.py --model tiny.wkx [--sizes 4x4,8x8]
        [--out docs/results]

Writes array_synthesis.json, array_synthesis.md and array_synthesis.png into --out.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from wrapkit.common.files import atomic_write_json, atomic_write_text  # noqa: E402
from wrapkit.hw.array.config import ArrayConfig  # noqa: E402
from wrapkit.hw.array.cycles import layer_cycles  # noqa: E402
from wrapkit.hw.array.design import array_design  # noqa: E402
from wrapkit.hw.synth.array_synth import PART_ORDER, evaluate_array, sample_job  # noqa: E402
from wrapkit.hw.verilog import write_designs  # noqa: E402
from wrapkit.ref.configs import PAPER_MACS  # noqa: E402
from wrapkit.ref.engine import Engine  # noqa: E402
from wrapkit.ref.wkx import read_export  # noqa: E402
from wrapkit.sim.layer_array import layer_shape  # noqa: E402

DESIGNS = ("8x8_acc8_k2", "8x8_acc32")
#: Buffers of every synthesized array: just large enough for the sampled layer slice
#: (8 input channels of 4x4, fan-in 72, 8 output channels).
BUFFERS = dict(act_depth=128, weight_depth=576, out_depth=128, max_channels=8)
#: The MAC-level figures this table extends (docs/results/mac_synthesis.md, 8x8 multiplier).
MAC_LEVEL = {"area_efficiency_gain": 3.54, "energy_gain": 2.83}
#: The paper's (002, Tables 2.11-2.13) 8x8 single-MAC gains, 28 nm.
PAPER = {"area_efficiency_gain": 3.16, "energy_gain": 2.23}


def _design(name, rows, cols, folder):
    cfg = ArrayConfig(rows, cols, PAPER_MACS[name], out_bits=8, **BUFFERS)
    design = array_design(cfg, f"array_r{rows}c{cols}_{name}")
    write_designs([design], folder)
    return cfg, Path(folder) / design.files[1]


def _network_cycles(cfg, model):
    engine = Engine(read_export(model))
    rows = []
    for lay in engine.integer_layers:
        shape = layer_shape(lay)
        rows.append({"layer": lay.name, "shape": shape.describe(), "macs": shape.macs,
                     "cycles": layer_cycles(cfg, shape).total})
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="trained export (.wkx)")
    ap.add_argument("--sizes", default="4x4,8x8", help="R x C list (default 4x4,8x8)")
    ap.add_argument("--out", default="docs/results")
    ap.add_argument("--merge", nargs="+", metavar="JSON",
                    help="instead of running: join the designs of earlier runs' "
                         "array_synthesis.json files (e.g. one run per size, run in parallel) "
                         "into one table")
    ap.add_argument("--macs", default=",".join(DESIGNS),
                    help=f"which of {', '.join(DESIGNS)} (default both)")
    ap.add_argument("--no-energy", action="store_true",
                    help="synthesis and timing only (the gate-level testbench of a 4x4 array "
                         "takes Icarus over 10 minutes to compile on a shared machine)")
    args = ap.parse_args(argv)
    if args.merge:
        return _merge(args.merge, Path(args.out))
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    results = []
    with tempfile.TemporaryDirectory(prefix="wrapkit-array-synth-") as tmp:
        for rows, cols in sizes:
            for name in args.macs.split(","):
                cfg, manifest = _design(name, rows, cols, tmp)
                job = sample_job(cfg, args.model)
                t0 = time.perf_counter()

                def say(s):
                    print(f"{rows}x{cols} {name}: {s}", file=sys.stderr, flush=True)
                if args.no_energy:
                    rep = _synthesis_only(manifest, say)
                else:
                    rep = evaluate_array(manifest, job, stimulus_name=job.name, progress=say)
                wall = time.perf_counter() - t0
                net = _network_cycles(cfg, args.model)
                cycles = sum(r["cycles"] for r in net)
                macs = sum(r["macs"] for r in net)
                e_cycle = rep["energy"]["energy_pj_per_cycle"] if rep["energy"] else None
                results.append({
                    "rows": rows, "cols": cols, "mac": name, "report": rep,
                    "wall_s_first_run": wall,
                    "network": {"layers": net, "cycles": cycles, "macs": macs,
                                "energy_nj": ({k: v * cycles / 1e3 for k, v in e_cycle.items()}
                                              if e_cycle else None),
                                "time_us": cycles * rep["cycle_time_ns"] / 1e3},
                })
                print(f"{rows}x{cols} {name}: done in {wall:.0f} s", file=sys.stderr)
    table = _gains(results)
    out = Path(args.out)
    payload = {"model": str(args.model), "buffers": BUFFERS, "designs": results,
               "gains": table, "mac_level": MAC_LEVEL, "paper": PAPER,
               "command": "benchmarks/array_synthesis.py --model " + str(args.model)
               + (f" --sizes {args.sizes}" if args.sizes != "4x4,8x8" else "")}
    atomic_write_json(out / "array_synthesis.json", payload)
    atomic_write_text(out / "array_synthesis.md", _markdown(payload))
    _plot(results, out / "array_synthesis.png")
    print(_markdown(payload))
    return 0


def _synthesis_only(manifest, say):
    from wrapkit.hw.synth.array_synth import _parts, synthesize_array
    flow = synthesize_array(manifest, progress=say)
    cfg = flow.manifest["config"]
    period_ns = flow.period * 1e9
    return {"design": flow.manifest["top"], "config": cfg, "cycle_time_ns": period_ns,
            "peak_gops": 2 * cfg["rows"] * cfg["cols"] / period_ns,
            "critical_path": {"start": flow.result["timing"]["startpoint"],
                              "end": flow.result["timing"]["endpoint"]},
            "area_um2": _parts(flow.result["area"]["groups"]),
            "area_um2_by_group": flow.result["area"]["groups"],
            "registers": flow.result["area"]["registers"], "energy": None}


def _merge(paths, out):
    parts = [json.loads(Path(p).read_text()) for p in paths]
    results = [r for p in parts for r in p["designs"]]
    results.sort(key=lambda r: (r["rows"] * r["cols"], DESIGNS.index(r["mac"])))
    sizes = ",".join(dict.fromkeys(f"{r['rows']}x{r['cols']}" for r in results))
    payload = {**parts[0], "designs": results, "gains": _gains(results),
               "command": f"benchmarks/array_synthesis.py --model {parts[0]['model']} "
                          f"--sizes {sizes} (one run per size, joined with --merge)"}
    atomic_write_json(out / "array_synthesis.json", payload)
    atomic_write_text(out / "array_synthesis.md", _markdown(payload))
    _plot(results, out / "array_synthesis.png")
    print(_markdown(payload))
    return 0


def _metrics(r, memories):
    rep = r["report"]
    key = "total" if memories else "total without memories"
    area = rep["area_um2"][key]
    gops = rep["peak_gops"]
    nan = float("nan")
    e_mac = rep["energy"]["energy_fj_per_mac"][key] if rep["energy"] else nan
    e_inf = r["network"]["energy_nj"][key] if r["network"]["energy_nj"] else nan
    return {"area_um2": area, "cycle_ns": rep["cycle_time_ns"], "gops": gops,
            "area_eff_um2_per_gops": area / gops, "energy_fj_per_mac": e_mac,
            "energy_nj_per_inference": e_inf}


def _gains(results):
    out = []
    sizes = sorted({(r["rows"], r["cols"]) for r in results})
    for size in sizes:
        by = {r["mac"]: r for r in results if (r["rows"], r["cols"]) == size}
        if set(by) != set(DESIGNS):
            continue
        for memories in (False, True):
            m8 = _metrics(by["8x8_acc8_k2"], memories)
            m32 = _metrics(by["8x8_acc32"], memories)
            out.append({"size": f"{size[0]}x{size[1]}", "memories": memories,
                        "area_eff_gain": m32["area_eff_um2_per_gops"]
                        / m8["area_eff_um2_per_gops"],
                        "energy_per_mac_gain": m32["energy_fj_per_mac"]
                        / m8["energy_fj_per_mac"],
                        "energy_per_inference_gain": m32["energy_nj_per_inference"]
                        / m8["energy_nj_per_inference"],
                        "area_ratio": m32["area_um2"] / m8["area_um2"],
                        "cycle_ratio": m32["cycle_ns"] / m8["cycle_ns"]})
    return out


def _fmt(v, digits=0):
    return f"{v:,.{digits}f}".replace(",", " ")


def _markdown(p):
    lines = ["# The layer array in silicon: 8-bit vs 32-bit accumulators", "",
             f"Produced by `{p['command']}`. Each array: R x C PEs with 8x8-bit multipliers, "
             "one drain lane (cyclic activation when k is set, requantizer), controller, "
             "operand fetch and buffers "
             f"(activations {p['buffers']['act_depth']}, weights {p['buffers']['weight_depth']}, "
             f"outputs {p['buffers']['out_depth']} words, {p['buffers']['max_channels']} "
             "requantization entries), synthesized with Yosys/ABC onto OSU 0.18 um "
             "(`wrapkit synth <array manifest>`, hw/synth/array_synth.py), timed with OpenSTA, "
             "energy from an SDF-timed Icarus simulation of the mapped netlist running a "
             "slice of a trained layer (gate-level outputs and cycle count checked against "
             "the reference and the cycle model).", "",
             "**Memories are synthesized as registers** (flip-flops plus one read multiplexer "
             "per read port: R ports on the activation buffer, C on the weights) -- honest "
             "about this RTL and far more expensive than SRAM; they are reported as their own "
             "part, and the gains are given without and with them.", "",
             "## Area, cycle time, energy per part", "",
             "| R x C | accumulator | part | area (um^2) | energy (fJ/MAC) |",
             "|---|---|---|---:|---:|"]
    for r in p["designs"]:
        rep = r["report"]
        for part in PART_ORDER + ("total without memories", "total"):
            lines.append(f"| {r['rows']}x{r['cols']} | {r['mac']} | {part} | "
                         f"{_fmt(rep['area_um2'][part])} | "
                         f"{_fmt(rep['energy']['energy_fj_per_mac'][part]) if rep['energy'] else 'not measured'} |")
    lines += ["", "## Array-level figures", "",
              "| R x C | accumulator | cycle time (ns) | peak Gops | area w/o mem (um^2) | "
              "area eff. w/o mem (um^2/Gops) | energy w/o mem (fJ/MAC) | inference w/o mem "
              "(nJ) | inference with mem (nJ) | network cycles | critical path |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in p["designs"]:
        m = _metrics(r, False)
        mm = _metrics(r, True)
        cp = r["report"]["critical_path"]
        lines.append(f"| {r['rows']}x{r['cols']} | {r['mac']} | {m['cycle_ns']:.2f} | "
                     f"{m['gops']:.1f} | {_fmt(m['area_um2'])} | "
                     f"{_fmt(m['area_eff_um2_per_gops'])} | {_fmt(m['energy_fj_per_mac'])} | "
                     f"{m['energy_nj_per_inference']:.1f} | "
                     f"{mm['energy_nj_per_inference']:.1f} | "
                     f"{r['network']['cycles']:,} | {cp['start'].split()[0]} -> "
                     f"{cp['end'].split()[0]} |")
    lines += ["", "## 8-bit vs 32-bit: gains (32-bit figure / 8-bit figure)", "",
              "| R x C | memories | area-eff. gain | MAC level | paper (MAC, 28 nm) | "
              "energy/MAC gain | MAC level | paper | energy/inference gain | area ratio | "
              "cycle-time ratio |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for g in p["gains"]:
        lines.append(f"| {g['size']} | {'with' if g['memories'] else 'without'} | "
                     f"{g['area_eff_gain']:.2f}x | {p['mac_level']['area_efficiency_gain']}x | "
                     f"{p['paper']['area_efficiency_gain']}x | "
                     f"{g['energy_per_mac_gain']:.2f}x | {p['mac_level']['energy_gain']}x | "
                     f"{p['paper']['energy_gain']}x | {g['energy_per_inference_gain']:.2f}x | "
                     f"{g['area_ratio']:.2f} | {g['cycle_ratio']:.2f} |")
    lines += ["", "Goal: array-level area-efficiency gain >= 4x at 8x8 PEs (without memories, "
              "like the MAC-level and paper figures, which have none).", "",
              "Settings and differences: OSU 0.18 um, 1.8 V, typical corner, no placement, "
              "routing or clock tree (the paper: TSMC 28 nm, 0.9 V, post-layout, single MACs "
              "only -- it reports no array). Area efficiency = area / peak throughput "
              "(2 operations per PE per cycle). Energy per MAC = energy of the computing "
              "window (start to done) / the slice's MACs; per inference = energy per cycle x "
              "the network's integer-layer cycles from the cycle model (hw/array/cycles.py), "
              "so the slice's activity stands for every layer. Float first/last layers and "
              "pooling (host side) are not counted. The tiny network's layers have binary "
              "weights; on the 8x8-bit multipliers they are the values +-1, so the "
              "multipliers toggle less than with 8-bit weights.", ""]
    return "\n".join(lines) + "\n"


def _plot(results, path):
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    labels = [f"{r['rows']}x{r['cols']}\n{r['mac']}" for r in results]
    bottom_a = [0.0] * len(results)
    bottom_e = [0.0] * len(results)
    for part in PART_ORDER:
        a = [r["report"]["area_um2"][part] / 1e6 for r in results]
        e = [r["report"]["energy"]["energy_fj_per_mac"][part] / 1e3 if r["report"]["energy"]
             else 0.0 for r in results]
        axes[0].bar(labels, a, bottom=bottom_a, label=part)
        axes[1].bar(labels, e, bottom=bottom_e, label=part)
        bottom_a = [x + y for x, y in zip(bottom_a, a)]
        bottom_e = [x + y for x, y in zip(bottom_e, e)]
    axes[0].set_ylabel("cell area (mm^2)")
    axes[1].set_ylabel("energy per MAC (pJ)")
    axes[0].legend(fontsize=8)
    for ax in axes:
        ax.tick_params(axis="x", labelsize=7)
    fig.suptitle("Layer arrays on OSU 0.18 um: area and energy per part (memories as registers)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
