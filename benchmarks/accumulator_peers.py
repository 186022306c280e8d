"""Accuracy against accumulator width P: plain QA on a P-bit register, A2Q, A2Q+ (Brevitas) and
WrapNet, with the MAC's synthesized area and energy per P. Resumable, one command:

    .venv/bin/python benchmarks/accumulator_peers.py [--p 8 12 16 32] [--seeds 0]
    make bench-peers

Every row starts from one float VGG-7 (Fashion-MNIST, the schedule below) and trains the same
number of quantized epochs after it: QA and WrapNet through TWN (ternary weights, one epoch),
A2Q/A2Q+ directly from the float network (their quantizer replaces TWN's; 2-bit narrow
weights = ternary values), all with 3-bit unsigned activations. Each finished row is saved in
``--out/accumulator_peers.json`` and skipped when the script runs again; an interrupted run
resumes from its last checkpoint. After training, every row is also run in wrapkit's integer
engine (its exported graph) on ``--engine-images`` test images; for A2Q rows the guarantee is
checked analytically on every layer (worst case over all inputs in range,
:mod:`wrapkit.ref.accbound`) and, with ``--guarantee-p``, on the whole test set with exact
accumulators in the engine. The MAC area/energy per P comes from wrapkit's synthesis flow
(Yosys + OSU018 + OpenSTA + SDF-timed Icarus, cached): a plain P-bit accumulator for QA and
A2Q, the same plus the cyclic unit for WrapNet.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from wrapkit.common.files import atomic_write_json, atomic_write_text

SCHEDULE = {
    "widths": (16, 32, 64), "train_subset": 10000, "batch_size": 128, "lr": 1e-3,
    "fp32_epochs": 2, "twn_epochs": 1, "post_epochs": 2, "act_bits": 3,
    "calib_images": 512,
}
METHODS = ("qa", "a2q", "a2q+", "wrapnet")
NOTES = """## Setting, and how it differs from the papers

* **Data and network**: Fashion-MNIST, 10,000 of the 60,000 training images (seeded), all
  10,000 test images; wrapkit's VGG-7 at an eighth of the paper's widths (16-32-64, FC 256),
  float stem and classifier. The WrapNet seed paper (chapter 2) uses CIFAR-10 and the full
  VGG-7 (128-256-512, FC 1024); its ternary VGG-7 rows: TWN-QA 91.49 %, WrapNet (8-bit
  accumulator, 4-bit activations) 91.14 %. The A2Q papers (Colbert et al., ICCV 2023; A2Q+,
  2024; not in the seeds folder, settings quoted from memory) train MobileNetV1/ResNet-18/
  ResNet-50 on CIFAR-10/ImageNet and super-resolution networks, with 4-8-bit weights and
  activations and much longer schedules from pre-trained float models, reporting accuracy
  over a range of accumulator widths for those models; their numbers are not reproduced or
  compared here (different data, networks, bit widths and schedules).
* **Schedule** (short, for 2 shared CPU cores): one float network (2 epochs), then 3
  quantized epochs per row: QA = TWN 1 + QA 2; WrapNet = TWN 1 + warm-up 1 + fine-tune 1
  (k = 2, p = 5 %, R^o = 0.01); A2Q/A2Q+ = 3 epochs from the float network (their weight
  quantizer replaces TWN; Brevitas re-initialises its scale and norm parameters from the
  float weights) plus one BatchNorm re-estimation pass. Adam, cosine decay per stage.
* **Widths**: 3-bit unsigned activations everywhere (WrapNet's step selection capped at 3
  bits); weight *values* ternary {-1, 0, +1} everywhere: TWN for QA/WrapNet, Brevitas 2-bit
  narrow-range (= ternary) for A2Q/A2Q+. A2Q's bound leaves ‖q‖₁ <= (2^(P-1) - 1)/7 per
  output channel (18 at P = 8, A2Q+ about twice that), against fan-ins of 144-576.
* **Accumulator semantics during training**: QA trains with the P-bit wrap (overflow
  included, k = infinity in the seed's terms); WrapNet with the cyclic activation; A2Q/A2Q+
  with exact sums (they cannot overflow: checked per layer, worst case over every input).
* **Where the register stops mattering**: with 3-bit codes and ternary weights the worst
  case of these layers needs 10-12 bits (QA/WrapNet rows' worst-case bits), so from P = 12
  on no QA register wraps, no WrapNet value reached the cyclic fold (T = 2/3·2^(P-1)), and
  A2Q's bound (‖q‖₁ <= 292 at P = 12) no longer binds weights whose worst case needs 9 bits:
  each method's P = 12, 16 and 32 rows are the same network (same seed, same numbers). The
  accumulator decides only at P = 8.
* **A2Q/A2Q+ below QA at P >= 12**: there the gap (75 % vs 88 %) comes from their weight
  quantizer in this short schedule — 2-bit narrow range, round-to-zero, weight-norm
  parametrisation re-initialised from the float network, 3 epochs — not from the accumulator
  bound, which does not bind. With more bits per weight and the papers' longer schedules
  they are expected to close that gap; at P = 8 the bound rounds every ternary weight to
  zero (Σ|w/pre_scale| <= 18 spread over fan-ins of 144-576), which no schedule fixes
  without concentrating each channel on at most 18 (A2Q+ 36) non-zero weights.
* **MAC cost**: the MAC each method needs at P, from wrapkit's synthesis flow (OSU018
  0.18 um, Yosys/OpenSTA, SDF-timed Icarus on random operands): QA and A2Q/A2Q+ a plain
  P-bit accumulator, WrapNet the same plus the cyclic unit.
"""
LABELS = {"qa": "QA, plain P-bit register", "a2q": "A2Q (Brevitas)",
          "a2q+": "A2Q+ (Brevitas)", "wrapnet": "WrapNet (cyclic k=2, R^o)"}


def _config(s, seed, **fields):
    from wrapkit.models import TrainConfig

    return TrainConfig(model="vgg7", widths=s["widths"], train_subset=s["train_subset"],
                       batch_size=s["batch_size"], lr=s["lr"], calib_images=s["calib_images"],
                       seed=seed, threads=1, **fields)


def _train(cfg, run_dir):
    from wrapkit.models import train

    if (run_dir / "metrics.json").exists():
        m = json.loads((run_dir / "metrics.json").read_text())
        if m.get("complete"):
            return m
        return train(cfg, run_dir, resume=True, progress=False)
    return train(cfg, run_dir, progress=False)


def _base_runs(s, seed, runs):
    fp = runs / f"fp32_s{seed}"
    _train(_config(s, seed, method="fp32", epochs=s["fp32_epochs"]), fp)
    twn = runs / f"twn_s{seed}"
    _train(_config(s, seed, method="qw", weights="ternary",
                   epochs=s["twn_epochs"], init=str(fp)), twn)
    return fp, twn


def _row_config(method, p, s, seed, fp, twn):
    post = s["post_epochs"]
    if method == "qa":
        return dict(method="qa", weights="ternary", act_bits=s["act_bits"], acc_bits=p,
                    epochs=post, init=str(twn))
    if method == "wrapnet":
        return dict(method="wrapnet", weights="ternary", max_act_bits=s["act_bits"],
                    acc_bits=p, k=2, p=5.0, ro=0.01, warmup_epochs=1, epochs=post - 1,
                    init=str(twn))
    return dict(method=method, weights="uniform", weight_bits=2, act_bits=s["act_bits"],
                acc_bits=p, epochs=post + s["twn_epochs"], init=str(fp))


def _engine_check(method, run_dir, images):
    """Engine accuracy of the exported graph; for A2Q the analytic guarantee per layer."""
    from wrapkit.ref.accbound import guaranteed_bits
    from wrapkit.ref.graph import GraphEngine, read_graph

    wkx = run_dir / "model.wkx"
    if method in ("qa", "wrapnet") and not wkx.exists():
        from wrapkit.models.export import export_run

        export_run(run_dir, wkx)
    exp = read_graph(wkx)
    t0 = time.perf_counter()
    logits = GraphEngine(exp.graph, gemm="blas").run(images.pixels)["classifier"]
    out = {"engine_images": len(images),
           "engine_accuracy": float(np.mean(logits.argmax(1) == images.labels)),
           "engine_seconds": round(time.perf_counter() - t0, 1)}
    bits = []
    for n in exp.graph.nodes:
        if n.kind in ("conv2d", "linear"):
            bits.append(guaranteed_bits(n.weights["weight"],
                                        exp.graph.type_of(n.inputs[0]).code_range))
    out["worst_case_bits_per_layer"] = bits
    return out


def _guarantee_on_data(run_dir, images):
    """Largest |dot product| of every layer on the whole test set, exact accumulators."""
    from wrapkit.models.a2q_train import export_a2q_run
    from wrapkit.ref.graph import GraphEngine

    exp = export_a2q_run(run_dir, run_dir / "exact.wkx", acc_mode="exact")
    names = [n.name for n in exp.graph.nodes if n.kind in ("conv2d", "linear")]
    got = GraphEngine(exp.graph, gemm="blas").run(images.pixels, keep=names)
    return {"images": len(images),
            "max_abs_dot_product": {n: int(np.abs(got[n]).max()) for n in names}}


def _mac_costs(p_values, ops):
    from wrapkit.hw.synth.evaluate import evaluate
    from wrapkit.ref.datapath import MacConfig
    from wrapkit.sim.designs import mac_design_for

    costs = {}
    for p in p_values:
        for name, k in (("plain", None), ("cyclic", 2)):
            cfg = MacConfig(SCHEDULE["act_bits"], False, "ternary", None, p, k)
            r = evaluate(mac_design_for(cfg), n_ops=ops)
            costs[f"{name}_{p}"] = {
                "design": r["design"], "area_um2": r["area_um2"]["total"],
                "accumulator_area_um2": r["area_um2"]["accumulator"],
                "energy_fj_per_op": r["energy"]["stimulus_based"]["energy_fj_per_op"]["total"],
                "cycle_time_ns": r["cycle_time_ns"]}
            print(f"synth: {r['design']}: {costs[f'{name}_{p}']['area_um2']:.0f} um^2",
                  flush=True)
    return costs


def _stats(values):
    v = np.asarray(values, dtype=float)
    return float(v.mean()), (float(v.std(ddof=1)) if len(v) > 1 else None)


def _report(doc, out):
    rows = doc["rows"]
    costs_path = out / "accumulator_peers_mac.json"
    costs = json.loads(costs_path.read_text())["costs"] if costs_path.exists() else {}
    ps = sorted({r["acc_bits"] for r in rows.values()})
    lines = ["# Accumulator-aware quantization vs WrapNet at equal accumulator widths", "",
             "Generated by `benchmarks/accumulator_peers.py` (`make bench-peers`). Fashion-MNIST,",
             f"VGG-7 {list(SCHEDULE['widths'])}, {SCHEDULE['act_bits']}-bit unsigned "
             "activations, ternary weight values, test accuracy (%) of the PyTorch model; "
             "in brackets the integer engine's accuracy on the exported graph "
             f"({doc['settings']['engine_images']} test images). Seeds per cell in the last "
             "column of each row; a single seed is marked (1).", ""]
    head = "| method | " + " | ".join(f"P = {p}" for p in ps) + " |"
    lines += [head, "|" + "---|" * (len(ps) + 1)]
    for m in METHODS:
        cells = []
        for p in ps:
            rs = [r for r in rows.values() if r["method"] == m and r["acc_bits"] == p]
            if not rs:
                cells.append("–")
                continue
            mean, std = _stats([100 * r["test_accuracy"] for r in rs])
            emean, _ = _stats([100 * r["engine_accuracy"] for r in rs])
            cells.append(f"{mean:.2f}" + (f" ± {std:.2f}" if std is not None else "")
                         + f" [{emean:.2f}] ({len(rs)})")
        lines.append(f"| {LABELS[m]} | " + " | ".join(cells) + " |")
    if costs:
        lines += ["", "MAC cost per P (wrapkit synthesis flow: Yosys → OSU018 0.18 µm, OpenSTA, "
                  "SDF-timed Icarus on random operands; 3-bit unsigned × ternary):", "",
                  "| P | plain MAC (QA, A2Q, A2Q+) area µm² | energy fJ/op | WrapNet MAC "
                  "(+cyclic k=2) area µm² | energy fJ/op |", "|---|---|---|---|---|"]
        for p in ps:
            a, c = costs.get(f"plain_{p}"), costs.get(f"cyclic_{p}")
            if a and c:
                lines.append(f"| {p} | {a['area_um2']:.0f} | {a['energy_fj_per_op']:.0f} | "
                             f"{c['area_um2']:.0f} | {c['energy_fj_per_op']:.0f} |")
    guar = [(k, r) for k, r in rows.items() if r["method"].startswith("a2q")]
    if guar:
        lines += ["", "A2Q guarantee: narrowest register no input in range can overflow, per "
                  "layer (worst case over all inputs, `wrapkit.ref.accbound`), and the "
                  "largest |dot product| on the whole test set where measured:", "",
                  "| row | P | worst-case bits per layer | largest abs(z) on the test set |",
                  "|---|---|---|---|"]
        for k, r in sorted(guar, key=lambda kr: (kr[1]["acc_bits"], kr[0])):
            data = r.get("on_data")
            shown = ", ".join(str(v) for v in data["max_abs_dot_product"].values()) \
                if data else "–"
            lines.append(f"| {k} | {r['acc_bits']} | {r['worst_case_bits_per_layer']} | "
                         f"{shown} |")
    lines += ["", "## Where each method wins (computed from the rows above)", "",
              "Single-seed cells: a difference of a point or two between methods is not "
              "established without more seeds; collapses and large gaps are.", ""]
    for p in ps:
        accs = {}
        for m in METHODS:
            rs = [100 * r["test_accuracy"] for r in rows.values()
                  if r["method"] == m and r["acc_bits"] == p]
            if rs:
                accs[m] = _stats(rs)[0]
        if not accs:
            continue
        best = max(accs, key=accs.get)
        others = ", ".join(f"{LABELS[m]} {a:.2f}" for m, a in accs.items() if m != best)
        line = f"* P = {p}: {LABELS[best]} is most accurate ({accs[best]:.2f} %; {others})"
        dead = [m for m, a in accs.items() if a < 15.0]
        if dead:
            line += (f"; {', '.join(LABELS[m] for m in dead)} collapsed to chance (every "
                     "weight rounded to zero: worst-case bits 1 per layer)" if all(
                         max(r["worst_case_bits_per_layer"]) <= 1 for r in rows.values()
                         if r["method"] in dead and r["acc_bits"] == p)
                     else f"; {', '.join(LABELS[m] for m in dead)} at chance")
        a, c = costs.get(f"plain_{p}"), costs.get(f"cyclic_{p}")
        if a and c:
            line += (f". The WrapNet MAC costs {c['area_um2'] / a['area_um2']:.2f}x the plain "
                     f"MAC's area and {c['energy_fj_per_op'] / a['energy_fj_per_op']:.2f}x its "
                     "energy per operation at this P")
        lines.append(line + ".")
    lines += ["", NOTES]
    atomic_write_text(out / "accumulator_peers.md", "\n".join(lines) + "\n")
    _plot(rows, ps, out)


def _plot(rows, ps, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for m in METHODS:
        xs, ys, es = [], [], []
        for p in ps:
            rs = [100 * r["test_accuracy"] for r in rows.values()
                  if r["method"] == m and r["acc_bits"] == p]
            if rs:
                mean, std = _stats(rs)
                xs.append(p), ys.append(mean), es.append(std or 0.0)
        if xs:
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=LABELS[m])
    ax.set_xscale("log", base=2)
    ax.set_xticks(ps, [str(p) for p in ps])
    ax.set_xlabel("accumulator width P (bits)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Fashion-MNIST VGG-7, 3-bit activations, ternary weights")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "accumulator_peers.png", dpi=120)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--p", type=int, nargs="+", default=[8, 12, 16, 32])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--runs", type=Path, default=Path("runs/accumulator_peers"))
    ap.add_argument("--out", type=Path, default=Path("docs/results"))
    ap.add_argument("--engine-images", type=int, default=2000)
    ap.add_argument("--guarantee-p", type=int, nargs="*", default=[8],
                    help="A2Q rows whose guarantee is checked on the whole test set")
    ap.add_argument("--synth-ops", type=int, default=2000)
    ap.add_argument("--no-synth", action="store_true")
    ap.add_argument("--synth-only", action="store_true",
                    help="only the MAC synthesis per P (its own file, so it can run beside "
                         "the training)")
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite the markdown and plot from the JSON files")
    args = ap.parse_args()
    costs_path = args.out / "accumulator_peers_mac.json"
    if args.synth_only:
        atomic_write_json(costs_path, {"schema": "wrapkit.accumulator_peers_mac/1",
                                       "ops": args.synth_ops,
                                       "costs": _mac_costs(sorted(set(args.p)), args.synth_ops)})
        return 0
    if args.report_only:
        _report(json.loads((args.out / "accumulator_peers.json").read_text()), args.out)
        return 0
    import torch
    torch.set_num_threads(1)
    from wrapkit.common.datasets import load_images

    args.runs.mkdir(parents=True, exist_ok=True)
    path = args.out / "accumulator_peers.json"
    doc = json.loads(path.read_text()) if path.exists() else {}
    settings = {**SCHEDULE, "widths": list(SCHEDULE["widths"]),
                "engine_images": args.engine_images}
    if doc.get("settings") != settings:
        doc = {"schema": "wrapkit.accumulator_peers/1", "settings": settings, "rows": {}}
    test = load_images("fashion-mnist", "test")
    for seed in args.seeds:
        fp, twn = _base_runs(SCHEDULE, seed, args.runs)
        for p in args.p:
            for method in args.methods:
                key = f"{method}_P{p}_s{seed}"
                row = doc["rows"].get(key)
                if row is None:
                    t0 = time.perf_counter()
                    cfg = _config(SCHEDULE, seed,
                                  **_row_config(method, p, SCHEDULE, seed, fp, twn))
                    metrics = _train(cfg, args.runs / key)
                    row = {"method": method, "acc_bits": p, "seed": seed,
                           "test_accuracy": metrics["final"]["test_accuracy"],
                           "mean_overflow_rate": metrics["final"].get("mean_overflow_rate"),
                           "train_seconds": round(sum(h["seconds"]
                                                      for h in metrics["history"]), 1),
                           "wall_seconds": round(time.perf_counter() - t0, 1)}
                    row.update(_engine_check(method, args.runs / key,
                                             test.first(args.engine_images)))
                    doc["rows"][key] = row
                    atomic_write_json(path, doc)
                    print(f"{key}: test accuracy {row['test_accuracy']:.4f}, engine "
                          f"{row['engine_accuracy']:.4f}, worst-case bits "
                          f"{row['worst_case_bits_per_layer']}", flush=True)
                if method.startswith("a2q") and p in args.guarantee_p and "on_data" not in row:
                    row["on_data"] = _guarantee_on_data(args.runs / key, test)
                    atomic_write_json(path, doc)
                    print(f"{key}: max |z| on the test set {row['on_data']}", flush=True)
                _report(doc, args.out)
    if not args.no_synth and not costs_path.exists():
        atomic_write_json(costs_path, {"schema": "wrapkit.accumulator_peers_mac/1",
                                       "ops": args.synth_ops,
                                       "costs": _mac_costs(sorted(set(args.p)), args.synth_ops)})
    _report(doc, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
