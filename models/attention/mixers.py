"""Token mixers: multi-head self-attention (global, local, TWIST, temperature, diagonal
masking) and the depthwise-convolution mixer of MetaFormer's early stages.

:class:`MultiHeadAttention` is built from wrapkit's quantized modules (:class:`TokenLinear`
projections, :class:`~wrapkit.models.qops.QuantMatmul`,
:class:`~wrapkit.models.qops.QuantSoftmax`, :class:`~wrapkit.models.attention.twist.QuantTwist`),
which are their float counterparts until quantizers are set: the same module trains in float
and, once :func:`wrapkit.models.attention.quant.quantize_attention` has set its quantizers,
computes the integers of the exported graph. Its options (:class:`AttentionConfig`):

* ``local_length`` ``M`` and ``swap`` — seed 002's mobile-friendly **local self-attention**
  (:mod:`.local`); ``rel_pos`` its relative position bias.
* ``twist_t`` — seed 000's **TWIST** after the softmax (learnable ``s`` per layer).
* ``temperature`` — the softmax's temperature ``τ'`` in ``softmax(τ'·QKᵀ/√d)`` (seed 000
  Table 4.6).
* ``diagonal_mask`` — Lee et al.'s **locality self-attention** ("Vision Transformer for
  Small-Size Datasets", 2021; the "LSA" of seed 000 Table 4.7, not seed 002's): the
  diagonal of ``QKᵀ`` is masked out and the temperature is learnable. Called
  ``diagonal_mask`` here so it is never confused with local self-attention.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..accumulate import accumulate
from ..fake_quant import RoundSTE
from ..layers import LayerTrace, QuantLinear
from ..qconfig import WeightQuant
from ..qops import QuantMatmul, QuantSoftmax
from .local import check_local_length, merge_partitions, partition_tokens, \
    relative_position_index
from .twist import QuantTwist

__all__ = ["AttentionConfig", "DepthwiseMixer", "Mlp", "MultiHeadAttention", "TokenLinear"]

_FLOAT32_EXACT = 1 << 24


class TokenLinear(QuantLinear):
    """:class:`~wrapkit.models.layers.QuantLinear` whose input codes are **signed**: tokens
    after a layer norm or an attention output are signed, and ``act_quant``'s ``bits`` then
    mean ``clamp(round(x/step), −2^(bits−1), 2^(bits−1) − 1)``. Without ``act_quant``, or
    with ``signed_input=False``, it is a QuantLinear."""

    def __init__(self, in_features, out_features, *, weight_quant=WeightQuant("float"),
                 signed_input=True, **kw):
        super().__init__(in_features, out_features, weight_quant=weight_quant, **kw)
        self.signed_input = signed_input

    def forward(self, x):
        aq = self.act_quant
        if not self.signed_input or aq is None or aq.bits is None:
            return super().forward(x)
        half = 1 << (aq.bits - 1)
        x_q = RoundSTE.apply(torch.clamp(x / aq.step, -half, half - 1))
        w_q, s_w = self.weight_fq(self.weight)
        top = self.weight_quant.qmax if self.weight_quant.quantized else None
        exact32 = top is not None and self.fan_in * top * half < _FLOAT32_EXACT
        dtype = torch.float32 if exact32 else torch.float64
        z = F.linear(x_q.to(dtype), w_q.to(dtype))
        y = accumulate(z, self.accumulator)
        out = (y * (s_w * aq.step).to(y.dtype).view(*([1] * (y.dim() - 1)), -1)).to(x.dtype)
        if self.tracing:
            self.last = LayerTrace(x=x, x_q=x_q, w_q=w_q, s_w=s_w, z=z, y=y)
        return out


@dataclass(frozen=True)
class AttentionConfig:
    """Options of :class:`MultiHeadAttention` (module docstring). ``local_length=None`` is
    global attention; ``twist_t=None`` no TWIST."""

    head_dim: int = 16
    local_length: int | None = None
    swap: bool = False
    rel_pos: bool = False
    twist_t: float | None = None
    twist_s: float = 0.5
    twist_learnable: bool = True
    temperature: float = 1.0
    diagonal_mask: bool = False


class MultiHeadAttention(nn.Module):
    """Multi-head self-attention over ``(B, L, C)`` tokens of an ``H×W`` grid.

    Parameters
    ----------
    dim : int
        Token width ``C`` (a multiple of ``config.head_dim``).
    grid : (int, int)
        ``(H, W)``, ``L = H·W`` tokens in row-major order.
    config : AttentionConfig
    swap : bool
        This block is one that swaps (odd blocks); it does when ``config.swap`` is set and
        the attention is local.
    """

    def __init__(self, dim, grid, config=AttentionConfig(), *, swap=False):
        super().__init__()
        if dim % config.head_dim:
            raise ValueError(f"dim {dim} must be a multiple of head_dim {config.head_dim}")
        self.config, self.grid, self.dim = config, tuple(grid), dim
        self.heads, self.head_dim = dim // config.head_dim, config.head_dim
        self.tokens = grid[0] * grid[1]
        self.local_length = check_local_length(self.tokens, config.local_length)
        self.swap = bool(swap and config.swap and config.local_length is not None)
        self.q, self.k, self.v = (TokenLinear(dim, dim) for _ in range(3))
        self.qk = QuantMatmul()
        self.softmax = QuantSoftmax()
        self.twist = QuantTwist(config.twist_t, config.twist_s,
                                learnable=config.twist_learnable) \
            if config.twist_t is not None else None
        self.av = QuantMatmul()
        self.proj = TokenLinear(dim, dim)
        self.scale = config.temperature / math.sqrt(self.head_dim)
        # Lee et al.: a learnable temperature, initialised to the usual 1/√d.
        self.log_scale = nn.Parameter(torch.tensor(math.log(self.scale))) \
            if config.diagonal_mask else None
        if config.rel_pos:
            h, w = self.grid
            self.bias_table = nn.Parameter(torch.zeros(self.heads, (2 * h - 1) * (2 * w - 1)))
            nn.init.trunc_normal_(self.bias_table, std=0.02)
            self.register_buffer("bias_index", relative_position_index(
                self.grid, self.local_length, self.swap), persistent=False)
        else:
            self.bias_table = None

    def set_local_length(self, local_length):
        """Evaluate with another partition length (seed 002 Table 4.7: no fine-tuning)."""
        self.local_length = check_local_length(self.tokens, local_length)
        if self.bias_table is not None:
            self.bias_index = relative_position_index(self.grid, self.local_length, self.swap)

    def forward(self, x):
        m, h, d = self.local_length, self.heads, self.head_dim
        parts = self.tokens // m
        # (B, P, M, C) partitions (P = 1: global), then heads: (B, P, heads, M, d).
        x = partition_tokens(x, self.grid, m, self.swap, self.dim)
        q = self.q(x).reshape(-1, parts, m, h, d).permute(0, 1, 3, 2, 4)
        k = self.k(x).reshape(-1, parts, m, h, d).permute(0, 1, 3, 4, 2)     # Kᵀ
        v = self.v(x).reshape(-1, parts, m, h, d).permute(0, 1, 3, 2, 4)
        scores = self.qk(q, k)
        scores = scores * (self.log_scale.exp() if self.log_scale is not None else self.scale)
        if self.bias_table is not None:
            scores = scores + self.bias_table[:, self.bias_index].transpose(0, 1)
        if self.config.diagonal_mask:
            eye = torch.eye(m, dtype=torch.bool, device=scores.device)
            scores = scores.masked_fill(eye, float("-inf"))
        a = self.softmax(scores)
        if self.twist is not None:
            a = self.twist(a)
        y = self.av(a, v).permute(0, 1, 3, 2, 4).reshape(-1, parts, m, h * d)
        return merge_partitions(self.proj(y), self.grid, self.swap, self.dim)


class Mlp(nn.Module):
    """The channel mixer: ``C -> ratio·C -> GELU -> C``."""

    def __init__(self, dim, ratio=2):
        super().__init__()
        self.fc1 = TokenLinear(dim, ratio * dim)
        self.act = nn.GELU()
        self.fc2 = TokenLinear(ratio * dim, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class DepthwiseMixer(nn.Module):
    """MetaFormer's cheap token mixer: depthwise 3×3 convolution + BatchNorm over the grid."""

    def __init__(self, dim, grid):
        super().__init__()
        self.grid = tuple(grid)
        self.conv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=False)
        self.bn = nn.BatchNorm2d(dim)

    def forward(self, x):
        h, w = self.grid
        c = x.shape[-1]
        y = self.bn(self.conv(x.transpose(1, 2).reshape(-1, c, h, w)))
        return y.flatten(2).transpose(1, 2)
