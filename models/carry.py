"""Bit-packing without vector instructions in training: carries, R^c, buffer bits (§2.3.4).

On a CPU without vector instructions, the products ``v_i = a_i w_i`` (binary/ternary weights)
of one dot product are packed into lanes of a scalar word and added with the scalar adder;
every lane overflow leaks a carry into the neighbouring lane, which belongs to the same dot
product, so the result is ``wrap_b(z + C)`` instead of ``wrap_b(z)``. This module simulates
that in PyTorch (integer-exact forward values, equal to :mod:`wrapkit.ref.bitpack`):

* :func:`alg1_carries` — the paper's Algorithm 1 count ``c`` per neuron (end-around model),
  differentiable as in App. 2.6.1: ``tanh`` replaces the sign of the products and the
  rounding is straight-through.
* :func:`lane_contamination` — the exact contamination ``C`` of a real packing
  (``PackSpec``: L lanes of b bits, top-lane carry dropped), for evaluation; ``negate="twos"``
  packs the two's-complement products (Algorithm 1's codes), ``negate="not"`` the codes of a
  kernel that negates by bitwise NOT and adds the ``+1``s at the end
  (:func:`wrapkit.ref.bitpack.not_negate_terms`, what :mod:`wrapkit.models.kernels` runs).
* :class:`PackingSim` — puts a layer in ``"vector"``, ``"carry"`` or ``"buffer"`` mode. Carry
  mode adds the simulated carries to the exact pre-activation and subtracts the neuron's
  running-mean carry (the carry correction), before the accumulator wraps:
  ``y = cyclic(wrap_b(z + c - round(mean c)))``. Buffer mode gives the layer a ``b-1``-bit
  accumulator (one bit per lane is the guard bit).
* :class:`CarryVariancePenalty` — R^c (eqs. 2.2-2.3): per-neuron variance of ``c`` over the
  batch around the running mean, averaged over neurons, summed over layers.

Why carries are data-dependent: Algorithm 1's unsigned code of a negative product is
``2^b - |v|``, so nearly every non-zero activation meeting a negative weight costs one carry;
``c ≈ #{i: a_i > 0, w_i < 0}`` varies with the input image. (With NOT-negation every
negative weight costs about one carry whatever the activation, so ``C`` is nearly a
per-channel constant: see docs/bitpacking.md.)
"""

import math

import torch

from .layers import quant_layers
from .qconfig import Accumulator
from .regularizers import Regularizer

__all__ = [
    "CARRY_MODES",
    "SURROGATES",
    "TANH_SLOPE",
    "CarryStats",
    "CarryVariancePenalty",
    "PackingSim",
    "alg1_carries",
    "lane_contamination",
    "negative_product_count",
]

#: Per-layer modes of :class:`PackingSim`.
CARRY_MODES = ("vector", "carry", "buffer")
#: Backward surrogates of the negative-product count (see :func:`negative_product_count`).
SURROGATES = ("factored", "product")
#: Slope of the tanh that stands in for sign(v) in the backward pass (on integer products
#: tanh(3 v) is 0 at v = 0 and beyond 0.995 in magnitude from |v| = 1 on).
TANH_SLOPE = 3.0


def _base_op(layer, x, w):
    """The layer's own convolution / matmul, bypassing an installed carry hook."""
    return type(layer)._op(layer, x, w)


def _check_layer(layer):
    kind = layer.weight_quant.kind
    if kind not in ("binary", "ternary"):
        raise ValueError(f"weight_kind must be binary or ternary for the packed path, got "
                         f"{kind!r} (layer {type(layer).__name__})")


class _FloorSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u):
        return torch.floor(u)

    @staticmethod
    def backward(ctx, grad):
        return grad


def negative_product_count(layer, x_q, w_q, surrogate="factored"):
    """``N = #{i : a_i w_i < 0}`` per neuron, exact in the forward pass.

    Activations are unsigned codes, so ``a_i w_i < 0`` iff ``a_i > 0`` and ``w_i < 0``:
    ``N = op([x_q > 0], [w_q < 0])``. Algorithm 1 writes this count with ``sign``, which has no
    useful gradient; the paper replaces it by ``tanh`` (App. 2.6.1). Two readings, both exact
    in the forward pass (k = :data:`TANH_SLOPE`):

    ``"factored"`` (default)
        ``N = op([x > 0], [w < 0])`` with ``tanh(k x)`` for ``sign(x)`` in the activation
        factor and ``[w < 0] = (|w| - w) / 2``, exact on {-1, 0, 1}, passing the weights'
        straight-through gradient: ``dN/da_i = k sech^2(k a_i) [w_i < 0]``,
        ``dN/dw_i = -[a_i > 0]`` for ``w_i = -1`` (0 otherwise).
    ``"product"``
        ``N = sum_i (1 - tanh(k v_i)) / 2`` on the products ``v_i = a_i w_i`` themselves:
        ``dN/da_i = -k w_i sech^2(k a_i w_i) / 2``, ``dN/dw_i = -k a_i sech^2(k a_i w_i) / 2``
        (computed as convolutions: ``sech^2(k a w)`` is ``sech^2(k a)`` for ``w != 0`` and 1
        for ``w = 0``). Its gradient vanishes wherever a product is non-zero.

    In a development measurement on the Table 2.5 network (one epoch of R^c, coefficient 0.01)
    the factored form lowered the mean per-neuron carry standard deviation from 8.4 to 5.8 and
    the product form to 6.8, at equal accuracy (docs/bitpacking.md), hence the default.
    """
    if surrogate not in SURROGATES:
        raise ValueError(f"surrogate must be one of {', '.join(SURROGATES)}, got {surrogate!r}")
    k = TANH_SLOPE
    with torch.no_grad():
        exact = _base_op(layer, (x_q > 0).to(x_q.dtype), (w_q.abs() - w_q) / 2)
        xd = x_q.detach()
    if surrogate == "factored":
        soft = torch.tanh(k * x_q)
        pos = (xd > 0).to(x_q.dtype) + (soft - soft.detach())
        return _base_op(layer, pos, (w_q.abs() - w_q) / 2)
    with torch.no_grad():
        nonzero = (w_q != 0).to(w_q.dtype)
    soft = -_base_op(layer, torch.tanh(k * x_q), w_q.detach()) / 2
    soft = soft - _base_op(layer, k * xd * (1 - torch.tanh(k * xd) ** 2), w_q * nonzero) / 2
    if not bool(nonzero.all()):  # ternary zeros: sech^2(0) = 1
        soft = soft - _base_op(layer, k * xd, w_q * (1 - nonzero)) / 2
    return exact + (soft - soft.detach())


def alg1_carries(layer, x_q, w_q, z, bits, surrogate="factored"):
    """Algorithm 1's carry count per neuron, differentiable (see the module docstring).

    ``u = z + 2^b N`` is the sum of the products' unsigned ``b``-bit codes and
    ``c = max(0, floor((u - 1) / (2^b - 1)))`` the closed form of Algorithm 1
    (:func:`wrapkit.ref.bitpack.alg1_carries`); the floor is straight-through. Forward values
    are exact integers (tested against ``ref``).
    """
    _check_layer(layer)
    period = float(1 << bits)
    u = z + period * negative_product_count(layer, x_q.to(z.dtype), w_q.to(z.dtype), surrogate)
    return torch.clamp_min(_FloorSTE.apply((u - 1) / (period - 1)), 0)


def _lane_masks(layer, lanes, dtype):
    """``[L, *weight_shape[1:]]`` 0/1 masks: flattened weight index ``i`` -> lane ``i % L``."""
    shape = layer.weight.shape[1:]
    idx = torch.arange(math.prod(shape)).reshape(shape)
    return torch.stack([(idx % lanes == j) for j in range(lanes)]).to(dtype)


@torch.no_grad()
def lane_contamination(layer, x_q, w_q, spec, negate="twos"):
    """Exact carry contamination ``C = sum_(j<L-1) c_j`` of each neuron for a packing ``spec``.

    The layer's products, in im2col order (input channel, ky, kx), are packed term ``i`` ->
    lane ``i % L`` (as :func:`wrapkit.ref.bitpack.pack_stream`); per lane the sum of unsigned
    codes ``S_j`` gives the carries ``c_j = floor((S_j + c_(j-1)) / 2^b)``. The packed result is
    ``wrap_b(z + C)``. ``negate="twos"``: codes of the two's-complement products;
    ``negate="not"``: codes of a NOT-negating kernel (``w = -1`` -> ``2^b - 1 - a``).
    Only carry-mode packings (``spec.mode == "carry"``) contaminate.
    """
    _check_layer(layer)
    if spec.mode != "carry":
        raise ValueError(f"spec.mode must be 'carry' to contaminate, got {spec.mode!r}")
    if negate not in ("twos", "not"):
        raise ValueError(f"negate must be 'twos' or 'not', got {negate!r}")
    period = float(1 << spec.lane_bits)
    # Lane sums stay below 2^b * fan_in: float32 is exact below 2^24, else use float64.
    dtype = torch.float32 if period * (layer.fan_in + 1) < (1 << 24) else torch.float64
    x, w = x_q.to(dtype), w_q.to(dtype)
    n_out, lanes = w.shape[0], spec.lanes
    masks = _lane_masks(layer, lanes, dtype)                       # L, *w.shape[1:]
    neg_w = (w.abs() - w) / 2
    # One convolution for all lanes: lane j's weights are output channels j*n_out...
    lane_w = (w[None] * masks[:, None]).flatten(0, 1)
    sums = _base_op(layer, x, lane_w)
    if negate == "twos":
        lane_neg = (neg_w[None] * masks[:, None]).flatten(0, 1)
        sums = sums + period * _base_op(layer, (x > 0).to(dtype), lane_neg)
    else:  # each negated term's code is 2^b - 1 - a: its value -a plus 2^b - 1
        n_neg = (neg_w[None] * masks[:, None]).flatten(2).sum(2).flatten()  # L*n_out
        sums = sums + (period - 1) * n_neg.view(1, -1, *([1] * (sums.dim() - 2)))
    sums = sums.unflatten(1, (lanes, n_out))
    carry = torch.zeros_like(sums[:, 0])
    total = torch.zeros_like(carry)
    for j in range(lanes):
        carry = torch.floor((sums[:, j] + carry) / period)
        if j < lanes - 1:
            total = total + carry
    return total


class CarryStats:
    """Per-neuron running sums of a carry count (mean and standard deviation over images)."""

    def __init__(self):
        self.n = 0
        self.s1 = None
        self.s2 = None

    def update(self, c):
        c = c.detach().to(torch.float64)
        self.n += c.shape[0]
        s1, s2 = c.sum(0), (c * c).sum(0)
        self.s1 = s1 if self.s1 is None else self.s1 + s1
        self.s2 = s2 if self.s2 is None else self.s2 + s2

    def mean(self):
        return self.s1 / self.n

    def std(self):
        return (self.s2 / self.n - self.mean() ** 2).clamp_min(0).sqrt()

    def summary(self):
        """``{"mean": mean over neurons of the per-neuron mean, "std": ... of the std}``."""
        return {"mean": float(self.mean().mean()), "std": float(self.std().mean()),
                "neurons": int(self.s1.numel()), "images": self.n}


_EVAL_KINDS = ("alg1", "lanes", "lanes-not")


class _LayerState:
    def __init__(self, name, acc):
        self.name = name
        self.mode = "vector"
        self.acc = acc              # the accumulator of vector/carry mode
        self.running_mean = None    # per-neuron running mean of the training carries
        self.eval_means = {}        # evaluate_with -> calibrated per-neuron mean
        self.track = False          # compute carries even in vector mode (for R^c)
        self.last = None            # carries of the last forward (graph attached)
        self.stats = None           # CarryStats being collected, or None


class PackingSim:
    """Per-layer bit-packing behaviour of a network's binary/ternary quantized layers.

    Installs a hook on each layer's convolution (an instance attribute ``_op``; the layer
    classes are untouched) that adds the carries when the layer is in carry mode.

    Parameters
    ----------
    model : nn.Module
        A trained network whose quantized layers have integer operands.
    momentum : float in (0, 1]
        Running-mean update ``m <- (1 - momentum) m + momentum * batch mean`` (eq. 2.2).
    evaluate_with : "alg1" | "lanes" | "lanes-not"
        What carry mode adds in eval mode: Algorithm 1's count (what training simulates), or
        the exact contamination of ``spec`` with two's-complement or NOT-negated codes.
        Training always uses Algorithm 1 (the only differentiable one).
    spec : wrapkit.ref.bitpack.PackSpec
        The packing for ``"lanes*"`` (default 4 lanes of the accumulator width in 32 bits).
    surrogate : "factored" | "product"
        Backward of the carry count (:func:`negative_product_count`).
    """

    def __init__(self, model, momentum=0.1, evaluate_with="alg1", spec=None,
                 surrogate="factored"):
        from wrapkit.ref.bitpack import PackSpec

        if not 0 < momentum <= 1:
            raise ValueError(f"momentum must be in (0, 1], got {momentum}")
        if surrogate not in SURROGATES:
            raise ValueError(f"surrogate must be one of {', '.join(SURROGATES)}, "
                             f"got {surrogate!r}")
        self.surrogate = surrogate
        self.model = model
        self.momentum = float(momentum)
        self.layers = {}
        for name, layer in quant_layers(model):
            if not layer.integer:
                raise ValueError(f"layer {name} has no integer operands; PackingSim needs a "
                                 "network with quantized weights and activations")
            _check_layer(layer)
            self.layers[name] = (layer, _LayerState(name, layer.accumulator))
            layer._op = self._hook(name)
        bits = {st.acc.bits for _, st in self.layers.values()}
        self.spec = spec or PackSpec(lane_bits=max(bits), lanes=32 // max(bits), word_bits=32)
        self.evaluate_with = evaluate_with

    @property
    def evaluate_with(self):
        return self._evaluate_with

    @evaluate_with.setter
    def evaluate_with(self, value):
        if value not in _EVAL_KINDS:
            raise ValueError(f"evaluate_with must be one of alg1, lanes, lanes-not, got {value!r}")
        self._evaluate_with = value

    def _hook(self, name):
        def op(x, w):
            return self._forward(name, x, w)
        return op

    def detach(self):
        """Remove the hooks and restore every layer's vector-mode accumulator."""
        for layer, st in self.layers.values():
            layer.__dict__.pop("_op", None)
            layer.accumulator = st.acc

    # -- configuration -----------------------------------------------------------------
    def set_mode(self, name, mode):
        """Put layer ``name`` in ``mode`` (see :data:`CARRY_MODES`)."""
        if mode not in CARRY_MODES:
            raise ValueError(f"mode must be one of {', '.join(CARRY_MODES)}, got {mode!r}")
        layer, st = self.layers[name]
        st.mode = mode
        layer.accumulator = (Accumulator(st.acc.bits - 1, st.acc.k) if mode == "buffer"
                             else st.acc)

    def modes(self):
        return {n: st.mode for n, (_, st) in self.layers.items()}

    def set_tracking(self, names):
        """Compute Algorithm 1 carries (for R^c) on these layers even in vector mode."""
        for n, (_, st) in self.layers.items():
            st.track = n in set(names)

    def tracked(self):
        return [(n, st) for n, (_, st) in self.layers.items() if st.track or st.mode == "carry"]

    def start_stats(self, kinds=None):
        """Collect per-neuron statistics of carry counts on every layer from now on.

        ``kinds``: any of ``"alg1"``, ``"lanes"``, ``"lanes-not"`` (default: the current
        ``evaluate_with``). Counts other than the evaluated one are measured on the side and
        do not change the forward pass.
        """
        kinds = (self._evaluate_with,) if kinds is None else tuple(kinds)
        for k in kinds:
            if k not in _EVAL_KINDS:
                raise ValueError(f"kinds must be among {', '.join(_EVAL_KINDS)}, got {k!r}")
        for _, st in self.layers.values():
            st.stats = {k: CarryStats() for k in kinds}

    def stop_stats(self):
        """Stop collecting; returns ``{kind: {layer: CarryStats}}`` (layers that counted
        nothing, such as buffer-mode ones, are left out)."""
        out = {}
        for n, (_, st) in self.layers.items():
            for k, s in (st.stats or {}).items():
                out.setdefault(k, {})
                if s.n:
                    out[k][n] = s
            st.stats = None
        return out

    def calibrate_eval_means(self, stats, kind=None):
        """Use the per-neuron means in ``stats`` (``{layer: CarryStats}`` of count ``kind``,
        default the current ``evaluate_with``) as the carry correction of that count."""
        kind = self._evaluate_with if kind is None else kind
        for n, s in stats.items():
            self.layers[n][1].eval_means[kind] = s.mean().to(torch.float32)

    def state(self):
        """Modes and running means, for saving (``torch.save``-able)."""
        return {n: {"mode": st.mode, "running_mean": st.running_mean,
                    "eval_means": dict(st.eval_means)} for n, (_, st) in self.layers.items()}

    def load_state(self, state):
        for n, s in state.items():
            self.set_mode(n, s["mode"])
            st = self.layers[n][1]
            st.running_mean, st.eval_means = s["running_mean"], dict(s["eval_means"])

    # -- the hook ----------------------------------------------------------------------
    def _forward(self, name, x, w):
        layer, st = self.layers[name]
        z = _base_op(layer, x, w)
        st.last = None
        if st.mode == "buffer" or not (st.mode == "carry" or st.track or st.stats is not None):
            return z
        kind = "alg1" if layer.training else self._evaluate_with
        c = self._count(kind, layer, st, x, w, z)
        for k, stats in (st.stats or {}).items():
            stats.update(c if k == kind else self._count(k, layer, st, x, w, z))
        st.last = c
        if layer.training:
            # Eq. 2.2 per batch, folded into the running estimate that also serves as the
            # carry correction.
            batch_mean = c.detach().mean(0)
            st.running_mean = (batch_mean if st.running_mean is None else
                               (1 - self.momentum) * st.running_mean
                               + self.momentum * batch_mean)
        if st.mode != "carry":
            return z
        mean = self._correction(name, st, layer.training)
        return z + c - torch.round(mean).to(z.dtype)

    def _count(self, kind, layer, st, x, w, z):
        if kind == "alg1":
            return alg1_carries(layer, x, w, z, st.acc.bits, self.surrogate)
        negate = "twos" if kind == "lanes" else "not"
        return lane_contamination(layer, x, w, self.spec, negate).to(z.dtype)

    def _correction(self, name, st, training):
        if not training and self._evaluate_with in st.eval_means:
            return st.eval_means[self._evaluate_with]
        if (training or self._evaluate_with == "alg1") and st.running_mean is not None:
            return st.running_mean
        raise RuntimeError(f"layer {name}: no {self._evaluate_with} carry estimate to correct "
                           "with; calibrate_eval_means() first")


class CarryVariancePenalty(Regularizer):
    """R^c (App. 2.6.1, eqs. 2.2-2.3): for each tracked layer, the mean over neurons of
    ``mean_batch (c - m)^2``, ``c`` Algorithm 1's carries and ``m`` the running mean; summed
    over layers. Reads the carries the :class:`PackingSim` hooks left from this forward."""

    name = "carry_variance"

    def __init__(self, coef, sim, stages=("finetune",)):
        super().__init__(coef, stages)
        self.sim = sim

    def penalty(self, model):
        terms = []
        for _, st in self.sim.tracked():
            if st.last is None or st.running_mean is None:
                continue
            terms.append(((st.last - st.running_mean) ** 2).mean(0).mean().float())
        return torch.stack(terms).sum() if terms else torch.zeros(())
