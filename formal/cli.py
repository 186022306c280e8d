"""``wrapkit prove``: formal proofs that generated RTL computes the reference semantics.

::

    wrapkit prove rtl/mac_a8s_wu8_acc8_k2.json            # BMC + k-induction
    wrapkit prove out/cyclic_acc16_k3.json --json proof.json
    wrapkit prove rtl/*.json --depth 6 --keep proofs/     # keep models, miters, traces

Exit 0 when every design is proved, 1 when any proof fails (the counterexample is printed)
or does not finish, 2 for bad input (not a manifest, a design kind without a proof, a
missing tool).
"""

from pathlib import Path

from wrapkit.common.errors import FlagError, UserError

from .mac_proof import DEFAULT_DEPTH

__all__ = ["register_prove"]


def _check_json_path(path):
    path = Path(path)
    if path.is_dir():
        raise FlagError("--json", f"{path} is a folder; give a file name such as "
                                  f"{path / 'proofs.json'}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise FlagError("--json", f"folder {parent} does not exist; create it first")
    return path


def _run(args):
    from wrapkit.common.files import atomic_write_json
    from wrapkit.hw.manifest import load_manifest

    from .prove import PROVABLE_DESIGNS, prove_manifest
    from .results import report_lines

    if args.depth < 1:
        raise FlagError("--depth", f"must be an integer >= 1, got {args.depth}")
    if args.timeout is not None and not args.timeout > 0:
        raise FlagError("--timeout", f"must be a positive number of seconds, got {args.timeout}")
    json_path = _check_json_path(args.json) if args.json else None
    # Read every manifest before the first proof, so bad input never costs a proof's time.
    manifests = []
    for path in args.manifests:
        manifest = load_manifest(path)
        if manifest["design"] not in PROVABLE_DESIGNS:
            raise UserError(f"{path}: no proof for {manifest['design']!r} designs; "
                            f"`wrapkit prove` proves {' and '.join(PROVABLE_DESIGNS)} designs")
        manifests.append((path, manifest))
    keep = Path(args.keep) if args.keep else None
    if keep is not None and keep.exists() and not keep.is_dir():
        raise FlagError("--keep", f"{keep} is a file; give a folder")

    results = []
    for path, manifest in manifests:
        workdir = None if keep is None else keep / manifest["top"]
        if args.check_model:
            _check_model(manifest, keep)
        result = prove_manifest(path, depth=args.depth, timeout=args.timeout, keep=workdir)
        results.append(result)
        print("\n".join(report_lines(result)), flush=True)
    if json_path is not None:
        atomic_write_json(json_path, [r.to_dict() for r in results])
    bad = [r.design for r in results if not r.proved]
    if len(results) > 1:
        print(f"prove: {len(results) - len(bad)}/{len(results)} designs proved"
              + (f"; not proved: {', '.join(bad)}" if bad else ""))
    return 1 if bad else 0


def _check_model(manifest, keep):
    """Simulate the design's behavioural model against wrapkit.ref before trusting it."""
    import tempfile

    from wrapkit.hw.manifest import mac_config

    from .model_check import ModelMismatch, check_cyclic_model, check_mac_model

    with tempfile.TemporaryDirectory(prefix="wrapkit-model-") as tmp:
        workdir = Path(tmp) if keep is None else keep / manifest["top"] / "model_check"
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            if manifest["design"] == "cyclic":
                cfg = manifest["config"]
                n = check_cyclic_model(cfg["acc_bits"], cfg["k"], workdir)
                what = f"{n} inputs"
            else:
                n = check_mac_model(mac_config(manifest), manifest["latency"], workdir)
                what = f"{n} random operations"
        except ModelMismatch as exc:
            raise UserError(f"the behavioural model disagrees with wrapkit.ref ({exc}); "
                            f"this is a bug in wrapkit.formal.models, please report it") \
                from None
    print(f"{manifest['top']}: model agrees with wrapkit.ref on {what} (Icarus)")


def register_prove(subparsers):
    """Add ``wrapkit prove`` to the top-level parser."""
    p = subparsers.add_parser(
        "prove", help="formally prove generated RTL against the reference semantics "
                      "(Yosys, yosys-smtbmc, z3)",
        description="Prove that a generated design computes wrapkit.ref's semantics for "
                    "every input: cyclic units by SAT equivalence with the formula, MACs by "
                    "bounded model checking plus k-induction against a behavioural model "
                    "(acc and y on every cycle of every input sequence). A failed proof "
                    "prints its counterexample and exits 1. See docs/verification.md.")
    p.add_argument("manifests", nargs="+", metavar="MANIFEST",
                   help="design manifest(s) rtl/<name>.json written by `wrapkit rtl`")
    p.add_argument("--depth", type=int, default=DEFAULT_DEPTH, metavar="N",
                   help=f"MAC proofs: cycles for BMC and the induction step "
                        f"(default {DEFAULT_DEPTH})")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="seconds allowed for each tool run (default: no limit)")
    p.add_argument("--json", metavar="FILE",
                   help="write the results (design, property, method, depth, status, "
                        "seconds, counterexample) as JSON")
    p.add_argument("--keep", metavar="DIR",
                   help="keep each proof's model, miter, scripts, logs and traces in "
                        "DIR/<design>/")
    p.add_argument("--check-model", action="store_true",
                   help="first simulate the behavioural model against wrapkit.ref with "
                        "Icarus (every input of a cyclic unit up to 16 bits; random MAC "
                        "operations with resets)")
    p.set_defaults(func=_run)
    return p
