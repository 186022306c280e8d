"""The external programs of the synthesis flow: finding them and running them.

Every program comes from a Debian package (``make setup`` installs them all):

=========  ===================  =========================================
program    Debian package       used for
=========  ===================  =========================================
yosys      ``yosys``            logic synthesis and technology mapping
sta        ``opensta``          static timing, SDF, power (``report_power``)
iverilog   ``iverilog``         compiling the gate-level testbench
vvp        ``iverilog``         running it
=========  ===================  =========================================

and the default standard-cell library from ``qflow-tech-osu018``. A missing program or library
is a :class:`~wrapkit.common.errors.UserError` whose message names the package to install.
"""

import functools
import os
import shutil
import subprocess
from pathlib import Path

from wrapkit.common import processes
from wrapkit.common.errors import ExternalToolError, UserError

__all__ = [
    "DEFAULT_LIBERTY",
    "TOOL_PACKAGES",
    "ToolError",
    "default_cell_models",
    "require_tool",
    "run_tool",
    "tool_version",
]

#: The OSU 0.18 um library of Debian's ``qflow-tech-osu018`` (liberty + Verilog cell models).
DEFAULT_LIBERTY = Path("/usr/share/qflow/tech/osu018/osu018_stdcells.lib")

#: Program -> Debian package that provides it.
TOOL_PACKAGES = {"yosys": "yosys", "sta": "opensta", "iverilog": "iverilog", "vvp": "iverilog"}


class ToolError(ExternalToolError):
    """A flow program ran but failed on input that wrapkit produced (a bug, not bad input).

    Carries the stage name and the tail of the program's log so the failure can be read
    without rerunning.
    """


def require_tool(name):
    """Absolute path of the program ``name``, or :class:`UserError` naming its Debian package.

    ``WRAPKIT_<NAME>`` (e.g. ``WRAPKIT_STA=/opt/sta/bin/sta``) overrides the ``PATH`` lookup,
    for machines where a newer build lives elsewhere.
    """
    if name not in TOOL_PACKAGES:
        raise ValueError(f"name must be one of {', '.join(TOOL_PACKAGES)}, got {name!r}")
    override = os.environ.get(f"WRAPKIT_{name.upper()}")
    path = override or shutil.which(name)
    if not path or not os.access(path, os.X_OK):
        where = f" (WRAPKIT_{name.upper()}={override} is not executable)" if override else ""
        raise UserError(
            f"`{name}` not found{where}; install the Debian package "
            f"'{TOOL_PACKAGES[name]}' (`sudo apt-get install {TOOL_PACKAGES[name]}`, "
            f"or `make setup`)"
        )
    return path


def tool_version(name):
    """One-line version string of a flow program (part of the cache key)."""
    return _tool_version(name, require_tool(name))


@functools.lru_cache(maxsize=None)
def _tool_version(name, path):
    args = {"yosys": ["-V"], "sta": ["-version"], "iverilog": ["-V"], "vvp": ["-V"]}[name]
    try:
        out = processes.run([path, *args], capture_output=True, text=True, timeout=30,
                             stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UserError(f"`{name}` does not run ({exc}); reinstall the Debian package "
                        f"'{TOOL_PACKAGES[name]}'") from None
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def default_cell_models(liberty):
    """Verilog cell models that belong to a liberty file: ``<stem>.v`` beside it, or None."""
    candidate = Path(liberty).with_suffix(".v")
    return candidate if candidate.is_file() else None


def run_tool(name, args, *, cwd, stage, log_name, timeout=600, check=True):
    """Run a flow program, keeping its full output in ``cwd/log_name``.

    Parameters
    ----------
    name : str
        A key of :data:`TOOL_PACKAGES`.
    args : list of str
        Arguments after the program.
    cwd : Path
        Working folder (the flow's scratch folder).
    stage : str
        Stage name for error messages ("synthesis", "timing" ...).
    log_name : str
        File in ``cwd`` that receives stdout and stderr together.
    timeout : float
        Seconds before the program is stopped.
    check : bool
        Raise :class:`ToolError` on a non-zero exit.

    Returns
    -------
    subprocess.CompletedProcess
        With ``stdout`` holding stdout and stderr together.
    """
    path = require_tool(name)
    cwd = Path(cwd)
    try:
        proc = processes.run([path, *args], cwd=cwd, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, errors="replace")
    except subprocess.TimeoutExpired:
        raise ToolError(f"{stage}: `{name}` ran longer than {timeout:g} s (log in "
                        f"{cwd / log_name})") from None
    (cwd / log_name).write_text(proc.stdout)
    if check and proc.returncode != 0:
        tail = "\n".join(proc.stdout.strip().splitlines()[-15:])
        raise ToolError(f"{stage}: `{name}` exited with status {proc.returncode}; "
                        f"log {cwd / log_name} ends:\n{tail}")
    return proc
