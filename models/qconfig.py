"""Quantizer configurations: plain frozen data, validated when created.

Three objects describe everything a quantized layer computes (behaviour lives elsewhere:
:mod:`wrapkit.models.fake_quant` and :mod:`wrapkit.models.accumulate`):

* :class:`WeightQuant` — how the float "latent" weights become integers ``w_q`` and a scale
  ``s_w`` (``w ≈ s_w · w_q``).
* :class:`ActQuant` — the step ``s_x`` that measures a layer's input in integer units
  (``x ≈ s_x · x_q``) and, when ``bits`` is set, the unsigned ``bits``-bit codes ``x_q``.
* :class:`Accumulator` — the register the integer dot products ``z_q = Σ w_q x_q`` land in:
  ``bits`` wide, wrapping modulo ``2^bits``, followed by WrapNet's cyclic activation when ``k``
  is set.

Worked example (binary weights, 3-bit activations, 8-bit accumulator, k = 2): an input of 0.9
with ``ActQuant(step=0.25, bits=3)`` becomes code ``round(0.9/0.25) = 4``; weights
``[0.3, -0.1]`` become ``w_q = [+1, -1]`` with ``s_w = mean|w| = 0.2``; a dot product
``z_q = 300`` wraps to ``44`` in the 8-bit accumulator, and the cyclic activation passes 44
unchanged (``44 <= T = 85``); the layer outputs ``0.2 · 0.25 · 44 = 2.2``.
"""

from dataclasses import asdict, dataclass

from wrapkit.common.checks import check_int as _check_int
from wrapkit.common.checks import check_positive_float

__all__ = [
    "ACC_BITS_RANGE",
    "ACT_BITS_RANGE",
    "K_RANGE",
    "WEIGHT_BITS_RANGE",
    "WEIGHT_KINDS",
    "Accumulator",
    "ActQuant",
    "WeightQuant",
    "check_int",
]

#: Weight kinds: "float" keeps the latent weights (FP32 baselines); the others follow
#: BWN (Rastegari et al.), TWN (Li & Liu) and symmetric uniform quantization.
WEIGHT_KINDS = ("float", "binary", "ternary", "uniform")
#: Uniform weights: 2..8 bits (wider ones would need int16 operands the paper never uses).
WEIGHT_BITS_RANGE = (2, 8)
#: Unsigned post-ReLU activation codes: 1..8 bits (a 12-bit accumulator selects about 7).
ACT_BITS_RANGE = (1, 8)
#: Accumulator width: 2..32 bits; 32 is the wide reference the paper compares against.
ACC_BITS_RANGE = (2, 32)
#: Cyclic slope k (§2.3.1): 1..64; the paper sweeps 1, 2, 4, 10.
K_RANGE = (1, 64)


def check_int(name, value, lo, hi):
    """Return ``value`` as an int in [lo, hi]; the TypeError names the range too, since
    configuration fields are set far from where their range is documented."""
    return _check_int(name, value, lo, hi, range_in_type_error=True)


@dataclass(frozen=True)
class WeightQuant:
    """How a layer's weights are quantized; one scale per output channel.

    Parameters
    ----------
    kind : {"float", "binary", "ternary", "uniform"}
        ``binary``: ``w_q = sign(w)`` (sign(0) = +1), ``s_w = mean|w|`` (BWN).
        ``ternary``: ``w_q = sign(w)·[|w| > Δ]`` with ``Δ = threshold·mean|w|``, ``s_w`` = mean
        of the kept ``|w|`` (TWN). ``uniform``: ``s_w = max|w| / (2^(bits-1) - 1)``,
        ``w_q = round(w/s_w)`` in the symmetric range ``±(2^(bits-1) - 1)``.
        ``float``: no quantization (``w_q = w``, ``s_w = 1``).
    bits : int or None
        Uniform weights only: 2..8. None for the other kinds.
    threshold : float
        Ternary only: Δ as a multiple of mean|w|; 0.7 is TWN's approximation of the optimum.

    Examples
    --------
    Binary, one output channel with weights [0.3, -0.1]: ``w_q = [1, -1]``, ``s_w = 0.2``.
    Ternary with weights [0.3, -0.02, -0.2] (mean|w| = 0.173, Δ = 0.121): ``w_q = [1, 0, -1]``,
    ``s_w = 0.25``.
    """

    kind: str = "binary"
    bits: int | None = None
    threshold: float = 0.7

    def __post_init__(self):
        if self.kind not in WEIGHT_KINDS:
            raise ValueError(f"weight kind must be one of {', '.join(WEIGHT_KINDS)}, "
                             f"got {self.kind!r}")
        if self.kind == "uniform":
            check_int("weight_bits", self.bits, *WEIGHT_BITS_RANGE)
        elif self.bits is not None:
            raise ValueError(f"weight_bits must be None for {self.kind} weights, got {self.bits}")
        thr = check_positive_float("threshold", self.threshold)
        if thr >= 1.5:
            raise ValueError(f"threshold must be in (0, 1.5), got {thr}")

    @property
    def quantized(self):
        return self.kind != "float"

    @property
    def qmax(self):
        """Largest |w_q|: 1 for binary/ternary, 2^(bits-1) - 1 for uniform, None for float."""
        if self.kind == "uniform":
            return (1 << (self.bits - 1)) - 1
        return None if self.kind == "float" else 1

    def to_dict(self):
        return asdict(self)


@dataclass(frozen=True)
class ActQuant:
    """A layer's input measured in integer units of ``step``; codes when ``bits`` is set.

    Parameters
    ----------
    step : float > 0
        ``s_x``: one integer unit of the layer's input (selected per layer, then fixed).
    bits : int or None
        1..8: inputs become unsigned codes ``clip(round(x/step), 0, 2^bits - 1)`` (rounding
        half to even, as ``torch.round``). None: float activations, still measured in units
        of ``step`` (``x/step``) so an accumulator model sees the same scale before and after
        activations are quantized (the warm-up stage of §2.4.1).

    Examples
    --------
    ``ActQuant(step=0.25, bits=3)`` maps inputs [0.1, 0.9, 5.0] to codes [0, 4, 7] (clipped).
    """

    step: float = 1.0
    bits: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "step", check_positive_float("act_step", self.step))
        if self.bits is not None:
            check_int("act_bits", self.bits, *ACT_BITS_RANGE)

    @property
    def quantized(self):
        return self.bits is not None

    @property
    def qmax(self):
        return None if self.bits is None else (1 << self.bits) - 1

    def to_dict(self):
        return asdict(self)


@dataclass(frozen=True)
class Accumulator:
    """The accumulator register and what follows it.

    Parameters
    ----------
    bits : int, 2..32
        Width; the register wraps modulo ``2^bits`` (``ref.wrap``). 32 is the wide reference:
        our networks' pre-activations stay far inside it.
    k : int or None
        Slope of WrapNet's cyclic activation (``ref.cyclic``), 1..64; None for a plain
        register (wrap-around only: the overflow collapse of the paper's Table 2.1).

    Examples
    --------
    ``Accumulator(8, k=2)`` maps z_q = 300 to cyclic(wrap(300)) = cyclic(44) = 44 and
    z_q = 100 to 2·(128 - 100) = 56; ``Accumulator(8)`` maps 300 to 44 and 100 to 100.
    """

    bits: int = 32
    k: int | None = None

    def __post_init__(self):
        check_int("acc_bits", self.bits, *ACC_BITS_RANGE)
        if self.k is not None:
            check_int("k", self.k, *K_RANGE)

    @property
    def half(self):
        """2^(bits-1): the register holds [-half, half - 1]."""
        return 1 << (self.bits - 1)

    def to_dict(self):
        return asdict(self)
