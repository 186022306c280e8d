"""What a proof returns: its status, timing and, when it fails, a counterexample trace."""

from dataclasses import dataclass, field

__all__ = ["PROOF_STATUSES", "Counterexample", "ProofResult", "report_lines"]

#: ``proved``: holds for every input (sequence); ``failed``: a counterexample from the
#: design's initial state (or, combinational, for some input); ``unproved``: no counterexample
#: within the depth, but the induction step failed, so the property is neither shown nor
#: refuted at this depth; ``timeout``: a tool ran past the time limit.
PROOF_STATUSES = ("proved", "failed", "unproved", "timeout")


@dataclass(frozen=True)
class Counterexample:
    """A trace on which the RTL and the model disagree.

    Attributes
    ----------
    inputs : list of str
        Input names, in the order the table shows them.
    outputs : list of str
        Compared outputs (each has an expected and an actual value per cycle).
    cycles : list of dict
        One entry per cycle: ``{"cycle": i, "inputs": {name: value},
        "expected": {name: value}, "actual": {name: value}}`` (signed values where the port
        is signed; None where undefined).
    failing_cycle : int
        The cycle at which an output first differs.
    origin : str
        ``"initial state"`` for a trace from the design's start-up values,
        ``"arbitrary state"`` for an induction-step trace (its first state may be
        unreachable), or ``"any input"`` for a combinational design (one row).
    """

    inputs: list
    outputs: list
    cycles: list
    failing_cycle: int
    origin: str = "initial state"

    def to_dict(self):
        return {"inputs": self.inputs, "outputs": self.outputs, "cycles": self.cycles,
                "failing_cycle": self.failing_cycle, "origin": self.origin}

    def lines(self):
        """The trace as an aligned text table; the failing cycle is marked with ``<--``."""
        head = ["cycle"] + self.inputs
        for name in self.outputs:
            head += [f"{name} expected", f"{name} actual"]
        rows = []
        for entry in self.cycles:
            row = [str(entry["cycle"])] + [_show(entry["inputs"][n]) for n in self.inputs]
            for name in self.outputs:
                row += [_show(entry["expected"][name]), _show(entry["actual"][name])]
            rows.append(row)
        widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
        out = ["  ".join(h.rjust(w) for h, w in zip(head, widths))]
        for entry, row in zip(self.cycles, rows):
            mark = "  <-- mismatch" if entry["cycle"] == self.failing_cycle else ""
            out.append("  ".join(v.rjust(w) for v, w in zip(row, widths)) + mark)
        return out


def _show(value):
    return "x" if value is None else str(value)


@dataclass
class ProofResult:
    """One proof of one design.

    Attributes
    ----------
    design : str
        The design's top module name.
    property : str
        What is proved, in words.
    method : str
        ``"sat"`` (combinational equivalence, all inputs at once) or ``"bmc+k-induction"``.
    depth : int
        Clock cycles unrolled (0 for a combinational proof).
    status : str
        One of :data:`PROOF_STATUSES`.
    seconds : float
        Wall time of the tools.
    detail : str
        One line: which check failed or what was shown.
    counterexample : Counterexample or None
    """

    design: str
    property: str
    method: str
    depth: int
    status: str
    seconds: float
    detail: str = ""
    counterexample: Counterexample | None = field(default=None)

    @property
    def proved(self):
        return self.status == "proved"

    def to_dict(self):
        record = {"design": self.design, "property": self.property, "method": self.method,
                  "depth": self.depth, "status": self.status,
                  "seconds": round(self.seconds, 3), "detail": self.detail}
        if self.counterexample is not None:
            record["counterexample"] = self.counterexample.to_dict()
        return record


def report_lines(result):
    """Console lines for one proof: a verdict line, then any counterexample table."""
    verdict = {"proved": "PROVED", "failed": "FAILED", "unproved": "NOT PROVED",
               "timeout": "TIMEOUT"}[result.status]
    depth = f", depth {result.depth}" if result.method != "sat" else ""
    lines = [f"{result.design}: {verdict} ({result.method}{depth}, {result.seconds:.1f} s) "
             f"{result.property}"]
    if result.detail:
        lines.append(f"  {result.detail}")
    cex = result.counterexample
    if cex is not None:
        where = {"initial state": "counterexample from the initial state (cycle i: inputs "
                                  "presented and outputs seen after i clock edges):",
                 "arbitrary state": "induction-step trace from an arbitrary state (which may "
                                    "be unreachable from reset):",
                 "any input": "counterexample:"}[cex.origin]
        lines.append(f"  {where}")
        lines += [f"    {line}" for line in cex.lines()]
    return lines
