"""An integer graph as an ONNX model whose integer semantics are standard ONNX operators.

:func:`graph_to_onnx` writes every node of a :class:`wrapkit.ref.graph.Graph` (version-1
chains convert to graphs, :mod:`wrapkit.ref.graph.v1`) as a few standard ONNX operators
(opset 18) that compute exactly the integers :mod:`wrapkit.ref.ops` defines, so an executor
we did not write (onnxruntime, QONNX's ``execute_onnx``) is a second oracle for our engine.
Integer tensors travel as int64; the MAC nodes narrow their inputs to 8 bits for
``ConvInteger`` / ``MatMulInteger`` (int32 sums, exact because the node's dot-product bound
is checked below 2^31). The mapping (docs/qonnx.md §2):

============== ===================================================================================
node kind      ONNX operators
============== ===================================================================================
standardize    Cast(float) → Div(pixel_max) → Sub(mean) → Div(std)                   (float32)
quantize       Div(step) → Round (half to even) → Clip(0, 2^b − 1) → Cast(int64)
conv2d/linear  Cast(uint8|int8) → ConvInteger / MatMulInteger(int8 weights) → Cast(int64)
matmul         MatMul (int64)
acc wrap       BitwiseAnd(z + 2^(b−1), 2^b − 1) − 2^(b−1)
acc cyclic     wrap, then Where(m > T, k·(2^(b−1) − m), Where(m < −T, −k·(2^(b−1) + m), m))
requant        t = y·m + b; floor(t / 2^s) = Div(t − Mod(t, 2^s), 2^s); Clip(lo, hi)
rescale, add   the same floor shift of x·m + 2^(s−1) (round half up), Clip
max_pool2d     MaxPool on uint8/int8 codes (float32 for wider codes and float edges)
avg pools      exact sums (ConvInteger with ones / ReduceSum), then ref.ops.avg_divider's
               (S·m + b) >> s
pad, flatten,  Pad (zeros), Flatten, Reshape, Transpose
reshape, …
dequant        Cast(float) → Mul(scale) → Add(shift) [→ Relu]                          (float32)
conv2d_float,  Conv / MatMul, Add(bias), Mul/Add(BatchNorm), Relu                    (float32)
linear_float
============== ===================================================================================

Every integer tensor also carries QONNX's datatype annotation (``finn_datatype`` in the
graph's ``quantization_annotation``: ``UINT5``, ``INT8``, ``BIPOLAR`` weights, ...), the
form in which QONNX/FINN record what a tensor's values are. A kind with no exact mapping
(a saturating accumulator, whose result depends on the summation order; softmax, layer
norm, resampling) is refused in one line naming it.
"""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from wrapkit import __version__
from wrapkit.common.errors import UserError
from wrapkit.ref.datapath import cyclic_threshold
from wrapkit.ref.ops import dot_product_bound
from wrapkit.ref.ops.shape import avg_divider

__all__ = ["OPSET", "SUPPORTED_KINDS", "graph_to_onnx", "qonnx_datatype"]

#: The ONNX opset the models use (BitwiseAnd needs 18).
OPSET = 18

_INT32_LIMIT = 1 << 31
_FLOAT_EXACT_BITS = 24


def qonnx_datatype(t):
    """QONNX's datatype name of an integer :class:`TensorType` (``UINT5``, ``INT8``)."""
    if t.bits == 1 and not t.signed:
        return "BINARY"
    return f"{'INT' if t.signed else 'UINT'}{t.bits}"


def _weight_datatype(node):
    kind, bits = node.attrs["weight_kind"], node.attrs["weight_bits"]
    if kind == "binary":
        return "BIPOLAR"
    if kind == "ternary":
        return "TERNARY"
    if kind == "uniform":
        return f"INT{bits}"
    w = node.weights["weight"]
    top = int(np.abs(w).max()) if w.size else 0
    return f"INT{max(2, top.bit_length() + 1)}"


class _Builder:
    """Collects ONNX nodes, initializers and annotations for one graph."""

    def __init__(self, graph):
        self.graph = graph
        self.nodes, self.inits, self.annotations = [], [], {}
        self._names = set()

    def const(self, name, value, dtype):
        name = self.fresh(name)
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def fresh(self, name):
        base, i = name, 0
        while name in self._names:
            i += 1
            name = f"{base}_{i}"
        self._names.add(name)
        return name

    def op(self, op_type, inputs, out, **attrs):
        """Append one ONNX node; ``out`` is its output tensor's name (made unique)."""
        out = self.fresh(out)
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=out, **attrs))
        return out

    def i64(self, name, value):
        return self.const(name, value, np.int64)

    def f32(self, name, value):
        return self.const(name, value, np.float32)

    def channel(self, node, name, v, ndim, axis, dtype):
        """A per-channel constant shaped to broadcast over a batch-first tensor."""
        v = np.asarray(v).reshape((-1,) + (1,) * (ndim - 2 - axis))
        return self.const(f"{node.name}.{name}", v, dtype)

    # -- integer building blocks ----------------------------------------------------------

    def floor_shift(self, prefix, t, pow2):
        """``floor(t / 2^s)`` of int64 ``t`` (an arithmetic right shift): ONNX's integer Div
        truncates towards zero, so first subtract the non-negative remainder Mod(t, 2^s)
        (fmod=0: the sign of the divisor), which makes the division exact."""
        rem = self.op("Mod", [t, pow2], f"{prefix}/mod", fmod=0)
        exact = self.op("Sub", [t, rem], f"{prefix}/sub")
        return self.op("Div", [exact, pow2], f"{prefix}/shift")

    def clip(self, prefix, x, lo, hi, out):
        return self.op("Clip", [x, self.i64(f"{prefix}.lo", lo), self.i64(f"{prefix}.hi", hi)],
                       out)

    def wrap(self, prefix, z, bits):
        half = 1 << (bits - 1)
        shifted = self.op("Add", [z, self.i64(f"{prefix}.half", half)], f"{prefix}/wrap_add")
        masked = self.op("BitwiseAnd", [shifted, self.i64(f"{prefix}.mask", (1 << bits) - 1)],
                         f"{prefix}/wrap_and")
        return self.op("Sub", [masked, self.i64(f"{prefix}.half_", half)], f"{prefix}/wrap")

    def narrow(self, prefix, x, t, what):
        """Cast int64 codes of type ``t`` to uint8/int8 for an 8-bit integer kernel."""
        lo, hi = t.code_range
        if 0 <= lo and hi <= 255:
            return self.op("Cast", [x], f"{prefix}/u8", to=TensorProto.UINT8)
        if -128 <= lo and hi <= 127:
            return self.op("Cast", [x], f"{prefix}/i8", to=TensorProto.INT8)
        raise UserError(f"node {prefix} ({what}): its input {t.describe()} is wider than 8 "
                        "bits; the ONNX export maps MACs to 8-bit ConvInteger/MatMulInteger")


def _shape_of(t):
    return ["N", *t.shape]


def _value_info(name, t):
    elem = TensorProto.INT64 if t.is_int else TensorProto.FLOAT
    return helper.make_tensor_value_info(name, elem, _shape_of(t))


def _mac_weight(b, node):
    w = node.weights["weight"]
    if w.size and (w.min() < -128 or w.max() > 127):
        raise UserError(f"node {node.name} ({node.kind}): weights beyond int8 cannot go to "
                        "ConvInteger/MatMulInteger")
    return w.astype(np.int8)


def _check_int32(node, fan_in, a_type, w):
    wmax = int(np.abs(w).max()) if w.size else 0
    bound = dot_product_bound(fan_in, a_type.code_range, (-wmax, wmax))
    if bound >= _INT32_LIMIT:
        raise UserError(f"node {node.name} ({node.kind}): its dot products can reach {bound} "
                        ">= 2^31, beyond ConvInteger's int32 sums")


def _accumulate(b, node, z):
    acc = node.attrs["acc"]
    if acc.mode == "exact":
        return b.op("Identity", [z], node.name)
    if acc.mode == "saturate":
        raise UserError(f"node {node.name} ({node.kind}): a saturating accumulator depends on "
                        "the summation order and has no ONNX operator; use wrap or cyclic")
    m = b.wrap(node.name, z, acc.bits)
    if acc.mode == "wrap":
        return b.op("Identity", [m], node.name)
    t, k, half = cyclic_threshold(acc.bits, acc.k), acc.k, 1 << (acc.bits - 1)
    p = node.name
    above = b.op("Greater", [m, b.i64(f"{p}.T", t)], f"{p}/above")
    below = b.op("Less", [m, b.i64(f"{p}.minus_T", -t)], f"{p}/below")
    fold_hi = b.op("Mul", [b.op("Sub", [b.i64(f"{p}.half2", half), m], f"{p}/half_minus"),
                          b.i64(f"{p}.k", k)], f"{p}/fold_hi")
    fold_lo = b.op("Mul", [b.op("Add", [m, b.i64(f"{p}.half3", half)], f"{p}/half_plus"),
                          b.i64(f"{p}.minus_k", -k)], f"{p}/fold_lo")
    inner = b.op("Where", [below, fold_lo, m], f"{p}/lower")
    return b.op("Where", [above, fold_hi, inner], p)


def _conv2d(b, node, x, xt):
    a = node.attrs
    w = _mac_weight(b, node)
    _check_int32(node, int(np.prod(w.shape[1:])), xt, w)
    xq = b.narrow(node.name, x, xt, node.kind)
    wname = b.const(f"{node.name}.weight", w, np.int8)
    b.annotations[wname] = _weight_datatype(node)
    ph, pw = a["padding"]
    z = b.op("ConvInteger", [xq, wname], f"{node.name}/conv", strides=list(a["stride"]),
             pads=[ph, pw, ph, pw], dilations=list(a["dilation"]), group=a["groups"],
             kernel_shape=list(w.shape[2:]))
    return _accumulate(b, node, b.op("Cast", [z], f"{node.name}/z", to=TensorProto.INT64))


def _linear(b, node, x, xt):
    w = _mac_weight(b, node)
    _check_int32(node, w.shape[1], xt, w)
    xq = b.narrow(node.name, x, xt, node.kind)
    wname = b.const(f"{node.name}.weight_t", np.ascontiguousarray(w.T), np.int8)
    b.annotations[wname] = _weight_datatype(node)
    z = b.op("MatMulInteger", [xq, wname], f"{node.name}/matmul")
    return _accumulate(b, node, b.op("Cast", [z], f"{node.name}/z", to=TensorProto.INT64))


def _matmul(b, node, x, xt, y, yt):
    return _accumulate(b, node, b.op("MatMul", [x, y], f"{node.name}/z"))


def _requant(b, node, y, yt):
    a, ndim = node.attrs, len(yt.shape) + 1
    m = b.channel(node, "multiplier", node.weights["multiplier"], ndim, a["axis"], np.int64)
    bias = b.channel(node, "bias", node.weights["bias"], ndim, a["axis"], np.int64)
    pow2 = b.channel(node, "pow2_shift", np.left_shift(1, node.weights["shift"].astype(np.int64)),
                     ndim, a["axis"], np.int64)
    t = b.op("Add", [b.op("Mul", [y, m], f"{node.name}/mul"), bias], f"{node.name}/add")
    shifted = b.floor_shift(node.name, t, pow2)
    lo, hi = node.output.code_range
    return b.clip(node.name, shifted, lo, hi, node.name)


def _round_shift_clip(b, node, x, shift):
    """clamp(floor(x / 2^s + 1/2)) of int64 ``x`` (round half up, ref.ops.fixed)."""
    if shift:
        x = b.op("Add", [x, b.i64(f"{node.name}.round", 1 << (shift - 1))],
                 f"{node.name}/round")
        x = b.floor_shift(node.name, x, b.i64(f"{node.name}.pow2_shift", 1 << shift))
    lo, hi = node.output.code_range
    return b.clip(node.name, x, lo, hi, node.name)


def _rescale(b, node, x, xt):
    a = node.attrs
    prod = b.op("Mul", [x, b.i64(f"{node.name}.multiplier", a["multiplier"])], f"{node.name}/mul")
    return _round_shift_clip(b, node, prod, a["shift"])


def _add(b, node, x, xt, y, yt):
    a = node.attrs
    pa = b.op("Mul", [x, b.i64(f"{node.name}.m_a", a["m_a"])], f"{node.name}/mul_a")
    pb = b.op("Mul", [y, b.i64(f"{node.name}.m_b", a["m_b"])], f"{node.name}/mul_b")
    return _round_shift_clip(b, node, b.op("Add", [pa, pb], f"{node.name}/sum"), a["shift"])


def _max_pool(b, node, x, xt):
    a = node.attrs
    ph, pw = a["padding"]
    stride = a["stride"] or a["kernel"]
    attrs = dict(kernel_shape=list(a["kernel"]), strides=list(stride), pads=[ph, pw, ph, pw])
    if not xt.is_int:
        return b.op("MaxPool", [x], node.name, **attrs)
    lo, hi = xt.code_range
    if -128 <= lo and hi <= 255:
        narrow = b.narrow(node.name, x, xt, node.kind)
    elif max(-lo, hi) < (1 << _FLOAT_EXACT_BITS):
        narrow = b.op("Cast", [x], f"{node.name}/f32", to=TensorProto.FLOAT)
    else:
        raise UserError(f"node {node.name} (max_pool2d): codes of {xt.bits} bits are too wide "
                        "for an exact ONNX MaxPool")
    pooled = b.op("MaxPool", [narrow], f"{node.name}/pool", **attrs)
    return b.op("Cast", [pooled], node.name, to=TensorProto.INT64)


def _divide_by_area(b, node, total, area, max_abs_sum):
    m, bias, s = avg_divider(area, max_abs_sum)
    t = b.op("Add", [b.op("Mul", [total, b.i64(f"{node.name}.div_m", m)], f"{node.name}/mul"),
                     b.i64(f"{node.name}.div_b", bias)], f"{node.name}/add")
    out = b.floor_shift(node.name, t, b.i64(f"{node.name}.pow2_shift", 1 << s))
    return b.op("Identity", [out], node.name)


def _avg_pool(b, node, x, xt):
    a = node.attrs
    channels = xt.shape[0]
    kernel = list(a["kernel"])
    area = kernel[0] * kernel[1]
    ph, pw = a["padding"]
    ones = b.const(f"{node.name}.ones", np.ones((channels, 1, *kernel)), np.int8)
    total = b.op("ConvInteger", [b.narrow(node.name, x, xt, node.kind), ones],
                 f"{node.name}/sum", strides=list(a["stride"] or a["kernel"]),
                 pads=[ph, pw, ph, pw], group=channels, kernel_shape=kernel)
    total = b.op("Cast", [total], f"{node.name}/sum64", to=TensorProto.INT64)
    return _divide_by_area(b, node, total, area, area * xt.max_abs)


def _global_avg_pool(b, node, x, xt):
    if not xt.is_int:
        return b.op("GlobalAveragePool", [x], node.name)
    area = xt.shape[1] * xt.shape[2]
    total = b.op("ReduceSum", [x, b.i64(f"{node.name}.axes", [2, 3])], f"{node.name}/sum",
                 keepdims=1)
    return _divide_by_area(b, node, total, area, area * xt.max_abs)


def _pad(b, node, x, xt):
    p = node.attrs["pads"]
    before, after = [0] + list(p[0::2]), [0] + list(p[1::2])
    return b.op("Pad", [x, b.i64(f"{node.name}.pads", before + after)], node.name)


def _flatten(b, node, x, xt):
    return b.op("Flatten", [x], node.name, axis=1)


def _reshape(b, node, x, xt):
    return b.op("Reshape", [x, b.i64(f"{node.name}.shape", [-1, *node.attrs["shape"]])],
                node.name)


def _transpose(b, node, x, xt):
    return b.op("Transpose", [x], node.name, perm=list(node.attrs["axes"]))


def _standardize(b, node, x, xt):
    a = node.attrs
    f = b.op("Cast", [x], f"{node.name}/f32", to=TensorProto.FLOAT)
    f = b.op("Div", [f, b.f32(f"{node.name}.pixel_max", a["pixel_max"])], f"{node.name}/scale")
    f = b.op("Sub", [f, b.f32(f"{node.name}.mean", a["mean"])], f"{node.name}/center")
    return b.op("Div", [f, b.f32(f"{node.name}.std", a["std"])], node.name)


def _quantize(b, node, x, xt):
    a = node.attrs
    u = b.op("Div", [x, b.f32(f"{node.name}.step", a["step"])], f"{node.name}/div")
    u = b.op("Round", [u], f"{node.name}/round")
    u = b.op("Clip", [u, b.f32(f"{node.name}.lo", 0.0),
                      b.f32(f"{node.name}.hi", (1 << a["bits"]) - 1)], f"{node.name}/clip")
    return b.op("Cast", [u], node.name, to=TensorProto.INT64)


def _dequant(b, node, y, yt):
    a, ndim = node.attrs, len(yt.shape) + 1
    f = b.op("Cast", [y], f"{node.name}/f32", to=TensorProto.FLOAT)
    f = b.op("Mul", [f, b.channel(node, "scale", node.weights["scale"], ndim, a["axis"],
                                  np.float32)], f"{node.name}/mul")
    out = f"{node.name}/add" if a["relu"] else node.name
    f = b.op("Add", [f, b.channel(node, "shift", node.weights["shift"], ndim, a["axis"],
                                  np.float32)], out)
    return b.op("Relu", [f], node.name) if a["relu"] else f


def _float_affine(b, node, out, ndim):
    w = node.weights
    steps = [r for r in ("bias", "post_scale") if r in w]
    for role in steps:
        v = b.channel(node, role, w[role], ndim, 0, np.float32)
        out = b.op("Add" if role == "bias" else "Mul", [out, v], f"{node.name}/{role}")
        if role == "post_scale":
            out = b.op("Add", [out, b.channel(node, "post_shift", w["post_shift"], ndim, 0,
                                              np.float32)], f"{node.name}/post_shift")
    if node.attrs["relu"]:
        out = b.op("Relu", [out], f"{node.name}/relu")
    return b.op("Identity", [out], node.name) if out != node.name else out


def _conv2d_float(b, node, x, xt):
    a, w = node.attrs, node.weights["weight"]
    p = a["padding"]
    out = b.op("Conv", [x, b.f32(f"{node.name}.weight", w)], f"{node.name}/conv",
               strides=[a["stride"]] * 2, pads=[p] * 4, kernel_shape=list(w.shape[2:]))
    return _float_affine(b, node, out, 4)


def _linear_float(b, node, x, xt):
    w = node.weights["weight"]
    out = b.op("MatMul", [x, b.f32(f"{node.name}.weight_t", np.ascontiguousarray(w.T))],
               f"{node.name}/matmul")
    return _float_affine(b, node, out, 2)


_EMITTERS = {
    "conv2d": _conv2d, "linear": _linear, "matmul": _matmul, "requant": _requant,
    "rescale": _rescale, "add": _add, "max_pool2d": _max_pool, "avg_pool2d": _avg_pool,
    "global_avg_pool2d": _global_avg_pool, "pad": _pad, "flatten": _flatten,
    "reshape": _reshape, "transpose": _transpose, "standardize": _standardize,
    "quantize": _quantize, "dequant": _dequant, "conv2d_float": _conv2d_float,
    "linear_float": _linear_float,
}

#: The node kinds the ONNX export writes.
SUPPORTED_KINDS = tuple(sorted(_EMITTERS))


def _needed(graph, outputs, feeds):
    """Names of the nodes the outputs depend on, stopping at the fed tensors."""
    need, stack = set(), list(outputs)
    while stack:
        name = stack.pop()
        if name in need or name in feeds or name in graph.inputs:
            continue
        need.add(name)
        stack.extend(graph.node(name).inputs)
    return need


def graph_to_onnx(graph, *, outputs=None, feeds=(), doc=""):
    """The ONNX model (opset 18) of an integer graph (module docstring).

    Parameters
    ----------
    graph : wrapkit.ref.graph.Graph
    outputs : list of str or None
        Tensors (node names) the model returns; None: the graph's outputs. Adding inner
        nodes exposes their integers for a node-by-node comparison.
    feeds : iterable of str
        Node names whose outputs become model inputs instead of being computed (e.g. the
        first quantizer, to feed the engine's own codes and compare the integer part alone).
    doc : str
        The model's doc string.

    Raises
    ------
    UserError
        A node kind without an exact ONNX mapping, or operands too wide for it.
    """
    outputs = list(graph.outputs if outputs is None else outputs)
    feeds = list(feeds)
    for name in outputs + feeds:
        if name not in graph.inputs and name not in {n.name for n in graph.nodes}:
            raise UserError(f"no tensor {name!r} in the graph")
    need = _needed(graph, outputs, set(feeds))
    b = _Builder(graph)
    inputs = []
    for name, t in list(graph.inputs.items()) + [(f, graph.type_of(f)) for f in feeds]:
        if name in feeds or any(name in graph.node(n).inputs for n in need):
            inputs.append(_value_info(b.fresh(name), t))
            if t.is_int:
                b.annotations[name] = qonnx_datatype(t)
    for node in graph.nodes:
        if node.name not in need:
            continue
        emit = _EMITTERS.get(node.kind)
        if emit is None:
            raise UserError(f"node {node.name} ({node.kind}): no exact ONNX mapping for this "
                            f"kind; the QONNX export supports {', '.join(SUPPORTED_KINDS)}")
        args = []
        for src in node.inputs:
            args += [src, graph.type_of(src)]
        out = emit(b, node, *args)
        if out != node.name:
            raise AssertionError(f"{node.kind} emitter named its output {out!r}")
        if node.output.is_int:
            b.annotations[node.name] = qonnx_datatype(node.output)
    onnx_graph = helper.make_graph(
        b.nodes, "wrapkit", inputs, [_value_info(o, graph.type_of(o)) for o in outputs],
        b.inits)
    for tensor, dtype in sorted(b.annotations.items()):
        ann = onnx.TensorAnnotation()
        ann.tensor_name = tensor
        kv = ann.quant_parameter_tensor_names.add()
        kv.key, kv.value = "finn_datatype", dtype
        onnx_graph.quantization_annotation.append(ann)
    model = helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="wrapkit", producer_version=__version__,
                              doc_string=doc)
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model
