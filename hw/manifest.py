"""The JSON manifest written beside each generated Verilog design (``rtl/<name>.json``).

Testbenches and the synthesis flow read widths, signedness, latency, clock/reset and the
hierarchy groups from here instead of repeating constants. This module imports no Amaranth,
so readers of the manifest stay light.

Schema ``wrapkit.rtl/1`` (keys in the order they are written)::

    schema           "wrapkit.rtl/1"
    generator        "wrapkit <version>"
    amaranth         Amaranth version that elaborated the design
    yosys            the Yosys build that wrote the Verilog
    design           "mac" | "cyclic" | "array" (hw/array: the layer datapath)
    top              top module name == file stem
    config           mac: MacConfig.to_dict(); cyclic: {"acc_bits", "k", "threshold"}
    latency          clock edges from inputs to outputs (mac 2, cyclic 0)
    clock            "clk", or null for combinational designs
    reset            {"port": "rst", "sync": true, "active": "high"}, or null
    ports            [{"name", "direction": "input"|"output", "width", "signed"}, ...]
    weight_encoding  (mac only) {"kind", "code_bits", "format", "value_range", "decode"}
    hierarchy        instance name -> area group; the top's own name -> "auxiliary"
    modules          instance name -> Verilog module name (escaped names such as
                     "mac_a8s_wu8_acc32.mult"; the top's own name maps to itself)
    verilog          "<name>.v" (relative to the manifest)
    verilog_sha256   sha256 of the Verilog file's bytes
"""

import hashlib
import json
from pathlib import Path

from wrapkit.ref.datapath import MacConfig, cyclic_threshold
from wrapkit.common.errors import UserError

__all__ = ["SCHEMA", "GROUPS", "load_manifest", "mac_config", "port", "verilog_path"]

SCHEMA = "wrapkit.rtl/1"

#: Area/energy groups of the paper's Fig. 2.4, by submodule instance name.
GROUPS = {"mult": "multiplier", "accum": "accumulator", "cyclic": "cyclic"}

_KEYS = ("schema", "generator", "amaranth", "yosys", "design", "top", "config", "latency",
         "clock", "reset", "ports", "hierarchy", "modules", "verilog", "verilog_sha256")
_DESIGNS = ("mac", "cyclic", "array")


def _fail(path, problem):
    raise UserError(f"RTL manifest {path}: {problem}; regenerate it with `wrapkit rtl` "
                    f"(`make rtl` for the paper designs)")


def _expected_ports(manifest):
    """(name, direction, width, signed) that the design's config implies, clock/reset first."""
    cfg = manifest["config"]
    ports = []
    if manifest["clock"] is not None:
        ports += [(manifest["clock"], "input", 1, False), (manifest["reset"]["port"], "input", 1,
                                                           False)]
    if manifest["design"] == "mac":
        c = mac_config(manifest)
        ports += [("a", "input", c.act_bits, bool(c.act_signed)),
                  ("w", "input", c.weight_code_bits, False),
                  ("en", "input", 1, False),
                  ("clr", "input", 1, False),
                  ("acc", "output", c.acc_bits, True)]
        if c.k is not None:
            ports.append(("y", "output", c.acc_bits, True))
    elif manifest["design"] == "array":
        from .array.config import ArrayConfig, array_ports
        ports += array_ports(ArrayConfig.from_dict(cfg))
    else:
        ports += [("m", "input", cfg["acc_bits"], True), ("y", "output", cfg["acc_bits"], True)]
    return ports


def load_manifest(path, *, check_verilog=True):
    """Read and validate ``rtl/<name>.json``.

    Parameters
    ----------
    path : str or Path
        The manifest file.
    check_verilog : bool
        Also check that the Verilog file beside it exists and matches ``verilog_sha256``.

    Returns
    -------
    dict
        The manifest as written (see the module docstring). The Verilog file is
        :func:`verilog_path` ``(path, manifest)``.

    Raises
    ------
    wrapkit.common.errors.UserError
        The file is missing, not JSON, of another schema, inconsistent with its own config,
        or its Verilog is missing or was edited. The message names the file and the problem.
    """
    path = Path(path)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        _fail(path, "file not found")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        _fail(path, f"unreadable ({exc})")
    if not isinstance(manifest, dict):
        _fail(path, "not a JSON object")
    if manifest.get("schema") != SCHEMA:
        _fail(path, f"schema is {manifest.get('schema')!r}, expected {SCHEMA!r}")
    missing = [k for k in _KEYS if k not in manifest]
    if missing:
        _fail(path, f"missing key(s) {', '.join(missing)}")
    if manifest["design"] not in _DESIGNS:
        _fail(path, f"design is {manifest['design']!r}, expected one of {', '.join(_DESIGNS)}")
    if manifest["verilog"] != f"{manifest['top']}.v":
        _fail(path, f"verilog is {manifest['verilog']!r}, expected {manifest['top']!r} + '.v'")
    if not isinstance(manifest["latency"], int) or manifest["latency"] < 0:
        _fail(path, f"latency must be a non-negative integer, got {manifest['latency']!r}")
    if manifest["design"] == "mac":
        if "weight_encoding" not in manifest:
            _fail(path, "missing key(s) weight_encoding")
        try:
            cfg = mac_config(manifest)
        except (KeyError, TypeError, ValueError) as exc:
            _fail(path, f"invalid config ({exc})")
        if cfg.to_dict() != manifest["config"]:
            _fail(path, f"config {manifest['config']} disagrees with the derived "
                        f"{cfg.to_dict()}")
    elif manifest["design"] == "array":
        from .array.config import ArrayConfig
        try:
            acfg = ArrayConfig.from_dict(manifest["config"])
        except (KeyError, TypeError, ValueError) as exc:
            _fail(path, f"invalid config ({exc})")
        if acfg.to_dict() != manifest["config"]:
            _fail(path, f"config {manifest['config']} disagrees with the derived "
                        f"{acfg.to_dict()}")
        from .array.config import array_hierarchy
        if manifest["hierarchy"] != array_hierarchy(acfg, manifest["top"]):
            _fail(path, f"hierarchy ({len(manifest['hierarchy'])} instances) disagrees with "
                        f"the config ({acfg.rows}x{acfg.cols} PEs)")
    else:
        cfg = manifest["config"]
        try:
            threshold = cyclic_threshold(cfg["acc_bits"], cfg["k"])
        except (KeyError, TypeError, ValueError) as exc:
            _fail(path, f"invalid config ({exc})")
        if cfg.get("threshold") != threshold:
            _fail(path, f"config threshold {cfg.get('threshold')!r} disagrees with the "
                        f"derived {threshold}")
    try:
        got = [(p["name"], p["direction"], p["width"], p["signed"]) for p in manifest["ports"]]
        want = _expected_ports(manifest)
    except (KeyError, TypeError) as exc:
        _fail(path, f"malformed ports or config ({exc!r})")
    if got != want:
        _fail(path, f"ports {got} disagree with the config, which implies {want}")
    if check_verilog:
        vpath = verilog_path(path, manifest)
        try:
            digest = hashlib.sha256(vpath.read_bytes()).hexdigest()
        except OSError:
            _fail(path, f"Verilog file {vpath} not found")
        if digest != manifest["verilog_sha256"]:
            _fail(path, f"{vpath.name} does not match verilog_sha256 (edited by hand?)")
    return manifest


def verilog_path(manifest_path, manifest):
    """The Verilog file a manifest describes (it lies beside the manifest)."""
    return Path(manifest_path).parent / manifest["verilog"]


def mac_config(manifest):
    """The :class:`~wrapkit.ref.MacConfig` of a ``"mac"`` manifest."""
    if manifest["design"] != "mac":
        raise ValueError(f"design must be 'mac' to have a MacConfig, got {manifest['design']!r}")
    return MacConfig.from_dict(manifest["config"])


def port(manifest, name):
    """The port entry ``{"name", "direction", "width", "signed"}`` called ``name``."""
    for p in manifest["ports"]:
        if p["name"] == name:
            return p
    raise KeyError(f"{manifest['top']} has no port {name!r}; it has "
                   f"{', '.join(p['name'] for p in manifest['ports'])}")
