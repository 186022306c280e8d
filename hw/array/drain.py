"""The drain lane: finished dot products, one per cycle, through the one cyclic activation and
the one requantizer into the output buffer."""

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..cyclic import CyclicActivation
from ..params import validating
from .buffer import Buffer
from .config import BIAS_BITS, LD_DATA_BITS, MULT_WIDTH, SHIFT_BITS, ArrayConfig
from .delay import DelayLine
from .descriptor import descriptor_layout
from .requant import Requantizer

__all__ = ["DrainLane", "results_signature"]


def results_signature(config):
    """The grid's results, as the PE grid drives them.

    Members (all ``Out``): ``res``, ``array(rows, cols)`` of ``signed(acc_bits)``, each
    PE's last finished dot product; ``ready``, high in the cycle the bottom-right PE (a
    tile's last) captures its result, so the whole tile is in ``res`` after that edge.
    """
    return wiring.Signature({
        "res": Out(signed(config.mac.acc_bits)).array(config.rows, config.cols),
        "ready": Out(1),
    })


def _pending_write(config):
    """A value on its way to the output buffer: ``y``, whether and where it is written, and
    whether it is the layer's last output."""
    return data.StructLayout({"y": signed(config.mac.acc_bits), "valid": 1, "final": 1,
                              "addr": unsigned(config.out_addr_bits)})


class DrainLane(wiring.Component):
    """Reads a tile's ``rows*cols`` results one per cycle and writes the layer's outputs.

    When the grid signals ``ready`` the lane walks the tile column by column (one output
    channel's ``rows`` positions after another; the first ``desc.drain_cols`` columns: a
    depthwise layer's tile holds one channel), so each cycle selects one dot product,
    applies the cyclic activation (when ``k`` is set) and the requantizer with the
    channel's ``(m, b, s)`` from the per-channel tables, and writes the output buffer at
    ``channel*positions + position``. Positions past the map and channels past the tile's
    group (for ``groups = 1``: past the layer) are not written. Tiles come in the
    controller's order: position tiles, groups, channel tiles of a group. With
    ``desc.requant = 0`` the lane writes ``y`` itself.

    Pipeline (``LATENCY = 3``)::

        edge 1     selected result, its address and flags registered; tables read
        edges 2-3  Requantizer (``y``, address and flags wait beside it)
        after 3    out_en/out_addr/out_data present the write (written on edge 4)

    Parameters
    ----------
    config : ArrayConfig

    Attributes
    ----------
    results : In(results_signature(config))
        The grid's results and its ``ready`` pulse.
    desc : In(descriptor_layout(config))
        The layer descriptor (``positions``, ``out_channels``, ``group_out``,
        ``group_out_words``, ``requant``, ``qmax``).
    clear : In(1)
        A layer starts: forget any tile in progress and start at position 0, channel 0.
    ld_addr : In(ld_addr_bits)
    ld_data : In(LD_DATA_BITS)
    mult_we, bias_we, shift_we : In(1)
        Write ``ld_data`` into that per-channel table at ``ld_addr``.
    out_en : Out(1)
    out_addr : Out(out_addr_bits)
    out_data : Out(out_word_bits)
        The output buffer's write port.
    last_write : Out(1)
        This cycle's write is the layer's last output.
    LATENCY : int
        Edges from selecting a result to presenting its write: one for the selection
        register (as long as the tables' read) plus ``Requantizer.LATENCY``.

    Raises
    ------
    TypeError
        ``config`` is not an :class:`ArrayConfig`.
    """

    #: The selection register lines the result up with the per-channel tables' read.
    LATENCY = 1 + Requantizer.LATENCY

    def __init__(self, config):
        with validating(self):
            if not isinstance(config, ArrayConfig):
                raise TypeError(f"config must be an ArrayConfig, not {config!r}")
        self._config = config
        super().__init__({
            "results": In(results_signature(config)),
            "desc": In(descriptor_layout(config)),
            "clear": In(1),
            "ld_addr": In(unsigned(config.ld_addr_bits)),
            "ld_data": In(unsigned(LD_DATA_BITS)),
            "mult_we": In(1),
            "bias_we": In(1),
            "shift_we": In(1),
            "out_en": Out(1),
            "out_addr": Out(unsigned(config.out_addr_bits)),
            "out_data": Out(unsigned(config.out_word_bits)),
            "last_write": Out(1),
        })

    def elaborate(self, platform):
        mod = Module()
        cfg = self._config
        mac = cfg.mac
        rows, cols = cfg.rows, cfg.cols
        desc = self.desc

        def table(name, shape, write_enable):
            mod.submodules[name] = buf = Buffer(shape, cfg.max_channels)
            mod.d.comb += [buf.write_addr.eq(self.ld_addr), buf.write_data.eq(self.ld_data),
                           buf.write_en.eq(write_enable)]
            return buf

        mult_tab = table("mult_tab", signed(MULT_WIDTH), self.mult_we)
        bias_tab = table("bias_tab", signed(BIAS_BITS), self.bias_we)
        shift_tab = table("shift_tab", unsigned(SHIFT_BITS), self.shift_we)

        # -- which result: row and column inside the tile, the tile's first position/channel
        active = Signal()
        row = Signal(range(rows))
        col = Signal(range(cols))
        index = Signal(range(rows * cols))            # col*rows + row
        first_position = Signal(unsigned(cfg.coord_bits))
        first_channel = Signal(unsigned(cfg.dim_bits))
        column_base = Signal(unsigned(cfg.coord_bits))  # output address of (channel, first_position)
        group_end = Signal(unsigned(cfg.dim_bits))      # one past the tile's group's channels
        next_group_base = Signal(unsigned(cfg.coord_bits))  # address of (group_end, first_position)
        # The results in drain order, selected by a shifter rather than an Array: Amaranth
        # turns an Array index into a process, which its Verilog writes as an `always @*`
        # block, and Icarus evaluates one only when an input changes. When every result
        # still holds its reset value 0 as the drain lane starts (a tile of zero dot
        # products), that block would never run and the first output would be x.
        in_drain_order = Cat(*(self.results.res[r][c] for c in range(cols)
                               for r in range(rows)))
        channel = first_channel + col
        position = first_position + row
        last_tile_of_group = first_channel + cols >= group_end
        last_group = group_end >= desc.out_channels
        valid = active & (position < desc.positions) & (channel < group_end)
        last_col = col == desc.drain_cols - 1
        final = (active & (row == rows - 1) & last_col & last_tile_of_group
                 & last_group & (first_position + rows >= desc.positions))
        mod.d.comb += [mult_tab.read_addr[0].eq(channel), bias_tab.read_addr[0].eq(channel),
                       shift_tab.read_addr[0].eq(channel)]

        with mod.If(active):
            mod.d.sync += index.eq(index + 1)
            with mod.If(row == rows - 1):
                mod.d.sync += [row.eq(0), column_base.eq(column_base + desc.positions)]
                with mod.If(last_col):
                    # The next tile may already be ready: drain it right behind this one.
                    mod.d.sync += [col.eq(0), index.eq(0), active.eq(self.results.ready)]
                    with mod.If(~last_tile_of_group):
                        mod.d.sync += first_channel.eq(first_channel + cols)
                    with mod.Elif(~last_group):
                        mod.d.sync += [first_channel.eq(group_end),
                                       group_end.eq(group_end + desc.group_out),
                                       column_base.eq(next_group_base),
                                       next_group_base.eq(next_group_base
                                                          + desc.group_out_words)]
                    with mod.Else():
                        mod.d.sync += [first_channel.eq(0), group_end.eq(desc.group_out),
                                       first_position.eq(first_position + rows),
                                       column_base.eq(first_position + rows),
                                       next_group_base.eq(first_position + rows
                                                          + desc.group_out_words)]
                with mod.Else():
                    mod.d.sync += col.eq(col + 1)
            with mod.Else():
                mod.d.sync += row.eq(row + 1)
        with mod.Elif(self.results.ready):
            mod.d.sync += active.eq(1)
        with mod.If(self.clear):
            mod.d.sync += [active.eq(0), row.eq(0), col.eq(0), index.eq(0),
                           first_position.eq(0), first_channel.eq(0), column_base.eq(0),
                           group_end.eq(desc.group_out),
                           next_group_base.eq(desc.group_out_words)]

        # -- selection register, cyclic activation, requantizer ------------------------------
        layout = _pending_write(cfg)
        mod.submodules.selected = selected = DelayLine(layout, 1)
        mod.d.comb += [selected.i.y.eq(in_drain_order.word_select(index, mac.acc_bits).as_signed()), selected.i.valid.eq(valid),
                       selected.i.final.eq(final), selected.i.addr.eq(column_base + row)]
        if mac.k is not None:
            mod.submodules.cyclic = cyclic = CyclicActivation(mac.acc_bits, mac.k)
            mod.d.comb += cyclic.m.eq(selected.o.y)
            y = cyclic.y
        else:
            y = selected.o.y
        mod.submodules.requant = requant = Requantizer(acc_bits=mac.acc_bits,
                                                       out_bits=cfg.out_bits)
        mod.d.comb += [requant.y.eq(y), requant.m.eq(mult_tab.read_data[0]),
                       requant.b.eq(bias_tab.read_data[0]),
                       requant.shift.eq(shift_tab.read_data[0]),
                       requant.qmax.eq(desc.qmax)]
        mod.submodules.pending = pending = DelayLine(layout, Requantizer.LATENCY)
        mod.d.comb += [pending.i.y.eq(y), pending.i.valid.eq(selected.o.valid),
                       pending.i.final.eq(selected.o.final),
                       pending.i.addr.eq(selected.o.addr)]

        mod.d.comb += [self.out_en.eq(pending.o.valid), self.out_addr.eq(pending.o.addr),
                       self.out_data.eq(Mux(desc.requant, requant.code, pending.o.y)),
                       self.last_write.eq(pending.o.final)]
        return mod
