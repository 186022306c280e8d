"""The exceptions that the command line turns into a one-line message and exit status 2,
and the one line it prints for an environment problem (a full disk, an unwritable folder)."""

import errno
import os

__all__ = ["ExternalToolError", "FlagError", "UserError", "VerificationMismatch",
           "environment_message"]

# OSError numbers that mean "the machine or a path the user chose is in the way", not a bug.
_ENVIRONMENT_ERRNOS = frozenset(
    getattr(errno, name) for name in (
        "ENOSPC", "EDQUOT", "EROFS", "EACCES", "EPERM", "ENOENT", "ENOTDIR", "EISDIR",
        "EEXIST", "ENAMETOOLONG", "ELOOP", "EMFILE", "ENFILE", "EIO", "ENOTEMPTY", "EXDEV",
        "ETXTBSY", "EBUSY", "ENOMEM", "EFBIG", "ENXIO", "ENODEV")
    if hasattr(errno, name))


class UserError(Exception):
    """Bad input from a user (a file, a flag, a missing tool): the message names the problem
    and the fix. The CLI prints it on one line and exits with status 2."""


class FlagError(UserError):
    """A command-line flag with a bad value.

    Parameters
    ----------
    flag : str
        The flag as the user typed it, e.g. ``"--images"``.
    problem : str
        What is wrong with its value and how to fix it, e.g. ``"must be an integer >= 1, got 0"``.
    parameter : str, optional
        The name under which a constructor rejected the value (``"act_bits"``), for commands
        whose messages quote the constructor and point at the flag.

    The message is ``"<flag> <problem>"``, or ``"<parameter> <problem> (fix <flag>)"`` when
    ``parameter`` is given; the flag is kept in :attr:`flag` so that a caller can tell which
    flag failed without reading the message.
    """

    def __init__(self, flag, problem, *, parameter=None):
        if parameter is None:
            super().__init__(f"{flag} {problem}")
        else:
            super().__init__(f"{parameter} {problem} (fix {flag})")
        self.flag = flag
        self.problem = problem
        self.parameter = parameter


class ExternalToolError(RuntimeError):
    """An external program (a simulator, Yosys, OpenSTA) failed or crashed. The CLI prints
    the message's first line (which names the program and its log) and exits with status 2."""


class VerificationMismatch(Exception):
    """Hardware disagreed with the reference (wrapkit.ref). The CLI prints the message's
    first line and exits with status 1, the one status that means "a mismatch"."""


def environment_message(exc):
    """One line for an :class:`OSError` that is an environment problem, or None for other
    errors (which are bugs and keep their traceback).

    The line names the path and, when the path comes from a ``WRAPKIT_*`` environment
    variable (``WRAPKIT_CACHE_DIR``, ``WRAPKIT_SIM_BUILD`` ...), that variable.
    """
    if not isinstance(exc, OSError) or exc.errno not in _ENVIRONMENT_ERRNOS:
        return None
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    what = exc.strerror or type(exc).__name__
    line = f"{what}: {' -> '.join(paths)}" if paths else what
    for name, value in sorted(os.environ.items()):
        if name.startswith("WRAPKIT_") and value and any(
                p == value or p.startswith(value.rstrip("/") + "/")
                or os.path.abspath(p).startswith(os.path.abspath(value).rstrip("/") + "/")
                or os.path.abspath(p) == os.path.abspath(value) for p in paths):
            line += f" (from {name}={value}; point it at a writable folder)"
            break
    else:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            line += " (free some space or write elsewhere)"
    return line
