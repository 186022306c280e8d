"""Quantized activation × activation operations for attention: matmul and softmax.

Both quantize their float inputs to integer codes with a :class:`CodeQuant` (signed or
unsigned, round half to even as ``torch.round``, straight-through gradient), compute the
exact integer function of :mod:`wrapkit.models.intops` (the mirror of the graph node of the
same name), and return the result in real units, so a network built from them trains with
exactly the integers the exported graph computes:

* :class:`QuantMatmul` — ``y = acc(a_q @ b_q)`` (an accumulator mode of
  :class:`wrapkit.ref.ops.AccumulatorMode`), returned as ``s_a·s_b·y`` (Q·Kᵀ, A·V);
* :class:`QuantSoftmax` — I-BERT's integer softmax of scores ``q = round(x / S)`` to unsigned
  ``B``-bit probability codes, returned as ``p / (2^B − 1)``.

A quantizer left at None (before calibration) makes the module its float counterpart.
"""

from dataclasses import asdict, dataclass

import torch
from torch import nn

from wrapkit.common.checks import check_int, check_positive_float
from wrapkit.ref.ops import AccumulatorMode, ExpConstants

from . import intops
from .fake_quant import RoundSTE

__all__ = ["CodeQuant", "QuantMatmul", "QuantSoftmax"]


@dataclass(frozen=True)
class CodeQuant:
    """``clamp(round(x / step))`` to ``bits``-bit signed or unsigned codes."""

    step: float
    bits: int
    signed: bool = True

    def __post_init__(self):
        object.__setattr__(self, "step", check_positive_float("step", self.step))
        check_int("bits", self.bits, 1, 16)

    @property
    def code_range(self):
        if self.signed:
            return -(1 << (self.bits - 1)), (1 << (self.bits - 1)) - 1
        return 0, (1 << self.bits) - 1

    def __call__(self, x):
        lo, hi = self.code_range
        return RoundSTE.apply(torch.clamp(x / self.step, lo, hi))

    def to_dict(self):
        return asdict(self)


class QuantMatmul(nn.Module):
    """``a @ b`` of two activation tensors through integer codes and an accumulator.

    Parameters
    ----------
    a_quant, b_quant : CodeQuant or None
    acc : AccumulatorMode
        Default: exact.
    """

    def __init__(self, a_quant=None, b_quant=None, acc=AccumulatorMode()):
        super().__init__()
        self.a_quant, self.b_quant, self.acc = a_quant, b_quant, acc
        self.tracing = False
        self.last_y = None

    @property
    def integer(self):
        return self.a_quant is not None and self.b_quant is not None

    def forward(self, a, b):
        if not self.integer:
            return a @ b
        y = intops.matmul(self.a_quant(a).double(), self.b_quant(b).double(), acc=self.acc)
        if self.tracing:
            self.last_y = y.detach().to(torch.int64)
        return (y * (self.a_quant.step * self.b_quant.step)).to(a.dtype)

    def extra_repr(self):
        return f"a={self.a_quant}, b={self.b_quant}, acc={self.acc}"


class QuantSoftmax(nn.Module):
    """Integer softmax over the last axis (I-BERT) of scores quantized with ``in_quant``
    (signed), to ``out_bits``-bit probability codes; float ``softmax`` without a quantizer."""

    def __init__(self, in_quant=None, out_bits=8):
        super().__init__()
        self.in_quant, self.out_bits = in_quant, check_int("out_bits", out_bits, 1, 16)

    @property
    def constants(self):
        return ExpConstants.from_scale(self.in_quant.step)

    @property
    def out_step(self):
        return 1.0 / ((1 << self.out_bits) - 1)

    def forward(self, x):
        if self.in_quant is None:
            return torch.softmax(x, dim=-1)
        p = intops.softmax(self.in_quant(x).double(), self.constants, out_bits=self.out_bits)
        return (p * self.out_step).to(x.dtype)

    def extra_repr(self):
        return f"in={self.in_quant}, out_bits={self.out_bits}"
