"""The MAC operation stream of one conv2d/linear node of an integer graph.

The version-2 counterpart of :func:`wrapkit.ref.streams.layer_stream`: one output-stationary
MAC computes one output neuron after another — output positions (image, y, x) outermost,
output channels next, the fan-in ``(c_in, ky, kx)`` innermost (PyTorch's weight layout) —
and, for a ``wrap`` node, the stream carries the node's own output as ``final_acc``/
``final_out`` per dot product (what the MAC must hold after the dot product's last
operation; a ``cyclic`` node's output is not its register, so its stream is checked cycle by
cycle only). Weights are encoded as the hardware's codes (:func:`wrapkit.ref.encode_weights`).
"""

import numpy as np

from ..datapath import MacConfig, encode_weights, wrap
from ..opstream import MacOpStream
from ..ops.linear import conv_rows

__all__ = ["node_mac_config", "node_stream"]


def node_mac_config(graph, node):
    """The :class:`~wrapkit.ref.datapath.MacConfig` of a conv2d/linear node."""
    if node.kind not in ("conv2d", "linear"):
        raise ValueError(f"node {node.name} is a {node.kind}, not a conv2d or linear node")
    acc = node.attrs["acc"]
    if acc.mode not in ("wrap", "cyclic"):
        raise ValueError(f"node {node.name} has a {acc.mode} accumulator; a MAC stream needs "
                         "a wrap or cyclic register")
    kind = node.attrs["weight_kind"]
    if kind == "int":
        raise ValueError(f"node {node.name} has unconstrained int weights; a MAC needs "
                         "binary, ternary or uniform weights")
    t = graph.type_of(node.inputs[0])
    return MacConfig(t.bits, t.signed, kind, node.attrs["weight_bits"], acc.bits, acc.k)


def node_stream(graph, node, x, y, max_dots=None):
    """The stream of ``node`` on its input codes ``x`` (batch-first) whose output was ``y``.

    Returns
    -------
    (MacOpStream, MacConfig)
    """
    cfg = node_mac_config(graph, node)
    w = node.weights["weight"]
    if node.kind == "conv2d":
        a = node.attrs
        if a["groups"] != 1:
            raise ValueError(f"node {node.name}: grouped convolutions stream per group; "
                             "only groups = 1 is supported here")
        rows, _ = conv_rows(x, w.shape[2:], a["stride"], a["padding"], a["dilation"])
        rows = rows[:, 0].reshape(-1, rows.shape[-1])            # (N·OH·OW, K)
        outs = np.moveaxis(y, 1, -1).reshape(-1, w.shape[0])      # (N·OH·OW, C_out)
    else:
        rows, outs = x.reshape(-1, x.shape[-1]), y.reshape(-1, w.shape[0])
    w_rows = encode_weights(w.reshape(len(w), -1), cfg.weight_kind, cfg.weight_bits)
    c = len(w)
    dots = len(rows) * c if max_dots is None else min(len(rows) * c, int(max_dots))
    used = -(-dots // c)
    a_rows = np.repeat(rows[:used], c, axis=0)[:dots]
    w_all = np.tile(w_rows, (used, 1))[:dots]
    out = outs[:used].reshape(-1)[:dots]
    return MacOpStream.from_dot_products(
        a_rows, w_all, final_acc=wrap(out, cfg.acc_bits) if cfg.k is None else None,
        final_out=out if cfg.k is None else None,
        source=f"node {node.name}"), cfg
