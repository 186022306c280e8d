"""Pooling, resampling and layout node kinds on batch-first NCHW integer tensors.

Max pooling, nearest upsampling, pixel (un)shuffle, reshape, transpose and flatten only move
or select integers, so their semantics are PyTorch's functions of the same name. Average
pooling is an exact integer sum over the window followed by a fixed-point divide::

    S = Σ_window x                        (zero padding counts: divisor = kh·kw always,
                                           PyTorch's count_include_pad=True)
    out = floor(S / (kh·kw) + 1/2)        (round half up, as everywhere in ref.ops)

computed as ``(S·m + b) >> s`` with the constants of :func:`avg_divider`, which are exact
(equal to the formula above) for every ``|S|`` up to the window's largest sum.
"""

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from wrapkit.common.checks import check_int

from .linear import conv_output_size
from .tensors import as_int64, check_fits_int64, max_abs, pair

__all__ = ["avg_divider", "avg_pool2d", "flatten", "max_pool2d", "pad", "pixel_shuffle",
           "pixel_unshuffle", "reshape", "transpose", "upsample_nearest"]


def _windows(x, kernel, stride, padding, fill):
    """``(N, C, OH, OW, kh, kw)`` windows of NCHW ``x`` padded with ``fill``."""
    kh, kw = pair("kernel", kernel, 1)
    sh, sw = pair("stride", kernel if stride is None else stride, 1)
    ph, pw = pair("padding", padding, 0)
    if 2 * ph > kh or 2 * pw > kw:
        raise ValueError(f"padding must be at most half the kernel, got padding {ph}×{pw} for "
                         f"kernel {kh}×{kw}")
    h, w = x.shape[2:]
    oh, ow = conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)
    if oh < 1 or ow < 1:
        raise ValueError(f"kernel {kh}×{kw} does not fit the {h}×{w} input")
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
    win = sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
    return win[:, :, :oh, :ow], kh * kw


def max_pool2d(x, kernel, stride=None, padding=0):
    """Maximum over each window (``torch.nn.functional.max_pool2d``; padding never wins).

    ``stride`` defaults to ``kernel``.

    >>> max_pool2d(np.arange(16).reshape(1, 1, 4, 4), 2).tolist()
    [[[[5, 7], [13, 15]]]]
    """
    x = as_int64("x", x, ndim=4)
    win, _ = _windows(x, kernel, stride, padding, np.iinfo(np.int64).min)
    return win.max(axis=(4, 5))


def avg_divider(area, max_abs_sum):
    """Constants ``(m, b, s)`` with ``(S·m + b) >> s == floor(S/area + 1/2)`` for every
    integer ``|S| <= max_abs_sum``.

    ``s`` is the smallest shift with ``2^s >= 4·area·max_abs_sum``, ``m = ceil(2^s / area)``
    and ``b = 2^(s-1) + max_abs_sum``. Why exact: with ``e = m − 2^s/area ∈ [0, 1)``,
    ``(S·m + b) / 2^s = S/area + 1/2 + (S·e + max_abs_sum) / 2^s``, and the last term lies
    in ``[0, 1/(2·area))``, less than the distance from ``S/area + 1/2`` (a multiple of
    ``1/(2·area)``) to the next integer above it.

    >>> avg_divider(4, 1020)
    (4096, 9212, 14)
    """
    area = check_int("area", area, 1)
    max_abs_sum = check_int("max_abs_sum", max_abs_sum, 0)
    s = max(1, (4 * area * max(max_abs_sum, 1) - 1).bit_length())
    m = -(-(1 << s) // area)
    b = (1 << (s - 1)) + max_abs_sum
    check_fits_int64("|S·m| + b", max_abs_sum * m + b)
    return m, b, s


def avg_pool2d(x, kernel, stride=None, padding=0):
    """Average over each window: exact sum, then ``floor(S/area + 1/2)`` (module docstring).

    >>> avg_pool2d(np.array([[[[1, 2], [2, 2]]]]), 2).tolist()    # 7/4 = 1.75
    [[[[2]]]]
    """
    x = as_int64("x", x, ndim=4)
    win, area = _windows(x, kernel, stride, padding, 0)
    total = win.sum(axis=(4, 5))
    m, b, s = avg_divider(area, area * max_abs(x))
    return (total * m + b) >> s


def upsample_nearest(x, scale):
    """Nearest-neighbour upsampling by an integer factor: ``out[..., i, j] = x[..., i//sh, j//sw]``.

    >>> upsample_nearest(np.array([[[[1, 2]]]]), 2).tolist()
    [[[[1, 1, 2, 2], [1, 1, 2, 2]]]]
    """
    x = as_int64("x", x, ndim=4)
    sh, sw = pair("scale", scale, 1)
    return np.repeat(np.repeat(x, sh, axis=2), sw, axis=3)


def pixel_shuffle(x, factor):
    """``(N, C·r², H, W) -> (N, C, H·r, W·r)``:
    ``out[n, c, h·r + i, w·r + j] = x[n, c·r² + i·r + j, h, w]`` (PyTorch's)."""
    x = as_int64("x", x, ndim=4)
    r = check_int("factor", factor, 1)
    n, c, h, w = x.shape
    if c % (r * r):
        raise ValueError(f"pixel_shuffle needs channels divisible by factor² = {r * r}, got {c}")
    out = x.reshape(n, c // (r * r), r, r, h, w).transpose(0, 1, 4, 2, 5, 3)
    return out.reshape(n, c // (r * r), h * r, w * r)


def pixel_unshuffle(x, factor):
    """Inverse of :func:`pixel_shuffle`: ``(N, C, H·r, W·r) -> (N, C·r², H, W)``."""
    x = as_int64("x", x, ndim=4)
    r = check_int("factor", factor, 1)
    n, c, h, w = x.shape
    if h % r or w % r:
        raise ValueError(f"pixel_unshuffle needs height and width divisible by factor = {r}, "
                         f"got {h}×{w}")
    out = x.reshape(n, c, h // r, r, w // r, r).transpose(0, 1, 3, 5, 2, 4)
    return out.reshape(n, c * r * r, h // r, w // r)


def reshape(x, shape):
    """Per-sample reshape: ``(N, ...) -> (N, *shape)`` in row-major (C, H, W) order."""
    x = as_int64("x", x, min_ndim=1)
    shape = tuple(check_int("shape", s, 1) for s in shape)
    if math.prod(shape) != math.prod(x.shape[1:]):
        raise ValueError(f"shape {list(shape)} does not hold the {math.prod(x.shape[1:])} "
                         f"values of a {list(x.shape[1:])} sample")
    return x.reshape(len(x), *shape)


def transpose(x, axes):
    """Permute the axes of ``x``; ``axes`` is a permutation of ``range(x.ndim)`` that keeps the
    batch axis first (``axes[0] == 0``)."""
    x = as_int64("x", x, min_ndim=1)
    axes = tuple(check_int("axes", a, 0) for a in axes)
    if sorted(axes) != list(range(x.ndim)) or axes[0] != 0:
        raise ValueError(f"axes must be a permutation of 0..{x.ndim - 1} starting with 0 (the "
                         f"batch axis stays first), got {list(axes)}")
    return x.transpose(axes)


def pad(x, pads):
    """Zero padding of the per-sample axes: ``pads = [before_1, after_1, before_2, ...]``,
    two non-negative counts per axis after the batch axis (code 0 is the real value 0).

    >>> pad(np.array([[1, 2]]), [1, 0]).tolist()
    [[0, 1, 2]]
    """
    x = as_int64("x", x, min_ndim=1)
    pads = tuple(check_int("pads", p, 0) for p in pads)
    if len(pads) != 2 * (x.ndim - 1):
        raise ValueError(f"pads must have two entries per sample axis ({2 * (x.ndim - 1)}), "
                         f"got {len(pads)}")
    return np.pad(x, [(0, 0)] + [pads[i:i + 2] for i in range(0, len(pads), 2)])


def flatten(x):
    """``(N, ...) -> (N, prod(...))`` in row-major order (PyTorch's ``flatten(1)``)."""
    x = as_int64("x", x, min_ndim=1)
    return x.reshape(len(x), -1)
