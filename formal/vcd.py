"""Read the VCD trace that yosys-smtbmc writes for a failed proof, one value per step.

yosys-smtbmc dumps step ``i`` at time ``10 * i`` (the clock's falling half at ``10 * i + 5``)
and records the step number in an integer variable ``t``. Only the signals of the top
module are read: the miter's inputs and the two sides it compares.
"""

__all__ = ["read_steps"]


def _parse_bits(bits):
    """A VCD vector value as an unsigned integer, or None when it holds x or z."""
    bits = bits.lower()
    if any(c in "xz" for c in bits):
        return None
    return int(bits, 2)


def read_steps(path):
    """Top-module signal values at every step of a yosys-smtbmc VCD trace.

    Parameters
    ----------
    path : path
        The ``--dump-vcd`` file.

    Returns
    -------
    tuple (widths, steps)
        ``widths`` maps each top-level signal name to its width; ``steps`` is a list, one dict
        per step, mapping signal names to unsigned integers (None where undefined).
    """
    widths, names = {}, {}           # VCD identifier -> name (top scope only)
    depth = 0
    values, steps = {}, []
    step_seen = False
    with open(path, encoding="utf-8") as handle:
        lines = iter(handle.read().splitlines())
    for line in lines:
        parts = line.split()
        if not parts:
            continue
        head = parts[0]
        if head == "$scope":
            depth += 1
        elif head == "$upscope":
            depth -= 1
        elif head == "$var":
            # $var wire 8 n0 a $end  (the smt_step counter sits outside every scope)
            width, ident, name = int(parts[2]), parts[3], parts[4]
            if name == "smt_step" or depth == 1:
                names[ident] = "smt_step" if name == "smt_step" else name
                widths[names[ident]] = width
        elif head.startswith("#"):
            if step_seen:
                steps.append(dict(values))
                step_seen = False
        elif head[0] in "bB" and len(parts) == 2:
            name = names.get(parts[1])
            if name is not None:
                values[name] = _parse_bits(head[1:])
                step_seen = step_seen or name == "smt_step"
        elif head[0] in "01xzXZ" and len(head) > 1:
            name = names.get(head[1:])
            if name is not None:
                values[name] = _parse_bits(head[0])
    if step_seen:
        steps.append(dict(values))
    widths.pop("smt_step", None)
    for step in steps:
        step.pop("smt_step", None)
    return widths, steps
