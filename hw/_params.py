"""Constructor helpers shared by the hw components (private)."""

from contextlib import contextmanager

__all__ = ["check_int", "validating"]


def check_int(name, value, lo, hi):
    """``value`` as an int in [lo, hi]; TypeError/ValueError naming ``name``, range, value."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value}")
    return value


@contextmanager
def validating(component):
    """Run a component's parameter checks; if one fails, mark the half-built object so that
    Amaranth does not also warn "created but never used" about it when it is collected.
    (Amaranth registers every Elaboratable in ``__new__``, before ``__init__`` can check.)"""
    try:
        yield
    except BaseException:
        component._MustUse__silence = True
        raise
