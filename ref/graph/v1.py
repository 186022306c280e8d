"""Version-1 exports (a VGG-7 layer chain, docs/export.md) as integer graphs.

:func:`graph_from_v1` turns a validated version-1 :class:`~wrapkit.ref.wkx.ExportFile` into
the graph that computes exactly what the chain engine (:mod:`wrapkit.ref.engine`) computes:

=====================  =====================================================================
version-1 layer        graph nodes
=====================  =====================================================================
(network input)        ``standardize`` (float32, the header's pixel_max, mean, std)
float layer            ``conv2d_float`` / [``flatten``] ``linear_float``, [``max_pool2d``]
integer layer          [``quantize`` after a float layer] [``flatten``] ``conv2d``/``linear``
                       (accumulator ``wrap`` or ``cyclic``, weight values decoded from the
                       codes), then ``requant`` (unsigned, the next layer's bits) or
                       ``dequant`` (float32), then [``max_pool2d``]
=====================  =====================================================================

The chain engine's tables and float BLAS only speed up the same integers, and the float
nodes repeat its float32 arithmetic, so the graph engine's logits equal the chain engine's
bit for bit (``tests/test_graph.py`` checks it on the tiny digits network).
"""

import numpy as np

from ..datapath import decode_weights
from ..ops import AccumulatorMode
from .check import infer_types
from .graph import Graph, new_node
from .types import TensorType

__all__ = ["INPUT_NAME", "graph_from_v1", "pixel_type"]

#: Name of the graph input of a converted file (uint8 image pixels, C×H×W).
INPUT_NAME = "pixels"


def pixel_type(input_spec):
    """The integer type of the raw pixels described by a header's ``input`` block."""
    return TensorType.integer(input_spec["shape"], int(input_spec["pixel_max"]).bit_length(),
                              False)


def graph_from_v1(exp):
    """The graph of a validated version-1 export (module docstring)."""
    h, t = exp.header, exp.tensors
    inp = h["input"]
    nodes = [new_node("input", "standardize", [INPUT_NAME],
                      {"pixel_max": inp["pixel_max"], "mean": float(inp["mean"]),
                       "std": float(inp["std"])})]
    cur, cur_float, shape = "input", True, tuple(inp["shape"])
    layers = h["layers"]

    def add(node):
        nonlocal cur
        nodes.append(node)
        cur = node.name

    for i, spec in enumerate(layers):
        name, kind = spec["name"], spec["kind"]
        if kind == "linear" and len(shape) > 1:
            add(new_node(f"{name}.flatten", "flatten", [cur]))
        if spec["precision"] == "float":
            weights = {"weight": t[f"{name}.weight"]}
            if spec.get("bias"):
                weights["bias"] = t[f"{name}.bias"]
            if spec["post"].get("affine"):
                weights["post_scale"] = t[f"{name}.post_scale"]
                weights["post_shift"] = t[f"{name}.post_shift"]
            attrs = {"relu": spec["post"]["relu"]}
            if kind == "conv2d":
                attrs.update(stride=spec["stride"], padding=spec["padding"])
            add(new_node(name, f"{kind}_float", [cur], attrs, weights))
        else:
            iq, wq, acc = spec["input_quant"], spec["weights"], spec["accumulator"]
            if cur_float:
                add(new_node(f"{name}.quantize", "quantize", [cur],
                             {"step": float(iq["step"]), "bits": iq["bits"]}))
            codes = t[f"{name}.weight_codes"]
            values = decode_weights(codes.astype(np.int64), wq["kind"], wq.get("bits"))
            mode = (AccumulatorMode("wrap", acc["bits"]) if acc.get("k") is None
                    else AccumulatorMode("cyclic", acc["bits"], acc["k"]))
            attrs = {"acc": mode, "weight_kind": wq["kind"], "weight_bits": wq.get("bits")}
            if kind == "conv2d":
                attrs.update(stride=(spec["stride"],) * 2, padding=(spec["padding"],) * 2,
                             dilation=(1, 1), groups=1)
            add(new_node(name, kind, [cur], attrs,
                         {"weight": values.astype(np.int8).reshape(codes.shape)}))
            out = spec["output"]
            if out["kind"] == "requant":
                nxt = layers[i + 1]["input_quant"]["step"] if i + 1 < len(layers) else None
                add(new_node(f"{name}.requant", "requant", [cur],
                             {"out_bits": out["bits"], "out_signed": False,
                              "scale": None if nxt is None else float(nxt)},
                             {"multiplier": t[f"{name}.requant_multiplier"],
                              "bias": t[f"{name}.requant_bias"],
                              "shift": t[f"{name}.requant_shift"]}))
            else:
                add(new_node(f"{name}.dequant", "dequant", [cur], {"relu": out["relu"]},
                             {"scale": t[f"{name}.dequant_scale"],
                              "shift": t[f"{name}.dequant_shift"]}))
        cur_float = spec["precision"] == "float" or spec["output"]["kind"] == "dequant"
        if spec.get("pool") is not None:
            add(new_node(f"{name}.pool", "max_pool2d", [cur], {"kernel": (2, 2),
                                                               "stride": (2, 2),
                                                               "padding": (0, 0)}))
        shape = tuple(spec["out_shape"])
    graph = Graph({INPUT_NAME: pixel_type(inp)}, nodes, [cur])
    return infer_types(graph, str(exp.path))
