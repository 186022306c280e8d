"""The layers of the integer engine: float layers, integer layers and their geometry.

An export's layer list becomes a list of :class:`FloatLayer` (full precision, float32) and
:class:`IntegerLayer` (integer-only: exact dot products, the MAC's wrap-around and cyclic
activation, fixed-point requantization) objects; :class:`~wrapkit.ref.engine.Engine` runs
them in order. How the exact integer dot products are computed (float BLAS where every sum is
exact, int64 above) is explained in :mod:`wrapkit.ref.engine`.

Layouts: activations are NHWC (the im2col rows then come out contiguous); patches are ordered
``(c_in, ky, kx)``, PyTorch's weight layout, which is also the order the MAC streams a dot
product's operands (:func:`wrapkit.ref.streams.layer_stream`).
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .datapath import MacConfig, cyclic, decode_weights, wrap
from .requant import requantize, requantize_real

__all__ = ["LAYER_KINDS", "FloatLayer", "IntegerLayer", "Layer", "conv_output_size",
           "hwc_matrix", "im2col", "max_pool2x2"]

#: Layer kinds an export may hold.
LAYER_KINDS = ("conv2d", "linear")

_FLOAT32_EXACT = 1 << 24
_FLOAT64_EXACT = 1 << 53
# Widest accumulator evaluated through a table (2^16 entries per output channel at most).
_LUT_MAX_BITS = 16


def conv_output_size(size, kernel, stride, padding):
    """Output size of a convolution along one axis (PyTorch's formula)."""
    return (size + 2 * padding - kernel) // stride + 1



def im2col(x, kernel, stride, padding, dtype, order="chw"):
    """NHWC ``x`` -> rows ``(N·OH·OW, k·k·C)`` as ``dtype``, and ``(N, OH, OW)``.

    ``order="chw"``: each row in PyTorch's weight order ``(c, ky, kx)`` (the MAC's stream
    order); ``order="hwc"``: ``(ky, kx, c)``, which copies whole channel vectors at a time
    and is several times faster (the engine's GEMM uses it with permuted weights).
    """
    n, h, w, c = x.shape
    oh = conv_output_size(h, kernel, stride, padding)
    ow = conv_output_size(w, kernel, stride, padding)
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


def hwc_matrix(w, dtype):
    """Weights (out, c, kh, kw) or (out, f) -> GEMM matrix for ``order="hwc"`` rows."""
    if w.ndim == 4:
        w = w.transpose(0, 2, 3, 1)
    return np.ascontiguousarray(w.reshape(len(w), -1).T, dtype=dtype)


def max_pool2x2(x):
    """2×2 max pooling, stride 2, of an NHWC map (an odd last row or column is dropped)."""
    n, h, w, c = x.shape
    h2, w2 = h // 2, w // 2
    return x[:, :2 * h2, :2 * w2].reshape(n, h2, 2, w2, 2, c).max(axis=(2, 4))


def _flatten_chw(x):
    """NHWC -> (N, C·H·W) in PyTorch's (C, H, W) order; 2-D input unchanged."""
    return x.transpose(0, 3, 1, 2).reshape(len(x), -1) if x.ndim == 4 else x


class Layer:
    """What every layer of an export has: its index, spec, kind, geometry and output shape."""

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


class FloatLayer(Layer):
    """A full-precision layer (the stem): float32 convolution or linear map, optional
    bias, folded BatchNorm and ReLU."""

    def __init__(self, index, spec, tensors):
        super().__init__(index, spec, tensors)
        self.wmat = hwc_matrix(tensors[f"{self.name}.weight"], np.float32)
        self.bias = tensors.get(f"{self.name}.bias") if spec.get("bias") else None
        post = spec["post"]
        self.scale = tensors[f"{self.name}.post_scale"] if post.get("affine") else None
        self.shift = tensors[f"{self.name}.post_shift"] if post.get("affine") else None
        self.relu = post["relu"]

    def forward(self, x, stats):
        if x.dtype == np.uint8:
            raise RuntimeError("float layer after integer codes")  # validate() rules it out
        if self.kind == "conv2d":
            rows, (n, oh, ow) = im2col(x, self.kernel, self.stride, self.padding, np.float32,
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
        return max_pool2x2(out) if self.pool else out


class IntegerLayer(Layer):
    """A quantized layer in integers only: exact dot products of activation and weight
    codes, the MAC's wrap-around (and cyclic activation), then requantization to the next
    layer's codes or dequantization to floats."""

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
        self.wmat = hwc_matrix(shaped, self.gemm_dtype)
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
            oh, ow = (conv_output_size(d, self.kernel, self.stride, self.padding)
                      for d in (h, w))
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
            return im2col(codes, self.kernel, self.stride, self.padding, np.uint8)[0]
        return _flatten_chw(codes).astype(np.uint8, copy=False)

    def preact(self, codes):
        """Exact integer pre-activations ``z`` (int32 or int64), NHWC or (N, out)."""
        if self.kind == "conv2d":
            # im2col in uint8 (a quarter of the memory traffic), then one conversion.
            rows, lead = im2col(codes, self.kernel, self.stride, self.padding, np.uint8,
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
        return max_pool2x2(out) if self.pool else out
