"""Parsing the tools' reports, on outputs captured from real runs (tests/fixtures/synth/).

The fixtures come from synthesizing rtl/mac_a3u_wb_acc8_k4 onto OSU018 (Yosys 0.23, OpenSTA
2.0.17): the last ``stat -liberty`` block of the Yosys log and the OpenSTA output of the flow's
script (the per-pin dump cut to its first lines).
"""

from pathlib import Path

import pytest

from wrapkit.hw.synth.sta import (_parse_path, parse_pin_dump, parse_worst_slack,
                                  sdf_for_simulation)
from wrapkit.hw.synth.yosys import parse_stat

FIXTURES = Path(__file__).parent / "fixtures" / "synth"
TOP = "mac_a3u_wb_acc8_k4"


def test_yosys_stat_areas_per_module():
    areas, cells, total = parse_stat((FIXTURES / f"yosys_stat_{TOP}.log").read_text())
    assert areas == {TOP: 320.0, f"{TOP}.accum": 3215.0, f"{TOP}.cyclic": 1095.0,
                     f"{TOP}.mult": 750.0}
    assert total == 5380.0
    assert total == sum(areas.values())
    # The top's own cells: the two en/clr flip-flops and their reset logic.
    assert cells[TOP]["DFFPOSX1"] == 2
    assert cells[TOP][f"{TOP}.accum"] == 1
    assert sum(n for c, n in cells[f"{TOP}.accum"].items() if c == "DFFPOSX1") == 8


def test_yosys_stat_uses_the_last_block():
    text = (FIXTURES / f"yosys_stat_{TOP}.log").read_text()
    # synth prints generic statistics first; only the mapped block after it counts.
    early = text.replace("Chip area for module", "Chip area (not mapped) for module")
    areas, _, _ = parse_stat("Printing statistics.\n=== x ===\n   Chip area for module "
                             "'\\x': 1.0\n" + text)
    assert areas[TOP] == 320.0 and "x" not in areas
    with pytest.raises(ValueError, match=r"^the Yosys statistics hold no 'Chip area' lines"):
        parse_stat(early)
    with pytest.raises(ValueError, match=r"^no 'Printing statistics' section"):
        parse_stat("nothing here")


def test_sta_min_period_and_path():
    text = (FIXTURES / f"sta_{TOP}.log").read_text()
    assert parse_worst_slack(text) == pytest.approx(1.4316369606134298)
    report, start, end = _parse_path(text)
    assert start.startswith("_9_ ") and end.startswith("accum/_185_ ")
    assert "slack (MET)" in report


def test_sta_min_period_rejects_unconstrained():
    with pytest.raises(ValueError, match=r"^no WK_MIN_PERIOD line"):
        parse_worst_slack("wns 0.00\n")
    with pytest.raises(ValueError, match=r"^OpenSTA reported no constrained path"):
        parse_worst_slack("WK_MIN_PERIOD -1e+30\n")


def test_sta_pin_dump():
    slews, loads, power = parse_pin_dump((FIXTURES / f"sta_{TOP}.log").read_text())
    assert len(slews) == 40 and len(power) == 30
    for path, (rise, fall) in slews.items():
        assert 0 <= rise < 2e-9 and 0 <= fall < 2e-9, path   # seconds
    assert loads and set(loads) <= set(slews)                # drivers only
    for rise, fall in loads.values():
        assert 0 < rise < 1e-12 and 0 < fall < 1e-12         # farads
    for internal, switching, leakage in power.values():
        assert internal >= 0 and switching >= 0 and 0 <= leakage < 1e-9


def test_sdf_for_icarus_keeps_one_value():
    src = ("(IOPATH A Y (0.2136::0.2136) (0.0870::0.0870))\n"
           "(IOPATH B Y (0.1:0.2:0.3) ())\n")
    assert sdf_for_simulation(src) == "(IOPATH A Y (0.2136) (0.087))\n(IOPATH B Y (0.3) ())\n"
