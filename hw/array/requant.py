"""The requantization unit: ``clamp((y*m + b) >> s, 0, qmax)``, pipelined, one per lane."""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from wrapkit.common.checks import check_int

from ..params import validating
from .config import BIAS_BITS, MULT_WIDTH, SHIFT_BITS

__all__ = ["Requantizer"]


class Requantizer(wiring.Component):
    """Fixed-point requantization, bit-exact to :func:`wrapkit.ref.requant.requantize`.

    ``code = clamp((y*m + b) >> shift, 0, qmax)`` with ``>>`` an arithmetic shift (floor).
    The sum is formed in ``BIAS_BITS`` = 64 bits, exact because the export's constants
    satisfy ``|y*m| + |b| < 2^62`` (:func:`wrapkit.ref.requant.check_bounds`).

    Pipeline (``LATENCY = 2``, one input per cycle)::

        edge 1   prod <= y*m  (acc_bits x 31-bit signed multiply); b, shift, qmax registered
        edge 2   code <= clamp((prod + b) >> shift, 0, qmax)

    One unit serves the array's single drain lane, i.e. every output of the layer, so its
    wide multiplier is shared by rows*cols processing elements (see docs/array.md).

    Parameters
    ----------
    acc_bits : int, 2..32
        Width of ``y``.
    out_bits : int, 1..8
        Width of ``code`` and ``qmax``.

    Attributes
    ----------
    y : In(signed(acc_bits))
    m : In(signed(MULT_WIDTH))
    b : In(signed(BIAS_BITS))
    shift : In(unsigned(SHIFT_BITS))
    qmax : In(unsigned(out_bits))
    code : Out(unsigned(out_bits))
        Registered; shows the inputs of two edges before.
    """

    LATENCY = 2

    def __init__(self, *, acc_bits, out_bits):
        with validating(self):
            self._acc_bits = check_int("acc_bits", acc_bits, 2, 32)
            self._out_bits = check_int("out_bits", out_bits, 1, 8)
        super().__init__({
            "y": In(signed(acc_bits)),
            "m": In(signed(MULT_WIDTH)),
            "b": In(signed(BIAS_BITS)),
            "shift": In(unsigned(SHIFT_BITS)),
            "qmax": In(unsigned(out_bits)),
            "code": Out(unsigned(out_bits)),
        })

    def elaborate(self, platform):
        mod = Module()
        prod = Signal(signed(self._acc_bits + MULT_WIDTH))
        b_q = Signal(signed(BIAS_BITS))
        shift_q = Signal(unsigned(SHIFT_BITS))
        qmax_q = Signal(unsigned(self._out_bits))
        mod.d.sync += [prod.eq(self.y * self.m), b_q.eq(self.b), shift_q.eq(self.shift),
                       qmax_q.eq(self.qmax)]
        total = Signal(signed(BIAS_BITS))
        shifted = Signal(signed(BIAS_BITS))
        mod.d.comb += [total.eq(prod + b_q), shifted.eq(total >> shift_q)]
        mod.d.sync += self.code.eq(Mux(shifted < 0, 0, Mux(shifted > qmax_q, qmax_q, shifted)))
        return mod
