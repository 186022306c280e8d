"""Quantized layers whose forward pass computes the exact integer pre-activation.

``QuantConv2d`` and ``QuantLinear`` receive their quantizers explicitly and compute, for a
float input ``x``:

    x_q = act_fq(x)                 integer codes (or float units of s_x, see ActQuant)
    w_q, s_w = weight_fq(weight)    integer weights, per-output-channel scale
    z_q = conv(x_q, w_q)            exact integers: no bias, zero padding (code 0)
    y_q = accumulate(z_q)           b-bit wrap, then cyclic activation when k is set
    out = s_w · s_x · y_q           back to float for BatchNorm (Fig. 2.1b)

When both operands are integers, ``z_q`` is computed in float32 only if the worst case
``fan_in · max|w_q| · max x_q`` is below 2^24, and in float64 otherwise, so ``z_q`` and
``y_q`` are always exact integers that equal ``ref.mac_dot`` bit for bit.

Each layer can record its operands and results on its last forward (``tracing``): the
step-size selection reads the float inputs, the overflow meter and the overflow penalty
read ``z_q``, and further regularizers (the carry-variance penalty R^c) can read the
integer operands, all without touching the forward code.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from wrapkit.ref import MacConfig, encode_weights

from .accumulate import accumulate
from .fake_quant import ActFakeQuant, WeightFakeQuant
from .qconfig import Accumulator, ActQuant, WeightQuant

__all__ = ["LayerTrace", "QuantConv2d", "QuantLinear", "integer_patches", "quant_layers"]

_FLOAT32_EXACT = 1 << 24  # every integer of magnitude < 2^24 is a float32


@dataclass
class LayerTrace:
    """Tensors of a layer's last forward pass (graph attached while training).

    x: float input; x_q: its integer units; w_q: integer weights (out, ...); s_w: scales (out,);
    z: exact pre-activation ``z_q``; y: accumulator output ``y_q`` (wrapped / cyclic).
    """

    x: torch.Tensor
    x_q: torch.Tensor
    w_q: torch.Tensor
    s_w: torch.Tensor
    z: torch.Tensor
    y: torch.Tensor


class _QuantLayer(nn.Module):
    """Shared machinery; subclasses define the weight shape and ``_op`` (conv or matmul)."""

    def __init__(self, weight_shape, *, weight_quant, act_quant, accumulator):
        super().__init__()
        if not isinstance(accumulator, Accumulator):
            raise TypeError(f"accumulator must be an Accumulator, not {type(accumulator).__name__}")
        self.weight = nn.Parameter(torch.empty(weight_shape))
        # nn.Conv2d / nn.Linear's default initialisation, so float baselines match torch's.
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.weight_fq = WeightFakeQuant(weight_quant)
        self.act_fq = ActFakeQuant(act_quant)
        self.accumulator = accumulator
        self.tracing = False
        self.last: LayerTrace | None = None

    # -- configuration -------------------------------------------------------------------
    @property
    def weight_quant(self) -> WeightQuant:
        return self.weight_fq.config

    @property
    def act_quant(self) -> ActQuant | None:
        return self.act_fq.config

    @act_quant.setter
    def act_quant(self, value):
        self.act_fq.config = value

    @property
    def fan_in(self):
        return self.weight[0].numel()

    @property
    def integer(self):
        """True when both operands are integers (quantized weights and activation codes)."""
        aq = self.act_quant
        return self.weight_quant.quantized and aq is not None and aq.quantized

    def mac_config(self) -> MacConfig:
        """The ``ref.MacConfig`` of one output neuron (only for integer layers)."""
        if not self.integer:
            raise ValueError("mac_config needs quantized weights and quantized activations")
        wq = self.weight_quant
        return MacConfig(self.act_quant.bits, False, wq.kind, wq.bits, self.accumulator.bits,
                         self.accumulator.k)

    # -- integer views for export and checks --------------------------------------------
    def integer_weights(self):
        """(w_q as int64 tensor, s_w float tensor) of the current weights."""
        with torch.no_grad():
            q, s = self.weight_fq(self.weight)
        if not self.weight_quant.quantized:
            raise ValueError("float weights have no integer form")
        return q.to(torch.int64), s.clone()

    def weight_codes(self):
        """Hardware weight codes (``ref.encode_weights``) as an int64 numpy array."""
        q, _ = self.integer_weights()
        return encode_weights(q.numpy(), self.weight_quant.kind, self.weight_quant.bits)

    # -- forward --------------------------------------------------------------------------
    def _exact_dtype(self, x_q):
        if not self.integer:
            return x_q.dtype
        bound = self.fan_in * self.weight_quant.qmax * self.act_quant.qmax
        return torch.float32 if bound < _FLOAT32_EXACT else torch.float64

    def forward(self, x):
        x_q = self.act_fq(x)
        w_q, s_w = self.weight_fq(self.weight)
        dtype = self._exact_dtype(x_q)
        z = self._op(x_q.to(dtype), w_q.to(dtype))
        if self.weight_quant.quantized or self.accumulator != Accumulator():
            y = accumulate(z, self.accumulator)
        else:
            y = z  # a float layer in a float network: nothing to model
        scale = (s_w * self.act_fq.step).to(y.dtype)
        out = (y * self._channel_view(scale, y)).to(x.dtype)
        if self.tracing:
            self.last = LayerTrace(x=x, x_q=x_q, w_q=w_q, s_w=s_w, z=z, y=y)
        return out

    def _channel_view(self, scale, y):
        """``scale`` (one value per output channel) shaped to broadcast against ``y``."""
        return scale.view(1, -1, *([1] * (y.dim() - 2)))

    def get_extra_state(self):
        return {"accumulator": self.accumulator.to_dict()}

    def set_extra_state(self, state):
        self.accumulator = Accumulator(**state["accumulator"])


class QuantConv2d(_QuantLayer):
    """2-D convolution with quantized operands and a modelled accumulator (no bias).

    Parameters
    ----------
    in_channels, out_channels, kernel_size, stride, padding : int
        As ``torch.nn.Conv2d`` (square kernels; zero padding, which is activation code 0).
    groups, dilation : int
        As ``torch.nn.Conv2d``; ``groups = in_channels = out_channels`` is a depthwise
        convolution (each output sums one channel's window).
    weight_quant : WeightQuant
    act_quant : ActQuant or None
        None: float input, no step selected yet.
    accumulator : Accumulator
        Default: the 32-bit reference register.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, *,
                 weight_quant: WeightQuant, act_quant: ActQuant | None = None,
                 accumulator: Accumulator = Accumulator(), groups=1, dilation=1):
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"groups must divide in_channels={in_channels} and "
                             f"out_channels={out_channels}, got {groups}")
        super().__init__((out_channels, in_channels // groups, kernel_size, kernel_size),
                         weight_quant=weight_quant, act_quant=act_quant, accumulator=accumulator)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.groups, self.dilation = groups, dilation

    def _op(self, x, w):
        return F.conv2d(x, w, None, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self):
        extra = "".join(f", {k}={v}" for k, v in (("groups", self.groups),
                                                  ("dilation", self.dilation)) if v != 1)
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}{extra}, "
                f"accumulator={self.accumulator}")


class QuantLinear(_QuantLayer):
    """Fully connected layer with quantized operands and a modelled accumulator (no bias)."""

    def __init__(self, in_features, out_features, *, weight_quant: WeightQuant,
                 act_quant: ActQuant | None = None, accumulator: Accumulator = Accumulator()):
        super().__init__((out_features, in_features), weight_quant=weight_quant,
                         act_quant=act_quant, accumulator=accumulator)
        self.in_features, self.out_features = in_features, out_features

    def _op(self, x, w):
        return F.linear(x, w)

    def _channel_view(self, scale, y):
        # Output features are the last axis, also for (N, tokens, features) inputs.
        return scale.view(*([1] * (y.dim() - 1)), -1)

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}, accumulator={self.accumulator}"


def quant_layers(model):
    """``[(name, layer)]`` of every QuantConv2d / QuantLinear in ``model``, in forward order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, _QuantLayer)]


def integer_patches(layer, x_q):
    """Operand rows as the MAC sees them: ``(rows, fan_in)`` int64 numpy, one row per output.

    For a convolution the rows are the unfolded receptive fields in (batch, y, x) order, so
    ``ref.mac_dot(rows[:, None, :], layer.weight_codes().reshape(out, -1)[None], cfg)`` gives
    the outputs in (batch, y, x, channel) order.
    """
    x_q = x_q.detach().to(torch.float64)
    if isinstance(layer, QuantConv2d):
        cols = F.unfold(x_q, layer.kernel_size, padding=layer.padding, stride=layer.stride)
        rows = cols.transpose(1, 2).reshape(-1, cols.shape[1])
    else:
        rows = x_q.reshape(-1, layer.in_features)
    return rows.round().to(torch.int64).numpy()

