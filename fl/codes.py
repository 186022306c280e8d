"""Quantized broadcast: the server's float weights as integer codes plus float scales.

A weight tensor ``w`` (output channels first) becomes per-channel codes ``q`` and scales
``s`` with ``w ≈ s·q``. The quantizers are those of the centralized training
(:class:`wrapkit.models.fake_quant.WeightFakeQuant`), so a client's de-quantized weights are
exactly the ``Q(w)`` a centralized quantization-aware run computes:

* ``8`` / ``4`` — symmetric uniform: ``s = max|w| / t``, ``t = 2^(b-1) - 1``,
  ``q = round(w / s)`` in ``[-t, t]``;
* ``binary`` — ``q = sign(w)``, ``s = mean|w|`` (BWN, WrapNet's clients);
* ``ternary`` — ``q = sign(w)·[|w| > 0.7·mean|w|]``, ``s`` = mean of the kept ``|w|`` (TWN);
* ``float`` — no quantization (the float32 FedAvg/FedSGD baseline).

Codes fit int8 for every kind, which is how they travel (Flower ArrayRecords of int8).
"""

from dataclasses import dataclass

import torch

from wrapkit.models.fake_quant import WeightFakeQuant
from wrapkit.models.qconfig import WeightQuant

__all__ = ["BITS", "QuantizedTensor", "channel_view", "decode", "encode", "fake_quant_trainable",
           "is_quantized", "trainable_scale", "weight_quant"]

#: Supported ``--bits`` values, in the order the help lists them.
BITS = ("8", "4", "binary", "ternary", "float")


def weight_quant(bits):
    """The :class:`WeightQuant` of a ``--bits`` value.

    Raises
    ------
    ValueError
        ``bits`` is not one of :data:`BITS`.
    """
    bits = str(bits)
    if bits not in BITS:
        raise ValueError(f"bits must be one of {', '.join(BITS)}, got {bits!r}")
    if bits in ("8", "4"):
        return WeightQuant("uniform", int(bits))
    return WeightQuant(bits)


def is_quantized(bits):
    return weight_quant(bits).quantized


def channel_view(v, like):
    """A per-channel vector shaped to broadcast over ``like`` (channels first)."""
    return v.view(-1, *([1] * (like.dim() - 1)))


@dataclass
class QuantizedTensor:
    """Integer codes (int8, shape of the weight) and per-output-channel scales."""

    codes: torch.Tensor
    scales: torch.Tensor

    @property
    def nbytes(self):
        return self.codes.numel() * self.codes.element_size() + \
            self.scales.numel() * self.scales.element_size()


def encode(w, bits):
    """Quantize one weight tensor: ``QuantizedTensor`` for quantized kinds, a detached copy
    for ``float``."""
    wq = weight_quant(bits)
    w = w.detach()
    if not wq.quantized:
        return w.clone()
    with torch.no_grad():
        q, s = WeightFakeQuant(wq)(w)
    return QuantizedTensor(q.to(torch.int8), s.clone())


def decode(t, dtype=None):
    """``s·q`` (a float tensor) of a :class:`QuantizedTensor`; floats pass through."""
    if not isinstance(t, QuantizedTensor):
        return t if dtype is None else t.to(dtype)
    dtype = dtype or t.scales.dtype
    return t.codes.to(dtype) * channel_view(t.scales.to(dtype), t.codes)


class _StraightThrough(torch.autograd.Function):
    """Forward: the given codes ``q`` (exact integers); backward: identity to ``u``."""

    @staticmethod
    def forward(ctx, u, q):
        return q.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def trainable_scale(w, bits):
    """The per-channel scale ``s(w)`` of :func:`encode` as a differentiable function of
    ``w`` (the ternary keep-mask and the position of the maximum carry no gradient)."""
    wq = weight_quant(bits)
    a = w.abs().flatten(1)
    if wq.kind == "uniform":
        s = a.amax(1) / wq.qmax
    elif wq.kind == "binary":
        s = a.mean(1)
    else:
        keep = (a > wq.threshold * a.mean(1, keepdim=True)).detach().to(w.dtype)
        s = (a * keep).sum(1) / keep.sum(1).clamp_min(1)
    return s.clamp_min(1e-12)


def fake_quant_trainable(w, bits):
    """``Q(w) = s(w)·q`` with the gradient flowing through the scale as well as through the
    straight-through rounding (seed 002 eq. 3.3): centralized QAT with trainable scales.

    The forward value equals :func:`decode` of :func:`encode` (same codes, same scale
    formula); the backward pass is ``∂Q_i/∂w_j = δ_ij + (q_i - w_i/s)·∂s/∂w_j``.
    """
    if not is_quantized(bits):
        return w
    codes = encode(w, bits).codes.to(w.dtype)
    s = channel_view(trainable_scale(w, bits), w)
    return _StraightThrough.apply(w / s, codes) * s
