"""Random MAC operation streams that reach the datapath's corner cases (pure numpy).

:func:`mac_stimulus` returns a :class:`~wrapkit.ref.opstream.MacOpStream` (activation
values ``a``, weight codes ``w``, ``en``, ``clr``, ``rst``) built from phases in this order,
each cut short when the requested length is reached:

1. ``products``: every (extreme activation, weight code) pair with ``clr`` on every op, so
   each product reaches the accumulator alone (back-to-back clears) and is checked on its own.
   Extreme activations are min, min+1, -1, 0, 1, max-1, max of the activation range; all
   weight codes are used (for codes wider than 12 bits: the extremes plus a random sample).
2. ``extremes-accumulate``: the same pairs shuffled and accumulated without clears.
3. ``long-run``: a third of what is left (at most 8192 ops) without any clear, 90 % enabled,
   uniform activations, weights leaning positive then negative: an 8-bit accumulator wraps
   hundreds of times in both directions.
4. ``clear-every-op``: up to 1024 uniform operations with a clear on each, a quarter of them
   not enabled (clearing to zero).
5. ``random``: segments of 8..2048 ops, each with its own enable density (always, 90 %,
   50 %, 10 %, never), clear density (none, sparse, dense, every op) and operand mix
   (uniform, extremes only, 30 % extremes), plus rare reset pulses; one segment in eight is
   a saturating run of the largest positive or negative product.

The generator makes the stream; which cycles it is driven on and what comes out is the
testbench's business, so this module needs no simulator and is unit-tested on its own.
"""

import numpy as np

from wrapkit.common.checks import check_int
from wrapkit.ref.datapath import MacConfig, decode_weights, operand_range, wrap
from wrapkit.ref.opstream import MacOpStream

__all__ = ["extreme_activations", "mac_stimulus", "saturating_pair", "stream_coverage"]

# Above this many weight codes, "every code" becomes the extreme codes plus a sample.
_MAX_ALL_CODES = 1 << 12
_RESET_RATE = 1e-3


def extreme_activations(cfg: MacConfig):
    """Sorted distinct activation corner values: min, min+1, -1, 0, 1, max-1, max (in range)."""
    lo, hi = operand_range(cfg.act_bits, cfg.act_signed)
    cands = {lo, lo + 1, -1, 0, 1, hi - 1, hi}
    return np.array(sorted(v for v in cands if lo <= v <= hi), dtype=np.int64)


def _weight_codes(cfg, rng):
    n = 1 << cfg.weight_code_bits
    if n <= _MAX_ALL_CODES:
        return np.arange(n, dtype=np.int64)
    half = n >> 1
    corners = np.array([0, 1, 2, half - 2, half - 1, half, half + 1, n - 2, n - 1])
    return np.unique(np.concatenate([corners, rng.integers(0, n, _MAX_ALL_CODES)]))


def _extreme_codes(cfg):
    """Weight codes of the smallest, largest and zero-ish weight values."""
    codes = np.arange(min(1 << cfg.weight_code_bits, _MAX_ALL_CODES), dtype=np.int64)
    if cfg.weight_code_bits > 12:  # uniform wide: min, max, 0, +-1 by two's complement
        n = 1 << cfg.weight_code_bits
        return np.array([0, 1, n - 1, n >> 1, (n >> 1) - 1], dtype=np.int64)
    values = decode_weights(codes, cfg.weight_kind, cfg.weight_bits)
    keep = (values == values.min()) | (values == values.max()) | (np.abs(values) <= 1)
    return codes[keep]


def saturating_pair(cfg, sign):
    """(a, w_code) whose product, as the product register holds it, is largest (sign=+1)
    or most negative (sign=-1)."""
    acts = extreme_activations(cfg)
    codes = _extreme_codes(cfg)
    aa, cc = np.meshgrid(acts, codes, indexing="ij")
    prods = wrap(aa * decode_weights(cc, cfg.weight_kind, cfg.weight_bits), cfg.prod_bits)
    idx = np.argmax(prods * sign)
    return int(aa.flat[idx]), int(cc.flat[idx])


def mac_stimulus(cfg: MacConfig, n_ops, rng):
    """A stream of ``n_ops`` MAC operations for ``cfg`` (see the module docstring).

    Parameters
    ----------
    cfg : MacConfig
    n_ops : int, >= 1
    rng : numpy.random.Generator

    Returns
    -------
    MacOpStream
        ``n_ops`` operations; ``phases`` lists ``(name, start, stop)`` of each phase.
    """
    n_ops = check_int("n_ops", n_ops, 1)
    lo, hi = operand_range(cfg.act_bits, cfg.act_signed)
    n_codes = 1 << cfg.weight_code_bits
    acts_x = extreme_activations(cfg)
    codes_x = _extreme_codes(cfg)
    parts, phases = [], []
    total = 0

    def add(name, a, w, en, clr, rst=None):
        nonlocal total
        take = min(len(a), n_ops - total)
        if take <= 0:
            return
        rst = np.zeros(len(a), np.int64) if rst is None else rst
        parts.append([np.asarray(x, np.int64)[:take] for x in (a, w, en, clr, rst)])
        phases.append((name, total, total + take))
        total += take

    # 1 + 2: every extreme activation with every weight code.
    aa, ww = np.meshgrid(acts_x, _weight_codes(cfg, rng), indexing="ij")
    aa, ww = aa.ravel(), ww.ravel()
    ones = np.ones(len(aa), np.int64)
    add("products", aa, ww, ones, ones)
    order = rng.permutation(len(aa))
    clr = np.zeros(len(aa), np.int64)
    clr[0] = 1
    add("extremes-accumulate", aa[order], ww[order], ones, clr)

    # 3: a long run without clears. Weights lean positive in the first half and negative in
    # the second, so that even small products (3-bit x binary) drift through the
    # accumulator's range and wrap many times in both directions.
    if total < n_ops:
        n = int(min(8192, max(1, (n_ops - total) // 3)))
        clr = np.zeros(n, np.int64)
        clr[0] = 1
        w = rng.integers(0, n_codes, n)
        all_codes = np.arange(min(n_codes, _MAX_ALL_CODES), dtype=np.int64)
        values = decode_weights(all_codes, cfg.weight_kind, cfg.weight_bits)
        lean = rng.random(n) < 0.8
        half = np.arange(n) < n // 2
        w = np.where(lean & half, rng.choice(all_codes[values > 0], n), w)
        w = np.where(lean & ~half, rng.choice(all_codes[values < 0], n), w)
        add("long-run", rng.integers(lo, hi + 1, n), w, (rng.random(n) < 0.9).astype(np.int64),
            clr)

    # 4: a clear on every op (each product alone, some not enabled: clear to zero).
    if total < n_ops:
        n = int(min(1024, max(1, (n_ops - total) // 8)))
        add("clear-every-op", rng.integers(lo, hi + 1, n), rng.integers(0, n_codes, n),
            (rng.random(n) < 0.75).astype(np.int64), np.ones(n, np.int64))

    # 5: random segments until the stream is long enough.
    while total < n_ops:
        n = int(min(n_ops - total, rng.integers(8, 2049)))
        if rng.random() < 0.125:
            a0, w0 = saturating_pair(cfg, 1 if rng.random() < 0.5 else -1)
            clr = np.zeros(n, np.int64)
            clr[0] = 1
            add("saturating", np.full(n, a0), np.full(n, w0), np.ones(n, np.int64), clr)
            continue
        p_en = rng.choice([1.0, 0.9, 0.5, 0.1, 0.0], p=[0.3, 0.3, 0.2, 0.15, 0.05])
        p_clr = rng.choice([0.0, rng.uniform(1 / 512, 1 / 32), rng.uniform(0.2, 0.6), 1.0],
                           p=[0.3, 0.35, 0.25, 0.1])
        mix = rng.choice(["uniform", "extremes", "mixed"], p=[0.5, 0.2, 0.3])
        a = rng.integers(lo, hi + 1, n)
        w = rng.integers(0, n_codes, n)
        if mix != "uniform":
            pick = np.ones(n, bool) if mix == "extremes" else rng.random(n) < 0.3
            a = np.where(pick, rng.choice(acts_x, n), a)
            w = np.where(pick, rng.choice(codes_x, n), w)
        rst = (rng.random(n) < _RESET_RATE).astype(np.int64)
        add("random", a, w, (rng.random(n) < p_en).astype(np.int64),
            (rng.random(n) < p_clr).astype(np.int64), rst)

    a, w, en, clr, rst = (np.concatenate(col) for col in zip(*parts))
    return MacOpStream(a, w, en, clr, rst, phases=phases, source="mac_stimulus")


def stream_coverage(cfg: MacConfig, stim: MacOpStream, wraps):
    """Counts that show what a stream exercised (reported by the testbench and checked by
    the tests): ``wraps`` is the number of accumulator wrap-arounds the model saw."""
    a, w, en, clr, rst = stim.a, stim.w, stim.en, stim.clr, stim.rst
    lo, hi = operand_range(cfg.act_bits, cfg.act_signed)
    enabled = en & ~rst
    clr_idx = np.flatnonzero(clr)
    gaps = np.diff(np.concatenate(([-1], clr_idx, [len(clr)]))) - 1
    return {
        "ops": int(len(a)),
        "enabled": int(enabled.sum()),
        "clears": int(clr.sum()),
        "clear_without_enable": int((clr & ~en).sum()),
        "back_to_back_clears": int((clr[1:] & clr[:-1]).sum()),
        "resets": int(rst.sum()),
        "longest_run_without_clear": int(gaps.max()) if len(gaps) else 0,
        "act_min_enabled": int((enabled & (a == lo)).sum()),
        "act_max_enabled": int((enabled & (a == hi)).sum()),
        "weight_codes_enabled": int(len(np.unique(w[enabled]))),
        "weight_codes_total": 1 << cfg.weight_code_bits,
        "accumulator_wraps": int(wraps),
    }
