"""Network-level estimate of an exported network: real operands -> energy per inference.

``wrapkit estimate MODEL.wkx`` reads a trained network's export (:mod:`wrapkit.ref.wkx`),
runs the integer engine (:mod:`wrapkit.ref.engine`) on real test images and turns every layer
into a :class:`~wrapkit.hw.synth.estimate.LayerRecord` for
:func:`~wrapkit.hw.synth.estimate.estimate_layers`:

* **MACs per inference** from the layer geometry (``positions × out_channels × fan_in``);
  the float first and last layers are listed with their MACs but do not run on the datapath;
* **operands**: a sample of the layer's *real* MAC operation stream -- the input codes the
  engine computed for the test images and the layer's weight codes, in the stream order of
  :func:`wrapkit.ref.streams.layer_stream` (output positions outermost, output channels next,
  the fan-in innermost, ``clr`` on each dot product's first operation). The first operations
  of that stream all belong to the first output position of the first image (a padded
  corner), so the sample takes ``segments`` runs of consecutive dot products at seeded random
  positions of all the images instead; each run keeps the real order inside it;
* **activity statistics** of the engine (:class:`~wrapkit.ref.stats.LayerStats`: overflow
  and cyclic-fold rates, operand toggles per bit) for the report.

One datapath runs the whole network: the MAC of the export's weight kind, accumulator width
and cyclic slope with the *widest* activation of its integer layers (narrower codes enter it
zero-extended, as in a real shared datapath). The baseline is the same MAC with a 32-bit
accumulator and no cyclic activation, fed the same operands, so the comparison isolates the
accumulator. Energy counts the MAC datapath only (multiplier, accumulator, cyclic activation
and the registers between them), not memories or the requantization.
"""

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wrapkit.common.errors import UserError
from wrapkit.ref.datapath import MacConfig
from wrapkit.ref.opstream import MacOpStream

__all__ = ["NetworkActivity", "baseline_config", "check_manifests", "datapath_config",
           "estimate_export", "estimate_markdown", "generate_mac_designs", "network_activity",
           "sample_stream"]

#: Runs of consecutive dot products per layer sample (positions spread over the images).
DEFAULT_SEGMENTS = 8


def datapath_config(exp, *, act_bits=None):
    """The one MAC that runs every integer layer of export ``exp``.

    Parameters
    ----------
    exp : ExportFile
    act_bits : int, optional
        Activation width of the datapath; default the widest of the integer layers. Must be
        at least that wide.

    Raises
    ------
    UserError
        No integer layer, or layers that disagree on weight kind, accumulator or cyclic slope
        (they cannot share one MAC).
    """
    layers = [s for s in exp.header["layers"] if s["precision"] == "integer"]
    if not layers:
        raise UserError(f"{exp.path} has no integer layer: nothing runs on a MAC datapath")
    shared = {(s["weights"]["kind"], s["weights"]["bits"], s["accumulator"]["bits"],
               s["accumulator"]["k"]) for s in layers}
    if len(shared) != 1:
        raise UserError(f"{exp.path}: its integer layers use different MACs (weight kind, "
                        f"weight bits, accumulator bits, k: {sorted(shared, key=str)}); "
                        "`wrapkit estimate` models one shared datapath")
    kind, wbits, acc, k = shared.pop()
    widest = max(s["input_quant"]["bits"] for s in layers)
    if act_bits is None:
        act_bits = widest
    elif isinstance(act_bits, bool) or not isinstance(act_bits, int) \
            or not widest <= act_bits <= 32:
        raise UserError(f"--act-bits must be an integer in [{widest}, 32] (the widest layer "
                        f"input of {exp.path} is {widest} bits), got {act_bits!r}")
    return MacConfig(act_bits, False, kind, wbits, acc, k)


def baseline_config(cfg, acc_bits=32):
    """``cfg`` with an ``acc_bits`` accumulator and no cyclic activation (None if equal)."""
    base = MacConfig(cfg.act_bits, cfg.act_signed, cfg.weight_kind, cfg.weight_bits, acc_bits,
                     None)
    return None if base == cfg else base


def sample_stream(rows, w_codes, n_ops, *, segments=DEFAULT_SEGMENTS, seed=0, source="layer"):
    """A sample of a layer's MAC operation stream: runs of consecutive dot products.

    The full stream visits, for each row of ``rows`` (an output position's im2col patch),
    every output channel in turn, each a dot product over the fan-in. The sample takes
    ``segments`` runs at seeded random rows, each starting at a random channel and continuing
    over consecutive channels (wrapping around) -- whole dot products only, about ``n_ops``
    operations in all (at least one dot product per run).

    Parameters
    ----------
    rows : ndarray (R, K) of activation codes
    w_codes : ndarray (C, K) of weight codes
    n_ops : int >= 1
    segments : int >= 1
    seed : int

    Returns
    -------
    MacOpStream
    """
    rows, w_codes = np.asarray(rows), np.asarray(w_codes)
    if rows.ndim != 2 or w_codes.ndim != 2 or rows.shape[1] != w_codes.shape[1] \
            or not len(rows) or not len(w_codes):
        raise ValueError(f"rows and w_codes must be non-empty 2-D arrays with equal fan-in, "
                         f"got shapes {rows.shape} and {w_codes.shape}")
    for name, v in (("n_ops", n_ops), ("segments", segments)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    k, c = rows.shape[1], len(w_codes)
    dots = max(1, math.ceil(n_ops / k))
    segments = min(int(segments), dots)
    per = [dots // segments + (1 if i < dots % segments else 0) for i in range(segments)]
    rng = np.random.default_rng(seed)
    a_parts, w_parts = [], []
    for length in per:
        r = int(rng.integers(len(rows)))
        c0 = int(rng.integers(c))
        for j in range(length):
            # A run longer than the channels moves on to the next row, as the stream does.
            rr, cc = (r + (c0 + j) // c) % len(rows), (c0 + j) % c
            a_parts.append(rows[rr])
            w_parts.append(w_codes[cc])
    return MacOpStream.from_dot_products(
        np.stack(a_parts), np.stack(w_parts),
        source=f"{source}: {dots} dot products of {k} ops in {segments} runs, seed {seed}")


@dataclass
class NetworkActivity:
    """What the engine measured on real images, per layer, and the estimator's records."""

    records: list
    layers: list           # per layer: name, precision, geometry, MACs, engine statistics
    images: int
    dataset: str
    accuracy: float
    datapath: MacConfig
    extra: dict = field(default_factory=dict)


def _float_macs(layer):
    spec = layer.spec
    if layer.kind == "conv2d":
        c, h, w = spec["in_shape"]
        oh = (h + 2 * layer.padding - layer.kernel) // layer.stride + 1
        ow = (w + 2 * layer.padding - layer.kernel) // layer.stride + 1
        return oh * ow * layer.out_channels * c * layer.kernel ** 2
    return spec["in_features"] * layer.out_channels


def network_activity(exp, images, *, n_ops=1000, segments=DEFAULT_SEGMENTS, seed=0,
                     act_bits=None, toggle_images=8):
    """Run the engine on ``images`` and build one LayerRecord per layer of ``exp``.

    Parameters
    ----------
    exp : ExportFile
    images : wrapkit.common.datasets.Images
        Real test images (their pixels feed the engine).
    n_ops : int
        Operations sampled per integer layer.
    act_bits : int, optional
        Datapath activation width (see :func:`datapath_config`).
    toggle_images : int
        Images whose full operand streams the engine's toggle statistics cover.
    """
    from wrapkit.ref.engine import Engine

    from .estimate import LayerRecord

    cfg = datapath_config(exp, act_bits=act_bits)
    engine = Engine(exp)
    stats = engine.new_stats(toggle_images)
    x = engine.standardise(images.pixels)
    records, layers = [], []
    for layer in engine.layers:
        row = {"index": layer.index, "name": layer.name, "precision": layer.precision,
               "geometry": layer.describe()}
        if layer.precision == "integer":
            codes = x if x.dtype == np.uint8 else layer.quantize_input(x)
            stim = sample_stream(layer.rows(codes), layer.codes, n_ops, segments=segments,
                                 seed=seed + layer.index, source=layer.name)
            records.append(LayerRecord(layer.name, int(layer.macs_per_image), operands=stim))
            row.update(macs=int(layer.macs_per_image), mac=layer.cfg.name,
                       act_bits=layer.cfg.act_bits)
        else:
            records.append(LayerRecord(layer.name, _float_macs(layer), float_only=True))
            row.update(macs=_float_macs(layer), mac=None, act_bits=None)
        layers.append(row)
        x = layer.forward(x, stats)
    accuracy = float(np.mean(x.argmax(1) == images.labels)) if len(images) else float("nan")
    by_index = {s.index: s.to_dict() for s in stats.layers.values()}
    for row in layers:
        s = by_index.get(row["index"])
        if s is not None:
            tog = s["toggles"] or {}
            row.update(overflow_rate=s["overflow_rate"], cyclic_fold_rate=s["cyclic_fold_rate"],
                       a_toggles_per_bit=tog.get("a_mean"), w_toggles_per_bit=tog.get("w_mean"),
                       a_zero_fraction=tog.get("a_zero_fraction"))
    return NetworkActivity(records, layers, len(images), images.name, accuracy, cfg)


def generate_mac_designs(configs, rtl_dir):
    """Generate the MAC for each config into ``rtl_dir``; manifest paths in order."""
    from wrapkit.hw.verilog import mac_design, write_designs

    designs = [mac_design(c) for c in configs]
    try:
        write_designs(designs, rtl_dir)
    except OSError as exc:
        raise UserError(f"cannot write the MAC designs into {rtl_dir}: "
                        f"{exc.strerror or exc}") from None
    return [Path(rtl_dir) / d.files[1] for d in designs]


def estimate_export(model, *, images=16, dataset=None, data_dir=None, n_ops=1000,
                    segments=DEFAULT_SEGMENTS, seed=0, array_macs=64, act_bits=None,
                    baseline_acc_bits=32, rtl_dir=None, datapath_manifest=None,
                    baseline_manifest=None, liberty=None, cell_models=None, goal="delay",
                    timed=True, use_cache=True, progress=None):
    """Energy per inference and array area of an exported network, vs a 32-bit baseline.

    Parameters
    ----------
    model : path or ExportFile
        The ``.wkx`` export.
    images : int
        First test images whose real operands are sampled (and whose statistics are shown).
    dataset, data_dir : optional
        Test set (default: the export's).
    n_ops, segments, seed : see :func:`sample_stream`
    array_macs : int
        MAC units in the array.
    act_bits : int, optional
        Datapath activation width (default: the widest layer input).
    baseline_acc_bits : int or None
        Accumulator of the baseline MAC (None: no baseline).
    rtl_dir : path, optional
        Where the MAC designs are generated (default: a temporary folder).
    datapath_manifest, baseline_manifest : path, optional
        Use these generated designs instead (their configs must match).
    liberty, cell_models, goal, timed, use_cache, progress :
        As :func:`wrapkit.hw.synth.estimate.estimate_layers`.

    Returns
    -------
    dict
        ``estimate_layers``'s result plus ``model``, ``export_sha256``, ``dataset``,
        ``images``, ``engine_accuracy`` (on those images), ``datapath_config`` /
        ``baseline_config`` and the engine's per-layer statistics merged into ``layers``.
    """
    from wrapkit.common.datasets import load_images
    from wrapkit.ref.wkx import GRAPH_SCHEMA, ExportFile, decode, read_bytes, read_export

    from .estimate import estimate_layers

    if isinstance(images, bool) or not isinstance(images, int) or images < 1:
        raise UserError(f"--images must be an integer >= 1, got {images!r}")
    if not isinstance(model, ExportFile) \
            and decode(read_bytes(model), model).header.get("schema") == GRAPH_SCHEMA:
        return _estimate_graph_file(model, images, dataset, data_dir, act_bits,
                                    datapath_manifest or baseline_manifest,
                                    n_ops=n_ops, segments=segments, seed=seed,
                                    array_macs=array_macs,
                                    baseline_acc_bits=baseline_acc_bits, rtl_dir=rtl_dir,
                                    liberty=liberty, cell_models=cell_models, goal=goal,
                                    timed=timed, use_cache=use_cache, progress=progress)
    exp = model if isinstance(model, ExportFile) else read_export(model)
    dataset = dataset or exp.header["input"].get("dataset")
    if dataset is None:
        raise UserError(f"{exp.path} records no dataset; pass --dataset")
    test = load_images(dataset, "test", data_dir).first(images)
    if progress:
        progress(f"engine: {len(test)} {dataset} test images through {Path(exp.path).name}")
    act = network_activity(exp, test, n_ops=n_ops, segments=segments, seed=seed,
                           act_bits=act_bits)
    base_cfg = (baseline_config(act.datapath, baseline_acc_bits)
                if baseline_acc_bits is not None else None)
    given = {"datapath": datapath_manifest, "baseline": baseline_manifest}
    wanted = {"datapath": act.datapath, "baseline": base_cfg}
    tmp = None
    try:
        missing = [r for r in ("datapath", "baseline") if wanted[r] is not None and not given[r]]
        if missing:
            if rtl_dir is None:
                tmp = tempfile.TemporaryDirectory(prefix="wrapkit-estimate-")
                rtl_dir = tmp.name
            if progress:
                progress(f"rtl: generating {', '.join(wanted[r].name for r in missing)}")
            for role, path in zip(missing, generate_mac_designs([wanted[r] for r in missing],
                                                                rtl_dir)):
                given[role] = path
        check_manifests(given, wanted)
        result = estimate_layers(act.records, given["datapath"],
                                 baseline_manifest=given["baseline"] if base_cfg else None,
                                 array_macs=array_macs, liberty=liberty,
                                 cell_models=cell_models, goal=goal, n_ops=n_ops, seed=seed,
                                 timed=timed, use_cache=use_cache, progress=progress)
    finally:
        if tmp is not None:
            tmp.cleanup()
    for row, info in zip(result["layers"], act.layers):
        row.update({k: v for k, v in info.items() if k not in row})
    result.update({
        "schema": "wrapkit.estimate/1",
        "model": str(exp.path),
        "export_sha256": exp.sha256,
        "dataset": dataset,
        "images": act.images,
        "engine_accuracy": act.accuracy,
        "n_ops_per_layer": n_ops,
        "datapath_config": act.datapath.to_dict(),
        "baseline_config": None if base_cfg is None else base_cfg.to_dict(),
        "scope": "MAC datapath only (multiplier, accumulator, cyclic activation, their "
                 "registers); no memories, no requantization",
    })
    return result


def _estimate_graph_file(model, images, dataset, data_dir, act_bits, manifests, **options):
    from wrapkit.common.datasets import load_images
    from wrapkit.ref.graph import read_graph

    from .network_graph import estimate_graph

    if act_bits is not None:
        raise UserError("--act-bits applies to layer-chain (version 1) files, which share one "
                        f"datapath; {model} is an integer graph, whose MAC nodes each run on "
                        "the MAC of their own widths")
    if manifests is not None:
        raise UserError(f"{model} is an integer graph: its MACs are generated per node "
                        "configuration, not given")
    exp = read_graph(model)
    dataset = dataset or (exp.header.get("input") or {}).get("dataset")
    if dataset is None:
        raise UserError(f"{model} records no dataset; pass --dataset")
    test = load_images(dataset, "test", data_dir).first(images)
    progress = options.get("progress")
    if progress:
        progress(f"engine: {len(test)} {dataset} test images through {Path(model).name}")
    result = estimate_graph(exp, test, **options)
    result["dataset"] = dataset
    return result


def check_manifests(given, wanted):
    from wrapkit.hw.manifest import load_manifest, mac_config

    for role, path in given.items():
        if path is None or wanted[role] is None:
            continue
        have = mac_config(load_manifest(path))
        if have != wanted[role]:
            raise UserError(f"{role} design {path} is {have.name}, but the network needs "
                            f"{wanted[role].name}")


def estimate_markdown(est):
    """A short markdown report of :func:`estimate_export`'s result."""
    if est.get("schema") == "wrapkit.estimate.graph/1":
        from .network_graph import estimate_graph_markdown

        return estimate_graph_markdown(est)
    d, b = est["datapath"], est.get("baseline")
    roles = [("datapath", d)] + ([("baseline", b)] if b else [])
    lines = [f"# Network estimate: {Path(est['model']).name}", "",
             f"Real operands of {est['images']} {est['dataset']} test images "
             f"({est['n_ops_per_layer']} MAC operations simulated per layer and datapath); "
             f"{est['scope']}.", "",
             "| | " + " | ".join(f"{r}: `{x['design']}`" for r, x in roles) + " |",
             "|---|" + "---:|" * len(roles)]
    for label, key, fmt in (("cycle time (ns)", "cycle_time_ns", "{:.2f}"),
                            ("MAC area (um^2)", "mac_area_um2", "{:,.0f}"),
                            ("array MACs", "array_macs", "{}"),
                            ("array area (mm^2)", "array_area_mm2", "{:.4f}"),
                            ("MACs per inference", "macs_per_inference", "{:,}"),
                            ("energy per inference (nJ)", "energy_per_inference_nj", "{:.2f}"),
                            ("latency per inference (us)", "latency_us", "{:.1f}")):
        lines.append(f"| {label} | " + " | ".join(fmt.format(x[key]) for _, x in roles) + " |")
    if est.get("gains"):
        g = est["gains"]
        lines += ["", f"Baseline / datapath: energy {g['energy']:.2f}x, area {g['area']:.2f}x, "
                      f"latency {g['latency']:.2f}x."]
    lines += ["", "| # | layer | geometry | MACs | overflow | " + " | ".join(
        f"{r} fJ/MAC | {r} nJ" for r, _ in roles) + " |",
              "|---:|---|---|---:|---:|" + "---:|---:|" * len(roles)]
    for r in est["layers"]:
        ov = "-" if r.get("overflow_rate") is None else f"{100 * r['overflow_rate']:.2f} %"
        cells = []
        for role, _ in roles:
            if r["float_only"]:
                cells += ["float", "-"]
            else:
                cells += [f"{r[f'{role}_energy_fj_per_mac']:.1f}", f"{r[f'{role}_energy_nj']:.2f}"]
        lines.append(f"| {r.get('index', '')} | {r['layer']} | {r.get('geometry', '')} "
                     f"| {r['macs']:,} | {ov} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
