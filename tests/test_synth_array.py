"""Array synthesis plumbing that runs in seconds: fanout buffer trees, the groups of an array
manifest, and `wrapkit synth` refusing an array without a trained layer. (A whole array
through Yosys, OpenSTA and the gate-level simulation takes minutes even at 2x2: that is
benchmarks/array_synthesis.py.)"""

import pytest

from wrapkit.hw.synth.fanout import MAX_FANOUT, buffer_high_fanout, strongest_buffer
from wrapkit.hw.synth.liberty import read_liberty
from wrapkit.hw.synth.tools import DEFAULT_LIBERTY


@pytest.fixture(scope="module")
def osu():
    if not DEFAULT_LIBERTY.is_file():
        pytest.skip("OSU018 liberty not installed")
    return read_liberty(DEFAULT_LIBERTY)


def _module(n_loads):
    cells = {f"inv{i}": {"type": "INVX1", "port_directions": {"A": "input", "Y": "output"},
                         "connections": {"A": [2], "Y": [10 + i]}} for i in range(n_loads)}
    return {"modules": {"top": {
        "ports": {"a": {"direction": "input", "bits": [2]}, "clk": {"direction": "input",
                                                                   "bits": [3]}},
        "cells": cells,
        "netnames": {"a": {"hide_name": 0, "bits": [2]},
                     **{f"y{i}": {"hide_name": 0, "bits": [10 + i]} for i in range(n_loads)}},
    }}}


def _fanouts(module):
    counts = {}
    for cell in module["cells"].values():
        for pin, bits in cell["connections"].items():
            if pin in ("A",):
                for b in bits:
                    counts[b] = counts.get(b, 0) + 1
    return counts


def test_high_fanout_input_gets_a_buffer_tree(osu):
    design = _module(200)
    added = buffer_high_fanout(design, osu)
    module = design["modules"]["top"]
    buf = strongest_buffer(osu)[0]
    assert added == 17 + 2     # 200 loads -> 17 buffers -> 2 buffers above them
    assert all(n <= MAX_FANOUT for n in _fanouts(module).values())
    # Every inverter still reads the input, through buffers only.
    driver = {c["connections"]["Y"][0]: c for c in module["cells"].values()
              if c["type"] == buf}
    for i in range(200):
        bit = module["cells"][f"inv{i}"]["connections"]["A"][0]
        hops = 0
        while bit != 2:
            bit = driver[bit]["connections"]["A"][0]
            hops += 1
        assert hops == 2


def test_low_fanout_is_left_alone(osu):
    design = _module(MAX_FANOUT)
    assert buffer_high_fanout(design, osu) == 0


def test_array_manifest_groups_every_buffer_as_memory():
    from wrapkit.hw.array.config import ArrayConfig
    from wrapkit.hw.array.design import array_design
    from wrapkit.hw.synth.array_synth import part_of
    from wrapkit.ref.configs import PAPER_MACS

    design = array_design(ArrayConfig(2, 2, PAPER_MACS["8x8_acc8_k2"], act_depth=16,
                                      weight_depth=32, out_depth=16, max_channels=4))
    h = design.manifest["hierarchy"]
    memories = sorted(i for i, g in h.items() if g == "memory")
    assert memories == ["drain.bias_tab", "drain.mult_tab", "drain.shift_tab",
                        "fetch.act_buf", "fetch.weight_buf", "out_buf"]
    for inst in memories:     # each buffer is its own Verilog module
        assert f"module \\{design.name}.{inst} " in design.verilog
    assert {part_of(g) for g in h.values()} == {"PEs", "drain lane", "control", "memories"}


def test_synth_array_needs_a_trained_layer(tmp_path, capsys):
    from wrapkit.cli import main
    from wrapkit.hw.array.config import ArrayConfig
    from wrapkit.hw.array.design import array_design
    from wrapkit.hw.verilog import write_designs
    from wrapkit.ref.configs import PAPER_MACS

    design = array_design(ArrayConfig(2, 2, PAPER_MACS["8x8_acc8_k2"], act_depth=16,
                                      weight_depth=32, out_depth=16, max_channels=4))
    write_designs([design], tmp_path)
    manifest = tmp_path / design.files[1]
    assert main(["synth", str(manifest)]) == 2
    assert "--model is missing" in capsys.readouterr().err
