"""The MAC's multiplier stage: weight decoder, multiplier and product (pipeline) register."""

from amaranth.hdl import Module, Mux, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from wrapkit.ref.datapath import MacConfig

from .params import validating
from .weights import decode_weight

__all__ = ["Multiplier"]


class Multiplier(wiring.Component):
    """Decode the weight, multiply, and register ``wrap(a*w, prod_bits)``.

    This is the paper's "multiplier" group (Fig. 2.4): the pipeline register between
    multiplier and accumulator counts as part of it.

    Binary and ternary weights need no multiplier: the product is ``a``, ``-a`` or 0, chosen
    by the decoded value's two bits (negative, non-zero). Uniform weights use a signed
    multiplier whose result is cut to ``prod_bits`` (synthesis drops the unused high bits).

    Parameters
    ----------
    config : wrapkit.ref.MacConfig
        Operand widths, weight kind and ``prod_bits`` (derived once, in the reference).

    Attributes
    ----------
    a : In(act_bits), signed iff ``config.act_signed``
        Activation.
    w : In(unsigned(weight_code_bits))
        Weight code (see :func:`wrapkit.ref.encode_weights`).
    prod : Out(signed(prod_bits))
        Product register, clocked by ``sync``; reset to 0.
    LATENCY : int
        1: ``prod`` shows the operands presented before the previous clock edge.

    Raises
    ------
    TypeError
        ``config`` is not a :class:`~wrapkit.ref.MacConfig`.
    """

    LATENCY = 1

    def __init__(self, config):
        with validating(self):
            if not isinstance(config, MacConfig):
                raise TypeError(f"config must be a MacConfig, not {config!r}")
        self._config = config
        act_shape = signed(config.act_bits) if config.act_signed else unsigned(config.act_bits)
        super().__init__({
            "a": In(act_shape),
            "w": In(unsigned(config.weight_code_bits)),
            "prod": Out(signed(config.prod_bits)),
        })

    @property
    def config(self):
        return self._config

    def elaborate(self, platform):
        mod = Module()
        cfg = self._config
        value = decode_weight(self.w, cfg.weight_kind, cfg.weight_bits)
        if cfg.weight_kind == "uniform":
            product = self.a * value
        else:
            negative, nonzero = value[1], value[0]
            product = Mux(nonzero, Mux(negative, -self.a, self.a), 0)
        # Assigning to the narrower register keeps the low prod_bits: wrap(a*w, prod_bits).
        mod.d.sync += self.prod.eq(product)
        return mod
