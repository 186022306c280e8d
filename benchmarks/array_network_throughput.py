"""Verified MACs per second: a whole network on the layer array in Verilator, run free.

Why: the single-MAC preloaded path (benchmarks/cosim_throughput.py) verifies about a million
MACs a second; the array does R x C MACs a cycle. This runs every integer layer of an export
on an R x C array for --images test images through the C++ harness of
``wrapkit.sim.fast_array`` (load port and read-back in C++, the controller free between
``start`` and ``done``), checks every output word against ``wrapkit.ref`` (the layer's
reference outputs) and against the integer engine (codes before pooling, ``y`` of the last
integer layer), every cycle count against the cycle model, and reports

    verified MAC/s = MACs / (harness run + bulk check)   (and the compute-only rate)

beside the single-MAC preloaded Verilator path on the same export, measured in the same run
(``wrapkit.sim.layer_mac.cosim_layer``). Builds are excluded (a warm-up builds both).

Usage::

    .venv/bin/python benchmarks/array_network_throughput.py MODEL.wkx [--images 50]
        [--rows 8 --cols 8] [--mac-layer 2] [--out docs/results]

Writes array_network_throughput.{json,md} into --out.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from wrapkit.common.files import atomic_write_json, atomic_write_text
from wrapkit.hw.array.cycles import layer_cycles
from wrapkit.hw.array.jobs import check_job, reference_outputs, words_to_outputs
from wrapkit.hw.manifest import load_manifest, verilog_path
from wrapkit.common.datasets import load_images
from wrapkit.ref.engine import Engine
from wrapkit.ref.wkx import read_export
from wrapkit.sim.cosim_array import array_rtl
from wrapkit.sim.fast_array import build_fast_array, run_fast_array
from wrapkit.sim.layer_array import _nchw, layer_jobs, layer_shape
from wrapkit.sim.layer_mac import cosim_layer
from wrapkit.sim.network_array import network_array_config


def _array_run(model, images, rows, cols):
    engine = Engine(read_export(model))
    layers = list(engine.integer_layers)
    test = load_images(engine.export.header["input"].get("dataset"), "test").first(images)
    cfg = network_array_config(layers, rows, cols)
    manifest_path = array_rtl(cfg)
    manifest = load_manifest(manifest_path)
    t0 = time.perf_counter()
    exe = build_fast_array(manifest, verilog_path(manifest_path, manifest))
    build_s = time.perf_counter() - t0
    jobs, wants = [], []
    for lay in layers:
        codes = engine.layer_input(test.pixels, lay.index)
        fwd = engine.layer_forward(lay.index, _nchw(codes))
        for i, job in enumerate(layer_jobs(lay, codes)):
            check_job(cfg, job)
            jobs.append(job)
            y = fwd["y"][i:i + 1]
            if lay.out_kind == "requant":
                y_last = y.transpose(0, 2, 3, 1) if y.ndim == 4 else y
                pre = lay.output(y_last)
                want = pre.transpose(0, 3, 1, 2) if pre.ndim == 4 else pre
            else:
                want = y
            wants.append(np.asarray(want, dtype=np.int64).reshape(job.shape.out_channels, -1))
    run_fast_array(exe, cfg, jobs[:1])          # warm-up: page cache, binary
    t1 = time.perf_counter()
    run = run_fast_array(exe, cfg, jobs)
    t2 = time.perf_counter()
    mism_ref = mism_engine = cycle_errors = 0
    for job, want, words, cyc in zip(jobs, wants, run.words, run.cycles):
        got = words_to_outputs(cfg, job, words)
        mism_ref += int(np.count_nonzero(got != reference_outputs(job)["out"]))
        mism_engine += int(np.count_nonzero(got != want))
        cycle_errors += int(cyc != layer_cycles(cfg, job.shape).total)
    t3 = time.perf_counter()
    macs = sum(j.shape.macs for j in jobs)
    outputs = sum(w.size for w in run.words)
    return {
        "design": cfg.name, "rows": rows, "cols": cols, "images": len(test),
        "layers": len(layers), "jobs": len(jobs), "macs": macs, "outputs": outputs,
        "mismatches_vs_ref": mism_ref, "mismatches_vs_engine": mism_engine,
        "cycle_errors": cycle_errors, "cycles": int(sum(run.cycles)),
        "build_s": build_s, "harness_run_s": run.run_s, "compute_s": run.compute_s,
        "check_s": t3 - t2, "wall_s": t3 - t1,
        "verified_macs_per_s": macs / (t3 - t1),
        "compute_macs_per_s": macs / run.compute_s if run.compute_s else 0.0,
        "cycles_per_s": sum(run.cycles) / run.compute_s if run.compute_s else 0.0,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--images", type=int, default=50)
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--cols", type=int, default=8)
    ap.add_argument("--mac-layer", type=int, default=2,
                    help="layer for the single-MAC preloaded path (default 2)")
    ap.add_argument("--mac-images", type=int, default=20)
    ap.add_argument("--out", default="docs/results")
    args = ap.parse_args(argv)

    arr = _array_run(args.model, args.images, args.rows, args.cols)
    print(f"array: {arr['macs']:,} MACs, {arr['mismatches_vs_engine']} mismatches, "
          f"{arr['verified_macs_per_s']:,.0f} verified MAC/s", file=sys.stderr)
    cosim_layer(args.model, args.mac_layer, images=1, sim="verilator", path="preloaded",
                max_ops=1000)                   # warm-up build
    t0 = time.perf_counter()
    mac = cosim_layer(args.model, args.mac_layer, images=args.mac_images, sim="verilator",
                      path="preloaded")
    mac_wall = time.perf_counter() - t0
    single = {"layer": args.mac_layer, "images": args.mac_images, "ops": mac.checked,
              "mismatches": mac.mismatches, "verified_ops_per_s": mac.ops_per_s,
              "wall_s": mac_wall}
    ratio = arr["verified_macs_per_s"] / mac.ops_per_s if mac.ops_per_s else float("nan")
    payload = {"model": str(args.model), "array": arr, "single_mac_preloaded": single,
               "ratio": ratio, "target_macs_per_s": 10e6,
               "command": f"benchmarks/array_network_throughput.py {args.model} --images "
                          f"{args.images} --rows {args.rows} --cols {args.cols}"}
    out = Path(args.out)
    atomic_write_json(out / "array_network_throughput.json", payload)
    md = _markdown(payload)
    atomic_write_text(out / "array_network_throughput.md", md)
    print(md)
    ok = (arr["mismatches_vs_engine"] == 0 and arr["mismatches_vs_ref"] == 0
          and arr["cycle_errors"] == 0 and mac.ok)
    return 0 if ok else 1


def _markdown(p):
    a, s = p["array"], p["single_mac_preloaded"]
    return "\n".join([
        "# A whole network on the layer array: verified MACs per second (Verilator)", "",
        f"Produced by `{p['command']}` on the shared 2-core machine, in one run.", "",
        "| path | what | MACs verified | mismatches | wall (s) | verified MAC/s |",
        "|---|---|---:|---:|---:|---:|",
        f"| array {a['rows']}x{a['cols']}, C++ harness, controller free | {a['layers']} integer "
        f"layers x {a['images']} images ({a['jobs']} layer runs) | {a['macs']:,} | "
        f"{a['mismatches_vs_engine']} vs engine, {a['mismatches_vs_ref']} vs ref | "
        f"{a['wall_s']:.2f} | {a['verified_macs_per_s']:,.0f} |",
        f"| one MAC, preloaded (today's fast path) | layer {s['layer']} x {s['images']} images "
        f"| {s['ops']:,} | {s['mismatches']} | {s['wall_s']:.2f} | "
        f"{s['verified_ops_per_s']:,.0f} |", "",
        f"Ratio array / single MAC: **{p['ratio']:.1f}x**. Target: >= 10 M verified MAC/s "
        f"({'met' if a['verified_macs_per_s'] >= p['target_macs_per_s'] else 'missed'}).", "",
        f"Array: {a['cycles']:,} cycles in {a['compute_s']:.2f} s of compute "
        f"({a['cycles_per_s']:,.0f} cycles/s, {a['compute_macs_per_s']:,.0f} MAC/s while "
        f"computing); the harness process took {a['harness_run_s']:.2f} s with loads and "
        f"read-back, the bulk check {a['check_s']:.2f} s; every cycle count equals the cycle "
        f"model ({a['cycle_errors']} errors). Verilator build {a['build_s']:.0f} s, not "
        f"counted. Verified = every output word compared with wrapkit.ref and with the "
        f"integer engine (codes before pooling; y for the last integer layer).", ""])


if __name__ == "__main__":
    sys.exit(main())
