"""Buffer trees on high-fanout nets of a mapped, hierarchical netlist.

ABC buffers the high-fanout nets it sees inside one module, but not a module's input ports
(primary inputs to ABC). A layer array's buffer address enters its memory module as a port
and, with the memory synthesized as registers, drives hundreds of read-multiplexer inputs:
left alone, one controller cell would drive them all and the "critical path" would be that
one overloaded wire (hundreds of nanoseconds), which a real design never has. This pass
gives every net with more than ``max_fanout`` loads a tree of the library's strongest
non-inverting buffer, in the module where the loads are, so the tree's area and energy
count in the group that needs it.

It edits Yosys' JSON netlist (``write_json``); :func:`rewrite_netlist` lets Yosys read the
result back, report the areas again and write the Verilog and JSON the rest of the flow
reads.
"""

import json
from pathlib import Path

from .liberty import Library
from .tools import ToolError, run_tool

__all__ = ["buffer_high_fanout", "rewrite_netlist", "strongest_buffer"]

#: Loads one net (or one buffer of a tree) drives at most.
MAX_FANOUT = 12


def strongest_buffer(liberty: Library):
    """The largest non-inverting buffer cell, as (cell name, input pin, output pin)."""
    bufs = []
    for c in liberty.cells.values():
        ins, outs = c.inputs(), c.outputs()
        if (len(ins) == 1 and len(outs) == 1 and not c.ff and not c.latch
                and outs[0].function and outs[0].function.strip() == ins[0].name):
            bufs.append(c)
    if not bufs:
        liberty.buffer()          # raises the library's own "no buffer" error
    cell = max(bufs, key=lambda c: (c.area, c.name))
    return cell.name, cell.inputs()[0].name, cell.outputs()[0].name


def _loads(module, modules, liberty):
    """Net bit -> list of (cell name, pin, index) that read it."""
    loads = {}
    for cname, cell in module.get("cells", {}).items():
        ctype = cell["type"]
        lib_cell = liberty.cells.get(ctype)
        for pin, bits in cell["connections"].items():
            if lib_cell is not None:
                p = lib_cell.pins.get(pin)
                direction = p.direction if p else None
            else:
                direction = cell.get("port_directions", {}).get(pin)
                if direction is None and ctype in modules:
                    direction = modules[ctype]["ports"][pin]["direction"]
            if direction != "input":
                continue
            for k, b in enumerate(bits):
                if not isinstance(b, str):
                    loads.setdefault(b, []).append((cname, pin, k))
    return loads


def buffer_high_fanout(design, liberty: Library, *, max_fanout=MAX_FANOUT, clock="clk"):
    """Insert buffer trees in every module of ``design`` (edited in place).

    The clock net is left alone (ideal, like the rest of the flow). Returns the number of
    buffers inserted.
    """
    buf, buf_in, buf_out = strongest_buffer(liberty)
    modules = design["modules"]
    inserted = 0
    for mname, module in modules.items():
        loads = _loads(module, modules, liberty)
        clock_bits = set(module["ports"].get(clock, {}).get("bits", []))
        next_bit = 1 + max([b for w in module["netnames"].values() for b in w["bits"]
                            if not isinstance(b, str)] + [1])
        for bit, users in loads.items():
            if len(users) <= max_fanout or bit in clock_bits:
                continue
            level = users
            source = bit
            while len(level) > max_fanout:
                groups = [level[i:i + max_fanout] for i in range(0, len(level), max_fanout)]
                parents = []
                for group in groups:
                    new = next_bit
                    next_bit += 1
                    name = f"wk_fanout_buf_{inserted}"
                    inserted += 1
                    module["cells"][name] = {
                        "hide_name": 0, "type": buf, "parameters": {}, "attributes": {},
                        "port_directions": {buf_in: "input", buf_out: "output"},
                        "connections": {buf_in: [source], buf_out: [new]}}
                    module["netnames"][f"wk_fanout_net_{inserted - 1}"] = {
                        "hide_name": 0, "bits": [new], "attributes": {}}
                    for cname, pin, k in group:
                        module["cells"][cname]["connections"][pin][k] = new
                    parents.append((name, buf_in, 0))
                level = parents
    return inserted


def rewrite_netlist(design, top, liberty: Library, out_dir):
    """Write ``design`` and let Yosys re-read it: ``netlist.v``, ``netlist.json`` and the
    area statistics in ``yosys_fanout.log`` (parsed like the synthesis log)."""
    out_dir = Path(out_dir)
    # Yosys reads back a private name ("$1") as a public one ("\\$1"), which Icarus cannot
    # reach through a hierarchical reference; give such nets plain names.
    for module in design["modules"].values():
        names = module["netnames"]
        for k, name in enumerate([n for n in names if n.lstrip("\\").startswith("$")]):
            names[f"wk_net_{k}"] = names.pop(name)
    (out_dir / "netlist.buffered.json").write_text(json.dumps(design))
    script = "\n".join([
        f"read_liberty -lib {liberty.path}",
        f"read_json {out_dir / 'netlist.buffered.json'}",
        f"hierarchy -top {top}",
        "rename -enumerate",
        f"stat -liberty {liberty.path}",
        f"write_verilog -noattr -noexpr -nohex -nodec {out_dir / 'netlist.v'}",
        f"write_json {out_dir / 'netlist.json'}",
    ]) + "\n"
    (out_dir / "fanout.ys").write_text(script)
    proc = run_tool("yosys", ["-q", "-l", "yosys_fanout.log", "fanout.ys"], cwd=out_dir,
                    stage="synthesis (fanout buffers)", log_name="yosys_fanout.out",
                    check=False)
    if proc.returncode != 0:
        raise ToolError(f"synthesis: yosys could not re-read the buffered netlist; see "
                        f"{out_dir / 'yosys_fanout.log'}")
    # read_liberty -lib declared the cells as blackbox modules; the flow's netlist holds only
    # the design's own modules (leaf cells are recognised by type).
    back = json.loads((out_dir / "netlist.json").read_text())
    back["modules"] = {name: m for name, m in back["modules"].items()
                       if not m.get("attributes", {}).get("blackbox")}
    (out_dir / "netlist.json").write_text(json.dumps(back))
    return (out_dir / "yosys_fanout.log").read_text(errors="replace")
