"""MAC-type nodes of an integer graph as array jobs: conv2d (groups, dilation), linear, matmul.

No Amaranth import. A node of :mod:`wrapkit.ref.graph` becomes one
:class:`~wrapkit.hw.array.jobs.LayerJob` per sample (and, for a matmul with batch or head
axes, per slice), with the node's own MAC (:func:`node_mac`) and no requantization: the
array writes the node's output ``y`` (its accumulator's value), which the graph engine
computes too.

==============================  =============================================================
node                            array job(s)
==============================  =============================================================
conv2d ``C×H×W``                one conv job: square kernel, stride, padding and dilation,
                                any groups (depthwise included)
linear ``(F,)``                 one linear job
linear ``(..., F)``             one 1x1 conv over the ``prod(...)`` leading positions (the
                                tokens of an attention block share the weights)
matmul ``(..., M, K)·(..., K, N)``  one matmul job per leading index (batch, head): the
                                second operand changes with it, so the weight buffer is
                                reloaded for each
==============================  =============================================================

Accumulators: ``wrap`` and ``cyclic`` are the array's own; ``exact`` runs as a wrapping
accumulator as wide as the node's output type (the width that never overflows), which
equals the exact sum; ``saturate`` is refused (the array's adders wrap).
"""

import numpy as np

from wrapkit.common.errors import UserError
from wrapkit.ref.datapath import MacConfig, encode_weights, signed_bits_for_range

from .jobs import LayerJob, LayerShape, matmul_job, matmul_operand_mac

__all__ = ["ARRAY_NODE_KINDS", "array_nodes", "node_describe", "node_jobs", "node_mac",
           "node_output", "node_shape"]

#: The graph node kinds the array runs.
ARRAY_NODE_KINDS = ("conv2d", "linear", "matmul")


def array_nodes(graph):
    """Names of the graph's nodes the array can run (its MAC-type nodes)."""
    return [n.name for n in graph.nodes if n.kind in ARRAY_NODE_KINDS]


def _where(node):
    return f"node {node.name} ({node.kind})"


def _acc_bits_and_k(node):
    acc = node.attrs["acc"]
    if acc.mode == "saturate":
        raise UserError(f"{_where(node)} has a saturating accumulator; the array's "
                        "accumulators wrap (it runs wrap, cyclic and exact accumulators)")
    if acc.mode == "exact":
        return node.output.bits, None
    return acc.bits, acc.k


def _weight_kind(node):
    """(kind, bits) of the node's weights as the array encodes them (``int`` weights become
    uniform ones just wide enough)."""
    kind, bits = node.attrs["weight_kind"], node.attrs["weight_bits"]
    if kind == "int":
        w = node.weights["weight"]
        lo, hi = (int(w.min()), int(w.max())) if w.size else (0, 0)
        return "uniform", max(2, signed_bits_for_range(lo, hi))
    return kind, bits


def node_mac(graph, node):
    """The :class:`~wrapkit.ref.MacConfig` of a MAC-type node's jobs."""
    acc_bits, k = _acc_bits_and_k(node)
    a = graph.type_of(node.inputs[0])
    try:
        if node.kind == "matmul":
            b = graph.type_of(node.inputs[1])
            return matmul_operand_mac(a.bits, a.signed, b.bits, b.signed, acc_bits, k)
        kind, bits = _weight_kind(node)
        return MacConfig(a.bits, a.signed, kind, bits, acc_bits, k)
    except ValueError as exc:
        raise UserError(f"{_where(node)}: {exc}") from None


def _square(node, name):
    pair = tuple(node.attrs[name])
    if pair[0] != pair[1]:
        raise UserError(f"{_where(node)} has {name} {pair[0]}x{pair[1]}; the array runs equal "
                        f"{name} on both axes")
    return pair[0]


def node_shape(graph, node):
    """The :class:`LayerShape` of one job of ``node`` (UserError for what the array does not
    run, naming the node and the parameter)."""
    if node.kind not in ARRAY_NODE_KINDS:
        raise UserError(f"{_where(node)} is not a MAC-type node; the array runs "
                        f"{', '.join(ARRAY_NODE_KINDS)} nodes")
    x = graph.type_of(node.inputs[0]).shape
    try:
        if node.kind == "matmul":
            m, k = x[-2:]
            return LayerShape.matmul(m, k, graph.type_of(node.inputs[1]).shape[-1])
        w = node.weights["weight"]
        if node.kind == "linear":
            positions = int(np.prod(x[:-1], dtype=np.int64))
            if len(x) == 1:
                return LayerShape.linear(x[-1], w.shape[0])
            return LayerShape.conv2d(x[-1], positions, 1, w.shape[0], 1)
        kh, kw = w.shape[2:]
        if kh != kw:
            raise UserError(f"{_where(node)} has a {kh}x{kw} kernel; the array runs square "
                            "kernels")
        stride, padding, dilation = (_square(node, n) for n in ("stride", "padding",
                                                                  "dilation"))
        return LayerShape.conv2d(x[0], x[1], x[2], w.shape[0], kh, stride, padding,
                                 node.attrs["groups"], dilation)
    except ValueError as exc:
        raise UserError(f"{_where(node)}: {exc}") from None


def node_describe(graph, node):
    """One job of ``node`` in words, naming what the node is (a linear node over tokens runs
    as a 1x1 convolution; a matmul with batch or head axes as one job per slice)."""
    shape = node_shape(graph, node)
    x = graph.type_of(node.inputs[0]).shape
    if node.kind == "linear" and len(x) > 1:
        return (f"linear {shape.in_channels}->{shape.out_channels} over {shape.positions} "
                "positions (a 1x1 conv)")
    if node.kind == "matmul" and len(x) > 2:
        slices = int(np.prod(x[:-2], dtype=np.int64))
        return f"{shape.describe()}, {slices} slices per sample"
    return shape.describe()


def node_jobs(graph, node, inputs):
    """The jobs of ``node`` for a batch: ``inputs`` are its input tensors, batch first.

    Returns a list of :class:`LayerJob`, sample-major (then the matmul's leading indices in
    C order), named ``<node>[image i]`` or ``<node>[image i, slice j]``.
    """
    shape = node_shape(graph, node)
    mac = node_mac(graph, node)
    x = np.asarray(inputs[0], dtype=np.int64)
    jobs = []
    if node.kind == "matmul":
        b = np.asarray(inputs[1], dtype=np.int64)
        lead = x.shape[1:-2]
        for i in range(len(x)):
            for j, idx in enumerate(np.ndindex(*lead)):
                name = f"{node.name}[image {i}" + (f", slice {j}]" if lead else "]")
                jobs.append(matmul_job(x[i][idx], b[i][idx], mac, name=name))
        return jobs
    kind, bits = mac.weight_kind, mac.weight_bits
    w = node.weights["weight"].astype(np.int64).reshape(shape.out_channels, shape.fan_in)
    codes_w = encode_weights(w, kind, bits)
    for i in range(len(x)):
        codes = x[i] if node.kind == "conv2d" else x[i].reshape(-1, x.shape[-1]).T
        jobs.append(LayerJob(shape, mac, codes, codes_w, None, f"{node.name}[image {i}]"))
    return jobs


def node_output(graph, node, outputs):
    """The array's job outputs (``(out_channels, positions)`` each, in :func:`node_jobs`'s
    order) as the node's output tensor, batch first — comparable with the engine's."""
    out_shape = node.output.shape
    if node.kind == "conv2d":
        return np.stack([o.reshape(out_shape) for o in outputs])
    if node.kind == "linear":
        return np.stack([o.T.reshape(out_shape) for o in outputs])
    per_sample = int(np.prod(out_shape[:-2], dtype=np.int64))
    slices = [o.T for o in outputs]                          # each (M, N)
    return np.stack([np.stack(slices[i:i + per_sample]).reshape(out_shape)
                     for i in range(0, len(slices), per_sample)])

