"""Bring your own Verilog: ``wrapkit rtl import`` of hand-written MACs (examples/rtl/), their
cosimulation against wrapkit.ref, and the structural width check ``wrapkit rtl check`` on every
committed design, a layer array, and a design widened on purpose."""

import hashlib
import json
import re
from pathlib import Path

import pytest

from wrapkit.cli import main
from wrapkit.hw.manifest import load_manifest
from wrapkit.hw.width_check import check_design, check_file
from wrapkit.ref.configs import PAPER_MACS
from wrapkit.sim.cosim import cosim_mac

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "rtl"
COMMITTED = sorted((ROOT / "rtl").glob("*.v"))

HANDMADE = ["rtl", "import", str(EXAMPLES / "handmade_mac.v"), "--top", "handmade_mac",
            "--config", "8x8_acc32"]
SATURATING = ["rtl", "import", str(EXAMPLES / "saturating_mac.v"), "--top", "saturating_mac",
              "--act-bits", "8", "--weight-kind", "uniform", "--weight-bits", "8",
              "--acc-bits", "8"]


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """Both examples imported once (names derived, latency probed)."""
    out = tmp_path_factory.mktemp("byo")
    assert main(HANDMADE + ["--out", str(out)]) == 0
    assert main(SATURATING + ["--out", str(out)]) == 0
    return out


def test_import_writes_a_manifest_the_flows_accept(imported):
    manifest = load_manifest(imported / "handmade_mac_wrapkit.json")
    assert manifest["design"] == "mac"
    assert manifest["config"] == PAPER_MACS["8x8_acc32"].to_dict()
    assert manifest["latency"] == 2
    info = manifest["imported"]
    assert info["top"] == "handmade_mac" and info["latency_from"] == "probe"
    assert info["port_map"] == {"clk": "clock", "rst": "reset_n", "a": "x_in", "w": "w_in",
                                "en": "valid", "clr": "clear", "acc": "sum"}
    assert info["reset"] == {"port": "reset_n", "active": "low", "sync": True}
    assert info["parameters"] == {"DATA_W": 8, "ACC_W": 32}
    source = (EXAMPLES / "handmade_mac.v").read_bytes()
    assert info["sources"][0]["sha256"] == hashlib.sha256(source).hexdigest()
    # The user's file is copied unchanged into the design's Verilog, the wrapper after it.
    text = (imported / "handmade_mac_wrapkit.v").read_text()
    assert source.decode() in text
    assert "handmade_mac core (" in text and ".reset_n(~rst)" in text
    assert manifest["hierarchy"] == {"core": "imported", "handmade_mac_wrapkit": "auxiliary"}


def test_handmade_mac_cosim_matches_the_reference(imported):
    result = cosim_mac(imported / "handmade_mac_wrapkit.json", sim="icarus", ops=1500,
                       full_width=False)
    assert result.ok, result.examples
    assert result.checked == 1500 and result.mismatches == 0


def test_saturating_mac_is_caught(imported, capsys):
    rc = main(["cosim", "mac", str(imported / "saturating_mac_wrapkit.json"), "--ops", "1500"])
    out = capsys.readouterr().out
    assert rc == 1
    m = re.search(r"1500 ops checked, (\d+) mismatches", out)
    assert m and int(m.group(1)) > 0
    # The report names the cycle, the output, the expected (wrapped) and the actual
    # (saturated) value: a saturating accumulator sticks at 127 or -128.
    assert re.search(r"mismatch: cycle \d+: acc expected -?\d+ \(0x[0-9a-f]+\) got "
                     r"(127|-128) \(0x(7f|80)\)", out)


@pytest.mark.parametrize("verilog", COMMITTED, ids=lambda p: p.stem)
def test_width_check_passes_on_every_committed_design(verilog):
    report = check_file(verilog)
    manifest = json.loads(verilog.with_suffix(".json").read_text())
    acc_bits = manifest["config"]["acc_bits"]
    assert report.ok, report.text()
    assert len(report.accumulators) == 1
    assert report.path_widths == [acc_bits]
    assert report.accumulators[0].register.endswith("accum.acc")


def test_width_check_cli_prints_the_path(capsys):
    rc = main(["rtl", "check", str(ROOT / "rtl" / "mac_a8s_wu8_acc8_k2.v")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "accumulator accum.acc: register 8 bits" in out
    assert "9 bits declared, 8 kept" in out       # Amaranth's carry bit, sliced off
    assert "register  mult.prod: 8 bits" in out
    assert out.rstrip().splitlines()[-1].startswith("PASS")


def widen_accumulator(text):
    """The 8-bit accumulator of mac_a8s_wu8_acc8_k2 rewritten to add and hold 16 bits and
    keep the low 8 at its output: behaviourally identical, structurally twice as wide."""
    edits = [
        ("reg [7:0] acc = 8'h00;",
         "wire [7:0] acc;\n  reg [15:0] acc_wide = 16'h0000;\n  assign acc = acc_wide[7:0];"),
        ("wire [7:0] \\$1 ;", "wire [15:0] \\$1 ;"),
        ("assign \\$1  = clr ? 8'h00 : acc;", "assign \\$1  = clr ? 16'h0000 : acc_wide;"),
        ("wire [8:0] \\$3 ;", "wire [16:0] \\$3 ;"),
        ("reg [7:0] \\$4 ;", "reg [15:0] \\$4 ;"),
        ("\\$4  = \\$3 [7:0];", "\\$4  = \\$3 [15:0];"),
        ("acc <= \\$4 ;", "acc_wide <= \\$4 ;"),
    ]
    for old, new in edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


@pytest.fixture(scope="module")
def widened(tmp_path_factory):
    """The widened design with a manifest whose checksum matches it."""
    out = tmp_path_factory.mktemp("widened")
    name = "mac_a8s_wu8_acc8_k2"
    text = widen_accumulator((ROOT / "rtl" / f"{name}.v").read_text())
    (out / f"{name}.v").write_text(text)
    manifest = json.loads((ROOT / "rtl" / f"{name}.json").read_text())
    manifest["verilog_sha256"] = hashlib.sha256(text.encode()).hexdigest()
    (out / f"{name}.json").write_text(json.dumps(manifest))
    return out / f"{name}.v"


def test_width_check_fails_on_a_widened_accumulator(widened, capsys):
    rc = main(["rtl", "check", str(widened)])
    out = capsys.readouterr().out
    assert rc == 1
    assert "accumulator accum.acc_wide: register 16 bits" in out
    assert "FAIL" in out
    assert "accumulator register mac_a8s_wu8_acc8_k2.accum.acc_wide is 16 bits, not 8" in out
    assert "keeps 16 bits, not 8" in out


def test_widened_accumulator_passes_cosim(widened):
    """Why the structural check exists: the behaviour is identical."""
    result = cosim_mac(widened.with_suffix(".json"), sim="icarus", ops=1000, full_width=False)
    assert result.ok and result.mismatches == 0


def test_width_check_fails_on_a_wider_feeding_register(tmp_path):
    text = (ROOT / "rtl" / "mac_a8s_wu8_acc8_k2.v").read_text()
    # The multiplier's product register widened to 16 bits, truncated where it is used.
    module = text[text.index("module \\mac_a8s_wu8_acc8_k2.mult"):]
    wide = module.replace("output [7:0] prod;", "output [7:0] prod;\n  reg [15:0] prod_wide;",
                          1).replace("reg [7:0] prod = 8'h00;",
                                     "wire [7:0] prod = prod_wide[7:0];", 1)
    wide = wide.replace("prod <= \\$2 ;", "prod_wide <= \\$1 ;", 1)
    path = tmp_path / "wide_prod.v"
    path.write_text(text.replace(module, wide))
    report = check_design([path], "mac_a8s_wu8_acc8_k2", 8)
    assert not report.ok
    assert any("register mac_a8s_wu8_acc8_k2.mult.prod_wide (16 bits) feeds accumulator" in p
               for a in report.accumulators for p in a.problems), report.text()


def test_width_check_on_imported_examples(imported):
    report = check_file(imported / "handmade_mac_wrapkit.v")
    assert report.ok, report.text()
    assert report.path_widths == [32]
    assert report.accumulators[0].register == "handmade_mac_wrapkit.core.sum"
    # Saturation needs the adder's carry: structurally a 9-bit adder, and the check says so.
    report = check_file(imported / "saturating_mac_wrapkit.v")
    assert not report.ok
    assert [a.register for a in report.accumulators] == ["saturating_mac_wrapkit.core.acc_out"]
    assert report.accumulators[0].problems == [
        "adder saturating_mac_wrapkit.core.wide (+) on the loop of "
        "saturating_mac_wrapkit.core.acc_out keeps 9 bits (a condition reads all of them), "
        "not 8"]


@pytest.mark.parametrize("config", ["8x8_acc8_k2", "3x1_acc8_k4"])
def test_width_check_on_a_layer_array(tmp_path, config):
    """Exactly the PE accumulators are found (the controller's counters and address adders
    are not multiply-accumulate loops), binary weights' negation counting as a product."""
    from wrapkit.hw.array.config import ArrayConfig
    from wrapkit.hw.array.design import array_design
    from wrapkit.hw.verilog import write_designs

    cfg = ArrayConfig(rows=2, cols=2, mac=PAPER_MACS[config], out_bits=8, act_depth=64,
                      weight_depth=64, out_depth=64, max_channels=4)
    vpath, _ = write_designs([array_design(cfg)], tmp_path)
    report = check_file(vpath)
    assert report.ok, report.text()
    assert sorted(a.register.split(".", 1)[1] for a in report.accumulators) == [
        f"grid.pe_{r}_{c}.accum.acc" for r in range(2) for c in range(2)]
    assert report.path_widths == [8]


# ---- bad input: one line, exit 2, nothing written ----

def _refused(tmp_path, capsys, argv):
    out = tmp_path / "out"
    rc = main(argv + ["--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1, err
    assert not out.exists() or not any(out.iterdir())
    return err


def test_import_rejects_a_port_that_does_not_exist(tmp_path, capsys):
    err = _refused(tmp_path, capsys, HANDMADE + ["--map", "acc=total"])
    assert "--map acc=total: handmade_mac has no port 'total'" in err


def test_import_rejects_a_width_that_contradicts_the_flags(tmp_path, capsys):
    argv = HANDMADE[:5] + ["--act-bits", "8", "--weight-kind", "uniform", "--weight-bits", "8",
                           "--acc-bits", "16"]
    err = _refused(tmp_path, capsys, argv)
    assert "port 'sum' (role acc) is 32 bits but the MAC flags (--acc-bits) say 16 bits" in err


def test_import_rejects_an_ambiguous_role(tmp_path, capsys):
    design = tmp_path / "twin.v"
    design.write_text((EXAMPLES / "handmade_mac.v").read_text().replace(
        "input  wire                     clear,",
        "input  wire                     clear,\n    input  wire                     clr,"))
    err = _refused(tmp_path, capsys, ["rtl", "import", str(design), "--top", "handmade_mac",
                                      "--config", "8x8_acc32"])
    assert "cannot map MAC role 'clr'" in err and "add clr=PORT to --map" in err


def test_import_rejects_an_unsupported_construct(tmp_path, capsys):
    design = tmp_path / "sv.v"
    design.write_text((EXAMPLES / "handmade_mac.v").read_text().replace(
        "always @(posedge clock)", "always_ff @(posedge clock)"))
    err = _refused(tmp_path, capsys, ["rtl", "import", str(design), "--top", "handmade_mac",
                                      "--config", "8x8_acc32"])
    assert "sv.v:30: unsupported construct 'always_ff' (SystemVerilog)" in err
    broken = tmp_path / "broken.v"
    broken.write_text((EXAMPLES / "handmade_mac.v").read_text().replace(
        "valid_d <= valid;", "valid_d <= valid"))
    err = _refused(tmp_path, capsys, ["rtl", "import", str(broken), "--top", "handmade_mac",
                                      "--config", "8x8_acc32"])
    assert "broken.v: unsupported construct or syntax error near 'clear_d <= clear;'" in err


def test_import_reports_a_latency_the_probe_cannot_find(tmp_path, capsys):
    # Reset polarity inverted: the design sits in reset and acc never shows the product.
    err = _refused(tmp_path, capsys, HANDMADE + ["--reset-active", "high"])
    assert err.startswith("wrapkit rtl: error: latency probe: after one operation")
    assert "give --latency N" in err


def test_import_unknown_top_and_bad_map(tmp_path, capsys):
    err = _refused(tmp_path, capsys, ["rtl", "import", str(EXAMPLES / "handmade_mac.v"),
                                      "--top", "nope", "--config", "8x8_acc32"])
    assert "--top 'nope' is not a module of handmade_mac.v (it defines handmade_mac)" in err
    err = _refused(tmp_path, capsys, HANDMADE + ["--map", "bogus=x_in"])
    assert "--map role 'bogus' is not one of" in err
    err = _refused(tmp_path, capsys, HANDMADE + ["--map", "en=valid,clr=valid"])
    assert "--map gives port 'valid' two roles (en and clr)" in err


def test_import_with_explicit_map_and_latency_writes_nothing_in_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "explicit"
    assert main(SATURATING + ["--map", "a=act,w=weight,en=acc_en,clr=acc_clr,acc=acc_out,"
                                       "rst=rst,clk=clk", "--latency", "2", "--name", "sat",
                              "--out", str(out)]) == 0
    manifest = load_manifest(out / "sat.json")
    assert manifest["imported"]["latency_from"] == "--latency"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["explicit"]   # no pyverilog litter


def test_check_needs_acc_bits_without_a_manifest(tmp_path, capsys):
    path = tmp_path / "x.v"
    path.write_text((ROOT / "rtl" / "mac_a8s_wu8_acc8_k2.v").read_text())
    assert main(["rtl", "check", str(path)]) == 2
    assert "--acc-bits is needed" in capsys.readouterr().err


def test_imported_design_synthesizes_as_one_group(imported, cache_dir):
    """`wrapkit synth` reads the imported manifest unchanged; the whole design is the
    'imported' area group and the report shows it as a column."""
    from wrapkit.hw.synth.evaluate import synthesize_design
    from wrapkit.hw.synth.report import design_markdown

    flow = synthesize_design(imported / "handmade_mac_wrapkit.json")
    groups = flow.result["area"]["groups"]
    assert set(groups) == {"imported", "auxiliary"}
    assert groups["imported"] > 0.99 * flow.result["area"]["total"]
    assert flow.result["area"]["registers"] == 50          # 16 product + 2 control + 32 sum
    report = {"design": "handmade_mac_wrapkit", "liberty": "osu018_stdcells.lib",
              "goal": "delay", "registers": 50, "cycle_time_ns": 3.0, "throughput_gops": 0.67,
              "critical_path": {"start": "a", "end": "b"},
              "area_um2": {**groups, "total": sum(groups.values())},
              "area_efficiency_um2_per_gops": {**groups, "total": sum(groups.values())}}
    block = {"energy_fj_per_op": {"auxiliary": 1.0, "imported": 3.0, "total": 4.0},
             "power_mw": {"total": 1.0}}
    report["energy"] = {"stimulus_based": block, "glitch_free": block,
                        "default_activity_0.1": block, "stimulus": "random", "ops": 10,
                        "simulation": "Icarus", "simulated_period_ns": 4.0, "check": "ok",
                        "glitch_share_of_toggles": 0.1}
    md = design_markdown(report)
    assert "| Auxiliary | Imported | Total |" in md
    assert "| Energy, stimulus (fJ/op) | - | - | - | 1 (25%) | 3 (75%) | 4 |" in md


@pytest.mark.slow
def test_handmade_mac_is_proved_from_its_first_reset(imported, capsys):
    """Hand-written registers power up unknown, so the proof compares from the first reset on;
    with that, the imported MAC equals the behavioural model for every input sequence."""
    assert main(["prove", str(imported / "handmade_mac_wrapkit.json")]) == 0
    out = capsys.readouterr().out
    assert "PROVED" in out and "after the first reset" in out


def test_saturating_mac_fails_the_proof_after_reset(imported, capsys):
    assert main(["prove", str(imported / "saturating_mac_wrapkit.json"), "--depth", "8"]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "<-- mismatch" in out
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    # The trace starts with the reset that the comparison waits for.
    assert rows[0][1] == "1"
