"""Bounded model checking plus k-induction: a generated MAC equals its behavioural model.

The miter drives the design and :func:`~wrapkit.formal.models.mac_model_verilog` with the same
clock, reset and operand inputs (all free: every input sequence) and asserts on every cycle
that ``acc`` and, with a cyclic unit, ``y`` agree. Yosys writes it as SMT-LIB2
(``write_smt2``); yosys-smtbmc with z3 then runs

1. **BMC**, ``depth`` cycles from the initial state (both sides start from their declared
   start-up values, 0): any disagreement reachable within ``depth`` cycles is found, with
   its trace. A design imported with ``wrapkit rtl import`` declares no start-up values (its
   registers power up unknown, as hand-written RTL usually does), so for it the outputs are
   compared from the cycle after its first reset on: that is the behaviour its users rely on;
2. **k-induction** of the same depth: from *any* state, ``depth`` consecutive cycles on which
   the assertions hold are always followed by one on which they hold. With step 1 this
   proves the assertions on every cycle of every input sequence.

Induction goes through once both operand pipelines hold values taken from the inputs:
a depth equal to the latency (2) already proves every generated MAC. The default depth of 4
lets BMC also see two operations reach the accumulator, so that a bug shows up as a short
trace from reset rather than only as a failed induction step.

yosys-smtbmc runs non-incrementally with unrolled functions (``--noincr --unroll``): z3 then
sees each query as one flat formula and can match the design's multiplier with the model's
by substitution instead of bit-level search (for the 8x8 MAC with a 32-bit accumulator the
induction step drops from about 40 s to about 8 s).
"""

import time
from pathlib import Path

from wrapkit.common.errors import UserError
from wrapkit.hw.manifest import mac_config, port

from .models import (CYCLIC_MODEL, MAC_MODEL, cyclic_model_verilog, cyclic_model_width,
                     mac_model_verilog)
from .results import Counterexample, ProofResult
from .signals import as_signed
from .tools import ToolTimeout, require_tools, run_tool
from .vcd import read_steps

__all__ = ["DEFAULT_DEPTH", "compares_after_reset", "mac_miter_verilog", "mac_outputs", "prove_mac"]

#: Cycles unrolled by default (see the module docstring).
DEFAULT_DEPTH = 4

_MITER = "wrapkit_mac_miter"
_INPUTS = ("rst", "a", "w", "en", "clr")


def mac_outputs(cfg):
    """The compared outputs of a MAC: ``acc``, and ``y`` when it has a cyclic unit."""
    return ["acc"] if cfg.k is None else ["acc", "y"]


def _model_width(cfg, name):
    return cfg.acc_bits if name == "acc" else cyclic_model_width(cfg.acc_bits, cfg.k)


def compares_after_reset(manifest):
    """True for designs whose registers have no declared start-up value (imported RTL): the
    proof compares their outputs only once a reset has been applied."""
    return bool(manifest.get("imported"))


def mac_miter_verilog(manifest):
    """Verilog of the miter: design and model side by side, one assertion per output."""
    cfg = mac_config(manifest)
    top, clock, reset = manifest["top"], manifest["clock"], manifest["reset"]["port"]
    widths = {name: port(manifest, name)["width"] for name in ("a", "w")}
    outputs = mac_outputs(cfg)
    lines = [
        "// Every input is free; each assertion says one output of the design equals the",
        "// model's on this cycle.",
        f"module {_MITER}(clk, rst, a, w, en, clr);",
        "  input clk;",
        "  input rst;",
        f"  input [{widths['a'] - 1}:0] a;",
        f"  input [{widths['w'] - 1}:0] w;",
        "  input en;",
        "  input clr;",
    ]
    for name in outputs:
        lines += [f"  wire [{cfg.acc_bits - 1}:0] {name}_rtl;",
                  f"  wire signed [{_model_width(cfg, name) - 1}:0] {name}_model;"]
    rtl_out = "".join(f", .{name}({name}_rtl)" for name in outputs)
    model_out = "".join(f", .{name}({name}_model)" for name in outputs)
    lines += [
        f"  {top} rtl(.{clock}(clk), .{reset}(rst), .a(a), .w(w), .en(en), .clr(clr){rtl_out});",
        f"  {MAC_MODEL} model(.clk(clk), .rst(rst), .a(a), .w(w), .en(en), .clr(clr)"
        f"{model_out});",
    ]
    if compares_after_reset(manifest):
        lines += [
            "  // Hand-written registers power up unknown: compare from the first reset on.",
            "  reg reset_seen = 1'b0;",
            "  always @(posedge clk) if (rst) reset_seen <= 1'b1;",
            "  always @* if (reset_seen) begin",
        ]
    else:
        lines.append("  always @* begin")
    for name in outputs:
        lines.append(f"    {name}_matches: assert ($signed({name}_rtl) == {name}_model);")
    lines += ["  end", "endmodule"]
    return "\n".join(lines) + "\n"


def _check_reset(manifest, path_hint):
    reset = manifest["reset"] or {}
    if manifest["clock"] is None or not reset.get("sync") or reset.get("active") != "high":
        raise UserError(f"{path_hint}: the MAC proof models a clocked design with a "
                        f"synchronous active-high reset, but the manifest declares clock "
                        f"{manifest['clock']!r} and reset {manifest['reset']!r}; regenerate it "
                        f"with `wrapkit rtl`")


def _smtbmc(workdir, depth, induction, timeout):
    """Run one yosys-smtbmc pass; returns (status, failed assertion names, vcd path, seconds)."""
    vcd = "induction.vcd" if induction else "bmc.vcd"
    cmd = ["yosys-smtbmc", "-s", "z3", "--noincr", "--unroll", "--noprogress",
           "-t", str(depth), "--dump-vcd", vcd]
    if induction:
        cmd.append("-i")
    cmd.append("miter.smt2")
    start = time.monotonic()
    proc = run_tool(cmd, workdir, timeout=timeout, ok_codes=(0, 1))
    seconds = time.monotonic() - start
    log = proc.stdout
    (workdir / ("induction.log" if induction else "bmc.log")).write_text(
        log + proc.stderr, encoding="utf-8")
    if "Status: PASSED" in log:
        return "passed", [], None, seconds
    if "Status: FAILED" not in log:
        lines = [line for line in (proc.stderr + log).splitlines() if line.strip()]
        raise UserError(f"yosys-smtbmc ended without a verdict: "
                        f"{lines[-1].strip()[:300] if lines else '(no output)'}")
    failed = sorted({line.rsplit(":", 1)[1].strip() for line in log.splitlines()
                     if "Assert failed in" in line})
    return "failed", failed, workdir / vcd, seconds


def _counterexample(manifest, vcd_path, origin):
    cfg = mac_config(manifest)
    widths, steps = read_steps(vcd_path)
    signed_inputs = {name: port(manifest, name)["signed"] for name in ("a", "w")}
    outputs = mac_outputs(cfg)
    cycles, failing = [], None
    checked_from_reset = compares_after_reset(manifest)
    for i, values in enumerate(steps):
        inputs = {name: as_signed(values.get(name), widths.get(name, 1),
                                  signed_inputs.get(name, False)) for name in _INPUTS}
        expected = {n: as_signed(values.get(f"{n}_model"), _model_width(cfg, n))
                    for n in outputs}
        actual = {n: as_signed(values.get(f"{n}_rtl"), cfg.acc_bits) for n in outputs}
        compared = not checked_from_reset or values.get("reset_seen") == 1
        if failing is None and compared and expected != actual:
            failing = i
        cycles.append({"cycle": i, "inputs": inputs, "expected": expected, "actual": actual})
    failing = len(cycles) - 1 if failing is None else failing
    # The solver pads the trace past the failing cycle with values that show nothing new.
    return Counterexample(inputs=list(_INPUTS), outputs=outputs, cycles=cycles[:failing + 1],
                          failing_cycle=failing, origin=origin)


def _assertions(names):
    """``acc_matches and y_matches fail`` / ``acc_matches fails``, for a detail line."""
    if not names:
        return "an assertion fails"
    return f"{' and '.join(names)} {'fails' if len(names) == 1 else 'fail'}"


def prove_mac(manifest, verilog_file, workdir, *, depth=DEFAULT_DEPTH, timeout=None,
              path_hint="manifest"):
    """Prove that a ``"mac"`` design's ``acc`` (and ``y``) equal the behavioural model.

    Parameters
    ----------
    manifest : dict
        The design's manifest (validated by ``wrapkit.hw.manifest.load_manifest``).
    verilog_file : path
        The design's Verilog.
    workdir : path
        Scratch folder for the model, miter, SMT-LIB2 file, logs and traces.
    depth : int, >= 1
        Cycles for BMC and for the induction step.
    timeout : float, optional
        Seconds allowed for each tool run.
    path_hint : str
        How error messages name the manifest.

    Returns
    -------
    ProofResult
        ``proved`` when BMC and induction both pass; ``failed`` with a counterexample from the
        initial state when BMC finds one; ``unproved`` with the induction step's trace (from
        an arbitrary, possibly unreachable state) when only induction fails.
    """
    require_tools("yosys", "yosys-smtbmc", "z3")
    _check_reset(manifest, path_hint)
    cfg = mac_config(manifest)
    top = manifest["top"]
    outputs = mac_outputs(cfg)
    workdir = Path(workdir)
    model = mac_model_verilog(cfg, manifest["latency"])
    if cfg.k is not None:
        model = cyclic_model_verilog(cfg.acc_bits, cfg.k, CYCLIC_MODEL) + "\n" + model
    (workdir / "model.v").write_text(model, encoding="utf-8")
    (workdir / "miter.v").write_text(mac_miter_verilog(manifest), encoding="utf-8")
    script = "\n".join([
        f"read_verilog {Path(verilog_file).resolve()}",
        "read_verilog -formal model.v miter.v",
        f"hierarchy -check -top {_MITER}",
        f"prep -top {_MITER} -flatten",
        # Synchronous-reset flip-flops become plain $dff cells the SMT-LIB2 writer steps.
        "async2sync",
        "dffunmap",
        "write_smt2 -wires miter.smt2",
    ]) + "\n"
    (workdir / "prove.ys").write_text(script, encoding="utf-8")
    prop = f"{' and '.join(outputs)} == behavioural model, every cycle of every input sequence"
    if compares_after_reset(manifest):
        prop += " after the first reset"
    result = ProofResult(design=top, property=prop, method="bmc+k-induction", depth=depth,
                         status="timeout", seconds=0.0)
    start = time.monotonic()
    try:
        run_tool(["yosys", "-q", "-s", "prove.ys"], workdir, timeout=timeout)
        bmc, failed, vcd, _ = _smtbmc(workdir, depth, False, timeout)
        if bmc == "failed":
            result.status = "failed"
            result.counterexample = _counterexample(manifest, vcd, "initial state")
            result.detail = (f"BMC: {_assertions(failed)} at cycle "
                             f"{result.counterexample.failing_cycle} from the initial state")
            return result
        step, failed, vcd, _ = _smtbmc(workdir, depth, True, timeout)
        if step == "failed":
            result.status = "unproved"
            result.counterexample = _counterexample(manifest, vcd, "arbitrary state")
            result.detail = (f"no counterexample within {depth} cycles from the initial "
                             f"state, but the induction step does not hold "
                             f"({_assertions(failed)}); try a larger --depth")
            return result
        result.status = "proved"
        result.detail = (f"BMC to depth {depth} from the initial state and "
                         f"{depth}-induction both pass")
        return result
    except ToolTimeout as exc:
        result.detail = str(exc)
        return result
    finally:
        result.seconds = time.monotonic() - start
