"""Quantized attention: set every quantizer of a ViT/MetaFormer, measure accumulator overflow,
and a small attention network that exports to an integer graph.

:func:`quantize_attention` turns the float attention model of :mod:`.vit` into one whose
linears (Q, K, V, projection, MLP) have ``weight_bits``-bit uniform weights and
``act_bits``-bit input codes (signed: tokens after a layer norm are signed), whose ``Q·Kᵀ``
and ``A·V`` multiply ``act_bits``-bit codes, whose softmax is I-BERT's integer softmax to
``prob_bits``-bit probability codes, and whose TWIST runs on those codes in integers. Steps
come from the value ranges on a calibration batch (the rule of
:func:`wrapkit.models.graph_nets.calibrate_ranges`). What stays float, marked: the patch embedding, the position embedding, the layer
norms, GELU, the residual adds and the classifier (their integer forms exist as graph node
kinds, ``layer_norm``, ``lookup``, ``add``, but have no trained module yet).

:func:`overflow_report` runs a batch with exact accumulators and counts, per MAC, how many
dot products exceed a ``bits``-bit signed register — where an 8-bit accumulator overflows.

:class:`AttentionNet` (float stem, one quantized multi-head attention block with TWIST, a
float classifier) is what :mod:`wrapkit.models.trace` exports and the graph engine runs
equal to PyTorch.
"""

import torch
from torch import nn

from wrapkit.ref.ops import AccumulatorMode

from ..fake_quant import WeightFakeQuant
from ..graph_nets import calibrate_ranges
from ..layers import QuantLinear
from ..qconfig import Accumulator, ActQuant, WeightQuant
from ..qops import QuantMatmul, QuantSoftmax
from .mixers import AttentionConfig, MultiHeadAttention, TokenLinear
from .twist import QuantTwist

__all__ = ["AttentionNet", "overflow_report", "quantize_attention"]

#: Share of a quantizer's inputs its range covers (as graph_nets.calibrate_ranges).
_PERCENTILE = 0.999


def _abs_hi(x):
    x = x.detach().flatten().abs().float()
    k = max(1, int(round(_PERCENTILE * x.numel())))
    return max(float(x.kthvalue(k).values), 1e-6)


@torch.no_grad()
def quantize_attention(model, x, *, weight_bits=8, act_bits=8, prob_bits=8,
                       accumulator=Accumulator(32), matmul_acc=AccumulatorMode()):
    """Set every quantizer of ``model``'s attention and MLP layers from the batch ``x``.

    Parameters
    ----------
    model : nn.Module
        Built from :class:`MultiHeadAttention` / :class:`TokenLinear` (``.vit``).
    x : float tensor
        Calibration batch.
    weight_bits, act_bits, prob_bits : int
    accumulator : Accumulator
        The register of every linear (``Accumulator(8, 2)``: WrapNet's cyclic 8 bits).
    matmul_acc : AccumulatorMode
        The register of ``Q·Kᵀ`` and ``A·V``.
    """
    wq = WeightQuant("uniform", weight_bits)
    for m in model.modules():
        if isinstance(m, QuantLinear):
            m.weight_fq = WeightFakeQuant(wq)
            m.accumulator = accumulator
        elif isinstance(m, QuantMatmul):
            m.acc = matmul_acc
        elif isinstance(m, QuantSoftmax):
            m.out_bits = prob_bits
        elif isinstance(m, QuantTwist):
            m.out_bits = None                   # float while the ranges are measured
    calibrate_ranges(model, x, bits=act_bits)
    # Signed token projections: the range of |x| on the same (float-activation) pass.
    signed = [m for m in model.modules() if isinstance(m, TokenLinear) and m.signed_input]
    saved = {m: m.act_quant for m in signed}
    seen, hooks = {}, [m.register_forward_pre_hook(lambda mod, a: seen.setdefault(mod, a[0]))
                       for m in signed]
    quantizers = _switch_off(model)
    was = model.training
    model.eval()
    model(x)
    model.train(was)
    for h in hooks:
        h.remove()
    _switch_on(quantizers)
    for m in signed:
        m.act_quant = ActQuant(_abs_hi(seen[m]) / ((1 << (act_bits - 1)) - 1), act_bits) \
            if m in seen else saved[m]
    for m in model.modules():
        if isinstance(m, QuantTwist):
            m.out_bits = prob_bits
    return model


def _switch_off(model):
    """Float activations everywhere (the float pass that steps are measured on)."""
    saved = []
    for m in model.modules():
        if isinstance(m, QuantLinear):
            saved.append((m, "act_quant", m.act_quant))
            m.act_quant = None
        elif isinstance(m, QuantMatmul):
            saved.append((m, "a_quant", m.a_quant))
            saved.append((m, "b_quant", m.b_quant))
            m.a_quant = m.b_quant = None
        elif isinstance(m, QuantSoftmax):
            saved.append((m, "in_quant", m.in_quant))
            m.in_quant = None
        elif isinstance(m, QuantTwist):
            saved.append((m, "out_bits", m.out_bits))
            m.out_bits = None
    return saved


def _switch_on(saved):
    for m, attr, value in saved:
        setattr(m, attr, value)


@torch.no_grad()
def overflow_report(model, x, *, bits=8):
    """Per MAC kind, the share of exact dot products beyond a ``bits``-bit signed register.

    Runs ``model`` on ``x`` with exact accumulators (``Accumulator(32)``, matmuls exact);
    returns ``{"qkv": share, "proj": ..., "mlp": ..., "qk": ..., "av": ...}`` over all
    blocks, plus ``"max_abs"`` per kind (the largest dot product seen). The accumulators are
    restored afterwards.
    """
    half = 1 << (bits - 1)
    kinds = {}
    saved = []
    for name, m in model.named_modules():
        if isinstance(m, QuantLinear):
            leaf = name.rsplit(".", 1)[-1]
            kinds[m] = "qkv" if leaf in ("q", "k", "v") else "proj" if leaf == "proj" else "mlp"
            saved.append((m, "accumulator", m.accumulator))
            m.accumulator = Accumulator(32)
        elif isinstance(m, QuantMatmul):
            kinds[m] = name.rsplit(".", 1)[-1]          # "qk" or "av"
            saved.append((m, "acc", m.acc))
            m.acc = AccumulatorMode()
        else:
            continue
        m.tracing = True
    counts = {}
    zs = {}

    def grab(mod, args, out):
        z = mod.last.z if isinstance(mod, QuantLinear) else mod.last_y
        zs.setdefault(mod, []).append(z.detach().abs())

    hooks = [m.register_forward_hook(grab) for m in kinds]
    was = model.training
    model.eval()
    try:
        model(x)
    finally:
        model.train(was)
        for h in hooks:
            h.remove()
        for m in kinds:
            m.tracing = False
        _switch_on(saved)
    for m, kind in kinds.items():
        z = torch.cat([t.flatten().double() for t in zs.get(m, [])])
        total, over, top = counts.get(kind, (0, 0, 0.0))
        counts[kind] = (total + z.numel(), over + int((z >= half).sum()),
                        max(top, float(z.max())))
    return {kind: {"share": over / total, "max_abs": top, "values": total}
            for kind, (total, over, top) in counts.items()}


class AttentionNet(nn.Module):
    """A float patch stem (conv + BatchNorm + ReLU), one multi-head attention block over the
    patches (optionally with TWIST), flatten, a float classifier: a network every integer
    node of which exports (``wrapkit.models.trace``)."""

    def __init__(self, *, image_size=16, patch=4, dim=32, num_classes=10, in_channels=1,
                 attention=AttentionConfig(twist_t=0.1)):
        super().__init__()
        side = image_size // patch
        self.dim, self.tokens = dim, side * side
        self.stem = nn.Sequential(nn.Conv2d(in_channels, dim, patch, stride=patch, bias=False),
                                  nn.BatchNorm2d(dim), nn.ReLU())
        self.attn = MultiHeadAttention(dim, (side, side), attention, swap=attention.swap)
        # The stem's ReLU output is unsigned: Q/K/V read unsigned codes.
        for layer in (self.attn.q, self.attn.k, self.attn.v):
            layer.signed_input = False
        self.classifier = nn.Linear(self.tokens * dim, num_classes)

    def forward(self, x):
        t = self.stem(x).reshape(-1, self.dim, self.tokens).transpose(1, 2)
        return self.classifier(torch.flatten(self.attn(t), 1))
