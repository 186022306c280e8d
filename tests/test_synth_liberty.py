"""The liberty reader: units, cells, tables, and clear errors for unusable libraries."""

import re

import pytest

from wrapkit.hw.synth.liberty import read_liberty
from wrapkit.hw.synth.tools import DEFAULT_LIBERTY
from wrapkit.common.errors import UserError


@pytest.fixture(scope="module")
def osu():
    return read_liberty(DEFAULT_LIBERTY)


def test_units_and_voltage(osu):
    assert osu.name == "osu018_stdcells"
    assert osu.time_unit == pytest.approx(1e-9)
    assert osu.cap_unit == pytest.approx(1e-12)
    assert osu.leakage_unit == pytest.approx(1e-9)
    assert osu.nom_voltage == pytest.approx(1.8)
    # Internal-power tables are in capacitance unit x voltage unit^2: 1 pF * 1 V^2 = 1 pJ.
    assert osu.energy_scale() == pytest.approx(1e-12)


def test_cells_the_flow_needs(osu):
    ff, clk, d, q = osu.flip_flop()
    assert (ff.name, clk, d, q) == ("DFFPOSX1", "CLK", "D", "Q")
    assert ff.area == 96.0
    buf, a, y = osu.buffer()
    assert (buf.name, a, y) == ("BUFX2", "A", "Y")
    # DFFSR has set/reset, so it is not a plain D flip-flop.
    assert not osu.cells["DFFSR"].is_simple_dff


def test_inverter_numbers_match_the_file(osu):
    inv = osu.cells["INVX1"]
    assert inv.area == 16.0
    assert inv.leakage == pytest.approx(0.0221741)
    assert inv.pins["A"].capacitance == pytest.approx(0.00932456)
    assert inv.pins["Y"].function == "(!A)"
    (power,) = inv.pins["Y"].internal_power
    assert power.related_pin == "A"
    assert power.rise.variables == ("total_output_net_capacitance", "input_transition_time")
    # Grid point: second load (0.0125 pF), first slew (0.06 ns).
    assert power.rise.at(total_output_net_capacitance=0.0125,
                         input_transition_time=0.06) == pytest.approx(0.023165)
    assert power.fall.at(total_output_net_capacitance=0.0125,
                         input_transition_time=0.06) == pytest.approx(0.009047)
    # Half way between the first two loads: the mean of the two table entries.
    mid = power.rise.at(total_output_net_capacitance=(0.005 + 0.0125) / 2,
                        input_transition_time=0.06)
    assert mid == pytest.approx((0.023555 + 0.023165) / 2)


def test_clock_pin_passive_power(osu):
    clk = osu.cells["DFFPOSX1"].pins["CLK"]
    assert clk.is_clock
    (power,) = clk.internal_power
    assert power.rise.variables == ("input_transition_time",)
    assert power.rise.at(input_transition_time=0.06) == pytest.approx(0.006865)
    assert power.fall.at(input_transition_time=0.06) == pytest.approx(0.11034)


_NO_FLOP = """library(tiny) {
  time_unit : "1ns";
  capacitive_load_unit (1, pf);
  cell (INV) { area : 1; pin(A) { direction : input; capacitance : 0.01; }
               pin(Y) { direction : output; function : "!A"; } }
  cell (BUF) { area : 2; pin(A) { direction : input; capacitance : 0.01; }
               pin(Y) { direction : output; function : "A"; } }
}
"""


def test_library_without_flip_flop(tmp_path):
    path = tmp_path / "noff.lib"
    path.write_text(_NO_FLOP)
    lib = read_liberty(path)
    assert set(lib.cells) == {"INV", "BUF"}
    with pytest.raises(UserError, match=r"^liberty .*noff\.lib has no plain D flip-flop"):
        lib.flip_flop()


def test_library_without_buffer(tmp_path):
    path = tmp_path / "nobuf.lib"
    path.write_text(_NO_FLOP.replace('function : "A"', 'function : "!A"'))
    with pytest.raises(UserError, match=r"^liberty .*nobuf\.lib has no buffer cell"):
        read_liberty(path).buffer()


def test_unreadable_libraries(tmp_path):
    with pytest.raises(UserError, match=r"^liberty file .*missing\.lib not found; .*"
                                        r"qflow-tech-osu018"):
        read_liberty(tmp_path / "missing.lib")
    garbage = tmp_path / "garbage.lib"
    garbage.write_text("this is { not : a liberty file")
    with pytest.raises(UserError, match=r"^liberty .*garbage\.lib"):
        read_liberty(garbage)
    empty = tmp_path / "empty.lib"
    empty.write_text("/* nothing */\n")
    with pytest.raises(UserError, match=re.escape(f"liberty {empty} is empty")):
        read_liberty(empty)
    nocells = tmp_path / "nocells.lib"
    nocells.write_text('library(x) { time_unit : "1ns"; }\n')
    with pytest.raises(UserError, match=r"^liberty .*nocells\.lib defines no cells"):
        read_liberty(nocells)
