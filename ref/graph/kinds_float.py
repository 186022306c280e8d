"""Float node kinds, allowed only at the graph's edges: the input standardisation, a float
stem or classifier, and the two crossings between float and integer tensors.

They compute in float32 exactly as the version-1 engine's float layers do (the same im2col
and GEMM of :mod:`wrapkit.ref.engine_layers`), so a version-1 file converted to a graph gives
the same logits bit for bit. Every report marks these nodes as float.
"""

import numpy as np

from ..engine_layers import hwc_matrix, im2col
from .kinds_int import channel_view, check_channel_axis
from .nodekind import NodeKind, Weight, bool_attr, float_attr, int_attr
from .types import TensorType

__all__ = ["FLOAT_KINDS"]

_F32 = (np.float32,)


def _require(t, dtype, what="input"):
    if t.dtype != dtype:
        raise ValueError(f"the {what} must be a{'n integer' if dtype == 'int' else ' float'} "
                         f"tensor, got {t.describe()}")


def _standardize_run(node, pixels):
    a = node.attrs
    x = pixels.astype(np.float32) / np.float32(a["pixel_max"])
    return (x - np.float32(a["mean"])) / np.float32(a["std"])


def _standardize_infer(node, pixels):
    _require(pixels, "int")
    return TensorType.float32(pixels.shape)


def _quantize_run(node, x):
    # As ActFakeQuant: clamp(round_half_even(x / step), 0, 2^bits - 1), in float32.
    u = x / np.float32(node.attrs["step"])
    np.rint(u, out=u)
    np.clip(u, 0, (1 << node.attrs["bits"]) - 1, out=u)
    return u.astype(np.int64)


def _quantize_infer(node, x):
    _require(x, "float")
    return TensorType.integer(x.shape, node.attrs["bits"], False, node.attrs["step"])


def _channel_view(v, ndim, axis=0):
    return channel_view(v, ndim, axis)


def _dequant_run(node, y):
    axis = node.attrs["axis"]
    out = y.astype(np.float32) * _channel_view(node.weights["scale"], y.ndim, axis)
    out += _channel_view(node.weights["shift"], y.ndim, axis)
    return np.maximum(out, 0, out=out) if node.attrs["relu"] else out


def _dequant_infer(node, y):
    _require(y, "int")
    c = check_channel_axis(node, y)
    for role in ("scale", "shift"):
        if node.weights[role].shape != (c,):
            raise ValueError(f"{role} must have one value per channel ({c}), got shape "
                             f"{list(node.weights[role].shape)}")
    return TensorType.float32(y.shape)


def _affine(node, out, ndim):
    w = node.weights
    if "bias" in w:
        out += _channel_view(w["bias"], ndim)
    if "post_scale" in w:
        out *= _channel_view(w["post_scale"], ndim)
        out += _channel_view(w["post_shift"], ndim)
    if node.attrs["relu"]:
        np.maximum(out, 0, out=out)
    return out


def _conv_float_run(node, x):
    a = node.attrs
    w = node.weights["weight"]
    rows, (n, oh, ow) = im2col(x.transpose(0, 2, 3, 1), w.shape[2], a["stride"], a["padding"],
                               np.float32, "hwc")
    out = (rows @ hwc_matrix(w, np.float32)).reshape(n, oh, ow, -1)
    return np.ascontiguousarray(_affine(node, out.transpose(0, 3, 1, 2), 4))


def _check_affine(node, c):
    w = node.weights
    if ("post_scale" in w) != ("post_shift" in w):
        raise ValueError("post_scale and post_shift come together")
    for role in ("bias", "post_scale", "post_shift"):
        if role in w and w[role].shape != (c,):
            raise ValueError(f"{role} must have one value per output channel ({c}), got "
                             f"shape {list(w[role].shape)}")
    for role, arr in w.items():
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"tensor {role} holds non-finite values")


def _conv_float_infer(node, x):
    _require(x, "float")
    w = node.weights["weight"]
    if w.ndim != 4 or w.shape[2] != w.shape[3] or len(x.shape) != 3 or w.shape[1] != x.shape[0]:
        raise ValueError(f"weight {list(w.shape)} does not fit the input {x.describe()} "
                         "(square kernels, [C_out, C_in, k, k])")
    _check_affine(node, w.shape[0])
    k, s, p = w.shape[2], node.attrs["stride"], node.attrs["padding"]
    oh, ow = ((d + 2 * p - k) // s + 1 for d in x.shape[1:])
    if oh < 1 or ow < 1:
        raise ValueError(f"kernel {k} with padding {p} does not fit the "
                         f"{x.shape[1]}×{x.shape[2]} input")
    return TensorType.float32((w.shape[0], oh, ow))


def _linear_float_run(node, x):
    out = x @ hwc_matrix(node.weights["weight"], np.float32)
    return _affine(node, out, 2)


def _linear_float_infer(node, x):
    _require(x, "float")
    w = node.weights["weight"]
    if len(x.shape) != 1 or w.ndim != 2 or w.shape[1] != x.shape[0]:
        raise ValueError(f"weight {list(w.shape)} does not fit the input {x.describe()} "
                         "(a flat [F] input and an [out, F] weight)")
    _check_affine(node, w.shape[0])
    return TensorType.float32((w.shape[0],))


_AFFINE = (Weight("bias", _F32, True), Weight("post_scale", _F32, True),
           Weight("post_shift", _F32, True))

FLOAT_KINDS = (
    NodeKind("standardize", "pixel codes -> float32 (pixel/pixel_max - mean)/std", (1, 1),
             (int_attr("pixel_max", 1, 1 << 16), float_attr("mean", positive=False),
              float_attr("std")), (), _standardize_infer, _standardize_run),
    NodeKind("quantize", "float32 -> unsigned codes clamp(round_half_even(x/step))", (1, 1),
             (float_attr("step"), int_attr("bits", 1, 16)), (), _quantize_infer,
             _quantize_run),
    NodeKind("dequant", "codes -> float32 y·scale + shift per channel [ReLU]", (1, 1),
             (bool_attr("relu", False), int_attr("axis", 0, 7, 0)),
             (Weight("scale", _F32), Weight("shift", _F32)),
             _dequant_infer, _dequant_run),
    NodeKind("conv2d_float", "float32 convolution [+bias] [·post_scale + post_shift] [ReLU]",
             (1, 1), (int_attr("stride", 1, 64, 1), int_attr("padding", 0, 64, 0),
                      bool_attr("relu", False)),
             (Weight("weight", _F32),) + _AFFINE, _conv_float_infer, _conv_float_run),
    NodeKind("linear_float", "float32 linear map [+bias] [·post_scale + post_shift] [ReLU]",
             (1, 1), (bool_attr("relu", False),), (Weight("weight", _F32),) + _AFFINE,
             _linear_float_infer, _linear_float_run),
)
