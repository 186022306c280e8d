"""Integer-only inference of an exported network (pure numpy, no torch).

The engine runs a ``.wkx`` export (:mod:`.wkx`) on uint8 images:

1. standardise the pixels as training did, ``x = (pixel / pixel_max - mean) / std`` (float32,
   the two numbers come from the export header);
2. full-precision layers (the stem convolution with its BatchNorm and ReLU) in float32;
3. the first quantized layer's input quantizer, ``clamp(round(x / step), 0, 2^bits - 1)``
   (float32, round half to even, as PyTorch);
4. every quantized layer in integers only: im2col of the activation codes, the exact dot
   products ``z`` (see *GEMM* below), the accumulator ``wrap(z, acc_bits)`` and WrapNet's
   cyclic activation (``ref.cyclic``), then the fixed-point requantization of
   :mod:`.requant` (BatchNorm, ReLU and the next layer's quantizer folded into
   ``clamp((y·m + b) >> s, 0, qmax)``), then 2×2 max pooling on the codes (pooling commutes
   with the monotone requantization, so pooling codes equals quantizing pooled floats);
5. after the last quantized layer, ``y`` is dequantized per channel (BatchNorm folded,
   ReLU) and the float classifier produces the logits.

The accumulator semantics are those of the RTL MAC: a register that wraps on every addition
ends with ``wrap(sum, acc_bits)`` whatever the order (docs/datapath.md §1), so the engine
computes each dot product exactly, once, and wraps it.

GEMM
----
``gemm="int64"`` multiplies int64 matrices with numpy (exact, slow: numpy has no integer
BLAS). ``gemm="blas"`` (the default) hands the same integer matrices to the float BLAS in
float32 when ``fan_in · max|w| · max_code < 2^24`` and in float64 when it is below 2^53:
every product and every partial sum is then an integer that the float type represents
exactly, so each addition is exact in any order and the result equals the int64 one bit for
bit (``tests/test_export_engine.py`` checks both against each other and against PyTorch).
Above 2^53 it falls back to int64.

Layouts: activations are NHWC inside the engine (the im2col rows then come out contiguous);
patches are ordered ``(c_in, ky, kx)``, PyTorch's weight layout, which is also the order the
MAC streams a dot product's operands (:func:`layer_stream`).
"""

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .datapath import MacConfig, cyclic, decode_weights, weight_code_bits, wrap
from wrapkit.common.errors import UserError
from .requant import check_bounds, requantize, requantize_real

__all__ = [
    "GEMMS",
    "REQUANTS",
    "Engine",
    "LayerStats",
    "layer_stream",
    "stream_toggles",
    "validate",
]

GEMMS = ("blas", "int64")
REQUANTS = ("fixed", "float")

_FLOAT32_EXACT = 1 << 24
_FLOAT64_EXACT = 1 << 53
# Widest accumulator evaluated through a table (2^16 entries per output channel at most).
_LUT_MAX_BITS = 16
_KINDS = ("conv2d", "linear")
_WEIGHT_KINDS = ("binary", "ternary", "uniform")


# -- validation ---------------------------------------------------------------------------

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


def _conv_out(size, kernel, stride, padding):
    return (size + 2 * padding - kernel) // stride + 1


def _check_layer(ck, spec, in_shape, prev):
    kind = ck.field(spec, "kind", str)
    if kind not in _KINDS:
        ck.fail(f"unsupported layer kind {kind!r} (this engine runs {', '.join(_KINDS)})")
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
        oh, ow = (_conv_out(d, k, s, p) for d in in_shape[1:])
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
    if wkind not in _WEIGHT_KINDS:
        ck.fail(f"weights.kind must be one of {', '.join(_WEIGHT_KINDS)}, got {wkind!r}")
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


# -- layers -------------------------------------------------------------------------------

def _im2col(x, kernel, stride, padding, dtype, order="chw"):
    """NHWC ``x`` -> rows ``(N·OH·OW, k·k·C)`` as ``dtype``, and ``(N, OH, OW)``.

    ``order="chw"``: each row in PyTorch's weight order ``(c, ky, kx)`` (the MAC's stream
    order); ``order="hwc"``: ``(ky, kx, c)``, which copies whole channel vectors at a time
    and is several times faster (the engine's GEMM uses it with permuted weights).
    """
    n, h, w, c = x.shape
    oh, ow = _conv_out(h, kernel, stride, padding), _conv_out(w, kernel, stride, padding)
    if order == "chw":
        xp = x.astype(dtype, copy=False)
        if padding:
            xp = np.pad(xp, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
        win = sliding_window_view(xp, (kernel, kernel), axis=(1, 2))[:, ::stride, ::stride]
        return win[:, :oh, :ow].reshape(n * oh * ow, -1), (n, oh, ow)
    xp = np.zeros((n, h + 2 * padding, w + 2 * padding, c), dtype=dtype)
    xp[:, padding:padding + h, padding:padding + w] = x
    out = np.empty((n, oh, ow, kernel, kernel, c), dtype=dtype)
    for ky in range(kernel):
        for kx in range(kernel):
            out[:, :, :, ky, kx] = xp[:, ky:ky + stride * (oh - 1) + 1:stride,
                                      kx:kx + stride * (ow - 1) + 1:stride]
    return out.reshape(n * oh * ow, -1), (n, oh, ow)


def _hwc_matrix(w, dtype):
    """Weights (out, c, kh, kw) or (out, f) -> GEMM matrix for ``order="hwc"`` rows."""
    if w.ndim == 4:
        w = w.transpose(0, 2, 3, 1)
    return np.ascontiguousarray(w.reshape(len(w), -1).T, dtype=dtype)


def _pool(x):
    n, h, w, c = x.shape
    h2, w2 = h // 2, w // 2
    return x[:, :2 * h2, :2 * w2].reshape(n, h2, 2, w2, 2, c).max(axis=(2, 4))


def _flatten_chw(x):
    """NHWC -> (N, C·H·W) in PyTorch's (C, H, W) order; 2-D input unchanged."""
    return x.transpose(0, 3, 1, 2).reshape(len(x), -1) if x.ndim == 4 else x


class _Layer:
    def __init__(self, index, spec, tensors):
        self.index = index
        self.spec = spec
        self.name = spec["name"]
        self.kind = spec["kind"]
        self.precision = spec["precision"]
        self.pool = spec.get("pool") is not None
        self.out_shape = tuple(spec["out_shape"])
        if self.kind == "conv2d":
            self.kernel, self.stride, self.padding = spec["kernel"], spec["stride"], spec["padding"]
            self.out_channels = spec["out_channels"]
        else:
            self.out_channels = spec["out_features"]

    def describe(self):
        if self.kind == "conv2d":
            c, h, w = self.spec["in_shape"]
            geo = (f"conv {self.kernel}x{self.kernel}/{self.stride} {c}->{self.out_channels}"
                   f" @{h}x{w}")
        else:
            geo = f"linear {self.spec['in_features']}->{self.out_channels}"
        return geo + (" +pool" if self.pool else "")


class _FloatLayer(_Layer):
    def __init__(self, index, spec, tensors):
        super().__init__(index, spec, tensors)
        self.wmat = _hwc_matrix(tensors[f"{self.name}.weight"], np.float32)
        self.bias = tensors.get(f"{self.name}.bias") if spec.get("bias") else None
        post = spec["post"]
        self.scale = tensors[f"{self.name}.post_scale"] if post.get("affine") else None
        self.shift = tensors[f"{self.name}.post_shift"] if post.get("affine") else None
        self.relu = post["relu"]

    def forward(self, x, stats):
        if x.dtype == np.uint8:
            raise RuntimeError("float layer after integer codes")  # validate() rules it out
        if self.kind == "conv2d":
            rows, (n, oh, ow) = _im2col(x, self.kernel, self.stride, self.padding, np.float32,
                                        "hwc")
            out = (rows @ self.wmat).reshape(n, oh, ow, -1)
        else:
            out = _flatten_chw(x) @ self.wmat
        if self.bias is not None:
            out += self.bias
        if self.scale is not None:
            out *= self.scale
            out += self.shift
        if self.relu:
            np.maximum(out, 0, out=out)
        return _pool(out) if self.pool else out


class _IntLayer(_Layer):
    def __init__(self, index, spec, tensors, gemm, requant, lut):
        super().__init__(index, spec, tensors)
        iq, wq, acc = spec["input_quant"], spec["weights"], spec["accumulator"]
        self.step = float(iq["step"])
        self.in_bits = iq["bits"]
        self.cfg = MacConfig(iq["bits"], False, wq["kind"], wq.get("bits"), acc["bits"],
                             acc.get("k"))
        codes = tensors[f"{self.name}.weight_codes"]
        self.codes = codes.reshape(len(codes), -1).astype(np.int64)   # (out, fan_in)
        self.weights = decode_weights(self.codes, self.cfg.weight_kind, self.cfg.weight_bits)
        self.fan_in = self.codes.shape[1]
        w_max = int(np.abs(self.weights).max()) if self.weights.size else 0
        bound = self.fan_in * w_max * ((1 << self.in_bits) - 1)
        if gemm == "int64" or bound >= _FLOAT64_EXACT:
            self.gemm_dtype = np.int64
        else:
            self.gemm_dtype = np.float32 if bound < _FLOAT32_EXACT else np.float64
        shaped = self.weights.reshape(tensors[f"{self.name}.weight_codes"].shape)
        self.wmat = _hwc_matrix(shaped, self.gemm_dtype)
        # Every |z| is at most the bound, so int32 holds z when the bound allows.
        self.z_dtype = np.int32 if bound < (1 << 31) else np.int64
        out = spec["output"]
        self.out_kind = out["kind"]
        self.requant = requant
        if self.out_kind == "requant":
            self.qmax = (1 << out["bits"]) - 1
            self.m = tensors[f"{self.name}.requant_multiplier"]
            self.b = tensors[f"{self.name}.requant_bias"]
            self.s = tensors[f"{self.name}.requant_shift"]
            self.m_real = tensors[f"{self.name}.requant_scale_real"]
            self.c_real = tensors[f"{self.name}.requant_offset_real"]
        else:
            self.dq_scale = tensors[f"{self.name}.dequant_scale"]
            self.dq_shift = tensors[f"{self.name}.dequant_shift"]
            self.relu = out["relu"]
        if self.kind == "conv2d":
            _, h, w = spec["in_shape"]
            oh, ow = (_conv_out(d, self.kernel, self.stride, self.padding) for d in (h, w))
            self.positions = oh * ow
        else:
            self.positions = 1
        self.macs_per_image = self.positions * self.out_channels * self.fan_in
        self.table = self._table() if lut and self.cfg.acc_bits <= _LUT_MAX_BITS else None

    def _table(self):
        """The layer's output for every accumulator value, channel by channel.

        ``table[c, i]`` is ``output(mac_output(i - 2^(b-1)))`` for channel ``c``: the wrapped
        accumulator ``i - 2^(b-1)`` through ``ref.cyclic`` (or nothing) and the fixed-point
        requantization, evaluated once with the same functions :meth:`output` uses. A
        ``b``-bit accumulator has only ``2^b`` values, so after ``z`` is wrapped (an index
        ``(z + 2^(b-1)) mod 2^b``) one gather replaces wrap, cyclic and requantization.
        """
        half = 1 << (self.cfg.acc_bits - 1)
        values = np.arange(-half, half, dtype=np.int64)
        y = self.mac_output(values)
        if self.out_kind == "requant":
            out = self.output(np.broadcast_to(y[:, None], (len(y), self.out_channels)))
            return np.ascontiguousarray(out.T)                      # (C, 2^b) uint8
        return np.ascontiguousarray(y.astype(np.float32))           # (2^b,) y as float

    def finish(self, z):
        """Layer output from exact ``z`` through the table (same values as
        ``output(mac_output(z))``; ``tests/test_export_engine.py`` checks all of them)."""
        b = self.cfg.acc_bits
        idx = z.astype(np.int32 if b <= 30 else np.int64)
        idx += 1 << (b - 1)
        idx &= (1 << b) - 1
        if self.out_kind == "requant":
            idx += (np.arange(self.out_channels, dtype=idx.dtype) << b)
            return np.take(self.table, idx)
        out = np.take(self.table, idx)
        out *= self.dq_scale
        out += self.dq_shift
        return np.maximum(out, 0, out=out) if self.relu else out

    def quantize_input(self, x):
        """Float input -> codes, as ``ActFakeQuant``: clamp(round_half_even(x/step), 0, qmax)."""
        u = x / np.float32(self.step)
        np.rint(u, out=u)
        np.clip(u, 0, (1 << self.in_bits) - 1, out=u)
        return u.astype(np.uint8)

    def rows(self, codes):
        """Operand rows ``(R, fan_in)`` of the MAC, one per output position, in the stream's
        ``(c_in, ky, kx)`` order (uint8)."""
        if self.kind == "conv2d":
            return _im2col(codes, self.kernel, self.stride, self.padding, np.uint8)[0]
        return _flatten_chw(codes).astype(np.uint8, copy=False)

    def preact(self, codes):
        """Exact integer pre-activations ``z`` (int32 or int64), NHWC or (N, out)."""
        if self.kind == "conv2d":
            # im2col in uint8 (a quarter of the memory traffic), then one conversion.
            rows, lead = _im2col(codes, self.kernel, self.stride, self.padding, np.uint8,
                                 "hwc")
        else:
            rows = _flatten_chw(codes)
            lead = (len(rows),)
        z = rows.astype(self.gemm_dtype) @ self.wmat
        return z.astype(self.z_dtype, copy=False).reshape(*lead, self.out_channels)

    def mac_output(self, z):
        cfg = self.cfg
        return wrap(z, cfg.acc_bits) if cfg.k is None else cyclic(z, cfg.acc_bits, cfg.k)

    def output(self, y):
        if self.out_kind == "requant":
            if self.requant == "float":
                return requantize_real(y, self.m_real, self.c_real, self.qmax).astype(np.uint8)
            return requantize(y, self.m, self.b, self.s, self.qmax).astype(np.uint8)
        out = y.astype(np.float32) * self.dq_scale + self.dq_shift
        return np.maximum(out, 0, out=out) if self.relu else out

    def forward(self, x, stats):
        codes = x if x.dtype == np.uint8 else self.quantize_input(x)
        z = self.preact(codes)
        if stats is not None:
            stats.update(self, codes, z)
        out = self.finish(z) if self.table is not None else self.output(self.mac_output(z))
        return _pool(out) if self.pool else out


# -- statistics -----------------------------------------------------------------------------

def _bit_planes(x, nbits):
    return ((np.asarray(x, dtype=np.int64)[..., None] >> np.arange(nbits)) & 1).astype(np.int8)


def stream_toggles(a_rows, w_rows, a_bits, w_bits):
    """Bit toggles of the MAC's two operand inputs over a layer's operation stream.

    The stream (:func:`layer_stream`) computes one output at a time, output positions
    outermost, output channels next, the fan-in innermost::

        for r in rows: for c in channels: for j in fan_in:  (a_rows[r, j], w_rows[c, j])

    Parameters
    ----------
    a_rows : (R, K) activation codes (one im2col row per output position).
    w_rows : (C, K) weight codes.
    a_bits, w_bits : operand widths.

    Returns
    -------
    (a_toggles, w_toggles, transitions)
        Toggle counts per bit (LSB first) of each operand and the number of consecutive
        operation pairs (``R·C·K - 1``). Computed in closed form without building the stream;
        ``tests/test_export_engine.py`` checks it against the materialized stream.
    """
    a_rows, w_rows = np.asarray(a_rows), np.asarray(w_rows)
    r, k = a_rows.shape
    c = w_rows.shape[0]
    a = _bit_planes(a_rows, a_bits)                       # (R, K, bits)
    a_t = (a[:, 1:] != a[:, :-1]).sum(axis=(0, 1)) * c    # inside each dot product
    a_t += (a[:, -1] != a[:, 0]).sum(axis=0) * (c - 1)    # next channel, same row
    a_t += (a[:-1, -1] != a[1:, 0]).sum(axis=0)           # next row
    w = _bit_planes(w_rows, w_bits)                       # (C, K, bits)
    w_t = (w[:, 1:] != w[:, :-1]).sum(axis=(0, 1)) * r
    w_t += (w[:-1, -1] != w[1:, 0]).sum(axis=0) * r       # next channel
    w_t += (w[-1, -1] != w[0, 0]).astype(np.int64) * (r - 1)   # back to channel 0, next row
    return a_t.astype(np.int64), w_t.astype(np.int64), r * c * k - 1


@dataclass
class LayerStats:
    """Per integer layer, accumulated over the images run (see :meth:`to_dict`)."""

    index: int
    name: str
    describe: str
    mac: dict
    macs_per_image: int
    images: int = 0
    outputs: int = 0
    overflows: int = 0
    folded: int = 0
    max_abs_z: int = 0
    toggle_images: int = 0
    a_toggles: np.ndarray | None = None
    w_toggles: np.ndarray | None = None
    transitions: int = 0
    a_zero: float = 0.0
    w_zero: float = 0.0
    extra: dict = field(default_factory=dict)

    def to_dict(self):
        tog = None
        if self.transitions > 0:
            a = (self.a_toggles / self.transitions).tolist()
            w = (self.w_toggles / self.transitions).tolist()
            tog = {"images": self.toggle_images, "transitions": self.transitions,
                   "a_per_bit": a, "w_per_bit": w,
                   "a_mean": float(np.mean(a)), "w_mean": float(np.mean(w)),
                   "a_zero_fraction": self.a_zero, "w_zero_fraction": self.w_zero}
        return {"index": self.index, "name": self.name, "layer": self.describe,
                "mac": self.mac, "macs_per_image": self.macs_per_image,
                "images": self.images, "macs": self.macs_per_image * self.images,
                "outputs": self.outputs,
                "overflow_rate": self.overflows / self.outputs if self.outputs else 0.0,
                "overflows": self.overflows, "max_abs_preactivation": self.max_abs_z,
                "cyclic_fold_rate": (self.folded / self.outputs
                                     if self.outputs and self.mac["k"] is not None else None),
                "toggles": tog, **self.extra}


class _Stats:
    def __init__(self, layers, toggle_images):
        self.toggle_images = toggle_images
        self.layers = {l.index: LayerStats(l.index, l.name, l.describe(), l.cfg.to_dict(),
                                           l.macs_per_image)
                       for l in layers if isinstance(l, _IntLayer)}

    def update(self, layer, codes, z):
        st = self.layers[layer.index]
        cfg = layer.cfg
        half = 1 << (cfg.acc_bits - 1)
        st.images += len(codes)
        st.outputs += z.size
        st.overflows += int(np.count_nonzero((z < -half) | (z >= half)))
        if z.size:
            st.max_abs_z = max(st.max_abs_z, int(np.abs(z).max()))
        if cfg.k is not None:
            t = (cfg.k << (cfg.acc_bits - 1)) // (cfg.k + 1)
            m = wrap(z, cfg.acc_bits)
            st.folded += int(np.count_nonzero(np.abs(m) > t))
        if st.transitions == 0 and self.toggle_images > 0:
            n = min(self.toggle_images, len(codes))
            rows = layer.rows(codes[:n])
            a_t, w_t, tr = stream_toggles(rows, layer.codes, cfg.act_bits, cfg.weight_code_bits)
            st.a_toggles, st.w_toggles, st.transitions = a_t, w_t, tr
            st.toggle_images = n
            st.a_zero = float(np.mean(rows == 0))
            st.w_zero = float(np.mean(layer.weights == 0))


# -- the engine -----------------------------------------------------------------------------

class Engine:
    """Runs an export on uint8 images.

    Parameters
    ----------
    export : ExportFile
        From :func:`wrapkit.ref.wkx.read_export` (validated).
    gemm : "blas" | "int64"
        How the exact integer dot products are computed (module docstring).
    requant : "fixed" | "float"
        ``fixed``: the export's integer requantization (the integer-only engine);
        ``float``: ``round_half_even(M·y + C)`` in float64 from the export's real constants,
        to measure what fixed-point rounding changes.
    lut : bool
        Evaluate wrap, cyclic activation and requantization of accumulators up to
        16 bits through a per-layer table of all ``2^acc_bits`` results (built with the same
        functions; exact, and about three times faster). False: evaluate them directly.
    """

    def __init__(self, export, *, gemm="blas", requant="fixed", lut=True):
        if gemm not in GEMMS:
            raise ValueError(f"gemm must be one of {', '.join(GEMMS)}, got {gemm!r}")
        if requant not in REQUANTS:
            raise ValueError(f"requant must be one of {', '.join(REQUANTS)}, got {requant!r}")
        self.export = export
        h = export.header
        self.input = h["input"]
        self.num_classes = h["num_classes"]
        self.layers = []
        for i, spec in enumerate(h["layers"]):
            if spec["precision"] == "integer":
                self.layers.append(_IntLayer(i, spec, export.tensors, gemm, requant, lut))
            else:
                self.layers.append(_FloatLayer(i, spec, export.tensors))

    @property
    def integer_layers(self):
        return [l for l in self.layers if isinstance(l, _IntLayer)]

    def layer(self, index):
        """The layer at ``index`` of the export's layer list (UserError if there is none)."""
        if isinstance(index, bool) or not isinstance(index, int) \
                or not 0 <= index < len(self.layers):
            raise UserError(f"{self.export.path} has no layer {index!r}; its layers are "
                            f"0..{len(self.layers) - 1} (`wrapkit infer` lists them)")
        return self.layers[index]

    def standardise(self, pixels):
        """uint8 (N, C, H, W) pixels -> float32 NHWC network input (training's formula)."""
        pixels = np.asarray(pixels)
        want = tuple(self.input["shape"])
        if pixels.ndim != 4 or pixels.shape[1:] != want:
            got = "×".join(map(str, pixels.shape[1:])) if pixels.ndim == 4 else str(pixels.shape)
            raise UserError(f"images are {got}, but {self.export.path} expects "
                            f"{'×'.join(map(str, want))} (C×H×W); use the dataset it was "
                            "trained on")
        if pixels.dtype != np.uint8:
            raise UserError(f"images must be uint8 pixels, got dtype {pixels.dtype}")
        if pixels.size and int(pixels.max()) > self.input["pixel_max"]:
            raise UserError(f"pixel value {int(pixels.max())} exceeds the export's pixel_max "
                            f"{self.input['pixel_max']}; use the dataset it was trained on")
        x = pixels.astype(np.float32) / np.float32(self.input["pixel_max"])
        x = (x - np.float32(self.input["mean"])) / np.float32(self.input["std"])
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1))

    def _forward(self, x, upto, stats):
        for layer in self.layers[:upto]:
            x = layer.forward(x, stats)
        return x

    def run(self, pixels, *, batch_size=100, stats=None, progress=None):
        """Logits (N, classes) float32 for uint8 ``pixels`` (N, C, H, W).

        ``stats``: a :class:`LayerStats` collector from :meth:`new_stats`, updated in place.
        ``progress``: optional callable(done, total).
        """
        x_all = self.standardise(pixels)
        out = []
        for i in range(0, len(x_all), batch_size):
            out.append(self._forward(x_all[i:i + batch_size], len(self.layers), stats))
            if progress:
                progress(min(i + batch_size, len(x_all)), len(x_all))
        return np.concatenate(out) if out else np.zeros((0, self.num_classes), np.float32)

    def new_stats(self, toggle_images=8):
        """A statistics collector for :meth:`run` (toggles from the first images)."""
        return _Stats(self.layers, toggle_images)

    def layer_input(self, pixels, index, batch_size=100):
        """Input codes of integer layer ``index`` for ``pixels`` (NHWC or (N, F) uint8)."""
        layer = self.layer(index)
        if not isinstance(layer, _IntLayer):
            raise UserError(f"layer {index} ({layer.name}) is a float layer; give an integer "
                            f"layer: {', '.join(str(l.index) for l in self.integer_layers)}")
        x_all = self.standardise(pixels)
        parts = []
        for i in range(0, len(x_all), batch_size):
            x = self._forward(x_all[i:i + batch_size], index, None)
            parts.append(x if x.dtype == np.uint8 else layer.quantize_input(x))
        return np.concatenate(parts)

    def layer_forward(self, index, codes_nchw):
        """Run integer layer ``index`` alone on input codes in PyTorch's layout.

        Returns ``{"z", "y", "out"}``: exact pre-activations and MAC outputs in PyTorch's
        layout (N, C, H, W) or (N, F), and the layer's output (codes or floats, pooled).
        The test hook that compares the engine with PyTorch layer by layer.
        """
        layer = self.layer(index)
        codes = np.asarray(codes_nchw)
        if codes.ndim == 4:
            codes = codes.transpose(0, 2, 3, 1)
        codes = codes.astype(np.uint8)
        z = layer.preact(codes).astype(np.int64)
        y = layer.mac_output(z)
        out = layer.output(y)
        out = _pool(out) if layer.pool else out

        def nchw(t):
            return t.transpose(0, 3, 1, 2) if t.ndim == 4 else t
        return {"z": nchw(z), "y": nchw(y), "out": nchw(out)}


def layer_stream(layer, codes, max_dots=None):
    """The MAC operation stream of integer ``layer`` on input ``codes`` (engine layout).

    One dot product per output neuron, in the order of :func:`stream_toggles`: output
    positions (image, y, x) outermost, output channels next, the fan-in ``(c_in, ky, kx)``
    innermost; ``clr`` starts each dot product, ``en`` is always 1.

    Parameters
    ----------
    max_dots : int, optional
        Keep only the first ``max_dots`` dot products (whole dot products only).

    Returns
    -------
    dict
        ``a`` (uint8), ``w`` (uint8 codes), ``en``, ``clr`` (bool) of length ``dots·fan_in``,
        ``dots``, ``fan_in``, and ``final_acc``/``final_out``: the engine's ``wrap(z)`` and
        MAC output ``y`` for each dot product (what the MAC must hold after its last op).
    """
    rows = layer.rows(codes)
    n_rows, k = rows.shape
    c = layer.out_channels
    dots = n_rows * c
    if max_dots is not None:
        dots = min(dots, int(max_dots))
    n_full, rest = divmod(dots, c)
    used = n_full + (1 if rest else 0)
    r = rows[:used]
    a = np.repeat(r, c, axis=0)[:dots].reshape(-1)
    w = np.tile(layer.codes.astype(np.uint8), (used, 1))[:dots].reshape(-1)
    clr = np.zeros((dots, k), dtype=bool)
    clr[:, 0] = True
    z = (r.astype(np.int64) @ layer.weights.T).reshape(-1)[:dots]
    cfg = layer.cfg
    return {"a": a, "w": w, "en": np.ones(dots * k, dtype=bool), "clr": clr.reshape(-1),
            "dots": dots, "fan_in": k, "final_acc": wrap(z, cfg.acc_bits),
            "final_out": layer.mac_output(z)}
