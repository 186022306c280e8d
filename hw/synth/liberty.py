"""A small reader for Liberty (.lib) standard-cell libraries.

The flow needs a few facts before it hands a library to Yosys and OpenSTA: that the file is
readable, that it has a plain D flip-flop (Yosys' ``dfflibmap`` maps every register onto one),
a buffer for ``insbuf``, the flip-flop's pin capacitances (the external load of the MAC's
outputs) and the units. The energy tests also read internal-power tables and capacitances to
compute expected values by hand. This reader covers that subset of the format: groups,
simple and complex attributes, comments, strings and line continuations.

Units: areas are in the library's area unit (square micrometres for OSU018), capacitances are
converted to farads, times to seconds, leakage to watts; an internal-power table value is an
energy in ``capacitive_load_unit * voltage_unit**2`` (1 pF x 1 V^2 = 1 pJ for OSU018), which
:meth:`Library.energy_scale` gives in joules.
"""

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wrapkit.common.errors import UserError

__all__ = ["Cell", "Library", "Pin", "PowerTable", "read_liberty"]

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<comment>/\*.*?\*/|//[^\n]*)
      | (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<punct>[(){}:;,])
      | (?P<cont>\\\n)
      | (?P<word>[^\s(){}:;,"]+)
    )""",
    re.S | re.X,
)

_SI = {"f": 1e-15, "p": 1e-12, "n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1.0, "k": 1e3}


@dataclass
class _Group:
    kind: str
    args: list
    attrs: dict = field(default_factory=dict)
    complex: dict = field(default_factory=dict)
    groups: list = field(default_factory=list)

    def children(self, kind):
        return [g for g in self.groups if g.kind == kind]


class _Parser:
    def __init__(self, text, path):
        self.path = path
        self.tokens = []
        pos = 0
        n = len(text)
        while pos < n:
            m = _TOKEN.match(text, pos)
            if not m or m.end() == pos:
                if text[pos:].strip() == "":
                    break
                line = text.count("\n", 0, pos) + 1
                raise UserError(f"liberty {path}: cannot read line {line} "
                                f"({text[pos:pos + 40].strip()!r}); is it a Liberty file?")
            pos = m.end()
            if m.lastgroup in ("comment", "cont"):
                continue
            if m.lastgroup == "string":
                self.tokens.append(("str", m.group("string")[1:-1].replace("\\\n", "")))
            elif m.lastgroup == "punct":
                self.tokens.append(("p", m.group("punct")))
            else:
                self.tokens.append(("w", m.group("word")))
        self.i = 0

    def _error(self, what):
        raise UserError(f"liberty {self.path}: malformed ({what} at token {self.i}); "
                        f"is it a Liberty file?")

    def peek(self):
        return self.tokens[self.i] if self.i < len(self.tokens) else (None, None)

    def take(self):
        tok = self.peek()
        if tok[0] is None:
            self._error("unexpected end of file")
        self.i += 1
        return tok

    def expect(self, punct):
        kind, val = self.take()
        if kind != "p" or val != punct:
            self._error(f"expected {punct!r}, got {val!r}")

    def parse_statement(self):
        kind, name = self.take()
        if kind not in ("w", "str"):
            self._error(f"expected a name, got {name!r}")
        kind, val = self.take()
        if kind == "p" and val == ":":
            parts = []
            while self.peek() != ("p", ";"):
                if self.peek()[0] is None or self.peek() == ("p", "}"):
                    break
                parts.append(self.take()[1])
            if self.peek() == ("p", ";"):
                self.take()
            return ("attr", name, " ".join(parts))
        if kind == "p" and val == "(":
            args = []
            while self.peek() != ("p", ")"):
                k, v = self.take()
                if k == "p" and v == ",":
                    continue
                args.append(v)
            self.expect(")")
            if self.peek() == ("p", "{"):
                self.take()
                group = _Group(name, args)
                while self.peek() != ("p", "}"):
                    stmt = self.parse_statement()
                    if stmt[0] == "attr":
                        group.attrs[stmt[1]] = stmt[2]
                    elif stmt[0] == "complex":
                        group.complex[stmt[1]] = stmt[2]
                    else:
                        group.groups.append(stmt[1])
                self.take()
                return ("group", group)
            if self.peek() == ("p", ";"):
                self.take()
            return ("complex", name, args)
        self._error(f"unexpected {val!r} after {name!r}")


def _floats(text):
    return [float(x) for x in str(text).replace(",", " ").split()]


@dataclass(frozen=True)
class PowerTable:
    """One internal-power lookup table (energy per transition, library units).

    ``variables`` name the axes in order (``total_output_net_capacitance``,
    ``input_transition_time`` ...); ``indices`` are their breakpoints and ``values`` has one
    axis per variable. A table without indices is a scalar.
    """

    variables: tuple
    indices: tuple
    values: np.ndarray

    def at(self, **point):
        """Value at a breakpoint or between breakpoints (multilinear, clamped at the ends)."""
        if not self.variables:
            return float(np.asarray(self.values).ravel()[0])
        vals = np.asarray(self.values, dtype=float)
        for axis, (var, idx) in enumerate(zip(self.variables, self.indices)):
            if var not in point:
                raise ValueError(f"table needs {var}; got {sorted(point)}")
            x = float(point[var])
            idx = np.asarray(idx, dtype=float)
            if len(idx) == 1:
                vals = np.take(vals, 0, axis=0)
                continue
            j = int(np.clip(np.searchsorted(idx, x) - 1, 0, len(idx) - 2))
            t = (x - idx[j]) / (idx[j + 1] - idx[j])
            vals = np.take(vals, j, axis=0) * (1 - t) + np.take(vals, j + 1, axis=0) * t
        return float(vals)


@dataclass(frozen=True)
class InternalPower:
    """An ``internal_power`` group of a pin: energies of its rise and fall transitions."""

    related_pin: str | None
    when: str | None
    rise: PowerTable | None
    fall: PowerTable | None


@dataclass(frozen=True)
class Pin:
    name: str
    direction: str
    capacitance: float          # library capacitance units
    function: str | None
    is_clock: bool
    internal_power: tuple = ()


@dataclass(frozen=True)
class Cell:
    name: str
    area: float
    leakage: float              # library leakage-power units
    pins: dict
    ff: dict | None             # {"clocked_on", "next_state", "clear", "preset", "outputs"}
    latch: bool

    def outputs(self):
        return [p for p in self.pins.values() if p.direction == "output"]

    def inputs(self):
        return [p for p in self.pins.values() if p.direction == "input"]

    @property
    def is_simple_dff(self):
        """A rising-edge D flip-flop without set/reset: D in, CLK in, Q = stored value."""
        if not self.ff or self.ff.get("clear") or self.ff.get("preset"):
            return False
        clk = self.ff["clocked_on"].strip()
        nxt = self.ff["next_state"].strip()
        return (clk in self.pins and nxt in self.pins and len(self.inputs()) == 2
                and any(p.function and p.function.strip() == self.ff["outputs"][0]
                        for p in self.outputs()))


@dataclass(frozen=True)
class Library:
    """What the flow needs from a liberty file (see the module docstring)."""

    path: Path
    name: str
    time_unit: float            # seconds per library time unit
    cap_unit: float             # farads per library capacitance unit
    voltage_unit: float         # volts per library voltage unit
    leakage_unit: float         # watts per library leakage-power unit
    nom_voltage: float
    cells: dict

    def energy_scale(self):
        """Joules per internal-power table unit (capacitance unit x voltage unit squared)."""
        return self.cap_unit * self.voltage_unit ** 2

    def flip_flop(self):
        """The smallest simple rising-edge D flip-flop, as (cell, clock pin, D pin, Q pin)."""
        dffs = sorted((c for c in self.cells.values() if c.is_simple_dff),
                      key=lambda c: (c.area, c.name))
        if not dffs:
            raise UserError(
                f"liberty {self.path} has no plain D flip-flop (a cell with an ff group, a "
                f"clock and a D input and no set/reset), which synthesis needs to map the "
                f"MAC's registers; use a complete standard-cell library")
        cell = dffs[0]
        q = next(p.name for p in cell.outputs()
                 if p.function and p.function.strip() == cell.ff["outputs"][0])
        return cell, cell.ff["clocked_on"].strip(), cell.ff["next_state"].strip(), q

    def buffer(self):
        """The smallest non-inverting buffer, as (cell, input pin, output pin)."""
        bufs = []
        for c in self.cells.values():
            ins, outs = c.inputs(), c.outputs()
            if (len(ins) == 1 and len(outs) == 1 and not c.ff and not c.latch
                    and outs[0].function and outs[0].function.strip() == ins[0].name):
                bufs.append(c)
        if not bufs:
            raise UserError(f"liberty {self.path} has no buffer cell (one input A, output "
                            f"function 'A'), which the netlist writer needs; use a complete "
                            f"standard-cell library")
        cell = min(bufs, key=lambda c: (c.area, c.name))
        return cell, cell.inputs()[0].name, cell.outputs()[0].name


def _unit(text, default, base):
    """'1ns' -> 1e-9 (base 's'); returns default when absent."""
    if text is None:
        return default
    m = re.fullmatch(r"\s*([0-9.eE+-]*)\s*([fpnumk]?)" + base + r"\s*", str(text).strip('"'))
    if not m:
        return default
    return float(m.group(1) or 1) * _SI[m.group(2)]


def _table(group, templates):
    if group is None:
        return None
    tmpl = templates.get(group.args[0] if group.args else "", {})
    variables, indices = [], []
    for k in (1, 2, 3):
        var = tmpl.get(f"variable_{k}")
        if var is None:
            break
        idx = group.complex.get(f"index_{k}") or tmpl.get(f"index_{k}")
        variables.append(var)
        indices.append(tuple(_floats(" ".join(idx)) if isinstance(idx, list) else _floats(idx)))
    rows = [_floats(v) for v in group.complex.get("values", [])]
    values = np.array(rows, dtype=float)
    if variables:
        values = values.reshape([len(i) for i in indices])
    return PowerTable(tuple(variables), tuple(indices), values)


def read_liberty(path):
    """Parse a liberty file into a :class:`Library`.

    Raises
    ------
    UserError
        The file is missing, unreadable or not Liberty, or it holds no cells.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise UserError(f"liberty file {path} not found; pass an existing .lib with "
                        f"--liberty (the default comes from the Debian package "
                        f"'qflow-tech-osu018')") from None
    except OSError as exc:
        raise UserError(f"liberty file {path} is unreadable ({exc.strerror})") from None
    parser = _Parser(text, path)
    if not parser.tokens:
        raise UserError(f"liberty {path} is empty; is it a Liberty file?")
    stmt = parser.parse_statement()
    if stmt[0] != "group" or stmt[1].kind != "library":
        raise UserError(f"liberty {path} does not start with a library(...) group; "
                        f"is it a Liberty file?")
    lib = stmt[1]
    templates = {}
    for kind in ("lu_table_template", "power_lut_template"):
        for g in lib.children(kind):
            entry = dict(g.attrs)
            for k, v in g.complex.items():
                entry[k] = v
            templates[g.args[0]] = entry
    cap = lib.complex.get("capacitive_load_unit")
    cap_unit = (float(cap[0]) * _SI[cap[1].lower()[0] if cap[1].lower() != "ff" else "f"]
                if cap else 1e-12)
    cells = {}
    for cg in lib.children("cell"):
        pins = {}
        for pg in cg.children("pin"):
            powers = []
            for ig in pg.children("internal_power"):
                rise = next(iter(ig.children("rise_power")), None)
                fall = next(iter(ig.children("fall_power")), None)
                powers.append(InternalPower(
                    ig.attrs.get("related_pin", "").strip('"') or None,
                    ig.attrs.get("when", "").strip('"') or None,
                    _table(rise, templates), _table(fall, templates)))
            for name in pg.args:
                pins[name] = Pin(
                    name=name,
                    direction=pg.attrs.get("direction", "").strip('"'),
                    capacitance=float(pg.attrs.get("capacitance", 0) or 0),
                    function=pg.attrs.get("function", "").strip('"') or None,
                    is_clock=pg.attrs.get("clock", "false").strip('"') == "true",
                    internal_power=tuple(powers))
        ff = None
        ffs = cg.children("ff")
        if ffs:
            g = ffs[0]
            ff = {"clocked_on": g.attrs.get("clocked_on", "").strip('"'),
                  "next_state": g.attrs.get("next_state", "").strip('"'),
                  "clear": g.attrs.get("clear", "").strip('"') or None,
                  "preset": g.attrs.get("preset", "").strip('"') or None,
                  "outputs": list(g.args)}
        cells[cg.args[0]] = Cell(
            name=cg.args[0],
            area=float(cg.attrs.get("area", 0) or 0),
            leakage=float(cg.attrs.get("cell_leakage_power", 0) or 0),
            pins=pins, ff=ff, latch=bool(cg.children("latch")))
    if not cells:
        raise UserError(f"liberty {path} defines no cells; use a standard-cell library")
    nom_v = lib.attrs.get("nom_voltage")
    return Library(
        path=path,
        name=lib.args[0] if lib.args else path.stem,
        time_unit=_unit(lib.attrs.get("time_unit"), 1e-9, "s"),
        cap_unit=cap_unit,
        voltage_unit=_unit(lib.attrs.get("voltage_unit"), 1.0, "V"),
        leakage_unit=_unit(lib.attrs.get("leakage_power_unit"), 1e-9, "W"),
        nom_voltage=float(nom_v) if nom_v else float("nan"),
        cells=cells,
    )
