"""Small networks that only an integer graph can export: depthwise + pixel shuffle, attention.

They show the node kinds that the VGG-7/ResNet-20 pair does not use, built from wrapkit's
quantized modules so that tracing (:mod:`wrapkit.models.trace`) exports them:

* :class:`DepthwiseShuffleNet` — a float stem, a depthwise 3×3 and a pointwise 1×1
  :class:`~wrapkit.models.layers.QuantConv2d` (the PDWConv pattern of restoration networks),
  pixel shuffle, max pooling, nearest upsampling, a strided convolution, and a float
  classifier after global average pooling;
* :class:`TinyAttention` — a float patch stem, image patches as tokens, Q/K/V
  :class:`~wrapkit.models.layers.QuantLinear` projections, ``Q·Kᵀ`` and ``A·V`` as
  :class:`~wrapkit.models.qops.QuantMatmul` and I-BERT's integer softmax
  (:class:`~wrapkit.models.qops.QuantSoftmax`).

:func:`calibrate_ranges` gives every quantizer a step from the value range it sees on a
calibration batch (the QA baselines' range rule), enough to export an initialised or
briefly trained network.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from wrapkit.ref.ops import AccumulatorMode

from .layers import QuantConv2d, QuantLinear
from .qconfig import Accumulator, ActQuant, WeightQuant
from .qops import CodeQuant, QuantMatmul, QuantSoftmax

__all__ = ["DepthwiseShuffleNet", "TinyAttention", "calibrate_ranges"]

#: Percentile of a quantizer's inputs that its range covers.
_PERCENTILE = 0.999


class DepthwiseShuffleNet(nn.Module):
    """stem -> depthwise 3×3 -> pointwise 1×1 -> pixel shuffle -> max pool -> nearest
    upsample -> strided 3×3 -> global average -> float classifier."""

    def __init__(self, in_channels=1, width=8, num_classes=10, *, weight_quant=None,
                 accumulator=Accumulator(12, 2)):
        super().__init__()
        wq = weight_quant or WeightQuant("ternary")
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU())
        self.dw = QuantConv2d(width, width, 3, padding=1, groups=width, weight_quant=wq,
                              accumulator=accumulator)
        self.bn_dw = nn.BatchNorm2d(width)
        self.pw = QuantConv2d(width, 4 * width, 1, weight_quant=wq, accumulator=accumulator)
        self.bn_pw = nn.BatchNorm2d(4 * width)
        self.shuffle = nn.PixelShuffle(2)
        self.down = QuantConv2d(width, 2 * width, 3, stride=2, padding=1, weight_quant=wq,
                                accumulator=accumulator)
        self.bn_down = nn.BatchNorm2d(2 * width)
        self.classifier = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        x = self.stem(x)
        x = F.relu(self.bn_dw(self.dw(x)))
        x = F.relu(self.bn_pw(self.pw(x)))
        x = F.max_pool2d(self.shuffle(x), 2)                 # (width, H, W)
        x = F.interpolate(x, scale_factor=2, mode="nearest")  # (width, 2H, 2W)
        x = F.relu(self.bn_down(self.down(x)))                # (2·width, H, W)
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class TinyAttention(nn.Module):
    """One single-head self-attention block over image patches, then a float classifier."""

    def __init__(self, in_channels=1, image_size=28, patch=4, dim=16, num_classes=10, *,
                 weight_quant=None, accumulator=Accumulator(16), softmax_bits=8):
        super().__init__()
        wq = weight_quant or WeightQuant("uniform", 4)
        self.dim, self.tokens = dim, (image_size // patch) ** 2
        self.stem = nn.Sequential(nn.Conv2d(in_channels, dim, patch, stride=patch, bias=False),
                                  nn.BatchNorm2d(dim), nn.ReLU())
        self.q, self.k, self.v = (QuantLinear(dim, dim, weight_quant=wq, accumulator=accumulator)
                                  for _ in range(3))
        self.qk = QuantMatmul(acc=AccumulatorMode("wrap", 16))
        self.softmax = QuantSoftmax(out_bits=softmax_bits)
        self.av = QuantMatmul(acc=AccumulatorMode("wrap", 16))
        self.classifier = nn.Linear(self.tokens * dim, num_classes)

    def forward(self, x):
        t = self.stem(x).reshape(-1, self.dim, self.tokens).transpose(1, 2)   # (N, T, dim)
        q, k, v = self.q(t), self.k(t), self.v(t)
        a = self.softmax(self.qk(q, k.transpose(1, 2)) / math.sqrt(self.dim))
        return self.classifier(torch.flatten(self.av(a, v), 1))


def _hi(x, signed):
    x = x.detach().flatten().float()
    x = x.abs() if signed else x.clamp(min=0)
    k = max(1, int(math.ceil(_PERCENTILE * x.numel())))
    return max(float(x.kthvalue(k).values), 1e-6)


@torch.no_grad()
def calibrate_ranges(model, x, *, bits=8, acc=None):
    """Set every quantizer of ``model`` from the range of its inputs on the batch ``x``.

    Quantized layers get ``ActQuant(hi / (2^bits − 1), bits)`` (unsigned inputs);
    :class:`QuantMatmul` signed ``CodeQuant``s (an unsigned one for probabilities, tied to
    the softmax's output step); :class:`QuantSoftmax` a signed score quantizer. Steps come
    from the network with float activations (run once with every quantizer off).
    """
    seen, hooks = {}, []
    for m in model.modules():
        if isinstance(m, (QuantConv2d, QuantLinear, QuantMatmul, QuantSoftmax)):
            hooks.append(m.register_forward_pre_hook(
                lambda mod, args: seen.setdefault(mod, args)))
            if isinstance(m, (QuantConv2d, QuantLinear)):
                m.act_quant = None
            elif isinstance(m, QuantMatmul):
                m.a_quant = m.b_quant = None
            else:
                m.in_quant = None
    was = model.training
    model.eval()
    model(x)
    for h in hooks:
        h.remove()
    softmax_out = {}
    for m, args in seen.items():
        if isinstance(m, (QuantConv2d, QuantLinear)):
            m.act_quant = ActQuant(_hi(args[0], False) / ((1 << bits) - 1), bits)
        elif isinstance(m, QuantSoftmax):
            m.in_quant = CodeQuant(_hi(args[0], True) / ((1 << (bits - 1)) - 1), bits, True)
    for m in model.modules():
        if isinstance(m, QuantSoftmax):
            softmax_out[id(m)] = CodeQuant(m.out_step, m.out_bits, False)
    probs = next(iter(softmax_out.values()), None)
    for m, args in seen.items():
        if isinstance(m, QuantMatmul):
            a, b = args
            # Non-negative operands bounded by 1 are the softmax's probabilities.
            a_q = probs if probs is not None and float(a.min()) >= 0 and float(a.max()) <= 1 \
                else CodeQuant(_hi(a, True) / ((1 << (bits - 1)) - 1), bits, True)
            m.a_quant = a_q
            m.b_quant = CodeQuant(_hi(b, True) / ((1 << (bits - 1)) - 1), bits, True)
    model.train(was)
    return model
