"""The integer DCT stem: weights, export by tracing, engine = PyTorch, RTL cosimulation."""

import numpy as np
import pytest
import torch

from wrapkit.common.errors import UserError
from wrapkit.models.dct import block_dct, dct_basis, square_channels
from wrapkit.models.dct_stem import (DCTStemNet, IntegerDCTStem, channel_bits,
                                     integer_dct_weights, stem_mac_config, stem_mac_stream,
                                     weight_scale)
from wrapkit.models.graph_nets import calibrate_ranges
from wrapkit.models.qconfig import Accumulator
from wrapkit.models.trace import compare_with_pytorch, trace_model
from wrapkit.ref import ops
from wrapkit.ref.graph import GraphEngine, decode_graph, encode_graph

SPEC = {"shape": [1, 16, 16], "pixel_max": 255, "mean": 0.0, "std": 1.0}


def _pixels(n, size=16, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, (n, 1, size, size)).astype(np.uint8)
    return pixels, torch.from_numpy(pixels).float() / np.float32(255)


def test_weights_are_signed_8_bit_and_the_dc_needs_21_bits():
    w = integer_dct_weights()
    assert w.shape == (64, 1, 8, 8)
    assert w.min() == -127 and w.max() == 127
    assert np.all(np.abs(w - weight_scale() * dct_basis()[:, None]) <= 0.5)
    assert np.all(w[0] == 66)                               # 528.1 / 8 rounded
    bits = channel_bits(w)
    assert bits[0] == 21 and bits.max() == 21 and bits.min() == 20
    # The worst case is reached: a block of pixels 0 gives 66·64·(−128) = −540 672 < −2^19.
    assert 66 * 64 * -128 < -(1 << 19)
    np.testing.assert_array_equal(integer_dct_weights([0, 9]), w[[0, 9]])
    # A power-of-two scale 512 keeps 8-bit weights and saves the DC's 21st bit.
    w512 = integer_dct_weights(scale=512)
    assert np.abs(w512).max() == 123 and np.all(w512[0] == 64)
    assert channel_bits(w512).max() == 20
    with pytest.raises(ValueError, match="at most 528.1"):
        integer_dct_weights(scale=540)


def test_stem_computes_the_exact_integer_convolution_and_approximates_the_dct():
    pixels, x = _pixels(3)
    stem = IntegerDCTStem(accumulator=Accumulator(32))
    out = stem(x)
    codes = pixels.astype(np.int64) - 128
    want = ops.conv2d(codes, integer_dct_weights(), stride=8)
    np.testing.assert_array_equal(stem.last_y.numpy().astype(np.int64), want)
    # y / S is the orthonormal DCT up to the weights' rounding (≤ 0.5/S per product).
    dct = block_dct(torch.from_numpy(codes).double()).numpy()
    assert np.abs(out.numpy() - dct).max() <= 64 * 128 * 0.5 / weight_scale()
    # With S = 512 a black block's DC is exactly −2^19: it fits a 20-bit register.
    pow2 = IntegerDCTStem([0], Accumulator(20), scale=512)
    assert pow2(torch.zeros(1, 1, 8, 8)).item() == -1024.0 and pow2.last_y.item() == -(1 << 19)
    # A 16-bit register wraps the DC coefficient of a dark block.
    dark = IntegerDCTStem([0], Accumulator(16))
    dark(torch.zeros(1, 1, 8, 8))
    assert dark.last_y.item() == ((66 * 64 * -128 + (1 << 15)) % (1 << 16)) - (1 << 15)


@pytest.mark.parametrize("acc, channels, factor", [
    (Accumulator(32), None, 1),
    (Accumulator(16), square_channels(4), 2),       # the DC wraps; pruned to 16 channels
    (Accumulator(8, k=2), [0, 1, 8], 1),
])
def test_stem_network_exports_and_runs_in_the_engine_equal_to_pytorch(acc, channels, factor):
    torch.manual_seed(0)
    model = DCTStemNet(channels, stem_accumulator=acc, factor=factor, width=8)
    for bn in (model.bn0, model.bn1, model.bn2):
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    pixels, x = _pixels(24)
    calibrate_ranges(model, x)
    traced = trace_model(model, input_spec=SPEC)
    kinds = [(n.name, n.kind) for n in traced.graph.nodes]
    assert ("stem", "conv2d") in kinds and ("stem.level_shift", "requant") in kinds
    assert not any(k == "standardize" for _, k in kinds)
    stem = traced.graph.node("stem")
    assert stem.attrs["stride"] == (8, 8) and stem.attrs["acc"].bits == acc.bits
    assert traced.graph.node("stem.level_shift").output.describe().startswith("int8s")
    result = compare_with_pytorch(traced, pixels, x, batch_size=8)
    assert all(v["values"] > 0 and v["mismatches"] == 0 for v in result["nodes"].values())
    assert "stem" in result["nodes"] and "stem.level_shift" in result["nodes"]
    np.testing.assert_allclose(result["engine_logits"], result["torch_logits"], atol=1e-4)
    back = decode_graph(encode_graph(traced.graph, input=SPEC, num_classes=10))
    out = GraphEngine(back.graph).run(pixels)
    np.testing.assert_array_equal(out[back.graph.outputs[0]], result["engine_logits"])


def test_stem_export_needs_raw_pixels():
    model = DCTStemNet(width=8)
    calibrate_ranges(model, _pixels(8)[1])
    with pytest.raises(UserError, match="mean 0, std 1"):
        trace_model(model, input_spec={**SPEC, "mean": 0.3})


def _stem_graph_outputs(acc_bits, channels, n=3):
    torch.manual_seed(0)
    model = DCTStemNet(channels, stem_accumulator=Accumulator(acc_bits), factor=1, width=8)
    pixels, x = _pixels(n, seed=4)
    calibrate_ranges(model, x)
    graph = trace_model(model, input_spec=SPEC).graph
    got = GraphEngine(graph).run(pixels, keep=("stem.level_shift", "stem"))
    return got["stem.level_shift"], graph.node("stem").weights["weight"], got["stem"]


def test_stem_stream_matches_the_reference_mac():
    codes, w, out = _stem_graph_outputs(16, None, n=2)
    cfg = stem_mac_config(16)
    stream = stem_mac_stream(codes, w, out, cfg)
    assert stream.dots == 2 * 4 * 64 and len(stream) == stream.dots * 64
    acc, mac_out = stream.reference(cfg)
    ends = np.flatnonzero(np.r_[stream.clr[1:], True])
    np.testing.assert_array_equal(mac_out[ends], stream.final_out)
    # The 16-bit register really wraps some coefficients of these (noise) images, and the
    # engine's wrapped outputs are the wrapped exact dot products.
    exact = ops.conv2d(codes, w.astype(np.int64), stride=8)
    assert np.any(exact != out)
    np.testing.assert_array_equal(stream.final_acc, stream.final_out)


def test_stem_layer_cosimulates_on_the_rtl_mac(sim):
    from wrapkit.sim.designs import mac_design_for
    from wrapkit.sim.stream_cosim import cosim_stream

    codes, w, out = _stem_graph_outputs(16, None)
    cfg = stem_mac_config(16)
    stream = stem_mac_stream(codes, w, out, cfg)
    r = cosim_stream(mac_design_for(cfg), stream, sim)
    assert r.ok, r.examples
    assert r.checked == r.ops == 3 * 4 * 64 * 64 and r.mismatches == 0
    assert r.final_mismatches == 0
