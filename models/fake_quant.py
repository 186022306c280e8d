"""Fake-quant modules: the behaviour behind :class:`WeightQuant` and :class:`ActQuant`.

Both modules return *integer-valued* float tensors (the codes ``w_q``, ``x_q``) rather than
de-quantized values, so the layer can form the exact integer pre-activation
``z_q = Σ w_q x_q`` with an ordinary convolution and apply the scales afterwards
(``z = s_w · s_x · z_q``, eq. 2.1). Gradients are straight-through: the custom autograd
functions below return exact codes in the forward pass (``u + (q - u).detach()`` would not:
its float rounding can turn 3 into 2.9999998) and pass gradients to the latent values in the
backward pass, clipped to the representable range for activations.
"""

import torch
from torch import nn

from .qconfig import ActQuant, WeightQuant

__all__ = ["ActFakeQuant", "RoundSTE", "WeightFakeQuant"]

# Smallest scale used when a channel's weights are all zero; any positive value works
# because the codes are then all zero too.
_TINY = 1e-12


class _SignSTE(torch.autograd.Function):
    """sign with sign(0) = +1; gradient passed straight through."""

    @staticmethod
    def forward(ctx, u):
        return torch.where(u >= 0, 1.0, -1.0).to(u.dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad


class _TernarySTE(torch.autograd.Function):
    """sign(u)·[|u| > delta]; gradient passed straight through."""

    @staticmethod
    def forward(ctx, u, delta):
        return torch.sign(u) * (u.abs() > delta).to(u.dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class RoundSTE(torch.autograd.Function):
    """round(u), optionally clamped to [lo, hi]; gradient straight through everywhere
    (weights: the scale is chosen so that the range covers every weight, up to the rounding
    of w / s_w)."""

    @staticmethod
    def forward(ctx, u, lo=None, hi=None):
        q = torch.round(u)
        return q if lo is None else q.clamp_(lo, hi)

    @staticmethod
    def backward(ctx, grad):
        return grad, None, None


class _ActCodes(torch.autograd.Function):
    """round(clamp(x / step, 0, qmax)); gradient 1/step inside [0, qmax], 0 where clipped.

    One function rather than division, clamp and rounding as separate autograd nodes: the
    clipped straight-through gradient becomes one saved 0/1 factor and a multiplication
    (autograd's clamp backward uses ``torch.where``, which is slow on CPU).
    """

    @staticmethod
    def forward(ctx, x, step, qmax):
        u = x / step
        codes = torch.clamp(u, 0, qmax)
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward((codes == u).to(u.dtype))
            ctx.step = step
        # rounding after clamping to integer bounds equals clamping after rounding
        return codes.round_()

    @staticmethod
    def backward(ctx, grad):
        (inside,) = ctx.saved_tensors
        return (grad * inside).div_(ctx.step), None, None


def _channel_view(s, w):
    return s.view(-1, *([1] * (w.dim() - 1)))


class WeightFakeQuant(nn.Module):
    """Latent float weights -> (integer codes ``w_q``, per-output-channel scale ``s_w``).

    The scale is computed from the current weights and treated as a constant in the backward
    pass, so ``dL/dw = dL/dw_q / s_w``: together with the layer's multiplication by ``s_w``
    this is the usual straight-through gradient of ``s_w · w_q`` with respect to ``w``.

    Examples
    --------
    >>> fq = WeightFakeQuant(WeightQuant("binary"))
    >>> q, s = fq(torch.tensor([[0.3, -0.1]]))
    >>> q.tolist(), round(s.item(), 6)
    ([[1.0, -1.0]], 0.2)
    """

    def __init__(self, config: WeightQuant):
        super().__init__()
        if not isinstance(config, WeightQuant):
            raise TypeError(f"config must be a WeightQuant, not {type(config).__name__}")
        self.config = config

    def scale(self, w):
        """Per-output-channel scale ``s_w`` (shape ``(out,)``), without gradient."""
        cfg = self.config
        with torch.no_grad():
            a = w.detach().abs().flatten(1)
            if cfg.kind == "float":
                return torch.ones(w.shape[0], dtype=w.dtype, device=w.device)
            if cfg.kind == "binary":
                s = a.mean(1)
            elif cfg.kind == "ternary":
                keep = a > cfg.threshold * a.mean(1, keepdim=True)
                s = (a * keep).sum(1) / keep.sum(1).clamp_min(1)
            else:
                s = a.amax(1) / cfg.qmax
            return s.clamp_min(_TINY)

    def forward(self, w):
        cfg = self.config
        s = self.scale(w)
        if cfg.kind == "float":
            return w, s
        u = w / _channel_view(s, w)
        if cfg.kind == "binary":
            q = _SignSTE.apply(u)
        elif cfg.kind == "ternary":
            # Δ/s per channel, as a tensor broadcast against u.
            a = w.detach().abs().flatten(1)
            delta = cfg.threshold * a.mean(1) / s
            q = _TernarySTE.apply(u, _channel_view(delta, w))
        else:
            q = RoundSTE.apply(u, -cfg.qmax, cfg.qmax)
        return q, s

    def extra_repr(self):
        return repr(self.config)


class ActFakeQuant(nn.Module):
    """A layer's float input -> integer units of ``s_x`` (codes when bits are set).

    ``config=None`` means float activations with ``s_x = 1`` (before a step is selected).
    The config is part of the module's state (``get_extra_state``), so checkpoints carry the
    selected steps and bit widths.

    Examples
    --------
    >>> fq = ActFakeQuant(ActQuant(step=0.25, bits=3))
    >>> fq(torch.tensor([0.1, 0.9, 5.0])).tolist()
    [0.0, 4.0, 7.0]
    """

    def __init__(self, config: ActQuant | None = None):
        super().__init__()
        self.config = config

    @property
    def config(self):
        return self._config

    @config.setter
    def config(self, value):
        if value is not None and not isinstance(value, ActQuant):
            raise TypeError(f"config must be an ActQuant or None, not {type(value).__name__}")
        self._config = value

    @property
    def step(self):
        """``s_x`` (1.0 when no step has been selected)."""
        return 1.0 if self._config is None else self._config.step

    def forward(self, x):
        cfg = self._config
        if cfg is None:
            return x
        if cfg.bits is None:
            return x / cfg.step
        return _ActCodes.apply(x, cfg.step, cfg.qmax)

    def get_extra_state(self):
        return None if self._config is None else self._config.to_dict()

    def set_extra_state(self, state):
        self.config = None if state is None else ActQuant(**state)

    def extra_repr(self):
        return repr(self._config)
