"""The layer datapath: buffers, controller, an output-stationary PE array and the drain lane."""

from amaranth.hdl import Array, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .._params import validating
from ..cyclic import CyclicActivation
from .config import (
    BIAS_BITS,
    DESCRIPTOR,
    LOAD_TARGETS,
    MULT_WIDTH,
    SHIFT_BITS,
    ArrayConfig,
    array_ports,
)
from .pe import ProcessingElement
from .requant import Requantizer

__all__ = ["LayerArray"]


class _Pos:
    """A row's output position and the buffer coordinates of its window's corner."""

    def __init__(self, prefix, cb):
        self.p = Signal(unsigned(cb), name=f"{prefix}_p")          # position index
        self.ox = Signal(signed(cb), name=f"{prefix}_ox")          # output column
        self.ix0 = Signal(signed(cb), name=f"{prefix}_ix0")        # ox*s - pad
        self.iy0 = Signal(signed(cb), name=f"{prefix}_iy0")        # oy*s - pad
        self.rb = Signal(signed(cb), name=f"{prefix}_rb")          # iy0*W + ix0

    def fields(self):
        return (self.p, self.ox, self.ix0, self.iy0, self.rb)

    def eq(self, values):
        return [s.eq(v) for s, v in zip(self.fields(), values)]

    def advanced(self, d, dp, dx, dix, diy, daddr):
        """Values after moving ``dp`` positions (``dx`` < OW columns plus whole rows)."""
        ox1 = self.ox + dx
        wrapped = ox1 >= d["out_w"]
        return (self.p + dp,
                Mux(wrapped, ox1 - d["out_w"], ox1),
                self.ix0 + dix - Mux(wrapped, d["ow_s"], 0),
                self.iy0 + diy + Mux(wrapped, d["stride"], 0),
                self.rb + daddr + Mux(wrapped, d["wrap_addr"], 0))


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
    The exact cycle count is :func:`wrapkit.hw.array.cycles.layer_cycles`.

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
        mac = cfg.mac
        R, C = cfg.rows, cfg.cols
        cb, db = cfg.coord_bits, cfg.dim_bits

        # -- descriptor registers and the load port ---------------------------------------
        d = {}
        for name, _, _ in DESCRIPTOR:
            width, sgn = cfg.field_bits(name)
            d[name] = Signal(signed(width) if sgn else unsigned(width), name=f"d_{name}")
        idle = Signal()
        ld = Signal()
        mod.d.comb += ld.eq(self.ld_en & idle)

        def loading(target):
            return ld & (self.ld_sel == LOAD_TARGETS[target])

        with mod.If(loading("desc")):
            with mod.Switch(self.ld_addr):
                for idx, (name, _, _) in enumerate(DESCRIPTOR):
                    with mod.Case(idx):
                        mod.d.sync += d[name].eq(self.ld_data)

        def buffer(name, shape, depth, target, reads):
            mem = Memory(shape=shape, depth=depth, init=[])
            mod.submodules[name] = mem
            if target is not None:
                wp = mem.write_port()
                mod.d.comb += [wp.addr.eq(self.ld_addr), wp.data.eq(self.ld_data),
                               wp.en.eq(loading(target))]
            return mem, [mem.read_port() for _ in range(reads)]

        _, act_rd = buffer("act_buf", unsigned(mac.act_bits), cfg.act_depth, "act", R)
        _, w_rd = buffer("weight_buf", unsigned(mac.weight_code_bits), cfg.weight_depth,
                         "weight", C)
        _, (m_rd,) = buffer("mult_tab", signed(MULT_WIDTH), cfg.max_channels, "mult", 1)
        _, (b_rd,) = buffer("bias_tab", signed(BIAS_BITS), cfg.max_channels, "bias", 1)
        _, (s_rd,) = buffer("shift_tab", unsigned(SHIFT_BITS), cfg.max_channels, "shift", 1)
        out_mem, (out_rd,) = buffer("out_buf", unsigned(cfg.out_word_bits), cfg.out_depth,
                                    None, 1)
        out_wp = out_mem.write_port()
        mod.d.comb += [out_rd.addr.eq(self.rd_addr), self.rd_data.eq(out_rd.data)]

        # -- PE grid ------------------------------------------------------------------------
        pes = [[ProcessingElement(mac) for _ in range(C)] for _ in range(R)]
        for r in range(R):
            for c in range(C):
                mod.submodules[f"pe_{r}_{c}"] = pe = pes[r][c]
                if c > 0:
                    left = pes[r][c - 1]
                    mod.d.comb += [pe.a_in.eq(left.a_out), pe.en_in.eq(left.en_out),
                                   pe.clr_in.eq(left.clr_out), pe.last_in.eq(left.last_out)]
                if r > 0:
                    mod.d.comb += pe.w_in.eq(pes[r - 1][c].w_out)

        # -- controller: position tiles outside, channel tiles inside, fan-in innermost -----
        rows = [_Pos(f"row{r}", cb) for r in range(R)]
        stepper = _Pos("init", cb)
        init_cnt = Signal(range(R + 1))
        j = Signal(unsigned(db))
        kx = Signal(unsigned(db))
        ky = Signal(unsigned(db))
        off = Signal(signed(cb))        # c*H*W + ky*W + kx of operand j
        off_row = Signal(signed(cb))    # c*H*W + ky*W
        off_ch = Signal(signed(cb))     # c*H*W
        wrow = Signal(unsigned(cb))     # j * out_channels
        c0 = Signal(unsigned(db))       # first channel of the tile
        feeding = Signal()
        period_last = Signal(unsigned(db))
        mod.d.comb += period_last.eq(Mux(d["fan_in"] >= R * C, d["fan_in"] - 1, R * C - 1))
        issue = Signal()
        mod.d.comb += issue.eq(feeding & (j < d["fan_in"]))

        # Operand fetch: addresses this cycle, data (and validity) next cycle.
        rv_q = Signal(R)
        cv_q = Signal(C)
        en_q, clr_q, last_q = Signal(), Signal(), Signal()
        for r, row in enumerate(rows):
            iy = row.iy0 + ky
            ix = row.ix0 + kx
            valid = ((row.p < d["positions"]) & (iy >= 0) & (iy < d["in_h"]) & (ix >= 0)
                     & (ix < d["in_w"]))
            mod.d.comb += act_rd[r].addr.eq(row.rb + off)
            mod.d.sync += rv_q[r].eq(valid)
        for c in range(C):
            ch = c0 + c
            mod.d.comb += w_rd[c].addr.eq(wrow + ch)
            mod.d.sync += cv_q[c].eq(ch < d["out_channels"])
        mod.d.sync += [en_q.eq(issue), clr_q.eq(issue & (j == 0)),
                       last_q.eq(issue & (j == d["fan_in"] - 1))]

        # Skew: row r's operands r cycles late, column c's weights c cycles late.
        flags = [(en_q, clr_q, last_q)]
        for r in range(1, R):
            prev = flags[-1]
            cur = tuple(Signal(name=f"{n}_skew{r}") for n in ("en", "clr", "last"))
            mod.d.sync += [x.eq(y) for x, y in zip(cur, prev)]
            flags.append(cur)
        for r in range(R):
            a = Mux(rv_q[r], act_rd[r].data, 0)
            for s in range(r):
                q = Signal(unsigned(mac.act_bits), name=f"a_skew{r}_{s}")
                mod.d.sync += q.eq(a)
                a = q
            en, clr, last = flags[r]
            pe = pes[r][0]
            mod.d.comb += [pe.a_in.eq(a), pe.en_in.eq(en), pe.clr_in.eq(clr),
                           pe.last_in.eq(last)]
        for c in range(C):
            w = Mux(cv_q[c], w_rd[c].data, 0)
            for s in range(c):
                q = Signal(unsigned(mac.weight_code_bits), name=f"w_skew{c}_{s}")
                mod.d.sync += q.eq(w)
                w = q
            mod.d.comb += pes[0][c].w_in.eq(w)

        # -- drain lane: one result per cycle -> cyclic -> requantizer -> output buffer -----
        trig = pes[R - 1][C - 1].cap
        dactive = Signal()
        dr = Signal(range(R))
        dc = Signal(range(C))
        di = Signal(range(R * C))
        dp0 = Signal(unsigned(cb))
        dc0 = Signal(unsigned(db))
        colbase = Signal(unsigned(cb))
        results = Array([pes[r][c].res for c in range(C) for r in range(R)])
        dch = dc0 + dc
        dpos = dp0 + dr
        last_in_tile = (dr == R - 1) & (dc == C - 1)
        last_ctile = dc0 + C >= d["out_channels"]
        d_valid = dactive & (dpos < d["positions"]) & (dch < d["out_channels"])
        d_final = dactive & last_in_tile & last_ctile & (dp0 + R >= d["positions"])
        mod.d.comb += [m_rd.addr.eq(dch), b_rd.addr.eq(dch), s_rd.addr.eq(dch)]

        y1 = Signal(signed(mac.acc_bits))
        v1, v2, v3 = Signal(), Signal(), Signal()
        f1, f2, f3 = Signal(), Signal(), Signal()
        a1, a2, a3 = (Signal(unsigned(cfg.out_addr_bits), name=f"waddr{i}") for i in (1, 2, 3))
        mod.d.sync += [y1.eq(results[di]), v1.eq(d_valid), f1.eq(d_final),
                       a1.eq(colbase + dr)]
        if mac.k is not None:
            mod.submodules.cyclic = cyc = CyclicActivation(mac.acc_bits, mac.k)
            mod.d.comb += cyc.m.eq(y1)
            y = cyc.y
        else:
            y = y1
        mod.submodules.requant = rq = Requantizer(acc_bits=mac.acc_bits, out_bits=cfg.out_bits)
        mod.d.comb += [rq.y.eq(y), rq.m.eq(m_rd.data), rq.b.eq(b_rd.data),
                       rq.shift.eq(s_rd.data), rq.qmax.eq(d["qmax"])]
        raw2 = Signal(signed(mac.acc_bits))
        raw3 = Signal(signed(mac.acc_bits))
        mod.d.sync += [raw2.eq(y), raw3.eq(raw2), v2.eq(v1), v3.eq(v2), f2.eq(f1), f3.eq(f2),
                       a2.eq(a1), a3.eq(a2)]
        mod.d.comb += [out_wp.en.eq(v3), out_wp.addr.eq(a3),
                       out_wp.data.eq(Mux(d["requant"], rq.code, raw3))]
        mod.d.sync += self.done.eq(f3)

        with mod.If(dactive):
            mod.d.sync += di.eq(di + 1)
            with mod.If(dr == R - 1):
                mod.d.sync += [dr.eq(0), colbase.eq(colbase + d["positions"])]
                with mod.If(dc == C - 1):
                    mod.d.sync += [dc.eq(0), di.eq(0), dactive.eq(trig)]
                    with mod.If(last_ctile):
                        mod.d.sync += [dc0.eq(0), dp0.eq(dp0 + R), colbase.eq(dp0 + R)]
                    with mod.Else():
                        mod.d.sync += dc0.eq(dc0 + C)
                with mod.Else():
                    mod.d.sync += dc.eq(dc + 1)
            with mod.Else():
                mod.d.sync += dr.eq(dr + 1)
        with mod.Elif(trig):
            mod.d.sync += dactive.eq(1)

        # -- sequencing ---------------------------------------------------------------------
        mod.d.comb += self.busy.eq(~idle)
        with mod.If(~idle):
            mod.d.sync += self.cycles.eq(self.cycles + 1)
        # idle and feeding are continuous assignments from the state register (not set in
        # the states): Icarus never evaluates an `always @*` block whose inputs keep their
        # initial values, which would leave idle undefined until the first start.
        with mod.FSM() as fsm:
            with mod.State("IDLE"):
                with mod.If(self.start):
                    mod.d.sync += stepper.eq((0, 0, -d["pad"], -d["pad"], d["base0"]))
                    mod.d.sync += [init_cnt.eq(0), self.cycles.eq(0), dactive.eq(0),
                                   dr.eq(0), dc.eq(0), di.eq(0), dp0.eq(0), dc0.eq(0),
                                   colbase.eq(0)]
                    mod.next = "INIT"
            with mod.State("INIT"):
                # Shift positions 0 .. rows-1 into the rows, one per cycle.
                for r in range(R - 1):
                    mod.d.sync += rows[r].eq(rows[r + 1].fields())
                mod.d.sync += rows[R - 1].eq(stepper.fields())
                mod.d.sync += stepper.eq(stepper.advanced(d, 1, 1, d["stride"], 0,
                                                          d["stride"]))
                mod.d.sync += init_cnt.eq(init_cnt + 1)
                with mod.If(init_cnt == R - 1):
                    mod.d.sync += [j.eq(0), kx.eq(0), ky.eq(0), off.eq(0), off_row.eq(0),
                                   off_ch.eq(0), wrow.eq(0), c0.eq(0)]
                    mod.next = "FEED"
            with mod.State("FEED"):
                with mod.If(j == period_last):
                    mod.d.sync += [j.eq(0), kx.eq(0), ky.eq(0), off.eq(0), off_row.eq(0),
                                   off_ch.eq(0), wrow.eq(0)]
                    with mod.If(c0 + C >= d["out_channels"]):
                        mod.d.sync += c0.eq(0)
                        with mod.If(rows[0].p + R >= d["positions"]):
                            mod.next = "WAIT"
                        with mod.Else():
                            for row in rows:
                                mod.d.sync += row.eq(row.advanced(
                                    d, R, d["adv_x"], d["adv_ix"], d["adv_iy"], d["adv_addr"]))
                    with mod.Else():
                        mod.d.sync += c0.eq(c0 + C)
                with mod.Else():
                    mod.d.sync += [j.eq(j + 1), wrow.eq(wrow + d["out_channels"])]
                    with mod.If(kx == d["kernel"] - 1):
                        mod.d.sync += kx.eq(0)
                        with mod.If(ky == d["kernel"] - 1):
                            mod.d.sync += [ky.eq(0), off_ch.eq(off_ch + d["in_hw"]),
                                           off_row.eq(off_ch + d["in_hw"]),
                                           off.eq(off_ch + d["in_hw"])]
                        with mod.Else():
                            mod.d.sync += [ky.eq(ky + 1), off_row.eq(off_row + d["in_w"]),
                                           off.eq(off_row + d["in_w"])]
                    with mod.Else():
                        mod.d.sync += [kx.eq(kx + 1), off.eq(off + 1)]
            with mod.State("WAIT"):
                with mod.If(f3):
                    mod.next = "IDLE"
        mod.d.comb += [idle.eq(fsm.ongoing("IDLE")), feeding.eq(fsm.ongoing("FEED"))]
        return mod
