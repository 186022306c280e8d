"""Accumulator-aware quantization (A2Q, A2Q+) with Brevitas: the VGG-7, its training, its export.

A2Q (Colbert et al., ICCV 2023) and A2Q+ (Colbert et al., 2024) *avoid* overflow instead of
tolerating it: each output channel's integer weights ``q`` are constrained so that no input
in range can drive a ``P``-bit accumulator out of range. Brevitas implements both as weight
quantizers (``Int8AccumulatorAwareWeightQuant``, ``Int8AccumulatorAwareZeroCenterWeightQuant``):
weight normalisation ``w = g·v/‖v‖₁`` with ``g`` clamped to the bound and round-to-zero, so
the bound survives rounding. We use Brevitas's own quantizers (a well-kept implementation by
the method's authors) rather than re-deriving them; the guarantee is then checked on our side
(:func:`wrapkit.ref.accbound.channel_dot_ranges`) and on data in the integer engine.

:class:`A2QVGG7` is wrapkit's VGG-7 (:class:`wrapkit.models.nets.VGG7`: float stem, five
quantized 3×3 conv blocks with BatchNorm, ReLU and max pools, a quantized FC layer, a float
classifier) built from ``brevitas.nn`` layers: ``QuantReLU`` (unsigned ``act_bits`` codes,
learned per-tensor scale) closes every block and is the next MAC's input quantizer;
``QuantConv2d``/``QuantLinear`` carry the A2Q weight quantizer with ``weight_bits`` and
``accumulator_bit_width = acc_bits``.

:func:`export_a2q_graph` writes the trained network as an integer graph (``.wkx`` version 2)
whose MACs have a plain ``acc_bits`` wrapping accumulator — the A2Q datapath — with BatchNorm,
ReLU and the next quantizer folded into fixed-point ``requant`` nodes
(:func:`wrapkit.ref.requant.fixed_point`), as :mod:`wrapkit.models.export` does for WrapNet.
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wrapkit.common.errors import UserError
from wrapkit.ref.graph import Graph, TensorType, infer_types, new_node
from wrapkit.ref.ops import AccumulatorMode
from wrapkit.ref.requant import fixed_point

from .nets import VGG7Config

__all__ = ["A2Q_METHODS", "A2QVGG7", "export_a2q_graph", "init_from_float", "integer_layers"]

#: ``wrapkit train --method`` names of the accumulator-aware methods.
A2Q_METHODS = ("a2q", "a2q+")


def _weight_quant(method):
    from brevitas.quant import (Int8AccumulatorAwareWeightQuant,
                                Int8AccumulatorAwareZeroCenterWeightQuant)

    if method == "a2q":
        return Int8AccumulatorAwareWeightQuant
    if method == "a2q+":
        return Int8AccumulatorAwareZeroCenterWeightQuant
    raise ValueError(f"method must be one of {', '.join(A2Q_METHODS)}, got {method!r}")


class A2QVGG7(nn.Module):
    """wrapkit's VGG-7 with Brevitas A2Q/A2Q+ MAC layers (module docstring).

    Parameters
    ----------
    config : VGG7Config
        Geometry (widths, hidden units, input); its ``weight_quant`` is ignored.
    method : "a2q" | "a2q+"
    act_bits, weight_bits, acc_bits : int
        Unsigned activation codes, signed weights (narrow range), accumulator ``P``.
    """

    def __init__(self, config: VGG7Config, *, method, act_bits, weight_bits, acc_bits):
        super().__init__()
        from brevitas.nn import QuantConv2d, QuantLinear, QuantReLU
        from brevitas.quant import Uint8ActPerTensorFloat

        self.config, self.method = config, method
        self.act_bits, self.weight_bits, self.acc_bits = act_bits, weight_bits, acc_bits
        wq = _weight_quant(method)
        c1, c2, c3 = config.widths

        def act():
            return QuantReLU(act_quant=Uint8ActPerTensorFloat, bit_width=act_bits,
                             return_quant_tensor=True)

        def conv(cin, cout):
            return QuantConv2d(cin, cout, 3, padding=1, bias=False, weight_quant=wq,
                               weight_bit_width=weight_bits,
                               weight_accumulator_bit_width=acc_bits)

        self.stem = nn.Sequential(nn.Conv2d(config.in_channels, c1, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(c1))
        self.stem_act = act()
        plan = ((c1, c1, True), (c1, c2, False), (c2, c2, True), (c2, c3, False),
                (c3, c3, True))
        self.convs = nn.ModuleList(conv(a, b) for a, b, _ in plan)
        self.bns = nn.ModuleList(nn.BatchNorm2d(b) for _, b, _ in plan)
        self.acts = nn.ModuleList(act() for _ in plan)
        self.pools = tuple(p for _, _, p in plan)
        side = config.image_size // 8
        self.fc7 = QuantLinear(c3 * side * side, config.hidden, bias=False, weight_quant=wq,
                               weight_bit_width=weight_bits,
                               weight_accumulator_bit_width=acc_bits)
        self.bn7 = nn.BatchNorm1d(config.hidden)
        self.classifier = nn.Linear(config.hidden, config.num_classes)

    def forward(self, x):
        x = self.stem_act(self.stem(x))
        for conv, bn, act, pool in zip(self.convs, self.bns, self.acts, self.pools):
            x = act(bn(conv(x)))
            if pool:
                x = F.max_pool2d(x, 2)
        x = F.relu(self.bn7(self.fc7(x.flatten(1))))
        return self.classifier(x)

    def mac_layers(self):
        """``(name, MAC layer, BatchNorm, input activation quantizer)`` in forward order."""
        ins = [self.stem_act] + list(self.acts)
        out = [(f"block{i + 2}.conv", c, bn, ins[i])
               for i, (c, bn) in enumerate(zip(self.convs, self.bns))]
        return out + [("fc7", self.fc7, self.bn7, ins[len(self.convs)])]


def init_from_float(model, state_dict):
    """Start ``model`` from a trained wrapkit VGG-7 (``model.pt``'s state dict, any weight
    kind: its latent float weights are used), as the A2Q papers start from a float network.

    Brevitas initialises the A2Q quantizer's scale and norm parameters from the weights it
    tracks, so they are initialised again after the weights are loaded.
    """
    sd = {k: v for k, v in state_dict.items() if not k.endswith("_extra_state")}
    names = [f"block{i}" for i in range(2, 7)]
    mapping = {"stem.0.weight": "stem.0.weight", "fc7.weight": "fc7.weight"}
    for i, n in enumerate(names):
        mapping[f"{n}.conv.weight"] = f"convs.{i}.weight"
        for part in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            mapping[f"{n}.bn.{part}"] = f"bns.{i}.{part}"
    for part in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
        mapping[f"stem.1.{part}"] = f"stem.1.{part}"
        mapping[f"bn7.{part}"] = f"bn7.{part}"
    mapping.update({"classifier.weight": "classifier.weight",
                    "classifier.bias": "classifier.bias"})
    missing = sorted(set(mapping) - set(sd))
    if missing:
        raise UserError(f"--init: not a VGG-7 model file (missing {missing[:3]})")
    own = model.state_dict()
    with torch.no_grad():
        for src, dst in mapping.items():
            if own[dst].shape != sd[src].shape:
                raise UserError(f"--init: {src} has shape {list(sd[src].shape)}, this model "
                                f"{list(own[dst].shape)}; use the same --widths")
            own[dst].copy_(sd[src])
    for _, layer, _, _ in model.mac_layers():
        layer.weight_quant.init_tensor_quant()


def _act_scale(act):
    return float(act.act_quant.scale().detach().reshape(-1)[0])


@torch.no_grad()
def integer_layers(model, probe):
    """Per MAC layer: integer weights, per-channel weight scale, input step and bits.

    ``probe`` (a few input images) runs once in eval mode so that Brevitas's A2Q quantizers
    see the input quantizer they depend on (the input bit width sets the norm bound).
    """
    model.eval()
    layers = model.mac_layers()
    for _, layer, _, _ in layers:
        layer.weight_quant.cache_inference_quant_act = True
        layer.weight_quant.cache_quant_io_metadata_only = True
    model(probe)
    out = []
    for name, layer, bn, act in layers:
        qw = layer.quant_weight()
        w_int = qw.int().to(torch.int64).numpy()
        s_w = qw.scale.detach().double().reshape(-1).numpy()
        if s_w.size == 1:
            s_w = np.full(w_int.shape[0], s_w[0])
        out.append({"name": name, "weight": w_int, "s_w": s_w, "s_x": _act_scale(act),
                    "act_bits": int(act.act_quant.bit_width()), "bn": bn})
    return out


def _bn_affine(bn):
    from .export import _bn_affine as affine

    return affine(bn)


def export_a2q_graph(model, probe, input_spec, *, acc_mode="wrap"):
    """The trained network as an integer :class:`Graph` (module docstring).

    Parameters
    ----------
    model : A2QVGG7 (trained)
    probe : float tensor (a few standardised input images)
    input_spec : dict
        ``shape``, ``pixel_max``, ``mean``, ``std`` of the input standardisation (as
        :func:`wrapkit.models.export.export_run` records it).
    acc_mode : "wrap" | "exact"
        The MACs' accumulator: a plain ``acc_bits`` wrapping register (the datapath A2Q
        targets) or exact sums (to measure how large the dot products get).

    Returns
    -------
    Graph
    """
    cfg = model.config
    layers = integer_layers(model, probe)
    acc = AccumulatorMode(acc_mode, model.acc_bits if acc_mode != "exact" else None)
    nodes = [new_node("input", "standardize", ["pixels"],
                      {k: input_spec[k] for k in ("pixel_max", "mean", "std")})]
    stem_conv, stem_bn = model.stem[0], model.stem[1]
    a, b = _bn_affine(stem_bn)
    nodes.append(new_node("stem", "conv2d_float", ["input"], {"stride": 1, "padding": 1,
                                                              "relu": True},
                          {"weight": stem_conv.weight.detach().float().numpy(),
                           "post_scale": a.astype(np.float32),
                           "post_shift": b.astype(np.float32)}))
    first = layers[0]
    nodes.append(new_node(f"{first['name']}.quantize", "quantize", ["stem"],
                          {"step": first["s_x"], "bits": first["act_bits"]}))
    src = nodes[-1].name
    for i, layer in enumerate(layers):
        name, w = layer["name"], layer["weight"]
        if int(np.abs(w).max()) > (1 << (model.weight_bits - 1)) - 1:
            raise UserError(f"layer {name}: integer weights beyond {model.weight_bits} bits")
        kind = "conv2d" if w.ndim == 4 else "linear"
        attrs = {"acc": acc, "weight_kind": "uniform", "weight_bits": model.weight_bits}
        if kind == "conv2d":
            attrs.update(padding=1)
        nodes.append(new_node(name, kind, [src], attrs, {"weight": w.astype(np.int8)}))
        # float32 product s_w·s_x, as Brevitas scales the layer output.
        scale = (layer["s_w"].astype(np.float32) * np.float32(layer["s_x"])).astype(np.float64)
        a, b = _bn_affine(layer["bn"])
        # A2Q at a narrow P can round a whole channel to zero: its y is always 0, so its
        # multiplier is irrelevant (and BatchNorm's, over a zero variance, meaningless).
        a = np.where(np.any(w.reshape(len(w), -1) != 0, axis=1), a, 0.0)
        if i + 1 < len(layers):
            nxt = layers[i + 1]
            qmax = (1 << nxt["act_bits"]) - 1
            m, bias, shift = fixed_point(a * scale / nxt["s_x"], b / nxt["s_x"], qmax=qmax,
                                         acc_bits=model.acc_bits)
            nodes.append(new_node(f"{name}.requant", "requant", [name],
                                  {"out_bits": nxt["act_bits"], "out_signed": False,
                                   "scale": nxt["s_x"]},
                                  {"multiplier": m, "bias": bias, "shift": shift}))
            src = nodes[-1].name
            if kind == "conv2d" and model.pools[i]:
                nodes.append(new_node(f"{name}.pool", "max_pool2d", [src], {"kernel": 2}))
                src = nodes[-1].name
            if layers[i + 1]["weight"].ndim == 2:
                nodes.append(new_node("fc7.flatten", "flatten", [src]))
                src = nodes[-1].name
        else:
            nodes.append(new_node(f"{name}.dequant", "dequant", [name], {"relu": True},
                                  {"scale": (a * scale).astype(np.float32),
                                   "shift": b.astype(np.float32)}))
            src = nodes[-1].name
    nodes.append(new_node("classifier", "linear_float", [src], {},
                          {"weight": model.classifier.weight.detach().float().numpy(),
                           "bias": model.classifier.bias.detach().float().numpy()}))
    pixel_bits = int(input_spec["pixel_max"]).bit_length()
    inputs = {"pixels": TensorType.integer((cfg.in_channels, cfg.image_size, cfg.image_size),
                                           pixel_bits, False)}
    return infer_types(Graph(inputs, nodes, ["classifier"]))
