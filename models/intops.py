"""PyTorch mirrors of the graph node kinds of :mod:`wrapkit.ref.ops`: same integers, trainable.

Each function takes the arguments of its ``wrapkit.ref.ops`` namesake with torch tensors in
place of arrays and returns **identical integers**: the forward pass evaluates the same
formulas in torch int64 (``tests/test_models_intops.py`` checks every node kind against ref
bit for bit). Tensors may be int64 (inference) or integer-valued float tensors (training);
the result has the floating dtype of the inputs when there is one, else int64, and a result
that the float type cannot hold exactly (beyond 2^24 in float32, 2^53 in float64) raises
ValueError instead of rounding silently.

Gradients are straight-through where the integer function is not differentiable: backward is
the gradient of a float *surrogate*, the real-valued function the integer one computes —
the float convolution, ``(a·m_a + b·m_b) / 2^shift`` clamped to the code range,
``(2^b − 1)·softmax(S·q)``, the float layer norm, the table's central difference. Wrapping
accumulators pass gradients through (slope 1), the cyclic activation's fold-back parts have
slope −k (as :mod:`wrapkit.models.accumulate`), a saturating one passes gradients where the
exact sum lies inside the register's range. Data-movement nodes (max pooling, upsampling,
pixel shuffle, reshape, transpose, flatten) are torch's own exact functions.
"""

import math

import torch
import torch.nn.functional as F

from wrapkit.ref.datapath import cyclic_threshold, operand_range
from wrapkit.ref.ops import AccumulatorMode, ExpConstants, avg_divider, conv_output_size
from wrapkit.ref.ops.nonlinear import NORM_BITS, SOFTMAX_SHIFT
from wrapkit.ref.ops.twist import TWIST_SHIFT

__all__ = ["add", "avg_pool2d", "concat", "conv2d", "flatten", "layer_norm", "linear",
           "lookup", "matmul", "max_pool2d", "pad", "pixel_shuffle", "pixel_unshuffle", "rescale",
           "reshape", "softmax", "transpose", "twist", "upsample_nearest"]

_EXACT = {torch.float16: 1 << 11, torch.bfloat16: 1 << 8, torch.float32: 1 << 24,
          torch.float64: 1 << 53}


def _to_int64(name, t):
    if t.is_floating_point():
        if not torch.equal(t, torch.round(t)):
            raise ValueError(f"{name} must hold integer values")
        return t.detach().to(torch.int64)
    return t.detach().to(torch.int64)


class _Integer(torch.autograd.Function):
    """Forward: ``int_fn`` on int64 copies of the inputs; backward: ``surrogate``'s gradient."""

    @staticmethod
    def forward(ctx, int_fn, surrogate, names, *tensors):
        ctx.surrogate = surrogate
        ctx.save_for_backward(*tensors)
        out = int_fn(*(_to_int64(n, t) for n, t in zip(names, tensors)))
        dtype = next((t.dtype for t in tensors if t.is_floating_point()), torch.int64)
        if dtype != torch.int64:
            if out.numel() and int(out.abs().max()) > _EXACT[dtype]:
                raise ValueError(f"the result reaches {int(out.abs().max())}, beyond the exact "
                                 f"integers of {dtype}; use float64 or int64 inputs")
            out = out.to(dtype)
        return out

    @staticmethod
    def backward(ctx, grad):
        needs = ctx.needs_input_grad[3:]
        with torch.enable_grad():
            xs = [t.detach().to(torch.float64).requires_grad_(n) for t, n in
                  zip(ctx.saved_tensors, needs)]
            wanted = [x for x, n in zip(xs, needs) if n]
            got = iter(torch.autograd.grad(ctx.surrogate(*xs), wanted, grad.to(torch.float64),
                                           allow_unused=True))
        grads = [next(got) if n else None for n in needs]
        return (None, None, None, *(g if g is None else g.to(t.dtype)
                                    for g, t in zip(grads, ctx.saved_tensors)))


def _apply(int_fn, surrogate, **tensors):
    return _Integer.apply(int_fn, surrogate, tuple(tensors), *tensors.values())


def _as_tensor(x):
    return x if torch.is_tensor(x) else torch.as_tensor(x, dtype=torch.int64)


# -- integer building blocks (torch int64, the formulas of wrapkit.ref) ---------------------

def _wrap(x, bits):
    half = 1 << (bits - 1)
    return ((x + half) & ((1 << bits) - 1)) - half


def _round_shift(x, shift):
    return x if shift == 0 else (x + (1 << (shift - 1))) >> shift


def _finish(z, acc):
    if acc.mode == "wrap":
        return _wrap(z, acc.bits)
    if acc.mode == "cyclic":
        half, t, m = 1 << (acc.bits - 1), cyclic_threshold(acc.bits, acc.k), _wrap(z, acc.bits)
        return torch.where(m > t, acc.k * (half - m), torch.where(m < -t, -acc.k * (half + m), m))
    return z


def _int_matmul(a, b, acc):
    if acc.mode != "saturate":
        return _finish(torch.matmul(a, b), acc)
    lo, hi = operand_range(acc.bits, True)
    shape = torch.broadcast_shapes(a.shape[:-1] + (1,), b.shape[:-2] + (1,) + b.shape[-1:])
    out = torch.zeros(shape, dtype=torch.int64)
    for j in range(a.shape[-1]):
        out = (out + a[..., :, j:j + 1] * b[..., j:j + 1, :]).clamp_(lo, hi)
    return out


def _acc_surrogate(z, acc):
    """A float function of the exact sums ``z`` whose gradient is the accumulator's STE."""
    if acc.mode == "cyclic":
        m = _wrap(z.detach().round().to(torch.int64), acc.bits)
        fold = m.abs() > cyclic_threshold(acc.bits, acc.k)
        return torch.where(fold, -acc.k * z, z)
    if acc.mode == "saturate":
        return z.clamp(*operand_range(acc.bits, True))
    return z


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


# -- MAC-type nodes ---------------------------------------------------------------------------

def conv2d(x, weight, *, stride=1, padding=0, dilation=1, groups=1, acc=AccumulatorMode()):
    """``wrapkit.ref.ops.conv2d``: exact integer convolution, then the accumulator."""
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)

    def int_fn(x, w):
        n, c, h, wd = x.shape
        c_out, cg, kh, kw = w.shape
        oh, ow = conv_output_size(h, kh, sh, ph, dh), conv_output_size(wd, kw, sw, pw, dw)
        xp = F.pad(x, (pw, pw, ph, ph))
        cols = torch.stack([xp[:, :, ky * dh:ky * dh + sh * (oh - 1) + 1:sh,
                               kx * dw:kx * dw + sw * (ow - 1) + 1:sw]
                            for ky in range(kh) for kx in range(kw)], dim=2)  # N,C,kh·kw,OH,OW
        rows = cols.reshape(n, groups, cg * kh * kw, oh * ow).transpose(2, 3)
        mat = w.reshape(groups, c_out // groups, cg * kh * kw).transpose(1, 2)
        z = _int_matmul(rows, mat[None], acc)
        return z.transpose(2, 3).reshape(n, c_out, oh, ow)

    def surrogate(x, w):
        return _acc_surrogate(F.conv2d(x, w, None, (sh, sw), (ph, pw), (dh, dw), groups), acc)
    return _apply(int_fn, surrogate, x=x, weight=weight)


def linear(x, weight, *, acc=AccumulatorMode()):
    """``wrapkit.ref.ops.linear``: ``x @ weight.T``, then the accumulator."""
    return _apply(lambda x, w: _int_matmul(x, w.T, acc),
                  lambda x, w: _acc_surrogate(x @ w.T, acc), x=x, weight=weight)


def matmul(a, b, *, acc=AccumulatorMode()):
    """``wrapkit.ref.ops.matmul``: batched ``a @ b`` of two activation tensors."""
    return _apply(lambda a, b: _int_matmul(a, b, acc),
                  lambda a, b: _acc_surrogate(a @ b, acc), a=a, b=b)


# -- elementwise --------------------------------------------------------------------------------

def rescale(x, multiplier, shift, out_bits, out_signed):
    """``wrapkit.ref.ops.rescale``: ``clamp(round_shift(x·m, shift))``."""
    lo, hi = operand_range(out_bits, bool(out_signed))
    return _apply(lambda x: _round_shift(x * multiplier, shift).clamp(lo, hi),
                  lambda x: (x * multiplier / 2.0 ** shift).clamp(lo, hi), x=x)


def add(a, b, m_a, m_b, shift, *, out_bits, out_signed):
    """``wrapkit.ref.ops.add``: two scales aligned, rounded half up, clamped."""
    lo, hi = operand_range(out_bits, bool(out_signed))
    return _apply(lambda a, b: _round_shift(a * m_a + b * m_b, shift).clamp(lo, hi),
                  lambda a, b: ((a * m_a + b * m_b) / 2.0 ** shift).clamp(lo, hi), a=a, b=b)


def concat(tensors, axis=1, *, rescales=None, out_bits=None, out_signed=None):
    """``wrapkit.ref.ops.concat``: per-input rescale where given, then ``torch.cat``."""
    if rescales is not None:
        tensors = [t if r is None else rescale(t, r[0], r[1], out_bits, out_signed)
                   for t, r in zip(tensors, rescales)]
    return torch.cat(list(tensors), dim=axis)


# -- shape --------------------------------------------------------------------------------------

def max_pool2d(x, kernel, stride=None, padding=0):
    """``wrapkit.ref.ops.max_pool2d`` (torch's, exact on integers)."""
    return F.max_pool2d(x, kernel, kernel if stride is None else stride, padding)


def avg_pool2d(x, kernel, stride=None, padding=0):
    """``wrapkit.ref.ops.avg_pool2d``: exact window sums, ``floor(S/area + 1/2)``."""
    (kh, kw), (ph, pw) = _pair(kernel), _pair(padding)
    sh, sw = _pair(kernel if stride is None else stride)

    def int_fn(x):
        n, c, h, w = x.shape
        oh, ow = conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)
        xp = F.pad(x, (pw, pw, ph, ph))
        total = sum(xp[:, :, ky:ky + sh * (oh - 1) + 1:sh, kx:kx + sw * (ow - 1) + 1:sw]
                    for ky in range(kh) for kx in range(kw))
        m, b, s = avg_divider(kh * kw, kh * kw * int(x.abs().max()) if x.numel() else 0)
        return (total * m + b) >> s
    return _apply(int_fn, lambda x: F.avg_pool2d(x, (kh, kw), (sh, sw), (ph, pw)), x=x)


def upsample_nearest(x, scale):
    """``wrapkit.ref.ops.upsample_nearest``."""
    sh, sw = _pair(scale)
    return x.repeat_interleave(sh, dim=2).repeat_interleave(sw, dim=3)


def pixel_shuffle(x, factor):
    """``wrapkit.ref.ops.pixel_shuffle`` (torch's)."""
    return F.pixel_shuffle(x, factor)


def pixel_unshuffle(x, factor):
    """``wrapkit.ref.ops.pixel_unshuffle`` (torch's)."""
    return F.pixel_unshuffle(x, factor)


def reshape(x, shape):
    """``wrapkit.ref.ops.reshape``: per-sample shape, batch axis kept."""
    return x.reshape(len(x), *shape)


def transpose(x, axes):
    """``wrapkit.ref.ops.transpose``: ``axes`` keeps the batch axis first."""
    if tuple(axes)[0] != 0:
        raise ValueError(f"axes must keep the batch axis first, got {list(axes)}")
    return x.permute(*axes)


def pad(x, pads):
    """``wrapkit.ref.ops.pad``: zero padding, ``pads`` per sample axis from the first."""
    flat = []
    for i in range(len(pads) - 2, -1, -2):          # F.pad counts from the last axis
        flat += [pads[i], pads[i + 1]]
    return F.pad(x, flat)


def flatten(x):
    """``wrapkit.ref.ops.flatten``: ``(N, ...) -> (N, -1)``."""
    return x.flatten(1)


# -- nonlinear ----------------------------------------------------------------------------------

def _i_exp(d, c):
    z = torch.div(-d, c.q_ln2, rounding_mode="floor")
    p = d + z * c.q_ln2
    return (p * (p + c.q_b) + c.q_c).clamp(min=0) >> z.clamp(max=62)


def softmax(q, consts: ExpConstants, *, out_bits):
    """``wrapkit.ref.ops.softmax`` over the last axis; surrogate ``(2^b − 1)·softmax(S·q)``
    with ``S = ln2 / q_ln2``."""
    top = (1 << out_bits) - 1

    def int_fn(q):
        e = _i_exp(q - q.amax(dim=-1, keepdim=True), consts)
        r = torch.div(top << SOFTMAX_SHIFT, e.sum(dim=-1, keepdim=True), rounding_mode="floor")
        return _round_shift(e * r, SOFTMAX_SHIFT)
    scale = math.log(2) / consts.q_ln2
    return _apply(int_fn, lambda q: top * torch.softmax(q * scale, dim=-1), q=q)


def _isqrt(v):
    _, exp = torch.frexp(v.to(torch.float64))
    x = torch.ones_like(v) << torch.div(exp.to(torch.int64) + 1, 2, rounding_mode="floor")
    while True:
        nxt = ((x + torch.div(v, x, rounding_mode="floor")) >> 1).clamp(min=1)
        done = nxt >= x
        if bool(done.all()):
            return torch.where(v == 0, torch.zeros_like(x), x)
        x = torch.where(done, x, nxt)


def layer_norm(q, m, b, shift, *, out_bits, out_signed):
    """``wrapkit.ref.ops.layer_norm`` (I-BERT); ``m``, ``b`` may be float tensors that train
    (surrogate: the float layer norm ``2^NORM_BITS·y/√v`` through the same affine)."""
    lo, hi = operand_range(out_bits, bool(out_signed))
    n = q.shape[-1]

    def int_fn(q, m, b):
        mu = torch.div(2 * q.sum(dim=-1, keepdim=True) + n, 2 * n, rounding_mode="floor")
        y = q - mu
        r = _isqrt((y * y).sum(dim=-1, keepdim=True)).clamp(min=1)
        u = y * torch.div(torch.full_like(r, 1 << NORM_BITS), r, rounding_mode="floor")
        return _round_shift(u * m + b, shift).clamp(lo, hi)

    def surrogate(q, m, b):
        y = q - q.mean(dim=-1, keepdim=True)
        u = y * 2.0 ** NORM_BITS / (y * y).sum(dim=-1, keepdim=True).sqrt().clamp(min=1)
        return ((u * m + b) / 2.0 ** shift).clamp(lo, hi)
    return _apply(int_fn, surrogate, q=q, m=_as_tensor(m), b=_as_tensor(b))


def lookup(x, table, *, in_bits, in_signed):
    """``wrapkit.ref.ops.lookup``; gradient: the table's central difference per input step."""
    lo, _ = operand_range(in_bits, bool(in_signed))
    table = _as_tensor(table).to(torch.int64)
    padded = torch.cat([table[:1], table, table[-1:]]).to(torch.float64)
    slope = (padded[2:] - padded[:-2]) / 2.0

    if len(table) != 1 << in_bits:
        raise ValueError(f"table must have 2^in_bits = {1 << in_bits} entries, got {len(table)}")

    def int_fn(x):
        if x.numel() and (int(x.min()) < lo or int(x.max()) >= lo + len(table)):
            raise ValueError(f"x must lie in [{lo}, {lo + len(table) - 1}] for the table")
        return table[x - lo]

    def surrogate(x):
        return slope[(x.detach().round().to(torch.int64) - lo)] * x
    return _apply(int_fn, surrogate, x=x)


def twist(p, t_num, s_num, *, out_bits):
    """``wrapkit.ref.ops.twist`` on probability codes; ``s_num`` may be a float tensor that
    trains (surrogate: ``s·p²/S`` on the trivial codes, the mask held fixed)."""
    top = (1 << out_bits) - 1
    one = 1 << TWIST_SHIFT

    def mask(p):
        return (p * one) < t_num * p.amax(dim=-1, keepdim=True)

    def int_fn(p, s_num):
        trivial = mask(p)
        total = torch.where(trivial, p, torch.zeros_like(p)).sum(dim=-1, keepdim=True)
        d = total.clamp(min=1) * one
        shrunk = torch.div(2 * s_num * p * p + d, 2 * d, rounding_mode="floor").clamp(max=top)
        return torch.where(trivial, shrunk, p)

    def surrogate(p, s_num):
        trivial = mask(p.detach()).to(p.dtype)
        total = (p * trivial).sum(dim=-1, keepdim=True).clamp(min=1)
        return p + trivial * (s_num / one * p * p / total - p)
    return _apply(int_fn, surrogate, p=p, s_num=_as_tensor(s_num))
