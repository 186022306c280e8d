"""wrapkit: overflow-tolerant low-precision accumulator co-design (WrapNet), end to end.

Subpackages: ``wrapkit.ref`` (bit-exact integer semantics, numpy only), ``wrapkit.hw``
(Amaranth generators and the synthesis flow), ``wrapkit.sim`` (cocotb verification),
``wrapkit.models`` (PyTorch training).
"""

__version__ = "0.1.0"
