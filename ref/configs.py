"""The six MAC configurations of the paper (WrapNet, App. 2.6.3, Tables 2.11-2.13)."""

from .datapath import MacConfig

__all__ = ["PAPER_MACS"]

# 8x8: a generic int8 multiplier (signed activations and weights), whose full product needs the
# 16-bit product register the paper reports. 3x1: WrapNet's unsigned 3-bit post-ReLU activations
# times binary weights, whose products in [-7, 7] need the paper's 4 bits.
PAPER_MACS = {
    "8x8_acc32": MacConfig(8, True, "uniform", 8, 32, None),
    "3x1_acc32": MacConfig(3, False, "binary", None, 32, None),
    "8x8_acc8_k2": MacConfig(8, True, "uniform", 8, 8, 2),
    "8x8_acc8_k4": MacConfig(8, True, "uniform", 8, 8, 4),
    "3x1_acc8_k2": MacConfig(3, False, "binary", None, 8, 2),
    "3x1_acc8_k4": MacConfig(3, False, "binary", None, 8, 4),
}

