"""Channel-wise Grad-CAM scores of frequency channels (seed 000, §3.3.2, Figure 3.4).

For a network trained on all frequency channels: keep one candidate channel of the input,
set every other channel to zero, compute the Grad-CAM map at the network's last block
(ReLU of the activation maps weighted by their spatially averaged gradients of the class
score), and average it over every position and over a sample of training images. One number
per channel; :func:`wrapkit.models.dct.heatmap_channels` thresholds them.

"Zero" is zero in the network's input space: with the standardised channels of
:class:`wrapkit.models.dct.DCTFrontEnd` a removed channel sits at its training mean, so a
channel's score measures what its deviations from the mean contribute.

The class score is the logit of the image's label (the training sample has labels; the
seed's figure does not say which class it explains, the label is the natural choice for
training images).
"""

import numpy as np
import torch

__all__ = ["channel_scores", "gradcam"]


def gradcam(forward, layer, x, target):
    """Grad-CAM maps ``(N, H', W')`` at ``layer``'s output for class ``target`` (N,).

    ``forward`` maps ``x`` to logits and runs ``layer`` once."""
    store = {}

    def hook(_module, _inputs, out):
        out.retain_grad()
        store["a"] = out

    handle = layer.register_forward_hook(hook)
    try:
        logits = forward(x)
    finally:
        handle.remove()
    a = store["a"]
    logits.gather(1, target.view(-1, 1)).sum().backward()
    weights = a.grad.mean(dim=(2, 3), keepdim=True)
    return torch.relu((weights * a).sum(dim=1)).detach()


def channel_scores(model, layer, x, labels, *, forward=None, batch_size=256):
    """Mean channel-wise Grad-CAM value of every input channel of ``x`` (N, C, H, W).

    Parameters
    ----------
    model : nn.Module
        Trained on all ``C`` channels; put in eval mode here.
    layer : nn.Module
        Its last block (Grad-CAM's layer).
    x : float tensor (N, C, H, W)
        The network's input for a sample of training images.
    labels : int tensor (N,)
    forward : callable or None
        ``x -> logits`` (default: ``model``), e.g. the part of a network after its front end.

    Returns
    -------
    numpy array (C,)
        Score of each channel: its Grad-CAM map averaged over positions and images.
    """
    model.eval()
    forward = model if forward is None else forward
    c = x.shape[1]
    scores = np.zeros(c)
    for ch in range(c):
        total = 0.0
        for i in range(0, len(x), batch_size):
            xb = x[i:i + batch_size]
            masked = torch.zeros_like(xb)
            masked[:, ch] = xb[:, ch]
            model.zero_grad(set_to_none=True)
            total += float(gradcam(forward, layer, masked, labels[i:i + batch_size]).mean(
                dim=(1, 2)).sum())
        scores[ch] = total / len(x)
    model.zero_grad(set_to_none=True)
    return scores
