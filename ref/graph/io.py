"""Reading and writing graph exports (``.wkx`` schema version 2), and reading version 1.

A version-2 file is the same container as version 1 (:mod:`wrapkit.ref.wkx`: safetensors
layout, JSON header, sha256 over header and tensors); its header is::

    schema       "wrapkit.export/2"
    generator    "wrapkit <version>"
    source       provenance (run, model, training configuration, PyTorch accuracy)
    input        {"shape", "pixel_max", "mean", "std", "dataset"} when the graph reads images
    num_classes  length of the logits, when it is a classifier
    graph        the graph (:mod:`.graph`): inputs, nodes, outputs

and its tensors are the nodes' weights and constants. :func:`read_graph` reads either
version: a version-1 file is validated as a layer chain (:mod:`wrapkit.ref.validate`) and
converted (:mod:`.v1`).
"""

from dataclasses import dataclass

from wrapkit import __version__
from wrapkit.common.errors import UserError
from wrapkit.common.files import atomic_write_bytes

from ..wkx import GRAPH_SCHEMA, SCHEMA, decode, encode, read_bytes
from .check import build_graph
from .v1 import graph_from_v1

__all__ = ["GraphExport", "decode_graph", "encode_graph", "read_graph", "write_graph"]


@dataclass
class GraphExport:
    """A graph read from (or about to be written to) a file.

    ``header`` is the file's header (a version-1 file keeps its own, with ``layers``);
    ``version`` is 1 or 2; ``path`` and ``sha256`` identify the file.
    """

    header: dict
    graph: object
    version: int
    path: str = "<memory>"
    sha256: str = ""


def encode_graph(graph, **header):
    """Bytes of a version-2 file holding ``graph``; ``header`` adds fields such as
    ``source``, ``input`` and ``num_classes``."""
    full = {"schema": GRAPH_SCHEMA, "generator": f"wrapkit {__version__}", **header,
            "graph": graph.to_json()}
    return encode(full, graph.tensors())


def write_graph(path, graph, **header):
    """Write a version-2 file atomically (nothing half-written); returns the path."""
    return atomic_write_bytes(path, encode_graph(graph, **header))


def decode_graph(data, path="<bytes>"):
    """Verify and validate the bytes of a version-1 or version-2 file -> GraphExport."""
    exp = decode(data, path)
    if exp.header["schema"] == SCHEMA:
        from ..validate import validate

        validate(exp)
        return GraphExport(exp.header, graph_from_v1(exp), 1, str(path), exp.sha256)
    graph = build_graph(exp.header.get("graph"), exp.tensors, str(path))
    num_classes = exp.header.get("num_classes")
    if num_classes is not None:
        for out in graph.outputs:
            t = graph.type_of(out)
            if t.shape != (num_classes,):
                raise UserError(f"{path}: graph output {out} is {t.describe()}, but the "
                                f"header says num_classes = {num_classes}")
    return GraphExport(exp.header, graph, 2, str(path), exp.sha256)


def read_graph(path):
    """Read, verify and validate a ``.wkx`` file of either version -> GraphExport.

    Raises
    ------
    UserError
        One line naming the file, the node (or layer) and the problem.
    """
    return decode_graph(read_bytes(path), path)
