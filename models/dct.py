"""Block-DCT front end: images as frequency channels (seed 000, chapters 2–3).

The pipeline of the seed's Figure 3.2, for gray images:

1. **resize** by an integer factor (bilinear), then zero-pad to a multiple of the block;
2. **level shift**: pixels ``p`` in 0..255 become ``p - 128`` (JPEG's shift; it moves the DC
   coefficient's range to be symmetric and is what the integer stem computes);
3. the orthonormal 8×8 **block DCT-II** of every non-overlapping block, computed as one fixed
   stride-8 convolution whose 64 output channels are the 64 basis images
   (:func:`dct_basis`); the result is already **reorganised**: channel ``u·8 + v`` holds
   coefficient ``(u, v)`` (``u`` vertical, ``v`` horizontal frequency) of every block, at the
   block's position, so an ``H×W`` image becomes ``64 × H/8 × W/8``;
4. **selection** of channels: the top-left ``s×s`` square (:func:`square_channels`), the first
   ``k`` in zig-zag order (:func:`zigzag_channels`, JPEG's order, Figure 3.6) or those whose
   channel-wise Grad-CAM score passes a threshold (:func:`heatmap_channels`, scores from
   :mod:`wrapkit.models.dct_heatmap`).

Fashion-MNIST is gray, so there is only the luminance Y: 64 channels per block where the
seed's RGB images give 3 × 64 = 192 (Y, Cb, Cr). For ``C``-channel input each channel is
transformed separately (channel ``c·64 + k``); no colour conversion is done here.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BLOCK", "LEVEL_SHIFT", "DCTFrontEnd", "block_dct", "dct_basis", "heatmap_channels",
           "pad_to_block", "resize", "square_channels", "zigzag_channels", "zigzag_order"]

#: Side of a DCT block (pixels).
BLOCK = 8
#: Subtracted from 8-bit pixels before the transform (JPEG's level shift).
LEVEL_SHIFT = 128


def dct_basis(n=BLOCK):
    """The ``n²`` orthonormal 2-D DCT-II basis images, shape ``(n², n, n)`` float64.

    ``basis[u·n + v, y, x] = c(u) c(v) cos((2y+1)uπ/2n) cos((2x+1)vπ/2n)`` with
    ``c(0) = √(1/n)`` and ``c(u>0) = √(2/n)``; a block's coefficient ``(u, v)`` is the sum of
    the block times ``basis[u·n + v]``, the same numbers as ``scipy.fft.dctn(block,
    norm="ortho")[u, v]``.
    """
    k = np.arange(n)
    c = np.where(k == 0, math.sqrt(1.0 / n), math.sqrt(2.0 / n))
    cos = c[:, None] * np.cos((2 * k[None, :] + 1) * k[:, None] * math.pi / (2 * n))  # (u, y)
    return np.einsum("uy,vx->uvyx", cos, cos).reshape(n * n, n, n)


def block_dct(x, n=BLOCK):
    """Block DCT of ``x`` (N, C, H, W) as a stride-``n`` convolution: (N, C·n², H/n, W/n).

    H and W must be multiples of ``n`` (:func:`pad_to_block`).
    """
    if x.shape[-1] % n or x.shape[-2] % n:
        raise ValueError(f"image size {tuple(x.shape[-2:])} is not a multiple of the block "
                         f"{n}; pad it first (pad_to_block)")
    c = x.shape[1]
    w = torch.as_tensor(dct_basis(n), dtype=x.dtype, device=x.device).unsqueeze(1)
    return F.conv2d(x, w.repeat(c, 1, 1, 1), stride=n, groups=c)


def resize(x, factor):
    """Bilinear resize of (N, C, H, W) by an integer ``factor`` (1: unchanged)."""
    if factor == 1:
        return x
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)


def pad_to_block(x, n=BLOCK, value=0.0):
    """Pad H and W symmetrically (extra row/column at the end) to multiples of ``n``."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % n, (-w) % n
    if not ph and not pw:
        return x
    return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), value=value)


def zigzag_order(n=BLOCK):
    """Channel indices ``u·n + v`` in JPEG's zig-zag order (DC first)."""
    cells = [(u, v) for u in range(n) for v in range(n)]
    # Anti-diagonal s = u + v; odd diagonals run down (u increasing), even ones up.
    cells.sort(key=lambda uv: (uv[0] + uv[1], uv[0] if (uv[0] + uv[1]) % 2 else uv[1]))
    return [u * n + v for u, v in cells]


def zigzag_channels(k, n=BLOCK):
    """The first ``k`` channels in zig-zag order."""
    if not 1 <= k <= n * n:
        raise ValueError(f"k must be in [1, {n * n}], got {k}")
    return sorted(zigzag_order(n)[:k])


def square_channels(side, n=BLOCK):
    """The top-left ``side × side`` square of frequencies (``side²`` channels)."""
    if not 1 <= side <= n:
        raise ValueError(f"side must be in [1, {n}], got {side}")
    return [u * n + v for u in range(side) for v in range(side)]


def heatmap_channels(scores, threshold):
    """Channels whose score, divided by the largest score, is above ``threshold``.

    ``scores`` (one per channel, e.g. :func:`wrapkit.models.dct_heatmap.channel_scores`);
    threshold 0 keeps every channel with a positive score; the best channel is always kept.
    """
    s = np.asarray(scores, dtype=np.float64)
    top = s.max()
    if not top > 0:
        raise ValueError("no channel has a positive score")
    rel = s / top
    return [int(i) for i in np.flatnonzero((rel > threshold) | (rel == 1.0))]


class DCTFrontEnd(nn.Module):
    """Pixels in [0, 1] (N, C, H, W) -> selected, standardised DCT channels.

    Parameters
    ----------
    factor : int
        Resize factor before the transform (the seed's Table 3.5).
    channels : list of int or None
        Kept channels (None: all ``C·64``).
    mean, std : array-like or None
        Per kept channel; set by :meth:`fit` (coefficient ranges differ by orders of magnitude,
        the DC term spans ±1024, high frequencies a few units).
    """

    def __init__(self, factor=1, channels=None, in_channels=1):
        super().__init__()
        self.factor = int(factor)
        n_all = in_channels * BLOCK * BLOCK
        idx = list(range(n_all)) if channels is None else [int(c) for c in channels]
        if not idx or min(idx) < 0 or max(idx) >= n_all:
            raise ValueError(f"channels must be indices in [0, {n_all}), got {channels!r}")
        self.register_buffer("index", torch.tensor(idx, dtype=torch.long))
        self.register_buffer("mean", torch.zeros(len(idx)))
        self.register_buffer("std", torch.ones(len(idx)))

    @property
    def out_channels(self):
        return len(self.index)

    def coefficients(self, x):
        """All DCT channels of pixels ``x`` in [0, 1] (level-shifted 8-bit units)."""
        p = resize(x * 255.0, self.factor)
        return block_dct(pad_to_block(p) - LEVEL_SHIFT)

    def raw(self, x):
        return self.coefficients(x).index_select(1, self.index)

    @torch.no_grad()
    def fit(self, x):
        """Per-channel mean and standard deviation from a sample of pixels ``x``."""
        y = self.raw(x)
        self.mean.copy_(y.mean(dim=(0, 2, 3)))
        self.std.copy_(y.std(dim=(0, 2, 3)).clamp_min(1e-3))
        return self

    def forward(self, x):
        y = self.raw(x)
        return (y - self.mean.view(1, -1, 1, 1)) / self.std.view(1, -1, 1, 1)
