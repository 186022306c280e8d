"""Typed tensors on the edges of an integer graph.

Every edge of a graph carries one tensor per sample (the batch axis is never part of a
type). An **integer** tensor holds codes of ``bits`` bits, signed (two's complement range)
or unsigned, and optionally the real value of one code step, ``scale`` (``None`` where the
step differs per channel, e.g. a MAC node's pre-activations with per-channel weight scales;
the scale is documentation only: every constant a node needs is one of its own attributes).
A **float** tensor is float32 and may appear only at the graph's edges (the float stem and
classifier); docs/graph.md lists which node kinds produce and consume each.
"""

import math
from dataclasses import dataclass

__all__ = ["DTYPES", "MAX_TENSOR_BITS", "TensorType"]

#: The two element types of an edge.
DTYPES = ("int", "float")
#: Widest integer code an edge may carry (int64 arithmetic keeps every node exact below it).
MAX_TENSOR_BITS = 62


@dataclass(frozen=True)
class TensorType:
    """The type of one edge: per-sample shape and element type.

    Parameters
    ----------
    shape : tuple of int
        Per-sample shape (``(C, H, W)`` for images, ``(F,)`` for features).
    dtype : "int" | "float"
    bits : int or None
        Integer code width, 1..62; None for float.
    signed : bool or None
        Integer codes in ``[-2^(bits-1), 2^(bits-1) - 1]`` (True) or ``[0, 2^bits - 1]``.
    scale : float or None
        Real value of one integer step where it is one number.
    """

    shape: tuple
    dtype: str = "int"
    bits: int | None = None
    signed: bool | None = None
    scale: float | None = None

    @classmethod
    def integer(cls, shape, bits, signed, scale=None):
        return cls(tuple(shape), "int", int(bits), bool(signed),
                   None if scale is None else float(scale))

    @classmethod
    def float32(cls, shape):
        return cls(tuple(shape), "float")

    @property
    def is_int(self):
        return self.dtype == "int"

    @property
    def code_range(self):
        """``(lo, hi)`` of the integer codes."""
        if not self.is_int:
            raise ValueError("a float tensor has no code range")
        if self.signed:
            return -(1 << (self.bits - 1)), (1 << (self.bits - 1)) - 1
        return 0, (1 << self.bits) - 1

    @property
    def max_abs(self):
        """Largest code magnitude."""
        lo, hi = self.code_range
        return max(-lo, hi)

    @property
    def size(self):
        return math.prod(self.shape)

    def with_shape(self, shape):
        """The same element type with another per-sample shape (data-movement nodes)."""
        return TensorType(tuple(shape), self.dtype, self.bits, self.signed, self.scale)

    def describe(self):
        """``int8u[16, 28, 28] @0.05`` — the short form every report prints."""
        dims = ", ".join(map(str, self.shape))
        if not self.is_int:
            return f"float32[{dims}]"
        scale = "" if self.scale is None else f" @{self.scale:.4g}"
        return f"int{self.bits}{'s' if self.signed else 'u'}[{dims}]{scale}"

    def to_dict(self):
        d = {"shape": list(self.shape), "dtype": self.dtype}
        if self.is_int:
            d.update(bits=self.bits, signed=self.signed, scale=self.scale)
        return d

    @classmethod
    def from_dict(cls, d):
        """Parse a JSON type; ValueError naming the bad field (the validator adds the node)."""
        if not isinstance(d, dict):
            raise ValueError(f"a tensor type must be an object, got {d!r}")
        shape = d.get("shape")
        if not isinstance(shape, list) or not all(
                isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape):
            raise ValueError(f"shape must be a list of positive integers, got {shape!r}")
        dtype = d.get("dtype")
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        if dtype == "float":
            return cls.float32(shape)
        bits, signed, scale = d.get("bits"), d.get("signed"), d.get("scale")
        if isinstance(bits, bool) or not isinstance(bits, int) \
                or not 1 <= bits <= MAX_TENSOR_BITS:
            raise ValueError(f"bits must be an integer in [1, {MAX_TENSOR_BITS}], got {bits!r}")
        if not isinstance(signed, bool):
            raise ValueError(f"signed must be true or false, got {signed!r}")
        if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float))
                                  or not math.isfinite(scale) or scale <= 0):
            raise ValueError(f"scale must be a positive number or null, got {scale!r}")
        return cls.integer(shape, bits, signed, scale)
