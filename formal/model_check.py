"""Trust in the models: simulate them with Icarus Verilog and compare with ``wrapkit.ref``.

A proof shows the RTL equals a behavioural model; these checks show the model equals the
reference (``wrapkit.ref``, the project's single definition of the semantics), so that the
two together tie the RTL to the reference:

* :func:`check_cyclic_model` — every input of widths up to :data:`EXHAUSTIVE_BITS` (beyond
  that, the boundary values around ``0``, ``±T`` and ``±2^(b-1)`` plus random ones) against
  :func:`wrapkit.ref.cyclic`;
* :func:`check_mac_model` — a random operation stream with clears and resets against
  :func:`reference_stream` (``ref.mac_stream`` with the manifest's reset semantics).

Each returns the number of values compared and raises :class:`ModelMismatch` on the first
disagreement.
"""

import numpy as np

from wrapkit.ref.datapath import MacConfig, cyclic, cyclic_threshold, mac_stream, operand_range

from .models import (CYCLIC_MODEL, MAC_MODEL, cyclic_model_verilog, cyclic_model_width,
                     mac_model_verilog)
from .tools import require_tools, run_tool

__all__ = ["EXHAUSTIVE_BITS", "ModelMismatch", "check_cyclic_model", "check_mac_model",
           "reference_stream"]

#: Widest cyclic model simulated on every input (2^16 values take well under a second).
EXHAUSTIVE_BITS = 16


class ModelMismatch(AssertionError):
    """A behavioural model disagrees with ``wrapkit.ref`` (a bug in the model generator)."""


def _hex(values, bits):
    mask = (1 << bits) - 1
    digits = (bits + 3) // 4
    return "".join(f"{int(v) & mask:0{digits}x}\n" for v in values)


def _simulate(workdir, sources, testbench, stimulus):
    (workdir / "stimulus.hex").write_text(stimulus, encoding="ascii")
    (workdir / "tb.v").write_text(testbench, encoding="utf-8")
    for name, text in sources.items():
        (workdir / name).write_text(text, encoding="utf-8")
    run_tool(["iverilog", "-g2012", "-o", "tb.vvp", *sources, "tb.v"], workdir)
    proc = run_tool(["vvp", "-n", "tb.vvp"], workdir)
    return [line.split() for line in proc.stdout.splitlines() if line and line[0] in "-0123456789"]


def _cyclic_inputs(acc_bits, k, rng, samples):
    half = 1 << (acc_bits - 1)
    if acc_bits <= EXHAUSTIVE_BITS:
        return np.arange(-half, half, dtype=np.int64)
    t = cyclic_threshold(acc_bits, k)
    edges = [0, 1, -1, t, t + 1, t - 1, -t, -t - 1, -t + 1, half - 1, -half, -half + 1]
    drawn = rng.integers(-half, half, size=samples, dtype=np.int64)
    return np.concatenate([np.array(edges, dtype=np.int64), drawn])


def check_cyclic_model(acc_bits, k, workdir, *, samples=4096, seed=0):
    """Simulate the cyclic model on every ``m`` (or a sample for wide ``m``) against ``ref``.

    Parameters
    ----------
    acc_bits, k : int
        The unit's parameters.
    workdir : pathlib.Path
        Scratch folder.
    samples, seed : int
        Random inputs added to the boundary values when ``acc_bits`` exceeds
        :data:`EXHAUSTIVE_BITS`.

    Returns
    -------
    int
        Inputs compared.
    """
    require_tools("iverilog", "vvp")
    m = _cyclic_inputs(acc_bits, k, np.random.default_rng(seed), samples)
    width = cyclic_model_width(acc_bits, k)
    testbench = f"""\
module tb;
  reg [{acc_bits - 1}:0] mem [0:{len(m) - 1}];
  reg signed [{acc_bits - 1}:0] m;
  wire signed [{width - 1}:0] y;
  integer i;
  {CYCLIC_MODEL} model(.m(m), .y(y));
  initial begin
    $readmemh("stimulus.hex", mem);
    for (i = 0; i < {len(m)}; i = i + 1) begin
      m = mem[i];
      #1 $display("%0d", y);
    end
    $finish;
  end
endmodule
"""
    rows = _simulate(workdir, {"model.v": cyclic_model_verilog(acc_bits, k)}, testbench,
                     _hex(m, acc_bits))
    got = np.array([int(r[0]) for r in rows], dtype=np.int64)
    want = cyclic(m, acc_bits, k)
    if got.shape != want.shape:
        raise ModelMismatch(f"cyclic model b={acc_bits} k={k}: {len(got)} outputs for "
                            f"{len(want)} inputs")
    bad = np.flatnonzero(got != want)
    if bad.size:
        i = bad[0]
        raise ModelMismatch(f"cyclic model b={acc_bits} k={k}: m = {m[i]} gives {got[i]}, "
                            f"wrapkit.ref.cyclic gives {want[i]}")
    return len(m)


def _random_stream(cfg, n_ops, rng):
    lo, hi = operand_range(cfg.act_bits, cfg.act_signed)
    a = rng.integers(lo, hi + 1, size=n_ops, dtype=np.int64)
    w = rng.integers(0, 1 << cfg.weight_code_bits, size=n_ops, dtype=np.int64)
    en = (rng.random(n_ops) < 0.8).astype(np.int64)
    clr = (rng.random(n_ops) < 0.1).astype(np.int64)
    rst = (rng.random(n_ops) < 0.02).astype(np.int64)
    # Long stretches without a clear let the accumulator wrap many times.
    quiet = slice(n_ops // 4, n_ops // 2)
    clr[quiet] = 0
    rst[quiet] = 0
    return a, w, en, clr, rst


def reference_stream(cfg, latency, a, w, en, clr, rst):
    """``(acc, out)`` after each operation, from ``wrapkit.ref.mac_stream``, with resets.

    A synchronous reset clears every register on the clock edge it is sampled at: the
    operation presented with ``rst`` high and the ``latency - 1`` operations still in flight
    never reach the accumulator, which is 0 afterwards. That is exactly what operations with
    ``clr = 1, en = 0`` in their place produce, so they are rewritten that way (for latency 2
    this is the rule of ``wrapkit.sim.mac_model.MacModel``).

    Parameters
    ----------
    cfg : MacConfig
    latency : int, >= 1
    a, w, en, clr, rst : 1-D integer arrays of equal length
        One operation per cycle (``w`` as weight codes).
    """
    en = np.array(en, dtype=np.int64)
    clr = np.array(clr, dtype=np.int64)
    killed = np.zeros(len(en), dtype=bool)
    for i in np.flatnonzero(np.asarray(rst)):
        killed[max(0, i - latency + 1):i + 1] = True
    en[killed] = 0
    clr[killed] = 1
    return mac_stream(a, w, en, clr, cfg)


def check_mac_model(cfg, latency, workdir, *, n_ops=2000, seed=0):
    """Simulate the MAC model on a random stream (with clears and resets) against the reference.

    Parameters
    ----------
    cfg : wrapkit.ref.MacConfig
    latency : int
        The manifest's latency.
    workdir : pathlib.Path
        Scratch folder.
    n_ops, seed : int
        Stream length and random seed.

    Returns
    -------
    int
        Operations compared.
    """
    if not isinstance(cfg, MacConfig):
        raise TypeError(f"cfg must be a MacConfig, not {cfg!r}")
    require_tools("iverilog", "vvp")
    rng = np.random.default_rng(seed)
    a, w, en, clr, rst = _random_stream(cfg, n_ops, rng)
    total = n_ops + latency              # idle cycles at the end drain the pipeline
    pad = lambda x: np.concatenate([x, np.zeros(latency, np.int64)])  # noqa: E731
    a, w, en, clr, rst = map(pad, (a, w, en, clr, rst))
    ab, wb = cfg.act_bits, cfg.weight_code_bits
    packed = ((rst << (ab + wb + 2)) | (en << (ab + wb + 1)) | (clr << (ab + wb))
              | (w << ab) | (a & ((1 << ab) - 1)))
    bits = ab + wb + 3
    outputs = "acc" if cfg.k is None else "acc, y"
    y_decl = "" if cfg.k is None else \
        f"  wire signed [{cyclic_model_width(cfg.acc_bits, cfg.k) - 1}:0] y;\n"
    y_port = "" if cfg.k is None else ", .y(y)"
    fmt = "%0d" if cfg.k is None else "%0d %0d"
    testbench = f"""\
module tb;
  reg [{bits - 1}:0] mem [0:{total - 1}];
  reg clk = 0, rst = 0, en = 0, clr = 0;
  reg [{ab - 1}:0] a = 0;
  reg [{wb - 1}:0] w = 0;
  wire signed [{cfg.acc_bits - 1}:0] acc;
{y_decl}  integer i;
  {MAC_MODEL} model(.clk(clk), .rst(rst), .a(a), .w(w), .en(en), .clr(clr), .acc(acc){y_port});
  initial begin
    $readmemh("stimulus.hex", mem);
    for (i = 0; i < {total}; i = i + 1) begin
      {{rst, en, clr, w, a}} = mem[i];
      #1 $display("{fmt}", {outputs});
      #1 clk = 1;
      #1 clk = 0;
    end
    $finish;
  end
endmodule
"""
    sources = {"model.v": mac_model_verilog(cfg, latency)}
    if cfg.k is not None:
        sources["cyclic_model.v"] = cyclic_model_verilog(cfg.acc_bits, cfg.k)
    rows = _simulate(workdir, sources, testbench, _hex(packed, bits))
    # Row c shows the registers after c clock edges: operation i is there from row i + latency.
    got = np.array([[int(v) for v in r] for r in rows], dtype=np.int64)
    want_acc, want_out = reference_stream(cfg, latency, a[:n_ops], w[:n_ops], en[:n_ops],
                                          clr[:n_ops], rst[:n_ops])
    if got.shape[0] != total:
        raise ModelMismatch(f"MAC model {cfg.name}: {got.shape[0]} output rows for "
                            f"{total} cycles")
    got_acc = got[latency:latency + n_ops, 0]
    got_y = got[latency:latency + n_ops, 1] if cfg.k is not None else got_acc
    for name, have, want in (("acc", got_acc, want_acc), ("y", got_y, want_out)):
        bad = np.flatnonzero(have != want)
        if bad.size:
            i = bad[0]
            raise ModelMismatch(f"MAC model {cfg.name}: {name} after operation {i} "
                                f"(a={a[i]}, w={w[i]}, en={en[i]}, clr={clr[i]}, "
                                f"rst={rst[i]}) is {have[i]}, the reference says {want[i]}")
    return n_ops
