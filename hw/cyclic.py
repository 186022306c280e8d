"""WrapNet's cyclic "smooth modulo" activation as a combinational circuit."""

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from wrapkit.ref.datapath import cyclic_threshold

from .params import validating

__all__ = ["CyclicActivation"]


class CyclicActivation(wiring.Component):
    """Cyclic activation of a ``acc_bits``-bit accumulator value, slope ``k`` (combinational).

    Computes :func:`wrapkit.ref.cyclic` exactly: with ``H = 2^(acc_bits-1)`` and
    ``T = floor(k*H/(k+1))``::

        y = m             for |m| <= T
        y = k*(H - m)     for m > T
        y = -k*(H + m)    for m < -T

    so ``y`` lies in ``[-T, T]`` and fits the input width.

    Circuit: flipping the sign bit of ``m`` gives ``s = wrap(m + H)``, which is ``m - H`` for
    ``m > T`` and ``H + m`` for ``m < -T``, so both fold-back branches are the one product
    ``y = k*(-s)`` and need no ``H -/+ m`` adders. Where a fold is selected ``|s| <= H - T - 1``,
    so only the low ``n + 1`` bits of ``s`` (``n`` = bit length of ``H - T - 1``, about
    ``acc_bits - log2(k+1)``) enter the negation and the constant multiplication (a shift for
    k a power of two). Two comparisons against constants pick fold or pass-through.

    Parameters
    ----------
    acc_bits : int, 2..62
        Width of the accumulator value (62 is the widest the int64 reference checks).
    k : int, >= 1
        Slope of the fold-back.

    Attributes
    ----------
    m : In(signed(acc_bits))
        The accumulator value (already wrapped to ``acc_bits`` by the register width).
    y : Out(signed(acc_bits))
        The activation.
    LATENCY : int
        0: the unit is combinational.

    Raises
    ------
    TypeError
        ``acc_bits`` or ``k`` is not an integer.
    ValueError
        ``acc_bits`` outside ``[2, 62]`` or ``k < 1``.

    Examples
    --------
    ``acc_bits=8, k=2``: ``T = 85``; ``m = 44 -> 44``, ``m = 100 -> 2*(128-100) = 56``,
    ``m = -100 -> -56``, ``m = -128 -> 0``.
    """

    LATENCY = 0

    def __init__(self, acc_bits, k):
        # The reference defines the legal domain and words the errors; reuse it so hardware
        # and reference can never disagree on which parameters exist.
        with validating(self):
            self._threshold = cyclic_threshold(acc_bits, k)
        self._acc_bits = int(acc_bits)
        self._k = int(k)
        super().__init__({
            "m": In(signed(self._acc_bits)),
            "y": Out(signed(self._acc_bits)),
        })

    @property
    def acc_bits(self):
        return self._acc_bits

    @property
    def k(self):
        return self._k

    @property
    def threshold(self):
        """T: the largest magnitude passed through unchanged."""
        return self._threshold

    def elaborate(self, platform):
        mod = Module()
        b, k, t = self._acc_bits, self._k, self._threshold

        # s = wrap(m + 2^(b-1)): the same bits as m with the sign bit inverted.
        s = Signal(signed(b))
        mod.d.comb += s.eq(Cat(self.m[:b - 1], ~self.m[b - 1]))

        # Where the fold is selected |s| <= 2^(b-1) - T - 1 < 2^n, so n + 1 bits of s hold it
        # exactly; the narrower negation and multiplication are smaller circuits.
        n = ((1 << (b - 1)) - t - 1).bit_length()
        fold = -s[:n + 1].as_signed() * k
        # Two nested selections with the fold expression inline, rather than one Mux on
        # (m > T) | (m < -T) or a named fold wire: the same logic, but Yosys/ABC map this
        # structure smallest (measured, docs/hardware.md). Keeping b bits of the product
        # is exact: the folded value lies in [-T, T].
        mod.d.comb += self.y.eq(Mux(self.m > t, fold, Mux(self.m < -t, fold, self.m)))
        return mod
