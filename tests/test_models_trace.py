"""Export by tracing (wrapkit.models.trace): ResNet-20 with quantized residual adds, a
depthwise + pixel-shuffle network and an attention block become integer graphs whose every
integer node equals PyTorch's; unsupported modules and functions are refused in one line."""

import io
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from wrapkit.cli import main
from wrapkit.common.errors import UserError
from wrapkit.models import build_model
from wrapkit.models.graph_nets import DepthwiseShuffleNet, TinyAttention, calibrate_ranges
from wrapkit.models.layers import QuantConv2d
from wrapkit.models.qconfig import Accumulator, ActQuant, WeightQuant
from wrapkit.models.residual import QuantAdd
from wrapkit.models.trace import compare_with_pytorch, trace_model
from wrapkit.ref.graph import GraphEngine, decode_graph, encode_graph, read_graph

SPEC = {"shape": [1, 16, 16], "pixel_max": 255, "mean": 0.3, "std": 0.35}


def _inputs(n=24, size=16, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, size=(n, 1, size, size))
    pixels = pixels.astype(np.uint8)
    x = (torch.from_numpy(pixels).float() / np.float32(255) - np.float32(SPEC["mean"])) \
        / np.float32(SPEC["std"])
    return pixels, x


def _randomise_bn(model):
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)


def _quantized_resnet():
    torch.manual_seed(1)
    model = build_model("resnet20", image_size=16, widths=(4, 8, 8), blocks_per_stage=2,
                        weight_quant=WeightQuant("ternary"))
    _randomise_bn(model)
    for i, (_, layer) in enumerate(model.quant_layers()):
        layer.act_quant = ActQuant(0.037 + 0.0031 * i, 4 + i % 3)
        layer.accumulator = Accumulator(8, k=2)
    return model.eval()


def _check_equal(model, feed_first_codes=True):
    pixels, x = _inputs()
    traced = trace_model(model, input_spec=SPEC)
    result = compare_with_pytorch(traced, pixels, x, batch_size=10,
                                  feed_first_codes=feed_first_codes)
    bad = {k: v for k, v in result["nodes"].items() if v["mismatches"]}
    assert not bad
    assert all(v["values"] > 0 for v in result["nodes"].values())
    np.testing.assert_allclose(result["engine_logits"], result["torch_logits"], atol=1e-4)
    # The graph survives a file round trip and runs the same.
    back = decode_graph(encode_graph(traced.graph, input=SPEC, num_classes=10))
    out = GraphEngine(back.graph).run(pixels)[back.graph.outputs[0]]
    assert out.shape == (len(pixels), 10)
    return traced


def test_resnet20_with_integer_residual_adds_equals_pytorch_node_by_node():
    traced = _check_equal(_quantized_resnet())
    kinds = [n.kind for n in traced.graph.nodes]
    assert kinds.count("add") == 6 and kinds.count("conv2d") == 12
    assert {"pad", "max_pool2d", "global_avg_pool2d", "dequant"} <= set(kinds)
    # The residual branch requantizes to signed codes one bit wider than the add's output.
    add = traced.graph.node("blocks.0.add")
    branch = traced.graph.type_of(add.inputs[0])
    assert branch.signed and branch.bits == add.output.bits + 1
    floats = [n.kind for n in traced.graph.nodes if not n.output.is_int]
    assert floats == ["standardize", "conv2d_float", "dequant", "global_avg_pool2d",
                      "flatten", "linear_float"]


def test_quant_add_is_the_float_add_until_activations_are_quantized():
    add = QuantAdd()
    a, b = torch.randn(2, 3), torch.rand(2, 3)
    assert torch.equal(add(a, b), F.relu(a + b))
    conv = QuantConv2d(3, 3, 1, weight_quant=WeightQuant("binary"))
    add.bind(conv)
    assert add.scales() is None
    conv.act_quant = ActQuant(0.25, 3)
    sc = add.scales()
    assert sc.to_dict() == {"a_step": 0.25, "a_bits": 9, "b_step": 0.25, "b_bits": 3,
                            "out_step": 0.25, "out_bits": 8}
    out = add(torch.tensor([[0.3, -1.0, 2.0]]), torch.tensor([[0.5, 0.25, 9.0]]))
    # codes: a = round(a/0.25) = [1, -4, 8], b = [2, 1, 7]; add at equal scales = a + b.
    assert out.tolist() == [[0.75, 0.0, 3.75]]


@pytest.mark.parametrize("net", ["depthwise", "attention"])
def test_depthwise_shuffle_and_attention_networks_equal_pytorch(net):
    torch.manual_seed(2)
    model = DepthwiseShuffleNet() if net == "depthwise" else TinyAttention(image_size=16)
    _randomise_bn(model)
    calibrate_ranges(model, _inputs(64, seed=5)[1])
    traced = _check_equal(model)
    kinds = {n.kind for n in traced.graph.nodes}
    if net == "depthwise":
        assert {"pixel_shuffle", "upsample_nearest", "max_pool2d"} <= kinds
        assert traced.graph.node("dw").attrs["groups"] == 8
    else:
        assert {"matmul", "softmax", "transpose", "linear"} <= kinds


def test_depthwise_quant_conv_is_a_grouped_convolution():
    conv = QuantConv2d(4, 4, 3, padding=1, groups=4, weight_quant=WeightQuant("float"))
    x = torch.randn(2, 4, 5, 5)
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight, None, 1, 1, 1, 4))
    with pytest.raises(ValueError, match="groups must divide"):
        QuantConv2d(4, 6, 3, groups=4, weight_quant=WeightQuant("float"))


class _Gelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = QuantConv2d(1, 2, 3, weight_quant=WeightQuant("binary"),
                                act_quant=ActQuant(0.1, 4))
        self.act = nn.GELU()

    def forward(self, x):
        return self.act(self.conv(x)).flatten(1)


class _FloatAdd(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = QuantConv2d(1, 1, 1, weight_quant=WeightQuant("binary"),
                                act_quant=ActQuant(0.1, 4))

    def forward(self, x):
        return (self.conv(x) + x).flatten(1)


@pytest.mark.parametrize("model,message", [
    (_Gelu, r"^unsupported module GELU \(act\) at call_module act \(traced node act\); the "
            r"export supports QuantConv2d, QuantLinear, QuantAdd, "),
    (_FloatAdd, r"^unsupported an add of two float tensors \(use "
                r"wrapkit\.models\.residual\.QuantAdd\) at call_function add \(traced node "
                r"add\); the export supports relu, "),
])
def test_unsupported_modules_and_functions_are_named_with_their_place(model, message):
    with pytest.raises(UserError, match=message) as info:
        trace_model(model(), input_spec={**SPEC, "shape": [1, 8, 8]})
    assert "\n" not in str(info.value)


def test_export_and_infer_cli_write_and_run_a_graph(tmp_path, capsys):
    from wrapkit.models.train import MODEL_FORMAT

    model = build_model("resnet20", image_size=8, widths=(4, 4, 8), blocks_per_stage=1)
    for i, (_, layer) in enumerate(model.quant_layers()):
        layer.act_quant = ActQuant(0.2 + 0.01 * i, 4)
        layer.accumulator = Accumulator(8, k=2)
    run = tmp_path / "run"
    run.mkdir()
    buf = io.BytesIO()
    torch.save({"format": MODEL_FORMAT, "model": "resnet20",
                "model_config": model.config.to_dict(), "state_dict": model.state_dict()}, buf)
    (run / "model.pt").write_bytes(buf.getvalue())
    out = tmp_path / "resnet.wkx"
    assert main(["export", str(run), "-o", str(out), "--dataset", "digits"]) == 0
    text = capsys.readouterr().out
    assert "schema wrapkit.export/2" in text and "blocks.2.add" in text
    exp = read_graph(out)
    assert exp.version == 2 and exp.header["num_classes"] == 10
    assert exp.header["input"]["dataset"] == "digits"
    assert main(["infer", str(out), "--images", "50"]) == 0
    text = capsys.readouterr().out
    assert "integer graph" in text and "accuracy" in text
    assert main(["infer", str(out), "--requant", "float"]) == 2
    assert "applies to layer-chain (version 1) files" in capsys.readouterr().err
    # --stats of a graph: per MAC node, every image counted.
    assert main(["infer", str(out), "--images", "30", "--stats", str(tmp_path / "s.json")]) == 0
    doc = json.loads((tmp_path / "s.json").read_text())
    assert [r["name"] for r in doc["nodes"]] == [n.name for n in exp.graph.nodes
                                                 if n.kind in ("conv2d", "linear", "matmul")]
    assert all(r["images"] == 30 and r["dots"] > 0 for r in doc["nodes"])
    assert "per-node statistics" in capsys.readouterr().out
    assert main(["infer", str(out), "--images", "20", "--gemm", "int64"]) == 0
    assert "(gemm int64)" in capsys.readouterr().out
