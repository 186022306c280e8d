"""Integer graphs: every exported network as named nodes with typed tensors (pure numpy).

================  =============================================================
module            what
================  =============================================================
:mod:`.types`     ``TensorType``: per-sample shape, integer bits/signed/scale or float
:mod:`.nodekind`  ``NodeKind`` (attributes, weights, type inference, run), ``Node``
:mod:`.kinds_mac` conv2d, linear, matmul (accumulator modes)
:mod:`.kinds_int` requant, rescale, add, concat, pooling, layout, softmax, layer norm,
                  lookup
:mod:`.kinds_float` float edges: standardize, quantize, dequant, conv2d_float,
                  linear_float
:mod:`.registry`  ``NODE_KINDS``: the one table of kinds
:mod:`.graph`     ``Graph``, ``new_node``, topological order, JSON form
:mod:`.check`     build and validate a graph from a file (one-line ``UserError``)
:mod:`.v1`        version-1 layer chains as graphs
:mod:`.io`        ``.wkx`` schema version 2: ``read_graph``, ``write_graph``
:mod:`.engine`    ``GraphEngine``: runs a graph batch-wise, every node's output on request
:mod:`.gemm`      exact GEMM kernels of the MAC nodes (int64; float BLAS where exact)
================  =============================================================

The arithmetic of every integer node kind is :mod:`wrapkit.ref.ops`'s; docs/graph.md
describes the format and how to add a node kind.
"""

from .check import build_graph, infer_types
from .engine import GraphEngine
from .graph import Graph, new_node
from .io import GraphExport, decode_graph, encode_graph, read_graph, write_graph
from .nodekind import Node, NodeKind
from .registry import FLOAT_NODE_KINDS, MAC_NODE_KINDS, NODE_KINDS
from .types import TensorType
from .v1 import graph_from_v1

__all__ = ["FLOAT_NODE_KINDS", "MAC_NODE_KINDS", "NODE_KINDS", "Graph", "GraphEngine",
           "GraphExport", "Node", "NodeKind", "TensorType", "build_graph", "decode_graph",
           "encode_graph", "graph_from_v1", "infer_types", "new_node", "read_graph",
           "write_graph"]
