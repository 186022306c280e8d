"""Table node kinds: any function of one narrow integer code, e.g. GELU and sigmoid.

A table node maps each input code ``c`` of a ``in_bits``-bit (un)signed range to
``table[c − lo]``; the table is integer data stored with the node, so the node is exact by
construction and the engine, the hardware and PyTorch (``wrapkit.models.intops.lookup``)
agree bit for bit. This is the lookup-table alternative to I-BERT's polynomial i-GELU
(Kim et al., "I-BERT: Integer-only BERT Quantization", ICML 2021): for the ≤ 16-bit codes
that feed an activation after requantization the table is small (256 entries for 8 bits) and
has no approximation error beyond the output rounding.

:func:`function_table` builds a table once, at export, from a float function, the input scale
``s_in`` (real input ``s_in·c``) and the output scale ``s_out``::

    table[c − lo] = clamp(floor(f(s_in·c) / s_out + 1/2), out_lo, out_hi)

so every entry is within half an output step of ``f(s_in·c) / s_out`` unless clamped.
"""

import math

import numpy as np

from wrapkit.common.checks import check_int, check_positive_float

from ..datapath import operand_range
from .tensors import as_int64, check_bits_range, check_bool

__all__ = ["MAX_TABLE_BITS", "function_table", "gelu_table", "lookup", "sigmoid_table"]

#: Widest input code a table covers (2^16 entries).
MAX_TABLE_BITS = 16


def lookup(x, table, *, in_bits, in_signed):
    """``table[x − lo]`` where ``lo`` is the smallest ``in_bits``-bit code.

    Parameters
    ----------
    x : int array, values in the ``in_bits``-bit (un)signed range
    table : int array (2^in_bits,)
    in_bits : int, 1..16
    in_signed : bool

    >>> lookup(np.array([-1, 0, 1]), np.array([10, 20, 30, 40]), in_bits=2,
    ...        in_signed=True).tolist()
    [20, 30, 40]
    """
    in_bits = check_int("in_bits", in_bits, 1, MAX_TABLE_BITS)
    table = as_int64("table", table, ndim=1)
    if len(table) != 1 << in_bits:
        raise ValueError(f"table must have 2^in_bits = {1 << in_bits} entries, got "
                         f"{len(table)}")
    in_signed = check_bool("in_signed", in_signed)
    x = check_bits_range("x", as_int64("x", x), in_bits, in_signed)
    lo, _ = operand_range(in_bits, in_signed)
    return table[x - lo]


def function_table(fn, *, in_bits, in_signed, in_scale, out_scale, out_bits, out_signed):
    """Integer table of the float function ``fn`` over every input code (module docstring).

    ``fn`` maps a float64 array to a float64 array.
    """
    in_bits = check_int("in_bits", in_bits, 1, MAX_TABLE_BITS)
    out_bits = check_int("out_bits", out_bits, 1, 32)
    s_in = check_positive_float("in_scale", in_scale)
    s_out = check_positive_float("out_scale", out_scale)
    lo, hi = operand_range(in_bits, check_bool("in_signed", in_signed))
    y = np.asarray(fn(np.arange(lo, hi + 1, dtype=np.float64) * s_in), dtype=np.float64)
    o_lo, o_hi = operand_range(out_bits, check_bool("out_signed", out_signed))
    return np.clip(np.floor(y / s_out + 0.5), o_lo, o_hi).astype(np.int64)


def gelu(x):
    """The exact (erf) GELU ``x·Φ(x)`` in float64."""
    erf = np.frompyfunc(math.erf, 1, 1)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)).astype(np.float64))


def sigmoid(x):
    """``1 / (1 + e^-x)`` in float64."""
    return 1.0 / (1.0 + np.exp(-x))


def gelu_table(*, in_bits, in_scale, out_scale, out_bits, in_signed=True, out_signed=True):
    """Table of GELU (:func:`function_table` with the erf GELU).

    >>> gelu_table(in_bits=3, in_scale=0.5, out_scale=0.25, out_bits=4).tolist()
    [0, 0, -1, -1, 0, 1, 3, 6]
    """
    return function_table(gelu, in_bits=in_bits, in_signed=in_signed, in_scale=in_scale,
                          out_scale=out_scale, out_bits=out_bits, out_signed=out_signed)


def sigmoid_table(*, in_bits, in_scale, out_bits, in_signed=True):
    """Table of the sigmoid to unsigned probability codes of scale ``1 / (2^out_bits − 1)``.

    >>> sigmoid_table(in_bits=2, in_scale=1.0, out_bits=8).tolist()
    [30, 69, 128, 186]
    """
    out_bits = check_int("out_bits", out_bits, 1, 32)
    return function_table(sigmoid, in_bits=in_bits, in_signed=in_signed, in_scale=in_scale,
                          out_scale=1.0 / ((1 << out_bits) - 1), out_bits=out_bits,
                          out_signed=False)
