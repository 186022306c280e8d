"""One processing element of the output-stationary array: a WrapNet MAC that passes its
operands on to its neighbours and keeps its finished dot product for the drain."""

from amaranth.hdl import Module, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from wrapkit.ref.datapath import MacConfig

from .._params import validating
from ..accumulator import Accumulator
from ..multiplier import Multiplier

__all__ = ["ProcessingElement"]


class ProcessingElement(wiring.Component):
    """MAC + systolic forwarding registers + result register.

    The activation and its control bits (``en``, ``clr``, ``last``) enter from the left and
    leave to the right one cycle later; the weight code enters from above and leaves below
    one cycle later. The forwarded ``en``/``clr`` flops are also the MAC's control pipeline
    flops (they line up with the product register), so a PE is exactly the MAC of
    :class:`~wrapkit.hw.mac.MAC` — the same ``Multiplier`` and ``Accumulator`` submodules,
    the accumulator ``acc_bits`` wide and wrapping — plus the forwarding registers and
    ``res``.

    Cycle table (operation presented during cycle ``x``)::

        edge ending x     prod <= wrap(a*w); a/w/en/clr/last_out <= inputs
        edge ending x+1   acc <= wrap((clr ? 0 : acc) + (en ? prod : 0)); cap <= last
        edge ending x+2   if cap: res <= acc      (the finished dot product)

    ``acc`` holds a finished dot product for exactly one cycle when the next dot product
    starts right behind it (its first operation carries ``clr``), which is when ``res``
    copies it; ``res`` then holds it until the next ``last``.

    Parameters
    ----------
    config : wrapkit.ref.MacConfig
        The MAC (its ``k`` is ignored: the cyclic activation sits in the drain lane).

    Attributes
    ----------
    a_in, a_out : activation (``act_bits``, signed iff ``act_signed``)
    w_in, w_out : unsigned(weight_code_bits) weight code
    en_in, clr_in, last_in, en_out, clr_out, last_out : 1 bit
        Operand valid; first operand of a dot product; last operand of a dot product.
    res : Out(signed(acc_bits))
        The last finished dot product, ``wrap(sum a*w, acc_bits)``.
    cap : Out(1)
        ``res`` is loaded at the end of this cycle.
    """

    def __init__(self, config):
        with validating(self):
            if not isinstance(config, MacConfig):
                raise TypeError(f"config must be a MacConfig, not {config!r}")
        self._config = config
        act = signed(config.act_bits) if config.act_signed else unsigned(config.act_bits)
        code = unsigned(config.weight_code_bits)
        super().__init__({
            "a_in": In(act), "w_in": In(code),
            "en_in": In(1), "clr_in": In(1), "last_in": In(1),
            "a_out": Out(act), "w_out": Out(code),
            "en_out": Out(1), "clr_out": Out(1), "last_out": Out(1),
            "res": Out(signed(config.acc_bits)),
            "cap": Out(1),
        })

    @property
    def config(self):
        return self._config

    def elaborate(self, platform):
        mod = Module()
        cfg = self._config
        mod.submodules.mult = mult = Multiplier(cfg)
        mod.submodules.accum = accum = Accumulator(prod_bits=cfg.prod_bits,
                                                   acc_bits=cfg.acc_bits)
        mod.d.comb += [mult.a.eq(self.a_in), mult.w.eq(self.w_in)]
        mod.d.sync += [
            self.a_out.eq(self.a_in), self.w_out.eq(self.w_in),
            self.en_out.eq(self.en_in), self.clr_out.eq(self.clr_in),
            self.last_out.eq(self.last_in),
            self.cap.eq(self.last_out),
        ]
        mod.d.comb += [accum.prod.eq(mult.prod), accum.en.eq(self.en_out),
                       accum.clr.eq(self.clr_out)]
        with mod.If(self.cap):
            mod.d.sync += self.res.eq(accum.acc)
        return mod
