"""The accumulator in PyTorch: wrap-around, WrapNet's cyclic activation, overflow penalty.

Forward values are ``wrapkit.ref`` semantics (``ref.wrap``, ``ref.cyclic``) evaluated on
float tensors: on integer-valued tensors every operation below is exact, so the results equal
``ref`` bit for bit (the tests check this on random and real data; the layers keep the
integer pre-activations themselves exact, see ``layers.py``). On real-valued inputs (the
warm-up stage, where
activations are not yet quantized) the same formulas are the continuous "smooth modulo" of
§2.3.1:

    m = z - 2^b · round(z / 2^b), then 2^(b-1) -> -2^(b-1)   (wrap into [-2^(b-1), 2^(b-1)))
    f(m) = m                    for |m| <= t,  t = k·2^(b-1)/(k+1)
         = k·(2^(b-1) - m)      for m > t
         = -k·(2^(b-1) + m)     for m < -t

On integers ``|m| <= t`` is the same test as ``|m| <= floor(t)``, the threshold of
``ref.cyclic_threshold``. Backward is the derivative of the smooth modulo: 1 on the linear
part, -k on the fold-back parts (the modulo's own derivative is 1 almost everywhere).

The two functions are written as autograd Functions rather than chains of tensor ops so that
backward keeps one tensor (the slope) instead of every intermediate and costs one
multiplication; together with arithmetic on 0/1 factors in place of ``torch.where`` this is
what keeps a WrapNet epoch close to a float one (``benchmarks/wrapnet_epoch_time.py``).
"""

import functools
from fractions import Fraction

import numpy as np
import torch

from .qconfig import ACC_BITS_RANGE, K_RANGE, Accumulator, check_int

__all__ = ["LIMITS", "accumulate", "cyclic", "excess_limit", "overflow_mask", "overflow_penalty",
           "wrap"]


def _wrap_near(z, bits):
    """z - 2^b·round(z / 2^b): z wrapped into [-2^(b-1), 2^(b-1)], both ends included.

    Exact on every integer-valued float: multiplying by 2^-b only moves the exponent, rounding
    an exact value is exact, and the difference is an integer no larger than |z| that is a
    multiple of z's own ulp. (floor((z + 2^(b-1)) / 2^b) is not: the sum can round across a
    multiple of 2^b, e.g. z = 2^24 - 1, b = 25 in float32.)
    """
    period = float(1 << bits)
    return torch.add(z, torch.round(z * (1.0 / period)), alpha=-period)


def _indicator(cond, like):
    """``cond`` as 0.0 / 1.0 in ``like``'s dtype.

    Arithmetic with such a factor replaces ``torch.where``, which is several times slower
    than a multiplication on CPU, and every product below is exact (a factor of 0 or 1).
    """
    return cond.to(like.dtype)


def _wrap_values(z, bits):
    m = _wrap_near(z, bits)
    half = float(1 << (bits - 1))
    # the tie +2^(b-1) belongs to -2^(b-1)
    return m.sub_(_indicator(m >= half, m).mul_(2 * half))


class _Wrap(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, bits):
        return _wrap_values(z, bits)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


@functools.lru_cache(maxsize=None)
def _threshold(bits, k, dtype):
    """The largest ``dtype`` number <= t = k·2^(b-1)/(k+1).

    For any number m of that dtype, ``m > result`` exactly when ``m > t`` (m cannot lie
    between them), so the fold-back test is exact on integers (where it equals
    ``m > ref.cyclic_threshold``) and continuous on reals, whatever the dtype's precision.
    """
    t = Fraction(k << (bits - 1), k + 1)
    np_dtype = {torch.float32: np.float32, torch.float64: np.float64}.get(dtype)
    if np_dtype is None:
        raise TypeError(f"the cyclic activation needs float32 or float64 tensors, not {dtype}")
    r = np_dtype(float(t))
    while Fraction(float(r)) > t:
        r = np.nextafter(r, np_dtype(-np.inf))
    return float(r)


class _Cyclic(torch.autograd.Function):
    # This runs on every activation tensor of every training step, so it is written for few,
    # cheap passes over memory: no torch.where (slow on CPU), in-place arithmetic with 0/1
    # factors instead, and one float tensor saved for backward, the slope itself (1 on the
    # linear part, -k on the fold-back parts), so that backward is a single multiplication.
    @staticmethod
    def forward(ctx, z, bits, k):
        half = float(1 << (bits - 1))
        # The tie m = +2^(b-1) needs no fix here: it folds to k·(2^(b-1) - |m|) = 0, the value
        # of -2^(b-1).
        m = _wrap_near(z, bits)
        a = m.abs()
        fold = _indicator(a > _threshold(bits, k, z.dtype), m)
        # k·(2^(b-1) - |m|) with the sign of m where folded, 0 elsewhere; (2^(b-1) - |m|)
        # first, so every step stays exact where the result is used.
        folded = torch.rsub(a, half).mul_(fold).mul_(k).copysign_(m)
        keep = fold.mul_(-1.0).add_(1.0)          # 1 - fold
        out = m.mul_(keep).add_(folded)           # m where kept, the fold-back value elsewhere
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(keep.mul_(k + 1).sub_(k))  # slope: 1 kept, -k folded
        return out

    @staticmethod
    def backward(ctx, grad):
        (slope,) = ctx.saved_tensors
        return grad * slope, None, None


def wrap(z, bits):
    """Two's-complement wrap of ``z`` to ``bits`` bits (``ref.wrap``); gradient 1.

    >>> wrap(torch.tensor([127., 128., 300., -129.]), 8).tolist()
    [127.0, -128.0, 44.0, 127.0]
    """
    return _Wrap.apply(z, check_int("acc_bits", bits, *ACC_BITS_RANGE))


def cyclic(z, bits, k):
    """WrapNet's cyclic activation (``ref.cyclic`` on integers, smooth modulo on reals).

    >>> cyclic(torch.tensor([44., 100., -100., 128.]), 8, 2).tolist()
    [44.0, 56.0, -56.0, 0.0]
    """
    bits = check_int("acc_bits", bits, *ACC_BITS_RANGE)
    return _Cyclic.apply(z, bits, check_int("k", k, *K_RANGE))


def accumulate(z, acc: Accumulator):
    """What an :class:`Accumulator` outputs for exact pre-activations ``z``.

    A 32-bit register is applied too (it is the identity for every |z| < 2^31), so the
    "wide reference" goes through exactly the same code path as the narrow ones.
    """
    if acc.k is None:
        return _Wrap.apply(z, acc.bits)
    return _Cyclic.apply(z, acc.bits, acc.k)


def overflow_mask(z, bits):
    """True where ``z`` does not fit a signed ``bits``-bit register (``wrap(z) != z``)."""
    half = float(1 << (check_int("acc_bits", bits, *ACC_BITS_RANGE) - 1))
    return (z < -half) | (z >= half)


#: What counts as "too large" for step selection and R^o: beyond the register (the paper's
#: overflow, |z| >= 2^(b-1)) or beyond the cyclic activation's linear part (|z| > t).
LIMITS = ("register", "fold")


def excess_limit(bits, k=None, limit="register"):
    """The magnitude beyond which a pre-activation is penalised and counted.

    ``"register"``: 2^(b-1), the register's range (§2.3.2). ``"fold"``: the cyclic fold
    threshold t = k·2^(b-1)/(k+1); the cyclic activation maps every |z| in (t, 2^(b-1)) to
    k·(2^(b-1) - |z|), as wrong a value for the next layer as an overflow, so with k = 2 a
    register "without overflow" still distorts everything beyond two thirds of its range.
    Without a cyclic activation (k None) both are 2^(b-1).
    """
    half = float(1 << (check_int("acc_bits", bits, *ACC_BITS_RANGE) - 1))
    if limit not in LIMITS:
        raise ValueError(f"limit must be one of {', '.join(LIMITS)}, got {limit!r}")
    if limit == "register" or k is None:
        return half
    return float(Fraction(k << (bits - 1), k + 1))


def overflow_penalty(z, bits, k=None, limit="register"):
    """R^o of one layer (§2.3.2): mean over neurons of max(|z| - L, 0), L = 2^(b-1).

    ``z`` are the exact (unwrapped) pre-activations in integer units; the mean runs over the
    batch too, so the penalty does not grow with the batch size. ``limit="fold"`` uses the
    cyclic fold threshold for L (see :func:`excess_limit`).
    """
    return torch.relu(z.abs() - excess_limit(bits, k, limit)).mean()
