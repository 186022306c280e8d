"""The export stage: both trained networks to ``.wkx`` and the integer engine on the test set.

Accuracy against PyTorch's, per-layer overflow and cyclic-fold rates, both networks forced
to plain ``acc_bits`` wrap-around registers without cyclic layers (the paper's Table 2.1),
and accuracy against accumulator width; everything into ``export/engine.json``.
"""

import time

import numpy as np

from wrapkit.common.errors import UserError
from wrapkit.common.files import atomic_write_json

from .config import NETWORKS

__all__ = ["stage_export"]


def _evaluate(exp, images, *, say=None, label="", progress=False, toggle_images=8):
    """Integer-engine accuracy and per-layer statistics of ``exp`` on ``images``."""
    from wrapkit.ref.engine import Engine

    engine = Engine(exp)
    stats = engine.new_stats(toggle_images)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(images), desc=label or "engine", unit="img", leave=False,
                   mininterval=0.5)
    t0 = time.perf_counter()
    logits = engine.run(images.pixels, batch_size=250, stats=stats,
                        progress=(lambda done, total: bar.update(done - bar.n)) if bar else None)
    wall = time.perf_counter() - t0
    if bar:
        bar.close()
    correct = int(np.sum(logits.argmax(1) == images.labels))
    layers = [s.to_dict() for s in stats.layers.values()]
    for row in layers:  # keep the summary small: the per-bit toggles live in the stats
        row.pop("toggles", None)
    rates = [r["overflow_rate"] for r in layers]
    out = {"images": len(images), "correct": correct, "accuracy": correct / len(images),
           "mean_overflow_rate": float(np.mean(rates)) if rates else 0.0,
           "images_per_s": len(images) / wall if wall > 0 else None, "layers": layers}
    if say:
        say(f"{label}: accuracy {100 * out['accuracy']:.2f} % on {len(images)} images, mean "
            f"overflow rate {100 * out['mean_overflow_rate']:.2f} % "
            f"({out['images_per_s']:,.0f} images/s)")
    return out


def stage_export(ctx):
    """Export both networks; the integer engine's accuracy and overflow on the test set,
    on plain ``acc_bits`` registers, and against accumulator width."""
    from wrapkit.models.export import export_run
    from wrapkit.common.datasets import load_images
    from wrapkit.ref.variants import with_accumulator

    cfg = ctx.cfg
    runs = ctx.results["train"]["runs"]
    out_dir = ctx.path("export")
    out_dir.mkdir(parents=True, exist_ok=True)
    test = load_images(cfg.dataset, "test", cfg.data_dir)
    sweep_set = test.first(cfg.sweep_images)
    exports, networks = {}, {}
    for name in NETWORKS:
        path = out_dir / f"{name}.wkx"
        ctx.say(f"{name}: exporting {runs[name]['dir']} -> {ctx.rel(path)}")
        exp = export_run(ctx.path(runs[name]["dir"]), path, data_dir=cfg.data_dir)
        exports[name] = exp
        ev = _evaluate(exp, test, say=ctx.say, label=f"{name} (integer engine)",
                       progress=ctx.progress)
        torch_acc = runs[name]["test_accuracy"]
        ev.update(pytorch_accuracy=torch_acc,
                  engine_minus_pytorch_points=100 * (ev["accuracy"] - torch_acc),
                  export=ctx.rel(path), sha256=exp.sha256,
                  bytes=path.stat().st_size)
        if abs(ev["engine_minus_pytorch_points"]) > 0.1:
            ctx.say(f"{name}: WARNING: the integer engine differs from PyTorch by "
                    f"{ev['engine_minus_pytorch_points']:+.2f} points")
        networks[name] = ev
    # The paper's Table 2.1 situation: the same trained networks on plain acc_bits registers
    # (wrap-around, no cyclic activation), on the whole test set.
    forced = {}
    for name in NETWORKS:
        variant = with_accumulator(exports[name], cfg.acc_bits, None)
        ev = _evaluate(variant, test, say=ctx.say,
                       label=f"{name} forced to {cfg.acc_bits}-bit wrap-around, no cyclic",
                       progress=ctx.progress)
        ev.update(acc_bits=cfg.acc_bits, k=None)
        if name == "baseline":
            torch_forced = runs[name]["eval_acc_bits"].get(str(cfg.acc_bits))
            if torch_forced is not None:
                ev["pytorch_accuracy"] = torch_forced["test_accuracy"]
                ev["engine_minus_pytorch_points"] = 100 * (ev["accuracy"]
                                                           - torch_forced["test_accuracy"])
        forced[name] = ev
    # Accuracy against accumulator width (plain registers), on sweep_images test images.
    sweep = {name: [] for name in NETWORKS}
    for name in NETWORKS:
        for bits in cfg.sweep_acc_bits:
            try:
                variant = with_accumulator(exports[name], bits, None)
            except UserError as exc:  # requantization constants too narrow for this width
                sweep[name].append({"acc_bits": bits, "k": None, "accuracy": None,
                                    "note": str(exc)})
                continue
            ev = _evaluate(variant, sweep_set, progress=False)
            sweep[name].append({"acc_bits": bits, "k": None, "accuracy": ev["accuracy"],
                                "mean_overflow_rate": ev["mean_overflow_rate"]})
        ctx.say(f"{name}: accuracy vs plain accumulator width on {len(sweep_set)} images: "
                + ", ".join(f"{p['acc_bits']}b {100 * p['accuracy']:.1f}%"
                            for p in sweep[name] if p["accuracy"] is not None))
    trained = _evaluate(exports["wrapnet"], sweep_set, progress=False)
    sweep["wrapnet_cyclic"] = [{"acc_bits": cfg.acc_bits, "k": cfg.k,
                                "accuracy": trained["accuracy"],
                                "mean_overflow_rate": trained["mean_overflow_rate"]}]
    result = {"networks": networks, "forced": forced, "sweep": sweep,
              "sweep_images": len(sweep_set), "test_images": len(test)}
    atomic_write_json(out_dir / "engine.json", result)
    return result
