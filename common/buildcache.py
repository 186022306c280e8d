"""Build folders made once and shared: a file lock so that parallel workers (pytest-xdist,
several commands at once) build a thing once while the others wait, and source fingerprints
so that a build is redone when the code that makes it changes.

A build folder is complete when its *marker* file exists; builders write the marker last, so
a crash half way leaves an incomplete folder that the next caller builds again.
"""

import fcntl
import hashlib
from contextlib import contextmanager
from pathlib import Path

__all__ = ["PACKAGE_DIR", "build_once", "file_lock", "hash_parts", "source_fingerprint"]

#: The installed ``wrapkit`` package (the repository root in a checkout).
PACKAGE_DIR = Path(__file__).resolve().parent.parent


@contextmanager
def file_lock(path):
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the ``with`` block."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def build_once(folder, marker, build):
    """Return ``folder`` after making sure ``build(folder)`` has completed there once.

    Parameters
    ----------
    folder : path-like
        The build folder; created before ``build`` runs.
    marker : str
        Name of the file inside ``folder`` whose presence means "complete"; ``build`` writes it
        last.
    build : callable
        ``build(folder)``; called at most once across parallel callers, under a lock file
        beside ``folder``.
    """
    folder = Path(folder)
    done = folder / marker
    if done.is_file():
        return folder
    with file_lock(folder.with_name(folder.name + ".lock")):
        if not done.is_file():  # another worker may have built it while we waited
            folder.mkdir(parents=True, exist_ok=True)
            build(folder)
    return folder


def hash_parts(*parts, length=None):
    """SHA-256 hex digest over ``parts`` (str, bytes, or paths read as bytes), each one
    length-prefixed so that ``("ab", "c")`` and ``("a", "bc")`` differ."""
    h = hashlib.sha256()
    for part in parts:
        data = part.read_bytes() if isinstance(part, Path) else (
            part if isinstance(part, bytes) else str(part).encode())
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    digest = h.hexdigest()
    return digest[:length] if length else digest


def source_fingerprint(*packages, exclude=(), extra=(), length=16):
    """Hash of the Python sources of wrapkit ``packages`` (e.g. ``"hw", "ref"``), recursively,
    with their paths, plus the strings in ``extra`` (tool and library versions).

    ``exclude`` names files (paths relative to the package root, e.g.
    ``"hw/synth/cli.py"``) that do not affect what is built, so editing them keeps the cache.
    """
    import wrapkit

    parts = [wrapkit.__version__, *extra]
    for package in packages:
        for src in sorted((PACKAGE_DIR / package).rglob("*.py")):
            rel = src.relative_to(PACKAGE_DIR).as_posix()
            if rel not in exclude and "__pycache__" not in src.parts:
                parts += [rel, src]
    return hash_parts(*parts, length=length)
