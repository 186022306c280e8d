"""The designs the testbenches simulate: committed MAC manifests and generated cyclic banks.

* :func:`resolve_mac` turns a paper configuration name (``8x8_acc8_k2``) or a manifest path
  into a validated MAC manifest path (seed names look in ``rtl/``, the committed designs).
* :func:`cyclic_bank` generates ``CyclicActivation`` designs for a sweep of widths and slopes
  with the hw generator (:func:`wrapkit.hw.verilog.cyclic_design`) and wraps them in one
  Verilog top so a single compile covers the whole sweep. The bank lives in the build folder,
  keyed by a fingerprint of the generator's sources; it is not committed.
"""

import fcntl
import hashlib
import json
from pathlib import Path

import wrapkit
from wrapkit.ref.configs import PAPER_MACS
from wrapkit.common.errors import UserError
from wrapkit.common.files import atomic_write_json, atomic_write_text

from .runner import build_root

__all__ = ["BANK_SCHEMA", "cyclic_bank", "default_rtl_dir", "resolve_mac"]

#: Schema tag of a cyclic bank's JSON (the per-unit manifests are ``wrapkit.rtl/1``).
BANK_SCHEMA = "wrapkit.sim.cyclic_bank/1"

_PACKAGE_DIR = Path(wrapkit.__file__).resolve().parent


def default_rtl_dir():
    """The committed designs: the ``rtl/`` folder of the wrapkit checkout."""
    return _PACKAGE_DIR / "rtl"


def resolve_mac(config, rtl_dir=None):
    """Manifest path of a MAC design given a paper configuration name or a path to a manifest JSON.

    Parameters
    ----------
    config : str or path-like
        A paper configuration name (``ref.configs.PAPER_MACS``) or a ``.json`` manifest path.
    rtl_dir : path-like, optional
        Where paper designs are looked up (default :func:`default_rtl_dir`).

    Returns
    -------
    pathlib.Path
        The manifest, validated (schema, ports, Verilog checksum) and of design ``"mac"``.

    Raises
    ------
    UserError
        Unknown name, missing or invalid manifest; the message names the fix.
    """
    from wrapkit.hw.manifest import load_manifest

    config = str(config)
    if config in PAPER_MACS:
        folder = Path(rtl_dir) if rtl_dir is not None else default_rtl_dir()
        path = folder / f"{PAPER_MACS[config].name}.json"
        if not path.is_file():
            raise UserError(f"{path} not found; generate it with `wrapkit rtl mac --config "
                            f"{config} --out {folder}` (or `wrapkit rtl paper --out {folder}`)")
    elif config.endswith(".json") or Path(config).is_file():
        path = Path(config)
    else:
        raise UserError(f"unknown MAC configuration {config!r}; give one of "
                        f"{', '.join(PAPER_MACS)} or a path to a manifest .json")
    manifest = load_manifest(path)
    if manifest["design"] != "mac":
        raise UserError(f"{path} describes a {manifest['design']!r} design, not a MAC; "
                        "give a MAC manifest")
    return path.resolve()


def _generator_fingerprint():
    """Hash of what generated designs depend on: wrapkit's hw/ and ref/ sources, versions."""
    import amaranth

    h = hashlib.sha256(f"{wrapkit.__version__} {amaranth.__version__}".encode())
    for folder in ("hw", "ref"):
        for src in sorted((_PACKAGE_DIR / folder).glob("*.py")):
            h.update(src.name.encode() + b"\0" + src.read_bytes())
    return h.hexdigest()[:16]


def _check_sweep(name, values, lo):
    values = sorted(set(values))
    if not values:
        raise ValueError(f"{name} must not be empty")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"{name} must be integers >= {lo}, got {v!r}")
    return values


def _bank_verilog(top, units):
    ports, insts = [], []
    for u in units:
        ports += [f"  input  [{u['width'] - 1}:0] {u['m']}", f"  output [{u['width'] - 1}:0] {u['y']}"]
        insts.append(f"  {u['module']} {u['instance']} (.m({u['m']}), .y({u['y']}));")
    return (f"// {top}: {len(units)} CyclicActivation designs side by side, for exhaustive\n"
            f"// cosimulation in one compile. Written by wrapkit.sim.designs; not committed.\n"
            f"module {top} (\n" + ",\n".join(ports) + "\n);\n" + "\n".join(insts)
            + "\nendmodule\n")


def cyclic_bank(acc_bits=range(4, 11), ks=range(1, 5), root=None):
    """Generate (or reuse) a bank of ``CyclicActivation`` designs, one per (acc_bits, k).

    Parameters
    ----------
    acc_bits : iterable of int, each >= 2
    ks : iterable of int, each >= 1
    root : path-like, optional
        Root of the build folders (default :func:`wrapkit.sim.runner.build_root`).

    Returns
    -------
    pathlib.Path
        The bank's JSON: ``{"schema", "top", "verilog": [files], "units": [{"instance",
        "manifest", "module", "m", "y", "width"}]}``, with every file beside it.
    """
    widths = _check_sweep("acc_bits", acc_bits, 2)
    slopes = _check_sweep("ks", ks, 1)
    key = hashlib.sha256(json.dumps([widths, slopes, _generator_fingerprint()]).encode())
    base = Path(root).resolve() if root is not None else build_root()
    folder = base / "designs" / f"cyclic_bank-{key.hexdigest()[:16]}"
    bank_json = folder / "cyclic_bank.json"
    if bank_json.is_file():
        return bank_json
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.with_name(folder.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel workers: one generates, the others wait
        if bank_json.is_file():
            return bank_json
        from wrapkit.hw.verilog import cyclic_design, write_designs

        designs = [cyclic_design(b, k) for b in widths for k in slopes]
        write_designs(designs, folder)
        units = []
        for d in designs:
            suffix = d.name.removeprefix("cyclic_")
            width = d.manifest["config"]["acc_bits"]
            units.append({"instance": f"u_{suffix}", "manifest": f"{d.name}.json",
                          "module": d.manifest["top"], "m": f"m_{suffix}", "y": f"y_{suffix}",
                          "width": width})
        top = "cyclic_bank"
        atomic_write_text(folder / f"{top}.v", _bank_verilog(top, units))
        # The bank JSON is written last: its presence marks a complete bank.
        atomic_write_json(bank_json, {
            "schema": BANK_SCHEMA, "top": top, "generator": f"wrapkit {wrapkit.__version__}",
            "verilog": [f"{top}.v"] + [d.manifest["verilog"] for d in designs],
            "units": units,
        })
    return bank_json
