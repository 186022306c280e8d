"""``wrapkit sweep SWEEP.toml``: a co-design sweep on Ray (docs/sweep.md).

::

    wrapkit sweep examples/sweeps/digits_small.toml --out out/sweep      # local Ray, all CPUs
    wrapkit sweep SWEEP.toml --workers 1                                  # one point at a time
    wrapkit sweep SWEEP.toml --address 10.0.0.5:6379                      # an existing cluster
    wrapkit sweep SWEEP.toml --check                                      # list the points only

Exit status: 0 every point finished; 1 some points failed (recorded in the table with their
error); 2 a bad spec, flag or Ray address (one line naming the key and what is allowed).
"""

from pathlib import Path

from wrapkit.common.flags import positive_int

__all__ = ["register_sweep", "run_cli"]


def register_sweep(subparsers):
    """Add ``wrapkit sweep``."""
    p = subparsers.add_parser(
        "sweep", help="co-design sweep on Ray: accuracy vs energy and area over a TOML space",
        description="Train, export and measure every point of a TOML space of WrapNet "
                    "settings (accumulator bits, k, p / activation bits, weights, method, "
                    "array rows x cols, model) as Ray tasks, fine-tuned from shared parents; "
                    "write a results table, Pareto fronts and an HTML report. A rerun skips "
                    "finished points.")
    p.add_argument("spec", metavar="SWEEP.toml", help="the sweep spec (docs/sweep.md)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="results folder (default out/sweep/<the spec's name or file stem>)")
    p.add_argument("--address", default=None, metavar="ADDR",
                   help="join an existing Ray cluster (HOST:PORT, ray://HOST:PORT or auto) "
                        "instead of starting Ray on this machine")
    p.add_argument("--workers", type=positive_int, default=None, metavar="N",
                   help="CPUs of the local Ray instance (default: all of this machine's)")
    p.add_argument("--check", action="store_true",
                   help="check the spec and list its points and runs, run nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_cli)
    return p


def run_cli(args):
    """Handler of ``wrapkit sweep``."""
    from .spec import load_spec

    spec = load_spec(args.spec)
    out = Path(args.out) if args.out else Path("out", "sweep",
                                               spec.sweep["name"] or Path(args.spec).stem)
    if args.check:
        for p in spec.points:
            print(f"{p.id}  " + " ".join(f"{k}={'none' if v is None else v}"
                                         for k, v in p.values.items()))
        print(f"{len(spec.points)} points, {len(spec.runs)} runs -> {out}")
        return 0
    from .runner import run_sweep

    rows = run_sweep(spec, out, address=args.address, workers=args.workers,
                     progress=not args.no_progress)
    return 1 if any(r["status"] == "failed" for r in rows) else 0
