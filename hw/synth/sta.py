"""Static timing with OpenSTA: minimum cycle time, critical path, and the electrical operating
point (slews and loads) that the energy model reads the liberty tables at.

Constraints (all derived from the liberty, so another library works unchanged):

* one ideal clock on the clock port;
* the other inputs come from registers of a neighbouring unit: input delay 0 and the library's
  D flip-flop's Q pin as driving cell;
* the outputs go to registers: output delay 0 and the flip-flop's D-pin capacitance as load.

So every path counts -- input -> multiplier -> product register, register -> adder ->
accumulator, accumulator -> cyclic activation -> output -- and the minimum cycle time is
``period - worst setup slack`` at any trial period. One ``sta`` run measures it, re-creates the
clock at that period, reports the critical path, writes an SDF file with the cell delays for
the timed gate-level simulation, and prints each leaf pin's slews and each driver's load.
"""

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from .liberty import Library
from .tools import ToolError, run_tool

__all__ = ["TimingResult", "parse_pin_dump", "parse_worst_slack", "run_sta",
           "sdf_for_simulation"]

# A trial period far longer than any MAC path (library time units), so the slack is positive.
_TRIAL_PERIOD = 1000.0


@dataclass(frozen=True)
class TimingResult:
    """What OpenSTA reported.

    Attributes
    ----------
    min_period : float
        Minimum cycle time in seconds (critical path delay plus setup time).
    critical_path : str
        OpenSTA's report of the critical path at the minimum period.
    startpoint, endpoint : str
    sdf : Path
        Cell delays at the minimum period's corner, in the form Icarus annotates
        (:func:`sdf_for_simulation`); OpenSTA's own file is ``netlist.sdf`` beside it.
    slews : dict
        Leaf pin path -> (rise, fall) transition time in seconds.
    loads : dict
        Driver pin path -> (rise, fall) capacitance it drives in farads (pins and wires).
    vectorless : dict
        Leaf instance path -> (internal, switching, leakage) watts from OpenSTA's own
        ``report_power`` model with every non-clock pin at activity 0.1, duty 0.5 (for
        cross-checking the switching term; see docs/estimation.md for why the flow does not
        use its internal term).
    """

    min_period: float
    critical_path: str
    startpoint: str
    endpoint: str
    sdf: Path
    slews: dict = field(repr=False)
    loads: dict = field(repr=False)
    vectorless: dict = field(repr=False)


def _tcl_constraints(liberty: Library, clock, period):
    ff, clk_pin, d_pin, q_pin = liberty.flip_flop()
    load = ff.pins[d_pin].capacitance
    return [
        f"create_clock -name {clock} -period {period:.6g} [get_ports {{{clock}}}]",
        f"set wk_inputs [delete_from_list [all_inputs] [get_ports {{{clock}}}]]",
        "set_input_delay 0 -clock " + clock + " $wk_inputs",
        f"set_driving_cell -lib_cell {ff.name} -pin {q_pin} $wk_inputs",
        "set_output_delay 0 -clock " + clock + " [all_outputs]",
        f"set_load {load:.6g} [all_outputs]",
    ]


def sta_script(netlist, top, liberty: Library, clock, out_dir):
    """The OpenSTA Tcl script of :func:`run_sta`."""
    lines = [
        f"read_liberty {{{liberty.path}}}",
        f"read_verilog {{{netlist}}}",
        f"link_design {{{top}}}",
        *_tcl_constraints(liberty, clock, _TRIAL_PERIOD),
        "report_wns",
        "set wk_ws [sta::worst_slack -max]",
        f"set wk_period [expr {{{_TRIAL_PERIOD} - $wk_ws}}]",
        # OpenSTA computes in single precision: at the trial period the slack is good to
        # ~1e-4 ns, so measure once more at the estimate (slack ~0, precise) and correct.
        f"create_clock -name {clock} -period $wk_period [get_ports {{{clock}}}]",
        "set wk_period [expr {$wk_period - [sta::worst_slack -max]}]",
        'puts "WK_MIN_PERIOD $wk_period"',
        # Re-create the clock at the minimum period: the critical path report, the SDF and
        # the power cross-check then describe the design at its operating point.
        f"create_clock -name {clock} -period $wk_period [get_ports {{{clock}}}]",
        'puts "WK_PATH_BEGIN"',
        "report_checks -path_delay max -digits 4",
        'puts "WK_PATH_END"',
        f"write_sdf -digits 4 {{{Path(out_dir) / 'netlist.sdf'}}}",
        "set wk_corner [sta::cmd_corner]",
        "foreach wk_inst [get_cells -hierarchical *] {",
        "  foreach wk_pin [get_pins -of_objects $wk_inst] {",
        "    set wk_v [$wk_pin vertices]",
        "    if {[llength $wk_v] == 0} continue",
        "    set wk_line \"WK_PIN [get_full_name $wk_pin]\"",
        "    set wk_s [lindex $wk_v end]",
        "    append wk_line \" [lindex [$wk_s slews rise] end] [lindex [$wk_s slews fall] end]\"",
        "    if {[$wk_pin is_driver]} {",
        "      append wk_line \" [$wk_pin capacitance rise $wk_corner max]"
        " [$wk_pin capacitance fall $wk_corner max]\"",
        "    }",
        "    puts $wk_line",
        "  }",
        "}",
        "set_power_activity -global -activity 0.1 -duty 0.5",
        "foreach wk_inst [get_cells -hierarchical *] {",
        "  set wk_p [sta::instance_power $wk_inst $wk_corner]",
        "  puts \"WK_PWR [get_full_name $wk_inst] [lrange $wk_p 0 2]\"",
        "}",
    ]
    return "\n".join(lines) + "\n"


def parse_worst_slack(text):
    """The minimum period (library time units) printed by the script, or ValueError."""
    m = re.search(r"^WK_MIN_PERIOD\s+(\S+)", text, re.M)
    if not m:
        raise ValueError("no WK_MIN_PERIOD line in the OpenSTA output")
    value = float(m.group(1))
    if not math.isfinite(value) or value <= 0 or value >= _TRIAL_PERIOD:
        raise ValueError(f"OpenSTA reported no constrained path (minimum period {value}); "
                         f"is the clock port connected to the registers?")
    return value


def parse_pin_dump(text):
    """(slews, loads, vectorless power) from the WK_PIN / WK_PWR lines."""
    slews, loads, power = {}, {}, {}
    for line in text.splitlines():
        if line.startswith("WK_PIN "):
            parts = line.split()
            slews[parts[1]] = (float(parts[2]), float(parts[3]))
            if len(parts) >= 6:
                loads[parts[1]] = (float(parts[4]), float(parts[5]))
        elif line.startswith("WK_PWR "):
            parts = line.split()
            if len(parts) >= 5:
                power[parts[1]] = tuple(float(x) for x in parts[2:5])
    return slews, loads, power


_TRIPLE = re.compile(r"\((-?[0-9.eE+-]+)?:(-?[0-9.eE+-]+)?:(-?[0-9.eE+-]+)?\)")


def sdf_for_simulation(text):
    """OpenSTA writes delays as ``(min::max)`` with the typical value left empty, and Icarus
    annotates the typical value -- so it would silently keep the cell models' own delays.
    Rewrite every triple to its single maximum (the corner OpenSTA timed)."""
    def one(m):
        vals = [v for v in m.groups() if v is not None]
        return f"({max(float(v) for v in vals):.6g})" if vals else "()"
    return _TRIPLE.sub(one, text)


def _parse_path(text):
    m = re.search(r"WK_PATH_BEGIN\n(.*?)WK_PATH_END", text, re.S)
    report = m.group(1).strip() if m else ""
    start = re.search(r"^Startpoint:\s*(.+)$", report, re.M)
    end = re.search(r"^Endpoint:\s*(.+)$", report, re.M)
    return report, start.group(1).strip() if start else "", end.group(1).strip() if end else ""


def run_sta(netlist, top, liberty: Library, out_dir, *, clock="clk"):
    """Time the mapped netlist and collect its electrical operating point.

    Returns
    -------
    TimingResult

    Raises
    ------
    ToolError
        OpenSTA failed or printed no constrained path.
    """
    out_dir = Path(out_dir).resolve()
    (out_dir / "sta.tcl").write_text(sta_script(Path(netlist).resolve(), top, liberty, clock,
                                                out_dir))
    proc = run_tool("sta", ["-no_init", "-no_splash", "-exit", "sta.tcl"], cwd=out_dir,
                    stage="timing", log_name="sta.log")
    text = proc.stdout
    errors = [ln for ln in text.splitlines() if ln.startswith("Error")]
    if errors:
        raise ToolError(f"timing: OpenSTA reported {errors[0]!r} (log {out_dir / 'sta.log'})")
    try:
        period_units = parse_worst_slack(text)
    except ValueError as exc:
        raise ToolError(f"timing: {exc} (log {out_dir / 'sta.log'})") from None
    slews, loads, power = parse_pin_dump(text)
    report, start, end = _parse_path(text)
    sim_sdf = out_dir / "netlist.sim.sdf"
    sim_sdf.write_text(sdf_for_simulation((out_dir / "netlist.sdf").read_text()))
    return TimingResult(
        min_period=period_units * liberty.time_unit, critical_path=report, startpoint=start,
        endpoint=end, sdf=sim_sdf, slews=slews, loads=loads,
        vectorless=power)
