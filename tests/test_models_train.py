"""The training pipeline on scikit-learn's digits: step selection, determinism, resume,
bit-exactness of trained layers on real images, bad input, the CLI, the data readers."""

import dataclasses
import gzip
import json
import math
import re
import struct

import numpy as np
import pytest
import torch
from torch import nn

from wrapkit import ref
from wrapkit.cli import main as wrapkit_main
from wrapkit.models import (QuantLinear, TrainConfig, WeightQuant, integer_patches,
                            load_model, plan, select_steps, tracing, train)
from wrapkit.models.calibrate import overflow_rate
from wrapkit.models.data import load_dataset
from wrapkit.common.datasets import FASHION_MNIST_FILES, read_idx
from wrapkit.common.errors import UserError

# A WrapNet pipeline small enough for a few seconds: 6 epochs over 1438 8×8 digits. p = 2 %
# because 45 steps per epoch are far too few to recover from 5 % overflow (the network has to
# relearn the features that the fold-back destroys; the paper trains 200 epochs per stage).
DIGITS = dict(dataset="digits", widths=(8, 8, 16), batch_size=32, calib_images=256,
              threads=1, seed=3)
WRAPNET = TrainConfig(method="wrapnet", pretrain_epochs=3, warmup_epochs=1, epochs=2,
                      acc_bits=8, k=2, p=2.0, ro=0.01, eval_acc_bits=(8,), **DIGITS)


def _quiet(_):
    pass


def _comparable(metrics):
    """Metrics without wall-clock times."""
    m = json.loads(json.dumps(metrics))
    for row in m["history"]:
        row.pop("seconds")
    return m


class _Stop(Exception):
    pass


@pytest.fixture(scope="module")
def wrapnet_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("wrapnet")
    metrics = train(WRAPNET, out, progress=False, log=_quiet)
    return out, metrics


# -- pipeline --------------------------------------------------------------------------------


def test_plan_of_each_method():
    names = lambda cfg: [(s.name, s.epochs, s.act, s.calibrate) for s in plan(cfg)]  # noqa: E731
    assert names(WRAPNET) == [("pretrain", 3, "float", None), ("warmup", 1, "units", "overflow"),
                              ("finetune", 2, "codes", None)]
    assert names(TrainConfig(method="qa", epochs=4)) == [("qa", 4, "codes", "range")]
    assert names(TrainConfig(method="wrapnet", warmup_epochs=0)) == \
        [("finetune", 3, "codes", "overflow")]
    assert [str(s.accumulator) for s in plan(WRAPNET)] == \
        ["Accumulator(bits=32, k=None)", "Accumulator(bits=8, k=2)", "Accumulator(bits=8, k=2)"]


def test_wrapnet_run_metrics(wrapnet_run):
    out, m = wrapnet_run
    assert m["complete"] and (out / "model.pt").is_file()
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(m))
    assert [(h["stage"], h["epoch"]) for h in m["history"]] == \
        [("pretrain", 1), ("pretrain", 2), ("pretrain", 3), ("warmup", 1), ("finetune", 1),
         ("finetune", 2)]
    # R^o is active in the fine-tuning only
    assert all(("overflow" in h) == (h["stage"] == "finetune") for h in m["history"])
    # training works in every stage: 3× chance at the end, falling losses, accuracy regained
    # after the cyclic layers are inserted
    assert m["final"]["test_accuracy"] > 0.3
    losses = [h["loss"] for h in m["history"]]
    assert losses[0] > losses[2] and losses[4] > losses[5]
    stages = {r["stage"]: r["accuracy"] for r in m["stage_results"]}
    assert stages["finetune"] > stages["warmup"]
    sel = m["step_selection"]
    assert sel["kind"] == "overflow" and len(sel["layers"]) == 6
    for c, row in zip(sel["layers"], m["final"]["layers"]):
        assert c["overflow_rate"] <= 0.05 or (c["capped"] and c["bits"] == 1)
        assert (row["act_bits"], row["act_step"]) == (c["bits"], c["step"])
        assert (row["acc_bits"], row["k"]) == (8, 2) and 0 <= row["overflow_rate"] <= 1
    assert set(m["eval_acc_bits"]) == {"8"}


def test_trained_layers_equal_ref_on_real_images(wrapnet_run):
    """Every quantized layer of the trained network, on real test images, computes exactly the
    integers ref.mac_dot computes from the same operands."""
    out, _ = wrapnet_run
    model = load_model(out)
    _, test = load_dataset("digits")
    checked = 0
    with torch.no_grad(), tracing(model):
        model(test.x[:40])
        for name, layer in model.quant_layers():
            tr = layer.last
            assert layer.integer, name
            rows = integer_patches(layer, tr.x_q)
            cout = layer.weight.shape[0]
            codes = layer.weight_codes().reshape(cout, -1)
            acc, y_ref = ref.mac_dot(rows[:, None, :], codes[None], layer.mac_config())
            y = tr.y.permute(0, 2, 3, 1).reshape(-1, cout) if tr.y.dim() == 4 else tr.y
            z = tr.z.permute(0, 2, 3, 1).reshape(-1, cout) if tr.z.dim() == 4 else tr.z
            np.testing.assert_array_equal(y.numpy().astype(np.int64), y_ref, err_msg=name)
            np.testing.assert_array_equal(ref.wrap(z.numpy().astype(np.int64), 8), acc)
            checked += y_ref.size
    assert checked > 10_000


def test_resume_after_interruption_equals_uninterrupted_run(wrapnet_run, tmp_path):
    ref_dir, ref_metrics = wrapnet_run
    calls = []

    def interrupt(metrics):
        calls.append(len(metrics["history"]))
        if len(metrics["history"]) in (3, 5):  # end of pretraining, inside fine-tuning
            raise _Stop

    out = tmp_path / "run"
    with pytest.raises(_Stop):
        train(WRAPNET, out, progress=False, log=_quiet, on_epoch_end=interrupt)
    partial = json.loads((out / "metrics.json").read_text())
    # deterministic: the interrupted run so far is the uninterrupted one so far
    assert _comparable(partial)["history"] == _comparable(ref_metrics)["history"][:3]
    with pytest.raises(_Stop):
        train(WRAPNET, out, resume=True, progress=False, log=_quiet, on_epoch_end=interrupt)
    m = train(WRAPNET, out, resume=True, progress=False, log=_quiet, on_epoch_end=interrupt)
    assert calls == [1, 2, 3, 4, 5, 6]
    assert _comparable(m) == _comparable(ref_metrics)
    a = torch.load(out / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(ref_dir / "model.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else a[k] == b[k]
               for k in a)
    # resuming a finished run does nothing
    again = train(WRAPNET, out, resume=True, progress=False, log=_quiet)
    assert _comparable(again) == _comparable(m)


def test_other_seed_other_run(tmp_path):
    cfg = TrainConfig(method="qw", epochs=1, **{**DIGITS, "seed": 4})
    a = train(cfg, tmp_path / "a", progress=False, log=_quiet)
    b = train(dataclasses.replace(cfg, seed=5), tmp_path / "b", progress=False, log=_quiet)
    assert a["history"][0]["loss"] != b["history"][0]["loss"]


def test_qa_with_init_and_resnet(tmp_path, wrapnet_run):
    # ResNet-20-style network, quantized activations, started from nothing (pretrain 1 epoch).
    cfg = TrainConfig(method="qa", model="resnet20", pretrain_epochs=1, epochs=1, act_bits=2,
                      acc_bits=32, **DIGITS)
    m = train(cfg, tmp_path / "resnet", progress=False, log=_quiet)
    assert [row["act_bits"] for row in m["final"]["layers"]] == [2] * 18
    assert m["step_selection"]["kind"] == "range"
    # --init from a run with another architecture is refused
    bad = TrainConfig(method="qw", epochs=1, init=str(wrapnet_run[0]),
                      **{**DIGITS, "widths": (4, 8, 16)})
    with pytest.raises(UserError, match=r"^--init .*model\.pt does not fit this model"):
        train(bad, tmp_path / "bad", progress=False, log=_quiet)


# -- step-size selection ----------------------------------------------------------------------


def _one_layer(fan_in):
    layer = QuantLinear(fan_in, 1, weight_quant=WeightQuant("binary"))
    with torch.no_grad():
        layer.weight.fill_(1.0)  # z = sum of the codes
    return nn.Sequential(layer)


def _brute_rate(x, step, bits, acc_bits):
    # the quantizer's own definition (float32 x / s, round half to even), then exact sums
    codes = torch.clamp(torch.round(x / step), 0, 2**bits - 1).numpy().astype(np.int64)
    z = codes.sum(1)
    return float(np.mean(ref.wrap(z, acc_bits) != z))


@pytest.mark.parametrize("target", [0.0, 0.02, 0.05, 0.2])
def test_step_selection_meets_target_with_finest_step(target):
    x = torch.rand(400, 64, generator=torch.Generator().manual_seed(1))
    model = _one_layer(64)
    (c,) = select_steps(model, x, target_rate=target, acc_bits=8, max_bits=8)
    xn = x.numpy().astype(np.float64)
    assert c.x_hi == pytest.approx(np.percentile(xn, 99.9), abs=2e-3)
    # bits: the fewest whose range covers x_hi at this step
    assert (2**c.bits - 1) * c.step >= c.x_hi * (1 - 1e-9)
    assert c.bits == 1 or (2 ** (c.bits - 1) - 1) * c.step < c.x_hi
    assert not c.capped
    assert c.overflow_rate == _brute_rate(x, c.step, c.bits, 8) <= target
    # finest: a 1 % finer step (same bit rule) overflows more than the target
    finer = c.step / 1.01
    bits = min(8, max(1, math.ceil(math.log2(c.x_hi / finer + 1))))
    assert _brute_rate(x, finer, bits, 8) > target
    assert overflow_rate(model[0], x, c.step, c.bits, 8) == c.overflow_rate


def test_step_selection_orders_and_caps():
    x = torch.rand(400, 64, generator=torch.Generator().manual_seed(2))
    steps = [select_steps(_one_layer(64), x, target_rate=p, acc_bits=8)[0].step
             for p in (0.0, 0.05, 0.3)]
    assert steps[0] > steps[1] > steps[2]  # a higher overflow budget allows a finer step
    # 300 inputs of about 0.5: even 1-bit codes sum past 127, so the step is capped at x_hi
    (c,) = select_steps(_one_layer(300), torch.rand(200, 300), target_rate=0.05, acc_bits=8)
    assert c.capped and c.bits == 1 and c.step == c.x_hi and c.overflow_rate > 0.05
    # a wide accumulator never overflows: the finest step allowed (max_bits) is taken
    (c,) = select_steps(_one_layer(64), x, target_rate=0.0, acc_bits=16, max_bits=6)
    assert c.bits == 6 and c.overflow_rate == 0.0


def test_step_selection_errors():
    with pytest.raises(ValueError, match=r"^target_rate must be in \[0, 1\], got 5$"):
        select_steps(_one_layer(4), torch.rand(4, 4), target_rate=5, acc_bits=8)
    with pytest.raises(ValueError, match=r"^max_bits must be in \[1, 8\], got 9$"):
        select_steps(_one_layer(4), torch.rand(4, 4), target_rate=0.05, acc_bits=8, max_bits=9)


# -- bad input --------------------------------------------------------------------------------


def test_existing_run_needs_resume_and_corrupt_checkpoint_is_refused(wrapnet_run, tmp_path):
    out, _ = wrapnet_run
    with pytest.raises(UserError, match=r"^.* already holds a run; pass --resume to continue it "
                                         r"or choose another --out$"):
        train(WRAPNET, out, progress=False, log=_quiet)
    with pytest.raises(UserError, match=r"^nothing to resume in .*: no checkpoint\.pt$"):
        train(WRAPNET, tmp_path / "empty", resume=True, progress=False, log=_quiet)
    for damage in (b"not a checkpoint", (out / "checkpoint.pt").read_bytes()[:5000]):
        bad = tmp_path / "bad"
        bad.mkdir(exist_ok=True)
        (bad / "checkpoint.pt").write_bytes(damage)
        with pytest.raises(UserError, match=r"^checkpoint .*checkpoint\.pt is unreadable "
                                             r"\(.*\); it was not used: delete it \(or the run "
                                             r"directory\) to start the run afresh$"):
            train(WRAPNET, bad, resume=True, progress=False, log=_quiet)
    other = dataclasses.replace(WRAPNET, k=4)
    with pytest.raises(UserError, match=r"^cannot resume .*: settings differ from the "
                                         r"interrupted run \(k: 2 -> 4\); use the same settings "
                                         r"or another --out$"):
        train(other, out, resume=True, progress=False, log=_quiet)


@pytest.mark.parametrize("argv, msg", [
    (["--k", "0"], r"--k must be in \[1, 64\], got 0"),
    (["--acc-bits", "40"], r"--acc-bits must be in \[2, 32\], got 40"),
    (["--act-bits", "9"], r"--act-bits must be in \[1, 8\], got 9"),
    (["--weights", "uniform"], r"--weight-bits must be an integer in \[2, 8\], not None"),
    (["--p", "120"], r"--p must be in \[0, 100\] \(percent\), got 120\.0"),
    (["--widths", "8,8"], r"--widths must be a tuple of 3 integers in \[1, 4096\], got \(8, 8\)"),
])
def test_cli_rejects_bad_settings(argv, msg, tmp_path, capsys):
    assert wrapkit_main(["train", "--out", str(tmp_path / "r"), *argv]) == 2
    assert re.fullmatch(f"wrapkit train: error: {msg}\n", capsys.readouterr().err)
    assert not (tmp_path / "r").exists()


def test_cli_missing_data_and_corrupt_checkpoint(tmp_path, capsys):
    assert wrapkit_main(["train", "--out", str(tmp_path / "r"), "--data-dir",
                         str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"wrapkit train: error: Fashion-MNIST not found in {tmp_path}: missing "
                          "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
                          "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz; install the "
                          "Debian package dataset-fashion-mnist")
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "checkpoint.pt").write_bytes(b"\x00" * 100)
    assert wrapkit_main(["train", "--out", str(tmp_path / "r"), "--resume", "--dataset",
                         "digits"]) == 2
    assert "checkpoint.pt is unreadable" in capsys.readouterr().err


def test_cli_trains_and_writes_run_directory(tmp_path, capsys):
    out = tmp_path / "cli"
    assert wrapkit_main(["train", "--method", "qw", "--dataset", "digits", "--widths", "4,4,8",
                         "--epochs", "1", "--threads", "1", "--no-progress",
                         "--out", str(out)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("test accuracy ")
    m = json.loads((out / "metrics.json").read_text())
    assert m["complete"] and m["config"]["method"] == "qw"
    assert {p.name for p in out.iterdir()} == {"checkpoint.pt", "metrics.json", "model.pt"}


# -- data ---------------------------------------------------------------------------------------


def _write_idx(path, array):
    dims = array.shape
    header = bytes([0, 0, 0x08, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_idx_reader_round_trip_and_damage(tmp_path):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "a.gz", a)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), a)
    raw = gzip.decompress((tmp_path / "a.gz").read_bytes())
    (tmp_path / "short").write_bytes(raw[:-1])
    with pytest.raises(UserError, match=r"^.*short holds 23 data bytes, its header 2x3x4 says "
                                         r"24$"):
        read_idx(tmp_path / "short")
    (tmp_path / "magic").write_bytes(b"\x01" + raw[1:])
    with pytest.raises(UserError, match=r"^.*magic is not an IDX file \(bad magic number\)$"):
        read_idx(tmp_path / "magic")


def test_fashion_mnist_reader_on_small_files_and_the_real_dataset(tmp_path):
    rng = np.random.default_rng(0)
    for split, (img, lbl) in FASHION_MNIST_FILES.items():
        n = 5 if split == "train" else 3
        _write_idx(tmp_path / img, rng.integers(0, 256, (n, 28, 28)))
        _write_idx(tmp_path / lbl, rng.integers(0, 10, n))
    tr, te = load_dataset("fashion-mnist", tmp_path)
    assert tr.x.shape == (5, 1, 28, 28) and te.y.shape == (3,)
    assert abs(float(tr.x.mean())) < 1e-5  # standardised with the training statistics
    tr, te = load_dataset("fashion-mnist")  # the Debian package's files
    assert tr.x.shape == (60000, 1, 28, 28) and len(te) == 10000
    assert sorted(torch.bincount(te.y).tolist()) == [1000] * 10
