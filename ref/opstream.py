"""A stream of MAC operations: the one type every operand generator returns.

A MAC consumes one operation per clock cycle: an activation ``a``, a weight code ``w`` and the
control bits ``en`` (the operand is valid), ``clr`` (the operation starts a new dot product)
and ``rst`` (the synchronous reset). :class:`MacOpStream` holds such a stream as equal-length
arrays; the random testbench stimulus (:func:`wrapkit.sim.stimulus.mac_stimulus`), the real
operands of a trained layer (:func:`wrapkit.ref.streams.layer_stream`) and the synthesis
activity streams (:mod:`wrapkit.hw.synth.activity`) all produce one, and the simulators,
the gate-level energy run and :meth:`MacOpStream.reference` consume it.

Worked example (8-bit accumulator, k = 2): two dot products of two operations each,

>>> from wrapkit.ref.datapath import MacConfig
>>> s = MacOpStream.from_dot_products([[100, 100], [3, 4]], [[1, 1], [1, 1]])
>>> s.clr.tolist(), s.dots
([True, False, True, False], 2)
>>> acc, out = s.reference(MacConfig(8, False, "uniform", 2, 8, 2))
>>> acc.tolist(), out.tolist()   # 100 + 100 wraps to -56; |-56| <= T = 85
([100, -56, 3, 7], [56, -56, 3, 7])

A stream may carry ``final_acc``/``final_out``: what the accumulator and the MAC output must
hold after each dot product's last operation according to an *independent* reference (the
integer engine's exact GEMM), so a cosimulation checks the RTL against both.

Files (:meth:`MacOpStream.save`, :meth:`MacOpStream.load`) are ``.npz`` archives with the
arrays ``a``, ``w``, ``en``, ``clr``, optionally ``rst`` and ``final_acc``/``final_out``;
:meth:`MacOpStream.load` also reads a ``.csv`` table with the header ``a,w,en,clr``.
"""

import dataclasses
import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wrapkit.common.errors import UserError
from wrapkit.common.files import atomic_write_bytes
from wrapkit.common.tables import read_int_csv

from .datapath import MacConfig, mac_stream, operand_range

__all__ = ["MacOpStream", "reset_as_clear"]

_OPERANDS = ("a", "w")
_FLAGS = ("en", "clr", "rst")
_FINALS = ("final_acc", "final_out")
_REQUIRED = ("a", "w", "en", "clr")
_FILE_ARRAYS = _OPERANDS + _FLAGS + _FINALS


def reset_as_clear(en, clr, rst):
    """``(en, clr)`` with the MAC's synchronous reset folded in.

    A reset clears every register on the edge it is sampled at: the accumulator after the
    operation presented with ``rst`` high, and after the one before it (whose product is in
    flight), is 0 -- exactly what an operation with ``clr=1, en=0`` leaves. So
    ``mac_stream`` on the rewritten flags gives what the RTL computes with resets.
    """
    rst = np.asarray(rst, dtype=bool)
    killed = rst.copy()
    killed[:-1] |= rst[1:]
    en = np.where(killed, False, np.asarray(en, dtype=bool))
    clr = np.where(killed, True, np.asarray(clr, dtype=bool))
    return en, clr


def _operand_array(name, values):
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"stimulus array {name} must be 1-D, got shape {arr.shape}")
    if arr.dtype.kind not in "iub":
        raise TypeError(f"stimulus array {name} must hold integers, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _flag_array(name, values):
    arr = _operand_array(name, values)
    if arr.size and (arr.min() < 0 or arr.max() > 1):
        raise ValueError(f"stimulus array {name} must hold 0 or 1, got values in "
                         f"[{arr.min()}, {arr.max()}]")
    return arr.astype(bool)


@dataclass(frozen=True, eq=False)
class MacOpStream:
    """MAC operations, one per clock cycle, as equal-length 1-D arrays.

    Parameters
    ----------
    a : array_like of int
        Activation values in the range of the design's ``act_bits``/``act_signed``
        (stored as int64).
    w : array_like of int
        Weight *codes* (:func:`wrapkit.ref.datapath.encode_weights`), unsigned (int64).
    en, clr : array_like of bool or 0/1
        Operand valid; start of a new dot product (stored as bool).
    rst : array_like of bool or 0/1, optional
        Synchronous reset pulses (default: none).
    final_acc, final_out : array_like of int, optional
        Independent reference of each dot product's final accumulator and MAC output (both or
        neither). Dot products start at every ``clr``; the stream must then start with one.
    phases : list of (name, start, stop), optional
        Named ranges of operations (what a generator did where), for reports.
    source : str
        Where the operations came from ("random seed=0", a file name, a layer name).

    Raises
    ------
    TypeError
        An array that does not hold integers.
    ValueError
        Arrays that are not 1-D or differ in length, flags other than 0/1, per-dot results
        that do not match the dot products.
    """

    a: np.ndarray
    w: np.ndarray
    en: np.ndarray
    clr: np.ndarray
    rst: np.ndarray | None = None
    final_acc: np.ndarray | None = None
    final_out: np.ndarray | None = None
    phases: list = field(default_factory=list)
    source: str = "arrays"

    def __post_init__(self):
        n = None
        for name in _OPERANDS + _FLAGS:
            value = getattr(self, name)
            if name == "rst" and value is None:
                value = np.zeros(len(self.a), dtype=bool)
            arr = _operand_array(name, value) if name in _OPERANDS else _flag_array(name, value)
            object.__setattr__(self, name, arr)
            if n is None:
                n = len(arr)
            elif len(arr) != n:
                raise ValueError(f"stimulus arrays must have equal lengths: a has {n}, "
                                 f"{name} has {len(arr)}")
        if (self.final_acc is None) != (self.final_out is None):
            raise ValueError("final_acc and final_out must be given together")
        if self.final_acc is not None:
            if n and not self.clr[0]:
                raise ValueError("a stream with per-dot results must start a dot product "
                                 "(clr) on its first operation")
            for name in _FINALS:
                arr = _operand_array(name, getattr(self, name))
                if len(arr) != self.dots:
                    raise ValueError(f"stimulus array {name} must hold one value per dot "
                                     f"product ({self.dots}), got {len(arr)}")
                object.__setattr__(self, name, arr)
        object.__setattr__(self, "phases", [tuple(p) for p in self.phases])
        object.__setattr__(self, "source", str(self.source))

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def from_dot_products(cls, a_rows, w_rows, *, final_acc=None, final_out=None,
                          source="dot products"):
        """One dot product per row, ``clr`` on each row's first operation, ``en`` always 1.

        Parameters
        ----------
        a_rows, w_rows : array_like, shape (n_dots, K)
            Activations of each dot product (e.g. an im2col patch per output position) and
            the matching weight codes.
        """
        a_rows, w_rows = np.asarray(a_rows), np.asarray(w_rows)
        if a_rows.ndim != 2 or a_rows.shape != w_rows.shape:
            raise ValueError(f"a_rows and w_rows must be 2-D of equal shape, got "
                             f"{a_rows.shape} and {w_rows.shape}")
        n, k = a_rows.shape
        clr = np.zeros((n, k), dtype=bool)
        clr[:, 0] = True
        return cls(a_rows.reshape(-1), w_rows.reshape(-1), np.ones(n * k, dtype=bool),
                   clr.reshape(-1), final_acc=final_acc, final_out=final_out, source=source)

    def replace(self, **changes):
        """A copy with some fields replaced (validated again)."""
        return dataclasses.replace(self, **changes)

    def segment(self, start, stop):
        """Operations ``start .. stop - 1`` as a stream of their own (the per-dot results
        and phases, which describe the whole stream, are left out)."""
        return MacOpStream(self.a[start:stop], self.w[start:stop], self.en[start:stop],
                           self.clr[start:stop], self.rst[start:stop], source=self.source)

    # -- structure ---------------------------------------------------------------------------

    def __len__(self):
        return len(self.a)

    @property
    def dots(self):
        """Number of dot products: operations with ``clr`` set."""
        return int(np.count_nonzero(self.clr))

    def dot_ends(self):
        """Index of each dot product's last operation (the one before the next ``clr``)."""
        starts = np.flatnonzero(self.clr)
        return np.append(starts[1:] - 1, len(self) - 1) if len(starts) else starts

    def chunks(self, max_ops):
        """``[(start, stop), ...]`` covering the stream in pieces of at most ``max_ops``
        operations that each start at a dot product (as many whole dot products as fit).

        Raises
        ------
        ValueError
            A dot product longer than ``max_ops``.
        """
        n = len(self)
        bounds = np.union1d(np.flatnonzero(self.clr), [0, n])
        out, start = [], 0
        while start < n:
            stop = int(bounds[np.searchsorted(bounds, start + max_ops, side="right") - 1])
            if stop <= start:
                nxt = int(bounds[np.searchsorted(bounds, start, side="right")])
                raise ValueError(f"a dot product of {nxt - start} operations (from operation "
                                 f"{start}) does not fit in {max_ops} operations")
            out.append((start, stop))
            start = stop
        return out

    # -- meaning -----------------------------------------------------------------------------

    def check(self, cfg: MacConfig):
        """Raise ValueError unless the stream is non-empty and every operand fits ``cfg``."""
        if len(self) < 1:
            raise ValueError("stimulus must hold at least 1 operation, got 0")
        lo, hi = operand_range(cfg.act_bits, cfg.act_signed)
        if self.a.min() < lo or self.a.max() > hi:
            raise ValueError(f"stimulus activations must lie in [{lo}, {hi}] for act_bits="
                             f"{cfg.act_bits} act_signed={cfg.act_signed}, got "
                             f"[{self.a.min()}, {self.a.max()}]")
        top = (1 << cfg.weight_code_bits) - 1
        if self.w.min() < 0 or self.w.max() > top:
            raise ValueError(f"stimulus weight codes must lie in [0, {top}] for "
                             f"{cfg.weight_kind} weights, got [{self.w.min()}, {self.w.max()}]")
        return self

    def reference(self, cfg: MacConfig):
        """``(acc, out)`` after every operation, from :func:`wrapkit.ref.datapath.mac_stream`
        (resets folded in by :func:`reset_as_clear`), starting from a cleared MAC."""
        en, clr = reset_as_clear(self.en, self.clr, self.rst) if self.rst.any() \
            else (self.en, self.clr)
        return mac_stream(self.a, self.w, en, clr, cfg)

    def final_mismatches(self, acc, out):
        """Dot products whose last ``acc``/``out`` differ from ``final_acc``/``final_out``
        (``acc`` and ``out``: one value per operation, e.g. what the RTL produced)."""
        if self.final_acc is None:
            raise ValueError("the stream carries no per-dot results (final_acc, final_out)")
        ends = self.dot_ends()
        acc, out = np.asarray(acc), np.asarray(out)
        return int(np.count_nonzero((acc[ends] != self.final_acc)
                                    | (out[ends] != self.final_out)))

    def digest(self):
        """Hash of the operations ``a``, ``w``, ``en``, ``clr`` (a cache key: the energy of a
        stream depends on nothing else)."""
        h = hashlib.sha256()
        for arr in (self.a, self.w, self.en, self.clr):
            h.update(np.ascontiguousarray(arr, dtype=np.int64).tobytes())
        return h.hexdigest()

    # -- files -------------------------------------------------------------------------------

    def to_bytes(self):
        """The stream as ``.npz`` bytes (what :meth:`save` writes)."""
        arrays = {"a": self.a, "w": self.w, "en": self.en, "clr": self.clr}
        if self.rst.any():
            arrays["rst"] = self.rst
        if self.final_acc is not None:
            arrays.update(final_acc=self.final_acc, final_out=self.final_out)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    def save(self, path):
        """Write the stream as ``.npz`` (atomically); returns the path."""
        return atomic_write_bytes(path, self.to_bytes())

    @classmethod
    def load(cls, path):
        """Read a stream file: ``.npz`` (see the module docstring) or ``.csv`` with the
        header ``a,w,en,clr``. ``source`` becomes the file's name.

        Raises
        ------
        UserError
            Missing file, wrong suffix, missing or unknown arrays, wrong dtypes or lengths;
            the message names the file and the array.
        """
        path = Path(path)
        if not path.is_file():
            raise UserError(f"stimulus file {path} not found; give a .npz or .csv file with "
                            f"columns a, w (weight codes), en, clr")
        try:
            if path.suffix == ".npz":
                with np.load(path, allow_pickle=False) as data:
                    arrays = {k: data[k] for k in data.files if k in _FILE_ARRAYS}
                    unknown = sorted(set(data.files) - set(_FILE_ARRAYS))
                if unknown:
                    raise UserError(f"stimulus file {path} holds unknown array(s) "
                                    f"{', '.join(unknown)}; it may hold only "
                                    f"{', '.join(_FILE_ARRAYS)}")
                missing = [k for k in _REQUIRED if k not in arrays]
                if missing:
                    raise UserError(f"stimulus file {path} lacks array(s) "
                                    f"{', '.join(missing)}; it needs a, w, en, clr")
                return cls(**arrays, source=path.name)
            if path.suffix == ".csv":
                table = read_int_csv(path, _REQUIRED, ranges={"en": (0, 1), "clr": (0, 1)},
                                     what="stimulus file")
                return cls(*(table[k] for k in _REQUIRED), source=path.name)
        except (ValueError, TypeError, OSError) as exc:
            raise UserError(f"stimulus file {path} is malformed ({exc})") from None
        raise UserError(f"stimulus file {path} must end in .npz or .csv")
