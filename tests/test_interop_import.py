"""`wrapkit import`: a QONNX model exported by Brevitas (export_qonnx of a small
QuantConv2d/QuantLinear/QuantReLU network) read into an integer graph, run in the engine
against QONNX's own executor, and one of its layers cosimulated on a MAC."""

import numpy as np
import onnx
import pytest

from wrapkit.cli import main
from wrapkit.common.errors import UserError
from wrapkit.interop.qonnx_import import check_import, qonnx_to_graph
from wrapkit.ref.graph import GraphEngine, read_graph
from wrapkit.ref.graph.node_streams import node_stream


@pytest.fixture(scope="module")
def brevitas_onnx(tmp_path_factory):
    """A trained-looking Brevitas network (statistics collected on a few batches)."""
    import torch
    from brevitas.export import export_qonnx
    from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear, QuantReLU
    from brevitas.quant import Int8WeightPerChannelFloat, Uint8ActPerTensorFloat
    from torch import nn

    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = QuantIdentity(act_quant=Uint8ActPerTensorFloat, bit_width=4,
                                     return_quant_tensor=True)
            self.c1 = QuantConv2d(1, 4, 3, padding=1, bias=False,
                                  weight_quant=Int8WeightPerChannelFloat, weight_bit_width=4)
            self.r1 = QuantReLU(bit_width=4, return_quant_tensor=True)
            self.c2 = QuantConv2d(4, 6, 3, padding=1, bias=True, weight_bit_width=4)
            self.r2 = QuantReLU(bit_width=4, return_quant_tensor=True)
            self.fc = QuantLinear(6 * 4 * 4, 10, bias=False, weight_bit_width=4)

        def forward(self, x):
            x = self.r1(self.c1(self.inp(x)))
            x = torch.nn.functional.max_pool2d(x, 2)
            x = self.r2(self.c2(x))
            return self.fc(x.flatten(1))

    net = Net()
    with torch.no_grad():
        for _ in range(5):
            net(torch.randn(16, 1, 8, 8))
    net.eval()
    path = tmp_path_factory.mktemp("brevitas") / "net.onnx"
    export_qonnx(net, torch.randn(1, 1, 8, 8), export_path=str(path))
    return path


def test_brevitas_model_imports_and_equals_qonnx_executor(brevitas_onnx):
    model = onnx.load(brevitas_onnx)
    assert "Quant" in {n.op_type for n in model.graph.node}
    graph, _ = qonnx_to_graph(model)
    kinds = [n.kind for n in graph.nodes]
    assert kinds == ["quantize", "conv2d", "requant", "max_pool2d", "conv2d", "requant",
                     "flatten", "linear", "dequant"]
    conv = next(n for n in graph.nodes if n.kind == "conv2d")
    assert np.abs(conv.weights["weight"]).max() <= 7        # 4-bit narrow weights
    report = check_import(model, graph, images=12)
    assert report.mismatches == 0 and len(report.codes) == 3, report.describe()
    assert report.outputs_max_abs_diff < 1e-5


@pytest.mark.sim
def test_cli_import_with_a_p_bit_register_and_cosim(brevitas_onnx, tmp_path, capsys, cache_dir):
    from wrapkit.sim.designs import mac_design_for
    from wrapkit.sim.stream_cosim import cosim_stream

    out = tmp_path / "net.wkx"
    assert main(["import", str(brevitas_onnx), "-o", str(out), "--acc-bits", "16",
                 "--check-images", "8"]) == 0
    assert "0 differ" in capsys.readouterr().out
    exp = read_graph(out)
    node = exp.graph.node("conv2d_1")
    assert node.attrs["acc"].mode == "wrap" and node.attrs["acc"].bits == 16
    x = np.random.default_rng(1).standard_normal((2, 1, 8, 8)).astype(np.float32)
    got = GraphEngine(exp.graph).run({"x": x}, keep=[node.inputs[0], node.name])
    stream, cfg = node_stream(exp.graph, node.name, [got[node.inputs[0]]], got[node.name])
    assert (cfg.act_bits, cfg.weight_bits, cfg.acc_bits) == (4, 4, 16)
    assert stream.dots == 2 * 6 * 4 * 4
    r = cosim_stream(mac_design_for(cfg), stream, "icarus")
    assert r.checked == len(stream) == stream.dots * 36
    assert r.mismatches == 0 and r.final_mismatches == 0, r.examples


def test_unsupported_operators_are_refused_in_one_line(brevitas_onnx):
    model = onnx.load(brevitas_onnx)
    relu = next(n for n in model.graph.node if n.op_type == "Relu")
    relu.op_type = "Sigmoid"
    with pytest.raises(UserError, match=r"ONNX node .*\(Sigmoid\): no wrapkit node kind"):
        qonnx_to_graph(model, source="net.onnx")
