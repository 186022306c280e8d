"""``wrapkit cosim`` from the command line (exit codes and output); ``wrapkit demo`` runs the
flow (tests/test_flow.py)."""

import json
import re
import shutil

import pytest

from wrapkit.cli import main
from wrapkit.sim.designs import resolve_mac


@pytest.mark.parametrize("argv, message", [
    (["cosim", "mac", "nope"], r"unknown MAC configuration 'nope'; give one of 8x8_acc32, "),
    (["cosim", "mac", "8x8_acc32", "--sim", "vcs"],
     r"unknown simulator 'vcs'; choose one of icarus, verilator"),
    (["cosim", "mac", "8x8_acc32", "--ops", "0"], r"--ops must be >= 1, got 0"),
    (["cosim", "cyclic", "--acc-bits", "x"],
     r"--acc-bits 'x' is not a list of integers like 4-10 or 4,6,8"),
    (["cosim", "cyclic", "--k", "0-2"], r"--k values must be integers >= 1, got '0-2'"),
    (["cosim", "paper", "--sims", "icarus,foo"],
     r"unknown simulator 'foo'; choose one of icarus, verilator"),
])
def test_bad_input_exits_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert re.match(rf"^wrapkit (cosim|demo): error: {message}", err), err
    assert err.count("\n") == 1


@pytest.mark.sim
def test_cosim_mac_prints_the_counts(capsys):
    assert main(["cosim", "mac", "3x1_acc8_k4", "--ops", "3000", "--seed", "7"]) == 0
    out = capsys.readouterr().out
    assert re.match(r"^cosim mac_a3u_wb_acc8_k4 on icarus \(seed 7\): 3000 ops checked, "
                    r"0 mismatches, [\d,]+ ops/s simulated \(\d+\.\d s in all", out), out
    assert re.search(r"full-width accumulation: held \d+ x 7, \d+ x -7; wrap reached yes/yes", out)


@pytest.mark.sim
def test_cosim_mac_exits_1_on_mismatch(tmp_path, capsys):
    src = resolve_mac("3x1_acc8_k2")
    manifest = json.loads(src.read_text())
    manifest["config"]["k"] = 1
    shutil.copy(src.with_suffix(".v"), tmp_path)
    (tmp_path / src.name).write_text(json.dumps(manifest))
    assert main(["cosim", "mac", str(tmp_path / src.name), "--ops", "2000",
                 "--no-full-width"]) == 1
    out = capsys.readouterr().out
    assert re.search(r"2000 ops checked, [1-9]\d* mismatches", out)
    assert re.search(r"^  mismatch: cycle \d+: y expected ", out, re.M)


@pytest.mark.sim
def test_cosim_cyclic(capsys):
    assert main(["cosim", "cyclic", "--acc-bits", "4-5", "--k", "1,3"]) == 0
    out = capsys.readouterr().out
    assert re.match(r"^cosim cyclic on icarus: 4 designs \(acc_bits 4-5, k 1,3\), 96 inputs "
                    r"checked exhaustively, 0 mismatches", out), out


@pytest.mark.sim
def test_cosim_paper_on_icarus(tmp_path, capsys):
    assert main(["cosim", "paper", "--sims", "icarus", "--ops", "1000", "--rtl-dir",
                 str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert len(list(tmp_path.glob("mac_*.v"))) == 6 and len(list(tmp_path.glob("*.json"))) == 6
    rows = re.findall(r"^(\S+) +(mac_\w+) +icarus +1000 +0 +[\d,]+ +\d+\.\d$", out, re.M)
    assert [r[0] for r in rows] == ["8x8_acc32", "3x1_acc32", "8x8_acc8_k2", "8x8_acc8_k4",
                                    "3x1_acc8_k2", "3x1_acc8_k4"]
    assert out.rstrip().endswith("cosim paper: 6/6 cosimulations passed with zero mismatches")
