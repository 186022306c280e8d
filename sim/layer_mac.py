"""Cosimulation of a trained layer on one MAC: real operands through the RTL, checked against ref.

The MAC path of ``wrapkit cosim layer`` (the layer-array path is :mod:`wrapkit.sim.layer_array`).
:func:`cosim_layer` takes an export (``.wkx``), one of its integer layers and some test
images, and

1. runs the integer engine (:mod:`wrapkit.ref.engine`) up to that layer to get its real
   input codes, and builds the layer's MAC operation stream
   (:func:`wrapkit.ref.streams.layer_stream`: one dot product per output neuron, output
   positions outermost, output channels next, the fan-in innermost, ``clr`` on each dot
   product's first operation);
2. generates the MAC for the layer's bit widths with the hw generator
   (:func:`wrapkit.sim.designs.mac_design_for`: unsigned activations of the layer's input
   bits, its weight kind, accumulator width and cyclic slope; cached in the build folder);
3. simulates the stream on Icarus or Verilator, either *preloaded*
   (:func:`wrapkit.sim.stream_cosim.cosim_stream`: the simulator runs free, Python checks
   every cycle afterwards) or *driven* (cocotb, :mod:`.tb_layer_mac`: one operation per cycle
   from Python, checked by the scoreboard);
4. checks every cycle's ``acc`` (and ``y``) against ``wrapkit.ref.mac_stream``, and each dot
   product's final accumulator and MAC output against the engine's ``wrap(z)`` and ``y``.
"""

import time
from dataclasses import dataclass, field

from wrapkit.common.errors import UserError

from .designs import mac_design_for
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
    return mac_design_for(cfg, root)


def layer_operands(model, layer, images=1, *, dataset=None, data_dir=None, max_ops=None):
    """Engine, layer and operation stream of integer ``layer`` for the first test images.

    Returns ``(engine, layer_obj, stream, n_images)``; ``stream`` is the layer's
    :class:`~wrapkit.ref.opstream.MacOpStream` (:func:`wrapkit.ref.streams.layer_stream`).

    Raises
    ------
    UserError
        Unreadable export, no such layer, a float layer, bad counts, missing dataset.
    """
    from wrapkit.common.datasets import load_images
    from wrapkit.ref.engine import Engine
    from wrapkit.ref.streams import layer_stream
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
                              stream.dots, lay.fan_in, engine_s=engine_s)
    say(f"design: {cfg.name} for layer {layer} ({lay.name}: {lay.describe()}); "
        f"{result.ops:,} MAC operations in {stream.dots:,} dot products")
    t1 = time.perf_counter()
    manifest_path = layer_design(cfg)
    from wrapkit.hw.manifest import load_manifest, verilog_path

    manifest = load_manifest(manifest_path)
    verilog = verilog_path(manifest_path, manifest)
    result.build_s = time.perf_counter() - t1
    if path == "preloaded":
        _run_preloaded(result, manifest_path, stream, say)
    else:
        _run_driven(result, manifest_path, manifest, verilog, stream, say)
    return result


def _run_preloaded(result, manifest_path, stream, say):
    from .stream_cosim import cosim_stream

    run = cosim_stream(manifest_path, stream, result.sim, progress=say)
    result.checked, result.mismatches = run.checked, run.mismatches
    result.final_mismatches = run.final_mismatches
    result.examples, result.chunks = run.examples, run.chunks
    result.build_s += run.build_s
    result.sim_s, result.io_s, result.check_s = run.sim_s, run.io_s, run.check_s
    result.wall_s = run.wall_s


def _run_driven(result, manifest_path, manifest, verilog, stream, say):
    from .runner import run

    # Named by content: parallel runs never share a half-written file.
    npz = stream.save(build_root() / "layer_streams" / f"stream-{stream.digest()[:16]}.npz")
    say(f"simulate: driving {result.ops:,} operations from cocotb on {result.sim}")
    try:
        sim_result = run([verilog], manifest["top"], "wrapkit.sim.tb_layer_mac", result.sim,
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
    from wrapkit.hw.manifest import mac_config

    acc, out = stream.reference(mac_config(manifest))
    result.final_mismatches = stream.final_mismatches(acc, out)
    result.check_s += time.perf_counter() - t
    result.wall_s += time.perf_counter() - t
