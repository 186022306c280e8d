"""The block DCT as an integer layer on the datapath: a fixed-weight stride-8 convolution.

The orthonormal 8×8 DCT-II basis (:func:`wrapkit.models.dct.dct_basis`, largest magnitude
cos²(π/16)/4 ≈ 0.2405) is scaled by ``S = 127 / 0.2405 ≈ 528.1`` and rounded half to even:
signed 8-bit weights in [−127, 127] (uniform 8-bit symmetric, the MAC's
``weight_kind="uniform"``), one row per kept frequency channel. The DC weight is
528.1/8 = 66.01 → 66; no weight is off by more than 0.45 of a step (0.35 % of the largest).
The activations are the pixels minus 128: signed 8-bit codes in [−128, 127]. One output is
``y = Σ w·(p − 128)`` over a block, ≈ 528 times the DCT coefficient; the real coefficient
(in pixel units) is ``y / S``.

Accumulator width: a channel's worst case is ``128·Σ|w|``. The DC row sums 64·66 = 4224, so
``|y| ≤ 540 672 > 2^19``: the DC coefficient needs a 21-bit signed register (as do (0, 4),
(4, 0) and (4, 4), whose weights are all ±66); every other channel 20 bits
(:func:`channel_bits`). Real images use far less of the AC channels' range, so the register a
network needs is measured (benchmarks/dct_stem.py). Keeping only some channels (the
selections of :mod:`wrapkit.models.dct`) is *output pruning*: fewer weight rows, fewer dot
products, and a register as narrow as the widest kept channel needs.

:class:`IntegerDCTStem` computes exactly this in PyTorch (the exact integers in float64, then
the accumulator of :mod:`wrapkit.models.accumulate`); the tracer (:mod:`wrapkit.models.trace`)
exports it as an ``upsample_nearest`` of the pixels (optional), a ``requant`` that subtracts 128 (multiplier
1, bias −128, shift 0, signed 8-bit out) and a ``conv2d`` node with stride 8 and these weights.
It reads the graph's uint8 pixels directly: the model's input must be ``pixels / 255``
(input mean 0, std 1).
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wrapkit.ref.datapath import MacConfig, encode_weights, signed_bits_for_range, wrap
from wrapkit.ref.opstream import MacOpStream

from .accumulate import accumulate
from .dct import BLOCK, LEVEL_SHIFT, dct_basis
from .layers import QuantConv2d
from .qconfig import Accumulator, WeightQuant

__all__ = ["WEIGHT_BITS", "DCTStemNet", "IntegerDCTStem", "channel_bits", "integer_dct_weights",
           "stem_mac_config", "stem_mac_stream", "weight_scale"]

#: Width of the stem's signed basis weights.
WEIGHT_BITS = 8


def weight_scale(bits=WEIGHT_BITS):
    """``S``: the largest basis magnitude (≈ 0.2405) maps to the largest weight
    ``2^(bits-1) − 1``."""
    return ((1 << (bits - 1)) - 1) / np.abs(dct_basis()).max()


def integer_dct_weights(channels=None, bits=WEIGHT_BITS, scale=None):
    """Integer basis weights ``rint(S·basis)``, shape ``(k, 1, 8, 8)`` int64.

    ``channels``: kept channel indices ``u·8 + v`` (None: all 64, in that order).
    ``scale``: ``S`` (default :func:`weight_scale`); it must keep every weight within
    ``bits``. The power of two 512 gives weights in [−123, 123] and a DC weight of 64, whose
    worst case ``−128·64·64 = −2^19`` fits 20 bits: one bit less than the default's 21.
    """
    s = weight_scale(bits) if scale is None else float(scale)
    w = np.rint(s * dct_basis()).astype(np.int64)
    top = (1 << (bits - 1)) - 1
    if np.abs(w).max() > top:
        raise ValueError(f"scale {s:g} gives weights beyond ±{top} ({bits} bits); use at most "
                         f"{weight_scale(bits):.4g}")
    if channels is not None:
        w = w[np.asarray(channels, dtype=np.int64)]
    return w.reshape(-1, 1, BLOCK, BLOCK)


def channel_bits(weights):
    """Signed register width each output channel needs in the worst case (int array):
    the range of ``Σ w·a`` over codes ``a`` in [−128, 127]."""
    w = np.asarray(weights).reshape(len(weights), -1)
    pos, neg = np.where(w > 0, w, 0).sum(1), -np.where(w < 0, w, 0).sum(1)
    lo_code, hi_code = -LEVEL_SHIFT, 255 - LEVEL_SHIFT
    lo = lo_code * pos - hi_code * neg
    hi = hi_code * pos - lo_code * neg
    return np.array([signed_bits_for_range(int(a), int(b)) for a, b in zip(lo, hi)])


def stem_mac_config(acc_bits, k=None):
    """The MAC that runs the stem: signed 8-bit pixel codes × uniform 8-bit weights."""
    return MacConfig(8, True, "uniform", WEIGHT_BITS, acc_bits, k)


def stem_mac_stream(codes, weights, outputs, cfg):
    """The stem layer as one MAC's operation stream, checked against the engine's outputs.

    One dot product per (image, block row, block column, channel), in that order, over the
    block's 64 pixel codes in raster order.

    Parameters
    ----------
    codes : int array (N, 1, H, W)
        The level-shifted pixel codes (the graph's ``level_shift`` node).
    weights : int array (C, 1, 8, 8)
        The stem's weight values.
    outputs : int array (N, C, H/8, W/8)
        The stem node's outputs from the graph engine: each dot product's expected MAC
        output (``final_out``); ``final_acc`` is the wrapped exact dot product.
    cfg : MacConfig
        :func:`stem_mac_config`.

    Returns
    -------
    MacOpStream
    """
    n, _, h, w = codes.shape
    gy, gx = h // BLOCK, w // BLOCK
    patches = codes.reshape(n, gy, BLOCK, gx, BLOCK).transpose(0, 1, 3, 2, 4).reshape(
        n * gy * gx, BLOCK * BLOCK)
    rows = weights.reshape(len(weights), -1)
    c = len(rows)
    a_rows = np.repeat(patches, c, axis=0)                       # (n·gy·gx·c, 64)
    w_rows = np.tile(rows, (n * gy * gx, 1))
    exact = (a_rows.astype(np.int64) * w_rows).sum(axis=1)
    out = np.asarray(outputs).transpose(0, 2, 3, 1).reshape(-1)
    return MacOpStream.from_dot_products(
        a_rows, encode_weights(w_rows, "uniform", cfg.weight_bits),
        final_acc=wrap(exact, cfg.acc_bits), final_out=out, source="integer DCT stem")


class IntegerDCTStem(nn.Module):
    """Pixels / 255 -> integer block-DCT accumulator outputs, scaled to coefficients.

    Parameters
    ----------
    channels : list of int or None
        Kept frequency channels (output pruning); None: all 64.
    accumulator : Accumulator
        The stem's register (wrap, or cyclic with ``k``).
    factor : int
        Nearest-neighbour upsampling of the pixels before the transform (an integer resize;
        1: none). The upsampled size must be a multiple of 8.

    Attributes
    ----------
    last_pixels, last_codes, last_y : tensors
        The (upsampled) pixels, the signed pixel codes and the accumulator outputs of the last forward pass (what the
        exported graph's nodes must equal).
    """

    def __init__(self, channels=None, accumulator=Accumulator(32), factor=1, scale=None):
        super().__init__()
        w = integer_dct_weights(channels, scale=scale)
        self.channels = list(range(64)) if channels is None else [int(c) for c in channels]
        self.register_buffer("weight", torch.from_numpy(w).double())
        self.accumulator = accumulator
        self.factor = int(factor)
        self.scale = 1.0 / (weight_scale() if scale is None else float(scale))
        self.last_pixels = self.last_codes = self.last_y = None

    @property
    def out_channels(self):
        return len(self.channels)

    def integer_weights(self):
        return self.weight.to(torch.int64).numpy()

    def forward(self, x):
        # x = p/255 in float32 is within 2^-24 relative of p/255: x·255 rounds back to p.
        p = torch.round(x.double() * 255.0).clamp(0, 255)
        if self.factor > 1:
            p = F.interpolate(p, scale_factor=self.factor, mode="nearest")
        codes = p - LEVEL_SHIFT
        z = F.conv2d(codes, self.weight, stride=BLOCK)       # exact: |z| < 2^20 in float64
        y = accumulate(z, self.accumulator)
        self.last_pixels, self.last_codes, self.last_y = p.detach(), codes.detach(), y.detach()
        return (y * self.scale).to(x.dtype)

    def get_extra_state(self):
        return {"accumulator": self.accumulator.to_dict(), "channels": self.channels,
                "factor": self.factor}

    def set_extra_state(self, state):
        self.accumulator = Accumulator(**state["accumulator"])


class DCTStemNet(nn.Module):
    """Integer DCT stem -> BatchNorm + ReLU -> two quantized 3×3 convolutions on the block
    grid -> global average -> float classifier: a network whose first layer is integer.

    Parameters
    ----------
    channels, stem_accumulator, factor, scale
        Of the :class:`IntegerDCTStem`.
    width : int
    weight_quant : WeightQuant
        Of the two quantized convolutions (their accumulators are 32-bit; the stem's register
        is the one under study).
    """

    def __init__(self, channels=None, *, stem_accumulator=Accumulator(32), factor=2, width=16,
                 num_classes=10, weight_quant=WeightQuant("uniform", 4), scale=None):
        super().__init__()
        self.stem = IntegerDCTStem(channels, stem_accumulator, factor, scale)
        k = self.stem.out_channels
        self.bn0 = nn.BatchNorm2d(k)
        self.conv1 = QuantConv2d(k, width, 3, padding=1, weight_quant=weight_quant)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = QuantConv2d(width, width, 3, padding=1, weight_quant=weight_quant)
        self.bn2 = nn.BatchNorm2d(width)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x):
        x = F.relu(self.bn0(self.stem(x)))
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))
