"""One processing element of the output-stationary array: a WrapNet MAC that passes its
operands on to its neighbours and keeps its finished dot product for the drain."""

from amaranth.hdl import Module, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from wrapkit.ref.datapath import MacConfig

from ..mac import MAC, add_multiply_accumulate
from ..params import validating

__all__ = ["CONTROL", "PESignature", "ProcessingElement", "activation_shape", "operand_lane"]

#: The control bits that travel with every activation through a grid row: ``en`` operand
#: valid, ``clr`` first operand of a dot product, ``last`` last operand of a dot product.
CONTROL = data.StructLayout({"en": 1, "clr": 1, "last": 1})


def activation_shape(mac):
    """Shape of an activation operand of ``mac`` (signed iff ``mac.act_signed``)."""
    return signed(mac.act_bits) if mac.act_signed else unsigned(mac.act_bits)


def operand_lane(mac):
    """Layout of what enters a grid row each cycle: an activation and its :data:`CONTROL`
    bits (``a``, ``en``, ``clr``, ``last``)."""
    return data.StructLayout({"a": activation_shape(mac), **CONTROL.members})


class PESignature(wiring.Signature):
    """The ports of a :class:`ProcessingElement` for MAC ``mac`` (as seen from the PE).

    Members, in order: ``a_in``, ``w_in``, ``en_in``, ``clr_in``, ``last_in`` (inputs from
    the left and top neighbours), ``a_out``, ``w_out``, ``en_out``, ``clr_out``,
    ``last_out`` (the same, one cycle later, to the right and bottom neighbours), ``res``
    and ``cap``. Two signatures are equal when their MAC configurations are.

    Parameters
    ----------
    mac : wrapkit.ref.MacConfig
    """

    def __init__(self, mac):
        if not isinstance(mac, MacConfig):
            raise TypeError(f"config must be a MacConfig, not {mac!r}")
        self._mac = mac
        act = activation_shape(mac)
        code = unsigned(mac.weight_code_bits)
        super().__init__({
            "a_in": In(act), "w_in": In(code),
            "en_in": In(1), "clr_in": In(1), "last_in": In(1),
            "a_out": Out(act), "w_out": Out(code),
            "en_out": Out(1), "clr_out": Out(1), "last_out": Out(1),
            "res": Out(signed(mac.acc_bits)),
            "cap": Out(1),
        })

    @property
    def mac(self):
        return self._mac

    def __eq__(self, other):
        return type(other) is PESignature and other.mac == self._mac

    def __repr__(self):
        return f"PESignature({self._mac!r})"


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
    signature : PESignature
    LATENCY : int
        3: ``res`` holds a dot product three edges after its last operand was presented.

    Raises
    ------
    TypeError
        ``config`` is not a :class:`~wrapkit.ref.MacConfig`.
    """

    #: Edges from presenting a dot product's last operand to ``res`` holding it: the
    #: MAC's product and accumulator registers, then the result register.
    LATENCY = MAC.LATENCY + 1

    def __init__(self, config):
        with validating(self):
            signature = PESignature(config)
        self._config = config
        super().__init__(signature)

    @property
    def config(self):
        return self._config

    def elaborate(self, platform):
        mod = Module()
        cfg = self._config
        mod.d.sync += [
            self.a_out.eq(self.a_in), self.w_out.eq(self.w_in),
            self.en_out.eq(self.en_in), self.clr_out.eq(self.clr_in),
            self.last_out.eq(self.last_in),
            self.cap.eq(self.last_out),
        ]
        # The forwarded en/clr are one cycle late, exactly where the MAC's control flops put
        # them, so they drive the accumulator directly.
        accum = add_multiply_accumulate(mod, cfg, a=self.a_in, w=self.w_in,
                                        en=self.en_out, clr=self.clr_out)
        with mod.If(self.cap):
            mod.d.sync += self.res.eq(accum.acc)
        return mod
