"""A chain of registers that delays a value by a fixed number of cycles, with every tap out."""

from amaranth.hdl import Module, Shape, ShapeCastable, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from wrapkit.common.checks import check_int

from ..params import validating

__all__ = ["DelayLine"]


class DelayLine(wiring.Component):
    """``depth`` registers in a row: ``o`` shows ``i`` of ``depth`` cycles before.

    The array lines values up with pipelines running beside them: operands with the systolic
    skew of their row or column, control bits with a buffer read, a write address with the
    requantizer. ``taps[n]`` is ``i`` delayed by ``n`` cycles (``taps[0]`` is ``i`` itself),
    so one line serves every row of a skew that grows by one cycle per row.

    Cycle table (``depth = 2``)::

        before edge n    i = v
        after edge n     taps[1] = v
        after edge n+1   taps[2] = o = v

    Parameters
    ----------
    shape : shape-castable
        Shape of the value (a plain width, ``signed(n)`` or a ``lib.data`` layout).
    depth : int, 0..1024
        Registers in the line (0: ``o`` is ``i``, combinationally).

    Attributes
    ----------
    i : In(shape)
        The value entering the line.
    taps : Out(shape).array(depth + 1)
        ``taps[n]``: the value of ``n`` cycles before.
    o : Out(shape)
        ``taps[depth]``.
    latency : int
        ``depth``; a parameter of the line rather than a constant of the class, since each
        use asks for its own.

    Raises
    ------
    TypeError
        ``depth`` is not an integer or ``shape`` is not shape-castable.
    ValueError
        ``depth`` outside ``[0, 1024]``.
    """

    def __init__(self, shape, depth):
        with validating(self):
            check_int("depth", depth, 0, 1024)
            if not isinstance(shape, (int, Shape, ShapeCastable)):
                raise TypeError(f"shape must be shape-castable, not {shape!r}")
        self._shape = shape
        self._depth = depth
        super().__init__({
            "i": In(shape),
            "taps": Out(shape).array(depth + 1),
            "o": Out(shape),
        })

    @property
    def latency(self):
        return self._depth

    def elaborate(self, platform):
        mod = Module()
        mod.d.comb += self.taps[0].eq(self.i)
        previous = self.i
        for n in range(1, self._depth + 1):
            stage = Signal(self._shape, name=f"stage{n}")
            mod.d.sync += stage.eq(previous)
            mod.d.comb += self.taps[n].eq(stage)
            previous = stage
        mod.d.comb += self.o.eq(previous)
        return mod
