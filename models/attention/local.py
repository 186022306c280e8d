"""Mobile-friendly local self-attention's token partition (seed 002 §4.3.2, Alg. 2).

The tokens of an ``H×W`` grid, read in raster order (row by row), are cut into ``L/M``
consecutive partitions of ``M`` tokens; attention runs inside each partition only (cost
``4LC² + 2MLC``, Eq. 4.4, linear in ``L`` for fixed ``M``). Consecutive blocks alternate the
raster order: with the *dimension swap* the grid is read column by column (``W×H``), so a
partition that was a horizontal strip becomes a vertical one and information crosses
partitions without shifted windows. ``M = L`` is global attention.

The *relative position bias* (as Swin) is one learnable value per head and per 2-D offset
``(Δh, Δw)`` between two tokens of the image grid, ``(2H − 1)(2W − 1)`` values per head; a
partition of raster order need not be a rectangle, so the offsets are taken from each
token's grid coordinates, whatever the partition and the swap.
"""

import torch

__all__ = ["check_local_length", "merge_partitions", "partition_tokens",
           "relative_position_index"]


def check_local_length(tokens, local_length):
    """``local_length`` (None: global) as an int that divides ``tokens``."""
    m = tokens if local_length is None else int(local_length)
    if m < 1 or tokens % m:
        raise ValueError(f"local_length must divide the number of tokens {tokens}, got {m}")
    return m


def _order(h, w, swap):
    """Grid index ``h·W + w`` of each token in the raster order of the partitions."""
    idx = torch.arange(h * w).view(h, w)
    return (idx.t() if swap else idx).reshape(-1)


def partition_tokens(x, grid, local_length, swap, channels=None):
    """``(B, L, C)`` tokens of an ``H×W`` grid (row-major) -> ``(B, L/M, M, C)`` partitions.

    Without swap the tokens are already in raster order, so the partition is one reshape;
    with swap it is one transpose of the grid axes, then a reshape (Alg. 2's
    ``permute(0, 3, 2, 1).reshape(-1, M, C)``, keeping the batch axis apart so that every
    reshape is per sample). ``channels`` (default: ``x.shape[-1]``) given as a number keeps
    the function traceable by torch.fx.
    """
    h, w = grid
    n, c = h * w, x.shape[-1] if channels is None else channels
    m = check_local_length(n, local_length)
    if swap:
        x = x.reshape(-1, h, w, c).transpose(1, 2)
    return x.reshape(-1, n // m, m, c)


def merge_partitions(y, grid, swap, channels=None):
    """Inverse of :func:`partition_tokens`: ``(B, L/M, M, C)`` -> ``(B, L, C)`` (row-major)."""
    c = y.shape[-1] if channels is None else channels
    h, w = grid
    if swap:
        return y.reshape(-1, w, h, c).transpose(1, 2).reshape(-1, h * w, c)
    return y.reshape(-1, h * w, c)


def relative_position_index(grid, local_length, swap):
    """``(L/M, M, M)`` int64 index into a ``(2H − 1)(2W − 1)`` bias table: for partition ``p``
    and its tokens ``i, j``, the offset ``(h_i − h_j, w_i − w_j)`` as
    ``(Δh + H − 1)·(2W − 1) + Δw + W − 1``."""
    h, w = grid
    m = check_local_length(h * w, local_length)
    order = _order(h, w, swap).view(-1, m)                  # grid index per partition slot
    rows, cols = order // w, order % w
    dh = rows[:, :, None] - rows[:, None, :] + h - 1
    dw = cols[:, :, None] - cols[:, None, :] + w - 1
    return dh * (2 * w - 1) + dw
