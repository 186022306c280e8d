"""Compiled software kernels: a bit-packed binary/ternary GEMM for scalar CPUs (C via ctypes).

The C source is compiled on first use (see :mod:`wrapkit.models.kernels.build`); importing this
package compiles nothing.
"""
