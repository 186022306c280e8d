"""The designs the testbenches simulate: committed MAC manifests and generated designs.

* :func:`resolve_mac` turns a paper configuration name (``8x8_acc8_k2``) or a manifest path
  into a validated MAC manifest path (paper names look in ``rtl/``, the committed designs).
* :func:`generated_design` generates a design into the build folder once per machine, keyed
  by its configuration and :func:`generator_fingerprint` (the generator's sources), so it is
  regenerated when hw/ or ref/ changes; parallel workers wait for one another.
* :func:`mac_design_for` is the MAC of a configuration, generated that way.
* :func:`cyclic_bank` generates ``CyclicActivation`` designs for a sweep of widths and slopes
  with the hw generator (:func:`wrapkit.hw.verilog.cyclic_design`) and wraps them in one
  Verilog top so a single compile covers the whole sweep. None of these are committed.
"""

import json
from pathlib import Path

import wrapkit
from wrapkit.common.buildcache import PACKAGE_DIR, build_once, hash_parts, source_fingerprint
from wrapkit.common.errors import UserError
from wrapkit.common.files import atomic_write_json, atomic_write_text
from wrapkit.ref.configs import PAPER_MACS

from .runner import build_root

__all__ = ["BANK_SCHEMA", "cyclic_bank", "default_rtl_dir", "generated_design",
           "generator_fingerprint", "mac_design_for", "resolve_mac"]

#: Schema tag of a cyclic bank's JSON (the per-unit manifests are ``wrapkit.rtl/1``).
BANK_SCHEMA = "wrapkit.sim.cyclic_bank/1"

def default_rtl_dir():
    """The committed designs: the ``rtl/`` folder of the wrapkit checkout."""
    return PACKAGE_DIR / "rtl"


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


def generator_fingerprint():
    """Hash of what generated designs depend on: wrapkit's hw/ and ref/ sources and the
    Amaranth version."""
    import amaranth

    return source_fingerprint("hw", "ref", extra=(amaranth.__version__,))


def generated_design(name, key, generate, *, root=None):
    """Manifest path ``<folder>/<name>.json`` of design ``name``, generated once by
    ``generate(folder)``.

    Parameters
    ----------
    name : str
        Design name; the folder is ``<build root>/designs/<name>-<hash>``.
    key : JSON-able
        What the design depends on besides the generator's sources (its configuration).
    generate : callable
        ``generate(folder)``; runs once per key and generator version and writes
        ``<name>.json`` last (:func:`wrapkit.hw.verilog.write_designs` writes the manifest
        after the Verilog), so its presence marks a complete folder.
    root : path-like, optional
        Root of the build folders (default :func:`wrapkit.sim.runner.build_root`).
    """
    marker = f"{name}.json"
    digest = hash_parts(json.dumps(key, sort_keys=True), generator_fingerprint(), length=16)
    base = Path(root).resolve() if root is not None else build_root()
    return build_once(base / "designs" / f"{name}-{digest}", marker, generate) / marker


def mac_design_for(cfg, root=None):
    """Manifest path of the MAC for ``cfg`` (a MacConfig), generated once into the build
    folder."""
    def generate(folder):
        from wrapkit.hw.verilog import mac_design, write_designs

        write_designs([mac_design(cfg)], folder)  # the manifest is written last

    return generated_design(cfg.name, cfg.to_dict(), generate, root=root)


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

    def generate(folder):
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
        atomic_write_json(folder / "cyclic_bank.json", {
            "schema": BANK_SCHEMA, "top": top, "generator": f"wrapkit {wrapkit.__version__}",
            "verilog": [f"{top}.v"] + [d.manifest["verilog"] for d in designs],
            "units": units,
        })

    return generated_design("cyclic_bank", [widths, slopes], generate, root=root)
