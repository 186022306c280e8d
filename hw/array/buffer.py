"""A buffer of the array: one memory with one write port and several synchronous read ports,
in a module of its own."""

from amaranth.hdl import Module, Shape, ShapeCastable, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from wrapkit.common.checks import check_int

from ..params import validating

__all__ = ["Buffer"]


class Buffer(wiring.Component):
    """``depth`` words of ``shape``: one write port, ``reads`` read ports (one cycle latency).

    The buffers are a component of their own, not a memory inside the unit that reads them,
    so that every buffer is a separate module in the Verilog: synthesis keeps it as its own
    area group ("memory"), apart from the logic around it, and a simulator can fill it
    through its hierarchical path.

    Cycle table::

        before edge n    write_en = 1, write_addr = a, write_data = v;  read_addr[i] = a
        after edge n     word a = v;  read_data[i] = word a as it was before edge n

    Parameters
    ----------
    shape : shape-castable
        Word shape (``unsigned(n)`` or ``signed(n)``).
    depth : int, >= 1
        Words.
    reads : int, >= 1
        Read ports.

    Attributes
    ----------
    write_en : In(1)
    write_addr : In(unsigned)
    write_data : In(shape)
    read_addr : In(unsigned).array(reads)
    read_data : Out(shape).array(reads)
    """

    def __init__(self, shape, depth, reads=1):
        with validating(self):
            check_int("depth", depth, 1)
            check_int("reads", reads, 1)
            if not isinstance(shape, (int, Shape, ShapeCastable)):
                raise TypeError(f"shape must be shape-castable, not {shape!r}")
        self._shape = shape
        self._depth = depth
        self._reads = reads
        addr = unsigned(max(1, (depth - 1).bit_length()))
        super().__init__({
            "write_en": In(1),
            "write_addr": In(addr),
            "write_data": In(shape),
            "read_addr": In(addr).array(reads),
            "read_data": Out(shape).array(reads),
        })

    @property
    def depth(self):
        return self._depth

    def elaborate(self, platform):
        mod = Module()
        mod.submodules.mem = mem = Memory(shape=self._shape, depth=self._depth, init=[])
        write = mem.write_port()
        mod.d.comb += [write.en.eq(self.write_en), write.addr.eq(self.write_addr),
                       write.data.eq(self.write_data)]
        for i in range(self._reads):
            read = mem.read_port()
            mod.d.comb += [read.addr.eq(self.read_addr[i]), self.read_data[i].eq(read.data)]
        return mod
