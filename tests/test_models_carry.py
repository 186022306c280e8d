"""Carry simulation in PyTorch: exact counts against ref.bitpack, gradients, R^c, modes."""

import numpy as np
import pytest
import torch

from wrapkit.models import Accumulator, ActQuant, WeightQuant, build_model, tracing
from wrapkit.models.carry import (
    TANH_SLOPE,
    CarryVariancePenalty,
    PackingSim,
    alg1_carries,
    lane_contamination,
)
from wrapkit.models.layers import integer_patches
from wrapkit.ref import bitpack as bp


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny tensors: a thread pool only adds contention on the 2 shared test cores (measured
    # 30x slower with 2 busy threads).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _images(n=4, size=28):
    from wrapkit.common.datasets import DEFAULT_DATA_DIR, FASHION_MNIST_FILES, read_idx

    img = read_idx(f"{DEFAULT_DATA_DIR}/{FASHION_MNIST_FILES['test'][0]}")[:n]
    lo = (28 - size) // 2  # a centre crop keeps the slow tests small
    img = img[:, lo:lo + size, lo:lo + size]
    return torch.from_numpy((img[:, None].astype(np.float32) / 255.0 - 0.29) / 0.35)


def _model(kind="binary", widths=(8, 12, 16), step=0.3, size=28):
    torch.manual_seed(0)
    m = build_model("vgg7", widths=widths, hidden=24, image_size=size,
                    weight_quant=WeightQuant(kind))
    for _, layer in m.quant_layers():
        layer.act_quant = ActQuant(step, 3)
        layer.accumulator = Accumulator(8, 2)
    # Training-mode BatchNorm normalises each batch, so every layer sees non-zero codes.
    m.train()
    return m


def _rows(t):
    """[B, C, H, W] or [B, F] per-neuron tensor -> (B*H*W, C) in integer_patches' order."""
    t = t.detach()
    if t.dim() == 4:
        t = t.permute(0, 2, 3, 1)
    return t.reshape(-1, t.shape[-1]).numpy()


@pytest.mark.parametrize("kind", ["binary", "ternary"])
def test_counts_equal_reference(kind):
    """Algorithm 1 carries and exact lane contamination (both negations) equal ref.bitpack."""
    m = _model(kind)
    spec = bp.PackSpec(8, 4, 32, "carry")
    checked = 0
    with torch.no_grad(), tracing(m):
        m(_images())
        for name, layer in m.quant_layers():
            t = layer.last
            rows = integer_patches(layer, t.x_q)
            w = t.w_q.reshape(t.w_q.shape[0], -1).numpy().astype(np.int64)
            terms = rows[:, None, :] * w[None]
            c_ref, _ = bp.alg1_carries(bp.unsigned_view(terms, 8).sum(-1), 8)
            assert np.array_equal(_rows(alg1_carries(layer, t.x_q, t.w_q, t.z, 8)), c_ref), name
            lanes = _rows(lane_contamination(layer, t.x_q, t.w_q, spec, "twos"))
            assert np.array_equal(lanes, bp.packed_dot(terms, spec).contamination), name
            not_terms, offset = bp.not_negate_terms(rows[:, None, :], w[None])
            lanes_not = _rows(lane_contamination(layer, t.x_q, t.w_q, spec, "not"))
            assert np.array_equal(lanes_not, bp.packed_dot(not_terms, spec, offset).contamination)
            checked += int(c_ref.sum() > 0)
    assert checked >= 4  # most layers do carry on this data


@pytest.mark.parametrize("kind", ["binary", "ternary"])
def test_product_surrogate_is_algorithm1_with_tanh(kind):
    """surrogate="product": backward == autograd of Algorithm 1 written per product with tanh
    for sign, u = sum(v) + 2^b sum((1 - tanh(3 v)) / 2), and the identity for the floor
    (straight-through); zero where the count is clamped at 0."""
    m = _model(kind)
    layer = m.block3.conv
    with tracing(m):
        m(_images())
        t = layer.last
    x = t.x_q.detach().clone().requires_grad_(True)
    w = t.w_q.detach().clone().requires_grad_(True)
    g = torch.randn(t.z.shape)
    c = alg1_carries(layer, x, w, layer._op(x, w), 8, surrogate="product")
    gx, gw = torch.autograd.grad((c * g).sum(), (x, w))

    x2 = x.detach().clone().requires_grad_(True)
    w2 = w.detach().clone().requires_grad_(True)
    cols = torch.nn.functional.unfold(x2, layer.kernel_size, padding=layer.padding)  # B, K, P
    v = w2.reshape(w2.shape[0], -1)[None, :, :, None] * cols[:, None]               # B, O, K, P
    z2 = v.sum(2).reshape(t.z.shape)
    n_soft = ((1 - torch.tanh(TANH_SLOPE * v)) / 2).sum(2).reshape(t.z.shape)
    n_exact = (v < 0).sum(2).reshape(t.z.shape).float().detach()
    live = (z2 + 256 * n_exact >= 1).float().detach()
    c_soft = live * (z2 + 256 * n_soft - 1) / 255
    hx, hw = torch.autograd.grad((c_soft * g).sum(), (x2, w2))
    assert torch.allclose(gx, hx, rtol=1e-4, atol=1e-3)
    assert torch.allclose(gw, hw, rtol=1e-4, atol=1e-2)
    assert gx.abs().sum() > 0 and gw.abs().sum() > 0


def test_factored_surrogate_gradients():
    """surrogate="factored" (default): N = op([x>0], [w<0]) with tanh(3x) for [x>0] in the
    activation gradient and (|w| - w)/2 passing the weight gradient; floor straight-through."""
    m = _model()
    layer = m.block3.conv
    with tracing(m):
        m(_images())
        t = layer.last
    x = t.x_q.detach().clone().requires_grad_(True)
    w = t.w_q.detach().clone().requires_grad_(True)
    g = torch.randn(t.z.shape)
    c = alg1_carries(layer, x, w, layer._op(x, w), 8)
    gx, gw = torch.autograd.grad((c * g).sum(), (x, w))

    x2 = x.detach().clone().requires_grad_(True)
    w2 = w.detach().clone().requires_grad_(True)
    pos = (x2 > 0).float().detach()
    neg_w = (w2.abs() - w2) / 2
    z2 = layer._op(x2, w2)
    # The two partial derivatives written separately.
    n_soft = layer._op(torch.tanh(TANH_SLOPE * x2), neg_w.detach()) + layer._op(pos, neg_w)
    live = (z2 + 256 * layer._op(pos, neg_w.detach()) >= 1).float().detach()
    c_soft = live * (z2 + 256 * n_soft - 1) / 255
    hx, hw = torch.autograd.grad((c_soft * g).sum(), (x2, w2))
    assert torch.allclose(gx, hx, rtol=1e-4, atol=1e-3)
    assert torch.allclose(gw, hw, rtol=1e-4, atol=1e-2)
    assert gx.abs().sum() > 0 and gw.abs().sum() > 0


def test_regularizer_gradient_reduces_carry_variance():
    """Descending on R^c alone lowers the exact per-neuron carry variance of a fixed batch."""
    m = _model(widths=(8, 12, 16), size=16)
    sim = PackingSim(m, momentum=1.0)
    names = ["block3.conv", "block4.conv"]
    sim.set_tracking(names)
    reg = CarryVariancePenalty(1.0, sim)
    x = _images(16, size=16)
    opt = torch.optim.SGD([p for n, p in m.named_parameters() if "block" in n], lr=0.05)

    def variance():
        with torch.no_grad():
            m(x)
            return sum(float(sim.layers[n][1].last.var(0, unbiased=False).mean()) for n in names)

    before = variance()
    assert before > 1.0
    for _ in range(10):
        m(x)
        loss = reg(m)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert variance() < 0.7 * before


def test_modes_and_correction():
    m = _model()
    x = _images(1)
    m.eval()
    with torch.no_grad():
        vector = m(x)
    sim = PackingSim(m, evaluate_with="lanes")
    names = list(sim.layers)
    # Calibrating on the very image evaluated makes the correction exact: carry mode with the
    # exact lane contamination then reproduces the vector-unit result bit for bit.
    sim.start_stats()
    with torch.no_grad():
        m(x)
    stats = sim.stop_stats()["lanes"]
    assert sum(s.summary()["mean"] for s in stats.values()) > 0
    sim.calibrate_eval_means(stats)
    for n in names:
        sim.set_mode(n, "carry")
    with torch.no_grad():
        assert torch.equal(m(x), vector)
        # Without the correction the contamination changes the network's output.
        for n in names:
            sim.layers[n][1].eval_means["lanes"] = torch.zeros(())
        assert not torch.equal(m(x), vector)
    sim.set_mode(names[0], "buffer")
    assert m.block2.conv.accumulator == Accumulator(7, 2)
    sim.detach()
    assert "_op" not in m.block2.conv.__dict__ and m.block2.conv.accumulator == Accumulator(8, 2)
    with torch.no_grad():
        assert torch.equal(m(x), vector)


def test_bad_input():
    m = _model()
    sim = PackingSim(m)
    with pytest.raises(ValueError, match=r"^mode must be one of vector, carry, buffer, got 'simd'$"):
        sim.set_mode("fc7", "simd")
    with pytest.raises(ValueError, match=r"^evaluate_with must be one of alg1, lanes, lanes-not"):
        sim.evaluate_with = "exact"
    with pytest.raises(ValueError, match=r"^surrogate must be one of factored, product, "
                                         r"got 'sign'$"):
        PackingSim(_model(), surrogate="sign")
    with pytest.raises(ValueError, match=r"^spec.mode must be 'carry' to contaminate"):
        lane_contamination(m.fc7, torch.zeros(1, m.fc7.in_features), torch.zeros(24, 144),
                           bp.PackSpec(mode="buffer"))
    sim.detach()
    u = _model()
    for _, layer in u.quant_layers():
        layer.weight_fq.config = WeightQuant("uniform", 4)
    with pytest.raises(ValueError, match=r"^weight_kind must be binary or ternary for the packed "
                                         r"path, got 'uniform'"):
        PackingSim(u)
