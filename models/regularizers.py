"""Training regularizers: the overflow penalty R^o, and the interface further ones plug into.

A regularizer reads the quantized layers' traces of the current forward pass
(``layer.last``: float input, integer operands, exact pre-activation, accumulator output; see
:class:`wrapkit.models.layers.LayerTrace`) and returns a scalar tensor. The training loop turns
tracing on whenever a regularizer is active in the current stage and adds
``coef · penalty(model)`` to the loss, logging each term per epoch under ``name``. The
carry-variance regularizer R^c of the bit-packing work is meant to be one more subclass.
"""

import math

import torch

from .accumulate import excess_limit, overflow_penalty
from .layers import quant_layers

__all__ = ["OverflowPenalty", "Regularizer"]


class Regularizer:
    """Base class: subclasses set ``name`` and implement :meth:`penalty`.

    Parameters
    ----------
    coef : float >= 0
        Weight of the term in the loss.
    stages : tuple of str
        Training stages (``"pretrain"``, ``"train"``, ``"qa"``, ``"warmup"``, ``"finetune"``)
        in which the term is active; the paper applies its regularizers in the final
        fine-tuning only (§2.4.1).
    """

    name = "regularizer"

    def __init__(self, coef, stages=("finetune",)):
        if isinstance(coef, bool) or not isinstance(coef, (int, float)) \
                or not (math.isfinite(coef) and coef >= 0):
            raise ValueError(f"{self.name} coefficient must be a finite number >= 0, got {coef!r}")
        self.coef = float(coef)
        self.stages = tuple(stages)

    def penalty(self, model) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, model):
        return self.penalty(model)

    def __repr__(self):
        return f"{type(self).__name__}(coef={self.coef}, stages={self.stages})"


class OverflowPenalty(Regularizer):
    """R^o = Σ_layers mean_neurons max(|z_q| - L, 0) (§2.3.2), on the exact pre-activations
    before the cyclic activation, with each layer's own accumulator.

    ``limit="register"``: L = 2^(b-1) (the paper). ``limit="fold"``: L = the cyclic fold
    threshold k·2^(b-1)/(k+1), so the penalty also pushes pre-activations out of the range
    that the cyclic activation folds back (``accumulate.excess_limit``).
    """

    name = "overflow"

    def __init__(self, coef, stages=("finetune",), limit="register"):
        super().__init__(coef, stages)
        excess_limit(8, 2, limit)  # validates limit
        self.limit = limit

    def penalty(self, model):
        terms = [overflow_penalty(layer.last.z, layer.accumulator.bits, layer.accumulator.k,
                                  self.limit).float()
                 for _, layer in quant_layers(model)]
        return torch.stack(terms).sum() if terms else torch.zeros(())
