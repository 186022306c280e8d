"""The whole flow on a small generated design: Yosys synthesis, OpenSTA timing, the timed
gate-level simulation checked against the reference, energy, the cache, the CLI, and the
errors for bad input.

The design is the committed paper design rtl/mac_a3u_wb_acc8_k4 (3-bit x binary, 8-bit
accumulator, cyclic activation k=4): every group is present and it synthesizes in about a
second.
"""

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from wrapkit.cli import main
from wrapkit.hw.synth import evaluate as synth_flow
from wrapkit.hw.synth.activity import random_stimulus, simulate
from wrapkit.ref.opstream import MacOpStream
from wrapkit.hw.synth.liberty import read_liberty
from wrapkit.hw.synth.tools import DEFAULT_LIBERTY, ToolError, require_tool
from wrapkit.hw.synth.yosys import synthesize
from wrapkit.ref.datapath import MacConfig, encode_weights
from wrapkit.common.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
DESIGN = ROOT / "rtl" / "mac_a3u_wb_acc8_k4.json"
OPS = 300


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory):
    """A private cache for this module (the flow reads $WRAPKIT_CACHE_DIR at each call)."""
    root = tmp_path_factory.mktemp("wrapkit-cache")
    old = os.environ.get("WRAPKIT_CACHE_DIR")
    os.environ["WRAPKIT_CACHE_DIR"] = str(root)
    yield root
    if old is None:
        os.environ.pop("WRAPKIT_CACHE_DIR", None)
    else:
        os.environ["WRAPKIT_CACHE_DIR"] = old


@pytest.fixture(scope="module")
def report(cache_root):
    return synth_flow.evaluate(DESIGN, n_ops=OPS)


def test_area_per_group(report, cache_root):
    area = report["area_um2"]
    assert list(area) == ["multiplier", "accumulator", "cyclic", "auxiliary", "total"]
    assert area["total"] == pytest.approx(sum(v for g, v in area.items() if g != "total"))
    # Recount from the mapped netlist and the liberty's cell areas, independently of the
    # parsed `stat` report.
    lib = read_liberty(DEFAULT_LIBERTY)
    flow = synth_flow.synthesize_design(DESIGN)
    recount = {}
    for cell in flow.flat().cells:
        recount[cell.group] = recount.get(cell.group, 0.0) + lib.cells[cell.type].area
    assert recount == {g: area[g] for g in recount}
    assert report["registers"] == 2 + 4 + 8      # en/clr, product, accumulator
    for g, a in report["area_um2"].items():
        assert report["area_efficiency_um2_per_gops"][g] == pytest.approx(
            a / report["throughput_gops"])


def test_timing(report):
    flow = synth_flow.synthesize_design(DESIGN)
    assert 0.3 < report["cycle_time_ns"] < 20
    assert report["throughput_gops"] == pytest.approx(2 / report["cycle_time_ns"])
    # At the reported minimum period the critical path has zero slack.
    slack = float(re.search(r"(-?\d+\.\d+)\s+slack", flow.result["timing"]["critical_path"])
                  .group(1))
    assert abs(slack) < 1e-3
    assert (flow.entry / "netlist.sim.sdf").is_file()


def test_energy_report(report):
    e = report["energy"]
    assert e["ops"] == OPS
    assert e["check"] == f"outputs equal wrapkit.ref.mac_stream for all {OPS} operations"
    sb = e["stimulus_based"]["energy_fj_per_op"]
    assert list(sb) == ["multiplier", "accumulator", "cyclic", "auxiliary", "total"]
    assert all(v > 0 for v in sb.values())
    assert sb["total"] == pytest.approx(sum(v for g, v in sb.items() if g != "total"))
    # Glitches only add transitions.
    for g, v in e["glitch_free"]["energy_fj_per_op"].items():
        assert v <= sb[g] + 1e-9, g
    assert 0 < e["glitch_share_of_toggles"] < 1
    # Power and energy per op are the same figure: P = 2 ops * E / T.
    power = e["stimulus_based"]["power_mw"]["total"] * 1e-3
    assert power == pytest.approx(2 * sb["total"] * 1e-15 / (report["cycle_time_ns"] * 1e-9))


def test_cache_returns_the_same_report(report, cache_root):
    entries = {kind: sorted(p.name for p in (cache_root / kind).iterdir()
                            if not p.name.startswith("."))
               for kind in ("synth", "energy")}
    assert len(entries["synth"]) == 1 and len(entries["energy"]) == 1
    again = synth_flow.evaluate(DESIGN, n_ops=OPS)
    assert again == report
    assert {kind: sorted(p.name for p in (cache_root / kind).iterdir()
                         if not p.name.startswith("."))
            for kind in ("synth", "energy")} == entries


def test_real_operands_change_the_energy(report, cache_root):
    """A layer-like stream (operands mostly zero, as after ReLU) toggles far less than
    uniform random operands, and the multiplier's energy follows."""
    cfg = MacConfig.from_dict(report["config"])
    rng = np.random.default_rng(1)
    a = np.where(rng.random((10, 30)) < 0.7, 0, rng.integers(0, 8, (10, 30)))
    w = encode_weights(np.where(rng.random((10, 30)) < 0.5, 1, -1), "binary")
    stim = MacOpStream.from_dot_products(a, w, source="sparse layer")
    sparse = synth_flow.evaluate(DESIGN, stimulus=stim)
    assert sparse["energy"]["stimulus"] == "sparse layer"
    assert sparse["energy"]["ops"] == 300 == len(stim)
    assert (sparse["energy"]["stimulus_based"]["energy_fj_per_op"]["multiplier"]
            < report["energy"]["stimulus_based"]["energy_fj_per_op"]["multiplier"])
    assert cfg.act_bits == 3


def test_simulation_catches_a_wrong_netlist(report, tmp_path):
    flow = synth_flow.synthesize_design(DESIGN)
    text = (flow.entry / "netlist.v").read_text()
    # Turn one accumulator NAND into an AND: the netlist no longer computes the MAC.
    broken = re.sub(r"NAND2X1(\s+_\d+_\s*\()", r"AND2X1\1", text, count=1)
    assert broken != text
    (tmp_path / "broken.v").write_text(broken)
    cfg = MacConfig.from_dict(report["config"])
    with pytest.raises(ToolError, match=r"^gate-level simulation disagrees with "
                                        r"wrapkit\.ref\.mac_stream at operation \d+"):
        simulate(flow.manifest, tmp_path / "broken.v", flow.flat(),
                 random_stimulus(cfg, 100), flow.cell_models, tmp_path / "sim",
                 period=3e-9)


def test_cli_single_design(report, cache_root, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["synth", str(DESIGN), "--ops", str(OPS), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("# mac_a3u_wb_acc8_k4")
    assert "| Energy, stimulus (fJ/op) |" in text
    saved = json.loads(out.read_text())
    assert saved["energy"] == report["energy"]


def test_cli_errors(tmp_path, capsys):
    assert main(["synth", str(tmp_path / "nope.json")]) == 2
    assert re.search(r"^wrapkit synth: error: RTL manifest .*nope\.json: file not found",
                     capsys.readouterr().err, re.M)
    assert main(["synth", str(DESIGN), "--stimulus", str(tmp_path / "ops.npz")]) == 2
    assert "stimulus file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["synth", str(DESIGN), "--ops", "0"])
    assert exc.value.code == 2


@pytest.mark.parametrize("tool, package", [("yosys", "yosys"), ("sta", "opensta"),
                                           ("iverilog", "iverilog"), ("vvp", "iverilog")])
def test_missing_tool_names_the_package(tool, package, monkeypatch, tmp_path):
    monkeypatch.setenv(f"WRAPKIT_{tool.upper()}", str(tmp_path / "missing"))
    with pytest.raises(UserError, match=rf"^`{tool}` not found .*install the Debian package "
                                        rf"'{package}'"):
        require_tool(tool)


def test_missing_yosys_stops_the_flow(monkeypatch, tmp_path, cache_dir):
    monkeypatch.setenv("WRAPKIT_YOSYS", str(tmp_path / "missing"))
    with pytest.raises(UserError, match=r"^`yosys` not found.*'yosys'"):
        synth_flow.synthesize_design(DESIGN)


def test_unknown_top_and_no_registers(tmp_path):
    lib = read_liberty(DEFAULT_LIBERTY)
    v = tmp_path / "comb.v"
    v.write_text("module comb(input a, input b, output y);\n  assign y = a ^ b;\nendmodule\n")
    with pytest.raises(UserError, match=r"^top module 'nope' is not defined in .*comb\.v "
                                        r"\(it defines comb\)"):
        synthesize(v, "nope", {}, lib, tmp_path / "a")
    with pytest.raises(UserError, match=r"^design 'comb' has no registers after synthesis"):
        synthesize(v, "comb", {}, lib, tmp_path / "b")
    with pytest.raises(UserError, match=r"^group instance 'mult' \(multiplier\) has no module"):
        synthesize(v, "comb", {"mult": "multiplier"}, lib, tmp_path / "c")


def test_combinational_design_is_rejected(tmp_path):
    from wrapkit.hw.verilog import cyclic_design, write_designs
    (path,) = [p for p in write_designs([cyclic_design(8, 2)], tmp_path)
               if str(p).endswith(".json")]
    with pytest.raises(UserError, match=r"^.*describes a 'cyclic' design; the synthesis flow "
                                        r"estimates MAC units"):
        synth_flow.synthesize_design(path)


def test_liberty_without_flip_flop_is_rejected(tmp_path):
    lib = tmp_path / "noff.lib"
    lib.write_text('library(x) { cell (BUF) { area : 1; pin(A) { direction : input; } '
                   'pin(Y) { direction : output; function : "A"; } } }\n')
    with pytest.raises(UserError, match=r"^liberty .*noff\.lib has no plain D flip-flop"):
        synth_flow.synthesize_design(DESIGN, liberty=lib, use_cache=False)
    with pytest.raises(UserError, match=r"^liberty file .*absent\.lib not found"):
        synth_flow.synthesize_design(DESIGN, liberty=tmp_path / "absent.lib")


def test_liberty_without_cell_models(cache_root, tmp_path):
    lib = tmp_path / "copy.lib"
    shutil.copy(DEFAULT_LIBERTY, lib)       # no copy.v beside it
    flow = synth_flow.synthesize_design(DESIGN, liberty=lib)
    assert flow.cell_models is None
    cfg = MacConfig.from_dict(flow.manifest["config"])
    with pytest.raises(UserError, match=r"^no Verilog cell models for .*copy\.lib: pass "
                                        r"--cell-models FILE"):
        synth_flow.run_energy(flow, random_stimulus(cfg, 10))


def test_stimulus_out_of_range(report):
    flow = synth_flow.synthesize_design(DESIGN)
    cfg = MacConfig.from_dict(report["config"])
    bad = MacOpStream.from_dot_products(np.full((1, 4), 9), np.zeros((1, 4), dtype=int))
    with pytest.raises(UserError, match=r"^stimulus does not fit mac_a3u_wb_acc8_k4: "
                                        r"stimulus activations must lie in \[0, 7\]"):
        synth_flow.run_energy(flow, bad)
    assert cfg.act_bits == 3


def test_sdf_delays_reach_the_simulation(report, tmp_path):
    """Icarus silently keeps the cell models' own delays for OpenSTA's ``(min::max)``
    triples; the rewritten SDF must change the glitches (not the settled values)."""
    flow = synth_flow.synthesize_design(DESIGN)
    cfg = MacConfig.from_dict(report["config"])
    stim = random_stimulus(cfg, 150, seed=5)
    runs = {name: simulate(flow.manifest, flow.entry / "netlist.v", flow.flat(), stim,
                           flow.cell_models, tmp_path / name, period=3e-9,
                           sdf=flow.entry / name)
            for name in ("netlist.sim.sdf", "netlist.sdf")}
    timed, nominal = runs["netlist.sim.sdf"], runs["netlist.sdf"]
    assert (timed.toggles(False) == nominal.toggles(False)).all()
    assert timed.toggles(True).sum() != nominal.toggles(True).sum()
