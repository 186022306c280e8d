"""The layer array on grouped (depthwise), dilated convolutions and activation x activation
matmuls: random operands and the MAC nodes of two tiny graph networks trained on digits, in
Amaranth's simulator and in cocotb on Icarus and Verilator; outputs bit for bit against
wrapkit.ref and the graph engine, cycles exactly as the cycle model says."""

import argparse

import numpy as np
import pytest

from graph_digits import trained_graph_file
from random_layers import random_job
from wrapkit.common.datasets import load_images
from wrapkit.common.errors import UserError
from wrapkit.hw.array.config import ArrayConfig
from wrapkit.hw.array.cycles import layer_cycles
from wrapkit.hw.array.jobs import (
    LayerShape,
    check_job,
    jobs_bytes,
    load_jobs,
    matmul_job,
    matmul_operand_mac,
    reference_outputs,
)
from wrapkit.hw.array.nodes import (
    array_nodes,
    node_describe,
    node_jobs,
    node_mac,
    node_output,
    node_shape,
)
from wrapkit.hw.array.pysim import run_layers
from wrapkit.models.graph_nets import DepthwiseShuffleNet, TinyAttention
from wrapkit.models.qconfig import WeightQuant
from wrapkit.ref import ops
from wrapkit.ref.datapath import MacConfig, cyclic, decode_weights, wrap
from wrapkit.ref.graph import GraphEngine, read_graph
from wrapkit.sim.cosim_array import array_rtl, cosim_array
from wrapkit.sim.layer_array import run_node_cli

#: The depthwise network's MAC: 8-bit unsigned codes, ternary weights, 12-bit cyclic k = 2.
#: The networks these tests train: small enough for a 2x2 array's buffers.
ARRAY_NETS = {
    "depthwise": lambda: DepthwiseShuffleNet(width=4, weight_quant=WeightQuant("ternary")),
    "attention": lambda: TinyAttention(image_size=8, patch=2, dim=8),
}
DW_MAC = MacConfig(8, False, "ternary", None, 12, 2)
#: One MAC for every node of the attention block: 9-bit signed activations hold its signed
#: codes and its unsigned probabilities; 8-bit uniform "weights" hold signed 8-bit codes.
ATT_MAC = MacConfig(9, True, "uniform", 8, 16, None)
DW_CFG = ArrayConfig(2, 2, DW_MAC, out_bits=8, act_depth=1024, weight_depth=512,
                     out_depth=1024, max_channels=16)
ATT_CFG = ArrayConfig(2, 2, ATT_MAC, out_bits=8, act_depth=256, weight_depth=256,
                      out_depth=256, max_channels=16)


@pytest.fixture(scope="module")
def graph_nets(tmp_path_factory):
    """``{"depthwise": GraphExport, "attention": GraphExport}``, trained a few seconds."""
    folder = tmp_path_factory.mktemp("graph_nets")
    return {name: read_graph(trained_graph_file(name, folder / f"{name}.wkx", builder=build,
                                                float_epochs=3, quant_epochs=1)[0])
            for name, build in ARRAY_NETS.items()}


def _node_values(exp, names, images):
    graph = exp.graph
    pixels = load_images("digits", "test").first(images).pixels
    keep = set(names)
    for name in names:
        keep |= {s for s in graph.node(name).inputs if s not in graph.inputs}
    values = GraphEngine(graph).run(pixels, keep=sorted(keep))
    inputs = {name: [values[s] for s in graph.node(name).inputs] for name in names}
    return values, inputs


def _direct(job):
    """The job's dot products from wrapkit.ref.ops directly (grouped conv or matmul)."""
    s = job.shape
    w = decode_weights(job.weight_codes, job.mac.weight_kind, job.mac.weight_bits)
    if s.is_matmul:
        return ops.matmul(job.codes.reshape(s.in_channels, s.in_h).T[None], w.T[None])[0].T
    z = ops.conv2d(job.codes[None], w.reshape(s.out_channels, s.group_in, s.kernel, s.kernel),
                   stride=s.stride, padding=s.padding, dilation=s.dilation, groups=s.groups)
    return z[0].reshape(s.out_channels, -1)


def _random_grouped(rng):
    return [
        random_job(LayerShape.conv2d(6, 5, 6, 6, 3, 1, 1, groups=6), DW_MAC, rng, out_bits=6,
                   name="depthwise"),
        random_job(LayerShape.conv2d(4, 7, 6, 12, 3, 2, 2, groups=4, dilation=2), DW_MAC, rng,
                   name="depthwise_x3_dilated", saturate=True),
        random_job(LayerShape.conv2d(6, 6, 5, 9, 3, 1, 1, groups=3), DW_MAC, rng, out_bits=4,
                   name="groups3"),
    ]


def _random_matmuls(rng):
    jobs = []
    for (m, k, n), a_signed, b_signed in (((5, 7, 3), True, True), ((4, 9, 6), False, True),
                                          ((3, 2, 5), True, False)):
        a_bits, b_bits = (8, 7) if a_signed else (6, 7)
        mac = matmul_operand_mac(a_bits, a_signed, b_bits, b_signed, 16)
        lo_a, hi_a = (-(1 << (a_bits - 1)), (1 << (a_bits - 1)) - 1) if a_signed else \
            (0, (1 << a_bits) - 1)
        lo_b, hi_b = (-(1 << (b_bits - 1)), (1 << (b_bits - 1)) - 1) if b_signed else \
            (0, (1 << b_bits) - 1)
        a = rng.integers(lo_a, hi_a + 1, (m, k))
        b = rng.integers(lo_b, hi_b + 1, (k, n))
        jobs.append(matmul_job(a, b, mac, name=f"matmul_{m}x{k}x{n}"))
    return jobs


# -- Amaranth's simulator --------------------------------------------------------------------

def test_grouped_dilated_and_matmul_jobs_in_pysim():
    rng = np.random.default_rng(5)
    for cfg, jobs in ((DW_CFG, _random_grouped(rng)), (ATT_CFG, _random_matmuls(rng))):
        results = run_layers(cfg, jobs)
        for job, res in zip(jobs, results):
            ref = reference_outputs(job)
            z = _direct(job)
            np.testing.assert_array_equal(ref["z"], z)
            k = job.mac.k
            y = wrap(z, job.mac.acc_bits) if k is None else cyclic(z, job.mac.acc_bits, k)
            np.testing.assert_array_equal(ref["y"], y)
            np.testing.assert_array_equal(res["out"], ref["out"], err_msg=job.name)
            model = layer_cycles(cfg, job.shape)
            assert res["cycles"] == model.total and res["edges"] == model.total + 1
            assert res["busy"] == (1, 0)
    # A depthwise layer uses one column per tile: 6 channels in 6 tiles per position tile,
    # each K = 9 cycles long (the drain lane reads one column: R + C - 1 = 3 cycles).
    dw = layer_cycles(DW_CFG, LayerShape.conv2d(6, 5, 6, 6, 3, 1, 1, groups=6))
    assert dw.channel_tiles == 6 and dw.period == 9



@pytest.mark.parametrize("rows", [1, 2, 3, 4])
def test_random_grouped_layers_across_array_shapes(rows):
    """Random grouped and depthwise layers on rows x {1, 2, 4} PEs (groups of fewer,
    as many and more channels than columns; with and without requantization), and on
    2 x 2 the shape of the trained 8-wide depthwise node: outputs equal wrapkit.ref and
    cycles equal the model, so the drain lane's column count and the tile period hold
    for every array shape."""
    rng = np.random.default_rng(100 + rows)
    for cols in (1, 2, 4):
        cfg = ArrayConfig(rows, cols, DW_MAC, out_bits=8, act_depth=512, weight_depth=256,
                          out_depth=512, max_channels=16)
        groups = int(rng.choice([2, 3, 4]))
        shapes = [LayerShape.conv2d(groups * int(rng.integers(1, 3)), int(rng.integers(3, 6)),
                                    int(rng.integers(3, 6)), groups * int(rng.integers(1, 4)),
                                    int(rng.choice([1, 3])), 1, 1, groups=groups)]
        if (rows, cols) == (2, 2):
            shapes.append(LayerShape.conv2d(8, 8, 8, 8, 3, 1, 1, groups=8))
        jobs = [random_job(shape, DW_MAC, rng, out_bits=6 if i % 2 else None,
                           name=f"{shape.describe()} on {rows}x{cols}")
                for i, shape in enumerate(shapes)]
        for job, res in zip(jobs, run_layers(cfg, jobs)):
            np.testing.assert_array_equal(res["out"], reference_outputs(job)["out"],
                                          err_msg=job.name)
            assert res["cycles"] == layer_cycles(cfg, job.shape).total, job.name


def test_depthwise_tile_period_is_the_drain_bound(monkeypatch):
    """A depthwise tile drains one column, so tiles follow each other every
    max(K, R + C - 1) cycles instead of R*C; the bound is exact: one cycle less, and the
    next tile's results replace some before the drain lane reads them."""
    import wrapkit.hw.array.jobs as jobs_module

    cfg = ArrayConfig(3, 4, MacConfig(3, False, "binary", None, 8, 2), out_bits=4,
                      act_depth=128, weight_depth=128, out_depth=128, max_channels=8)
    shape = LayerShape.conv2d(5, 3, 4, 5, 1, groups=5)          # K = 1
    assert layer_cycles(cfg, shape).period == 3 + 4 - 1
    job = random_job(shape, cfg.mac, np.random.default_rng(2), out_bits=4, name="dw1x1")
    res = run_layers(cfg, [job])[0]
    np.testing.assert_array_equal(res["out"], reference_outputs(job)["out"])
    assert res["cycles"] == layer_cycles(cfg, shape).total
    period = jobs_module.tile_period
    monkeypatch.setattr(jobs_module, "tile_period", lambda c, s: period(c, s) - 1)
    res = run_layers(cfg, [job], max_cycles=2000)[0]
    assert np.count_nonzero(res["out"] != reference_outputs(job)["out"]) > 0


def test_trained_graph_nodes_in_pysim(graph_nets):
    """MAC nodes of both trained networks (the depthwise conv; the Q projection over tokens,
    QKᵀ and A·V) on a 2x2 array, one digit."""
    ran = set()
    for name, names in (("depthwise", ["dw"]), ("attention", ["q", "qk", "av"])):
        exp = graph_nets[name]
        graph = exp.graph
        assert set(names) <= set(array_nodes(graph))
        values, inputs = _node_values(exp, names, 1)
        for n in names:
            node = graph.node(n)
            jobs = node_jobs(graph, node, inputs[n])
            s = node_shape(graph, node)
            cfg = ArrayConfig(2, 2, node_mac(graph, node), out_bits=8,
                              act_depth=max(2, s.in_channels * s.in_h * s.in_w),
                              weight_depth=max(2, s.out_channels * s.fan_in),
                              out_depth=max(2, s.out_channels * s.positions),
                              max_channels=max(2, s.out_channels))
            results = run_layers(cfg, jobs)
            got = node_output(graph, node, [r["out"] for r in results])
            np.testing.assert_array_equal(got, values[n], err_msg=n)
            assert all(r["cycles"] == layer_cycles(cfg, s).total for r in results)
            ran.add((node.kind, s.groups > 1, s.is_matmul))
    assert ran == {("conv2d", True, False), ("linear", False, False), ("matmul", False, True)}
    dw = graph_nets["depthwise"].graph.node("dw")
    assert node_shape(graph_nets["depthwise"].graph, dw).groups == 4   # depthwise: 4 groups


def test_hand_built_graph_nodes_in_pysim():
    """Node forms the trained networks lack: a matmul with a head axis (one job per head), a
    dilated grouped conv with an exact accumulator, a linear node on a vector, all on one
    graph input; outputs back in the node's layout equal the graph engine's."""
    from wrapkit.ref.graph import Graph, TensorType, infer_types, new_node

    rng = np.random.default_rng(4)
    graph = Graph(
        {"x": TensorType.integer((4, 7, 6), 4, False),
         "a": TensorType.integer((2, 3, 5), 6, True),
         "b": TensorType.integer((2, 5, 4), 5, False)},
        [new_node("conv", "conv2d", ["x"],
                  {"stride": (1, 1), "padding": (2, 2), "dilation": (2, 2), "groups": 2,
                   "acc": {"mode": "exact", "bits": None, "k": None},
                   "weight_kind": "int", "weight_bits": None},
                  {"weight": rng.integers(-9, 10, (6, 2, 3, 3)).astype(np.int8)}),
         new_node("flat", "flatten", ["x"]),
         new_node("fc", "linear", ["flat"],
                  {"acc": {"mode": "cyclic", "bits": 10, "k": 2}, "weight_kind": "binary",
                   "weight_bits": None},
                  {"weight": rng.choice([-1, 1], (5, 168)).astype(np.int8)}),
         new_node("mm", "matmul", ["a", "b"], {"acc": {"mode": "wrap", "bits": 9, "k": None}})],
        ["conv", "fc", "mm"])
    infer_types(graph)
    feeds = {"x": rng.integers(0, 16, (2, 4, 7, 6)), "a": rng.integers(-32, 32, (2, 2, 3, 5)),
             "b": rng.integers(0, 32, (2, 2, 5, 4))}
    want = GraphEngine(graph).run(feeds)
    for name in ("conv", "fc", "mm"):
        node = graph.node(name)
        inputs = [feeds[s] if s in feeds else feeds["x"].reshape(2, -1) for s in node.inputs]
        jobs = node_jobs(graph, node, inputs)
        assert len(jobs) == (4 if name == "mm" else 2)       # 2 samples x 2 heads
        s = node_shape(graph, node)
        cfg = ArrayConfig(2, 3, node_mac(graph, node), act_depth=256, weight_depth=1024,
                          out_depth=256, max_channels=8)
        results = run_layers(cfg, jobs)
        got = node_output(graph, node, [r["out"] for r in results])
        np.testing.assert_array_equal(got, want[name], err_msg=name)
        assert all(r["cycles"] == layer_cycles(cfg, s).total for r in results)
    assert node_mac(graph, graph.node("conv")).acc_bits == graph.node("conv").output.bits
    assert node_mac(graph, graph.node("mm")).weight_bits == 6   # 5-bit unsigned B
    assert node_describe(graph, graph.node("mm")) == "matmul 3x5 @ 5x4, 2 slices per sample"
    assert node_describe(graph, graph.node("fc")) == "linear 168->5"


def test_job_files_keep_groups_dilation_and_matmul(tmp_path):
    rng = np.random.default_rng(1)
    jobs = _random_grouped(rng) + _random_matmuls(rng)
    path = tmp_path / "jobs.npz"
    path.write_bytes(jobs_bytes(jobs))
    for a, b in zip(jobs, load_jobs(path)):
        assert a.shape == b.shape and a.mac == b.mac
        np.testing.assert_array_equal(a.weight_codes, b.weight_codes)


def test_refusals_name_the_parameter():
    rng = np.random.default_rng(0)
    mm = _random_matmuls(rng)[0]            # 8-bit signed A, 7-bit signed B
    with pytest.raises(UserError, match=r"^weight_kind is ternary but layer matmul_5x7x3 "
                                        r"\(matmul 5x7 @ 7x3\) loads its second operand into "
                                        r"the weight buffer as 7-bit uniform codes; regenerate "
                                        r"the array with --weight-kind uniform --weight-bits 7$"):
        check_job(ArrayConfig(2, 2, MacConfig(8, True, "ternary", None, 16, None)), mm)
    with pytest.raises(UserError, match=r"^weight_bits is 6 but .*second operand: 7-bit "
                                        r"two's-complement codes\) needs >= 7; regenerate the "
                                        r"array with --weight-bits 7$"):
        check_job(ArrayConfig(2, 2, MacConfig(8, True, "uniform", 6, 16, None)), mm)
    dw = _random_grouped(rng)[0]
    with pytest.raises(UserError, match=r"^weight_depth is 40 but layer depthwise \(conv 3x3/1 "
                                        r"pad 1 6->6 @5x6 groups 6\) \(out_channels\*fan_in "
                                        r"words\) needs >= 54;"):
        check_job(ArrayConfig(2, 2, DW_MAC, weight_depth=40), dw)
    with pytest.raises(ValueError, match=r"^groups 4 must divide in_channels 6 and "
                                         r"out_channels 8$"):
        LayerShape.conv2d(6, 4, 4, 8, 3, groups=4)
    with pytest.raises(ValueError, match=r"^dilation must be in \[1, 8\], got 9$"):
        LayerShape.conv2d(1, 40, 40, 1, 3, dilation=9)


def test_node_refusals(graph_nets):
    graph = graph_nets["attention"].graph
    ns = argparse.Namespace(model="att.wkx", node="softmax", images=1, sim="icarus",
                            dataset=None, data_dir=None, json=None, rows=2, cols=2, array=None)
    mac_list = r"its MAC nodes \(conv2d, linear, matmul\): q, k, v, qk, av$"
    softmax = next(n.name for n in graph.nodes if n.kind == "softmax")
    from wrapkit.sim.layer_array import cosim_array_node

    path = graph_nets["attention"].path
    with pytest.raises(UserError, match=rf"^node '{softmax}' of .* is a softmax node, not a "
                                        rf"MAC node; {mac_list}"):
        cosim_array_node(path, softmax, sim="icarus")
    with pytest.raises(UserError, match=rf"^.* has no node 'nope'; {mac_list}"):
        cosim_array_node(path, "nope", sim="icarus")
    ns.node, ns.array, ns.model = "qk", "x.json", path
    with pytest.raises(UserError, match=r"^--array fixes the array; drop --rows/--cols"):
        run_node_cli(ns)


# -- cocotb on Icarus and Verilator ----------------------------------------------------------

def _check_cosim(result, cfg, jobs):
    assert result.ok, (result.sim_result.summary() + "\n" + "\n".join(result.examples)
                       + "\n".join(result.cycle_errors))
    assert result.checked == sum(j.shape.out_channels * j.shape.positions for j in jobs)
    for job, layer in zip(jobs, result.layers):
        assert layer["cycles"] == layer["cycles_by_sim_time"] == layer_cycles(cfg,
                                                                               job.shape).total


@pytest.mark.sim
def test_depthwise_node_and_grouped_layers_cosim(sim, graph_nets):
    """The trained network's depthwise node (two digits) and random grouped/dilated layers."""
    exp = graph_nets["depthwise"]
    graph = exp.graph
    values, inputs = _node_values(exp, ["dw"], 2)
    node = graph.node("dw")
    node_jobs_ = node_jobs(graph, node, inputs["dw"])
    jobs = node_jobs_ + _random_grouped(np.random.default_rng(7))
    result = cosim_array(array_rtl(DW_CFG), jobs, sim)
    _check_cosim(result, DW_CFG, jobs)
    got = node_output(graph, node, result.outputs[:len(node_jobs_)])
    np.testing.assert_array_equal(got, values["dw"])
    assert np.abs(values["dw"]).max() > 0


@pytest.mark.sim
def test_attention_matmul_nodes_cosim(sim, graph_nets):
    """QKᵀ (signed x signed) and A·V (unsigned probabilities x signed values) of the trained
    attention block, and random matmuls of every signedness, on one 2x2 array."""
    exp = graph_nets["attention"]
    graph = exp.graph
    values, inputs = _node_values(exp, ["qk", "av"], 1)
    jobs, spans = [], {}
    for n in ("qk", "av"):
        part = node_jobs(graph, graph.node(n), inputs[n])
        spans[n] = (len(jobs), len(jobs) + len(part))
        jobs += part
    jobs += _random_matmuls(np.random.default_rng(8))
    result = cosim_array(array_rtl(ATT_CFG), jobs, sim)
    _check_cosim(result, ATT_CFG, jobs)
    for n, (lo, hi) in spans.items():
        got = node_output(graph, graph.node(n), result.outputs[lo:hi])
        np.testing.assert_array_equal(got, values[n], err_msg=n)
    assert graph.type_of(graph.node("qk").inputs[0]).signed
    assert not graph.type_of(graph.node("av").inputs[0]).signed


@pytest.mark.sim
@pytest.mark.parametrize("net,node", [("depthwise", "dw"), ("attention", "av")])
def test_run_node_cli_on_icarus(graph_nets, capsys, tmp_path, net, node):
    path = graph_nets[net].path
    out = tmp_path / "r.json"
    ns = argparse.Namespace(model=path, node=node, images=1, sim="icarus", dataset=None,
                            data_dir=None, json=str(out), rows=2, cols=2, array=None)
    assert run_node_cli(ns) == 0
    text = capsys.readouterr().out
    assert f"cosim node {node} (" in text and "0 mismatches against the integer engine" in text
    import json

    doc = json.loads(out.read_text())
    assert doc["ok"] and doc["cycles"] == doc["model_cycles"] > 0 and doc["outputs"] > 0


@pytest.mark.sim
def test_version1_export_node_on_icarus(tiny_export):
    """A version-1 export is read as its graph: its integer conv nodes run by name."""
    from wrapkit.ref.graph import read_graph as read
    from wrapkit.sim.layer_array import cosim_array_node

    _, wkx, _ = tiny_export
    graph = read(wkx).graph
    convs = [n.name for n in graph.nodes if n.kind == "conv2d"]
    r = cosim_array_node(wkx, convs[0], images=1, sim="icarus", rows=4, cols=4)
    assert r.ok and r.mismatches == 0 and r.outputs == int(np.prod(graph.node(
        convs[0]).output.shape))
    assert r.cycles == r.model_cycles > 0 and r.kind == "conv2d"
