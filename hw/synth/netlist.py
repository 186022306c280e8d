"""The mapped netlist as one flat graph: leaf cells, their pins and the physical nets.

Yosys' JSON netlist is hierarchical (the top plus one module per kept area group) and numbers
wire bits per module. The energy flow needs *physical* nets: a product-register output is one
net although it is called ``prod[3]`` inside ``mult``, something else in the top and
``prod[3]`` again inside ``accum``. :func:`flatten_netlist` joins the bits across instance
ports (union-find), names every physical net by one hierarchical Verilog reference that a
testbench can watch (``dut.mult._123_``), and lists every leaf pin with its OpenSTA path
(``mult/_456_/Y``) and area group.
"""

import re
from dataclasses import dataclass, field

__all__ = ["FlatNetlist", "LeafCell", "Net", "flatten_netlist"]

_SIMPLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass
class Net:
    """A physical net.

    ``ref`` is a Verilog hierarchical reference below the design instance (without the
    instance name), e.g. ``mult._123_`` or ``acc[3]``; ``driver`` is (cell index, pin) or
    None for a primary input; ``loads`` are (cell index, pin); ``port`` names the top-level
    port bit (``"a[3]"``) when the net is one.
    """

    ref: str
    driver: tuple | None = None
    loads: list = field(default_factory=list)
    port: str | None = None
    port_direction: str | None = None


@dataclass
class LeafCell:
    name: str        # OpenSTA instance path, e.g. "mult/_456_"
    type: str        # library cell
    group: str       # area group
    pins: dict       # pin name -> net index, or "0"/"1" for a constant


@dataclass
class FlatNetlist:
    top: str
    cells: list
    nets: list
    clock_net: int | None

    def group_of_net(self, i):
        drv = self.nets[i].driver
        return self.cells[drv[0]].group if drv else None


def _vref(name, index, width):
    """Verilog reference to bit ``index`` of wire ``name`` (escaped when needed)."""
    ident = name if _SIMPLE.match(name) else "\\" + name + " "
    return ident if width == 1 and index is None else f"{ident}[{index}]"


def flatten_netlist(design, top, groups, liberty, clock="clk"):
    """Flatten a Yosys JSON netlist (see the module docstring).

    Parameters
    ----------
    design : dict
        ``json.load`` of Yosys' ``write_json``.
    top : str
    groups : dict
        Instance path below the top ("mult", "grid.pe_0_0.mult") -> area group; cells of
        the top itself are "auxiliary".
    liberty : Library
        For pin directions of the leaf cells.
    clock : str
        Name of the clock port.

    Returns
    -------
    FlatNetlist
    """
    modules = design["modules"]
    parent = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a, b):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[rb] = ra

    cells = []
    names = {}          # node -> (priority, ref)
    ports = {}          # node -> (port bit name, direction)
    pending = []        # (cell index, pin, node)

    def bit_names(mod, prefix):
        out = {}
        for wname, w in modules[mod]["netnames"].items():
            bits = w["bits"]
            offset = w.get("offset", 0)
            upto = w.get("upto", 0)
            for k, b in enumerate(bits):
                if isinstance(b, str):
                    continue
                idx = (offset + (len(bits) - 1 - k) if upto else offset + k)
                ref = prefix + _vref(wname, idx if len(bits) > 1 else None, len(bits))
                hidden = w.get("hide_name", 0)
                simple = bool(_SIMPLE.match(wname))
                # Prefer visible, simple, short names high in the hierarchy.
                prio = (hidden, not simple, prefix.count("."), len(ref))
                out.setdefault(b, []).append((prio, ref))
        return out

    def walk(mod, prefix, sta_prefix, group, path=""):
        m = modules[mod]
        for b, refs in bit_names(mod, prefix).items():
            node = (prefix, b)
            for prio, ref in refs:
                if node not in names or prio < names[node][0]:
                    names[node] = (prio, ref)
        for cname, c in m.get("cells", {}).items():
            ctype = c["type"]
            if ctype in modules:
                # A kept submodule: its port bits are the same physical nets as the bits
                # they connect to here.
                # Groups are keyed by instance path below the top ("grid.pe_0_0.mult"); a
                # kept instance the map does not name belongs to its parent's group.
                child_path = f"{path}.{cname}" if path else cname
                child_group = groups.get(child_path, group)
                child_ports = modules[ctype]["ports"]
                esc = cname if _SIMPLE.match(cname) else "\\" + cname + " "
                child_prefix = prefix + esc + "."
                for pname, bits in c["connections"].items():
                    for pb, cb in zip(child_ports[pname]["bits"], bits):
                        if not isinstance(cb, str) and not isinstance(pb, str):
                            union((prefix, cb), (child_prefix, pb))
                walk(ctype, child_prefix, sta_prefix + cname + "/", child_group, child_path)
                continue
            cell_index = len(cells)
            pins = {}
            lib_cell = liberty.cells.get(ctype)
            for pname, bits in c["connections"].items():
                b = bits[0]
                if isinstance(b, str):
                    pins[pname] = b          # a constant "0" or "1"
                    continue
                node = (prefix, b)
                pins[pname] = node
                direction = (lib_cell.pins[pname].direction if lib_cell and pname in
                             lib_cell.pins else c.get("port_directions", {}).get(pname))
                pending.append((cell_index, pname, node, direction))
            cells.append(LeafCell(sta_prefix + cname, ctype, group, pins))

    walk(top, "", "", "auxiliary")
    for pname, p in modules[top]["ports"].items():
        bits = p["bits"]
        for k, b in enumerate(bits):
            if isinstance(b, str):
                continue
            label = pname if len(bits) == 1 else f"{pname}[{p.get('offset', 0) + k}]"
            ports[("", b)] = (label, p["direction"])

    # Number the physical nets.
    index = {}
    nets = []

    def net_of(node):
        root = find(node)
        if root not in index:
            index[root] = len(nets)
            nets.append(Net(ref=""))
        return index[root]

    best = {}           # net index -> (priority, reference)
    for node, (prio, ref) in names.items():
        i = net_of(node)
        if i not in best or prio < best[i][0]:
            best[i] = (prio, ref)
    for i, (_, ref) in best.items():
        nets[i].ref = ref
    for node, (label, direction) in ports.items():
        i = net_of(node)
        nets[i].port, nets[i].port_direction = label, direction
    for cell_index, pname, node, direction in pending:
        i = net_of(node)
        cells[cell_index].pins[pname] = i
        if direction == "output":
            nets[i].driver = (cell_index, pname)
        else:
            nets[i].loads.append((cell_index, pname))
    clock_net = next((i for i, n in enumerate(nets) if n.port == clock), None)
    return FlatNetlist(top=top, cells=cells, nets=nets, clock_net=clock_net)
