"""Integer node kinds besides the MACs: requantization, rescale, add, concat, pooling and
layout, softmax, TWIST, layer norm and tables.

Each ``run`` is one call into :mod:`wrapkit.ref.ops` (or :func:`wrapkit.ref.requant.requantize`
for the per-channel requantization), so the graph defines no arithmetic of its own.
"""

import numpy as np

from .. import ops
from ..ops.tensors import INT64_LIMIT
from ..requant import check_bounds, requantize
from .nodekind import Attr, NodeKind, Weight, bool_attr, float_attr, int_attr, \
    int_list_attr, pair_attr
from .types import TensorType

__all__ = ["INT_KINDS", "channel_view", "check_channel_axis"]

_I64 = (np.int64,)


def _require_int(*types):
    for i, t in enumerate(types):
        if not t.is_int:
            raise ValueError(f"input {i} must be an integer tensor, got {t.describe()}")


def _out_attrs(bits_hi=32):
    return (int_attr("out_bits", 1, bits_hi), bool_attr("out_signed"),
            float_attr("scale", default=None))


def _out_type(node, shape):
    a = node.attrs
    return TensorType.integer(shape, a["out_bits"], a["out_signed"], a["scale"])


def _probe_shape(run, node, *types):
    """Per-sample output shape of ``run`` on one all-zero sample of each input type."""
    zeros = [np.zeros((1, *t.shape), dtype=np.int64 if t.is_int else np.float32)
             for t in types]
    return run(node, *zeros).shape[1:]


def _lo(node):
    return -(1 << (node.attrs["out_bits"] - 1)) if node.attrs["out_signed"] else 0


def _hi(node):
    b = node.attrs["out_bits"]
    return (1 << (b - 1)) - 1 if node.attrs["out_signed"] else (1 << b) - 1


# -- requantization and rescale -----------------------------------------------------------------

def channel_view(v, ndim, axis):
    """Per-channel vector ``v`` shaped to broadcast over a batch-first array of ``ndim`` axes
    whose channels are per-sample axis ``axis``."""
    return v.reshape((-1,) + (1,) * (ndim - 2 - axis))


def check_channel_axis(node, t):
    """The node's ``axis`` attribute checked against the input type; returns the channels."""
    axis = node.attrs["axis"]
    if axis >= len(t.shape):
        raise ValueError(f"axis {axis} does not exist in {t.describe()}")
    return t.shape[axis]


def _channel_constants(node, ndim):
    axis = node.attrs["axis"]
    return tuple(channel_view(node.weights[r], ndim, axis)
                 for r in ("multiplier", "bias", "shift"))


def _requant_run(node, y):
    m, b, s = _channel_constants(node, y.ndim)
    return requantize(y, m, b, s, _hi(node), _lo(node))


def _requant_infer(node, y):
    _require_int(y)
    c = check_channel_axis(node, y)
    for role in ("multiplier", "bias", "shift"):
        if node.weights[role].shape != (c,):
            raise ValueError(f"{role} must have one value per channel ({c}), got shape "
                             f"{list(node.weights[role].shape)}")
    # check_bounds takes the accumulator width b (|y| <= 2^(b-1)); unsigned y needs one more.
    check_bounds(node.weights["multiplier"], node.weights["bias"], node.weights["shift"],
                 y.bits + (0 if y.signed else 1))
    return _out_type(node, y.shape)


def _rescale_run(node, x):
    a = node.attrs
    return ops.rescale(x, a["multiplier"], a["shift"], a["out_bits"], a["out_signed"])


def _rescale_infer(node, x):
    _require_int(x)
    if x.max_abs * node.attrs["multiplier"] >= INT64_LIMIT:
        raise ValueError("|x·multiplier| can reach 2^62; use a smaller multiplier")
    return _out_type(node, x.shape)


# -- add and concat ------------------------------------------------------------------------------

def _add_run(node, a, b):
    p = node.attrs
    return ops.add(a, b, p["m_a"], p["m_b"], p["shift"], out_bits=p["out_bits"],
                   out_signed=p["out_signed"])


def _add_infer(node, a, b):
    _require_int(a, b)
    if a.shape != b.shape:
        raise ValueError(f"inputs have shapes {list(a.shape)} and {list(b.shape)}; an add "
                         "needs equal shapes")
    p = node.attrs
    if a.max_abs * p["m_a"] + b.max_abs * p["m_b"] >= INT64_LIMIT:
        raise ValueError("|a·m_a| + |b·m_b| can reach 2^62; use smaller multipliers")
    return _out_type(node, a.shape)


def _rescales(v):
    if v is None:
        return None
    if not isinstance(v, (list, tuple)):
        raise ValueError(f"must be a list with one [multiplier, shift] or null per input, "
                         f"got {v!r}")
    out = []
    for r in v:
        if r is None:
            out.append(None)
        elif isinstance(r, (list, tuple)) and len(r) == 2 and all(
                isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in r) \
                and r[1] <= 62:
            out.append((int(r[0]), int(r[1])))
        else:
            raise ValueError(f"each entry must be [multiplier >= 0, shift 0..62] or null, "
                             f"got {r!r}")
    return tuple(out)


def _concat_run(node, *xs):
    a = node.attrs
    return ops.concat(xs, a["axis"], rescales=a["rescales"], out_bits=a["out_bits"],
                      out_signed=a["out_signed"])


def _concat_infer(node, *xs):
    _require_int(*xs)
    a = node.attrs
    if a["rescales"] is None:
        widths = {(t.bits, t.signed) for t in xs}
        if len(widths) != 1:
            raise ValueError(f"inputs have different widths {[t.describe() for t in xs]}; "
                             "give rescales and out_bits/out_signed")
        bits, signed = widths.pop()
    else:
        if a["out_bits"] is None or a["out_signed"] is None:
            raise ValueError("rescales need out_bits and out_signed")
        if len(a["rescales"]) != len(xs):
            raise ValueError(f"rescales has {len(a['rescales'])} entries for {len(xs)} inputs")
        bits, signed = a["out_bits"], a["out_signed"]
        for i, (t, r) in enumerate(zip(xs, a["rescales"])):
            lo, hi = TensorType.integer((1,), bits, signed).code_range
            if r is None and (t.code_range[0] < lo or t.code_range[1] > hi):
                raise ValueError(f"input {i} ({t.describe()}) does not fit the output range "
                                 f"[{lo}, {hi}] without a rescale")
    shape = _probe_shape(_concat_run, node, *xs)
    scale = a["scale"] if a["scale"] is not None else (
        xs[0].scale if a["rescales"] is None and len({t.scale for t in xs}) == 1 else None)
    return TensorType.integer(shape, bits, signed, scale)


# -- data movement (pooling, resampling, layout) --------------------------------------------------

def _moving(name, summary, attrs, run, accepts_float=False):
    """A kind that only moves or averages values: its output type is its input's, reshaped."""
    def infer(node, x):
        if not accepts_float:
            _require_int(x)
        return x.with_shape(_probe_shape(run, node, x))
    return NodeKind(name, summary, (1, 1), attrs, (), infer, run)


def _max_pool_run(node, x):
    a = node.attrs
    if x.dtype.kind != "f":
        return ops.max_pool2d(x, a["kernel"], a["stride"], a["padding"])
    # Floats (a pool after a float stem): the same windows on an order-preserving integer
    # key. IEEE floats order like sign-magnitude integers, so flipping the magnitude bits
    # of the negative ones makes int32 order equal float order (and the flip is undone).
    bits = np.ascontiguousarray(x, np.float32).view(np.int32)
    key = np.where(bits < 0, bits ^ 0x7FFFFFFF, bits).astype(np.int64)
    out = ops.max_pool2d(key, a["kernel"], a["stride"], a["padding"]).astype(np.int32)
    return np.where(out < 0, out ^ 0x7FFFFFFF, out).astype(np.int32).view(np.float32)


def _pool_attrs():
    return (pair_attr("kernel", 1, 64), pair_attr("stride", 1, 64, None),
            pair_attr("padding", 0, 32, (0, 0)))


def _avg_pool_run(node, x):
    a = node.attrs
    return ops.avg_pool2d(x, a["kernel"], a["stride"], a["padding"])


def _global_avg_pool_run(node, x):
    if x.dtype.kind == "f":
        # A float edge (before a float classifier): the float32 mean, as PyTorch's.
        return x.mean(axis=(2, 3), keepdims=True, dtype=np.float32)
    return ops.avg_pool2d(x, x.shape[2:])


def _pad_run(node, x):
    if x.dtype.kind == "f":
        p = node.attrs["pads"]
        return np.pad(x, [(0, 0)] + [p[i:i + 2] for i in range(0, len(p), 2)])
    return ops.pad(x, node.attrs["pads"])


def _transpose_run(node, x):
    axes = node.attrs["axes"]
    if x.dtype.kind == "f":
        ops.transpose(np.zeros((1,) * x.ndim, np.int64), axes)     # the same axis checks
        return x.transpose(axes)
    return ops.transpose(x, axes)


def _float_safe(op, x, *args):
    """A layout op of ref.ops applied to a float edge tensor: the op's checks and output
    shape on integers, the values moved by numpy's reshape (row-major, as the op)."""
    if x.dtype.kind != "f":
        return op(x, *args)
    shape = op(np.zeros((1, *x.shape[1:]), np.int64), *args).shape
    return x.reshape(len(x), *shape[1:])


def _shape_list(v):
    return int_list_attr("shape", 1, 1 << 30).parse(v)


MOVING_KINDS = (
    _moving("max_pool2d", "maximum over each window (stride defaults to the kernel)",
            _pool_attrs(), _max_pool_run, accepts_float=True),
    _moving("avg_pool2d", "exact window sum, then floor(S/area + 1/2)", _pool_attrs(),
            _avg_pool_run),
    _moving("global_avg_pool2d", "avg_pool2d over the whole H×W map (output C×1×1; on "
            "a float edge the float32 mean)", (), _global_avg_pool_run, accepts_float=True),
    _moving("pad", "zero padding, [before, after] per sample axis", (int_list_attr("pads", 0,
                                                                                 1 << 16),),
            _pad_run, accepts_float=True),
    _moving("upsample_nearest", "nearest-neighbour upsampling by an integer factor",
            (pair_attr("scale", 1, 64),),
            lambda n, x: ops.upsample_nearest(x, n.attrs["scale"])),
    _moving("pixel_shuffle", "(C·r², H, W) -> (C, H·r, W·r)", (int_attr("factor", 1, 64),),
            lambda n, x: ops.pixel_shuffle(x, n.attrs["factor"])),
    _moving("pixel_unshuffle", "(C, H·r, W·r) -> (C·r², H, W)", (int_attr("factor", 1, 64),),
            lambda n, x: ops.pixel_unshuffle(x, n.attrs["factor"])),
    _moving("reshape", "per-sample reshape in row-major order", (Attr("shape", _shape_list),),
            lambda n, x: _float_safe(ops.reshape, x, n.attrs["shape"]), accepts_float=True),
    _moving("transpose", "permute the axes (axes[0] = 0: the batch axis stays first)",
            (int_list_attr("axes", 0, 8),), _transpose_run, accepts_float=True),
    _moving("flatten", "(N, ...) -> (N, prod(...)) in row-major order", (),
            lambda n, x: _float_safe(ops.flatten, x), accepts_float=True),
)


# -- nonlinearities -------------------------------------------------------------------------------

def _softmax_run(node, q):
    a = node.attrs
    return ops.softmax(q, ops.ExpConstants(a["q_ln2"], a["q_b"], a["q_c"]),
                       out_bits=a["out_bits"])


def _softmax_infer(node, q):
    _require_int(q)
    a = node.attrs
    ops.ExpConstants(a["q_ln2"], a["q_b"], a["q_c"])
    if q.shape[-1] * a["q_c"] >= INT64_LIMIT:
        raise ValueError("a row's Σ i_exp can reach 2^62")
    return TensorType.integer(q.shape, a["out_bits"], False, 1.0 / ((1 << a["out_bits"]) - 1))


def _layer_norm_run(node, q):
    a = node.attrs
    return ops.layer_norm(q, node.weights["m"], node.weights["b"], a["shift"],
                          out_bits=a["out_bits"], out_signed=a["out_signed"])


def _layer_norm_infer(node, q):
    _require_int(q)
    n = q.shape[-1]
    for role in ("m", "b"):
        if node.weights[role].shape != (n,):
            raise ValueError(f"{role} must have one value per channel ({n}), got shape "
                             f"{list(node.weights[role].shape)}")
    if n * 4 * q.max_abs ** 2 >= INT64_LIMIT:
        raise ValueError("the layer norm's Σ(q − μ)² can reach 2^62; narrow the input")
    return _out_type(node, q.shape)


def _lookup_run(node, x):
    a = node.attrs
    return ops.lookup(x, node.weights["table"], in_bits=a["in_bits"], in_signed=a["in_signed"])


def _lookup_infer(node, x):
    _require_int(x)
    a = node.attrs
    lo, hi = TensorType.integer((1,), a["in_bits"], a["in_signed"]).code_range
    if x.code_range[0] < lo or x.code_range[1] > hi:
        raise ValueError(f"the input {x.describe()} reaches beyond the table's "
                         f"{a['in_bits']}-bit {'signed' if a['in_signed'] else 'unsigned'} "
                         f"range [{lo}, {hi}]")
    table = node.weights["table"]
    if table.shape != (1 << a["in_bits"],):
        raise ValueError(f"table must have 2^in_bits = {1 << a['in_bits']} entries, got "
                         f"shape {list(table.shape)}")
    if table.size and (int(table.min()) < _lo(node) or int(table.max()) > _hi(node)):
        raise ValueError(f"table values must lie in the output range [{_lo(node)}, "
                         f"{_hi(node)}]")
    return _out_type(node, x.shape)


def _twist_run(node, p):
    a = node.attrs
    return ops.twist(p, a["t_num"], a["s_num"], out_bits=a["out_bits"])


def _twist_infer(node, p):
    _require_int(p)
    bits = node.attrs["out_bits"]
    if p.signed or p.bits > bits:
        raise ValueError(f"the input must be unsigned codes of at most out_bits = {bits} "
                         f"bits (probabilities), got {p.describe()}")
    return TensorType.integer(p.shape, bits, False, p.scale)


NONLINEAR_KINDS = (
    NodeKind("softmax", "I-BERT integer softmax over the last axis to unsigned probability "
             "codes", (1, 1),
             (int_attr("q_ln2", 1, 1 << 30), int_attr("q_b", 0, 1 << 31),
              int_attr("q_c", 1, 1 << 61), int_attr("out_bits", 1, 16)),
             (), _softmax_infer, _softmax_run),
    NodeKind("twist", "SATA's TWIST on probability codes: trivial codes below t·row max "
             "become s·p²/Σtrivial", (1, 1),
             (int_attr("t_num", 0, 1 << ops.TWIST_SHIFT), int_attr("s_num", 0, 1 << 24),
              int_attr("out_bits", 1, 16)), (), _twist_infer, _twist_run),
    NodeKind("layer_norm", "I-BERT integer layer norm over the last axis, fixed-point affine",
             (1, 1), (int_attr("shift", 0, 61),) + _out_attrs(),
             (Weight("m", _I64), Weight("b", _I64)), _layer_norm_infer, _layer_norm_run),
    NodeKind("lookup", "table of any function of one narrow code (GELU, sigmoid)", (1, 1),
             (int_attr("in_bits", 1, 16), bool_attr("in_signed")) + _out_attrs(),
             (Weight("table", _I64),), _lookup_infer, _lookup_run),
)


INT_KINDS = (
    NodeKind("requant", "per-channel clamp((y·m + b) >> s): BatchNorm, ReLU and the next "
             "quantizer as fixed point (channels: per-sample axis ``axis``)", (1, 1),
             (int_attr("axis", 0, 7, 0),) + _out_attrs(),
             (Weight("multiplier", _I64), Weight("bias", _I64), Weight("shift", _I64)),
             _requant_infer, _requant_run),
    NodeKind("rescale", "clamp(round_shift(x·m, s)): one tensor to another scale", (1, 1),
             (int_attr("multiplier", 0, 1 << 40), int_attr("shift", 0, 62)) + _out_attrs(),
             (), _rescale_infer, _rescale_run),
    NodeKind("add", "two codes at different scales on a common fixed-point scale, rounded "
             "half up, clamped (residual connections)", (2, 2),
             (int_attr("m_a", 0, 1 << 40), int_attr("m_b", 0, 1 << 40),
              int_attr("shift", 0, 61)) + _out_attrs(), (), _add_infer, _add_run),
    NodeKind("concat", "join along an axis, inputs at another scale rescaled first", (1, 64),
             (int_attr("axis", 1, 8, 1), Attr("rescales", _rescales, None),
              int_attr("out_bits", 1, 32, None), bool_attr("out_signed", None),
              float_attr("scale", default=None)), (), _concat_infer, _concat_run),
) + MOVING_KINDS + NONLINEAR_KINDS
