"""Cosimulation of a trained layer: real operands through the RTL MAC, checked against ref.

:func:`cosim_layer` takes an export (``.wkx``), one of its integer layers and some test
images, and

1. runs the integer engine (:mod:`wrapkit.ref.engine`) up to that layer to get its real
   input codes, and builds the layer's MAC operation stream (:func:`wrapkit.ref.engine.
   layer_stream`: one dot product per output neuron, output positions outermost, output
   channels next, the fan-in innermost, ``clr`` on each dot product's first operation);
2. generates the MAC for the layer's bit widths with the hw generator
   (:func:`wrapkit.hw.verilog.mac_design`, unsigned activations of the layer's input bits,
   its weight kind, accumulator width and cyclic slope; cached in the build folder);
3. simulates the stream on Icarus or Verilator, either *preloaded* (:mod:`.preload`: the
   simulator runs free, Python checks every cycle afterwards) or *driven* (cocotb,
   :mod:`.tb_layer`: one operation per cycle from Python, checked by the scoreboard);
4. checks every cycle's ``acc`` (and ``y``) against ``wrapkit.ref.mac_stream``, and each dot
   product's final accumulator and MAC output against the engine's ``wrap(z)`` and ``y``.
"""

import fcntl
import hashlib
import io
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wrapkit.ref.datapath import mac_stream
from wrapkit.common.errors import UserError
from wrapkit.common.files import atomic_write_bytes

from .runner import build_root
from .tools import check_simulator

__all__ = ["PATHS", "LayerCosimResult", "cosim_layer", "layer_design", "layer_operands"]

PATHS = ("preloaded", "driven")


@dataclass
class LayerCosimResult:
    """Outcome of :func:`cosim_layer`.

    ``checked`` operations were compared cycle by cycle, ``mismatches`` of them differed
    (RTL vs ``ref.mac_stream``); ``final_mismatches`` counts dot products whose final
    accumulator or MAC output differs from the integer engine. ``ops_per_s`` is verified
    operations per second of stream I/O, simulation and checking (build and engine
    excluded) over ``wall_s``, the wall-clock time from writing the first stream file to
    the last check; ``sim_s``, ``io_s`` and ``check_s`` are per-stage sums, which overlap
    on the preloaded path (the next chunk simulates while the previous one is checked).
    """

    model: str
    layer: int
    name: str
    design: str
    sim: str
    path: str
    images: int
    dots: int
    fan_in: int
    checked: int = 0
    mismatches: int = 0
    final_mismatches: int = 0
    examples: list = field(default_factory=list)
    chunks: int = 0
    engine_s: float = 0.0
    build_s: float = 0.0
    sim_s: float = 0.0
    io_s: float = 0.0
    check_s: float = 0.0
    wall_s: float = 0.0
    log: str = ""

    @property
    def ops(self):
        return self.dots * self.fan_in

    @property
    def ops_per_s(self):
        """Verified operations per wall-clock second of simulation and checking."""
        return self.checked / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def ok(self):
        return (self.checked == self.ops > 0 and self.mismatches == 0
                and self.final_mismatches == 0)

    def to_dict(self):
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d.update(ops=self.ops, ops_per_s=self.ops_per_s, ok=self.ok)
        return d


def layer_design(cfg, root=None):
    """Manifest path of the MAC for ``cfg``, generated once into the build folder."""
    from .designs import _generator_fingerprint

    key = hashlib.sha256(json.dumps([cfg.to_dict(), _generator_fingerprint()]).encode())
    base = Path(root).resolve() if root is not None else build_root()
    folder = base / "designs" / f"{cfg.name}-{key.hexdigest()[:16]}"
    manifest = folder / f"{cfg.name}.json"
    if manifest.is_file():
        return manifest
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder.with_name(folder.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not manifest.is_file():
            from wrapkit.hw.verilog import mac_design, write_designs

            write_designs([mac_design(cfg)], folder)  # the manifest is written last
    return manifest


def layer_operands(model, layer, images=1, *, dataset=None, data_dir=None, max_ops=None):
    """Engine, layer and operation stream of integer ``layer`` for the first test images.

    Returns ``(engine, layer_obj, stream, n_images)``; see
    :func:`wrapkit.ref.engine.layer_stream` for the stream's contents.

    Raises
    ------
    UserError
        Unreadable export, no such layer, a float layer, bad counts, missing dataset.
    """
    from wrapkit.ref.datasets import load_images
    from wrapkit.ref.engine import Engine, layer_stream
    from wrapkit.ref.wkx import read_export

    if isinstance(images, bool) or not isinstance(images, int) or images < 1:
        raise UserError(f"--images must be an integer >= 1, got {images!r}")
    if max_ops is not None and (isinstance(max_ops, bool) or not isinstance(max_ops, int)
                                or max_ops < 1):
        raise UserError(f"--max-ops must be an integer >= 1, got {max_ops!r}")
    exp = read_export(model)
    engine = Engine(exp)
    lay = engine.layer(layer)
    if lay.precision != "integer":
        ints = ", ".join(str(l.index) for l in engine.integer_layers)
        raise UserError(f"layer {layer} ({lay.name}) of {model} is a float layer and runs on "
                        f"no MAC; choose an integer layer: {ints}")
    dataset = dataset or exp.header["input"].get("dataset")
    test = load_images(dataset, "test", data_dir).first(images)
    codes = engine.layer_input(test.pixels, layer)
    max_dots = None if max_ops is None else max(1, max_ops // lay.fan_in)
    return engine, lay, layer_stream(lay, codes, max_dots), len(test)


def _final_mismatches(stream, acc, out):
    """Dot products whose last cycle differs from the engine's wrap(z) / y."""
    ends = np.arange(1, stream["dots"] + 1) * stream["fan_in"] - 1
    return int(np.count_nonzero((acc[ends] != stream["final_acc"])
                                | (out[ends] != stream["final_out"])))


def cosim_layer(model, layer, *, images=1, sim="icarus", path="preloaded", max_ops=None,
                dataset=None, data_dir=None, progress=None):
    """Cosimulate one integer layer of an export on real test images (module docstring).

    Parameters
    ----------
    model : path-like
        The ``.wkx`` export.
    layer : int
        Index into the export's layer list (an integer layer).
    images : int
        How many test images (the first ones) feed the layer.
    sim : "icarus" | "verilator"
    path : "preloaded" | "driven"
    max_ops : int, optional
        Cut the stream to the first whole dot products within this many operations.
    progress : callable(str), optional
        Receives stage messages.

    Returns
    -------
    LayerCosimResult
    """
    check_simulator(sim)
    if path not in PATHS:
        raise UserError(f"unknown --path {path!r}; choose one of {', '.join(PATHS)}")
    say = progress or (lambda msg: None)
    t0 = time.perf_counter()
    say(f"engine: running {images} test image(s) up to layer {layer}")
    _, lay, stream, n_images = layer_operands(model, layer, images, dataset=dataset,
                                              data_dir=data_dir, max_ops=max_ops)
    engine_s = time.perf_counter() - t0
    cfg = lay.cfg
    result = LayerCosimResult(str(model), layer, lay.name, cfg.name, sim, path, n_images,
                              stream["dots"], stream["fan_in"], engine_s=engine_s)
    say(f"design: {cfg.name} for layer {layer} ({lay.name}: {lay.describe()}); "
        f"{result.ops:,} MAC operations in {stream['dots']:,} dot products")
    t1 = time.perf_counter()
    manifest_path = layer_design(cfg)
    from wrapkit.hw.manifest import load_manifest, verilog_path

    manifest = load_manifest(manifest_path)
    verilog = verilog_path(manifest_path, manifest)
    result.build_s = time.perf_counter() - t1
    if path == "preloaded":
        _run_preloaded(result, manifest, verilog, stream, say)
    else:
        _run_driven(result, manifest_path, manifest, verilog, stream, say)
    return result


def _run_preloaded(result, manifest, verilog, stream, say):
    from .preload import MAX_DEPTH, build_preloaded, depth_for, preloaded_workdir

    k = stream["fan_in"]
    if k > MAX_DEPTH:
        raise UserError(f"layer fan-in {k} exceeds the preloaded memory ({MAX_DEPTH} ops)")
    dots_per_chunk = MAX_DEPTH // k
    n_chunks = -(-stream["dots"] // dots_per_chunk)
    depth = depth_for(min(stream["dots"], dots_per_chunk) * k)
    t = time.perf_counter()
    say(f"build: preloaded testbench on {result.sim} (memory depth {depth})")
    command = build_preloaded(manifest, verilog, result.sim, depth)
    result.build_s += time.perf_counter() - t
    workdir = preloaded_workdir()
    acc_parts, out_parts = [], []
    try:
        _chunks(result, manifest, command, stream, n_chunks, dots_per_chunk, workdir,
                acc_parts, out_parts, say)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result.chunks = n_chunks
    t = time.perf_counter()
    result.final_mismatches = _final_mismatches(stream, np.concatenate(acc_parts),
                                                np.concatenate(out_parts))
    result.wall_s += time.perf_counter() - t


def _chunks(result, manifest, command, stream, n_chunks, dots_per_chunk, workdir, acc_parts,
            out_parts, say):
    """Run the chunks pipelined: chunk c+1 simulates while chunk c is checked."""
    from .preload import finish_preloaded, start_preloaded

    k = stream["fan_in"]

    def start(c):
        lo = c * dots_per_chunk * k
        hi = min(stream["dots"], (c + 1) * dots_per_chunk) * k
        say(f"simulate: chunk {c + 1}/{n_chunks}, operations {lo:,}..{hi - 1:,}")
        return start_preloaded(manifest, command, *(stream[x][lo:hi] for x in
                                                    ("a", "w", "en", "clr")), workdir=workdir)

    t0 = time.perf_counter()
    pending = start(0)
    try:
        for c in range(n_chunks):
            current, pending = pending, (start(c + 1) if c + 1 < n_chunks else None)
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
            pending.proc.kill()
            pending.proc.communicate()
    result.examples = result.examples[:20]
    result.wall_s = time.perf_counter() - t0


def _run_driven(result, manifest_path, manifest, verilog, stream, say):
    from wrapkit.hw.manifest import mac_config

    from .runner import run

    workdir = build_root() / "layer_streams"
    buf = io.BytesIO()
    np.savez(buf, a=stream["a"], w=stream["w"], en=stream["en"], clr=stream["clr"])
    digest = hashlib.sha256(buf.getvalue()).hexdigest()[:16]
    npz = atomic_write_bytes(workdir / f"stream-{digest}.npz", buf.getvalue())
    say(f"simulate: driving {result.ops:,} operations from cocotb on {result.sim}")
    try:
        sim_result = run([verilog], manifest["top"], "wrapkit.sim.tb_layer", result.sim,
                         env={"WRAPKIT_TB_MANIFEST": manifest_path, "WRAPKIT_TB_STREAM": npz},
                         testcase=["test_layer_stream"])
    finally:
        npz.unlink(missing_ok=True)
    result.log = str(sim_result.log_file)
    rep = (sim_result.outcomes[0].report if sim_result.outcomes else None) or {}
    result.checked = int(rep.get("ops_checked", 0))
    result.mismatches = int(rep.get("mismatches", 0))
    result.examples = list(rep.get("mismatch_examples", []))
    result.sim_s = float(rep.get("wall_s", 0.0))
    result.wall_s = result.sim_s
    if not sim_result.ok and not result.mismatches:
        result.mismatches = max(1, result.ops - result.checked)
        result.examples.append(sim_result.summary())
    t = time.perf_counter()
    # The scoreboard compared the RTL with ref.mac_stream every cycle; tie ref's view of the
    # stream to the integer engine here.
    acc, out = mac_stream(stream["a"], stream["w"], stream["en"], stream["clr"],
                          mac_config(manifest))
    result.final_mismatches = _final_mismatches(stream, acc, out)
    result.check_s += time.perf_counter() - t
    result.wall_s += time.perf_counter() - t

