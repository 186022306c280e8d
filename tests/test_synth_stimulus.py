"""Operand streams for the gate-level simulation: random, from dot products, from files."""

import numpy as np
import pytest

from wrapkit.hw.synth.activity import random_stimulus
from wrapkit.ref.opstream import MacOpStream
from wrapkit.ref.configs import PAPER_MACS
from wrapkit.ref.datapath import mac_dot, mac_stream
from wrapkit.common.errors import UserError


@pytest.mark.parametrize("name", ["8x8_acc32", "3x1_acc8_k2"])
def test_random_stimulus_covers_the_operand_ranges(name):
    cfg = PAPER_MACS[name]
    stim = random_stimulus(cfg, 4000, seed=3, dot_len=50).check(cfg)
    lo, hi = (-128, 127) if cfg.act_signed else (0, 7)
    assert (stim.a.min(), stim.a.max()) == (lo, hi)
    assert set(np.unique(stim.w)) == set(range(1 << cfg.weight_code_bits))
    assert stim.en.all()
    assert np.flatnonzero(stim.clr).tolist() == list(range(0, 4000, 50))
    assert random_stimulus(cfg, 10, seed=3).digest() == random_stimulus(cfg, 10, seed=3).digest()
    assert random_stimulus(cfg, 10, seed=3).digest() != random_stimulus(cfg, 10, seed=4).digest()


def test_random_stimulus_rejects_bad_sizes():
    cfg = PAPER_MACS["3x1_acc32"]
    with pytest.raises(ValueError, match=r"^n_ops must be an integer >= 1, got 0$"):
        random_stimulus(cfg, 0)
    with pytest.raises(ValueError, match=r"^dot_len must be an integer >= 1, got 0$"):
        random_stimulus(cfg, 5, dot_len=0)


def test_dot_products_give_one_result_per_row():
    cfg = PAPER_MACS["8x8_acc8_k2"]
    rng = np.random.default_rng(0)
    a = rng.integers(-128, 128, (5, 40))
    w = rng.integers(0, 256, (5, 40))
    stim = MacOpStream.from_dot_products(a, w).check(cfg)
    acc, _ = mac_stream(stim.a, stim.w, stim.en, stim.clr, cfg)
    # The accumulator at each row's last operation is that row's dot product.
    assert acc[39::40].tolist() == mac_dot(a, w, cfg)[0].tolist()
    with pytest.raises(ValueError, match=r"^a_rows and w_rows must be 2-D of equal shape"):
        MacOpStream.from_dot_products(a, w[:, :3])


def test_files_round_trip(tmp_path):
    cfg = PAPER_MACS["3x1_acc8_k4"]
    stim = random_stimulus(cfg, 25, seed=1)
    stim.save(tmp_path / "ops.npz")
    back = MacOpStream.load(tmp_path / "ops.npz")
    assert back.digest() == stim.digest() and back.source == "ops.npz"
    rows = ["a,w,en,clr"] + [f"{a},{w},{int(e)},{int(c)}"
                             for a, w, e, c in zip(stim.a, stim.w, stim.en, stim.clr)]
    (tmp_path / "ops.csv").write_text("\n".join(rows) + "\n")
    assert MacOpStream.load(tmp_path / "ops.csv").digest() == stim.digest()


def test_bad_files(tmp_path):
    with pytest.raises(UserError, match=r"^stimulus file .*none\.npz not found"):
        MacOpStream.load(tmp_path / "none.npz")
    np.savez(tmp_path / "part.npz", a=np.zeros(3, int), w=np.zeros(3, int))
    with pytest.raises(UserError, match=r"^stimulus file .*part\.npz lacks array\(s\) en, clr"):
        MacOpStream.load(tmp_path / "part.npz")
    (tmp_path / "bad.csv").write_text("a,w\n1,0\n")
    with pytest.raises(UserError, match=r"^stimulus file .*bad\.csv lacks column\(s\) en, clr"):
        MacOpStream.load(tmp_path / "bad.csv")
    (tmp_path / "ops.txt").write_text("1\n")
    with pytest.raises(UserError, match=r"^stimulus file .*ops\.txt must end in \.npz or \.csv"):
        MacOpStream.load(tmp_path / "ops.txt")
    np.savez(tmp_path / "float.npz", a=np.zeros(3), w=np.zeros(3, int), en=np.ones(3, int),
             clr=np.zeros(3, int))
    with pytest.raises(UserError, match=r"^stimulus file .*float\.npz is malformed "
                                        r"\(stimulus array a must hold integers"):
        MacOpStream.load(tmp_path / "float.npz")


def test_check_names_the_problem():
    cfg = PAPER_MACS["3x1_acc32"]
    stim = MacOpStream.from_dot_products(np.array([[1, 2]]), np.array([[0, 2]]))
    with pytest.raises(ValueError, match=r"^stimulus weight codes must lie in \[0, 1\] for "
                                         r"binary weights, got \[0, 2\]$"):
        stim.check(cfg)
