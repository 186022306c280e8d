"""Bring your own Verilog: wrap a hand-written MAC so every wrapkit flow reads it unchanged.

``wrapkit rtl import design.v --top my_mac --map a=x_in,... <MAC flags> --out DIR`` reads the
design with pyverilog (:mod:`.verilog_reader`), maps its ports to wrapkit's MAC roles, checks
their widths against the MAC flags, measures the latency with a short Icarus probe when none
is given, and writes

* ``DIR/<name>.v``: the user's files copied unchanged, followed by a thin wrapper module
  ``<name>`` with wrapkit's MAC ports (``clk rst a w en clr acc [y]``, reset active high)
  that instantiates the user's top as ``core`` -- inverting an active-low reset is the only
  logic it adds;
* ``DIR/<name>.json``: a ``"mac"`` manifest (schema ``wrapkit.rtl/1``) with an ``imported``
  block naming the source files and their sha256, the top, the port mapping, the reset
  polarity, the parameters and where the latency came from.

So ``wrapkit cosim mac DIR/<name>.json`` and ``wrapkit synth DIR/<name>.json`` need nothing
new. For area, the whole imported design is one group, ``imported`` (instance ``core``): a
foreign hierarchy has no reason to follow the paper's multiplier / accumulator / cyclic split.

Every refusal (an unmappable port, a width that contradicts the MAC flags, a construct
pyverilog cannot read, a latency the probe cannot find) is a one-line
:class:`~wrapkit.common.errors.UserError` raised before anything is written.
"""

import hashlib
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from wrapkit import __version__
from wrapkit.common.errors import FlagError, UserError
from wrapkit.common.files import atomic_write_json, atomic_write_text
from wrapkit.ref.datapath import decode_weights, wrap

from .manifest import SCHEMA, load_manifest
from .verilog_reader import read_design

__all__ = ["CORE_INSTANCE", "IMPORTED_GROUP", "PROBE_CYCLES", "ROLES", "ImportedDesign",
           "derive_port_map", "import_design", "parse_port_map", "probe_latency",
           "wrapper_verilog"]

#: wrapkit's MAC roles, in the order of the manifest's ports.
ROLES = ("clk", "rst", "a", "w", "en", "clr", "acc", "y")

#: Instance name of the user's top inside the wrapper, and its area group.
CORE_INSTANCE = "core"
IMPORTED_GROUP = "imported"

#: Cycles the latency probe watches after its one operation.
PROBE_CYCLES = 16

# Port names (lower case, affixes such as i_/_in/_o/_out/_q stripped) each role recognizes.
_NAMES = {
    "clk": {"clk", "clock", "aclk", "ck"},
    "rst": {"rst", "reset", "rstn", "resetn", "nrst", "nreset", "areset", "arst", "srst"},
    "a": {"a", "act", "activation", "x", "data", "din", "in", "ifmap", "feature"},
    "w": {"w", "weight", "wt", "b", "coef", "coeff", "filter", "kernel"},
    "en": {"en", "enable", "valid", "vld", "ce", "ena", "acc_en", "accen"},
    "clr": {"clr", "clear", "acc_clr", "accclr", "init", "first", "start", "restart"},
    "acc": {"acc", "accum", "accumulator", "sum", "psum", "acc_out", "result", "total"},
    "y": {"y", "act_out", "cyc", "cyclic", "wrapped"},
}
_AFFIXES = re.compile(r"^(i_|o_|in_|out_)|(_i|_o|_in|_out|_q|_r|_reg)$")
_ACTIVE_LOW = re.compile(r"(^n_?|_n$|_b$|_l$|n$)")


@dataclass
class ImportedDesign:
    """The outcome of :func:`import_design`: the files written and what was measured."""

    verilog: Path
    manifest: Path
    latency: int
    latency_source: str
    port_map: dict
    reset_active: str


def parse_port_map(text):
    """``"a=x_in,w=w_in"`` -> ``{"a": "x_in", "w": "w_in"}``; a :class:`FlagError` on a
    malformed pair, an unknown role or a role given twice."""
    mapping = {}
    if not text:
        return mapping
    for pair in text.split(","):
        role, sep, name = (s.strip() for s in pair.partition("="))
        if not sep or not role or not name:
            raise FlagError("--map", f"takes ROLE=PORT pairs separated by commas, got "
                                     f"{pair!r} (e.g. a=x_in,w=w_in,acc=sum)")
        if role not in ROLES:
            raise FlagError("--map", f"role {role!r} is not one of {', '.join(ROLES)}")
        if role in mapping:
            raise FlagError("--map", f"gives role {role!r} twice")
        mapping[role] = name
    return mapping


def _normalized(name):
    low = name.lower()
    stripped = _AFFIXES.sub("", low)
    return {low, stripped, _AFFIXES.sub("", stripped)}


def _reset_names(name):
    low = name.lower()
    base = re.sub(r"(_n|_b|_l)$", "", low)
    base = re.sub(r"^n_?", "", base) if re.match(r"^n_?(rst|reset)", base) else base
    return {low, base, _AFFIXES.sub("", base)}


def derive_port_map(design, given, cfg):
    """Map every MAC role to a port of ``design``: ``given`` first, then unambiguous names.

    Parameters
    ----------
    design : VerilogDesign
    given : dict
        Role -> port from ``--map``.
    cfg : MacConfig
        Decides whether the role ``y`` (cyclic output) is needed.

    Returns
    -------
    dict
        Role -> port name, for every needed role.

    Raises
    ------
    UserError
        A ``--map`` port that does not exist, a role no port (or more than one) matches, an
        input port no role uses.
    """
    needed = [r for r in ROLES if r != "y" or cfg.k is not None]
    names = [p.name for p in design.ports]
    listing = ", ".join(p.describe() for p in design.ports)
    if "y" in given and cfg.k is None:
        raise FlagError("--map", "maps y (the cyclic activation output) but the MAC flags "
                                 "give no --k; add --k K or drop y")
    mapping = {}
    for role, name in given.items():
        if name not in names:
            raise FlagError("--map", f"{role}={name}: {design.top} has no port {name!r} "
                                     f"(its ports: {listing})")
        twice = [r for r, n in mapping.items() if n == name]
        if twice:
            raise FlagError("--map", f"gives port {name!r} two roles ({twice[0]} and {role})")
        mapping[role] = name
    taken = set(mapping.values())
    for role in needed:
        if role in mapping:
            continue
        if role == "clk" and len(design.clocked) == 1:
            clock = next(iter(design.clocked))
            if clock in names and clock not in taken:
                mapping[role] = clock
                taken.add(clock)
                continue
        matches = [p.name for p in design.ports if p.name not in taken and
                   (_reset_names(p.name) if role == "rst" else _normalized(p.name))
                   & _NAMES[role]]
        if len(matches) != 1:
            why = ("no port name says so" if not matches
                   else f"{' and '.join(matches)} both could be")
            raise UserError(f"cannot map MAC role {role!r} to a port of {design.top} ({why}); "
                            f"add {role}=PORT to --map (ports: {listing})")
        mapping[role] = matches[0]
        taken.add(matches[0])
    unused = [p for p in design.ports if p.direction != "output" and p.name not in taken]
    if unused:
        raise UserError(f"input {unused[0].describe()} of {design.top} maps to no MAC role; "
                        f"the wrapper could not drive it -- map it with --map or tie it off "
                        f"in your Verilog")
    return {r: mapping[r] for r in ROLES if r in mapping}


def _expected_ports(cfg):
    """Role -> (direction, width, signed) of wrapkit's MAC interface (the manifest's ports)."""
    ports = {"clk": ("input", 1, False), "rst": ("input", 1, False),
             "a": ("input", cfg.act_bits, bool(cfg.act_signed)),
             "w": ("input", cfg.weight_code_bits, False),
             "en": ("input", 1, False), "clr": ("input", 1, False),
             "acc": ("output", cfg.acc_bits, True)}
    if cfg.k is not None:
        ports["y"] = ("output", cfg.acc_bits, True)
    return ports


_ROLE_FLAG = {"a": "--act-bits", "w": "--weight-kind/--weight-bits", "acc": "--acc-bits",
              "y": "--acc-bits"}


def _check_widths(design, mapping, cfg):
    for role, (direction, width, _) in _expected_ports(cfg).items():
        p = design.port(mapping[role])
        if p.direction != direction:
            raise UserError(f"port {p.name!r} (role {role}) is an {p.direction}, a MAC's "
                            f"{role} is an {direction}; fix --map")
        if p.width != width:
            source = (f"the MAC flags ({_ROLE_FLAG[role]}) say {width} bits"
                      if role in _ROLE_FLAG else f"{role} is a 1-bit signal")
            raise UserError(f"port {p.name!r} (role {role}) is {p.width} bits but {source}; "
                            f"fix the flags or --map")


def _reset_polarity(name, given):
    if given is not None:
        return given
    return "low" if _ACTIVE_LOW.search(name.lower()) and name.lower() not in (
        "rst", "reset", "srst", "arst", "areset") else "high"


def wrapper_verilog(name, design, mapping, cfg, reset_active):
    """The wrapper module: wrapkit's MAC ports around ``design.top`` instance ``core``."""
    ports = _expected_ports(cfg)
    decls = []
    for role, (direction, width, _) in ports.items():
        rng = "" if width == 1 else f"[{width - 1}:0] "
        decls.append(f"  {direction} {rng}{role};")
    conns = []
    for role in ports:
        signal = "~rst" if role == "rst" and reset_active == "low" else role
        conns.append(f"    .{mapping[role]}({signal})")
    return (f"// {name}: wrapkit's MAC interface around the imported module {design.top}.\n"
            f"// Written by `wrapkit rtl import` (wrapkit {__version__}); the imported Verilog "
            "above is copied unchanged.\n"
            f"module {name}({', '.join(ports)});\n" + "\n".join(decls) + "\n"
            f"  {design.top} {CORE_INSTANCE} (\n" + ",\n".join(conns) + "\n  );\n"
            "endmodule\n")


def _probe_operation(cfg):
    """One operation whose product is non-zero after every wrap: a = 1 and the largest
    weight code's value, and the accumulator value it must produce."""
    codes = list(range(1 << cfg.weight_code_bits))
    values = decode_weights(codes, cfg.weight_kind, cfg.weight_bits).tolist()
    code = max(codes, key=lambda c: (abs(int(wrap(values[c], cfg.prod_bits))), values[c]))
    product = int(wrap(int(wrap(values[code], cfg.prod_bits)), cfg.acc_bits))
    return 1, code, product


def probe_latency(verilog_text, name, cfg, cycles=PROBE_CYCLES):
    """Latency of the wrapped design, measured with Icarus.

    The probe resets the design, drives one operation (clear and enable set, ``a = 1``, the
    largest weight) on a falling clock edge, then idles, and samples ``acc`` on each of the
    next ``cycles`` falling edges. The latency is the first sample that holds the operation's
    product and keeps holding it -- the same timing :mod:`wrapkit.sim.tb_mac` assumes.

    Returns
    -------
    int

    Raises
    ------
    UserError
        Icarus rejects the design, or ``acc`` never settles to the product.
    """
    from .synth.tools import run_tool

    a, code, product = _probe_operation(cfg)
    y_decl = f"  wire [{cfg.acc_bits - 1}:0] y;\n" if cfg.k is not None else ""
    y_conn = ", .y(y)" if cfg.k is not None else ""
    bench = f"""`timescale 1ns/1ps
module wrapkit_latency_probe;
  reg clk = 1'b0, rst = 1'b1, en = 1'b0, clr = 1'b0;
  reg [{cfg.act_bits - 1}:0] a = 0;
  reg [{cfg.weight_code_bits - 1}:0] w = 0;
  wire [{cfg.acc_bits - 1}:0] acc;
{y_decl}  {name} dut(.clk(clk), .rst(rst), .a(a), .w(w), .en(en), .clr(clr), .acc(acc){y_conn});
  always #5 clk = ~clk;
  integer i;
  initial begin
    @(negedge clk); @(negedge clk); rst = 1'b0;
    @(negedge clk); $display("SAMPLE 0 %b", acc);
    a = {a}; w = {code}; en = 1'b1; clr = 1'b1;
    for (i = 1; i <= {cycles}; i = i + 1) begin
      @(negedge clk); $display("SAMPLE %0d %b", i, acc);
      a = 0; w = 0; en = 1'b0; clr = 1'b0;
    end
    $finish;
  end
endmodule
"""
    with tempfile.TemporaryDirectory(prefix="wrapkit-probe-") as tmp:
        work = Path(tmp)
        (work / "design.v").write_text(verilog_text)
        (work / "probe.v").write_text(bench)
        proc = run_tool("iverilog", ["-o", "probe.vvp", "-s", "wrapkit_latency_probe",
                                     "design.v", "probe.v"], cwd=work, stage="latency probe",
                        log_name="iverilog.log", check=False)
        if proc.returncode != 0:
            first = next((ln for ln in proc.stdout.splitlines() if ln.strip()), "?")
            raise UserError(f"Icarus rejects the design ({first.strip()}); fix the Verilog")
        run = run_tool("vvp", ["-n", "probe.vvp"], cwd=work, stage="latency probe",
                       log_name="vvp.log", timeout=60, check=False)
    samples = {}
    for m in re.finditer(r"^SAMPLE (\d+) ([01xz]+)$", run.stdout, re.M):
        bits = m.group(2)
        samples[int(m.group(1))] = None if set(bits) - {"0", "1"} else \
            int(wrap(int(bits, 2), cfg.acc_bits))
    for latency in range(1, cycles - 1):
        if all(samples.get(i) == product for i in range(latency, cycles + 1)):
            return latency
    seen = ", ".join("x" if samples.get(i) is None else str(samples[i])
                     for i in range(0, min(cycles, 8) + 1))
    raise UserError(f"latency probe: after one operation (a={a}, weight code {code}, product "
                    f"{product}) acc never settled to {product} within {cycles} cycles (saw "
                    f"{seen}); check --map and the reset polarity (--reset-active), or give "
                    f"--latency N")


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def import_design(paths, top, cfg, out, *, name=None, port_map=None, latency=None,
                  reset_active=None):
    """Import a hand-written MAC (see the module docstring) and write its two files.

    Parameters
    ----------
    paths : list of path-like
        The design's Verilog files.
    top : str
        Its top module.
    cfg : MacConfig
        The MAC semantics the design claims (from the shared MAC flags).
    out : path-like
        Folder for ``<name>.v`` and ``<name>.json``.
    name : str, optional
        The wrapper's module name and file stem (default ``<top>_wrapkit``).
    port_map : dict, optional
        Role -> port (``--map``); roles left out are derived from the port names.
    latency : int, optional
        Clock edges from an operation to ``acc``; measured by :func:`probe_latency` if None.
    reset_active : "high" | "low", optional
        The reset's polarity; derived from its name (``rst_n`` is active low) if None.

    Returns
    -------
    ImportedDesign
    """
    from .verilog import weight_encoding

    name = name or f"{top}_wrapkit"
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise FlagError("--name", f"must be a Verilog identifier, got {name!r}")
    if latency is not None and (isinstance(latency, bool) or not isinstance(latency, int)
                                or latency < 1):
        raise FlagError("--latency", f"must be an integer >= 1, got {latency!r}")
    if reset_active not in (None, "high", "low"):
        raise FlagError("--reset-active", f"must be high or low, got {reset_active!r}")
    design = read_design(paths, top)
    if name in design.modules:
        raise FlagError("--name", f"{name!r} is already a module of the design; choose "
                                  f"another wrapper name")
    mapping = derive_port_map(design, port_map or {}, cfg)
    _check_widths(design, mapping, cfg)
    active = _reset_polarity(mapping["rst"], reset_active)
    async_reset = mapping["rst"] in design.resets
    sources = [(f, f.read_bytes()) for f in design.files]
    copied = "".join(
        f"// ---- {f.name} (sha256 {_sha256(data)}), copied unchanged by `wrapkit rtl "
        f"import` ----\n" + data.decode("utf-8", errors="replace").rstrip("\n") + "\n\n"
        for f, data in sources)
    text = (f"// {name}: {design.top} from {', '.join(f.name for f, _ in sources)}, imported "
            f"into wrapkit as a MAC ({cfg.name}).\n\n" + copied
            + wrapper_verilog(name, design, mapping, cfg, active))
    source = "--latency"
    if latency is None:
        latency = probe_latency(text, name, cfg)
        source = "probe"
    ports = [{"name": role, "direction": d, "width": w, "signed": s}
             for role, (d, w, s) in _expected_ports(cfg).items()]
    manifest = {
        "schema": SCHEMA,
        "generator": f"wrapkit {__version__}",
        "amaranth": None,
        "yosys": None,
        "design": "mac",
        "top": name,
        "config": cfg.to_dict(),
        "latency": latency,
        "clock": "clk",
        "reset": {"port": "rst", "sync": True, "active": "high"},
        "ports": ports,
        "weight_encoding": weight_encoding(cfg),
        "imported": {
            "top": design.top,
            "instance": CORE_INSTANCE,
            "sources": [{"file": str(f), "sha256": _sha256(data)} for f, data in sources],
            "port_map": mapping,
            "reset": {"port": mapping["rst"], "active": active,
                      "sync": not async_reset},
            "parameters": design.parameters,
            "latency_from": source,
            "area_groups": f"the whole imported design is group {IMPORTED_GROUP!r}; the "
                           f"wrapper's own cells are 'auxiliary'",
        },
        "hierarchy": {CORE_INSTANCE: IMPORTED_GROUP, name: "auxiliary"},
        "modules": {CORE_INSTANCE: design.top, name: name},
        "verilog": f"{name}.v",
        "verilog_sha256": _sha256(text.encode("utf-8")),
    }
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        vpath = atomic_write_text(out / f"{name}.v", text)
        mpath = atomic_write_json(out / f"{name}.json", manifest)
    except OSError as exc:
        raise UserError(f"cannot write into --out {out}: {exc.strerror or exc}; choose a "
                        f"writable folder") from None
    load_manifest(mpath)  # the flows' own validator must accept what was written
    return ImportedDesign(vpath, mpath, latency, source, mapping, active)
