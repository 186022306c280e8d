"""Formal proofs (``wrapkit prove``): correct designs are proved, broken ones are refuted
with a genuine counterexample, the behavioural models agree with wrapkit.ref, and bad input
is a one-line error with exit status 2."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from wrapkit.cli import main
from wrapkit.common.errors import UserError
from wrapkit.formal import model_check, prove_manifest
from wrapkit.formal.mac_proof import DEFAULT_DEPTH
from wrapkit.formal.model_check import (ModelMismatch, check_cyclic_model, check_mac_model,
                                       reference_stream)
from wrapkit.formal.models import cyclic_model_verilog, mac_model_verilog
from wrapkit.formal.mutants import write_mutant
from wrapkit.formal.signals import as_signed
from wrapkit.hw.verilog import cyclic_design, write_designs
from wrapkit.ref.configs import PAPER_MACS
from wrapkit.ref.datapath import MacConfig, cyclic

REPO = Path(__file__).resolve().parent.parent
RTL = REPO / "rtl"
CYCLIC_CASES = [(2, 1), (5, 3), (8, 2), (13, 7), (16, 8)]


@pytest.fixture(scope="module")
def cyclic_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cyclic")
    write_designs([cyclic_design(b, k) for b, k in CYCLIC_CASES], out)
    return out


def _mac(name):
    return RTL / f"{PAPER_MACS[name].name}.json"


# --- proofs of correct designs ---------------------------------------------------------

@pytest.mark.parametrize("bits,k", CYCLIC_CASES)
def test_cyclic_unit_is_proved_for_every_input(cyclic_dir, bits, k):
    result = prove_manifest(cyclic_dir / f"cyclic_acc{bits}_k{k}.json")
    assert (result.status, result.method, result.depth) == ("proved", "sat", 0)
    assert result.counterexample is None
    assert result.detail == f"no m in [-2^{bits - 1}, 2^{bits - 1}) makes them differ"


@pytest.mark.parametrize("name,depth", [("3x1_acc8_k2", DEFAULT_DEPTH), ("3x1_acc32", 3),
                                        ("8x8_acc8_k4", 2)])
def test_mac_is_proved_by_bmc_and_induction(name, depth):
    result = prove_manifest(_mac(name), depth=depth)
    assert (result.status, result.method, result.depth) == ("proved", "bmc+k-induction", depth)
    outputs = "acc" if PAPER_MACS[name].k is None else "acc and y"
    assert result.property.startswith(f"{outputs} == behavioural model")


def test_depth_one_cannot_prove_a_two_stage_pipeline():
    """Induction needs the operand pipeline refilled from the inputs: one cycle is too few,
    and the result says so rather than claiming a proof."""
    result = prove_manifest(_mac("3x1_acc8_k2"), depth=1)
    assert result.status == "unproved"
    assert "try a larger --depth" in result.detail
    assert result.counterexample.origin == "arbitrary state"


# --- broken designs --------------------------------------------------------------------

def test_cyclic_threshold_off_by_one_fails_with_counterexample(cyclic_dir, tmp_path, capsys):
    broken = write_mutant(cyclic_dir / "cyclic_acc8_k2.json", "threshold_off_by_one", tmp_path)
    json_path = tmp_path / "proof.json"
    assert main(["prove", str(broken), "--json", str(json_path)]) == 1
    out = capsys.readouterr().out
    # T = 85: the broken unit passes m = 86 through, the formula folds it to 2*(128-86).
    assert "cyclic_acc8_k2: FAILED" in out
    assert "m = 86: expected y = 84, actual y = 86" in out
    [record] = json.loads(json_path.read_text())
    assert record["status"] == "failed"
    assert record["counterexample"]["cycles"] == [
        {"cycle": 0, "inputs": {"m": 86}, "expected": {"y": 84}, "actual": {"y": 86}}]
    assert int(cyclic(86, 8, 2)) == 84


def test_saturating_accumulator_fails_with_genuine_trace(tmp_path, capsys):
    broken = write_mutant(_mac("8x8_acc8_k2"), "saturating_accumulator", tmp_path)
    assert main(["prove", str(broken)]) == 1
    out = capsys.readouterr().out
    assert "mac_a8s_wu8_acc8_k2: FAILED (bmc+k-induction, depth 4" in out
    assert re.search(r"cycle\s+rst\s+a\s+w\s+en\s+clr\s+acc expected\s+acc actual\s+"
                     r"y expected\s+y actual", out)
    assert "<-- mismatch" in out

    result = prove_manifest(broken)
    cex = result.counterexample
    assert result.status == "failed" and cex.origin == "initial state"
    last = cex.cycles[cex.failing_cycle]
    assert last["actual"]["acc"] == 127 != last["expected"]["acc"]   # clamped, not wrapped
    # The expected column is the reference's answer for the trace's inputs: replay them.
    # Cycle c shows the accumulator after operation c - latency.
    columns = {name: np.array([entry["inputs"][name] for entry in cex.cycles])
               for name in ("a", "w", "en", "clr", "rst")}
    acc, out_y = reference_stream(PAPER_MACS["8x8_acc8_k2"], 2, columns["a"], columns["w"],
                                  columns["en"], columns["clr"], columns["rst"])
    for entry in cex.cycles[2:]:
        op = entry["cycle"] - 2
        assert (entry["expected"]["acc"], entry["expected"]["y"]) == (acc[op], out_y[op])


def test_bug_deeper_than_bmc_is_not_proved_then_found_deeper(tmp_path):
    """3-bit x binary products reach the broken threshold only after 13 operations: at the
    default depth induction refuses the proof; a deeper BMC finds the trace from reset."""
    broken = write_mutant(_mac("3x1_acc8_k2"), "threshold_off_by_one", tmp_path)
    shallow = prove_manifest(broken)
    assert shallow.status == "unproved" and not shallow.proved
    deep = prove_manifest(broken, depth=16)
    assert deep.status == "failed"
    last = deep.counterexample.cycles[-1]
    assert last["actual"]["acc"] == last["expected"]["acc"] == 86
    assert (last["expected"]["y"], last["actual"]["y"]) == (84, 86)


def test_mutant_needs_exactly_one_edit_site(tmp_path):
    with pytest.raises(ValueError, match=r"threshold_off_by_one applies to 0 places"):
        write_mutant(_mac("8x8_acc32"), "threshold_off_by_one", tmp_path)
    with pytest.raises(ValueError, match="out_dir must differ"):
        write_mutant(_mac("8x8_acc32"), "saturating_accumulator", RTL)


# --- the models against wrapkit.ref ----------------------------------------------------

@pytest.mark.parametrize("bits,k", [(2, 1), (2, 8), (7, 3), (10, 4), (16, 5), (30, 6)])
def test_cyclic_model_agrees_with_reference(tmp_path, bits, k):
    n = check_cyclic_model(bits, k, tmp_path)
    assert n == (1 << bits if bits <= 16 else 12 + 4096)


@pytest.mark.parametrize("name", list(PAPER_MACS))
def test_mac_model_agrees_with_reference(tmp_path, name):
    assert check_mac_model(PAPER_MACS[name], 2, tmp_path, n_ops=1500) == 1500


def test_mac_model_latency_and_ternary(tmp_path):
    cfg = MacConfig(4, True, "ternary", None, 10, 3)
    assert check_mac_model(cfg, 3, tmp_path, n_ops=1000, seed=5) == 1000
    assert check_mac_model(cfg, 1, tmp_path, n_ops=1000, seed=6) == 1000


def test_reference_stream_agrees_with_the_cosim_scoreboard():
    """The reset rule used to check the MAC model is the cosimulation scoreboard's rule."""
    from wrapkit.sim.mac_model import MacModel
    cfg = PAPER_MACS["8x8_acc8_k2"]
    rng = np.random.default_rng(3)
    n = 3000
    ops = (rng.integers(-128, 128, n), rng.integers(0, 256, n), rng.integers(0, 2, n),
           (rng.random(n) < 0.1).astype(int), (rng.random(n) < 0.03).astype(int))
    scoreboard = MacModel(cfg)
    for op in zip(*ops):
        scoreboard.push(*op)
    want = scoreboard.expected(np.arange(n), final=True)
    got = reference_stream(cfg, 2, *ops)
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])


def test_model_check_catches_a_wrong_model(tmp_path, monkeypatch):
    def off_by_one(acc_bits, k, name="wrapkit_cyclic_model"):
        return cyclic_model_verilog(acc_bits, k, name).replace("(mx > T)", "(mx > T + 1)")
    monkeypatch.setattr(model_check, "cyclic_model_verilog", off_by_one)
    with pytest.raises(ModelMismatch, match=r"b=8 k=2: m = 86 gives 86, wrapkit.ref.cyclic "
                                            r"gives 84"):
        check_cyclic_model(8, 2, tmp_path)


def test_model_generators_reject_bad_parameters():
    with pytest.raises(ValueError, match="acc_bits >= 2 and k >= 1"):
        cyclic_model_verilog(8, 0)
    with pytest.raises(ValueError, match="latency must be an integer >= 1, got 0"):
        mac_model_verilog(PAPER_MACS["3x1_acc32"], 0)
    with pytest.raises(TypeError, match="cfg must be a MacConfig"):
        mac_model_verilog({"acc_bits": 8}, 2)


def test_as_signed():
    assert as_signed(0b11010100, 8) == -44
    assert as_signed(0b11010100, 8, signed=False) == 212
    assert as_signed(None, 8) is None


# --- the command line ------------------------------------------------------------------

def test_cli_proves_and_writes_json(cyclic_dir, tmp_path, capsys):
    json_path = tmp_path / "proofs.json"
    rc = main(["prove", str(cyclic_dir / "cyclic_acc5_k3.json"), str(_mac("3x1_acc32")),
               "--json", str(json_path), "--check-model", "--keep", str(tmp_path / "keep")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "cyclic_acc5_k3: model agrees with wrapkit.ref on 32 inputs (Icarus)" in out
    assert "prove: 2/2 designs proved" in out
    records = json.loads(json_path.read_text())
    assert [(r["design"], r["method"], r["depth"], r["status"]) for r in records] == [
        ("cyclic_acc5_k3", "sat", 0, "proved"),
        ("mac_a3u_wb_acc32", "bmc+k-induction", DEFAULT_DEPTH, "proved")]
    for record in records:
        assert set(record) >= {"design", "property", "method", "depth", "status", "seconds"}
        assert record["seconds"] >= 0
    kept = tmp_path / "keep" / "mac_a3u_wb_acc32"
    assert {"model.v", "miter.v", "prove.ys", "miter.smt2", "bmc.log"} <= {
        p.name for p in kept.iterdir()}


def _one_line_error(capsys, argv, pattern):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert re.search(pattern, err), err


def test_cli_bad_input(tmp_path, capsys):
    notes = tmp_path / "notes.json"
    notes.write_text("not json")
    _one_line_error(capsys, ["prove", str(notes)], r"^wrapkit prove: error: RTL manifest .*"
                                                   r"notes\.json: unreadable")
    _one_line_error(capsys, ["prove", str(tmp_path / "missing.json")], r"file not found")
    manifest = json.loads(_mac("3x1_acc32").read_text())
    manifest["design"] = "fifo"
    (tmp_path / "fifo.json").write_text(json.dumps(manifest))
    _one_line_error(capsys, ["prove", str(tmp_path / "fifo.json")],
                    r"design is 'fifo', expected one of mac, cyclic, array")
    _one_line_error(capsys, ["prove", str(_mac("3x1_acc32")), "--depth", "0"],
                    r"--depth must be an integer >= 1, got 0")
    _one_line_error(capsys, ["prove", str(_mac("3x1_acc32")), "--json", str(tmp_path)],
                    r"--json .* is a folder")
    _one_line_error(capsys, ["prove", str(_mac("3x1_acc32")), "--json",
                             str(tmp_path / "no" / "such.json")], r"--json folder .* does not "
                                                                  r"exist")


def test_array_designs_have_no_proof(tmp_path, monkeypatch):
    from wrapkit.formal import prove as prove_module
    manifest = json.loads(_mac("3x1_acc32").read_text())
    monkeypatch.setattr(prove_module, "load_manifest", lambda path: {**manifest,
                                                                     "design": "array"})
    with pytest.raises(UserError, match=r"no proof for 'array' designs; `wrapkit prove` "
                                        r"proves cyclic and mac designs"):
        prove_manifest(tmp_path / "array.json")


def test_cli_missing_tools(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    _one_line_error(capsys, ["prove", str(_mac("3x1_acc32"))],
                    r"yosys, yosys-smtbmc, z3 not found on PATH; install with `apt-get "
                    r"install yosys z3`")


def test_tools_are_installed():
    """`make setup` installs them; without them every proof above is an error."""
    for tool in ("yosys", "yosys-smtbmc", "z3", "iverilog"):
        assert shutil.which(tool), tool
