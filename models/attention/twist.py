"""TWIST: suppression of accumulated trivial attention (SATA, seed 000 §4.3, Eq. 4.4–4.17).

For one row of attention weights ``x`` (the softmax's output), a weight is *trivial* when it
is below ``t`` times the row maximum (the relative threshold of Eq. 4.4), and every trivial
weight becomes ``s·x_j² / Σ_trivial x_i`` (Eq. 4.17); the others pass unchanged. Lemma 1:
the trivial weights then sum to at most ``s·x_max``. ``s`` is learnable, one per layer
(initialised to 0.5 as the seed); ``t`` is fixed (0.1).

:func:`twist` is one fused autograd function: the forward computes the mask, one sum per
row and the transform in place-free vector operations, and the backward is the closed form
(the mask is piecewise constant in ``x``, so it carries no gradient)::

    y_j = s·x_j²/S  (j trivial, S = Σ_trivial x_i)
    ∂L/∂x_i = g_i                                   (i non-trivial)
    ∂L/∂x_i = 2s·g_i·x_i/S − (s/S²)·Σ_trivial g_j·x_j²   (i trivial)
    ∂L/∂s   = Σ_trivial g_j·x_j²/S

It saves only the trivial weights, the mask and two numbers per row. :func:`twist_naive` is the same function written
as a chain of elementwise autograd operations (each keeps its own intermediate tensors),
the version ``benchmarks/attention.py`` times it against. :class:`QuantTwist` is the module
(learnable ``s``), float or on integer probability codes: the exact integers of the graph
node ``twist`` (:func:`wrapkit.ref.ops.twist`).
"""

import torch
from torch import nn

from wrapkit.ref.ops import TWIST_SHIFT, twist_constants

from .. import intops
from ..fake_quant import RoundSTE

__all__ = ["QuantTwist", "twist", "twist_naive"]

#: Smallest trivial sum divided by (a row whose trivial weights are all 0 gives 0 / tiny).
_TINY = 1e-12


class _TwistFn(torch.autograd.Function):
    # With the 0/1 mask ``μ``, ``x_t = μ·x`` and ``c = s/S`` (one per row):
    # y = (x − x_t) + c·x_t²;  ∂L/∂x = g − μ·g + 2c·g·x_t − μ·c·Σ(g·x_t²)/S.
    # Written with fused multiply-adds, so forward and backward are few passes over the map.
    @staticmethod
    def forward(ctx, x, s, t):
        mask = (x < t * x.amax(dim=-1, keepdim=True)).to(x.dtype)
        xt = x * mask
        total = xt.sum(dim=-1, keepdim=True).clamp_(min=_TINY)
        coef = s / total
        ctx.save_for_backward(xt, mask, coef, total, s)
        return torch.addcmul(x - xt, xt * xt, coef)

    @staticmethod
    def backward(ctx, g):
        xt, mask, coef, total, s = ctx.saved_tensors
        gxt = g * xt
        cross = (gxt * xt).sum(dim=-1, keepdim=True) / total     # Σ_trivial g_j·x_j² / S
        grad_x = torch.addcmul(g - g * mask, gxt, 2 * coef).sub_(mask * (coef * cross))
        grad_s = cross.sum().reshape(s.shape) if ctx.needs_input_grad[1] else None
        return grad_x, grad_s, None


def twist(x, s, t=0.1):
    """TWIST over the last axis of attention weights ``x`` (fused forward and backward).

    Parameters
    ----------
    x : float tensor (..., n), non-negative
    s : float tensor with one element (learnable)
    t : float, relative threshold
    """
    return _TwistFn.apply(x, s, t)


def twist_naive(x, s, t=0.1):
    """The definition of :func:`twist` as elementwise autograd operations (for comparison)."""
    threshold = t * x.max(dim=-1, keepdim=True).values
    mask = (x < threshold).to(x.dtype)
    trivial = x * mask
    total = trivial.sum(dim=-1, keepdim=True).clamp(min=_TINY)
    transformed = s * trivial.pow(2) / total
    return x * (1 - mask) + transformed * mask


class QuantTwist(nn.Module):
    """TWIST with a learnable scale ``s`` (one per layer) and a fixed threshold ``t``; in
    integers on the softmax's ``out_bits``-bit probability codes once ``out_bits`` is set.

    Without ``out_bits`` (None) it is the float :func:`twist` (``fused=False``:
    :func:`twist_naive`). With ``out_bits`` the input is the softmax's output in real units
    (codes times ``1/(2^out_bits − 1)``), and ``s`` rounds to
    ``s_num = round(max(s, 0)·2^TWIST_SHIFT)`` with a straight-through gradient, so ``s``
    keeps training on the integer path. ``learnable=False`` keeps ``s`` fixed (the grid-search
    rows of seed 000 Table 4.3). The float ``s`` is not constrained; the integer form clamps
    it at 0 (the seed's ``s > 0``).
    """

    def __init__(self, t=0.1, s=0.5, *, out_bits=None, learnable=True, fused=True):
        super().__init__()
        self.t = float(t)
        self.s = nn.Parameter(torch.tensor(float(s)), requires_grad=learnable)
        self.out_bits = out_bits
        self.fused = fused

    @property
    def constants(self):
        """``(t_num, s_num)`` of the exported node."""
        return twist_constants(self.t, max(float(self.s.detach()), 0.0))

    def forward(self, x):
        if self.out_bits is None:
            return (twist if self.fused else twist_naive)(x, self.s.to(x.dtype), self.t)
        top = (1 << self.out_bits) - 1
        p = torch.round(x.detach() * top) + (x - x.detach()) * top   # the codes, gradient kept
        t_num, _ = self.constants
        s_num = RoundSTE.apply(self.s.clamp(min=0).double() * (1 << TWIST_SHIFT))
        y = intops.twist(p.double(), t_num, s_num, out_bits=self.out_bits)
        return (y / top).to(x.dtype)

    def extra_repr(self):
        return f"t={self.t}, s={self.s.item():.4g}, out_bits={self.out_bits}"
