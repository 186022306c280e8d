"""Full conv layers of a trained VGG-7 through the RTL layer array, on both simulators.

Why: the layer array's acceptance measurement. Integer conv layers of a trained WrapNet VGG-7 (an
export written by ``wrapkit export``) run on an R x C array generated for each layer's
bit widths (``wrapkit cosim layer ... --datapath array``): outputs are compared bit for bit
with the integer engine (codes before pooling, and the pooled codes), cycles with the cycle
model; per simulator it reports cycles, MAC utilisation and wall time (simulation of the
layer, loading, reading back; generation and compilation separately). It also tabulates the
cycle model for every integer layer of the network on 4x4, 8x8 and 16x16 arrays (no
simulation), with a plot of the utilisation.

Usage::

    .venv/bin/python benchmarks/array_layer.py --model runs/vgg7.wkx [--layers 1,2]
        [--rows 8 --cols 8] [--sims icarus,verilator] [--images 1] [--out docs/results]

Writes array_layer.json, array_layer.md and array_layer.png into --out.
"""

import argparse
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from wrapkit.hw.array.config import ArrayConfig  # noqa: E402
from wrapkit.hw.array.cycles import layer_cycles  # noqa: E402
from wrapkit.ref.engine import Engine  # noqa: E402
from wrapkit.common.files import atomic_write_json, atomic_write_text  # noqa: E402
from wrapkit.ref.wkx import read_export  # noqa: E402
from wrapkit.sim.layer_array import array_for_layer, cosim_array_layer, layer_shape  # noqa: E402

SIZES = ((4, 4), (8, 8), (16, 16))


def _default_layers(engine):
    """The first two integer conv layers: the first (its input quantized from the float
    stem; pooled in VGG-7) and the second (its input requantized by the first)."""
    convs = [l.index for l in engine.integer_layers if l.kind == "conv2d"]
    if not convs:
        sys.exit("the export has no integer conv2d layer")
    return convs[:2]


def _model_table(engine):
    rows = []
    for lay in engine.integer_layers:
        shape = layer_shape(lay)
        entry = {"index": lay.index, "name": lay.name, "layer": shape.describe(),
                 "macs": shape.macs, "arrays": {}}
        for r, c in SIZES:
            cfg = ArrayConfig(r, c, lay.cfg)
            rep = layer_cycles(cfg, shape)
            entry["arrays"][f"{r}x{c}"] = {"cycles": rep.total,
                                            "utilisation": rep.utilisation,
                                            "stall_cycles": rep.stall_cycles}
        rows.append(entry)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="a .wkx export of a trained VGG-7")
    ap.add_argument("--layers", default=None,
                    help="integer layer indices, e.g. 1,2 (default: the first two integer "
                         "convs)")
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--cols", type=int, default=8)
    ap.add_argument("--sims", default="icarus,verilator")
    ap.add_argument("--images", type=int, default=1)
    ap.add_argument("--out", default="docs/results")
    args = ap.parse_args(argv)
    out = Path(args.out)

    exp = read_export(args.model)
    engine = Engine(exp)
    layers = (_default_layers(engine) if args.layers is None
              else [int(v) for v in args.layers.split(",") if v.strip()])
    runs, designs = [], {}
    for layer in layers:
        lay = engine.layer(layer)
        cfg = array_for_layer(lay, args.rows, args.cols)
        designs[layer] = cfg.name
        print(f"array_layer: layer {layer} ({lay.name}: {lay.describe()}, {lay.cfg.name}) on "
              f"a {args.rows}x{args.cols} array ({cfg.name})", flush=True)
        for sim in [s.strip() for s in args.sims.split(",") if s.strip()]:
            t0 = time.perf_counter()
            r = cosim_array_layer(args.model, layer, images=args.images, sim=sim,
                                  rows=args.rows, cols=args.cols,
                                  progress=lambda m, s=sim: print(f"  [{s}] {m}", flush=True))
            d = r.to_dict()
            d["total_wall_s"] = time.perf_counter() - t0
            runs.append(d)
            print(f"  [{sim}] ok={r.ok}: {r.outputs:,} outputs, {r.mismatches} mismatches vs "
                  f"engine ({r.pooled_mismatches} of {r.pooled_checked:,} pooled), "
                  f"{r.cycles:,} cycles (model {r.model_cycles:,}), utilisation "
                  f"{100 * r.utilisation:.1f}%, compute {r.compute_s:.1f} s "
                  f"({r.cycles_per_s:,.0f} cycles/s), build {r.build_s:.1f} s", flush=True)
    table = _model_table(engine)
    result = {
        "model": str(args.model), "export_sha256": exp.sha256,
        "dataset": exp.header["input"].get("dataset"), "rows": args.rows, "cols": args.cols,
        "designs": designs, "images": args.images, "runs": runs, "cycle_model": table,
    }
    # Simulator speed, per layer simulated on two simulators in this run.
    ratios = {}
    for layer in layers:
        per = {r["sim"]: r["compute_s"] for r in runs if r["layer"] == layer}
        if len(per) == 2 and min(per.values()) > 0:
            (s0, c0), (s1, c1) = per.items()
            ratios[str(layer)] = {"pair": f"{s1}/{s0}", "compute_speedup": c0 / c1}
    result["compute_speed_ratio"] = ratios
    atomic_write_json(out / "array_layer.json", result)

    lines = [
        "# Trained VGG-7 conv layers on the RTL layer array",
        "",
        f"Export `{args.model}` (dataset {result['dataset']}), {args.rows}x{args.cols} arrays "
        f"generated per layer, {args.images} test image(s) per run. Written by "
        "`benchmarks/array_layer.py`. Outputs are compared with the integer engine bit for "
        "bit (codes before pooling; pooled codes where the layer pools); cycles are the RTL's "
        "`cycles` port (the testbench also checks them against simulation time).",
        "",
        "| layer | simulator | outputs | mismatches | pooled mismatches | cycles | cycle model "
        "| MAC utilisation | compute wall s | cycles/s | load s | read back s "
        "| simulator run s | generation + build s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r['layer']} {r['name']}: {r['describe']} | {r['sim']} | {r['outputs']:,} | "
            f"{r['mismatches']} | {r['pooled_mismatches']} of {r['pooled_checked']:,} | "
            f"{r['cycles']:,} | {r['model_cycles']:,} | {100 * r['utilisation']:.1f}% | "
            f"{r['compute_s']:.2f} | {r['cycles_per_s']:,.0f} | {r['load_s']:.2f} | "
            f"{r['read_back_s']:.2f} | {r['sim_wall_s']:.2f} | {r['build_s']:.1f} |")
    for layer, v in ratios.items():
        lines.append("")
        lines.append(f"Layer {layer}: compute speed ratio {v['pair']} "
                     f"{v['compute_speedup']:.1f}x (same run).")
    lines += ["", "## Cycle model, every integer layer (no simulation)", "",
              "| # | layer | MACs | " + " | ".join(f"{r}x{c} cycles | {r}x{c} util."
                                                  for r, c in SIZES) + " |",
              "|---|---|---|" + "---|---|" * len(SIZES)]
    for e in table:
        cells = " | ".join(f"{e['arrays'][f'{r}x{c}']['cycles']:,} | "
                           f"{100 * e['arrays'][f'{r}x{c}']['utilisation']:.1f}%"
                           for r, c in SIZES)
        lines.append(f"| {e['index']} | {e['name']}: {e['layer']} | {e['macs']:,} | {cells} |")
    atomic_write_text(out / "array_layer.md", "\n".join(lines) + "\n")

    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / len(SIZES)
    for i, (r, c) in enumerate(SIZES):
        xs = [j + (i - (len(SIZES) - 1) / 2) * width for j in range(len(table))]
        ax.bar(xs, [100 * e["arrays"][f"{r}x{c}"]["utilisation"] for e in table], width,
               label=f"{r}x{c}")
    ax.set_xticks(range(len(table)), [e["name"] for e in table], rotation=30, ha="right")
    ax.set_ylabel("MAC utilisation (%)")
    ax.set_title("Layer array utilisation per integer layer (cycle model)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "array_layer.png", dpi=120)
    print(f"array_layer: wrote {out / 'array_layer.json'}, .md, .png")
    return 0 if all(r["ok"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
