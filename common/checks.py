"""Argument checks shared by every constructor and command: one wording for every package.

Each check returns the checked value (normalised: numpy integers become ``int``) or raises
:class:`ParameterTypeError` (a ``TypeError``) for the wrong type and
:class:`ParameterValueError` (a ``ValueError``) for a bad value, the message naming the
parameter, the allowed range and the value given. Both record the parameter's name, so a
command line can tell which of its flags to blame without reading the message.

>>> check_int("acc_bits", 8, 2, 32)
8
>>> check_int("acc_bits", 40, 2, 32)
Traceback (most recent call last):
...
wrapkit.common.checks.ParameterValueError: acc_bits must be in [2, 32], got 40
"""

import math
import numbers

__all__ = [
    "ParameterError",
    "ParameterTypeError",
    "ParameterValueError",
    "check_count",
    "check_int",
    "check_positive_float",
]


class ParameterError(Exception):
    """A constructor parameter with a bad value or type; the base of the two below.

    Parameters
    ----------
    parameter : str
        The parameter's name, e.g. ``"acc_bits"``.
    problem : str
        What is wrong, e.g. ``"must be in [2, 32], got 40"``.

    The message is ``"<parameter> <problem>"``.
    """

    def __init__(self, parameter, problem):
        super().__init__(f"{parameter} {problem}")
        self.parameter = parameter
        self.problem = problem


class ParameterTypeError(ParameterError, TypeError):
    """A parameter of the wrong type (``except TypeError`` catches it)."""


class ParameterValueError(ParameterError, ValueError):
    """A parameter with a bad value (``except ValueError`` catches it)."""


def _is_int(value):
    # bool is an int subclass, but True as a bit width is always a mistake.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(name, value, lo=None, hi=None, *, range_in_type_error=False):
    """``value`` as an ``int`` in ``[lo, hi]`` (either bound may be None).

    ``range_in_type_error`` puts the range into the TypeError's message too
    (``"bits must be an integer in [2, 8], not None"``), for parameters whose range a user
    cannot otherwise see, such as configuration fields.
    """
    if not _is_int(value):
        what = "an integer"
        if range_in_type_error and lo is not None and hi is not None:
            what = f"an integer in [{lo}, {hi}]"
        raise ParameterTypeError(name, f"must be {what}, not {value!r}")
    value = int(value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        if hi is None:
            raise ParameterValueError(name, f"must be >= {lo}, got {value}")
        if lo is None:
            raise ParameterValueError(name, f"must be <= {hi}, got {value}")
        raise ParameterValueError(name, f"must be in [{lo}, {hi}], got {value}")
    return value


def check_count(name, value, lo=1):
    """A count such as an op or image number: an ``int >= lo``; one ValueError for both a
    wrong type and a too-small value (``"n_ops must be an integer >= 1, got 0"``)."""
    if not _is_int(value) or value < lo:
        raise ParameterValueError(name, f"must be an integer >= {lo}, got {value!r}")
    return int(value)


def check_positive_float(name, value):
    """``value`` as a positive finite ``float``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ParameterTypeError(name, f"must be a positive finite number, not {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ParameterValueError(name, f"must be a positive finite number, got {value}")
    return float(value)
