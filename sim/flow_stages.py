"""The six stages of ``wrapkit flow`` (:mod:`wrapkit.sim.flow` runs them in order).

Each ``stage_<name>(ctx)`` reads its settings from ``ctx.cfg`` and the results of earlier
stages from ``ctx.results``, writes its files under ``ctx.run_dir`` and returns a JSON-able
result (stored in ``flow.json``, gathered into ``summary.json``). Paths inside results are
relative to the run directory, so a run folder can be moved.
"""

import json
import shutil
import time
from pathlib import Path

import numpy as np

from wrapkit.common.errors import UserError
from wrapkit.common.files import atomic_write_json

__all__ = ["StageFailure", "stage_cosim", "stage_export", "stage_report", "stage_rtl",
           "stage_synth", "stage_train"]

#: Training runs in order: name, what the report calls it.
NETWORKS = {"wrapnet": "WrapNet", "baseline": "32-bit baseline"}


class StageFailure(Exception):
    """A stage ran to its end but its outcome is a failure (e.g. cosimulation mismatches)."""


def _rel(ctx, path):
    return str(Path(path).resolve().relative_to(ctx.run_dir.resolve()))


# -- 1. train ---------------------------------------------------------------------------------

def _common_train(cfg):
    return dict(model=cfg.model, widths=cfg.widths, weights="binary", dataset=cfg.dataset,
                data_dir=cfg.data_dir, train_subset=cfg.train_subset,
                batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed, threads=cfg.threads,
                calib_images=cfg.calib_images)


def _train_plan(cfg):
    """[(name, builder(done) -> TrainConfig)] in order; ``done`` maps names to metrics."""
    from wrapkit.models.train import TrainConfig

    common = _common_train(cfg)
    plan = []
    if cfg.fp32_epochs:
        plan.append(("fp32", lambda done, init: TrainConfig(method="fp32",
                                                            epochs=cfg.fp32_epochs, **common)))
    if cfg.bwn_epochs:
        plan.append(("bwn", lambda done, init: TrainConfig(
            method="qw", epochs=cfg.bwn_epochs, init=init, **common)))
    plan.append(("wrapnet", lambda done, init: TrainConfig(
        method="wrapnet", init=init, warmup_epochs=cfg.warmup_epochs,
        epochs=cfg.finetune_epochs, acc_bits=cfg.acc_bits, k=cfg.k, p=cfg.p, ro=cfg.ro,
        max_act_bits=cfg.max_act_bits, **common)))

    def baseline(done, init):
        bits = cfg.baseline_act_bits
        if bits == "match":
            bits = max(r["act_bits"] for r in done["wrapnet"]["final"]["layers"])
        # eval_acc_bits: PyTorch's accuracy of the same network on plain acc_bits registers,
        # the cross-check of the engine's forced-wrap-around variant.
        return TrainConfig(method="qa", init=init, act_bits=bits, acc_bits=cfg.baseline_acc_bits,
                           epochs=cfg.baseline_epochs, eval_acc_bits=(cfg.acc_bits,), **common)
    plan.append(("baseline", baseline))
    return plan


# Settings that do not change what a training run computes (or that the chain checks itself).
_TRAIN_FREE = ("init", "threads", "data_dir")


_STAMP = "flow_stamp.json"


def _stamp(tc):
    """What a training run's reuse depends on: its settings and the training code."""
    from .flow import TRAIN_SOURCES, _source_digest

    return {"config": {k: v for k, v in tc.to_dict().items() if k not in _TRAIN_FREE},
            "sources": _source_digest(TRAIN_SOURCES)}


def _reusable(run_dir, tc):
    """'done' (finished with these settings and this code), 'partial' (a checkpoint of
    them), 'stale' (something else is there) or None (nothing)."""
    metrics, stamp = run_dir / "metrics.json", run_dir / _STAMP
    if not metrics.is_file() or not stamp.is_file():
        return "stale" if run_dir.exists() else None
    try:
        saved = json.loads(metrics.read_text())
        stamped = json.loads(stamp.read_text())
    except json.JSONDecodeError:
        return "stale"
    if stamped != _stamp(tc):
        return "stale"
    if saved.get("complete") and (run_dir / "model.pt").is_file():
        return "done"
    return "partial" if (run_dir / "checkpoint.pt").is_file() else "stale"


def stage_train(ctx):
    from wrapkit.models.train import train

    cfg = ctx.cfg
    root = ctx.path("train")
    done, runs, init, retrained = {}, {}, None, False
    for name, build in _train_plan(cfg):
        run_dir = root / name
        tc = build(done, None if init is None else str(init.resolve()))
        status = None if retrained else _reusable(run_dir, tc)
        t0 = time.perf_counter()
        if status == "done":
            ctx.say(f"{name}: reusing the finished run in {_rel(ctx, run_dir)}")
        else:
            if status == "partial" and ctx.resume:
                ctx.say(f"{name}: resuming the interrupted run in {_rel(ctx, run_dir)}")
            elif run_dir.exists():
                note = (" (pass --resume to continue it instead)" if status == "partial"
                        else " (its settings changed)" if status == "stale" else "")
                ctx.say(f"{name}: restarting {_rel(ctx, run_dir)}{note}")
                shutil.rmtree(run_dir)
            ctx.say(f"{name}: training ({tc.method}, {_epochs(tc)} epochs on "
                    f"{cfg.train_subset or 'all'} {cfg.dataset} images)")
            if not (status == "partial" and ctx.resume):
                atomic_write_json(run_dir / _STAMP, _stamp(tc))
            train(tc, run_dir, resume=status == "partial" and ctx.resume,
                  progress=ctx.progress,
                  log=lambda msg, n=name: ctx.say(f"{n}: {msg.removeprefix('train: ')}"))
            retrained = True
        metrics = json.loads((run_dir / "metrics.json").read_text())
        done[name] = metrics
        final = metrics["final"]
        runs[name] = {
            "dir": _rel(ctx, run_dir), "method": tc.method, "config": metrics["config"],
            "reused": status == "done", "seconds": round(time.perf_counter() - t0, 2),
            "train_seconds": round(sum(h["seconds"] for h in metrics["history"]), 2),
            "epochs": len(metrics["history"]),
            "test_accuracy": final["test_accuracy"],
            "mean_overflow_rate": final["mean_overflow_rate"],
            "act_bits": [r["act_bits"] for r in final["layers"]],
            "layers": final["layers"],
            "stage_results": [{"stage": s["stage"], "accuracy": s["accuracy"],
                               "mean_overflow_rate": s["mean_overflow_rate"]}
                              for s in metrics["stage_results"]],
            "eval_acc_bits": metrics.get("eval_acc_bits", {}),
        }
        init = run_dir
        ctx.say(f"{name}: test accuracy {100 * final['test_accuracy']:.2f} % (PyTorch)")
    return {"runs": runs, "train_images": done["wrapnet"]["train_images"],
            "test_images": done["wrapnet"]["test_images"]}


def _epochs(tc):
    from wrapkit.models.train import plan
    return sum(s.epochs for s in plan(tc))


# -- 2. export + integer engine ---------------------------------------------------------------

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
    from wrapkit.models.export import export_run
    from wrapkit.ref.datasets import load_images
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
        ctx.say(f"{name}: exporting {runs[name]['dir']} -> {_rel(ctx, path)}")
        exp = export_run(ctx.path(runs[name]["dir"]), path, data_dir=cfg.data_dir)
        exports[name] = exp
        ev = _evaluate(exp, test, say=ctx.say, label=f"{name} (integer engine)",
                       progress=ctx.progress)
        torch_acc = runs[name]["test_accuracy"]
        ev.update(pytorch_accuracy=torch_acc,
                  engine_minus_pytorch_points=100 * (ev["accuracy"] - torch_acc),
                  export=_rel(ctx, path), sha256=exp.sha256,
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


# -- 3. rtl -----------------------------------------------------------------------------------

def _open_exports(ctx):
    from wrapkit.ref.wkx import read_export

    return {name: read_export(ctx.path(ctx.results["export"]["networks"][name]["export"]))
            for name in NETWORKS}


def _cosim_targets(ctx, exports):
    """[(network, layer index, layer name)] of the layers to cosimulate."""
    wanted = ctx.cfg.cosim_layers
    layers = exports["wrapnet"].header["layers"]
    ints = [(i, s["name"]) for i, s in enumerate(layers) if s["precision"] == "integer"]
    if not wanted:
        convs = [(i, n) for i, n in ints if layers[i]["kind"] == "conv2d"]
        if not convs:
            raise UserError("the network has no integer conv layer to cosimulate")
        wanted = (convs[0][1],)
    by_name = dict((n, i) for i, n in ints)
    targets = []
    for name in wanted:
        if name not in by_name:
            raise UserError(f"cosim_layers names {name!r}, which is not an integer layer of "
                            f"the network; choose from {', '.join(by_name)}")
        targets.append(by_name[name])
    return targets


def stage_rtl(ctx):
    from wrapkit.hw.export import mac_design, write_designs
    from wrapkit.hw.synth.network import baseline_config, datapath_config
    from wrapkit.ref.engine import Engine

    cfg = ctx.cfg
    exports = _open_exports(ctx)
    # One operand width for both datapaths: the widest layer input of either network.
    width = max(datapath_config(e).act_bits for e in exports.values())
    dp8 = datapath_config(exports["wrapnet"], act_bits=width)
    dp32 = baseline_config(dp8, cfg.baseline_acc_bits)
    if datapath_config(exports["baseline"], act_bits=width) != dp32:
        raise UserError(f"the baseline network needs "
                        f"{datapath_config(exports['baseline'], act_bits=width).name}, not "
                        f"{dp32.name}: both networks must share weights and activations")
    roles = {dp8.name: ["datapath 8-bit"], dp32.name: ["datapath 32-bit"]}
    configs = {dp8.name: dp8, dp32.name: dp32}
    for net, engine_exp in exports.items():
        engine = Engine(engine_exp)
        for index in _cosim_targets(ctx, exports):
            lay = engine.layer(index)
            configs.setdefault(lay.cfg.name, lay.cfg)
            roles.setdefault(lay.cfg.name, []).append(f"{net} layer {index} ({lay.name})")
    out = ctx.path("rtl")
    ctx.say(f"generating {', '.join(configs)} into {_rel(ctx, out) if out.exists() else 'rtl'}")
    designs = [mac_design(c) for c in configs.values()]
    if out.exists():
        shutil.rmtree(out)
    write_designs(designs, out)
    rows = []
    for d in designs:
        rows.append({"name": d.name, "roles": roles[d.name], "config": d.manifest["config"],
                     "verilog": f"rtl/{d.files[0]}", "manifest": f"rtl/{d.files[1]}",
                     "verilog_sha256": d.manifest["verilog_sha256"],
                     "verilog_lines": d.verilog.count("\n")})
    return {"datapath_8": dp8.name, "datapath_32": dp32.name, "act_bits": width,
            "designs": rows}


# -- 4. cosim ---------------------------------------------------------------------------------

def _cosim_stream(manifest_path, stream, sim, say):
    """One operand stream through one design on one simulator (preloaded path, chunked)."""
    from .stream_cosim import cosim_stream

    r = cosim_stream(manifest_path, stream, sim)
    return {"design": r.design, "sim": sim, "ops": r.ops, "checked": r.checked,
            "mismatches": r.mismatches, "final_mismatches": r.final_mismatches,
            "examples": r.examples[:10], "chunks": r.chunks, "build_s": round(r.build_s, 2),
            "wall_s": round(r.wall_s, 3), "ops_per_s": r.ops_per_s or None}


def stage_cosim(ctx):
    from wrapkit.ref.datapath import MacConfig

    from .layer_mac import layer_operands

    cfg = ctx.cfg
    rtl = ctx.results["rtl"]
    manifests = {d["name"]: ctx.path(d["manifest"]) for d in rtl["designs"]}
    exports = _open_exports(ctx)
    runs = []
    for net in NETWORKS:
        datapath = rtl["datapath_8"] if net == "wrapnet" else rtl["datapath_32"]
        for index in _cosim_targets(ctx, exports):
            path = ctx.path(ctx.results["export"]["networks"][net]["export"])
            engine, lay, stream, n_images = layer_operands(
                path, index, cfg.cosim_images, data_dir=cfg.data_dir,
                max_ops=cfg.cosim_max_ops)
            designs = [lay.cfg.name] if net == "wrapnet" else []
            designs += [datapath] if datapath not in designs else []
            for design in designs:
                dcfg = MacConfig.from_dict(json.loads(manifests[design].read_text())["config"])
                if (dcfg.acc_bits, dcfg.k) != (lay.cfg.acc_bits, lay.cfg.k):
                    continue  # a different accumulator computes something else
                for sim in cfg.simulators:
                    ctx.say(f"{net} layer {index} ({lay.name}, {lay.describe()}): "
                            f"{len(stream):,} MAC operations of "
                            f"{n_images} image(s) on {design}, {sim}")
                    r = _cosim_stream(manifests[design], stream, sim, ctx.say)
                    r.update(network=net, layer=index, layer_name=lay.name,
                             geometry=lay.describe(), images=n_images, dots=stream.dots,
                             fan_in=lay.fan_in,
                             layer_ops=lay.positions * lay.out_channels * lay.fan_in * n_images)
                    ctx.say(f"  {r['checked']:,} operations checked, {r['mismatches']} "
                            f"mismatches, {r['final_mismatches']} dot products differing from "
                            f"the engine ({r['ops_per_s'] or 0:,.0f} ops/s, build "
                            f"{r['build_s']:.1f} s)")
                    runs.append(r)
    result = {"runs": runs,
              "checked": sum(r["checked"] for r in runs),
              "mismatches": sum(r["mismatches"] + r["final_mismatches"] for r in runs)}
    atomic_write_json(ctx.path("cosim", "cosim.json"), result)
    bad = [r for r in runs if r["mismatches"] or r["final_mismatches"]
           or r["checked"] != r["ops"]]
    if bad:
        r = bad[0]
        raise StageFailure(f"{len(bad)} cosimulation run(s) failed, e.g. {r['design']} on "
                           f"{r['sim']}: {r['mismatches']} mismatching cycles, "
                           f"{r['final_mismatches']} dot products differing from the engine"
                           + (f" (first: {r['examples'][0]})" if r["examples"] else "")
                           + f"; details in {_rel(ctx, ctx.path('cosim', 'cosim.json'))}")
    return result


# -- 5. synth ---------------------------------------------------------------------------------

def stage_synth(ctx):
    from wrapkit.hw.synth.estimate import estimate_layers, write_layer_plot
    from wrapkit.hw.synth.network import network_activity
    from wrapkit.ref.datasets import load_images

    cfg = ctx.cfg
    rtl = ctx.results["rtl"]
    manifests = {d["name"]: ctx.path(d["manifest"]) for d in rtl["designs"]}
    m8, m32 = manifests[rtl["datapath_8"]], manifests[rtl["datapath_32"]]
    exports = _open_exports(ctx)
    images = load_images(cfg.dataset, "test", cfg.data_dir).first(cfg.estimate_images)
    out_dir = ctx.path("synth")
    out_dir.mkdir(parents=True, exist_ok=True)
    common = dict(array_macs=cfg.array_macs, liberty=cfg.liberty, goal=cfg.goal,
                  n_ops=cfg.estimate_ops, seed=cfg.seed, timed=cfg.timed,
                  progress=lambda s: ctx.say(s))
    estimates = {}
    for net in NETWORKS:
        ctx.say(f"{net}: sampling real operands of {len(images)} test images "
                f"({cfg.estimate_ops} operations per layer)")
        act = network_activity(exports[net], images, n_ops=cfg.estimate_ops, seed=cfg.seed,
                               act_bits=rtl["act_bits"])
        if net == "wrapnet":
            # The WrapNet network on its 8-bit datapath and, with the very same operands,
            # on the 32-bit one: the accumulator's share of the difference.
            est = estimate_layers(act.records, m8, baseline_manifest=m32, **common)
        else:
            est = estimate_layers(act.records, m32, **common)
        for row, info in zip(est["layers"], act.layers):
            row.update({k: v for k, v in info.items() if k not in row})
        est.update(images=act.images, engine_accuracy_sample=act.accuracy)
        atomic_write_json(out_dir / f"estimate_{net}.json", est)
        estimates[net] = est
    write_layer_plot(estimates["wrapnet"], out_dir / "layer_energy.png")
    w, b = estimates["wrapnet"], estimates["baseline"]
    ratio = {
        "area": b["datapath"]["mac_area_um2"] / w["datapath"]["mac_area_um2"],
        "cycle_time": b["datapath"]["cycle_time_ns"] / w["datapath"]["cycle_time_ns"],
        "energy_same_operands": w["gains"]["energy"],
        "energy_each_network": (b["datapath"]["energy_per_inference_nj"]
                                / w["datapath"]["energy_per_inference_nj"]),
    }
    ctx.say(f"8-bit vs 32-bit datapath: area {ratio['area']:.2f}x smaller, cycle time "
            f"{ratio['cycle_time']:.2f}x shorter, energy per inference "
            f"{ratio['energy_each_network']:.2f}x lower (each network on its own datapath)")
    return {"wrapnet": w, "baseline": b, "ratios": ratio,
            "layer_plot": "synth/layer_energy.png",
            "liberty": cfg.liberty or "OSU 0.18 um (qflow-tech-osu018)"}


# -- 6. report --------------------------------------------------------------------------------

def stage_report(ctx):
    from .flow_report import write_report

    files = write_report(ctx)
    for f in files:
        ctx.say(f"wrote {f}")
    return {"files": files}
