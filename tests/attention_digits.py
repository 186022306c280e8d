"""Test-only: :class:`~wrapkit.models.attention.AttentionNet` trained briefly on 8×8 digits,
quantized and traced to an integer graph, for the tests that need a real quantized attention
model (engine equal to PyTorch, cosimulation of its matmuls).

:func:`trained_attention` trains for 30 float steps on 256 training images on one thread,
sets every quantizer with :func:`~wrapkit.models.attention.quantize_attention` (8-bit weights,
activations and probability codes, 16-bit linear accumulators, 20-bit wrapping matmuls) and
traces it; :func:`trained_attention_file` writes that graph as ``wrapkit export`` would.
"""

from types import SimpleNamespace

import numpy as np
import torch

__all__ = ["DIGITS_SPEC", "trained_attention", "trained_attention_file"]

#: The input description of the 8×8 digits as the attention tests standardise them.
DIGITS_SPEC = {"shape": [1, 8, 8], "pixel_max": 16, "mean": 0.3, "std": 0.4,
               "dataset": "digits"}


def trained_attention(config, *, dim=32, seed=0, steps=30):
    """Train, quantize and trace an 8×8-digits AttentionNet with attention ``config``.

    Returns
    -------
    SimpleNamespace
        ``model`` (eval mode, quantized), ``traced`` (:func:`trace_model`'s result),
        ``pixels`` (the 256 training images' integer pixels) and ``x`` (them standardised).
    """
    from wrapkit.common.datasets import load_images
    from wrapkit.models.attention import AttentionNet, quantize_attention
    from wrapkit.models.qconfig import Accumulator
    from wrapkit.models.trace import trace_model
    from wrapkit.ref.ops import AccumulatorMode

    torch.manual_seed(seed)
    torch.set_num_threads(1)
    data = load_images("digits", "train")
    pixels = data.pixels[:256]
    s = DIGITS_SPEC
    x = ((torch.from_numpy(pixels).float() / np.float32(s["pixel_max"]) - np.float32(s["mean"]))
         / np.float32(s["std"]))
    y = torch.from_numpy(data.labels[:256])
    model = AttentionNet(image_size=8, patch=2, dim=dim, attention=config)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for step in range(steps):                             # brief float training
        i = torch.arange(step * 32, step * 32 + 32) % 256
        loss = torch.nn.functional.cross_entropy(model(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    quantize_attention(model, x[:128], weight_bits=8, act_bits=8, prob_bits=8,
                       accumulator=Accumulator(16), matmul_acc=AccumulatorMode("wrap", 20))
    traced = trace_model(model, input_spec=DIGITS_SPEC)
    return SimpleNamespace(model=model, traced=traced, pixels=pixels, x=x)


def trained_attention_file(config, path, **kwargs):
    """:func:`trained_attention` written to the graph file ``path``; returns
    ``(path, the trained namespace)``."""
    from wrapkit.common.datasets import load_images
    from wrapkit.ref.graph import write_graph

    run = trained_attention(config, **kwargs)
    test = load_images("digits", "test")
    with torch.no_grad():
        x = ((torch.from_numpy(test.pixels).float() / np.float32(DIGITS_SPEC["pixel_max"])
              - np.float32(DIGITS_SPEC["mean"])) / np.float32(DIGITS_SPEC["std"]))
        accuracy = float((run.model(x).argmax(1) == torch.from_numpy(test.labels))
                         .float().mean())
    write_graph(path, run.traced.graph, input=DIGITS_SPEC, num_classes=10,
                source={"run": "test attention", "pytorch_test_accuracy": accuracy})
    return path, run
