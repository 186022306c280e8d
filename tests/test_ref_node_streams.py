"""MAC operation streams of graph nodes (wrapkit.ref.graph.node_streams): conv2d (grouped,
depthwise, strided, dilated), linear and matmul against a direct loop over the outputs, the
MAC each needs, and the nodes the MAC cannot run refused in one line."""

import numpy as np
import pytest

from wrapkit.common.errors import UserError
from wrapkit.ref import ops
from wrapkit.ref.datapath import decode_weights, mac_dot
from wrapkit.ref.graph import Graph, GraphEngine, TensorType, infer_types, new_node
from wrapkit.ref.graph.node_streams import (mac_node_names, node_mac_config, node_operands,
                                            node_stream, node_toggles)

RNG = np.random.default_rng(5)


def _codes(shape, t):
    lo, hi = t.code_range
    return RNG.integers(lo, hi + 1, size=shape)


def _graph(kind, in_types, attrs, weights=None):
    inputs = {f"x{i}": t for i, t in enumerate(in_types)}
    node = new_node("mac", kind, list(inputs), attrs, weights)
    after = new_node("after", "flatten", ["mac"])
    return infer_types(Graph(inputs, [node, after], ["after"]))


def _direct_dots(kind, attrs, weights, xs):
    """(a rows, weight-value rows) of every output element, by explicit loops."""
    a_rows, w_rows = [], []
    if kind == "conv2d":
        x, w = xs[0], weights["weight"].astype(np.int64)
        c_out, cg, kh, kw = w.shape
        (sh, sw), (ph, pw), (dh, dw), g = (attrs["stride"], attrs["padding"],
                                           attrs["dilation"], attrs["groups"])
        xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        oh = (x.shape[2] + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        ow = (x.shape[3] + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        for n in range(len(x)):
            for oy in range(oh):
                for ox in range(ow):
                    for c in range(c_out):
                        grp = c // (c_out // g)
                        patch = [xp[n, grp * cg + ci, oy * sh + ky * dh, ox * sw + kx * dw]
                                 for ci in range(cg) for ky in range(kh) for kx in range(kw)]
                        a_rows.append(patch)
                        w_rows.append(w[c].reshape(-1))
    elif kind == "linear":
        x, w = xs[0], weights["weight"].astype(np.int64)
        for row in x.reshape(-1, x.shape[-1]):
            for c in range(len(w)):
                a_rows.append(row)
                w_rows.append(w[c])
    else:
        a, b = xs
        for blk in np.ndindex(a.shape[:-2]):
            for m in range(a.shape[-2]):
                for p in range(b.shape[-1]):
                    a_rows.append(a[blk][m])
                    w_rows.append(b[blk][:, p])
    return np.array(a_rows), np.array(w_rows)


U4, S6 = TensorType.integer((6, 7, 7), 4, False), TensorType.integer((6, 7, 7), 6, True)
CASES = [
    ("plain conv, ternary, cyclic", "conv2d", [U4],
     {"acc": ops.AccumulatorMode("cyclic", 8, 2), "padding": 1, "weight_kind": "ternary"},
     {"weight": RNG.integers(-1, 2, size=(4, 6, 3, 3)).astype(np.int8)}),
    ("depthwise, strided, signed input, 5-bit weights", "conv2d", [S6],
     {"acc": ops.AccumulatorMode("wrap", 10), "stride": 2, "padding": 1, "groups": 6,
      "weight_kind": "uniform", "weight_bits": 5},
     {"weight": RNG.integers(-15, 16, size=(6, 1, 3, 3)).astype(np.int8)}),
    ("grouped, dilated, exact", "conv2d", [U4],
     {"acc": ops.AccumulatorMode("exact"), "dilation": 2, "groups": 2, "weight_kind": "int"},
     {"weight": RNG.integers(-40, 41, size=(4, 3, 2, 2)).astype(np.int8)}),
    ("linear over tokens, binary", "linear", [TensorType.integer((3, 10), 3, False)],
     {"acc": ops.AccumulatorMode("wrap", 6), "weight_kind": "binary"},
     {"weight": RNG.choice([-1, 1], size=(5, 10)).astype(np.int8)}),
    ("matmul signed x signed", "matmul",
     [TensorType.integer((2, 4, 5), 8, True), TensorType.integer((2, 5, 3), 8, True)],
     {"acc": ops.AccumulatorMode("wrap", 12)}, None),
    ("matmul unsigned probabilities x signed", "matmul",
     [TensorType.integer((4, 4), 8, False), TensorType.integer((4, 6), 7, False)],
     {"acc": ops.AccumulatorMode("cyclic", 12, 3)}, None),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_node_stream_is_every_output_element_in_mac_order(case):
    _, kind, in_types, attrs, weights = case
    graph = _graph(kind, in_types, attrs, weights)
    xs = [_codes((2, *t.shape), t) for t in in_types]
    out = GraphEngine(graph).run({f"x{i}": x for i, x in enumerate(xs)}, keep=["mac"])["mac"]
    stream, cfg = node_stream(graph, "mac", xs, output=out)
    assert cfg == node_mac_config(graph, "mac")
    node = graph.node("mac")
    a_rows, w_rows = _direct_dots(kind, node.attrs, node.weights, xs)
    k = a_rows.shape[1]
    assert stream.dots == len(a_rows) == out.size and len(stream) == out.size * k
    np.testing.assert_array_equal(stream.a.reshape(-1, k), a_rows)
    np.testing.assert_array_equal(
        decode_weights(stream.w, cfg.weight_kind, cfg.weight_bits).reshape(-1, k), w_rows)
    # final_out is the engine's output in stream order; the MAC reproduces it and final_acc.
    order = out.transpose(0, 2, 3, 1) if kind == "conv2d" else out
    np.testing.assert_array_equal(stream.final_out, order.reshape(-1))
    acc, y = stream.reference(cfg)
    assert stream.final_mismatches(acc, y) == 0
    acc_dot, y_dot = mac_dot(a_rows, stream.w.reshape(-1, k), cfg)
    np.testing.assert_array_equal(y_dot, stream.final_out)
    # A prefix of whole dot products.
    short, _ = node_stream(graph, "mac", xs, max_dots=7)
    assert short.dots == 7 and np.array_equal(short.a, stream.a[:7 * k])
    # Toggles counted without holding the stream equal the materialised stream's.
    a_t, w_t, pairs = node_toggles(node_operands(graph, "mac", xs), chunk_dots=5)
    codes = stream.a & ((1 << cfg.act_bits) - 1)
    bits = lambda v, n: (v[:, None] >> np.arange(n)) & 1   # noqa: E731
    np.testing.assert_array_equal(a_t, (np.diff(bits(codes, cfg.act_bits), axis=0) != 0).sum(0))
    np.testing.assert_array_equal(
        w_t, (np.diff(bits(stream.w, cfg.weight_code_bits), axis=0) != 0).sum(0))
    assert pairs == len(stream) - 1


def test_mac_configs_of_nodes():
    g = _graph(*CASES[5][1:])                # unsigned 7-bit B -> 8-bit signed weights
    cfg = node_mac_config(g, "mac")
    assert (cfg.act_bits, cfg.act_signed, cfg.weight_kind, cfg.weight_bits, cfg.acc_bits,
            cfg.k) == (8, False, "uniform", 8, 12, 3)
    g = _graph(*CASES[2][1:])                # exact: the output's width; int weights: 7 bits
    cfg = node_mac_config(g, "mac")
    assert cfg.acc_bits == g.node("mac").output.bits and cfg.k is None
    assert (cfg.weight_kind, cfg.weight_bits) == ("uniform", 7)
    assert mac_node_names(g) == ["mac"]


@pytest.mark.parametrize("kind,in_types,attrs,weights,node,message", [
    ("conv2d", [U4], {"acc": ops.AccumulatorMode("saturate", 8), "weight_kind": "ternary"},
     {"weight": np.ones((2, 6, 1, 1), np.int8)}, "mac",
     r"^node mac \(conv2d\) cannot run on the MAC: its accumulator saturates"),
    ("matmul", [TensorType.integer((4, 4), 8, True), TensorType.integer((4, 4), 16, False)],
     {"acc": ops.AccumulatorMode("wrap", 20)}, None, "mac",
     r"^node mac \(matmul\) cannot run on the MAC: its second operand \(int16u\[4, 4\]\) "
     r"needs 17-bit signed weights"),
    ("linear", [TensorType.integer((4,), 4, False)],
     {"acc": ops.AccumulatorMode("wrap", 8), "weight_kind": "binary"},
     {"weight": np.ones((2, 4), np.int8)}, "after",
     r"^node 'after' is a flatten node, which runs on no MAC; choose a MAC node: mac$"),
    ("linear", [TensorType.integer((4,), 4, False)],
     {"acc": ops.AccumulatorMode("wrap", 8), "weight_kind": "binary"},
     {"weight": np.ones((2, 4), np.int8)}, "nope",
     r"^the graph has no node 'nope'; its MAC nodes are mac$"),
])
def test_nodes_without_a_mac_are_refused_in_one_line(kind, in_types, attrs, weights, node,
                                                     message):
    g = _graph(kind, in_types, attrs, weights)
    with pytest.raises(UserError, match=message) as info:
        node_mac_config(g, node)
    assert "\n" not in str(info.value)


def test_graph_node_stats_count_overflows_folds_and_toggles_batch_by_batch():
    from wrapkit.ref.graph.node_stats import GraphNodeStats

    _, kind, in_types, attrs, weights = CASES[0]          # cyclic 8-bit conv: folds happen
    graph = _graph(kind, in_types, {**attrs, "acc": ops.AccumulatorMode("cyclic", 6, 2)},
                   weights)
    x = _codes((9, *in_types[0].shape), in_types[0])
    engine = GraphEngine(graph)
    z = ops.conv2d(x, weights["weight"], padding=1)       # exact sums
    m = ops.AccumulatorMode("wrap", 6).finish(z)
    rows = []
    for batch in (2, 9):
        stats = GraphNodeStats(graph, toggle_images=3)
        assert stats.keep == []                          # the node reads the graph input
        for start in range(0, len(x), batch):
            feeds = engine.check_inputs(x[start:start + batch])
            stats.add({**feeds, **engine.run_batch(feeds, keep=stats.keep)})
        rows.append(stats.to_dicts()[0])
    first, second = rows
    assert first == second                               # batching does not change a count
    assert first["images"] == 9 and first["dots"] == z.size
    assert first["overflows"] == int(np.count_nonzero(m != z)) > 0
    t = (2 * 32) // 3                                    # T = floor(k·2^(b-1)/(k+1)) = 21
    assert first["cyclic_folds"] == int(np.count_nonzero(np.abs(m) > t)) > 0
    assert first["max_abs_z"] == int(np.abs(z).max())
    a_t, w_t, pairs = node_toggles(node_operands(graph, "mac", [x[:3]]))
    assert first["toggles"]["images"] == 3 and first["toggles"]["transitions"] == pairs
    np.testing.assert_allclose(first["toggles"]["a_per_bit"], a_t / pairs)
