"""Synthesis, timing and energy of a layer array (``wrapkit synth`` on an array manifest).

The array (``hw/array``) is mapped like a MAC (:mod:`.yosys`), with every processing
element, multiplier, accumulator, the drain lane with its cyclic activation and requantizer,
the controller, the operand fetch and every buffer kept as its own module, so each has its
own area. Differences from the MAC flow:

* **Memories are synthesized as registers** (flip-flops plus read multiplexers, one per
  read port): honest about what this RTL is, and pessimistic against an SRAM macro or a
  register file a real design would use. They are reported as their own group ("memory")
  and the figures without them are reported beside the totals.
* **Fanout buffers**: after mapping, every net with more than
  :data:`~.fanout.MAX_FANOUT` loads gets a buffer tree (:mod:`.fanout`), because a buffer
  address enters its memory module as a port that ABC does not buffer.
* **Stimulus**: a whole layer run (:class:`~wrapkit.hw.array.jobs.LayerJob`) through the
  load port, ``start``, the computation and the read-back, in a gate-level Icarus
  simulation with SDF delays. Transitions are counted from the ``start`` edge to the edge
  that raises ``done`` (the computation; loading and reading back are not counted), the
  cycle count must equal the cycle model and the outputs must equal
  :func:`wrapkit.hw.array.jobs.reference_outputs`, or no energy is reported.

Groups are rolled up as the array's parts: **PEs** (multiplier, accumulator, forwarding and
result registers), **drain lane** (selection logic, cyclic activation, requantizer),
**control** (controller, operand fetch with padding masks and skew registers, load-port
decoding and descriptor registers) and **memories** (activation, weight and output
buffers, requantization tables).
"""

import json
import math
import tempfile
from pathlib import Path

import numpy as np

from wrapkit import __version__
from wrapkit.common.errors import UserError

from . import cache
from .activity import net_counter_verilog
from .energy import energy_per_cycle
from .evaluate import DesignFlow, synthesis_code_digest
from .liberty import read_liberty
from .sta import run_sta
from .tools import DEFAULT_LIBERTY, ToolError, default_cell_models, run_tool, tool_version
from .yosys import synthesize

__all__ = ["PARTS", "PART_ORDER", "array_markdown", "evaluate_array", "part_of", "sample_job", "simulate_array",
           "synthesize_array"]

#: Area/energy groups of the manifest -> the array's parts.
PARTS = {"pe": "PEs", "multiplier": "PEs", "accumulator": "PEs",
         "drain": "drain lane", "cyclic": "drain lane", "requant": "drain lane",
         "controller": "control", "fetch": "control", "auxiliary": "control",
         "memory": "memories"}

PART_ORDER = ("PEs", "drain lane", "control", "memories")

RESET_CYCLES = 3
_SIM_STRETCH = 1.3
_SIM_MARGIN_S = 0.2e-9


def part_of(group):
    """The array part (:data:`PARTS`) of a manifest group."""
    return PARTS.get(group, "control")


def _load_array(manifest_path):
    from wrapkit.hw.manifest import load_manifest, verilog_path
    manifest = load_manifest(manifest_path)
    if manifest["design"] != "array":
        raise UserError(f"{manifest_path} describes a {manifest['design']!r} design, not a "
                        f"layer array; generate one with `wrapkit rtl array`")
    return manifest, verilog_path(manifest_path, manifest)


def synthesize_array(manifest_path, *, liberty=None, cell_models=None, progress=None):
    """Synthesize and time an array (cached by content), ready for :func:`simulate_array`.

    Returns
    -------
    DesignFlow
    """
    manifest, verilog = _load_array(manifest_path)
    lib_path = Path(liberty) if liberty else DEFAULT_LIBERTY
    lib = read_liberty(lib_path)
    lib.flip_flop()
    lib.buffer()
    models = Path(cell_models) if cell_models else default_cell_models(lib_path)
    groups = {inst: g for inst, g in manifest["hierarchy"].items() if inst != manifest["top"]}
    key = cache.cache_key("synth-array", synthesis_code_digest(), verilog, lib_path, manifest["top"],
                          manifest["hierarchy"], manifest["modules"], "delay",
                          tool_version("yosys"), tool_version("sta"))
    entry = cache.cached_entry("synth-array", key)
    if entry is None:
        with tempfile.TemporaryDirectory(prefix="wrapkit-synth-array-") as tmp:
            work = Path(tmp)
            if progress:
                progress(f"synthesis (yosys, {len(groups)} kept instances)")
            syn = synthesize(verilog, manifest["top"], groups, lib, work, goal="delay",
                             modules=manifest["modules"], fanout_buffers=True)
            if progress:
                progress("timing (OpenSTA)")
            tim = run_sta(syn.netlist, manifest["top"], lib, work, clock=manifest["clock"])
            (work / "operating_point.json").write_text(json.dumps(
                {"slews": tim.slews, "loads": tim.loads, "vectorless": tim.vectorless}))
            result = {
                "top": manifest["top"], "liberty": str(lib_path), "goal": "delay",
                "area": {"groups": syn.group_area, "total": syn.total_area,
                         "registers": syn.registers},
                "timing": {"min_period_s": tim.min_period, "startpoint": tim.startpoint,
                           "endpoint": tim.endpoint, "critical_path": tim.critical_path},
            }
            entry = cache.commit_entry("synth-array", key, work, result)
    result = json.loads((entry / "result.json").read_text())
    op = json.loads((entry / "operating_point.json").read_text())
    return DesignFlow(manifest, verilog, lib, models, "delay", entry, result,
                      {k: tuple(v) for k, v in op["slews"].items()},
                      {k: tuple(v) for k, v in op["loads"].items()},
                      {k: tuple(v) for k, v in op["vectorless"].items()})


def _schedule(cfg, job):
    """Per-cycle inputs of the whole run, the start cycle, the read-back cycles."""
    from wrapkit.hw.array.cycles import layer_cycles
    from wrapkit.hw.array.jobs import load_program
    sel, addr, data = load_program(cfg, job)
    total = layer_cycles(cfg, job.shape).total
    n_out = job.shape.out_channels * job.shape.positions
    n = RESET_CYCLES + len(sel) + 1 + total + 2 + n_out + 2
    rows = np.zeros((n, 6), dtype=object)      # ld_en, ld_sel, ld_addr, ld_data, start, rd_addr
    rows[:, :] = 0
    first = RESET_CYCLES
    for i in range(len(sel)):
        rows[first + i] = (1, int(sel[i]), int(addr[i]), int(data[i]) & ((1 << 64) - 1), 0, 0)
    start = first + len(sel)
    rows[start, 4] = 1
    read0 = start + 1 + total + 2
    for a in range(n_out):
        rows[read0 + a, 5] = a
    return rows, start, total, read0, n_out


def _testbench(manifest, cfg, flat, n_cycles, start, total, period_ns, sdf):
    ports = {p["name"]: p for p in manifest["ports"]}
    clock = manifest["clock"]
    reset = manifest["reset"]["port"]
    w = {name: ports[name]["width"] for name in ("ld_sel", "ld_addr", "ld_data", "rd_addr")}
    stim_bits = 1 + w["ld_sel"] + w["ld_addr"] + w["ld_data"] + 1 + w["rd_addr"]
    half, t_in, t_win, t_smp = period_ns / 2, period_ns / 20, period_ns / 40, period_ns / 50
    lines = ["`timescale 1ns/1ps", "module wk_tb;", f"  reg {clock} = 0;", f"  reg {reset} = 1;",
             "  reg ld_en = 0;", "  reg start = 0;"]
    for name in ("ld_sel", "ld_addr", "ld_data", "rd_addr"):
        lines.append(f"  reg [{w[name] - 1}:0] {name} = 0;")
    outs = [p for p in manifest["ports"] if p["direction"] == "output"]
    for p in outs:
        lines.append(f"  wire [{p['width'] - 1}:0] {p['name']};")
    conns = [f".{n}({n})" for n in [clock, reset, "ld_en", "ld_sel", "ld_addr", "ld_data",
                                    "start", "rd_addr"] + [p["name"] for p in outs]]
    lines += [f"  {manifest['top']} dut ({', '.join(conns)});",
              f"  reg [{stim_bits - 1}:0] stim [0:{n_cycles - 1}];",
              "  reg meas = 0;", "  integer c, fd, fc;"]
    nets = [i for i, n in enumerate(flat.nets) if n.ref]
    lines += net_counter_verilog(flat, nets)
    m = max(len(nets), 1)
    lines += [
        "  initial begin",
        f"    for (c = 0; c < {m}; c = c + 1) begin nr[c] = 0; nf[c] = 0; sr[c] = 0; "
        f"sf[c] = 0; end",
        '    $readmemh("stim.hex", stim);',
    ]
    if sdf:
        lines.append(f'    $sdf_annotate("{sdf}", dut);')
    # The window: from the edge that samples start (start + 1 opens its cycle) to the edge
    # that raises done (total edges later).
    lines += [
        '    fd = $fopen("outputs.txt", "w");',
        f"    for (c = 0; c < {n_cycles}; c = c + 1) begin",
        f"      {clock} = 1;",
        f"      #{t_win:.6f};",
        f"      if (c == {start + 1}) meas = 1;",
        f"      if (c == {start + 1 + total}) meas = 0;",
        f"      #{t_in - t_win:.6f};",
        f"      if (c >= {RESET_CYCLES}) {reset} = 0;",
        "      {ld_en, ld_sel, ld_addr, ld_data, start, rd_addr} = stim[c];",
        f"      #{half - t_in:.6f};",
        f"      {clock} = 0;",
        f"      #{half - t_smp:.6f};",
        '      $fwrite(fd, "%h %h %h %h\\n", busy, done, cycles, rd_data);',
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
    return "\n".join(lines) + "\n", nets, w


def simulate_array(flow: DesignFlow, job, *, progress=None):
    """Gate-level simulation of one layer run (SDF-timed, glitches counted).

    Returns (per-cycle energy per group, window cycles, activity summary); raises ToolError
    on any output or cycle-count mismatch.
    """
    from wrapkit.hw.array.config import ArrayConfig
    from wrapkit.hw.array.jobs import check_job, reference_outputs

    cfg = ArrayConfig.from_dict(flow.manifest["config"])
    check_job(cfg, job)
    rows, start, total, read0, n_out = _schedule(cfg, job)
    period = flow.period
    sim_period = math.ceil((period * _SIM_STRETCH + _SIM_MARGIN_S) * 1e11) / 1e11
    flat = flow.flat()
    with tempfile.TemporaryDirectory(prefix="wrapkit-sim-array-") as tmp:
        out_dir = Path(tmp)
        sdf = (flow.entry / "netlist.sim.sdf").resolve()
        text, nets, w = _testbench(flow.manifest, cfg, flat, len(rows), start, total,
                                   sim_period * 1e9, str(sdf))
        (out_dir / "wk_tb.v").write_text(text)
        widths = (1, w["ld_sel"], w["ld_addr"], w["ld_data"], 1, w["rd_addr"])
        digits = (sum(widths) + 3) // 4
        words = []
        for r in rows:
            v = 0
            for value, width in zip(r, widths):
                v = (v << width) | (int(value) & ((1 << width) - 1))
            words.append(f"{v:0{digits}x}")
        (out_dir / "stim.hex").write_text("\n".join(words) + "\n")
        if progress:
            progress(f"gate-level simulation ({len(rows)} cycles, {total} computing, "
                     f"Icarus + SDF)")
        run_tool("iverilog", ["-gspecify", "-g2005", "-o", "wk_tb.vvp", "wk_tb.v",
                              str((flow.entry / "netlist.v").resolve()),
                              str(Path(flow.cell_models).resolve())],
                 cwd=out_dir, stage="gate-level simulation (compile)", log_name="iverilog.log")
        run_tool("vvp", ["-n", "wk_tb.vvp"], cwd=out_dir, stage="gate-level simulation",
                 log_name="vvp.log", timeout=3600)
        samples = [ln.split() for ln in (out_dir / "outputs.txt").read_text().splitlines()]
        done_at = [c for c, s in enumerate(samples) if s[1] == "1"]
        # Edge c opens cycle c, sampled before edge c + 1. Edge start + 1 samples start, and
        # the cycles port counts total edges from it to the one that raises done.
        done_cycle = start + 1 + total
        if done_at != [done_cycle]:
            raise ToolError(f"gate-level simulation: done rose in cycle(s) {done_at[:3]}, "
                            f"the cycle model expects {done_cycle}; files in {out_dir}")
        cyc = int(samples[done_cycle][2], 16)
        if cyc != total:
            raise ToolError(f"gate-level simulation: the cycles port reads {cyc}, the cycle "
                            f"model {total}")
        got = []
        for a in range(n_out):
            tok = samples[read0 + a + 1][3]          # one cycle of read latency
            if any(ch in tok.lower() for ch in "xz"):
                raise ToolError(f"gate-level simulation: output word {a} is {tok}")
            got.append(int(tok, 16))
        from wrapkit.hw.array.jobs import words_to_outputs
        out = words_to_outputs(cfg, job, got)
        ref = reference_outputs(job)["out"]
        bad = int(np.count_nonzero(out != ref))
        if bad:
            raise ToolError(f"gate-level simulation: {bad} of {out.size} outputs differ from "
                            f"wrapkit.hw.array.jobs.reference_outputs; files in {out_dir}")
        counts = np.loadtxt(out_dir / "counts.txt", dtype=np.int64, ndmin=2)
    full = np.zeros((len(flat.nets), 4), dtype=np.int64)
    full[nets] = counts
    if flat.clock_net is not None:
        full[flat.clock_net, 2:] = full[flat.clock_net, :2]
    if progress:
        progress("energy (liberty tables at the OpenSTA operating point)")
    glitchy = energy_per_cycle(flat, flow.liberty, flow.slews, flow.loads, full[:, 0],
                               full[:, 1], total, period)
    toggles = full[:, 0] + full[:, 1]
    stoggles = full[:, 2] + full[:, 3]
    return glitchy, total, {
        "simulated_period_ns": sim_period * 1e9,
        "outputs_checked": int(n_out),
        "glitch_share_of_toggles": float(1 - stoggles.sum() / toggles.sum())
        if toggles.sum() else 0.0,
    }


def _parts(values):
    out = {p: 0.0 for p in PART_ORDER}
    for g, v in values.items():
        out[part_of(g)] += v
    out["total"] = sum(out[p] for p in PART_ORDER)
    out["total without memories"] = out["total"] - out["memories"]
    return out


def evaluate_array(manifest_path, job, *, liberty=None, cell_models=None, progress=None,
                   stimulus_name="layer"):
    """Area per part, cycle time and energy (per cycle, per MAC) of an array on ``job``.

    Results are cached by content (the netlist's entry, the job's bytes, the flow sources).
    """
    from wrapkit.hw.array.jobs import jobs_bytes
    flow = synthesize_array(manifest_path, liberty=liberty, cell_models=cell_models,
                            progress=progress)
    key = cache.cache_key("energy-array", synthesis_code_digest(), flow.entry.name,
                          Path(flow.cell_models), jobs_bytes([job]), tool_version("iverilog"))
    entry = cache.cached_entry("energy-array", key)
    if entry is not None:
        energy = json.loads((entry / "result.json").read_text())
    else:
        glitchy, total, info = simulate_array(flow, job, progress=progress)
        macs = job.shape.macs
        energy = {
            "stimulus": stimulus_name, "layer": job.shape.describe(), "macs": macs,
            "window_cycles": total, **info,
            "check": f"{info['outputs_checked']} outputs equal reference_outputs, cycles "
                     f"= the cycle model ({total})",
            "energy_pj_per_cycle": _parts({g: e.total * 1e12 for g, e in glitchy.items()}),
            "energy_fj_per_mac": _parts({g: e.total * total / macs * 1e15
                                        for g, e in glitchy.items()}),
            "energy_fj_per_cycle_by_group": {g: e.total * 1e15 for g, e in glitchy.items()},
        }
        with tempfile.TemporaryDirectory(prefix="wrapkit-entry-") as tmp:
            cache.commit_entry("energy-array", key, tmp, energy)
    cfg = flow.manifest["config"]
    period_ns = flow.period * 1e9
    area_groups = flow.result["area"]["groups"]
    pes = cfg["rows"] * cfg["cols"]
    return {
        "schema": "wrapkit.synth-array/1",
        "generator": f"wrapkit {__version__}",
        "design": flow.manifest["top"],
        "config": cfg,
        "liberty": str(flow.liberty.path),
        "memories": "synthesized as registers (flip-flops + one read multiplexer per port)",
        "tools": {"yosys": tool_version("yosys"), "sta": tool_version("sta"),
                  "iverilog": tool_version("iverilog")},
        "cycle_time_ns": period_ns,
        "peak_gops": 2 * pes / period_ns,
        "critical_path": {"start": flow.result["timing"]["startpoint"],
                          "end": flow.result["timing"]["endpoint"]},
        "area_um2": _parts(area_groups),
        "area_um2_by_group": area_groups,
        "registers": flow.result["area"]["registers"],
        "energy": energy,
        "cache_entry": str(flow.entry),
    }


def sample_job(cfg, model, layer=None, *, image=0, data_dir=None):
    """A slice of a trained layer's real operands that fits array ``cfg``.

    The layer's input codes (test image ``image``, from the integer engine), its weights and
    requantization constants, cropped to the array's buffers: the input map to its top-left
    corner, the output channels to the first ones. The fan-in (every input channel, the whole
    kernel) is kept, so each dot product is a real one. The array's own MAC semantics apply
    (its accumulator width and cyclic activation; the weights re-encoded for its multiplier),
    so an 8-bit and a 32-bit design see the same operands.

    Parameters
    ----------
    cfg : ArrayConfig
    model : path-like
        An export (``.wkx``).
    layer : int, optional
        Engine layer index; default: the integer conv layer with the most MACs that fits.
    """
    from wrapkit.hw.array.jobs import LayerJob, LayerShape
    from wrapkit.ref.datapath import MacConfig, decode_weights, encode_weights, operand_range
    from wrapkit.common.datasets import load_images
    from wrapkit.ref.engine import Engine
    from wrapkit.ref.wkx import read_export
    from wrapkit.sim.layer_array import layer_jobs, layer_shape

    engine = Engine(read_export(model))
    test = load_images(engine.export.header["input"].get("dataset"), "test",
                       data_dir).first(image + 1)
    candidates = ([engine.layer(layer)] if layer is not None else
                  [l for l in engine.integer_layers if l.kind == "conv2d"])
    best = None
    for lay in candidates:
        if lay.precision != "integer" or lay.kind not in ("conv2d", "linear"):
            raise UserError(f"layer {lay.index} ({lay.name}) is not an integer conv2d or "
                            f"linear layer; choose one of "
                            f"{', '.join(str(l.index) for l in engine.integer_layers)}")
        shape = layer_shape(lay)
        oc = min(shape.out_channels, cfg.max_channels, cfg.weight_depth // shape.fan_in)
        side_h, side_w = shape.in_h, shape.in_w
        while side_h * side_w * shape.in_channels > cfg.act_depth and max(side_h, side_w) > 1:
            side_h, side_w = max(1, side_h - 1), max(1, side_w - 1)
        if oc < 1 or side_h * side_w * shape.in_channels > cfg.act_depth:
            continue
        if shape.kind == "conv2d":
            sub = LayerShape.conv2d(shape.in_channels, side_h, side_w, oc, shape.kernel,
                                    shape.stride, shape.padding)
        else:
            sub = LayerShape.linear(shape.fan_in, oc)
        while sub.positions * oc > cfg.out_depth and oc > 1:
            oc -= 1
            sub = LayerShape.conv2d(shape.in_channels, side_h, side_w, oc, shape.kernel,
                                    shape.stride, shape.padding) if shape.kind == "conv2d" \
                else LayerShape.linear(shape.fan_in, oc)
        if sub.positions * oc > cfg.out_depth:
            continue
        if best is None or sub.macs > best[1].macs:
            best = (lay, sub)
    if best is None:
        raise UserError(f"no integer layer of {model} fits the array's buffers (act_depth "
                        f"{cfg.act_depth}, weight_depth {cfg.weight_depth}); regenerate the "
                        f"array with larger --act-depth/--weight-depth")
    lay, sub = best
    full = layer_jobs(lay, engine.layer_input(test.pixels, lay.index))[image]
    codes = full.codes[:, :sub.in_h, :sub.in_w]
    lo, hi = operand_range(cfg.mac.act_bits, cfg.mac.act_signed)
    if codes.min() < lo or codes.max() > hi:
        raise UserError(f"layer {lay.index}'s activation codes span [{codes.min()}, "
                        f"{codes.max()}], beyond the array's {cfg.mac.act_bits}-bit "
                        f"{'signed' if cfg.mac.act_signed else 'unsigned'} activations")
    values = decode_weights(full.weight_codes[:sub.out_channels], lay.cfg.weight_kind,
                            lay.cfg.weight_bits)
    mac = cfg.mac
    weights = encode_weights(values, mac.weight_kind, mac.weight_bits)
    requant = None
    if full.requant is not None:
        m, b, sh, out_bits = full.requant
        n = sub.out_channels
        requant = (m[:n], b[:n], sh[:n], min(out_bits, cfg.out_bits))
    job_mac = MacConfig(act_bits=mac.act_bits, act_signed=mac.act_signed,
                        weight_kind=mac.weight_kind, weight_bits=mac.weight_bits,
                        acc_bits=mac.acc_bits, k=mac.k)
    return LayerJob(sub, job_mac, codes, weights, requant,
                    f"{lay.name} (layer {lay.index}) slice {sub.describe()}, test image "
                    f"{image}")


def array_markdown(report):
    """A short markdown summary of :func:`evaluate_array`'s report."""
    e = report["energy"]
    lines = [f"# {report['design']}", "",
             f"Cycle time {report['cycle_time_ns']:.2f} ns (critical path "
             f"{report['critical_path']['start'].split()[0]} -> "
             f"{report['critical_path']['end'].split()[0]}), peak "
             f"{report['peak_gops']:.1f} Gops; memories {report['memories']}.", "",
             f"Stimulus: {e['stimulus']} ({e['macs']:,} MACs, {e['window_cycles']:,} cycles "
             f"from start to done; {e['check']}).", "",
             "| part | area (um^2) | energy (pJ/cycle) | energy (fJ/MAC) |",
             "|---|---:|---:|---:|"]
    for part in PART_ORDER + ("total without memories", "total"):
        lines.append(f"| {part} | {report['area_um2'][part]:,.0f} | "
                     f"{e['energy_pj_per_cycle'][part]:,.1f} | "
                     f"{e['energy_fj_per_mac'][part]:,.0f} |")
    return "\n".join(lines) + "\n"
