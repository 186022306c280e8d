"""The MAC operation-stream type: construction, structure, reference outputs and files."""

import numpy as np
import pytest

from wrapkit.common.errors import UserError
from wrapkit.ref.configs import PAPER_MACS
from wrapkit.ref.datapath import mac_dot, mac_stream
from wrapkit.ref.opstream import MacOpStream, reset_as_clear
from wrapkit.sim.mac_model import MacModel
from wrapkit.sim.stimulus import mac_stimulus

CFG = PAPER_MACS["8x8_acc8_k2"]


def _dots(n_dots, k, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, (n_dots, k))
    w = rng.integers(0, 256, (n_dots, k))
    acc, out = mac_dot(a, w, CFG)
    return MacOpStream.from_dot_products(a, w, final_acc=acc, final_out=out, source="dots")


def test_arrays_are_normalised_and_checked():
    s = MacOpStream(np.array([1, 2], np.uint8), [0, 1], [1, 0], [True, False])
    assert s.a.dtype == s.w.dtype == np.int64 and s.en.dtype == s.rst.dtype == bool
    assert s.rst.tolist() == [False, False] and s.source == "arrays" and len(s) == 2
    with pytest.raises(ValueError, match=r"^stimulus arrays must have equal lengths: a has 2, "
                                         r"clr has 3$"):
        MacOpStream([1, 2], [0, 1], [1, 1], [1, 0, 0])
    with pytest.raises(ValueError, match=r"^stimulus array en must hold 0 or 1, got values in "
                                         r"\[0, 2\]$"):
        MacOpStream([1, 2], [0, 1], [2, 0], [1, 0])
    with pytest.raises(TypeError, match=r"^stimulus array w must hold integers, got dtype "
                                        r"float64$"):
        MacOpStream([1, 2], [0.0, 1.0], [1, 1], [1, 0])
    with pytest.raises(ValueError, match=r"^final_acc and final_out must be given together$"):
        MacOpStream([1], [0], [1], [1], final_acc=[1])
    with pytest.raises(ValueError, match=r"^stimulus array final_out must hold one value per "
                                         r"dot product \(1\), got 2$"):
        MacOpStream([1], [0], [1], [1], final_acc=[1], final_out=[1, 1])
    with pytest.raises(ValueError, match=r"must start a dot product \(clr\) on its first"):
        MacOpStream([1, 1], [0, 0], [1, 1], [0, 1], final_acc=[1], final_out=[1])


def test_dot_products_reference_and_final_results():
    s = _dots(7, 5)
    assert s.dots == 7 and s.dot_ends().tolist() == [4, 9, 14, 19, 24, 29, 34]
    acc, out = s.reference(CFG)
    np.testing.assert_array_equal((acc, out), mac_stream(s.a, s.w, s.en, s.clr, CFG))
    assert s.final_mismatches(acc, out) == 0
    acc[9] += 1
    assert s.final_mismatches(acc, out) == 1
    with pytest.raises(ValueError, match=r"carries no per-dot results"):
        MacOpStream([1], [0], [1], [1]).final_mismatches(acc, out)


def test_reference_with_resets_equals_the_streamed_model():
    rng = np.random.default_rng(3)
    stim = mac_stimulus(CFG, 3000, rng)
    stim = stim.replace(rst=rng.random(3000) < 0.02)
    model = MacModel(CFG)
    for op in zip(stim.a, stim.w, stim.en, stim.clr, stim.rst):
        model.push(*op)
    want = model.expected(np.arange(3000), final=True)
    np.testing.assert_array_equal(stim.reference(CFG), want)
    en, clr = reset_as_clear([1, 1, 1, 1], [0, 0, 0, 0], [0, 0, 1, 0])
    assert en.tolist() == [True, False, False, True] and clr.tolist() == [False, True, True,
                                                                         False]


def test_chunks_start_at_dot_products():
    s = _dots(10, 30)
    assert s.chunks(100) == [(0, 90), (90, 180), (180, 270), (270, 300)]
    assert s.chunks(300) == [(0, 300)]
    ragged = MacOpStream([1] * 9, [0] * 9, [1] * 9, [1, 0, 0, 1, 0, 1, 0, 0, 0])
    assert ragged.chunks(5) == [(0, 5), (5, 9)]
    with pytest.raises(ValueError, match=r"^a dot product of 4 operations \(from operation 5\) "
                                         r"does not fit in 3 operations$"):
        ragged.chunks(3)
    part = s.segment(90, 180)
    assert len(part) == 90 and part.final_acc is None and part.clr[0]


def test_save_load_round_trip(tmp_path):
    s = _dots(4, 6).replace(rst=[0] * 23 + [1])
    path = s.save(tmp_path / "s.npz")
    back = MacOpStream.load(path)
    assert back.source == "s.npz" and back.digest() == s.digest()
    for name in ("a", "w", "en", "clr", "rst", "final_acc", "final_out"):
        np.testing.assert_array_equal(getattr(back, name), getattr(s, name))


def test_load_is_strict(tmp_path):
    ok = dict(a=np.zeros(3, int), w=np.zeros(3, int), en=np.ones(3, bool),
              clr=np.array([1, 0, 0], bool))
    cases = [
        (dict(ok, extra=np.zeros(3)), r"holds unknown array\(s\) extra; it may hold only a, w"),
        (dict(ok, en=np.ones(2, bool)), r"is malformed \(stimulus arrays must have equal "
                                        r"lengths: a has 3, en has 2\)"),
        (dict(ok, clr=np.array([1, 0, 3])), r"is malformed \(stimulus array clr must hold 0 or "
                                            r"1"),
        (dict(ok, final_acc=np.zeros(1, int)), r"is malformed \(final_acc and final_out must "
                                               r"be given together\)"),
        (dict(ok, a=np.zeros((3, 1), int)), r"is malformed \(stimulus array a must be 1-D"),
    ]
    for i, (arrays, message) in enumerate(cases):
        path = tmp_path / f"bad{i}.npz"
        np.savez(path, **arrays)
        with pytest.raises(UserError, match=rf"^stimulus file .*bad{i}\.npz {message}"):
            MacOpStream.load(path)
