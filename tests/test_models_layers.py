"""Quantized layers compute exactly the integers of wrapkit.ref (random operands here; real
trained layers on real images in test_models_train.py)."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from wrapkit import ref
from wrapkit.models import (Accumulator, ActQuant, QuantConv2d, QuantLinear, ResNet20,
                            ResNet20Config, VGG7, VGG7Config, WeightQuant, integer_patches)


def _check_against_ref(layer, x_codes):
    """Run ``layer`` on ``step · codes`` and compare z_q and y_q with ref.mac_dot."""
    step = layer.act_quant.step
    layer.tracing = True
    out = layer(x_codes.to(torch.float32) * step)
    tr = layer.last
    assert torch.equal(tr.x_q, x_codes.to(tr.x_q.dtype)), "activation codes changed"
    rows = integer_patches(layer, tr.x_q)
    codes = layer.weight_codes().reshape(layer.weight.shape[0], -1)
    w_int, s_w = layer.integer_weights()
    cout = codes.shape[0]
    z_ref = rows @ w_int.reshape(cout, -1).numpy().T  # exact int64 dot products
    acc_ref, out_ref = ref.mac_dot(rows[:, None, :], codes[None, :, :], layer.mac_config())
    if tr.z.dim() == 4:  # (N, C, H, W) -> (N·H·W, C), the order of integer_patches
        z, y = (t.permute(0, 2, 3, 1).reshape(-1, cout) for t in (tr.z, tr.y))
        o = out.permute(0, 2, 3, 1).reshape(-1, cout)
    else:
        z, y, o = tr.z, tr.y, out
    for t in (z, y):
        assert torch.equal(t, t.round()), "not integer-valued"
    np.testing.assert_array_equal(z.detach().numpy().astype(np.int64), z_ref)
    np.testing.assert_array_equal(ref.wrap(z_ref, layer.accumulator.bits), acc_ref)
    np.testing.assert_array_equal(y.detach().numpy().astype(np.int64), out_ref)
    # and the float output is y_q scaled by s_w · s_x
    torch.testing.assert_close(o, y.float() * (s_w * step).float(), rtol=1e-6, atol=1e-6)
    return tr


weight_quants = st.one_of(
    st.sampled_from([WeightQuant("binary"), WeightQuant("ternary")]),
    st.integers(2, 8).map(lambda b: WeightQuant("uniform", b)),
)


@settings(max_examples=30, deadline=None)
@given(wq=weight_quants, act_bits=st.integers(1, 8), acc_bits=st.integers(2, 32),
       k=st.one_of(st.none(), st.integers(1, 10)), stride=st.sampled_from([1, 2]),
       padding=st.sampled_from([0, 1]), seed=st.integers(0, 2**31 - 1))
def test_conv_integers_equal_ref(wq, act_bits, acc_bits, k, stride, padding, seed):
    g = torch.Generator().manual_seed(seed)
    layer = QuantConv2d(5, 4, 3, stride, padding, weight_quant=wq,
                        act_quant=ActQuant(step=0.37, bits=act_bits),
                        accumulator=Accumulator(acc_bits, k))
    with torch.no_grad():
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=g))
    codes = torch.randint(0, 2**act_bits, (2, 5, 7, 7), generator=g)
    _check_against_ref(layer, codes)


@settings(max_examples=30, deadline=None)
@given(wq=weight_quants, act_bits=st.integers(1, 8), acc_bits=st.integers(2, 16),
       k=st.one_of(st.none(), st.integers(1, 10)), seed=st.integers(0, 2**31 - 1))
def test_linear_integers_equal_ref(wq, act_bits, acc_bits, k, seed):
    g = torch.Generator().manual_seed(seed)
    layer = QuantLinear(300, 6, weight_quant=wq, act_quant=ActQuant(step=0.11, bits=act_bits),
                        accumulator=Accumulator(acc_bits, k))
    with torch.no_grad():
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=g))
    _check_against_ref(layer, torch.randint(0, 2**act_bits, (9, 300), generator=g))


def test_wide_products_switch_to_float64_and_stay_exact():
    # fan-in 1152 · 127 · 255 = 37 306 880 > 2^24: float32 could not hold every sum exactly.
    layer = QuantLinear(1152, 2, weight_quant=WeightQuant("uniform", 8),
                        act_quant=ActQuant(step=1.0, bits=8), accumulator=Accumulator(32, k=3))
    with torch.no_grad():
        layer.weight.copy_(torch.stack([torch.ones(1152), -torch.ones(1152)]))
        layer.weight[1, 0] = 0.5  # an odd weight code, so the sums are not multiples of 2^k
    codes = torch.full((3, 1152), 255)
    codes[1, 7] = 254
    tr = _check_against_ref(layer, codes)
    assert tr.z.dtype == torch.float64 and tr.z.abs().max() > 2**25
    small = QuantLinear(1152, 2, weight_quant=WeightQuant("binary"),
                        act_quant=ActQuant(step=1.0, bits=8))
    small.tracing = True
    small(torch.ones(1, 1152))
    assert small.last.z.dtype == torch.float32  # 1152 · 1 · 255 < 2^24


def test_float_activations_are_measured_in_step_units():
    layer = QuantLinear(4, 1, weight_quant=WeightQuant("binary"), act_quant=ActQuant(step=0.5),
                        accumulator=Accumulator(4, k=1))
    with torch.no_grad():
        layer.weight.fill_(1.0)
    layer.tracing = True
    out = layer(torch.tensor([[1.0, 1.25, 0.0, 2.0]]))
    assert layer.last.z.item() == pytest.approx(8.5)  # (1 + 1.25 + 2) / 0.5
    # 4-bit register: 8.5 wraps to -7.5; k = 1, t = 4: fold back to -(8 - 7.5) = -0.5
    assert layer.last.y.item() == pytest.approx(-0.5)
    assert out.item() == pytest.approx(-0.5 * 1.0 * 0.5)
    assert not layer.integer
    with pytest.raises(ValueError, match=r"^mac_config needs quantized weights and quantized "
                                         r"activations$"):
        layer.mac_config()


def test_layer_state_carries_quantizers_and_accumulator():
    a = QuantConv2d(2, 3, 3, weight_quant=WeightQuant("ternary"),
                    act_quant=ActQuant(0.2, 4), accumulator=Accumulator(12, k=4))
    b = QuantConv2d(2, 3, 3, weight_quant=WeightQuant("ternary"))
    b.load_state_dict(a.state_dict())
    assert b.act_quant == ActQuant(0.2, 4) and b.accumulator == Accumulator(12, k=4)
    assert b.mac_config() == ref.MacConfig(4, False, "ternary", None, 12, 4)


@pytest.mark.parametrize("net", [
    VGG7(VGG7Config(widths=(4, 8, 8), hidden=16)),
    ResNet20(ResNet20Config(widths=(4, 8, 8), blocks_per_stage=1)),
])
def test_networks_run_and_list_their_quantized_layers(net):
    assert net(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    names = [n for n, _ in net.quant_layers()]
    expected = 6 if isinstance(net, VGG7) else 6  # VGG: 5 conv + fc7; ResNet (n=1): 3 × 2 conv
    assert len(names) == expected
    # first and last layers stay full precision
    assert isinstance(net.stem[0], torch.nn.Conv2d) and type(net.classifier) is torch.nn.Linear


def test_model_config_errors():
    with pytest.raises(ValueError, match=r"^widths must be a tuple of 3 integers in \[1, 4096\], "
                                         r"got \(8, 8\)$"):
        VGG7Config(widths=(8, 8))
    with pytest.raises(ValueError, match=r"^image_size must be in \[8, 1024\], got 4$"):
        VGG7Config(image_size=4)
    with pytest.raises(TypeError, match=r"^accumulator must be an Accumulator, not int$"):
        QuantLinear(2, 2, weight_quant=WeightQuant("binary"), accumulator=8)
