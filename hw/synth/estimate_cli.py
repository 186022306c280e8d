"""``wrapkit estimate``: energy per inference and array area of a trained network's export.

::

    wrapkit estimate model.wkx                       # markdown table on stdout
    wrapkit estimate model.wkx --json est.json --plot layers.png --array-macs 256

Nothing heavy is imported until the command runs. Method: :mod:`wrapkit.hw.synth.network`,
docs/estimation.md.
"""

import sys

from wrapkit.common.errors import FlagError, UserError
from wrapkit.common.flags import positive_int

__all__ = ["register_estimate"]


def register_estimate(subparsers):
    """Add ``wrapkit estimate`` to the top-level subparsers."""
    p = subparsers.add_parser(
        "estimate", help="energy per inference and array area of an exported network "
                         "(real operands, 8-bit vs 32-bit accumulator)",
        description="Run the integer engine on real test images, sample every integer "
                    "layer's MAC operand stream, simulate the synthesized MAC of the export's "
                    "datapath on it (and the same MAC with a 32-bit accumulator) and report "
                    "per-layer and per-inference energy, cycle time and the area of an N-MAC "
                    "array.")
    p.add_argument("model", metavar="MODEL.wkx", help="export written by `wrapkit export`")
    p.add_argument("--json", metavar="FILE", help="write the full result as JSON")
    p.add_argument("--plot", metavar="FILE.png", help="per-layer energy bar chart")
    p.add_argument("--markdown", metavar="FILE.md", help="also write the table as markdown")
    p.add_argument("--array-macs", type=positive_int, default=64, metavar="N",
                   help="MAC units in the array (default 64)")
    p.add_argument("--images", type=positive_int, default=16, metavar="N",
                   help="first test images whose operands are sampled (default 16)")
    p.add_argument("--dataset", default=None, choices=("fashion-mnist", "digits"),
                   help="test images (default: the export's dataset)")
    p.add_argument("--data-dir", default=None, help="Fashion-MNIST folder")
    p.add_argument("--act-bits", type=int, default=None, metavar="N",
                   help="datapath activation width (default: the widest layer input)")
    p.add_argument("--baseline-acc-bits", type=int, default=32, metavar="N",
                   help="accumulator of the baseline MAC, no cyclic activation (default 32); "
                        "0 for no baseline")
    p.add_argument("--rtl-dir", metavar="DIR",
                   help="keep the generated MAC designs here (default: a temporary folder)")
    p.add_argument("--ops", type=positive_int, default=1000, metavar="N",
                   help="operations simulated per layer and datapath (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="operand-sampling seed (default 0)")
    p.add_argument("--liberty", metavar="LIB",
                   help="standard-cell liberty (default: OSU018 from qflow-tech-osu018)")
    p.add_argument("--cell-models", metavar="V",
                   help="Verilog models of the library's cells (default: the .v beside the "
                        "liberty)")
    p.add_argument("--goal", choices=("delay", "area"), default="delay",
                   help="technology-mapping goal (default: delay)")
    p.add_argument("--zero-delay", action="store_true",
                   help="simulate without SDF delays (no glitches; faster)")
    p.add_argument("--no-cache", action="store_true",
                   help="recompute instead of reading $WRAPKIT_CACHE_DIR (default "
                        "~/.cache/wrapkit)")
    p.set_defaults(func=_run)
    return p


def _run(args):
    from wrapkit.common.paths import check_output_file

    from .network import estimate_export, estimate_markdown

    from wrapkit.common.flags import check_flag_count

    from .activity import GATE_LEVEL_LIMIT_WHY, MAX_GATE_LEVEL_OPS

    check_flag_count("--ops", args.ops, hi=MAX_GATE_LEVEL_OPS, why=GATE_LEVEL_LIMIT_WHY)
    for flag, path in (("--json", args.json), ("--plot", args.plot)):
        if path:
            check_output_file(path, flag, inputs=(args.model,))
    if args.baseline_acc_bits != 0 and not 2 <= args.baseline_acc_bits <= 62:
        raise FlagError("--baseline-acc-bits", "must be 0 (no baseline) or in [2, 62], got "
                                               f"{args.baseline_acc_bits}")
    result = estimate_export(
        args.model, images=args.images, dataset=args.dataset, data_dir=args.data_dir,
        n_ops=args.ops, seed=args.seed, array_macs=args.array_macs, act_bits=args.act_bits,
        baseline_acc_bits=args.baseline_acc_bits or None, rtl_dir=args.rtl_dir,
        liberty=args.liberty, cell_models=args.cell_models, goal=args.goal,
        timed=not args.zero_delay, use_cache=not args.no_cache,
        progress=lambda s: print(f"wrapkit estimate: {s}", file=sys.stderr, flush=True))
    md = estimate_markdown(result)
    from wrapkit.common.files import atomic_write_json, atomic_write_text

    try:
        if args.json:
            atomic_write_json(args.json, result)
        if args.markdown:
            atomic_write_text(args.markdown, md)
        if args.plot:
            from .estimate import write_layer_plot
            write_layer_plot(result, args.plot)
    except OSError as exc:
        raise UserError(f"cannot write an output file: {exc.strerror or exc} "
                        f"({exc.filename})") from None
    print(md, end="")
    return 0
