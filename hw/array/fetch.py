"""Operand fetch: the activation and weight buffers, read once per cycle and skewed for the grid."""

from amaranth.hdl import Module, Mux, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..params import validating
from .buffer import Buffer
from .config import LD_DATA_BITS, ArrayConfig
from .delay import DelayLine
from .grid import feed_signature
from .pe import CONTROL

__all__ = ["OperandFetch", "request_signature"]


def request_signature(config):
    """The operand requests of one cycle, as the controller drives them.

    Members (all ``Out``): ``act_addr`` and ``act_valid`` per row (``array(rows)``: the
    activation-buffer address, and whether the activation lies inside the map, else it
    reads as 0), ``weight_addr`` and ``weight_valid`` per column (``array(cols)``: the
    weight-buffer address, and whether the channel exists, else the code reads as 0), and
    ``control`` (:data:`~.pe.CONTROL`: operand valid, first and last of a dot product).
    """
    return wiring.Signature({
        "act_addr": Out(unsigned(config.act_addr_bits)).array(config.rows),
        "act_valid": Out(1).array(config.rows),
        "weight_addr": Out(unsigned(config.weight_addr_bits)).array(config.cols),
        "weight_valid": Out(1).array(config.cols),
        "control": Out(CONTROL),
    })


class OperandFetch(wiring.Component):
    """Activation and weight buffers, their read ports, padding and the systolic skew.

    Each cycle every row reads one activation and every column one weight code, at the
    addresses the controller requests. A read takes one edge (the buffers are synchronous
    memories); the request's validity and control bits wait beside it in registers, so an
    invalid activation (padding, a position past the map) enters the grid as 0 and an
    invalid weight (a channel past the layer) as code 0. Then row ``r``'s activation and
    control bits are delayed ``r`` more cycles and column ``c``'s weight ``c`` cycles: with
    the grid's own forwarding, processing element ``(r, c)`` sees both operands of a request
    ``LATENCY + r + c`` cycles after it.

    Cycle table (request presented before edge ``n``)::

        edge n          buffers read; validity and control registered
        after edge n    row 0 / column 0 operands at the grid's edge (LATENCY = 1)
        after n + r     row r's activation and control bits (n + c: column c's weight)

    The buffers are written through the load port (``ld_addr``, ``ld_data``) while the
    array is idle: ``act_we`` and ``weight_we`` select the buffer.

    Parameters
    ----------
    config : ArrayConfig

    Attributes
    ----------
    ld_addr : In(ld_addr_bits)
    ld_data : In(LD_DATA_BITS)
        Load port; a buffer keeps the low bits of each.
    act_we, weight_we : In(1)
        Write ``ld_data`` into the activation / weight buffer at ``ld_addr``.
    request : In(request_signature(config))
        This cycle's operand requests.
    grid : Out(feed_signature(config))
        Skewed operands for the grid's left and top edges.
    LATENCY : int
        1: the buffer read.

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
            "ld_addr": In(unsigned(config.ld_addr_bits)),
            "ld_data": In(unsigned(LD_DATA_BITS)),
            "act_we": In(1),
            "weight_we": In(1),
            "request": In(request_signature(config)),
            "grid": Out(feed_signature(config)),
        })

    def elaborate(self, platform):
        mod = Module()
        cfg = self._config
        mac = cfg.mac
        request = self.request

        def buffer(name, shape, depth, write_enable, reads):
            mod.submodules[name] = buf = Buffer(shape, depth, reads)
            mod.d.comb += [buf.write_addr.eq(self.ld_addr), buf.write_data.eq(self.ld_data),
                           buf.write_en.eq(write_enable)]
            return buf

        act_buf = buffer("act_buf", unsigned(mac.act_bits), cfg.act_depth, self.act_we,
                           cfg.rows)
        weight_buf = buffer("weight_buf", unsigned(mac.weight_code_bits), cfg.weight_depth,
                              self.weight_we, cfg.cols)

        # What waits beside the buffer read: validity per row and column, the control bits.
        act_valid = DelayLine(cfg.rows, self.LATENCY)
        weight_valid = DelayLine(cfg.cols, self.LATENCY)
        control = DelayLine(CONTROL, self.LATENCY)
        mod.submodules.act_valid = act_valid
        mod.submodules.weight_valid = weight_valid
        mod.submodules.control = control
        for r in range(cfg.rows):
            mod.d.comb += [act_buf.read_addr[r].eq(request.act_addr[r]),
                           act_valid.i[r].eq(request.act_valid[r])]
        for c in range(cfg.cols):
            mod.d.comb += [weight_buf.read_addr[c].eq(request.weight_addr[c]),
                           weight_valid.i[c].eq(request.weight_valid[c])]
        mod.d.comb += control.i.eq(request.control)

        # Skew: row r's control bits are tap r of one line shared by all rows.
        mod.submodules.control_skew = control_skew = DelayLine(CONTROL, cfg.rows - 1)
        mod.d.comb += control_skew.i.eq(control.o)
        for r in range(cfg.rows):
            mod.submodules[f"act_skew{r}"] = act_skew = DelayLine(unsigned(mac.act_bits), r)
            lane = self.grid.west[r]
            flags = control_skew.taps[r]
            mod.d.comb += [act_skew.i.eq(Mux(act_valid.o[r], act_buf.read_data[r], 0)),
                           lane.a.eq(act_skew.o), lane.en.eq(flags.en),
                           lane.clr.eq(flags.clr), lane.last.eq(flags.last)]
        for c in range(cfg.cols):
            mod.submodules[f"weight_skew{c}"] = weight_skew = DelayLine(
                unsigned(mac.weight_code_bits), c)
            mod.d.comb += [weight_skew.i.eq(Mux(weight_valid.o[c], weight_buf.read_data[c],
                                                0)),
                           self.grid.north[c].eq(weight_skew.o)]
        return mod
