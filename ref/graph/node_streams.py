"""The MAC operation stream of any MAC-type graph node (conv2d, linear, matmul).

A MAC-type node runs on one MAC one output element at a time, in the order of the version-1
layer streams (:mod:`wrapkit.ref.streams`): output positions outermost, output channels
next, the fan-in innermost::

    for p in positions: for c in channels: for j in fan_in:  (a_table[row(p, c), j],
                                                               w_table[col(p, c), j])

=========  ===========================  =====================  =============================
kind       positions                    channels               the dot product of (p, c)
=========  ===========================  =====================  =============================
conv2d     (image, y, x)                output channels        the receptive field of ``p``
                                                               in ``c``'s group, fan-in
                                                               ``(c_in, ky, kx)``, times
                                                               filter ``c`` (a depthwise
                                                               filter sees one channel)
linear     every leading index          output features        the input row times weight
                                                               row ``c``
matmul     (batch, heads…, m)           columns ``p`` of B     row ``m`` of A times column
                                                               ``p`` of B (batch/head axes
                                                               outermost)
=========  ===========================  =====================  =============================

The fan-in order is the reduction order of :mod:`wrapkit.ref.ops.linear` (the order a
saturating accumulator would need; the MAC's wrapping accumulator does not care).

**The MAC for a node** (:func:`node_mac_config`): activations of the first input's type
(bits, signedness); weights of the node's ``weight_kind``/``weight_bits`` (``int`` weights:
uniform of the fewest bits that hold them). A matmul's second operand is an activation
tensor; it enters the MAC's weight port as signed ``uniform`` weights — a signed ``b``-bit
operand as ``b``-bit weights, an unsigned one as ``b + 1`` bits (its codes need a zero sign
bit) — encoded by :func:`wrapkit.ref.datapath.encode_weights` like any uniform weight
(two's complement, 2..16 bits). The accumulator: ``wrap`` -> ``acc_bits``; ``cyclic`` ->
``acc_bits`` and ``k``; ``exact`` -> the node's output width (which no dot product
overflows, so the wrapping register holds the exact sum). A ``saturate`` accumulator, an
activation wider than 32 bits or an operand wider than 16 bits has no MAC:
:class:`~wrapkit.common.errors.UserError`, one line naming the node and the reason.

**The stream** (:func:`node_stream`) carries ``final_acc = wrap(z, acc_bits)`` (the exact
dot products, recomputed here in int64) and ``final_out``: the node's output as the graph
engine computes it (given, or computed by the node kind's ``run``) — the MAC's ``y`` must
equal it.
"""

from dataclasses import dataclass

import numpy as np

from wrapkit.common.errors import UserError

from ..datapath import MacConfig, encode_weights, signed_bits_for_range, wrap
from ..ops.linear import conv_rows
from ..opstream import MacOpStream
from .registry import MAC_NODE_KINDS, NODE_KINDS

__all__ = ["NodeOperands", "mac_node_names", "node_mac_config", "node_operands",
           "node_statistics", "node_stream", "node_toggles"]

#: Widest operands the MAC generator builds (:class:`wrapkit.ref.datapath.MacConfig`).
_MAX_ACT_BITS, _MAX_WEIGHT_BITS = 32, 16


def mac_node_names(graph):
    """Names of the graph's MAC-type nodes (conv2d, linear, matmul), in graph order."""
    return [n.name for n in graph.nodes if n.kind in MAC_NODE_KINDS]


def _mac_node(graph, name):
    names = mac_node_names(graph)
    listing = ", ".join(names) if names else "none"
    known = {n.name: n for n in graph.nodes}
    if name not in known:
        raise UserError(f"the graph has no node {name!r}; its MAC nodes are {listing}")
    if known[name].kind not in MAC_NODE_KINDS:
        raise UserError(f"node {name!r} is a {known[name].kind} node, which runs on no MAC; "
                        f"choose a MAC node: {listing}")
    return known[name]


def _fail(node, reason):
    raise UserError(f"node {node.name} ({node.kind}) cannot run on the MAC: {reason}")


def _weight_width(node, values):
    """(kind, bits) of a conv2d/linear node's weights on the MAC's weight port."""
    kind, bits = node.attrs["weight_kind"], node.attrs["weight_bits"]
    if kind != "int":
        return kind, bits
    lo, hi = (int(values.min()), int(values.max())) if values.size else (0, 0)
    bits = max(2, signed_bits_for_range(lo, hi))
    if bits > _MAX_WEIGHT_BITS:
        _fail(node, f"its weights need {bits} bits; the MAC takes at most {_MAX_WEIGHT_BITS}")
    return "uniform", bits


def node_mac_config(graph, name):
    """The :class:`~wrapkit.ref.datapath.MacConfig` that runs node ``name`` (module docstring).

    Raises
    ------
    UserError
        No such node, not a MAC-type node, or a node the MAC cannot implement.
    """
    node = _mac_node(graph, name)
    a_type = graph.type_of(node.inputs[0])
    if a_type.bits > _MAX_ACT_BITS:
        _fail(node, f"its input codes are {a_type.bits} bits wide; the MAC takes at most "
                    f"{_MAX_ACT_BITS}")
    if node.kind == "matmul":
        b_type = graph.type_of(node.inputs[1])
        kind, bits = "uniform", max(2, b_type.bits + (0 if b_type.signed else 1))
        if bits > _MAX_WEIGHT_BITS:
            _fail(node, f"its second operand ({b_type.describe()}) needs {bits}-bit signed "
                        f"weights; the MAC's weight port takes at most {_MAX_WEIGHT_BITS}")
    else:
        kind, bits = _weight_width(node, node.weights["weight"])
    acc = node.attrs["acc"]
    if acc.mode == "saturate":
        _fail(node, "its accumulator saturates, and the MAC's accumulator wraps (no "
                    "saturating MAC is generated)")
    acc_bits = node.output.bits if acc.mode == "exact" else acc.bits
    return MacConfig(a_type.bits, bool(a_type.signed), kind,
                     bits if kind == "uniform" else None, acc_bits,
                     acc.k if acc.mode == "cyclic" else None)


@dataclass(frozen=True)
class NodeOperands:
    """A MAC-type node's dot products as two row tables and an index map.

    Dot product ``d`` (stream order, module docstring) is ``a_table[a_index(d)]`` times
    ``w_table[w_index(d)]``. ``a_table`` holds activation codes, ``w_table`` the *values* of
    the other operand (weights, or matmul's B columns); ``w_codes`` their MAC weight codes.

    Attributes
    ----------
    a_table : int array (RA, K)
    w_table : int64 array (RW, K)
    w_codes : int64 array (RW, K)
    shape : tuple of int
        ``(blocks, positions, channels)``: the stream's three loops outside the fan-in.
    a_of, w_of : callable
        ``(block, position, channel) -> row`` of ``a_table`` / ``w_table`` (vectorised).
    cfg : MacConfig
    """

    a_table: np.ndarray
    w_table: np.ndarray
    w_codes: np.ndarray
    shape: tuple
    a_of: object
    w_of: object
    cfg: MacConfig

    @property
    def fan_in(self):
        return self.a_table.shape[1]

    @property
    def dots(self):
        """Dot products (output elements) in all."""
        return int(np.prod(self.shape))

    def indices(self, start=0, stop=None):
        """Rows of ``a_table`` and ``w_table`` of dot products ``start .. stop - 1``."""
        stop = self.dots if stop is None else min(int(stop), self.dots)
        return self.rows_of(np.arange(start, stop))

    def rows_of(self, dots):
        """Rows of ``a_table`` and ``w_table`` of the dot products numbered ``dots``."""
        blk, pos, ch = np.unravel_index(np.asarray(dots, dtype=np.int64), self.shape)
        return self.a_of(blk, pos, ch), self.w_of(blk, pos, ch)

    def stream(self, dots, source="node"):
        """The dot products numbered ``dots`` (in that order) as a MacOpStream."""
        ai, wi = self.rows_of(dots)
        return MacOpStream.from_dot_products(self.a_table[ai], self.w_codes[wi], source=source)


def node_operands(graph, name, inputs, *, require_mac=True):
    """The :class:`NodeOperands` of MAC node ``name`` given its input arrays.

    Parameters
    ----------
    graph : Graph
    name : str
    inputs : list of arrays
        The node's inputs, batch first, as the graph engine computes them
        (``GraphEngine.run(..., keep=node.inputs)``).
    require_mac : bool
        False: a node the MAC cannot run (a saturating accumulator, operands too wide) still
        gets its tables, with ``cfg`` and ``w_codes`` None (for statistics).

    Raises
    ------
    UserError
        As :func:`node_mac_config` (with ``require_mac``).
    """
    node = _mac_node(graph, name)
    try:
        cfg = node_mac_config(graph, name)
    except UserError:
        if require_mac:
            raise
        cfg = None
    x = np.asarray(inputs[0])
    if node.kind == "conv2d":
        w = np.asarray(node.weights["weight"]).astype(np.int64)
        c_out, _, kh, kw = w.shape
        a = node.attrs
        groups = a["groups"]
        rows, (oh, ow) = conv_rows(x, (kh, kw), a["stride"], a["padding"], a["dilation"],
                                   groups)                       # (N, G, L, K), (c, ky, kx)
        n, _, positions, k = rows.shape
        per_group = c_out // groups
        a_table = rows.reshape(n * groups * positions, k)
        w_table = w.reshape(c_out, k)

        def a_of(blk, pos, ch):
            img, p = np.divmod(pos, positions)
            return (img * groups + ch // per_group) * positions + p

        shape = (1, n * positions, c_out)
        w_of = (lambda blk, pos, ch: ch)
    elif node.kind == "linear":
        w_table = np.asarray(node.weights["weight"]).astype(np.int64)
        a_table = x.reshape(-1, x.shape[-1])
        shape = (1, len(a_table), len(w_table))
        a_of = (lambda blk, pos, ch: pos)
        w_of = (lambda blk, pos, ch: ch)
    else:
        b = np.asarray(inputs[1])
        m, k, p = x.shape[-2], x.shape[-1], b.shape[-1]
        a_table = x.reshape(-1, k)
        w_table = np.swapaxes(b, -1, -2).reshape(-1, k).astype(np.int64)
        shape = (len(a_table) // m, m, p)
        a_of = (lambda blk, pos, ch: blk * m + pos)
        w_of = (lambda blk, pos, ch: blk * p + ch)
    w_codes = None if cfg is None else encode_weights(w_table, cfg.weight_kind,
                                                      cfg.weight_bits)
    return NodeOperands(a_table, w_table, w_codes, shape, a_of, w_of, cfg)


def _flat_output(node, out):
    """The node's output array flattened in stream order."""
    out = np.asarray(out)
    if node.kind == "conv2d":
        out = out.transpose(0, 2, 3, 1)               # positions (image, y, x), then channels
    return out.reshape(-1)


def node_stream(graph, name, inputs, output=None, max_dots=None):
    """The MAC operation stream of MAC node ``name`` (module docstring).

    Parameters
    ----------
    graph : Graph
    name : str
    inputs : list of arrays
        The node's inputs (batch first), from the graph engine.
    output : array, optional
        The node's output from the graph engine; default: the node kind's ``run`` on
        ``inputs`` (what the engine computes).
    max_dots : int, optional
        Keep only the first ``max_dots`` dot products.

    Returns
    -------
    (MacOpStream, MacConfig)
        The stream (``dots × fan_in`` operations, ``final_acc``/``final_out`` per dot
        product) and the MAC it needs.
    """
    node = _mac_node(graph, name)
    ops = node_operands(graph, name, inputs)
    if output is None:
        output = NODE_KINDS[node.kind].run(node, *inputs)
    flat = _flat_output(node, output)
    if len(flat) != ops.dots:
        raise ValueError(f"node {name}: output has {len(flat)} elements, expected {ops.dots}")
    dots = ops.dots if max_dots is None else min(ops.dots, int(max_dots))
    ai, wi = ops.indices(0, dots)
    a_rows = ops.a_table[ai].astype(np.int64)
    z = np.einsum("ij,ij->i", a_rows, ops.w_table[wi])
    cfg = ops.cfg
    stream = MacOpStream.from_dot_products(
        a_rows, ops.w_codes[wi], final_acc=wrap(z, cfg.acc_bits), final_out=flat[:dots],
        source=f"node {name} ({node.kind})")
    return stream, cfg


def _bits(x, nbits):
    return ((np.asarray(x, dtype=np.int64)[..., None] >> np.arange(nbits)) & 1).astype(np.int8)


def node_toggles(operands, chunk_dots=4096):
    """Bit toggles of the MAC's two operand inputs over the node's whole operation stream.

    Counted on the stream in pieces of ``chunk_dots`` dot products (the stream is never held
    whole), dot-product boundaries included.

    Returns
    -------
    (a_toggles, w_toggles, transitions)
        Toggle counts per bit (LSB first) of the activation (two's-complement code of
        ``act_bits``) and the weight code, and the number of consecutive operation pairs.
    """
    cfg = operands.cfg
    a_bits, w_bits = cfg.act_bits, cfg.weight_code_bits
    a_mask = (1 << a_bits) - 1
    a_t, w_t = np.zeros(a_bits, np.int64), np.zeros(w_bits, np.int64)
    prev = None
    for start in range(0, operands.dots, chunk_dots):
        ai, wi = operands.indices(start, start + chunk_dots)
        a = (operands.a_table[ai].astype(np.int64) & a_mask).reshape(-1)
        w = operands.w_codes[wi].reshape(-1)
        if prev is not None:
            a, w = np.concatenate(([prev[0]], a)), np.concatenate(([prev[1]], w))
        a_t += (_bits(a[1:], a_bits) != _bits(a[:-1], a_bits)).sum(axis=0)
        w_t += (_bits(w[1:], w_bits) != _bits(w[:-1], w_bits)).sum(axis=0)
        prev = (a[-1], w[-1])
    return a_t, w_t, max(0, operands.dots * operands.fan_in - 1)


def node_statistics(operands, acc, chunk_dots=4096, *, toggles=True):
    """What the node's accumulator and operands do over its whole stream, in one pass.

    Parameters
    ----------
    operands : NodeOperands
    acc : wrapkit.ref.ops.AccumulatorMode
        The node's accumulator.
    toggles : bool
        Also count operand toggles (:func:`node_toggles`; needs the node's MAC).

    Returns
    -------
    dict
        Counts ``dots``, ``macs``, ``overflows`` (dot products whose exact sum lies outside
        the accumulator's range), ``cyclic_folds`` (dot products the cyclic activation folds
        back, ``|wrap(z)| > T``), ``a_zeros``, ``max_abs_z`` (largest exact ``|z|``); rates
        ``overflow_rate`` (None for ``exact``), ``cyclic_fold_rate`` (None without a cyclic
        activation), ``a_zero_fraction``; with ``toggles``, ``a_toggles``/``w_toggles`` per
        bit, ``transitions`` and their means per bit and operation pair,
        ``a_toggles_per_bit``/``w_toggles_per_bit``.
    """
    from ..datapath import cyclic_threshold

    bits = None if acc.mode == "exact" else acc.bits
    over = folds = zeros = top = 0
    for start in range(0, operands.dots, chunk_dots):
        ai, wi = operands.indices(start, start + chunk_dots)
        a = operands.a_table[ai].astype(np.int64)
        zeros += int(np.count_nonzero(a == 0))
        z = np.einsum("ij,ij->i", a, operands.w_table[wi])
        top = max(top, int(np.abs(z).max()) if z.size else 0)
        if bits is None:
            continue
        m = wrap(z, bits)
        over += int(np.count_nonzero(m != z))
        if acc.mode == "cyclic":
            folds += int(np.count_nonzero(np.abs(m) > cyclic_threshold(bits, acc.k)))
    dots, macs = operands.dots, operands.dots * operands.fan_in
    out = {"dots": dots, "macs": macs, "overflows": over, "cyclic_folds": folds,
           "a_zeros": zeros, "max_abs_z": top,
           "overflow_rate": None if bits is None else over / max(dots, 1),
           "cyclic_fold_rate": folds / max(dots, 1) if acc.mode == "cyclic" else None,
           "a_zero_fraction": zeros / max(macs, 1)}
    if toggles:
        a_t, w_t, pairs = node_toggles(operands, chunk_dots)
        out.update(a_toggles=a_t.tolist(), w_toggles=w_t.tolist(), transitions=pairs,
                   a_toggles_per_bit=float(a_t.mean() / pairs) if pairs else 0.0,
                   w_toggles_per_bit=float(w_t.mean() / pairs) if pairs else 0.0)
    return out
