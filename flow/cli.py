"""``wrapkit flow`` and ``wrapkit demo`` (its quick preset): the end-to-end co-design run.

::

    wrapkit flow                          # quick preset -> out/quick/report.{md,html}
    wrapkit flow --full                   # the real training schedule -> out/full/
    wrapkit flow --preset tiny --name t   # digits, a tiny network: about a minute
    wrapkit flow --config my.toml --set widths=[8,16,32] --set simulators=icarus
    wrapkit flow --resume --name quick    # continue a failed or interrupted run
    wrapkit demo                          # the quick preset (what `make demo` runs)

Exit status: 0 the report was written; 1 a stage failed on a mismatch or an internal error;
2 bad settings, a missing tool or an environment problem, found before any stage ran or by a
stage (its name and cause are printed, finished stages are kept); 130 interrupted.
Nothing heavy is imported until the command runs. Method and settings: docs/flow.md.
"""

import json
import sys
from pathlib import Path

from wrapkit.common.errors import UserError
from wrapkit.common.paths import check_run_name

__all__ = ["add_flow_arguments", "register_demo", "register_flow", "resolve_config", "run_cli", "run_demo"]

_CONFIG_FLAGS = ("preset", "full", "config", "set", "dataset", "data_dir", "threads",
                 "simulators")


def _key_value(text):
    import argparse
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    return key.strip().replace("-", "_"), value.strip()


def add_flow_arguments(p, *, demo=False):
    """The flow's flags (shared by ``wrapkit flow`` and ``wrapkit demo``)."""
    if not demo:
        preset = p.add_mutually_exclusive_group()
        preset.add_argument("--preset", choices=("quick", "full", "tiny"), default=None,
                            help="settings preset (default quick, or the --config file's)")
        preset.add_argument("--full", action="store_true",
                            help="the real schedule (same as --preset full)")
        p.add_argument("--config", metavar="FILE",
                       help="TOML or JSON file of settings (docs/flow.md lists them)")
        p.add_argument("--set", action="append", type=_key_value, default=[],
                       metavar="KEY=VALUE",
                       help="override one setting, e.g. --set widths=[8,16,32] (repeatable)")
    p.add_argument("--name", default=None,
                   help="run folder name under --out-root (default: the preset's name)")
    p.add_argument("--out-root", default="out", metavar="DIR",
                   help="where run folders go (default: out)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in OUT_ROOT/NAME with its saved settings (training "
                        "continues from its last checkpoint)")
    p.add_argument("--dataset", choices=("fashion-mnist", "digits"), default=None,
                   help="override the preset's dataset")
    p.add_argument("--data-dir", default=None, help="Fashion-MNIST folder "
                                                    "(default /usr/share/datasets/fashion-mnist)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--simulators", default=None, metavar="LIST",
                   help="cosimulation simulators, e.g. icarus or icarus,verilator")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (stage lines "
                                                              "are still printed)")
    p.add_argument("--print-config", action="store_true",
                   help="print the effective settings as JSON and exit")


def register_flow(subparsers):
    """Add ``wrapkit flow``."""
    p = subparsers.add_parser(
        "flow", help="end to end: train, export, RTL, cosimulation, synthesis, report",
        description="Train WrapNet (8-bit accumulator) and its 32-bit-accumulator baseline, "
                    "export both, run the integer engine on the test set, generate the MAC "
                    "Verilog, cosimulate a real layer, synthesize both datapaths and write "
                    "OUT_ROOT/NAME/report.{md,html} and summary.json. Finished stages are "
                    "reused when their inputs are unchanged.")
    add_flow_arguments(p)
    p.set_defaults(func=run_cli)
    return p


def register_demo(subparsers):
    """Add ``wrapkit demo``, the flow's quick preset."""
    demo = subparsers.add_parser(
        "demo", help="the main job: `wrapkit flow` with the quick preset (about 10 min)",
        description="Train WrapNet and its 32-bit baseline on Fashion-MNIST, export, run the "
                    "integer engine, generate and cosimulate the MAC RTL, synthesize both "
                    "datapaths and write out/quick/report.{md,html} (same as `wrapkit flow "
                    "--preset quick`; see docs/flow.md).")
    add_flow_arguments(demo, demo=True)
    demo.set_defaults(func=run_demo)
    return demo


def _overrides(args):
    out = {}
    for key, value in getattr(args, "set", []) or []:
        from .config import parse_setting_value
        out[key] = parse_setting_value(value)
    for name in ("dataset", "data_dir", "threads", "simulators"):
        v = getattr(args, name, None)
        if v is not None:
            out[name] = v
    return out


def _given(args):
    flags = []
    for name in _CONFIG_FLAGS:
        v = getattr(args, name, None)
        if v not in (None, False, []):
            flags.append("--" + name.replace("_", "-"))
    return flags


def resolve_config(args, preset=None):
    """(FlowConfig, run folder) from the command line."""
    from .config import config_from, read_config_file
    from .runner import saved_config

    if args.resume:
        if args.name is None and preset is None and not getattr(args, "full", False) \
                and getattr(args, "preset", None) is None:
            raise UserError("--resume needs --name NAME (the run folder under --out-root)")
        given = [f for f in _given(args) if f not in ("--preset", "--full")]
        if given:
            raise UserError(f"--resume continues with the run's saved settings; drop "
                            f"{', '.join(given)} (or run without --resume: finished stages "
                            "whose inputs are unchanged are reused anyway)")
        name = args.name or preset or ("full" if args.full else args.preset)
        run_dir = Path(args.out_root) / name
        return saved_config(run_dir), run_dir
    file_settings = read_config_file(args.config) if getattr(args, "config", None) else None
    chosen = preset or ("full" if getattr(args, "full", False) else getattr(args, "preset", None))
    if chosen is None and not (file_settings or {}).get("preset"):
        chosen = "quick"
    cfg = config_from(chosen, file_settings, _overrides(args))
    return cfg, Path(args.out_root) / (args.name or cfg.preset)


def run_cli(args, preset=None):
    """Handler of ``wrapkit flow`` (and of ``wrapkit demo`` with ``preset="quick"``)."""
    from .runner import FlowStageError, run_flow

    if args.name is not None:
        check_run_name(args.name)
    cfg, run_dir = resolve_config(args, preset)
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    _preflight(cfg)
    try:
        summary = run_flow(cfg, run_dir, resume=args.resume, progress=not args.no_progress)
    except FlowStageError as exc:
        print(f"wrapkit flow: {exc}", file=sys.stderr)
        kept = ", ".join(exc.kept) if exc.kept else "none"
        print(f"wrapkit flow: finished stages kept in {run_dir}: {kept}; {exc.hint}",
              file=sys.stderr)
        return exc.status
    if summary is None:
        return 0
    report = run_dir / "report.md"
    print(f"wrapkit flow: report {report} (and {run_dir / 'report.html'}, "
          f"{run_dir / 'summary.json'})")
    failed = [k for k, v in summary["checks"].items() if not v]
    if failed:
        print(f"wrapkit flow: check(s) not met: {', '.join(failed)} (see the report)",
              file=sys.stderr)
    return 0


def _preflight(cfg):
    """Fail on a missing simulator or dataset before spending minutes on training."""
    from wrapkit.sim.tools import prepare_simulator

    for sim in cfg.simulators:
        prepare_simulator(sim)
    if cfg.cosim_layers:
        from .training import integer_layer_names

        names = integer_layer_names(cfg)
        for name in cfg.cosim_layers:
            if name not in names:
                raise UserError(f"bad flow setting: cosim_layers names {name!r}, which is not "
                                f"an integer layer of {cfg.model}; choose from "
                                f"{', '.join(names)}")
    if cfg.liberty is not None and not Path(cfg.liberty).is_file():
        # Caught here, not at the synth stage after training: --resume keeps the settings,
        # so a late failure would tell the user to resume into the same failure.
        raise UserError(f"bad flow setting: liberty file {cfg.liberty} not found; set liberty "
                        "to an existing .lib file")
    if cfg.dataset == "fashion-mnist":
        from wrapkit.common.datasets import load_images
        load_images(cfg.dataset, "test", cfg.data_dir)


def run_demo(args):
    """``wrapkit demo``: the flow's quick preset (what ``make demo`` runs)."""
    return run_cli(args, preset="quick")
