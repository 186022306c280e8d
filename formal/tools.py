"""The external tools the proofs run (Yosys, yosys-smtbmc, z3, Icarus), found or refused.

Every failure is a :class:`~wrapkit.common.errors.UserError` whose one-line message names the
tool and how to install it; a tool that crashes is reported the same way, with the last line
of what it printed.
"""

import shutil
import subprocess

from wrapkit.common import processes
from wrapkit.common.errors import UserError

__all__ = ["TOOL_PACKAGES", "ToolTimeout", "require_tools", "run_tool"]

#: Each tool and the Debian package that provides it (all installed by ``make setup``).
TOOL_PACKAGES = {
    "yosys": "yosys",
    "yosys-smtbmc": "yosys",
    "z3": "z3",
    "iverilog": "iverilog",
    "vvp": "iverilog",
}


class ToolTimeout(Exception):
    """A tool ran past its time limit (a proof that did not finish, not a usage error)."""


def require_tools(*names):
    """Return ``{name: path}`` for each tool, or raise a UserError naming the missing ones.

    Parameters
    ----------
    *names : str
        Keys of :data:`TOOL_PACKAGES`.
    """
    found = {name: shutil.which(name) for name in names}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        packages = sorted({TOOL_PACKAGES[name] for name in missing})
        raise UserError(f"{', '.join(missing)} not found on PATH; install with "
                        f"`apt-get install {' '.join(packages)}` (or run `make setup`)")
    return found


def run_tool(cmd, cwd, *, timeout=None, ok_codes=(0,)):
    """Run ``cmd`` in ``cwd`` and return its ``CompletedProcess`` (stdout and stderr as text).

    Parameters
    ----------
    cmd : list of str
        The command; ``cmd[0]`` names the tool in error messages.
    cwd : path
        Working folder (the proof's scratch folder).
    timeout : float, optional
        Seconds before the tool is stopped and :class:`ToolTimeout` raised.
    ok_codes : tuple of int
        Exit statuses that mean "ran to completion" (a failed proof can be one of them).

    Raises
    ------
    UserError
        The tool is missing or exits with a status outside ``ok_codes``.
    ToolTimeout
        The time limit passed.
    """
    try:
        proc = processes.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        require_tools(cmd[0])
        raise
    except subprocess.TimeoutExpired:
        raise ToolTimeout(f"{cmd[0]} did not finish within {timeout:g} s") from None
    if proc.returncode not in ok_codes:
        lines = [line for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
        last = next((line for line in lines if "ERROR" in line), lines[-1] if lines else "")
        raise UserError(f"{cmd[0]} failed (exit {proc.returncode}): "
                        f"{last.strip()[:300]}")
    return proc
