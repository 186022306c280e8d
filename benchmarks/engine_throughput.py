"""Images per second: the integer engine against PyTorch, all measured in one run.

Why: the integer engine (``wrapkit.ref.engine``) is the reference for exported networks and
feeds the cosimulation; it must be fast enough to run whole test sets. The target is
at least half the speed of the float PyTorch forward of the same network.

Contenders, each classifying the same uint8 test images in batches of ``--batch-size``:

  engine         wrapkit.ref.engine: exact integer GEMM through float BLAS, table-driven
                 wrap / cyclic / requantization (the default path of `wrapkit infer`)
  engine-int64   the same engine with numpy int64 GEMM and direct evaluation (no BLAS, no
                 tables): the plain reference path, far slower
  torch-float    the same architecture in float32 PyTorch: weights s_w·w_q, no quantizers,
                 plain 32-bit float accumulation (the "float forward of the same network")
  torch-wrapnet  the trained wrapkit PyTorch model (fake-quant layers, exact integer
                 pre-activations, wrap and cyclic in float tensors)
  torch-int8     PyTorch's own quantized CPU kernels (eager post-training quantization,
                 backend "x86" / fbgemm): int8 weights, uint8 activations, 32-bit
                 accumulators; calibrated on 256 test images. Only when it runs here.

Timing: ``--repeats`` rounds, each timing every contender once (interleaved, so a busy
machine slows all of them alike); the median per contender is reported, with ratios to
torch-float. Each contender's accuracy on the timed images is reported too. The standardised
float input of the PyTorch contenders is prepared outside the timing; the engines start from
uint8 pixels and include their standardisation.

Usage: .venv/bin/python benchmarks/engine_throughput.py RUN_DIR [--images 2000]
       [--repeats 5] [--batch-size 100] [--out docs/results]
Writes engine_throughput.json, .md and .png into --out.
"""

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from wrapkit.models import Accumulator, WeightQuant, build_model, load_model
from wrapkit.models.export import export_run
from wrapkit.common.datasets import load_images
from wrapkit.ref.engine import Engine
from wrapkit.common.files import atomic_write_json, atomic_write_text


def _float_network(model):
    """The trained architecture in plain float: weights s_w·w_q, no quantizers."""
    cfg = model.config
    f = build_model("vgg7", in_channels=cfg.in_channels, image_size=cfg.image_size,
                    num_classes=cfg.num_classes, widths=tuple(cfg.widths), hidden=cfg.hidden,
                    weight_quant=WeightQuant("float"))
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("_extra_state")}
    f.load_state_dict(state, strict=False)
    with torch.no_grad():
        for (_, q), (_, fl) in zip(model.quant_layers(), f.quant_layers()):
            w_q, s_w = q.integer_weights()
            fl.weight.copy_(w_q.float() * s_w.view(-1, *([1] * (w_q.dim() - 1))))
            fl.act_quant = None
            fl.accumulator = Accumulator()
    return f.eval()


def _fold(conv_w, conv_b, bn):
    a = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    w = conv_w * a.view(-1, *([1] * (conv_w.dim() - 1)))
    b = bn.bias - a * bn.running_mean + (a * conv_b if conv_b is not None else 0)
    return w, b


def _int8_network(fnet, calib):
    """PyTorch eager-mode post-training int8 quantization of the float network."""
    from torch.ao import quantization as tq

    layers = []
    with torch.no_grad():
        stem_w, stem_b = _fold(fnet.stem[0].weight, None, fnet.stem[1])
        blocks = [(stem_w, stem_b, False)]
        for name in ("block2", "block3", "block4", "block5", "block6"):
            blk = getattr(fnet, name)
            w, b = _fold(blk.conv.weight, None, blk.bn)
            blocks.append((w, b, bool(blk.pool)))
        for w, b, pool in blocks:
            conv = nn.Conv2d(w.shape[1], w.shape[0], 3, padding=1)
            conv.weight.copy_(w)
            conv.bias.copy_(b)
            layers += [conv, nn.ReLU()] + ([nn.MaxPool2d(2)] if pool else [])
        fc_w, fc_b = _fold(fnet.fc7.weight, None, fnet.bn7)
        fc = nn.Linear(fc_w.shape[1], fc_w.shape[0])
        fc.weight.copy_(fc_w)
        fc.bias.copy_(fc_b)
        cls = copy.deepcopy(fnet.classifier)
    body = nn.Sequential(*layers)
    net = nn.Sequential(tq.QuantStub(), body, nn.Flatten(), fc, nn.ReLU(), cls, tq.DeQuantStub())
    net.eval()
    pairs = [[f"1.{i}", f"1.{i + 1}"] for i, m in enumerate(body) if isinstance(m, nn.Conv2d)]
    net = tq.fuse_modules(net, pairs + [["3", "4"]])
    torch.backends.quantized.engine = "x86"
    net.qconfig = tq.get_default_qconfig("x86")
    tq.prepare(net, inplace=True)
    with torch.no_grad():
        net(calib)
    tq.convert(net, inplace=True)
    return net


def _timed(fn, batches):
    t0 = time.perf_counter()
    outs = [fn(b) for b in batches]
    return time.perf_counter() - t0, np.concatenate(outs)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", help="trained VGG-7 run directory (wrapnet or qa)")
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--int64-images", type=int, default=200,
                    help="images for the slow int64 reference path")
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="docs/results")
    args = ap.parse_args(argv)
    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)

    print("engine_throughput: exporting and loading", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        exp = export_run(args.run, Path(tmp) / "model.wkx")
    dataset = exp.header["input"]["dataset"]
    images = load_images(dataset, "test").first(args.images)
    n = len(images)
    labels = images.labels
    engine = Engine(exp)
    engine_ref = Engine(exp, gemm="int64", lut=False)
    model = load_model(args.run)
    fnet = _float_network(model)
    x = torch.from_numpy(engine.standardise(images.pixels).transpose(0, 3, 1, 2).copy())
    bs = args.batch_size
    pix_batches = [images.pixels[i:i + bs] for i in range(0, n, bs)]
    x_batches = [x[i:i + bs] for i in range(0, n, bs)]
    n_ref = min(args.int64_images, n)
    ref_batches = [images.pixels[i:min(i + bs, n_ref)] for i in range(0, n_ref, bs)]

    def torch_fn(net):
        def run(b):
            with torch.no_grad():
                return net(b).numpy()
        return run

    contenders = {
        "engine": (lambda b: engine.run(b, batch_size=bs), pix_batches, n),
        "engine-int64": (lambda b: engine_ref.run(b, batch_size=bs), ref_batches, n_ref),
        "torch-float": (torch_fn(fnet), x_batches, n),
        "torch-wrapnet": (torch_fn(model), x_batches, n),
    }
    int8_note = None
    try:
        qnet = _int8_network(fnet, x[:256])
        contenders["torch-int8"] = (torch_fn(qnet), x_batches, n)
        int8_note = (f"runs here: torch {torch.__version__}, quantized engine "
                     f"{torch.backends.quantized.engine} (fbgemm), 32-bit accumulators")
    except Exception as exc:  # report why instead of failing the whole benchmark
        int8_note = f"does not run here: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
    print(f"engine_throughput: torch int8 {int8_note}", flush=True)

    times = {k: [] for k in contenders}
    accuracy = {}
    for r in range(args.repeats):
        for name, (fn, batches, count) in contenders.items():
            if name == "engine-int64" and r >= 2:
                continue  # the slow reference path: two rounds are enough
            dt, out = _timed(fn, batches)
            times[name].append(dt)
            accuracy[name] = float(np.mean(out.argmax(1) == labels[:count]))
            print(f"engine_throughput: round {r + 1}/{args.repeats} {name}: "
                  f"{count / dt:,.1f} images/s", flush=True)
    rows = {}
    for name, (_, _, count) in contenders.items():
        med = statistics.median(times[name])
        rows[name] = {"images": count, "median_s": med, "images_per_s": count / med,
                      "runs_s": times[name], "accuracy": accuracy[name]}
    base = rows["torch-float"]["images_per_s"]
    for row in rows.values():
        row["ratio_to_torch_float"] = row["images_per_s"] / base
    doc = {
        "benchmark": "engine_throughput", "run": str(args.run), "dataset": dataset,
        "export_sha256": exp.sha256, "batch_size": bs, "repeats": args.repeats,
        "threads": {"torch": torch.get_num_threads(), "cpu_count": threads,
                    "numpy_blas": "numpy's bundled OpenBLAS, default threads"},
        "machine_note": "shared 2-core VM; other jobs ran at the same time, so absolute "
                        "numbers are noisy, the interleaved ratios less so",
        "torch_int8": int8_note, "target": "engine >= 0.5 x torch-float",
        "target_met": rows["engine"]["ratio_to_torch_float"] >= 0.5,
        "contenders": rows,
    }
    out = Path(args.out)
    atomic_write_json(out / "engine_throughput.json", doc)
    lines = ["# Integer engine throughput", "",
             f"`{' '.join(['.venv/bin/python', 'benchmarks/engine_throughput.py'] + (argv or sys.argv[1:]))}`",
             "", f"{n} {dataset} test images (int64 path: {n_ref}), batch {bs}, median of "
             f"{args.repeats} interleaved rounds, torch threads {torch.get_num_threads()}.",
             "", "| contender | images/s | vs torch-float | accuracy |", "|---|---:|---:|---:|"]
    for name, row in rows.items():
        lines.append(f"| {name} | {row['images_per_s']:,.1f} | {row['ratio_to_torch_float']:.2f}x "
                     f"| {row['accuracy']:.4f} |")
    lines += ["", f"PyTorch int8 kernels: {int8_note}.", "",
              f"Target engine >= 0.5x torch-float: "
              f"{'met' if doc['target_met'] else 'NOT met'} "
              f"({rows['engine']['ratio_to_torch_float']:.2f}x).", "",
              "The machine is a shared 2-core VM with other jobs running; the contenders are "
              "interleaved round by round so they see the same load.", ""]
    atomic_write_text(out / "engine_throughput.md", "\n".join(lines))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    names = list(rows)
    ax.barh(names, [rows[k]["images_per_s"] for k in names], color="tab:blue")
    ax.set_xlabel("images / s")
    ax.set_title(f"VGG-7 inference, {dataset}, batch {bs}")
    fig.tight_layout()
    fig.savefig(out / "engine_throughput.png", dpi=120)
    print("\n".join(lines[4:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
