"""A small wrapper over :func:`cocotb_tools.runner.get_runner`: build once, run, read results.

:func:`build` compiles Verilog sources for one top module and one simulator into a build
folder named after the top and a hash of everything that affects the build (source contents,
simulator and cocotb versions, waveform switch). A build that exists is reused, so each
design is compiled once per machine, not once per test
(:func:`wrapkit.common.buildcache.build_once`): parallel pytest workers wait for one another
instead of compiling the same design twice.

:func:`run` runs a cocotb test module against a build in a fresh run folder of its own
(results XML, simulator log, the testbench's JSON reports), passes parameters to the
testbench through environment variables, and returns a :class:`SimResult` parsed from the
results XML. It never exits the process: failing tests are a result, a simulator that did not
produce results raises :class:`SimulationError`. The same call serves pytest and the CLI.

Environment
-----------
``WRAPKIT_WAVES=1``
    Record waveforms (Icarus: FST in the build folder; Verilator: ``dump.vcd`` in the run
    folder). Off by default; a waveform build lives in its own build folder.
``WRAPKIT_SIM_BUILD``
    Root of the build folders (default ``./sim_build``).
"""

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path

from wrapkit.common import processes
from wrapkit.common.buildcache import build_once, hash_parts
from wrapkit.common.errors import ExternalToolError, UserError

from .tools import prepare_simulator, simulator_version

__all__ = [
    "REPORT_DIR_ENV",
    "SimResult",
    "SimulationError",
    "TestOutcome",
    "build",
    "build_root",
    "managed_runner",
    "run",
    "waves_enabled",
]

#: Environment variable through which a testbench learns where to write its JSON reports.
REPORT_DIR_ENV = "WRAPKIT_TB_REPORT_DIR"

# One time unit for both simulators, so clock periods mean the same thing everywhere
# (Icarus otherwise defaults to a 1 s precision and cannot represent a 10 ns clock).
_TIMESCALE = ("1ns", "1ps")

# Amaranth's Verilog trips Verilator lint warnings (unused bits, width extensions) that are
# harmless; they stay in the build log but must not stop the build.
_BUILD_ARGS = {"icarus": [], "verilator": ["-Wno-fatal"]}

# Run folders kept per build (logs and reports of recent runs, for debugging).
_KEEP_RUNS = 20
# Written last into a build folder: the build is complete.
_BUILT = ".wrapkit-built"


class SimulationError(ExternalToolError):
    """The simulator failed to build a design or ended without writing results."""


def waves_enabled():
    """True when ``WRAPKIT_WAVES`` asks for waveform traces (off by default)."""
    return os.environ.get("WRAPKIT_WAVES", "").strip().lower() in ("1", "true", "yes", "on")


def build_root():
    """Root folder of all build folders: ``$WRAPKIT_SIM_BUILD`` or ``./sim_build``."""
    return Path(os.environ.get("WRAPKIT_SIM_BUILD") or "sim_build").resolve()


def _build_key(sources, top, sim, waves):
    import cocotb

    parts = [sim, simulator_version(sim), cocotb.__version__, top, str(waves),
             " ".join(_BUILD_ARGS[sim]), "%s/%s" % _TIMESCALE]
    for src in sources:
        parts += [src.name, src]
    return hash_parts(*parts, length=16)


def _tail(path, lines=15):
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


def build(sources, top, sim, *, root=None, waves=None):
    """Compile ``sources`` with ``top`` as the top module for ``sim``, or reuse a build.

    Parameters
    ----------
    sources : sequence of path-like
        Verilog files (the order is kept).
    top : str
        Top module name.
    sim : str
        ``"icarus"`` or ``"verilator"``.
    root : path-like, optional
        Root of the build folders (default :func:`build_root`).
    waves : bool, optional
        Build with waveform support (default :func:`waves_enabled`).

    Returns
    -------
    pathlib.Path
        The build folder, ``<root>/<sim>/<top>-<hash>``.

    Raises
    ------
    UserError
        Unknown simulator, a missing simulator or tool, or a missing source file.
    SimulationError
        The simulator rejected the sources (the message ends with the build log's tail).
    """
    prepare_simulator(sim)
    waves = waves_enabled() if waves is None else bool(waves)
    srcs = [Path(s).resolve() for s in sources]
    for src in srcs:
        if not src.is_file():
            raise UserError(f"Verilog source {src} does not exist; generate it first "
                            "(e.g. `wrapkit rtl ...`)")
    base = Path(root).resolve() if root is not None else build_root()
    build_dir = base / sim / f"{top}-{_build_key(srcs, top, sim, waves)}"

    def compile_design(build_dir):
        from cocotb_tools.runner import get_runner

        log = build_dir / "build.log"
        runner = managed_runner(get_runner(sim))
        saved = _objcache_env(sim, base)
        try:
            runner.build(
                sources=srcs,
                hdl_toplevel=top,
                build_dir=build_dir,
                build_args=_BUILD_ARGS[sim],
                timescale=_TIMESCALE,
                waves=waves,
                always=True,
                clean=True,
                log_file=log,
            )
        except (RuntimeError, SystemExit) as exc:
            raise SimulationError(
                f"{sim} failed to build {top} ({exc}); build log {log}:\n{_tail(log)}"
            ) from None
        finally:
            os.environ.clear()
            os.environ.update(saved)
        (build_dir / _BUILT).write_text(json.dumps({"top": top, "sim": sim,
                                                   "sources": [str(s) for s in srcs],
                                                   "waves": waves}) + "\n")

    return build_once(build_dir, _BUILT, compile_design)


def managed_runner(runner):
    """``runner`` (a cocotb runner) with its commands started through
    :mod:`wrapkit.common.processes`, so that a killed wrapkit leaves no simulator running.

    cocotb runs each build and test command with :func:`subprocess.run`, from one method
    (``_execute_cmds``); that method is replaced on this instance only.
    """
    import types

    def execute_cmds(self, cmds, cwd, stdout=None):
        for cmd in cmds:
            stderr = None if stdout is None else subprocess.STDOUT
            result = processes.run(cmd, cwd=cwd, env=self.env, stdout=stdout, stderr=stderr)
            if result.returncode != 0:
                raise RuntimeError(f"Command failed with return code: {result.returncode}")

    runner._execute_cmds = types.MethodType(execute_cmds, runner)
    return runner


def _objcache_env(sim, base):
    """Point Verilator's ``OBJCACHE`` at a compiler cache for this build; returns the
    previous environment for the caller to restore.

    Verilator compiles its whole run-time library again for every design; with a cache in
    front of the compiler, only the first design of a session pays for it (seven designs:
    ~90 s of CPU in C++ become ~30 s). ccache is used when installed, else
    :mod:`wrapkit.sim.objcache`. A user's own ``OBJCACHE`` is respected.
    """
    saved = dict(os.environ)
    if sim == "verilator" and "OBJCACHE" not in os.environ:
        from .objcache import CACHE_DIR_ENV

        if shutil.which("ccache"):
            os.environ["OBJCACHE"] = "ccache"
        else:
            os.environ["OBJCACHE"] = shlex.join([sys.executable, "-m", "wrapkit.sim.objcache"])
            os.environ[CACHE_DIR_ENV] = str(base / sim / "_objcache")
    return saved


@dataclass
class TestOutcome:
    """One cocotb test's result, from the results XML plus the testbench's JSON report."""

    __test__ = False  # not a pytest test class, despite the name

    name: str
    passed: bool
    message: str = ""
    wall_s: float = 0.0
    sim_time_ns: float = 0.0
    report: dict | None = None


@dataclass
class SimResult:
    """What :func:`run` returns.

    Attributes
    ----------
    sim, top, test_module : str
    outcomes : list of TestOutcome
        One per cocotb test that ran, in the order the results XML lists them.
    build_dir, run_dir, results_xml, log_file : pathlib.Path
    waves_file : pathlib.Path or None
        The waveform file, when ``WRAPKIT_WAVES`` was set.
    wall_s : float
        Wall-clock seconds of the simulator run (start-up included).
    """

    sim: str
    top: str
    test_module: str
    outcomes: list = field(default_factory=list)
    build_dir: Path = None
    run_dir: Path = None
    results_xml: Path = None
    log_file: Path = None
    waves_file: Path | None = None
    wall_s: float = 0.0

    @property
    def ok(self):
        """True when at least one test ran and every test passed."""
        return bool(self.outcomes) and all(o.passed for o in self.outcomes)

    def outcome(self, name):
        """The outcome of the test called ``name``."""
        for o in self.outcomes:
            if o.name == name:
                return o
        raise KeyError(f"no test {name!r} in {self.test_module} (ran: "
                       f"{', '.join(o.name for o in self.outcomes) or 'none'})")

    def summary(self):
        """Several lines: one per test, failures with their messages, and the log path."""
        lines = [f"{self.test_module} on {self.sim} ({self.top}):"]
        if not self.outcomes:
            lines.append("  no tests ran")
        for o in self.outcomes:
            status = "PASS" if o.passed else "FAIL"
            lines.append(f"  {status} {o.name} ({o.wall_s:.2f} s)")
            if not o.passed and o.message:
                lines.extend("    " + line for line in o.message.splitlines()[:40])
        lines.append(f"  log: {self.log_file}")
        return "\n".join(lines)


def _parse_results(path, report_dir):
    outcomes = []
    root = ElementTree.parse(path).getroot()
    for case in root.iter("testcase"):
        name = case.get("name", "?")
        failure = case.find("failure")
        if failure is None:
            failure = case.find("error")
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        report_file = Path(report_dir) / f"{name}.json"
        report = json.loads(report_file.read_text()) if report_file.is_file() else None
        message = ""
        if failure is not None:
            message = (failure.get("message") or "") + ("\n" + failure.text if failure.text else "")
        outcomes.append(TestOutcome(
            name=name,
            passed=failure is None and case.find("skipped") is None,
            message=message.strip(),
            wall_s=float(case.get("time") or 0.0),
            sim_time_ns=float(props.get("sim_time_duration") or 0.0),
            report=report,
        ))
    return outcomes


def _prune_runs(folder, keep=_KEEP_RUNS):
    """Delete all but the ``keep`` newest run folders (runs in progress are the newest)."""
    try:
        runs = sorted(folder.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return
    for old in runs[keep:]:
        shutil.rmtree(old, ignore_errors=True)


def run(sources, top, test_module, sim, *, env=None, testcase=None, seed=None, root=None):
    """Build (or reuse) ``sources`` for ``sim`` and run the cocotb tests of ``test_module``.

    Parameters
    ----------
    sources : sequence of path-like
        Verilog files.
    top : str
        Top module name.
    test_module : str
        Importable module holding the cocotb tests, e.g. ``"wrapkit.sim.tb_mac"``.
    sim : str
        ``"icarus"`` or ``"verilator"``.
    env : mapping of str to str, optional
        Parameters for the testbench, handed over as environment variables.
    testcase : str or sequence of str, optional
        Run only these tests of the module.
    seed : int, optional
        cocotb's random seed (``COCOTB_RANDOM_SEED``).
    root : path-like, optional
        Root of the build folders.

    Returns
    -------
    SimResult
        Failing tests are reported in it, not raised.

    Raises
    ------
    UserError
        Bad simulator, missing tool or source, or an ``env`` key that the calling
        environment already sets to something else (it would silently win, see below).
    SimulationError
        The build failed, or the simulator ended without writing a results file.
    """
    env = {str(k): str(v) for k, v in (env or {}).items()}
    # cocotb's runner lays os.environ over extra_env, so an inherited variable of the same name
    # would override the value asked for here without a word; refuse instead.
    for key, value in env.items():
        if key in os.environ and os.environ[key] != value:
            raise UserError(f"environment variable {key}={os.environ[key]!r} would override "
                            f"the testbench parameter {value!r}; unset it")
    if REPORT_DIR_ENV in os.environ:
        raise UserError(f"environment variable {REPORT_DIR_ENV} is set; unset it (the runner "
                        "chooses each run's report folder)")
    waves = waves_enabled()
    build_dir = build(sources, top, sim, root=root, waves=waves)
    from cocotb_tools.runner import get_runner

    _prune_runs(build_dir / "runs")
    run_dir = build_dir / "runs" / f"{test_module.rsplit('.', 1)[-1]}-{os.getpid()}-" \
                                   f"{uuid.uuid4().hex[:8]}"
    run_dir.mkdir(parents=True)
    results_xml = run_dir / "results.xml"
    log_file = run_dir / "sim.log"
    env[REPORT_DIR_ENV] = str(run_dir)

    runner = managed_runner(get_runner(sim))
    t0 = time.perf_counter()
    try:
        runner.test(
            test_module=test_module,
            hdl_toplevel=top,
            hdl_toplevel_lang="verilog",
            build_dir=build_dir,
            test_dir=run_dir,
            results_xml=str(results_xml),
            extra_env=env,
            testcase=testcase,
            seed=seed,
            waves=waves,
            log_file=log_file,
        )
    except (SystemExit, RuntimeError):
        # Under pytest cocotb's runner exits the process on failing tests, and it raises when
        # the simulator returns non-zero; either way the results file says what happened.
        pass
    wall = time.perf_counter() - t0
    if not results_xml.is_file():
        raise SimulationError(f"{sim} ended without results for {test_module} on {top}; "
                              f"log {log_file}:\n{_tail(log_file)}")
    waves_file = None
    if waves:
        waves_file = build_dir / f"{top}.fst" if sim == "icarus" else run_dir / "dump.vcd"
    return SimResult(
        sim=sim,
        top=top,
        test_module=test_module,
        outcomes=_parse_results(results_xml, run_dir),
        build_dir=build_dir,
        run_dir=run_dir,
        results_xml=results_xml,
        log_file=log_file,
        waves_file=waves_file,
        wall_s=wall,
    )


def _main(argv=None):
    """``python -m wrapkit.sim.runner SIM TOP MODULE SOURCE...`` (debugging aid)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 4:
        print("usage: python -m wrapkit.sim.runner SIM TOP TEST_MODULE SOURCE...", file=sys.stderr)
        return 2
    sim, top, module, *sources = argv
    result = run(sources, top, module, sim)
    print(result.summary())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(_main())
