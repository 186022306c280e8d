"""Strict reading of integer tables (CSV): every cell must be an integer in its column's
range, or the error names the file, the line and the column.

Lenient readers (``numpy.genfromtxt``) turn a cell they cannot parse — ``x``, an empty cell,
``2.7`` — into a fill value such as -1 without a word, and the run goes on with operands
nobody wrote. Here such a cell is a :class:`~wrapkit.common.errors.UserError`.
"""

import csv
from pathlib import Path

import numpy as np

from .errors import UserError

__all__ = ["read_int_csv"]

_INT64 = (-(1 << 63), (1 << 63) - 1)


def read_int_csv(path, columns, *, ranges=None, what="file"):
    """Read a CSV file with a header row into one ``int64`` array per wanted column.

    Parameters
    ----------
    path : path-like
    columns : sequence of str
        The columns the header must name (others are refused, so that a misspelt column is
        not silently ignored).
    ranges : dict of str to (int, int), optional
        Inclusive bounds per column; every column is at least bounded by int64.
    what : str
        How messages name the file, e.g. ``"stimulus file"``.

    Returns
    -------
    dict of str to numpy.ndarray

    Raises
    ------
    UserError
        Unreadable file, a missing or unknown column, a short or long row, or a cell that is
        empty, not an integer or out of range: ``"<what> <path>, line L, column C: ..."``.
    """
    path = Path(path)
    ranges = dict(ranges or {})
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise UserError(f"{what} {path} is empty; the first line must be the header "
                                f"{','.join(columns)}")
            header = [h.strip() for h in header]
            missing = [c for c in columns if c not in header]
            if missing:
                raise UserError(f"{what} {path} lacks column(s) {', '.join(missing)}; the "
                                f"header must be {','.join(columns)}")
            unknown = [h for h in header if h not in columns]
            if unknown or len(set(header)) != len(header):
                raise UserError(f"{what} {path}, line 1: the header must name the columns "
                                f"{','.join(columns)} once each, got {','.join(header)}")
            values = {c: [] for c in header}
            for row in reader:
                line = reader.line_num
                if not row or all(not cell.strip() for cell in row):
                    continue  # a blank line (often the last one)
                if len(row) != len(header):
                    raise UserError(f"{what} {path}, line {line}: {len(row)} cells, the "
                                    f"header has {len(header)}")
                for name, cell in zip(header, row):
                    values[name].append(_cell(cell, name, ranges.get(name, _INT64), path,
                                              line, what))
    except UnicodeDecodeError as exc:
        raise UserError(f"{what} {path} is not a text CSV file ({exc.reason})") from None
    except csv.Error as exc:
        raise UserError(f"{what} {path} is malformed CSV ({exc})") from None
    except OSError as exc:
        raise UserError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    return {c: np.asarray(values[c], dtype=np.int64) for c in columns}


def _cell(text, column, bounds, path, line, what):
    text = text.strip()
    where = f"{what} {path}, line {line}, column {column}"
    if not text:
        raise UserError(f"{where}: empty cell; every cell must be an integer")
    try:
        value = int(text, 10)
    except ValueError:
        raise UserError(f"{where}: {text[:40]!r} is not an integer") from None
    lo, hi = max(bounds[0], _INT64[0]), min(bounds[1], _INT64[1])
    if not lo <= value <= hi:
        raise UserError(f"{where}: {value} is outside [{lo}, {hi}]")
    return value
