"""The array's cycle model: exact cycle counts for any layer shape (no simulation).

Checked against the RTL in Amaranth's simulator (tests/test_hw_array.py) and in cocotb on
Icarus and Verilator (tests/test_sim_array.py); used for whole-network latency estimates.
The pipeline depths are the sub-components' own ``LATENCY`` constants (reading them imports
Amaranth but elaborates nothing), so the model follows the hardware when a stage changes.
"""

import math
from dataclasses import asdict, dataclass

from .config import ArrayConfig
from .controller import Controller
from .drain import DrainLane
from .fetch import OperandFetch
from .grid import PEGrid
from .jobs import drain_cols, tile_period

__all__ = ["CycleReport", "layer_cycles", "pipeline_depths"]


def pipeline_depths():
    """The depths the cycle model adds up, by stage (the array manifest lists them).

    ``fetch``: buffer read, request -> operands at the grid's edges; ``pe``: a dot
    product's last operand -> the PE's result register; ``drain``: selecting a result ->
    presenting its output-buffer write; ``done``: that write -> the ``done`` pulse (raised on
    the edge that writes).
    """
    return {"fetch": OperandFetch.LATENCY, "pe": PEGrid.LATENCY, "drain": DrainLane.LATENCY,
            "done": Controller.LATENCY}


@dataclass(frozen=True)
class CycleReport:
    """Cycle count of one layer on one array.

    Attributes
    ----------
    total : int
        Clock edges from the edge that samples ``start`` to the edge that raises ``done``
        (the RTL's ``cycles`` port).
    init : int
        Loading the first ``rows`` positions into the rows (``rows`` cycles).
    tiles, position_tiles, channel_tiles : int
        ``tiles = position_tiles * channel_tiles``; ``channel_tiles`` counts the tiles of
        every group, ``groups * ceil(group_out / cols)`` (a tile never mixes groups).
    period : int
        Cycles between tiles, ``max(K, R*D + C - D)`` (:func:`~.jobs.tile_period`; ``D``
        the columns the drain lane reads, :func:`~.jobs.drain_cols`: ``C``, so ``R*C``,
        unless a grouped layer has fewer channels per group): a tile streams ``K``
        operands, and the single drain lane reads ``R*D`` results per tile before the next
        tile replaces them.
    stall_cycles : int
        ``tiles * (period - K)``: cycles the feed waits for the drain lane.
    fill_drain : int
        Pipeline fill and the last tile's drain: the rest of ``total``.
    macs : int
        Useful multiply-accumulates (``positions * out_channels * K``).
    utilisation : float
        ``macs / (rows * cols * total)``.
    """

    total: int
    init: int
    tiles: int
    position_tiles: int
    channel_tiles: int
    period: int
    stall_cycles: int
    fill_drain: int
    macs: int
    utilisation: float

    def to_dict(self):
        return asdict(self)


def layer_cycles(cfg: ArrayConfig, shape):
    """Exact cycle count of ``shape`` (a :class:`~.layer.LayerShape`) on ``cfg``.

    The timeline, with ``K`` the fan-in (of one group), ``R x C`` the array, ``T`` the tile
    count ``ceil(positions/R) * groups * ceil((out_channels/groups)/C)`` and
    ``P = max(K, R*D + C - D)`` with ``D`` the columns the drain lane reads (``C``; fewer
    for a grouped layer with fewer channels per group, :func:`~.jobs.drain_cols`)::

        start edge
        + R                       shift positions 0..R-1 into the rows
        + 1                       first FEED cycle: tile 0, operand 0 addressed
        + (T-1)*P + K - 1         last operand of the last tile addressed
        + fetch + (R-1) + (C-1)   ... reaches the bottom-right PE (buffer read, then
                                  skew and forwarding)
        + pe                      ... its result register holds the last dot product
        + R*D - 1                 drain lane reads the last tile's R*D results
        + drain + done - 1        last output written; done raised on the same edge

    with the depths of :func:`pipeline_depths`.
    """
    if not isinstance(cfg, ArrayConfig):
        raise TypeError(f"cfg must be an ArrayConfig, not {cfg!r}")
    R, C = cfg.rows, cfg.cols
    k = shape.fan_in
    pt = math.ceil(shape.positions / R)
    ct = shape.groups * math.ceil(shape.group_out / C)
    tiles = pt * ct
    d = drain_cols(cfg, shape)
    period = tile_period(cfg, shape)
    depth = pipeline_depths()
    total = (R + 1 + (tiles - 1) * period + k - 1
             + depth["fetch"] + (R - 1) + (C - 1)
             + depth["pe"]
             + R * d - 1
             + depth["drain"] + depth["done"] - 1)
    macs = shape.macs
    return CycleReport(
        total=total, init=R, tiles=tiles, position_tiles=pt, channel_tiles=ct,
        period=period, stall_cycles=tiles * (period - k),
        fill_drain=total - R - tiles * period, macs=macs,
        utilisation=macs / (R * C * total))
