"""Export any network built from wrapkit's quantized modules by tracing it (torch.fx).

:func:`trace_model` traces the model's forward (wrapkit's quantized modules and the float
stem/classifier modules are leaves), then walks the traced graph once, keeping for each
traced value an abstract *integer view* of it:

============  ==================================================================
view          what the traced tensor is, in the integer graph
============  ==================================================================
``Float``     a float32 graph tensor (the standardised input, a float stem's output)
``Codes``     integer codes ``c`` of a graph tensor with real value ``step·c``
``Acc``       a MAC node's accumulator output ``y`` whose real value is
              ``A·scale·y + B`` per channel (the layer's ``s_w·s_x``, BatchNorm folded),
              optionally ReLU'd, then moved by data-movement ops still to be emitted
============  ==================================================================

A consumer that quantizes its input (a quantized layer's input quantizer, the residual add,
matmul, softmax) *materialises* the view at its quantizer: ``Float`` -> ``quantize`` node,
``Acc`` -> ``requant`` node (the fixed-point constants of :mod:`wrapkit.ref.requant`, signed
for a residual branch) followed by the pending data movement (which commutes with the
elementwise, monotone quantizer), ``Codes`` at the same step -> unchanged. A float consumer
(the classifier) gets a ``dequant`` node. Every integer node also gets a *probe*: how to read
its integers from PyTorch's own forward pass, which :func:`compare_with_pytorch` uses to check
the engine node by node.

Supported: the modules of :data:`SUPPORTED_MODULES` and the functions/methods of
:data:`SUPPORTED_FUNCTIONS`; anything else is refused with one line naming it, its place in
the model and the supported list.
"""

import math
import operator
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from wrapkit.common.errors import UserError
from wrapkit.ref.graph import Graph, new_node
from wrapkit.ref.graph.check import infer_types
from wrapkit.ref.graph.registry import NODE_KINDS
from wrapkit.ref.graph.types import TensorType
from wrapkit.ref.graph.v1 import INPUT_NAME, pixel_type
from wrapkit.ref.ops import AccumulatorMode
from wrapkit.ref.requant import fixed_point

from .attention.twist import QuantTwist
from .dct_stem import IntegerDCTStem
from .layers import QuantConv2d, QuantLinear
from .qops import QuantMatmul, QuantSoftmax
from .residual import QuantAdd

__all__ = ["SUPPORTED_FUNCTIONS", "SUPPORTED_MODULES", "TracedGraph", "compare_with_pytorch",
           "trace_model"]

SUPPORTED_MODULES = ("QuantConv2d", "QuantLinear", "QuantAdd", "QuantMatmul", "QuantSoftmax",
                     "QuantTwist",
                     "IntegerDCTStem (first module, reads the pixels)",
                     "Conv2d (float stem)", "Linear (float classifier)", "BatchNorm1d/2d",
                     "ReLU", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d(1)", "Flatten",
                     "PixelShuffle", "PixelUnshuffle", "Upsample(nearest)", "Identity",
                     "Dropout (eval)")
SUPPORTED_FUNCTIONS = ("relu", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d(1)",
                       "flatten", "reshape/view", "transpose/permute", "pad (zeros)",
                       "pixel_shuffle", "pixel_unshuffle", "interpolate(nearest)", "cat",
                       "× or ÷ of a layer output by a constant")


@dataclass
class _Float:
    name: str
    fx: object                       # the fx node whose tensor this is
    foldable: bool = False           # a float conv/linear node still open for BN/ReLU


@dataclass
class _Codes:
    name: str
    fx: object
    step: float
    bits: int
    signed: bool


@dataclass
class _Acc:
    name: str                        # the MAC (or matmul) node
    fx: object                       # the fx node before any pending move
    scale: np.ndarray                # per channel, float64
    axis: int                        # per-sample channel axis
    acc_bits: int
    a: np.ndarray = None
    b: np.ndarray = None
    relu: bool = False
    moves: list = field(default_factory=list)     # [(kind, attrs, fx node after the move)]

    def __post_init__(self):
        if self.a is None:
            self.a = np.ones_like(self.scale)
            self.b = np.zeros_like(self.scale)


@dataclass
class TracedGraph:
    """A traced model: the integer graph, the traced fx module and each integer node's probe.

    ``probes[node] = ("quant", fx_node, step, bits, signed)`` (PyTorch's codes are the
    quantized value of that traced tensor), ``("trace", module)`` (the module's last
    accumulator output) or ``("attr", module, name)`` (integers the module recorded).
    """

    graph: Graph
    module: torch.fx.GraphModule
    probes: dict


class _Tracer(torch.fx.Tracer):
    LEAVES = (QuantConv2d, QuantLinear, QuantAdd, QuantMatmul, QuantSoftmax, QuantTwist,
              IntegerDCTStem)

    def is_leaf_module(self, m, qualname):
        return isinstance(m, self.LEAVES) or super().is_leaf_module(m, qualname)


def _where(fx_node):
    target = fx_node.target if isinstance(fx_node.target, str) else getattr(
        fx_node.target, "__name__", str(fx_node.target))
    return f"{fx_node.op} {target!s} (traced node {fx_node.name})"


def _unsupported(what, fx_node, supported):
    raise UserError(f"unsupported {what} at {_where(fx_node)}; the export supports "
                    f"{', '.join(supported)}")


def _conv_acc(layer):
    acc = layer.accumulator
    return (AccumulatorMode("wrap", acc.bits) if acc.k is None
            else AccumulatorMode("cyclic", acc.bits, acc.k))


class _Builder:
    """Walks the traced graph and emits integer-graph nodes."""

    def __init__(self, gm, input_spec):
        self.gm = gm
        self.modules = dict(gm.named_modules())
        self.nodes, self.types, self.probes = [], {}, {}
        self.names = set()
        self.cache = {}
        self.input_spec = input_spec

    # -- emission ---------------------------------------------------------------------------
    def emit(self, name, kind, inputs, attrs=None, weights=None, where=None):
        base, i = name, 1
        while name in self.names:
            i += 1
            name = f"{base}_{i}"
        self.names.add(name)
        node = new_node(name, kind, inputs, attrs, weights)
        try:
            node.output = NODE_KINDS[kind].infer(node, *(self.types[s] for s in inputs))
        except (ValueError, TypeError) as exc:
            raise UserError(f"cannot export {where or name}: node {name} ({kind}): "
                            f"{exc}") from None
        self.types[name] = node.output
        self.nodes.append(node)
        return name

    # -- materialisation ----------------------------------------------------------------------
    def codes(self, v, step, bits, signed, fx_node):
        """The view ``v`` as codes of ``step``/``bits``/``signed`` (a graph tensor name)."""
        key = (id(v), float(step), bits, signed)
        if key in self.cache:
            return self.cache[key]
        where = _where(fx_node)
        if isinstance(v, _Codes):
            lo, hi = TensorType.integer((1,), bits, signed).code_range
            t = self.types[v.name]
            if v.step != step or t.code_range[0] < lo or t.code_range[1] > hi:
                raise UserError(f"cannot export {where}: it re-quantizes codes of step "
                                f"{v.step:.6g} ({t.describe()}) to step {step:.6g} "
                                f"({bits}-bit); tie the two quantizers (same step)")
            return v.name
        if isinstance(v, _Float):
            if signed:
                raise UserError(f"cannot export {where}: signed codes of a float tensor")
            name = self.emit(f"{v.name}.quantize", "quantize", [v.name],
                             {"step": step, "bits": bits}, where=where)
            self.probes[name] = ("quant", v.fx, step, bits, False)
        else:
            if v.relu and signed:
                raise UserError(f"cannot export {where}: a ReLU before signed codes")
            qmax = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
            lo = -(qmax + 1) if signed else 0
            try:
                m, b, s = fixed_point(v.a * v.scale / step, v.b / step, qmax=qmax,
                                      acc_bits=v.acc_bits, lo=lo)
            except ValueError as exc:
                raise UserError(f"cannot export {where}: requantization of node {v.name}: "
                                f"{exc}") from None
            name = self.emit(f"{v.name}.requant", "requant", [v.name],
                             {"out_bits": bits, "out_signed": signed, "scale": step,
                              "axis": v.axis},
                             {"multiplier": m, "bias": b, "shift": s}, where=where)
            self.probes[name] = ("quant", v.fx, step, bits, signed)
            for kind, attrs, fx_after in v.moves:
                name = self.emit(f"{v.name}.{kind}", kind, [name], attrs, where=where)
                self.probes[name] = ("quant", fx_after, step, bits, signed)
        self.cache[key] = name
        return name

    def floats(self, v, fx_node):
        """The view ``v`` as a float32 graph tensor name."""
        if isinstance(v, _Float):
            return v.name
        key = (id(v), "float")
        if key in self.cache:
            return self.cache[key]
        where = _where(fx_node)
        t = self.types[v.name]
        if isinstance(v, _Codes):
            c = t.shape[0]
            name = self.emit(f"{v.name}.dequant", "dequant", [v.name],
                             {"relu": False, "axis": 0},
                             {"scale": np.full(c, v.step, np.float32),
                              "shift": np.zeros(c, np.float32)}, where=where)
        else:
            name = self.emit(f"{v.name}.dequant", "dequant", [v.name],
                             {"relu": v.relu, "axis": v.axis},
                             {"scale": (v.a * v.scale).astype(np.float32),
                              "shift": v.b.astype(np.float32)}, where=where)
            for kind, attrs, _ in v.moves:
                name = self.emit(f"{v.name}.{kind}", kind, [name], attrs, where=where)
        self.cache[key] = name
        return name

    # -- data movement ------------------------------------------------------------------------
    def move(self, v, kind, attrs, fx_node, float_ok=True):
        if isinstance(v, _Acc):
            return replace(v, moves=v.moves + [(kind, attrs, fx_node)])
        if isinstance(v, _Float):
            if not float_ok:
                _unsupported(f"{kind} of a float tensor", fx_node, SUPPORTED_FUNCTIONS)
            return _Float(self.emit(f"{fx_node.name}", kind, [v.name], attrs,
                                    where=_where(fx_node)), fx_node)
        name = self.emit(fx_node.name, kind, [v.name], attrs, where=_where(fx_node))
        self.probes[name] = ("quant", fx_node, v.step, v.bits, v.signed)
        return _Codes(name, fx_node, v.step, v.bits, v.signed)

    def shape_of(self, v):
        """Per-sample shape of the view's tensor after its pending moves."""
        if isinstance(v, _Acc) and v.moves:
            shape = self.types[v.name].shape
            probe = np.zeros((1, *shape), np.int64)
            for kind, attrs, _ in v.moves:
                node = new_node("probe", kind, ["x"], attrs)
                probe = NODE_KINDS[kind].run(node, probe)
            return probe.shape[1:]
        return self.types[v.name].shape

    # -- the walk -----------------------------------------------------------------------------
    def run(self):
        env = {}
        output = None
        for n in self.gm.graph.nodes:
            if n.op == "placeholder":
                if env:
                    raise UserError(f"cannot export: the model takes more than one input "
                                    f"({n.name})")
                env[n] = self.placeholder(n)
            elif n.op == "call_module":
                env[n] = self.call_module(n, self.modules[n.target], env)
            elif n.op in ("call_function", "call_method"):
                env[n] = self.call_function(n, env)
            elif n.op == "output":
                output = env[n.args[0]]
            elif n.op == "get_attr":
                _unsupported("parameter read", n, SUPPORTED_FUNCTIONS)
        return self.floats(output, n) if not isinstance(output, _Codes) else output.name

    def placeholder(self, n):
        spec = self.input_spec
        self.types[INPUT_NAME] = pixel_type(spec)
        self.names.add(INPUT_NAME)
        name = self.emit("input", "standardize", [INPUT_NAME],
                         {"pixel_max": spec["pixel_max"], "mean": float(spec["mean"]),
                          "std": float(spec["std"])})
        return _Float(name, n)

    def call_module(self, n, m, env):
        args = [env[a] if isinstance(a, torch.fx.Node) else a for a in n.args]
        where = _where(n)
        if isinstance(m, (QuantConv2d, QuantLinear)):
            if not m.integer:
                what = "activations" if m.weight_quant.quantized else "weights"
                raise UserError(f"layer {n.target} has float {what}: only fully quantized "
                                "networks (--method qa or wrapnet) can be exported for integer "
                                "inference")
            aq = m.act_quant
            # A token projection (attention.mixers.TokenLinear) reads signed codes.
            x = self.codes(args[0], aq.step, aq.bits, getattr(m, "signed_input", False), n)
            q, s_w = m.integer_weights()
            wq = m.weight_quant
            attrs = {"acc": _conv_acc(m), "weight_kind": wq.kind, "weight_bits": wq.bits}
            if isinstance(m, QuantConv2d):
                attrs.update(stride=m.stride, padding=m.padding, dilation=m.dilation,
                             groups=m.groups)
            name = self.emit(n.target, "conv2d" if isinstance(m, QuantConv2d) else "linear",
                             [x], attrs, {"weight": q.numpy().astype(np.int8)}, where=where)
            self.probes[name] = ("trace", m)
            # The layer scales y by s_w·s_x computed in float32: fold that same product.
            scale = (s_w.float() * aq.step).double().numpy()
            axis = 0 if isinstance(m, QuantConv2d) else len(self.types[name].shape) - 1
            return _Acc(name, n, scale, axis, m.accumulator.bits)
        if isinstance(m, IntegerDCTStem):
            return self.dct_stem(args[0], m, n)
        if isinstance(m, QuantAdd):
            sc = m.scales()
            if sc is None:
                raise UserError(f"{n.target}: the residual add is float (activations are not "
                                "quantized); export a network trained with quantized "
                                "activations")
            s_a, n_a, s_b, n_b, s_out, n_out = sc
            a = self.codes(args[0], s_a, n_a, True, n)
            b = self.codes(args[1], s_b, n_b, False, n)
            m_a, m_b, shift = sc.multipliers
            name = self.emit(n.target, "add", [a, b],
                             {"m_a": m_a, "m_b": m_b, "shift": shift, "out_bits": n_out,
                              "out_signed": False, "scale": s_out}, where=where)
            self.probes[name] = ("quant", n, s_out, n_out, False)
            return _Codes(name, n, s_out, n_out, False)
        if isinstance(m, QuantMatmul):
            if not m.integer:
                raise UserError(f"{n.target}: QuantMatmul without quantizers cannot be "
                                "exported; set a_quant and b_quant")
            qa, qb = m.a_quant, m.b_quant
            a = self.codes(args[0], qa.step, qa.bits, qa.signed, n)
            b = self.codes(args[1], qb.step, qb.bits, qb.signed, n)
            name = self.emit(n.target, "matmul", [a, b], {"acc": m.acc}, where=where)
            self.probes[name] = ("trace", m)
            t = self.types[name]
            scale = np.full(t.shape[-1], qa.step * qb.step)
            bits = t.bits if m.acc.mode == "exact" else m.acc.bits
            return _Acc(name, n, scale, len(t.shape) - 1, min(bits, 32))
        if isinstance(m, QuantSoftmax):
            if m.in_quant is None:
                raise UserError(f"{n.target}: QuantSoftmax without in_quant cannot be "
                                "exported")
            q = self.codes(args[0], m.in_quant.step, m.in_quant.bits, True, n)
            c = m.constants
            name = self.emit(n.target, "softmax", [q],
                             {"q_ln2": c.q_ln2, "q_b": c.q_b, "q_c": c.q_c,
                              "out_bits": m.out_bits}, where=where)
            self.probes[name] = ("quant", n, m.out_step, m.out_bits, False)
            return _Codes(name, n, m.out_step, m.out_bits, False)
        if isinstance(m, QuantTwist):
            v = args[0]
            if m.out_bits is None or not isinstance(v, _Codes) or v.signed \
                    or v.step != 1.0 / ((1 << m.out_bits) - 1):
                raise UserError(f"{n.target}: QuantTwist exports only with out_bits set, "
                                "directly after a QuantSoftmax of the same out_bits")
            t_num, s_num = m.constants
            name = self.emit(n.target, "twist", [v.name],
                             {"t_num": t_num, "s_num": s_num, "out_bits": m.out_bits},
                             where=where)
            self.probes[name] = ("quant", n, v.step, m.out_bits, False)
            return _Codes(name, n, v.step, m.out_bits, False)
        if isinstance(m, nn.Conv2d):
            k, s, p = m.kernel_size, m.stride, m.padding
            if len(set(k)) != 1 or len(set(s)) != 1 or not isinstance(p, tuple) \
                    or len(set(p)) != 1 or m.groups != 1 or m.dilation != (1, 1) \
                    or m.padding_mode != "zeros":
                _unsupported(f"float convolution {m!r} (square, zero-padded, no groups or "
                             "dilation)", n, SUPPORTED_MODULES)
            x = self.floats(args[0], n)
            weights = {"weight": m.weight.detach().float().numpy()}
            if m.bias is not None:
                weights["bias"] = m.bias.detach().float().numpy()
            name = self.emit(n.target, "conv2d_float", [x],
                             {"stride": s[0], "padding": p[0], "relu": False}, weights,
                             where=where)
            return _Float(name, n, foldable=len(n.users) == 1)
        if isinstance(m, nn.Linear):
            x = self.floats(args[0], n)
            weights = {"weight": m.weight.detach().float().numpy()}
            if m.bias is not None:
                weights["bias"] = m.bias.detach().float().numpy()
            name = self.emit(n.target, "linear_float", [x], {"relu": False}, weights,
                             where=where)
            return _Float(name, n, foldable=len(n.users) == 1)
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            return self.batchnorm(args[0], m, n)
        if isinstance(m, nn.ReLU):
            return self.relu(args[0], n)
        if isinstance(m, (nn.Identity, nn.Dropout)):
            return args[0]
        if isinstance(m, nn.MaxPool2d):
            return self.pool("max_pool2d", args[0], m.kernel_size, m.stride, m.padding, n)
        if isinstance(m, nn.AvgPool2d):
            return self.pool("avg_pool2d", args[0], m.kernel_size, m.stride, m.padding, n)
        if isinstance(m, nn.AdaptiveAvgPool2d):
            return self.global_avg(args[0], m.output_size, n)
        if isinstance(m, nn.Flatten):
            if m.start_dim != 1 or m.end_dim != -1:
                _unsupported("Flatten other than flatten(1)", n, SUPPORTED_MODULES)
            return self.move(args[0], "flatten", {}, n)
        if isinstance(m, (nn.PixelShuffle, nn.PixelUnshuffle)):
            kind = "pixel_shuffle" if isinstance(m, nn.PixelShuffle) else "pixel_unshuffle"
            factor = m.upscale_factor if kind == "pixel_shuffle" else m.downscale_factor
            return self.move(args[0], kind, {"factor": factor}, n, float_ok=False)
        if isinstance(m, nn.Upsample):
            return self.upsample(args[0], m.scale_factor, m.mode, n)
        _unsupported(f"module {type(m).__name__} ({n.target})", n, SUPPORTED_MODULES)

    def dct_stem(self, v, m, n):
        """The integer DCT stem on the graph's pixels: [upsample], level shift, conv2d."""
        spec, where = self.input_spec, _where(n)
        if not (isinstance(v, _Float) and v.fx.op == "placeholder") \
                or int(spec["pixel_max"]) != 255 or float(spec["mean"]) != 0.0 \
                or float(spec["std"]) != 1.0:
            raise UserError(f"cannot export {where}: the integer DCT stem must be the first "
                            "module, reading pixels / 255 (input pixel_max 255, mean 0, std 1)")
        x = INPUT_NAME
        if m.factor > 1:
            x = self.emit(f"{n.target}.upsample", "upsample_nearest", [x],
                          {"scale": m.factor}, where=where)
            self.probes[x] = ("attr", m, "last_pixels")
        c = self.types[x].shape[0]
        x = self.emit(f"{n.target}.level_shift", "requant", [x],
                      {"out_bits": 8, "out_signed": True, "scale": None, "axis": 0},
                      {"multiplier": np.ones(c, np.int64),
                       "bias": np.full(c, -128, np.int64), "shift": np.zeros(c, np.int64)},
                      where=where)
        self.probes[x] = ("attr", m, "last_codes")
        name = self.emit(n.target, "conv2d", [x],
                         {"stride": (8, 8), "padding": (0, 0), "dilation": (1, 1), "groups": 1,
                          "acc": _conv_acc(m), "weight_kind": "uniform", "weight_bits": 8},
                         {"weight": m.integer_weights().astype(np.int8)}, where=where)
        self.probes[name] = ("trace", m)
        return _Acc(name, n, np.full(m.out_channels, m.scale), 0, m.accumulator.bits)

    def batchnorm(self, v, bn, n):
        if bn.training or not bn.track_running_stats:
            raise UserError(f"{n.target}: BatchNorm must be in eval mode with running "
                            "statistics (call model.eval())")
        a = 1.0 / torch.sqrt(bn.running_var.detach().double() + bn.eps)
        if bn.affine:
            a = a * bn.weight.detach().double()
            b = bn.bias.detach().double() - a * bn.running_mean.detach().double()
        else:
            b = -a * bn.running_mean.detach().double()
        a, b = a.numpy(), b.numpy()
        if isinstance(v, _Acc) and not v.moves and not v.relu and len(a) == len(v.scale):
            return replace(v, a=v.a * a, b=v.b * a + b, fx=n)
        if isinstance(v, _Float) and v.foldable:
            node = self.nodes[-1]
            if node.name == v.name and "post_scale" not in node.weights \
                    and not node.attrs["relu"]:
                node.weights["post_scale"] = a.astype(np.float32)
                node.weights["post_shift"] = b.astype(np.float32)
                node.weight_names.update({r: f"{node.name}.{r}"
                                          for r in ("post_scale", "post_shift")})
                return _Float(v.name, n, foldable=len(n.users) == 1)
        _unsupported("BatchNorm that does not directly follow a convolution or linear layer",
                      n, SUPPORTED_MODULES)

    def relu(self, v, n):
        if isinstance(v, _Acc):
            return replace(v, relu=True, fx=n if not v.moves else v.fx,
                           moves=[(k, a, n if i == len(v.moves) - 1 else f)
                                  for i, (k, a, f) in enumerate(v.moves)])
        if isinstance(v, _Codes) and not v.signed:
            return _Codes(v.name, n, v.step, v.bits, False)
        if isinstance(v, _Float) and v.foldable:
            node = self.nodes[-1]
            if node.name == v.name and not node.attrs["relu"]:
                node.attrs["relu"] = True
                return _Float(v.name, n, foldable=len(n.users) == 1)
        _unsupported("ReLU of a tensor that is neither a layer output nor unsigned codes", n,
                     SUPPORTED_FUNCTIONS)

    def pool(self, kind, v, kernel, stride, padding, n):
        attrs = {"kernel": kernel, "stride": stride if stride not in (None, []) else kernel,
                 "padding": padding}
        if kind == "avg_pool2d":
            if not isinstance(v, _Codes):
                _unsupported("avg_pool2d of anything but codes (put it after the "
                             "quantization, or use adaptive_avg_pool2d before a float "
                             "classifier)", n, SUPPORTED_FUNCTIONS)
        return self.move(v, kind, attrs, n)

    def global_avg(self, v, size, n):
        if size not in (1, (1, 1), [1, 1]):
            _unsupported(f"adaptive_avg_pool2d to {size}", n, SUPPORTED_FUNCTIONS)
        # PyTorch averages real values: a float edge before the float classifier.
        name = self.emit(n.name, "global_avg_pool2d", [self.floats(v, n)], where=_where(n))
        return _Float(name, n)

    def upsample(self, v, scale, mode, n):
        if mode != "nearest" or scale is None or float(scale) != int(scale):
            _unsupported(f"interpolate(mode={mode!r}, scale_factor={scale!r})", n,
                         SUPPORTED_FUNCTIONS)
        return self.move(v, "upsample_nearest", {"scale": int(scale)}, n, float_ok=False)

    def call_function(self, n, env):
        args = [env[a] if isinstance(a, torch.fx.Node) else a for a in n.args]
        kw = {k: env[a] if isinstance(a, torch.fx.Node) else a for k, a in n.kwargs.items()}
        t = n.target
        name = t if isinstance(t, str) else getattr(t, "__name__", str(t))
        if name in ("relu", "relu_"):
            return self.relu(args[0], n)
        if t is F.max_pool2d or t is F.avg_pool2d:
            kernel = args[1] if len(args) > 1 else kw["kernel_size"]
            stride = args[2] if len(args) > 2 else kw.get("stride")
            padding = args[3] if len(args) > 3 else kw.get("padding", 0)
            return self.pool("max_pool2d" if t is F.max_pool2d else "avg_pool2d", args[0],
                             kernel, stride, padding, n)
        if t is F.adaptive_avg_pool2d:
            return self.global_avg(args[0], args[1] if len(args) > 1 else kw["output_size"], n)
        if name == "flatten":
            start = args[1] if len(args) > 1 else kw.get("start_dim", 0 if t is torch.flatten
                                                            else 0)
            if start != 1 or (len(args) > 2 and args[2] != -1):
                _unsupported("flatten other than flatten(1)", n, SUPPORTED_FUNCTIONS)
            return self.move(args[0], "flatten", {}, n)
        if t is F.pad:
            pads = args[1] if len(args) > 1 else kw["pad"]
            value = args[3] if len(args) > 3 else kw.get("value", 0)
            mode = args[2] if len(args) > 2 else kw.get("mode", "constant")
            if mode != "constant" or value not in (0, None, 0.0):
                _unsupported("pad other than zero padding", n, SUPPORTED_FUNCTIONS)
            ndim = len(self.shape_of(args[0]))
            flat = [0] * (2 * ndim)
            for i in range(0, len(pads), 2):           # F.pad counts from the last axis
                axis = ndim - 1 - i // 2
                flat[2 * axis], flat[2 * axis + 1] = pads[i], pads[i + 1]
            return self.move(args[0], "pad", {"pads": flat}, n)
        if t in (F.pixel_shuffle, F.pixel_unshuffle):
            kind = t.__name__
            return self.move(args[0], kind, {"factor": args[1]}, n, float_ok=False)
        if t is F.interpolate:
            scale = args[2] if len(args) > 2 else kw.get("scale_factor")
            mode = args[3] if len(args) > 3 else kw.get("mode", "nearest")
            return self.upsample(args[0], scale, mode, n)
        if name in ("reshape", "view"):
            dims = args[1:] if not (len(args) == 2 and isinstance(args[1], (tuple, list))) \
                else list(args[1])
            if not dims or not all(isinstance(d, int) for d in dims[1:]) \
                    or (isinstance(dims[0], int) and dims[0] != -1):
                _unsupported("reshape other than (batch or -1, per-sample sizes...)", n,
                             SUPPORTED_FUNCTIONS)
            per = list(dims[1:])
            size = math.prod(self.shape_of(args[0]))
            if per.count(-1) == 1:
                per[per.index(-1)] = size // -math.prod(per)
            return self.move(args[0], "reshape", {"shape": per}, n)
        if name in ("transpose", "permute"):
            ndim = len(self.shape_of(args[0])) + 1
            if name == "transpose":
                i, j = (d % ndim for d in args[1:3])
                axes = list(range(ndim))
                axes[i], axes[j] = axes[j], axes[i]
            else:
                axes = [d % ndim for d in (args[1:] if not isinstance(args[1], (tuple, list))
                                           else args[1])]
            return self.move(args[0], "transpose", {"axes": axes}, n)
        if t is torch.cat:
            tensors, dim = args[0], args[1] if len(args) > 1 else kw.get("dim", 0)
            if not all(isinstance(x, _Codes) for x in tensors) or dim in (0, None):
                _unsupported("cat of anything but codes along a per-sample axis", n,
                             SUPPORTED_FUNCTIONS)
            steps = {(x.step, x.bits, x.signed) for x in tensors}
            if len(steps) != 1:
                _unsupported("cat of codes at different steps (tie their quantizers)", n,
                             SUPPORTED_FUNCTIONS)
            step, bits, signed = steps.pop()
            ndim = len(self.types[tensors[0].name].shape) + 1
            name = self.emit(n.name, "concat", [x.name for x in tensors], {"axis": dim % ndim},
                             where=_where(n))
            self.probes[name] = ("quant", n, step, bits, signed)
            return _Codes(name, n, step, bits, signed)
        if t in (operator.mul, operator.truediv) and isinstance(args[0], _Acc) \
                and isinstance(args[1], (int, float)) and not args[0].moves \
                and not args[0].relu and args[1] != 0:
            # A constant factor on a layer's output (attention's 1/√d) folds into its scale.
            c = float(args[1]) if t is operator.mul else 1.0 / float(args[1])
            return replace(args[0], a=args[0].a * c, b=args[0].b * c, fx=n)
        if t in (operator.getitem,) or name in ("size", "dim"):
            _unsupported(f"function {name}", n, SUPPORTED_FUNCTIONS)
        what = "an add of two float tensors (use wrapkit.models.residual.QuantAdd)" \
            if t in (operator.add, torch.add) else f"function {name}"
        _unsupported(what, n, SUPPORTED_FUNCTIONS)


def trace_model(model, *, input_spec):
    """Trace ``model`` (eval mode) into a :class:`TracedGraph`.

    Parameters
    ----------
    model : nn.Module
        Built from wrapkit's quantized modules, quantizers set.
    input_spec : dict
        ``{"shape": [C, H, W], "pixel_max", "mean", "std"}``: the graph reads uint8 pixels
        and standardises them as training did.

    Raises
    ------
    UserError
        An unsupported module or function (named, with its place and the supported list).
    """
    model.eval()
    try:
        gm = torch.fx.GraphModule(model, _Tracer().trace(model))
    except torch.fx.proxy.TraceError as exc:
        raise UserError(f"cannot trace {type(model).__name__}: {str(exc).splitlines()[0]} "
                        "(its forward must not branch on tensor values)") from None
    builder = _Builder(gm, input_spec)
    out = builder.run()
    # A stem that reads the pixels (IntegerDCTStem) leaves the standardisation unused.
    used = {i for node in builder.nodes for i in node.inputs} | {out}
    nodes = [node for node in builder.nodes if node.kind != "standardize" or node.name in used]
    graph = Graph({INPUT_NAME: builder.types[INPUT_NAME]}, nodes, [out])
    infer_types(graph)
    return TracedGraph(graph, gm, builder.probes)


def _torch_codes(probe, env):
    if probe[0] == "attr":
        return getattr(probe[1], probe[2]).round().to(torch.int64).numpy()
    if probe[0] == "trace":
        m = probe[1]
        y = m.last.y if isinstance(m, (QuantConv2d, QuantLinear)) else m.last_y
        return y.detach().round().to(torch.int64).numpy()
    _, fx_node, step, bits, signed = probe
    lo, hi = TensorType.integer((1,), bits, signed).code_range
    # The quantizer's own arithmetic: clamp(x / step) in the tensor's dtype, then round.
    return torch.round(torch.clamp(env[fx_node] / step, lo, hi)).to(torch.int64).numpy()


class _Recorder(torch.fx.Interpreter):
    def run_node(self, n):
        out = super().run_node(n)
        self.values[n] = out
        return out


def compare_with_pytorch(traced, pixels, x, *, batch_size=100, feed_first_codes=False,
                         gemm="int64"):
    """Run the graph engine and PyTorch on the same images; compare every integer node.

    Parameters
    ----------
    traced : TracedGraph
    pixels : uint8 array (N, C, H, W)
        What the engine reads.
    x : float tensor (N, C, H, W)
        What PyTorch reads (the training code's standardised images).
    feed_first_codes : bool
        Replace the engine's ``quantize`` nodes (the float stem's rounding, where numpy's and
        PyTorch's float32 arithmetic may differ by an ulp) by PyTorch's codes, so that the
        integer path is compared on identical inputs.
    gemm : str
        The engine's GEMM backend (:mod:`wrapkit.ref.graph.gemm`; every backend gives the same
        integers).

    Returns
    -------
    dict
        ``engine_logits``, ``torch_logits`` (float32 arrays), ``nodes``: per integer node
        ``{"values", "mismatches"}``, and ``nodes_fed_first_codes``: the same counts with
        every batch whose first codes differ run again fed PyTorch's (the integer path
        compared on identical inputs, at the cost of those batches only).
    """
    from wrapkit.ref.graph.engine import GraphEngine

    graph = traced.graph
    engine = GraphEngine(graph, gemm=gemm)
    int_nodes = [n.name for n in graph.nodes if n.output.is_int]
    stats = {n: {"values": 0, "mismatches": 0} for n in int_nodes}
    fed_stats = {n: {"values": 0, "mismatches": 0} for n in int_nodes}
    first = [n.name for n in graph.nodes if n.kind == "quantize"]
    e_logits, t_logits = [], []
    layers = [m for m in traced.module.modules() if isinstance(m, (QuantConv2d, QuantLinear,
                                                                   QuantMatmul))]
    for m in layers:
        m.tracing = True
    try:
        for i in range(0, len(pixels), batch_size):
            rec = _Recorder(traced.module)
            rec.values = {}
            with torch.no_grad():
                t_out = rec.run(x[i:i + batch_size])
            want = {}
            for name in int_nodes:
                want[name] = _torch_codes(traced.probes[name], rec.values)
            given = {n.name: want[n.name] for n in graph.nodes
                     if feed_first_codes and n.kind == "quantize"}
            feeds = engine.check_inputs(pixels[i:i + batch_size])
            got = engine.run_batch(feeds, keep=int_nodes, given=given)
            fed = got
            if any(not np.array_equal(got[q], want[q]) for q in first):
                fed = engine.run_batch(feeds, keep=int_nodes,
                                       given={q: want[q] for q in first})
            for counts, out in ((stats, got), (fed_stats, fed)):
                for name in int_nodes:
                    counts[name]["values"] += out[name].size
                    counts[name]["mismatches"] += int((out[name] != want[name]).sum())
            e_logits.append(got[graph.outputs[0]])
            t_logits.append(t_out.detach().numpy())
    finally:
        for m in layers:
            m.tracing = False
    return {"engine_logits": np.concatenate(e_logits), "torch_logits": np.concatenate(t_logits),
            "nodes": stats, "nodes_fed_first_codes": fed_stats}
