"""The JSON manifest written beside each generated Verilog design (``rtl/<name>.json``).

Testbenches and the synthesis flow read widths, signedness, latency, clock/reset and the
hierarchy groups from here instead of repeating constants. Generators build a manifest with
:func:`build_manifest`; readers validate one with :func:`load_manifest`, which checks the
kind-specific parts with :data:`~.manifest_kinds.VALIDATORS`. This module imports no
Amaranth, so readers of the manifest stay light.

Schema ``wrapkit.rtl/1`` (keys in the order they are written)::

    schema           "wrapkit.rtl/1"
    generator        "wrapkit <version>"
    amaranth         Amaranth version that elaborated the design
    yosys            the Yosys build that wrote the Verilog
    design           "mac" | "cyclic" | "array" (hw/array: the layer datapath) |
                     "packed_adder" (hw/packed_adder.py)
    top              top module name == file stem
    config           mac: MacConfig.to_dict(); cyclic: {"acc_bits", "k", "threshold"};
                     array: ArrayConfig.to_dict(); packed_adder: {"lane_bits", "lanes",
                     "word_bits", "mode_codes"}
    latency          clock edges from inputs to outputs (mac 2, cyclic 0)
    clock            "clk", or null for combinational designs
    reset            {"port": "rst", "sync": true, "active": "high"}, or null
    ports            [{"name", "direction": "input"|"output", "width", "signed"}, ...]
    weight_encoding  (mac, array) {"kind", "code_bits", "format", "value_range", "decode"}
    ...              blocks of one kind (array: interface, pipeline, cycle_model)
    hierarchy        instance name -> area group; the top's own name -> "auxiliary"
    modules          instance name -> Verilog module name (escaped names such as
                     "mac_a8s_wu8_acc32.mult"; the top's own name maps to itself)
    verilog          "<name>.v" (relative to the manifest)
    verilog_sha256   sha256 of the Verilog file's bytes
"""

import hashlib
import json
from pathlib import Path

from wrapkit import __version__
from wrapkit.common.errors import UserError
from wrapkit.ref.datapath import MacConfig

from .manifest_kinds import VALIDATORS, ManifestProblem

__all__ = ["SCHEMA", "GROUPS", "build_manifest", "load_manifest", "mac_config", "port",
           "verilog_path"]

SCHEMA = "wrapkit.rtl/1"

#: Area/energy groups of the paper's Fig. 2.4, by submodule instance name.
GROUPS = {"mult": "multiplier", "accum": "accumulator", "cyclic": "cyclic"}

_KEYS = ("schema", "generator", "amaranth", "yosys", "design", "top", "config", "latency",
         "clock", "reset", "ports", "hierarchy", "modules", "verilog", "verilog_sha256")


def _fail(path, problem):
    raise UserError(f"RTL manifest {path}: {problem}; regenerate it with `wrapkit rtl` "
                    f"(`make rtl` for the paper designs)")


def build_manifest(*, name, design, config, latency, clocked, ports, hierarchy, verilog_text,
                   yosys, extra=None):
    """The manifest of a generated design, keys in the order of the module docstring.

    Parameters
    ----------
    name : str
        Top module name and file stem.
    design : str
        The kind, a key of :data:`~.manifest_kinds.VALIDATORS`.
    config : dict
        The kind's configuration (what its validator derives the ports from).
    latency : int
    clocked : bool
        The design has Amaranth's ``sync`` domain (ports ``clk`` and ``rst``).
    ports : list of dict
        ``{"name", "direction", "width", "signed"}`` per port, clock and reset first
        (:func:`wrapkit.hw.verilog.component_ports`).
    hierarchy : dict
        Instance path below the top -> area group (e.g. ``{"mult": "multiplier"}``); the top
        itself is added as ``"auxiliary"``.
    verilog_text : str
        The Verilog the manifest describes (hashed into ``verilog_sha256``).
    yosys : str
        The Yosys build that wrote the Verilog.
    extra : dict, optional
        The kind's own blocks, placed after ``ports``.

    Returns
    -------
    dict
    """
    import amaranth  # already loaded by whoever elaborated the design

    if design not in VALIDATORS:
        raise ValueError(f"design must be one of {', '.join(VALIDATORS)}, got {design!r}")
    manifest = {
        "schema": SCHEMA,
        "generator": f"wrapkit {__version__}",
        "amaranth": amaranth.__version__,
        "yosys": yosys,
        "design": design,
        "top": name,
        "config": config,
        "latency": latency,
        "clock": "clk" if clocked else None,
        "reset": {"port": "rst", "sync": True, "active": "high"} if clocked else None,
        "ports": ports,
    }
    manifest.update(extra or {})
    manifest["hierarchy"] = {**hierarchy, name: "auxiliary"}
    manifest["modules"] = {**{inst: f"{name}.{inst}" for inst in hierarchy}, name: name}
    manifest["verilog"] = f"{name}.v"
    manifest["verilog_sha256"] = hashlib.sha256(verilog_text.encode("utf-8")).hexdigest()
    return manifest


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
    if manifest["design"] not in VALIDATORS:
        _fail(path, f"design is {manifest['design']!r}, expected one of "
                    f"{', '.join(VALIDATORS)}")
    if manifest["verilog"] != f"{manifest['top']}.v":
        _fail(path, f"verilog is {manifest['verilog']!r}, expected {manifest['top']!r} + '.v'")
    if not isinstance(manifest["latency"], int) or manifest["latency"] < 0:
        _fail(path, f"latency must be a non-negative integer, got {manifest['latency']!r}")
    try:
        want = VALIDATORS[manifest["design"]](manifest)
        if manifest["clock"] is not None:
            want = [(manifest["clock"], "input", 1, False),
                    (manifest["reset"]["port"], "input", 1, False), *want]
        got = [(p["name"], p["direction"], p["width"], p["signed"]) for p in manifest["ports"]]
    except ManifestProblem as exc:
        _fail(path, str(exc))
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
