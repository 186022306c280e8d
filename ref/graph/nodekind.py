"""What a node kind is: one declaration of attributes, weights, type inference and run.

A node kind is one :class:`NodeKind` entry; :mod:`.registry` collects them. Everything the
graph machinery does with a node goes through its kind:

* **attributes** (:class:`Attr`): JSON values parsed and range-checked on load (a missing
  attribute takes its default; an unknown one is refused);
* **weights** (:class:`Weight`): named tensors of the file (integer weight values,
  fixed-point constants, float stem weights), with their allowed dtypes;
* ``infer(node, in_types) -> TensorType``: the output type (shape without batch, integer
  width and signedness, or float) from the input types, attributes and weights, raising
  ``ValueError`` for anything inconsistent (shapes, widths, weight shapes and values);
* ``run(node, *inputs) -> ndarray``: the batch-first output, calling :mod:`wrapkit.ref.ops`
  (integer kinds never touch a float).

The validator (:mod:`.check`) turns every ``ValueError``/``TypeError`` into one
:class:`~wrapkit.common.errors.UserError` line naming the node.
"""

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..ops import AccumulatorMode
from .types import TensorType

__all__ = ["REQUIRED", "Attr", "Node", "NodeKind", "Weight", "acc_attr", "bool_attr",
           "float_attr", "int_attr", "int_list_attr", "pair_attr"]

#: Marks an attribute without a default.
REQUIRED = object()


@dataclass(frozen=True)
class Attr:
    """One attribute: its name, a parser ``value -> value`` (ValueError if bad), a default."""

    name: str
    parse: Callable
    default: object = REQUIRED


@dataclass(frozen=True)
class Weight:
    """One weight role: the numpy dtypes it may have; ``optional`` roles may be absent."""

    role: str
    dtypes: tuple
    optional: bool = False


@dataclass(frozen=True)
class NodeKind:
    """A node kind (module docstring). ``arity``: ``(min, max)`` number of inputs."""

    name: str
    summary: str
    arity: tuple
    attrs: tuple
    weights: tuple
    infer: Callable
    run: Callable

    def parse_attrs(self, raw):
        """Parsed attribute dict from the JSON object ``raw`` (ValueError naming the field)."""
        if not isinstance(raw, dict):
            raise ValueError(f"attrs must be an object, got {raw!r}")
        known = {a.name for a in self.attrs}
        extra = sorted(set(raw) - known)
        if extra:
            raise ValueError(f"unknown attribute {extra[0]!r} (a {self.name} node has "
                             f"{', '.join(sorted(known)) or 'none'})")
        out = {}
        for a in self.attrs:
            if a.name not in raw or raw[a.name] is None and a.default is None:
                if a.default is REQUIRED:
                    raise ValueError(f"attribute {a.name!r} is missing")
                out[a.name] = a.default
                continue
            try:
                out[a.name] = a.parse(raw[a.name])
            except (TypeError, ValueError) as exc:
                raise ValueError(f"attribute {a.name!r}: {exc}") from None
        return out


@dataclass
class Node:
    """One node of a graph: its output is the tensor named ``name``.

    ``attrs`` are parsed values (tuples for pairs, :class:`AccumulatorMode` for ``acc``);
    ``weights`` maps roles to arrays and ``weight_names`` roles to the file's tensor names;
    ``output`` is the recorded (or inferred) output type.
    """

    name: str
    kind: str
    inputs: list
    attrs: dict = field(default_factory=dict)
    weights: dict = field(default_factory=dict)
    weight_names: dict = field(default_factory=dict)
    output: TensorType | None = None


# -- attribute parsers --------------------------------------------------------------------------

def _int(v, lo, hi):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise ValueError(f"must be an integer, got {v!r}")
    if not lo <= v <= hi:
        raise ValueError(f"must be in [{lo}, {hi}], got {v}")
    return int(v)


def int_attr(name, lo, hi, default=REQUIRED):
    """An integer attribute in ``[lo, hi]``."""
    return Attr(name, lambda v: _int(v, lo, hi), default)


def bool_attr(name, default=REQUIRED):
    def parse(v):
        if not isinstance(v, bool):
            raise ValueError(f"must be true or false, got {v!r}")
        return v
    return Attr(name, parse, default)


def float_attr(name, positive=True, default=REQUIRED):
    """A finite float attribute (positive unless ``positive=False``)."""
    def parse(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                or (positive and v <= 0):
            raise ValueError(f"must be a {'positive ' if positive else ''}finite number, "
                             f"got {v!r}")
        return float(v)
    return Attr(name, parse, default)


def pair_attr(name, lo, hi, default=REQUIRED):
    """An integer or a pair ``[h, w]``, parsed to a tuple ``(h, w)``."""
    def parse(v):
        if isinstance(v, (list, tuple)):
            if len(v) != 2:
                raise ValueError(f"must be an integer or a pair of integers, got {v!r}")
            return tuple(_int(x, lo, hi) for x in v)
        return (_int(v, lo, hi),) * 2
    return Attr(name, parse, default)


def int_list_attr(name, lo, hi, default=REQUIRED):
    """A list of integers in ``[lo, hi]``, parsed to a tuple."""
    def parse(v):
        if not isinstance(v, (list, tuple)):
            raise ValueError(f"must be a list of integers, got {v!r}")
        return tuple(_int(x, lo, hi) for x in v)
    return Attr(name, parse, default)


def acc_attr(name="acc", default=REQUIRED):
    """An accumulator mode ``{"mode", "bits", "k"}`` (:class:`~wrapkit.ref.ops.AccumulatorMode`)."""
    def parse(v):
        if isinstance(v, AccumulatorMode):
            return v
        if not isinstance(v, dict) or set(v) - {"mode", "bits", "k"}:
            raise ValueError(f"must be an object with mode, bits and k, got {v!r}")
        return AccumulatorMode.from_dict(v)
    return Attr(name, parse, default)
