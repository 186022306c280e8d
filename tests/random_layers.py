"""Random layers for testing the array (no Amaranth import).

Weights and activation codes are random; per-channel real scales and offsets are drawn
around the spread of the layer's MAC outputs, so that outputs hit both clamps and the codes
between, and turned into integer constants by :func:`wrapkit.ref.requant.fixed_point`, as
an export's are.
"""

import numpy as np

from wrapkit.hw.array.jobs import LayerJob, reference_outputs
from wrapkit.ref.datapath import encode_weights, operand_range, weight_range
from wrapkit.ref.requant import fixed_point

__all__ = ["random_job"]


def random_job(shape, mac, rng, *, out_bits=None, name="random", saturate=False):
    """A :class:`~wrapkit.hw.array.jobs.LayerJob` of ``shape`` with random data for the layer MAC ``mac``.

    Parameters
    ----------
    out_bits : int or None
        Requantize to this many bits, or write ``y`` (None).
    saturate : bool
        Draw activations at the top of their range, so an 8-bit accumulator overflows
        (tests the wrap-around and the cyclic fold).
    """
    lo, hi = operand_range(mac.act_bits, mac.act_signed)
    if saturate:
        codes = rng.integers(max(lo, hi - 1), hi + 1, (shape.in_channels, shape.in_h, shape.in_w))
    else:
        codes = rng.integers(lo, hi + 1, (shape.in_channels, shape.in_h, shape.in_w))
    wlo, whi = weight_range(mac.weight_kind, mac.weight_bits)
    values = rng.integers(wlo, whi + 1, (shape.out_channels, shape.fan_in))
    if saturate:  # mostly the largest weight: sums far beyond the accumulator
        values = np.where(rng.random(values.shape) < 0.9, whi, values)
    if mac.weight_kind == "binary":
        values = np.where(values == 0, 1, values)
    codes_w = encode_weights(values, mac.weight_kind, mac.weight_bits)
    job = LayerJob(shape, mac, codes, codes_w, None, name)
    if out_bits is None:
        return job
    # Per-channel scales that spread this layer's MAC outputs y over the output range,
    # 2^-1 .. 2^1 times wider or narrower, a fifth of them negative (a negative BatchNorm
    # gamma), and offsets that push some channels into each clamp.
    y = reference_outputs(job)["y"].astype(np.float64)       # (out_channels, positions)
    n = shape.out_channels
    qmax = (1 << out_bits) - 1
    spread = np.maximum(2.0 * y.std(axis=1), 1.0)
    scale = (rng.choice([-1.0, 1.0], n, p=[0.2, 0.8]) * qmax / spread
             * 2.0 ** rng.uniform(-1, 1, n))
    offset = qmax / 2 - scale * y.mean(axis=1) + rng.uniform(-0.5, 0.5, n) * qmax
    m, b, s = fixed_point(scale, offset, qmax=qmax, acc_bits=mac.acc_bits)
    job.requant = (m, b, s, out_bits)
    return job
