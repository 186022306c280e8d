"""The one registry of node kinds: name -> :class:`~wrapkit.ref.graph.nodekind.NodeKind`.

Adding a node kind is one ``NodeKind(...)`` entry in one of the kind modules (or a new module
listed here); docs/graph.md walks through an example.
"""

from .kinds_float import FLOAT_KINDS
from .kinds_int import INT_KINDS
from .kinds_mac import MAC_KINDS

__all__ = ["FLOAT_NODE_KINDS", "MAC_NODE_KINDS", "NODE_KINDS"]

#: Every node kind by name.
NODE_KINDS = {k.name: k for k in MAC_KINDS + INT_KINDS + FLOAT_KINDS}
#: Kinds that form dot products in an accumulator (the datapaths' subject).
MAC_NODE_KINDS = tuple(k.name for k in MAC_KINDS)
#: Kinds that compute in float32 (allowed at the graph's edges only).
FLOAT_NODE_KINDS = tuple(k.name for k in FLOAT_KINDS)
