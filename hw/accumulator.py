"""The MAC's accumulator stage: a wrapping adder and the accumulator register."""

from amaranth.hdl import Module, Mux, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from wrapkit.ref.datapath import MAX_BITS

from wrapkit.common.checks import check_int

from .params import validating

__all__ = ["Accumulator"]


class Accumulator(wiring.Component):
    """``acc <= wrap((clr ? 0 : acc) + (en ? prod : 0), acc_bits)`` on every clock edge.

    This is the paper's "accumulator" group. Overflow wraps (two's complement), which is what
    makes WrapNet's low-bit accumulators cheap: no saturation logic, and the final value is
    the wrapped exact sum whatever the order of additions.

    Parameters
    ----------
    prod_bits : int, 1..acc_bits
        Width of the product input (sign-extended to the accumulator width).
    acc_bits : int, 2..62
        Width of the accumulator register.

    Attributes
    ----------
    prod : In(signed(prod_bits))
        Product to add.
    en : In(1)
        Add ``prod`` this cycle.
    clr : In(1)
        Start from 0 instead of the current ``acc`` this cycle.
    acc : Out(signed(acc_bits))
        Accumulator register, clocked by ``sync``; reset to 0. With ``en = clr = 0`` it holds.
    LATENCY : int
        1: ``acc`` includes the inputs presented before the previous clock edge.

    Raises
    ------
    TypeError
        A width is not an integer.
    ValueError
        ``acc_bits`` outside ``[2, 62]`` or ``prod_bits`` outside ``[1, acc_bits]``.
    """

    LATENCY = 1

    def __init__(self, *, prod_bits, acc_bits):
        with validating(self):
            self._acc_bits = check_int("acc_bits", acc_bits, 2, MAX_BITS)
            # A product wider than the accumulator would be wasted hardware (ref.product_bits
            # never asks for one), so it is refused rather than silently truncated.
            self._prod_bits = check_int("prod_bits", prod_bits, 1, acc_bits)
        super().__init__({
            "prod": In(signed(prod_bits)),
            "en": In(1),
            "clr": In(1),
            "acc": Out(signed(acc_bits)),
        })

    @property
    def acc_bits(self):
        return self._acc_bits

    @property
    def prod_bits(self):
        return self._prod_bits

    def elaborate(self, platform):
        mod = Module()
        base = Mux(self.clr, 0, self.acc)
        addend = Mux(self.en, self.prod, 0)
        # The sum is one bit wider than acc; keeping acc_bits of it is the wrap-around.
        mod.d.sync += self.acc.eq(base + addend)
        return mod
