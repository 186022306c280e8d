"""Statistics of a graph's MAC nodes over the images the graph engine runs.

Per MAC-type node (conv2d, linear, matmul), accumulated batch by batch: how many dot
products overflow the node's accumulator, how many the cyclic activation folds back, the
largest exact ``|z|``, zero activations, and — over the first ``toggle_images`` images — the
bit toggles of the MAC's operands over the node's operation stream
(:func:`~wrapkit.ref.graph.node_streams.node_statistics`, stream order of
:func:`~wrapkit.ref.graph.node_streams.node_stream`). What ``wrapkit infer --stats`` writes
for a graph file; the per-layer counterpart of version-1 chains is :mod:`wrapkit.ref.stats`.
"""

import numpy as np

from wrapkit.common.errors import UserError

from .node_streams import mac_node_names, node_mac_config, node_operands, node_statistics

__all__ = ["GraphNodeStats"]


class GraphNodeStats:
    """Collects per-MAC-node statistics of ``graph`` over batches (module docstring).

    Use: ``keep`` names the tensors to keep in each engine batch
    (``GraphEngine.run_batch(feeds, keep=stats.keep)``); :meth:`add` takes the batch's
    tensors; :meth:`to_dicts` gives one row per node.
    """

    def __init__(self, graph, toggle_images=8):
        if isinstance(toggle_images, bool) or not isinstance(toggle_images, int) \
                or toggle_images < 0:
            raise ValueError(f"toggle_images must be an integer >= 0, got {toggle_images!r}")
        self.graph = graph
        self.toggle_images = toggle_images
        self.names = mac_node_names(graph)
        self.keep = sorted({s for n in self.names for s in graph.node(n).inputs
                            if s not in graph.inputs})
        self._rows = {}
        for name in self.names:
            node = graph.node(name)
            try:
                mac = node_mac_config(graph, name).to_dict()
            except UserError:          # a node no MAC runs (saturating): statistics only
                mac = None
            self._rows[name] = {"name": name, "kind": node.kind, "mac": mac,
                                "acc": node.attrs["acc"].to_dict(), "images": 0, "dots": 0,
                                "macs": 0, "overflows": 0, "cyclic_folds": 0, "a_zeros": 0,
                                "max_abs_z": 0, "toggle_images": 0}
        self._toggle_inputs = {}

    def add(self, values):
        """Add one batch: ``values`` maps every name of :attr:`keep` (and the graph inputs a
        MAC node reads) to its batch-first array."""
        for name in self.names:
            node = self.graph.node(name)
            row = self._rows[name]
            inputs = [values[s] for s in node.inputs]
            n = len(inputs[0])
            ops = node_operands(self.graph, name, inputs, require_mac=False)
            st = node_statistics(ops, node.attrs["acc"], toggles=False)
            row["images"] += n
            for key in ("dots", "macs", "overflows", "cyclic_folds", "a_zeros"):
                row[key] += st[key]
            row["max_abs_z"] = max(row["max_abs_z"], st["max_abs_z"])
            take = min(n, self.toggle_images - row["toggle_images"])
            if take > 0 and row["mac"] is not None:
                # Kept until counted in one stream, so batch boundaries count like any other.
                self._toggle_inputs.setdefault(name, []).append([x[:take] for x in inputs])
                row["toggle_images"] += take

    def _toggles(self, name):
        parts = self._toggle_inputs.get(name)
        if not parts:
            return None, None, 0
        inputs = [np.concatenate(xs) for xs in zip(*parts)]
        tog = node_statistics(node_operands(self.graph, name, inputs),
                              self.graph.node(name).attrs["acc"])
        return np.asarray(tog["a_toggles"]), np.asarray(tog["w_toggles"]), tog["transitions"]

    def to_dicts(self):
        """One JSON-able row per MAC node, in graph order: counts, ``macs_per_image``,
        ``overflow_rate``, ``cyclic_fold_rate`` (None without a cyclic activation),
        ``a_zero_fraction`` and ``toggles`` (per bit and mean, per operation pair; None
        without toggle images or without a MAC)."""
        out = []
        for name in self.names:
            r = dict(self._rows[name])
            dots, macs = r["dots"], r["macs"]
            a_t, w_t, t = self._toggles(name)
            r["macs_per_image"] = macs // r["images"] if r["images"] else 0
            r["overflow_rate"] = (None if r["acc"]["mode"] == "exact"
                                  else r["overflows"] / dots if dots else 0.0)
            r["cyclic_fold_rate"] = (r["cyclic_folds"] / dots if dots else 0.0) \
                if r["acc"]["mode"] == "cyclic" else None
            r["a_zero_fraction"] = r["a_zeros"] / macs if macs else 0.0
            r["toggles"] = None if not t else {
                "images": r["toggle_images"], "transitions": t,
                "a_per_bit": (a_t / t).tolist(), "w_per_bit": (w_t / t).tolist(),
                "a_mean": float(np.mean(a_t / t)), "w_mean": float(np.mean(w_t / t))}
            out.append(r)
        return out
