"""Run layers on :class:`~.top.LayerArray` in Amaranth's own simulator (fast tests)."""

import numpy as np
from amaranth.sim import Simulator

from .jobs import check_job, load_program, words_to_outputs
from .top import LayerArray

__all__ = ["run_layers"]


def run_layers(cfg, jobs, *, max_cycles=200_000, scribble=None):
    """Load, start and read back each job in turn, in one simulation without a reset.

    ``scribble``: a numpy Generator; while the array is busy the testbench then drives
    random writes on the load port every cycle (the array must ignore them).

    Returns
    -------
    list of dict
        Per job: ``"out"`` (out_channels, positions) as the array wrote it (codes or
        ``y``), ``"cycles"`` the ``cycles`` port once ``done`` is seen, ``"edges"`` the
        clock edges from the start edge (1) to the edge after which ``done`` is high, and
        ``"busy"`` the ``busy`` port one cycle after start and when ``done`` is high.
    """
    for job in jobs:
        check_job(cfg, job)
    dut = LayerArray(cfg)
    results = []

    async def bench(ctx):
        mask = (1 << 64) - 1
        for job in jobs:
            res = {}
            sel, addr, data = load_program(cfg, job)
            for s, a, v in zip(sel.tolist(), addr.tolist(), data.tolist()):
                ctx.set(dut.ld_en, 1)
                ctx.set(dut.ld_sel, s)
                ctx.set(dut.ld_addr, a)
                ctx.set(dut.ld_data, v & mask)
                await ctx.tick()
            ctx.set(dut.ld_en, 0)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            busy_early = ctx.get(dut.busy)
            edges = 1
            while not ctx.get(dut.done):
                if scribble is not None:
                    ctx.set(dut.ld_en, 1)
                    ctx.set(dut.ld_sel, int(scribble.integers(0, 6)))
                    ctx.set(dut.ld_addr, int(scribble.integers(0, 1 << cfg.ld_addr_bits)))
                    ctx.set(dut.ld_data, int(scribble.integers(0, 1 << 62)))
                await ctx.tick()
                edges += 1
                if edges > max_cycles:
                    raise RuntimeError(f"done not seen within {max_cycles} cycles")
            ctx.set(dut.ld_en, 0)
            res.update(edges=edges, cycles=ctx.get(dut.cycles),
                       busy=(busy_early, ctx.get(dut.busy)))
            n_out = job.shape.out_channels * job.shape.positions
            words = []
            for a in range(n_out):
                ctx.set(dut.rd_addr, a)
                await ctx.tick()
                words.append(ctx.get(dut.rd_data))
            res["out"] = words_to_outputs(cfg, job, np.array(words, dtype=np.int64))
            results.append(res)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return results
