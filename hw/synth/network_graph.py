"""Energy per inference of an integer graph, per MAC node and per node kind, from real operands.

``wrapkit estimate GRAPH.wkx`` on a version-2 file (:mod:`wrapkit.ref.graph`). The method is
that of the layer chains (:mod:`.network`), per MAC-type node instead of per layer:

* the graph engine runs the first test images and keeps every MAC node's inputs;
* each MAC node (conv2d, depthwise conv2d, linear, matmul) becomes a
  :class:`~wrapkit.hw.synth.estimate.LayerRecord`: its MACs per inference (output elements
  × fan-in) and a sample of its *real* operation stream — ``segments`` runs of consecutive
  dot products at seeded random places of the node's stream
  (:func:`wrapkit.ref.graph.node_streams.node_operands`, the stream order of
  ``wrapkit cosim layer --node``), about ``n_ops`` operations in all;
* the nodes do not share one MAC: each runs on the MAC of its own widths
  (:func:`~wrapkit.ref.graph.node_streams.node_mac_config`: a matmul's second operand on
  the weight port, signed activations where the codes are signed), so one MAC is generated
  and synthesized per **distinct MacConfig** and simulated on the samples of its nodes
  (:func:`~wrapkit.hw.synth.estimate.estimate_layers`); its baseline is the same MAC with a
  ``baseline_acc_bits`` accumulator and no cyclic activation, fed the same operands;
* the engine's statistics of each node over its whole stream (overflow and cyclic-fold
  rates, operand toggles per bit, zero activations:
  :func:`~wrapkit.ref.graph.node_streams.node_statistics`) go into the report.

Totals: energy per inference is the sum over MAC nodes; per node kind (conv2d, depthwise,
linear, matmul) the sums of its nodes. Area assumes one ``array_macs`` array per distinct MAC
(their sum); latency runs every node on its MAC's array, one after another. Float nodes
(stem, classifier) are listed with their MACs but do not run on a MAC. Energy counts the MAC
datapath only, as for layer chains.
"""

import math
import tempfile
from pathlib import Path

import numpy as np

from wrapkit.common.errors import UserError

from .network import DEFAULT_SEGMENTS, baseline_config, check_manifests, generate_mac_designs

__all__ = ["KIND_LABELS", "estimate_graph", "estimate_graph_markdown", "node_kind_label",
           "sample_node_stream"]

#: Node kinds the report sums over (a depthwise conv2d is its own kind here).
KIND_LABELS = ("conv2d", "depthwise", "linear", "matmul")


def node_kind_label(graph, node):
    """``depthwise`` for a conv2d with one input channel per group (and more than one
    group), else the node's kind."""
    if node.kind == "conv2d" and node.attrs["groups"] > 1 \
            and node.attrs["groups"] == graph.type_of(node.inputs[0]).shape[0]:
        return "depthwise"
    return node.kind


def sample_node_stream(operands, n_ops, *, segments=DEFAULT_SEGMENTS, seed=0, source="node"):
    """A sample of a node's operation stream: ``segments`` runs of consecutive dot products
    starting at seeded random dot products (wrapping around the stream's end), whole dot
    products only, about ``n_ops`` operations (at least one dot product per run).

    Parameters
    ----------
    operands : wrapkit.ref.graph.node_streams.NodeOperands
    n_ops, segments : int >= 1
    seed : int

    Returns
    -------
    MacOpStream
    """
    for name, v in (("n_ops", n_ops), ("segments", segments)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    k, total = operands.fan_in, operands.dots
    dots = max(1, math.ceil(n_ops / k))
    segments = min(int(segments), dots)
    per = [dots // segments + (1 if i < dots % segments else 0) for i in range(segments)]
    rng = np.random.default_rng(seed)
    picks = np.concatenate([(int(rng.integers(total)) + np.arange(n)) % total for n in per])
    return operands.stream(picks, source=f"{source}: {dots} dot products of {k} ops in "
                                         f"{segments} runs, seed {seed}")


def _float_macs(graph, node):
    w = node.weights.get("weight")
    if node.kind not in ("conv2d_float", "linear_float") or w is None:
        return None
    return int(node.output.size * int(np.prod(w.shape[1:])))


def _graph_activity(exp, images, *, n_ops, segments, seed):
    """Per MAC node: its config, a LayerRecord with a sampled stream, its statistics."""
    from wrapkit.ref.graph import GraphEngine
    from wrapkit.ref.graph.node_streams import (mac_node_names, node_mac_config,
                                                node_operands, node_statistics)

    from .estimate import LayerRecord

    graph = exp.graph
    names = mac_node_names(graph)
    if not names:
        raise UserError(f"{exp.path} has no MAC node (conv2d, linear, matmul): nothing runs "
                        "on a MAC datapath")
    configs = {}
    for name in names:
        try:
            configs[name] = node_mac_config(graph, name)
        except UserError as exc:
            raise UserError(f"{exp.path}: {exc}") from None
    engine = GraphEngine(graph)
    keep = sorted({s for n in names for s in graph.node(n).inputs if s not in graph.inputs})
    values = engine.run(images.pixels, keep=keep)
    values.update(engine.check_inputs(images.pixels))
    logits = values[graph.outputs[0]]
    classifier = exp.header.get("num_classes") is not None and logits.ndim == 2
    accuracy = (float(np.mean(logits.argmax(1) == images.labels))
                if classifier and len(images) else None)
    rows = []
    for i, node in enumerate(graph.nodes):
        if node.name in configs:
            ops = node_operands(graph, node.name, [values[s] for s in node.inputs])
            macs = int(node.output.size * ops.fan_in)
            stim = sample_node_stream(ops, n_ops, segments=segments, seed=seed + i,
                                      source=node.name)
            row = {"node": node.name, "kind": node.kind,
                   "label": node_kind_label(graph, node), "macs": macs, "float_only": False,
                   "mac": configs[node.name].name, "fan_in": ops.fan_in,
                   "record": LayerRecord(node.name, macs, operands=stim)}
            stats = node_statistics(ops, node.attrs["acc"])
            row.update({k: stats[k] for k in ("overflow_rate", "cyclic_fold_rate",
                                              "a_zero_fraction", "a_toggles_per_bit",
                                              "w_toggles_per_bit")})
            rows.append(row)
        elif _float_macs(graph, node) is not None:
            rows.append({"node": node.name, "kind": node.kind, "label": node.kind,
                         "macs": _float_macs(graph, node), "float_only": True, "mac": None})
    return rows, configs, accuracy


def estimate_graph(exp, images, *, n_ops=1000, segments=DEFAULT_SEGMENTS, seed=0,
                   array_macs=64, baseline_acc_bits=32, rtl_dir=None, liberty=None,
                   cell_models=None, goal="delay", timed=True, use_cache=True, progress=None):
    """Energy per inference of graph export ``exp`` per MAC node and node kind (module
    docstring), on the test ``images``.

    Returns
    -------
    dict
        ``schema`` ``wrapkit.estimate.graph/1``; ``designs``: per distinct MAC its config,
        nodes and ``estimate_layers`` summary for ``datapath`` and ``baseline``; ``layers``:
        one row per MAC or float node (``layer``, ``kind``, ``label``, ``macs``, ``mac``,
        per role ``<role>_energy_fj_per_mac`` and ``<role>_energy_nj``, the engine's
        statistics); ``kinds``: per node kind its MACs and energies; ``datapath`` /
        ``baseline``: totals; ``gains``: baseline / datapath.
    """
    from .estimate import estimate_layers

    rows, configs, accuracy = _graph_activity(exp, images, n_ops=n_ops, segments=segments,
                                              seed=seed)
    distinct = list(dict.fromkeys(configs.values()))
    bases = {c: (baseline_config(c, baseline_acc_bits) if baseline_acc_bits else None)
             for c in distinct}
    wanted = list(dict.fromkeys(distinct + [b for b in bases.values() if b is not None]))
    tmp = None
    designs = []
    try:
        if rtl_dir is None:
            tmp = tempfile.TemporaryDirectory(prefix="wrapkit-estimate-")
            rtl_dir = tmp.name
        if progress:
            progress(f"rtl: generating {', '.join(c.name for c in wanted)}")
        paths = dict(zip(wanted, generate_mac_designs(wanted, rtl_dir)))
        check_manifests({c.name: p for c, p in paths.items()},
                        {c.name: c for c in paths})
        for cfg in distinct:
            mine = [r for r in rows if r.get("mac") == cfg.name]
            base = bases[cfg]
            est = estimate_layers([r["record"] for r in mine], paths[cfg],
                                  baseline_manifest=paths[base] if base else None,
                                  array_macs=array_macs, liberty=liberty,
                                  cell_models=cell_models, goal=goal, n_ops=n_ops, seed=seed,
                                  timed=timed, use_cache=use_cache, progress=progress)
            # A node whose MAC already has the baseline accumulator is its own baseline:
            # it costs the same in both columns instead of dropping out of the totals.
            same = baseline_acc_bits and base is None
            designs.append({"config": cfg.to_dict(), "nodes": [r["node"] for r in mine],
                            "datapath": est["datapath"],
                            "baseline": est["datapath"] if same else est["baseline"]})
            for row, done in zip(mine, est["layers"]):
                for role in ("datapath", "baseline"):
                    source = "datapath" if same else role
                    for key in ("energy_fj_per_mac", "energy_nj", "energy_groups_fj_per_mac"):
                        row[f"{role}_{key}"] = done.get(f"{source}_{key}")
                row["baseline_mac"] = cfg.name if same else (base.name if base else None)
    finally:
        if tmp is not None:
            tmp.cleanup()
    roles = ("datapath", "baseline") if baseline_acc_bits else ("datapath",)
    layers = []
    for r in rows:
        r.pop("record", None)
        if r["float_only"]:
            for role in roles:
                r[f"{role}_energy_fj_per_mac"] = r[f"{role}_energy_nj"] = 0.0
        layers.append({"layer": r.pop("node"), **r})
    totals = {role: _totals(designs, role) for role in roles}
    kinds = {}
    for r in layers:
        if r["float_only"]:
            continue
        k = kinds.setdefault(r["label"], {"nodes": [], "macs": 0,
                                          **{f"{role}_energy_nj": 0.0 for role in roles}})
        k["nodes"].append(r["layer"])
        k["macs"] += r["macs"]
        for role in roles:
            k[f"{role}_energy_nj"] += r[f"{role}_energy_nj"]
    out = {
        "schema": "wrapkit.estimate.graph/1",
        "model": str(exp.path),
        "export_sha256": exp.sha256,
        "images": len(images),
        "engine_accuracy": accuracy,
        "n_ops_per_layer": n_ops,
        "designs": designs,
        "layers": layers,
        "kinds": {k: kinds[k] for k in KIND_LABELS if k in kinds},
        "datapath": totals["datapath"],
        "baseline": totals.get("baseline"),
        "scope": "MAC datapath only (multiplier, accumulator, cyclic activation, their "
                 "registers), one MAC per distinct node configuration; no memories, no "
                 "requantization, no float nodes",
    }
    if out["baseline"]:
        d, b = out["datapath"], out["baseline"]
        out["gains"] = {"energy": b["energy_per_inference_nj"] / d["energy_per_inference_nj"],
                        "area": b["array_area_mm2"] / d["array_area_mm2"],
                        "latency": b["latency_us"] / d["latency_us"]}
    return out


def _totals(designs, role):
    parts = [d[role] for d in designs]
    return {"design": ", ".join(p["design"] for p in parts),
            "array_macs": parts[0]["array_macs"],
            "array_area_mm2": sum(p["array_area_mm2"] for p in parts),
            "macs_per_inference": sum(p["macs_per_inference"] for p in parts),
            "energy_per_inference_nj": sum(p["energy_per_inference_nj"] for p in parts),
            "latency_us": sum(p["latency_us"] for p in parts)}


def estimate_graph_markdown(est):
    """A short markdown report of :func:`estimate_graph`'s result."""
    roles = [r for r in ("datapath", "baseline") if est.get(r)]
    lines = [f"# Graph estimate: {Path(est['model']).name}", "",
             f"Real operands of {est['images']} test images ({est['n_ops_per_layer']} MAC "
             f"operations simulated per node and MAC); {est['scope']}.", "",
             "| nodes | " + " | ".join(
                 f"{r} MAC | cycle (ns) | MAC area (um^2) | nJ" for r in roles) + " |",
             "|---|" + "---|---:|---:|---:|" * len(roles)]
    for d in est["designs"]:
        cells = []
        for r in roles:
            x = d[r]
            cells += [f"`{x['design']}`", f"{x['cycle_time_ns']:.2f}", f"{x['mac_area_um2']:,.0f}",
                      f"{x['energy_per_inference_nj']:.3f}"]
        lines.append(f"| {', '.join(d['nodes'])} | " + " | ".join(cells) + " |")
    lines += ["", "| kind | nodes | MACs | " + " | ".join(f"{r} nJ" for r in roles) + " |",
              "|---|---|---:|" + "---:|" * len(roles)]
    for kind, k in est["kinds"].items():
        lines.append(f"| {kind} | {', '.join(k['nodes'])} | {k['macs']:,} | "
                     + " | ".join(f"{k[f'{r}_energy_nj']:.3f}" for r in roles) + " |")
    total = " | ".join(f"**{est[r]['energy_per_inference_nj']:.3f}**" for r in roles)
    lines.append(f"| **total** | | {est['datapath']['macs_per_inference']:,} | {total} |")
    if est.get("gains"):
        g = est["gains"]
        lines += ["", f"Baseline / datapath: energy {g['energy']:.2f}x, area {g['area']:.2f}x, "
                      f"latency {g['latency']:.2f}x."]
    lines += ["", "| node | kind | MAC | MACs | overflow | folded | " + " | ".join(
        f"{r} fJ/MAC | {r} nJ" for r in roles) + " |",
              "|---|---|---|---:|---:|---:|" + "---:|---:|" * len(roles)]
    for r in est["layers"]:
        if r["float_only"]:
            lines.append(f"| {r['layer']} | {r['kind']} [float] | - | {r['macs']:,} | - | - | "
                         + " | ".join("float | -" for _ in roles) + " |")
            continue
        ov = "-" if r.get("overflow_rate") is None else f"{100 * r['overflow_rate']:.2f} %"
        fold = "-" if r.get("cyclic_fold_rate") is None else \
            f"{100 * r['cyclic_fold_rate']:.2f} %"
        cells = [f"{r[f'{role}_energy_fj_per_mac']:.1f} | {r[f'{role}_energy_nj']:.3f}"
                 for role in roles]
        lines.append(f"| {r['layer']} | {r['label']} | `{r['mac']}` | {r['macs']:,} | {ov} | "
                     f"{fold} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
