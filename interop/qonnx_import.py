"""A QONNX model exported by Brevitas (``brevitas.export.export_qonnx``) as an integer graph.

QONNX describes quantization with ``Quant(x, scale, zero_point, bit_width)`` nodes whose
output is the *dequantized* value ``scale·code``. The importer follows every tensor with a
view of what it holds in integers and emits wrapkit node kinds (:mod:`wrapkit.ref.graph`):

=========================================== ===================================================
QONNX                                       wrapkit graph
=========================================== ===================================================
``Quant`` on an initializer (weights)       integer weight values ``round(w/s_w)`` (per-channel
                                            or per-tensor ``s_w``, zero point 0)
``Quant`` on the float input                ``quantize`` (unsigned codes, round half to even)
``Conv`` / ``Gemm`` / ``MatMul`` of codes   ``conv2d`` / ``linear``: exact dot products (or a
and integer weights [+ bias]                ``--acc-bits`` wrapping register); the real value is
                                            ``s_x·s_w·z + bias`` per output channel
``Relu`` after a MAC                        folded into the next requantization (clamp at 0)
``Quant`` after a MAC [+ Relu]              ``requant``: ``clamp((y·m + b) >> s)`` with ``m/2^s ≈
                                            s_x·s_w/s_next``, ``b ≈ bias/s_next``
``MaxPool`` of codes, ``Reshape``/          ``max_pool2d``, ``flatten``
``Flatten`` to (N, -1)
graph output after a MAC or of codes        ``dequant`` to float32
=========================================== ===================================================

Anything else (signed or narrow activation quantizers, zero points, float ops between
quantizers, residual adds) is refused in one line naming the ONNX node. The fixed-point
requantization rounds half up where QONNX's ``Quant`` rounds half to even, so a code can
differ on an exact tie (the same rule and caveat as wrapkit's own export, docs/export.md);
:func:`check_import` counts such differences against QONNX's executor.
"""

from dataclasses import dataclass, field

import numpy as np
from onnx import numpy_helper

from wrapkit.common.errors import UserError
from wrapkit.ref.graph import Graph, TensorType, infer_types, new_node
from wrapkit.ref.ops import AccumulatorMode
from wrapkit.ref.requant import fixed_point

__all__ = ["ImportCheck", "check_import", "qonnx_to_graph"]


@dataclass
class _Codes:
    node: str           # wrapkit node whose output holds the codes
    scale: float
    bits: int


@dataclass
class _Acc:
    node: str           # the MAC node
    scale: np.ndarray   # per output channel: real value = scale·y + bias
    bias: np.ndarray
    relu: bool = False


@dataclass
class _Weights:
    values: np.ndarray  # integer weight values
    scale: np.ndarray   # per output channel
    bits: int


class _Importer:
    def __init__(self, model, acc_bits, source):
        self.g = model.graph
        self.source = source
        self.acc = AccumulatorMode("wrap", acc_bits) if acc_bits else AccumulatorMode()
        self.inits = {i.name: numpy_helper.to_array(i) for i in self.g.initializer}
        self.views, self.nodes, self.quant_map = {}, [], {}
        self.consts = {}

    def fail(self, onnx_node, problem):
        raise UserError(f"{self.source}: ONNX node {onnx_node.name or onnx_node.output[0]} "
                        f"({onnx_node.op_type}): {problem}")

    def const(self, name):
        if name in self.inits:
            return self.inits[name]
        if name in self.consts:
            return self.consts[name]
        return None

    def emit(self, name, kind, inputs, attrs=None, weights=None):
        name = name.replace("/", "_")
        while any(n.name == name for n in self.nodes):
            name += "_"
        self.nodes.append(new_node(name, kind, inputs, attrs, weights))
        return name

    # -- ONNX operators ---------------------------------------------------------------------

    def Constant(self, n):
        from onnx import helper

        self.consts[n.output[0]] = numpy_helper.to_array(
            helper.get_attribute_value(n.attribute[0]))

    def Quant(self, n):
        from onnx import helper

        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        scale, zp, bits = (self.const(x) for x in n.input[1:4])
        if scale is None or zp is None or bits is None:
            self.fail(n, "scale, zero point and bit width must be constants")
        if np.any(zp != 0):
            self.fail(n, "a non-zero zero point has no wrapkit node kind")
        if attrs.get("rounding_mode", b"ROUND") not in (b"ROUND", "ROUND"):
            self.fail(n, f"rounding mode {attrs.get('rounding_mode')} is not supported")
        bits, signed, narrow = int(bits), bool(attrs.get("signed", 1)), bool(attrs.get("narrow", 0))
        src = n.input[0]
        w = self.const(src)
        if w is not None:                       # weights
            if not signed:
                self.fail(n, "unsigned weights are not supported")
            s = np.broadcast_to(np.asarray(scale, np.float64).reshape(-1), (w.shape[0],)) \
                if np.size(scale) in (1, w.shape[0]) else None
            if s is None:
                self.fail(n, "the weight scale must be per tensor or per output channel")
            top = (1 << (bits - 1)) - 1
            q = np.rint(w / np.asarray(scale)).clip(-top - (0 if narrow else 1), top)
            self.views[n.output[0]] = _Weights(q.astype(np.int64), s.copy(), bits)
            return
        if signed or narrow:
            self.fail(n, "only unsigned, full-range activation quantizers map to wrapkit codes")
        step = float(np.asarray(scale).reshape(-1)[0]) if np.size(scale) == 1 else None
        if step is None:
            self.fail(n, "activation scales must be per tensor")
        view = self.views.get(src)
        qmax = (1 << bits) - 1
        if view is None:                        # the float graph input
            if src not in self.graph_inputs:
                self.fail(n, f"input {src} is neither the graph input nor a quantized value")
            out = self.emit(n.output[0], "quantize", [src], {"step": step, "bits": bits})
        elif isinstance(view, _Acc):
            acc_bits = min(self.bits_of(view.node), 32)
            m, b, s = fixed_point(view.scale / step, view.bias / step, qmax=qmax,
                                  acc_bits=acc_bits)
            out = self.emit(f"{view.node}.requant", "requant", [view.node],
                            {"out_bits": bits, "out_signed": False, "scale": step},
                            {"multiplier": m, "bias": b, "shift": s})
        else:
            self.fail(n, "re-quantizing codes is not supported")
        self.views[n.output[0]] = _Codes(out, step, bits)
        self.quant_map[n.output[0]] = (out, step)

    def bits_of(self, name):
        nodes = infer_types(Graph(self.graph_inputs, list(self.nodes), [name])).nodes
        return next(x for x in nodes if x.name == name).output.bits

    def _mac(self, n, kind, x, w, bias, attrs):
        if not isinstance(x, _Codes) or not isinstance(w, _Weights):
            self.fail(n, "a MAC needs quantized activations and quantized weights")
        name = self.emit(n.output[0], kind, [x.node],
                         {"acc": self.acc, "weight_kind": "uniform", "weight_bits": w.bits,
                          **attrs}, {"weight": w.values.astype(np.int8)})
        bias = np.zeros(len(w.scale)) if bias is None else np.asarray(bias, np.float64)
        self.views[n.output[0]] = _Acc(name, x.scale * w.scale, bias)

    def Conv(self, n):
        from onnx import helper

        a = {x.name: helper.get_attribute_value(x) for x in n.attribute}
        pads = list(a.get("pads", [0, 0, 0, 0]))
        if pads[:2] != pads[2:] or a.get("group", 1) != 1:
            self.fail(n, "asymmetric padding and grouped convolutions are not supported")
        bias = self.const(n.input[2]) if len(n.input) > 2 else None
        self._mac(n, "conv2d", self.views.get(n.input[0]), self.views.get(n.input[1]), bias,
                  {"stride": list(a.get("strides", [1, 1])), "padding": pads[:2],
                   "dilation": list(a.get("dilations", [1, 1]))})

    def Gemm(self, n):
        from onnx import helper

        a = {x.name: helper.get_attribute_value(x) for x in n.attribute}
        if a.get("transA", 0) or not a.get("transB", 0) or a.get("alpha", 1.0) != 1.0:
            self.fail(n, "only Gemm(x, Wᵀ) [+ bias] is supported")
        bias = self.const(n.input[2]) if len(n.input) > 2 else None
        self._mac(n, "linear", self.views.get(n.input[0]), self.views.get(n.input[1]), bias, {})

    def MatMul(self, n):
        w = self.views.get(n.input[1])
        if isinstance(w, _Weights):
            w = _Weights(w.values.T.copy(), w.scale, w.bits)
        self._mac(n, "linear", self.views.get(n.input[0]), w, None, {})

    def Add(self, n):
        view, other = self.views.get(n.input[0]), self.const(n.input[1])
        if isinstance(view, _Acc) and other is not None and not view.relu:
            self.views[n.output[0]] = _Acc(view.node, view.scale,
                                           view.bias + np.asarray(other).reshape(-1))
            return
        self.fail(n, "only a constant bias added to a MAC output is supported")

    def Relu(self, n):
        view = self.views.get(n.input[0])
        if not isinstance(view, _Acc):
            self.fail(n, "a ReLU must follow a MAC")
        self.views[n.output[0]] = _Acc(view.node, view.scale, view.bias, True)

    def MaxPool(self, n):
        from onnx import helper

        a = {x.name: helper.get_attribute_value(x) for x in n.attribute}
        view = self.views.get(n.input[0])
        if not isinstance(view, _Codes):
            self.fail(n, "max pooling is supported on quantized codes")
        pads = list(a.get("pads", [0, 0, 0, 0]))
        out = self.emit(n.output[0], "max_pool2d", [view.node],
                        {"kernel": list(a["kernel_shape"]),
                         "stride": list(a.get("strides", a["kernel_shape"])),
                         "padding": pads[:2]})
        self.views[n.output[0]] = _Codes(out, view.scale, view.bits)

    def Reshape(self, n):
        view = self.views.get(n.input[0])
        shape = self.const(n.input[1])
        if not isinstance(view, _Codes) or shape is None or len(shape) != 2:
            self.fail(n, "only flattening quantized codes to (N, features) is supported")
        out = self.emit(n.output[0], "flatten", [view.node])
        self.views[n.output[0]] = _Codes(out, view.scale, view.bits)

    def Flatten(self, n):
        view = self.views.get(n.input[0])
        if not isinstance(view, _Codes):
            self.fail(n, "only flattening quantized codes is supported")
        out = self.emit(n.output[0], "flatten", [view.node])
        self.views[n.output[0]] = _Codes(out, view.scale, view.bits)

    def output(self, name):
        view = self.views.get(name)
        if isinstance(view, _Acc):
            return self.emit(f"{view.node}.dequant", "dequant", [view.node],
                             {"relu": view.relu},
                             {"scale": view.scale.astype(np.float32),
                              "shift": view.bias.astype(np.float32)})
        if isinstance(view, _Codes):
            return view.node
        raise UserError(f"{self.source}: graph output {name} is not a quantized value")

    def run(self):
        init_names = set(self.inits)
        real_inputs = [i for i in self.g.input if i.name not in init_names]
        if len(real_inputs) != 1:
            raise UserError(f"{self.source}: expected one graph input, found "
                            f"{[i.name for i in real_inputs]}")
        inp = real_inputs[0]
        dims = [d.dim_value for d in inp.type.tensor_type.shape.dim]
        if len(dims) < 2 or any(d <= 0 for d in dims[1:]):
            raise UserError(f"{self.source}: input {inp.name} needs a known shape, got {dims}")
        self.graph_inputs = {inp.name: TensorType.float32(tuple(dims[1:]))}
        for n in self.g.node:
            handler = getattr(self, n.op_type, None)
            if handler is None or n.op_type in ("output", "run", "fail", "const", "emit"):
                raise UserError(f"{self.source}: ONNX node {n.name or n.output[0]} "
                                f"({n.op_type}): no wrapkit node kind for this operator")
            handler(n)
        outs = [self.output(o.name) for o in self.g.output]
        return infer_types(Graph(self.graph_inputs, self.nodes, outs))


def qonnx_to_graph(model, *, acc_bits=None, source="<model>"):
    """A QONNX ModelProto -> ``(Graph, info)`` (module docstring); ``acc_bits`` gives every
    MAC a wrapping register of that width instead of exact sums."""
    imp = _Importer(model, acc_bits, source)
    graph = imp.run()
    info = {"quant_tensors": {k: v[0] for k, v in imp.quant_map.items()},
            "input": next(iter(imp.graph_inputs))}
    return graph, info


@dataclass
class ImportCheck:
    """Codes of every QONNX activation quantizer compared with the imported graph's nodes."""

    images: int
    codes: dict = field(default_factory=dict)     # QONNX tensor -> (compared, differing)
    outputs_max_abs_diff: float = 0.0

    @property
    def mismatches(self):
        return sum(d for _, d in self.codes.values())

    def describe(self):
        total = sum(c for c, _ in self.codes.values())
        lines = [f"qonnx executor vs wrapkit engine: {self.images} inputs, "
                 f"{len(self.codes)} quantized tensors, {total:,} codes compared, "
                 f"{self.mismatches:,} differ; outputs max |diff| "
                 f"{self.outputs_max_abs_diff:.3g}"]
        lines += [f"  {t}: {d} of {c} differ" for t, (c, d) in self.codes.items() if d]
        return "\n".join(lines)


def check_import(model, graph, *, images=16, inputs=None, seed=0):
    """Run the QONNX model in QONNX's executor and the imported graph in the engine on the
    same inputs (standard-normal by default) and compare every quantized tensor's codes."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    from wrapkit.ref.graph import GraphEngine

    graph_, info = qonnx_to_graph(model)
    del graph_
    name = info["input"]
    shape = graph.inputs[name].shape
    if inputs is None:
        inputs = np.random.default_rng(seed).standard_normal((images, *shape)).astype(np.float32)
    keep = [v for v in info["quant_tensors"].values() if v in {n.name for n in graph.nodes}]
    ours = GraphEngine(graph).run({name: inputs}, keep=keep)
    wrapped = ModelWrapper(model)
    report = ImportCheck(len(inputs))
    theirs = {t: [] for t in info["quant_tensors"]}
    outs = []
    for x in inputs:
        ctx = execute_onnx(wrapped, {name: x[None]}, return_full_exec_context=True)
        for t in theirs:
            theirs[t].append(ctx[t])
        outs.append(ctx[model.graph.output[0].name])
    for t, node in info["quant_tensors"].items():
        step = graph.node(node).output.scale
        codes = np.rint(np.concatenate(theirs[t]) / step).astype(np.int64)
        mine = ours[node]
        report.codes[t] = (int(mine.size), int(np.count_nonzero(mine != codes)))
    out = graph.outputs[0]
    report.outputs_max_abs_diff = float(np.abs(np.concatenate(outs) - ours[out]).max())
    return report
