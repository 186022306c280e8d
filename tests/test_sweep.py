"""``wrapkit sweep``: a tiny digits sweep on a local Ray instance, end to end.

One Ray session (2 CPUs) serves the whole module; the tiny sweep (4 points: acc_bits 6/8 x
k 2/none, an 8-16-16 VGG-7 on digits) runs once and the other tests start from a copy of its
results folder, so each adds only the runs it needs. The sweep's test hook
``WRAPKIT_SWEEP_FAIL`` (set before Ray starts, so its workers inherit it) makes every run
with ``acc_bits = 7`` fail on purpose, and ``WRAPKIT_SWEEP_CRASH_ONCE`` kills the worker of
the first task of the ``acc_bits = 10`` run, which Ray must run again.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from wrapkit.cli import main
from wrapkit.sweep.report import OBJECTIVES, pareto_front
from wrapkit.sweep.results import ResultsFolder
from wrapkit.sweep.runner import run_sweep
from wrapkit.sweep.spec import parse_spec
from wrapkit.sweep.tasks import CRASH_ENV, FAIL_ENV

TINY = """
[sweep]
name = "tiny"

[space]
acc_bits = {acc_bits}
k = {k}

[training]
dataset = "digits"
widths = [8, 16, 16]
parent_epochs = 2
epochs = 1
batch_size = 64
lr = 3e-3
calib_images = 128

[hardware]
energy_images = 1
energy_ops = 100
"""


def tiny(acc_bits=(6, 8), k=(2, "none")):
    return TINY.format(acc_bits=json.dumps(list(acc_bits)), k=json.dumps(list(k)))


@pytest.fixture(scope="module")
def crash_marker(tmp_path_factory):
    return tmp_path_factory.mktemp("crash") / "crashed.pid"


@pytest.fixture(scope="module")
def ray_session(crash_marker):
    import ray

    from wrapkit.sweep.runner import connect

    saved = {name: os.environ.get(name) for name in (FAIL_ENV, CRASH_ENV)}
    os.environ[FAIL_ENV] = json.dumps({"acc_bits": 7})
    os.environ[CRASH_ENV] = json.dumps({"when": {"acc_bits": 10},
                                        "marker": str(crash_marker)})
    if ray.is_initialized():
        ray.shutdown()
    connect(workers=2)
    yield ray
    ray.shutdown()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="module")
def finished(ray_session, tmp_path_factory):
    """The tiny sweep's results folder and table rows."""
    out = tmp_path_factory.mktemp("sweep") / "tiny"
    lines = []
    rows = run_sweep(parse_spec(tiny()), out, progress=False, log=lines.append)
    return out, rows, lines


def _mtimes(out):
    return {p.parent.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*/result.json")}


def test_tiny_sweep_end_to_end(finished):
    from wrapkit.common.datasets import load_images
    from wrapkit.ref.engine import Engine
    from wrapkit.ref.wkx import read_export

    out, rows, lines = finished
    assert [r["status"] for r in rows] == ["ok"] * 4, rows
    assert {(r["acc_bits"], r["k"]) for r in rows} == {(6, 2), (8, 2), (6, "none"), (8, "none")}
    # k = none is a plain register with quantized activations: the qa method
    assert {r["train_method"] for r in rows if r["k"] == "none"} == {"qa"}
    assert {r["train_method"] for r in rows if r["k"] == 2} == {"wrapnet"}
    table = [json.loads(line) for line in (out / "points.jsonl").read_text().splitlines()]
    assert table == json.loads(json.dumps(rows))
    # one parent, trained once, shared by every run
    assert len(list((out / "parents").iterdir())) == 1
    assert sum(line.startswith("parent ") for line in lines) == 1
    test = load_images("digits", "test")
    for r in rows:
        run_dir = out / "runs" / r["run"]
        exp = read_export(run_dir / "model.wkx")
        logits = Engine(exp).run(test.pixels)
        assert r["accuracy"] == float(np.mean(logits.argmax(1) == test.labels))
        # The MAC of the export: its accumulator is the point's, k only with cyclic layers
        cfg = json.loads((run_dir / "estimate.json").read_text())["datapath_config"]
        assert cfg["acc_bits"] == r["acc_bits"]
        assert cfg["k"] == (None if r["k"] == "none" else r["k"])
        est = json.loads((run_dir / "estimate.json").read_text())["datapath"]
        assert r["energy_per_inference_nj"] == est["energy_per_inference_nj"] > 0
        assert r["array_area_mm2"] == pytest.approx(est["mac_area_um2"] * 64e-6)
    # a wider accumulator of the same operands costs more MAC area
    by = {(r["acc_bits"], r["k"]): r for r in rows}
    assert by[(6, "none")]["mac_area_um2"] < by[(8, "none")]["mac_area_um2"]
    # Pareto fronts: non-dominated, and every other point is dominated by one of them
    pareto = json.loads((out / "pareto.json").read_text())
    for cost, _, png in OBJECTIVES:
        front = pareto_front(rows, cost)
        assert pareto[cost] == [r["point"] for r in front]
        for r in rows:
            assert any(f[cost] <= r[cost] and f["accuracy"] >= r["accuracy"] for f in front)
        for f in front:
            assert not any(r[cost] <= f[cost] and r["accuracy"] > f["accuracy"] for r in rows)
        assert (out / "plots" / png).stat().st_size > 1000
    for axis in ("acc_bits", "k"):
        assert (out / "plots" / f"sensitivity_{axis}.png").is_file()
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4 and "src=\"plots/" not in page
    assert "## All points" in (out / "pareto.md").read_text()


def test_rerun_skips_every_finished_point(finished):
    out, rows, _ = finished
    before = _mtimes(out)
    lines = []
    again = run_sweep(parse_spec(tiny()), out, progress=False, log=lines.append)
    assert "4 finished runs skipped, 0 to do" in lines[0]
    assert _mtimes(out) == before
    assert again == rows


def test_failed_point_is_recorded_and_the_others_finish(finished, crash_marker, tmp_path,
                                                         capsys):
    out = tmp_path / "sweep"
    shutil.copytree(finished[0], out)
    spec = tmp_path / "fail.toml"
    spec.write_text(tiny(acc_bits=(7, 8, 10), k=("none",)))
    status = main(["sweep", str(spec), "--out", str(out), "--no-progress"])
    assert status == 1
    rows = {r["acc_bits"]: r for r in map(json.loads, (out / "points.jsonl").open())}
    assert rows[7]["status"] == "failed"
    assert rows[7]["error"] == (f"RuntimeError: failing on purpose ({FAIL_ENV}="
                                f"{json.dumps({'acc_bits': 7})})")
    assert rows[8]["status"] == rows[10]["status"] == "ok"
    # acc_bits = 10: its first worker died (the crash hook); Ray ran the task again
    crashed = int(crash_marker.read_text())
    assert ResultsFolder(out).run_result(rows[10]["run"])["pid"] != crashed
    result = ResultsFolder(out).run_result(rows[7]["run"])
    assert result["status"] == "failed" and "Traceback" in result["traceback"]
    assert "1 finished runs skipped, 2 to do" in capsys.readouterr().out


def test_resume_after_the_driver_is_killed(finished, tmp_path):
    out = tmp_path / "sweep"
    shutil.copytree(finished[0], out)
    spec = tmp_path / "more.toml"
    spec.write_text(tiny(acc_bits=(6, 8, 10), k=(2, "none")))
    before = _mtimes(out)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    env.pop(FAIL_ENV)
    env.pop(CRASH_ENV)
    proc = subprocess.Popen([sys.executable, "-m", "wrapkit.cli", "sweep", str(spec), "--out",
                             str(out), "--workers", "1", "--no-progress"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while len(_mtimes(out)) <= len(before) and time.monotonic() < deadline:
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)   # the driver dies mid-sweep
        proc.wait()
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the Ray processes it started
        except ProcessLookupError:
            pass
    finished_before = _mtimes(out)
    assert len(before) < len(finished_before) < 6
    lines = []
    rows = run_sweep(parse_spec(spec.read_text()), out, progress=False, log=lines.append)
    done = len(finished_before)
    assert f"{done} finished runs skipped, {6 - done} to do" in lines[0]
    after = _mtimes(out)
    assert {k: after[k] for k in finished_before} == finished_before
    assert [r["status"] for r in rows] == ["ok"] * 6


BAD = [
    ("[space]\nacc_bits = [8]\n[trainig]\nepochs = 1\n",
     "sweep spec: has an unknown table [trainig]; allowed tables: [sweep], [space], "
     "[training], [hardware], [ray]"),
    ("[space]\nacc_bits = [8]\n[training]\nepoch = 1\n",
     "sweep spec: [training] has an unknown key 'epoch'; allowed keys: dataset, data_dir, "),
    ("[space]\nacc_width = [8]\n",
     "sweep spec: [space] has an unknown axis 'acc_width'; allowed axes: model, weights, "
     "method, acc_bits, k, p, act_bits, rows, cols"),
    ("[space]\nk = [2, \"inf\"]\n",
     "sweep spec: [space] k must be an integer in [1, 64] or \"none\" (no cyclic activation), "
     "got 'inf'"),
    ("[space]\nmethod = [\"wrapnet\", \"fancy\"]\n",
     "sweep spec: [space] method must be one of wrapnet, qa"),
    ("[space]\nacc_bits = [8, 40]\n",
     "sweep spec: [space] acc_bits must be an integer in [2, 32], got 40"),
    ("[space]\nweights = [\"binary\", \"uniform9\"]\n",
     "sweep spec: [space] weights must be one of binary, ternary, uniform2, "),
    ("[sweep]\nmode = \"latin\"\n[space]\nk = [2]\n",
     "sweep spec: [sweep] mode must be one of grid, random, got 'latin'"),
    ("[sweep]\nmode = \"random\"\n[space]\nk = [2]\n",
     "sweep spec: [sweep] samples is required with mode = \"random\""),
    ("[space]\nk = [2]\n[hardware]\narray_synth = 1\n",
     "sweep spec: [hardware] array_synth must be true or false, got 1"),
    ("[space\nk = [2]\n", "sweep spec "),
    ("[sweep]\nname = \"../up\"\n[space]\nk = [2]\n",
     "sweep spec: [sweep] name must be a plain folder name (no '/', not '.' or '..'), got "
     "'../up'"),
    ("[space]\nmodel = [\"resnet20\"]\n",
     "sweep spec: [space] model must be one of vgg7 (the energy estimate reads layer-chain "
     "exports; resnet20 export integer graphs), got 'resnet20'"),
]


@pytest.mark.parametrize("text, message", BAD)
def test_bad_spec_is_one_line_exit_2(tmp_path, capsys, text, message):
    spec = tmp_path / "bad.toml"
    spec.write_text(text)
    assert main(["sweep", str(spec), "--check"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("wrapkit sweep: error: ")
    assert message in err
    assert not (tmp_path / "out").exists()


def test_unreachable_address_is_one_line_exit_2(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text(tiny())
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "--out", str(out), "--address", "127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("wrapkit sweep: error: --address 127.0.0.1:9: no Ray cluster "
                          "reachable there")
    assert not out.exists()


def test_random_mode_draws_distinct_seeded_points():
    text = ("[sweep]\nmode = \"random\"\nsamples = 6\nseed = 3\n[space]\nacc_bits = [6, 8, 10]\n"
            "k = [1, 2, 4]\nrows = [4, 8]\n")
    a, b = parse_spec(text), parse_spec(text)
    assert [p.id for p in a.points] == [p.id for p in b.points]
    assert 1 <= len(a.points) <= 6 and len({p.id for p in a.points}) == len(a.points)
    # points that differ only in the array share their training run
    grid = parse_spec("[space]\nacc_bits = [8]\nrows = [4, 8]\ncols = [4, 8]\n")
    assert len(grid.points) == 4 and len(grid.runs) == 1
