"""Constructor support shared by the hw components: parameter checks that leave no warning."""

from contextlib import contextmanager

__all__ = ["validating"]


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
