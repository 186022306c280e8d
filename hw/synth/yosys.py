"""Logic synthesis with Yosys onto a standard-cell liberty, keeping the paper's area groups.

The MAC's Verilog (from ``wrapkit rtl``) has one module per area group of the paper's Fig. 2.4:
instance ``mult`` (multiplier and product register), ``accum`` (adder and accumulator register),
``cyclic`` (cyclic activation) and the top's own logic (the en/clr pipeline flops: auxiliary).
The manifest names them (``hierarchy`` and ``modules``). The script marks the group modules
``keep_hierarchy`` and flattens everything else, so logic is optimized freely *inside* a group
but never moved *across* groups -- the same boundary the paper's per-group breakdown assumes.

Script (``{...}`` filled in by :func:`yosys_script`)::

    read_verilog {verilog}
    hierarchy -check -top {top}
    setattr -mod -set keep_hierarchy 1 {group modules}
    flatten                      # other submodules melt into their group (or the top)
    synth -top {top}             # generic optimization and mapping to Yosys gates
    dfflibmap -liberty {lib}     # registers -> the library's D flip-flop
    abc -liberty {lib} [-script] # logic -> library cells (delay- or area-oriented)
    opt_clean -purge; setundef -zero
    insbuf -buf {buffer}         # a buffer wherever two named nets were aliased
    rename -enumerate            # public names, identical in the .v and the .json
    stat -liberty {lib}          # area per module (parsed by parse_stat)
    write_verilog / write_json

The delay-oriented ABC script (the default goal, like the paper's maximum-frequency synthesis)
maps for minimum delay and then buffers and resizes gates on the critical paths; the area goal
uses Yosys' default ABC script.
"""

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from wrapkit.common.errors import UserError

from .fanout import buffer_high_fanout, rewrite_netlist
from .liberty import Library
from .tools import ToolError, run_tool

__all__ = ["GOALS", "SynthResult", "parse_stat", "synthesize", "yosys_script"]

#: Optimization goals of technology mapping.
GOALS = ("delay", "area")

# ABC script of the delay goal: map against an unreachable delay target (so ABC returns the
# fastest mapping it finds), then buffer high fanout and up-size cells on critical paths.
_ABC_DELAY = ("strash; dch -f; map -D 1; buffer; upsize -D 1; dnsize -D 1; stime -p")

_SECTION = re.compile(r"^=== (?P<name>.+?) ===\s*$")
_CHIP_AREA = re.compile(r"^\s*Chip area for (?:top )?module '\\?(?P<name>.+?)': (?P<area>[0-9.eE+-]+)")
_CELL_LINE = re.compile(r"^\s{5}(?P<cell>\S+)\s+(?P<count>\d+)\s*$")


@dataclass(frozen=True)
class SynthResult:
    """What synthesis produced.

    Attributes
    ----------
    netlist, netlist_json : Path
        Mapped gate-level Verilog and the same netlist as Yosys JSON.
    top : str
    module_area : dict
        Module name -> cell area of the module's own cells (library area units, um^2 for
        OSU018), parsed from ``stat -liberty``; instances of kept submodules are not included.
    module_cells : dict
        Module name -> {cell type: count}.
    group_area : dict
        Area group ("multiplier", "accumulator", "cyclic", "auxiliary") -> area.
    group_instances : dict
        Group-module instance name in the top ("mult" ...) -> group.
    instance_modules : dict
        Group-module instance name -> module name.
    registers : int
        Flip-flops in the whole design.
    log : Path
    """

    netlist: Path
    netlist_json: Path
    top: str
    module_area: dict
    module_cells: dict
    group_area: dict
    group_instances: dict
    instance_modules: dict
    registers: int
    log: Path
    total_area: float = field(default=0.0)


def yosys_script(verilog, top, keep_modules, liberty: Library, goal, out_dir):
    """The Yosys script of the flow (see the module docstring)."""
    if goal not in GOALS:
        raise ValueError(f"goal must be one of {', '.join(GOALS)}, got {goal!r}")
    buf, buf_in, buf_out = liberty.buffer()
    lib = _quote(liberty.path)
    lines = [f"read_verilog {_quote(verilog)}", f"hierarchy -check -top {_quote_id(top)}"]
    if keep_modules:
        lines.append("setattr -mod -set keep_hierarchy 1 "
                     + " ".join(_quote_id(m) for m in keep_modules))
    lines += [
        "flatten",
        f"synth -top {_quote_id(top)}",
        f"dfflibmap -liberty {lib}",
        (f"abc -liberty {lib} -script {_quote(Path(out_dir) / 'abc_delay.script')}"
         if goal == "delay" else f"abc -liberty {lib}"),
        "opt_clean -purge",
        "setundef -zero",
        f"insbuf -buf {buf.name} {buf_in} {buf_out}",
        "opt_clean -purge",
        "rename -enumerate",
        f"stat -liberty {lib}",
        f"write_verilog -noattr -noexpr -nohex -nodec {_quote(Path(out_dir) / 'netlist.v')}",
        f"write_json {_quote(Path(out_dir) / 'netlist.json')}",
    ]
    return "\n".join(lines) + "\n"


def _quote(path):
    text = str(path)
    if any(c in text for c in ' "\\;'):
        raise UserError(f"path {text!r} contains a space, quote, backslash or semicolon, "
                        f"which Yosys scripts cannot carry; move it")
    return text


def _quote_id(name):
    # Amaranth's module names contain dots ("mac_x.mult"); Yosys takes them as plain words.
    if not re.fullmatch(r"[A-Za-z0-9_.$\\]+", name):
        raise UserError(f"module name {name!r} has characters the flow cannot pass to Yosys")
    return name


def parse_stat(text):
    """Per-module cell areas and cell counts from the last ``stat -liberty`` of a Yosys log.

    Returns
    -------
    (dict, dict, float or None)
        module -> area of its own cells; module -> {cell type: count}; the design total
        (including submodules) from the "design hierarchy" section, when present.

    Raises
    ------
    ValueError
        The text holds no ``stat`` output with areas.
    """
    # Only the last "Printing statistics" block is the mapped design (synth prints one too).
    start = text.rfind("Printing statistics")
    if start < 0:
        raise ValueError("no 'Printing statistics' section in the Yosys log")
    areas, cells, total = {}, {}, None
    module = None
    for line in text[start:].splitlines():
        m = _SECTION.match(line)
        if m:
            module = m.group("name").lstrip("\\")
            if module != "design hierarchy":
                cells.setdefault(module, {})
            continue
        m = _CHIP_AREA.match(line)
        if m:
            if module == "design hierarchy":
                total = float(m.group("area"))
            else:
                areas[m.group("name")] = float(m.group("area"))
            continue
        m = _CELL_LINE.match(line)
        if m and module and module != "design hierarchy":
            cells[module][m.group("cell").lstrip("\\")] = int(m.group("count"))
    if not areas:
        raise ValueError("the Yosys statistics hold no 'Chip area' lines; was stat run with "
                         "-liberty?")
    return areas, cells, total


def _module_names(verilog_text):
    names = set()
    for m in re.finditer(r"^\s*module\s+(\\\S+|[A-Za-z_][A-Za-z0-9_$]*)", verilog_text, re.M):
        names.add(m.group(1).lstrip("\\"))
    return names


def synthesize(verilog, top, groups, liberty: Library, out_dir, *, goal="delay",
               modules=None, fanout_buffers=False):
    """Synthesize ``verilog`` onto ``liberty`` and report the cell area per group.

    Parameters
    ----------
    verilog : Path
        The RTL Verilog.
    top : str
        Top module name.
    groups : dict
        Instance name in the top -> area group, e.g. ``{"mult": "multiplier", ...}``; the
        top's own cells form the "auxiliary" group. Entries naming the top are ignored.
    liberty : Library
        The target library (already read, so its flip-flop and buffer are known).
    out_dir : Path
        Scratch folder for the script, log and netlists.
    goal : "delay" or "area"
    modules : dict, optional
        Instance name -> module name, when known (the manifest's ``modules``); otherwise the
        module names are read from the RTL.
    fanout_buffers : bool
        After mapping, give every net with many loads a buffer tree
        (:func:`~.fanout.buffer_high_fanout`), the module input ports included, which ABC
        leaves unbuffered: needed by designs whose groups pass wide-fanout nets to each
        other (a layer array's buffer addresses); the MAC flow leaves it off.

    Raises
    ------
    UserError
        Unknown top, a group module missing from the Verilog, or a design without registers.
    ToolError
        Yosys failed on the generated script.
    """
    verilog = Path(verilog).resolve()
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        text = verilog.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise UserError(f"Verilog file {verilog} is unreadable ({exc.strerror})") from None
    defined = _module_names(text)
    if top not in defined:
        raise UserError(f"top module {top!r} is not defined in {verilog} (it defines "
                        f"{', '.join(sorted(defined)) or 'no modules'}); check the manifest's "
                        f"'top' or regenerate the design")
    group_instances = {inst: g for inst, g in groups.items() if inst != top}
    if modules is None:
        modules = {}
        for inst in group_instances:
            m = re.search(r"^\s*(\\\S+|[A-Za-z_][A-Za-z0-9_$.]*)\s+" + re.escape(inst)
                          + r"\s*\(", text, re.M)
            if m:
                modules[inst] = m.group(1).lstrip("\\")
    instance_modules = {}
    for inst in group_instances:
        mod = modules.get(inst)
        if mod is None or mod not in defined:
            raise UserError(f"group instance {inst!r} ({group_instances[inst]}) has no module "
                            f"in {verilog} (looked for {mod!r}); the manifest and the Verilog "
                            f"disagree - regenerate the design")
        instance_modules[inst] = mod
    if goal == "delay":
        (out_dir / "abc_delay.script").write_text(_ABC_DELAY + "\n")
    script = yosys_script(verilog, top, sorted(set(instance_modules.values())), liberty, goal,
                          out_dir)
    (out_dir / "synth.ys").write_text(script)
    proc = run_tool("yosys", ["-q", "-l", "yosys.log", "synth.ys"], cwd=out_dir,
                    stage="synthesis", log_name="yosys.out", check=False)
    log_text = (out_dir / "yosys.log").read_text(errors="replace") if (
        out_dir / "yosys.log").exists() else proc.stdout
    if proc.returncode != 0:
        tail = "\n".join(log_text.strip().splitlines()[-12:])
        raise ToolError(f"synthesis: yosys exited with status {proc.returncode}; log "
                        f"{out_dir / 'yosys.log'} ends:\n{tail}")
    netlist_json = out_dir / "netlist.json"
    design = json.loads(netlist_json.read_text())
    if fanout_buffers:
        buffer_high_fanout(design, liberty)
        log_text = rewrite_netlist(design, top, liberty, out_dir)
        design = json.loads(netlist_json.read_text())
    areas, cells, total = parse_stat(log_text)
    lib_cells = liberty.cells
    unmapped = sorted({c["type"] for m in design["modules"].values()
                       for c in m.get("cells", {}).values()
                       if c["type"] not in lib_cells and c["type"].lstrip("\\") not in
                       design["modules"]})
    if unmapped:
        raise ToolError(f"synthesis left cells that are not in {liberty.path.name}: "
                        f"{', '.join(unmapped[:8])}; see {out_dir / 'yosys.log'}")
    ff_names = {c.name for c in lib_cells.values() if c.ff or c.latch}
    counts = _flat_counts(design, top)
    registers = sum(n for t, n in counts.items() if t in ff_names)
    if registers == 0:
        raise UserError(f"design {top!r} has no registers after synthesis; the flow measures "
                        f"the clock period between registers, so it needs a clocked design "
                        f"(a MAC, not a purely combinational block)")
    group_area = {g: 0.0 for g in dict.fromkeys(group_instances.values())}
    for inst, g in group_instances.items():
        group_area[g] = group_area.get(g, 0.0) + areas.get(instance_modules[inst], 0.0)
    group_area["auxiliary"] = group_area.get("auxiliary", 0.0) + areas.get(top, 0.0)
    return SynthResult(
        netlist=out_dir / "netlist.v", netlist_json=netlist_json, top=top,
        module_area=areas, module_cells=cells, group_area=group_area,
        group_instances=group_instances, instance_modules=instance_modules,
        registers=registers, log=out_dir / "yosys.log",
        total_area=total if total is not None else sum(group_area.values()),
    )


def _flat_counts(design, top):
    """Cell type -> count over the whole hierarchy below ``top``."""
    modules = design["modules"]
    counts = {}

    def walk(name, mult):
        for cell in modules[name].get("cells", {}).values():
            t = cell["type"]
            if t in modules:
                walk(t, mult)
            else:
                counts[t] = counts.get(t, 0) + mult

    walk(top, 1)
    return counts
