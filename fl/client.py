"""Client computation on quantized variables (seed 002 §3.3.2, Fig. 3.2).

A client receives a broadcast (codes + scales for every weight matrix, floats for biases and
frozen BatchNorm) and never materialises the server's float weights: it de-quantizes codes
into the ``s·q`` operands of its forward pass, and in FedAvg re-quantizes after every local
step, so what it keeps between steps is codes and scales again.

* FedSGD: one batch, no local update; the reply is ``∂L/∂w_q`` for every trainable tensor.
* FedAvg: local SGD steps ``w_q ← Q(w_q - η·∂L/∂w_q)``; the reply is the model delta
  ``decode(final) - decode(broadcast)``.
"""

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch.func import functional_call

from .codes import QuantizedTensor, decode, encode

__all__ = ["ClientUpdate", "client_arrays", "fedavg_client", "fedsgd_client", "trainable_names"]


@dataclass
class ClientUpdate:
    """What a client sends back: float tensors (gradients or deltas) per trainable name."""

    tensors: dict
    num_examples: int
    loss: float
    metrics: dict = field(default_factory=dict)


def trainable_names(model):
    """Names of the parameters the federation trains (``requires_grad``), in model order."""
    return [n for n, p in model.named_parameters() if p.requires_grad]


def client_arrays(model, broadcast, dtype=None):
    """The tensors a client's forward pass uses: every broadcast entry de-quantized."""
    return {name: decode(t, dtype) for name, t in broadcast.items()}


def _loss(model, arrays, x, y):
    return F.cross_entropy(functional_call(model, arrays, (x,)), y)


def fedsgd_client(model, broadcast, x, y, dtype=None):
    """FedSGD: the gradient of the batch-mean loss at the broadcast's de-quantized weights.

    Parameters
    ----------
    model : torch.nn.Module
        Architecture template (its own weights are not used; BatchNorm runs in eval mode).
    broadcast : dict
        Name -> :class:`QuantizedTensor` or float tensor, for the model's whole state.
    x, y : torch.Tensor
        The client's batch.
    dtype : torch.dtype, optional
        Compute dtype of the forward pass (default: the broadcast's own; float16 variables
        on a CPU are computed in float32).
    """
    model.eval()  # BatchNorm frozen: batches of 2 have no meaningful statistics
    names = trainable_names(model)
    arrays = client_arrays(model, broadcast, dtype)
    for n in names:
        arrays[n] = arrays[n].detach().requires_grad_(True)
    loss = _loss(model, arrays, x, y)
    grads = torch.autograd.grad(loss, [arrays[n] for n in names])
    return ClientUpdate(dict(zip(names, grads)), len(y), float(loss.detach()))


def fedavg_client(model, broadcast, batches, lr, bits):
    """FedAvg with quantized local variables: de-quantize → step → re-quantize per batch.

    Parameters
    ----------
    batches : iterable of (x, y)
        The client's local minibatches, in order (one SGD step each).
    lr : float
        Client learning rate.
    bits : str
        Quantizer for the re-quantization (the broadcast's).
    """
    model.eval()
    names = trainable_names(model)
    state = dict(broadcast)
    losses, seen = [], 0
    for x, y in batches:
        arrays = client_arrays(model, state)
        for n in names:
            arrays[n] = arrays[n].detach().requires_grad_(True)
        loss = _loss(model, arrays, x, y)
        grads = torch.autograd.grad(loss, [arrays[n] for n in names])
        with torch.no_grad():
            for n, g in zip(names, grads):
                w = arrays[n] - lr * g
                state[n] = encode(w, bits) if isinstance(state[n], QuantizedTensor) else w
        losses.append(float(loss.detach()))
        seen += len(y)
    delta = {n: decode(state[n]) - decode(broadcast[n]) for n in names}
    return ClientUpdate(delta, seen, sum(losses) / max(len(losses), 1))
