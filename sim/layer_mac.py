"""Cosimulation of a trained layer or graph node on one MAC: real operands through the RTL.

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

:func:`cosim_node` does the same for any MAC-type node (conv2d incl. depthwise, linear,
matmul) of a graph file (version 2, or version 1 read as a graph): the graph engine
(:class:`wrapkit.ref.graph.GraphEngine`) computes the node's inputs and output on the test
images, :func:`wrapkit.ref.graph.node_streams.node_stream` turns them into the node's
operation stream and the MAC it needs, and steps 2-4 are the same. A dot product whose last
accumulator or output differs from the engine is reported with its operation index, its last
operands, what the engine expects and what the RTL gave.
"""

import time
from dataclasses import dataclass, field

import numpy as np

from wrapkit.common.errors import UserError

from .designs import mac_design_for
from .runner import build_root
from .tools import check_simulator

__all__ = ["PATHS", "LayerCosimResult", "cosim_layer", "cosim_node", "final_mismatch_examples",
           "layer_design", "layer_operands", "node_operation_stream"]

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
    A graph node's result has ``layer`` None, ``name`` the node and ``kind`` its kind.
    """

    model: str
    layer: int | None
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
    kind: str = "layer"

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

    _check_counts(images, max_ops)
    from wrapkit.ref.wkx import GRAPH_SCHEMA, decode, read_bytes

    if decode(read_bytes(model), model).header.get("schema") == GRAPH_SCHEMA:
        from wrapkit.ref.graph import read_graph
        from wrapkit.ref.graph.node_streams import mac_node_names

        names = ", ".join(mac_node_names(read_graph(model).graph)) or "none"
        raise UserError(f"{model} is an integer graph (version 2), which has nodes, not "
                        f"layers: pass --node NAME (its MAC nodes: {names})")
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
    _simulate(result, cfg, stream, say)
    return result


def _simulate(result, cfg, stream, say):
    t1 = time.perf_counter()
    manifest_path = layer_design(cfg)
    from wrapkit.hw.manifest import load_manifest, verilog_path

    manifest = load_manifest(manifest_path)
    verilog = verilog_path(manifest_path, manifest)
    result.build_s = time.perf_counter() - t1
    if result.path == "preloaded":
        acc, out = _run_preloaded(result, manifest_path, stream, say)
    else:
        acc, out = _run_driven(result, manifest_path, manifest, verilog, stream, say)
    if result.final_mismatches:
        result.examples += final_mismatch_examples(stream, acc, out)


def final_mismatch_examples(stream, acc, out, limit=10):
    """One line per dot product (at most ``limit``) whose last ``acc``/``out`` (per operation,
    e.g. the RTL's) differ from the stream's ``final_acc``/``final_out`` (the integer engine):
    its operation index, last operands, expected and actual values."""
    ends = stream.dot_ends()
    acc, out = np.asarray(acc), np.asarray(out)
    bad = np.flatnonzero((acc[ends] != stream.final_acc) | (out[ends] != stream.final_out))
    lines = []
    for d in bad[:limit]:
        i = int(ends[d])
        lines.append(f"dot product #{d} ends at op #{i}: a={int(stream.a[i])} "
                     f"w=0x{int(stream.w[i]):x}: integer engine expects acc "
                     f"{int(stream.final_acc[d])}, y {int(stream.final_out[d])}; got acc "
                     f"{int(acc[i])}, y {int(out[i])}")
    return lines


def node_operation_stream(model, node, images=1, *, dataset=None, data_dir=None,
                          max_ops=None):
    """Operation stream of MAC node ``node`` of graph file ``model`` on the first test images.

    Returns ``(stream, cfg, graph_node, n_images)``: the node's
    :class:`~wrapkit.ref.opstream.MacOpStream` (the first whole dot products within
    ``max_ops`` operations), the :class:`~wrapkit.ref.datapath.MacConfig` it needs and the
    graph node.

    Raises
    ------
    UserError
        Unreadable file, no such node, a node that is not MAC-type or has no MAC, bad
        counts, missing dataset.
    """
    from wrapkit.common.datasets import load_images
    from wrapkit.ref.graph import GraphEngine, read_graph
    from wrapkit.ref.graph.node_streams import node_mac_config, node_stream

    _check_counts(images, max_ops)
    exp = read_graph(model)
    graph = exp.graph
    try:
        cfg = node_mac_config(graph, node)
    except UserError as exc:
        raise UserError(f"{model}: {exc}") from None
    gnode = graph.node(node)
    spec = exp.header.get("input") or {}
    dataset = dataset or spec.get("dataset")
    if dataset is None:
        raise UserError(f"{model} records no dataset; pass --dataset")
    test = load_images(dataset, "test", data_dir).first(images)
    fan_in = _fan_in(graph, gnode)
    max_dots = None if max_ops is None else max(1, max_ops // fan_in)
    # Only as many images as the kept dot products need.
    per_image = gnode.output.size
    if max_dots is not None:
        test = test.first(max(1, -(-max_dots // per_image)))
    engine = GraphEngine(graph)
    keep = [s for s in gnode.inputs if s not in graph.inputs] + [node]
    values = engine.run(test.pixels, keep=keep)
    feeds = engine.check_inputs(test.pixels)
    inputs = [values[s] if s in values else feeds[s] for s in gnode.inputs]
    stream, _ = node_stream(graph, node, inputs, output=values[node], max_dots=max_dots)
    return stream, cfg, gnode, len(test)


def _fan_in(graph, node):
    if node.kind == "matmul":
        return graph.type_of(node.inputs[0]).shape[-1]
    return int(np.prod(node.weights["weight"].shape[1:]))


def _check_counts(images, max_ops):
    if isinstance(images, bool) or not isinstance(images, int) or images < 1:
        raise UserError(f"--images must be an integer >= 1, got {images!r}")
    if max_ops is not None and (isinstance(max_ops, bool) or not isinstance(max_ops, int)
                                or max_ops < 1):
        raise UserError(f"--max-ops must be an integer >= 1, got {max_ops!r}")


def cosim_node(model, node, *, images=1, sim="icarus", path="preloaded", max_ops=None,
               dataset=None, data_dir=None, progress=None):
    """Cosimulate MAC node ``node`` of a graph file on real test images (module docstring).

    Parameters are those of :func:`cosim_layer`, with ``node`` a node name (``wrapkit
    infer FILE`` lists the MAC nodes).

    Returns
    -------
    LayerCosimResult
        With ``layer`` None, ``name`` the node and ``kind`` its kind.
    """
    check_simulator(sim)
    if path not in PATHS:
        raise UserError(f"unknown --path {path!r}; choose one of {', '.join(PATHS)}")
    say = progress or (lambda msg: None)
    t0 = time.perf_counter()
    say(f"engine: running the graph on {images} test image(s) up to node {node}")
    stream, cfg, gnode, n_images = node_operation_stream(
        model, node, images, dataset=dataset, data_dir=data_dir, max_ops=max_ops)
    fan_in = len(stream) // stream.dots
    result = LayerCosimResult(str(model), None, node, cfg.name, sim, path, n_images,
                              stream.dots, fan_in, engine_s=time.perf_counter() - t0,
                              kind=gnode.kind)
    say(f"design: {cfg.name} for node {node} ({gnode.kind}, {gnode.output.describe()}); "
        f"{result.ops:,} MAC operations in {stream.dots:,} dot products")
    _simulate(result, cfg, stream, say)
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
    return run.acc, run.out


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
    return acc, out
