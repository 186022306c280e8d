"""One writer per output: an exclusive lock on a run folder or an output file, naming its
holder.

Two commands writing into the same folder at once would each finish "successfully" with a
mix of both runs' files. :func:`exclusive_output` takes a non-blocking ``flock`` on a lock
file (``<folder>/.wrapkit.lock``, or ``.<name>.wrapkit.lock`` beside an output file) and
writes who holds it (pid, command line, start time) into it; a second command is refused at
once with a one-line :class:`~wrapkit.common.errors.UserError` quoting that holder. The kernel
drops the lock when its holder dies, however it dies, so a lock is never stale.
"""

import fcntl
import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from .errors import UserError

__all__ = ["LOCK_NAME", "OutputBusyError", "exclusive_output", "lock_path"]

#: The lock file inside a locked folder.
LOCK_NAME = ".wrapkit.lock"


class OutputBusyError(UserError):
    """Another process holds the output's lock; :attr:`holder` is what it wrote (a dict)."""

    def __init__(self, message, holder):
        super().__init__(message)
        self.holder = holder


def lock_path(target, *, folder=True):
    """The lock file that guards ``target`` (a folder, or an output file when ``folder`` is
    False)."""
    target = Path(target)
    return target / LOCK_NAME if folder else target.with_name(f".{target.name}.wrapkit.lock")


def _command_line():
    argv = list(sys.argv) or ["python"]
    argv[0] = Path(argv[0]).name
    return " ".join(argv)


def _describe(holder):
    if not holder:
        return "another process"
    started = holder.get("started")
    when = (time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started))
            if isinstance(started, (int, float)) else "an unknown time")
    return f"pid {holder.get('pid', '?')} (`{holder.get('command', '?')}`, started {when})"


def _read_holder(path):
    try:
        return json.loads(Path(path).read_text() or "null")
    except (OSError, ValueError):
        return None


def _make_folder(folder):
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder} exists and is not a folder; remove it or choose another "
                        "output")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the folder {folder}: {exc.strerror or exc}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"cannot write into {folder}: permission denied; choose another "
                        "output")


@contextmanager
def exclusive_output(target, *, folder=True, what=None, hint="wait for it to finish or "
                     "choose another output"):
    """Hold the lock of ``target`` for the ``with`` block, or refuse at once.

    Parameters
    ----------
    target : path-like
        The run folder (created if missing, and removed again if the block leaves it empty)
        or, with ``folder=False``, the output file (its
        folder must exist).
    folder : bool
        Whether ``target`` is a folder.
    what : str, optional
        How the message names the target (default ``"<target>"``).
    hint : str
        The fix the message suggests.

    Raises
    ------
    OutputBusyError
        Another process holds the lock; the message names it.
    """
    target = Path(target)
    created = folder and not target.exists()
    _make_folder(target if folder else target.parent)
    if not folder and target.is_dir():
        raise UserError(f"{target} is a folder; name a file to write")
    path = lock_path(target, folder=folder)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = _read_holder(path)
            raise OutputBusyError(f"{what or target} is in use by another wrapkit run: "
                                  f"{_describe(holder)}; {hint}", holder) from None
        # The holder before us may have removed the file between our open and our flock:
        # then we locked an orphan and must start again on the file now at ``path``.
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        holder = {"pid": os.getpid(), "command": _command_line(), "started": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        yield path
    finally:
        try:
            os.unlink(path)  # before unlocking, so a waiter never locks a removed file
        except OSError:
            pass
        os.close(fd)
        if created:  # a run that wrote nothing leaves no empty folder behind
            try:
                target.rmdir()
            except OSError:
                pass
