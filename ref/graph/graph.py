"""The integer graph: named inputs, named nodes (one output tensor each), named outputs.

A :class:`Graph` is plain data; :func:`wrapkit.ref.graph.check.build_graph` makes one from a
file's JSON and tensors and validates it, :mod:`.engine` runs it. Serialised (the ``graph``
field of a version-2 ``.wkx`` header, docs/graph.md)::

    {"inputs":  [{"name": "pixels", "type": {...}}],
     "nodes":   [{"name", "kind", "inputs": [names], "attrs": {...},
                  "weights": {role: tensor name}, "output": {type}}, ...],
     "outputs": ["logits"]}

with types as :meth:`~wrapkit.ref.graph.types.TensorType.to_dict` writes them.
"""

from dataclasses import dataclass, field

import numpy as np

from ..ops import AccumulatorMode
from .nodekind import Node

__all__ = ["Graph", "attrs_to_json", "new_node", "topological_order"]


def attrs_to_json(attrs):
    """Parsed attributes -> JSON values (tuples -> lists, accumulators -> objects)."""
    def conv(v):
        if isinstance(v, AccumulatorMode):
            return v.to_dict()
        if isinstance(v, (tuple, list)):
            return [conv(x) for x in v]
        if isinstance(v, np.integer):
            return int(v)
        if isinstance(v, np.floating):
            return float(v)
        return v
    return {k: conv(v) for k, v in attrs.items()}


def topological_order(inputs, nodes):
    """Node names in an order where every node follows its inputs.

    Raises ValueError ``(node name, problem)`` for a dangling edge or a cycle.
    """
    known = set(inputs) | {n.name for n in nodes}
    for n in nodes:
        for src in n.inputs:
            if src not in known:
                raise ValueError(n.name, f"input {src!r} is neither a graph input nor a node "
                                         "(dangling edge)")
    done, order = set(inputs), []
    pending = {n.name: n for n in nodes}
    while pending:
        ready = [name for name, n in pending.items() if all(s in done for s in n.inputs)]
        if not ready:
            # Follow unfinished inputs from any pending node until a name repeats.
            name, path = next(iter(pending)), []
            while name not in path:
                path.append(name)
                name = next(s for s in pending[name].inputs if s in pending)
            cycle = path[path.index(name):] + [name]
            raise ValueError(cycle[0], f"is on a cycle {' -> '.join(cycle)}")
        for name in ready:
            order.append(name)
            done.add(name)
            del pending[name]
    return order


@dataclass
class Graph:
    """Inputs (name -> type), nodes in a topological order, output names."""

    inputs: dict
    nodes: list
    outputs: list
    _by_name: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self._by_name = {n.name: n for n in self.nodes}

    def node(self, name):
        return self._by_name[name]

    def type_of(self, name):
        """The type of the tensor ``name`` (a graph input or a node's output)."""
        return self.inputs[name] if name in self.inputs else self._by_name[name].output

    def consumers(self, name):
        return [n for n in self.nodes if name in n.inputs]

    def to_json(self, weight_prefix=None):
        """The ``graph`` header field; weights are referenced by their tensor names."""
        return {
            "inputs": [{"name": k, "type": t.to_dict()} for k, t in self.inputs.items()],
            "nodes": [{"name": n.name, "kind": n.kind, "inputs": list(n.inputs),
                       "attrs": attrs_to_json(n.attrs),
                       "weights": dict(n.weight_names) or
                       {r: f"{n.name}.{r}" for r in n.weights},
                       "output": n.output.to_dict()} for n in self.nodes],
            "outputs": list(self.outputs),
        }

    def tensors(self):
        """``{tensor name: array}`` of every node's weights, as the file stores them."""
        out = {}
        for n in self.nodes:
            for role, arr in n.weights.items():
                out[n.weight_names.get(role, f"{n.name}.{role}")] = arr
        return out

    def describe(self):
        """One line per node: name, kind, inputs, output type (float nodes marked)."""
        lines = [f"input {k}: {t.describe()}" for k, t in self.inputs.items()]
        for n in self.nodes:
            mark = "  [float]" if not n.output.is_int else ""
            lines.append(f"{n.name:<22} {n.kind:<16} {', '.join(n.inputs):<28} "
                         f"{n.output.describe()}{mark}")
        return "\n".join(lines)


def new_node(name, kind, inputs, attrs=None, weights=None, output=None):
    """A node built in code: attributes parsed and completed with their defaults exactly as
    when read from a file, weights named ``<name>.<role>``.

    Raises ValueError for an unknown kind or a bad attribute.
    """
    from .registry import NODE_KINDS

    if kind not in NODE_KINDS:
        raise ValueError(f"unknown node kind {kind!r}")
    parsed = NODE_KINDS[kind].parse_attrs(attrs_to_json(attrs or {}))
    weights = {r: np.asarray(w) for r, w in (weights or {}).items()}
    return Node(name, kind, list(inputs), parsed, weights,
                {r: f"{name}.{r}" for r in weights}, output)
