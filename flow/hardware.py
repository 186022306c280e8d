"""The hardware stages: generate the MAC RTL, cosimulate real layers in it, synthesize it.

``rtl`` writes the Verilog and manifests of the 8-bit and 32-bit datapaths and of each
cosimulated layer's own MAC; ``cosim`` runs a real conv layer's operand stream through them
on Icarus and/or Verilator (preloaded path), every cycle against ``wrapkit.ref`` and every
dot product against the engine; ``synth`` estimates area, cycle time and energy per
inference of both datapaths from the layers' real operands.
"""

import json
import shutil

from wrapkit.common.errors import UserError
from wrapkit.common.files import atomic_write_json

from .config import NETWORKS
from .context import StageFailure

__all__ = ["stage_cosim", "stage_rtl", "stage_synth"]


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
    """The MAC Verilog and manifests of both datapaths and of each cosimulated layer."""
    from wrapkit.hw.verilog import mac_design, write_designs
    from wrapkit.hw.synth.network import baseline_config, datapath_config
    from wrapkit.hw.width_check import check_file
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
    ctx.say(f"generating {', '.join(configs)} into {ctx.rel(out) if out.exists() else 'rtl'}")
    designs = [mac_design(c) for c in configs.values()]
    if out.exists():
        shutil.rmtree(out)
    write_designs(designs, out)
    rows = []
    for d in designs:
        # The structural check: the accumulator and its adders are as narrow as the config.
        check = check_file(out / d.files[0], manifest=out / d.files[1])
        rows.append({"name": d.name, "roles": roles[d.name], "config": d.manifest["config"],
                     "verilog": f"rtl/{d.files[0]}", "manifest": f"rtl/{d.files[1]}",
                     "verilog_sha256": d.manifest["verilog_sha256"],
                     "verilog_lines": d.verilog.count("\n"),
                     "accumulation_path": check.to_dict()})
    return {"datapath_8": dp8.name, "datapath_32": dp32.name, "act_bits": width,
            "designs": rows}


def _cosim_stream(manifest_path, stream, sim):
    """One operand stream through one design on one simulator (preloaded path, chunked)."""
    from wrapkit.sim.stream_cosim import cosim_stream

    r = cosim_stream(manifest_path, stream, sim)
    return {"design": r.design, "sim": sim, "ops": r.ops, "checked": r.checked,
            "mismatches": r.mismatches, "final_mismatches": r.final_mismatches,
            "examples": r.examples[:10], "chunks": r.chunks, "build_s": round(r.build_s, 2),
            "wall_s": round(r.wall_s, 3), "ops_per_s": r.ops_per_s or None}


def stage_cosim(ctx):
    """Real layer operands through the generated MACs; any mismatch fails the stage."""
    from wrapkit.ref.datapath import MacConfig
    from wrapkit.sim.layer_mac import layer_operands

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
                    r = _cosim_stream(manifests[design], stream, sim)
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
                           + f"; details in {ctx.rel(ctx.path('cosim', 'cosim.json'))}")
    return result


def stage_synth(ctx):
    """Area, cycle time and energy per inference of both datapaths from real operands."""
    from wrapkit.hw.synth.estimate import estimate_layers, write_layer_plot
    from wrapkit.hw.synth.network import network_activity
    from wrapkit.common.datasets import load_images

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
