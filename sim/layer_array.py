"""A trained layer through the RTL layer array: ``wrapkit cosim layer ... --datapath array``.

The layer-array path of ``wrapkit cosim layer`` (the single-MAC path is
:mod:`wrapkit.sim.layer_mac`).

:func:`cosim_array_layer` runs the integer engine (:mod:`wrapkit.ref.engine`) on the first
test images up to integer layer N of an export, turns that layer (its weight codes, its
fixed-point requantization constants, each image's input codes) into
:class:`~wrapkit.hw.array.jobs.LayerJob` s, one per image, runs them back to back on a
:class:`~wrapkit.hw.array.top.LayerArray` in Icarus or Verilator (:mod:`.tb_array`) and
compares what the array wrote with the engine, bit for bit:

* requantizing layers: the array's output codes against the engine's codes before pooling,
  and the 2x2 max pooling of the array's codes against the engine's layer output;
* the last integer layer (dequantized in float by the engine): the array's ``y`` against the
  engine's MAC outputs.

The array is either generated for the layer (``rows`` x ``cols`` PEs, the layer's bit widths,
buffers just large enough; cached in the build folder) or an existing design given by its
manifest, which must fit the layer (:func:`~wrapkit.hw.array.jobs.check_job` names the
parameter and the minimum when it does not).

:func:`cosim_array_node` does the same for one MAC-type node of an integer graph (a
version-2 file, or a version-1 file as its graph, :mod:`wrapkit.ref.graph.v1`): conv2d with
any groups (depthwise) and dilation, linear, and matmul of two activation tensors
(:mod:`wrapkit.hw.array.nodes` turns the node into jobs). The graph engine gives the node's
input tensors and its output ``y`` (its ``keep`` hook); the array writes ``y`` too.
"""

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from wrapkit.common.errors import UserError
from wrapkit.common.flags import flag_error

from .tools import check_simulator

__all__ = ["ARRAY_SIZE_FLAGS", "ArrayLayerResult", "ArrayNodeResult", "array_for_layer",
           "array_for_node", "cosim_array_layer", "cosim_array_node", "layer_jobs",
           "layer_shape", "run_node_cli"]

#: The array-size parameters the command line sets (for errors that name the flag).
ARRAY_SIZE_FLAGS = {"rows": "--rows", "cols": "--cols"}


@dataclass
class ArrayLayerResult:
    """Outcome of :func:`cosim_array_layer` (per-image figures are means over the images)."""

    model: str
    layer: int
    name: str
    describe: str
    design: str
    sim: str
    images: int
    outputs: int = 0
    mismatches: int = 0            # array vs engine, before pooling (codes or y)
    pooled_mismatches: int = 0     # pooled array codes vs the engine's layer output
    pooled_checked: int = 0
    testbench_mismatches: int = 0  # array vs wrapkit.ref (reference_outputs), in the testbench
    cycles: int = 0                # per image, from the RTL's cycles port
    model_cycles: int = 0          # the cycle model's prediction
    utilisation: float = 0.0
    macs: int = 0                  # per image
    rows: int = 0
    cols: int = 0
    compute_s: float = 0.0         # wall time the simulator spent computing the layer(s)
    load_s: float = 0.0
    read_back_s: float = 0.0
    sim_wall_s: float = 0.0        # whole simulator run (start-up, loads, compute, read back)
    build_s: float = 0.0           # design generation + simulator build (0 when cached)
    engine_s: float = 0.0
    cycle_errors: list = field(default_factory=list)
    examples: list = field(default_factory=list)
    log: str = ""

    @property
    def ok(self):
        return (self.outputs > 0 and self.mismatches == 0 and self.pooled_mismatches == 0
                and self.testbench_mismatches == 0 and not self.cycle_errors
                and self.cycles == self.model_cycles)

    @property
    def cycles_per_s(self):
        return self.cycles * self.images / self.compute_s if self.compute_s > 0 else 0.0

    def to_dict(self):
        d = asdict(self)
        d.update(ok=self.ok, cycles_per_s=self.cycles_per_s)
        return d


def layer_shape(lay):
    """The array's :class:`~wrapkit.hw.array.jobs.LayerShape` of engine layer ``lay``
    (UserError for a kind the array does not run)."""
    from wrapkit.hw.array.jobs import LayerShape

    spec = lay.spec
    if lay.kind == "conv2d":
        c, h, w = spec["in_shape"]
        return LayerShape.conv2d(c, h, w, lay.out_channels, lay.kernel, lay.stride, lay.padding)
    if lay.kind == "linear":
        return LayerShape.linear(spec["in_features"], lay.out_channels)
    raise UserError(f"layer {lay.index} ({lay.name}) is a {lay.kind!r} layer; the array runs "
                    "conv2d and linear layers")


def _nchw(codes):
    """The engine's layer input (NHWC or (N, F)) in PyTorch's layout (NCHW or (N, F))."""
    codes = np.asarray(codes)
    return codes.transpose(0, 3, 1, 2) if codes.ndim == 4 else codes


def layer_jobs(lay, codes):
    """One :class:`LayerJob` per image for integer layer ``lay`` of an engine, from the
    layer's input ``codes`` as :meth:`wrapkit.ref.engine.Engine.layer_input` returns them."""
    from wrapkit.hw.array.jobs import LayerJob

    shape = layer_shape(lay)
    requant = None
    if lay.out_kind == "requant":
        requant = (lay.m, lay.b, lay.s, int(lay.spec["output"]["bits"]))
    x = _nchw(codes)
    if lay.kind == "linear":  # the flattened input, PyTorch's (C, H, W) order
        x = x.reshape(len(x), -1)
    return [LayerJob(shape, lay.cfg, x[i], lay.codes, requant, f"{lay.name}[image {i}]")
            for i in range(len(x))]


def array_for_layer(lay, rows, cols):
    """An :class:`ArrayConfig` of ``rows`` x ``cols`` PEs with the layer's MAC and buffers just
    large enough for it."""
    from wrapkit.hw.array.config import ArrayConfig

    shape = layer_shape(lay)
    out_bits = int(lay.spec["output"]["bits"]) if lay.out_kind == "requant" else 8
    try:
        return ArrayConfig(rows, cols, lay.cfg, out_bits=out_bits,
                           act_depth=max(2, shape.in_channels * shape.in_h * shape.in_w),
                           weight_depth=max(2, shape.out_channels * shape.fan_in),
                           out_depth=max(2, shape.out_channels * shape.positions),
                           max_channels=max(2, shape.out_channels))
    except (TypeError, ValueError) as exc:
        raise flag_error(exc, ARRAY_SIZE_FLAGS, quote_parameter=True) from None


def _pool(x):
    """2x2 max pooling, stride 2, of (N, C, H, W) (the engine's pooling)."""
    n, c, h, w = x.shape
    h2, w2 = h // 2, w // 2
    return x[:, :, :2 * h2, :2 * w2].reshape(n, c, h2, 2, w2, 2).max(axis=(3, 5))


def cosim_array_layer(model, layer, *, images=1, sim="icarus", rows=8, cols=8, array=None,
                      dataset=None, data_dir=None, progress=None):
    """Run integer ``layer`` of export ``model`` on the RTL array (module docstring).

    Parameters
    ----------
    model : path-like
        The ``.wkx`` export.
    layer : int
        Index into the export's layer list (an integer layer).
    images : int
        The first test images; each is one run of the layer, back to back.
    sim : "icarus" | "verilator"
    rows, cols : int
        Size of the generated array (ignored with ``array``).
    array : path-like, optional
        Manifest of an existing array design to use instead.
    progress : callable(str), optional

    Returns
    -------
    ArrayLayerResult
    """
    check_simulator(sim)
    say = progress or (lambda msg: None)
    from wrapkit.hw.array.config import ArrayConfig
    from wrapkit.hw.array.cycles import layer_cycles
    from wrapkit.hw.array.jobs import check_job
    from wrapkit.hw.manifest import load_manifest

    from .cosim_array import array_rtl, cosim_array

    from wrapkit.common.datasets import load_images
    from wrapkit.ref.engine import Engine
    from wrapkit.ref.wkx import read_export

    if isinstance(images, bool) or not isinstance(images, int) or images < 1:
        raise UserError(f"--images must be an integer >= 1, got {images!r}")
    t0 = time.perf_counter()
    say(f"engine: running {images} test image(s) up to layer {layer}")
    engine = Engine(read_export(model))
    lay = engine.layer(layer)
    if lay.precision != "integer":
        ints = ", ".join(str(l.index) for l in engine.integer_layers)
        raise UserError(f"layer {layer} ({lay.name}) of {model} is a float layer and runs on "
                        f"no MAC; choose an integer layer: {ints}")
    test = load_images(dataset or engine.export.header["input"].get("dataset"), "test",
                       data_dir).first(images)
    n_images = len(test)
    codes = engine.layer_input(test.pixels, layer)
    jobs = layer_jobs(lay, codes)
    fwd = engine.layer_forward(layer, _nchw(codes))
    engine_s = time.perf_counter() - t0

    t1 = time.perf_counter()
    if array is not None:
        manifest = load_manifest(array)
        if manifest["design"] != "array":
            raise UserError(f"{array} describes a {manifest['design']!r} design, not an array; "
                            "generate one with `wrapkit rtl array`")
        cfg = ArrayConfig.from_dict(manifest["config"])
        manifest_path = array
    else:
        cfg = array_for_layer(lay, rows, cols)
        manifest_path = None
    for job in jobs:
        check_job(cfg, job)
    if manifest_path is None:
        say(f"design: generating a {rows}x{cols} array for layer {layer} ({lay.name}: "
            f"{lay.describe()}, {lay.cfg.name})")
        manifest_path = array_rtl(cfg)
    shape = jobs[0].shape
    pred = layer_cycles(cfg, shape)
    res = ArrayLayerResult(str(model), layer, lay.name, lay.describe(), cfg.name, sim, n_images,
                           macs=shape.macs, rows=cfg.rows, cols=cfg.cols,
                           model_cycles=pred.total, utilisation=pred.utilisation,
                           engine_s=engine_s)
    say(f"simulate: {n_images} image(s) on {sim}, {shape.macs:,} MACs per image, "
        f"{pred.total:,} cycles each by the cycle model")
    t2 = time.perf_counter()
    cos = cosim_array(manifest_path, jobs, sim)
    t3 = time.perf_counter()
    res.build_s = (t2 - t1) + max(0.0, (t3 - t2) - cos.sim_result.wall_s)
    res.sim_wall_s = cos.sim_result.wall_s
    res.log = str(cos.sim_result.log_file)
    res.testbench_mismatches = cos.mismatches
    res.cycle_errors = list(cos.cycle_errors)
    res.examples = list(cos.examples)
    if not cos.sim_result.ok and not cos.layers:
        res.cycle_errors.append(cos.sim_result.summary())
        return res
    res.cycles = int(round(np.mean([l["cycles"] for l in cos.layers])))
    res.compute_s = sum(l["wall_s"]["compute"] for l in cos.layers)
    res.load_s = sum(l["wall_s"]["load"] for l in cos.layers)
    res.read_back_s = sum(l["wall_s"]["read_back"] for l in cos.layers)

    # Compare with the engine, image by image, in its NCHW layout.
    if any(o is None for o in cos.outputs) or any(u is None for u in cos.unresolved):
        res.cycle_errors.append(cos.sim_result.summary())
        return res
    got = np.stack(cos.outputs)                                 # (N, out_channels, positions)
    unresolved = np.stack(cos.unresolved)                       # x/z words: never equal
    if lay.kind == "conv2d":
        got = got.reshape(len(got), shape.out_channels, shape.out_h, shape.out_w)
    else:
        got = got.reshape(len(got), shape.out_channels)
    unresolved = unresolved.reshape(got.shape)
    y = fwd["y"]
    if lay.out_kind == "requant":
        y_last = y.transpose(0, 2, 3, 1) if y.ndim == 4 else y
        pre = lay.output(y_last)                                # engine codes before pooling
        want = pre.transpose(0, 3, 1, 2) if pre.ndim == 4 else pre
        if lay.pool:
            pooled = _pool(got)
            res.pooled_checked = pooled.size
            res.pooled_mismatches = int(np.count_nonzero((pooled != fwd["out"])
                                                         | _pool(unresolved)))
    else:
        want = y
    res.outputs = got.size
    bad = (got != want.astype(np.int64)) | unresolved
    res.mismatches = int(np.count_nonzero(bad))
    res.examples += _engine_examples(bad, want, got, unresolved)
    return res


def _engine_examples(bad, want, got, unresolved, limit=10):
    """One line per differing output (the first ``limit``): index, engine, array (``x``
    for an unresolved word)."""
    return [f"image {idx[0]} output {tuple(int(i) for i in idx[1:])}: engine "
            f"{int(want[idx])}, array {'x' if unresolved[idx] else int(got[idx])}"
            for idx in list(zip(*np.nonzero(bad)))[:limit]]


# -- command line (hooked into `wrapkit cosim layer` by sim/layer_cli.py) -----------------

def add_array_flags(parser):
    """Add ``--datapath``, ``--rows``, ``--cols`` and ``--array`` to ``cosim layer``."""
    parser.add_argument("--datapath", default="mac", choices=("mac", "array"),
                        help="mac: the layer's operand stream through one MAC (default); "
                             "array: the whole layer through the RTL layer array, outputs "
                             "against the integer engine, with cycles and MAC utilisation")
    parser.add_argument("--rows", type=int, default=None, metavar="R",
                        help="array: PE rows (output positions in parallel; default 8)")
    parser.add_argument("--cols", type=int, default=None, metavar="C",
                        help="array: PE columns (output channels in parallel; default 8)")
    parser.add_argument("--array", default=None, metavar="FILE.json",
                        help="array: an existing `wrapkit rtl array` design to use instead "
                             "of generating one (it must fit the layer)")


def run_cli(args):
    """``wrapkit cosim layer ... --datapath array``: exit 0 all equal, 1 a mismatch."""
    check_simulator(args.sim)
    if args.max_ops is not None:
        raise UserError("--max-ops applies to --datapath mac; the array runs whole layers")
    if args.array is not None and (args.rows is not None or args.cols is not None):
        raise UserError("--array fixes the array; drop --rows/--cols or drop --array")
    from wrapkit.common.files import atomic_write_json

    r = cosim_array_layer(args.model, args.layer, images=args.images, sim=args.sim,
                          rows=8 if args.rows is None else args.rows,
                          cols=8 if args.cols is None else args.cols, array=args.array,
                          dataset=args.dataset, data_dir=args.data_dir,
                          progress=lambda msg: print(f"cosim layer: {msg}", flush=True))
    pooled = (f"; pooled {r.pooled_checked:,} codes, {r.pooled_mismatches} mismatches"
              if r.pooled_checked else "")
    print(f"cosim layer {r.layer} ({r.name}: {r.describe}) of {r.model} on {r.sim}, "
          f"{r.rows}x{r.cols} array {r.design}: {r.images} image(s), {r.outputs:,} outputs, "
          f"{r.mismatches} mismatches against the integer engine{pooled}; "
          f"{r.testbench_mismatches} against wrapkit.ref")
    print(f"  cycles per image {r.cycles:,} (cycle model {r.model_cycles:,}), "
          f"{r.macs:,} MACs per image, MAC utilisation {100 * r.utilisation:.1f}%")
    print(f"  wall: compute {r.compute_s:.2f} s ({r.cycles_per_s:,.0f} cycles/s), load "
          f"{r.load_s:.2f} s, read back {r.read_back_s:.2f} s, simulator run "
          f"{r.sim_wall_s:.2f} s; generation/build {r.build_s:.1f} s and engine "
          f"{r.engine_s:.1f} s not counted")
    for line in (r.examples + r.cycle_errors)[:10]:
        print(f"  mismatch: {line}")
    if args.json:
        try:
            atomic_write_json(args.json, r.to_dict())
        except OSError as exc:
            raise UserError(f"cannot write --json {args.json}: {exc.strerror or exc}") from None
    return 0 if r.ok else 1


# -- one node of an integer graph (`wrapkit cosim layer FILE --node NAME --datapath array`) --

@dataclass
class ArrayNodeResult:
    """Outcome of :func:`cosim_array_node` (cycles are per image: the sum over its jobs)."""

    model: str
    node: str
    kind: str
    describe: str
    design: str
    sim: str
    images: int
    jobs: int = 0
    outputs: int = 0
    mismatches: int = 0            # array vs the graph engine's node output
    testbench_mismatches: int = 0  # array vs wrapkit.ref (reference_outputs), in the testbench
    cycles: int = 0                # per image, from the RTL's cycles port
    model_cycles: int = 0          # per image, the cycle model
    utilisation: float = 0.0
    macs: int = 0                  # per image
    rows: int = 0
    cols: int = 0
    compute_s: float = 0.0
    sim_wall_s: float = 0.0
    build_s: float = 0.0
    engine_s: float = 0.0
    cycle_errors: list = field(default_factory=list)
    examples: list = field(default_factory=list)
    log: str = ""

    @property
    def ok(self):
        return (self.outputs > 0 and self.mismatches == 0 and self.testbench_mismatches == 0
                and not self.cycle_errors and self.cycles == self.model_cycles)

    def to_dict(self):
        d = asdict(self)
        d.update(ok=self.ok)
        return d


def _mac_node(graph, name, model):
    """The node ``name`` of ``graph``, which must be one the array runs."""
    from wrapkit.hw.array.nodes import ARRAY_NODE_KINDS, array_nodes

    names = array_nodes(graph)
    listing = (f"its MAC nodes ({', '.join(ARRAY_NODE_KINDS)}): {', '.join(names)}"
               if names else "it has no MAC node")
    if name not in {n.name for n in graph.nodes}:
        raise UserError(f"{model} has no node {name!r}; {listing}")
    node = graph.node(name)
    if node.kind not in ARRAY_NODE_KINDS:
        raise UserError(f"node {name!r} of {model} is a {node.kind} node, not a MAC node; "
                        f"{listing}")
    return node


def array_for_node(graph, node, rows, cols):
    """An :class:`ArrayConfig` of ``rows`` x ``cols`` PEs with the node's MAC and buffers
    just large enough for one of its jobs."""
    from wrapkit.hw.array.config import ArrayConfig
    from wrapkit.hw.array.nodes import node_mac, node_shape

    shape, mac = node_shape(graph, node), node_mac(graph, node)
    try:
        return ArrayConfig(rows, cols, mac, out_bits=8,
                           act_depth=max(2, shape.in_channels * shape.in_h * shape.in_w),
                           weight_depth=max(2, shape.out_channels * shape.fan_in),
                           out_depth=max(2, shape.out_channels * shape.positions),
                           max_channels=max(2, shape.out_channels))
    except (TypeError, ValueError) as exc:
        raise flag_error(exc, ARRAY_SIZE_FLAGS, quote_parameter=True) from None


def cosim_array_node(model, node, *, images=1, sim="icarus", rows=8, cols=8, array=None,
                     dataset=None, data_dir=None, progress=None):
    """Run MAC-type node ``node`` of the graph in ``model`` on the RTL array (module
    docstring); arguments as :func:`cosim_array_layer`'s, ``node`` a node name.

    Returns
    -------
    ArrayNodeResult
    """
    check_simulator(sim)
    say = progress or (lambda msg: None)
    from wrapkit.common.datasets import load_images
    from wrapkit.hw.array.config import ArrayConfig
    from wrapkit.hw.array.cycles import layer_cycles
    from wrapkit.hw.array.jobs import check_job
    from wrapkit.hw.array.nodes import node_describe, node_jobs, node_output, node_shape
    from wrapkit.hw.manifest import load_manifest
    from wrapkit.ref.graph import GraphEngine, read_graph

    from .cosim_array import array_rtl, cosim_array

    if isinstance(images, bool) or not isinstance(images, int) or images < 1:
        raise UserError(f"--images must be an integer >= 1, got {images!r}")
    t0 = time.perf_counter()
    exp = read_graph(model)
    graph = exp.graph
    mac_node = _mac_node(graph, node, model)
    shape = node_shape(graph, mac_node)
    header_input = exp.header.get("input") or {}
    test = load_images(dataset or header_input.get("dataset"), "test", data_dir).first(images)
    say(f"engine: running {len(test)} test image(s) up to node {node}")
    wanted = sorted({node} | {s for s in mac_node.inputs if s not in graph.inputs})
    values = GraphEngine(graph).run(test.pixels, keep=wanted)
    inputs = [values[s] if s not in graph.inputs else test.pixels.astype(np.int64)
              for s in mac_node.inputs]
    jobs = node_jobs(graph, mac_node, inputs)
    engine_s = time.perf_counter() - t0

    t1 = time.perf_counter()
    if array is not None:
        manifest = load_manifest(array)
        if manifest["design"] != "array":
            raise UserError(f"{array} describes a {manifest['design']!r} design, not an array; "
                            "generate one with `wrapkit rtl array`")
        cfg = ArrayConfig.from_dict(manifest["config"])
        manifest_path = array
    else:
        cfg = array_for_node(graph, mac_node, rows, cols)
        manifest_path = None
    for job in jobs:
        check_job(cfg, job)
    if manifest_path is None:
        say(f"design: generating a {rows}x{cols} array for node {node} "
            f"({shape.describe()}, {jobs[0].mac.name})")
        manifest_path = array_rtl(cfg)
    per_image = len(jobs) // len(test)
    pred = layer_cycles(cfg, shape)
    res = ArrayNodeResult(str(model), node, mac_node.kind, node_describe(graph, mac_node),
                          cfg.name, sim, len(test), jobs=len(jobs), macs=shape.macs * per_image,
                          rows=cfg.rows, cols=cfg.cols, model_cycles=pred.total * per_image,
                          utilisation=pred.utilisation, engine_s=engine_s)
    say(f"simulate: {len(jobs)} job(s) ({per_image} per image) on {sim}, {pred.total:,} "
        "cycles each by the cycle model")
    t2 = time.perf_counter()
    cos = cosim_array(manifest_path, jobs, sim)
    t3 = time.perf_counter()
    res.build_s = (t2 - t1) + max(0.0, (t3 - t2) - cos.sim_result.wall_s)
    res.sim_wall_s = cos.sim_result.wall_s
    res.log = str(cos.sim_result.log_file)
    res.testbench_mismatches = cos.mismatches
    res.cycle_errors = list(cos.cycle_errors)
    res.examples = list(cos.examples)
    if (len(cos.layers) != len(jobs) or any(o is None for o in cos.outputs)
            or any(u is None for u in cos.unresolved)):
        res.cycle_errors.append(cos.sim_result.summary())
        return res
    cycles = np.array([l["cycles"] for l in cos.layers]).reshape(len(test), per_image)
    per_image_cycles = cycles.sum(axis=1)
    res.cycles = int(per_image_cycles.max())
    if per_image_cycles.min() != per_image_cycles.max():
        res.cycle_errors.append(f"cycles per image differ: {per_image_cycles.tolist()}")
    res.compute_s = sum(l["wall_s"]["compute"] for l in cos.layers)
    got = node_output(graph, mac_node, cos.outputs)
    unresolved = node_output(graph, mac_node, cos.unresolved)  # x/z words: never equal
    want = values[node]
    res.outputs = got.size
    bad = (got != want) | unresolved
    res.mismatches = int(np.count_nonzero(bad))
    res.examples += _engine_examples(bad, want, got, unresolved)
    return res


def run_node_cli(args):
    """``wrapkit cosim layer FILE --node NAME --datapath array``: exit 0 all equal, 1 a
    mismatch, 2 bad input (a UserError)."""
    check_simulator(args.sim)
    if getattr(args, "max_ops", None) is not None:
        raise UserError("--max-ops applies to --datapath mac; the array runs whole nodes")
    if args.array is not None and (args.rows is not None or args.cols is not None):
        raise UserError("--array fixes the array; drop --rows/--cols or drop --array")
    from wrapkit.common.files import atomic_write_json

    r = cosim_array_node(args.model, args.node, images=args.images, sim=args.sim,
                         rows=8 if args.rows is None else args.rows,
                         cols=8 if args.cols is None else args.cols, array=args.array,
                         dataset=args.dataset, data_dir=args.data_dir,
                         progress=lambda msg: print(f"cosim layer: {msg}", flush=True))
    print(f"cosim node {r.node} ({r.kind}: {r.describe}) of {r.model} on {r.sim}, "
          f"{r.rows}x{r.cols} array {r.design}: {r.images} image(s), {r.jobs} job(s), "
          f"{r.outputs:,} outputs, {r.mismatches} mismatches against the integer engine; "
          f"{r.testbench_mismatches} against wrapkit.ref")
    print(f"  cycles per image {r.cycles:,} (cycle model {r.model_cycles:,}), {r.macs:,} MACs "
          f"per image, MAC utilisation {100 * r.utilisation:.1f}%")
    print(f"  wall: compute {r.compute_s:.2f} s, simulator run {r.sim_wall_s:.2f} s; "
          f"generation/build {r.build_s:.1f} s and engine {r.engine_s:.1f} s not counted")
    for line in (r.examples + r.cycle_errors)[:10]:
        print(f"  mismatch: {line}")
    if args.json:
        try:
            atomic_write_json(args.json, r.to_dict())
        except OSError as exc:
            raise UserError(f"cannot write --json {args.json}: {exc.strerror or exc}") from None
    return 0 if r.ok else 1
