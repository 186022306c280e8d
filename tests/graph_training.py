"""Tiny graph networks (models/graph_nets.py) trained for a few seconds on digits and exported
as version-2 graphs, for the tests that run their MAC nodes on the datapaths.

Training: float activations for a few epochs, then every quantizer set from a calibration
batch (:func:`wrapkit.models.graph_nets.calibrate_ranges`) and a short quantized fine-tune
(straight-through), then export by tracing. Real trained weights and real activation codes,
small enough for a 2x2 array: about 3 s per network on one thread.
"""

import torch
import torch.nn.functional as F

from wrapkit.models.data import input_standardisation, load_dataset
from wrapkit.models.graph_nets import DepthwiseShuffleNet, TinyAttention, calibrate_ranges
from wrapkit.models.qconfig import WeightQuant
from wrapkit.models.trace import trace_model
from wrapkit.ref.graph import write_graph

__all__ = ["GRAPH_NETS", "train_graph_net"]

#: Builders of the networks, for digits' 1x8x8 images.
GRAPH_NETS = {
    "depthwise": lambda: DepthwiseShuffleNet(width=4, weight_quant=WeightQuant("ternary")),
    "attention": lambda: TinyAttention(image_size=8, patch=2, dim=8),
}


def _epochs(model, train, epochs, gen):
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(train.x), generator=gen)
        for i in range(0, len(order), 64):
            idx = order[i:i + 64]
            opt.zero_grad()
            F.cross_entropy(model(train.x[idx]), train.y[idx]).backward()
            opt.step()


def train_graph_net(name, path, *, float_epochs=3, quant_epochs=1, seed=0):
    """Train network ``name`` of :data:`GRAPH_NETS` on digits, export it to ``path``.

    Returns ``(path, test accuracy of the quantized PyTorch model)``.
    """
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    train, test = load_dataset("digits")
    model = GRAPH_NETS[name]()
    _epochs(model, train, float_epochs, gen)
    calibrate_ranges(model, train.x[:256])
    _epochs(model, train, quant_epochs, gen)
    model.eval()
    with torch.no_grad():
        acc = float((model(test.x).argmax(1) == test.y).float().mean())
    m, s = input_standardisation("digits")
    spec = {"shape": [1, 8, 8], "pixel_max": 16, "mean": m, "std": s, "dataset": "digits"}
    traced = trace_model(model, input_spec=spec)
    write_graph(path, traced.graph, input=spec, num_classes=10,
                source={"model": name, "pytorch_test_accuracy": acc})
    return path, acc


if __name__ == "__main__":  # pragma: no cover
    import sys
    import time

    for net in GRAPH_NETS:
        t0 = time.perf_counter()
        p, a = train_graph_net(net, f"{sys.argv[1]}/{net}.wkx")
        print(net, p, f"accuracy {a:.3f}", f"{time.perf_counter() - t0:.1f} s")
