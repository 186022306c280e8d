"""One MAC operation stream of any length through the preloaded testbench, in chunks.

:func:`cosim_stream` builds (or reuses) the preloaded testbench of a MAC design
(:mod:`wrapkit.sim.preload`), splits the stream into runs that fit its memory -- each run
starts a dot product, so no run depends on the accumulator left by the one before -- and runs
them pipelined: the simulator works on run ``c + 1`` while Python checks run ``c`` against
``wrapkit.ref.mac_stream``. When the stream carries the integer engine's per-dot results
(``final_acc``/``final_out``, :func:`wrapkit.ref.streams.layer_stream`), every dot product's
last cycle is also checked against them.
"""

import shutil
import time
from dataclasses import dataclass, field

import numpy as np

from wrapkit.common.checks import check_int
from wrapkit.common.errors import UserError

from .preload import (MAX_DEPTH, build_preloaded, depth_for, finish_preloaded,
                      preloaded_workdir, start_preloaded)

__all__ = ["StreamCosimResult", "cosim_stream"]

#: Mismatch descriptions kept (all mismatches are counted).
MAX_EXAMPLES = 20


@dataclass
class StreamCosimResult:
    """Outcome of :func:`cosim_stream`.

    ``checked`` operations were compared cycle by cycle with ``wrapkit.ref.mac_stream`` and
    ``mismatches`` of them differed; ``final_mismatches`` counts dot products whose last
    cycle differs from the stream's ``final_acc``/``final_out`` (None when it has none).
    ``wall_s`` runs from writing the first stream file to the last check; ``sim_s``,
    ``io_s`` and ``check_s`` are per-stage sums, which overlap (the next chunk simulates while
    the previous one is checked). ``build_s`` is the testbench build (0 when reused).
    ``acc`` and ``out`` hold what the RTL produced for every operation.
    """

    design: str
    sim: str
    ops: int
    checked: int = 0
    mismatches: int = 0
    final_mismatches: int | None = None
    examples: list = field(default_factory=list)
    chunks: int = 0
    build_s: float = 0.0
    sim_s: float = 0.0
    io_s: float = 0.0
    check_s: float = 0.0
    wall_s: float = 0.0
    acc: np.ndarray = field(default=None, repr=False)
    out: np.ndarray = field(default=None, repr=False)

    @property
    def ops_per_s(self):
        """Verified operations per wall-clock second of simulation and checking."""
        return self.checked / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def ok(self):
        return (self.checked == self.ops > 0 and self.mismatches == 0
                and not self.final_mismatches)

    def to_dict(self):
        """The figures as JSON-able values (without the per-operation arrays)."""
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in ("acc", "out")}
        d.update(ops_per_s=self.ops_per_s, ok=self.ok)
        return d


def cosim_stream(manifest_path, stream, sim, *, chunk_ops=MAX_DEPTH, progress=None,
                 root=None):
    """Run ``stream`` through the MAC design ``manifest_path`` on ``sim``, checking every cycle.

    Parameters
    ----------
    manifest_path : path-like
        The MAC's manifest (its Verilog lies beside it).
    stream : wrapkit.ref.opstream.MacOpStream
        The operations, of any length; without ``rst`` pulses (the preloaded wrapper drives
        no reset).
    sim : "icarus" | "verilator"
    chunk_ops : int
        Most operations per simulator run (at most the testbench memory,
        :data:`~wrapkit.sim.preload.MAX_DEPTH`).
    progress : callable(str), optional
        Receives one line per stage and chunk.
    root : path-like, optional
        Root of the build folders (default :func:`wrapkit.sim.runner.build_root`).

    Returns
    -------
    StreamCosimResult

    Raises
    ------
    UserError
        A dot product longer than ``chunk_ops``, a bad simulator or a missing tool.
    SimulationError
        The testbench failed to build or a simulator run failed.
    """
    from wrapkit.hw.manifest import load_manifest, verilog_path

    say = progress or (lambda msg: None)
    chunk_ops = check_int("chunk_ops", chunk_ops, 1, MAX_DEPTH)
    manifest = load_manifest(manifest_path)
    try:
        bounds = stream.chunks(chunk_ops)
    except ValueError as exc:
        raise UserError(f"{stream.source}: {exc} of one preloaded run; use the driven "
                        "path") from None
    result = StreamCosimResult(manifest["top"], sim, len(stream), chunks=len(bounds))
    if not bounds:
        return result
    depth = depth_for(max(stop - start for start, stop in bounds))
    t = time.perf_counter()
    say(f"build: preloaded testbench on {sim} (memory depth {depth})")
    command = build_preloaded(manifest, verilog_path(manifest_path, manifest), sim, depth,
                              root=root)
    result.build_s = time.perf_counter() - t
    workdir = preloaded_workdir(root)
    acc_parts, out_parts = [], []

    def start(c):
        lo, hi = bounds[c]
        say(f"simulate: chunk {c + 1}/{len(bounds)}, operations {lo:,}..{hi - 1:,}")
        return start_preloaded(manifest, command, stream.segment(lo, hi), workdir=workdir)

    t0 = time.perf_counter()
    pending = None
    try:
        pending = start(0)
        for c in range(len(bounds)):
            current, pending = pending, (start(c + 1) if c + 1 < len(bounds) else None)
            run = finish_preloaded(manifest, current)
            result.checked += len(run.acc)
            result.mismatches += run.mismatches
            result.examples += [f"chunk {c + 1}: {e}" for e in run.examples]
            result.sim_s += run.sim_s
            result.io_s += run.io_s
            result.check_s += run.check_s
            acc_parts.append(run.acc)
            out_parts.append(run.out)
    finally:
        if pending is not None:  # an error left a simulator running: stop it
            pending.cancel()
        shutil.rmtree(workdir, ignore_errors=True)
    result.examples = result.examples[:MAX_EXAMPLES]
    result.acc, result.out = np.concatenate(acc_parts), np.concatenate(out_parts)
    if stream.final_acc is not None:
        result.final_mismatches = stream.final_mismatches(result.acc, result.out)
    result.wall_s = time.perf_counter() - t0
    return result
