"""Deliberately broken copies of generated designs, to show that a proof can fail.

A proof that never fails proves nothing about the prover. These mutations edit the
generated Verilog text the way a plausible bug would, write the copy and a manifest whose
``verilog_sha256`` names the edited file into another folder, and leave the original alone:

* ``threshold_off_by_one`` — the cyclic unit folds back from ``m > T + 1`` instead of
  ``m > T`` (standalone cyclic units and MACs with a cyclic output);
* ``saturating_accumulator`` — the MAC's accumulator clamps at its largest value instead of
  wrapping around (the textbook "safe" accumulator that WrapNet deliberately avoids).

Each returns the new manifest's path; ``wrapkit prove`` on it must report a counterexample
(``tests/test_formal.py``, ``benchmarks/formal_sweep.py``).
"""

import hashlib
import re
from pathlib import Path

from wrapkit.common.files import atomic_write_json, atomic_write_text
from wrapkit.hw.manifest import load_manifest, verilog_path

__all__ = ["MUTATIONS", "write_mutant"]

_THRESHOLD = re.compile(r"\$signed\(m\) > \$signed\((\d+)'h([0-9a-f]+)\)")
_ADDER = re.compile(r"assign (\\\$\d+ ) = \$signed\((\\\$\d+ )\) \+ \$signed\((\\\$\d+ )\);")


def _threshold_off_by_one(text, manifest):
    def bump(match):
        width, value = int(match.group(1)), int(match.group(2), 16)
        return f"$signed(m) > $signed({width}'h{value + 1:x})"
    return _THRESHOLD.subn(bump, text)


def _saturating_accumulator(text, manifest):
    if manifest["design"] != "mac":
        return text, 0
    max_value = (1 << (manifest["config"]["acc_bits"] - 1)) - 1
    width = manifest["config"]["acc_bits"] + 1            # the adder's sum is one bit wider

    def clamp(match):
        total, left, right = match.groups()
        exact = f"$signed({left}) + $signed({right})"
        return (f"assign {total} = ({exact} > {width}'sd{max_value}) ? {width}'sd{max_value} "
                f": {exact};")
    return _ADDER.subn(clamp, text)


#: Mutation name -> function(verilog_text, manifest) -> (new_text, edits made).
MUTATIONS = {
    "threshold_off_by_one": _threshold_off_by_one,
    "saturating_accumulator": _saturating_accumulator,
}


def write_mutant(manifest_path, mutation, out_dir):
    """Write a broken copy of the design at ``manifest_path`` into ``out_dir``.

    Parameters
    ----------
    manifest_path : path
        A design manifest (validated, Verilog included).
    mutation : str
        A key of :data:`MUTATIONS`.
    out_dir : path
        Folder for the copy (not the design's own folder).

    Returns
    -------
    pathlib.Path
        The mutant's manifest; its Verilog lies beside it under the original name.

    Raises
    ------
    ValueError
        Unknown mutation, the same folder as the original, or the design does not contain
        exactly one place the mutation applies to.
    """
    if mutation not in MUTATIONS:
        raise ValueError(f"mutation must be one of {', '.join(MUTATIONS)}, got {mutation!r}")
    manifest_path = Path(manifest_path)
    out_dir = Path(out_dir)
    if out_dir.resolve() == manifest_path.parent.resolve():
        raise ValueError("out_dir must differ from the design's folder (the original stays)")
    manifest = load_manifest(manifest_path)
    text = verilog_path(manifest_path, manifest).read_text(encoding="utf-8")
    broken, edits = MUTATIONS[mutation](text, manifest)
    if edits != 1:
        raise ValueError(f"{mutation} applies to {edits} places of {manifest['verilog']}, "
                         f"expected exactly 1")
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / manifest["verilog"], broken)
    manifest = {**manifest,
                "verilog_sha256": hashlib.sha256(broken.encode("utf-8")).hexdigest()}
    return atomic_write_json(out_dir / manifest_path.name, manifest)
