"""Integer-only inference of an exported network (pure numpy, no torch).

The engine runs a ``.wkx`` export (:mod:`.wkx`) on uint8 images:

1. standardise the pixels as training did, ``x = (pixel / pixel_max - mean) / std`` (float32,
   the two numbers come from the export header);
2. full-precision layers (the stem convolution with its BatchNorm and ReLU) in float32;
3. the first quantized layer's input quantizer, ``clamp(round(x / step), 0, 2^bits - 1)``
   (float32, round half to even, as PyTorch);
4. every quantized layer in integers only: im2col of the activation codes, the exact dot
   products ``z`` (see *GEMM* below), the accumulator ``wrap(z, acc_bits)`` and WrapNet's
   cyclic activation (``ref.cyclic``), then the fixed-point requantization of
   :mod:`.requant` (BatchNorm, ReLU and the next layer's quantizer folded into
   ``clamp((y·m + b) >> s, 0, qmax)``), then 2×2 max pooling on the codes (pooling commutes
   with the monotone requantization, so pooling codes equals quantizing pooled floats);
5. after the last quantized layer, ``y`` is dequantized per channel (BatchNorm folded,
   ReLU) and the float classifier produces the logits.

The accumulator semantics are those of the RTL MAC: a register that wraps on every addition
ends with ``wrap(sum, acc_bits)`` whatever the order (docs/datapath.md §1), so the engine
computes each dot product exactly, once, and wraps it.

GEMM
----
``gemm="int64"`` multiplies int64 matrices with numpy (exact, slow: numpy has no integer
BLAS). ``gemm="blas"`` (the default) hands the same integer matrices to the float BLAS in
float32 when ``fan_in · max|w| · max_code < 2^24`` and in float64 when it is below 2^53:
every product and every partial sum is then an integer that the float type represents
exactly, so each addition is exact in any order and the result equals the int64 one bit for
bit (``tests/test_export_engine.py`` checks both against each other and against PyTorch).
Above 2^53 it falls back to int64.

The layers themselves are :mod:`.layers`; the export is checked by :mod:`.validate` before it
gets here (:func:`wrapkit.ref.wkx.read_export`), per-layer statistics are :mod:`.stats`, and
a layer's MAC operation stream is :func:`wrapkit.ref.streams.layer_stream`.
"""

import numpy as np

from wrapkit.common.errors import UserError

from .engine_layers import FloatLayer, IntegerLayer, max_pool2x2
from .stats import StatsCollector

__all__ = ["GEMMS", "REQUANTS", "Engine"]

#: How the exact integer dot products are computed (module docstring).
GEMMS = ("blas", "int64")
#: How the MAC outputs are requantized: the export's fixed-point constants or real ones.
REQUANTS = ("fixed", "float")


class Engine:
    """Runs an export on uint8 images.

    Parameters
    ----------
    export : ExportFile
        From :func:`wrapkit.ref.wkx.read_export` (validated).
    gemm : "blas" | "int64"
        How the exact integer dot products are computed (module docstring).
    requant : "fixed" | "float"
        ``fixed``: the export's integer requantization (the integer-only engine);
        ``float``: ``round_half_even(M·y + C)`` in float64 from the export's real constants,
        to measure what fixed-point rounding changes.
    lut : bool
        Evaluate wrap, cyclic activation and requantization of accumulators up to
        16 bits through a per-layer table of all ``2^acc_bits`` results (built with the same
        functions; exact, and about three times faster). False: evaluate them directly.
    """

    def __init__(self, export, *, gemm="blas", requant="fixed", lut=True):
        if gemm not in GEMMS:
            raise ValueError(f"gemm must be one of {', '.join(GEMMS)}, got {gemm!r}")
        if requant not in REQUANTS:
            raise ValueError(f"requant must be one of {', '.join(REQUANTS)}, got {requant!r}")
        self.export = export
        h = export.header
        self.input = h["input"]
        self.num_classes = h["num_classes"]
        self.layers = []
        for i, spec in enumerate(h["layers"]):
            if spec["precision"] == "integer":
                self.layers.append(IntegerLayer(i, spec, export.tensors, gemm, requant, lut))
            else:
                self.layers.append(FloatLayer(i, spec, export.tensors))

    @property
    def integer_layers(self):
        return [l for l in self.layers if isinstance(l, IntegerLayer)]

    def layer(self, index):
        """The layer at ``index`` of the export's layer list (UserError if there is none)."""
        if isinstance(index, bool) or not isinstance(index, int) \
                or not 0 <= index < len(self.layers):
            raise UserError(f"{self.export.path} has no layer {index!r}; its layers are "
                            f"0..{len(self.layers) - 1} (`wrapkit infer` lists them)")
        return self.layers[index]

    def standardise(self, pixels):
        """uint8 (N, C, H, W) pixels -> float32 NHWC network input (training's formula)."""
        pixels = np.asarray(pixels)
        want = tuple(self.input["shape"])
        if pixels.ndim != 4 or pixels.shape[1:] != want:
            got = "×".join(map(str, pixels.shape[1:])) if pixels.ndim == 4 else str(pixels.shape)
            raise UserError(f"images are {got}, but {self.export.path} expects "
                            f"{'×'.join(map(str, want))} (C×H×W); use the dataset it was "
                            "trained on")
        if pixels.dtype != np.uint8:
            raise UserError(f"images must be uint8 pixels, got dtype {pixels.dtype}")
        if pixels.size and int(pixels.max()) > self.input["pixel_max"]:
            raise UserError(f"pixel value {int(pixels.max())} exceeds the export's pixel_max "
                            f"{self.input['pixel_max']}; use the dataset it was trained on")
        x = pixels.astype(np.float32) / np.float32(self.input["pixel_max"])
        x = (x - np.float32(self.input["mean"])) / np.float32(self.input["std"])
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1))

    def _forward(self, x, upto, stats):
        for layer in self.layers[:upto]:
            x = layer.forward(x, stats)
        return x

    def run(self, pixels, *, batch_size=100, stats=None, progress=None):
        """Logits (N, classes) float32 for uint8 ``pixels`` (N, C, H, W).

        ``stats``: a :class:`~wrapkit.ref.stats.StatsCollector` from :meth:`new_stats`, updated
        in place.
        ``progress``: optional callable(done, total).
        """
        x_all = self.standardise(pixels)
        out = []
        for i in range(0, len(x_all), batch_size):
            out.append(self._forward(x_all[i:i + batch_size], len(self.layers), stats))
            if progress:
                progress(min(i + batch_size, len(x_all)), len(x_all))
        return np.concatenate(out) if out else np.zeros((0, self.num_classes), np.float32)

    def new_stats(self, toggle_images=8):
        """A statistics collector for :meth:`run` (toggles from the first images)."""
        return StatsCollector(self.layers, toggle_images)

    def layer_input(self, pixels, index, batch_size=100):
        """Input codes of integer layer ``index`` for ``pixels`` (NHWC or (N, F) uint8)."""
        layer = self.layer(index)
        if not isinstance(layer, IntegerLayer):
            raise UserError(f"layer {index} ({layer.name}) is a float layer; give an integer "
                            f"layer: {', '.join(str(l.index) for l in self.integer_layers)}")
        x_all = self.standardise(pixels)
        parts = []
        for i in range(0, len(x_all), batch_size):
            x = self._forward(x_all[i:i + batch_size], index, None)
            parts.append(x if x.dtype == np.uint8 else layer.quantize_input(x))
        return np.concatenate(parts)

    def layer_forward(self, index, codes_nchw):
        """Run integer layer ``index`` alone on input codes in PyTorch's layout.

        Returns ``{"z", "y", "out"}``: exact pre-activations and MAC outputs in PyTorch's
        layout (N, C, H, W) or (N, F), and the layer's output (codes or floats, pooled).
        The test hook that compares the engine with PyTorch layer by layer.
        """
        layer = self.layer(index)
        codes = np.asarray(codes_nchw)
        if codes.ndim == 4:
            codes = codes.transpose(0, 2, 3, 1)
        codes = codes.astype(np.uint8)
        z = layer.preact(codes).astype(np.int64)
        y = layer.mac_output(z)
        out = layer.output(y)
        out = max_pool2x2(out) if layer.pool else out

        def nchw(t):
            return t.transpose(0, 3, 1, 2) if t.ndim == 4 else t
        return {"z": nchw(z), "y": nchw(y), "out": nchw(out)}
