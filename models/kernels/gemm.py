"""Bit-packed binary/ternary GEMM on scalar CPUs, and the plain int32 loop it replaces.

The semantics are those of :func:`wrapkit.ref.bitpack.packed_gemm` (tests check equality):
lanes run along the reduction axis K, negative weights negate by bitwise NOT with the ``+1``
folded into a per-row offset, and the accumulator word is added in the spec's mode.

Typical use::

    k = BitpackKernels()                     # compiles bitpack_gemm.c on first use
    spec = PackSpec(lane_bits=8, lanes=8, word_bits=64, mode="buffer")
    pw = pack_weights(w, spec, "binary")     # w: int [M, K] in {-1, +1}
    pa = pack_activations(a, spec)           # a: int [N, K] unsigned, < 2^d
    out = k.packed(pa, pw)                   # int32 [M, N], d-bit results
    ref = k.int32(a, w)                      # int32 [M, N], exact sums
"""

import ctypes
from dataclasses import dataclass

import numpy as np

from wrapkit.ref.bitpack import PackSpec, pack_stream

from .build import load_library

__all__ = ["KERNEL_WEIGHT_KINDS", "BitpackKernels", "PackedActivations", "PackedWeights",
           "pack_activations", "pack_weights"]

#: Weight kinds the packed path supports: multiplication becomes bitwise logic only for these.
KERNEL_WEIGHT_KINDS = ("binary", "ternary")
_MODES = {"carry": 0, "isolated": 1, "buffer": 2}


def _check_spec(spec):
    if not isinstance(spec, PackSpec):
        raise TypeError(f"spec must be a PackSpec, not {type(spec).__name__}")
    if spec.lane_bits > 32:
        raise ValueError(f"lane_bits must be in [2, 32] for the C kernel, got {spec.lane_bits}")
    return spec


def _word_dtype(spec):
    return np.uint32 if spec.word_bits == 32 else np.uint64


@dataclass(frozen=True)
class PackedWeights:
    """Weight rows as lane masks: ``neg[M, KW]``, ``nz[M, KW]`` (ternary) and ``offset[M]``."""

    spec: PackSpec
    kind: str
    neg: np.ndarray
    nz: np.ndarray | None
    offset: np.ndarray
    k: int


@dataclass(frozen=True)
class PackedActivations:
    """Activation rows packed along K: ``words[N, KW]``."""

    spec: PackSpec
    words: np.ndarray
    k: int


def pack_weights(w, spec, kind):
    """Turn weight values ``w[M, K]`` into the kernel's masks.

    Raises
    ------
    ValueError
        ``kind`` not binary/ternary (uniform weights need a multiplier), or values outside it.
    """
    spec = _check_spec(spec)
    if kind not in KERNEL_WEIGHT_KINDS:
        raise ValueError(f"weight_kind must be one of {', '.join(KERNEL_WEIGHT_KINDS)} for the "
                         f"packed path, got {kind!r}")
    w = np.asarray(w)
    if w.ndim != 2:
        raise ValueError(f"w must be a 2-D array [M, K], got shape {w.shape}")
    allowed = (-1, 1) if kind == "binary" else (-1, 0, 1)
    bad = ~np.isin(w, allowed)
    if np.any(bad):
        raise ValueError(f"{kind} weights must lie in {{{', '.join(map(str, allowed))}}}, "
                         f"got {w[bad].flat[0]}")
    full = (1 << spec.data_bits) - 1
    dt = _word_dtype(spec)
    neg = pack_stream(np.where(w < 0, full, 0), spec).astype(dt)
    nz = pack_stream(np.where(w != 0, full, 0), spec).astype(dt) if kind == "ternary" else None
    offset = (w < 0).sum(axis=1).astype(np.int32)
    return PackedWeights(spec, kind, np.ascontiguousarray(neg),
                         None if nz is None else np.ascontiguousarray(nz), offset, w.shape[1])


def pack_activations(a, spec):
    """Pack unsigned activations ``a[N, K]`` (each below ``2^d``) along K."""
    spec = _check_spec(spec)
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"a must be a 2-D array [N, K], got shape {a.shape}")
    hi = (1 << spec.data_bits) - 1
    if np.any((a < 0) | (a > hi)):
        raise ValueError(f"activations must lie in [0, {hi}] for {spec.data_bits} data bits")
    words = pack_stream(a, spec).astype(_word_dtype(spec))
    return PackedActivations(spec, np.ascontiguousarray(words), a.shape[1])


def _ptr(ctype):
    return np.ctypeslib.ndpointer(ctype, flags="C_CONTIGUOUS")


class BitpackKernels:
    """The compiled kernels (see :mod:`wrapkit.models.kernels.build`).

    Parameters
    ----------
    vectorize : bool
        Build with auto-vectorization (comparison only); default is the scalar build.
    """

    def __init__(self, vectorize=False):
        self.lib, self.info = load_library(vectorize)
        i64, c_int = ctypes.c_int64, ctypes.c_int
        self.lib.wk_gemm_int32.argtypes = [_ptr(np.uint8), _ptr(np.int8), _ptr(np.int32),
                                           i64, i64, i64]
        self.lib.wk_gemm_int32.restype = None
        for name, dt in (("wk_packed_u32", np.uint32), ("wk_packed_u64", np.uint64)):
            fn = getattr(self.lib, name)
            fn.argtypes = [_ptr(dt), _ptr(dt), ctypes.c_void_p, _ptr(np.int32), _ptr(np.int32),
                           i64, i64, i64, c_int, c_int, c_int]
            fn.restype = c_int

    def int32(self, a, w, out=None):
        """Plain loop nest: ``out[m, n] = sum_k a[n, k] * w[m, k]`` in int32 (a uint8, w int8)."""
        a = np.ascontiguousarray(a, dtype=np.uint8)
        w = np.ascontiguousarray(w, dtype=np.int8)
        if a.ndim != 2 or w.ndim != 2 or a.shape[1] != w.shape[1]:
            raise ValueError(f"a must be [N, K] and w [M, K] with the same K, got {a.shape} "
                             f"and {w.shape}")
        m, n = w.shape[0], a.shape[0]
        out = np.empty((m, n), np.int32) if out is None else out
        self.lib.wk_gemm_int32(a, w, out, m, n, a.shape[1])
        return out

    def packed(self, pa, pw, out=None):
        """Packed GEMM: ``int32[M, N]`` of ``d``-bit results (see :mod:`wrapkit.ref.bitpack`)."""
        if not isinstance(pa, PackedActivations) or not isinstance(pw, PackedWeights):
            raise TypeError("packed() takes PackedActivations and PackedWeights "
                            "(see pack_activations / pack_weights)")
        if pa.spec != pw.spec or pa.k != pw.k:
            raise ValueError(f"activations and weights must share spec and K, got {pa.spec}, "
                             f"K={pa.k} and {pw.spec}, K={pw.k}")
        spec = pw.spec
        m, kw = pw.neg.shape
        n = pa.words.shape[0]
        out = np.empty((m, n), np.int32) if out is None else out
        fn = self.lib.wk_packed_u32 if spec.word_bits == 32 else self.lib.wk_packed_u64
        nz = None if pw.nz is None else pw.nz.ctypes.data
        rc = fn(pa.words, pw.neg, nz, pw.offset, out, m, n, kw, _MODES[spec.mode],
                spec.lane_bits, spec.lanes)
        if rc != 0:  # the wrapper validated everything, so this is a bug, not user input
            raise RuntimeError(f"kernel rejected spec {spec}")
        return out
