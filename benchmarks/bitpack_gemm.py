"""Bit-packed binary/ternary GEMM vs the plain int32 loop on ResNet-18 3x3 conv shapes (Table 2.8).

One run measures both kernels on each layer of the paper's Table 2.8 (im2col GEMM:
M = output channels, N = H*W positions, K = 9 * input channels) and checks every packed
result against ``wrapkit.ref.bitpack.packed_gemm`` (and the int32 result against numpy).

    .venv/bin/python benchmarks/bitpack_gemm.py            # writes docs/results/bitpack_gemm.*
    .venv/bin/python benchmarks/bitpack_gemm.py --quick    # channels / 4, fewer repeats

Both kernels are one C file compiled with the same flags, without auto-vectorization
(``wrapkit.models.kernels.build.SCALAR_FLAGS``), single-threaded: the setting of a CPU without vector
MAC instructions. The activations are WrapNet's 3-bit unsigned codes from a post-ReLU-like
distribution (half zeros), padded by one pixel, im2col'ed; the weights are random binary or
ternary. The kernels have no data-dependent branches, so timings do not depend on the values.
A second, auto-vectorized build is timed as context only (``--no-vector`` skips it).
"""

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

from wrapkit.models.kernels.gemm import BitpackKernels, pack_activations, pack_weights
from wrapkit.ref import wrap
from wrapkit.ref.bitpack import PackSpec, packed_gemm
from wrapkit.common.files import atomic_write_json, atomic_write_text

# (input channels, H=W, output channels) of the ResNet-18 3x3 convolutions in Table 2.8, and
# the paper's times (ms: bit packing, naive) on an i7-7700HQ for the comparison column.
LAYERS = [(64, 56, 64, 29.80, 83.705), (128, 28, 128, 23.86, 80.557),
          (256, 14, 256, 21.71, 86.753), (512, 7, 512, 20.41, 87.671)]

# Packed configurations: the paper's four 8-bit numbers in 32 bits, and eight in 64 bits.
CONFIGS = [PackSpec(8, 4, 32, m) for m in ("buffer", "carry", "isolated")] + \
          [PackSpec(8, 8, 64, m) for m in ("buffer", "carry", "isolated")]
KINDS = ("binary", "ternary")
ACT_BITS = 3


def im2col(x):
    """x[C, H, W] -> [H*W, C*9] for a 3x3 conv with stride 1 and zero padding 1."""
    c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(1, 2))  # C, H, W, 3, 3
    return win.transpose(1, 2, 0, 3, 4).reshape(h * w, c * 9)


def best_time(fn, repeats):
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def spec_name(s):
    return f"{s.lanes}x{s.lane_bits}b/{s.word_bits} {s.mode}"


def run(args):
    from tqdm import tqdm

    rng = np.random.default_rng(args.seed)
    scalar = BitpackKernels(vectorize=False)
    vector = None if args.no_vector else BitpackKernels(vectorize=True)
    rows = []
    jobs = [(layer, kind) for layer in LAYERS for kind in KINDS]
    for (cin, hw, cout, paper_pack, paper_naive), kind in tqdm(jobs, desc="layers", unit="layer"):
        cin, cout = max(1, cin // args.scale), max(1, cout // args.scale)
        x = rng.integers(0, 1 << ACT_BITS, size=(cin, hw, hw)) * (rng.random((cin, hw, hw)) < 0.5)
        a = im2col(x)
        w = rng.choice([-1, 1] if kind == "binary" else [-1, 0, 1], size=(cout, cin * 9))
        exact = np.rint(w.astype(np.float64) @ a.T.astype(np.float64)).astype(np.int64)
        got32 = scalar.int32(a, w)
        if not np.array_equal(got32, exact):
            raise SystemExit(f"int32 kernel disagrees with numpy on {cin}x{hw}x{hw}")
        a8, w8 = np.ascontiguousarray(a, np.uint8), np.ascontiguousarray(w, np.int8)
        prepared = []
        for spec in CONFIGS:
            pa, pw = pack_activations(a, spec), pack_weights(w, spec, kind)
            out = scalar.packed(pa, pw)
            ref = packed_gemm(a, w, spec)
            equal_ref = bool(np.array_equal(out, ref.result))
            # Without contamination the packed result is the wrapped exact sum.
            equal_exact = (bool(np.array_equal(out, wrap(exact, spec.data_bits)))
                           if spec.mode != "carry" else None)
            if not equal_ref or equal_exact is False:
                raise SystemExit(f"packed kernel {spec_name(spec)} disagrees with ref/ on "
                                 f"{cin}x{hw}x{hw} {kind}")
            prepared.append((spec, pa, pw, equal_ref, equal_exact, ref))
        # Round robin: every repeat times every kernel once, so a load spike on the shared
        # machine hits all of them alike; the best time of each kernel is kept.
        kernels = [("int32", lambda: scalar.int32(a8, w8))]
        kernels += [(spec_name(p[0]), (lambda p=p: scalar.packed(p[1], p[2]))) for p in prepared]
        if vector:
            kernels += [("int32 vec", lambda: vector.int32(a8, w8))]
            kernels += [(spec_name(p[0]) + " vec", (lambda p=p: vector.packed(p[1], p[2])))
                        for p in prepared]
        best = {name: float("inf") for name, _ in kernels}
        for _ in range(args.repeats):
            for name, fn in kernels:
                best[name] = min(best[name], best_time(fn, 1))
        t_int32 = best["int32"]
        for spec, pa, pw, equal_ref, equal_exact, ref in prepared:
            t = best[spec_name(spec)]
            rows.append({
                "layer": f"{cin}x{hw}x{hw}", "out_channels": cout, "kind": kind,
                "M": cout, "N": hw * hw, "K": cin * 9, "macs": cout * hw * hw * cin * 9,
                "packing": spec.to_dict(), "config": spec_name(spec),
                "int32_ms": 1e3 * t_int32, "packed_ms": 1e3 * t, "speedup": t_int32 / t,
                "int32_vectorized_ms": 1e3 * best["int32 vec"] if vector else None,
                "packed_vectorized_ms": (1e3 * best[spec_name(spec) + " vec"] if vector
                                         else None),
                "equal_ref": equal_ref, "equal_exact_wrapped": equal_exact,
                "mean_contamination": float(ref.contamination.mean()),
                "paper_bitpack_ms": paper_pack if args.scale == 1 else None,
                "paper_naive_ms": paper_naive if args.scale == 1 else None,
            })
    return rows, scalar.info, None if vector is None else vector.info


def write(rows, info, vinfo, args):
    out = Path(args.out)
    meta = {
        "command": "python benchmarks/bitpack_gemm.py" + (" --quick" if args.quick else ""),
        "machine": platform.processor() or platform.machine(), "python": sys.version.split()[0],
        "scalar_build": info, "vectorized_build": vinfo, "repeats": args.repeats,
        "channel_scale": args.scale, "act_bits": ACT_BITS, "threads": 1,
        "timing": "best of repeats, kernels timed round robin, GEMM only (im2col and packing "
              "excluded)",
    }
    atomic_write_json(out / "bitpack_gemm.json", {"meta": meta, "rows": rows})
    lines = [
        "# Bit-packed GEMM without vector instructions (paper Table 2.8)", "",
        f"Produced by `{meta['command']}` on {meta['machine']}; single thread; best of "
        f"{args.repeats}, all kernels timed round robin. Both kernels: one C file, `{' '.join(info['flags'])}` "
        f"({info['compiler']}). Every packed result equals `wrapkit.ref.bitpack.packed_gemm`; "
        "buffer/isolated results also equal the wrapped exact sums.", "",
        "Speed-up = int32 loop time / packed time (same loop nest, same run).", "",
        "| layer (C×H×W → out) | weights | packing | int32 ms | packed ms | speed-up | "
        "mean carries C |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['layer']} → {r['out_channels']} | {r['kind']} | {r['config']} | "
                     f"{r['int32_ms']:.2f} | {r['packed_ms']:.2f} | {r['speedup']:.2f}× | "
                     f"{r['mean_contamination']:.1f} |")
    lines += ["", "Summary (speed-up range over the four layers):", "",
              "| weights | packing | min | max | paper (4×8b/32, buffer) |", "|---|---|---:|---:|---|"]
    for kind in KINDS:
        for cfg in dict.fromkeys(r["config"] for r in rows):
            s = [r["speedup"] for r in rows if r["kind"] == kind and r["config"] == cfg]
            paper = "2.8×–4.3×" if cfg == "4x8b/32 buffer" and kind == "binary" else ""
            lines.append(f"| {kind} | {cfg} | {min(s):.2f}× | {max(s):.2f}× | {paper} |")
    if vinfo:
        lines += ["", "Context, not the comparison: with auto-vectorization "
                  f"(`{' '.join(vinfo['flags'])}`) the int32 loop takes "
                  + ", ".join(f"{r['int32_vectorized_ms']:.2f} ms ({r['layer']})"
                              for r in rows if r["config"] == "4x8b/32 buffer"
                              and r["kind"] == "binary")
                  + " - on a CPU with vector units use them (the paper's AVX2 path)."]
    atomic_write_text(out / "bitpack_gemm.md", "\n".join(lines) + "\n")
    _plot(rows, out / "bitpack_gemm.png")


def _plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = list(dict.fromkeys(r["layer"] for r in rows))
    cfgs = list(dict.fromkeys(r["config"] for r in rows))
    fig, axes = plt.subplots(1, len(KINDS), figsize=(11, 4), sharey=True)
    width = 0.8 / len(cfgs)
    for ax, kind in zip(axes, KINDS):
        for i, cfg in enumerate(cfgs):
            s = [next(r["speedup"] for r in rows if r["layer"] == lay and r["config"] == cfg
                      and r["kind"] == kind) for lay in layers]
            ax.bar(np.arange(len(layers)) + i * width, s, width, label=cfg)
        ax.axhline(1, color="k", lw=0.8)
        ax.set_xticks(np.arange(len(layers)) + 0.4 - width / 2, layers)
        ax.set_title(f"{kind} weights")
        ax.set_xlabel("input feature map")
    axes[0].set_ylabel("speed-up over int32 loop")
    axes[-1].legend(fontsize=8)
    fig.tight_layout()
    from io import BytesIO
    buf = BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    from wrapkit.common.files import atomic_write_bytes
    atomic_write_bytes(path, buf.getvalue())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="docs/results", help="output folder (default docs/results)")
    p.add_argument("--repeats", type=int, default=9, help="timed repeats per kernel (best kept)")
    p.add_argument("--scale", type=int, default=1, help="divide channel counts by this")
    p.add_argument("--quick", action="store_true", help="--scale 4 --repeats 3")
    p.add_argument("--no-vector", action="store_true", help="skip the auto-vectorized context")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.quick:
        args.scale, args.repeats = 4, 3
    if args.repeats < 1 or args.scale < 1:
        p.error(f"--repeats and --scale must be >= 1, got {args.repeats} and {args.scale}")
    rows, info, vinfo = run(args)
    write(rows, info, vinfo, args)
    print(Path(args.out, "bitpack_gemm.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
