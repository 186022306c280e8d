"""The layer array's sub-components on their own: the delay line, the PE signature, the
descriptor layout and the pipeline depths the cycle model reads from the components.

The whole array (outputs and cycle counts) is tests/test_hw_array.py.
"""

import pytest
from amaranth.hdl import Fragment, signed, unsigned
from amaranth.sim import Simulator

from wrapkit.hw.array.config import DESCRIPTOR, ArrayConfig
from wrapkit.hw.array.controller import Controller
from wrapkit.hw.array.cycles import pipeline_depths
from wrapkit.hw.array.delay import DelayLine
from wrapkit.hw.array.descriptor import descriptor_layout
from wrapkit.hw.array.design import array_design
from wrapkit.hw.array.drain import DrainLane
from wrapkit.hw.array.fetch import OperandFetch
from wrapkit.hw.array.grid import PEGrid
from wrapkit.hw.array.pe import CONTROL, PESignature, ProcessingElement
from wrapkit.hw.array.requant import Requantizer
from wrapkit.hw.mac import MAC
from wrapkit.ref.datapath import MacConfig

WRAPNET = MacConfig(3, False, "binary", None, 8, 2)
CFG = ArrayConfig(2, 3, WRAPNET, out_bits=4, act_depth=512, weight_depth=512, out_depth=512,
                  max_channels=32)


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_delay_line_taps(depth):
    line = DelayLine(signed(5), depth)
    values = [3, -7, 15, -16, 0, 9, 1]
    seen = []

    async def bench(ctx):
        for v in values:
            ctx.set(line.i, v)
            seen.append([ctx.get(t) for t in line.taps] + [ctx.get(line.o)])
            if depth:
                await ctx.tick()
            else:           # no registers, hence no clock domain to wait on
                await ctx.delay(1e-8)

    sim = Simulator(line)
    sim.add_clock(1e-8, if_exists=True)
    sim.add_testbench(bench)
    sim.run()
    for n, row in enumerate(seen):
        for tap in range(depth + 1):
            assert row[tap] == (values[n - tap] if n >= tap else 0), (n, tap)
        assert row[-1] == row[depth]
    assert line.latency == depth


def test_delay_line_structured_values():
    line = DelayLine(CONTROL, 2)
    Fragment.get(line, None)
    assert line.signature.members["i"].shape == CONTROL
    with pytest.raises(ValueError, match=r"^depth must be in \[0, 1024\], got -1$"):
        DelayLine(1, -1)
    with pytest.raises(TypeError, match=r"^shape must be shape-castable, not 'x'$"):
        DelayLine("x", 1)


def test_pe_signature_compares_by_mac():
    assert PESignature(WRAPNET) == PESignature(MacConfig(3, False, "binary", None, 8, 2))
    assert PESignature(WRAPNET) != PESignature(MacConfig(3, False, "binary", None, 9, 2))
    pe = ProcessingElement(WRAPNET)
    Fragment.get(pe, None)
    assert pe.signature == PESignature(WRAPNET)
    with pytest.raises(TypeError, match=r"^config must be a MacConfig, not None$"):
        PESignature(None)


def test_descriptor_layout_follows_descriptor():
    layout = descriptor_layout(CFG)
    assert list(dict(layout.members)) == [name for name, _, _ in DESCRIPTOR]
    assert layout.members["fan_in"] == unsigned(CFG.dim_bits) == unsigned(14)
    assert layout.members["base0"] == signed(CFG.coord_bits) == signed(16)
    assert layout.members["requant"] == unsigned(1)
    assert layout.members["qmax"] == unsigned(CFG.out_bits)
    with pytest.raises(TypeError, match=r"^config must be an ArrayConfig, not 3$"):
        descriptor_layout(3)


def test_cycle_model_depths_are_the_components_latencies():
    assert pipeline_depths() == {"fetch": OperandFetch.LATENCY, "pe": PEGrid.LATENCY,
                                 "drain": DrainLane.LATENCY, "done": Controller.LATENCY}
    assert PEGrid.LATENCY == ProcessingElement.LATENCY == MAC.LATENCY + 1
    assert DrainLane.LATENCY == 1 + Requantizer.LATENCY
    pipeline = array_design(CFG).manifest["pipeline"]
    assert pipeline == {**pipeline_depths(), "requant": Requantizer.LATENCY}


@pytest.mark.parametrize("component", [Controller, OperandFetch, PEGrid, DrainLane])
def test_components_refuse_other_configs(component):
    with pytest.raises(TypeError, match=r"^config must be an ArrayConfig, not 'x'$"):
        component("x")
