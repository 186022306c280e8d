"""Exact GEMM kernels for the graph engine's MAC nodes (pure numpy).

A MAC node's accumulator ends at a function of the exact dot products (``wrap(z)``,
``cyclic(z)``, ``z``; docs/datapath.md §6.1), so the dot products may come from any kernel
that returns them exactly. ``int64`` is numpy's integer matmul (no BLAS: exact, slow).
``blas`` hands the same integers to the float BLAS when that is exact:

    bound = K · max|a| · max|b|      (every product and every partial sum, in any order,
                                      is an integer of magnitude <= bound)

float32 represents every integer below 2^24 and float64 every integer below 2^53, and the sum
of two such integers is exact when its magnitude stays below the limit, so a float32 GEMM
is exact when ``bound < 2^24`` and a float64 GEMM when ``bound < 2^53``, whatever order or
fused multiply-adds the BLAS uses. Above 2^53 ``blas`` falls back to int64. The bound is
taken from the operands of each call (the largest codes actually present), which is what
exactness needs. A torch ``_int_mm`` kernel (int32 sums, exact below 2^31) would have to live
outside ``ref/`` (torch-free); none is provided.
"""

import numpy as np

from ..ops.tensors import max_abs

__all__ = ["FLOAT32_EXACT", "FLOAT64_EXACT", "GEMMS", "blas_gemm", "gemm_dtype"]

FLOAT32_EXACT = 1 << 24
FLOAT64_EXACT = 1 << 53


def gemm_dtype(fan_in, a_max, b_max):
    """The narrowest exact GEMM type for the bound ``fan_in·a_max·b_max`` (module docstring).

    >>> gemm_dtype(576, 255, 1), gemm_dtype(576, 255, 127), gemm_dtype(1 << 20, 1 << 20, 1 << 20)
    (<class 'numpy.float32'>, <class 'numpy.float64'>, <class 'numpy.int64'>)
    """
    bound = fan_in * a_max * b_max
    if bound < FLOAT32_EXACT:
        return np.float32
    return np.float64 if bound < FLOAT64_EXACT else np.int64


def blas_gemm(a, b, bound=None):
    """``a @ b`` of integer arrays, exact, through float BLAS where that is exact.

    ``bound``: the largest ``|partial sum|`` if the caller knows it (``integer_matmul``
    passes it), else computed from the operands.
    """
    if bound is None:
        bound = a.shape[-1] * max_abs(a) * max_abs(b)
    dtype = gemm_dtype(bound, 1, 1)
    if dtype is np.int64:
        return np.matmul(a.astype(np.int64), b.astype(np.int64))
    # Contiguous copies: numpy calls BLAS only for contiguous (or simply strided) matrices.
    out = _matmul_2d(np.ascontiguousarray(a, dtype=dtype), np.ascontiguousarray(b, dtype=dtype))
    return out.astype(np.int64)


def _matmul_2d(a, b):
    """``numpy.matmul`` with the stack folded into one 2-D GEMM where ``b`` is shared.

    numpy runs a stack of matrices as one small GEMM each (16× slower than one large GEMM
    for a batch of convolution rows); when ``b`` broadcasts over the leading axes of ``a``
    the rows of every matrix of ``a`` can go through a single GEMM instead. Convolution
    groups (``b`` of shape (1, G, K, N)) run one such GEMM per group.
    """
    lead_b = b.shape[:-2]
    if all(d == 1 for d in lead_b):
        out = a.reshape(-1, a.shape[-1]) @ b.reshape(b.shape[-2:])
        lead = np.broadcast_shapes(a.shape[:-2], lead_b)
        return out.reshape(*lead, a.shape[-2], b.shape[-1])
    if a.ndim == b.ndim == 4 and b.shape[0] == 1 and a.shape[1] == b.shape[1]:
        return np.concatenate([_matmul_2d(a[:, g:g + 1], b[:, g:g + 1])
                               for g in range(b.shape[1])], axis=1)
    return np.matmul(a, b)


#: The engine's GEMM backends: name -> kernel (None: numpy int64 inside ref.ops).
GEMMS = {"int64": None, "blas": blas_gemm}
