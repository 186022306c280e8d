"""The gradient relay (seed 002 §3.3.3, eq. 3.4): the part of the centralized QAT gradient
that only the server, which keeps the float weights, can compute.

Derivation. A client computes ``g = ∂L/∂w_q`` at its de-quantized weights
``w_q = Q(w) = s(w)·q``, ``q = round(w/s)`` with a straight-through round. Centralized QAT
with a trainable scale differentiates through ``s`` as well:

    ∂Q_i/∂w_j = δ_ij + (∂Q_i/∂s)·∂s/∂w_j,   ∂Q_i/∂s = q_i + s·∂q_i/∂s = q_i - w_i/s

(the straight-through round gives ``∂q_i/∂s = ∂(w_i/s)/∂s = -w_i/s²``), so

    ∂L/∂w_j = g_j + ∂s/∂w_j · Σ_i g_i (q_i - w_i/s)            (sums over one channel).

The second term is the relay. For symmetric uniform codes ``s = max|w|/t``, ``t = 2^(b-1)-1``,
``∂s/∂w_j = [w]_max,j · sign(w_j) / t`` — the issue's ``(1/t)·[w]_max ⊙ sign(w)·Σ_i g_i(q_i -
w_i/s)``, with ties for the maximum sharing it equally as torch's ``amax`` does. For binary
(``s = mean|w|``) ``∂s/∂w_j = sign(w_j)/n``; for ternary ``keep_j·sign(w_j)/n_keep``. The
term is linear in ``g``, so relaying the aggregate of the clients' gradients equals relaying
each client's; it needs ``w`` (server only) and ``g`` (clients) — neither side alone.
``tests/test_fl_method.py`` checks it against autograd of :func:`~wrapkit.fl.codes.
fake_quant_trainable`.
"""

import torch

from .codes import channel_view, encode, weight_quant

__all__ = ["relay_term", "scale_jacobian"]


def scale_jacobian(w, bits):
    """``∂s_c/∂w_j`` for every weight (shape of ``w``): nonzero only inside the weight's
    own channel ``c``."""
    wq = weight_quant(bits)
    a = w.abs().flatten(1)
    sign = torch.sign(w).flatten(1)
    if wq.kind == "uniform":
        top = (a == a.amax(1, keepdim=True)).to(w.dtype)
        d = top * sign / (top.sum(1, keepdim=True) * wq.qmax)
    elif wq.kind == "binary":
        d = sign / a.shape[1]
    elif wq.kind == "ternary":
        keep = (a > wq.threshold * a.mean(1, keepdim=True)).to(w.dtype)
        d = keep * sign / keep.sum(1, keepdim=True).clamp_min(1)
    else:
        raise ValueError("float weights have no scale")
    return d.view_as(w)


def relay_term(w, grad, bits):
    """The server-side relay ``∂s/∂w · Σ_i g_i (q_i - w_i/s)`` for one weight tensor.

    Parameters
    ----------
    w : torch.Tensor
        The server's float weights (output channels first).
    grad : torch.Tensor
        The aggregated client gradient ``∂L/∂w_q`` (same shape).
    bits : str
        The broadcast's quantizer (see :data:`wrapkit.fl.codes.BITS`); ``float`` gives zeros.

    Returns
    -------
    torch.Tensor
        To be added to ``grad`` before the server's optimizer step.
    """
    if not weight_quant(bits).quantized:
        return torch.zeros_like(w)
    qt = encode(w, bits)
    q = qt.codes.to(w.dtype)
    s = channel_view(qt.scales.to(w.dtype), w)
    err = (grad * (q - w / s)).flatten(1).sum(1)
    return scale_jacobian(w, bits) * channel_view(err, w)
