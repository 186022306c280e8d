"""The integer graph (wrapkit.ref.graph): one small network per node kind against direct
ref.ops calls, version-2 files, version-1 files converted and run equal to the chain engine,
and every kind of bad file refused in one line naming the node."""

import json
import struct

import numpy as np
import pytest

from wrapkit.common.errors import UserError
from wrapkit.ref import ops
from wrapkit.ref.engine import Engine
from wrapkit.ref.graph import (NODE_KINDS, Graph, GraphEngine, TensorType, decode_graph,
                               encode_graph, infer_types, new_node, read_graph, write_graph)
from wrapkit.ref.requant import requantize
from wrapkit.ref.wkx import encode

RNG = np.random.default_rng(12)


def _ints(shape, bits, signed):
    lo, hi = ops_range(bits, signed)
    return RNG.integers(lo, hi + 1, size=shape)


def ops_range(bits, signed):
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def _single(kind, in_types, attrs=None, weights=None):
    """A one-node graph over inputs x0, x1, ... of the given types."""
    inputs = {f"x{i}": t for i, t in enumerate(in_types)}
    node = new_node("n", kind, list(inputs), attrs, weights)
    return infer_types(Graph(inputs, [node], ["n"]))


def _feeds(in_types, n=3):
    return {f"x{i}": (_ints((n, *t.shape), t.bits, t.signed) if t.is_int
                      else RNG.standard_normal((n, *t.shape)).astype(np.float32))
            for i, t in enumerate(in_types)}


U8 = lambda *s: TensorType.integer(s, 8, False, 0.05)        # noqa: E731
S8 = lambda *s: TensorType.integer(s, 8, True, 0.1)          # noqa: E731
F32 = TensorType.float32
WRAP8 = ops.AccumulatorMode("wrap", 8)
W3 = RNG.integers(-1, 2, size=(6, 4, 3, 3)).astype(np.int8)
W_DW = RNG.integers(-7, 8, size=(4, 1, 3, 3)).astype(np.int8)
W_LIN = RNG.choice([-1, 1], size=(5, 12)).astype(np.int8)
TABLE = np.clip(np.arange(256) // 3 - 20, -8, 7).astype(np.int64)
LN_M, LN_B, LN_SHIFT = ops.layer_norm_constants(np.linspace(0.5, 1.5, 8), np.zeros(8), n=8,
                                                out_scale=1 / 16)

# kind -> list of (input types, attrs, weights, reference function of the inputs)
CASES = {
    "conv2d": [
        ([U8(4, 7, 7)], {"acc": WRAP8, "padding": 1, "weight_kind": "ternary"}, {"weight": W3},
         lambda x: ops.conv2d(x, W3, padding=1, acc=WRAP8)),
        ([U8(4, 9, 9)], {"acc": ops.AccumulatorMode("saturate", 10), "groups": 4,
                         "stride": 2, "dilation": 2, "weight_kind": "uniform",
                         "weight_bits": 4}, {"weight": W_DW},
         lambda x: ops.conv2d(x, W_DW, stride=2, dilation=2, groups=4,
                              acc=ops.AccumulatorMode("saturate", 10))),
        ([S8(4, 5, 5)], {"acc": ops.AccumulatorMode("exact")}, {"weight": W3},
         lambda x: ops.conv2d(x, W3)),
    ],
    "linear": [([U8(12)], {"acc": ops.AccumulatorMode("cyclic", 8, 2),
                           "weight_kind": "binary"}, {"weight": W_LIN},
                lambda x: ops.linear(x, W_LIN, acc=ops.AccumulatorMode("cyclic", 8, 2)))],
    "matmul": [([S8(2, 3, 5), S8(2, 5, 4)], {"acc": ops.AccumulatorMode("wrap", 12)}, {},
                lambda a, b: ops.matmul(a, b, acc=ops.AccumulatorMode("wrap", 12)))],
    "requant": [([S8(3, 2, 2)], {"out_bits": 4, "out_signed": False},
                 {"multiplier": np.array([1 << 20, 3 << 19, 5 << 18]),
                  "bias": np.array([1 << 21, -(1 << 22), 0]), "shift": np.array([22, 22, 23])},
                 lambda y: requantize(y, np.array([1 << 20, 3 << 19, 5 << 18])[:, None, None],
                                      np.array([1 << 21, -(1 << 22), 0])[:, None, None],
                                      np.array([22, 22, 23])[:, None, None], 15)),
                ([S8(2, 3)], {"out_bits": 4, "out_signed": True, "axis": 1},
                 {"multiplier": np.array([3, 5, 7]), "bias": np.array([0, 1, -1]),
                  "shift": np.array([2, 3, 4])},
                 lambda y: requantize(y, np.array([3, 5, 7]), np.array([0, 1, -1]),
                                      np.array([2, 3, 4]), 7, -8))],
    "rescale": [([S8(5)], {"multiplier": 154, "shift": 9, "out_bits": 6, "out_signed": True},
                 {}, lambda x: ops.rescale(x, 154, 9, 6, True))],
    "add": [([S8(2, 3, 3), U8(2, 3, 3)], {"m_a": 128, "m_b": 51, "shift": 8, "out_bits": 8,
                                          "out_signed": False}, {},
             lambda a, b: ops.add(a, b, 128, 51, 8, out_bits=8, out_signed=False))],
    "concat": [([U8(2, 3, 3), U8(3, 3, 3)], {}, {}, lambda a, b: ops.concat([a, b])),
               ([TensorType.integer((2, 4), 7, False), S8(1, 4)],
                {"rescales": [None, (3, 2)], "out_bits": 8, "out_signed": True, "axis": 1}, {},
                lambda a, b: ops.concat([a, b], rescales=[None, (3, 2)], out_bits=8,
                                        out_signed=True))],
    "max_pool2d": [([S8(2, 6, 6)], {"kernel": 3, "stride": 2, "padding": 1}, {},
                    lambda x: ops.max_pool2d(x, 3, 2, 1)),
                   ([F32((2, 4, 4))], {"kernel": 2}, {},
                    lambda x: x.reshape(3, 2, 2, 2, 2, 2).max(axis=(3, 5)))],
    "avg_pool2d": [([S8(2, 6, 6)], {"kernel": 2, "stride": 1}, {},
                    lambda x: ops.avg_pool2d(x, 2, 1))],
    "global_avg_pool2d": [([U8(3, 4, 4)], {}, {}, lambda x: ops.avg_pool2d(x, 4)),
                          ([F32((3, 4, 4))], {}, {},
                           lambda x: x.mean(axis=(2, 3), keepdims=True))],
    "upsample_nearest": [([U8(2, 3, 3)], {"scale": 2}, {},
                          lambda x: ops.upsample_nearest(x, 2))],
    "pixel_shuffle": [([U8(8, 3, 3)], {"factor": 2}, {}, lambda x: ops.pixel_shuffle(x, 2))],
    "pixel_unshuffle": [([U8(2, 4, 6)], {"factor": 2}, {},
                         lambda x: ops.pixel_unshuffle(x, 2))],
    "pad": [([U8(2, 3, 3)], {"pads": [0, 2, 1, 0, 0, 1]}, {},
             lambda x: ops.pad(x, [0, 2, 1, 0, 0, 1])),
            ([F32((2, 3))], {"pads": [1, 1, 0, 0]}, {},
             lambda x: np.pad(x, [(0, 0), (1, 1), (0, 0)]))],
    "reshape": [([U8(2, 3, 4)], {"shape": [6, 4]}, {}, lambda x: ops.reshape(x, (6, 4)))],
    "transpose": [([S8(3, 5)], {"axes": [0, 2, 1]}, {}, lambda x: ops.transpose(x, (0, 2, 1))),
                  ([F32((3, 5))], {"axes": [0, 2, 1]}, {}, lambda x: x.transpose(0, 2, 1))],
    "flatten": [([U8(2, 3, 4)], {}, {}, ops.flatten)],
    "softmax": [([S8(4, 6)], {"q_ln2": 11, "q_b": 43, "q_c": 714, "out_bits": 8}, {},
                 lambda q: ops.softmax(q, ops.ExpConstants(11, 43, 714), out_bits=8))],
    "twist": [([U8(4, 6)], {"t_num": 6554, "s_num": 40000, "out_bits": 8}, {},
               lambda p: ops.twist(p, 6554, 40000, out_bits=8))],
    "layer_norm": [([S8(3, 8)], {"shift": LN_SHIFT, "out_bits": 8, "out_signed": True},
                    {"m": LN_M, "b": LN_B},
                    lambda q: ops.layer_norm(q, LN_M, LN_B, LN_SHIFT, out_bits=8,
                                             out_signed=True))],
    "lookup": [([S8(5)], {"in_bits": 8, "in_signed": True, "out_bits": 4, "out_signed": True},
                {"table": TABLE},
                lambda x: ops.lookup(x, TABLE, in_bits=8, in_signed=True))],
    "standardize": [([TensorType.integer((1, 2, 2), 8, False)],
                     {"pixel_max": 255, "mean": 0.25, "std": 0.5}, {},
                     lambda p: (p.astype(np.float32) / np.float32(255) - np.float32(0.25))
                     / np.float32(0.5))],
    "quantize": [([F32((4,))], {"step": 0.25, "bits": 3}, {},
                  lambda x: np.clip(np.rint(x / np.float32(0.25)), 0, 7).astype(np.int64))],
    "dequant": [([S8(3)], {"relu": True},
                 {"scale": np.float32([0.5, 1, 2]), "shift": np.float32([0, -1, 1])},
                 lambda y: np.maximum(y * np.float32([0.5, 1, 2]) + np.float32([0, -1, 1]),
                                      0)),
                ([S8(4, 3)], {"axis": 1},
                 {"scale": np.float32([0.5, 1, 2]), "shift": np.float32([0, -1, 1])},
                 lambda y: y * np.float32([0.5, 1, 2]) + np.float32([0, -1, 1]))],
    "conv2d_float": [([F32((2, 5, 5))], {"padding": 1, "relu": True},
                      {"weight": RNG.standard_normal((3, 2, 3, 3)).astype(np.float32),
                       "bias": np.float32([0.1, 0.2, 0.3])}, None)],
    "linear_float": [([F32((6,))], {}, {"weight": np.eye(4, 6, dtype=np.float32),
                                        "bias": np.float32([1, 2, 3, 4])},
                      lambda x: x[:, :4] + np.float32([1, 2, 3, 4]))],
}


def test_every_node_kind_has_a_test_network():
    assert set(CASES) == set(NODE_KINDS)


@pytest.mark.parametrize("kind,case", [(k, i) for k, cs in CASES.items()
                                       for i in range(len(cs))])
def test_node_kind_equals_direct_ref_ops_call(kind, case):
    in_types, attrs, weights, reference = CASES[kind][case]
    graph = _single(kind, in_types, attrs, weights)
    feeds = _feeds(in_types)
    got = GraphEngine(graph).run(feeds, batch_size=2)["n"]
    if reference is None:                                       # conv2d_float: torch
        torch = pytest.importorskip("torch")
        w, b = weights["weight"], weights["bias"]
        want = torch.relu(torch.nn.functional.conv2d(torch.from_numpy(feeds["x0"]),
                                                     torch.from_numpy(w), torch.from_numpy(b),
                                                     padding=1)).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        return
    want = reference(*feeds.values())
    assert got.shape == want.shape and got.dtype.kind == want.dtype.kind
    np.testing.assert_array_equal(got, want)
    assert got.shape[1:] == graph.node("n").output.shape
    # The graph survives a file round trip unchanged.
    back = decode_graph(encode_graph(graph))
    assert back.version == 2 and back.graph.to_json() == graph.to_json()
    np.testing.assert_array_equal(GraphEngine(back.graph).run(feeds)["n"], got)


def test_integer_nodes_never_see_a_float():
    graph = _single("conv2d", [U8(4, 7, 7)], {"acc": WRAP8, "weight_kind": "ternary"},
                    {"weight": W3})
    node = graph.node("n")
    seen = []
    real = NODE_KINDS["conv2d"].run

    def spy(n, x):
        seen.append(x.dtype)
        return real(n, x)
    object.__setattr__(NODE_KINDS["conv2d"], "run", spy)
    try:
        GraphEngine(graph).run(_feeds([U8(4, 7, 7)]))
    finally:
        object.__setattr__(NODE_KINDS["conv2d"], "run", real)
    assert seen == [np.int64] and node.output.describe() == "int8s[6, 5, 5]"


# -- version 1 -> graph -------------------------------------------------------------------------

def test_v1_export_runs_equal_in_the_graph_engine(tiny_export):
    from wrapkit.common.datasets import load_images

    _, wkx, exp = tiny_export
    g = read_graph(wkx)
    assert g.version == 1 and g.header["schema"] == "wrapkit.export/1"
    pixels = load_images("digits", "test").pixels
    chain = Engine(exp)
    out = GraphEngine(g.graph).run(pixels, keep="all")
    np.testing.assert_array_equal(out[g.graph.outputs[0]], chain.run(pixels))
    # Every integer layer's MAC output and codes equal the chain engine's, node by node.
    for i, layer in enumerate(chain.layers):
        if layer.precision != "integer":
            continue
        src = g.graph.node(layer.name).inputs[0]
        codes = out[src].reshape(len(pixels), *layer.spec["in_shape"])
        ref = chain.layer_forward(i, codes)
        np.testing.assert_array_equal(out[layer.name], ref["y"])
        tail = out[f"{layer.name}.pool"] if layer.pool else out[
            f"{layer.name}.{layer.spec['output']['kind']}"]
        np.testing.assert_array_equal(tail, ref["out"])
    # ... and the same graph written as version 2 runs the same.
    v2 = wkx.parent / "tiny_graph.wkx"
    write_graph(v2, g.graph, input=g.header["input"], num_classes=10)
    g2 = read_graph(v2)
    assert g2.version == 2 and g2.header["schema"] == "wrapkit.export/2"
    np.testing.assert_array_equal(GraphEngine(g2.graph).run(pixels)[g2.graph.outputs[0]],
                                  out[g.graph.outputs[0]])
    assert v2.read_bytes() == encode_graph(g2.graph, input=g.header["input"], num_classes=10)


def test_vgg7_v1_export_runs_equal_in_the_graph_engine():
    """The full-size Fashion-MNIST VGG-7 (untrained, steps set by hand, BatchNorm statistics
    random), exported as version 1: the converted graph equals the chain engine."""
    torch = pytest.importorskip("torch")
    from wrapkit.models.export import export_model
    from wrapkit.models.nets import build_model
    from wrapkit.models.qconfig import Accumulator, ActQuant, WeightQuant
    from wrapkit.ref.wkx import decode

    torch.manual_seed(0)
    model = build_model("vgg7", weight_quant=WeightQuant("ternary"))
    for i, (_, layer) in enumerate(model.quant_layers()):
        layer.act_quant = ActQuant(step=0.05 + 0.01 * i, bits=4)
        layer.accumulator = Accumulator(10, k=2 if i % 2 else None)
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    model.eval()
    spec = {"shape": [1, 28, 28], "pixel_max": 255, "mean": 0.29, "std": 0.35,
            "dataset": "fashion-mnist"}
    header, tensors = export_model(model, input_spec=spec)
    data = encode(header, tensors)
    exp, g = decode(data, "vgg7.wkx"), decode_graph(data, "vgg7.wkx")
    from wrapkit.ref.validate import validate
    validate(exp)
    pixels = RNG.integers(0, 256, size=(40, 1, 28, 28)).astype(np.uint8)
    logits = GraphEngine(g.graph).run(pixels, batch_size=20)[g.graph.outputs[0]]
    np.testing.assert_array_equal(logits, Engine(exp).run(pixels, batch_size=20))


# -- bad files ---------------------------------------------------------------------------------

def _graph_file(tmp_path, mutate, name="bad.wkx"):
    graph = _single("conv2d", [U8(4, 7, 7)], {"acc": WRAP8, "weight_kind": "ternary"},
                    {"weight": W3})
    header = {"schema": "wrapkit.export/2", "generator": "test", "graph": graph.to_json()}
    tensors = graph.tensors()
    mutate(header["graph"], tensors)
    path = tmp_path / name
    path.write_bytes(encode(header, tensors))
    return path


def _node0(g):
    return g["nodes"][0]


BAD = {
    "unknown kind": (lambda g, t: _node0(g).update(kind="conv3d"),
                     r"node n \(conv3d\): unknown node kind 'conv3d' \(this wrapkit knows "),
    "dangling edge": (lambda g, t: _node0(g).update(inputs=["nowhere"]),
                      r"node n \(conv2d\): input 'nowhere' is neither a graph input nor a "
                      r"node \(dangling edge\)"),
    "shape": (lambda g, t: _node0(g)["output"].update(shape=[6, 7, 7]),
              r"node n \(conv2d\): output recorded as int8s\[6, 7, 7\], but its inputs and "
              r"attributes give int8s\[6, 5, 5\]"),
    "width": (lambda g, t: _node0(g)["output"].update(bits=12),
              r"node n \(conv2d\): output recorded as int12s\[6, 5, 5\], but .* give "
              r"int8s\[6, 5, 5\]"),
    "input shape": (lambda g, t: g["inputs"][0]["type"].update(shape=[3, 7, 7]),
                    r"node n \(conv2d\): weight has 4 input channels per group, but x has 3 "
                    r"channels"),
    "attribute": (lambda g, t: _node0(g)["attrs"].update(stride=0),
                  r"node n \(conv2d\): attribute 'stride': must be in \[1, 64\], got 0"),
    "unknown attribute": (lambda g, t: _node0(g)["attrs"].update(colour="red"),
                          r"node n \(conv2d\): unknown attribute 'colour'"),
    "weight values": (lambda g, t: _node0(g)["attrs"].update(weight_kind="binary"),
                      r"node n \(conv2d\): binary weights must be -1 or \+1, found 0"),
    "missing tensor": (lambda g, t: t.pop("n.weight"),
                       r"node n \(conv2d\): weight 'weight' names tensor 'n.weight', which "
                       r"the file lacks"),
    "tensor dtype": (lambda g, t: t.update({"n.weight": W3.astype(np.float32)}),
                     r"node n \(conv2d\): tensor 'n.weight' has dtype float32, expected int8"),
    "float into integer": (lambda g, t: g["inputs"][0].update(type={"shape": [4, 7, 7],
                                                                    "dtype": "float"}),
                           r"node n \(conv2d\): the input must be an integer tensor"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_graphs_are_refused_in_one_line_naming_the_node(tmp_path, case):
    mutate, message = BAD[case]
    path = _graph_file(tmp_path, mutate)
    with pytest.raises(UserError, match=rf"^{path}: {message}") as info:
        read_graph(path)
    assert "\n" not in str(info.value)


def test_cycles_and_bad_checksums_are_refused(tmp_path):
    def cycle(g, t):
        a, b = dict(_node0(g)), dict(_node0(g))
        a.update(name="a", kind="flatten", inputs=["b"], attrs={}, weights={})
        b.update(name="b", kind="flatten", inputs=["a"], attrs={}, weights={})
        g["nodes"] += [a, b]
    path = _graph_file(tmp_path, cycle)
    with pytest.raises(UserError, match=r"node a \(flatten\): is on a cycle a -> b -> a$"):
        read_graph(path)
    good = _graph_file(tmp_path, lambda g, t: None, "good.wkx")
    data = bytearray(good.read_bytes())
    (n,) = struct.unpack("<Q", data[:8])
    data[8 + n + 5] ^= 1
    good.write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"checksum mismatch"):
        read_graph(good)


def test_engine_refuses_inputs_that_do_not_fit_the_graph():
    graph = _single("flatten", [U8(2, 3)])
    engine = GraphEngine(graph)
    with pytest.raises(UserError, match=r"per-sample shape \[3, 2\], the graph expects \[2, 3\]"):
        engine.run(np.zeros((1, 3, 2), np.int64))
    with pytest.raises(UserError, match=r"holds values outside \[0, 255\]"):
        engine.run(np.full((1, 2, 3), 256))
    with pytest.raises(UserError, match=r"no node 'nope'"):
        engine.run(np.zeros((1, 2, 3), np.int64), keep=["nope"])


def test_graph_json_is_plain_and_deterministic():
    graph = _single("conv2d", [U8(4, 7, 7)], {"acc": WRAP8, "weight_kind": "ternary"},
                    {"weight": W3})
    text = json.dumps(graph.to_json(), sort_keys=True)
    assert json.loads(text)["nodes"][0]["attrs"]["acc"] == {"mode": "wrap", "bits": 8, "k": None}
    assert encode_graph(graph) == encode_graph(graph)


@pytest.mark.parametrize("kind", ["conv2d", "linear", "matmul"])
def test_blas_gemm_backend_gives_the_same_integers(kind):
    for in_types, attrs, weights, _ in CASES[kind]:
        graph = _single(kind, in_types, attrs, weights)
        feeds = _feeds(in_types, n=4)
        want = GraphEngine(graph).run(feeds)["n"]
        np.testing.assert_array_equal(GraphEngine(graph, gemm="blas").run(feeds)["n"], want)


def test_gemm_dtype_follows_the_exactness_bound():
    from wrapkit.ref.graph.gemm import blas_gemm, gemm_dtype

    assert gemm_dtype(1, (1 << 24) - 1, 1) is np.float32
    assert gemm_dtype(1, 1 << 24, 1) is np.float64
    assert gemm_dtype(1, 1 << 53, 1) is np.int64
    # 2^24 + 1 is not a float32: a float32 GEMM would round it; the backend must not.
    a = np.array([[1 << 24, 1]])
    b = np.array([[1], [1]])
    assert blas_gemm(a, b).tolist() == [[(1 << 24) + 1]]
    with pytest.raises(UserError, match="gemm must be one of int64, blas"):
        GraphEngine(_single("flatten", [U8(2, 3)]), gemm="fast")
