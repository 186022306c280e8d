"""Per-layer overflow measurement and activation step-size selection (§2.3.3).

Step-size selection: for a target overflow rate ``p`` and an accumulator of ``b`` bits, each
quantized layer gets the *finest* step ``s_x`` whose integer pre-activations
``z_q = Σ w_q · x_q(s_x)`` overflow ``b`` bits on at most a fraction ``p`` of the neurons of a
calibration batch; its activation bit width is the fewest bits whose range covers the layer's
inputs at that step:

    bits(s) = min n in [1, max_bits] with (2^n - 1) · s >= x_hi,
    x_hi    = the 99.9th percentile of the layer's float inputs (ReLU outputs).

A finer step means larger codes, so the overflow rate falls as ``s`` grows; a bisection on
``log s`` between ``x_hi / (2^max_bits - 1)`` (max_bits bits) and ``x_hi`` (1 bit) finds the
step. When even 1-bit activations overflow more than ``p`` the step stays at ``x_hi`` (1 bit)
and the measured rate is reported: a coarser step would quantize most inputs to zero. The
inputs come from the pre-trained network with float activations, as in the paper's pipeline
(§2.4.1). ``range_steps`` is the fixed-width alternative used by the QA baselines:
``s = x_hi / (2^bits - 1)``.
"""

import math
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch

from .accumulate import excess_limit, overflow_mask
from .layers import quant_layers
from .qconfig import ACC_BITS_RANGE, ACT_BITS_RANGE, ActQuant, check_int

__all__ = [
    "OverflowMeter",
    "StepChoice",
    "collect_inputs",
    "overflow_rate",
    "range_steps",
    "select_steps",
    "tracing",
]

#: Percentile of a layer's inputs that its activation range must cover.
RANGE_PERCENTILE = 99.9
#: Bisection steps on log(s): 2^-30 of the search interval is far below any effect.
_BISECT_STEPS = 30


@contextmanager
def tracing(model):
    """Make every quantized layer record its last forward (``layer.last``) inside the block."""
    layers = [m for _, m in quant_layers(model)]
    before = [m.tracing for m in layers]
    for m in layers:
        m.tracing = True
    try:
        yield
    finally:
        for m, t in zip(layers, before):
            m.tracing = t
            m.last = None


class OverflowMeter:
    """Counts, per quantized layer, pre-activations that do not fit ``bits`` bits.

    ``bits=None`` uses each layer's own accumulator width. Call :meth:`update` after each
    forward pass made inside :func:`tracing`.
    """

    def __init__(self, model, bits=None):
        if bits is not None:
            check_int("acc_bits", bits, *ACC_BITS_RANGE)
        self.layers = quant_layers(model)
        self.bits = bits
        self.overflows = {n: 0 for n, _ in self.layers}
        self.total = {n: 0 for n, _ in self.layers}

    def update(self):
        for name, layer in self.layers:
            z = layer.last.z.detach()
            b = self.bits or layer.accumulator.bits
            self.overflows[name] += int(overflow_mask(z, b).sum())
            self.total[name] += z.numel()

    def rates(self):
        """``{layer: fraction of neurons that overflowed}``."""
        return {n: self.overflows[n] / max(self.total[n], 1) for n in self.overflows}

    def mean_rate(self):
        """Mean of the per-layer rates (the paper's "average overflow rate of each layer")."""
        r = list(self.rates().values())
        return sum(r) / len(r) if r else 0.0


@torch.no_grad()
def collect_inputs(model, x, batch_size=256):
    """Float inputs of every quantized layer for images ``x`` (eval mode): ``{name: tensor}``."""
    was_training = model.training
    model.eval()
    chunks = {n: [] for n, _ in quant_layers(model)}
    with tracing(model):
        for i in range(0, len(x), batch_size):
            model(x[i:i + batch_size])
            for name, layer in quant_layers(model):
                chunks[name].append(layer.last.x)
    model.train(was_training)
    return {n: torch.cat(c) for n, c in chunks.items()}


def _upper_range(x):
    flat = x.flatten()
    k = max(1, min(flat.numel(), math.ceil(flat.numel() * RANGE_PERCENTILE / 100)))
    hi = float(flat.kthvalue(k).values)
    return hi if hi > 0 else float(flat.max().clamp_min(1e-6))


def _bits_for(step, x_hi, max_bits):
    n = math.ceil(math.log2(x_hi / step + 1) - 1e-9)
    return min(max(n, 1), max_bits)


@torch.no_grad()
def overflow_rate(layer, x, step, bits, acc_bits, batch_size=256, *, k=None, limit="register"):
    """Fraction of ``layer``'s pre-activations that overflow ``acc_bits`` for inputs ``x``
    quantized with ``ActQuant(step, bits)`` (the layer's own quantizers are left untouched).

    ``limit="fold"`` counts the pre-activations beyond the cyclic fold threshold of slope
    ``k`` instead (``accumulate.excess_limit``): those the cyclic activation does not pass
    unchanged, overflows included.
    """
    saved, traced = layer.act_quant, layer.tracing
    layer.act_quant = ActQuant(step=step, bits=bits)
    layer.tracing = True
    over = total = 0
    beyond = excess_limit(acc_bits, k, limit)
    try:
        for i in range(0, len(x), batch_size):
            layer(x[i:i + batch_size])
            z = layer.last.z
            if limit == "register" or k is None:
                over += int(overflow_mask(z, acc_bits).sum())
            else:
                over += int((z.abs() > beyond).sum())
            total += z.numel()
    finally:
        layer.act_quant = saved
        layer.tracing = traced
        layer.last = None
    return over / max(total, 1)


@dataclass(frozen=True)
class StepChoice:
    """Selected activation quantizer of one layer, with what was measured on calibration data."""

    layer: str
    step: float
    bits: int
    overflow_rate: float  # at the accumulator width, calibration images
    x_hi: float           # 99.9th percentile of the layer's float inputs
    capped: bool = False  # True when even 1 bit overflows more than the target
    limit: str = "register"    # what the target counted (accumulate.LIMITS)
    excess_rate: float | None = None  # the rate the target bounds (= overflow_rate for register)

    def act_quant(self):
        return ActQuant(step=self.step, bits=self.bits)

    def to_dict(self):
        return asdict(self)


def select_steps(model, x_calib, *, target_rate, acc_bits, max_bits=8, k=None,
                 limit="register", progress=None):
    """Choose every quantized layer's step for an overflow rate <= ``target_rate``.

    Parameters
    ----------
    model : nn.Module
        Pre-trained network, float activations.
    x_calib : Tensor
        Calibration images.
    target_rate : float in [0, 1]
        ``p`` as a fraction (the paper's default 5 % is 0.05).
    acc_bits : int
        Accumulator width the rate refers to.
    max_bits : int
        Widest activation the selection may choose.
    k, limit : int or None, str
        ``limit="fold"`` bounds the fraction of pre-activations beyond the cyclic fold
        threshold of slope ``k`` (overflows and fold-backs) rather than the overflows alone
        (``"register"``, the paper's §2.3.3); see ``accumulate.excess_limit``.

    Returns
    -------
    list of StepChoice, in layer order.
    """
    if isinstance(target_rate, bool) or not isinstance(target_rate, (int, float)) \
            or not 0 <= target_rate <= 1:
        raise ValueError(f"target_rate must be in [0, 1], got {target_rate!r}")
    check_int("acc_bits", acc_bits, *ACC_BITS_RANGE)
    check_int("max_bits", max_bits, *ACT_BITS_RANGE)
    inputs = collect_inputs(model, x_calib)
    choices = []
    for name, layer in quant_layers(model):
        x = inputs[name]
        x_hi = _upper_range(x)

        def rate(s, limit=limit):
            return overflow_rate(layer, x, s, _bits_for(s, x_hi, max_bits), acc_bits, k=k,
                                 limit=limit)

        fine, coarse = x_hi / ((1 << max_bits) - 1), x_hi
        capped = False
        if rate(fine) <= target_rate:
            step = fine
        elif rate(coarse) > target_rate:
            step, capped = coarse, True
        else:  # invariant: rate(lo) > target >= rate(hi)
            lo, hi = math.log(fine), math.log(coarse)
            for _ in range(_BISECT_STEPS):
                mid = (lo + hi) / 2
                if rate(math.exp(mid)) <= target_rate:
                    hi = mid
                else:
                    lo = mid
            step = math.exp(hi)
        bits = _bits_for(step, x_hi, max_bits)
        excess = rate(step)
        over = excess if limit == "register" else rate(step, "register")
        choices.append(StepChoice(name, step, bits, over, x_hi, capped, limit, excess))
        if progress is not None:
            progress(choices[-1])
    return choices


def range_steps(model, x_calib, *, bits):
    """Fixed-width steps ``s = x_hi / (2^bits - 1)`` (QA baselines: no overflow target)."""
    check_int("act_bits", bits, *ACT_BITS_RANGE)
    inputs = collect_inputs(model, x_calib)
    out = []
    for name, layer in quant_layers(model):
        x_hi = _upper_range(inputs[name])
        step = x_hi / ((1 << bits) - 1)
        out.append(StepChoice(name, step, bits,
                              overflow_rate(layer, inputs[name], step, bits,
                                            layer.accumulator.bits), x_hi))
    return out
