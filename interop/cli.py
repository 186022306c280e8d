"""``wrapkit export --format qonnx``, ``wrapkit onnx-check`` and ``wrapkit import``::

    wrapkit export RUN_DIR|MODEL.wkx --format qonnx -o model.onnx
    wrapkit onnx-check model.onnx MODEL.wkx [--images N] [--executor onnxruntime|qonnx]
                       [--from-pixels]
    wrapkit import brevitas.onnx -o model.wkx [--dataset digits --images N]

``onnx-check`` exits 1 when any integer differs (the report names the node, the element, the
engine's and the executor's value). Nothing here imports torch.
"""

import json
import time
from pathlib import Path

from wrapkit.common.errors import UserError, VerificationMismatch
from wrapkit.common.flags import check_flag_count

__all__ = ["export_qonnx", "register_import", "register_onnx_check", "write_onnx"]


def write_onnx(path, graph_export):
    """Write the ONNX model of a read ``.wkx`` (:class:`GraphExport`) atomically; returns it."""
    from wrapkit.common.files import atomic_write_bytes

    from .onnx_export import graph_to_onnx

    model = graph_to_onnx(graph_export.graph,
                          doc=f"wrapkit integer graph of {Path(graph_export.path).name} "
                              f"(sha256 {graph_export.sha256}); docs/qonnx.md")
    meta = {"wrapkit.source_sha256": graph_export.sha256,
            "wrapkit.input": json.dumps(graph_export.header.get("input"), sort_keys=True)}
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    atomic_write_bytes(path, model.SerializeToString())
    return model


def export_qonnx(args, export_run):
    """``wrapkit export --format qonnx``: a run folder (exported to ``.wkx`` first with
    ``export_run``, the torch exporter) or a ``.wkx`` file -> ``args.out`` (ONNX)."""
    import tempfile

    from wrapkit.common.paths import check_output_file
    from wrapkit.ref.graph import read_graph

    src = Path(args.run)
    check_output_file(args.out, "--out", inputs=[src])
    t0 = time.perf_counter()
    if src.is_file() and src.suffix == ".wkx":
        exp = read_graph(src)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            wkx = Path(tmp) / "model.wkx"
            export_run(args.run, wkx, dataset=args.dataset, data_dir=args.data_dir)
            exp = read_graph(wkx)
    model = write_onnx(args.out, exp)
    ops = sorted({n.op_type for n in model.graph.node})
    print(f"export: wrote {args.out} (ONNX opset {model.opset_import[0].version}, "
          f"{len(model.graph.node)} operators: {', '.join(ops)}; {len(exp.graph.nodes)} "
          f"wrapkit nodes, {time.perf_counter() - t0:.1f} s)")
    print(f"check it against the engine: wrapkit onnx-check {args.out} "
          f"{src if src.suffix == '.wkx' else 'MODEL.wkx'}")
    return 0


def register_onnx_check(subparsers):
    """Add ``wrapkit onnx-check``."""
    p = subparsers.add_parser(
        "onnx-check", help="run an exported ONNX model in onnxruntime or QONNX and compare "
                           "every integer node with the engine",
        description="Run MODEL.onnx (from `wrapkit export --format qonnx`) with an executor "
                    "wrapkit did not write and compare every integer node with wrapkit's "
                    "integer engine on the test set; exit 1 if any integer differs. See "
                    "docs/qonnx.md.")
    p.add_argument("onnx", metavar="MODEL.onnx")
    p.add_argument("wkx", metavar="MODEL.wkx", help="the export the model was written from")
    p.add_argument("--dataset", default=None, choices=("fashion-mnist", "digits"))
    p.add_argument("--data-dir", default=None, help="Fashion-MNIST folder")
    p.add_argument("--images", type=int, default=None, metavar="N",
                   help="the first N test images (default: all)")
    p.add_argument("--executor", default="onnxruntime", choices=("onnxruntime", "qonnx"))
    p.add_argument("--from-pixels", action="store_true",
                   help="run the whole model from pixels (default: feed the engine's first "
                        "codes, so the float stem's summation order cannot move a code)")
    p.set_defaults(func=_run_onnx_check)
    return p


def _read_onnx(path):
    import onnx

    try:
        return onnx.load(str(path))
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except Exception as exc:    # onnx raises DecodeError and friends for damaged files
        raise UserError(f"{path}: not an ONNX model ({type(exc).__name__}); export one with "
                        "`wrapkit export --format qonnx`") from None


def _images(exp, dataset, data_dir, count):
    from wrapkit.common.datasets import load_images

    dataset = dataset or (exp.header.get("input") or {}).get("dataset")
    if dataset is None:
        raise UserError(f"{exp.path} records no dataset; pass --dataset")
    return dataset, load_images(dataset, "test", data_dir).first(count)


def _run_onnx_check(args):
    from wrapkit.ref.graph import read_graph

    from .onnx_check import compare_with_engine

    check_flag_count("--images", args.images)
    model = _read_onnx(args.onnx)
    exp = read_graph(args.wkx)
    dataset, images = _images(exp, args.dataset, args.data_dir, args.images)
    t0 = time.perf_counter()
    report = compare_with_engine(exp.graph, images.pixels, model=model,
                                 feed_codes=not args.from_pixels, executor=args.executor)
    print(f"onnx-check: {args.onnx} against {args.wkx} on {len(images)} {dataset} test "
          f"images ({time.perf_counter() - t0:.1f} s)")
    print(report.describe())
    if report.mismatches:
        name = next(n for n, (_, d) in report.nodes.items() if d)
        idx, want, got = report.first[name]
        raise VerificationMismatch(f"{report.mismatches} integers differ; first: node {name} "
                                   f"element {idx}: engine {want}, {args.executor} {got}")
    return 0


def register_import(subparsers):
    """Add ``wrapkit import``."""
    p = subparsers.add_parser(
        "import", help="read a QONNX model exported by Brevitas into a .wkx integer graph",
        description="Convert a QONNX model (Brevitas export_qonnx of QuantConv2d/QuantLinear/"
                    "QuantReLU networks) into wrapkit's integer graph (.wkx version 2) and "
                    "run it in the integer engine against QONNX's own executor. See "
                    "docs/qonnx.md.")
    p.add_argument("onnx", metavar="MODEL.onnx")
    p.add_argument("-o", "--out", required=True, metavar="FILE.wkx")
    p.add_argument("--acc-bits", type=int, default=None, metavar="P",
                   help="give the MACs a P-bit wrapping accumulator (default: exact)")
    p.add_argument("--check-images", type=int, default=64, metavar="N",
                   help="random inputs to compare engine and QONNX executor on (default 64; "
                        "0: no check)")
    p.set_defaults(func=_run_import)
    return p


def _run_import(args):
    from wrapkit.common.paths import check_output_file
    from wrapkit.ref.graph import read_graph, write_graph

    from .qonnx_import import check_import, qonnx_to_graph

    check_flag_count("--check-images", args.check_images, 0)
    check_output_file(args.out, "--out", inputs=[args.onnx])
    model = _read_onnx(args.onnx)
    graph, info = qonnx_to_graph(model, acc_bits=args.acc_bits, source=args.onnx)
    write_graph(args.out, graph, source={"onnx": str(args.onnx), **info})
    exp = read_graph(args.out)
    print(f"import: wrote {args.out} ({len(exp.graph.nodes)} nodes)")
    print(exp.graph.describe())
    if args.check_images:
        result = check_import(model, exp.graph, images=args.check_images)
        print(result.describe())
        if result.mismatches:
            raise VerificationMismatch(result.describe().splitlines()[0])
    return 0
