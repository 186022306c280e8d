"""Attention models (wrapkit.models.attention) and TWIST's integer semantics (ref.ops.twist):
each definition against a direct one on small tensors, the integer TWIST bit for bit in torch
and numpy, the A·V bound, and a briefly trained quantized attention network exported to an
integer graph that the engine runs equal to PyTorch."""

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from attention_digits import trained_attention
from wrapkit.models import intops as T
from wrapkit.models.attention import AttentionConfig, MetaFormer, \
    MultiHeadAttention, ViT, merge_partitions, overflow_report, partition_tokens, \
    quantize_attention, relative_position_index, twist, twist_naive
from wrapkit.models.attention.twist import QuantTwist
from wrapkit.models.qconfig import Accumulator
from wrapkit.models.trace import compare_with_pytorch
from wrapkit.ref import ops as R
from wrapkit.ref.ops import AccumulatorMode


def _twist_direct(row, s, t):
    """Seed 000 Eq. 4.4–4.17 for one row, element by element."""
    m = max(row)
    trivial = [x < t * m for x in row]
    total = sum(x for x, tr in zip(row, trivial) if tr)
    return [s * x * x / total if tr and total > 0 else (0.0 if tr else x)
            for x, tr in zip(row, trivial)]


def _rows(seed, shape=(3, 4, 9)):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(3 * torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1)


def test_fused_twist_equals_the_direct_definition_and_bounds_trivial_weights():
    x, s, t = _rows(0), 0.7, 0.1
    y = twist(x, torch.tensor(s, dtype=torch.float64), t)
    want = torch.tensor([_twist_direct(r.tolist(), s, t) for r in x.reshape(-1, 9)],
                        dtype=torch.float64).reshape(x.shape)
    torch.testing.assert_close(y, want)
    trivial = x < t * x.amax(-1, keepdim=True)
    assert trivial.any() and (~trivial).any()
    # Lemma 1: Σ trivial after TWIST <= s·max, and no weight grows (s <= 1).
    assert torch.all((y * trivial).sum(-1) <= s * x.amax(-1) + 1e-12)
    assert torch.all(y <= x + 1e-12)


def test_fused_twist_gradient_equals_autograd_of_the_elementwise_version():
    x = _rows(1).requires_grad_(True)
    s = torch.tensor(0.6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: twist(a, b, 0.1), (x, s))
    w = torch.randn(x.shape, dtype=torch.float64)
    gx, gs = torch.autograd.grad((twist(x, s, 0.1) * w).sum(), (x, s))
    nx, ns = torch.autograd.grad((twist_naive(x, s, 0.1) * w).sum(), (x, s))
    torch.testing.assert_close(gx, nx)
    torch.testing.assert_close(gs, ns)


def _int_twist_direct(row, t_num, s_num, bits):
    """Integer TWIST of one row with exact fractions (round half up, clamp)."""
    m = max(row)
    trivial = [Fraction(p) < Fraction(t_num, 1 << R.TWIST_SHIFT) * m for p in row]
    total = sum(p for p, tr in zip(row, trivial) if tr)
    s = Fraction(s_num, 1 << R.TWIST_SHIFT)
    out = []
    for p, tr in zip(row, trivial):
        if not tr:
            out.append(p)
        else:
            v = s * p * p / max(total, 1)
            out.append(min(math.floor(v + Fraction(1, 2)), (1 << bits) - 1))
    return out


@pytest.mark.parametrize("bits,t,s", [(8, 0.1, 0.5), (4, 0.3, 1.0), (8, 0.5, 9.0),
                                      (6, 0.0, 0.5), (8, 1.0, 0.0)])
def test_integer_twist_equals_direct_definition_and_torch_bit_for_bit(bits, t, s):
    rng = np.random.default_rng(bits)
    top = (1 << bits) - 1
    p = rng.integers(0, top + 1, (5, 7)) >> rng.integers(0, bits, (5, 1))
    p[0] = 0                                              # an all-zero row
    t_num, s_num = R.twist_constants(t, s)
    got = R.twist(p, t_num, s_num, out_bits=bits)
    assert got.tolist() == [_int_twist_direct(r, t_num, s_num, bits) for r in p.tolist()]
    mirror = T.twist(torch.from_numpy(p).double(), t_num, torch.tensor(float(s_num)),
                     out_bits=bits)
    assert np.array_equal(mirror.to(torch.int64).numpy(), got)
    assert np.array_equal(T.twist(torch.from_numpy(p), t_num, s_num, out_bits=bits).numpy(),
                          got)


def test_docs_twist_example():
    """docs/datapath.md's TWIST example, so the documentation cannot drift."""
    from pathlib import Path
    doc = (Path(__file__).parents[1] / "docs" / "datapath.md").read_text()
    consts = R.twist_constants(0.1, 0.5)
    assert consts == (6554, 32768) and "`(t_num, s_num) = (6554, 32768)`" in doc
    assert R.twist(np.array([[200, 30, 10, 15]]), *consts, out_bits=8).tolist() == \
        [[200, 30, 2, 5]]
    assert "**`[200, 30, 2, 5]`**" in doc
    assert R.av_accumulator_bits(8, 196, 8) == 17 and "17 bits for 8-bit codes over 196" in doc


def test_integer_twist_refuses_codes_outside_the_range():
    with pytest.raises(ValueError, match="p must hold 4-bit unsigned codes"):
        R.twist(np.array([[16, 1]]), 6554, 32768, out_bits=4)
    with pytest.raises(ValueError, match=r"t must be in \[0, 1\]"):
        R.twist_constants(1.5, 0.5)


def test_quant_twist_trains_s_through_the_integer_path():
    qt = QuantTwist(0.1, 0.5, out_bits=8)
    p = torch.tensor([[200.0, 30, 10, 15]]) / 255
    y = qt(p)
    assert torch.equal(torch.round(y * 255), torch.tensor([[200.0, 30, 2, 5]]))
    y.sum().backward()
    assert qt.s.grad is not None and qt.s.grad > 0


def test_av_is_bounded_by_the_probability_row_sum():
    rng = np.random.default_rng(3)
    n, v_bits = 49, 8
    for bits in (4, 8):
        q = rng.integers(-300, 300, (64, n))
        p = R.softmax(q, R.ExpConstants.from_scale(1 / 32), out_bits=bits)
        bound = R.probability_row_sum_bound(bits, n)
        assert p.sum(-1).max() <= bound
        tw = R.twist(p, *R.twist_constants(0.1, 1.0), out_bits=bits)
        assert np.all(tw <= p) and tw.sum(-1).max() <= bound
        v = rng.integers(-(1 << (v_bits - 1)), 1 << (v_bits - 1), (n, 16))
        v[:, 0] = -(1 << (v_bits - 1))                    # the worst column
        y = R.matmul(tw[None], v[None])
        assert np.abs(y).max() <= (1 << (v_bits - 1)) * tw.sum(-1).max()
        width = R.av_accumulator_bits(bits, n, v_bits)
        assert np.array_equal(R.matmul(tw[None], v[None], acc=AccumulatorMode("wrap", width)),
                              y)
    # The other side: 4-bit codes cannot hold a uniform attention over 49 tokens
    # (15/49 < 1/2 rounds to 0), so A·V of such a row is 0.
    flat = R.softmax(np.zeros((1, n), np.int64), R.ExpConstants.from_scale(1 / 32), out_bits=4)
    assert flat.sum() == 0


def test_partition_with_and_without_swap_is_the_direct_definition():
    h, w, c, m = 4, 6, 3, 8
    x = torch.arange(2 * h * w * c, dtype=torch.float32).view(2, h * w, c)
    for swap in (False, True):
        parts = partition_tokens(x, (h, w), m, swap)
        order = [i * w + j for j in range(w) for i in range(h)] if swap else \
            list(range(h * w))
        want = x[:, order].reshape(2, -1, m, c)
        assert torch.equal(parts, want)
        assert torch.equal(merge_partitions(parts, (h, w), swap), x)
        idx = relative_position_index((h, w), m, swap)
        for p in range(h * w // m):
            for a in range(m):
                for b in range(m):
                    ga, gb = order[p * m + a], order[p * m + b]
                    dh, dw = ga // w - gb // w, ga % w - gb % w
                    assert idx[p, a, b] == (dh + h - 1) * (2 * w - 1) + dw + w - 1


def _attention_direct(attn, x):
    """Self-attention inside each partition, computed window by window."""
    h, d = attn.heads, attn.head_dim
    out = torch.zeros_like(x)
    hh, ww = attn.grid
    order = [i * ww + j for j in range(ww) for i in range(hh)] if attn.swap \
        else list(range(hh * ww))
    m = attn.local_length
    for p in range(len(order) // m):
        idx = order[p * m:(p + 1) * m]
        t = x[:, idx]
        q, k, v = (f(t).view(-1, m, h, d).transpose(1, 2) for f in (attn.q, attn.k, attn.v))
        s = q @ k.transpose(2, 3) / math.sqrt(d)
        if attn.bias_table is not None:
            s = s + attn.bias_table[:, attn.bias_index[p]]
        out[:, idx] = attn.proj((torch.softmax(s, -1) @ v).transpose(1, 2).reshape(-1, m, h * d))
    return out


@pytest.mark.parametrize("m,swap,rel_pos", [(8, False, False), (8, True, True), (24, False, True),
                                            (4, True, False)])
def test_local_attention_equals_window_by_window_attention(m, swap, rel_pos):
    torch.manual_seed(0)
    attn = MultiHeadAttention(32, (4, 6), AttentionConfig(local_length=m, swap=swap,
                                                          rel_pos=rel_pos), swap=swap)
    if rel_pos:
        attn.bias_table.data.normal_()
    x = torch.randn(2, 24, 32)
    torch.testing.assert_close(attn(x), _attention_direct(attn, x), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="local_length must divide the number of tokens 24"):
        attn.set_local_length(5)


def test_diagonal_mask_and_temperature_options():
    torch.manual_seed(0)
    x = torch.randn(2, 9, 16)
    lee = MultiHeadAttention(16, (3, 3), AttentionConfig(diagonal_mask=True))
    seen = {}
    lee.softmax.register_forward_hook(lambda mod, a, out: seen.setdefault("a", out))
    lee(x).sum().backward()
    assert torch.all(torch.diagonal(seen["a"], dim1=-2, dim2=-1) == 0)
    assert lee.log_scale.grad is not None and lee.log_scale.grad != 0
    hot = MultiHeadAttention(16, (3, 3), AttentionConfig(temperature=2.0))
    assert hot.scale == pytest.approx(2 / 4)


def test_vit_and_metaformer_shapes_and_twist_parameters():
    torch.manual_seed(0)
    vit = ViT(attention=AttentionConfig(twist_t=0.1), depth=2)
    assert vit(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    assert [b.mixer.twist.s.item() for b in vit.blocks] == [0.5, 0.5]
    mf = MetaFormer(attention=AttentionConfig(local_length=49, swap=True, rel_pos=True))
    assert mf(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert [b.mixer.swap for b in mf.blocks[2:]] == [False, True]
    plain = MetaFormer(attention=AttentionConfig(local_length=49))
    assert [b.mixer.swap for b in plain.blocks[2:]] == [False, False]


@pytest.mark.parametrize("config", [AttentionConfig(twist_t=0.1),
                                    AttentionConfig(twist_t=0.1, local_length=8, swap=True)],
                         ids=["global", "local-swap"])
def test_trained_quantized_attention_with_twist_runs_on_the_engine_equal_to_pytorch(config):
    run = trained_attention(config)
    traced, pixels, x = run.traced, run.pixels, run.x
    kinds = [n.kind for n in traced.graph.nodes]
    assert {"linear", "matmul", "softmax", "twist"} <= set(kinds)
    proj_in = traced.graph.type_of(traced.graph.node("attn.proj").inputs[0])
    assert proj_in.signed and proj_in.bits == 8
    qk = traced.graph.node("attn.qk").output
    assert qk.shape == (16 // (config.local_length or 16), 2, config.local_length or 16,
                        config.local_length or 16)
    result = compare_with_pytorch(traced, pixels[:64], x[:64], batch_size=32,
                                  feed_first_codes=True)
    bad = {k: v for k, v in result["nodes"].items() if v["mismatches"]}
    assert not bad
    assert (result["engine_logits"].argmax(1) == result["torch_logits"].argmax(1)).all()
    np.testing.assert_allclose(result["engine_logits"], result["torch_logits"], atol=1e-4)


def test_overflow_report_counts_exact_dot_products_and_restores_accumulators():
    torch.manual_seed(0)
    model = ViT(image_size=8, patch=2, dim=16, depth=1, attention=AttentionConfig(twist_t=0.1))
    x = torch.randn(8, 1, 8, 8)
    quantize_attention(model, x, accumulator=Accumulator(8, 2),
                       matmul_acc=AccumulatorMode("wrap", 12))
    attn = model.blocks[0].mixer
    assert attn.proj.act_quant.bits == 8 and attn.proj.signed_input
    reports = {b: overflow_report(model, x, bits=b) for b in (6, 8, 12, 40)}
    assert set(reports[8]) == {"qkv", "proj", "mlp", "qk", "av"}
    for kind in reports[8]:
        shares = [reports[b][kind]["share"] for b in (6, 8, 12, 40)]
        assert shares == sorted(shares, reverse=True) and shares[-1] == 0
        top = reports[8][kind]["max_abs"]
        assert reports[8][kind]["share"] > 0 or top < 128
    assert attn.q.accumulator == Accumulator(8, 2)
    assert attn.qk.acc == AccumulatorMode("wrap", 12) and not attn.qk.tracing
