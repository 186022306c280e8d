"""``wrapkit flow`` end to end (tiny preset), its settings, and ``wrapkit estimate``.

The end-to-end test runs the real flow once -- training on scikit-learn's digits, export,
integer engine, Verilog generation, Icarus cosimulation, Yosys/OpenSTA synthesis and
gate-level energy, the report -- and walks it through the situations the flow promises to
handle, in one sequence so the 2-core test machine trains only once:

1. a synthesis tool is missing (``WRAPKIT_YOSYS`` points nowhere): the synth stage fails with
   a message naming it and the cause, the four finished stages stay recorded;
2. ``--resume`` reuses them and finishes; summary.json's figures are consistent;
3. the same command again reuses every stage; a setting that only the synth stage reads
   reruns synth and report only.

About a minute on one core.
"""

import ast
import importlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

import wrapkit
from wrapkit.cli import main
from wrapkit.hw.synth.network import sample_stream
from wrapkit.ref.variants import with_accumulator
from wrapkit.flow.cache import result_digest
from wrapkit.flow.config import PRESETS, FlowConfig, config_from

STAGE_NAMES = ("train", "export", "rtl", "cosim", "synth", "report")


def _flow(args, root, capsys):
    code = main(["flow", *args, "--out-root", str(root), "--no-progress"])
    out, err = capsys.readouterr()
    return code, out, err


def _state(run):
    return json.loads((run / "flow.json").read_text())


@pytest.mark.sim
@pytest.mark.slow
def test_tiny_flow_fails_resumes_and_reuses(tmp_path, monkeypatch, capsys, cache_dir):
    root, run = tmp_path / "out", tmp_path / "out" / "tiny"

    # 1. Synthesis cannot run: the flow stops at stage 5 and says why.
    monkeypatch.setenv("WRAPKIT_YOSYS", str(tmp_path / "no-such-yosys"))
    code, out, err = _flow(["--preset", "tiny"], root, capsys)
    assert code == 2, err  # a missing tool is an environment problem
    assert re.match(r"^wrapkit flow: stage 5/6 'synth' failed: `yosys` not found "
                    r"\(WRAPKIT_YOSYS=.* is not executable\); install the Debian package "
                    r"'yosys'", err), err
    assert re.search(r"finished stages kept in .*tiny: train, export, rtl, cosim; fix the "
                     r"cause, then `wrapkit flow --resume --name tiny --out-root ", err), err
    state = _state(run)
    assert [state["stages"][s]["status"] for s in STAGE_NAMES[:5]] == ["done"] * 4 + ["failed"]
    assert "report" not in state["stages"]
    assert (run / "export" / "wrapnet.wkx").is_file() and (run / "cosim" / "cosim.json").is_file()
    assert not (run / "summary.json").exists()
    for stage in STAGE_NAMES[:4]:
        assert re.search(rf"^\[\d/6 {stage}\] done in \d+\.\d s$", out, re.M), out

    # 2. --resume continues with the saved settings and reuses the finished stages.
    monkeypatch.delenv("WRAPKIT_YOSYS")
    code, out, err = _flow(["--resume", "--name", "tiny"], root, capsys)
    assert code == 0, err
    for stage in STAGE_NAMES[:4]:
        assert re.search(rf"^\[\d/6 {stage}\] cached: inputs unchanged", out, re.M), out
    for stage in ("synth", "report"):
        assert re.search(rf"^\[\d/6 {stage}\] done in ", out, re.M), out
    summary = json.loads((run / "summary.json").read_text())
    _check_summary(run, summary)

    # 3. The same inputs again: every stage is reused, nothing is rewritten.
    before = (run / "summary.json").stat().st_mtime_ns
    code, out, err = _flow(["--preset", "tiny"], root, capsys)
    assert code == 0, err
    assert "wrapkit flow: finished in" in out and "(6 of 6 stages cached)" in out, out
    assert (run / "summary.json").stat().st_mtime_ns == before
    # A setting only the synth stage reads: the stages before it stay cached.
    code, out, err = _flow(["--preset", "tiny", "--set", "array_macs=8"], root, capsys)
    assert code == 0, err
    assert "(4 of 6 stages cached)" in out, out
    again = json.loads((run / "summary.json").read_text())
    assert again["synth"]["datapath_8"]["array_macs"] == 8
    assert again["synth"]["datapath_8"]["array_area_mm2"] == pytest.approx(
        8 * again["synth"]["datapath_8"]["mac_area_um2"] * 1e-6)
    assert again["engine"] == summary["engine"] and again["cosim"]["runs"][0]["checked"] \
        == summary["cosim"]["runs"][0]["checked"]

    # `wrapkit estimate` on the trained export.
    est_json, plot = tmp_path / "est.json", tmp_path / "est.png"
    assert main(["estimate", str(run / "export" / "wrapnet.wkx"), "--images", "2", "--ops",
                 "200", "--array-macs", "4", "--json", str(est_json), "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^\| energy per inference \(nJ\) \| [\d.]+ \| [\d.]+ \|$", out, re.M), out
    est = json.loads(est_json.read_text())
    assert est["datapath"]["design"] == summary["synth"]["datapath_8"]["design"]
    assert est["baseline"]["design"] == summary["synth"]["datapath_32"]["design"]
    assert est["gains"]["energy"] > 1 and est["gains"]["area"] > 1
    assert est["datapath"]["array_area_mm2"] == pytest.approx(
        4 * est["datapath"]["mac_area_um2"] * 1e-6)
    assert plot.stat().st_size > 1000


def _check_summary(run, s):
    from wrapkit.common.datasets import load_images
    from wrapkit.ref.engine import Engine
    from wrapkit.ref.wkx import read_export

    assert all(s["checks"].values()), s["checks"]
    # Cosimulation: real conv-layer operands, every operation checked, no mismatch.
    assert s["cosim"]["mismatches"] == 0 and s["cosim"]["checked"] > 0
    for r in s["cosim"]["runs"]:
        assert r["checked"] == r["ops"] > 0 and r["mismatches"] == r["final_mismatches"] == 0
        assert r["geometry"].startswith("conv ")
    # Integer engine vs PyTorch: within 0.1 point, and reproducible from the export alone.
    test = load_images("digits")
    for name in ("wrapnet", "baseline"):
        eng = s["engine"]["networks"][name]
        assert eng["images"] == len(test) == s["engine"]["test_images"]
        assert abs(eng["accuracy"] - s["training"][name]["test_accuracy"]) <= 0.001
        exp = read_export(run / eng["export"])
        assert exp.sha256 == eng["sha256"]
        logits = Engine(exp).run(test.pixels)
        assert float(np.mean(logits.argmax(1) == test.labels)) == eng["accuracy"]
    # The forced variant is the same network on a plain 8-bit register: exactly wrap(z).
    exp = read_export(run / s["engine"]["networks"]["baseline"]["export"])
    forced = Engine(with_accumulator(exp, 8))
    layer = forced.integer_layers[0]
    codes = np.random.default_rng(0).integers(0, 1 << layer.in_bits, (3, *layer.spec["in_shape"]))
    got = forced.layer_forward(layer.index, codes)
    assert np.array_equal(got["y"], (got["z"] + 128) % 256 - 128)
    # PyTorch's own evaluation on plain 8-bit registers agrees with the engine's.
    fb = s["engine"]["forced_plain_accumulator"]["baseline"]
    assert abs(fb["engine_minus_pytorch_points"]) <= 0.1
    assert fb["mean_overflow_rate"] > s["engine"]["networks"]["wrapnet"]["mean_overflow_rate"]
    variants = s["engine"]["forced_plain_accumulator"]
    for ev in (*s["engine"]["networks"].values(), *variants.values()):
        assert all(0 <= L["overflow_rate"] <= 1 for L in ev["layers"])
    # Hardware: the 8-bit datapath is smaller, faster and spends less energy per inference.
    syn = s["synth"]
    d8, d32 = syn["datapath_8"], syn["datapath_32"]
    assert d8["mac_area_um2"] < d32["mac_area_um2"] and d8["cycle_time_ns"] < d32["cycle_time_ns"]
    e = syn["energy_per_inference_nj"]
    assert e["wrapnet_8bit"] < e["wrapnet_operands_32bit"]
    assert e["wrapnet_8bit"] < e["baseline_32bit"]
    ints = [L for L in syn["layers"] if L["precision"] == "integer"]
    assert d8["macs_per_inference"] == sum(L["macs_per_inference"] for L in ints)
    assert e["wrapnet_8bit"] == pytest.approx(sum(L["wrapnet_8bit_nj"] for L in ints))
    assert e["baseline_32bit"] == pytest.approx(sum(L["baseline_32bit_nj"] for L in ints))
    assert sum(syn["energy_groups_nj"]["wrapnet_8bit"].values()) == pytest.approx(e["wrapnet_8bit"])
    assert d8["mac_area_um2"] == pytest.approx(sum(d8["mac_area_groups_um2"].values()))
    # RTL: every design's Verilog is the one its manifest names.
    import hashlib
    for d in s["rtl"]["designs"]:
        v = (run / d["verilog"]).read_bytes()
        assert hashlib.sha256(v).hexdigest() == d["verilog_sha256"] == json.loads(
            (run / d["manifest"]).read_text())["verilog_sha256"]
        # ... and its accumulation path was checked structurally at its accumulator width.
        check = d["accumulation_path"]
        assert check["ok"] and check["path_widths"] == [d["config"]["acc_bits"]], check
    # The report: markdown linking its plots, HTML carrying them inside.
    md = (run / "report.md").read_text()
    html = (run / "report.html").read_text()
    links = re.findall(r"!\[[^\]]*\]\((plots/[\w.]+\.png)\)", md)
    assert sorted(links) == sorted(s["plots"].values()) and len(links) == 5
    assert all((run / p).stat().st_size > 5000 for p in links)
    assert html.count('src="data:image/png;base64,') == 5 and 'src="plots/' not in html
    assert f"{100 * s['engine']['networks']['wrapnet']['accuracy']:.2f} %" in html
    assert md.count("bits, checked |") == len(s["rtl"]["designs"])


# -- settings -----------------------------------------------------------------------------------

def test_presets_build_valid_configs():
    for name in PRESETS:
        cfg = config_from(name)
        assert cfg.preset == name
    assert config_from("full").train_subset is None and config_from("tiny").dataset == "digits"
    cfg = config_from("tiny", {"array_macs": 8}, {"simulators": "icarus,verilator"})
    assert cfg.array_macs == 8 and cfg.simulators == ("icarus", "verilator")
    assert FlowConfig(**cfg.to_dict()) == cfg        # flow.json round trip


@pytest.mark.parametrize("preset, file_settings, overrides, message", [
    ("huge", None, None, r"unknown preset 'huge'; choose one of quick, full, tiny$"),
    ("tiny", {"widht": 3}, None, r"unknown setting\(s\) in config file: widht; known: "),
    ("tiny", None, {"acc_bits": 40}, r"bad flow setting: acc_bits must be in \[2, 31\], "
                                     r"got 40$"),
    ("tiny", None, {"simulators": "icarus,vcs"},
     r"bad flow setting: simulators must name icarus and/or verilator once each"),
    ("tiny", None, {"baseline_act_bits": "wide"},
     r"bad flow setting: baseline_act_bits must be 'match' or an integer in \[1, 8\], "
     r"got 'wide'$"),
    ("quick", None, {"fp32_epochs": 0, "bwn_epochs": 0},
     r"bad flow setting: bwn_epochs must be >= 1 when fp32_epochs is 0"),
    ("quick", None, {"widths": [8, 8]},
     r"bad flow setting: widths must be a list of 3 integers in \[1, 4096\], got \(8, 8\)$"),
])
def test_bad_settings_are_named(preset, file_settings, overrides, message):
    from wrapkit.common.errors import UserError

    with pytest.raises(UserError, match=rf"^{message}"):
        config_from(preset, file_settings, overrides)


def test_config_file_and_cli_errors(tmp_path, capsys):
    toml = tmp_path / "flow.toml"
    toml.write_text('preset = "tiny"\nwidths = [4, 8, 8]\nsimulators = ["icarus"]\n')
    assert main(["flow", "--config", str(toml), "--set", "array_macs=2", "--print-config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["preset"] == "tiny" and printed["widths"] == [4, 8, 8]
    assert printed["array_macs"] == 2 and printed["dataset"] == "digits"
    bad = tmp_path / "bad.toml"
    bad.write_text("widths = [4, 8\n")
    for argv, message in (
            (["--config", str(bad)], rf"--config {re.escape(str(bad))} is not valid TOML: "),
            (["--resume", "--name", "nothing"], r"nothing to resume in .*nothing: no flow.json; "),
            (["--resume", "--name", "x", "--set", "k=4"],
             r"--resume continues with the run's saved settings; drop --set ")):
        code = main(["flow", *argv, "--out-root", str(tmp_path)])
        err = capsys.readouterr().err
        assert code == 2, err
        assert re.match(rf"^wrapkit flow: error: {message}", err), err
    with pytest.raises(SystemExit) as exc:                 # argparse: usage error
        main(["flow", "--set", "k"])
    assert exc.value.code == 2
    assert "argument --set: expected KEY=VALUE, got 'k'" in capsys.readouterr().err


def test_result_digest_ignores_times():
    a = {"runs": [{"seconds": 1.0, "accuracy": 0.9, "reused": False}], "wall_s": 3}
    b = {"runs": [{"seconds": 7.5, "accuracy": 0.9, "reused": True}], "wall_s": 9}
    assert result_digest(a) == result_digest(b)
    assert result_digest(a) != result_digest({"runs": [{"accuracy": 0.8}]})


# -- estimator pieces ---------------------------------------------------------------------------

def test_sample_stream_takes_whole_dot_products_of_real_rows():
    rng = np.random.default_rng(1)
    rows = rng.integers(0, 8, (50, 9))
    w = rng.integers(0, 2, (4, 9))
    stim = sample_stream(rows, w, 100, segments=3, seed=5)
    a, wc = stim.a.reshape(-1, 9), stim.w.reshape(-1, 9)
    assert len(a) == 12                                 # ceil(100 / 9) dot products
    assert stim.clr.reshape(-1, 9)[:, 0].all() and not stim.clr.reshape(-1, 9)[:, 1:].any()
    row_set = {tuple(r) for r in rows}
    assert all(tuple(r) in row_set for r in a)
    # Inside a run, consecutive dot products walk the channels of one row, as the MAC does.
    idx = [int(np.flatnonzero((w == x).all(1))[0]) for x in wc]
    steps = sum((j - i) % 4 == 1 for i, j in zip(idx, idx[1:]))
    assert steps >= len(idx) - 3 - 2                    # only run boundaries break the walk
    again = sample_stream(rows, w, 100, segments=3, seed=5)
    assert np.array_equal(again.a, stim.a) and again.digest() == stim.digest()
    with pytest.raises(ValueError, match=r"^n_ops must be an integer >= 1, got 0$"):
        sample_stream(rows, w, 0)
    with pytest.raises(ValueError, match=r"^rows and w_codes must be non-empty 2-D arrays "
                                         r"with equal fan-in, got shapes \(50, 9\) and \(4, 8\)$"):
        sample_stream(rows, w[:, :8], 10)


def test_with_accumulator_rejects_bad_widths():
    with pytest.raises(ValueError, match=r"^bits must be an integer in \[2, 32\], got 33$"):
        with_accumulator(None, 33)
    with pytest.raises(ValueError, match=r"^k must be None or an integer in \[1, 64\], got 0$"):
        with_accumulator(None, 8, 0)


def test_estimate_bad_input(tmp_path, capsys):
    assert main(["estimate", str(tmp_path / "none.wkx")]) == 2
    assert re.match(r"^wrapkit estimate: error: .*none\.wkx: no such file; write it with "
                    r"`wrapkit export", capsys.readouterr().err)
    assert main(["estimate", "x.wkx", "--baseline-acc-bits", "1"]) == 2
    assert re.match(r"^wrapkit estimate: error: --baseline-acc-bits must be 0 \(no baseline\) "
                    r"or in \[2, 62\], got 1$", capsys.readouterr().err)


# -- the package's structure --------------------------------------------------------------------

PACKAGE = Path(wrapkit.__file__).resolve().parent


def _wrapkit_imports(path):
    """The wrapkit modules ``path`` imports, anywhere in it (function-level imports too), as
    dotted names: ``from .config import X`` in wrapkit/flow/runner.py gives wrapkit.flow.config."""
    module = "wrapkit." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("wrapkit")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            if base.startswith("wrapkit"):
                found.add(base)
                found |= {f"{base}.{a.name}" for a in node.names}   # `from . import x`
    return found


def test_flow_modules_import_and_form_no_cycle():
    files = sorted((PACKAGE / "flow").glob("*.py"))
    names = {f"wrapkit.flow.{f.stem}" for f in files if f.stem != "__init__"}
    assert {"wrapkit.flow.config", "wrapkit.flow.runner", "wrapkit.flow.cli"} <= names
    graph = {}
    for f in files:
        if f.stem != "__init__":
            importlib.import_module(f"wrapkit.flow.{f.stem}")
            graph[f"wrapkit.flow.{f.stem}"] = _wrapkit_imports(f) & names
    # Depth-first search for a path from a module back to itself.
    def reaches(start, goal, seen):
        for nxt in graph[start]:
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False
    cycles = sorted(m for m in graph if reaches(m, m, {m}))
    assert cycles == [], f"flow modules that import themselves back: {cycles}"


@pytest.mark.parametrize("package, forbidden", [
    ("common", ("wrapkit.flow", "wrapkit.models", "wrapkit.sim", "wrapkit.hw", "wrapkit.ref")),
    ("ref", ("wrapkit.flow", "wrapkit.models")),
    ("hw", ("wrapkit.flow", "wrapkit.models")),
    ("sim", ("wrapkit.flow", "wrapkit.models")),
    ("models", ("wrapkit.flow",)),
    ("interop", ("wrapkit.flow", "wrapkit.models", "wrapkit.hw", "wrapkit.sim")),
])
def test_data_flows_one_way_to_the_flow(package, forbidden):
    """Nothing below the flow imports it, and neither verification nor hardware needs the
    training code: data flows models -> export -> ref -> hw/sim -> flow."""
    bad = sorted(f"{path.relative_to(PACKAGE)} imports {name}"
                 for path in (PACKAGE / package).rglob("*.py")
                 for name in _wrapkit_imports(path)
                 if name.split(".")[:2] in [f.split(".") for f in forbidden])
    assert bad == []
