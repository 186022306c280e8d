"""Compile the C kernels on first use into a per-user cache and load them with ctypes.

Why not a setuptools C extension built by ``pip install``: the project's package layout maps
``wrapkit`` onto the repository root, its install must succeed on machines without Python
headers, and the kernel has to be built with specific flags (no auto-vectorization) that a
build backend would apply to every extension. A plain shared library compiled with the system
``cc`` needs no Python headers, no ABI tag and no change to the install; it is built once
(tens of milliseconds) and reused. The cache key hashes the source, the flags and the
compiler's version, so an edited source or another compiler never loads a stale library.

Environment: ``CC`` picks the compiler (default ``cc``); ``WRAPKIT_CACHE`` the cache folder
(default ``$XDG_CACHE_HOME/wrapkit`` or ``~/.cache/wrapkit``).
"""

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

from wrapkit.common.errors import UserError

__all__ = ["SCALAR_FLAGS", "VECTOR_FLAGS", "cache_dir", "load_library"]

_SOURCE = Path(__file__).with_name("bitpack_gemm.c")

#: Scalar build: optimized, but no auto-vectorization, so neither the int32 loop nor the
#: packed loop may use SIMD instructions (the paper's setting: a CPU without vector MACs).
#: ``-mgeneral-regs-only`` (x86-64, AArch64) additionally forbids any SIMD register.
SCALAR_FLAGS = ("-O2", "-fno-tree-vectorize", "-fno-tree-slp-vectorize")
#: For comparison only: let the compiler vectorize both loops for this machine.
VECTOR_FLAGS = ("-O3", "-march=native")

_GENERAL_REGS = ("x86_64", "amd64", "aarch64", "arm64")


def cache_dir():
    """Folder for compiled kernels (created on demand)."""
    root = os.environ.get("WRAPKIT_CACHE")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
        root = os.path.join(xdg, "wrapkit")
    return Path(root) / "kernels"


def _compiler():
    cc = os.environ.get("CC", "cc")
    path = shutil.which(cc)
    if path is None:
        raise UserError(
            f"no C compiler {cc!r} found for the bit-packing kernel; install one "
            "(apt-get install gcc) or point CC at it"
        )
    try:
        version = subprocess.run([path, "--version"], capture_output=True, text=True,
                                 timeout=30).stdout.splitlines()[:1]
    except (OSError, subprocess.SubprocessError) as exc:
        raise UserError(f"C compiler {path} does not run ({exc}); set CC to a working one") from exc
    return path, (version[0] if version else "")


def _flags(vectorize):
    if vectorize:
        return list(VECTOR_FLAGS)
    flags = list(SCALAR_FLAGS)
    if platform.machine().lower() in _GENERAL_REGS:
        flags.append("-mgeneral-regs-only")
    return flags


def _compile(cc, flags, out):
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.stem}.", suffix=".so")
    os.close(fd)
    cmd = [cc, *flags, "-shared", "-fPIC", "-fvisibility=hidden", "-o", tmp, str(_SOURCE)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise UserError(f"compiling {_SOURCE.name} failed: {' '.join(cmd)}\n"
                            f"{proc.stderr.strip()}")
        os.replace(tmp, out)  # atomic: concurrent first uses never load a half-written file
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_library(vectorize=False):
    """Build (if needed) and load the kernel library; returns ``(ctypes.CDLL, info dict)``.

    Parameters
    ----------
    vectorize : bool
        False (default): the scalar build of :data:`SCALAR_FLAGS`. True: let the compiler
        vectorize (:data:`VECTOR_FLAGS`), for comparison only.

    Raises
    ------
    UserError
        No working C compiler, or the source does not compile.
    """
    cc, version = _compiler()
    flags = _flags(vectorize)
    src = _SOURCE.read_bytes()
    key = hashlib.sha256(src + "\0".join([cc, version, *flags]).encode()).hexdigest()[:16]
    path = cache_dir() / f"bitpack_gemm-{key}.so"
    if not path.exists():
        try:
            _compile(cc, flags, path)
        except UserError:
            if "-mgeneral-regs-only" not in flags:
                raise
            # An older compiler without the flag: the no-vectorize flags still hold.
            flags = [f for f in flags if f != "-mgeneral-regs-only"]
            key = hashlib.sha256(src + "\0".join([cc, version, *flags]).encode()).hexdigest()[:16]
            path = cache_dir() / f"bitpack_gemm-{key}.so"
            if not path.exists():
                _compile(cc, flags, path)
    lib = ctypes.CDLL(str(path))
    if lib.wk_abi_version() != 1:
        raise UserError(f"{path} has an unexpected ABI version; delete it to rebuild")
    return lib, {"library": str(path), "compiler": version, "flags": flags}
