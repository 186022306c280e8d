"""A2Q/A2Q+ (Brevitas accumulator-aware weights) on wrapkit's datapath: a tiny digits VGG-7
trained with each, exported to an integer graph with plain P-bit wrapping accumulators; the
no-overflow guarantee checked analytically (worst case over every input in range) and on the
whole test set in the integer engine, and one layer cosimulated on a P-bit plain MAC."""

from pathlib import Path

import numpy as np
import pytest

from wrapkit.cli import main
from wrapkit.common.datasets import load_images
from wrapkit.ref.accbound import channel_dot_ranges, guaranteed_bits
from wrapkit.ref.graph import GraphEngine, read_graph
from wrapkit.ref.graph.node_streams import node_stream

P = 12
TINY_A2Q = dict(model="vgg7", widths=(8, 16, 16), dataset="digits", weights="uniform",
                weight_bits=4, act_bits=3, acc_bits=P, epochs=2, batch_size=64, lr=3e-3,
                threads=1)


@pytest.fixture(scope="module", params=["a2q", "a2q+"])
def a2q_run(request, tmp_path_factory):
    from wrapkit.models import TrainConfig, train
    from wrapkit.models.a2q_train import export_a2q_run

    out = tmp_path_factory.mktemp(request.param.replace("+", "plus"))
    metrics = train(TrainConfig(method=request.param, **TINY_A2Q), out / "run", progress=False,
                    log=lambda *a: None)
    exact = export_a2q_run(out / "run", out / "exact.wkx", acc_mode="exact")
    return request.param, metrics, read_graph(out / "run" / "model.wkx"), exact


def _mac_nodes(graph):
    return [n for n in graph.nodes if n.kind in ("conv2d", "linear")]


def test_every_layer_fits_p_bits_for_every_input_in_range(a2q_run):
    method, metrics, exp, _ = a2q_run
    assert metrics["complete"] and metrics["final"]["test_accuracy"] > 0.5
    nodes = _mac_nodes(exp.graph)
    assert len(nodes) == 6
    for node in nodes:
        assert node.attrs["acc"].mode == "wrap" and node.attrs["acc"].bits == P
        lo, hi = exp.graph.type_of(node.inputs[0]).code_range
        assert (lo, hi) == (0, 7)
        w = node.weights["weight"]
        assert np.abs(w).max() <= 7 and np.count_nonzero(w) > 0
        assert guaranteed_bits(w, (lo, hi)) <= P, node.name
        z_min, z_max = channel_dot_ranges(w, (lo, hi))
        assert z_min.min() >= -(1 << (P - 1)) and z_max.max() <= (1 << (P - 1)) - 1
        if method == "a2q":
            # A2Q's own bound: ‖q‖₁ · (2^N − 1) <= 2^(P−1) − 1 per output channel.
            assert (np.abs(w).reshape(len(w), -1).sum(1) * hi).max() <= (1 << (P - 1)) - 1


def test_no_dot_product_overflows_on_the_whole_test_set(a2q_run):
    _, metrics, exp, exact = a2q_run
    test = load_images("digits", "test")
    names = [n.name for n in _mac_nodes(exact.graph)]
    got = GraphEngine(exact.graph).run(test.pixels, keep=names)
    for name in names:
        z = got[name]
        assert z.min() >= -(1 << (P - 1)) and z.max() <= (1 << (P - 1)) - 1, name
    # So the P-bit wrapping datapath computes exactly what exact sums give: same logits.
    wrapped = GraphEngine(exp.graph).run(test.pixels)["classifier"]
    np.testing.assert_array_equal(wrapped, got["classifier"])
    engine_acc = float(np.mean(wrapped.argmax(1) == test.labels))
    assert abs(engine_acc - metrics["final"]["test_accuracy"]) <= 0.02
    # The A2Q graph also goes to ONNX, and onnxruntime computes the same integers.
    from wrapkit.interop.onnx_check import compare_with_engine

    report = compare_with_engine(exp.graph, test.pixels)
    assert report.compared > 0 and report.mismatches == 0, report.describe()


def test_a_wrapnet_network_has_no_such_guarantee(tiny_export):
    """The check can fail: WrapNet's binary weights overflow 8 bits for some input."""
    exp = read_graph(tiny_export[1])
    node = exp.graph.node("block3.conv")
    assert guaranteed_bits(node.weights["weight"],
                           exp.graph.type_of(node.inputs[0]).code_range) > 8


@pytest.mark.sim
@pytest.mark.parametrize("a2q_run", ["a2q"], indirect=True)
def test_a2q_layer_runs_on_a_plain_p_bit_mac_with_no_mismatch(a2q_run, cache_dir):
    from wrapkit.sim.designs import mac_design_for
    from wrapkit.sim.stream_cosim import cosim_stream

    _, _, exp, _ = a2q_run
    node = exp.graph.node("block3.conv")
    src = node.inputs[0]
    got = GraphEngine(exp.graph).run(load_images("digits", "test").pixels[:2],
                                     keep=[src, node.name])
    stream, cfg = node_stream(exp.graph, node.name, [got[src]], got[node.name])
    dots = 2 * int(np.prod(node.output.shape))            # 2 images × 16 channels × 4 × 4
    assert cfg.acc_bits == P and cfg.k is None and cfg.weight_kind == "uniform"
    r = cosim_stream(mac_design_for(cfg), stream, "icarus")
    assert stream.dots == dots and r.checked == len(stream) == dots * 72
    assert r.mismatches == 0, r.examples
    assert r.final_mismatches == 0
    bad = stream.replace(final_acc=stream.final_acc + 1)
    assert cosim_stream(mac_design_for(cfg), bad, "icarus").final_mismatches == dots


def test_wrapkit_export_of_an_a2q_run_writes_its_graph(a2q_run, tmp_path):
    from wrapkit.models.export import export_run

    _, _, exp, _ = a2q_run
    run_dir = Path(exp.path).parent
    again = export_run(run_dir, tmp_path / "again.wkx")
    assert again.version == 2 and again.sha256 == exp.sha256


def test_a2q_needs_uniform_weights(tmp_path, capsys):
    assert main(["train", "--method", "a2q", "--dataset", "digits", "--out",
                 str(tmp_path / "r")]) == 2
    assert "--weights" in capsys.readouterr().err
