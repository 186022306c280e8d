"""Behavioural Verilog models of the reference semantics, written from the formulas.

The proofs compare the generated RTL with these models, so the models must not share code
or structure with the generators in ``wrapkit.hw``: each is written straight from the
definitions in docs/datapath.md, with every intermediate value held in a register or wire
wide enough that nothing overflows, and wrap-around written as the one explicit "keep the
low bits" step the definition asks for. They are themselves checked against
``wrapkit.ref`` by simulation (:mod:`wrapkit.formal.model_check`).

* :func:`cyclic_model_verilog` — ``f(m)`` of the cyclic activation (§4), combinational,
  with an output wide enough for the exact formula value (no truncation to ``b`` bits: the
  proof then also shows the hardware's ``b``-bit output loses nothing).
* :func:`mac_model_verilog` — the MAC's cycle semantics (§3): operations travel through
  ``latency - 1`` operand registers, then
  ``acc <= wrap_acc((clr ? 0 : acc) + (en ? wrap_prod(a * w) : 0))``; a synchronous reset
  clears every register; ``y`` is the cyclic model of ``acc``.

Worked example, ``b = 8, k = 2`` (``T = 85``): the cyclic model's output for ``m = 86`` is
``2 * (128 - 86) = 84`` and for ``m = -128`` it is 0, as in the table of docs/datapath.md.
"""

from wrapkit.ref.datapath import MacConfig, decode_weights

__all__ = ["CYCLIC_MODEL", "MAC_MODEL", "cyclic_model_verilog", "cyclic_model_width",
           "mac_model_verilog"]

#: Module names of the generated models (the DUT's names never collide: they start "mac_" or
#: "cyclic_acc").
CYCLIC_MODEL = "wrapkit_cyclic_model"
MAC_MODEL = "wrapkit_mac_model"


def cyclic_model_width(acc_bits, k):
    """Width of the cyclic model's internal values and output.

    ``k * (2^(b-1) + |m|)`` is below ``k * 2^b``, so ``b + bit_length(k) + 1`` bits hold every
    intermediate of the formula as a signed number; one more bit keeps a margin.
    """
    return acc_bits + int(k).bit_length() + 2


def _sd(width, value):
    """A sized signed Verilog literal (negative values as the negation of a literal)."""
    return f"-{width}'sd{-value}" if value < 0 else f"{width}'sd{value}"


def cyclic_model_verilog(acc_bits, k, name=CYCLIC_MODEL):
    """Verilog of ``y = f(m)`` for a ``acc_bits``-bit input and slope ``k``.

    Parameters
    ----------
    acc_bits : int, >= 2
        Width of the input ``m`` (signed).
    k : int, >= 1
        Slope of the fold-back.
    name : str
        Module name.

    Returns
    -------
    str
        One module ``name(m, y)``: ``m`` signed ``acc_bits`` bits, ``y`` signed
        :func:`cyclic_model_width` bits (the exact value of the formula).
    """
    if acc_bits < 2 or k < 1:
        raise ValueError(f"the cyclic activation needs acc_bits >= 2 and k >= 1, "
                         f"got acc_bits={acc_bits}, k={k}")
    width = cyclic_model_width(acc_bits, k)
    half = 1 << (acc_bits - 1)
    # T = floor(k * 2^(b-1) / (k + 1)), evaluated here on exact Python integers.
    threshold = (k * half) // (k + 1)
    return f"""\
// f(m) of the cyclic activation, b = {acc_bits}, k = {k} (docs/datapath.md section 4):
//   f(m) = m if |m| <= T;  k*(H - m) if m > T;  -k*(H + m) if m < -T
// with H = 2^(b-1) = {half} and T = floor(k*H/(k+1)) = {threshold}; all arithmetic in
// {width} signed bits, which hold every intermediate exactly.
module {name}(m, y);
  input signed [{acc_bits - 1}:0] m;
  output signed [{width - 1}:0] y;
  localparam signed [{width - 1}:0] H = {_sd(width, half)};
  localparam signed [{width - 1}:0] T = {_sd(width, threshold)};
  localparam signed [{width - 1}:0] K = {_sd(width, k)};
  wire signed [{width - 1}:0] mx = m;
  assign y = (mx > T) ? K * (H - mx)
           : (mx < -T) ? -(K * (H + mx))
           : mx;
endmodule
"""


def _weight_value_verilog(cfg, code, width):
    """Verilog lines computing the signed weight value ``w_val`` from the code ``code``."""
    if cfg.weight_kind == "uniform":
        return [f"  wire signed [{width - 1}:0] w_val = $signed({code});"]
    # Binary and ternary codes: the table is the reference's own decoding of every code.
    # A continuous assignment (not an always block) so simulators evaluate it at time 0.
    codes = list(range(1 << cfg.weight_code_bits))
    values = decode_weights(codes, cfg.weight_kind, cfg.weight_bits).tolist()
    choice = _sd(width, values[-1])
    for c, v in reversed(list(zip(codes[:-1], values[:-1]))):
        choice = f"({code} == {cfg.weight_code_bits}'d{c}) ? {_sd(width, v)} : {choice}"
    return [f"  wire signed [{width - 1}:0] w_val = {choice};"]


def mac_model_verilog(cfg, latency, name=MAC_MODEL, cyclic_name=CYCLIC_MODEL):
    """Verilog of the MAC's cycle semantics for ``cfg`` with ``latency`` clock edges.

    Parameters
    ----------
    cfg : wrapkit.ref.MacConfig
    latency : int, >= 1
        Clock edges from presenting an operation to seeing it in ``acc`` (the manifest's
        ``latency``).
    name, cyclic_name : str
        Module names of the MAC model and of the cyclic model it instantiates (the cyclic
        model's text comes from :func:`cyclic_model_verilog` and must be compiled with it
        when ``cfg.k`` is set).

    Returns
    -------
    str
        Module ``name(clk, rst, a, w, en, clr, acc, y)``: ``a``, ``w`` as the RTL's ports,
        ``acc`` signed ``acc_bits``; ``y`` (the exact cyclic value,
        :func:`cyclic_model_width` bits) only when ``cfg.k`` is set.
    """
    if not isinstance(cfg, MacConfig):
        raise TypeError(f"cfg must be a MacConfig, not {cfg!r}")
    if not isinstance(latency, int) or latency < 1:
        raise ValueError(f"latency must be an integer >= 1, got {latency!r}")
    a_bits, code_bits, acc_bits, prod_bits = (cfg.act_bits, cfg.weight_code_bits,
                                              cfg.acc_bits, cfg.prod_bits)
    # Exact widths: a as a signed number needs a_bits + 1 bits, the weight code_bits + 1;
    # their product fits the sum of the two.
    a_w, w_w = a_bits + 1, code_bits + 1
    full = a_w + w_w
    wide = max(acc_bits, prod_bits) + 1
    stages = latency - 1
    ports = "clk, rst, a, w, en, clr, acc" + (", y" if cfg.k is not None else "")
    lines = [
        f"// The MAC's cycle semantics (docs/datapath.md section 3) for {cfg.name}:",
        f"//   {a_bits}-bit {'signed' if cfg.act_signed else 'unsigned'} a, {cfg.weight_kind} "
        f"weight codes of {code_bits} bit(s), product wrapped to {prod_bits} bits,",
        f"//   accumulator wrapped to {acc_bits} bits, "
        f"{'no cyclic output' if cfg.k is None else f'y = f(acc) with k = {cfg.k}'}.",
        f"// Latency {latency}: an operation waits in {stages} operand register(s), then",
        "//   acc <= wrap((clr ? 0 : acc) + (en ? wrap(a * w) : 0));",
        "// rst (synchronous) clears every register.",
        f"module {name}({ports});",
        "  input clk;",
        "  input rst;",
        f"  input [{a_bits - 1}:0] a;",
        f"  input [{code_bits - 1}:0] w;",
        "  input en;",
        "  input clr;",
        f"  output reg signed [{acc_bits - 1}:0] acc = 0;",
    ]
    widths = {"a": a_bits, "w": code_bits, "en": 1, "clr": 1}
    for stage in range(1, stages + 1):
        for sig, width in widths.items():
            lines.append(f"  reg [{width - 1}:0] {sig}_d{stage} = 0;")
    # The operation as it reaches the accumulator: from the last operand register, or
    # straight from the ports when the latency is 1.
    src = {sig: f"{sig}_d{stages}" if stages else sig for sig in widths}
    a_val = (f"$signed({src['a']})" if cfg.act_signed else f"$signed({{1'b0, {src['a']}}})")
    lines.append(f"  wire signed [{a_w - 1}:0] a_val = {a_val};")
    lines += _weight_value_verilog(cfg, src["w"], w_w)
    lines += [
        f"  wire signed [{full - 1}:0] product = a_val * w_val;",
        f"  wire signed [{prod_bits - 1}:0] prod = product[{prod_bits - 1}:0];",
        f"  wire signed [{wide - 1}:0] base = {src['clr']} ? {_sd(wide, 0)} : acc;",
        f"  wire signed [{wide - 1}:0] addend = {src['en']} ? prod : {_sd(wide, 0)};",
        f"  wire signed [{wide - 1}:0] sum = base + addend;",
    ]
    lines.append("  always @(posedge clk) begin")
    for stage in range(1, stages + 1):
        for sig in widths:
            prev = sig if stage == 1 else f"{sig}_d{stage - 1}"
            lines.append(f"    {sig}_d{stage} <= rst ? 1'b0 : {prev};"
                         if widths[sig] == 1 else
                         f"    {sig}_d{stage} <= rst ? {widths[sig]}'d0 : {prev};")
    lines.append(f"    acc <= rst ? {acc_bits}'sd0 : sum[{acc_bits - 1}:0];")
    lines.append("  end")
    if cfg.k is not None:
        lines += [f"  output signed [{cyclic_model_width(acc_bits, cfg.k) - 1}:0] y;",
                  f"  {cyclic_name} cyclic_of_acc(.m(acc), .y(y));"]
    lines.append("endmodule")
    return "\n".join(lines) + "\n"
