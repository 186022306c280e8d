"""A small object cache for Verilator's run-time library (what ccache would do, narrowed).

Every Verilator build compiles the same run-time library sources (``verilated.cpp``,
``verilated_vpi.cpp``, ...) with the same flags before it compiles the few lines of C++ that
are the design; the library takes ~85 % of the C++ time. Verilator's makefile places
``$(OBJCACHE)`` in front of each compiler call for exactly this kind of tool, so
:func:`wrapkit.sim.runner.build` sets ``OBJCACHE`` to ``python -m wrapkit.sim.objcache`` when
ccache is not installed (and leaves a user's own ``OBJCACHE`` alone).

Only compilations of sources inside ``$VERILATOR_ROOT/include`` are cached: those include
nothing from the build folder, so their objects are the same for every design. The key
hashes the compiler command (output name excluded), the compiler binary and the source
text. Anything else is handed to the compiler unchanged. Cache entries are written to a
temporary name and renamed, so parallel builds never read a partial object.
"""

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from wrapkit.common.buildcache import file_lock

__all__ = ["CACHE_DIR_ENV", "main"]

#: Environment variable naming the cache folder (set by the runner).
CACHE_DIR_ENV = "WRAPKIT_OBJCACHE_DIR"


def _cacheable(argv):
    """(output, source) when ``argv`` compiles a Verilator run-time source, else None."""
    root = os.environ.get("VERILATOR_ROOT")
    if not root or not os.environ.get(CACHE_DIR_ENV) or "-c" not in argv or "-o" not in argv:
        return None
    i = argv.index("-o")
    if i + 1 >= len(argv):
        return None
    sources = [a for a in argv[1:] if a.endswith((".cpp", ".c", ".cc"))]
    if len(sources) != 1:
        return None
    src = Path(sources[0]).resolve()
    include = (Path(root) / "include").resolve()
    if include not in src.parents:
        return None
    return argv[i + 1], src


def _key(argv, out, src):
    compiler = shutil.which(argv[0]) or argv[0]
    h = hashlib.sha256()
    for part in [a if a != out else "<out>" for a in argv]:
        h.update(part.encode() + b"\0")
    stat = os.stat(compiler)
    h.update(f"{os.path.realpath(compiler)} {stat.st_size} {stat.st_mtime_ns}".encode())
    h.update(src.read_bytes())
    return h.hexdigest()


def _store(path, dest):
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    os.close(fd)
    shutil.copyfile(path, tmp)
    os.replace(tmp, dest)


def main(argv=None):
    """Compile as ``argv`` says, taking the object from the cache when it is there."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print("usage: python -m wrapkit.sim.objcache COMPILER ARGS...", file=sys.stderr)
        return 2
    found = _cacheable(argv)
    if found is None:
        return subprocess.call(argv)
    out, src = found
    cache = Path(os.environ[CACHE_DIR_ENV])
    cache.mkdir(parents=True, exist_ok=True)
    key = _key(argv, out, src)
    obj, dep = cache / f"{key}.o", cache / f"{key}.d"
    out_dep = Path(out).with_suffix(".d")
    if not obj.is_file():
        # Parallel builds (pytest workers) would all compile the library at once; the first
        # compiles, the others wait for its object.
        with file_lock(cache / f"{key}.lock"):
            if not obj.is_file():
                status = subprocess.call(argv)
                if status != 0 or not Path(out).is_file():
                    return status
                if out_dep.is_file():
                    _store(out_dep, dep)  # first, so a cached object has its list beside it
                _store(out, obj)
                return 0
    shutil.copyfile(obj, out)
    if dep.is_file():
        shutil.copyfile(dep, out_dep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
