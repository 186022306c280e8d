"""The server side of FedAQT (seed 002 §3.3.1): broadcast, aggregation, model update.

The server alone keeps the float model. Each round it quantizes it for the broadcast,
aggregates the clients' float replies (weighted by their example counts, as FedAvg), and
updates the float model: FedSGD as one optimizer step on the aggregated gradient plus the
gradient relay (:mod:`wrapkit.fl.relay`), FedAvg by adding the aggregated delta.
"""

import torch

from .codes import encode, is_quantized
from .client import trainable_names
from .relay import relay_term

__all__ = ["ALGOS", "FedAQTServer", "aggregate"]

ALGOS = ("fedsgd", "fedavg")


def aggregate(updates):
    """Example-weighted mean of the clients' tensors: ``Σ_k n_k·x_k / Σ_k n_k``.

    The order of ``updates`` is the order of summation: callers sort them (by client id) so
    that a run does not depend on the order replies arrive in.
    """
    if not updates:
        raise ValueError("no client updates to aggregate")
    total = sum(u.num_examples for u in updates)
    out = {}
    for u in updates:
        for name, t in u.tensors.items():
            term = t * (u.num_examples / total)
            out[name] = term if name not in out else out[name] + term
    return out


class FedAQTServer:
    """The float global model, its quantized broadcast and its update.

    Parameters
    ----------
    model : torch.nn.Module
        The global model; its trainable parameters are updated in place.
    bits : str
        Broadcast quantizer (:data:`wrapkit.fl.codes.BITS`).
    algo : {"fedsgd", "fedavg"}
    lr : float
        FedSGD: the server's SGD learning rate. FedAvg: the server learning rate applied to
        the mean delta (1.0 is plain FedAvg).
    relay : bool
        FedSGD only: add the gradient relay (eq. 3.4), making the update that of centralized
        QAT with trainable scales.
    momentum : float
        Server SGD momentum (FedSGD).
    """

    def __init__(self, model, bits, algo, lr, *, relay=True, momentum=0.0):
        if algo not in ALGOS:
            raise ValueError(f"algo must be one of {', '.join(ALGOS)}, got {algo!r}")
        self.model, self.bits, self.algo, self.lr, self.relay = model, str(bits), algo, lr, relay
        params = dict(model.named_parameters())
        self.names = trainable_names(model)
        self.params = {n: params[n] for n in self.names}
        self.quantized = {n for n in self.names
                          if is_quantized(self.bits) and params[n].dim() >= 2}
        self.optimizer = (torch.optim.SGD(list(self.params.values()), lr=lr, momentum=momentum)
                          if algo == "fedsgd" else None)

    def broadcast(self):
        """The model's whole state for the clients: codes for quantized weights, floats
        (detached copies) for the rest."""
        out = {}
        for name, t in self.model.state_dict().items():
            if not torch.is_tensor(t):   # modules' extra state (quantizer configs) stays local
                continue
            out[name] = encode(t, self.bits) if name in self.quantized else t.detach().clone()
        return out

    def update(self, updates):
        """Apply one round of client replies (a list of :class:`ClientUpdate`)."""
        mean = aggregate(updates)
        if self.algo == "fedsgd":
            for name, p in self.params.items():
                g = mean[name]
                if self.relay and name in self.quantized:
                    g = g + relay_term(p.detach(), g, self.bits)
                p.grad = g.to(p.dtype)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        else:
            with torch.no_grad():
                for name, p in self.params.items():
                    p.add_(mean[name].to(p.dtype), alpha=self.lr)
        return mean

    def state(self):
        """Checkpointable state (model and optimizer)."""
        return {"model": self.model.state_dict(),
                "optimizer": None if self.optimizer is None else self.optimizer.state_dict()}

    def load_state(self, state):
        self.model.load_state_dict(state["model"])
        if self.optimizer is not None and state.get("optimizer") is not None:
            self.optimizer.load_state_dict(state["optimizer"])
