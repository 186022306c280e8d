"""A briefly trained quantized attention network (AttentionNet with integer TWIST, digits) on
the datapath: its signed-input projection, Q·Kᵀ and A·V nodes through the RTL MAC with 0
mismatches on both simulators, and Q·Kᵀ — global and over local windows — on a 2x2 array
with 0 mismatches and the cycles the cycle model predicts."""

import numpy as np
import pytest

from attention_digits import trained_attention_file
from wrapkit.models.attention import AttentionConfig
from wrapkit.ref.graph import read_graph
from wrapkit.ref.graph.node_streams import node_mac_config

CONFIGS = {"global": AttentionConfig(twist_t=0.1),
           "local": AttentionConfig(twist_t=0.1, local_length=8, swap=True)}


@pytest.fixture(scope="module")
def attention_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("attention")
    return {name: trained_attention_file(cfg, folder / f"{name}.wkx")[0]
            for name, cfg in CONFIGS.items()}


@pytest.mark.sim
@pytest.mark.parametrize("node", ["attn.proj", "attn.qk", "attn.av"])
def test_attention_mac_nodes_cosimulate_with_0_mismatches(attention_files, sim, node):
    from wrapkit.sim.layer_mac import cosim_node

    path = attention_files["global"]
    graph = read_graph(path).graph
    gnode = graph.node(node)
    first = graph.type_of(gnode.inputs[0])
    r = cosim_node(path, node, images=1, sim=sim, max_ops=2000)
    assert r.ok, (r.examples, r.log)
    assert r.mismatches == 0 and r.final_mismatches == 0
    assert r.checked == r.ops == r.dots * r.fan_in > 0
    assert r.dots == min(2000 // r.fan_in, gnode.output.size)
    assert r.kind == gnode.kind and r.design == node_mac_config(graph, node).name
    # The projection reads the signed A·V codes, Q·Kᵀ signed Q codes, A·V unsigned
    # probability codes: the MAC's activation port follows the node's first input.
    assert first.signed == (node != "attn.av")
    assert r.design.startswith(f"mac_a{first.bits}{'s' if first.signed else 'u'}_")


@pytest.mark.sim
@pytest.mark.parametrize("name", ["global", "local"])
def test_attention_scores_on_a_2x2_array_equal_the_engine_and_the_cycle_model(attention_files,
                                                                             name):
    from wrapkit.sim.layer_array import cosim_array_node

    path = attention_files[name]
    qk = read_graph(path).graph.node("attn.qk")
    windows, heads, m, _ = qk.output.shape
    r = cosim_array_node(path, "attn.qk", images=1, sim="icarus", rows=2, cols=2)
    assert r.ok, (r.examples, r.cycle_errors, r.log)
    assert r.mismatches == 0 and r.testbench_mismatches == 0
    assert r.outputs == int(np.prod(qk.output.shape)) == windows * heads * m * m
    assert r.cycles == r.model_cycles > 0
    # n·M multiply-accumulates of head dimension 16 per head: n² globally, n·M locally.
    assert r.macs == 16 * heads * 16 * m
    assert windows == (1 if name == "global" else 2)
