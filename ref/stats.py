"""Statistics of the integer layers over the images the engine runs.

Per integer layer: how many pre-activations overflow the accumulator, the largest
``|z|``, how many outputs the cyclic activation folds back, and the bit toggles of the MAC's
operands over the layer's operation stream (:func:`wrapkit.ref.streams.stream_toggles`) --
what ``wrapkit infer --stats`` reports and the energy estimate reads.
"""

from dataclasses import dataclass, field

import numpy as np

from .datapath import wrap
from .engine_layers import IntegerLayer
from .streams import stream_toggles

__all__ = ["LayerStats", "StatsCollector"]


@dataclass
class LayerStats:
    """Per integer layer, accumulated over the images run (see :meth:`to_dict`)."""

    index: int
    name: str
    describe: str
    mac: dict
    macs_per_image: int
    images: int = 0
    outputs: int = 0
    overflows: int = 0
    folded: int = 0
    max_abs_z: int = 0
    toggle_images: int = 0
    a_toggles: np.ndarray | None = None
    w_toggles: np.ndarray | None = None
    transitions: int = 0
    a_zero: float = 0.0
    w_zero: float = 0.0
    extra: dict = field(default_factory=dict)

    def to_dict(self):
        tog = None
        if self.transitions > 0:
            a = (self.a_toggles / self.transitions).tolist()
            w = (self.w_toggles / self.transitions).tolist()
            tog = {"images": self.toggle_images, "transitions": self.transitions,
                   "a_per_bit": a, "w_per_bit": w,
                   "a_mean": float(np.mean(a)), "w_mean": float(np.mean(w)),
                   "a_zero_fraction": self.a_zero, "w_zero_fraction": self.w_zero}
        return {"index": self.index, "name": self.name, "layer": self.describe,
                "mac": self.mac, "macs_per_image": self.macs_per_image,
                "images": self.images, "macs": self.macs_per_image * self.images,
                "outputs": self.outputs,
                "overflow_rate": self.overflows / self.outputs if self.outputs else 0.0,
                "overflows": self.overflows, "max_abs_preactivation": self.max_abs_z,
                "cyclic_fold_rate": (self.folded / self.outputs
                                     if self.outputs and self.mac["k"] is not None else None),
                "toggles": tog, **self.extra}


class StatsCollector:
    """Per-layer :class:`LayerStats` of the integer layers, updated as the engine runs
    (:meth:`Engine.new_stats <wrapkit.ref.engine.Engine.new_stats>`); ``layers`` maps a layer's
    index to its statistics. Toggles come from the first ``toggle_images`` images."""

    def __init__(self, layers, toggle_images):
        self.toggle_images = toggle_images
        self.layers = {l.index: LayerStats(l.index, l.name, l.describe(), l.cfg.to_dict(),
                                           l.macs_per_image)
                       for l in layers if isinstance(l, IntegerLayer)}

    def update(self, layer, codes, z):
        """Add a batch: ``codes`` the layer's input codes, ``z`` its exact pre-activations."""
        st = self.layers[layer.index]
        cfg = layer.cfg
        half = 1 << (cfg.acc_bits - 1)
        st.images += len(codes)
        st.outputs += z.size
        st.overflows += int(np.count_nonzero((z < -half) | (z >= half)))
        if z.size:
            st.max_abs_z = max(st.max_abs_z, int(np.abs(z).max()))
        if cfg.k is not None:
            t = (cfg.k << (cfg.acc_bits - 1)) // (cfg.k + 1)
            m = wrap(z, cfg.acc_bits)
            st.folded += int(np.count_nonzero(np.abs(m) > t))
        if st.transitions == 0 and self.toggle_images > 0:
            n = min(self.toggle_images, len(codes))
            rows = layer.rows(codes[:n])
            a_t, w_t, tr = stream_toggles(rows, layer.codes, cfg.act_bits, cfg.weight_code_bits)
            st.a_toggles, st.w_toggles, st.transitions = a_t, w_t, tr
            st.toggle_images = n
            st.a_zero = float(np.mean(rows == 0))
            st.w_zero = float(np.mean(layer.weights == 0))
