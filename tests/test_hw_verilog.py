"""Verilog export and manifests: reproducible text, manifests that agree with the Verilog,
and manifest validation that names the problem."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from wrapkit.hw.verilog import cyclic_design, mac_design, write_designs
from wrapkit.hw.manifest import SCHEMA, load_manifest, mac_config, port, verilog_path
from wrapkit.ref import MacConfig
from wrapkit.ref.configs import PAPER_MACS
from wrapkit.common.errors import UserError

REPO = Path(__file__).resolve().parent.parent


def _verilog_ports(text, module):
    """(name, direction, width) of each port declared in ``module`` of ``text``."""
    body = text.split(f"module {module}(", 1)[1].split("endmodule", 1)[0]
    ports = []
    for direction, msb, name in re.findall(r"^\s*(input|output)\s+(?:\[(\d+):0\]\s+)?(\w+);",
                                           body, re.M):
        ports.append((name, direction, int(msb) + 1 if msb else 1))
    return sorted(ports)


@pytest.fixture(scope="module")
def k2():
    return mac_design(PAPER_MACS["8x8_acc8_k2"])


def test_verilog_ports_agree_with_manifest(k2):
    manifest = k2.manifest
    want = sorted((p["name"], p["direction"], p["width"]) for p in manifest["ports"])
    assert _verilog_ports(k2.verilog, k2.name) == want
    assert [p["name"] for p in manifest["ports"]] == ["clk", "rst", "a", "w", "en", "clr",
                                                      "acc", "y"]
    assert port(manifest, "a") == {"name": "a", "direction": "input", "width": 8,
                                   "signed": True}
    assert manifest["latency"] == 2 and manifest["clock"] == "clk"
    assert manifest["reset"] == {"port": "rst", "sync": True, "active": "high"}
    assert mac_config(manifest) == PAPER_MACS["8x8_acc8_k2"]


def test_hierarchy_is_kept_as_separate_modules(k2):
    """Each area group is its own Verilog module, instantiated under its instance name."""
    manifest = k2.manifest
    assert manifest["hierarchy"] == {"mult": "multiplier", "accum": "accumulator",
                                     "cyclic": "cyclic", k2.name: "auxiliary"}
    for inst, module in manifest["modules"].items():
        if inst == k2.name:
            assert module == k2.name and f"module {k2.name}(" in k2.verilog
            continue
        assert re.search(rf"^module \\{re.escape(module)} \(", k2.verilog, re.M), module
        assert re.search(rf"^  \\{re.escape(module)}  {inst} \(", k2.verilog, re.M), inst
    no_k = mac_design(PAPER_MACS["3x1_acc32"])
    assert set(no_k.manifest["hierarchy"]) == {"mult", "accum", "mac_a3u_wb_acc32"}
    assert "module \\mac_a3u_wb_acc32.mult " in no_k.verilog
    assert "cyclic (" not in no_k.verilog and ".cyclic " not in no_k.verilog


def test_weight_encoding_in_manifest():
    binary = mac_design(PAPER_MACS["3x1_acc8_k2"]).manifest["weight_encoding"]
    assert binary["decode"] == {"0": 1, "1": -1} and binary["code_bits"] == 1
    ternary = mac_design(MacConfig(2, False, "ternary", None, 4)).manifest["weight_encoding"]
    assert ternary["decode"] == {"0": 0, "1": 1, "2": 0, "3": -1}
    uniform = mac_design(PAPER_MACS["8x8_acc32"]).manifest["weight_encoding"]
    assert uniform["value_range"] == [-128, 127] and "decode" not in uniform


def test_output_is_reproducible_and_path_independent(k2, tmp_path):
    """Another process, another hash seed, another working directory: the same bytes; and no
    source locations (emit_src=False) or checkout paths in the text."""
    code = ("from wrapkit.hw.verilog import mac_design; from wrapkit.ref.configs import PAPER_MACS;"
            "import sys; sys.stdout.write(mac_design(PAPER_MACS['8x8_acc8_k2']).verilog)")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    other = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                           capture_output=True, text=True, check=True).stdout
    assert other == k2.verilog
    assert mac_design(PAPER_MACS["8x8_acc8_k2"]).verilog == k2.verilog
    assert str(REPO) not in k2.verilog and "src =" not in k2.verilog


def test_write_designs_atomic_and_loadable(k2, tmp_path):
    paths = write_designs([k2, cyclic_design(6, 3)], tmp_path / "out")
    assert [p.name for p in paths] == [f"{k2.name}.v", f"{k2.name}.json", "cyclic_acc6_k3.v",
                                       "cyclic_acc6_k3.json"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in paths)
    manifest = load_manifest(tmp_path / "out" / f"{k2.name}.json")
    assert verilog_path(tmp_path / "out" / f"{k2.name}.json", manifest).read_text() == k2.verilog
    cyc = load_manifest(tmp_path / "out" / "cyclic_acc6_k3.json")
    assert cyc["config"] == {"acc_bits": 6, "k": 3, "threshold": 24}
    assert cyc["latency"] == 0 and cyc["clock"] is None and cyc["reset"] is None
    assert [(p["name"], p["width"], p["signed"]) for p in cyc["ports"]] == [("m", 6, True),
                                                                           ("y", 6, True)]
    # Writing into a path that is a file fails before anything is created.
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError):
        write_designs([k2], blocker)
    assert blocker.read_text() == "x"


def test_name_override_and_errors():
    design = mac_design(PAPER_MACS["3x1_acc32"], name="my_mac")
    assert design.files == ("my_mac.v", "my_mac.json")
    assert "module my_mac(" in design.verilog and design.manifest["top"] == "my_mac"
    with pytest.raises(ValueError, match=r"^name must be a Verilog identifier matching "
                                         r"\[A-Za-z_\]\[A-Za-z0-9_\]\*, got '1mac'$"):
        mac_design(PAPER_MACS["3x1_acc32"], name="1mac")
    with pytest.raises(ValueError, match=r"^name must be a Verilog identifier .*got 'a/b'$"):
        cyclic_design(8, 2, name="a/b")
    with pytest.raises(TypeError, match=r"^config must be a MacConfig, not '8x8_acc32'$"):
        mac_design("8x8_acc32")


@pytest.fixture
def written(k2, tmp_path):
    write_designs([k2], tmp_path)
    return tmp_path / f"{k2.name}.json"


def _edit(path, change):
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


_FIX = r"; regenerate it with `wrapkit rtl` \(`make rtl` for the paper designs\)$"


@pytest.mark.parametrize(("change", "problem"), [
    (lambda m: m.update(schema="wrapkit.rtl/0"),
     r"schema is 'wrapkit.rtl/0', expected 'wrapkit.rtl/1'"),
    (lambda m: m.pop("latency"), r"missing key\(s\) latency"),
    (lambda m: m.update(design="adder"), r"design is 'adder', expected one of mac, cyclic, array, packed_adder"),
    (lambda m: m["config"].update(prod_bits=16), r"config \{.*'prod_bits': 16.*\} disagrees "
                                                 r"with the derived \{.*'prod_bits': 8.*\}"),
    (lambda m: m["config"].update(act_bits=0), r"invalid config \(act_bits must be in "
                                               r"\[1, 32\], got 0\)"),
    (lambda m: m["ports"][2].update(width=7), r"ports \[.*\('a', 'input', 7, True\).*\] "
                                              r"disagree with the config, which implies \[.*\]"),
    (lambda m: m.update(verilog="other.v"),
     r"verilog is 'other.v', expected 'mac_a8s_wu8_acc8_k2' \+ '.v'"),
    (lambda m: m.update(latency=-1), r"latency must be a non-negative integer, got -1"),
])
def test_load_manifest_rejects(written, change, problem):
    _edit(written, change)
    with pytest.raises(UserError, match=rf"^RTL manifest {re.escape(str(written))}: "
                                        rf"{problem}{_FIX}"):
        load_manifest(written)


def test_load_manifest_file_problems(written, tmp_path):
    vfile = written.with_suffix(".v")
    vfile.write_text(vfile.read_text() + "// edited\n")
    with pytest.raises(UserError, match=rf"^RTL manifest .*: {vfile.name} does not match "
                                        rf"verilog_sha256 \(edited by hand\?\){_FIX}"):
        load_manifest(written)
    assert load_manifest(written, check_verilog=False)["schema"] == SCHEMA
    vfile.unlink()
    with pytest.raises(UserError, match=rf"^RTL manifest .*: Verilog file .*{vfile.name} "
                                        rf"not found{_FIX}"):
        load_manifest(written)
    with pytest.raises(UserError, match=rf"^RTL manifest .*nothing.json: file not found{_FIX}"):
        load_manifest(tmp_path / "nothing.json")
    written.write_text("{not json")
    with pytest.raises(UserError, match=rf"^RTL manifest .*: unreadable \(Expecting .*\){_FIX}"):
        load_manifest(written)
    written.write_text("[]")
    with pytest.raises(UserError, match=rf"^RTL manifest .*: not a JSON object{_FIX}"):
        load_manifest(written)
