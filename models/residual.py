"""The quantized residual add: ``relu(a + b)`` with both branches and the sum on integer grids.

A residual block adds its second BatchNorm's output ``a`` (signed) to the shortcut ``b``
(the block input, post-ReLU). For an integer-only datapath the two branches must meet on a
common integer scale, so once the network's activations are quantized this module computes

    a_q = clamp(round(a / s_a), −2^(n_a−1), 2^(n_a−1) − 1)      signed codes of the branch
    b_q = clamp(round(b / s_b), 0, 2^n_b − 1)                     the shortcut's codes
    out = s_out · add(a_q, b_q, m_a, m_b, shift)                  ref.ops.add, unsigned (ReLU)

with ``(m_a, m_b, shift) = ref.ops.add_multipliers(s_a, s_b, s_out)`` and the exact integer
add of :func:`wrapkit.models.intops.add` (rounding half up; straight-through gradients), so
training computes exactly what the exported ``add`` node computes.

The scales are tied to the layers around the add rather than calibrated on their own, which
keeps every code exact across the block boundary: ``s_b, n_b`` are the input quantizer of
the block's first convolution (that convolution and the shortcut read the same codes), and
``s_out, n_out`` the input quantizer of the next block's first convolution (it then reads the
add's codes unchanged: ``round(s_out·c / s_out) = c``); after the last block ``s_out = s_b``
with 8 bits. The branch ``a`` uses ``s_a = s_out`` with one bit more, signed (it spans about
the output's range in both signs). Before activations are quantized (float or "units"
stages) the module is the float ``relu(a + b)``.
"""

import torch
import torch.nn.functional as F
from torch import nn

from wrapkit.ref.ops import add_multipliers

from . import intops
from .fake_quant import RoundSTE

__all__ = ["QuantAdd", "ResidualScales"]

#: Width of the last add's output codes (no quantized layer follows it).
FINAL_BITS = 8


class ResidualScales(tuple):
    """``(s_a, n_a, s_b, n_b, s_out, n_out)`` of a :class:`QuantAdd`."""

    __slots__ = ()
    names = ("a_step", "a_bits", "b_step", "b_bits", "out_step", "out_bits")

    def to_dict(self):
        return dict(zip(self.names, self))

    @property
    def multipliers(self):
        """``(m_a, m_b, shift)`` of the integer add (:func:`wrapkit.ref.ops.add_multipliers`)."""
        s_a, _, s_b, _, s_out, _ = self
        return add_multipliers(s_a, s_b, s_out)


class QuantAdd(nn.Module):
    """``relu(a + b)`` of a residual block, integer once its neighbours are quantized.

    Call :meth:`bind` with the block's first convolution (the shortcut's quantizer) and the
    next block's first convolution (the output's quantizer; None after the last block).
    """

    def __init__(self):
        super().__init__()
        # Plain tuples, not attributes: the layers are registered by their own blocks.
        self._b_layer = ()
        self._out_layer = ()

    def bind(self, b_layer, out_layer=None):
        self._b_layer = (b_layer,)
        self._out_layer = () if out_layer is None else (out_layer,)
        return self

    def scales(self):
        """The :class:`ResidualScales`, or None while activations are not quantized."""
        if not self._b_layer:
            return None
        bq = self._b_layer[0].act_quant
        if bq is None or bq.bits is None:
            return None
        if self._out_layer:
            oq = self._out_layer[0].act_quant
            if oq is None or oq.bits is None:
                return None
            s_out, n_out = oq.step, oq.bits
        else:
            s_out, n_out = bq.step, FINAL_BITS
        return ResidualScales((s_out, n_out + 1, bq.step, bq.bits, s_out, n_out))

    def forward(self, a, b):
        sc = self.scales()
        if sc is None:
            return F.relu(a + b)
        s_a, n_a, s_b, n_b, s_out, n_out = sc
        half = 1 << (n_a - 1)
        a_q = RoundSTE.apply(torch.clamp(a / s_a, -half, half - 1))
        b_q = RoundSTE.apply(torch.clamp(b / s_b, 0, (1 << n_b) - 1))
        m_a, m_b, shift = sc.multipliers
        out = intops.add(a_q, b_q, m_a, m_b, shift, out_bits=n_out, out_signed=False)
        return out * s_out

    def extra_repr(self):
        sc = self.scales()
        return "float" if sc is None else ", ".join(f"{k}={v:.4g}" if isinstance(v, float)
                                                    else f"{k}={v}"
                                                    for k, v in sc.to_dict().items())
