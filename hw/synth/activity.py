"""Switching activity from a gate-level simulation of the mapped netlist.

The stimulus is a stream of MAC operations, a :class:`~wrapkit.ref.opstream.MacOpStream`
``(a, w_code, en, clr)`` -- random operands for a MAC on its own (:func:`random_stimulus`),
or real operands of a trained layer (:meth:`MacOpStream.from_dot_products
<wrapkit.ref.opstream.MacOpStream.from_dot_products>`, :func:`wrapkit.hw.synth.network.
sample_stream`, or a ``.npz``/``.csv`` file read by :meth:`MacOpStream.load
<wrapkit.ref.opstream.MacOpStream.load>`). Icarus Verilog simulates the mapped netlist with the library's cell
models (``osu018_stdcells.v``) and, by default, the cell delays OpenSTA computed (SDF), so
glitches in the multiplier and adder show up as they do in silicon.

Instead of dumping a VCD and parsing it, the generated testbench counts, for every physical
net, inside the measurement window (like a SAIF toggle-count file):

* ``rise``/``fall`` -- every transition, glitches included (``always @(posedge net)``);
* ``srise``/``sfall`` -- changes of the settled value, sampled once per cycle just before the
  clock edge (the glitch-free, "functional" activity).

The same run samples the outputs every cycle, and :func:`simulate` checks them against
``wrapkit.ref.mac_stream`` (:meth:`MacOpStream.reference
<wrapkit.ref.opstream.MacOpStream.reference>`) with the manifest's latency, so a wrong netlist (or a clock period
too short for the annotated delays) cannot produce an energy number.

Timeline of one clock cycle ``c`` (period ``T``)::

    c*T          rising edge
    c*T + T/40   measurement window opens (first op) or closes (after the last op)
    c*T + T/20   inputs of operation c - reset change (an upstream register's clock-to-Q)
    c*T + T/2    falling edge
    c*T + T - T/50  outputs and every net sampled (all paths settled)
"""

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wrapkit.common.errors import VerificationMismatch
from wrapkit.ref.datapath import MacConfig, operand_range
from wrapkit.ref.opstream import MacOpStream

from .tools import ToolError, run_tool

__all__ = ["GATE_LEVEL_LIMIT_WHY", "MAX_GATE_LEVEL_OPS", "Activity", "GateLevelMismatch", "check_stimulus",
           "net_counter_verilog", "random_stimulus", "simulate", "testbench"]

#: Reset cycles before the first operation.
RESET_CYCLES = 3


#: Most operations one gate-level simulation takes: its testbench, per-cycle samples and
#: toggle counts are held whole, and at a few thousand operations per second more would run
#: for hours.
MAX_GATE_LEVEL_OPS = 1_000_000
#: Why :data:`MAX_GATE_LEVEL_OPS` exists, for messages.
GATE_LEVEL_LIMIT_WHY = ("a gate-level simulation holds every operation in memory and runs a "
                        "few thousand operations per second")


def check_stimulus(stim: MacOpStream, cfg: MacConfig):
    """Raise ValueError unless ``stim`` fits the design ``cfg``, pulses no reset (the
    gate-level testbench resets the design only before the first operation) and holds at
    most :data:`MAX_GATE_LEVEL_OPS` operations."""
    if len(stim) > MAX_GATE_LEVEL_OPS:
        raise ValueError(f"it holds {len(stim):,} operations; at most {MAX_GATE_LEVEL_OPS:,} "
                         f"fit ({GATE_LEVEL_LIMIT_WHY})")
    stim.check(cfg)
    if stim.rst.any():
        raise ValueError("the gate-level testbench drives no reset during the stream; give a "
                         "stimulus without rst pulses")
    return stim


def random_stimulus(cfg: MacConfig, n_ops, *, seed=0, dot_len=64):
    """Uniformly random operands, every operation valid, a new dot product every ``dot_len``.

    Uniform operands toggle about half of the operand bits per cycle -- more than the
    mostly-small activations of a trained layer, so this is a pessimistic MAC-only stimulus.
    """
    if isinstance(n_ops, bool) or not isinstance(n_ops, (int, np.integer)) or n_ops < 1:
        raise ValueError(f"n_ops must be an integer >= 1, got {n_ops!r}")
    if n_ops > MAX_GATE_LEVEL_OPS:
        raise ValueError(f"n_ops must be at most {MAX_GATE_LEVEL_OPS:,} "
                         f"({GATE_LEVEL_LIMIT_WHY}), got {n_ops:,}")
    if isinstance(dot_len, bool) or not isinstance(dot_len, (int, np.integer)) or dot_len < 1:
        raise ValueError(f"dot_len must be an integer >= 1, got {dot_len!r}")
    rng = np.random.default_rng(seed)
    lo, hi = operand_range(cfg.act_bits, cfg.act_signed)
    a = rng.integers(lo, hi + 1, n_ops)
    w = rng.integers(0, 1 << cfg.weight_code_bits, n_ops)
    en = np.ones(n_ops, dtype=bool)
    clr = (np.arange(n_ops) % dot_len) == 0
    return MacOpStream(a, w, en, clr, source=f"random seed={seed} dot_len={dot_len}")


@dataclass(frozen=True)
class Activity:
    """Transition counts per physical net over ``cycles`` clock cycles.

    ``rise``/``fall`` count every transition (glitches included, from the timed simulation);
    ``srise``/``sfall`` count changes of the value sampled once per cycle.
    """

    cycles: int
    rise: np.ndarray
    fall: np.ndarray
    srise: np.ndarray
    sfall: np.ndarray
    sim_period: float   # seconds
    timed: bool

    def toggles(self, glitches=True):
        return (self.rise + self.fall) if glitches else (self.srise + self.sfall)


def _hex_digits(bits):
    return (bits + 3) // 4


def net_counter_verilog(netlist, nets):
    """Testbench lines that count, while ``meas`` is high, every transition of the ``nets``
    (indices into ``netlist.nets``): ``nr``/``nf`` count rising/falling edges (glitches
    included), ``sr``/``sf`` the changes seen by the ``sample_nets`` task once per cycle
    (glitch-free activity). ``m = max(len(nets), 1)`` entries each; ``last`` holds the
    sampled values."""
    m = max(len(nets), 1)
    lines = [f"  integer nr [0:{m - 1}];", f"  integer nf [0:{m - 1}];",
             f"  integer sr [0:{m - 1}];", f"  integer sf [0:{m - 1}];",
             f"  reg [{m - 1}:0] last;"]
    for k, i in enumerate(nets):
        ref = "dut." + netlist.nets[i].ref
        lines.append(f"  always @(posedge {ref}) if (meas) nr[{k}] = nr[{k}] + 1;")
        lines.append(f"  always @(negedge {ref}) if (meas) nf[{k}] = nf[{k}] + 1;")
    lines.append("  task sample_nets; begin")
    for k, i in enumerate(nets):
        ref = "dut." + netlist.nets[i].ref
        lines.append(f"    if (meas && {ref} !== last[{k}]) begin if ({ref}) sr[{k}] = "
                     f"sr[{k}] + 1; else sf[{k}] = sf[{k}] + 1; end last[{k}] = {ref};")
    lines.append("  end endtask")
    return lines


def testbench(manifest, netlist, n_ops, period_ns, *, sdf=None, watch=True):
    """Verilog text of the gate-level testbench (see the module docstring)."""
    cfg = MacConfig.from_dict(manifest["config"])
    clock = manifest["clock"]
    reset = manifest["reset"]["port"]
    outs = [p for p in manifest["ports"] if p["direction"] == "output"]
    stim_bits = cfg.act_bits + cfg.weight_code_bits + 2
    half = period_ns / 2
    t_in = period_ns / 20
    t_win = period_ns / 40
    t_smp = period_ns / 50
    latency = manifest["latency"]
    total = RESET_CYCLES + n_ops + latency + 1
    lines = [
        "`timescale 1ns/1ps",
        "module wk_tb;",
        f"  reg {clock} = 0;",
        f"  reg {reset} = 1;",
        f"  reg [{cfg.act_bits - 1}:0] a = 0;",
        f"  reg [{cfg.weight_code_bits - 1}:0] w = 0;",
        "  reg en = 0;",
        "  reg clr = 0;",
    ]
    for p in outs:
        lines.append(f"  wire [{p['width'] - 1}:0] {p['name']};")
    conns = [f".{clock}({clock})", f".{reset}({reset})", ".a(a)", ".w(w)", ".en(en)",
             ".clr(clr)"] + [f".{p['name']}({p['name']})" for p in outs]
    lines += [
        f"  {manifest['top']} dut ({', '.join(conns)});",
        f"  reg [{stim_bits - 1}:0] stim [0:{n_ops - 1}];",
        "  reg meas = 0;",
        "  integer c, fd, fc;",
    ]
    nets = [i for i, n in enumerate(netlist.nets) if n.ref] if watch else []
    lines += net_counter_verilog(netlist, nets)
    m = max(len(nets), 1)
    out_fmt = " ".join("%h" for _ in outs)
    out_args = ", ".join(p["name"] for p in outs)
    lines += [
        "  initial begin",
        f"    for (c = 0; c < {m}; c = c + 1) begin nr[c] = 0; nf[c] = 0; sr[c] = 0; "
        f"sf[c] = 0; end",
        '    $readmemh("stim.hex", stim);',
    ]
    if sdf:
        lines.append(f'    $sdf_annotate("{sdf}", dut);')
    if os.environ.get("WRAPKIT_SYNTH_VCD"):
        lines += ['    $dumpfile("wk_tb.vcd");', "    $dumpvars(0, wk_tb);"]
    lines += [
        '    fd = $fopen("outputs.txt", "w");',
        f"    for (c = 0; c < {total}; c = c + 1) begin",
        f"      {clock} = 1;",
        f"      #{t_win:.6f};",
        f"      if (c == {RESET_CYCLES}) meas = 1;",
        f"      if (c == {RESET_CYCLES + n_ops}) meas = 0;",
        f"      #{t_in - t_win:.6f};",
        f"      if (c < {RESET_CYCLES}) begin {reset} = 1; en = 0; clr = 0; a = 0; w = 0; end",
        f"      else if (c < {RESET_CYCLES + n_ops}) begin {reset} = 0; "
        f"{{clr, en, w, a}} = stim[c - {RESET_CYCLES}]; end",
        "      else begin en = 0; clr = 0; end",
        f"      #{half - t_in:.6f};",
        f"      {clock} = 0;",
        f"      #{half - t_smp:.6f};",
        (f'      $fwrite(fd, "{out_fmt}\\n", {out_args});' if outs else ""),
        "      sample_nets;",
        f"      #{t_smp:.6f};",
        "    end",
        "    $fclose(fd);",
        '    fc = $fopen("counts.txt", "w");',
        f"    for (c = 0; c < {len(nets)}; c = c + 1) "
        '$fwrite(fc, "%0d %0d %0d %0d\\n", nr[c], nf[c], sr[c], sf[c]);',
        "    $fclose(fc);",
        "    $finish;",
        "  end",
        "endmodule",
    ]
    return "\n".join(ln for ln in lines if ln) + "\n", nets


def _stim_hex(stim: MacOpStream, cfg: MacConfig):
    a = stim.a & ((1 << cfg.act_bits) - 1)
    word = ((stim.clr.astype(np.int64) << (cfg.act_bits + cfg.weight_code_bits + 1))
            | (stim.en.astype(np.int64) << (cfg.act_bits + cfg.weight_code_bits))
            | (stim.w << cfg.act_bits) | a)
    digits = _hex_digits(cfg.act_bits + cfg.weight_code_bits + 2)
    return "".join(f"{int(x):0{digits}x}\n" for x in word)


def _parse_outputs(text, outs, n_rows):
    rows = [ln.split() for ln in text.splitlines() if ln.strip()]
    if len(rows) != n_rows:
        raise ToolError(f"gate-level simulation wrote {len(rows)} output samples, expected "
                        f"{n_rows}")
    values = {}
    for j, p in enumerate(outs):
        col = []
        for r in rows:
            tok = r[j]
            if any(ch in tok.lower() for ch in "xz"):
                col.append(None)
                continue
            v = int(tok, 16)
            if p["signed"] and v >= 1 << (p["width"] - 1):
                v -= 1 << p["width"]
            col.append(v)
        values[p["name"]] = col
    return values


def simulate(manifest, netlist_v, flat, stim: MacOpStream, cell_models, out_dir, *,
             period, sdf=None):
    """Run the gate-level simulation, check the outputs against the reference, count toggles.

    Parameters
    ----------
    manifest : dict
        The design's manifest (config, ports, latency, clock and reset names).
    netlist_v : Path
        Mapped netlist from :func:`~wrapkit.hw.synth.yosys.synthesize`.
    flat : FlatNetlist
        The same netlist flattened (which nets to watch).
    stim : MacOpStream
        Without ``rst`` pulses (the testbench drives reset only before the first operation).
    cell_models : Path
        Verilog models of the library cells.
    out_dir : Path
    period : float
        Simulated clock period in seconds (longer than the minimum cycle time).
    sdf : Path or None
        SDF delays to annotate (timed simulation); None simulates with zero delays.

    Returns
    -------
    Activity

    Raises
    ------
    ToolError
        The netlist's outputs differ from ``wrapkit.ref.mac_stream`` (the message gives the
        first mismatch in hex and decimal), or a tool failed.
    """
    cfg = MacConfig.from_dict(manifest["config"])
    check_stimulus(stim, cfg)
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    n = len(stim)
    period_ns = period * 1e9
    text, nets = testbench(manifest, flat, n, period_ns,
                           sdf=str(Path(sdf).resolve()) if sdf else None)
    (out_dir / "wk_tb.v").write_text(text)
    (out_dir / "stim.hex").write_text(_stim_hex(stim, cfg))
    args = ["-g2005", "-o", "wk_tb.vvp"]
    if sdf:
        args.insert(0, "-gspecify")
    args += ["wk_tb.v", str(Path(netlist_v).resolve()), str(Path(cell_models).resolve())]
    run_tool("iverilog", args, cwd=out_dir, stage="gate-level simulation (compile)",
             log_name="iverilog.log")
    vvp_args = ["-n", "wk_tb.vvp"] + (["-sdf-verbose"] if sdf else [])
    proc = run_tool("vvp", vvp_args, cwd=out_dir, stage="gate-level simulation",
                    log_name="vvp.log", timeout=1800)
    # INTERCONNECT entries (the input ports' driving-cell delay, about 0.1 ns) are the one
    # SDF construct Icarus skips; every cell delay (IOPATH) must be annotated.
    sdf_problems = [ln for ln in proc.stdout.splitlines()
                    if ("SDF ERROR" in ln or "SDF WARNING" in ln)
                    and "INTERCONNECT not supported" not in ln]
    if sdf_problems:
        raise ToolError(f"gate-level simulation: Icarus did not annotate the SDF delays "
                        f"({sdf_problems[0].strip()}); log {out_dir / 'vvp.log'}")
    outs = [p for p in manifest["ports"] if p["direction"] == "output"]
    total = RESET_CYCLES + n + manifest["latency"] + 1
    got = _parse_outputs((out_dir / "outputs.txt").read_text(), outs, total)
    _check_against_reference(cfg, stim, got, manifest["latency"], out_dir)
    counts = np.loadtxt(out_dir / "counts.txt", dtype=np.int64, ndmin=2)
    if counts.shape != (len(nets), 4):
        raise ToolError(f"gate-level simulation wrote {counts.shape[0]} toggle counts, "
                        f"expected {len(nets)}")
    full = np.zeros((len(flat.nets), 4), dtype=np.int64)
    full[nets] = counts
    if flat.clock_net is not None:
        # Sampled once per cycle the clock looks constant; it really toggles twice a cycle.
        full[flat.clock_net, 2:] = full[flat.clock_net, :2]
    return Activity(cycles=n, rise=full[:, 0], fall=full[:, 1], srise=full[:, 2],
                    sfall=full[:, 3], sim_period=period, timed=sdf is not None)


class GateLevelMismatch(ToolError, VerificationMismatch):
    """The synthesized netlist computed something else than wrapkit.ref (exit status 1)."""


def _check_against_reference(cfg, stim, got, latency, out_dir):
    acc_ref, out_ref = stim.reference(cfg)
    expect = {"acc": acc_ref}
    if cfg.k is not None:
        expect["y"] = out_ref
    for name, ref in expect.items():
        if name not in got:
            raise ToolError(f"the netlist has no output {name!r}")
        # Edge c opens cycle c, whose sample is taken just before edge c + 1. Operation i is
        # presented in cycle RESET + i, so its result is in the accumulator after edge
        # RESET + i + latency: the sample of that cycle.
        col = got[name][RESET_CYCLES + latency: RESET_CYCLES + latency + len(ref)]
        for i, (g, r) in enumerate(zip(col, ref)):
            if g is None or g != int(r):
                shown = "x" if g is None else f"{g} (0x{g & ((1 << cfg.acc_bits) - 1):x})"
                raise GateLevelMismatch(
                    f"gate-level simulation disagrees with wrapkit.ref.mac_stream at "
                    f"operation {i}: {name} = {shown}, expected {int(r)} "
                    f"(0x{int(r) & ((1 << cfg.acc_bits) - 1):x}); files in {out_dir}")
