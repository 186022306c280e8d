"""MAC-type node kinds: conv2d (groups, dilation; depthwise included), linear, matmul.

Their ``run`` takes an optional ``gemm`` kernel for the exact dot products (the engine's
``gemm`` backends, :mod:`wrapkit.ref.graph.gemm`).

Each forms exact integer dot products and finishes them with its accumulator (``acc``:
exact, wrap, cyclic or saturate; :mod:`wrapkit.ref.ops.accumulator`). conv2d and linear
multiply activation codes with a stored integer weight tensor (weight *values*, e.g. ±1 for
binary weights; ``weight_kind``/``weight_bits`` say which values are allowed, so the hardware
can encode them with :func:`wrapkit.ref.encode_weights`); matmul multiplies two activation
tensors. The output is signed, ``acc.bits`` wide (an ``exact`` accumulator is as wide as the
largest dot product needs, :func:`wrapkit.ref.ops.dot_product_bound`).
"""

import numpy as np

from .. import ops
from ..datapath import WEIGHT_KINDS, signed_bits_for_range
from .nodekind import Attr, NodeKind, Weight, acc_attr, int_attr, pair_attr
from .types import MAX_TENSOR_BITS, TensorType

__all__ = ["MAC_KINDS", "check_weight_values", "mac_output_type"]

_INT_WEIGHTS = (np.int8, np.int16, np.int32)
_WEIGHT_KINDS = WEIGHT_KINDS + ("int",)


def _weight_kind(v):
    if v not in _WEIGHT_KINDS:
        raise ValueError(f"must be one of {', '.join(_WEIGHT_KINDS)}, got {v!r}")
    return v


def check_weight_values(w, kind, bits):
    """ValueError unless the integer weights ``w`` are values of ``kind``
    (binary ±1, ternary −1/0/+1, uniform ``bits``-bit symmetric, ``int``: any)."""
    if not w.size or kind == "int":
        return
    lo, hi = int(w.min()), int(w.max())
    if kind == "binary" and np.any(w == 0):
        raise ValueError("binary weights must be -1 or +1, found 0")
    if kind in ("binary", "ternary"):
        top = 1
    else:
        if bits is None:
            raise ValueError("uniform weights need weight_bits")
        top = (1 << (bits - 1)) - 1
    if lo < -top or hi > top:
        raise ValueError(f"weight values must lie in [{-top}, {top}] for {kind} weights, "
                         f"found {lo if lo < -top else hi}")


def mac_output_type(shape, acc, fan_in, a_type, b_max_abs):
    """Output type of a MAC node: signed, ``acc.bits`` wide (exact: the bound's width)."""
    if acc.mode != "exact":
        return TensorType.integer(shape, acc.bits, True)
    bound = ops.dot_product_bound(fan_in, a_type.code_range, (-b_max_abs, b_max_abs))
    bits = signed_bits_for_range(-bound, bound)
    if bits > MAX_TENSOR_BITS:
        raise ValueError(f"an exact accumulator would need {bits} bits (fan-in {fan_in}); "
                         f"use a wrap, cyclic or saturate accumulator")
    return TensorType.integer(shape, bits, True)


def _require_int(t, what="input"):
    if not t.is_int:
        raise ValueError(f"the {what} must be an integer tensor, got {t.describe()}; insert "
                         "a quantize node after a float node")


def _weights_of(node):
    w = node.weights["weight"]
    check_weight_values(w, node.attrs["weight_kind"], node.attrs["weight_bits"])
    return w


_MAC_WEIGHT_ATTRS = (Attr("weight_kind", _weight_kind, "int"),
                     int_attr("weight_bits", 2, 16, None))


def _conv_run(node, x, gemm=None):
    a = node.attrs
    return ops.conv2d(x, node.weights["weight"], stride=a["stride"], padding=a["padding"],
                      dilation=a["dilation"], groups=a["groups"], acc=a["acc"], gemm=gemm)


def _conv_infer(node, x):
    _require_int(x)
    w = _weights_of(node)
    if w.ndim != 4:
        raise ValueError(f"weight must have 4 axes (C_out, C_in/groups, kh, kw), got "
                         f"{list(w.shape)}")
    if len(x.shape) != 3:
        raise ValueError(f"conv2d needs a C×H×W input, got {x.describe()}")
    probe = _conv_run(node, np.zeros((1, *x.shape), dtype=np.int64))
    return mac_output_type(probe.shape[1:], node.attrs["acc"], int(np.prod(w.shape[1:])), x,
                           int(np.abs(w).max()) if w.size else 0)


def _linear_run(node, x, gemm=None):
    return ops.linear(x, node.weights["weight"], acc=node.attrs["acc"], gemm=gemm)


def _linear_infer(node, x):
    _require_int(x)
    w = _weights_of(node)
    if w.ndim != 2 or x.shape[-1] != w.shape[1]:
        raise ValueError(f"weight {list(w.shape)} does not fit the input {x.describe()} "
                         f"(expected [out_features, {x.shape[-1]}])")
    return mac_output_type(x.shape[:-1] + (w.shape[0],), node.attrs["acc"], w.shape[1], x,
                           int(np.abs(w).max()) if w.size else 0)


def _matmul_run(node, a, b, gemm=None):
    return ops.matmul(a, b, acc=node.attrs["acc"], gemm=gemm)


def _matmul_infer(node, a, b):
    _require_int(a, "first input")
    _require_int(b, "second input")
    if len(a.shape) < 2 or len(b.shape) < 2 or a.shape[:-2] != b.shape[:-2] \
            or a.shape[-1] != b.shape[-2]:
        raise ValueError(f"cannot multiply {a.describe()} by {b.describe()} (need [..., M, K] "
                         "and [..., K, P] with the same leading axes)")
    return mac_output_type(a.shape[:-1] + b.shape[-1:], node.attrs["acc"], a.shape[-1], a,
                           b.max_abs)


MAC_KINDS = (
    NodeKind("conv2d", "2-D convolution of codes with integer weights, then the accumulator",
             (1, 1),
             (pair_attr("stride", 1, 64, (1, 1)), pair_attr("padding", 0, 64, (0, 0)),
              pair_attr("dilation", 1, 64, (1, 1)), int_attr("groups", 1, 1 << 16, 1),
              acc_attr()) + _MAC_WEIGHT_ATTRS,
             (Weight("weight", _INT_WEIGHTS),), _conv_infer, _conv_run),
    NodeKind("linear", "codes × integer weight matrix over the last axis, then the accumulator",
             (1, 1), (acc_attr(),) + _MAC_WEIGHT_ATTRS, (Weight("weight", _INT_WEIGHTS),),
             _linear_infer, _linear_run),
    NodeKind("matmul", "product of two activation tensors (Q·Kᵀ, A·V), then the accumulator",
             (2, 2), (acc_attr(),), (), _matmul_infer, _matmul_run),
)
