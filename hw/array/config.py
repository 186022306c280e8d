"""Parameters of the layer datapath (:class:`ArrayConfig`) and its port/descriptor layout.

No Amaranth import: the host driver, the manifest reader and the cocotb testbench use this
module without elaborating any hardware.
"""

from dataclasses import dataclass

from wrapkit.common.checks import ParameterValueError, check_int
from wrapkit.ref.datapath import MacConfig
from wrapkit.ref.requant import MULT_BITS

__all__ = [
    "ArrayConfig",
    "BIAS_BITS",
    "CYCLE_BITS",
    "DESCRIPTOR",
    "LD_DATA_BITS",
    "LOAD_TARGETS",
    "MULT_WIDTH",
    "SHIFT_BITS",
    "array_hierarchy",
    "array_ports",
]

#: Width of the load port's data bus: the widest loaded value is a 64-bit requant bias.
LD_DATA_BITS = 64
#: Signed width of a requantization multiplier: ``ref.requant.fixed_point`` keeps
#: ``|m| <= 2^MULT_BITS`` (29 significant bits, rounding may reach 2^29), plus the sign.
MULT_WIDTH = MULT_BITS + 2
#: Signed width of a requantization bias: ``ref.requant.check_bounds`` keeps
#: ``|y·m| + |b| < 2^62``, so the bias and the sum ``y·m + b`` fit 64 bits.
BIAS_BITS = 64
#: Width of a requantization shift (``check_bounds`` allows 0..62).
SHIFT_BITS = 6
#: Width of the busy-cycle counter port ``cycles``.
CYCLE_BITS = 32

#: ``ld_sel`` codes: which buffer or register file a load writes.
LOAD_TARGETS = {"act": 0, "weight": 1, "mult": 2, "bias": 3, "shift": 4, "desc": 5}

#: The layer descriptor: register index -> (name, signed, meaning). The host driver
#: (:func:`wrapkit.hw.array.jobs.descriptor`) computes every value from the layer shape;
#: the hardware needs no multiplier or divider to sequence a layer.
DESCRIPTOR = (
    ("fan_in", False, "K = in_channels * kernel^2: operands per dot product"),
    ("kernel", False, "kernel size k (k x k window)"),
    ("in_h", False, "input height H"),
    ("in_w", False, "input width W"),
    ("in_hw", False, "H * W: activation buffer distance between input channels"),
    ("out_w", False, "output width OW"),
    ("positions", False, "OH * OW: output positions"),
    ("out_channels", False, "output channels"),
    ("stride", False, "stride s"),
    ("pad", False, "zero padding p on every side"),
    ("adv_x", False, "rows mod OW: per position tile, each row advances adv_y rows and "
                     "adv_x columns of the output map"),
    ("adv_ix", False, "adv_x * s"),
    ("adv_iy", False, "(rows div OW) * s"),
    ("adv_addr", False, "adv_iy * W + adv_ix"),
    ("ow_s", False, "OW * s"),
    ("wrap_addr", True, "s * W - OW * s: address correction when a row passes the map's "
                        "right edge"),
    ("base0", True, "-p * W - p: buffer address of output position 0's window corner"),
    ("requant", False, "1: write clamp((y*m + b) >> s, 0, qmax); 0: write y itself"),
    ("qmax", False, "largest output code, 2^out_bits - 1 of this layer"),
    ("group_out", False, "output channels per group, out_channels / groups (out_channels "
                         "when groups = 1)"),
    ("group_in_words", False, "(in_channels / groups) * H * W: activation buffer distance "
                              "between groups"),
    ("group_out_words", False, "group_out * OH * OW: output buffer distance between groups"),
    ("dilation", False, "kernel dilation d: window taps lie d apart"),
    ("dil_row", False, "d * W: activation buffer distance between window rows"),
    ("drain_cols", False, "columns the drain lane reads per tile: cols, or for a grouped "
                          "layer min(cols, group_out) (the others hold no output)"),
    ("period", False, "cycles between tiles, max(K, rows*drain_cols + cols - drain_cols): "
                      "the feed's K operands, or the drain lane's reads before the next "
                      "tile's results replace them"),
)


def _addr_bits(depth):
    return max(1, (depth - 1).bit_length())


@dataclass(frozen=True)
class ArrayConfig:
    """One layer datapath: an output-stationary ``rows`` x ``cols`` array of WrapNet MACs.

    Parameters
    ----------
    rows : int, 1..64
        Output positions computed at once (one array row each).
    cols : int, 1..64
        Output channels computed at once (one array column each).
    mac : wrapkit.ref.MacConfig
        Every processing element's MAC: activation width, weight kind, accumulator width
        (every adder of the array is this wide and wraps) and cyclic slope ``k``.
    out_bits : int, 1..8
        Width of the requantized output codes (the next layer's activations).
    act_depth, weight_depth, out_depth : int, 2..2^20
        Words of the activation, weight and output buffers (one code per word).
    max_channels : int, 2..2^16
        Entries of the per-channel requantization tables (most output channels).

    Raises
    ------
    TypeError
        A parameter has the wrong type.
    ValueError
        A parameter is out of range (the message names it, the range and the value).
    """

    rows: int
    cols: int
    mac: MacConfig
    out_bits: int = 8
    act_depth: int = 4096
    weight_depth: int = 4096
    out_depth: int = 4096
    max_channels: int = 256

    def __post_init__(self):
        check_int("rows", self.rows, 1, 64)
        check_int("cols", self.cols, 1, 64)
        if not isinstance(self.mac, MacConfig):
            raise TypeError(f"mac must be a MacConfig, not {self.mac!r}")
        if self.mac.acc_bits > 32:
            # ref.requant bounds |y| by 2^31; wider accumulators are not requantized exactly.
            raise ParameterValueError("acc_bits", "must be in [2, 32] for an array, got "
                                                  f"{self.mac.acc_bits}")
        check_int("out_bits", self.out_bits, 1, 8)
        for name in ("act_depth", "weight_depth", "out_depth"):
            check_int(name, getattr(self, name), 2, 1 << 20)
        check_int("max_channels", self.max_channels, 2, 1 << 16)

    # -- derived widths ------------------------------------------------------------------

    @property
    def dim_bits(self):
        """Width of the unsigned descriptor fields (sizes, counts, buffer offsets)."""
        biggest = max(self.act_depth, self.weight_depth, self.out_depth, self.max_channels)
        # Row advances span up to rows*stride input rows; 3 spare bits cover stride <= 8.
        return max(biggest.bit_length(), (self.rows * self.cols).bit_length()) + 4

    @property
    def coord_bits(self):
        """Signed width of coordinates and addresses inside the controller."""
        return self.dim_bits + 2

    @property
    def act_addr_bits(self):
        return _addr_bits(self.act_depth)

    @property
    def weight_addr_bits(self):
        return _addr_bits(self.weight_depth)

    @property
    def out_addr_bits(self):
        return _addr_bits(self.out_depth)

    @property
    def channel_addr_bits(self):
        return _addr_bits(self.max_channels)

    @property
    def ld_addr_bits(self):
        return max(self.act_addr_bits, self.weight_addr_bits, self.channel_addr_bits,
                   (len(DESCRIPTOR) - 1).bit_length())

    @property
    def out_word_bits(self):
        """Output buffer word: a code (``out_bits``) or, unrequantized, ``y`` (acc_bits)."""
        return max(self.out_bits, self.mac.acc_bits)

    def field_bits(self, name):
        """(width, signed) of descriptor field ``name``."""
        for fname, signed, _ in DESCRIPTOR:
            if fname == name:
                if name == "requant":
                    return 1, False
                if name == "qmax":
                    return self.out_bits, False
                return (self.coord_bits, True) if signed else (self.dim_bits, False)
        raise KeyError(f"no descriptor field {name!r}")

    @property
    def name(self):
        """Stable design name, e.g. ``array_r8c8_a3u_wb_acc8_k2_q8_a4096_w4096_o4096_c256``."""
        return (f"array_r{self.rows}c{self.cols}_{self.mac.name[4:]}_q{self.out_bits}_"
                f"a{self.act_depth}_w{self.weight_depth}_o{self.out_depth}_"
                f"c{self.max_channels}")

    @property
    def pes(self):
        return self.rows * self.cols

    def to_dict(self):
        return {"rows": self.rows, "cols": self.cols, "mac": self.mac.to_dict(),
                "out_bits": self.out_bits, "act_depth": self.act_depth,
                "weight_depth": self.weight_depth, "out_depth": self.out_depth,
                "max_channels": self.max_channels}

    @classmethod
    def from_dict(cls, d):
        return cls(rows=d["rows"], cols=d["cols"], mac=MacConfig.from_dict(d["mac"]),
                   out_bits=d["out_bits"], act_depth=d["act_depth"],
                   weight_depth=d["weight_depth"], out_depth=d["out_depth"],
                   max_channels=d["max_channels"])


def array_ports(cfg):
    """(name, direction, width, signed) of the array's ports after ``clk`` and ``rst``.

    The order is the component's signature order, which the manifest lists.
    """
    return [
        ("ld_en", "input", 1, False),
        ("ld_sel", "input", 3, False),
        ("ld_addr", "input", cfg.ld_addr_bits, False),
        ("ld_data", "input", LD_DATA_BITS, False),
        ("start", "input", 1, False),
        ("rd_addr", "input", cfg.out_addr_bits, False),
        ("busy", "output", 1, False),
        ("done", "output", 1, False),
        ("cycles", "output", CYCLE_BITS, False),
        ("rd_data", "output", cfg.out_word_bits, False),
    ]


def array_hierarchy(cfg, top):
    """Instance path -> area group of a generated array (the manifest's ``hierarchy``).

    The paths follow the sub-components of :class:`~.top.LayerArray`: processing elements
    in ``grid`` (group "pe": forwarding and result registers, with their "multiplier" and
    "accumulator"), the drain lane's own logic ("drain") with its cyclic activation and
    requantizer, the controller ("controller"), the operand fetch's masks and skew lines
    ("fetch") and every buffer ("memory": activations, weights, the requantization tables,
    outputs). Instances not listed (delay lines) belong to the group of the unit around
    them; the top's own logic (load-port decoding, descriptor registers) is auxiliary.
    """
    groups = {"controller": "controller", "fetch": "fetch",
              "fetch.act_buf": "memory", "fetch.weight_buf": "memory"}
    for r in range(cfg.rows):
        for c in range(cfg.cols):
            pe = f"grid.pe_{r}_{c}"
            groups.update({pe: "pe", f"{pe}.mult": "multiplier", f"{pe}.accum": "accumulator"})
    groups["drain"] = "drain"
    if cfg.mac.k is not None:
        groups["drain.cyclic"] = "cyclic"
    groups["drain.requant"] = "requant"
    groups.update({f"drain.{name}": "memory" for name in ("mult_tab", "bias_tab", "shift_tab")})
    groups["out_buf"] = "memory"
    groups[top] = "auxiliary"
    return groups
