"""A packed (SWAR) accumulator: several narrow lanes in one scalar word, three adder behaviours.

The hardware counterpart of :mod:`wrapkit.ref.bitpack`: the same word holds ``lanes`` lanes of
``lane_bits`` bits, and a 2-bit ``mode`` input picks, every cycle, what a scalar CPU adder
(carry), a vector unit (isolated lanes) or the buffer-bit scheme would do. Structurally the
difference between the behaviours is small: cutting the carry chain at a lane boundary is one
AND gate, clearing a guard bit another. It is cosimulated against
:func:`wrapkit.ref.bitpack.packed_stream`.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from wrapkit.ref.bitpack import PACK_MODES, PackSpec

from .params import validating

__all__ = ["MODE_CODES", "PackedAccumulator", "packed_adder_design"]

#: Codes of the ``mode`` input; code 3 is reserved and adds like carry mode.
MODE_CODES = {mode: code for code, mode in enumerate(PACK_MODES)}


class PackedAccumulator(wiring.Component):
    """``acc <= packed_add(clr ? 0 : acc, en ? x : 0)`` in the mode chosen by ``mode``.

    Each lane has its own ``lane_bits + 1``-bit adder; the carry out of lane ``j`` feeds lane
    ``j+1`` unless the mode isolates lanes, so in carry mode the lanes form exactly the
    ``lanes*lane_bits``-bit scalar adder (the top lane's carry is dropped). In buffer mode the
    guard bit (top bit) of every lane is cleared after the addition.

    ===== ========= ==================================================================
    code  mode      lane j of the new accumulator
    ===== ========= ==================================================================
    0     carry     (acc_j + x_j + c_(j-1)) mod 2^b, c_j its carry out
    1     isolated  (acc_j + x_j) mod 2^b
    2     buffer    (acc_j + x_j + c_(j-1)) mod 2^(b-1)  (guard bit cleared)
    3     reserved  as carry
    ===== ========= ==================================================================

    Cycle table: inputs presented before rising edge ``n`` are absorbed at edge ``n``; after
    it, ``acc``, ``flags`` and (combinationally) ``total`` equal
    ``ref.bitpack.packed_stream(...)[op]``. A new word can be added every cycle.

    Parameters
    ----------
    lane_bits : int, 2..word_bits (keyword)
        Width ``b`` of one lane, guard bit included.
    lanes : int, 1..word_bits // lane_bits (keyword, default the most that fit)
    word_bits : 32 | 64 (keyword, default 32)

    Attributes
    ----------
    x : In(word_bits)
        Packed word to add; bits above ``lanes*lane_bits`` are ignored.
    en : In(1)
        Add ``x`` this cycle (else add 0).
    clr : In(1)
        Start from 0 instead of ``acc`` this cycle.
    mode : In(2)
        Adder behaviour, see the table and :data:`MODE_CODES`.
    acc : Out(word_bits)
        Accumulator register (``sync`` domain, reset 0); bits above the lanes stay 0.
    flags : Out(lanes)
        Registered with ``acc``: bit ``j`` is lane ``j``'s overflow in the last addition
        (the carry out of the lane; in buffer mode the carry into its guard bit).
    total : Out(signed(lane_bits))
        Combinational lane reduction of ``acc``: ``wrap_d(sum of lane data fields)``,
        ``d = lane_bits`` (``lane_bits - 1`` in buffer mode, sign-extended).
    LATENCY : int
        1.

    Raises
    ------
    TypeError, ValueError
        As :class:`wrapkit.ref.bitpack.PackSpec`: the message names the parameter, its range
        and the value given.
    """

    LATENCY = 1

    def __init__(self, *, lane_bits=8, lanes=None, word_bits=32):
        with validating(self):
            if lanes is None and isinstance(word_bits, int) and isinstance(lane_bits, int) \
                    and lane_bits > 0:
                lanes = max(1, word_bits // lane_bits)
            # PackSpec does all validation: hardware and reference accept the same shapes.
            self._spec = PackSpec(lane_bits=lane_bits, lanes=lanes, word_bits=word_bits)
        super().__init__({
            "x": In(unsigned(word_bits)),
            "en": In(1),
            "clr": In(1),
            "mode": In(2),
            "acc": Out(unsigned(word_bits)),
            "flags": Out(unsigned(self._spec.lanes)),
            "total": Out(signed(lane_bits)),
        })

    @property
    def spec(self):
        """The :class:`~wrapkit.ref.bitpack.PackSpec` (its ``mode`` field is unused here)."""
        return self._spec

    def elaborate(self, platform):
        mod = Module()
        b, n = self._spec.lane_bits, self._spec.lanes
        isolate = Signal()
        buffer = Signal()
        mod.d.comb += [isolate.eq(self.mode == MODE_CODES["isolated"]),
                       buffer.eq(self.mode == MODE_CODES["buffer"])]

        base = Mux(self.clr, 0, self.acc)
        addend = Mux(self.en, self.x, 0)
        new_lanes, flags = [], []
        cin = Const(0, 1)
        for j in range(n):
            lo = j * b
            a_j = Signal(b, name=f"base{j}")
            x_j = Signal(b, name=f"addend{j}")
            s_j = Signal(b + 1, name=f"sum{j}")
            # The carry into the guard bit: what the buffer absorbs (bit b-1 of the low sum).
            g_j = Signal(b, name=f"low{j}")
            mod.d.comb += [a_j.eq(base[lo:lo + b]), x_j.eq(addend[lo:lo + b]),
                           s_j.eq(a_j + x_j + cin),
                           g_j.eq(a_j[:b - 1] + x_j[:b - 1] + cin)]
            lane = Mux(buffer, Cat(s_j[:b - 1], Const(0, 1)), s_j[:b])
            new_lanes.append(lane)
            flags.append(Mux(buffer, g_j[b - 1], s_j[b]))
            # The only difference between a scalar adder and a vector unit: this AND gate.
            cin = s_j[b] & ~isolate
        mod.d.sync += [self.acc.eq(Cat(*new_lanes)), self.flags.eq(Cat(*flags))]

        # Lane reduction (combinational adder tree over the registered word).
        fields = [self.acc[j * b:(j + 1) * b] for j in range(n)]
        wide = b + max(1, n.bit_length())
        total_full = Signal(wide)
        total_buf = Signal(wide)
        mod.d.comb += [total_full.eq(sum(f for f in fields)),
                       total_buf.eq(sum(f[:b - 1] for f in fields))]
        # Buffer mode: b-1 data bits, sign-extended from bit b-2 (a 1-bit field is {0, -1}).
        buf_ext = Cat(total_buf[:b - 1], total_buf[b - 2])
        mod.d.comb += self.total.eq(Mux(buffer, buf_ext, total_full[:b]))
        return mod


def packed_adder_design(*, lane_bits=8, lanes=None, word_bits=32, name=None):
    """Elaborate a :class:`PackedAccumulator` to Verilog with a ``wrapkit.rtl/1`` manifest.

    ``name`` defaults to ``packed_acc_w<word_bits>_l<lanes>x<lane_bits>``. The manifest's
    ``design`` is ``"packed_adder"``, its ``config`` the spec plus the mode codes; read it back
    with :func:`wrapkit.hw.manifest.load_manifest`. Returns a
    :class:`wrapkit.hw.verilog.Design` (nothing written; see
    :func:`wrapkit.hw.verilog.write_designs`). ``wrapkit rtl packed-adder`` runs this.

    Raises
    ------
    TypeError, ValueError
        As :class:`PackedAccumulator`, or ``name`` is not a Verilog identifier.
    """
    from .manifest import build_manifest
    from .verilog import Design, check_name, component_ports, to_verilog

    if name is not None:
        check_name(name)  # before elaborating anything, so a bad name leaves no unused unit
    unit = PackedAccumulator(lane_bits=lane_bits, lanes=lanes, word_bits=word_bits)
    s = unit.spec
    if name is None:
        name = f"packed_acc_w{s.word_bits}_l{s.lanes}x{s.lane_bits}"
    summary = (f"packed accumulator, {s.lanes} lanes x {s.lane_bits} bits in a "
               f"{s.word_bits}-bit word, modes {', '.join(PACK_MODES)}, latency "
               f"{PackedAccumulator.LATENCY}")
    text, yosys = to_verilog(unit, name, summary)
    config = {"lane_bits": s.lane_bits, "lanes": s.lanes, "word_bits": s.word_bits,
              "mode_codes": dict(MODE_CODES)}
    manifest = build_manifest(
        name=name, design="packed_adder", config=config, latency=PackedAccumulator.LATENCY,
        clocked=True, ports=component_ports(unit, True), hierarchy={}, verilog_text=text,
        yosys=yosys)
    return Design(name, text, manifest)
