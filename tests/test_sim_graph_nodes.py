"""``wrapkit cosim layer --node``: one MAC node of each kind (plain conv2d, depthwise conv2d,
linear, matmul) of a network trained on digits, through the RTL MAC on both simulators with
0 mismatches; a wrong expectation is reported with its cycle, operands, expected and actual
value (exit 1); bad --node input is one line (exit 2)."""

import json
import re

import numpy as np
import pytest

from graph_digits import NETS, trained_graph_file
from wrapkit.cli import main
from wrapkit.ref.graph import read_graph
from wrapkit.ref.graph.node_streams import node_mac_config

#: kind -> (network, node)
NODES = {kind: (net, node) for net, (_, nodes) in NETS.items() for kind, node in nodes.items()}


@pytest.fixture(scope="module")
def graph_files(tmp_path_factory):
    """The two networks trained for a few seconds on digits, as version-2 graph files."""
    folder = tmp_path_factory.mktemp("graphs")
    return {net: trained_graph_file(net, folder / f"{net}.wkx")[0] for net in NETS}


@pytest.mark.sim
@pytest.mark.parametrize("kind", ["conv2d", "depthwise", "linear", "matmul"])
def test_trained_mac_node_of_each_kind_cosimulates_with_0_mismatches(graph_files, sim, kind):
    from wrapkit.sim.layer_mac import cosim_node

    net, node = NODES[kind]
    graph = read_graph(graph_files[net]).graph
    gnode = graph.node(node)
    assert gnode.kind == ("conv2d" if kind == "depthwise" else kind)
    if kind == "depthwise":
        assert gnode.attrs["groups"] == graph.type_of(gnode.inputs[0]).shape[0] > 1
    if kind == "conv2d":
        assert gnode.attrs["groups"] == 1
    r = cosim_node(graph_files[net], node, images=2, sim=sim, max_ops=3000)
    assert r.ok, (r.examples, r.log)
    assert r.mismatches == 0 and r.final_mismatches == 0
    assert r.checked == r.ops == r.dots * r.fan_in > 0
    # The first whole dot products within 3000 operations, or both images' all.
    assert r.dots == min(3000 // r.fan_in, 2 * gnode.output.size)
    assert r.design == node_mac_config(graph, node).name and r.kind == gnode.kind
    assert r.fan_in == (graph.type_of(gnode.inputs[0]).shape[-1] if kind == "matmul"
                        else int(np.prod(gnode.weights["weight"].shape[1:])))


@pytest.mark.sim
def test_attention_values_node_on_the_driven_path(graph_files):
    """A·V: unsigned probabilities times signed values, cocotb driving every cycle."""
    from wrapkit.sim.layer_mac import cosim_node

    r = cosim_node(graph_files["attention"], "av", images=1, sim="icarus", path="driven",
                   max_ops=600)
    assert r.ok and r.checked == r.ops > 0, (r.examples, r.log)
    # Unsigned probabilities on the activation port, signed 8-bit values as 8-bit weights.
    assert r.design.startswith("mac_a8u_wu8_")


@pytest.mark.sim
def test_cli_node_reports_json_and_a_corrupted_expectation(graph_files, tmp_path, capsys,
                                                           monkeypatch):
    model = str(graph_files["attention"])
    out = tmp_path / "r.json"
    assert main(["cosim", "layer", model, "--node", "qk", "--max-ops", "800", "--json",
                 str(out)]) == 0
    text = capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert doc["ok"] and doc["layer"] is None and doc["name"] == "qk"
    assert doc["kind"] == "matmul" and doc["checked"] == doc["ops"] > 0
    assert f"cosim node qk (matmul) of {model}" in text and " 0 mismatches" in text

    # One expected value off by one: exit 1, the report names the cycle, the operands, the
    # expected and the actual values.
    from wrapkit.ref.graph import node_streams

    real = node_streams.node_stream

    def corrupted(*args, **kwargs):
        stream, cfg = real(*args, **kwargs)
        bad = stream.final_out.copy()
        bad[3] += 1
        return stream.replace(final_out=bad), cfg

    monkeypatch.setattr(node_streams, "node_stream", corrupted)
    assert main(["cosim", "layer", model, "--node", "qk", "--max-ops", "800"]) == 1
    text = capsys.readouterr().out
    assert "0 mismatches, 1 dot products differing from the integer engine" in text
    stream, _ = real(*_node_inputs(model, "qk"), max_dots=4)
    end = 4 * (len(stream) // stream.dots) - 1                     # last op of dot #3
    y = int(stream.final_out[3])
    line = re.search(r"mismatch: dot product #3 ends at op #(\d+): a=(-?\d+) w=0x([0-9a-f]+): "
                     r"integer engine expects acc (-?\d+), y (-?\d+); got acc (-?\d+), "
                     r"y (-?\d+)", text)
    assert line, text
    assert int(line[1]) == end and int(line[2]) == stream.a[end] and int(line[3], 16) == \
        stream.w[end]
    assert int(line[5]) == y + 1 and int(line[7]) == y


def _node_inputs(model, node):
    from wrapkit.common.datasets import load_images
    from wrapkit.ref.graph import GraphEngine

    graph = read_graph(model).graph
    gnode = graph.node(node)
    values = GraphEngine(graph).run(load_images("digits", "test").first(1).pixels,
                                    keep=list(gnode.inputs))
    return graph, node, [values[s] for s in gnode.inputs]


def test_cli_bad_node_is_one_line(graph_files, capsys):
    model = str(graph_files["depthwise"])
    # `wrapkit infer` lists the MAC nodes, so users can find them.
    assert main(["infer", model, "--images", "20"]) == 0
    assert "MAC nodes (`wrapkit cosim layer FILE --node NAME`): dw, pw, down\n" in \
        capsys.readouterr().out
    cases = [
        (["--node", "nope"], r"has no node 'nope'; its MAC nodes are dw, pw, down$"),
        (["--node", "pw.pixel_shuffle"],
         r"node 'pw\.pixel_shuffle' is a pixel_shuffle node, which runs on no MAC; choose a "
         r"MAC node: dw, pw, down$"),
        (["--node", "dw", "--max-ops", "0"], r"--max-ops must be an integer >= 1, got 0"),
        (["--layer", "1"], r"is an integer graph \(version 2\), which has nodes, not layers: "
                           r"pass --node NAME \(its MAC nodes: dw, pw, down\)$"),
    ]
    for extra, message in cases:
        assert main(["cosim", "layer", model, *extra]) == 2, extra
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and re.search(message, err), (message, err)


@pytest.mark.sim
def test_node_of_a_version_1_file(tiny_export):
    """A version-1 file's integer layers are graph nodes named like the layers; the node
    path gives the same design and operands as --layer."""
    from wrapkit.ref.engine import Engine
    from wrapkit.sim.layer_mac import cosim_node, layer_operands

    layer = Engine(tiny_export[2]).layer(3)
    r = cosim_node(tiny_export[1], layer.name, images=1, sim="icarus", max_ops=2000)
    assert r.ok and r.design == layer.cfg.name, r.examples
    _, _, by_layer, _ = layer_operands(tiny_export[1], 3, 1, max_ops=2000)
    from wrapkit.sim.layer_mac import node_operation_stream

    by_node = node_operation_stream(tiny_export[1], layer.name, 1, max_ops=2000)[0]
    for field in ("a", "w", "clr", "final_acc", "final_out"):
        assert np.array_equal(getattr(by_node, field), getattr(by_layer, field)), field


def test_array_datapath_node_goes_to_the_array_node_runner(graph_files, capsys, monkeypatch):
    """--datapath array --node runs sim.layer_array.run_node_cli where it exists, else one
    line naming the limit (exit 2)."""
    from wrapkit.sim import layer_array

    model = str(graph_files["depthwise"])
    monkeypatch.delattr(layer_array, "run_node_cli", raising=False)
    assert main(["cosim", "layer", model, "--node", "dw", "--datapath", "array"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--datapath array runs version-1 layers only" in err
    seen = []
    monkeypatch.setattr(layer_array, "run_node_cli", lambda args: seen.append(args) or 0,
                        raising=False)
    assert main(["cosim", "layer", model, "--node", "dw", "--datapath", "array"]) == 0
    assert seen[0].node == "dw" and seen[0].layer is None


@pytest.mark.sim
def test_array_datapath_node_end_to_end(graph_files, capsys):
    """The command line runs a trained depthwise node on a generated 2x2 array (Icarus)."""
    model = str(graph_files["depthwise"])
    assert main(["cosim", "layer", model, "--node", "dw", "--datapath", "array",
                 "--sim", "icarus", "--rows", "2", "--cols", "2"]) == 0
    out = capsys.readouterr().out
    assert "cosim node dw (" in out and "0 mismatches against the integer engine" in out


def test_array_node_counts_an_unresolved_word_against_the_engine(graph_files, capsys,
                                                                  monkeypatch):
    """A word the testbench reads back as x (handed over as a number and a mask) is a
    mismatch against the graph engine too, whatever number stands in for it."""
    from types import SimpleNamespace

    from wrapkit.hw.array.cycles import layer_cycles
    from wrapkit.hw.array.jobs import reference_outputs
    from wrapkit.sim import cosim_array as cosim_module
    from wrapkit.sim.cosim_array import ArrayCosimResult

    def fake_cosim(manifest, jobs, sim):
        cfg = manifest
        out = ArrayCosimResult("fake", sim, sim_result=SimpleNamespace(wall_s=0.0,
                                                                       log_file="none"))
        for job in jobs:
            words = reference_outputs(job)["out"].copy()
            unresolved = np.zeros(words.shape, dtype=bool)
            unresolved[0, 0] = True      # read as x; its word equals the engine's value
            out.outputs.append(words)
            out.unresolved.append(unresolved)
            out.layers.append({"cycles": layer_cycles(cfg, job.shape).total,
                               "wall_s": {"compute": 0.0}})
        out.checked, out.mismatches = sum(o.size for o in out.outputs), len(jobs)
        out.examples = ["dw: output (channel 0, y 0, x 0) got x (unresolved)"]
        return out

    monkeypatch.setattr(cosim_module, "array_rtl", lambda cfg: cfg)
    monkeypatch.setattr(cosim_module, "cosim_array", fake_cosim)
    model = str(graph_files["depthwise"])
    assert main(["cosim", "layer", model, "--node", "dw", "--datapath", "array",
                 "--rows", "2", "--cols", "2"]) == 1
    out = capsys.readouterr().out
    assert "1 mismatches against the integer engine; 1 against wrapkit.ref" in out
    assert re.search(r"mismatch: image 0 output \(0, 0, 0\): engine -?\d+, array x", out)
