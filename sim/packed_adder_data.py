"""Stimulus for the packed accumulator: the per-cycle inputs and random words.

A :class:`PackedStimulus` holds per-cycle inputs (``x, en, clr, mode``) that the testbench
:mod:`wrapkit.sim.tb_packed_adder` drives; the expected outputs always come from
:func:`wrapkit.ref.bitpack.packed_stream`, never from here. The real-layer stimulus the tests
give the testbench is built in ``tests/packed_adder_stimulus.py``.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["PackedStimulus", "random_stimulus"]


@dataclass
class PackedStimulus:
    """Per-cycle inputs and, for dot-product stimulus, where each dot product ends.

    ``segments[i] = (first op, last op, mode index)``; ``terms`` the dot products' terms.
    """

    x: np.ndarray
    en: np.ndarray
    clr: np.ndarray
    mode: np.ndarray
    segments: np.ndarray | None = None
    terms: np.ndarray | None = None

    def save(self, path):
        arrays = {k: v for k, v in self.__dict__.items() if v is not None}
        np.savez(path, **arrays)
        return Path(path)

    @classmethod
    def load(cls, path):
        with np.load(path) as f:
            return cls(**{k: f[k] for k in f.files})


def random_stimulus(spec, n, seed):
    """``n`` random operations: any words (guard bits too), random en/clr and all 4 mode codes."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, spec.used_mask, size=n, dtype=np.uint64, endpoint=True)
    clean = rng.random(n) < 0.5  # half the words as the buffer scheme packs them
    x[clean] &= np.uint64(~spec.guard_mask & spec.used_mask)
    return PackedStimulus(x=x, en=(rng.random(n) < 0.9).astype(np.int64),
                          clr=(rng.random(n) < 0.05).astype(np.int64),
                          mode=rng.integers(0, 4, size=n))
