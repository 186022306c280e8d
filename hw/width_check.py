"""Structural width check: is the accumulation path as narrow as the design claims?

Cosimulation cannot tell an 8-bit accumulator from a 16-bit one whose output keeps the low 8
bits: wrapping arithmetic makes them agree on every output. Only the structure shows the
wasted area, so this check reads the design's flattened dataflow (pyverilog, via
:func:`~.verilog_reader.read_dataflow`) and

1. finds every *accumulator*: a register that feeds back into itself through an adder whose
   cone also holds a multiplication -- a ``*``, or the negation by which binary and ternary
   weights multiply -- directly or through earlier registers such as a product register
   (counters, ``n <= n + 1``, are not accumulators);
2. walks the accumulator's input cone backwards through combinational logic, tracking how
   many low bits of each signal the register can actually see (a sum written into a 33-bit
   wire and then sliced ``[31:0]`` keeps 32 bits; low bits of a sum or product depend only
   on low bits of the operands) -- except where a condition (a mux select, a comparison)
   reads a signal: that reads every bit, so an adder whose carry decides a saturation keeps
   it;
3. passes when the register is exactly ``acc_bits`` wide, every adder on its feedback loop
   keeps exactly ``acc_bits`` bits, and no register whose value (not just a condition on it)
   reaches the accumulator is wider than ``acc_bits``.

An adder's *kept* width is what matters, not the width Verilog declares for its result:
Amaranth writes every sum one bit wider than its operands and slices the carry off, which
synthesis removes; a widened register that is truncated only at the output is real area.
"""

from dataclasses import dataclass, field
from pathlib import Path

from wrapkit.common.errors import FlagError, UserError

from .verilog_reader import read_dataflow

__all__ = ["Accumulator", "WidthReport", "check_dataflow", "check_design", "check_file"]

# Operators whose low result bits depend only on the same low bits of their operands.
_LOW_BITS = {"Plus", "Minus", "Times", "And", "Or", "Xor", "Xnor", "Unot", "Uminus", "Uplus"}
_ADDERS = {"Plus": "+", "Minus": "-"}
_SHIFT_LEFT = {"Sll", "Sla"}
# A product: ``*``, or the negation by which binary and ternary weights multiply (``w ? -a : a``).
_MULTIPLIES = {"Times", "Uminus"}


@dataclass
class _Cone:
    """What a backward walk found.

    ``registers``: registers reached as data (name -> bits used); ``control_registers``:
    registers reached only through conditions; ``adders``: (owner, op) -> [declared width,
    bits kept, registers its operands reach, whether a condition reads it]; ``signals``:
    combinational signals ``(name, width, bits used)`` in visiting order; ``multiplies``:
    a multiplication is in the cone.
    """

    registers: dict = field(default_factory=dict)
    control_registers: dict = field(default_factory=dict)
    adders: dict = field(default_factory=dict)
    signals: list = field(default_factory=list)
    multiplies: bool = False

    def merge(self, other):
        for mine, theirs in ((self.registers, other.registers),
                             (self.control_registers, other.control_registers)):
            for name, need in theirs.items():
                mine[name] = max(need, mine.get(name, 0))
        for key, (declared, kept, regs, compared) in other.adders.items():
            if key in self.adders:
                old = self.adders[key]
                self.adders[key] = [declared, max(kept, old[1]), regs | old[2],
                                    compared or old[3]]
            else:
                self.adders[key] = [declared, kept, regs, compared]
        seen = set(self.signals)
        self.signals += [s for s in other.signals if s not in seen]
        self.multiplies |= other.multiplies

    def reached(self):
        return frozenset(self.registers) | frozenset(self.control_registers)


@dataclass
class Accumulator:
    """One accumulator register and its path: ``adders`` on the feedback loop
    ``(owner, op, declared, kept, read by a condition)``, registers ``feeding`` it ``(name, width, bits used)``,
    the combinational ``signals`` between, and the ``problems`` found."""

    register: str
    width: int
    adders: list
    feeding: list
    signals: list
    problems: list

    @property
    def ok(self):
        return not self.problems


@dataclass
class WidthReport:
    """The check's outcome for one design; :meth:`text` is what ``wrapkit rtl check``
    prints."""

    design: str
    source: str
    acc_bits: int
    accumulators: list
    problems: list

    @property
    def ok(self):
        return bool(self.accumulators) and not self.problems and all(
            a.ok for a in self.accumulators)

    @property
    def path_widths(self):
        """Sorted distinct widths of the accumulators and the adders on their loops."""
        return sorted({a.width for a in self.accumulators}
                      | {kept for a in self.accumulators for _, _, _, kept, _ in a.adders})

    def to_dict(self):
        return {"design": self.design, "acc_bits": self.acc_bits, "ok": self.ok,
                "accumulators": len(self.accumulators), "path_widths": self.path_widths,
                "problems": self.problems + [p for a in self.accumulators for p in a.problems]}

    def text(self):
        short = _Shortener(self.design)
        lines = [f"{self.design} ({self.source}): expected accumulation width {self.acc_bits} "
                 f"bits; {len(self.accumulators)} accumulator(s)"]
        for i, acc in enumerate(self.accumulators):
            if i == 0:
                lines += _path_lines(acc, short)
            else:
                kept = ", ".join(f"{op}{k}" for _, op, _, k, _ in acc.adders)
                lines.append(f"accumulator {short(acc.register)}: register {acc.width} bits, "
                             f"loop adders {kept or 'none'}"
                             + ("" if acc.ok else " -- " + "; ".join(acc.problems)))
        problems = self.problems + [p for a in self.accumulators for p in a.problems]
        if self.ok:
            lines.append(f"PASS: every accumulator register and every adder on its loop is "
                         f"{self.acc_bits} bits; no register wider than {self.acc_bits} bits "
                         f"feeds an accumulator")
        else:
            lines.append(f"FAIL: {len(problems)} problem(s)")
            lines += [f"  - {p}" for p in problems]
        return "\n".join(lines)


class _Shortener:
    def __init__(self, top):
        self.prefix = f"{top}."

    def __call__(self, name):
        return name[len(self.prefix):] if name.startswith(self.prefix) else name


def _path_lines(acc, short):
    lines = [f"accumulator {short(acc.register)}: register {acc.width} bits"]
    for owner, op, declared, kept, compared in acc.adders:
        read = "; a condition reads all of them" if compared else ""
        lines.append(f"  adder     {short(owner)} ({op}): {declared} bits declared, {kept} kept "
                     f"(on the feedback loop{read})")
    for name, width, need in acc.signals:
        lines.append(f"  wire      {short(name)}: {width} bits, {need} used")
    for name, width, need in acc.feeding:
        if name != acc.register:
            lines.append(f"  register  {short(name)}: {width} bits, {need} used (feeds the "
                         f"accumulator)")
    return lines


def _const(node):
    from pyverilog.dataflow.dataflow import DFEvalValue, DFIntConst

    if isinstance(node, DFEvalValue):
        return int(node.value)
    if isinstance(node, DFIntConst):
        return int(node.eval())
    return None


class _Walker:
    """Backward walks through a :class:`~.verilog_reader.Dataflow`, memoized per signal."""

    def __init__(self, df):
        self.df = df
        self.memo = {}
        self.values = {}

    def value(self, node):
        """A canonical text of what ``node`` computes: branches with equal sides collapse."""
        from pyverilog.dataflow import dataflow as d

        if node is None:
            return ""
        key = id(node)
        if key not in self.values:
            if isinstance(node, d.DFBranch):
                t, f = self.value(node.truenode), self.value(node.falsenode)
                text = t if t == f else f"(? {node.condnode.tostr()} {t} {f})"
            else:
                text = node.tostr()
            self.values[key] = (node, text)    # the node is kept so its id stays unique
        return self.values[key][1]

    def width_of(self, node):
        from pyverilog.dataflow import dataflow as d

        if isinstance(node, d.DFTerminal):
            return self.df.widths.get(str(node.name), 1)
        if isinstance(node, d.DFPartselect):
            msb, lsb = _const(node.msb), _const(node.lsb)
            return msb - lsb + 1 if msb is not None and lsb is not None else 1
        if isinstance(node, d.DFPointer):
            return 1
        if isinstance(node, d.DFIntConst):
            return node.width()
        if isinstance(node, d.DFEvalValue):
            return int(node.width)
        if isinstance(node, d.DFConcat):
            return sum(self.width_of(n) for n in node.nextnodes)
        if isinstance(node, d.DFBranch):
            return max(self.width_of(n) for n in (node.truenode, node.falsenode)
                       if n is not None)
        if isinstance(node, d.DFOperator):
            return max(self.width_of(n) for n in node.nextnodes)
        return 1

    def signal(self, name, need, control=False):
        """The cone of signal ``name`` of which ``need`` low bits are used (all of them when
        a condition reads it: ``control``)."""
        width = self.df.widths.get(name)
        need = min(need, width) if width else need
        if name in self.df.registers:
            return (_Cone(control_registers={name: need}) if control
                    else _Cone(registers={name: need}))
        key = (name, need, control)
        if key in self.memo:
            return self.memo[key]
        self.memo[key] = _Cone()          # a combinational loop ends here
        cone = _Cone()
        for bind in self.df.drivers.get(name, ()):
            cone.merge(self.tree(bind.tree, need, name, width or need, control))
        if name not in self.df.inputs and self.df.drivers.get(name) and not control:
            cone.signals.insert(0, (name, width, need))
        self.memo[key] = cone
        return cone

    def register_input(self, name):
        """The cone of register ``name``'s next-state logic (its clocked assignments)."""
        width = self.df.widths[name]
        cone = _Cone()
        for bind in self.df.drivers.get(name, ()):
            if bind.alwaysinfo is not None and bind.alwaysinfo.isClockEdge():
                cone.merge(self.tree(bind.tree, width, name, width))
        return cone

    def condition(self, node):
        """A condition reads every bit of what it compares."""
        return self.tree(node, self.width_of(node), "", self.width_of(node), True)

    def tree(self, node, need, owner, declared, control=False):
        from pyverilog.dataflow import dataflow as d

        if need <= 0 or node is None:
            return _Cone()
        if isinstance(node, d.DFTerminal):
            return self.signal(str(node.name), need, control)
        if isinstance(node, d.DFPartselect):
            lsb, msb = _const(node.lsb), _const(node.msb)
            if lsb is None or msb is None:
                return self.tree(node.var, self.width_of(node.var), owner, declared, control)
            return self.tree(node.var, lsb + min(need, msb - lsb + 1), owner, declared, control)
        if isinstance(node, d.DFPointer):
            ptr = _const(node.ptr)
            return self.tree(node.var, (ptr + 1) if ptr is not None
                             else self.width_of(node.var), owner, declared, control)
        if isinstance(node, d.DFBranch):
            if self.value(node.truenode) == self.value(node.falsenode):
                # pyverilog copies an always block's later if-conditions into the trees of
                # registers assigned before them, with the same value on both sides.
                return self.tree(node.truenode, need, owner, declared, control)
            cone = _Cone()                    # never merge into a memoized cone
            cone.merge(self.condition(node.condnode))
            for branch in (node.truenode, node.falsenode):
                cone.merge(self.tree(branch, need, owner, declared, control))
            return cone
        if isinstance(node, d.DFConcat):
            cone = _Cone()
            offset = 0
            for part in reversed(node.nextnodes):       # the last part holds the low bits
                part_width = self.width_of(part)
                if offset < need:
                    cone.merge(self.tree(part, min(part_width, need - offset), owner,
                                         declared, control))
                offset += part_width
            return cone
        if isinstance(node, d.DFOperator):
            op = node.operator
            if op in _LOW_BITS:
                # A product that only steers a condition does not make an accumulator.
                cone = _Cone(multiplies=op in _MULTIPLIES and not control)
                for operand in node.nextnodes:
                    cone.merge(self.tree(operand, need, owner, declared, control))
                if op in _ADDERS:
                    key = (owner or "(condition)", _ADDERS[op])
                    new = _Cone(adders={key: [declared, min(need, declared), cone.reached(),
                                              control]})
                    new.merge(cone)
                    return new
                return cone
            if op in _SHIFT_LEFT and len(node.nextnodes) == 2:
                amount = _const(node.nextnodes[1])
                if amount is not None:
                    return self.tree(node.nextnodes[0], need - amount, owner, declared,
                                     control)
            cone = _Cone()                    # comparisons, reductions ...: read every bit
            for operand in node.nextnodes:
                cone.merge(self.condition(operand))
            return cone
        if isinstance(node, d.DFSyscall):     # $signed / $unsigned
            cone = _Cone()
            for operand in node.nextnodes:
                cone.merge(self.tree(operand, need, owner, declared, control))
            return cone
        return _Cone()                        # constants


def check_dataflow(df, acc_bits, *, source=""):
    """Check every accumulator of a flattened design (see the module docstring).

    Parameters
    ----------
    df : Dataflow
        From :func:`~.verilog_reader.read_dataflow`.
    acc_bits : int
        The width the design claims for its accumulators.
    source : str
        What to call the design's file in the report.

    Returns
    -------
    WidthReport
    """
    walker = _Walker(df)
    cones = {r: walker.register_input(r) for r in sorted(df.registers)}

    fed_by_multiplier = {}

    def multiplied(reg, seen=()):
        if reg in fed_by_multiplier:
            return fed_by_multiplier[reg]
        cone = cones[reg]
        result = cone.multiplies or any(
            multiplied(other, (*seen, reg)) for other in cone.registers
            if other != reg and other not in seen and other in cones)
        if not seen:
            fed_by_multiplier[reg] = result
        return result

    accumulators = []
    for reg, cone in cones.items():
        loop = [(owner, op, declared, kept, compared)
                for (owner, op), (declared, kept, regs, compared) in cone.adders.items()
                if reg in regs]
        if not loop or not multiplied(reg):
            continue
        width = df.widths[reg]
        problems = []
        if width != acc_bits:
            problems.append(f"accumulator register {reg} is {width} bits, not {acc_bits}")
        adders = []
        for owner, op, declared, kept, compared in loop:
            adders.append((owner, op, declared, kept, compared))
            if kept != acc_bits:
                why = " (a condition reads all of them)" if compared else ""
                problems.append(f"adder {owner} ({op}) on the loop of {reg} keeps {kept} bits"
                                f"{why}, not {acc_bits}")
        feeding = [(name, df.widths.get(name, need), need)
                   for name, need in sorted(cone.registers.items())]
        for name, reg_width, _ in feeding:
            if name != reg and reg_width > acc_bits:
                problems.append(f"register {name} ({reg_width} bits) feeds accumulator {reg} "
                                f"and is wider than {acc_bits} bits")
        accumulators.append(Accumulator(reg, width, adders, feeding, cone.signals, problems))
    problems = [] if accumulators else [
        "no accumulation path found: no register feeds back into itself through an adder "
        "whose cone holds a multiplication"]
    return WidthReport(df.top, source, acc_bits, accumulators, problems)


def check_design(paths, top, acc_bits, *, source=None):
    """:func:`check_dataflow` of the Verilog ``paths`` below module ``top``."""
    paths = [Path(p) for p in paths]
    return check_dataflow(read_dataflow(paths, top), acc_bits,
                          source=source or ", ".join(str(p) for p in paths))


def _manifest_acc_bits(manifest, path):
    design = manifest.get("design")
    config = manifest.get("config") or {}
    if design == "mac":
        return config["acc_bits"]
    if design == "array":
        return config["mac"]["acc_bits"]
    raise UserError(f"{path} describes a {design!r} design, which has no multiply-accumulate "
                    f"path to check; give a MAC or array design")


def check_file(verilog, *, manifest=None, top=None, acc_bits=None):
    """``wrapkit rtl check``: the width check of one Verilog file.

    Parameters
    ----------
    verilog : path-like
    manifest : path-like, optional
        Default: ``<verilog stem>.json`` beside it, when present. It gives the top and
        ``acc_bits``; its checksum is not required to match (the file may be a copy under
        study).
    top : str, optional
        Overrides the manifest's; default the file stem without a manifest.
    acc_bits : int, optional
        Overrides the manifest's; required without a manifest.
    """
    from .manifest import load_manifest

    verilog = Path(verilog)
    if not verilog.is_file():
        raise UserError(f"Verilog file {verilog} not found; give a design such as "
                        f"rtl/mac_a8s_wu8_acc8_k2.v")
    if manifest is None and verilog.with_suffix(".json").is_file():
        manifest = verilog.with_suffix(".json")
    if manifest is not None:
        m = load_manifest(manifest, check_verilog=False)
        top = top or m["top"]
        if acc_bits is None:
            acc_bits = _manifest_acc_bits(m, manifest)
    top = top or verilog.stem
    if acc_bits is None:
        raise FlagError("--acc-bits", f"is needed: {verilog} has no manifest beside it; give "
                                      f"--acc-bits N or --manifest FILE.json")
    if isinstance(acc_bits, bool) or not isinstance(acc_bits, int) or acc_bits < 1:
        raise FlagError("--acc-bits", f"must be an integer >= 1, got {acc_bits!r}")
    return check_design([verilog], top, acc_bits, source=str(verilog))
