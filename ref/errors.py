"""The one exception type that the command line turns into a one-line message and exit 2."""

__all__ = ["UserError"]


class UserError(Exception):
    """Bad input from a user (a file, a flag, a missing tool): the message names the problem
    and the fix. The CLI prints it on one line and exits with status 2."""
