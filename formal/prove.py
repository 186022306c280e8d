"""Prove a generated design (its manifest) against the reference semantics.

``"cyclic"`` designs get a SAT equivalence proof (:mod:`.cyclic_proof`), ``"mac"`` designs BMC
plus k-induction (:mod:`.mac_proof`). Each proof runs in a scratch folder: a temporary one
that is removed afterwards, or ``keep`` (kept, with the model, miter, scripts, logs and any
counterexample trace, for reading or rerunning by hand).
"""

import tempfile
from pathlib import Path

from wrapkit.common.errors import UserError
from wrapkit.hw.manifest import load_manifest, verilog_path

from .cyclic_proof import prove_cyclic
from .mac_proof import DEFAULT_DEPTH, prove_mac

__all__ = ["PROVABLE_DESIGNS", "prove_manifest"]

#: Design kinds (the manifest's ``design``) that have a proof.
PROVABLE_DESIGNS = ("cyclic", "mac")


def prove_manifest(path, *, depth=DEFAULT_DEPTH, timeout=None, keep=None):
    """Prove the design described by the manifest at ``path``.

    Parameters
    ----------
    path : str or Path
        ``<name>.json`` written by ``wrapkit rtl``; the Verilog beside it must match its
        ``verilog_sha256``.
    depth : int, >= 1
        Cycles for a MAC's BMC and induction step (ignored for combinational designs).
    timeout : float, optional
        Seconds allowed for each tool run.
    keep : str or Path, optional
        Folder for the proof's files (created if needed); by default a temporary folder.

    Returns
    -------
    ProofResult

    Raises
    ------
    UserError
        Not a valid manifest, a design kind without a proof, a missing tool, or a tool that
        crashed.
    """
    path = Path(path)
    manifest = load_manifest(path)
    kind = manifest["design"]
    if kind not in PROVABLE_DESIGNS:
        raise UserError(f"{path}: no proof for {kind!r} designs; `wrapkit prove` proves "
                        f"{' and '.join(PROVABLE_DESIGNS)} designs (simulate arrays with "
                        f"`wrapkit cosim`)")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise UserError(f"depth must be an integer >= 1, got {depth!r}")
    vfile = verilog_path(path, manifest)
    if keep is not None:
        workdir = Path(keep)
        try:
            workdir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create the proof folder {workdir}: "
                            f"{exc.strerror or exc}; choose a writable folder") from None
        return _prove(kind, manifest, vfile, workdir, depth, timeout, str(path))
    with tempfile.TemporaryDirectory(prefix="wrapkit-prove-") as tmp:
        return _prove(kind, manifest, vfile, Path(tmp), depth, timeout, str(path))


def _prove(kind, manifest, vfile, workdir, depth, timeout, path_hint):
    if kind == "cyclic":
        return prove_cyclic(manifest, vfile, workdir, timeout=timeout)
    return prove_mac(manifest, vfile, workdir, depth=depth, timeout=timeout,
                     path_hint=path_hint)
