"""Command-line flag helpers every ``wrapkit`` command shares.

A constructor (``MacConfig``, ``TrainConfig`` ...) rejects a bad value with a
:class:`~wrapkit.common.checks.ParameterError` that records the parameter's name; a command
knows which of its flags feeds which parameter and turns the error into a
:class:`~wrapkit.common.errors.FlagError` with :func:`flag_error`. No message text is parsed.
"""

import argparse

from .checks import ParameterError
from .errors import FlagError, UserError

__all__ = ["check_flag_count", "flag_error", "flag_name", "positive_int"]


def flag_name(parameter):
    """The flag that sets ``parameter``: ``"act_bits"`` -> ``"--act-bits"``."""
    return "--" + parameter.replace("_", "-")


def flag_error(exc, flags, *, quote_parameter=False):
    """A constructor's ``TypeError``/``ValueError`` as a one-line :class:`UserError`.

    Parameters
    ----------
    exc : Exception
        What the constructor raised.
    flags : Mapping[str, str]
        Parameter name -> the flag that sets it.
    quote_parameter : bool
        Word the message as ``"act_bits must be ... (fix --act-bits)"`` instead of
        ``"--act-bits must be ..."``.

    Returns
    -------
    FlagError or UserError
        A :class:`FlagError` when ``exc`` names a parameter in ``flags``, otherwise a
        :class:`UserError` with the first line of ``exc``'s message.
    """
    parameter = exc.parameter if isinstance(exc, ParameterError) else None
    if parameter not in flags:
        return UserError(str(exc).splitlines()[0])
    return FlagError(flags[parameter], exc.problem,
                     parameter=parameter if quote_parameter else None)


def check_flag_count(flag, value, lo=1, hi=None, why=""):
    """``value`` of ``flag`` (None passes) or a :class:`FlagError` when it is below ``lo`` or
    above ``hi`` (a limit that ``why`` explains, e.g. "every operation is held in memory")."""
    if value is not None and value < lo:
        raise FlagError(flag, f"must be >= {lo}, got {value}")
    if value is not None and hi is not None and value > hi:
        raise FlagError(flag, f"must be at most {hi:,}{f' ({why})' if why else ''}, got "
                              f"{value:,}")
    return value


def positive_int(text):
    """argparse ``type=`` for an integer >= 1 (a usage error otherwise)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value
