"""``wrapkit export`` and ``wrapkit infer``: trained network -> .wkx -> integer inference.

::

    wrapkit export runs/wrapnet -o model.wkx
    wrapkit infer model.wkx --dataset fashion-mnist [--images N] [--stats stats.json]

``export`` needs torch (it reads the trained model); ``infer`` runs the pure-numpy integer
engine (:mod:`wrapkit.ref.engine`) and never imports torch. Nothing heavy is imported until a
command runs.
"""

import time
from pathlib import Path

from wrapkit.common.errors import UserError
from wrapkit.common.flags import check_flag_count

__all__ = ["register_export", "register_infer"]


def register_export(subparsers):
    """Add ``wrapkit export``."""
    ex = subparsers.add_parser(
        "export", help="export a trained network to a .wkx file for integer inference",
        description="Write one versioned file (safetensors container, JSON header) with the "
                    "layer graph, integer weight codes, scales, activation steps and bits, "
                    "accumulator width, cyclic slope and BatchNorm folded into fixed-point "
                    "requantization. See docs/export.md.")
    ex.add_argument("run", metavar="RUN_DIR", help="a run directory (or its model.pt)")
    ex.add_argument("-o", "--out", required=True, metavar="FILE.wkx", help="file to write")
    ex.add_argument("--dataset", default=None, choices=("fashion-mnist", "digits"),
                    help="dataset whose standardisation the input uses (default: the run's)")
    ex.add_argument("--data-dir", default=None, help="Fashion-MNIST folder (default: the run's)")
    ex.add_argument("--format", default="auto", choices=("auto", "1", "2", "qonnx"),
                    help="1: layer chain (VGG-7; what the hardware flow reads), 2: integer "
                         "graph by tracing (any network of wrapkit's quantized modules); "
                         "auto (default): 1 for VGG-7, 2 otherwise; qonnx: an ONNX model "
                         "of standard operators (RUN_DIR or a .wkx file; docs/qonnx.md). "
                         "See docs/graph.md")
    ex.set_defaults(func=_run_export)
    return ex


def register_infer(subparsers):
    """Add ``wrapkit infer``."""
    inf = subparsers.add_parser(
        "infer", help="run an exported network with the integer-only engine",
        description="Classify test images with the pure-numpy integer engine (wrap-around "
                    "accumulators, cyclic activation, fixed-point requantization) and print "
                    "accuracy and per-layer overflow rates.")
    inf.add_argument("model", metavar="FILE.wkx")
    inf.add_argument("--dataset", default=None, choices=("fashion-mnist", "digits"),
                     help="test set (default: the one recorded in the export)")
    inf.add_argument("--data-dir", default=None, help="Fashion-MNIST folder")
    inf.add_argument("--images", type=int, default=None, metavar="N",
                     help="use the first N test images (default: all)")
    inf.add_argument("--batch-size", type=int, default=100, metavar="B")
    inf.add_argument("--gemm", default="blas", choices=("blas", "int64"),
                     help="exact integer GEMM through float BLAS (default) or numpy int64")
    inf.add_argument("--requant", default="fixed", choices=("fixed", "float"),
                     help="fixed-point requantization (default) or the float reference")
    inf.add_argument("--stats", default=None, metavar="FILE.json",
                     help="write per-layer statistics (MACs, overflow, toggles) as JSON")
    inf.add_argument("--toggle-images", type=int, default=8, metavar="N",
                     help="images whose operand streams the toggle counts cover (default 8)")
    inf.set_defaults(func=_run_infer)
    return inf


def _run_export(args):
    from wrapkit.common.locking import exclusive_output
    from wrapkit.common.paths import check_output_file
    from wrapkit.ref.engine import Engine

    from .export import export_run

    if args.format == "qonnx":
        from wrapkit.interop.cli import export_qonnx
        return export_qonnx(args, export_run)
    run = Path(args.run)
    inputs = [run] + ([run / name for name in ("model.pt", "checkpoint.pt", "metrics.json")]
                      if run.is_dir() else [])
    check_output_file(args.out, "--out", inputs=inputs)
    t0 = time.perf_counter()
    print(f"export: loading {args.run}", flush=True)
    with exclusive_output(args.out, folder=False, what=f"--out {args.out}",
                          hint="wait for it to finish or choose another --out"):
        exp = export_run(args.run, args.out, dataset=args.dataset, data_dir=args.data_dir,
                         format=args.format)
    print(f"export: wrote {args.out} (schema {exp.header['schema']}, sha256 "
          f"{exp.sha256[:16]}..., {time.perf_counter() - t0:.1f} s)")
    if exp.header["schema"].endswith("/1"):
        _print_layers(Engine(exp))
    else:
        _print_graph(exp.graph)
    return 0


def _print_graph(graph):
    print(f"{'node':<26} {'kind':<18} {'inputs':<34} output")
    for name, t in graph.inputs.items():
        print(f"{name:<26} {'(input)':<18} {'':<34} {t.describe()}")
    for n in graph.nodes:
        mark = "  [float]" if not n.output.is_int else ""
        acc = n.attrs.get("acc")
        extra = f"  acc {acc.mode}{'' if acc.bits is None else f' {acc.bits}b'}" \
                f"{'' if acc.k is None else f' k={acc.k}'}" if acc is not None else ""
        print(f"{n.name:<26} {n.kind:<18} {', '.join(n.inputs):<34} "
              f"{n.output.describe()}{mark}{extra}")


def _print_layers(engine):
    print(f"{'#':>2} {'layer':<12} {'precision':<9} {'geometry':<34} {'MAC config':<22} "
          f"{'output'}")
    for layer in engine.layers:
        if layer.precision == "integer":
            cfg = layer.cfg.name
            out = (f"requant -> {layer.spec['output']['bits']}-bit codes"
                   if layer.out_kind == "requant" else "dequant -> float")
        else:
            cfg, out = "-", "float"
        print(f"{layer.index:>2} {layer.name:<12} {layer.precision:<9} {layer.describe():<34} "
              f"{cfg:<22} {out}")


def _run_infer(args):
    import numpy as np

    from wrapkit.common.datasets import load_images
    from wrapkit.ref.engine import Engine
    from wrapkit.common.files import atomic_write_json
    from wrapkit.ref.wkx import read_export

    check_flag_count("--images", args.images)
    check_flag_count("--batch-size", args.batch_size)
    check_flag_count("--toggle-images", args.toggle_images, 0)
    if args.stats:
        from wrapkit.common.paths import check_output_file
        check_output_file(args.stats, "--stats", inputs=(args.model,))

    from wrapkit.ref.graph import read_graph

    graph_exp = read_graph(args.model)
    if graph_exp.version == 2:
        return _infer_graph(args, graph_exp)
    exp = read_export(args.model)
    engine = Engine(exp, gemm=args.gemm, requant=args.requant)
    dataset = args.dataset or exp.header["input"].get("dataset")
    if dataset is None:
        raise UserError(f"{args.model} records no dataset; pass --dataset")
    images = load_images(dataset, "test", args.data_dir).first(args.images)
    print(f"infer: {args.model} on {len(images)} {dataset} test images "
          f"(gemm {args.gemm}, requant {args.requant})", flush=True)
    stats = engine.new_stats(args.toggle_images)
    from tqdm import tqdm

    bar = tqdm(total=len(images), desc="infer", unit="img", leave=False, mininterval=0.5,
               disable=None)  # None: no bar when stderr is not a terminal

    def progress(done, total):
        bar.update(done - bar.n)

    t0 = time.perf_counter()
    logits = engine.run(images.pixels, batch_size=args.batch_size, stats=stats,
                        progress=progress)
    wall = time.perf_counter() - t0
    bar.close()
    pred = logits.argmax(1)
    accuracy = float(np.mean(pred == images.labels))
    print(f"accuracy {accuracy:.4f} ({int(np.sum(pred == images.labels))}/{len(images)}), "
          f"{len(images) / wall:,.0f} images/s")
    rows = [s.to_dict() for s in stats.layers.values()]
    print(f"{'#':>2} {'layer':<12} {'MAC config':<22} {'MACs/image':>11} {'overflow':>9} "
          f"{'folded':>7} {'a toggles/bit':>13} {'w toggles/bit':>13}")
    for r in rows:
        tog = r["toggles"]
        fold = "-" if r["cyclic_fold_rate"] is None else f"{r['cyclic_fold_rate']:.4f}"
        print(f"{r['index']:>2} {r['name']:<12} {_cfg_name(r['mac']):<22} "
              f"{r['macs_per_image']:>11,} {r['overflow_rate']:>9.4f} {fold:>7} "
              f"{tog['a_mean'] if tog else float('nan'):>13.3f} "
              f"{tog['w_mean'] if tog else float('nan'):>13.3f}")
    _print_mac_nodes(graph_exp.graph)
    if args.stats:
        doc = {"model": str(args.model), "export_sha256": exp.sha256, "dataset": dataset,
               "images": len(images), "accuracy": accuracy, "gemm": args.gemm,
               "requant": args.requant,
               "stream_order": "output-stationary single MAC: output positions (image, y, x) "
                               "outermost, output channels next, fan-in (c_in, ky, kx) "
                               "innermost; toggles count consecutive operations, dot-product "
                               "boundaries included",
               "layers": rows}
        try:
            atomic_write_json(args.stats, doc)
        except OSError as exc:
            raise UserError(f"cannot write --stats {args.stats}: {exc.strerror or exc}") from None
        print(f"infer: per-layer statistics -> {args.stats}")
    return 0


def _infer_graph(args, exp):
    """``wrapkit infer`` of a version-2 (graph) file: the graph engine, accuracy, nodes."""
    import numpy as np

    from wrapkit.common.datasets import load_images
    from wrapkit.ref.graph import GraphEngine

    if args.requant != "fixed":
        raise UserError("--requant float (the float reference requantization) applies to "
                        f"layer-chain (version 1) files; {args.model} is an integer graph "
                        "(version 2), whose requantization is fixed-point by definition")
    spec = exp.header.get("input")
    if spec is None:
        raise UserError(f"{args.model} is a graph without an image input; `wrapkit infer` "
                        "classifies images")
    dataset = args.dataset or spec.get("dataset")
    if dataset is None:
        raise UserError(f"{args.model} records no dataset; pass --dataset")
    images = load_images(dataset, "test", args.data_dir).first(args.images)
    want = tuple(spec["shape"])
    if images.pixels.shape[1:] != want:
        got = "×".join(map(str, images.pixels.shape[1:]))
        raise UserError(f"images are {got}, but {args.model} expects "
                        f"{'×'.join(map(str, want))} (C×H×W); use the dataset it was "
                        "trained on")
    print(f"infer: {args.model} (integer graph, {len(exp.graph.nodes)} nodes) on "
          f"{len(images)} {dataset} test images (gemm {args.gemm})", flush=True)
    engine = GraphEngine(exp.graph, gemm=args.gemm)
    t0 = time.perf_counter()
    out = engine.run(images.pixels, batch_size=args.batch_size)
    wall = time.perf_counter() - t0
    pred = out[exp.graph.outputs[0]].argmax(1)
    accuracy = float(np.mean(pred == images.labels))
    print(f"accuracy {accuracy:.4f} ({int(np.sum(pred == images.labels))}/{len(images)}), "
          f"{len(images) / wall:,.0f} images/s")
    _print_graph(exp.graph)
    _print_mac_nodes(exp.graph)
    if args.stats:
        _graph_stats(args, exp, engine, images, dataset, accuracy)
    return 0


def _graph_stats(args, exp, engine, images, dataset, accuracy):
    """``--stats`` of a graph file: per MAC node overflow, folds, toggles (a second pass)."""
    from wrapkit.common.files import atomic_write_json
    from wrapkit.ref.graph.node_stats import GraphNodeStats

    stats = GraphNodeStats(exp.graph, args.toggle_images)
    for start in range(0, len(images), args.batch_size):
        feeds = engine.check_inputs(images.pixels[start:start + args.batch_size])
        stats.add({**feeds, **engine.run_batch(feeds, keep=stats.keep)})
    rows = stats.to_dicts()
    print(f"{'node':<16} {'kind':<7} {'MAC config':<22} {'MACs/image':>11} {'overflow':>9} "
          f"{'folded':>7} {'a toggles/bit':>13} {'w toggles/bit':>13}")
    for r in rows:
        tog = r["toggles"]
        ov = "-" if r["overflow_rate"] is None else f"{r['overflow_rate']:.4f}"
        fold = "-" if r["cyclic_fold_rate"] is None else f"{r['cyclic_fold_rate']:.4f}"
        print(f"{r['name']:<16} {r['kind']:<7} "
              f"{_cfg_name(r['mac']) if r['mac'] else '(no MAC)':<22} "
              f"{r['macs_per_image']:>11,} {ov:>9} {fold:>7} "
              f"{tog['a_mean'] if tog else float('nan'):>13.3f} "
              f"{tog['w_mean'] if tog else float('nan'):>13.3f}")
    doc = {"model": str(args.model), "export_sha256": exp.sha256, "dataset": dataset,
           "images": len(images), "accuracy": accuracy, "gemm": args.gemm,
           "stream_order": "one MAC per node: output positions outermost, output channels "
                           "next, fan-in innermost (wrapkit.ref.graph.node_streams); toggles "
                           "count consecutive operations, dot-product boundaries included",
           "nodes": rows}
    try:
        atomic_write_json(args.stats, doc)
    except OSError as exc:
        raise UserError(f"cannot write --stats {args.stats}: {exc.strerror or exc}") from None
    print(f"infer: per-node statistics -> {args.stats}")


def _print_mac_nodes(graph):
    from wrapkit.ref.graph.node_streams import mac_node_names

    names = mac_node_names(graph)
    if names:
        print(f"MAC nodes (`wrapkit cosim layer FILE --node NAME`): {', '.join(names)}")


def _cfg_name(mac):
    from wrapkit.ref.datapath import MacConfig

    return MacConfig.from_dict(mac).name
