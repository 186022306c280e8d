"""A content-addressed cache for flow results.

Synthesis, timing and gate-level simulation take seconds to a minute per design; the network
estimator asks for the same designs again and again. Results are stored under
``$WRAPKIT_CACHE_DIR`` (default ``~/.cache/wrapkit``) in a folder named by the SHA-256 of
everything that determines them: the Verilog, the liberty and cell-model bytes, the tool
versions, the flow version and the options. Changing any of them changes the key, so a stale
entry is never read; deleting the folder is always safe.

Entries are written to a temporary folder and renamed into place, so a crashed or concurrent
run leaves either a complete entry or none. Each entry records its files' SHA-256 digests
(:func:`wrapkit.common.buildcache.write_manifest`); an entry whose files were since deleted or
changed is removed and computed again.
"""

import json
import os
import shutil
import tempfile
from pathlib import Path

from wrapkit.common.buildcache import hash_parts, verified_folder, write_manifest

__all__ = ["cache_dir", "cache_key", "cached_entry", "commit_entry"]


def cache_dir():
    """Root of the cache: ``$WRAPKIT_CACHE_DIR`` or ``~/.cache/wrapkit``."""
    root = os.environ.get("WRAPKIT_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "wrapkit"


def cache_key(kind, *parts):
    """SHA-256 over ``kind`` and ``parts``: bytes and str as they are, paths as their files'
    bytes, anything else (numbers, flags, dicts) as canonical JSON."""
    return hash_parts(kind, *(part if isinstance(part, (bytes, str, Path))
                              else json.dumps(part, sort_keys=True, default=str)
                              for part in parts))


def cached_entry(kind, key):
    """The folder of a complete cache entry, or None."""
    path = cache_dir() / kind / key
    if verified_folder(path, "result.json"):
        return path
    if path.exists():  # damaged (a file deleted or changed): compute it again
        shutil.rmtree(path, ignore_errors=True)
    return None


def commit_entry(kind, key, work_dir, result):
    """Store ``work_dir`` (its files) with ``result.json`` as the entry ``kind/key``.

    Returns the entry's folder. If another process stored the same key first, its entry is
    kept (both are equal by construction).
    """
    final = cache_dir() / kind / key
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{key[:12]}."))
    try:
        for item in Path(work_dir).iterdir():
            if item.is_file():
                shutil.copy2(item, tmp / item.name)
        (tmp / "result.json").write_text(json.dumps(result, indent=1, sort_keys=True))
        write_manifest(tmp)
        try:
            os.replace(tmp, final)
        except OSError:
            if not verified_folder(final, "result.json"):
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
