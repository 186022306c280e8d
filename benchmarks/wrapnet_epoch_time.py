"""Seconds per training epoch: WrapNet fine-tuning vs the same network in float, one run.

Why: the WrapNet layers add work to every forward and backward pass (activation codes,
integer convolution, wrap-around and cyclic activation, the overflow penalty's traces); the
target is at most 1.3x the float network's epoch time.

Both configurations train the VGG-7-style network of the results table for one epoch on the
same Fashion-MNIST images with the training loop of ``wrapkit.models.train``:

  float    float weights, float activations (the FP32 row)
  wrapnet  binary weights, 3-bit activation codes, 8-bit accumulator with cyclic activation
           (k = 2), overflow penalty R^o active (the fine-tuning stage of the WrapNet row)

Both start from a fresh initialisation (the time per epoch does not depend on the weights;
the WrapNet one does not learn from there, which is why the pipeline pre-trains).
They alternate (float, wrapnet, float, wrapnet, ...) so that load from other processes hits
both alike, and the ratio uses each configuration's fastest epoch. The machine is shared,
so treat single figures with care; the ratio is what the script is for.

Usage: .venv/bin/python benchmarks/wrapnet_epoch_time.py [--images 6000] [--repeats 2]
       [--threads 1] [--out docs/results]
Writes wrapnet_epoch_time.json into --out and prints the ratio.
"""

import argparse
import platform
import time
from pathlib import Path

import torch

from wrapkit.models import (Accumulator, OverflowPenalty, TrainConfig, VGG7, VGG7Config,
                            WeightQuant, range_steps)
from wrapkit.models.data import load_dataset
from wrapkit.models.train import Stage, train_epoch
from wrapkit.common.files import atomic_write_json


TARGET_RATIO = 1.3


def _model(kind, train_ds, widths):
    torch.manual_seed(0)
    wq = WeightQuant("float") if kind == "float" else WeightQuant("binary")
    model = VGG7(VGG7Config(widths=widths, weight_quant=wq))
    if kind == "wrapnet":
        for choice, (_, layer) in zip(range_steps(model, train_ds.x[:256], bits=3),
                                      model.quant_layers()):
            layer.act_quant = choice.act_quant()
            layer.accumulator = Accumulator(8, k=2)
    return model


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=6000, help="training images per epoch")
    ap.add_argument("--repeats", type=int, default=2, help="epochs per configuration")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--widths", default="16,32,64")
    ap.add_argument("--out", default="docs/results")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    widths = tuple(int(w) for w in args.widths.split(","))
    train_ds, _ = load_dataset("fashion-mnist")
    train_ds = train_ds.subset(args.images, 0)
    cfg = TrainConfig(method="wrapnet", widths=widths, batch_size=128)
    stage = Stage("finetune", args.repeats, "codes", Accumulator(8, 2))
    models = {k: _model(k, train_ds, widths) for k in ("float", "wrapnet")}
    opts = {k: torch.optim.Adam(m.parameters(), lr=1e-3) for k, m in models.items()}
    regs = {"float": [], "wrapnet": [OverflowPenalty(0.01)]}
    times = {k: [] for k in models}
    for epoch in range(args.repeats):
        for kind, model in models.items():
            t0 = time.perf_counter()
            stats = train_epoch(model, opts[kind], train_ds, cfg, stage, 0, epoch, regs[kind],
                                 progress=False)
            times[kind].append(time.perf_counter() - t0)
            print(f"{kind:8s} epoch {epoch + 1}: {times[kind][-1]:7.2f} s "
                  f"(loss {stats['loss']:.3f})", flush=True)
    best = {k: min(v) for k, v in times.items()}
    ratio = best["wrapnet"] / best["float"]
    result = {
        "images": len(train_ds), "batch_size": cfg.batch_size, "widths": list(widths),
        "threads": args.threads, "torch": torch.__version__, "machine": platform.processor()
        or platform.machine(), "seconds": times, "best_seconds": best,
        "ratio_wrapnet_over_float": ratio, "target_ratio": TARGET_RATIO,
    }
    atomic_write_json(Path(args.out) / "wrapnet_epoch_time.json", result)
    print(f"seconds per epoch ({len(train_ds)} images): float {best['float']:.2f}, "
          f"wrapnet {best['wrapnet']:.2f}; ratio {ratio:.2f}x (target <= {TARGET_RATIO}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
