"""Build folders made once and shared: a file lock so that parallel workers (pytest-xdist,
several commands at once) build a thing once while the others wait, and source fingerprints
so that a build is redone when the code that makes it changes.

A build folder is complete when its *marker* file exists and every file it held when the
build finished still has the same content: :func:`build_once` records a manifest (path ->
SHA-256) of the folder after ``build`` returns and checks it before reusing the folder, so a
crash half way, a deleted or an edited file makes the next caller build the folder again
instead of failing on it forever.
"""

import fcntl
import hashlib
import json
import shutil
from contextlib import contextmanager
from pathlib import Path

__all__ = ["MANIFEST", "PACKAGE_DIR", "build_once", "file_digest", "file_lock", "hash_parts",
           "manifest_problem", "source_fingerprint", "tree_manifest", "verified_folder",
           "write_manifest"]

#: The file in a build folder or cache entry that lists its files' SHA-256 digests.
MANIFEST = ".wrapkit-manifest.json"

# Folders verified by this process (folder -> its manifest's mtime): a folder is hashed once
# per process, not once per use (a test session reuses one build hundreds of times).
_verified = {}

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


def file_digest(path):
    """SHA-256 hex digest of one file's bytes, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tree_manifest(root, paths=None, *, skip=(MANIFEST,)):
    """``{relative path: SHA-256}`` of the files under ``root`` (or only under ``paths``,
    relative to ``root``: files or folders), sorted; names in ``skip`` are left out.

    A listed path that does not exist is left out (:func:`manifest_problem` reports it).
    """
    root = Path(root)
    files = []
    for top in ([root] if paths is None else [root / p for p in paths]):
        if top.is_file():
            files.append(top)
        elif top.is_dir():
            files += [f for f in top.rglob("*") if f.is_file() and not f.is_symlink()]
    return {f.relative_to(root).as_posix(): file_digest(f)
            for f in sorted(set(files)) if f.name not in skip}


def manifest_problem(root, manifest):
    """None when every file of ``manifest`` (from :func:`tree_manifest`) is under ``root``
    with the same content, else a short description of the first difference."""
    if not isinstance(manifest, dict) or not manifest:
        return "no record of its files"
    root = Path(root)
    for rel, digest in manifest.items():
        path = root / rel
        if not path.is_file():
            return f"{rel} is missing"
        try:
            if file_digest(path) != digest:
                return f"{rel} changed"
        except OSError as exc:
            return f"{rel} is unreadable ({exc.strerror or exc})"
    return None


def _stat_signature(folder, names):
    """(size, mtime) of each file: a cheap check that nothing changed since it was hashed."""
    try:
        return tuple((name, st.st_size, st.st_mtime_ns)
                     for name in names for st in [(folder / name).stat()])
    except OSError:
        return None


def write_manifest(folder):
    """Record :func:`tree_manifest` of ``folder`` in ``folder/MANIFEST`` (written last)."""
    folder = Path(folder)
    manifest = tree_manifest(folder)
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=0, sort_keys=True) + "\n")
    _verified[folder.resolve()] = ((folder / MANIFEST).stat().st_mtime_ns,
                                   _stat_signature(folder, sorted(manifest)))
    return manifest


def verified_folder(folder, marker=MANIFEST):
    """True when ``folder`` holds ``marker`` and its files match its manifest.

    The files are hashed once per process; later calls compare their sizes and times with
    those seen then, and hash again when one differs.
    """
    folder = Path(folder)
    record = folder / MANIFEST
    try:
        if not (folder / marker).is_file():
            return False
        stamp = record.stat().st_mtime_ns
    except OSError:
        return False
    key = folder.resolve()
    seen = _verified.get(key)
    if seen is not None and seen[0] == stamp and seen[1] is not None \
            and _stat_signature(folder, [name for name, _, _ in seen[1]]) == seen[1]:
        return True
    try:
        manifest = json.loads(record.read_text())
    except (OSError, ValueError):
        return False
    if manifest_problem(folder, manifest) is not None:
        return False
    _verified[key] = (stamp, _stat_signature(folder, sorted(manifest)))
    return True


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
        beside ``folder``, into an empty folder (a damaged earlier build is removed first).
    """
    folder = Path(folder)
    if verified_folder(folder, marker):
        return folder
    with file_lock(folder.with_name(folder.name + ".lock")):
        if not verified_folder(folder, marker):  # another worker may have built it meanwhile
            if folder.exists():
                shutil.rmtree(folder)
            folder.mkdir(parents=True)
            build(folder)
            write_manifest(folder)
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
