"""``wrapkit rtl``: files written on success; one-line errors, exit 2 and nothing written on
bad input."""

import json
import re
import subprocess
import sys

import pytest

from wrapkit.cli import main
from wrapkit.hw.manifest import load_manifest
from wrapkit.ref.configs import PAPER_MACS


def test_rtl_mac_explicit_parameters(tmp_path, capsys):
    out = tmp_path / "rtl"
    rc = main(["rtl", "mac", "--act-bits", "8", "--act-signed", "--weight-kind", "uniform",
               "--weight-bits", "8", "--acc-bits", "8", "--k", "2", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(out / "mac_a8s_wu8_acc8_k2.v"), str(out / "mac_a8s_wu8_acc8_k2.json")]
    manifest = load_manifest(out / "mac_a8s_wu8_acc8_k2.json")
    assert manifest["config"] == PAPER_MACS["8x8_acc8_k2"].to_dict()


def test_rtl_mac_paper_config_matches_explicit(tmp_path, capsys):
    assert main(["rtl", "mac", "--config", "3x1_acc8_k4", "--out", str(tmp_path / "a")]) == 0
    assert main(["rtl", "mac", "--act-bits", "3", "--act-unsigned", "--weight-kind", "binary",
                 "--acc-bits", "8", "--k", "4", "--out", str(tmp_path / "b")]) == 0
    name = "mac_a3u_wb_acc8_k4"
    for suffix in (".v", ".json"):
        assert ((tmp_path / "a" / f"{name}{suffix}").read_bytes()
                == (tmp_path / "b" / f"{name}{suffix}").read_bytes())


def test_rtl_mac_name_no_cyclic_and_ternary(tmp_path, capsys):
    assert main(["rtl", "mac", "--act-bits", "4", "--act-unsigned", "--weight-kind", "ternary",
                 "--acc-bits", "12", "--no-cyclic", "--name", "tmac", "--out",
                 str(tmp_path)]) == 0
    manifest = json.loads((tmp_path / "tmac.json").read_text())
    assert manifest["top"] == "tmac" and manifest["config"]["k"] is None
    assert [p["name"] for p in manifest["ports"]][-1] == "acc"
    assert "module tmac(" in (tmp_path / "tmac.v").read_text()


def test_rtl_cyclic_and_seed(tmp_path, capsys):
    assert main(["rtl", "cyclic", "--acc-bits", "5", "--k", "3", "--out", str(tmp_path)]) == 0
    assert load_manifest(tmp_path / "cyclic_acc5_k3.json")["config"]["threshold"] == 12
    capsys.readouterr()
    assert main(["rtl", "paper", "--out", str(tmp_path / "paper")]) == 0
    printed = capsys.readouterr().out.split()
    assert len(printed) == 12
    assert sorted(p.name for p in (tmp_path / "paper").iterdir()) == sorted(
        f"{cfg.name}{s}" for cfg in PAPER_MACS.values() for s in (".v", ".json"))


_MAC = ["rtl", "mac", "--act-bits", "8", "--weight-kind", "uniform", "--weight-bits", "8",
        "--acc-bits", "8"]


@pytest.mark.parametrize(("argv", "message"), [
    (_MAC + ["--k", "0"], r"k must be >= 1, got 0 \(fix --k\)"),
    (["rtl", "mac", "--act-bits", "0", "--weight-kind", "binary", "--acc-bits", "8"],
     r"act_bits must be in \[1, 32\], got 0 \(fix --act-bits\)"),
    (["rtl", "mac", "--act-bits", "8", "--weight-kind", "binary", "--acc-bits", "63"],
     r"acc_bits must be in \[2, 62\], got 63 \(fix --acc-bits\)"),
    (["rtl", "mac", "--act-bits", "8", "--weight-kind", "uniform", "--weight-bits", "17",
      "--acc-bits", "8"], r"weight_bits must be in \[2, 16\], got 17 \(fix --weight-bits\)"),
    (["rtl", "mac", "--act-bits", "8", "--weight-kind", "uniform", "--acc-bits", "8"],
     r"--weight-kind uniform needs --weight-bits N \(2\.\.16\)"),
    (["rtl", "mac", "--act-bits", "8", "--weight-kind", "binary", "--weight-bits", "1",
      "--acc-bits", "8"], r"--weight-bits applies to uniform weights only; drop it for binary "
                          r"weights"),
    (["rtl", "mac", "--act-bits", "8"], r"missing --weight-kind, --acc-bits; give the MAC "
                                        r"parameters or --config NAME"),
    (["rtl", "mac", "--config", "9x9"], r"unknown --config '9x9'; choose one of 8x8_acc32, "
                                        r"3x1_acc32, .* or give the parameters as flags"),
    (["rtl", "mac", "--config", "8x8_acc32", "--acc-bits", "8"],
     r"--config 8x8_acc32 already fixes the MAC; drop --acc-bits or drop --config"),
    (_MAC + ["--name", "bad-name"], r"name must be a Verilog identifier matching "
                                    r"\[A-Za-z_\]\[A-Za-z0-9_\]\*, got 'bad-name' \(fix --name\)"),
    (["rtl", "cyclic", "--acc-bits", "1", "--k", "2"],
     r"acc_bits must be in \[2, 62\], got 1 \(fix --acc-bits\)"),
])
def test_rtl_bad_input(tmp_path, capsys, argv, message):
    out = tmp_path / "rtl"
    assert main(argv + ["--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert re.fullmatch(rf"wrapkit rtl: error: {message}\n", err), err
    assert not out.exists()


def test_rtl_unwritable_out(tmp_path, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("keep")
    assert main(["rtl", "mac", "--config", "3x1_acc32", "--out", str(blocker)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"wrapkit rtl: error: cannot write into --out {blocker}: ")
    assert err.endswith("; choose a writable folder\n") and err.count("\n") == 1
    assert blocker.read_text() == "keep"


def test_rtl_usage_errors_exit_2(tmp_path, capsys):
    for argv in (["rtl"], ["rtl", "mac", "--act-bits", "eight"],
                 ["rtl", "mac", "--weight-kind", "quaternary"],
                 ["rtl", "mac", "--k", "2", "--no-cyclic"]):
        with pytest.raises(SystemExit) as exc:
            main(argv + ["--out", str(tmp_path / "rtl")])
        assert exc.value.code == 2
    assert not (tmp_path / "rtl").exists()


def test_console_script_one_line_error(tmp_path):
    """Through the real entry point: exactly one stderr line (no tracebacks, no Amaranth
    "created but never used" warnings at exit), exit 2, nothing written."""
    proc = subprocess.run([sys.executable, "-m", "wrapkit", "rtl", "cyclic", "--acc-bits", "8",
                           "--k", "0", "--out", str(tmp_path / "rtl")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr == "wrapkit rtl: error: k must be >= 1, got 0 (fix --k)\n"
    assert proc.stdout == "" and not (tmp_path / "rtl").exists()


def test_rtl_packed_adder(tmp_path, capsys):
    from wrapkit.hw.packed_adder import packed_adder_design

    out = tmp_path / "rtl"
    assert main(["rtl", "packed-adder", "--out", str(out)]) == 0
    name = "packed_acc_w32_l4x8"
    assert capsys.readouterr().out.split() == [str(out / f"{name}.v"), str(out / f"{name}.json")]
    manifest = load_manifest(out / f"{name}.json")
    assert manifest["design"] == "packed_adder"
    assert manifest["config"] == {"lane_bits": 8, "lanes": 4, "word_bits": 32,
                                  "mode_codes": {"carry": 0, "isolated": 1, "buffer": 2}}
    # The command writes exactly what the generator produces with the same parameters.
    assert (out / f"{name}.v").read_text() == packed_adder_design().verilog
    assert main(["rtl", "packed-adder", "--lane-bits", "6", "--lanes", "5", "--word-bits", "64",
                 "--name", "pa", "--out", str(out)]) == 0
    manifest = load_manifest(out / "pa.json")
    assert manifest["config"]["lanes"] == 5 and manifest["config"]["word_bits"] == 64
    assert [p["width"] for p in manifest["ports"] if p["name"] in ("x", "flags", "total")] == \
        [64, 5, 6]


@pytest.mark.parametrize(("argv", "message"), [
    (["--lanes", "5"], r"lanes must be in \[1, 4\] for lane_bits=8 in a 32-bit word, got 5 "
                       r"\(fix --lanes\)"),
    (["--word-bits", "48"], r"word_bits must be 32 or 64, got 48 \(fix --word-bits\)"),
    (["--name", "9x"], r"name must be a Verilog identifier matching "
                       r"\[A-Za-z_\]\[A-Za-z0-9_\]\*, got '9x' \(fix --name\)"),
])
def test_rtl_packed_adder_bad_input(tmp_path, capsys, argv, message):
    out = tmp_path / "rtl"
    assert main(["rtl", "packed-adder", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert re.fullmatch(rf"wrapkit rtl: error: {message}\n", err), err
    assert not out.exists()
