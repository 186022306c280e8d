"""Images per second of the graph engine against float PyTorch: VGG-7 and ResNet-20.

Why: the integer graph engine must run whole test sets; the issue's target is twice the
float PyTorch forward of the same network on 2 cores at batch 100. Contenders, classifying
the same uint8 Fashion-MNIST test images in batches of ``--batch-size``:

  torch-float   the architecture in float32 PyTorch (float weights, no quantizers)
  graph-int64   wrapkit.ref.graph.GraphEngine, numpy int64 GEMM (no float anywhere)
  graph-blas    the same engine with the exact float-BLAS GEMM (wrapkit.ref.graph.gemm)
  chain         (VGG-7 only) the version-1 layer-chain engine, wrapkit.ref.engine

Networks: VGG-7 (the default Fashion-MNIST widths) and ResNet-20 (16-32-64), binary weights,
8-bit accumulators with k = 2 and 4-bit activations; the timing does not depend on the
trained values, so both are initialised with hand-set quantizer steps (``--resnet RUN_DIR``
times a trained ResNet-20 instead). Each round times every contender once (interleaved);
medians of ``--repeats`` rounds are reported.

Usage: .venv/bin/python benchmarks/graph_engine_speed.py [--threads 2] [--batch-size 100]
       [--batches 3] [--repeats 3] [--out docs/results]
Writes graph_engine_speed.json/.md into --out.
"""

import argparse
import os
import sys


def _threads():
    for i, a in enumerate(sys.argv):
        if a == "--threads" and i + 1 < len(sys.argv):
            return sys.argv[i + 1]
    return "2"


# BLAS reads its thread count when numpy loads.
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = _threads()

import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from wrapkit.common.files import atomic_write_json, atomic_write_text  # noqa: E402
from wrapkit.models import Accumulator, ActQuant, WeightQuant, build_model, load_model  # noqa
from wrapkit.models.data import input_standardisation, load_dataset  # noqa: E402
from wrapkit.models.export import export_model  # noqa: E402
from wrapkit.models.trace import trace_model  # noqa: E402
from wrapkit.common.datasets import load_images  # noqa: E402
from wrapkit.ref.engine import Engine  # noqa: E402
from wrapkit.ref.graph import GraphEngine  # noqa: E402
from wrapkit.ref.wkx import decode, encode  # noqa: E402


def _quantized(name):
    torch.manual_seed(0)
    model = build_model(name, weight_quant=WeightQuant("binary"))
    for i, (_, layer) in enumerate(model.quant_layers()):
        layer.act_quant = ActQuant(0.05 + 0.002 * i, 4)
        layer.accumulator = Accumulator(8, k=2)
    return model.eval()


def _float(name):
    return build_model(name, weight_quant=WeightQuant("float")).eval()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--resnet", default=None, help="a trained ResNet-20 run to time")
    ap.add_argument("--out", default="docs/results")
    ap.add_argument("--replot", action="store_true",
                    help="only redraw graph_engine_speed.png from the JSON in --out")
    args = ap.parse_args(argv)
    if args.replot:
        import json

        _plot(json.loads((Path(args.out) / "graph_engine_speed.json").read_text()),
              Path(args.out) / "graph_engine_speed.png")
        return
    torch.set_num_threads(args.threads)
    mean, std = input_standardisation("fashion-mnist", None)
    spec = {"shape": [1, 28, 28], "pixel_max": 255, "mean": mean, "std": std,
            "dataset": "fashion-mnist"}
    n = args.batch_size * args.batches
    pixels = load_images("fashion-mnist", "test").first(n).pixels
    x = load_dataset("fashion-mnist")[1].x[:n]
    rows = []
    for name in ("vgg7", "resnet20"):
        model = load_model(args.resnet).eval() if name == "resnet20" and args.resnet \
            else _quantized(name)
        graph = trace_model(model, input_spec=spec).graph
        fnet = _float(name)
        contenders = {
            "torch-float": lambda b: fnet(x[b]).numpy(),
            "graph-int64": lambda b, e=GraphEngine(graph): e.run(pixels[b],
                                                                 batch_size=args.batch_size),
            "graph-blas": lambda b, e=GraphEngine(graph, gemm="blas"): e.run(
                pixels[b], batch_size=args.batch_size),
        }
        if name == "vgg7":
            header, tensors = export_model(model, input_spec=spec)
            chain = Engine(decode(encode(header, tensors)))
            contenders["chain"] = lambda b: chain.run(pixels[b], batch_size=args.batch_size)
        times = {k: [] for k in contenders}
        with torch.no_grad():
            for _ in range(args.repeats):
                for key, fn in contenders.items():
                    t0 = time.perf_counter()
                    for i in range(args.batches):
                        fn(slice(i * args.batch_size, (i + 1) * args.batch_size))
                    times[key].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) for k, v in times.items()}
        for key in contenders:
            row = {"network": name, "contender": key, "images": n,
                   "images_per_s": n / med[key],
                   "vs_torch_float": med["torch-float"] / med[key],
                   "seconds": times[key]}
            rows.append(row)
            print(f"{name:<9} {key:<12} {row['images_per_s']:>9.1f} img/s  "
                  f"{row['vs_torch_float']:.3f}× torch-float", flush=True)
    doc = {"threads": args.threads, "batch_size": args.batch_size, "images": n,
           "repeats": args.repeats, "load_average_after": list(os.getloadavg()),
           "rows": rows}
    out = Path(args.out)
    atomic_write_json(out / "graph_engine_speed.json", doc)
    lines = ["# Graph engine speed vs float PyTorch", "",
             f"`.venv/bin/python benchmarks/graph_engine_speed.py --threads {args.threads}`",
             "", f"{n} Fashion-MNIST test images, batch {args.batch_size}, "
             f"{args.threads} threads, median of {args.repeats} rounds.", "",
             "| network | contender | images/s | × torch-float |", "|---|---|---:|---:|"]
    lines += [f"| {r['network']} | {r['contender']} | {r['images_per_s']:.1f} | "
              f"{r['vs_torch_float']:.3f} |" for r in rows]
    lines += ["", f"Load average after the run: {doc['load_average_after'][0]:.1f} "
              f"(1 min) on {os.cpu_count()} cores. On a shared machine the ratios move with "
              "the load: a 2-thread PyTorch forward loses more to other jobs than the "
              "engine's mostly single-threaded numpy, so compare them only within one run.",
              "", "graph-blas and graph-int64 compute the same integers "
              "(`tests/test_graph.py`); the float-BLAS GEMM is exact because every partial "
              "sum stays below 2^24 (float32) or 2^53 (float64), checked per call "
              "(`wrapkit.ref.graph.gemm`)."]
    atomic_write_text(out / "graph_engine_speed.md", "\n".join(lines) + "\n")
    _plot(doc, out / "graph_engine_speed.png")


def _plot(doc, path):
    """Images per second per network and contender, relative to torch-float."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nets = sorted({r["network"] for r in doc["rows"]}, key=["vgg7", "resnet20"].index)
    keys = ["torch-float", "graph-int64", "graph-blas", "chain"]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    width = 0.2
    for i, key in enumerate(keys):
        vals = [next((r["vs_torch_float"] for r in doc["rows"]
                      if r["network"] == n and r["contender"] == key), 0) for n in nets]
        xs = [j + (i - 1.5) * width for j in range(len(nets))]
        ax.bar(xs, vals, width, label=key)
        for x_, v in zip(xs, vals):
            if v:
                ax.text(x_, v + 0.05, f"{v:.2f}", ha="center", fontsize=7)
    ax.axhline(2.0, color="grey", ls="--", lw=0.8)
    ax.text(len(nets) - 0.5, 2.05, "target 2×", fontsize=7, color="grey", ha="right")
    ax.set_xticks(range(len(nets)), nets)
    ax.set_ylabel("× float PyTorch (images/s)")
    ax.set_title(f"Batch {doc['batch_size']}, {doc['threads']} threads (shared machine)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
