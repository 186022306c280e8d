"""Quantizer configs, fake-quant semantics, and the torch accumulator against wrapkit.ref."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from wrapkit import ref
from wrapkit.models import (Accumulator, ActFakeQuant, ActQuant, WeightFakeQuant, WeightQuant,
                            accumulate, cyclic, overflow_mask, overflow_penalty, wrap)

# -- configs: every error path pinned ------------------------------------------------------


@pytest.mark.parametrize("make, exc, msg", [
    (lambda: WeightQuant("quaternary"), ValueError,
     r"^weight kind must be one of float, binary, ternary, uniform, got 'quaternary'$"),
    (lambda: WeightQuant("uniform", 9), ValueError, r"^weight_bits must be in \[2, 8\], got 9$"),
    (lambda: WeightQuant("uniform"), TypeError,
     r"^weight_bits must be an integer in \[2, 8\], not None$"),
    (lambda: WeightQuant("binary", 4), ValueError,
     r"^weight_bits must be None for binary weights, got 4$"),
    (lambda: WeightQuant("ternary", threshold=2.0), ValueError,
     r"^threshold must be in \(0, 1\.5\), got 2\.0$"),
    (lambda: ActQuant(step=0.0), ValueError,
     r"^act_step must be a positive finite number, got 0\.0$"),
    (lambda: ActQuant(step=float("nan")), ValueError,
     r"^act_step must be a positive finite number, got nan$"),
    (lambda: ActQuant(step=1.0, bits=9), ValueError, r"^act_bits must be in \[1, 8\], got 9$"),
    (lambda: ActQuant(step=1.0, bits=0), ValueError, r"^act_bits must be in \[1, 8\], got 0$"),
    (lambda: ActQuant(step=1.0, bits=2.5), TypeError,
     r"^act_bits must be an integer in \[1, 8\], not 2\.5$"),
    (lambda: Accumulator(1), ValueError, r"^acc_bits must be in \[2, 32\], got 1$"),
    (lambda: Accumulator(33), ValueError, r"^acc_bits must be in \[2, 32\], got 33$"),
    (lambda: Accumulator(8, k=0), ValueError, r"^k must be in \[1, 64\], got 0$"),
    (lambda: Accumulator(8, k=65), ValueError, r"^k must be in \[1, 64\], got 65$"),
    (lambda: Accumulator(8, k=True), TypeError, r"^k must be an integer in \[1, 64\], not True$"),
])
def test_config_errors(make, exc, msg):
    with pytest.raises(exc, match=msg):
        make()


def test_configs_are_frozen_values():
    assert Accumulator(8, 2) == Accumulator(8, 2) != Accumulator(8, 4)
    with pytest.raises(AttributeError):
        Accumulator(8, 2).k = 3
    assert ActQuant(0.25, 3).qmax == 7 and ActQuant(0.25).qmax is None
    assert WeightQuant("uniform", 4).qmax == 7 and WeightQuant("ternary").qmax == 1


# -- weight quantizers ------------------------------------------------------------------------


def test_binary_weights_docstring_example_and_sign_of_zero():
    q, s = WeightFakeQuant(WeightQuant("binary"))(torch.tensor([[0.3, -0.1], [0.0, -0.4]]))
    assert q.tolist() == [[1.0, -1.0], [1.0, -1.0]]  # sign(0) = +1: a binary code has no zero
    assert torch.allclose(s, torch.tensor([0.2, 0.2]))


def test_ternary_weights_docstring_example():
    q, s = WeightFakeQuant(WeightQuant("ternary"))(torch.tensor([[0.3, -0.02, -0.2]]))
    assert q.tolist() == [[1.0, 0.0, -1.0]]
    assert s.item() == pytest.approx(0.25)


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 8), st.integers(0, 2**31 - 1))
def test_uniform_weights_round_to_nearest_within_range(bits, seed):
    w = torch.randn(4, 3, 3, 3, generator=torch.Generator().manual_seed(seed))
    q, s = WeightFakeQuant(WeightQuant("uniform", bits))(w)
    qmax = 2 ** (bits - 1) - 1
    assert torch.equal(q, q.round()) and q.abs().max() == qmax  # the largest |w| maps to qmax
    err = (w - s.view(-1, 1, 1, 1) * q).abs()
    assert torch.all(err <= s.view(-1, 1, 1, 1) / 2 * (1 + 1e-6))
    # The codes are valid hardware operands for ref.
    ref.encode_weights(q.to(torch.int64).numpy(), "uniform", bits)


@pytest.mark.parametrize("kind", ["binary", "ternary", "uniform"])
def test_weight_gradient_is_straight_through(kind):
    wq = WeightQuant(kind, 4 if kind == "uniform" else None)
    w = torch.randn(3, 5, requires_grad=True)
    q, s = WeightFakeQuant(wq)(w)
    (s.view(-1, 1) * q * torch.arange(15.0).view(3, 5)).sum().backward()
    # d(s_w · w_q)/dw = 1 with the scale held constant
    assert torch.allclose(w.grad, torch.arange(15.0).view(3, 5))


def test_float_weights_pass_through():
    w = torch.randn(2, 3)
    q, s = WeightFakeQuant(WeightQuant("float"))(w)
    assert q is w and torch.equal(s, torch.ones(2))


# -- activation quantizer ----------------------------------------------------------------------


def test_activation_codes_docstring_example_and_gradient():
    fq = ActFakeQuant(ActQuant(step=0.25, bits=3))
    x = torch.tensor([0.1, 0.9, 5.0, 1.0, 0.375], requires_grad=True)
    q = fq(x)
    assert q.tolist() == [0.0, 4.0, 7.0, 4.0, 2.0]  # 1.5 rounds half to even -> 2
    q.sum().backward()
    # straight through inside [0, 7·step], zero where clipped, scaled by 1/step
    assert x.grad.tolist() == [4.0, 4.0, 0.0, 4.0, 4.0]


def test_activation_units_without_bits_and_state_round_trip():
    fq = ActFakeQuant(ActQuant(step=0.5))
    assert fq(torch.tensor([0.25, 3.0])).tolist() == [0.5, 6.0]
    other = ActFakeQuant()
    other.load_state_dict(ActFakeQuant(ActQuant(0.125, 5)).state_dict())
    assert other.config == ActQuant(0.125, 5)
    assert ActFakeQuant()(torch.tensor([1.7])).tolist() == pytest.approx([1.7])


def test_activation_config_type_checked():
    with pytest.raises(TypeError, match=r"^config must be an ActQuant or None, not float$"):
        ActFakeQuant(0.5)


# -- accumulator: equal to ref bit for bit ------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(bits=st.integers(2, 32), k=st.one_of(st.none(), st.integers(1, 64)),
       seed=st.integers(0, 2**31 - 1))
def test_accumulate_equals_ref_float32(bits, k, seed):
    rng = np.random.default_rng(seed)
    z = rng.integers(-(2**24) + 1, 2**24, size=500)
    z[:6] = [0, 2 ** min(bits - 1, 23), -(2 ** min(bits - 1, 23)), 2**24 - 1, -(2**24) + 1, 1]
    want = ref.cyclic(z, bits, k) if k else ref.wrap(z, bits)
    got = accumulate(torch.tensor(z, dtype=torch.float32), Accumulator(bits, k))
    assert got.dtype == torch.float32
    np.testing.assert_array_equal(got.numpy().astype(np.int64), want)


@settings(max_examples=30, deadline=None)
@given(bits=st.integers(2, 32), k=st.integers(1, 64), seed=st.integers(0, 2**31 - 1))
def test_accumulate_equals_ref_float64_beyond_float32(bits, k, seed):
    z = np.random.default_rng(seed).integers(-(2**40), 2**40, size=300)
    got = cyclic(torch.tensor(z, dtype=torch.float64), bits, k)
    np.testing.assert_array_equal(got.numpy().astype(np.int64), ref.cyclic(z, bits, k))
    got = wrap(torch.tensor(z, dtype=torch.float64), bits)
    np.testing.assert_array_equal(got.numpy().astype(np.int64), ref.wrap(z, bits))


@pytest.mark.parametrize("bits", [2, 3, 4, 8, 12])
@pytest.mark.parametrize("k", [1, 2, 3, 4, 10])
def test_cyclic_exhaustive_over_two_periods(bits, k):
    z = np.arange(-(2 ** (bits + 1)), 2 ** (bits + 1))
    got = cyclic(torch.tensor(z, dtype=torch.float32), bits, k).numpy().astype(np.int64)
    np.testing.assert_array_equal(got, ref.cyclic(z, bits, k))


def test_doc_examples():
    assert cyclic(torch.tensor([44., 100., -100., 128., 300.]), 8, 2).tolist() == \
        [44.0, 56.0, -56.0, 0.0, 44.0]
    assert accumulate(torch.tensor([300., 100.]), Accumulator(8)).tolist() == [44.0, 100.0]


# -- the cyclic gradient ------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 4, 10])
def test_cyclic_gradient_is_smooth_modulo_slope(k):
    bits = 4  # period 16, half 8, threshold t = 8k/(k+1)
    z = torch.linspace(-40.3, 40.3, 4001, dtype=torch.float64, requires_grad=True)
    cyclic(z, bits, k).sum().backward()
    m = z.detach() - 16 * torch.floor((z.detach() + 8) / 16)
    t = 8 * k / (k + 1)
    want = torch.where(m.abs() <= t, 1.0, -float(k)).to(torch.float64)
    assert torch.equal(z.grad, want)
    # and it is the derivative: central differences away from the kinks
    h = 1e-6
    f = lambda v: cyclic(v, bits, k)  # noqa: E731
    zz = z.detach()
    kink = torch.minimum((m.abs() - t).abs(), (m.abs() - 8).abs())
    ok = kink > 1e-3
    fd = (f(zz + h) - f(zz - h)) / (2 * h)
    assert torch.allclose(fd[ok], want[ok], atol=1e-5)


@pytest.mark.parametrize("k", [1, 2, 4, 10])
def test_smooth_modulo_is_continuous(k):
    z = torch.linspace(-100, 100, 200001, dtype=torch.float64)
    y = cyclic(z, 4, k)
    step = z[1] - z[0]
    assert (y[1:] - y[:-1]).abs().max() <= k * step * (1 + 1e-9)


def test_wrap_gradient_is_one():
    z = torch.tensor([100.0, 300.0, -500.0], requires_grad=True)
    wrap(z, 8).sum().backward()
    assert z.grad.tolist() == [1.0, 1.0, 1.0]


def test_overflow_mask_and_penalty_brute_force():
    z = torch.tensor([-130.0, -128.0, -129.0, 127.0, 128.0, 200.0, 0.0, 127.5])
    assert overflow_mask(z, 8).tolist() == [True, False, True, False, True, True, False, False]
    z = z.clone().requires_grad_(True)
    r = overflow_penalty(z, 8)
    assert r.item() == pytest.approx((2 + 0 + 1 + 0 + 0 + 72 + 0 + 0) / 8)
    r.backward()
    assert z.grad.tolist() == [-1 / 8, 0.0, -1 / 8, 0.0, 0.0, 1 / 8, 0.0, 0.0]


def test_accumulator_function_errors():
    with pytest.raises(ValueError, match=r"^k must be in \[1, 64\], got 0$"):
        cyclic(torch.zeros(1), 8, 0)
    with pytest.raises(ValueError, match=r"^acc_bits must be in \[2, 32\], got 40$"):
        wrap(torch.zeros(1), 40)
