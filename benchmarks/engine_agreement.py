"""Integer engine vs PyTorch on a whole test set: exact pre-activations, codes, accuracy.

Why: the integer engine must reproduce the trained PyTorch network —
identical integer pre-activations on every quantized layer when both see the same input
codes, and test accuracy within 0.1 point — and any remaining difference must be traced to
its source. This script measures all of it in one pass over the test set:

* per quantized layer, the engine's ``z`` (exact dot products) and ``y`` (wrapped / cyclic
  accumulator) from PyTorch's own input codes ``x_q`` (traced), compared element by element;
* per layer boundary, the engine's requantized codes (fixed point, and the float64 reference
  ``round_half_even(M·y + C)``) from PyTorch's ``y`` against PyTorch's next ``x_q``;
* the float stem plus first quantizer (numpy float32) against PyTorch's first codes;
* end to end: accuracy of PyTorch, of the engine (fixed-point requantization) and of the
  engine with float requantization, and how many predictions differ.

It also exports the run (``--export``) and writes the per-layer statistics of the exported
network with ``wrapkit infer --stats`` (MACs, overflow rates, operand toggles).

Usage: .venv/bin/python benchmarks/engine_agreement.py RUN_DIR --export runs/vgg7.wkx
       [--batch-size 500] [--out docs/results]
Writes engine_agreement.json/.md and layer_stats.json/.md into --out.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from wrapkit.cli import main as wrapkit_main
from wrapkit.models import load_model, tracing
from wrapkit.models.data import load_dataset
from wrapkit.models.export import export_run
from wrapkit.common.datasets import load_images
from wrapkit.ref.engine import Engine
from wrapkit.common.files import atomic_write_json, atomic_write_text


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run")
    ap.add_argument("--export", required=True, help="where to write the .wkx")
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--toggle-images", type=int, default=8)
    ap.add_argument("--out", default="docs/results")
    args = ap.parse_args(argv)
    out = Path(args.out)

    print(f"engine_agreement: exporting {args.run} -> {args.export}", flush=True)
    exp = export_run(args.run, args.export)
    dataset = exp.header["input"]["dataset"]
    fixed, floatq = Engine(exp), Engine(exp, requant="float")
    names = [l["name"] for l in exp.header["layers"]]
    model = load_model(args.run)
    qnames = [n for n, _ in model.quant_layers()]
    images = load_images(dataset, "test")
    _, test = load_dataset(dataset)
    assert np.array_equal(images.labels, test.y.numpy())

    z_bad = {n: 0 for n in qnames}
    y_bad = {n: 0 for n in qnames}
    count = {n: 0 for n in qnames}
    code_fixed = {n: 0 for n in qnames[:-1]}
    code_float = {n: 0 for n in qnames[:-1]}
    code_total = {n: 0 for n in qnames[:-1]}
    code_fixed_vs_float = {n: 0 for n in qnames[:-1]}
    stem_bad = stem_total = 0
    preds = {"pytorch": [], "engine": [], "engine_float_requant": []}
    t0 = time.perf_counter()
    bs = args.batch_size
    for start in range(0, len(images), bs):
        pix = images.pixels[start:start + bs]
        with torch.no_grad(), tracing(model):
            logits = model(test.x[start:start + bs]).numpy()
            tr = {n: l.last for n, l in model.quant_layers()}
        preds["pytorch"].append(logits.argmax(1))
        preds["engine"].append(fixed.run(pix, batch_size=bs).argmax(1))
        preds["engine_float_requant"].append(floatq.run(pix, batch_size=bs).argmax(1))
        for j, n in enumerate(qnames):
            i = names.index(n)
            x_q = tr[n].x_q.numpy().astype(np.uint8)
            got = fixed.layer_forward(i, x_q)
            z_bad[n] += int(np.count_nonzero(got["z"] != tr[n].z.numpy().astype(np.int64)))
            y_bad[n] += int(np.count_nonzero(got["y"] != tr[n].y.numpy().astype(np.int64)))
            count[n] += got["z"].size
            if j + 1 < len(qnames):
                want = tr[qnames[j + 1]].x_q.numpy()
                a = got["out"].reshape(want.shape)
                b = floatq.layer_forward(i, x_q)["out"].reshape(want.shape)
                code_fixed[n] += int(np.count_nonzero(a != want))
                code_float[n] += int(np.count_nonzero(b != want))
                code_fixed_vs_float[n] += int(np.count_nonzero(a != b))
                code_total[n] += want.size
        first = fixed.layer_input(pix, names.index(qnames[0])).transpose(0, 3, 1, 2)
        stem_bad += int(np.count_nonzero(first != tr[qnames[0]].x_q.numpy()))
        stem_total += first.size
        print(f"engine_agreement: {min(start + bs, len(images))}/{len(images)} images "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    preds = {k: np.concatenate(v) for k, v in preds.items()}
    labels = images.labels
    acc = {k: float(np.mean(v == labels)) for k, v in preds.items()}
    doc = {
        "benchmark": "engine_agreement", "run": args.run, "export": args.export,
        "export_sha256": exp.sha256, "dataset": dataset, "images": len(images),
        "accuracy": acc,
        "accuracy_difference_points": 100 * (acc["engine"] - acc["pytorch"]),
        "predictions_differing": {k: int(np.count_nonzero(v != preds["pytorch"]))
                                  for k, v in preds.items() if k != "pytorch"},
        "layers": [{"layer": n, "index": names.index(n), "outputs": count[n],
                    "z_mismatches": z_bad[n], "y_mismatches": y_bad[n],
                    **({"next_codes": code_total[n],
                        "codes_differing_fixed_point": code_fixed[n],
                        "codes_differing_float_requant": code_float[n],
                        "fixed_vs_float_requant": code_fixed_vs_float[n]}
                       if n in code_total else {})} for n in qnames],
        "stem_codes": {"total": stem_total, "differing": stem_bad},
    }
    atomic_write_json(out / "engine_agreement.json", doc)
    lines = [
        "# Integer engine vs PyTorch", "",
        f"`.venv/bin/python benchmarks/engine_agreement.py {' '.join(argv or sys.argv[1:])}`",
        "", f"{len(images)} {dataset} test images; export sha256 `{exp.sha256[:16]}`.", "",
        "| | accuracy | predictions differing from PyTorch |", "|---|---:|---:|",
        f"| PyTorch (trained model) | {acc['pytorch']:.4f} | - |",
        f"| integer engine (fixed-point requantization) | {acc['engine']:.4f} | "
        f"{doc['predictions_differing']['engine']} |",
        f"| engine, float64 requantization | {acc['engine_float_requant']:.4f} | "
        f"{doc['predictions_differing']['engine_float_requant']} |", "",
        f"Accuracy difference engine - PyTorch: {doc['accuracy_difference_points']:+.2f} "
        "points (target: within 0.1).", "",
        "Per quantized layer, fed PyTorch's own input codes:", "",
        "| layer | outputs | z mismatches | y mismatches | next-layer codes | differ (fixed) "
        "| differ (float requant) | fixed vs float |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in doc["layers"]:
        lines.append(f"| {r['layer']} | {r['outputs']:,} | {r['z_mismatches']} | "
                     f"{r['y_mismatches']} | {r.get('next_codes', '-'):,} | "
                     f"{r.get('codes_differing_fixed_point', '-')} | "
                     f"{r.get('codes_differing_float_requant', '-')} | "
                     f"{r.get('fixed_vs_float_requant', '-')} |"
                     if "next_codes" in r else
                     f"| {r['layer']} | {r['outputs']:,} | {r['z_mismatches']} | "
                     f"{r['y_mismatches']} | (dequantized, float) | - | - | - |")
    lines += ["", f"Float stem + first quantizer (numpy float32 vs PyTorch float32): "
              f"{stem_bad} of {stem_total:,} codes differ.", ""]
    atomic_write_text(out / "engine_agreement.md", "\n".join(lines))
    print("\n".join(lines[4:]))

    print("engine_agreement: per-layer statistics with `wrapkit infer --stats`", flush=True)
    stats_path = out / "layer_stats.json"
    rc = wrapkit_main(["infer", args.export, "--stats", str(stats_path),
                       "--toggle-images", str(args.toggle_images)])
    stats = json.loads(stats_path.read_text())
    rows = ["# Per-layer statistics of the exported network", "",
            f"`wrapkit infer {args.export} --stats {stats_path} --toggle-images "
            f"{args.toggle_images}` ({stats['images']} {dataset} test images, accuracy "
            f"{stats['accuracy']:.4f}).", "", f"Stream order: {stats['stream_order']}.", "",
            "| # | layer | MAC | MACs/image | overflow rate | cyclic fold rate | a toggles/bit "
            "| w toggles/bit | a zero fraction |", "|---:|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in stats["layers"]:
        t = r["toggles"]
        rows.append(f"| {r['index']} | {r['name']} | {_mac_name(r['mac'])} | "
                    f"{r['macs_per_image']:,} | {r['overflow_rate']:.4f} | "
                    f"{r['cyclic_fold_rate'] if r['cyclic_fold_rate'] is None else round(r['cyclic_fold_rate'], 4)} | "
                    f"{t['a_mean']:.3f} | {t['w_mean']:.3f} | {t['a_zero_fraction']:.3f} |")
    rows += ["", "Toggles: mean transitions per bit between consecutive operations of the MAC's "
             f"stream over the first {args.toggle_images} images (input to hw/synth energy "
             "estimation).", ""]
    atomic_write_text(out / "layer_stats.md", "\n".join(rows))
    return rc


def _mac_name(mac):
    from wrapkit.ref.datapath import MacConfig

    return MacConfig.from_dict(mac).name


if __name__ == "__main__":
    sys.exit(main())
