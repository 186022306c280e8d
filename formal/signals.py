"""Two's-complement reading of the raw bit patterns that the tools report."""

__all__ = ["as_signed"]


def as_signed(value, width, signed=True):
    """``value`` (an unsigned bit pattern of ``width`` bits) as the integer it encodes.

    >>> as_signed(0b11010100, 8), as_signed(0b11010100, 8, signed=False)
    (-44, 212)
    """
    if value is None or not signed:
        return value
    return value - (1 << width) if value >> (width - 1) & 1 else value
