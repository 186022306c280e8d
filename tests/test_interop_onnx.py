"""ONNX/QONNX export (wrapkit.interop): onnxruntime and QONNX's executor reproduce the
integer engine bit for bit — every node kind on random codes over their whole range, the
tiny digits network on its whole test set — and a model whose constant was changed fails."""

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from test_graph import CASES, _feeds, _single
from wrapkit.cli import main
from wrapkit.common.datasets import load_images
from wrapkit.common.errors import UserError
from wrapkit.interop.onnx_check import compare_with_engine, run_onnx
from wrapkit.interop.onnx_export import SUPPORTED_KINDS, graph_to_onnx
from wrapkit.ref import ops
from wrapkit.ref.graph import GraphEngine, read_graph

# Float kinds computed by one elementwise float32 formula agree exactly; float sums (GEMMs,
# a float mean) run in another order than numpy's and agree to rounding.
_FLOAT_SUMS = ("conv2d_float", "linear_float", "global_avg_pool2d")


def _kind_cases():
    return [(k, i) for k, cs in CASES.items() if k in SUPPORTED_KINDS for i in range(len(cs))]


@pytest.mark.parametrize("kind,case", _kind_cases())
def test_each_node_kind_runs_equal_in_onnxruntime(kind, case):
    in_types, attrs, weights, _ = CASES[kind][case]
    graph = _single(kind, in_types, attrs, weights)
    acc = graph.node("n").attrs.get("acc")
    if acc is not None and acc.mode == "saturate":
        with pytest.raises(UserError, match="node n .*saturating accumulator"):
            graph_to_onnx(graph)
        return
    feeds = _feeds(in_types, n=64)
    want = GraphEngine(graph).run(feeds, batch_size=64)["n"]
    got = run_onnx(graph_to_onnx(graph), feeds)["n"]
    assert got.shape == want.shape
    if kind in _FLOAT_SUMS and not graph.node("n").output.is_int:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    else:
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


def test_wrap_and_cyclic_accumulators_fold_as_the_engine_on_every_residue():
    """A 1×1 linear layer with weight 1 passes each code through the accumulator: every
    value of a 10-bit input through an 8-bit wrapping and cyclic register."""
    from wrapkit.ref.graph import TensorType

    x = np.arange(1024, dtype=np.int64).reshape(-1, 1)
    for acc in (ops.AccumulatorMode("wrap", 8), ops.AccumulatorMode("cyclic", 8, 2),
                ops.AccumulatorMode("cyclic", 7, 3)):
        graph = _single("linear", [TensorType.integer((1,), 8, False)],
                        {"acc": acc, "weight_kind": "int"},
                        {"weight": np.array([[1]], np.int8)})
        xs = x[:256]
        want = GraphEngine(graph).run(xs)["n"]
        np.testing.assert_array_equal(run_onnx(graph_to_onnx(graph), {"x0": xs})["n"], want)
        np.testing.assert_array_equal(want[:, 0], acc.finish(xs[:, 0]))


def test_kinds_without_an_exact_mapping_are_refused_in_one_line():
    in_types, attrs, weights, _ = CASES["softmax"][0]
    with pytest.raises(UserError, match=r"node n \(softmax\): no exact ONNX mapping.*supports "
                                        r"add, avg_pool2d"):
        graph_to_onnx(_single("softmax", in_types, attrs, weights))


@pytest.fixture(scope="module")
def tiny(tiny_export):
    _, wkx, _ = tiny_export
    exp = read_graph(wkx)
    return exp, load_images("digits", "test").pixels


def test_tiny_network_equals_engine_on_the_whole_test_set(tiny):
    exp, pixels = tiny
    fed = compare_with_engine(exp.graph, pixels)
    assert fed.images == len(pixels) == 359
    assert len(fed.nodes) == sum(n.output.is_int and n.kind != "quantize"
                                 for n in exp.graph.nodes)
    assert fed.compared > 900_000 and fed.mismatches == 0, fed.describe()
    assert fed.predictions_differing == 0
    # The exact sums before the 8-bit accumulators do overflow on this data, so the check
    # covers the wrap and the fold, not only the in-range path.
    model = graph_to_onnx(exp.graph)
    model.graph.output.append(onnx.helper.make_tensor_value_info("block3.conv/z",
                                                                 onnx.TensorProto.INT64, None))
    z = run_onnx(model, {"pixels": pixels})["block3.conv/z"]
    assert np.abs(z).max() > 127


def test_qonnx_executor_agrees_too(tiny):
    exp, pixels = tiny
    report = compare_with_engine(exp.graph, pixels[:24], executor="qonnx")
    assert report.mismatches == 0 and report.compared > 50_000, report.describe()


def test_cli_export_check_and_a_changed_constant_fails(tiny_export, tmp_path, capsys):
    _, wkx, _ = tiny_export
    out = tmp_path / "tiny.onnx"
    assert main(["export", str(wkx), "--format", "qonnx", "-o", str(out)]) == 0
    model = onnx.load(out)
    annotations = {a.tensor_name: a.quant_parameter_tensor_names[0].value
                   for a in model.graph.quantization_annotation}
    assert annotations["block2.conv.quantize"] == "UINT5"
    assert annotations["block2.conv"] == "INT8" and annotations["block2.conv.weight"] == "BIPOLAR"
    assert main(["onnx-check", str(out), str(wkx)]) == 0
    assert "0 differ" in capsys.readouterr().out
    # One weight of one layer negated: the check names that node and fails with status 1.
    init = next(i for i in model.graph.initializer if i.name == "block3.conv.weight")
    w = numpy_helper.to_array(init).copy()
    w[0, 0, 1, 1] = -w[0, 0, 1, 1]
    init.CopyFrom(numpy_helper.from_array(w, init.name))
    bad = tmp_path / "bad.onnx"
    onnx.save(model, bad)
    assert main(["onnx-check", str(bad), str(wkx)]) == 1
    err = capsys.readouterr()
    assert "first: node block3.conv element" in err.err
    assert "block2.conv:" not in err.out and "block3.conv:" in err.out
    # Not an ONNX file: one line, status 2.
    assert main(["onnx-check", str(wkx), str(wkx)]) == 2
    assert "not an ONNX model" in capsys.readouterr().err
