"""Cosimulation of the six committed paper MAC designs on Icarus and Verilator (cocotb).

The testbench lives in wrapkit.sim.tb_mac; this file only runs it and checks its report.
Each design is compiled once per simulator and machine (wrapkit.sim.runner caches builds).
"""

import json
import re
import shutil

import pytest

from wrapkit.ref.configs import PAPER_MACS
from wrapkit.sim.cosim import cosim_mac
from wrapkit.sim.designs import resolve_mac

OPS = 20000  # operations per paper configuration: enough to reach every corner the stream aims at


@pytest.mark.sim
@pytest.mark.parametrize("config", list(PAPER_MACS))
def test_paper_mac_matches_reference(config, sim):
    result = cosim_mac(config, sim, ops=OPS, seed=1)
    assert result.ok, result.sim_result.summary() + "\n" + "\n".join(result.examples)
    assert result.checked == OPS and result.mismatches == 0

    cfg = PAPER_MACS[config]
    cov = result.sim_result.outcome("test_random_ops").report["coverage"]
    # The stream really contains the corner cases it promises.
    assert cov["weight_codes_enabled"] == cov["weight_codes_total"] == 1 << cfg.weight_code_bits
    assert cov["act_min_enabled"] > 0 and cov["act_max_enabled"] > 0
    assert cov["back_to_back_clears"] > 1000 and cov["clear_without_enable"] > 100
    assert cov["resets"] > 0 and cov["longest_run_without_clear"] >= 4096
    assert 0.3 * OPS < cov["enabled"] < OPS
    if cfg.acc_bits == 8:
        # The 8-bit accumulator wraps many times (seed 1: 8x8 ~3700; 3-bit x binary, whose
        # products are at most 7: ~190).
        assert cov["accumulator_wraps"] > 100

    full = result.sim_result.outcome("test_full_width_accumulation").report
    assert full["mismatches"] == 0 and full["ops_checked"] >= 8
    # Every paper design wraps at full width within the hold cap except 3x1 into 32 bits,
    # which would need 2^31 / 7 cycles.
    assert full["wrap_reached"] == ([False, False] if config == "3x1_acc32" else [True, True])


def _tampered(tmp_path, config, **changes):
    """A copy of a committed design whose manifest disagrees with its Verilog."""
    src = resolve_mac(config)
    manifest = json.loads(src.read_text())
    for key, value in changes.items():
        if key == "k":
            manifest["config"]["k"] = value
        else:
            manifest[key] = value
    shutil.copy(src.with_suffix(".v"), tmp_path / src.with_suffix(".v").name)
    path = tmp_path / src.name
    path.write_text(json.dumps(manifest))
    return path


_MISMATCH = re.compile(
    r"^cycle \d+: (acc|y) expected -?\d+ \(0x[0-9a-f]+\) got -?\d+ \(0x[0-9a-f]+\) "
    r"after op #\d+ \(driven at cycle \d+: a=-?\d+ \(0x[0-9a-f]{2}\) w=0x[0-9a-f]+ "
    r"\(weight -?\d+\) en=[01] clr=[01] rst=[01]\)$")


@pytest.mark.sim
def test_wrong_slope_is_caught_and_reported(tmp_path):
    # The Verilog computes cyclic with k=2; the manifest claims k=4, so the reference
    # disagrees on y wherever the activation folds, and never on acc.
    result = cosim_mac(_tampered(tmp_path, "8x8_acc8_k2", k=4), "icarus", ops=3000)
    assert not result.ok and not result.sim_result.ok
    assert result.checked == 3000 and 100 < result.mismatches < 3000
    # All counted, the first 20 of each test reported.
    assert len(result.sim_result.outcome("test_random_ops").report["mismatch_examples"]) == 20
    for line in result.examples:
        assert _MISMATCH.match(line), line
        assert line.split(":")[1].split()[0] == "y"


@pytest.mark.sim
def test_wrong_latency_is_caught(tmp_path):
    result = cosim_mac(_tampered(tmp_path, "8x8_acc32", latency=3), "icarus", ops=2000,
                       full_width=False)
    assert not result.ok
    assert result.mismatches > 1000
    assert all(_MISMATCH.match(line) and " acc expected " in line for line in result.examples)


@pytest.mark.sim
def test_stream_cosim_runs_long_streams_in_chunks():
    """A stream cut into several preloaded runs (signed activations, dot products of 300),
    every cycle and every dot product's final value checked."""
    import numpy as np

    from wrapkit.ref.datapath import mac_dot
    from wrapkit.ref.opstream import MacOpStream
    from wrapkit.sim.stream_cosim import cosim_stream

    cfg = PAPER_MACS["8x8_acc8_k2"]
    rng = np.random.default_rng(2)
    a, w = rng.integers(-128, 128, (30, 300)), rng.integers(0, 256, (30, 300))
    acc, out = mac_dot(a, w, cfg)
    stream = MacOpStream.from_dot_products(a, w, final_acc=acc, final_out=out)
    r = cosim_stream(resolve_mac("8x8_acc8_k2"), stream, "icarus", chunk_ops=4000)
    assert r.ok and r.chunks == 3 and r.checked == r.ops == 9000, r.examples
    assert r.mismatches == 0 and r.final_mismatches == 0
    wrong = stream.replace(final_acc=acc + 1)
    r = cosim_stream(resolve_mac("8x8_acc8_k2"), wrong, "icarus", chunk_ops=4000)
    assert r.mismatches == 0 and r.final_mismatches == 30 and not r.ok
