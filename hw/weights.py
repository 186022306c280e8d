"""Weight decoding in hardware: an unsigned weight code to its signed integer value."""

from amaranth.hdl import Cat, Const

from wrapkit.ref.datapath import weight_code_bits

__all__ = ["decode_weight"]


def decode_weight(code, weight_kind, weight_bits=None):
    """Amaranth expression for the signed value of a weight code (:func:`ref.decode_weights`).

    Parameters
    ----------
    code : amaranth Value, ``weight_code_bits`` wide
        The unsigned code as it arrives on the ``w`` port.
    weight_kind : "binary" | "ternary" | "uniform"
    weight_bits : int or None
        Width of uniform weights.

    Returns
    -------
    amaranth Value
        ``signed(2)`` for binary and ternary (bit 1 = negative, bit 0 = non-zero, so a
        multiplier can use the two bits as negate and select), ``signed(weight_bits)`` for
        uniform.

    Notes
    -----
    * binary, code ``c`` (1 bit): value ``1 - 2c`` = bits ``{c, 1}``.
    * ternary, code ``{n, z}``: value bits ``{n & z, z}``, so the spare code ``0b10``
      decodes to 0 as in the reference.
    * uniform: the code is the two's-complement value.
    """
    nbits = weight_code_bits(weight_kind, weight_bits)
    if len(code) != nbits:
        raise ValueError(f"code must be {nbits} bits wide for {weight_kind} weights, "
                         f"got {len(code)}")
    if weight_kind == "binary":
        return Cat(Const(1, 1), code[0]).as_signed()
    if weight_kind == "ternary":
        return Cat(code[0], code[1] & code[0]).as_signed()
    return code.as_signed()
