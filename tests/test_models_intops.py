"""The PyTorch mirrors (models.intops) equal ref.ops bit for bit, and gradients flow."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from wrapkit.models import intops as T
from wrapkit.ref import ops as R

MODES = [R.AccumulatorMode(), R.AccumulatorMode("wrap", 12), R.AccumulatorMode("cyclic", 12, 3),
         R.AccumulatorMode("saturate", 13)]


def _t(x, dtype=torch.int64, grad=False):
    return torch.tensor(np.asarray(x), dtype=dtype, requires_grad=grad)


def _same(ref, got):
    got = got.detach()
    assert got.dtype in (torch.int64, torch.float32, torch.float64)
    assert np.array_equal(ref, got.to(torch.int64).numpy()), (ref, got)


def _codes(rng, shape, signed=False, edge=False):
    lo, hi = (-128, 127) if signed else (0, 255)
    if edge:   # the extremes only: every accumulator overflows or saturates
        return rng.choice([lo, hi], shape)
    return rng.integers(lo, hi + 1, shape)


@settings(deadline=None, max_examples=40)
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(3, 8),
       st.integers(1, 3), st.integers(1, 2), st.integers(0, 2), st.integers(1, 2),
       st.sampled_from(MODES), st.booleans(), st.integers(0, 2**31))
def test_conv2d_equals_ref(groups, cg, per_group, h, k, stride, padding, dilation, acc, edge,
                           seed):
    assume(h + 2 * padding >= dilation * (k - 1) + 1)
    rng = np.random.default_rng(seed)
    x = _codes(rng, (2, groups * cg, h, h), edge=edge)
    w = _codes(rng, (groups * per_group, cg, k, k), signed=True, edge=edge)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, acc=acc)
    ref = R.conv2d(x, w, **kw)
    _same(ref, T.conv2d(_t(x), _t(w), **kw))
    _same(ref, T.conv2d(_t(x, torch.float64), _t(w, torch.float64), **kw))


@settings(deadline=None, max_examples=40)
@given(st.integers(1, 50), st.sampled_from(MODES), st.booleans(), st.integers(0, 2**31))
def test_linear_and_matmul_equal_ref(k, acc, edge, seed):
    rng = np.random.default_rng(seed)
    x = _codes(rng, (3, 4, k), edge=edge)
    w = _codes(rng, (5, k), signed=True, edge=edge)
    _same(R.linear(x, w, acc=acc), T.linear(_t(x), _t(w), acc=acc))
    a, b = _codes(rng, (2, 3, 4, k), True, edge), _codes(rng, (2, 3, k, 6), True, edge)
    _same(R.matmul(a, b, acc=acc), T.matmul(_t(a), _t(b), acc=acc))


@settings(deadline=None, max_examples=40)
@given(st.floats(1e-3, 1.0), st.floats(1e-3, 1.0), st.floats(1e-3, 1.0), st.booleans(),
       st.integers(0, 2**31))
def test_add_concat_rescale_equal_ref(s_a, s_b, s_out, signed, seed):
    rng = np.random.default_rng(seed)
    a, b = _codes(rng, (2, 3, 4, 4)), _codes(rng, (2, 3, 4, 4), signed=True)
    m_a, m_b, shift = R.add_multipliers(s_a, s_b, s_out)
    kw = dict(out_bits=8, out_signed=signed)
    _same(R.add(a, b, m_a, m_b, shift, **kw), T.add(_t(a), _t(b), m_a, m_b, shift, **kw))
    _same(R.rescale(a, m_a, shift, 8, signed), T.rescale(_t(a), m_a, shift, 8, signed))
    parts = [np.clip(a, 0, 127), b]
    resc = [None, (m_b, shift)]
    _same(R.concat(parts, rescales=resc, out_bits=8, out_signed=True),
          T.concat([_t(p) for p in parts], rescales=resc, out_bits=8, out_signed=True))


@settings(deadline=None, max_examples=40)
@given(st.integers(1, 4), st.integers(0, 3), st.integers(1, 3), st.integers(0, 1), st.booleans(),
       st.integers(0, 2**31))
def test_shape_nodes_equal_ref(k, extra, stride, padding, signed, seed):
    assume(2 * padding <= k)
    rng = np.random.default_rng(seed)
    x = _codes(rng, (2, 4, k + extra, k + extra), signed=signed)
    _same(R.max_pool2d(x, k, stride, padding), T.max_pool2d(_t(x), k, stride, padding))
    _same(R.avg_pool2d(x, k, stride, padding), T.avg_pool2d(_t(x), k, stride, padding))
    _same(R.upsample_nearest(x, (2, 3)), T.upsample_nearest(_t(x), (2, 3)))
    _same(R.pixel_shuffle(x, 2), T.pixel_shuffle(_t(x), 2))
    y = R.upsample_nearest(x, 2)
    _same(R.pixel_unshuffle(y, 2), T.pixel_unshuffle(_t(y), 2))
    _same(R.flatten(x), T.flatten(_t(x)))
    per = (2, 2 * (k + extra) ** 2)
    _same(R.reshape(x, per), T.reshape(_t(x), per))
    _same(R.transpose(x, (0, 2, 3, 1)), T.transpose(_t(x), (0, 2, 3, 1)))


@settings(deadline=None, max_examples=40)
@given(st.integers(1, 30), st.sampled_from([1 / 16, 1 / 64, 2**-12]), st.integers(2, 16),
       st.integers(0, 2**31))
def test_softmax_and_layer_norm_equal_ref(n, scale, bits, seed):
    rng = np.random.default_rng(seed)
    q = rng.integers(-int(10 / scale), int(10 / scale), (2, 3, n))
    c = R.ExpConstants.from_scale(scale)
    _same(R.softmax(q, c, out_bits=bits), T.softmax(_t(q), c, out_bits=bits))
    m, b, s = R.layer_norm_constants(rng.uniform(-2, 2, n), rng.uniform(-1, 1, n), n=n,
                                     out_scale=1 / 32)
    kw = dict(out_bits=8, out_signed=True)
    _same(R.layer_norm(q, m, b, s, **kw), T.layer_norm(_t(q), _t(m), _t(b), s, **kw))
    const = np.full((1, n), 5)      # zero variance
    _same(R.layer_norm(const, m, b, s, **kw), T.layer_norm(_t(const), _t(m), _t(b), s, **kw))


def test_tables_equal_ref_on_every_int8_code():
    codes = np.arange(-128, 128)
    for table in (R.gelu_table(in_bits=8, in_scale=1 / 32, out_scale=1 / 64, out_bits=8),
                  R.sigmoid_table(in_bits=8, in_scale=1 / 16, out_bits=8)):
        kw = dict(in_bits=8, in_signed=True)
        _same(R.lookup(codes, table, **kw), T.lookup(_t(codes), _t(table), **kw))
    with pytest.raises(ValueError, match=r"^x must lie in \[-128, 127\] for the table$"):
        T.lookup(_t([128]), _t(table), in_bits=8, in_signed=True)


def test_float32_results_are_exact_or_refused():
    x = np.full((1, 1, 3, 3), 255)
    w = np.full((1, 1, 3, 3), 127)
    got = T.conv2d(_t(x, torch.float32), _t(w, torch.float32))
    assert got.dtype == torch.float32 and got.item() == 9 * 255 * 127
    big = np.full((1, 1024), 2**10)
    with pytest.raises(ValueError, match=r"beyond the exact integers of torch\.float32"):
        T.linear(_t(big, torch.float32), _t(big, torch.float32))
    with pytest.raises(ValueError, match=r"^x must hold integer values$"):
        T.linear(_t([[0.5]], torch.float32), _t([[1.0]], torch.float32))


def test_exact_conv_gradients_are_the_float_convolutions():
    rng = np.random.default_rng(0)
    x = _t(_codes(rng, (2, 4, 6, 6)), torch.float64, grad=True)
    w = _t(_codes(rng, (4, 2, 3, 3), signed=True), torch.float64, grad=True)
    g = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    T.conv2d(x, w, stride=2, padding=1, groups=2).backward(g)
    x2, w2 = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    F.conv2d(x2, w2, None, 2, 1, 1, 2).backward(g)
    assert torch.equal(x.grad, x2.grad) and torch.equal(w.grad, w2.grad)


def test_cyclic_gradient_is_minus_k_on_the_fold_back():
    x = _t([[100.0], [44.0]], torch.float64, grad=True)
    w = _t([[1.0]], torch.float64)
    y = T.linear(x, w, acc=R.AccumulatorMode("cyclic", 8, 2))
    assert y.detach().tolist() == [[56.0], [44.0]]
    y.sum().backward()
    assert x.grad.tolist() == [[-2.0], [1.0]]


@pytest.mark.parametrize("node", ["add", "avg_pool2d", "softmax", "layer_norm", "lookup",
                                  "matmul_saturate", "concat"])
def test_gradients_flow(node):
    rng = np.random.default_rng(1)
    x = _t(_codes(rng, (2, 3, 4, 4)), torch.float32, grad=True)
    if node == "add":
        out = T.add(x, x.flip(0), 3, 5, 3, out_bits=8, out_signed=False)
    elif node == "avg_pool2d":
        out = T.avg_pool2d(x, 2)
    elif node == "softmax":
        out = T.softmax(x, R.ExpConstants.from_scale(1 / 64), out_bits=8)
    elif node == "layer_norm":
        m = torch.full((4,), 1000.0, requires_grad=True)
        out = T.layer_norm(x, m, torch.zeros(4), 34, out_bits=8, out_signed=True)
        out.float().pow(2).sum().backward()
        assert m.grad is not None and m.grad.abs().sum() > 0
    elif node == "lookup":
        table = R.gelu_table(in_bits=8, in_scale=1 / 32, out_scale=1 / 64, out_bits=8,
                             in_signed=False)
        out = T.lookup(x, _t(table), in_bits=8, in_signed=False)
    elif node == "matmul_saturate":
        out = T.matmul(x, x.transpose(2, 3), acc=R.AccumulatorMode("saturate", 20))
    else:
        out = T.concat([x, x], rescales=[None, (1, 1)], out_bits=8, out_signed=False)
    if x.grad is None:
        (out.float() * torch.linspace(-1, 1, out.numel()).view(out.shape)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
