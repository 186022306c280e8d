"""Reliability: what a hostile-but-realistic user does to wrapkit, and what must hold.

* concurrency: a second run into a busy run folder is refused at once, naming the holder;
* cache corruption: a deleted or edited file of a build folder, a synthesis-cache entry or a
  flow stage's outputs is noticed and rebuilt, never trusted and never a traceback;
* kill-safety: killing the CLI (SIGTERM, SIGINT, SIGKILL) leaves no simulator running;
* path validation: run names that escape their root, output files that are inputs, files
  where folders belong, and settings a late stage needs are refused before any work;
* strict parsing: a bad CSV cell names file, line and column;
* unbounded requests: refused up front with the limit named;
* exit statuses: 2 and one line for environment problems, 143 for SIGTERM.
"""

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from wrapkit.cli import main as wrapkit_main
from wrapkit.common.errors import UserError

REPO = Path(__file__).resolve().parent.parent


def _cli_env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    env.update(extra)
    return env


def _spawn(args, **env):
    """The wrapkit CLI in a child process (its own session, so that signals sent to it
    alone test what wrapkit does, not what a shell would do)."""
    return subprocess.Popen([sys.executable, "-m", "wrapkit", *args], cwd=REPO,
                            env=_cli_env(**env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _children(pid):
    """(pid, command name) of the live processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append((int(entry.name), comm))
    return found


def _alive(pid):
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] != "Z"


# -- concurrency ----------------------------------------------------------------------------


@pytest.fixture
def held_lock(tmp_path):
    """A process that holds the lock of ``tmp_path/busy`` (a stand-in for a running flow)."""
    folder = tmp_path / "busy"
    code = ("import sys, time; from wrapkit.common.locking import exclusive_output\n"
            f"with exclusive_output({str(folder)!r}):\n"
            "    print('locked', flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, "wrapkit flow --name busy"],
                            env=_cli_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield folder, proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_second_train_into_a_busy_folder_is_refused(held_lock, capsys):
    folder, pid = held_lock
    code = wrapkit_main(["train", "--method", "fp32", "--dataset", "digits", "--epochs", "1",
                         "--widths", "4,4,4", "--train-subset", "64", "--threads", "1",
                         "--no-progress", "--out", str(folder)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith(f"wrapkit train: error: run folder {folder} is in use by another "
                          f"wrapkit run: pid {pid} (`"), err
    assert "started 20" in err and len(err.strip().splitlines()) == 1
    assert not (folder / "checkpoint.pt").exists()


def test_second_flow_into_a_busy_folder_is_refused(held_lock, monkeypatch, capsys):
    folder, pid = held_lock
    monkeypatch.setattr("wrapkit.flow.runner.STAGES", ())  # the lock, not the stages, matters
    code = wrapkit_main(["flow", "--preset", "tiny", "--out-root", str(folder.parent),
                         "--name", folder.name, "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"is in use by another wrapkit run: pid {pid}" in err
    assert not (folder / "flow.json").exists()


def test_lock_is_released_and_leaves_no_empty_folder(tmp_path):
    from wrapkit.common.locking import LOCK_NAME, exclusive_output

    with exclusive_output(tmp_path / "run"):
        assert (tmp_path / "run" / LOCK_NAME).is_file()
    assert not (tmp_path / "run").exists()
    with exclusive_output(tmp_path / "run"):
        (tmp_path / "run" / "kept").write_text("x")
    with exclusive_output(tmp_path / "run"):  # free again
        pass
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["kept"]


# -- cache corruption -----------------------------------------------------------------------


def test_build_once_rebuilds_a_damaged_folder(tmp_path):
    from wrapkit.common.buildcache import build_once

    builds = []

    def build(folder):
        builds.append(1)
        (folder / "sim.vvp").write_text("program")
        (folder / "done").write_text("ok")

    folder = tmp_path / "b"
    build_once(folder, "done", build)
    build_once(folder, "done", build)
    assert len(builds) == 1
    (folder / "sim.vvp").unlink()
    build_once(folder, "done", build)
    assert len(builds) == 2 and (folder / "sim.vvp").read_text() == "program"
    (folder / "sim.vvp").write_text("damaged")
    build_once(folder, "done", build)
    assert len(builds) == 3 and (folder / "sim.vvp").read_text() == "program"


def test_deleted_simulator_executable_is_rebuilt(tmp_path):
    from wrapkit.sim.runner import build

    src = tmp_path / "t.v"
    src.write_text("module t(input clk); endmodule\n")
    folder = build([src], "t", "icarus", root=tmp_path / "sb")
    (folder / "sim.vvp").unlink()
    assert build([src], "t", "icarus", root=tmp_path / "sb") == folder
    assert (folder / "sim.vvp").is_file()


def test_damaged_synthesis_cache_entry_is_dropped(cache_dir, tmp_path):
    from wrapkit.hw.synth import cache

    work = tmp_path / "work"
    work.mkdir()
    (work / "operating_point.json").write_text("{}")
    entry = cache.commit_entry("synth", "k" * 64, work, {"area": 1})
    assert cache.cached_entry("synth", "k" * 64) == entry
    (entry / "operating_point.json").unlink()
    assert cache.cached_entry("synth", "k" * 64) is None
    assert not entry.exists()


def test_flow_reruns_a_stage_whose_outputs_changed(tmp_path, monkeypatch, capsys):
    from wrapkit.flow.config import config_from
    from wrapkit.flow.runner import load_state, run_flow
    from wrapkit.flow.stages import FlowStage

    runs = []

    def stage_a(ctx):
        runs.append("a")
        (ctx.run_dir / "a").mkdir(exist_ok=True)
        (ctx.run_dir / "a" / "x.v").write_text("module x; endmodule\n")
        return {"n": 1}

    stage = FlowStage("a", "writes a/x.v", stage_a, (), (), ("flow",), ("a",))
    monkeypatch.setattr("wrapkit.flow.runner.STAGES", (stage,))
    cfg, run = config_from("tiny", None, {}), tmp_path / "run"
    for _ in range(2):
        run_flow(cfg, run, progress=False, echo=lambda line: None)
    assert runs == ["a"]
    assert list(load_state(run)["stages"]["a"]["outputs"]) == ["a/x.v"]
    (run / "a" / "x.v").write_text("module x; wire damaged; endmodule\n")
    lines = []
    run_flow(cfg, run, progress=False, echo=lines.append)
    assert runs == ["a", "a"]
    assert any("its outputs changed since it ran (a/x.v changed)" in s for s in lines), lines
    (run / "a" / "x.v").unlink()
    run_flow(cfg, run, progress=False, echo=lines.append)
    assert runs == ["a", "a", "a"] and (run / "a" / "x.v").is_file()


# -- kill-safety ----------------------------------------------------------------------------


@pytest.mark.sim
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_killed_cosim_leaves_no_simulator(sig):
    cli = _spawn(["cosim", "mac", "8x8_acc8_k2", "--ops", "300000", "--no-full-width"])
    sims = []
    try:
        sims = _wait_for(lambda: [p for p, name in _children(cli.pid) if name == "vvp"], 60,
                         "the simulator to start")
        time.sleep(0.3)
        os.kill(cli.pid, sig)
        code = cli.wait(timeout=30)
        _wait_for(lambda: not any(_alive(p) for p in sims), 10, "the simulator to end")
        expected = {signal.SIGTERM: 143, signal.SIGINT: 130, signal.SIGKILL: -9}[sig]
        assert code == expected, cli.stderr.read()
    finally:
        for p in sims:  # never leave one behind, whatever failed
            if _alive(p):
                os.kill(p, signal.SIGKILL)
        if cli.poll() is None:
            cli.kill()
        cli.communicate()


def test_program_ended_when_the_call_is_interrupted():
    from wrapkit.common import processes

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)  # Ctrl-C while the program runs
        t0 = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            processes.run(["sleep", "30"])
        assert time.monotonic() - t0 < 10
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    with pytest.raises(subprocess.TimeoutExpired):
        processes.run(["sleep", "30"], timeout=0.2)
    assert processes.live_processes() == []
    assert not [name for _, name in _children(os.getpid()) if name == "sleep"]


# -- path validation ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../escape", "a/b", "..", ""])
def test_flow_run_name_must_stay_inside_out_root(tmp_path, name, capsys):
    code = wrapkit_main(["flow", "--preset", "tiny", "--out-root", str(tmp_path / "out"),
                         "--name", name, "--print-config"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("wrapkit flow: error: --name must "), err


def test_outputs_that_are_inputs_are_refused(tiny_export, tmp_path, capsys):
    run_dir, wkx, _ = tiny_export
    model = tmp_path / "m.wkx"
    shutil.copy(wkx, model)
    before = model.read_bytes()
    assert wrapkit_main(["infer", str(model), "--images", "5", "--stats", str(model)]) == 2
    assert "--stats" in capsys.readouterr().err and model.read_bytes() == before
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    pt = (run / "model.pt").read_bytes()
    assert wrapkit_main(["export", str(run), "-o", str(run / "model.pt")]) == 2
    assert "is an input of this command" in capsys.readouterr().err
    assert (run / "model.pt").read_bytes() == pt


def test_output_under_a_file_is_refused_before_work(tiny_export, tmp_path, capsys):
    _, wkx, _ = tiny_export
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert wrapkit_main(["infer", str(wkx), "--images", "5", "--stats",
                         str(blocker / "s.json")]) == 2
    out, err = capsys.readouterr()
    assert "is a file, not a folder" in err and "accuracy" not in out  # no inference ran
    assert wrapkit_main(["train", "--method", "fp32", "--dataset", "digits", "--epochs", "1",
                         "--widths", "4,4,4", "--train-subset", "64", "--no-progress",
                         "--out", str(blocker)]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err


@pytest.mark.parametrize("setting, message", [
    ("liberty={tmp}/none.lib", "liberty file {tmp}/none.lib not found"),
    ('cosim_layers=["nope"]', "cosim_layers names 'nope', which is not an integer layer of "
                              "vgg7; choose from block2.conv,"),
])
def test_flow_checks_late_settings_before_training(tmp_path, monkeypatch, capsys, setting,
                                                   message):
    monkeypatch.setattr("wrapkit.flow.runner.STAGES", ())  # old code: no stage would run
    code = wrapkit_main(["flow", "--preset", "tiny", "--out-root", str(tmp_path), "--set",
                         setting.format(tmp=tmp_path), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and message.format(tmp=tmp_path) in err, err
    assert not (tmp_path / "tiny").exists()


# -- strict parsing -------------------------------------------------------------------------


@pytest.mark.parametrize("rows, where", [
    ("1,2,1,0\nx,3,1,0\n", r"line 3, column a: 'x' is not an integer"),
    ("1,,1,0\n", r"line 2, column w: empty cell"),
    ("2.7,3,1,0\n", r"line 2, column a: '2.7' is not an integer"),
    ("1,2,7,0\n", r"line 2, column en: 7 is outside \[0, 1\]"),
    ("99999999999999999999,2,1,0\n", r"line 2, column a: 99999999999999999999 is outside"),
    ("1,2,1\n", r"line 2: 3 cells, the header has 4"),
])
def test_stimulus_csv_cells_are_parsed_strictly(tmp_path, rows, where):
    from wrapkit.ref.opstream import MacOpStream

    path = tmp_path / "ops.csv"
    path.write_text("a,w,en,clr\n" + rows)
    with pytest.raises(UserError, match=rf"^stimulus file .*ops\.csv, {where}"):
        MacOpStream.load(path)


def test_dataset_labels_out_of_range_are_refused(tmp_path):
    from wrapkit.common.datasets import load_images

    def idx(name, array):
        header = bytes([0, 0, 8, array.ndim]) + b"".join(
            int(d).to_bytes(4, "big") for d in array.shape)
        with gzip.open(tmp_path / name, "wb") as f:
            f.write(header + array.astype(np.uint8).tobytes())

    for split, (img, lbl) in {"train": ("train-images-idx3-ubyte.gz",
                                        "train-labels-idx1-ubyte.gz"),
                              "test": ("t10k-images-idx3-ubyte.gz",
                                       "t10k-labels-idx1-ubyte.gz")}.items():
        idx(img, np.zeros((3, 28, 28)))
        idx(lbl, np.array([1, 200, 3]))
    with pytest.raises(UserError, match=r"label 200 of item 1 is outside the 10 classes"):
        load_images("fashion-mnist", "test", tmp_path)


def test_config_that_is_not_text_is_one_line(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_bytes(b"\xff\xfe")
    assert wrapkit_main(["flow", "--config", str(path), "--print-config"]) == 2
    assert "is not UTF-8 text" in capsys.readouterr().err


# -- unbounded requests ---------------------------------------------------------------------


@pytest.mark.parametrize("args, limit", [
    (["cosim", "mac", "8x8_acc8_k2", "--ops", "1000000000000"], "20,000,000"),
    (["cosim", "paper", "--ops", "1000000000000"], "20,000,000"),
    (["synth", str(REPO / "rtl" / "mac_a8s_wu8_acc8_k2.json"), "--ops", "1000000000000"],
     "1,000,000"),
])
def test_huge_operation_counts_are_refused_up_front(args, limit, capsys):
    assert wrapkit_main(args) == 2
    err = capsys.readouterr().err
    assert f"--ops must be at most {limit}" in err and len(err.strip().splitlines()) == 1


# -- exit statuses --------------------------------------------------------------------------


@pytest.mark.sim
def test_unwritable_sim_build_is_one_line(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("WRAPKIT_SIM_BUILD", str(blocker / "sb"))
    assert wrapkit_main(["cosim", "mac", "8x8_acc8_k2", "--ops", "10"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("wrapkit cosim: error: Not a directory: "), err
    assert f"(from WRAPKIT_SIM_BUILD={blocker / 'sb'}" in err
    assert len(err.strip().splitlines()) == 1


def test_atomic_write_keeps_symlinks_and_devices(tmp_path):
    from wrapkit.common.files import atomic_write_text

    target = tmp_path / "target.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    atomic_write_text(link, "new")
    assert link.is_symlink() and target.read_text() == "new"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    atomic_write_text(fifo, "through the pipe")
    assert reader.communicate(timeout=10)[0] == b"through the pipe"
    assert fifo.is_fifo()


def test_environment_message_names_the_variable(monkeypatch):
    import errno

    from wrapkit.common.errors import environment_message

    monkeypatch.setenv("WRAPKIT_CACHE_DIR", "/ro/cache")
    exc = OSError(errno.EROFS, "Read-only file system", "/ro/cache/synth/x")
    assert environment_message(exc) == ("Read-only file system: /ro/cache/synth/x (from "
                                        "WRAPKIT_CACHE_DIR=/ro/cache; point it at a writable "
                                        "folder)")
    assert environment_message(OSError(errno.ENOSPC, "No space left on device", "/o/f")) == (
        "No space left on device: /o/f (free some space or write elsewhere)")
    assert environment_message(ValueError("bug")) is None


def test_environment_errors_exit_2_without_traceback(monkeypatch, capsys):
    import errno

    import wrapkit.cli

    def full_disk(args):
        raise OSError(errno.ENOSPC, "No space left on device", "/out/report.md")

    parser = wrapkit.cli.build_parser()
    monkeypatch.setattr(wrapkit.cli, "build_parser", lambda: parser)
    parser.set_defaults(func=full_disk)
    for action in parser._subparsers._group_actions[0].choices.values():
        action.set_defaults(func=full_disk)
    assert wrapkit_main(["demo"]) == 2
    assert capsys.readouterr().err == ("wrapkit demo: error: No space left on device: "
                                       "/out/report.md (free some space or write elsewhere)\n")
