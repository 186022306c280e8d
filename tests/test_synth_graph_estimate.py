"""``wrapkit estimate`` on an integer graph: energy per MAC node and per node kind from real
operands, one synthesized MAC per distinct node configuration, against a 32-bit baseline."""

import json

import numpy as np
import pytest

from wrapkit.cli import main
from wrapkit.common.datasets import load_images
from wrapkit.hw.synth.network_graph import node_kind_label, sample_node_stream
from wrapkit.ref import ops
from wrapkit.ref.graph import Graph, infer_types, new_node, read_graph, write_graph
from wrapkit.ref.graph.node_streams import node_operands, node_stream

RNG = np.random.default_rng(3)
CYC = ops.AccumulatorMode("cyclic", 8, 4)


def _binary(*shape):
    return RNG.choice([-1, 1], size=shape).astype(np.int8)


def _codes(name, src, channels):
    """requant of a MAC output to 3-bit unsigned codes."""
    return new_node(f"{name}.q", "requant", [src], {"out_bits": 3, "out_signed": False},
                    {"multiplier": np.full(channels, 3, np.int64),
                     "bias": np.zeros(channels, np.int64),
                     "shift": np.full(channels, 3, np.int64)})


def _tiny_graph(matmul_acc=ops.AccumulatorMode("wrap", 8)):
    """digits pixels -> 3-bit codes -> conv2d -> depthwise -> linear -> matmul of the linear
    output's tokens: every MAC node on the 3-bit-activation MACs of the paper's 3x1 designs
    (binary weights, 8-bit cyclic accumulator k = 4) except the matmul (4-bit weights)."""
    from wrapkit.ref.graph.v1 import INPUT_NAME

    nodes = [
        new_node("codes", "rescale", [INPUT_NAME], {"multiplier": 1, "shift": 2,
                                                    "out_bits": 3, "out_signed": False}),
        new_node("conv", "conv2d", ["codes"], {"acc": CYC, "padding": 1,
                                               "weight_kind": "binary"},
                 {"weight": _binary(4, 1, 3, 3)}),
        _codes("conv", "conv", 4),
        new_node("dw", "conv2d", ["conv.q"], {"acc": CYC, "padding": 1, "groups": 4,
                                              "weight_kind": "binary"},
                 {"weight": _binary(4, 1, 3, 3)}),
        _codes("dw", "dw", 4),
        new_node("tokens", "reshape", ["dw.q"], {"shape": [4, 64]}),
        new_node("fc", "linear", ["tokens"], {"acc": CYC, "weight_kind": "binary"},
                 {"weight": _binary(3, 64)}),
        _codes("fc", "fc", 4),
        new_node("fc.t", "transpose", ["fc.q"], {"axes": [0, 2, 1]}),
        new_node("mm", "matmul", ["fc.t", "fc.q"], {"acc": matmul_acc}),
    ]
    from wrapkit.ref.graph.types import TensorType

    return infer_types(Graph({INPUT_NAME: TensorType.integer((1, 8, 8), 5, False)}, nodes,
                             ["mm"]))


def test_node_sample_is_runs_of_the_real_stream():
    graph = _tiny_graph()
    pixels = load_images("digits", "test").first(2).pixels
    from wrapkit.ref.graph import GraphEngine

    vals = GraphEngine(graph).run(pixels, keep=["conv.q"])
    full, _ = node_stream(graph, "dw", [vals["conv.q"]])
    ops_ = node_operands(graph, "dw", [vals["conv.q"]])
    sample = sample_node_stream(ops_, 90, segments=3, seed=1)
    k = ops_.fan_in
    assert sample.dots == 10 and len(sample) == 90
    rows = {tuple(r) for r in np.stack([full.a.reshape(-1, k), full.w.reshape(-1, k)], 1)
            .reshape(full.dots, -1).tolist()}
    got = np.stack([sample.a.reshape(-1, k), sample.w.reshape(-1, k)], 1).reshape(10, -1)
    assert all(tuple(r) in rows for r in got.tolist())
    assert node_kind_label(graph, graph.node("dw")) == "depthwise"
    assert node_kind_label(graph, graph.node("conv")) == "conv2d"


def test_graph_estimate_per_node_and_kind(tmp_path, cache_dir, capsys):
    model = tmp_path / "tiny.wkx"
    write_graph(model, _tiny_graph(), input={"shape": [1, 8, 8], "pixel_max": 16,
                                             "mean": 0.3, "std": 0.4, "dataset": "digits"})
    out = tmp_path / "est.json"
    assert main(["estimate", str(model), "--images", "2", "--ops", "120", "--array-macs", "4",
                 "--json", str(out), "--plot", str(tmp_path / "nodes.png")]) == 0
    text = capsys.readouterr().out
    est = json.loads(out.read_text())
    assert est["schema"] == "wrapkit.estimate.graph/1"
    # One MAC per distinct configuration, each with its 32-bit baseline.
    assert [(d["datapath"]["design"], d["baseline"]["design"], d["nodes"])
            for d in est["designs"]] == [
        ("mac_a3u_wb_acc8_k4", "mac_a3u_wb_acc32", ["conv", "dw", "fc"]),
        ("mac_a3u_wu4_acc8", "mac_a3u_wu4_acc32", ["mm"])]
    rows = {r["layer"]: r for r in est["layers"]}
    graph = read_graph(model).graph
    assert rows["conv"]["macs"] == 4 * 8 * 8 * 9 and rows["dw"]["macs"] == 4 * 64 * 9
    assert rows["fc"]["macs"] == 4 * 3 * 64 and rows["mm"]["macs"] == 3 * 3 * 4
    assert [rows[n]["label"] for n in ("conv", "dw", "fc", "mm")] == \
        ["conv2d", "depthwise", "linear", "matmul"]
    for name, r in rows.items():
        for role in ("datapath", "baseline"):
            assert r[f"{role}_energy_nj"] == pytest.approx(
                r[f"{role}_energy_fj_per_mac"] * r["macs"] * 1e-6)
            assert r[f"{role}_energy_fj_per_mac"] > 0
        assert 0 <= r["overflow_rate"] <= 1 and r["mac"] == \
            {"mm": "mac_a3u_wu4_acc8"}.get(name, "mac_a3u_wb_acc8_k4")
        assert graph.node(name).kind == r["kind"]
    # Per kind and in total: sums of the nodes; the 8-bit accumulators cost less.
    for kind, k in est["kinds"].items():
        assert k["datapath_energy_nj"] == pytest.approx(
            sum(r["datapath_energy_nj"] for r in rows.values() if r["label"] == kind))
    assert est["datapath"]["energy_per_inference_nj"] == pytest.approx(
        sum(r["datapath_energy_nj"] for r in rows.values()))
    assert est["datapath"]["macs_per_inference"] == sum(r["macs"] for r in rows.values())
    assert est["gains"]["energy"] > 1 and est["gains"]["area"] > 1
    assert "| depthwise | dw |" in text and "| **total** |" in text
    assert (tmp_path / "nodes.png").stat().st_size > 1000
    # Version-1-only flags are refused in one line.
    assert main(["estimate", str(model), "--act-bits", "8"]) == 2
    assert "--act-bits applies to layer-chain (version 1) files" in capsys.readouterr().err


def test_a_node_already_at_the_baseline_width_is_its_own_baseline(tmp_path, cache_dir):
    """A node whose accumulator is already 32 bits costs the same in both columns (it stays in
    the baseline's totals instead of breaking them)."""
    model = tmp_path / "mixed.wkx"
    write_graph(model, _tiny_graph(ops.AccumulatorMode("wrap", 32)),
                input={"shape": [1, 8, 8], "pixel_max": 16, "mean": 0.3, "std": 0.4,
                       "dataset": "digits"})
    out = tmp_path / "est.json"
    assert main(["estimate", str(model), "--images", "1", "--ops", "120", "--array-macs", "4",
                 "--json", str(out)]) == 0
    est = json.loads(out.read_text())
    assert [(d["datapath"]["design"], d["baseline"]["design"]) for d in est["designs"]] == [
        ("mac_a3u_wb_acc8_k4", "mac_a3u_wb_acc32"), ("mac_a3u_wu4_acc32", "mac_a3u_wu4_acc32")]
    mm = next(r for r in est["layers"] if r["layer"] == "mm")
    assert mm["baseline_mac"] == mm["mac"] == "mac_a3u_wu4_acc32"
    assert mm["baseline_energy_nj"] == mm["datapath_energy_nj"] > 0
    rows = [r for r in est["layers"] if not r["float_only"]]
    assert est["baseline"]["energy_per_inference_nj"] == pytest.approx(
        sum(r["baseline_energy_nj"] for r in rows))
    assert est["gains"]["energy"] > 1
