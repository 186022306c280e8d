"""Export a trained network to a ``.wkx`` file for the integer engine and the hardware.

The file format (a safetensors container with a JSON header) is defined and read in
:mod:`wrapkit.ref.wkx`; the layer semantics in :mod:`wrapkit.ref.engine_layers`; docs/export.md
describes both. This module turns a PyTorch model into that description:

* the full-precision stem (conv, BatchNorm, ReLU) stays float: its weights plus BatchNorm
  folded into a per-channel float ``scale``/``shift``;
* every WrapNet layer becomes integer weight codes (``ref.encode_weights``), its scales, its
  input step and bits, its accumulator width and cyclic slope, and an output stage:
  ``requant`` — BatchNorm, ReLU and the *next* layer's input quantizer folded into the
  fixed-point constants of :mod:`wrapkit.ref.requant` — when another WrapNet layer follows,
  ``dequant`` (float per-channel scale/shift, ReLU) when the float classifier follows;
* the classifier stays float.

This layer-chain form (schema version 1) covers the VGG-7 chain, which the hardware flow
(``sim/layer_mac.py``, ``hw/synth/network.py``, the flow) reads. Every other network —
ResNet-20 with its quantized residual adds, depthwise, pixel-shuffle and attention networks
— is exported as an integer graph (schema version 2) by tracing
(:mod:`wrapkit.models.trace`); :func:`export_run` picks the form (docs/graph.md).
"""

import json
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from wrapkit import __version__
from wrapkit.common.errors import UserError
from wrapkit.ref.requant import fixed_point
from wrapkit.common.files import atomic_write_bytes
from wrapkit.ref.wkx import SCHEMA, decode, encode, read_export

from .layers import QuantConv2d, QuantLinear
from .nets import VGG7, ConvBlock

__all__ = ["export_model", "export_run"]

_POOL = {"kind": "max", "size": 2, "stride": 2}


def _bn_affine(bn):
    """BatchNorm (eval) as ``A·x + B`` per channel, in float64."""
    if not isinstance(bn, (nn.BatchNorm1d, nn.BatchNorm2d)) or not bn.track_running_stats:
        raise UserError(f"expected a BatchNorm with running statistics, got {bn!r}")
    var = bn.running_var.detach().double()
    mean = bn.running_mean.detach().double()
    a = 1.0 / torch.sqrt(var + bn.eps)
    if bn.affine:
        a = a * bn.weight.detach().double()
        b = bn.bias.detach().double() - a * mean
    else:
        b = -a * mean
    return a.numpy(), b.numpy()


def _stages(model):
    """The network as a list of stages ``(name, layer, bn, relu, pool)``, in forward order."""
    if not isinstance(model, VGG7):
        kind = type(model).__name__
        raise UserError(f"unsupported model {kind}: the export supports the VGG-7 chain only "
                        "in the layer-chain format 1; export it as an integer graph "
                        "(--format 2, docs/graph.md)")
    stem = model.stem
    if not (isinstance(stem[0], nn.Conv2d) and isinstance(stem[2], nn.ReLU)):
        raise UserError("unexpected VGG-7 stem: expected Conv2d, BatchNorm2d, ReLU")
    stages = [("stem", stem[0], stem[1], True, False)]
    for name in ("block2", "block3", "block4", "block5", "block6"):
        block = getattr(model, name)
        if not isinstance(block, ConvBlock):
            raise UserError(f"unexpected VGG-7 block {name}: {type(block).__name__}")
        stages.append((f"{name}.conv", block.conv, block.bn, True, bool(block.pool)))
    stages.append(("fc7", model.fc7, model.bn7, True, False))
    stages.append(("classifier", model.classifier, None, False, False))
    return stages


def _shape_after(layer, in_shape, pool):
    if isinstance(layer, (nn.Conv2d, QuantConv2d)):
        k, s, p = _geometry(layer)
        c, h, w = in_shape
        oh, ow = ((d + 2 * p - k) // s + 1 for d in (h, w))
        cout = layer.out_channels
        return [cout, oh // 2, ow // 2] if pool else [cout, oh, ow]
    return [layer.out_features]


def _geometry(conv):
    if isinstance(conv, QuantConv2d):
        return conv.kernel_size, conv.stride, conv.padding
    k, s, p = conv.kernel_size, conv.stride, conv.padding
    if len(set(k)) != 1 or len(set(s)) != 1 or len(set(p)) != 1 or conv.groups != 1 \
            or conv.dilation != (1, 1) or conv.padding_mode != "zeros":
        raise UserError(f"unsupported convolution {conv!r}: square kernels, strides and zero "
                        "padding only, no groups or dilation")
    return k[0], s[0], p[0]


def _f32(t):
    return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float32)


def export_model(model, *, input_spec, source=None):
    """Header and tensors describing ``model`` (eval-mode semantics).

    Parameters
    ----------
    model : VGG7
        A trained network whose WrapNet layers all have quantized weights and activations
        (methods ``qa`` and ``wrapnet``).
    input_spec : dict
        ``{"shape": [C, H, W], "pixel_max": int, "mean": float, "std": float, "dataset": str}``.
    source : dict, optional
        Provenance recorded in the header.

    Returns
    -------
    (header, tensors) : (dict, dict of str to ndarray)

    Raises
    ------
    UserError
        Unsupported model or layer, or a layer without integer operands.
    """
    stages = _stages(model)
    for name, layer, *_ in stages:
        if isinstance(layer, (QuantConv2d, QuantLinear)) and not layer.integer:
            what = "activations" if layer.weight_quant.quantized else "weights"
            raise UserError(f"layer {name} has float {what}: only fully quantized networks "
                            "(--method qa or wrapnet) can be exported for integer inference")
    header_layers, tensors = [], {}
    shape = list(input_spec["shape"])
    for i, (name, layer, bn, relu, pool) in enumerate(stages):
        nxt = stages[i + 1][1] if i + 1 < len(stages) else None
        out_shape = _shape_after(layer, shape, pool)
        spec = {"name": name, "in_shape": shape, "out_shape": out_shape,
                "pool": dict(_POOL) if pool else None}
        if isinstance(layer, (nn.Conv2d, QuantConv2d)):
            k, s, p = _geometry(layer)
            spec.update(kind="conv2d", kernel=k, stride=s, padding=p,
                        out_channels=layer.out_channels)
        else:
            spec.update(kind="linear", in_features=math.prod(shape),
                        out_features=layer.out_features)
        if isinstance(layer, (QuantConv2d, QuantLinear)):
            spec.update(_integer_layer(name, layer, bn, relu, nxt, tensors))
        else:
            spec.update(_float_layer(name, layer, bn, relu, tensors))
        header_layers.append(spec)
        shape = out_shape
    header = {
        "schema": SCHEMA,
        "generator": f"wrapkit {__version__}",
        "source": source or {},
        "input": dict(input_spec),
        "num_classes": header_layers[-1]["out_features"],
        "layers": header_layers,
    }
    return header, tensors


def _float_layer(name, layer, bn, relu, tensors):
    tensors[f"{name}.weight"] = _f32(layer.weight)
    has_bias = getattr(layer, "bias", None) is not None
    if has_bias:
        tensors[f"{name}.bias"] = _f32(layer.bias)
    if bn is not None:
        a, b = _bn_affine(bn)
        tensors[f"{name}.post_scale"] = a.astype(np.float32)
        tensors[f"{name}.post_shift"] = b.astype(np.float32)
    return {"precision": "float", "bias": has_bias,
            "post": {"affine": bn is not None, "relu": relu}}


def _integer_layer(name, layer, bn, relu, nxt, tensors):
    cfg = layer.mac_config()
    wq, aq = layer.weight_quant, layer.act_quant
    tensors[f"{name}.weight_codes"] = layer.weight_codes().astype(np.uint8)
    _, s_w = layer.integer_weights()
    tensors[f"{name}.weight_scale"] = _f32(s_w)
    # The layer scales its output by s_w·s_x computed in float32 (QuantConv2d.forward); fold
    # that same float32 product so the export starts from the numbers PyTorch uses.
    scale = (s_w.float() * aq.step).double().numpy()
    a, b = _bn_affine(bn)
    spec = {
        "precision": "integer",
        "input_quant": {"step": aq.step, "bits": aq.bits},
        "weights": {"kind": wq.kind, "bits": wq.bits, "code_bits": cfg.weight_code_bits},
        "accumulator": {"bits": layer.accumulator.bits, "k": layer.accumulator.k},
        "mac": cfg.to_dict(),
    }
    if not relu:
        raise UserError(f"layer {name}: an integer layer without a following ReLU is not "
                        "supported")
    if isinstance(nxt, (QuantConv2d, QuantLinear)):
        n_aq = nxt.act_quant
        qmax = (1 << n_aq.bits) - 1
        m_real = a * scale / n_aq.step
        c_real = b / n_aq.step
        m, bias, shift = fixed_point(m_real, c_real, qmax=qmax, acc_bits=cfg.acc_bits)
        tensors[f"{name}.requant_multiplier"] = m
        tensors[f"{name}.requant_bias"] = bias
        tensors[f"{name}.requant_shift"] = shift
        tensors[f"{name}.requant_scale_real"] = m_real.astype(np.float64)
        tensors[f"{name}.requant_offset_real"] = c_real.astype(np.float64)
        spec["output"] = {"kind": "requant", "bits": n_aq.bits, "clamp": [0, qmax],
                          "rounding": "half-up",
                          "formula": "clamp((y * multiplier + bias) >> shift, 0, 2^bits - 1)"}
    else:
        tensors[f"{name}.dequant_scale"] = (a * scale).astype(np.float32)
        tensors[f"{name}.dequant_shift"] = b.astype(np.float32)
        spec["output"] = {"kind": "dequant", "relu": True,
                          "formula": "relu(y * scale + shift), float32"}
    return spec


def _load_run(run):
    """(model, model.pt state, metrics or None, run dir) of a run directory or model.pt."""
    from .train import METRICS, MODEL, read_model_file, load_model

    path = Path(run)
    file = path / MODEL if path.is_dir() else path
    if not file.is_file():
        raise UserError(f"{run}: no trained model ({file} does not exist); train it with "
                        "`wrapkit train ... --out RUN_DIR` first")
    state = read_model_file(file)
    try:
        model = load_model(file)
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise UserError(f"{file}: cannot rebuild the model ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:160]})") from None
    metrics_path = file.parent / METRICS
    metrics = None
    if metrics_path.is_file():
        try:
            metrics = json.loads(metrics_path.read_text())
        except json.JSONDecodeError:
            raise UserError(f"{metrics_path} is not valid JSON") from None
    return model, state, metrics, file.parent


#: ``export_run``'s forms: version 1 (layer chain), version 2 (graph), or auto (version 1
#: for the VGG-7 chain that the hardware flow reads, version 2 for everything else).
FORMATS = ("auto", "1", "2")


def export_run(run, out, *, dataset=None, data_dir=None, format="auto"):
    """Export a trained run (directory or ``model.pt``) to ``out``.

    The dataset (for the input standardisation) defaults to the one the run trained on
    (``metrics.json``). The file is re-read and verified after writing.

    Returns
    -------
    ExportFile (version 1) or :class:`wrapkit.ref.graph.GraphExport` (version 2)
    """
    if format not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, got {format!r}")
    from wrapkit.common.datasets import load_images
    from wrapkit.ref.engine import Engine
    from wrapkit.ref.validate import validate

    from .a2q_train import export_a2q_run, is_a2q_run
    from .data import input_standardisation, load_dataset

    if is_a2q_run(run):       # Brevitas A2Q/A2Q+: always an integer graph (version 2)
        return export_a2q_run(run, out)
    model, state, metrics, run_dir = _load_run(run)
    cfg = (metrics or {}).get("config", {})
    dataset = dataset or cfg.get("dataset")
    if dataset is None:
        raise UserError(f"{run}: no metrics.json says which dataset it trained on; pass "
                        "--dataset")
    data_dir = data_dir or cfg.get("data_dir")
    mean, std = input_standardisation(dataset, data_dir)
    test = load_images(dataset, "test", data_dir)
    c, h, w = test.pixels.shape[1:]
    mc = model.config
    if (mc.in_channels, mc.image_size) != (c, h) or h != w:
        raise UserError(f"{run} was built for {mc.in_channels}×{mc.image_size}×"
                        f"{mc.image_size} images, but {dataset} has {c}×{h}×{w}; pass the "
                        "dataset it trained on")
    input_spec = {"shape": [c, h, w], "pixel_max": test.pixel_max, "mean": mean, "std": std,
                  "dataset": dataset}
    source = {"run": run_dir.name, "model": state.get("model"),
              "model_config": mc.to_dict(),
              "pytorch_test_accuracy": state.get("test_accuracy"),
              "train_config": {k: cfg[k] for k in sorted(cfg) if k not in ("data_dir", "init")}}
    n = min(256, len(test))
    theirs = load_dataset(dataset, data_dir)[1].x[:n].numpy()
    if format == "2" or (format == "auto" and not isinstance(model, VGG7)):
        return _export_graph(model, input_spec, source, out, test.pixels[:n], theirs)
    header, tensors = export_model(model, input_spec=input_spec, source=source)
    data = encode(header, tensors)
    exp = decode(data, out)
    validate(exp)
    # The engine must see exactly the network input the training code feeds PyTorch.
    engine = Engine(exp)
    ours = engine.standardise(test.pixels[:n]).transpose(0, 3, 1, 2)
    _check_standardisation(ours, theirs, dataset)
    _write(out, data)
    return read_export(out)


def _check_standardisation(ours, theirs, dataset):
    if not np.array_equal(ours, theirs):
        raise UserError(f"the engine's standardisation of {dataset} differs from the training "
                        "code's (wrapkit.models.data changed?); nothing was written")


def _write(out, data):
    try:
        atomic_write_bytes(out, data)
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None


def _export_graph(model, input_spec, source, out, pixels, theirs):
    """Trace ``model`` into a version-2 graph file at ``out``."""
    from wrapkit.ref.graph import GraphEngine, decode_graph, encode_graph

    from .trace import trace_model

    traced = trace_model(model, input_spec=input_spec)
    graph = traced.graph
    ours = GraphEngine(graph).run(pixels, keep=["input"])["input"]
    _check_standardisation(ours, theirs, input_spec["dataset"])
    num_classes = graph.type_of(graph.outputs[0]).shape[0]
    data = encode_graph(graph, source=source, input=dict(input_spec), num_classes=num_classes)
    decode_graph(data, out)
    _write(out, data)
    from wrapkit.ref.graph import read_graph

    return read_graph(out)

