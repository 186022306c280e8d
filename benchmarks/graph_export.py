"""Integer graphs exported by tracing vs PyTorch on a whole test set, node by node.

Why: every network that is not the VGG-7 chain leaves PyTorch as an integer graph
(docs/graph.md); the graph engine must reproduce it — the same accuracy, no prediction
differing, every integer node's values identical. This script measures it for

* a trained ResNet-20 (``--resnet RUN_DIR``; its residual adds are
  :class:`wrapkit.models.residual.QuantAdd`), exported with ``wrapkit export``;
* the depthwise + pixel-shuffle network and the attention block of
  :mod:`wrapkit.models.graph_nets`, initialised (random weights, BatchNorm statistics from
  2,000 training images, quantizer steps from the value range of 512 training images).

Each network runs over the test set end to end (the engine standardises the pixels and runs
the float stem in numpy); every batch whose first codes differ from PyTorch's runs a second
time with the engine's ``quantize`` nodes fed PyTorch's codes (the integer path on identical
inputs; the float32 stem in numpy and in PyTorch may round an ulp apart). The engine uses the exact
float-BLAS GEMM (``gemm="blas"``: the same integers as int64, tested).

Usage: .venv/bin/python benchmarks/graph_export.py --resnet runs/resnet20_wrapnet_a8k2
       [--images N] [--out docs/results] [--export-dir runs]
Writes graph_export.json/.md into --out.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from wrapkit.common.files import atomic_write_json, atomic_write_text
from wrapkit.models import load_model
from wrapkit.models.data import input_standardisation, load_dataset
from wrapkit.models.export import export_run
from wrapkit.models.graph_nets import DepthwiseShuffleNet, TinyAttention, calibrate_ranges
from wrapkit.models.trace import compare_with_pytorch, trace_model
from wrapkit.common.datasets import load_images
from wrapkit.ref.graph import encode_graph

DATASET = "fashion-mnist"


def _compare(traced, images, x, batch_size, feed, partial):
    """compare_with_pytorch over chunks of 1,000 images, reporting each chunk to ``partial``
    (a long run on a shared machine leaves its progress behind)."""
    e_logits, t_logits, nodes, fed = [], [], {}, {}
    for start in range(0, len(images), 1000):
        r = compare_with_pytorch(traced, images[start:start + 1000], x[start:start + 1000],
                                 batch_size=batch_size, gemm="blas")
        e_logits.append(r["engine_logits"])
        t_logits.append(r["torch_logits"])
        for total, part in ((nodes, r["nodes"]), (fed, r["nodes_fed_first_codes"])):
            for k, v in part.items():
                acc = total.setdefault(k, {"values": 0, "mismatches": 0})
                acc["values"] += v["values"]
                acc["mismatches"] += v["mismatches"]
        partial(start + len(r["engine_logits"]), nodes)
    return {"engine_logits": np.concatenate(e_logits), "torch_logits": np.concatenate(t_logits),
            "nodes": nodes, "nodes_fed_first_codes": fed}


def _measure(name, traced, images, x, labels, batch_size, how, partial=lambda *a: None):
    graph = traced.graph
    row = {"network": name, "how": how, "images": len(images),
           "nodes": len(graph.nodes),
           "integer_nodes": sum(n.output.is_int for n in graph.nodes),
           "float_nodes": [n.name for n in graph.nodes if not n.output.is_int],
           "node_kinds": sorted({n.kind for n in graph.nodes})}
    t0 = time.perf_counter()
    r = _compare(traced, images, x, batch_size, False,
                 lambda done, nodes: partial(name, False, done, nodes))
    e_pred, t_pred = r["engine_logits"].argmax(1), r["torch_logits"].argmax(1)
    for key, nodes in (("end_to_end", r["nodes"]),
                       ("fed_pytorch_first_codes", r["nodes_fed_first_codes"])):
        row[key] = {
            "integer_values_compared": int(sum(v["values"] for v in nodes.values())),
            "nodes_with_mismatches": {k: v["mismatches"] for k, v in nodes.items()
                                      if v["mismatches"]},
        }
    row["end_to_end"].update({
        "engine_accuracy": float(np.mean(e_pred == labels)),
        "pytorch_accuracy": float(np.mean(t_pred == labels)),
        "predictions_differing": int(np.sum(e_pred != t_pred)),
        "max_abs_logit_difference": float(np.abs(r["engine_logits"]
                                                 - r["torch_logits"]).max()),
        "seconds": round(time.perf_counter() - t0, 1)})
    print(f"{name}: {row['end_to_end']} / fed first codes: {row['fed_pytorch_first_codes']}",
          flush=True)
    return row


def _initialised(model, train, spec_x, seed=0):
    torch.manual_seed(seed)
    model.train()
    with torch.no_grad():
        for i in range(0, 2000, 250):
            model(train.x[i:i + 250])
    calibrate_ranges(model, spec_x)
    return model.eval()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--resnet", required=True, help="trained ResNet-20 run directory")
    ap.add_argument("--images", type=int, default=None, help="first N test images (all)")
    ap.add_argument("--batch-size", type=int, default=200)
    ap.add_argument("--out", default="docs/results")
    ap.add_argument("--export-dir", default="runs")
    ap.add_argument("--replot", action="store_true",
                    help="only redraw graph_export.png from the JSON in --out")
    args = ap.parse_args(argv)
    out, export_dir = Path(args.out), Path(args.export_dir)
    if args.replot:
        _plot(json.loads((out / "graph_export.json").read_text()), out / "graph_export.png")
        return
    test_images = load_images(DATASET, "test").first(args.images)
    train, test = load_dataset(DATASET)
    x = test.x[:len(test_images)]
    labels = test_images.labels
    mean, std = input_standardisation(DATASET, None)
    spec = {"shape": [1, 28, 28], "pixel_max": 255, "mean": mean, "std": std,
            "dataset": DATASET}
    rows = []

    def partial(name, feed, done, nodes):
        bad = {k: v["mismatches"] for k, v in nodes.items() if v["mismatches"]}
        doc = {"network": name, "fed_first_codes": feed, "images_done": done,
               "integer_values_compared": sum(v["values"] for v in nodes.values()),
               "nodes_with_mismatches": bad, "finished_rows": rows}
        atomic_write_json(out / "graph_export.partial.json", doc)
        print(f"  {name}: {done} images, {doc['integer_values_compared']:,} values, "
              f"mismatching nodes {bad}", flush=True)

    wkx = export_dir / "resnet20_graph.wkx"
    t0 = time.perf_counter()
    exp = export_run(args.resnet, wkx)
    print(f"exported {args.resnet} -> {wkx} ({exp.header['schema']}, "
          f"{time.perf_counter() - t0:.1f} s)", flush=True)
    model = load_model(args.resnet).eval()
    traced = trace_model(model, input_spec=spec)
    assert encode_graph(traced.graph, source=exp.header["source"], input=exp.header["input"],
                        num_classes=10) == wkx.read_bytes()
    metrics = json.loads((Path(args.resnet) / "metrics.json").read_text())
    row = _measure("ResNet-20", traced, test_images.pixels, x, labels, args.batch_size,
                   "trained (see schedule)", partial)
    row["export"] = str(wkx)
    row["export_sha256"] = exp.sha256
    row["train_config"] = metrics.get("config")
    row["train_seconds"] = metrics.get("train_seconds") or sum(
        h.get("seconds", 0) for h in metrics.get("history", []))
    rows.append(row)

    idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:512]
    for name, net in (("depthwise + pixel shuffle", DepthwiseShuffleNet()),
                      ("attention block", TinyAttention())):
        _initialised(net, train, train.x[idx])
        traced = trace_model(net, input_spec=spec)
        rows.append(_measure(name, traced, test_images.pixels, x, labels, args.batch_size,
                             "initialised", partial))
    doc = {"dataset": DATASET, "rows": rows}
    atomic_write_json(out / "graph_export.json", doc)
    atomic_write_text(out / "graph_export.md", _markdown(doc))
    _plot(doc, out / "graph_export.png")
    (out / "graph_export.partial.json").unlink(missing_ok=True)
    print(f"wrote {out / 'graph_export.json'} and .md")


def _schedule(row):
    c = row.get("train_config") or {}
    if not c:
        return "(no training configuration recorded)"
    subset = c.get("train_subset")
    return (f"`wrapkit train --model resnet20 --method {c.get('method')} --acc-bits "
            f"{c.get('acc_bits')} --k {c.get('k')} --p {c.get('p')} --pretrain-epochs "
            f"{c.get('pretrain_epochs')} --warmup-epochs {c.get('warmup_epochs')} --epochs "
            f"{c.get('epochs')} --train-subset {subset} --lr {c.get('lr')} --threads "
            f"{c.get('threads')}` ({c.get('weights')} weights, batch {c.get('batch_size')}, "
            f"seed {c.get('seed')}; {subset or 60000} of the 60,000 training images)")


def _plot(doc, path):
    """Per network: integer values compared, and those differing end to end and from
    PyTorch's first codes (log scale; a differing count of 0 is drawn at the axis floor)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = doc["rows"]
    names = [r["network"] for r in rows]
    series = [("integer values compared", [r["end_to_end"]["integer_values_compared"]
                                           for r in rows]),
              ("differing, end to end", [sum(r["end_to_end"]["nodes_with_mismatches"].values())
                                         for r in rows]),
              ("differing, fed PyTorch's first codes",
               [sum(r["fed_pytorch_first_codes"]["nodes_with_mismatches"].values())
                for r in rows])]
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.27
    for i, (label, values) in enumerate(series):
        xs = [j + (i - 1) * width for j in range(len(rows))]
        ax.bar(xs, [max(v, 0.8) for v in values], width, label=label)
        for x_, v in zip(xs, values):
            ax.text(x_, max(v, 0.8) * 1.3, f"{v:,}", ha="center", fontsize=7, rotation=90)
    ax.set_yscale("log")
    ax.set_ylim(0.5, 1e12)
    ax.set_xticks(range(len(rows)), names)
    ax.set_ylabel("integers (whole test set)")
    ax.set_title("Graph engine vs PyTorch, every integer node, Fashion-MNIST test set")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _markdown(doc):
    resnet = doc["rows"][0]
    lines = ["# Integer graphs exported by tracing vs PyTorch", "",
             "`.venv/bin/python benchmarks/graph_export.py --resnet "
             "runs/resnet20_wrapnet_a8k2`", "",
             f"**ResNet-20** (widths 16-32-64, 3 blocks per stage; residual adds are "
             f"`QuantAdd`, the float stem and classifier stay float), trained on "
             f"Fashion-MNIST with {_schedule(resnet)}: "
             f"{resnet.get('train_seconds', 0) / 60:.1f} min of training on one thread of a "
             "shared 2-core machine. The paper's tables (seed 002, ch. 2) give VGG-7 on "
             "CIFAR-10 only, so there is no paper figure for this network; what is measured "
             "here is the agreement of the exported integer graph with PyTorch. The depthwise "
             "+ pixel-shuffle network and the attention block (`wrapkit.models.graph_nets`) "
             "are initialised, not trained (random weights, BatchNorm statistics from 2,000 "
             "training images, quantizer steps from the range of 512), so their accuracy is "
             "chance; their agreement is the point.", "",
             "Every integer node of each graph is compared with PyTorch on every test image: "
             "MAC nodes with the layers' accumulator outputs, the others with PyTorch's codes "
             "of the tensor they stand for. *Fed first codes*: the engine's `quantize` nodes "
             "(after the float stem, where numpy's and PyTorch's float32 may round an ulp "
             "apart) take PyTorch's codes, in the batches where they differ.", ""]
    lines += ["| network | weights | images | engine acc. | PyTorch acc. | predictions "
              "differing | integer values compared | nodes with mismatches | ... fed "
              "PyTorch's first codes |", "|---|---|---:|---:|---:|---:|---:|---|---|"]
    for r in doc["rows"]:
        e, f = r["end_to_end"], r["fed_pytorch_first_codes"]

        def bad(d):
            return ", ".join(f"{k} ({v})" for k, v in d["nodes_with_mismatches"].items()) \
                or "none"
        lines.append(f"| {r['network']} | {r['how']} | {r['images']:,} | "
                     f"{e['engine_accuracy']:.4f} | {e['pytorch_accuracy']:.4f} | "
                     f"{e['predictions_differing']} | {e['integer_values_compared']:,} | "
                     f"{bad(e)} | {bad(f)} |")
    lines += ["", "Float nodes (the graph's edges) per network: "
              + "; ".join(f"{r['network']}: {', '.join(r['float_nodes'])}"
                          for r in doc["rows"]), "",
              "Largest |logit difference| engine − PyTorch, end to end (the differing first "
              "codes included): "
              + ", ".join(f"{r['network']} {r['end_to_end']['max_abs_logit_difference']:.2g}"
                          for r in doc["rows"]) + "."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
