"""Cosimulation of the layer array: generate (or reuse) a design, run whole layers on it.

:func:`array_rtl` generates a :class:`~wrapkit.hw.array.top.LayerArray` design into the
build folder, keyed by its configuration and a fingerprint of the generator's sources (so a
design is generated once per machine and regenerated when hw/ or ref/ changes;
:func:`wrapkit.sim.designs.generated_design`).
:func:`cosim_array` runs :mod:`wrapkit.sim.tb_array` on it for a list of
:class:`~wrapkit.hw.array.jobs.LayerJob` and returns the outputs and the per-layer report.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wrapkit.common.buildcache import hash_parts
from wrapkit.common.files import atomic_write_bytes

from .designs import generated_design
from .runner import SimResult, build_root, run
from .tools import check_simulator

__all__ = ["ArrayCosimResult", "array_rtl", "cosim_array"]


def array_rtl(cfg, root=None):
    """Manifest path of the generated design for ``cfg`` (an ArrayConfig), generating it
    into ``<build root>/designs/<name>-<key>/`` the first time
    (:func:`wrapkit.sim.designs.generated_design`)."""
    def generate(folder):
        from wrapkit.hw.array.design import array_design
        from wrapkit.hw.verilog import write_designs

        write_designs([array_design(cfg)], folder)  # Verilog first, manifest last

    return generated_design(cfg.name, cfg.to_dict(), generate, root=root)


@dataclass
class ArrayCosimResult:
    """Outcome of :func:`cosim_array`.

    Attributes
    ----------
    design, sim : str
    layers : list of dict
        Per layer: name, outputs, mismatches, cycles (port, by simulation time, model),
        load words, wall time per phase (see :mod:`wrapkit.sim.tb_array`).
    outputs : list of ndarray
        Per layer, what the array wrote, ``(out_channels, positions)`` int64 (an unresolved
        word, x or z, reads as 0 here: see ``unresolved``).
    unresolved : list of ndarray
        Per layer, ``(out_channels, positions)`` bool: the words read back as x or z. A
        comparison of ``outputs`` with anything must count these as mismatches.
    checked, mismatches : int
    examples : list of str
    cycle_errors : list of str
    sim_result : SimResult
    """

    design: str
    sim: str
    layers: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    unresolved: list = field(default_factory=list)
    checked: int = 0
    mismatches: int = 0
    examples: list = field(default_factory=list)
    cycle_errors: list = field(default_factory=list)
    sim_result: SimResult = None

    @property
    def ok(self):
        return (self.sim_result.ok and self.mismatches == 0 and not self.cycle_errors
                and self.checked > 0)


def cosim_array(manifest, jobs, sim="icarus"):
    """Run ``jobs`` back to back on the array design ``manifest`` in ``sim``.

    Raises
    ------
    UserError
        A job does not fit the design (checked before any simulation), bad simulator.
    """
    from wrapkit.hw.array.config import ArrayConfig
    from wrapkit.hw.array.jobs import check_job, jobs_bytes
    from wrapkit.hw.manifest import load_manifest, verilog_path

    check_simulator(sim)
    m = load_manifest(manifest)
    cfg = ArrayConfig.from_dict(m["config"])
    for job in jobs:
        check_job(cfg, job)
    data = jobs_bytes(jobs)
    # Named by content: parallel runs never share a half-written file.
    final = build_root() / "jobs" / f"jobs-{hash_parts(data, length=16)}.npz"
    atomic_write_bytes(final, data)
    result = run([verilog_path(manifest, m)], m["top"], "wrapkit.sim.tb_array", sim,
                 env={"WRAPKIT_TB_MANIFEST": Path(manifest).resolve(),
                      "WRAPKIT_TB_JOBS": final})
    out = ArrayCosimResult(m["top"], sim, sim_result=result)
    outcome = result.outcomes[0] if result.outcomes else None
    rep = (outcome.report if outcome else None) or {}
    out.layers = rep.get("layers", [])
    out.checked = int(rep.get("outputs_checked", 0))
    out.mismatches = int(rep.get("mismatches", 0))
    out.examples = rep.get("mismatch_examples", [])
    out.cycle_errors = rep.get("cycle_errors", [])
    for i in range(len(out.layers)):
        path = result.run_dir / f"test_layers_{i}_out.npy"
        mask = result.run_dir / f"test_layers_{i}_unresolved.npy"
        out.outputs.append(np.load(path) if path.is_file() else None)
        out.unresolved.append(np.load(mask) if mask.is_file() else None)
    return out
