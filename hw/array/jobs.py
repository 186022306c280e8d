"""One layer for the array: its shape, the host driver's load program, the reference outputs.

No Amaranth import. The host side of the array is three functions:

* :func:`check_job` — does the layer fit this array (buffers, widths, descriptor fields)?
  Every refusal is a :class:`~wrapkit.common.errors.UserError` naming the parameter and the
  minimum the layer needs.
* :func:`load_program` — the ``(ld_sel, ld_addr, ld_data)`` writes that put the layer
  descriptor, the activations, the weights and the requantization tables into the array.
* :func:`reference_outputs` — what the array must write, from ``wrapkit.ref`` alone
  (im2col by numpy windows, exact int64 dot products, ``wrap``/``cyclic``,
  ``ref.requant.requantize``), independent of the controller's address arithmetic.

Buffer layouts (also in the design's manifest)::

    activation buffer  address c*H*W + y*W + x       holds code of input (c, y, x)
    weight buffer      address j*out_channels + o    holds the code of weight (o, j),
                                                     j = (c*k + ky)*k + kx (PyTorch order;
                                                     c counts the group's input channels)
    output buffer      address o*OH*OW + y*OW + x    holds output (o, y, x)
    mult/bias/shift    address o                     requantization constants of channel o

A linear layer is a 1x1 convolution of a 1x1 map whose ``in_features`` are the channels
(the flattened C*H*W input of the previous layer, in PyTorch's order).

A grouped convolution (``groups`` > 1; depthwise when ``groups = in_channels``) keeps the
buffer layouts: output channel ``o`` of group ``g = o // (out_channels/groups)`` reads input
channels ``g*(in_channels/groups) ..`` only, its fan-in is ``(in_channels/groups)*k*k`` and
the weight buffer holds ``out_channels x fan_in`` codes.

A matmul of two activation tensors ``A (M x K) @ B (K x N)`` (:meth:`LayerShape.matmul`) is a
1x1 convolution over an ``M x 1`` map with ``K`` input channels and ``N`` output channels whose
"weights" are the codes of ``B``: the activation buffer holds ``A`` transposed (address
``k*M + m``, the output layout of a layer that produced ``A``) and the weight buffer ``B`` row
by row (address ``k*N + n``), as uniform two's-complement codes wide enough for ``B``'s codes
(:func:`matmul_operand_mac`).
"""

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from wrapkit.ref.datapath import (
    MacConfig,
    cyclic,
    decode_weights,
    encode_weights,
    operand_range,
    wrap,
)
from wrapkit.common.checks import check_int
from wrapkit.common.errors import UserError
from wrapkit.ref import ops
from wrapkit.ref.requant import check_bounds, requantize

from .config import CYCLE_BITS, DESCRIPTOR, LOAD_TARGETS, MULT_WIDTH, ArrayConfig

__all__ = ["LAYER_KINDS", "SECOND_OPERANDS", "LayerJob", "LayerShape", "check_job",
           "descriptor", "drain_cols", "jobs_bytes", "load_jobs", "load_program", "matmul_job",
           "matmul_operand_mac", "reference_outputs", "tile_period", "words_to_outputs"]

LAYER_KINDS = ("conv2d", "linear")
#: What the weight buffer holds: trained weights, or the second activation tensor of a matmul.
SECOND_OPERANDS = ("weights", "activations")


def _pos_int(name, value, lo=1, hi=1 << 24):
    return check_int(name, value, lo, hi)


@dataclass(frozen=True)
class LayerShape:
    """Geometry of one conv2d, linear or matmul job (batch 1).

    Parameters
    ----------
    kind : "conv2d" | "linear"
    in_channels : int
        Input channels (``in_features`` of a linear layer, ``K`` of a matmul).
    in_h, in_w : int
        Input height and width (1 for linear; ``M`` and 1 for a matmul).
    out_channels : int
    kernel, stride, padding : int
        Square kernel, stride and zero padding (1, 1, 0 for linear and matmul).
    groups : int
        Convolution groups: divides ``in_channels`` and ``out_channels`` (depthwise:
        ``groups = in_channels``).
    dilation : int, 1..8
        Kernel dilation: the taps of a window lie ``dilation`` apart.
    second_operand : "weights" | "activations"
        "activations": a matmul (:meth:`matmul`) whose weight buffer holds the codes of the
        second activation tensor.

    Raises
    ------
    ValueError
        Unknown kind, a value out of range, a linear layer with a spatial shape, groups that
        do not divide the channels, or a kernel that does not fit the padded input.
    """

    kind: str
    in_channels: int
    in_h: int
    in_w: int
    out_channels: int
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    groups: int = 1
    dilation: int = 1
    second_operand: str = "weights"

    def __post_init__(self):
        if self.kind not in LAYER_KINDS:
            raise ValueError(f"kind must be one of {', '.join(LAYER_KINDS)}, got {self.kind!r}")
        for name in ("in_channels", "in_h", "in_w", "out_channels"):
            object.__setattr__(self, name, _pos_int(name, getattr(self, name)))
        object.__setattr__(self, "kernel", _pos_int("kernel", self.kernel, 1, 15))
        object.__setattr__(self, "stride", _pos_int("stride", self.stride, 1, 8))
        object.__setattr__(self, "padding", _pos_int("padding", self.padding, 0, 7))
        object.__setattr__(self, "groups", _pos_int("groups", self.groups))
        object.__setattr__(self, "dilation", _pos_int("dilation", self.dilation, 1, 8))
        if self.second_operand not in SECOND_OPERANDS:
            raise ValueError(f"second_operand must be one of {', '.join(SECOND_OPERANDS)}, "
                             f"got {self.second_operand!r}")
        if self.kind == "linear" and (self.in_h, self.in_w, self.kernel, self.stride,
                                      self.padding) != (1, 1, 1, 1, 0):
            raise ValueError("a linear layer has in_h = in_w = kernel = stride = 1 and "
                             "padding = 0 (flatten its input into in_channels)")
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"groups {self.groups} must divide in_channels "
                             f"{self.in_channels} and out_channels {self.out_channels}")
        if self.kind == "linear" and (self.groups, self.dilation) != (1, 1):
            raise ValueError("a linear layer has groups = dilation = 1")
        if self.second_operand == "activations" and (
                self.kind, self.in_w, self.kernel, self.stride, self.padding, self.groups,
                self.dilation) != ("conv2d", 1, 1, 1, 0, 1, 1):
            raise ValueError("a matmul is a 1x1 convolution of an M x 1 map; build it with "
                             "LayerShape.matmul(m, k, n)")
        if self.out_h < 1 or self.out_w < 1:
            dilated = f" (dilation {self.dilation})" if self.dilation > 1 else ""
            raise ValueError(f"kernel {self.kernel}{dilated} with padding {self.padding} does "
                             f"not fit the {self.in_h}x{self.in_w} input")

    @classmethod
    def conv2d(cls, in_channels, in_h, in_w, out_channels, kernel, stride=1, padding=0,
               groups=1, dilation=1):
        return cls("conv2d", in_channels, in_h, in_w, out_channels, kernel, stride, padding,
                   groups, dilation)

    @classmethod
    def linear(cls, in_features, out_features):
        return cls("linear", in_features, 1, 1, out_features)

    @classmethod
    def matmul(cls, m, k, n):
        """``A (m x k) @ B (k x n)``: a 1x1 convolution over an ``m x 1`` map (module
        docstring)."""
        return cls("conv2d", k, m, 1, n, second_operand="activations")

    @property
    def is_matmul(self):
        return self.second_operand == "activations"

    @property
    def span(self):
        """Extent of a dilated window, ``dilation*(kernel - 1) + 1``."""
        return self.dilation * (self.kernel - 1) + 1

    @property
    def out_h(self):
        return (self.in_h + 2 * self.padding - self.span) // self.stride + 1

    @property
    def out_w(self):
        return (self.in_w + 2 * self.padding - self.span) // self.stride + 1

    @property
    def positions(self):
        return self.out_h * self.out_w

    @property
    def group_in(self):
        """Input channels of one group."""
        return self.in_channels // self.groups

    @property
    def group_out(self):
        """Output channels of one group."""
        return self.out_channels // self.groups

    @property
    def fan_in(self):
        """Operands per dot product: one group's input channels times the window."""
        return self.group_in * self.kernel * self.kernel

    @property
    def macs(self):
        """Useful multiply-accumulates of the layer."""
        return self.positions * self.out_channels * self.fan_in

    def describe(self):
        if self.kind == "linear":
            return f"linear {self.in_channels}->{self.out_channels}"
        if self.is_matmul:
            return (f"matmul {self.in_h}x{self.in_channels} @ {self.in_channels}x"
                    f"{self.out_channels}")
        extra = (f" groups {self.groups}" if self.groups > 1 else "") + (
            f" dilation {self.dilation}" if self.dilation > 1 else "")
        return (f"conv {self.kernel}x{self.kernel}/{self.stride} pad {self.padding} "
                f"{self.in_channels}->{self.out_channels} @{self.in_h}x{self.in_w}{extra}")

    def to_dict(self):
        return {"kind": self.kind, "in_channels": self.in_channels, "in_h": self.in_h,
                "in_w": self.in_w, "out_channels": self.out_channels, "kernel": self.kernel,
                "stride": self.stride, "padding": self.padding, "groups": self.groups,
                "dilation": self.dilation, "second_operand": self.second_operand}


def matmul_operand_mac(a_bits, a_signed, b_bits, b_signed, acc_bits, k=None):
    """The :class:`~wrapkit.ref.MacConfig` of a matmul job: activations ``A``, and ``B``'s
    codes as uniform two's-complement "weights" (unsigned codes take one bit more)."""
    w_bits = max(2, b_bits + (0 if b_signed else 1))
    return MacConfig(a_bits, a_signed, "uniform", w_bits, acc_bits, k)


@dataclass
class LayerJob:
    """A layer with its data, ready to load into an array.

    Attributes
    ----------
    shape : LayerShape
    mac : wrapkit.ref.MacConfig
        The layer's own quantizers: activation bits, weight kind and bits, accumulator, k
        (a matmul's: :func:`matmul_operand_mac`).
    codes : ndarray, (in_channels, in_h, in_w)
        Input activation codes (a matmul's ``A`` transposed, ``(K, M, 1)``).
    weight_codes : ndarray, (out_channels, fan_in)
        Weight codes in the layer's encoding (``ref.encode_weights``), PyTorch order (a
        matmul's ``B`` transposed, ``(N, K)``, encoded as uniform weights).
    requant : tuple (m, b, shift, out_bits) or None
        Per-channel constants of ``ref.requant``; None writes ``y`` (the MAC output) itself.
    name : str
        For messages.
    """

    shape: LayerShape
    mac: MacConfig
    codes: np.ndarray
    weight_codes: np.ndarray
    requant: tuple | None = None
    name: str = "layer"

    def __post_init__(self):
        s = self.shape
        self.codes = np.asarray(self.codes, dtype=np.int64).reshape(s.in_channels, s.in_h,
                                                                    s.in_w)
        self.weight_codes = np.asarray(self.weight_codes, dtype=np.int64).reshape(
            s.out_channels, s.fan_in)
        lo, hi = operand_range(self.mac.act_bits, self.mac.act_signed)
        if self.codes.size and (self.codes.min() < lo or self.codes.max() > hi):
            raise ValueError(f"codes must lie in [{lo}, {hi}] for {self.mac.act_bits}-bit "
                             "activations")
        decode_weights(self.weight_codes, self.mac.weight_kind, self.mac.weight_bits)
        if self.requant is not None:
            m, b, sh, out_bits = self.requant
            m, b, sh = (np.asarray(v, dtype=np.int64).reshape(-1) for v in (m, b, sh))
            if not m.shape == b.shape == sh.shape == (s.out_channels,):
                raise ValueError(f"requant m, b, shift must each hold out_channels = "
                                 f"{s.out_channels} values")
            _pos_int("out_bits", out_bits, 1, 8)
            self.requant = (m, b, sh, int(out_bits))


def matmul_job(a, b, mac, requant=None, name="matmul"):
    """The :class:`LayerJob` of ``a (M x K) @ b (K x N)``, two activation-code matrices.

    ``mac`` is the job's MAC (:func:`matmul_operand_mac`): ``a``'s activation type, ``b``'s
    codes as uniform weights of ``mac.weight_bits``, the accumulator. The activation buffer
    gets ``a`` transposed, the weight buffer ``b`` row by row (module docstring).
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"cannot multiply {list(a.shape)} by {list(b.shape)} (need M x K "
                         "and K x N)")
    if mac.weight_kind != "uniform":
        raise ValueError("a matmul's second operand is loaded as uniform weights; build its "
                         "MacConfig with matmul_operand_mac")
    (m, k), n = a.shape, b.shape[1]
    return LayerJob(LayerShape.matmul(m, k, n), mac, a.T.reshape(k, m, 1),
                    encode_weights(b.T, "uniform", mac.weight_bits), requant, name)


# -- fitting a layer to an array ---------------------------------------------------------

def _need(param, have, need, what, flag):
    if have < need:
        raise UserError(f"{param} is {have} but {what} needs >= {need}; regenerate the "
                        f"array with {flag} {need}")


def drain_cols(cfg: ArrayConfig, shape: LayerShape):
    """Columns the drain lane reads per tile: ``cols``; for a grouped layer whose groups
    have fewer output channels than the array has columns (depthwise), only those."""
    return cfg.cols if shape.groups == 1 else min(cfg.cols, shape.group_out)


def tile_period(cfg: ArrayConfig, shape: LayerShape):
    """Cycles between tiles: ``max(K, R*D + C - D)`` with ``D`` :func:`drain_cols`.

    The feed needs ``K``; the drain lane reads PE ``(r, c)`` of a tile ``c*R + r`` cycles
    after the tile's last (bottom-right) result is captured, and the next tile's result
    replaces it ``P - (R - 1 - r) - (C - 1 - c)`` cycles after that, so every read in time
    needs ``P >= R*D + C - D`` (``R*C`` when all columns are read).
    """
    d = drain_cols(cfg, shape)
    return max(shape.fan_in, cfg.rows * d + cfg.cols - d)


def descriptor(cfg: ArrayConfig, shape: LayerShape, out_bits=None):
    """The layer descriptor registers (see :data:`~.config.DESCRIPTOR`).

    ``out_bits`` None means "write y unrequantized". Values are not range-checked here
    (:func:`check_job` does that).
    """
    s, k, p = shape.stride, shape.kernel, shape.padding
    w, ow = shape.in_w, shape.out_w
    adv_y, adv_x = divmod(cfg.rows, ow)
    d = {
        "fan_in": shape.fan_in,
        "kernel": k,
        "in_h": shape.in_h,
        "in_w": w,
        "in_hw": shape.in_h * w,
        "out_w": ow,
        "positions": shape.positions,
        "out_channels": shape.out_channels,
        "stride": s,
        "pad": p,
        "adv_x": adv_x,
        "adv_ix": adv_x * s,
        "adv_iy": adv_y * s,
        "adv_addr": adv_y * s * w + adv_x * s,
        "ow_s": ow * s,
        "wrap_addr": s * w - ow * s,
        "base0": -p * w - p,
        "requant": 0 if out_bits is None else 1,
        "qmax": 0 if out_bits is None else (1 << out_bits) - 1,
        "group_out": shape.group_out,
        "group_in_words": shape.group_in * shape.in_h * w,
        "group_out_words": shape.group_out * shape.positions,
        "dilation": shape.dilation,
        "dil_row": shape.dilation * w,
        "drain_cols": drain_cols(cfg, shape),
        "period": tile_period(cfg, shape),
    }
    assert list(d) == [f[0] for f in DESCRIPTOR]
    return d


def check_job(cfg: ArrayConfig, job: LayerJob):
    """Raise :class:`UserError` unless ``job`` runs on an array of configuration ``cfg``.

    Checks the operand and accumulator widths against the array's MAC, the buffers and
    requantization tables against the layer's sizes, the requantization constants against
    the multiplier and bias widths, and every descriptor value against its register.
    Messages name the array parameter (and its ``wrapkit rtl array`` flag) and the minimum.
    """
    if not isinstance(cfg, ArrayConfig):
        raise TypeError(f"cfg must be an ArrayConfig, not {cfg!r}")
    s, lm, am = job.shape, job.mac, cfg.mac
    where = f"layer {job.name} ({s.describe()})"
    # Operands: a narrower layer operand fits a wider array operand exactly.
    if lm.act_signed and not am.act_signed:
        raise UserError(f"{where} has signed activations but the array's are unsigned; "
                        "regenerate the array with --act-signed")
    act_need = lm.act_bits + (1 if am.act_signed and not lm.act_signed else 0)
    _need("act_bits", am.act_bits, act_need, f"{where} ({lm.act_bits}-bit "
          f"{'signed' if lm.act_signed else 'unsigned'} activations)", "--act-bits")
    if s.is_matmul and am.weight_kind != "uniform":
        raise UserError(f"weight_kind is {am.weight_kind} but {where} loads its second "
                        f"operand into the weight buffer as {lm.weight_bits}-bit uniform "
                        "codes; regenerate the array with --weight-kind uniform "
                        f"--weight-bits {lm.weight_bits}")
    if lm.weight_kind != am.weight_kind:
        raise UserError(f"weight_kind is {am.weight_kind} but {where} has {lm.weight_kind} "
                        f"weights; regenerate the array with --weight-kind {lm.weight_kind}")
    if lm.weight_kind == "uniform":
        what = (f"{where} (second operand: {lm.weight_bits}-bit two's-complement codes)"
                if s.is_matmul else where)
        _need("weight_bits", am.weight_bits, lm.weight_bits, what, "--weight-bits")
    # The accumulator width and slope are the layer's semantics: they must be equal.
    if lm.acc_bits != am.acc_bits:
        raise UserError(f"acc_bits is {am.acc_bits} but {where} accumulates in "
                        f"{lm.acc_bits} bits; regenerate the array with --acc-bits "
                        f"{lm.acc_bits}")
    if lm.k != am.k:
        flag = "--no-cyclic" if lm.k is None else f"--k {lm.k}"
        raise UserError(f"k is {am.k} but {where} has k = {lm.k}; regenerate the array "
                        f"with {flag}")
    _need("act_depth", cfg.act_depth, s.in_channels * s.in_h * s.in_w,
          f"{where} (in_channels*H*W words)", "--act-depth")
    _need("weight_depth", cfg.weight_depth, s.out_channels * s.fan_in,
          f"{where} (out_channels*fan_in words)", "--weight-depth")
    _need("out_depth", cfg.out_depth, s.out_channels * s.positions,
          f"{where} (out_channels*OH*OW words)", "--out-depth")
    out_bits = None
    if job.requant is not None:
        m, b, sh, out_bits = job.requant
        _need("out_bits", cfg.out_bits, out_bits, f"{where} ({out_bits}-bit output codes)",
              "--out-bits")
        _need("max_channels", cfg.max_channels, s.out_channels, where, "--max-channels")
        lim = 1 << (MULT_WIDTH - 1)
        if m.size and (m.min() < -lim or m.max() >= lim):
            raise UserError(f"{where}: requantization multiplier {int(np.abs(m).max())} does "
                            f"not fit the array's {MULT_WIDTH}-bit signed multiplier "
                            "(ref.requant.fixed_point keeps |m| <= 2^29)")
        try:
            check_bounds(m, b, sh, am.acc_bits)
        except ValueError as exc:
            raise UserError(f"{where}: {exc}") from None
    for name, value in descriptor(cfg, s, out_bits).items():
        width, signed = cfg.field_bits(name)
        lo, hi = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else (0, (1 << width) - 1)
        if not lo <= value <= hi:
            raise UserError(f"{where}: descriptor field {name} = {value} does not fit its "
                            f"{width}-bit register; regenerate the array with larger buffers "
                            "(--act-depth/--weight-depth/--out-depth)")
    from .cycles import layer_cycles
    total = layer_cycles(cfg, s).total
    if total >= 1 << CYCLE_BITS:
        raise UserError(f"{where} takes {total} cycles, more than the {CYCLE_BITS}-bit cycle "
                        "counter holds; use a larger array (--rows/--cols)")


# -- host driver ---------------------------------------------------------------------------

def _array_weight_codes(cfg, job):
    """The layer's weight codes re-encoded for the array (a narrower uniform weight becomes
    the same value in the array's wider two's complement)."""
    lm, am = job.mac, cfg.mac
    values = decode_weights(job.weight_codes, lm.weight_kind, lm.weight_bits)
    return encode_weights(values, am.weight_kind, am.weight_bits)


def load_program(cfg: ArrayConfig, job: LayerJob):
    """The load-port writes for ``job``: three int64 arrays ``(sel, addr, data)``.

    One write per clock cycle with ``ld_en = 1``; ``data`` is the value to write (negative
    values are driven as 64-bit two's complement). Order: descriptor, activations, weights,
    then (when requantizing) multipliers, biases and shifts. Call :func:`check_job` first.
    """
    s = job.shape
    out_bits = None if job.requant is None else job.requant[3]
    desc = descriptor(cfg, s, out_bits)
    parts = [(LOAD_TARGETS["desc"], np.arange(len(desc)), np.array(list(desc.values())))]
    act_mask = (1 << cfg.mac.act_bits) - 1
    parts.append((LOAD_TARGETS["act"], np.arange(job.codes.size), job.codes.reshape(-1)
                  & act_mask))
    w = _array_weight_codes(cfg, job)               # (out_channels, fan_in)
    parts.append((LOAD_TARGETS["weight"], np.arange(w.size), w.T.reshape(-1)))
    if job.requant is not None:
        m, b, sh, _ = job.requant
        for target, values in (("mult", m), ("bias", b), ("shift", sh)):
            parts.append((LOAD_TARGETS[target], np.arange(len(values)), values))
    sel = np.concatenate([np.full(len(a), t, dtype=np.int64) for t, a, _ in parts])
    addr = np.concatenate([a for _, a, _ in parts]).astype(np.int64)
    data = np.concatenate([d for _, _, d in parts]).astype(np.int64)
    return sel, addr, data


def reference_outputs(job: LayerJob):
    """What the array writes, from ``wrapkit.ref`` only.

    Returns
    -------
    dict
        ``"z"`` exact dot products, ``"y"`` MAC outputs (``wrap`` or ``cyclic``) and
        ``"out"`` the written values (requantized codes, or ``y``), each
        ``(out_channels, positions)`` int64.
    """
    s = job.shape
    weights = decode_weights(job.weight_codes, job.mac.weight_kind, job.mac.weight_bits)
    if s.is_matmul:                                        # A (M x K) @ B (K x N)
        a = job.codes.reshape(s.in_channels, s.in_h).T
        z = ops.matmul(a[None], weights.T[None])[0]
    elif s.groups == 1 and s.dilation == 1:
        p = s.padding
        x = np.pad(job.codes, ((0, 0), (p, p), (p, p)))
        win = sliding_window_view(x, (s.kernel, s.kernel), axis=(1, 2))[:, ::s.stride,
                                                                        ::s.stride]
        win = win[:, :s.out_h, :s.out_w]                  # (C, OH, OW, k, k)
        rows = win.transpose(1, 2, 0, 3, 4).reshape(s.positions, s.fan_in)
        z = rows @ weights.T                               # (positions, out_channels)
    else:
        w4 = weights.reshape(s.out_channels, s.group_in, s.kernel, s.kernel)
        z = ops.conv2d(job.codes[None], w4, stride=s.stride, padding=s.padding,
                       dilation=s.dilation, groups=s.groups)[0]
        z = z.reshape(s.out_channels, s.positions).T
    cfg = job.mac
    y = wrap(z, cfg.acc_bits) if cfg.k is None else cyclic(z, cfg.acc_bits, cfg.k)
    if job.requant is None:
        out = y
    else:
        m, b, sh, out_bits = job.requant
        out = requantize(y, m, b, sh, (1 << out_bits) - 1)
    return {"z": z.T.copy(), "y": y.T.copy(), "out": out.T.copy()}


def words_to_outputs(cfg: ArrayConfig, job: LayerJob, words):
    """Output-buffer words (addresses 0 .. out_channels*positions - 1) -> int64
    ``(out_channels, positions)``: codes as they are, or ``y`` read as signed acc_bits."""
    s = job.shape
    w = np.asarray(words, dtype=np.int64).reshape(s.out_channels, s.positions)
    if job.requant is None:
        return wrap(w, cfg.mac.acc_bits)
    return w


# -- job files (how a layer travels to a cocotb testbench) --------------------------------

def jobs_bytes(jobs):
    """``jobs`` (LayerJob list) as the bytes of one ``.npz`` file (no pickle)."""
    import io
    import json

    meta, arrays = [], {}
    for i, job in enumerate(jobs):
        s = job.shape
        meta.append({"name": job.name, "mac": job.mac.to_dict(), "shape": s.to_dict(),
                     "out_bits": None if job.requant is None else job.requant[3]})
        arrays[f"codes_{i}"] = job.codes
        arrays[f"weights_{i}"] = job.weight_codes
        if job.requant is not None:
            for key, value in zip(("m", "b", "s"), job.requant[:3]):
                arrays[f"{key}_{i}"] = value
    buf = io.BytesIO()
    np.savez(buf, meta=np.array(json.dumps(meta)), **arrays)
    return buf.getvalue()


def load_jobs(path):
    """The LayerJob list from a file holding :func:`jobs_bytes`."""
    import json

    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        jobs = []
        for i, entry in enumerate(meta):
            rq = None
            if entry["out_bits"] is not None:
                rq = (data[f"m_{i}"], data[f"b_{i}"], data[f"s_{i}"], entry["out_bits"])
            jobs.append(LayerJob(LayerShape(**entry["shape"]), MacConfig.from_dict(entry["mac"]),
                                 data[f"codes_{i}"], data[f"weights_{i}"], rq, entry["name"]))
    return jobs
