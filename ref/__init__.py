"""Bit-exact integer semantics of the wrapkit datapath (pure numpy).

This package is the single source of truth for what every other part of wrapkit computes:
the Amaranth generators derive their widths from it, the cocotb scoreboards and the Amaranth
unit tests compare against it, and the PyTorch layers are checked against it bit for bit.
It imports neither torch nor amaranth.
"""

from .datapath import (
    WEIGHT_KINDS,
    MacConfig,
    cyclic,
    cyclic_threshold,
    decode_weights,
    encode_weights,
    mac_dot,
    mac_stream,
    operand_range,
    product_bits,
    saturate,
    signed_bits_for_range,
    weight_range,
    wrap,
)
from .opstream import MacOpStream

__all__ = [
    "WEIGHT_KINDS",
    "MacConfig",
    "MacOpStream",
    "cyclic",
    "cyclic_threshold",
    "decode_weights",
    "encode_weights",
    "mac_dot",
    "mac_stream",
    "operand_range",
    "product_bits",
    "saturate",
    "signed_bits_for_range",
    "weight_range",
    "wrap",
]
