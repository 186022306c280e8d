"""The compiled bit-packed GEMM equals the reference (wrapkit.ref.bitpack) bit for bit."""

import numpy as np
import pytest

from wrapkit.models.kernels.gemm import BitpackKernels, pack_activations, pack_weights
from wrapkit.ref import wrap
from wrapkit.ref.bitpack import PACK_MODES, PackSpec, packed_gemm


@pytest.fixture(scope="module")
def kernels():
    return BitpackKernels()


SPECS = [PackSpec(8, 4, 32, m) for m in PACK_MODES] + [PackSpec(8, 8, 64, m) for m in PACK_MODES] \
    + [PackSpec(5, 6, 32, "carry"), PackSpec(10, 3, 32, "buffer"), PackSpec(16, 4, 64, "isolated"),
       PackSpec(4, 15, 64, "carry")]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.lanes}x{s.lane_bits}of{s.word_bits}"
                                                     f"-{s.mode}")
@pytest.mark.parametrize("kind", ["binary", "ternary"])
def test_packed_kernel_equals_ref(kernels, spec, kind):
    rng = np.random.default_rng(spec.lane_bits * 100 + spec.lanes)
    m, n, k = 7, 9, 203  # K not a multiple of the lane count: exercises zero padding
    hi = min(7, (1 << spec.data_bits) - 1)
    a = rng.integers(0, hi + 1, size=(n, k))
    w = rng.choice([-1, 1] if kind == "binary" else [-1, 0, 1], size=(m, k))
    out = kernels.packed(pack_activations(a, spec), pack_weights(w, spec, kind))
    ref = packed_gemm(a, w, spec)
    assert out.dtype == np.int32 and out.shape == (m, n)
    assert np.array_equal(out, ref.result)
    if spec.mode != "carry":
        assert np.array_equal(out, wrap(w @ a.T, spec.data_bits))
    else:  # contamination is real on this data, so the test would see a kernel that ignored it
        assert np.any(ref.contamination > 0)


def test_int32_kernel(kernels):
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, size=(11, 300))
    w = rng.integers(-128, 128, size=(5, 300))
    assert np.array_equal(kernels.int32(a, w), w @ a.T)


def test_bad_input():
    s = PackSpec()
    with pytest.raises(ValueError, match=r"^weight_kind must be one of binary, ternary for the "
                                         r"packed path, got 'uniform'$"):
        pack_weights(np.ones((2, 4), int), s, "uniform")
    with pytest.raises(ValueError, match=r"^binary weights must lie in \{-1, 1\}, got 0$"):
        pack_weights(np.zeros((2, 4), int), s, "binary")
    with pytest.raises(ValueError, match=r"^lane_bits must be in \[2, 32\] for the C kernel, "
                                         r"got 64$"):
        pack_weights(np.ones((2, 4), int), PackSpec(64, 1, 64), "binary")
    with pytest.raises(ValueError, match=r"^activations must lie in \[0, 127\] for 7 data bits$"):
        pack_activations(np.full((2, 4), 128), s.with_mode("buffer"))


def test_mismatched_operands(kernels):
    s = PackSpec()
    pa = pack_activations(np.zeros((3, 8), int), s)
    pw = pack_weights(np.ones((2, 8), int), s.with_mode("buffer"), "binary")
    with pytest.raises(ValueError, match=r"^activations and weights must share spec and K"):
        kernels.packed(pa, pw)
