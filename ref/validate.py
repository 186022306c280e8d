"""Validation of an export's layers: header and tensors checked against each other.

:func:`validate` walks the layer list of a ``.wkx`` export (:mod:`.wkx` checks the container,
this module the network): layer kinds, shapes chained from layer to layer (convolution
geometry and pooling), quantizer widths that agree between a layer's requantization and the
next layer's input, weight codes within their width, the MAC configuration recorded for each
integer layer, and requantization constants that fit int64. The engine (:mod:`.engine`) runs
only exports that pass.
"""

import math

import numpy as np

from wrapkit.common.errors import UserError

from .datapath import WEIGHT_KINDS, MacConfig, weight_code_bits
from .engine_layers import LAYER_KINDS, conv_output_size
from .requant import check_bounds

__all__ = ["validate"]


class _Checker:
    """Collects the context (file, layer) for one-line error messages."""

    def __init__(self, exp):
        self.exp = exp
        self.where = ""

    def fail(self, problem):
        raise UserError(f"{self.exp.path}: {self.where}{problem}")

    def field(self, d, key, types, what=None):
        if not isinstance(d, dict) or key not in d:
            self.fail(f"header field {key!r} is missing")
        v = d[key]
        if isinstance(v, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
            self.fail(f"header field {key!r} must be {what or types}, got {v!r}")
        if not isinstance(v, types):
            self.fail(f"header field {key!r} must be {what or types}, got {v!r}")
        return v

    def int_in(self, d, key, lo, hi, allow_none=False):
        v = d.get(key) if isinstance(d, dict) else None
        if v is None and allow_none and isinstance(d, dict) and key in d:
            return None
        v = self.field(d, key, int, f"an integer in [{lo}, {hi}]")
        if not lo <= v <= hi:
            self.fail(f"{key} must be in [{lo}, {hi}], got {v}")
        return v

    def shape(self, d, key, n):
        v = self.field(d, key, list, f"a list of {n} positive integers")
        if len(v) != n or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0
                                  for s in v):
            self.fail(f"{key} must be a list of {n} positive integers, got {v!r}")
        return tuple(v)

    def tensor(self, name, dtype, shape):
        t = self.exp.tensors.get(name)
        if t is None:
            self.fail(f"tensor {name!r} is missing")
        if t.dtype != np.dtype(dtype):
            self.fail(f"tensor {name!r} has dtype {t.dtype}, expected {np.dtype(dtype)}")
        if tuple(t.shape) != tuple(shape):
            self.fail(f"tensor {name!r} has shape {list(t.shape)}, expected {list(shape)}")
        if t.dtype.kind == "f" and not np.all(np.isfinite(t)):
            self.fail(f"tensor {name!r} holds non-finite values")
        return t




def _check_layer(ck, spec, in_shape, prev):
    kind = ck.field(spec, "kind", str)
    if kind not in LAYER_KINDS:
        ck.fail(f"unsupported layer kind {kind!r} (this engine runs {', '.join(LAYER_KINDS)})")
    precision = ck.field(spec, "precision", str)
    if precision not in ("float", "integer"):
        ck.fail(f"precision must be 'float' or 'integer', got {precision!r}")
    name = ck.field(spec, "name", str)
    if ck.shape(spec, "in_shape", len(in_shape)) != tuple(in_shape):
        ck.fail(f"in_shape {spec['in_shape']} does not match the previous layer's output "
                f"{list(in_shape)}")
    if kind == "conv2d":
        if len(in_shape) != 3:
            ck.fail(f"a conv2d layer needs a C×H×W input, got shape {list(in_shape)}")
        k = ck.int_in(spec, "kernel", 1, 15)
        s = ck.int_in(spec, "stride", 1, 8)
        p = ck.int_in(spec, "padding", 0, 7)
        cout = ck.int_in(spec, "out_channels", 1, 1 << 16)
        oh, ow = (conv_output_size(d, k, s, p) for d in in_shape[1:])
        if oh < 1 or ow < 1:
            ck.fail(f"kernel {k} with padding {p} does not fit the {in_shape[1]}×{in_shape[2]} "
                    "input")
        pre = (cout, oh, ow)
        wshape = (cout, in_shape[0], k, k)
    else:
        fin = ck.int_in(spec, "in_features", 1, 1 << 24)
        if fin != math.prod(in_shape):
            ck.fail(f"in_features {fin} does not match the flattened input "
                    f"{'×'.join(map(str, in_shape))} = {math.prod(in_shape)}")
        cout = ck.int_in(spec, "out_features", 1, 1 << 16)
        pre = (cout,)
        wshape = (cout, fin)
    pool = spec.get("pool")
    out = pre
    if pool is not None:
        if pool != {"kind": "max", "size": 2, "stride": 2} or kind != "conv2d":
            ck.fail(f"unsupported pooling {pool!r} (only 2×2 max pooling, stride 2, after a "
                    "conv2d)")
        out = (pre[0], pre[1] // 2, pre[2] // 2)
        if min(out) < 1:
            ck.fail("2×2 pooling of a 1-pixel map")
    if ck.shape(spec, "out_shape", len(out)) != out:
        ck.fail(f"out_shape {spec['out_shape']} is inconsistent: kernel, stride, padding and "
                f"pooling give {list(out)}")
    if precision == "float":
        ck.tensor(f"{name}.weight", np.float32, wshape)
        if spec.get("bias"):
            ck.tensor(f"{name}.bias", np.float32, (cout,))
        post = ck.field(spec, "post", dict)
        if post.get("affine"):
            ck.tensor(f"{name}.post_scale", np.float32, (cout,))
            ck.tensor(f"{name}.post_shift", np.float32, (cout,))
        ck.field(post, "relu", bool)
        return out
    # integer layer
    iq = ck.field(spec, "input_quant", dict)
    bits = ck.int_in(iq, "bits", 1, 8)
    step = ck.field(iq, "step", (int, float), "a positive number")
    if not (math.isfinite(step) and step > 0):
        ck.fail(f"input_quant.step must be a positive finite number, got {step!r}")
    if prev is not None and prev[0] == "integer" and prev[1] != bits:
        ck.fail(f"input_quant.bits is {bits} but the previous layer requantizes to "
                f"{prev[1]} bits")
    wq = ck.field(spec, "weights", dict)
    wkind = ck.field(wq, "kind", str)
    if wkind not in WEIGHT_KINDS:
        ck.fail(f"weights.kind must be one of {', '.join(WEIGHT_KINDS)}, got {wkind!r}")
    wbits = ck.int_in(wq, "bits", 2, 8) if wkind == "uniform" else None
    if wkind != "uniform" and wq.get("bits") is not None:
        ck.fail(f"weights.bits must be null for {wkind} weights, got {wq['bits']!r}")
    if wq.get("code_bits") != weight_code_bits(wkind, wbits):
        ck.fail(f"weights.code_bits is {wq.get('code_bits')!r}, but {wkind} weights use "
                f"{weight_code_bits(wkind, wbits)}-bit codes")
    acc = ck.field(spec, "accumulator", dict)
    acc_bits = ck.int_in(acc, "bits", 2, 32)
    k = ck.int_in(acc, "k", 1, 64, allow_none=True)
    cfg = MacConfig(bits, False, wkind, wbits, acc_bits, k)
    if spec.get("mac") != cfg.to_dict():
        ck.fail(f"mac {spec.get('mac')!r} does not match the layer's quantizers "
                f"{cfg.to_dict()!r}")
    codes = ck.tensor(f"{name}.weight_codes", np.uint8, wshape)
    top = (1 << weight_code_bits(wkind, wbits)) - 1
    if codes.size and int(codes.max()) > top:
        ck.fail(f"tensor {name + '.weight_codes'!r} holds code {int(codes.max())}, above "
                f"{top} for {wkind} weights")
    ck.tensor(f"{name}.weight_scale", np.float32, (cout,))
    outspec = ck.field(spec, "output", dict)
    okind = ck.field(outspec, "kind", str)
    if okind == "requant":
        obits = ck.int_in(outspec, "bits", 1, 8)
        m = ck.tensor(f"{name}.requant_multiplier", np.int64, (cout,))
        b = ck.tensor(f"{name}.requant_bias", np.int64, (cout,))
        sh = ck.tensor(f"{name}.requant_shift", np.int64, (cout,))
        ck.tensor(f"{name}.requant_scale_real", np.float64, (cout,))
        ck.tensor(f"{name}.requant_offset_real", np.float64, (cout,))
        try:
            check_bounds(m, b, sh, acc_bits)
        except ValueError as exc:
            ck.fail(f"requantization constants out of range: {exc}")
        return out, ("integer", obits)
    if okind == "dequant":
        ck.tensor(f"{name}.dequant_scale", np.float32, (cout,))
        ck.tensor(f"{name}.dequant_shift", np.float32, (cout,))
        ck.field(outspec, "relu", bool)
        return out, ("float", None)
    ck.fail(f"output.kind must be 'requant' or 'dequant', got {okind!r}")


def validate(exp):
    """Check an export's header and tensors against each other (shapes, ranges, chaining).

    Raises
    ------
    UserError
        One line naming the file, the layer and the problem.
    """
    ck = _Checker(exp)
    h = exp.header
    inp = ck.field(h, "input", dict)
    shape = ck.shape(inp, "shape", 3)
    ck.int_in(inp, "pixel_max", 1, 255)
    for key in ("mean", "std"):
        v = ck.field(inp, key, (int, float), "a finite number")
        if not math.isfinite(v) or (key == "std" and v <= 0):
            ck.fail(f"input.{key} must be a finite{' positive' if key == 'std' else ''} "
                    f"number, got {v!r}")
    n_classes = ck.int_in(h, "num_classes", 1, 1 << 16)
    layers = ck.field(h, "layers", list)
    if not layers:
        ck.fail("the layer list is empty")
    cur, prev = shape, None
    names = set()
    for i, spec in enumerate(layers):
        ck.where = f"layer {i} ({spec.get('name', '?') if isinstance(spec, dict) else '?'}): "
        if not isinstance(spec, dict):
            ck.fail("is not an object")
        if spec.get("name") in names:
            ck.fail("duplicate layer name")
        names.add(spec.get("name"))
        if prev is not None and prev[0] == "integer" and spec.get("precision") != "integer":
            ck.fail("follows a requantizing layer but is not an integer layer")
        result = _check_layer(ck, spec, cur, prev)
        if spec["precision"] == "integer":
            cur, prev = result
        else:
            cur, prev = result, ("float", None)
    ck.where = ""
    if prev[0] == "integer":
        ck.fail("the last layer requantizes, but the network must end in float logits")
    if cur != (n_classes,):
        ck.fail(f"the last layer outputs shape {list(cur)}, expected [{n_classes}] "
                "(num_classes)")
    return exp
