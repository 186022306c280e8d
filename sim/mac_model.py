"""Transaction-level reference model of the MAC for the scoreboards: wrapkit.ref, streamed.

:func:`wrapkit.ref.mac_stream` computes a whole stream that starts from an empty
accumulator. A testbench learns operations one cycle at a time and also pulses the reset, so
:class:`MacModel` buffers operations and evaluates them in vectorized blocks with
``mac_stream``, carrying the accumulator from one block to the next. Carrying is exact
because wrap-around is modular: until the first clear of a block, the accumulator is
``wrap(carry + mac_stream(block))``.

Reset (the manifest's synchronous ``rst``) clears every register on the clock edge it is
sampled at. For operation ``i`` presented while ``rst`` is high, and for operation ``i-1``
(whose product is in flight), the accumulator afterwards is 0 — exactly what an operation
with ``clr=1, en=0`` produces. The model therefore rewrites those two operations that way
(:func:`wrapkit.ref.opstream.reset_as_clear`) and needs to see operation ``i+1`` before it
can settle operation ``i``.
"""

import numpy as np

from wrapkit.ref.datapath import MacConfig, cyclic, decode_weights, mac_stream, wrap
from wrapkit.ref.opstream import reset_as_clear

__all__ = ["MacModel"]


class MacModel:
    """Expected ``acc`` (and cyclic ``y``) for each operation pushed, in order.

    Parameters
    ----------
    cfg : MacConfig
        The design's configuration (from its manifest).

    Examples
    --------
    >>> from wrapkit.ref.configs import PAPER_MACS
    >>> m = MacModel(PAPER_MACS["8x8_acc8_k2"])
    >>> for a, w, en, clr in [(100, 1, 1, 1), (100, 1, 1, 0), (3, 2, 1, 0)]:
    ...     _ = m.push(a, w, en, clr, 0)
    >>> m.expected([0, 1, 2], final=True)[0].tolist()   # 100, wrap(200) = -56, -56 + 6
    [100, -56, -50]
    """

    def __init__(self, cfg: MacConfig):
        if not isinstance(cfg, MacConfig):
            raise TypeError(f"cfg must be a MacConfig, not {cfg!r}")
        self.cfg = cfg
        self._pending = []         # (a, w, en, clr, rst) not yet evaluated
        self._done_acc = []        # evaluated blocks
        self._done_out = []
        self._n_done = 0
        self._carry = 0            # accumulator after the last evaluated operation
        self.wraps = 0             # accumulator wrap-arounds seen so far

    def __len__(self):
        return self._n_done + len(self._pending)

    def push(self, a, w, en, clr, rst=0):
        """Record one operation; returns its index."""
        self._pending.append((int(a), int(w), int(en), int(clr), int(rst)))
        return len(self) - 1

    def push_many(self, a, w, en, clr, rst, count):
        """Record ``count`` copies of one operation (a held input); returns the first index."""
        first = len(self)
        self._pending.extend([(int(a), int(w), int(en), int(clr), int(rst))] * int(count))
        return first

    def _evaluate(self, final):
        # The last pending op can only be settled once the next op (its reset) is known.
        n = len(self._pending) if final else len(self._pending) - 1
        if n <= 0:
            return
        block = np.array(self._pending[:n + (0 if final else 1)], dtype=np.int64)
        a, w, en, clr, rst = block.T
        en, clr = reset_as_clear(en, clr, rst)          # needs the op after each one
        a, w, en, clr = a[:n], w[:n], en[:n], clr[:n]
        acc_blk, _ = mac_stream(a, w, en, clr, self.cfg)
        seen_clr = np.logical_or.accumulate(clr.astype(bool))
        acc = np.where(seen_clr, acc_blk, wrap(self._carry + acc_blk, self.cfg.acc_bits))
        # A wrap happened where the unwrapped update leaves the register's range.
        prods = np.where(en.astype(bool), wrap(a * self._decode(w), self.cfg.prod_bits), 0)
        prev = np.concatenate(([self._carry], acc[:-1]))
        exact = np.where(clr.astype(bool), 0, prev) + prods
        self.wraps += int(np.count_nonzero(exact != acc))
        out = cyclic(acc, self.cfg.acc_bits, self.cfg.k) if self.cfg.k is not None else acc
        self._done_acc.append(acc)
        self._done_out.append(out)
        self._n_done += n
        self._carry = int(acc[-1])
        del self._pending[:n]

    def _decode(self, w):
        return decode_weights(w, self.cfg.weight_kind, self.cfg.weight_bits)

    def expected(self, indices, final=False):
        """``(acc, out)`` expected after operations ``indices`` (int64 arrays).

        ``out`` is ``cyclic(acc)`` when the configuration has ``k``, else ``acc``. With
        ``final=False`` the most recent operation cannot be asked for yet (a reset on the
        next one would change it); ``final=True`` declares that no operation follows.
        """
        idx = np.asarray(indices, dtype=np.int64)
        self._evaluate(final)
        if len(self._done_acc) > 1:
            self._done_acc = [np.concatenate(self._done_acc)]
            self._done_out = [np.concatenate(self._done_out)]
        if idx.size and (idx.max() >= self._n_done or idx.min() < 0):
            raise IndexError(f"operation {int(idx.max())} is not settled yet "
                             f"({self._n_done} settled, {len(self)} pushed)")
        if not self._done_acc:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return self._done_acc[0][idx], self._done_out[0][idx]
