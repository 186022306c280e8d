"""Export (.wkx), the integer engine against PyTorch, per-layer statistics, real-layer cosim.

The network is the ``tiny_export`` fixture (tests/conftest.py): a small VGG-7 trained on
scikit-learn's digits once per test session with the real pipeline, whose 8-bit
accumulators do overflow and wrap.
"""

import io
import json
import math
import re
import shutil
import struct
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from wrapkit.cli import main
from wrapkit.ref.datapath import MacConfig, mac_stream
from wrapkit.common.datasets import load_images
from wrapkit.ref.engine import Engine
from wrapkit.ref.streams import layer_stream, stream_toggles
from wrapkit.common.errors import UserError
from wrapkit.ref.requant import fixed_point, requantize
from wrapkit.ref.wkx import encode, read_export


@pytest.fixture(scope="session")
def traced(tiny_export):
    """The PyTorch model's per-layer traces and logits on the whole digits test set."""
    from wrapkit.models import load_model, tracing
    from wrapkit.models.data import load_dataset

    model = load_model(tiny_export[0])
    _, test = load_dataset("digits")
    with torch.no_grad(), tracing(model):
        logits = model(test.x)
        traces = {n: l.last for n, l in model.quant_layers()}
    return model, test, logits.numpy(), traces


def _index(exp, name):
    return [l["name"] for l in exp.header["layers"]].index(name)


# -- export -------------------------------------------------------------------------------


def test_export_round_trip(tiny_export, traced):
    run_dir, wkx, exp = tiny_export
    model = traced[0]
    h = exp.header
    assert h["schema"] == "wrapkit.export/1" and h["num_classes"] == 10
    assert h["input"]["shape"] == [1, 8, 8] and h["input"]["pixel_max"] == 16
    kinds = [(l["name"], l["precision"], l.get("output", {}).get("kind")) for l in h["layers"]]
    assert kinds == [("stem", "float", None)] + [
        (f"block{i}.conv", "integer", "requant") for i in range(2, 7)] + [
        ("fc7", "integer", "dequant"), ("classifier", "float", None)]
    assert [l["pool"] is not None for l in h["layers"]] == [False, True, False, True, False,
                                                            True, False, False]
    for name, layer in model.quant_layers():
        spec = h["layers"][_index(exp, name)]
        np.testing.assert_array_equal(exp.tensors[f"{name}.weight_codes"], layer.weight_codes())
        assert spec["input_quant"] == {"step": layer.act_quant.step, "bits": layer.act_quant.bits}
        assert spec["accumulator"] == {"bits": 8, "k": 2}
        assert spec["mac"] == layer.mac_config().to_dict()
    # Each layer's requantization clamps to the next layer's activation range.
    layers = h["layers"]
    for a, b in zip(layers[1:6], layers[2:7]):
        assert a["output"]["bits"] == b["input_quant"]["bits"]
    # Byte-for-byte reproducible: encoding the read content again gives the same file, and so
    # does a second export.
    assert encode(exp.header, exp.tensors) == wkx.read_bytes()
    again = wkx.parent / "again.wkx"
    assert main(["export", str(run_dir), "-o", str(again)]) == 0
    assert again.read_bytes() == wkx.read_bytes()


def test_requant_constants_reproduce_the_float_fold(tiny_export):
    exp = tiny_export[2]
    for spec in exp.header["layers"][1:6]:
        n = spec["name"]
        m, b, s = (exp.tensors[f"{n}.requant_{k}"] for k in ("multiplier", "bias", "shift"))
        m_real = exp.tensors[f"{n}.requant_scale_real"]
        assert np.all(np.abs(m / np.ldexp(1.0, s) - m_real) <= 2.0 ** -28 * np.abs(m_real))
        assert np.all((np.abs(m) >= 1 << 28) | (s == 48) | (m == 0))


def _rewrite(exp, path, header=None, **tensors):
    h = json.loads(json.dumps(exp.header)) if header is None else header
    t = dict(exp.tensors)
    t.update(tensors)
    path.write_bytes(encode(h, t))
    return path


def test_corrupted_truncated_and_foreign_files_are_rejected(tiny_export, tmp_path):
    wkx = tiny_export[1]
    data = bytearray(wkx.read_bytes())
    (n,) = struct.unpack("<Q", data[:8])
    flipped = bytearray(data)
    flipped[8 + n + 100] ^= 0x01                 # one bit of one weight or constant
    cases = {
        "flip.wkx": (bytes(flipped), r"checksum mismatch .*the file is corrupted"),
        "trunc.wkx": (bytes(data[:-7]), r"truncated: tensor .* ends at byte"),
        "trunc_index.wkx": (bytes(data[:n // 2]), r"truncated: the index needs"),
        "tiny.wkx": (b"abc", r"is not a wrapkit export .*only 3 bytes"),
        "json.wkx": (b'{"a": 1}\n' * 10, r"is not a wrapkit export .*no safetensors index"),
    }
    for name, (blob, msg) in cases.items():
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(UserError, match=rf"^{tmp_path / name}: {msg}"):
            read_export(tmp_path / name)
    # A safetensors file without the wrapkit metadata.
    index = json.dumps({"x": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}).encode()
    (tmp_path / "plain.safetensors").write_bytes(struct.pack("<Q", len(index)) + index + b"\0")
    with pytest.raises(UserError, match=r"a safetensors index without __metadata__\.format"):
        read_export(tmp_path / "plain.safetensors")
    with pytest.raises(UserError, match=r"no such file"):
        read_export(tmp_path / "missing.wkx")


def test_schema_shape_and_range_violations_are_rejected(tiny_export, tmp_path):
    exp = tiny_export[2]
    h = json.loads(json.dumps(exp.header))
    h["schema"] = "wrapkit.export/3"
    with pytest.raises(UserError, match=r"schema 'wrapkit.export/3' is not supported \(this "
                                        r"wrapkit reads 'wrapkit.export/1' and "
                                        r"'wrapkit.export/2'\)"):
        read_export(_rewrite(exp, tmp_path / "schema.wkx", h))
    # A graph (version 2) file is refused by the layer-chain reader with a pointer to infer.
    h["schema"] = "wrapkit.export/2"
    with pytest.raises(UserError, match=r"is an integer-graph export \(wrapkit.export/2\); "
                                        r"this command reads layer chains"):
        read_export(_rewrite(exp, tmp_path / "schema2.wkx", h))
    codes = exp.tensors["block3.conv.weight_codes"]
    with pytest.raises(UserError, match=r"layer 2 \(block3\.conv\): tensor "
                                        r"'block3\.conv\.weight_codes' has shape \[16, 8, 3\], "
                                        r"expected \[16, 8, 3, 3\]"):
        read_export(_rewrite(exp, tmp_path / "shape.wkx",
                             **{"block3.conv.weight_codes": codes[..., 0]}))
    bad = codes.copy()
    bad[0, 0, 0, 0] = 2
    with pytest.raises(UserError, match=r"layer 2 \(block3\.conv\): tensor "
                                        r"'block3\.conv\.weight_codes' holds code 2, above 1 "
                                        r"for binary weights"):
        read_export(_rewrite(exp, tmp_path / "range.wkx", **{"block3.conv.weight_codes": bad}))
    h = json.loads(json.dumps(exp.header))
    bits = h["layers"][3]["input_quant"]["bits"]
    h["layers"][3]["input_quant"]["bits"] = other = 1 if bits != 1 else 2
    with pytest.raises(UserError, match=rf"layer 3 \(block4\.conv\): input_quant\.bits is "
                                        rf"{other} but the previous layer requantizes to {bits} "
                                        rf"bits"):
        read_export(_rewrite(exp, tmp_path / "chain.wkx", h))
    h = json.loads(json.dumps(exp.header))
    h["layers"][2]["kind"] = "residual_add"
    with pytest.raises(UserError, match=r"unsupported layer kind 'residual_add'"):
        read_export(_rewrite(exp, tmp_path / "kind.wkx", h))
    big = exp.tensors["block2.conv.requant_multiplier"].copy()
    big[0] = 1 << 56
    with pytest.raises(UserError, match=r"requantization constants out of range"):
        read_export(_rewrite(exp, tmp_path / "big.wkx", **{"block2.conv.requant_multiplier": big}))


# -- fixed-point requantization ----------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.floats(1e-6, 100.0), st.booleans(), st.floats(-300.0, 300.0),
       st.integers(-(1 << 15), (1 << 15) - 1), st.integers(1, 8))
def test_fixed_point_rounds_m_y_plus_c_half_up(mag, neg, c, y, bits):
    m_real = -mag if neg else mag
    qmax = (1 << bits) - 1
    m, b, s = fixed_point([m_real], [c], qmax=qmax, acc_bits=16)
    got = int(requantize(np.array([[y]]), m, b, s, qmax)[0, 0])
    exact = Fraction(m_real) * y + Fraction(c)
    fixed = Fraction(int(y) * int(m[0]) + int(b[0]), 1 << int(s[0]))
    # The fixed-point value tracks M·y + C + 1/2 within the rounding of m (29 significant
    # bits: 2^-29 of |M·y|) and of b (2^-shift) ...
    shift = int(s[0])
    tol = Fraction(abs(y), 1 << (shift + 1)) + Fraction(1, 1 << shift)
    assert tol <= Fraction(abs(m_real)) * abs(y) / (1 << 28) + Fraction(1, 1 << shift)
    reach = abs(m_real) * (1 << 15)
    if -(reach + 1) <= c <= reach + qmax + 1:  # beyond, C is clamped (every y gives 0 or qmax)
        assert abs(fixed - (exact + Fraction(1, 2))) <= tol
    # ... so the code is round-half-up of M·y + C, clamped, except within tol of a tie.
    half_up = exact + Fraction(1, 2)
    want = min(max(math.floor(half_up), 0), qmax)
    assert got == want or abs(half_up - round(half_up)) <= tol


def test_fixed_point_errors():
    with pytest.raises(ValueError, match=r"^scale must be below 2\^29 in magnitude, got 1000000000\.0$"):
        fixed_point([1e9], [0.0], qmax=15, acc_bits=8)
    with pytest.raises(ValueError, match=r"^qmax must be an integer in \[1, 255\], got 256$"):
        fixed_point([1.0], [0.0], qmax=256, acc_bits=8)
    with pytest.raises(ValueError, match=r"^offset must be finite, got nan$"):
        fixed_point([1.0], [float("nan")], qmax=15, acc_bits=8)


# -- the engine against PyTorch ----------------------------------------------------------------


@pytest.mark.parametrize("gemm", ["blas", "int64"])
def test_engine_preactivations_equal_pytorch_on_every_layer(tiny_export, traced, gemm):
    exp = tiny_export[2]
    model, _, _, traces = traced
    engine = Engine(exp, gemm=gemm)
    for name, tr in traces.items():
        i = _index(exp, name)
        got = engine.layer_forward(i, tr.x_q.numpy().astype(np.uint8))
        np.testing.assert_array_equal(got["z"], tr.z.numpy().astype(np.int64), err_msg=name)
        np.testing.assert_array_equal(got["y"], tr.y.numpy().astype(np.int64), err_msg=name)
    # The network really overflows: an 8-bit accumulator wraps on some pre-activations.
    assert max(np.abs(tr.z.numpy()).max() for tr in traces.values()) > 127


def test_engine_requantization_matches_the_next_layer_codes(tiny_export, traced):
    exp = tiny_export[2]
    _, test, _, traces = traced
    engine = Engine(exp)
    names = list(traces)
    for name, nxt in zip(names, names[1:]):
        out = engine.layer_forward(_index(exp, name), traces[name].x_q.numpy())["out"]
        want = traces[nxt].x_q.numpy().reshape(out.shape)
        # Fixed-point (round half up) vs float32 PyTorch (round half to even): codes may only
        # differ by one, and only at float ties / boundaries.
        diff = np.abs(out.astype(np.int64) - want.astype(np.int64))
        assert diff.max() <= 1 and np.mean(diff) < 1e-3, name
    # The float stem plus the first quantizer gives PyTorch's first codes (float32 both).
    codes = engine.layer_input(load_images("digits").pixels, 1).transpose(0, 3, 1, 2)
    assert np.mean(codes != traces["block2.conv"].x_q.numpy()) < 1e-3


def test_engine_end_to_end_accuracy_matches_pytorch(tiny_export, traced):
    exp = tiny_export[2]
    _, test, logits, _ = traced
    images = load_images("digits")
    np.testing.assert_array_equal(images.labels, test.y.numpy())
    ours = Engine(exp).run(images.pixels, batch_size=64)
    agree = np.mean(ours.argmax(1) == logits.argmax(1))
    acc_engine = np.mean(ours.argmax(1) == images.labels)
    acc_torch = np.mean(logits.argmax(1) == images.labels)
    assert agree >= 0.99 and abs(acc_engine - acc_torch) <= 2 / len(images)
    assert acc_torch > 0.5  # a trained network, not a constant classifier


def test_standardisation_equals_the_training_inputs(tiny_export):
    from wrapkit.models.data import load_dataset

    engine = Engine(tiny_export[2])
    x = engine.standardise(load_images("digits").pixels).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(x, load_dataset("digits")[1].x.numpy())


def test_table_path_equals_direct_evaluation(tiny_export):
    engine = Engine(tiny_export[2])
    rng = np.random.default_rng(3)
    for layer in engine.integer_layers:
        half = 1 << (layer.cfg.acc_bits - 1)
        every = np.arange(-3 * half, 3 * half)                    # every value, wrapped 3x
        z = np.concatenate([every, rng.integers(-40000, 40000, 5000)])
        z = np.broadcast_to(z[:, None], (len(z), layer.out_channels)).astype(np.int32)
        np.testing.assert_array_equal(layer.finish(z), layer.output(layer.mac_output(z)))


def test_lut_and_int64_engines_agree_end_to_end(tiny_export):
    pixels = load_images("digits").pixels[:64]
    a = Engine(tiny_export[2]).run(pixels)
    b = Engine(tiny_export[2], gemm="int64", lut=False).run(pixels)
    np.testing.assert_array_equal(a, b)


# -- statistics and streams ----------------------------------------------------------------------


def test_toggles_closed_form_equals_the_materialized_stream(tiny_export):
    engine = Engine(tiny_export[2])
    pixels = load_images("digits").pixels[:2]
    for index in (2, 6):                       # a convolution and the linear layer
        layer = engine.layer(index)
        codes = engine.layer_input(pixels, index)
        s = layer_stream(layer, codes)
        a_t, w_t, n = stream_toggles(layer.rows(codes), layer.codes, layer.cfg.act_bits,
                                     layer.cfg.weight_code_bits)
        a, w = s.a.astype(np.int64), s.w.astype(np.int64)
        assert n == len(a) - 1
        for bit in range(layer.cfg.act_bits):
            assert a_t[bit] == np.count_nonzero(np.diff((a >> bit) & 1))
        assert w_t[0] == np.count_nonzero(np.diff(w & 1))


def test_layer_stream_ends_each_dot_product_on_the_engine_value(tiny_export):
    engine = Engine(tiny_export[2])
    layer = engine.layer(3)
    codes = engine.layer_input(load_images("digits").pixels[:3], 3)
    s = layer_stream(layer, codes, max_dots=500)
    assert s.dots == 500 and len(s.a) == 500 * layer.fan_in
    acc, out = mac_stream(s.a, s.w, s.en, s.clr, layer.cfg)
    ends = np.arange(1, 501) * layer.fan_in - 1
    np.testing.assert_array_equal(acc[ends], s.final_acc)
    np.testing.assert_array_equal(out[ends], s.final_out)
    # The engine's own pre-activations, in the stream's (position, channel) order.
    z = layer.preact(codes).astype(np.int64).reshape(-1)[:500]
    np.testing.assert_array_equal(s.final_acc, (z + 128) % 256 - 128)


def test_infer_cli_prints_accuracy_and_writes_stats(tiny_export, tmp_path, capsys):
    out = tmp_path / "stats.json"
    assert main(["infer", str(tiny_export[1]), "--stats", str(out), "--toggle-images", "4"]) == 0
    text = capsys.readouterr().out
    acc = float(text.split("accuracy ")[1].split()[0])
    doc = json.loads(out.read_text())
    assert doc["images"] == 359 and abs(doc["accuracy"] - acc) < 1e-4
    rows = {r["name"]: r for r in doc["layers"]}
    assert list(rows) == [f"block{i}.conv" for i in range(2, 7)] + ["fc7"]
    b2 = rows["block2.conv"]
    assert b2["macs_per_image"] == 8 * 8 * 8 * 72 and b2["macs"] == 359 * b2["macs_per_image"]
    assert 0 < max(r["overflow_rate"] for r in rows.values()) < 0.5
    assert len(b2["toggles"]["a_per_bit"]) == b2["mac"]["act_bits"]
    assert 0 < b2["toggles"]["a_mean"] < 1 and b2["toggles"]["images"] == 4
    assert "overflow" in text and "block6.conv" in text


def test_infer_runs_without_torch(tiny_export):
    """The engine path imports neither torch nor amaranth (a fresh interpreter)."""
    code = ("import sys; from wrapkit.cli import main; "
            f"rc = main(['infer', {str(tiny_export[1])!r}, '--images', '10', '--toggle-images', '0']); "
            "print(rc, 'torch' in sys.modules, 'amaranth' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip().splitlines()[-1] == "0 False False"


# -- bad input on the command line ---------------------------------------------------------------


def _fake_run(tmp_path, model):
    from wrapkit.models.train import MODEL_FORMAT

    run = tmp_path / "run"
    run.mkdir()
    buf = io.BytesIO()
    torch.save({"format": MODEL_FORMAT, "model": "resnet20" if "ResNet" in type(model).__name__
                else "vgg7", "model_config": model.config.to_dict(),
                "state_dict": model.state_dict()}, buf)
    (run / "model.pt").write_bytes(buf.getvalue())
    return run


def test_cli_bad_input_exits_2_with_one_line(tiny_export, tmp_path, capsys):
    from wrapkit.models import build_model

    wkx = str(tiny_export[1])
    resnet = _fake_run(tmp_path, build_model("resnet20", image_size=8))
    vgg_float = tmp_path / "float"
    vgg_float.mkdir()
    float_run = _fake_run(vgg_float, build_model("vgg7", image_size=8))
    cases = [
        (["export", str(tmp_path / "nope"), "-o", str(tmp_path / "a.wkx")],
         r"nope: no trained model \(.*nope does not exist\); train it with `wrapkit train"),
        (["export", str(resnet), "-o", str(tmp_path / "r.wkx"), "--dataset", "digits"],
         r"layer blocks\.0\.conv1 has float activations: only fully quantized networks"),
        (["export", str(resnet), "-o", str(tmp_path / "r.wkx"), "--dataset", "digits",
          "--format", "1"],
         r"unsupported model ResNet20: the export supports the VGG-7 chain only"),
        (["export", str(float_run), "-o", str(tmp_path / "f.wkx"), "--dataset", "digits"],
         r"layer block2\.conv has float activations: only fully quantized networks"),
        (["infer", str(tmp_path / "none.wkx")], r"none\.wkx: no such file"),
        (["infer", wkx, "--dataset", "fashion-mnist"],
         r"images are 1×28×28, but .* expects 1×8×8 \(C×H×W\)"),
        (["infer", wkx, "--images", "0"], r"--images must be >= 1, got 0"),
        (["cosim", "layer", wkx, "--layer", "9"], r"has no layer 9; its layers are 0\.\.7"),
        (["cosim", "layer", wkx, "--layer", "0"],
         r"layer 0 \(stem\) of .* is a float layer .* 1, 2, 3, 4, 5, 6"),
        (["cosim", "layer", wkx, "--layer", "1", "--images", "0"],
         r"--images must be an integer >= 1, got 0"),
        (["cosim", "layer", wkx, "--layer", "1", "--sim", "xsim"], r"unknown simulator 'xsim'"),
    ]
    for argv, msg in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        assert re.search(msg, err), (msg, err)
    # Failed exports wrote nothing.
    assert not any(p.suffix == ".wkx" for p in tmp_path.iterdir())


# -- cosimulation of a real layer ------------------------------------------------------------


@pytest.mark.sim
@pytest.mark.parametrize("path, max_ops", [("preloaded", 6000), ("driven", 1500)])
def test_real_layer_cosim(tiny_export, sim, path, max_ops):
    from wrapkit.sim.layer_mac import cosim_layer

    r = cosim_layer(tiny_export[1], 3, images=1, sim=sim, path=path, max_ops=max_ops)
    assert r.ok, (r.examples, r.log)
    assert r.checked == r.ops == r.dots * r.fan_in and r.ops > max_ops - r.fan_in
    assert r.mismatches == 0 and r.final_mismatches == 0
    assert r.design == Engine(tiny_export[2]).layer(3).cfg.name and r.fan_in == 16 * 9


@pytest.mark.sim
def test_preloaded_path_catches_a_wrong_design(tiny_export):
    """The check is real: the RTL of k=4 against the expectation for k=2 must mismatch."""
    from wrapkit.hw.manifest import load_manifest, verilog_path
    from wrapkit.sim.layer_mac import layer_design, layer_operands
    from wrapkit.sim.preload import (build_preloaded, depth_for, preloaded_workdir,
                                     run_preloaded)

    _, layer, stream, _ = layer_operands(tiny_export[1], 3, 1, max_ops=20000)
    cfg = layer.cfg
    wrong = MacConfig(cfg.act_bits, False, cfg.weight_kind, cfg.weight_bits, cfg.acc_bits, 4)
    path = layer_design(wrong)
    manifest = load_manifest(path)
    manifest["config"] = cfg.to_dict()          # expect k=2 from a k=4 design
    command = build_preloaded(manifest, verilog_path(path, manifest), "icarus",
                              depth_for(len(stream)))
    workdir = preloaded_workdir()
    try:
        run = run_preloaded(manifest, command, stream, workdir=workdir)
    finally:
        shutil.rmtree(workdir)
    assert run.mismatches > 0 and run.examples[0].startswith("op #")


@pytest.mark.sim
def test_cosim_layer_cli_reports_and_writes_json(tiny_export, tmp_path, capsys):
    out = tmp_path / "r.json"
    stream = tmp_path / "ops.npz"
    assert main(["cosim", "layer", str(tiny_export[1]), "--layer", "5", "--images", "2",
                 "--sim", "icarus", "--json", str(out), "--save-stream", str(stream)]) == 0
    text = capsys.readouterr().out
    doc = json.loads(out.read_text())
    # block6.conv: 2x2 outputs x 16 channels x 144 MACs per image, two images, all of them.
    assert doc["ops"] == doc["checked"] == 2 * 2 * 2 * 16 * 144 and doc["ok"] is True
    assert f"{doc['ops']:,} of {doc['ops']:,} MAC operations checked" in text
    assert "0 mismatches, 0 dot products differing from the integer engine" in text
    # The same operands, ready for gate-level energy estimation (`wrapkit synth --stimulus`).
    from wrapkit.ref.opstream import MacOpStream

    stim = MacOpStream.load(stream)
    assert len(stim) == doc["ops"] and int(stim.clr.sum()) == doc["dots"]
