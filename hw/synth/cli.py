"""``wrapkit synth``: area, timing and stimulus-based energy of generated MAC designs.

::

    wrapkit synth rtl/mac_a8s_wu8_acc8_k2.json            # one design, random operands
    wrapkit synth rtl/<name>.json --stimulus ops.npz      # real operands (a, w, en, clr)
    wrapkit synth rtl/<name>.json --liberty my.lib --cell-models my_cells.v
    wrapkit synth paper                                    # the six-configuration table
    wrapkit synth rtl/array_<name>.json --model m.wkx     # a layer array on a trained layer
                                                          # -> docs/results/mac_synthesis.*

Nothing heavy is imported until a subcommand runs.
"""

import sys

from wrapkit.common.errors import UserError
from wrapkit.common.flags import positive_int

__all__ = ["register_synth"]


def _progress(stage):
    print(f"wrapkit synth: {stage}", file=sys.stderr, flush=True)


def _common(parser):
    parser.add_argument("--liberty", metavar="LIB",
                        help="standard-cell liberty (default: OSU018 from qflow-tech-osu018)")
    parser.add_argument("--cell-models", metavar="V",
                        help="Verilog models of the library's cells for the gate-level "
                             "simulation (default: the .v beside the liberty)")
    parser.add_argument("--ops", type=positive_int, default=2000, metavar="N",
                        help="random operations to simulate (default: 2000)")
    parser.add_argument("--seed", type=int, default=0, help="random-operand seed (default 0)")
    parser.add_argument("--goal", choices=("delay", "area"), default="delay",
                        help="technology-mapping goal (default: delay, like the paper's "
                             "maximum-frequency synthesis)")
    parser.add_argument("--zero-delay", action="store_true",
                        help="simulate without SDF delays (no glitches; faster)")
    parser.add_argument("--no-cache", action="store_true",
                        help="recompute instead of reading $WRAPKIT_CACHE_DIR "
                             "(default ~/.cache/wrapkit)")


def _run(args):
    from .evaluate import evaluate
    from .report import design_markdown

    from wrapkit.common.flags import check_flag_count

    from .activity import GATE_LEVEL_LIMIT_WHY, MAX_GATE_LEVEL_OPS

    check_flag_count("--ops", args.ops, hi=MAX_GATE_LEVEL_OPS, why=GATE_LEVEL_LIMIT_WHY)
    if args.json:
        from wrapkit.common.paths import check_output_file
        check_output_file(args.json, "--json", inputs=(args.design,))
    if args.design == "paper":
        return _run_paper(args)
    if _is_array(args.design):
        return _run_array(args)
    if args.model is not None:
        raise UserError("--model applies to layer arrays (design 'array'); a MAC takes "
                        "--stimulus FILE")
    stimulus = None
    if args.stimulus != "random":
        from wrapkit.ref.opstream import MacOpStream
        stimulus = MacOpStream.load(args.stimulus)
    report = evaluate(args.design, liberty=args.liberty, cell_models=args.cell_models,
                      stimulus=stimulus, n_ops=args.ops, seed=args.seed, goal=args.goal,
                      timed=not args.zero_delay, use_cache=not args.no_cache,
                      progress=_progress)
    if args.json:
        from wrapkit.common.files import atomic_write_json
        atomic_write_json(args.json, report)
    print(design_markdown(report))
    return 0


def _is_array(path):
    from wrapkit.hw.manifest import load_manifest
    return load_manifest(path)["design"] == "array"


def _run_array(args):
    from wrapkit.hw.array.config import ArrayConfig
    from wrapkit.hw.manifest import load_manifest

    from .array_synth import array_markdown, evaluate_array, sample_job

    if args.model is None:
        raise UserError("--model is missing: an array is simulated on a slice of a trained "
                        "layer; give the export, e.g. --model model.wkx [--layer N]")
    if args.stimulus != "random":
        raise UserError("--stimulus is for MAC designs; an array takes --model (and --layer)")
    cfg = ArrayConfig.from_dict(load_manifest(args.design)["config"])
    job = sample_job(cfg, args.model, args.layer)
    report = evaluate_array(args.design, job, liberty=args.liberty,
                            cell_models=args.cell_models, progress=_progress,
                            stimulus_name=job.name)
    if args.json:
        from wrapkit.common.files import atomic_write_json
        atomic_write_json(args.json, report)
    print(array_markdown(report))
    return 0


def _run_paper(args):
    from pathlib import Path

    from tqdm import tqdm

    from .evaluate import evaluate
    from .report import paper_table
    from .tools import DEFAULT_LIBERTY

    if args.stimulus != "random":
        raise UserError("`wrapkit synth paper` simulates random operands (one stream per "
                        "design); give --stimulus FILE for a single design instead")
    bar = tqdm(total=6, desc="paper designs", unit="design", file=sys.stderr)

    def one(path):
        report = evaluate(path, liberty=args.liberty, cell_models=args.cell_models,
                          n_ops=args.ops, seed=args.seed, goal=args.goal,
                          timed=not args.zero_delay, use_cache=not args.no_cache,
                          progress=lambda s: bar.set_postfix_str(s, refresh=True))
        bar.update(1)
        return report

    settings = {"ops": args.ops, "seed": args.seed, "goal": args.goal,
                "liberty": str(args.liberty or DEFAULT_LIBERTY),
                "timed": not args.zero_delay,
                "command": _paper_command(args)}
    try:
        _, md = paper_table(args.rtl_dir, args.out, evaluate_fn=one, settings=settings,
                           progress=lambda n: bar.set_description(n))
    finally:
        bar.close()
    print(md)
    for suffix in ("md", "json", "png"):
        print(Path(args.out) / f"mac_synthesis.{suffix}", file=sys.stderr)
    return 0


def _paper_command(args):
    """The command line that reproduces the table (non-default flags only)."""
    parts = ["wrapkit synth paper"]
    for flag, value, default in (("--ops", args.ops, 2000), ("--seed", args.seed, 0),
                                 ("--goal", args.goal, "delay"),
                                 ("--liberty", args.liberty, None),
                                 ("--rtl-dir", args.rtl_dir, "rtl")):
        if value != default:
            parts.append(f"{flag} {value}")
    if args.zero_delay:
        parts.append("--zero-delay")
    return " ".join(parts)


def register_synth(subparsers):
    """Add ``wrapkit synth`` to the top-level parser."""
    p = subparsers.add_parser(
        "synth", help="area, timing and stimulus-based energy of a MAC or layer-array design "
                      "(Yosys, OpenSTA, Icarus)",
        description="Synthesize a generated MAC (rtl/<name>.json) onto a standard-cell "
                    "library, time it, simulate the netlist with operands and report area, "
                    "cycle time and energy per group (multiplier, accumulator, cyclic, "
                    "auxiliary). A layer array (wrapkit rtl array) is reported per part (PEs, "
                    "drain lane, control, memories) on a slice of a trained layer (--model). "
                    "'paper' runs the paper's six configurations and writes the comparison "
                    "table.")
    p.add_argument("design", metavar="DESIGN",
                   help="a design manifest rtl/<name>.json, or 'paper' for the six-design table")
    p.add_argument("--stimulus", default="random", metavar="random|FILE",
                   help="operands: 'random' (default) or a .npz/.csv with a, w (weight "
                        "codes), en, clr")
    p.add_argument("--model", metavar="WKX",
                   help="layer arrays: the trained export whose layer slice is simulated")
    p.add_argument("--layer", type=int, metavar="N",
                   help="layer arrays: the engine layer index (default: the integer conv "
                        "layer with the most MACs that fits the buffers)")
    _common(p)
    p.add_argument("--json", metavar="FILE", help="also write the full report as JSON")
    p.add_argument("--rtl-dir", default="rtl", metavar="DIR",
                   help="with 'paper': folder of the paper designs (default: rtl)")
    p.add_argument("--out", default="docs/results", metavar="DIR",
                   help="with 'paper': folder for mac_synthesis.{md,json,png} "
                        "(default: docs/results)")
    p.set_defaults(func=_run)
    return p

