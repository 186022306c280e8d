"""Build a graph from a file's JSON and tensors, and validate it.

Every problem becomes one :class:`~wrapkit.common.errors.UserError` line
``<file>: node <name> (<kind>): <problem>``: unknown node kinds, bad or unknown attributes,
missing or mistyped weight tensors, dangling edges, cycles, output types (shape, width,
signedness) that disagree with what the inputs give, and values out of range (weights
outside their kind, requantization constants that could overflow int64, tables outside their
output range). The engine runs only graphs that pass.
"""

import numpy as np

from wrapkit.common.errors import UserError

from .graph import Graph, topological_order
from .nodekind import Node
from .registry import NODE_KINDS
from .types import TensorType

__all__ = ["build_graph", "infer_types"]


def _fail(where, problem):
    raise UserError(f"{where}: {problem}")


def _node_where(where, name, kind):
    return f"{where}: node {name} ({kind})"


def infer_types(graph, where="<graph>", check_recorded=True):
    """Infer every node's output type in order; fill it in, or compare it with the recorded
    one (UserError naming the node on any inconsistency). Returns ``graph``."""
    for node in graph.nodes:
        kind = NODE_KINDS[node.kind]
        in_types = [graph.type_of(s) for s in node.inputs]
        try:
            got = kind.infer(node, *in_types)
        except (ValueError, TypeError) as exc:
            _fail(_node_where(where, node.name, node.kind), str(exc))
        if node.output is None or not check_recorded:
            node.output = got
        elif node.output != got:
            _fail(_node_where(where, node.name, node.kind),
                  f"output recorded as {node.output.describe()}, but its inputs and "
                  f"attributes give {got.describe()}")
    return graph


def _list(where, d, key):
    v = d.get(key) if isinstance(d, dict) else None
    if not isinstance(v, list):
        _fail(where, f"graph field {key!r} must be a list, got {v!r}")
    return v


def build_graph(spec, tensors, where="<graph>"):
    """A validated :class:`~wrapkit.ref.graph.graph.Graph` from the header's ``graph``
    object and the file's ``{name: array}`` tensors."""
    if not isinstance(spec, dict):
        _fail(where, "the header has no 'graph' object")
    inputs = {}
    for i, item in enumerate(_list(where, spec, "inputs")):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or not name:
            _fail(where, f"graph input {i} has no name")
        if name in inputs:
            _fail(where, f"graph input {name!r} is declared twice")
        try:
            inputs[name] = TensorType.from_dict(item.get("type"))
        except ValueError as exc:
            _fail(where, f"graph input {name}: {exc}")
    if not inputs:
        _fail(where, "the graph has no inputs")
    nodes, used = [], set()
    for i, item in enumerate(_list(where, spec, "nodes")):
        if not isinstance(item, dict):
            _fail(where, f"node {i} is not an object")
        name, kind_name = item.get("name"), item.get("kind")
        if not isinstance(name, str) or not name:
            _fail(where, f"node {i} has no name")
        here = _node_where(where, name, kind_name)
        if name in inputs or any(n.name == name for n in nodes):
            _fail(here, "the name is used twice")
        kind = NODE_KINDS.get(kind_name)
        if kind is None:
            _fail(here, f"unknown node kind {kind_name!r} (this wrapkit knows "
                        f"{', '.join(sorted(NODE_KINDS))})")
        srcs = item.get("inputs")
        if not isinstance(srcs, list) or not all(isinstance(s, str) for s in srcs):
            _fail(here, f"inputs must be a list of tensor names, got {srcs!r}")
        lo, hi = kind.arity
        if not lo <= len(srcs) <= hi:
            want = str(lo) if lo == hi else f"{lo} to {hi}"
            _fail(here, f"takes {want} input(s), got {len(srcs)}")
        try:
            attrs = kind.parse_attrs(item.get("attrs", {}))
        except ValueError as exc:
            _fail(here, str(exc))
        refs = item.get("weights", {})
        if not isinstance(refs, dict):
            _fail(here, f"weights must be an object role -> tensor name, got {refs!r}")
        roles = {w.role: w for w in kind.weights}
        for role in refs:
            if role not in roles:
                _fail(here, f"unknown weight {role!r} (a {kind.name} node has "
                            f"{', '.join(roles) or 'none'})")
        weights = {}
        for role, w in roles.items():
            tname = refs.get(role)
            if tname is None:
                if not w.optional:
                    _fail(here, f"weight {role!r} is missing")
                continue
            arr = tensors.get(tname)
            if arr is None:
                _fail(here, f"weight {role!r} names tensor {tname!r}, which the file lacks")
            if arr.dtype not in [np.dtype(d) for d in w.dtypes]:
                _fail(here, f"tensor {tname!r} has dtype {arr.dtype}, expected "
                            f"{' or '.join(str(np.dtype(d)) for d in w.dtypes)}")
            weights[role] = arr
            used.add(tname)
        try:
            output = TensorType.from_dict(item.get("output"))
        except ValueError as exc:
            _fail(here, f"output type: {exc}")
        nodes.append(Node(name, kind_name, list(srcs), attrs, weights, dict(refs), output))
    if not nodes:
        _fail(where, "the graph has no nodes")
    unused = sorted(set(tensors) - used)
    if unused:
        _fail(where, f"tensor {unused[0]!r} is not used by any node")
    try:
        order = topological_order(inputs, nodes)
    except ValueError as exc:
        name, problem = exc.args
        node = next(n for n in nodes if n.name == name)
        _fail(_node_where(where, name, node.kind), problem)
    by_name = {n.name: n for n in nodes}
    outputs = _list(where, spec, "outputs")
    for o in outputs:
        if o not in by_name and o not in inputs:
            _fail(where, f"graph output {o!r} is not a node")
    if not outputs:
        _fail(where, "the graph has no outputs")
    graph = Graph(inputs, [by_name[n] for n in order], list(outputs))
    return infer_types(graph, where)
