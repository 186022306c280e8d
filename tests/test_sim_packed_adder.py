"""The packed accumulator's Verilog in Icarus and Verilator against ref.bitpack (cocotb).

The cocotb tests live in wrapkit.sim.tb_packed_adder; this file generates the design, builds
the real-layer stimulus and runs both simulators through wrapkit.sim.runner.
"""

import pytest

from wrapkit.ref.bitpack import PACK_MODES, PackSpec, packed_dot

pytestmark = pytest.mark.sim


@pytest.fixture(scope="module")
def design(tmp_path_factory):
    from wrapkit.hw.verilog import write_designs
    from wrapkit.hw.packed_adder import packed_adder_design
    from packed_adder_stimulus import real_layer_stimulus

    out = tmp_path_factory.mktemp("packed_adder")
    d = packed_adder_design(lane_bits=8, lanes=4, word_bits=32)
    write_designs([d], out)
    stim = real_layer_stimulus(PackSpec(8, 4, 32), n_dots=60, seed=0)
    return {"verilog": out / d.files[0], "manifest": out / d.files[1], "top": d.name,
            "stimulus": stim.save(out / "real_layer.npz"), "stim": stim}


def test_packed_adder_rtl(design, sim):
    from wrapkit.sim.runner import run

    result = run([design["verilog"]], design["top"], "wrapkit.sim.tb_packed_adder", sim,
                 env={"WRAPKIT_TB_MANIFEST": design["manifest"],
                      "WRAPKIT_TB_STIMULUS": design["stimulus"],
                      "WRAPKIT_TB_OPS": 3000, "WRAPKIT_TB_SEED": 7})
    assert result.ok, result.summary()
    rnd = result.outcome("test_random").report
    real = result.outcome("test_real_layer").report
    assert rnd["checked_ops"] == 3000 and rnd["mismatches"] == 0
    assert real["mismatches"] == 0

    # The register's final lane total of every real dot product is the packed dot product of
    # the closed-form reference, and its summed overflow flags are the closed-form carries.
    stim, spec = design["stim"], PackSpec(8, 4, 32)
    contaminated = 0
    for (first, last, m), terms, total, carries in zip(stim.segments, stim.terms,
                                                       real["segment_totals"],
                                                       real["segment_carries"]):
        want = packed_dot(terms, spec.with_mode(PACK_MODES[m]))
        assert total == int(want.result)
        assert carries == want.carries.tolist()
        contaminated += int(want.contamination)
    assert contaminated > 0  # real data does produce carry contamination in carry mode
