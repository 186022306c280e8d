"""A packed accumulator's stimulus from the dot products of a real layer, for the cosimulation
tests.

The real-layer stimulus is the second convolution of a small binary-weight network on
Fashion-MNIST test images: image -> 3x3 conv (8 channels, fixed random +-1 weights) -> ReLU ->
3-bit activation codes -> the 72 products ``a * w`` (w = +-1) of every output of a second
3x3 binary conv. These are the terms a WrapNet layer with 3-bit activations and binary weights
accumulates; the weights are fixed random signs, not trained ones (the cosimulation needs real
activation statistics, not accuracy).
"""

import numpy as np

from wrapkit.ref.bitpack import PACK_MODES, pack_stream
from wrapkit.sim.packed_adder_data import PackedStimulus

__all__ = ["real_layer_stimulus", "real_layer_terms"]


def _conv3x3(x, w):
    """x[N, C, H, W], w[O, C, 3, 3] -> [N, O, H, W], stride 1, zero padding 1 (exact, float64)."""
    n, c, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))  # N,C,H,W,3,3
    return np.einsum("nchwij,ocij->nohw", win, w)


def real_layer_terms(n_images=2, data_dir=None, seed=0, act_bits=3, channels=8):
    """Products ``a * w`` of a binary second conv layer on Fashion-MNIST: ``int64[D, 9*channels]``.

    One row per output neuron (output channel x position), in im2col order (channel, ky, kx).
    """
    from wrapkit.common.datasets import load_images

    images = load_images("fashion-mnist", "test", data_dir).pixels
    x = images[:n_images].astype(np.float64) / 255.0
    rng = np.random.default_rng(seed)
    w1 = rng.choice([-1.0, 1.0], size=(channels, 1, 3, 3))
    z1 = np.maximum(_conv3x3(x, w1), 0.0)
    # Step size: 3-bit codes span the 99th percentile of the non-zero pre-activations.
    step = np.percentile(z1[z1 > 0], 99) / ((1 << act_bits) - 1)
    a = np.clip(np.round(z1 / step), 0, (1 << act_bits) - 1).astype(np.int64)
    w2 = rng.choice([-1, 1], size=(channels, channels, 3, 3))
    ap = np.pad(a, ((0, 0), (0, 0), (1, 1), (1, 1)))
    win = np.lib.stride_tricks.sliding_window_view(ap, (3, 3), axis=(2, 3))  # N,C,H,W,3,3
    patches = win.transpose(0, 2, 3, 1, 4, 5).reshape(-1, channels * 9)     # (N*H*W, 72)
    terms = patches[:, None, :] * w2.reshape(channels, -1)[None]            # (P, O, 72)
    return terms.reshape(-1, channels * 9)


def real_layer_stimulus(spec, n_dots=60, seed=0, data_dir=None):
    """Drive ``n_dots`` real dot products, one after another, cycling through the three modes.

    Each dot product is packed for its mode (:func:`wrapkit.ref.bitpack.pack_stream`), starts
    with ``clr`` and has a few idle cycles (``en = 0``) mixed in.
    """
    terms_all = real_layer_terms(data_dir=data_dir, seed=seed)
    rng = np.random.default_rng(seed)
    # Prefer neurons that see many non-zero activations: they carry the most.
    busy = np.flatnonzero((terms_all != 0).sum(axis=1) >= terms_all.shape[1] // 2)
    pick = rng.choice(busy if len(busy) >= n_dots else np.arange(len(terms_all)), size=n_dots,
                      replace=False)
    terms = terms_all[np.sort(pick)]
    x, en, clr, mode, segments = [], [], [], [], []
    for i, t in enumerate(terms):
        m = i % len(PACK_MODES)
        words = pack_stream(t, spec.with_mode(PACK_MODES[m]))
        first = len(x)
        for j, wd in enumerate(words):
            if j and rng.random() < 0.1:  # an idle cycle: the register must hold
                x.append(wd ^ np.uint64(spec.used_mask))
                en.append(0), clr.append(0), mode.append(m)
            x.append(wd), en.append(1), clr.append(int(j == 0)), mode.append(m)
        segments.append((first, len(x) - 1, m))
    return PackedStimulus(x=np.array(x, np.uint64), en=np.array(en), clr=np.array(clr),
                          mode=np.array(mode), segments=np.array(segments), terms=terms)
