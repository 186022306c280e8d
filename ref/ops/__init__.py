"""Exact integer semantics of every node kind of an integer graph (pure numpy).

Each function takes batch-first int64 arrays (NCHW for images, ``(N, ..., F)`` for features)
and returns int64 arrays; every width and parameter is checked with
:mod:`wrapkit.common.checks` (``TypeError``/``ValueError`` naming the parameter). The
PyTorch mirrors in :mod:`wrapkit.models.intops` compute the same integers; docs/datapath.md
("Graph node semantics") gives one worked example per node kind.

============================  ====================================================
module                        node kinds
============================  ====================================================
:mod:`.accumulator`           accumulator modes (exact, wrap, cyclic, saturate),
                              integer GEMM with a defined reduction order
:mod:`.linear`                conv2d (stride, padding, dilation, groups), linear,
                              matmul of two activation tensors
:mod:`.fixed`                 fixed-point multiply, round-half-up shift, rescale
:mod:`.elementwise`           add at two scales, concat
:mod:`.shape`                 max/avg pooling, nearest upsample, pixel (un)shuffle,
                              zero padding, reshape, transpose, flatten
:mod:`.nonlinear`             softmax, layer norm (I-BERT), integer square root
:mod:`.lut`                   table functions: GELU, sigmoid
:mod:`.twist`                 TWIST on probability codes (SATA), the A·V bound
============================  ====================================================
"""

from .accumulator import ACC_MODES, AccumulatorMode, dot_product_bound, integer_matmul
from .elementwise import add, add_multipliers, concat
from .fixed import fixed_multiplier, rescale, round_shift
from .linear import conv2d, conv_output_size, linear, matmul
from .lut import function_table, gelu_table, lookup, sigmoid_table
from .nonlinear import (
    ExpConstants,
    i_exp,
    isqrt,
    layer_norm,
    layer_norm_constants,
    softmax,
)
from .shape import (
    avg_divider,
    avg_pool2d,
    flatten,
    max_pool2d,
    pad,
    pixel_shuffle,
    pixel_unshuffle,
    reshape,
    transpose,
    upsample_nearest,
)
from .twist import (
    TWIST_SHIFT,
    av_accumulator_bits,
    probability_row_sum_bound,
    twist,
    twist_constants,
)

__all__ = [
    "ACC_MODES",
    "AccumulatorMode",
    "ExpConstants",
    "TWIST_SHIFT",
    "add",
    "add_multipliers",
    "av_accumulator_bits",
    "avg_divider",
    "avg_pool2d",
    "concat",
    "conv2d",
    "conv_output_size",
    "dot_product_bound",
    "fixed_multiplier",
    "flatten",
    "function_table",
    "gelu_table",
    "i_exp",
    "integer_matmul",
    "isqrt",
    "layer_norm",
    "layer_norm_constants",
    "linear",
    "lookup",
    "matmul",
    "max_pool2d",
    "pad",
    "pixel_shuffle",
    "pixel_unshuffle",
    "reshape",
    "rescale",
    "probability_row_sum_bound",
    "round_shift",
    "sigmoid_table",
    "softmax",
    "transpose",
    "twist",
    "twist_constants",
    "upsample_nearest",
]
