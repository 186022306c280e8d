"""The MAC operation stream of an integer layer, and its operand toggles in closed form.

A layer runs on the MAC one output at a time: output positions (image, y, x) outermost,
output channels next, the fan-in ``(c_in, ky, kx)`` innermost::

    for r in rows: for c in channels: for j in fan_in:  (a_rows[r, j], w_rows[c, j])

``a_rows`` are the layer's im2col rows (one per output position, :meth:`IntegerLayer.rows
<wrapkit.ref.engine_layers.IntegerLayer.rows>`) and ``w_rows`` its weight codes. :func:`layer_stream`
materializes that stream as a :class:`~wrapkit.ref.opstream.MacOpStream`;
:func:`stream_toggles` counts its operand bit toggles without building it.
"""

import numpy as np

from .datapath import wrap
from .opstream import MacOpStream

__all__ = ["layer_stream", "stream_toggles"]


def _bit_planes(x, nbits):
    return ((np.asarray(x, dtype=np.int64)[..., None] >> np.arange(nbits)) & 1).astype(np.int8)


def stream_toggles(a_rows, w_rows, a_bits, w_bits):
    """Bit toggles of the MAC's two operand inputs over a layer's operation stream.

    Parameters
    ----------
    a_rows : (R, K) activation codes (one im2col row per output position).
    w_rows : (C, K) weight codes.
    a_bits, w_bits : operand widths.

    Returns
    -------
    (a_toggles, w_toggles, transitions)
        Toggle counts per bit (LSB first) of each operand and the number of consecutive
        operation pairs (``R·C·K - 1``). Computed in closed form without building the stream;
        ``tests/test_export_engine.py`` checks it against the materialized stream.
    """
    a_rows, w_rows = np.asarray(a_rows), np.asarray(w_rows)
    r, k = a_rows.shape
    c = w_rows.shape[0]
    a = _bit_planes(a_rows, a_bits)                       # (R, K, bits)
    a_t = (a[:, 1:] != a[:, :-1]).sum(axis=(0, 1)) * c    # inside each dot product
    a_t += (a[:, -1] != a[:, 0]).sum(axis=0) * (c - 1)    # next channel, same row
    a_t += (a[:-1, -1] != a[1:, 0]).sum(axis=0)           # next row
    w = _bit_planes(w_rows, w_bits)                       # (C, K, bits)
    w_t = (w[:, 1:] != w[:, :-1]).sum(axis=(0, 1)) * r
    w_t += (w[:-1, -1] != w[1:, 0]).sum(axis=0) * r       # next channel
    w_t += (w[-1, -1] != w[0, 0]).astype(np.int64) * (r - 1)   # back to channel 0, next row
    return a_t.astype(np.int64), w_t.astype(np.int64), r * c * k - 1


def layer_stream(layer, codes, max_dots=None):
    """The MAC operation stream of integer ``layer`` on input ``codes`` (engine layout).

    One dot product per output neuron, in the order of the module docstring; ``clr`` starts
    each dot product, ``en`` is always 1.

    Parameters
    ----------
    layer : wrapkit.ref.engine_layers.IntegerLayer
    codes : ndarray
        The layer's input codes, NHWC or (N, F) uint8 (:meth:`Engine.layer_input
        <wrapkit.ref.engine.Engine.layer_input>`).
    max_dots : int, optional
        Keep only the first ``max_dots`` dot products (whole dot products only).

    Returns
    -------
    MacOpStream
        ``dots·fan_in`` operations, with ``final_acc``/``final_out``: the engine's ``wrap(z)``
        and MAC output ``y`` for each dot product (what the MAC must hold after its last op).
    """
    rows = layer.rows(codes)
    n_rows, k = rows.shape
    c = layer.out_channels
    dots = n_rows * c
    if max_dots is not None:
        dots = min(dots, int(max_dots))
    n_full, rest = divmod(dots, c)
    used = n_full + (1 if rest else 0)
    r = rows[:used]
    a = np.repeat(r, c, axis=0)[:dots]
    w = np.tile(layer.codes.astype(np.uint8), (used, 1))[:dots]
    z = (r.astype(np.int64) @ layer.weights.T).reshape(-1)[:dots]
    return MacOpStream.from_dot_products(a, w, final_acc=wrap(z, layer.cfg.acc_bits),
                                         final_out=layer.mac_output(z),
                                         source=f"layer {layer.index} ({layer.name})")
