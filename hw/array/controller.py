"""The array's controller: the host handshake and the loops that tile a layer over the array."""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..params import validating
from .config import CYCLE_BITS, ArrayConfig
from .descriptor import descriptor_layout
from .fetch import request_signature

__all__ = ["Controller", "position_layout"]


def position_layout(config):
    """Layout of one array row's output position and the input window it reads.

    Fields (``coord_bits`` wide): ``index`` the position index ``oy*OW + ox`` (unsigned),
    ``out_x`` the output column ``ox``, ``in_x`` and ``in_y`` the window corner
    ``ox*s - p`` and ``oy*s - p`` in the input map, ``addr`` the corner's activation-buffer
    offset ``in_y*W + in_x`` (all signed: the corner lies outside the map where padding is).
    """
    cb = config.coord_bits
    return data.StructLayout({"index": unsigned(cb), "out_x": signed(cb), "in_x": signed(cb),
                              "in_y": signed(cb), "addr": signed(cb)})


def _set(position, values):
    return [getattr(position, name).eq(value) for name, value in values.items()]


def _advanced(position, desc, positions, cols, in_x, in_y, addr):
    """Field values of ``position`` moved on by ``positions`` output positions, which are
    ``cols`` (< OW) columns plus whole rows; ``in_x``, ``in_y`` and ``addr`` are what the
    move adds to the window corner before wrapping past the map's right edge."""
    out_x = position.out_x + cols
    wrapped = out_x >= desc.out_w
    return {"index": position.index + positions,
            "out_x": Mux(wrapped, out_x - desc.out_w, out_x),
            "in_x": position.in_x + in_x - Mux(wrapped, desc.ow_s, 0),
            "in_y": position.in_y + in_y + Mux(wrapped, desc.stride, 0),
            "addr": position.addr + addr + Mux(wrapped, desc.wrap_addr, 0)}


class Controller(wiring.Component):
    """Host handshake, position tiles outside, then groups, channel tiles inside a group,
    the fan-in innermost.

    States::

        IDLE   loads allowed (busy = 0); start -> INIT, cycles = 0
        INIT   ``rows`` cycles: output positions 0 .. rows-1 shift into the rows
        FEED   one operand request per cycle: tile after tile, each a period of
               P = desc.period cycles whose first K cycles issue j = 0 .. K-1 (the host
               computes P >= K so that the drain lane keeps up, jobs.tile_period)
        WAIT   until the drain lane writes the last output -> IDLE (done = 1)

    Row ``r`` requests activation ``(g*Cg + c, oy*s + ky*d - p, ox*s + kx*d - p)`` of its
    position at buffer address ``addr + (g*Cg + c)*H*W + ky*d*W + kx*d`` (invalid outside
    the map or past the last position), with ``g`` the tile's group, ``Cg`` the input
    channels per group and ``d`` the dilation; column ``c`` requests weight ``(c0 + c, j)``
    at ``j*out_channels + c0 + c`` (invalid past the group's last channel, so a channel
    tile never mixes groups: every column of a tile reads the same input channels). The
    host precomputes every step size in the descriptor, so sequencing needs additions
    only.

    Parameters
    ----------
    config : ArrayConfig

    Attributes
    ----------
    start : In(1)
        Start the layer (sampled in IDLE only).
    desc : In(descriptor_layout(config))
        The layer descriptor registers.
    drain_last_write : In(1)
        The drain lane writes the layer's last output this cycle.
    fetch : Out(request_signature(config))
        This cycle's operand requests (combinational from the controller's registers).
    starting : Out(1)
        A start is accepted this cycle (the drain lane resets its counters).
    busy : Out(1)
        Not in IDLE.
    done : Out(1)
        One-cycle pulse, raised on the edge that writes the last output.
    cycles : Out(CYCLE_BITS)
        Edges counted while busy, from the start edge to the edge that raised ``done``.
    LATENCY : int
        1: ``done`` rises one edge after ``drain_last_write``.

    Raises
    ------
    TypeError
        ``config`` is not an :class:`ArrayConfig`.
    """

    LATENCY = 1

    def __init__(self, config):
        with validating(self):
            if not isinstance(config, ArrayConfig):
                raise TypeError(f"config must be an ArrayConfig, not {config!r}")
        self._config = config
        super().__init__({
            "start": In(1),
            "desc": In(descriptor_layout(config)),
            "drain_last_write": In(1),
            "fetch": Out(request_signature(config)),
            "starting": Out(1),
            "busy": Out(1),
            "done": Out(1),
            "cycles": Out(CYCLE_BITS),
        })

    def elaborate(self, platform):
        mod = Module()
        cfg = self._config
        rows, cols = cfg.rows, cfg.cols
        desc = self.desc
        layout = position_layout(cfg)

        # Each row's output position; `next_position` is the one INIT shifts in next.
        positions = [Signal(layout, name=f"row{r}") for r in range(rows)]
        next_position = Signal(layout, name="next_position")
        init_count = Signal(range(rows + 1))
        # The fan-in loop: operand j = (c*k + ky)*k + kx and the buffer offsets it implies.
        j = Signal(unsigned(cfg.dim_bits))
        kx = Signal(unsigned(cfg.dim_bits))
        ky = Signal(unsigned(cfg.dim_bits))
        dx = Signal(unsigned(cfg.dim_bits))              # kx*d: the tap's column offset
        dy = Signal(unsigned(cfg.dim_bits))              # ky*d: the tap's row offset
        act_offset = Signal(signed(cfg.coord_bits))      # (g*Cg + c)*H*W + ky*d*W + kx*d
        row_offset = Signal(signed(cfg.coord_bits))      # (g*Cg + c)*H*W + ky*d*W
        channel_offset = Signal(signed(cfg.coord_bits))  # (g*Cg + c)*H*W
        weight_row = Signal(unsigned(cfg.coord_bits))    # j * out_channels
        first_channel = Signal(unsigned(cfg.dim_bits))   # c0, the tile's first channel
        # The tile's group: one past its last output channel, and its first input channel's
        # activation-buffer offset g*Cg*H*W.
        group_end = Signal(unsigned(cfg.dim_bits))
        group_base = Signal(signed(cfg.coord_bits))
        period_last = Signal(unsigned(cfg.dim_bits))
        mod.d.comb += period_last.eq(desc.period - 1)
        idle = Signal()
        feeding = Signal()
        issue = Signal()
        mod.d.comb += issue.eq(feeding & (j < desc.fan_in))

        # -- operand requests ----------------------------------------------------------------
        request = self.fetch
        for r, position in enumerate(positions):
            iy = position.in_y + dy
            ix = position.in_x + dx
            mod.d.comb += [
                request.act_addr[r].eq(position.addr + act_offset),
                request.act_valid[r].eq((position.index < desc.positions) & (iy >= 0)
                                        & (iy < desc.in_h) & (ix >= 0) & (ix < desc.in_w)),
            ]
        for c in range(cols):
            channel = first_channel + c
            mod.d.comb += [request.weight_addr[c].eq(weight_row + channel),
                           request.weight_valid[c].eq(channel < group_end)]
        mod.d.comb += [request.control.en.eq(issue),
                       request.control.clr.eq(issue & (j == 0)),
                       request.control.last.eq(issue & (j == desc.fan_in - 1))]

        # -- host handshake ------------------------------------------------------------------
        mod.d.comb += [self.busy.eq(~idle), self.starting.eq(idle & self.start)]
        with mod.If(~idle):
            mod.d.sync += self.cycles.eq(self.cycles + 1)
        mod.d.sync += self.done.eq(self.drain_last_write)

        def restart_fan_in(base):
            """Operand 0 of a tile whose group's input channels start at offset ``base``."""
            return [j.eq(0), kx.eq(0), ky.eq(0), dx.eq(0), dy.eq(0), act_offset.eq(base),
                    row_offset.eq(base), channel_offset.eq(base), weight_row.eq(0)]

        # idle and feeding are continuous assignments from the state register (not set in
        # the states): Icarus never evaluates an `always @*` block whose inputs keep their
        # initial values, which would leave idle undefined until the first start.
        with mod.FSM() as fsm:
            with mod.State("IDLE"):
                with mod.If(self.start):
                    mod.d.sync += _set(next_position, {
                        "index": 0, "out_x": 0, "in_x": -desc.pad, "in_y": -desc.pad,
                        "addr": desc.base0})
                    mod.d.sync += [init_count.eq(0), self.cycles.eq(0)]
                    mod.next = "INIT"
            with mod.State("INIT"):
                for r in range(rows - 1):
                    mod.d.sync += positions[r].eq(positions[r + 1])
                mod.d.sync += positions[rows - 1].eq(next_position)
                mod.d.sync += _set(next_position, _advanced(
                    next_position, desc, 1, 1, desc.stride, 0, desc.stride))
                mod.d.sync += init_count.eq(init_count + 1)
                with mod.If(init_count == rows - 1):
                    mod.d.sync += [*restart_fan_in(0), first_channel.eq(0),
                                   group_end.eq(desc.group_out), group_base.eq(0)]
                    mod.next = "FEED"
            with mod.State("FEED"):
                with mod.If(j == period_last):
                    with mod.If(first_channel + cols < group_end):
                        # The next channel tile of this group.
                        mod.d.sync += [*restart_fan_in(group_base),
                                       first_channel.eq(first_channel + cols)]
                    with mod.Elif(group_end < desc.out_channels):
                        # The next group: its first channel and its input channels.
                        next_base = group_base + desc.group_in_words
                        mod.d.sync += [*restart_fan_in(next_base), group_base.eq(next_base),
                                       first_channel.eq(group_end),
                                       group_end.eq(group_end + desc.group_out)]
                    with mod.Else():
                        # The next position tile, group 0.
                        mod.d.sync += [*restart_fan_in(0), first_channel.eq(0),
                                       group_end.eq(desc.group_out), group_base.eq(0)]
                        with mod.If(positions[0].index + rows >= desc.positions):
                            mod.next = "WAIT"
                        with mod.Else():
                            for position in positions:
                                mod.d.sync += _set(position, _advanced(
                                    position, desc, rows, desc.adv_x, desc.adv_ix,
                                    desc.adv_iy, desc.adv_addr))
                with mod.Else():
                    mod.d.sync += [j.eq(j + 1), weight_row.eq(weight_row + desc.out_channels)]
                    with mod.If(kx == desc.kernel - 1):
                        mod.d.sync += [kx.eq(0), dx.eq(0)]
                        with mod.If(ky == desc.kernel - 1):
                            next_channel = channel_offset + desc.in_hw
                            mod.d.sync += [ky.eq(0), dy.eq(0),
                                           channel_offset.eq(next_channel),
                                           row_offset.eq(next_channel),
                                           act_offset.eq(next_channel)]
                        with mod.Else():
                            mod.d.sync += [ky.eq(ky + 1), dy.eq(dy + desc.dilation),
                                           row_offset.eq(row_offset + desc.dil_row),
                                           act_offset.eq(row_offset + desc.dil_row)]
                    with mod.Else():
                        mod.d.sync += [kx.eq(kx + 1), dx.eq(dx + desc.dilation),
                                       act_offset.eq(act_offset + desc.dilation)]
            with mod.State("WAIT"):
                with mod.If(self.drain_last_write):
                    mod.next = "IDLE"
        mod.d.comb += [idle.eq(fsm.ongoing("IDLE")), feeding.eq(fsm.ongoing("FEED"))]
        return mod
