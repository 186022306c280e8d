"""The PE grid: ``rows`` x ``cols`` processing elements wired as an output-stationary array."""

from amaranth.hdl import Module, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..params import validating
from .config import ArrayConfig
from .drain import results_signature
from .pe import ProcessingElement, operand_lane

__all__ = ["PEGrid", "feed_signature"]


def feed_signature(config):
    """What enters the grid each cycle, as the operand fetch drives it.

    Members (all ``Out``): ``west``, ``array(rows)`` of :func:`~.pe.operand_lane` (row
    ``r``'s activation with its ``en``/``clr``/``last`` bits), and ``north``,
    ``array(cols)`` of weight codes (column ``c``'s).
    """
    return wiring.Signature({
        "west": Out(operand_lane(config.mac)).array(config.rows),
        "north": Out(unsigned(config.mac.weight_code_bits)).array(config.cols),
    })


class PEGrid(wiring.Component):
    """``rows`` x ``cols`` :class:`~.pe.ProcessingElement` instances, ``pe_<r>_<c>``.

    Row ``r``'s activation and control bits enter PE ``(r, 0)`` and move one PE to the
    right per cycle; column ``c``'s weight code enters PE ``(0, c)`` and moves one PE down
    per cycle. So an operand pair presented at the edges in cycle ``n`` (row ``r``'s with
    skew ``r``, column ``c``'s with skew ``c``, as :class:`~.fetch.OperandFetch` does)
    meets in PE ``(r, c)`` in cycle ``n + r + c``, and each PE accumulates its own dot
    product. Partial sums never move: a finished dot product stays in the PE's ``res``
    until the PE finishes its next one.

    Parameters
    ----------
    config : ArrayConfig

    Attributes
    ----------
    feed : In(feed_signature(config))
        Operands for the left (``west``) and top (``north``) edges.
    results : Out(drain.results_signature(config))
        ``res[r][c]``: PE ``(r, c)``'s last finished dot product; ``ready``: the
        bottom-right PE, the last of a tile, captures its result this cycle.
    LATENCY : int
        ``ProcessingElement.LATENCY``: edges from a dot product's last operand reaching a
        PE to that PE's ``res`` holding the result.

    Raises
    ------
    TypeError
        ``config`` is not an :class:`ArrayConfig`.
    """

    LATENCY = ProcessingElement.LATENCY

    def __init__(self, config):
        with validating(self):
            if not isinstance(config, ArrayConfig):
                raise TypeError(f"config must be an ArrayConfig, not {config!r}")
        self._config = config
        super().__init__({
            "feed": In(feed_signature(config)),
            "results": Out(results_signature(config)),
        })

    def elaborate(self, platform):
        mod = Module()
        cfg = self._config
        pes = [[ProcessingElement(cfg.mac) for _ in range(cfg.cols)] for _ in range(cfg.rows)]
        for r in range(cfg.rows):
            for c in range(cfg.cols):
                mod.submodules[f"pe_{r}_{c}"] = pe = pes[r][c]
                if c == 0:
                    lane = self.feed.west[r]
                    mod.d.comb += [pe.a_in.eq(lane.a), pe.en_in.eq(lane.en),
                                   pe.clr_in.eq(lane.clr), pe.last_in.eq(lane.last)]
                else:
                    left = pes[r][c - 1]
                    mod.d.comb += [pe.a_in.eq(left.a_out), pe.en_in.eq(left.en_out),
                                   pe.clr_in.eq(left.clr_out), pe.last_in.eq(left.last_out)]
                above = self.feed.north[c] if r == 0 else pes[r - 1][c].w_out
                mod.d.comb += [pe.w_in.eq(above), self.results.res[r][c].eq(pe.res)]
        mod.d.comb += self.results.ready.eq(pes[-1][-1].cap)
        return mod
