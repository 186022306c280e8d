"""The recipe options against overflow: what p and R^o count ("register" or "fold"), and R^o
in the warm-up."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from wrapkit import ref
from wrapkit.models import QuantLinear, TrainConfig, WeightQuant, select_steps, train
from wrapkit.models.accumulate import excess_limit, overflow_penalty
from wrapkit.models.calibrate import overflow_rate
from wrapkit.models.regularizers import OverflowPenalty

DIGITS = dict(dataset="digits", widths=(8, 8, 16), batch_size=32, calib_images=256,
              threads=1, seed=3)


def _one_layer(fan_in):
    torch.manual_seed(0)
    layer = QuantLinear(fan_in, 32, weight_quant=WeightQuant("binary"))
    with torch.no_grad():
        layer.weight.abs_()  # all +1: z = sum of the codes
    return nn.Sequential(layer)


def test_excess_limit_is_the_register_or_the_fold_threshold():
    assert excess_limit(8) == excess_limit(8, 2) == 128.0
    assert excess_limit(8, 2, "fold") == pytest.approx(256 / 3)
    assert excess_limit(8, None, "fold") == 128.0  # no cyclic activation: no fold
    for bits, k in [(4, 1), (8, 2), (12, 10)]:
        t = excess_limit(bits, k, "fold")
        # ref's integer fold threshold is floor(t): |m| > t exactly when |m| > floor(t)
        assert math.floor(t) == ref.cyclic_threshold(bits, k)
    with pytest.raises(ValueError, match=r"^limit must be one of register, fold, got 'x'$"):
        excess_limit(8, 2, "x")


def test_fold_penalty_brute_force():
    z = torch.tensor([-130.0, -86.0, -85.0, 85.0, 86.0, 100.0, 0.0, 200.0], requires_grad=True)
    t = 256 / 3
    r = overflow_penalty(z, 8, 2, "fold")
    want = sum(max(abs(v) - t, 0) for v in z.tolist()) / 8
    assert r.item() == pytest.approx(want)
    r.backward()
    assert z.grad.tolist() == [-1 / 8, -1 / 8, 0.0, 0.0, 1 / 8, 1 / 8, 0.0, 1 / 8]
    # the register limit is the paper's R^o, unchanged
    assert overflow_penalty(z, 8, 2).item() == pytest.approx((2 + 72) / 8)


def _brute_excess(x, step, bits, beyond):
    codes = torch.clamp(torch.round(x / step), 0, 2**bits - 1).numpy().astype(np.int64)
    z = codes.sum(1)
    return float(np.mean(np.abs(z) > beyond))


@pytest.mark.parametrize("target", [0.0, 0.05, 0.2])
def test_fold_limit_bounds_what_the_cyclic_activation_distorts(target):
    x = torch.rand(400, 64, generator=torch.Generator().manual_seed(1))
    (reg,) = select_steps(_one_layer(64), x, target_rate=target, acc_bits=8, k=2)
    model = _one_layer(64)
    (fold,) = select_steps(model, x, target_rate=target, acc_bits=8, k=2, limit="fold")
    t = 256 / 3
    assert fold.limit == "fold" and reg.limit == "register"
    assert fold.excess_rate == _brute_excess(x, fold.step, fold.bits, t) <= target
    assert reg.excess_rate == reg.overflow_rate
    # overflow_rate keeps meaning "outside the register", whatever the target counted
    assert fold.overflow_rate == _brute_excess(x, fold.step, fold.bits, 127)
    # counting more values as too large needs a coarser step
    assert fold.step > reg.step
    # and the fold step is the finest one meeting the target
    finer = fold.step / 1.01
    bits = min(8, max(1, math.ceil(math.log2(fold.x_hi / finer + 1))))
    assert _brute_excess(x, finer, bits, t) > target
    assert overflow_rate(model[0], x, fold.step, fold.bits, 8, k=2, limit="fold") == \
        fold.excess_rate


def test_config_checks_the_new_settings():
    with pytest.raises(ValueError, match=r"^overflow_limit must be one of register, fold"):
        TrainConfig(overflow_limit="carry")
    with pytest.raises(TypeError, match=r"^ro_warmup must be a bool"):
        TrainConfig(ro_warmup=1)
    assert OverflowPenalty(0.1, limit="fold").limit == "fold"
    with pytest.raises(ValueError, match=r"^limit must be one of"):
        OverflowPenalty(0.1, limit="wide")


def test_fold_recipe_runs_r_o_in_warmup_and_keeps_less_beyond_the_fold(tmp_path):
    base = dict(method="wrapnet", pretrain_epochs=3, warmup_epochs=1, epochs=1, acc_bits=8,
                k=2, p=5.0, ro=0.05, **DIGITS)
    paper = train(TrainConfig(**base), tmp_path / "paper", progress=False, log=lambda _: None)
    fixed = train(TrainConfig(**base, overflow_limit="fold", ro_warmup=True), tmp_path / "fix",
                  progress=False, log=lambda _: None)
    assert all(("overflow" in h) == (h["stage"] == "finetune") for h in paper["history"])
    assert all(("overflow" in h) == (h["stage"] != "pretrain") for h in fixed["history"])
    sel_paper = paper["step_selection"]["layers"]
    sel_fixed = fixed["step_selection"]["layers"]
    for a, b in zip(sel_paper, sel_fixed):
        assert b["limit"] == "fold" and b["excess_rate"] <= 0.05 + 1e-12
        assert b["step"] >= a["step"]
        # at the step the fold target picks, overflow proper is below the same target
        assert b["overflow_rate"] <= b["excess_rate"]
