"""Centralized quantization-aware training with trainable scales: the reference FedAQT's
FedSGD must reproduce (seed 002 §3.3.3), and the "centralized QAT" baseline rows."""

import torch
import torch.nn.functional as F
from torch.func import functional_call

from .client import trainable_names
from .codes import fake_quant_trainable, is_quantized

__all__ = ["qat_forward", "qat_step"]


def qat_forward(model, bits, x):
    """Forward pass with every trainable weight matrix fake-quantized (gradient through the
    straight-through round and the scale)."""
    model.eval()
    arrays = {n: t for n, t in model.state_dict(keep_vars=True).items() if torch.is_tensor(t)}
    if is_quantized(bits):
        for n in trainable_names(model):
            if arrays[n].dim() >= 2:
                arrays[n] = fake_quant_trainable(arrays[n], bits)
    return functional_call(model, arrays, (x,))


def qat_step(model, bits, optimizer, x, y):
    """One SGD step of centralized QAT on the batch ``(x, y)``; returns the loss."""
    loss = F.cross_entropy(qat_forward(model, bits, x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())
