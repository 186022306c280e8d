"""Checking an ONNX model against the integer engine, node by node, with executors we did not
write: onnxruntime, and QONNX's ``execute_onnx`` (which runs each standard node through
onnxruntime and QONNX's own custom operators in Python).

:func:`compare_with_engine` runs the :class:`~wrapkit.ref.graph.GraphEngine` and the ONNX
model on the same images and compares every integer node (the ONNX model exposes them as
extra outputs under the node's name). By default the model is cut at the first quantizer and
fed the engine's own codes there, so the integer part is compared on identical inputs: the
float stem before it is float32 arithmetic whose summation order differs between numpy and
onnxruntime (docs/qonnx.md §3 reports how often that moves a first code, from the whole
model run from pixels).
"""

from dataclasses import dataclass, field

import numpy as np

from wrapkit.common.errors import UserError

from .onnx_export import graph_to_onnx

__all__ = ["NodeComparison", "compare_with_engine", "integer_boundary", "onnx_session",
           "run_onnx", "run_qonnx"]


def onnx_session(model):
    """An onnxruntime CPU session of a ModelProto (one thread: the machine is shared)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])


def _feed_array(value, info):
    from onnx import TensorProto

    dtype = np.int64 if info.type.tensor_type.elem_type == TensorProto.INT64 else np.float32
    return np.ascontiguousarray(value, dtype=dtype)


def run_onnx(model, feeds, batch_size=500, session=None):
    """Run the model in onnxruntime batch by batch -> ``{output name: array}``."""
    session = session or onnx_session(model)
    infos = {i.name: i for i in model.graph.input}
    n = len(next(iter(feeds.values())))
    names = [o.name for o in model.graph.output]
    parts = {k: [] for k in names}
    for lo in range(0, n, batch_size):
        batch = {k: _feed_array(v[lo:lo + batch_size], infos[k]) for k, v in feeds.items()}
        for k, v in zip(names, session.run(names, batch)):
            parts[k].append(v)
    return {k: np.concatenate(v) for k, v in parts.items()}


def run_qonnx(model, feeds):
    """Run the model with QONNX's executor (``qonnx.core.onnx_exec.execute_onnx``)."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    import onnx

    # QONNX's executor wants every tensor's shape known: fix the batch axis to this batch
    # and let ONNX's shape inference fill in the rest.
    n = len(next(iter(feeds.values())))
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for vi in list(model.graph.input) + list(model.graph.output):
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_param"):
                d.dim_value = n
    del model.graph.value_info[:]
    for o in model.graph.output:
        if not o.type.tensor_type.shape.dim:
            o.type.tensor_type.ClearField("shape")
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    infos = {i.name: i for i in model.graph.input}
    out = execute_onnx(ModelWrapper(model),
                       {k: _feed_array(v, infos[k]) for k, v in feeds.items()})
    return {o.name: out[o.name] for o in model.graph.output}


def integer_boundary(graph):
    """The nodes where float edges become codes (``quantize``) that feed integer nodes."""
    return [n.name for n in graph.nodes if n.kind == "quantize"]


@dataclass
class NodeComparison:
    """Per integer node: values compared and values that differ, with the first difference."""

    images: int
    executor: str
    fed: list
    nodes: dict = field(default_factory=dict)      # name -> (compared, differing)
    first: dict = field(default_factory=dict)      # name -> (index, expected, actual)
    logits_max_abs_diff: float | None = None
    predictions_differing: int | None = None

    @property
    def mismatches(self):
        return sum(d for _, d in self.nodes.values())

    @property
    def compared(self):
        return sum(c for c, _ in self.nodes.values())

    def describe(self):
        lines = [f"{self.executor}: {self.images} images, {len(self.nodes)} integer nodes, "
                 f"{self.compared:,} integers compared, {self.mismatches:,} differ"
                 + (f" (fed the engine's codes at {', '.join(self.fed)})" if self.fed else "")]
        for name, (c, d) in self.nodes.items():
            if d:
                idx, want, got = self.first[name]
                lines.append(f"  {name}: {d:,} of {c:,} differ; first at {idx}: engine "
                             f"{want}, onnx {got}")
        if self.predictions_differing is not None:
            lines.append(f"  logits max |diff| {self.logits_max_abs_diff:.3g}, predictions "
                         f"differing {self.predictions_differing}")
        return "\n".join(lines)


def compare_with_engine(graph, pixels, *, model=None, feed_codes=True, executor="onnxruntime",
                        batch_size=500, gemm="blas"):
    """Compare every integer node of ``graph`` as the engine and an ONNX executor compute it.

    Parameters
    ----------
    graph : Graph
    pixels : array (N, ...)
        The graph input (one-input graphs).
    model : onnx.ModelProto or None
        The model to check (e.g. read from a file); None: exported from ``graph`` here. Its
        integer nodes must be outputs or are added as outputs (a model from a file is given
        extra outputs for them when their tensors exist in it).
    feed_codes : bool
        Cut the model at the first quantizers and feed the engine's codes (module docstring);
        False runs the whole model from pixels.
    executor : "onnxruntime" | "qonnx"
    gemm : the engine's exact GEMM backend (:class:`~wrapkit.ref.graph.GraphEngine`)

    Returns
    -------
    NodeComparison
    """
    from wrapkit.ref.graph import GraphEngine

    int_nodes = [n.name for n in graph.nodes if n.output.is_int]
    fed = integer_boundary(graph) if feed_codes else []
    compared_nodes = [n for n in int_nodes if n not in fed]
    if model is None:
        model = graph_to_onnx(graph, outputs=list(graph.outputs) + compared_nodes, feeds=fed)
    else:
        model = _expose(model, compared_nodes, fed)
    if executor not in ("onnxruntime", "qonnx"):
        raise UserError(f"executor must be onnxruntime or qonnx, got {executor!r}")
    engine = GraphEngine(graph, gemm=gemm)
    session = onnx_session(model) if executor == "onnxruntime" else None
    graph_input = next(iter(graph.inputs))
    takes_pixels = graph_input in {i.name for i in model.graph.input}
    report = NodeComparison(len(pixels), executor, fed)
    report.nodes = {name: (0, 0) for name in compared_nodes}
    out = graph.outputs[0]
    float_out = not graph.type_of(out).is_int
    if float_out:
        report.logits_max_abs_diff, report.predictions_differing = 0.0, 0
    # Chunk by chunk: every integer node of a whole test set would not fit in memory.
    for lo in range(0, len(pixels), batch_size):
        chunk = pixels[lo:lo + batch_size]
        values = engine.run(chunk, keep=tuple(int_nodes), batch_size=batch_size)
        feeds = {f: values[f] for f in fed}
        if takes_pixels:
            feeds[graph_input] = chunk
        got = (run_onnx(model, feeds, batch_size=batch_size, session=session)
               if session is not None else run_qonnx(model, feeds))
        for name in compared_nodes:
            want, have = values[name], got[name]
            if want.shape != have.shape:
                raise UserError(f"node {name}: engine shape {want.shape}, ONNX {have.shape}")
            diff = want != have
            c, d = report.nodes[name]
            report.nodes[name] = (c + int(want.size), d + int(diff.sum()))
            if diff.any() and name not in report.first:
                idx = tuple(int(i) for i in np.argwhere(diff)[0])
                report.first[name] = ((lo + idx[0],) + idx[1:], int(want[idx]), int(have[idx]))
        if float_out and out in got:
            report.logits_max_abs_diff = max(report.logits_max_abs_diff,
                                             float(np.abs(values[out] - got[out]).max()))
            report.predictions_differing += int(np.sum(values[out].argmax(1)
                                                       != got[out].argmax(1)))
    return report


def _expose(model, names, fed):
    """A copy of ``model`` returning the tensors ``names`` too, cut at ``fed``."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.ModelProto.FromString(model.SerializeToString())
    g = model.graph
    produced = {o for n in g.node for o in n.output}
    missing = [n for n in names + fed if n not in produced]
    if missing:
        raise UserError(f"the ONNX model has no tensor {missing[0]!r}; it was not written from "
                        "this graph")
    if fed:
        # Feed the cut tensors: drop their producers, make them inputs, prune the dead stem.
        g_nodes = [n for n in g.node if not set(n.output) & set(fed)]
        del g.node[:]
        g.node.extend(g_nodes)
        for f in fed:
            g.input.append(helper.make_tensor_value_info(f, TensorProto.INT64, None))
    have = {o.name for o in g.output}
    for n in names:
        if n not in have:
            g.output.append(helper.make_tensor_value_info(n, TensorProto.INT64, None))
    if fed:
        _prune(g)
    return model


def _prune(g):
    """Remove nodes no output depends on, and inputs and initializers nobody reads."""
    needed, stack = set(), [o.name for o in g.output]
    producers = {o: n for n in g.node for o in n.output}
    keep = []
    while stack:
        t = stack.pop()
        if t in needed:
            continue
        needed.add(t)
        if t in producers:
            stack.extend(producers[t].input)
    keep = [n for n in g.node if set(n.output) & needed]
    del g.node[:]
    g.node.extend(keep)
    inputs = [i for i in g.input if i.name in needed]
    del g.input[:]
    g.input.extend(inputs)
    inits = [i for i in g.initializer if i.name in needed]
    del g.initializer[:]
    g.initializer.extend(inits)
