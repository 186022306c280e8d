"""FedAQT on Flower's deployment engine: the Flower App folder ``flwr run`` submits.

The app's code is wrapkit itself (``wrapkit.fl.flower:server_app`` / ``:client_app``), so
the folder holds only its ``pyproject.toml``: components, and the run config (the run's
settings as JSON and its run folder). SuperLink and SuperNodes must run where wrapkit is
importable (same environment or ``PYTHONPATH``); docs/fl.md shows the commands, and
:func:`deploy_local` runs the whole deployment on one machine (``wrapkit fl --engine
deployment``).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from wrapkit.common import processes
from wrapkit.common.errors import UserError
from wrapkit.common.files import atomic_write_bytes, atomic_write_text

__all__ = ["deploy_local", "flower_config", "free_port", "write_app"]

_PYPROJECT = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "wrapkit-fedaqt"
version = "1.0.0"
description = "FedAQT (quantized federated learning) with wrapkit"
license = "Apache-2.0"
dependencies = ["flwr>=1.42"]

[tool.flwr.app]
publisher = "wrapkit"

[tool.flwr.app.components]
serverapp = "wrapkit.fl.flower:server_app"
clientapp = "wrapkit.fl.flower:client_app"

[tool.flwr.app.config]
settings = '{settings}'
out = '{out}'
"""


def write_app(folder, settings, out):
    """Write the Flower App for ``settings`` (run folder ``out``, on the SuperLink's machine)
    into ``folder``; return the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    text = _PYPROJECT.format(settings=json.dumps(settings.to_dict()), out=str(out or ""))
    atomic_write_text(folder / "pyproject.toml", text)
    return folder


def flower_config(flwr_home, address, name="local"):
    """Write ``$FLWR_HOME/config.toml`` naming an insecure SuperLink connection ``name`` at
    ``address`` (``host:port``) as the default; return its path."""
    path = Path(flwr_home) / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, f'[superlink]\ndefault = "{name}"\n\n[superlink.{name}]\n'
                            f'address = "{address}"\ninsecure = true\n')
    return path


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _check_port_free(port, what):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            raise UserError(f"{what} cannot start: port {port} is taken ({exc.strerror}); "
                            "stop what holds it or choose another port") from None


def _wait_for_port(proc, port, log, what, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = _last_line(log)
            raise UserError(f"{what} could not start (exit {proc.returncode}: {tail}); see "
                            f"{log}")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise UserError(f"{what} did not open port {port} within {timeout:.0f} s; see {log}")


def _last_line(log):
    try:
        lines = [l for l in Path(log).read_text(errors="replace").splitlines() if l.strip()]
    except OSError:
        return "no log"
    return lines[-1].strip()[:200] if lines else "no output"


def _bin(name):
    """A Flower console script of the running interpreter's environment."""
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else name


def deploy_local(settings, out, *, superlink_port=None, timeout=600):
    """Run ``settings`` on Flower's deployment engine on this machine: one SuperLink, one
    SuperNode per client (``partition-id`` = client index), ``flwr run`` of the app.

    Every process is started through :mod:`wrapkit.common.processes` and stopped at the
    end, also on failure. Logs stay in ``out/deployment/``.

    Returns
    -------
    dict
        The run report the ServerApp wrote to ``out/report.json``.

    Raises
    ------
    UserError
        The SuperLink or a SuperNode cannot start (e.g. its port is taken), or the run
        fails or times out.
    """
    settings.check()
    out = Path(out).resolve()
    work = out / "deployment"
    work.mkdir(parents=True, exist_ok=True)
    port = superlink_port or free_port()
    env = {**os.environ, "FLWR_HOME": str(work / "home"),
           "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
           # SuperLink and SuperNode start flower-superexec by name
           "PATH": os.pathsep.join([str(Path(sys.executable).parent),
                                    os.environ.get("PATH", "")])}
    flower_config(work / "home", f"127.0.0.1:{port}")
    app = write_app(work / "app", settings, out)
    procs = []

    def start(cmd, name):
        log = work / f"{name}.log"
        with open(log, "wb") as fh:
            procs.append(processes.popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env,
                                         cwd=work))
        return procs[-1], log

    _check_port_free(port, "the SuperLink")
    try:
        link, log = start([_bin("flower-superlink"), "--insecure", "--port", str(port),
                           "--disable-runtime-dependency-installation"], "superlink")
        _wait_for_port(link, port, log, f"the SuperLink (port {port})", 60)
        for cid in range(settings.task.num_clients):
            node_port = free_port()
            node, log = start([_bin("flower-supernode"), "--insecure", "--superlink",
                               f"127.0.0.1:{port}", "--port", str(node_port), "--node-config",
                               f"partition-id={cid} num-partitions={settings.task.num_clients}"],
                              f"supernode{cid}")
            _wait_for_port(node, node_port, log, f"SuperNode {cid} (port {node_port})", 60)
        try:
            res = processes.run([_bin("flwr"), "run", str(app), "local", "--stream"], env=env,
                                cwd=work, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise UserError(f"the deployed run did not finish within {timeout} s; logs in "
                            f"{work}") from None
        atomic_write_bytes(work / "flwr-run.log", res.stdout + res.stderr)
        report = out / "report.json"
        if res.returncode or not report.exists():
            raise UserError(f"flwr run failed (exit {res.returncode}); logs in {work}")
        return json.loads(report.read_text())
    finally:
        helpers = _detached_helpers({p.pid for p in procs})
        for proc in reversed(procs):
            processes.stop(proc)
        for pid in helpers:
            _kill_group(pid)


def _detached_helpers(parents):
    """Pids of the ``flower-superexec`` helpers our SuperLink/SuperNodes started: they run
    in sessions of their own (so stopping our process groups misses them) and name their
    parent with ``--parent-pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        for i, arg in enumerate(args[:-1]):
            if arg == b"--parent-pid" and args[i + 1].isdigit() and int(args[i + 1]) in parents:
                found.append(int(entry.name))
    return found


def _kill_group(pid):
    """SIGKILL the session-leading helper ``pid`` and whatever it started (its group)."""
    for kill in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        try:
            kill()
        except (ProcessLookupError, PermissionError):
            pass
