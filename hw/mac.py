"""The WrapNet MAC unit (paper Fig. 2.4): multiplier, product register, wrapping accumulator,
optional cyclic activation."""

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from wrapkit.ref.datapath import MacConfig

from .accumulator import Accumulator
from .cyclic import CyclicActivation
from .multiplier import Multiplier
from .params import validating

__all__ = ["MAC", "add_multiply_accumulate"]


def add_multiply_accumulate(mod, config, *, a, w, en, clr):
    """Add the MAC's ``mult`` and ``accum`` submodules to ``mod`` and wire them.

    The one place that joins a :class:`~.multiplier.Multiplier` to an
    :class:`~.accumulator.Accumulator`; the MAC and the array's processing element both
    build on it, so their arithmetic cannot drift apart.

    Parameters
    ----------
    mod : amaranth.hdl.Module
        The module being elaborated; receives the submodules ``mult`` and ``accum``.
    config : wrapkit.ref.MacConfig
    a, w : Value
        The operation's activation and weight code, presented to the multiplier.
    en, clr : Value
        The operation's control bits one cycle later, aligned with the product register
        (the caller registers them: the MAC in its own flops, a processing element in its
        forwarding flops).

    Returns
    -------
    Accumulator
        The accumulator, whose ``acc`` holds the wrapped dot product
        :data:`MAC.LATENCY` edges after the operation was presented.
    """
    mod.submodules.mult = mult = Multiplier(config)
    mod.submodules.accum = accum = Accumulator(prod_bits=config.prod_bits,
                                               acc_bits=config.acc_bits)
    mod.d.comb += [
        mult.a.eq(a),
        mult.w.eq(w),
        accum.prod.eq(mult.prod),
        accum.en.eq(en),
        accum.clr.eq(clr),
    ]
    return accum


class MAC(wiring.Component):
    """One multiply-accumulate unit, bit-exact to :func:`wrapkit.ref.mac_stream`.

    Block diagram (submodule names in brackets; each is its own Verilog module so synthesis
    can report the paper's area groups)::

        a ---+
        w ---+--[mult: decode, multiply, prod register]--- prod ---+
        en  ----[en_q ]----------------------------------------------+
        clr ----[clr_q]----------------------------------------------+--[accum: adder,
                                                                        acc register]--+-- acc
                                                  y --[cyclic: CyclicActivation]--------+

    Cycle table (edge ``n`` is the first rising edge after the operation is presented)::

        before edge n   a, w, en, clr presented
        at edge n       prod <= wrap(a*w, prod_bits); en_q <= en; clr_q <= clr
        at edge n+1     acc  <= wrap((clr_q ? 0 : acc) + (en_q ? prod : 0), acc_bits)
        after edge n+1  acc == ref.mac_stream(...)[0][op], y == cyclic(acc) (combinational)

    A new operation can be presented every cycle.

    Parameters
    ----------
    config : wrapkit.ref.MacConfig, positional only
        The configuration. Either this or the keyword parameters below, not both.
    act_bits, act_signed, weight_kind, weight_bits, acc_bits, k : keyword only
        As in :class:`~wrapkit.ref.MacConfig` (activation width 1..32 and signedness, weight
        kind binary/ternary/uniform, uniform weight width 2..16, accumulator width 2..62,
        cyclic slope k >= 1 or None for no cyclic unit).

    Attributes
    ----------
    a : In(act_bits), signed iff ``act_signed``
        Activation operand.
    w : In(unsigned(weight_code_bits))
        Weight code: binary 1 bit (0 = +1, 1 = -1); ternary 2 bits (bit 1 = negative,
        bit 0 = non-zero, 0b10 decodes to 0); uniform ``weight_bits`` two's complement.
    en : In(1)
        Operand valid: add this product.
    clr : In(1)
        Start a new dot product (the accumulator starts from 0 for this operation).
    acc : Out(signed(acc_bits))
        The accumulator register.
    y : Out(signed(acc_bits))
        ``cyclic(acc)``; present only when ``k`` is set.
    config : MacConfig
    LATENCY : int
        2 clock edges from presenting an operation to seeing it in ``acc``.

    The clock and reset are Amaranth's ``sync`` domain (ports ``clk`` and ``rst``,
    synchronous, active high); reset clears every register to 0.

    Raises
    ------
    TypeError
        ``config`` is not a MacConfig, both a config and keywords are given, a keyword is
        unknown or missing, or a parameter has the wrong type.
    ValueError
        A parameter is out of range (the message names it, the range and the value).
    """

    #: Multiplier.LATENCY (product register) + Accumulator.LATENCY (accumulator register).
    LATENCY = Multiplier.LATENCY + Accumulator.LATENCY

    def __init__(self, config=None, /, **params):
        with validating(self):
            if config is None:
                try:
                    config = MacConfig(**{"weight_bits": None, **params})
                except TypeError as exc:
                    if "argument" not in str(exc):  # a type error in a value, not in the call
                        raise
                    raise TypeError(
                        f"MAC() needs a MacConfig or the keyword parameters act_bits, "
                        f"act_signed, weight_kind, weight_bits, acc_bits, k: {exc}") from None
            elif params:
                raise TypeError(f"MAC() takes a MacConfig or keyword parameters, not both "
                                f"(got {', '.join(sorted(params))})")
            elif not isinstance(config, MacConfig):
                raise TypeError(f"config must be a MacConfig, not {config!r}")
        self._config = config

        act_shape = signed(config.act_bits) if config.act_signed else unsigned(config.act_bits)
        members = {
            "a": In(act_shape),
            "w": In(unsigned(config.weight_code_bits)),
            "en": In(1),
            "clr": In(1),
            "acc": Out(signed(config.acc_bits)),
        }
        if config.k is not None:
            members["y"] = Out(signed(config.acc_bits))
        super().__init__(members)

    @classmethod
    def from_config(cls, config):
        """Same as ``MAC(config)``; reads well next to ``MacConfig.from_dict``."""
        return cls(config)

    @property
    def config(self):
        return self._config

    def elaborate(self, platform):
        mod = Module()
        cfg = self._config

        # The control bits travel beside the product register so that each operation's en/clr
        # reach the accumulator together with its product (auxiliary group).
        en_q = Signal()
        clr_q = Signal()
        mod.d.sync += [en_q.eq(self.en), clr_q.eq(self.clr)]
        accum = add_multiply_accumulate(mod, cfg, a=self.a, w=self.w, en=en_q, clr=clr_q)
        mod.d.comb += self.acc.eq(accum.acc)

        if cfg.k is not None:
            mod.submodules.cyclic = cyc = CyclicActivation(cfg.acc_bits, cfg.k)
            mod.d.comb += [cyc.m.eq(accum.acc), self.y.eq(cyc.y)]
        return mod
