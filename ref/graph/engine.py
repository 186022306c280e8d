"""The graph engine: runs an integer graph batch by batch, in numpy.

Every node's ``run`` is one call into :mod:`wrapkit.ref.ops` (integer kinds, int64 arrays,
no float anywhere) or a float32 edge kind (:mod:`.kinds_float`). The engine feeds the
graph inputs, evaluates the nodes in topological order, frees each tensor after its last
consumer, and returns the graph outputs — plus, on request, the outputs of any nodes (the
test hook that compares every node's integers with PyTorch's).

Guard: with ``check_ranges=True`` (the default) every integer node's output is checked to lie
in its declared code range, so a node whose declared width is too narrow fails loudly.
"""

import numpy as np

from wrapkit.common.errors import UserError

from .gemm import GEMMS
from .registry import MAC_NODE_KINDS, NODE_KINDS

__all__ = ["GraphEngine"]


class GraphEngine:
    """Runs a validated :class:`~wrapkit.ref.graph.graph.Graph`.

    Parameters
    ----------
    graph : Graph
    check_ranges : bool
        Check each integer output against its type's code range (module docstring).
    gemm : "int64" | "blas" | callable
        The exact dot-product kernel of the MAC nodes (:mod:`.gemm`): numpy int64 (default,
        no float anywhere), float BLAS where provably exact, or any ``(a, b) -> a @ b``
        kernel that returns exact int64 sums (e.g. a torch integer GEMM from outside ref/).
    """

    def __init__(self, graph, *, check_ranges=True, gemm="int64"):
        self.graph = graph
        self.check_ranges = check_ranges
        if callable(gemm):
            self.gemm = gemm
        elif gemm in GEMMS:
            self.gemm = GEMMS[gemm]
        else:
            raise UserError(f"gemm must be one of {', '.join(GEMMS)} or a kernel, got {gemm!r}")
        # The position of each tensor's last consumer, so batches do not keep dead tensors.
        self._last_use = {}
        for i, node in enumerate(graph.nodes):
            for src in node.inputs:
                self._last_use[src] = i

    def check_inputs(self, inputs):
        """``{input name: batch-first array}`` checked against the graph's input types (shape,
        integer range) and converted (int64 or float32); one array for a one-input graph."""
        g = self.graph
        if not isinstance(inputs, dict):
            if len(g.inputs) != 1:
                raise UserError(f"the graph has inputs {', '.join(g.inputs)}; pass a dict")
            inputs = {next(iter(g.inputs)): inputs}
        feeds = {}
        for name, t in g.inputs.items():
            if name not in inputs:
                raise UserError(f"graph input {name!r} was not given")
            arr = np.asarray(inputs[name])
            if arr.ndim != len(t.shape) + 1 or arr.shape[1:] != t.shape:
                raise UserError(f"input {name!r} has per-sample shape {list(arr.shape[1:])}, "
                                f"the graph expects {list(t.shape)}")
            if t.is_int:
                if arr.dtype.kind not in "iu":
                    raise UserError(f"input {name!r} must hold integers, got {arr.dtype}")
                lo, hi = t.code_range
                if arr.size and (int(arr.min()) < lo or int(arr.max()) > hi):
                    raise UserError(f"input {name!r} holds values outside [{lo}, {hi}] "
                                    f"({t.describe()})")
                arr = arr.astype(np.int64)
            else:
                arr = arr.astype(np.float32)
            feeds[name] = arr
        return feeds

    def run_batch(self, feeds, keep=(), given=None):
        """Outputs and kept node tensors of one batch (``feeds`` already checked).

        ``given``: ``{node name: array}`` used instead of computing those nodes (a test hook:
        feed PyTorch's codes at a float edge to compare the integer path on equal inputs).
        """
        values = dict(feeds)
        keep = set(keep)
        given = given or {}
        wanted = set(self.graph.outputs) | keep
        kept = {}
        for i, node in enumerate(self.graph.nodes):
            if node.name in given:
                out = np.asarray(given[node.name])
                if node.output.is_int:
                    out = out.astype(np.int64)
            elif self.gemm is not None and node.kind in MAC_NODE_KINDS:
                out = NODE_KINDS[node.kind].run(node, *(values[s] for s in node.inputs),
                                                gemm=self.gemm)
            else:
                out = NODE_KINDS[node.kind].run(node, *(values[s] for s in node.inputs))
            t = node.output
            if t.is_int:
                if out.dtype != np.int64:
                    raise RuntimeError(f"node {node.name} ({node.kind}) returned {out.dtype}, "
                                       "not int64")
                if self.check_ranges and out.size:
                    lo, hi = t.code_range
                    if int(out.min()) < lo or int(out.max()) > hi:
                        raise RuntimeError(f"node {node.name} ({node.kind}) produced values "
                                           f"outside its declared {t.describe()}")
            values[node.name] = out
            if node.name in wanted:
                kept[node.name] = out
            for src in node.inputs:
                if self._last_use.get(src) == i and src not in wanted:
                    values.pop(src, None)
        return kept

    def run(self, inputs, *, batch_size=100, keep=(), progress=None):
        """Run on a whole data set.

        Parameters
        ----------
        inputs : array or dict of name -> array
            Batch-first; one array when the graph has one input.
        batch_size : int
        keep : iterable of node names, or "all"
            Node outputs to return besides the graph outputs.
        progress : callable(done, total), optional

        Returns
        -------
        dict of name -> array (graph outputs and kept nodes, batches concatenated)
        """
        if keep == "all":
            keep = [n.name for n in self.graph.nodes]
        unknown = [k for k in keep if k not in {n.name for n in self.graph.nodes}]
        if unknown:
            raise UserError(f"the graph has no node {unknown[0]!r}")
        feeds = self.check_inputs(inputs)
        total = len(next(iter(feeds.values())))
        parts = {}
        for start in range(0, total, batch_size):
            batch = {k: v[start:start + batch_size] for k, v in feeds.items()}
            for name, arr in self.run_batch(batch, keep).items():
                parts.setdefault(name, []).append(arr)
            if progress:
                progress(min(start + batch_size, total), total)
        return {k: np.concatenate(v) for k, v in parts.items()}
