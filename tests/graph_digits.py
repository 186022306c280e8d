"""Test-only: the graph networks of wrapkit.models.graph_nets trained briefly on digits and
exported as version-2 graph files, for the tests that need real trained operands.

:func:`trained_graph_file` trains a :class:`~wrapkit.models.graph_nets.DepthwiseShuffleNet`
or :class:`~wrapkit.models.graph_nets.TinyAttention` for a few seconds on one thread (float
activations first, then the quantizers calibrated and a short quantized fine-tune), traces
it and writes the graph with the digits standardisation, as ``wrapkit export`` would.
"""

import torch
import torch.nn.functional as F

__all__ = ["NETS", "trained_graph_file"]

#: name -> (builder for 8×8 digits, MAC nodes of each kind the tests cosimulate)
NETS = {
    "depthwise": (lambda: _depthwise(), {"conv2d": "pw", "depthwise": "dw"}),
    "attention": (lambda: _attention(), {"linear": "q", "matmul": "qk"}),
}


def _depthwise():
    from wrapkit.models.graph_nets import DepthwiseShuffleNet

    return DepthwiseShuffleNet(width=8)


def _attention():
    from wrapkit.models.graph_nets import TinyAttention

    return TinyAttention(image_size=8, patch=2, dim=8)


def _epochs(model, data, epochs, lr, generator):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(data.y), generator=generator)
        for i in range(0, len(order), 64):
            idx = order[i:i + 64]
            opt.zero_grad()
            F.cross_entropy(model(data.x[idx]), data.y[idx]).backward()
            opt.step()


def trained_graph_file(net, path, *, seed=0, float_epochs=8, quant_epochs=2, builder=None):
    """Train network ``net`` ("depthwise" or "attention") on digits, write its graph to
    ``path``; returns ``(path, test accuracy of the PyTorch model)``. ``builder`` replaces
    the network's default builder of :data:`NETS` (another width or weight kind)."""
    from wrapkit.common.datasets import load_images
    from wrapkit.models.data import input_standardisation, load_dataset
    from wrapkit.models.graph_nets import calibrate_ranges
    from wrapkit.models.trace import trace_model
    from wrapkit.ref.graph import write_graph

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    train, test = load_dataset("digits")
    model = (builder or NETS[net][0])()
    _epochs(model, train, float_epochs, 1e-2, gen)
    calibrate_ranges(model, train.x[:256])
    _epochs(model, train, quant_epochs, 2e-3, gen)
    model.eval()
    with torch.no_grad():
        accuracy = float((model(test.x).argmax(1) == test.y).float().mean())
    mean, std = input_standardisation("digits")
    images = load_images("digits", "test")
    spec = {"shape": list(images.pixels.shape[1:]), "pixel_max": images.pixel_max,
            "mean": mean, "std": std, "dataset": "digits"}
    traced = trace_model(model, input_spec=spec)
    write_graph(path, traced.graph, input=spec, num_classes=10,
                source={"run": f"test {net}", "pytorch_test_accuracy": accuracy})
    return path, accuracy
