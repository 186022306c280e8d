"""Variants of an exported network with a different accumulator (pure numpy, no torch).

The paper's Table 2.1 evaluates a network trained with 32-bit accumulators on 8-bit ones: the
pre-activations then wrap around, and accuracy collapses. :func:`with_accumulator` builds that
network from an export: every integer layer keeps its weights, input quantizer and
requantization constants, only the accumulator width and the cyclic activation change. The
result is a new, validated :class:`~wrapkit.ref.wkx.ExportFile` in memory that the integer
engine runs like any other.

Worked example: a layer whose dot product is ``z = 300``, exported with a 32-bit accumulator,
outputs ``y = 300``; ``with_accumulator(exp, 8)`` makes it ``wrap(300, 8) = 44``, and
``with_accumulator(exp, 8, k=2)`` makes it ``cyclic(300, 8, 2) = 44`` too (44 is below the
threshold 85), while ``z = 100`` gives ``100`` and ``2·(128 - 100) = 56``.
"""

import copy

from .datapath import MacConfig
from wrapkit.common.errors import UserError

__all__ = ["with_accumulator"]


def with_accumulator(exp, bits, k=None):
    """The export ``exp`` with every integer layer's accumulator set to ``bits`` and ``k``.

    Parameters
    ----------
    exp : ExportFile
        A validated export (:func:`wrapkit.ref.wkx.read_export`).
    bits : int, 2..32
        Accumulator width (wrap-around modulo ``2^bits``).
    k : int or None
        Cyclic activation slope (1..64), or None for a plain wrapping register.

    Returns
    -------
    ExportFile
        Same tensors (shared, read-only use), new header; ``path`` names the variant and
        ``sha256`` is empty (it exists in memory only).

    Raises
    ------
    ValueError
        ``bits`` or ``k`` out of range (the message names the parameter).
    UserError
        The export's requantization constants cannot serve a ``bits`` accumulator exactly
        in int64 (only possible when widening far beyond the trained width).
    """
    from .validate import validate
    from .wkx import ExportFile

    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 32:
        raise ValueError(f"bits must be an integer in [2, 32], got {bits!r}")
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 64):
        raise ValueError(f"k must be None or an integer in [1, 64], got {k!r}")
    header = copy.deepcopy(exp.header)
    for spec in header["layers"]:
        if spec["precision"] != "integer":
            continue
        spec["accumulator"] = {"bits": bits, "k": k}
        cfg = MacConfig.from_dict(spec["mac"])
        spec["mac"] = MacConfig(cfg.act_bits, cfg.act_signed, cfg.weight_kind, cfg.weight_bits,
                                bits, k).to_dict()
    label = f"acc{bits}" + ("" if k is None else f"_k{k}")
    variant = ExportFile(header, exp.tensors, f"{exp.path}[{label}]", "")
    try:
        return validate(variant)
    except UserError as exc:
        raise UserError(f"cannot run {exp.path} with a {bits}-bit accumulator: {exc}") from None
