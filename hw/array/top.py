"""The layer datapath: the load port and output buffer around four sub-components."""

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..params import validating
from .buffer import Buffer
from .config import DESCRIPTOR, LOAD_TARGETS, ArrayConfig, array_ports
from .controller import Controller
from .descriptor import descriptor_layout
from .drain import DrainLane
from .fetch import OperandFetch
from .grid import PEGrid

__all__ = ["LayerArray"]


class LayerArray(wiring.Component):
    """Runs one conv2d or linear layer: ``rows`` x ``cols`` WrapNet MACs, one drain lane.

    Host protocol (the manifest repeats it)::

        while idle: one write per cycle with ld_en=1, ld_sel (0 act, 1 weight, 2 mult,
                    3 bias, 4 shift, 5 descriptor), ld_addr, ld_data (loads while busy
                    are ignored)
        start=1 for one cycle          -> busy=1 from the next cycle
        wait for done (a one-cycle pulse; busy falls in the same cycle)
        rd_addr=a -> rd_data = output word a one cycle later
        cycles = clock edges from the start edge to the edge that raised done

    Dataflow: position tiles (``rows`` output positions) outermost, output-channel tiles
    (``cols`` channels) inside. For each tile the controller streams the fan-in
    ``j = 0 .. K-1``: row ``r`` reads activation ``(c, oy*s + ky - p, ox*s + kx - p)`` of its
    position (zero outside the map), column ``c`` reads weight ``(c0 + c, j)``; row ``r``'s
    operands are delayed ``r`` cycles and column ``c``'s ``c`` cycles, so PE ``(r, c)`` sees
    operand ``j`` at ``t0 + j + r + c`` and accumulates the whole dot product in its own
    ``acc_bits`` wrapping accumulator. Tiles follow each other every
    ``P = max(K, rows*cols)`` cycles, without bubbles when ``K >= rows*cols``.

    The drain lane reads the finished dot products one per cycle (column by column), applies
    the one ``CyclicActivation`` and the one ``Requantizer`` and writes the output buffer.
    The exact cycle count is :func:`wrapkit.hw.array.cycles.layer_cycles`, built from the
    sub-components' ``LATENCY`` constants.

    Sub-components (instance names), each in its own module::

        load port --> desc (descriptor_layout), fetch's buffers, drain's tables
        controller --requests--> fetch --skewed operands--> grid --results--> drain --> out_buf
            ^   (Controller)     (OperandFetch)             (PEGrid)          (DrainLane)  |
            +------------------------------- last_write -----------------------------------+

    Parameters
    ----------
    config : ArrayConfig

    Attributes
    ----------
    ld_en, ld_sel, ld_addr, ld_data, start, rd_addr : inputs (see ``array_ports``)
    busy, done, cycles, rd_data : outputs
    READ_LATENCY : int
        1: ``rd_data`` shows the word addressed before the previous edge.

    Raises
    ------
    TypeError
        ``config`` is not an :class:`ArrayConfig` (whose own checks name bad parameters).
    """

    #: Edges from ``rd_addr`` to ``rd_data``.
    READ_LATENCY = 1

    def __init__(self, config):
        with validating(self):
            if not isinstance(config, ArrayConfig):
                raise TypeError(f"config must be an ArrayConfig, not {config!r}")
        self._config = config
        super().__init__({
            name: (In if direction == "input" else Out)(unsigned(width))
            for name, direction, width, _ in array_ports(config)
        })

    @property
    def config(self):
        return self._config

    def elaborate(self, platform):
        mod = Module()
        cfg = self._config
        mod.submodules.controller = controller = Controller(cfg)
        mod.submodules.fetch = fetch = OperandFetch(cfg)
        mod.submodules.grid = grid = PEGrid(cfg)
        mod.submodules.drain = drain = DrainLane(cfg)

        # -- load port: writes while idle, decoded by ld_sel --------------------------------
        def loading(target):
            return self.ld_en & ~controller.busy & (self.ld_sel == LOAD_TARGETS[target])

        desc = Signal(descriptor_layout(cfg), name="desc")
        with mod.If(loading("desc")):
            with mod.Switch(self.ld_addr):
                for index, (name, _, _) in enumerate(DESCRIPTOR):
                    with mod.Case(index):
                        mod.d.sync += desc[name].eq(self.ld_data)
        for unit in (fetch, drain):
            mod.d.comb += [unit.ld_addr.eq(self.ld_addr), unit.ld_data.eq(self.ld_data)]
        mod.d.comb += [fetch.act_we.eq(loading("act")), fetch.weight_we.eq(loading("weight")),
                       drain.mult_we.eq(loading("mult")), drain.bias_we.eq(loading("bias")),
                       drain.shift_we.eq(loading("shift"))]

        # -- controller -> fetch -> grid -> drain lane -> output buffer ----------------------
        wiring.connect(mod, controller.fetch, fetch.request)
        wiring.connect(mod, fetch.grid, grid.feed)
        wiring.connect(mod, grid.results, drain.results)
        mod.d.comb += [controller.desc.eq(desc), drain.desc.eq(desc),
                       controller.start.eq(self.start), drain.clear.eq(controller.starting),
                       controller.drain_last_write.eq(drain.last_write)]

        mod.submodules.out_buf = out_buf = Buffer(unsigned(cfg.out_word_bits), cfg.out_depth)
        mod.d.comb += [out_buf.write_en.eq(drain.out_en), out_buf.write_addr.eq(drain.out_addr),
                       out_buf.write_data.eq(drain.out_data),
                       out_buf.read_addr[0].eq(self.rd_addr),
                       self.rd_data.eq(out_buf.read_data[0])]

        # -- host handshake -----------------------------------------------------------------
        mod.d.comb += [self.busy.eq(controller.busy), self.done.eq(controller.done),
                       self.cycles.eq(controller.cycles)]
        return mod
