"""The evaluation of one generated design: synthesis -> timing -> gate-level simulation ->
energy, with caching.

``evaluate(manifest_path)`` returns a JSON-able report in the units of the paper's Tables
2.11-2.13: cycle time (ns), throughput (Gops, 2 operations per cycle -- a multiplication and an
addition, the paper's convention), cell area (um^2), power (mW), area efficiency (um^2/Gops)
and energy efficiency (fJ/op), each split into the groups multiplier / accumulator / cyclic /
auxiliary.
"""

import json
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from wrapkit import __version__
from wrapkit.common.buildcache import source_fingerprint
from wrapkit.common.errors import UserError
from wrapkit.ref.datapath import MacConfig
from wrapkit.ref.opstream import MacOpStream

from . import cache
from .activity import check_stimulus, random_stimulus, simulate
from .energy import energy_per_cycle, uniform_activity
from .liberty import read_liberty
from .netlist import flatten_netlist
from .sta import run_sta
from .tools import DEFAULT_LIBERTY, default_cell_models, tool_version
from .yosys import GOALS, synthesize

__all__ = ["FLOW_VERSION", "GROUP_ORDER", "OPS_PER_CYCLE", "DesignFlow", "evaluate",
           "load_design", "synthesis_code_digest", "synthesize_design"]

#: Bumped whenever a change to the flow changes its numbers. The cache key also hashes the
#: flow's own source files, so an edited flow never reads results of an older one.
FLOW_VERSION = "2"

# Front ends that only call the evaluation: editing them keeps the cache.
_FRONT_ENDS = tuple(f"hw/synth/{name}" for name in (
    "__init__.py", "cli.py", "report.py", "estimate.py", "network.py", "estimate_cli.py"))

#: A MAC completes a multiplication and an addition per cycle (the paper's throughput).
OPS_PER_CYCLE = 2

#: Report order of the groups (the paper's table columns).
GROUP_ORDER = ("multiplier", "accumulator", "cyclic", "auxiliary")

# The simulated clock is slower than the minimum period: inputs change 1/20 period after the
# edge and nets are sampled 1/50 period before the next, and the margin absorbs the SDF delays
# Icarus applies (IOPATH) differing slightly from OpenSTA's arrival times.
_SIM_STRETCH = 1.3
_SIM_MARGIN_S = 0.2e-9


def synthesis_code_digest():
    """FLOW_VERSION plus a hash of this package's source (part of every cache key)."""
    return source_fingerprint("hw/synth", exclude=_FRONT_ENDS, extra=(FLOW_VERSION,),
                              length=None)


def load_design(manifest_path):
    """Read a design manifest (``rtl/<name>.json``) with the generator's own validator."""
    from wrapkit.hw.manifest import load_manifest, verilog_path
    manifest = load_manifest(manifest_path)
    if manifest["design"] != "mac":
        raise UserError(f"{manifest_path} describes a {manifest['design']!r} design; the "
                        f"synthesis flow estimates MAC units (design 'mac'), which have the "
                        f"registers that define a clock period")
    return manifest, verilog_path(manifest_path, manifest)


@dataclass
class DesignFlow:
    """Synthesis and timing of one design (cached), ready for energy runs."""

    manifest: dict
    verilog: Path
    liberty: object
    cell_models: Path | None
    goal: str
    entry: Path            # cache folder with netlist.v, netlist.json, netlist.sdf
    result: dict           # area and timing summary
    slews: dict
    loads: dict
    vectorless: dict

    @property
    def period(self):
        return self.result["timing"]["min_period_s"]

    def flat(self):
        design = json.loads((self.entry / "netlist.json").read_text())
        return flatten_netlist(design, self.manifest["top"], self.manifest["hierarchy"],
                               self.liberty, clock=self.manifest["clock"])


def _groups(manifest):
    return {inst: g for inst, g in manifest["hierarchy"].items() if inst != manifest["top"]}


def synthesize_design(manifest_path, *, liberty=None, cell_models=None, goal="delay",
                      use_cache=True, progress=None):
    """Synthesize and time a design (or fetch both from the cache).

    Parameters
    ----------
    manifest_path : path
        ``rtl/<name>.json``.
    liberty : path, optional
        Standard-cell library (default: OSU018 from ``qflow-tech-osu018``).
    cell_models : path, optional
        Verilog models of the library's cells for the gate-level simulation (default: the
        ``.v`` file beside the liberty).
    goal : "delay" or "area"
        Technology-mapping goal.
    use_cache : bool
    progress : callable, optional
        Called with a stage name as each stage starts.
    """
    if goal not in GOALS:
        raise UserError(f"--goal must be one of {', '.join(GOALS)}, got {goal!r}")
    manifest, verilog = load_design(manifest_path)
    lib_path = Path(liberty) if liberty else DEFAULT_LIBERTY
    lib = read_liberty(lib_path)
    lib.flip_flop()       # fail early, with a clear message, on a library without one
    lib.buffer()
    models = Path(cell_models) if cell_models else default_cell_models(lib_path)
    key = cache.cache_key("synth", synthesis_code_digest(), verilog, lib_path, manifest["top"],
                          manifest["hierarchy"], manifest["modules"], goal,
                          tool_version("yosys"), tool_version("sta"))
    entry = cache.cached_entry("synth", key) if use_cache else None
    if entry is None:
        with tempfile.TemporaryDirectory(prefix="wrapkit-synth-") as tmp:
            work = Path(tmp)
            if progress:
                progress("synthesis (yosys)")
            syn = synthesize(verilog, manifest["top"], _groups(manifest), lib, work, goal=goal,
                             modules=manifest["modules"])
            if progress:
                progress("timing (OpenSTA)")
            tim = run_sta(syn.netlist, manifest["top"], lib, work, clock=manifest["clock"])
            (work / "operating_point.json").write_text(json.dumps(
                {"slews": tim.slews, "loads": tim.loads, "vectorless": tim.vectorless}))
            result = {
                "top": manifest["top"],
                "liberty": str(lib_path),
                "goal": goal,
                "area": {"groups": syn.group_area, "total": syn.total_area,
                         "cells": syn.module_cells, "registers": syn.registers},
                "timing": {"min_period_s": tim.min_period, "startpoint": tim.startpoint,
                           "endpoint": tim.endpoint, "critical_path": tim.critical_path},
            }
            if use_cache:
                entry = cache.commit_entry("synth", key, work, result)
            else:
                entry = Path(tempfile.mkdtemp(prefix="wrapkit-synth-keep-"))
                for item in work.iterdir():
                    if item.is_file():
                        shutil.copy2(item, entry / item.name)
                (entry / "result.json").write_text(json.dumps(result))
    result = json.loads((entry / "result.json").read_text())
    op = json.loads((entry / "operating_point.json").read_text())
    return DesignFlow(manifest, verilog, lib, models, goal, entry, result,
                      {k: tuple(v) for k, v in op["slews"].items()},
                      {k: tuple(v) for k, v in op["loads"].items()},
                      {k: tuple(v) for k, v in op["vectorless"].items()})


def _energy_block(groups, period):
    """Per-group energy per op (fJ) and power (mW) from per-cycle GroupEnergy."""
    per_op = {g: e.total / OPS_PER_CYCLE * 1e15 for g, e in groups.items()}
    power = {g: e.total / period * 1e3 for g, e in groups.items()}
    return {
        "energy_fj_per_op": _ordered(per_op, total=True),
        "power_mw": _ordered(power, total=True),
        "breakdown_fj_per_cycle": {g: {k: v * 1e15 for k, v in e.to_dict().items()}
                                   for g, e in _ordered(groups).items()},
    }


def _ordered(d, total=False):
    out = {g: d[g] for g in GROUP_ORDER if g in d}
    out.update({g: v for g, v in d.items() if g not in out})
    if total:
        out["total"] = sum(v for g, v in out.items())
    return out


def run_energy(flow: DesignFlow, stim: MacOpStream, *, timed=True, use_cache=True,
               progress=None):
    """Energy of ``flow``'s design under ``stim`` (gate-level simulation, cached)."""
    cfg = MacConfig.from_dict(flow.manifest["config"])
    try:
        check_stimulus(stim, cfg)
    except ValueError as exc:
        raise UserError(f"stimulus does not fit {flow.manifest['top']}: {exc}") from None
    if flow.cell_models is None or not Path(flow.cell_models).is_file():
        raise UserError(f"no Verilog cell models for {flow.liberty.path}: pass --cell-models "
                        f"FILE (the gate-level simulation needs one Verilog module per cell)")
    period = flow.period
    sim_period = math.ceil((period * _SIM_STRETCH + _SIM_MARGIN_S) * 1e11) / 1e11
    key = cache.cache_key("energy", synthesis_code_digest(), flow.entry.name, Path(flow.cell_models),
                          stim.digest(), timed, sim_period, tool_version("iverilog"))
    entry = cache.cached_entry("energy", key) if use_cache else None
    if entry is not None:
        return json.loads((entry / "result.json").read_text())
    flat = flow.flat()
    with tempfile.TemporaryDirectory(prefix="wrapkit-sim-") as tmp:
        if progress:
            progress(f"gate-level simulation ({len(stim)} ops, Icarus"
                     f"{' + SDF' if timed else ', zero delay'})")
        act = simulate(flow.manifest, flow.entry / "netlist.v", flat, stim, flow.cell_models,
                       tmp, period=sim_period,
                       sdf=(flow.entry / "netlist.sim.sdf") if timed else None)
        if progress:
            progress("energy (liberty tables at the OpenSTA operating point)")
        glitchy = energy_per_cycle(flat, flow.liberty, flow.slews, flow.loads, act.rise,
                                   act.fall, act.cycles, period)
        settled = energy_per_cycle(flat, flow.liberty, flow.slews, flow.loads, act.srise,
                                   act.sfall, act.cycles, period)
        r, f, n = uniform_activity(flat, 0.1)
        default = energy_per_cycle(flat, flow.liberty, flow.slews, flow.loads, r, f, n,
                                   period)
        toggles = act.toggles(True)
        settled_toggles = act.toggles(False)
        result = {
            "stimulus": stim.source,
            "ops": len(stim),
            "simulation": ("Icarus, SDF-annotated cell delays" if timed
                           else "Icarus, zero delay"),
            "simulated_period_ns": sim_period * 1e9,
            "check": f"outputs equal wrapkit.ref.mac_stream for all {len(stim)} operations",
            "stimulus_based": _energy_block(glitchy, period),
            "glitch_free": _energy_block(settled, period),
            "default_activity_0.1": _energy_block(default, period),
            "mean_toggles_per_net_per_cycle": float(toggles.sum() / max(len(toggles), 1)
                                                    / act.cycles),
            "glitch_share_of_toggles": float(1 - settled_toggles.sum() / toggles.sum())
            if toggles.sum() else 0.0,
        }
        if use_cache:
            _commit_result_only("energy", key, result)
    return result


def _commit_result_only(kind, key, result):
    with tempfile.TemporaryDirectory(prefix="wrapkit-entry-") as tmp:
        cache.commit_entry(kind, key, tmp, result)


def opensta_vectorless(flow: DesignFlow, flat=None):
    """OpenSTA's own report_power at activity 0.1 per group, in mW (for reference)."""
    flat = flat or flow.flat()
    group_of = {c.name: c.group for c in flat.cells}
    out = {}
    for inst, (internal, switching, leakage) in flow.vectorless.items():
        g = group_of.get(inst)
        if g is None:
            continue      # a hierarchical instance (its leaves are listed themselves)
        acc = out.setdefault(g, [0.0, 0.0, 0.0])
        acc[0] += internal * 1e3
        acc[1] += switching * 1e3
        acc[2] += leakage * 1e3
    return {g: {"internal_mw": v[0], "switching_mw": v[1], "leakage_mw": v[2]}
            for g, v in _ordered(out).items()}


def evaluate(manifest_path, *, liberty=None, cell_models=None, stimulus=None, n_ops=2000,
             seed=0, goal="delay", timed=True, use_cache=True, progress=None):
    """Area, timing and energy of one design: the report :mod:`.report` formats.

    Parameters
    ----------
    manifest_path : path
    liberty, cell_models, goal : see :func:`synthesize_design`
    stimulus : MacOpStream or None
        None: ``n_ops`` random operations (seed ``seed``).
    n_ops : int
    timed : bool
        Simulate with SDF delays (glitches counted) or zero delay.
    """
    flow = synthesize_design(manifest_path, liberty=liberty, cell_models=cell_models,
                             goal=goal, use_cache=use_cache, progress=progress)
    cfg = MacConfig.from_dict(flow.manifest["config"])
    if stimulus is None:
        stimulus = random_stimulus(cfg, n_ops, seed=seed)
    energy = run_energy(flow, stimulus, timed=timed, use_cache=use_cache, progress=progress)
    period_ns = flow.period * 1e9
    gops = OPS_PER_CYCLE / period_ns
    area = _ordered(flow.result["area"]["groups"], total=True)
    return {
        "schema": "wrapkit.synth/1",
        "generator": f"wrapkit {__version__}",
        "flow_version": FLOW_VERSION,
        "design": flow.manifest["top"],
        "config": flow.manifest["config"],
        "liberty": str(flow.liberty.path),
        "goal": flow.goal,
        "tools": {"yosys": tool_version("yosys"), "sta": tool_version("sta"),
                  "iverilog": tool_version("iverilog")},
        "cycle_time_ns": period_ns,
        "throughput_gops": gops,
        "critical_path": {"start": flow.result["timing"]["startpoint"],
                          "end": flow.result["timing"]["endpoint"]},
        "area_um2": area,
        "registers": flow.result["area"]["registers"],
        "area_efficiency_um2_per_gops": {g: a / gops for g, a in area.items()},
        "energy": energy,
        "opensta_vectorless_0.1": opensta_vectorless(flow),
        "cache_entry": str(flow.entry),
    }
