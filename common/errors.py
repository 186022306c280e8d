"""The exceptions that the command line turns into a one-line message and exit status 2."""

__all__ = ["FlagError", "UserError"]


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
