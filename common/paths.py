"""Output paths checked before any work starts: a run name that stays inside its root, an
output file that is not a folder, not under a file, not one of the command's own inputs.

Each check raises a one-line :class:`~wrapkit.common.errors.FlagError` naming the flag, so a
command refuses a bad path in its first second instead of after minutes of training or
simulation.
"""

import os
from pathlib import Path

from .errors import FlagError

__all__ = ["check_output_file", "check_run_name"]


def check_run_name(name, flag="--name"):
    """``name`` as a run folder name: one path component, not ``.`` or ``..``, so that
    ``<root>/<name>`` stays inside ``<root>``."""
    text = str(name)
    if not text.strip():
        raise FlagError(flag, "must not be empty")
    if "/" in text or os.sep in text or text in (".", "..") or "\0" in text:
        raise FlagError(flag, f"must be a plain folder name (no '/', not '.' or '..'), got "
                              f"{text!r}; use --out-root to choose where run folders go")
    return text


def _same_path(a, b):
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_output_file(path, flag, *, inputs=()):
    """``path`` as a file to write: not a folder, its folder not a file, and none of
    ``inputs`` (files or folders the command reads; writing one would destroy it, writing
    inside one would mix outputs into inputs only when it is a file).

    Returns ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    if path.is_dir():
        raise FlagError(flag, f"{path} is a folder; name a file to write")
    parent = path.parent
    for folder in (parent, *parent.parents):
        if folder.exists():
            if not folder.is_dir():
                raise FlagError(flag, f"{path}: {folder} is a file, not a folder")
            if not os.access(folder, os.W_OK | os.X_OK):
                raise FlagError(flag, f"{path}: cannot write into {folder} (permission denied)")
            break
    for source in inputs:
        if source is not None and _same_path(path, source):
            raise FlagError(flag, f"{path} is an input of this command; writing it would "
                                  "destroy it: choose another file")
    return path
