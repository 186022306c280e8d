"""The layer descriptor as a ``lib.data`` layout: one structured word, one field per register.

The fields, their order and meaning are :data:`~.config.DESCRIPTOR` (Amaranth-free, shared
with the host driver and the manifest); their widths depend on the array's buffers
(:meth:`~.config.ArrayConfig.field_bits`).
"""

from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from .config import DESCRIPTOR, ArrayConfig

__all__ = ["descriptor_layout"]


def descriptor_layout(config):
    """The descriptor of an array of configuration ``config`` as a struct layout.

    Field ``n`` of the layout is descriptor register ``n`` (the ``ld_addr`` that loads it),
    with the width and signedness :meth:`ArrayConfig.field_bits` gives; a ``Signal`` of this
    layout reads as ``desc.fan_in``, ``desc.base0`` and so on.

    Examples
    --------
    For a 2x3 array with 512-word buffers, ``fan_in`` is ``unsigned(14)`` and ``base0``
    (a signed buffer offset) ``signed(16)``; ``requant`` is one bit.

    Raises
    ------
    TypeError
        ``config`` is not an :class:`ArrayConfig`.
    """
    if not isinstance(config, ArrayConfig):
        raise TypeError(f"config must be an ArrayConfig, not {config!r}")
    fields = {}
    for name, _, _ in DESCRIPTOR:
        width, is_signed = config.field_bits(name)
        fields[name] = signed(width) if is_signed else unsigned(width)
    return data.StructLayout(fields)
