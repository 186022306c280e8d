"""MAC-type node kinds: conv2d, linear and matmul of two activation tensors.

Each node forms exact integer dot products and finishes them with an
:class:`~wrapkit.ref.ops.accumulator.AccumulatorMode` (exact, wrap, cyclic or saturate); all
three reduce to :func:`~wrapkit.ref.ops.accumulator.integer_matmul`, whose reduction order
(needed for ``saturate`` only) is the MAC's stream order:

* conv2d: ``(c_in, ky, kx)`` within the group, ``c_in`` outermost — PyTorch's weight layout
  ``(C_out, C_in / groups, kh, kw)`` read row-major;
* linear: input feature ``0 .. F_in − 1``;
* matmul: the shared dimension ``0 .. K − 1``.

Operands are integers (activation codes, and weight *values*, i.e. ``ref.decode_weights``
of the codes); zero padding pads with the integer 0. There is no bias: an integer bias is
part of the requantization that follows (:mod:`wrapkit.ref.requant`).
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from wrapkit.common.checks import check_int

from .accumulator import AccumulatorMode, integer_matmul
from .tensors import as_int64, max_abs, narrowest_int, pair

__all__ = ["conv2d", "conv_output_size", "conv_patches", "conv_rows", "linear", "matmul"]


def conv_output_size(size, kernel, stride=1, padding=0, dilation=1):
    """Output length ``floor((size + 2·padding − dilation·(kernel − 1) − 1) / stride) + 1``
    (PyTorch's)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _conv_geometry(x, kernel, stride, padding, dilation):
    """Checked NCHW ``x`` and the (height, width) pairs of kernel, stride, padding, dilation
    and output size; ValueError when the dilated kernel does not fit the padded input."""
    x = as_int64("x", x, ndim=4)
    kh, kw = pair("kernel", kernel, 1)
    (sh, sw), (ph, pw), (dh, dw) = (pair("stride", stride, 1), pair("padding", padding, 0),
                                    pair("dilation", dilation, 1))
    h, w = x.shape[2:]
    oh, ow = conv_output_size(h, kh, sh, ph, dh), conv_output_size(w, kw, sw, pw, dw)
    if oh < 1 or ow < 1:
        raise ValueError(f"kernel {kh}×{kw} (dilation {dh}×{dw}, padding {ph}×{pw}) does not "
                         f"fit the {h}×{w} input")
    return x, (kh, kw), (sh, sw), (ph, pw), (dh, dw), (oh, ow)


def conv_patches(x, kernel, stride=1, padding=0, dilation=1):
    """Receptive fields of NCHW ``x``: int64 ``(N, C, kh, kw, OH, OW)``.

    ``out[n, c, ky, kx, oy, ox] = x_padded[n, c, oy·sh + ky·dh, ox·sw + kx·dw]``.
    """
    x, (kh, kw), (sh, sw), (ph, pw), (dh, dw), (oh, ow) = _conv_geometry(
        x, kernel, stride, padding, dilation)
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    out = np.empty((n, c, kh, kw, oh, ow), dtype=np.int64)
    for ky in range(kh):
        for kx in range(kw):
            y0, x0 = ky * dh, kx * dw
            out[:, :, ky, kx] = xp[:, :, y0:y0 + sh * (oh - 1) + 1:sh,
                                   x0:x0 + sw * (ow - 1) + 1:sw]
    return out


def conv2d(x, weight, *, stride=1, padding=0, dilation=1, groups=1, acc=AccumulatorMode(),
           gemm=None):
    """2-D convolution of integer codes with integer weights, then the accumulator.

    Parameters
    ----------
    x : int array (N, C_in, H, W)
    weight : int array (C_out, C_in / groups, kh, kw)
    stride, padding, dilation : int or (int, int)
        As ``torch.nn.functional.conv2d`` (padding with zeros).
    groups : int
        Divides ``C_in`` and ``C_out``; ``groups = C_in`` with one filter per group is a
        depthwise convolution.
    acc : AccumulatorMode
    gemm : callable or None
        Exact GEMM kernel (:func:`~wrapkit.ref.ops.accumulator.integer_matmul`).

    Returns
    -------
    int64 array (N, C_out, OH, OW)

    >>> x = np.arange(9).reshape(1, 1, 3, 3); w = np.ones((1, 1, 2, 2), dtype=np.int64)
    >>> conv2d(x, w).tolist()
    [[[[8, 12], [20, 24]]]]
    """
    x = as_int64("x", x, ndim=4)
    weight = as_int64("weight", weight, ndim=4)
    groups = check_int("groups", groups, 1)
    c_out, c_group, kh, kw = weight.shape
    c_in = x.shape[1]
    if c_in % groups or c_out % groups:
        raise ValueError(f"groups must divide both C_in={c_in} and C_out={c_out}, got {groups}")
    if c_group != c_in // groups:
        raise ValueError(f"weight has {c_group} input channels per group, but x has "
                         f"{c_in} channels in {groups} group(s)")
    # Wrap, cyclic and exact accumulators are order-free (module docstring of .accumulator),
    # so their rows may take the faster (ky, kx, c) order with the weights permuted alike.
    channels_last = acc.mode != "saturate"
    rows, (oh, ow) = conv_rows(x, (kh, kw), stride, padding, dilation, groups,
                               channels_last=channels_last)
    n = len(x)
    w = weight.reshape(groups, c_out // groups, c_group, kh, kw)
    cols = (w.transpose(0, 3, 4, 2, 1) if channels_last else w.transpose(0, 2, 3, 4, 1))
    cols = cols.reshape(groups, c_group * kh * kw, c_out // groups)
    z = integer_matmul(rows, cols[None], acc, gemm, a_max=max_abs(x))   # (N, G, L, C_out/G)
    return z.transpose(0, 1, 3, 2).reshape(n, c_out, oh, ow)


def conv_rows(x, kernel, stride=1, padding=0, dilation=1, groups=1, *, channels_last=False):
    """The GEMM operand of a convolution: contiguous ``(N, G, OH·OW, C_g·kh·kw)``, one row per
    output position, and ``(OH, OW)``.

    Each row runs over the group's reduction index ``(c, ky, kx)`` (the MAC's stream order,
    which a saturating accumulator needs), or ``(ky, kx, c)`` with ``channels_last`` (whole
    channel vectors copied at once: faster, for the order-free accumulators). The same values
    as :func:`conv_patches` rearranged, copied once, in the narrowest integer type that holds
    ``x`` (a quarter or an eighth of int64's memory traffic).
    """
    x, (kh, kw), (sh, sw), (ph, pw), (dh, dw), (oh, ow) = _conv_geometry(
        x, kernel, stride, padding, dilation)
    n, c, h, w = x.shape
    narrow = narrowest_int(min(int(x.min()), 0) if x.size else 0,
                           max(int(x.max()), 0) if x.size else 0)
    span = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
    if channels_last:
        xp = np.pad(x.astype(narrow).transpose(0, 2, 3, 1), ((0, 0), (ph, ph), (pw, pw), (0, 0)))
        win = sliding_window_view(xp, span, axis=(1, 2))[:, ::sh, ::sw, :, ::dh, ::dw]
        win = win[:, :oh, :ow].reshape(n, oh, ow, groups, c // groups, kh, kw)
        win = win.transpose(0, 3, 1, 2, 5, 6, 4)                      # (N, G, OH, OW, kh, kw, Cg)
    else:
        xp = np.pad(x.astype(narrow), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        win = sliding_window_view(xp, span, axis=(2, 3))[:, :, ::sh, ::sw, ::dh, ::dw]
        win = win[:, :, :oh, :ow].reshape(n, groups, c // groups, oh, ow, kh, kw)
        win = win.transpose(0, 1, 3, 4, 2, 5, 6)                      # (N, G, OH, OW, Cg, kh, kw)
    return np.ascontiguousarray(win).reshape(n, groups, oh * ow, -1), (oh, ow)


def linear(x, weight, *, acc=AccumulatorMode(), gemm=None):
    """``x @ weight.T`` over the last axis: ``(N, ..., F_in)`` × ``(F_out, F_in)``.

    >>> linear(np.array([[1, 2, 3]]), np.array([[1, 0, -1], [2, 2, 2]])).tolist()
    [[-2, 12]]
    """
    x = as_int64("x", x, min_ndim=2)
    weight = as_int64("weight", weight, ndim=2)
    if x.shape[-1] != weight.shape[1]:
        raise ValueError(f"x has {x.shape[-1]} features but weight expects {weight.shape[1]}")
    return integer_matmul(x, weight.T, acc, gemm)


def matmul(a, b, *, acc=AccumulatorMode(), gemm=None):
    """Batched product of two activation tensors (attention's ``Q·Kᵀ`` and ``A·V``).

    Parameters
    ----------
    a : int array (N, ..., M, K)
    b : int array (N, ..., K, P)
        Same leading (batch, head) axes; transpose ``K`` first with
        :func:`~wrapkit.ref.ops.shape.transpose` for ``Q·Kᵀ``.
    acc : AccumulatorMode

    Returns
    -------
    int64 array (N, ..., M, P)
    """
    a = as_int64("a", a, min_ndim=3)
    b = as_int64("b", b, min_ndim=3)
    if a.shape[:-2] != b.shape[:-2]:
        raise ValueError(f"a and b must have the same leading axes, got {list(a.shape[:-2])} "
                         f"and {list(b.shape[:-2])}")
    return integer_matmul(a, b, acc, gemm)
