"""Integer attention on the datapath: `wrapkit estimate` of exported AttentionNets (energy per
block and per node kind, the export's accumulators vs 32-bit ones) and MACs per block for
global and local attention.

Why: the issue asks what an attention block costs on the WrapNet MAC datapath and how the
cost splits between the projections (linear) and the activation×activation matmuls (Q·Kᵀ,
A·V), and how local attention changes the count. CPU is scarce, so one seed and a short run.

Rows:

  digits    the AttentionNet the datapath test cosimulates (tests/attention_digits.py: 8×8
            digits, 16 tokens, dim 32, 30 float steps; 16-bit linear, 20-bit matmul
            accumulators)
  fmnist    AttentionNet on Fashion-MNIST (patch 4: 7×7 = 49 tokens, dim 32, 2 heads of 16,
            TWIST t = 0.1), float-trained on the 10k-image subset of benchmarks/attention.py,
            then per accumulator setting quantized (8-bit weights/activations/probabilities)
            and fine-tuned for one quantized epoch on 2560 images; exported globally and,
            with the same weights, at local length M = 7 (one window per token row)

Usage: .venv/bin/python benchmarks/attention_datapath.py [--epochs 3]
Writes docs/results/attention_datapath.{json,md}; exports in out/attention_datapath/.
"""

import argparse
import copy
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from wrapkit.common.files import atomic_write_json, atomic_write_text  # noqa: E402
from wrapkit.models.attention import AttentionConfig, AttentionNet, overflow_report, \
    quantize_attention  # noqa: E402
from wrapkit.models.data import Dataset, input_standardisation  # noqa: E402
from wrapkit.models.qconfig import Accumulator  # noqa: E402
from wrapkit.ref.ops import AccumulatorMode  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from attention import QAT_IMAGES, _accuracy, _load, _train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "results"
WORK = ROOT / "out" / "attention_datapath"
SEED = 0
N_TEST = 2000

#: setting -> (linear accumulator, Q·Kᵀ and A·V accumulator)
SETTINGS = {
    "acc8": (Accumulator(8, 2), AccumulatorMode("wrap", 8)),
    "acc8, matmuls 16": (Accumulator(8, 2), AccumulatorMode("wrap", 16)),
    # Plain registers wide enough for this model's exact dot products (the JSON's
    # fmnist_exact_overflow shows how often 8 and 16 bits overflow).
    "acc20": (Accumulator(20), AccumulatorMode("wrap", 20)),
}
#: exports -> (setting, local length or None)
EXPORTS = {
    "fmnist acc8 global": ("acc8", None),
    "fmnist acc8/16 global": ("acc8, matmuls 16", None),
    "fmnist acc20 global": ("acc20", None),
    "fmnist acc20 local M=7": ("acc20", 7),
}


def block_macs(tokens, dim, local_length=None, mlp_ratio=0):
    """MACs of one attention block per image: Q, K, V and the projection (4·n·d²), Q·Kᵀ and
    A·V (n·M·d each, M = n globally), and an MLP of ratio r (2·r·n·d²) where it has one."""
    m = tokens if local_length is None else local_length
    return {"qkv_proj": 4 * tokens * dim * dim, "qk": tokens * m * dim,
            "av": tokens * m * dim, "mlp": 2 * mlp_ratio * tokens * dim * dim,
            "total": 4 * tokens * dim * dim + 2 * tokens * m * dim
            + 2 * mlp_ratio * tokens * dim * dim}


def _fmnist_model(train, test):
    """The float AttentionNet (trained once, then read from its checkpoint) and its
    training record (epochs, CPU seconds, float test accuracy)."""
    WORK.mkdir(parents=True, exist_ok=True)
    ckpt = WORK / f"fmnist_float_{SEED}.pt"
    record = ckpt.with_suffix(".json")
    model = AttentionNet(image_size=28, patch=4, dim=32, attention=AttentionConfig(twist_t=0.1))
    if ckpt.exists() and record.exists():
        model.load_state_dict(torch.load(ckpt))
        return model, json.loads(record.read_text())
    cpu = _train(model, train, ARGS.epochs, SEED)
    torch.save(model.state_dict(), ckpt)
    info = {"epochs": ARGS.epochs, "train_cpu_s": cpu,
            "test_accuracy": _accuracy(model, test, N_TEST)}
    atomic_write_json(record, info)
    return model, info


def _export(model, path, dataset):
    from wrapkit.common.datasets import load_images
    from wrapkit.models.trace import trace_model
    from wrapkit.ref.graph import write_graph

    mean, std = input_standardisation(dataset)
    images = load_images(dataset, "test")
    spec = {"shape": list(images.pixels.shape[1:]), "pixel_max": images.pixel_max,
            "mean": mean, "std": std, "dataset": dataset}
    traced = trace_model(model, input_spec=spec)
    write_graph(path, traced.graph, input=spec, num_classes=10,
                source={"run": "benchmarks/attention_datapath.py"})
    return traced.graph


def _acc_label(acc):
    """``Accumulator(8, 2)`` -> "8 cyclic k=2", ``AccumulatorMode("wrap", 20)`` -> "20 wrap"."""
    if isinstance(acc, Accumulator):
        return f"{acc.bits} cyclic k={acc.k}" if acc.k else f"{acc.bits} plain"
    return f"{acc.bits} {acc.mode}" if acc.bits else acc.mode


def _estimate(path):
    from wrapkit.cli import main
    from wrapkit.ref.graph import read_graph

    out = path.with_suffix(".estimate.json")
    if not out.exists() or (json.loads(out.read_text())["export_sha256"]
                            != read_graph(path).sha256):
        code = main(["estimate", str(path), "--json", str(out)])
        if code != 0:
            sys.exit(f"wrapkit estimate {path} exited {code}")
    return json.loads(out.read_text())


def _summary(est, graph):
    block = [r for r in est["layers"] if r["layer"].startswith("attn.") and not r["float_only"]]
    return {
        "designs": [{"nodes": d["nodes"], "datapath": d["datapath"]["design"],
                     "baseline": d["baseline"]["design"]} for d in est["designs"]],
        "kinds": {k: {"macs": v["macs"], "nodes": v["nodes"],
                      "datapath_nj": v["datapath_energy_nj"],
                      "baseline_nj": v["baseline_energy_nj"],
                      "gain": v["baseline_energy_nj"] / v["datapath_energy_nj"]}
                  for k, v in est["kinds"].items()},
        "block": {"macs": sum(r["macs"] for r in block),
                  "datapath_nj": sum(r["datapath_energy_nj"] for r in block),
                  "baseline_nj": sum(r["baseline_energy_nj"] for r in block)},
        "nodes": {r["layer"]: {"kind": r["label"], "macs": r["macs"],
                               "overflow": r.get("overflow_rate"),
                               "datapath_fj_per_mac": r["datapath_energy_fj_per_mac"],
                               "baseline_fj_per_mac": r["baseline_energy_fj_per_mac"]}
                  for r in block},
        "gains": est["gains"],
        "engine_accuracy_estimate_images": est["engine_accuracy"],
        "estimate_images": est["images"],
    }


def run(doc):
    rows = doc.setdefault("rows", {})
    if "digits acc16/20 global" not in rows:
        sys.path.insert(0, str(ROOT / "tests"))
        from attention_digits import trained_attention_file

        WORK.mkdir(parents=True, exist_ok=True)
        path, trained = trained_attention_file(AttentionConfig(twist_t=0.1), WORK / "digits.wkx")
        from wrapkit.ref.graph import read_graph

        graph = read_graph(path).graph
        rows["digits acc16/20 global"] = {
            "dataset": "digits", "tokens": 16, "dim": 32, "local_length": None,
            "linear_acc": "16 plain", "matmul_acc": "20 wrap",
            "pytorch_test_accuracy":
                100 * read_graph(path).header["source"]["pytorch_test_accuracy"],
            "test_images": "all 359 digits test images",
            **_summary(_estimate(path), graph)}
        _save(doc)
    train, test = _load()
    float_model, doc["fmnist_float"] = _fmnist_model(train, test)
    _save(doc)
    if "fmnist_exact_ptq_accuracy" not in doc:
        model = copy.deepcopy(float_model)
        quantize_attention(model, train.x[:256], weight_bits=8, act_bits=8, prob_bits=8)
        doc["fmnist_exact_ptq_accuracy"] = _accuracy(model, test, N_TEST)
        doc["fmnist_exact_overflow"] = {b: overflow_report(model, test.x[:200], bits=b)
                                        for b in (8, 16, 20)}
        _save(doc)
    quantized = {}
    for name, (setting, local) in EXPORTS.items():
        if name in rows:
            continue
        if setting not in quantized:
            acc, mm = SETTINGS[setting]
            model = copy.deepcopy(float_model)
            quantize_attention(model, train.x[:256], weight_bits=8, act_bits=8, prob_bits=8,
                               accumulator=acc, matmul_acc=mm)
            ptq = _accuracy(model, test, N_TEST)
            part = Dataset(train.x[:QAT_IMAGES], train.y[:QAT_IMAGES], "qat")
            qat_cpu = _train(model, part, 1, SEED, quantized=True)
            quantized[setting] = (model, ptq, qat_cpu)
        model, ptq, qat_cpu = quantized[setting]
        model = copy.deepcopy(model)
        model.attn.set_local_length(local or model.tokens)
        model.eval()
        path = WORK / (name.replace(" ", "_").replace("/", "-").replace("=", "") + ".wkx")
        graph = _export(model, path, "fashion-mnist")
        rows[name] = {"dataset": "fashion-mnist", "tokens": model.tokens, "dim": model.dim,
                      "local_length": local, "linear_acc": _acc_label(SETTINGS[setting][0]),
                      "matmul_acc": _acc_label(SETTINGS[setting][1]), "test_images": N_TEST,
                      "ptq_accuracy_global": ptq, "qat_cpu_s": qat_cpu,
                      "pytorch_test_accuracy": _accuracy(model, test, N_TEST),
                      **_summary(_estimate(path), graph)}
        # The report states that the graph's MACs are the analytic count; hold it to that.
        assert rows[name]["block"]["macs"] == block_macs(model.tokens, model.dim,
                                                         local)["total"], name
        print(name, rows[name]["pytorch_test_accuracy"], rows[name]["gains"], flush=True)
        _save(doc)
    doc["analytic_macs"] = {
        f"n={n}, M={m or n}": {"tokens": n, "local_length": m or n, "dim": 32,
                               "attention_net": block_macs(n, 32, m),
                               "vit_block_mlp2": block_macs(n, 32, m, mlp_ratio=2)}
        for n, m in ((16, None), (16, 8), (49, None), (49, 7), (196, None), (196, 98),
                     (196, 49), (784, None), (784, 49))}
    _save(doc)


def _save(doc):
    atomic_write_json(OUT / "attention_datapath.json", doc)


def main(argv=None):
    global ARGS
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=3, help="float epochs on the 10k subset")
    p.add_argument("--report-only", action="store_true")
    ARGS = p.parse_args(argv)
    torch.set_num_threads(1)
    path = OUT / "attention_datapath.json"
    doc = json.loads(path.read_text()) if path.exists() else {}
    doc["setting"] = {"seed": SEED, "test_images": N_TEST, "qat_images": QAT_IMAGES,
                      "threads": 1, "single_seed": True}
    if not ARGS.report_only:
        run(doc)
    write_report(doc)


def _gain(rows, name, what):
    return f"{rows[name]['gains'][what]:.2f}×" if name in rows else "-"


def _pct(x):
    return "-" if x is None else f"{x:.2f} %"


def write_report(doc):
    """docs/results/attention_datapath.md from the JSON."""
    rows = doc.get("rows", {})
    fl = doc.get("fmnist_float", {})
    lines = [
        "# Attention on the datapath: energy per block and node kind, MACs global vs local",
        "",
        "**Single seed (0)** of training and of the operand sampling: every figure below is one "
        "run, not a mean.",
        "",
        "Setting (`make bench-attention-datapath`, `benchmarks/attention_datapath.py`):",
        "",
        "- **digits**: the AttentionNet the datapath test cosimulates "
        "(`tests/attention_digits.py`: 8×8 digits, patch 2 → 16 tokens, dim 32, 2 heads of 16, "
        "TWIST t = 0.1, 30 float steps on 256 images; 8-bit weights, activations and "
        "probability codes; 16-bit linear and 20-bit wrapping matmul accumulators).",
        "- **fmnist**: AttentionNet on Fashion-MNIST (patch 4 → 7×7 = 49 tokens, dim 32, 2 "
        f"heads of 16, TWIST t = 0.1), float-trained {fl.get('epochs', '?')} epochs on the "
        "10k-image subset of `benchmarks/attention.py` (AdamW one-cycle, batch 128, one thread"
        + (f", {fl['train_cpu_s']:.0f} CPU-s, float test accuracy {fl['test_accuracy']:.2f} %"
           if fl else "") + "); per accumulator setting quantized (8-bit weights, activations, "
        "probability codes; the row's accumulators) and fine-tuned one quantized "
        "epoch on 2,560 images; exported globally and with the same weights at local length "
        "M = 7 (one window per token row, no swap, no relative bias, not retrained — seed 002 "
        "Table 4.7 evaluates the same way). Test accuracy: Fashion-MNIST on the first 2,000 "
        "test images, digits on all 359 (PyTorch's integer path, which the graph engine "
        "equals).",
        "- `wrapkit estimate FILE.wkx --json ...` on each export: 16 test images, 1,000 "
        "operations per node, OSU 0.18 µm, delay mapping, timed gate-level simulation; each "
        "node on the MAC of its own widths against the same MAC with a 32-bit accumulator and "
        "no cyclic activation. MAC datapath only (no memories, requantization, softmax, "
        "TWIST). The stem and classifier are float and cost nothing here, so the block is "
        "the whole integer network.",
        "",
        "## Energy per block and per node kind",
        "",
        "| export | linear / matmul acc | test acc. | block MACs | linear nJ (acc32) | "
        "matmul nJ (acc32) | block nJ (acc32) | gain |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        k = r["kinds"]

        def cell(kind):
            if kind not in k:
                return "-"
            return f"{k[kind]['datapath_nj']:.1f} ({k[kind]['baseline_nj']:.1f})"

        b = r["block"]
        lines.append(
            f"| {name} | {r['linear_acc']} / {r['matmul_acc']} | "
            f"{r['pytorch_test_accuracy']:.2f} % | "
            f"{b['macs']:,} | {cell('linear')} | {cell('matmul')} | "
            f"{b['datapath_nj']:.1f} ({b['baseline_nj']:.1f}) | "
            f"{b['baseline_nj'] / b['datapath_nj']:.2f}× |")
    lines += ["", "Per node (energy per MAC, fJ; overflow: share of the node's dot products "
              "beyond its accumulator over the 16 images):", "",
              "| export | node | kind | MACs | overflow | fJ/MAC | fJ/MAC acc32 | gain |",
              "|---|---|---|---:|---:|---:|---:|---:|"]
    for name, r in rows.items():
        for node, n in r["nodes"].items():
            lines.append(f"| {name} | {node} | {n['kind']} | {n['macs']:,} | "
                         f"{_pct(None if n['overflow'] is None else 100 * n['overflow'])} | "
                         f"{n['datapath_fj_per_mac']:.0f} | {n['baseline_fj_per_mac']:.0f} | "
                         f"{n['baseline_fj_per_mac'] / n['datapath_fj_per_mac']:.2f}× |")
    ov = doc.get("fmnist_exact_overflow")
    if ov:
        lines += ["", "The overflow column is over each export's own operands; the 8-bit rows' "
                  "operands are already wrapped upstream. Of the Fashion-MNIST model quantized "
                  "with exact accumulators "
                  f"({doc['fmnist_exact_ptq_accuracy']:.2f} % post-training), the share of dot "
                  "products beyond a b-bit register on 200 test images "
                  "(`overflow_report`):", "",
                  "| bits | " + " | ".join(ov[next(iter(ov))]) + " |",
                  "|---:|" + "---:|" * len(ov[next(iter(ov))])]
        for b, kinds in ov.items():
            lines.append(f"| {b} | " + " | ".join(f"{100 * v['share']:.1f} %"
                                                  for v in kinds.values()) + " |")
    lines += ["", "## MACs per block: global vs local attention", "",
              "Counted analytically per image (n tokens, width d = 32, window length M; M = n "
              "is global): Q, K, V and the projection 4·n·d², Q·Kᵀ and A·V n·M·d each (the "
              "seed's quadratic term becomes linear in n at fixed M); the ViT block of "
              "`benchmarks/attention.py` adds an MLP of ratio 2 (4·n·d²). The exported "
              "graphs' node MACs (above) equal these counts (AttentionNet rows).", "",
              "| n | M | QKV+proj | Q·Kᵀ | A·V | AttentionNet block | ViT block (MLP 2) | "
              "attention share of ViT block |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key, a in doc.get("analytic_macs", {}).items():
        m, v = a["attention_net"], a["vit_block_mlp2"]
        lines.append(f"| {a['tokens']} | {a['local_length']} | {m['qkv_proj']:,} | "
                     f"{m['qk']:,} | {m['av']:,} | {m['total']:,} | {v['total']:,} | "
                     f"{100 * (v['qk'] + v['av']) / v['total']:.1f} % |")
    lines += ["", "## Beside the seeds", "",
              "Seed 002 §2 (WrapNet, Fig. 2.2, 28 nm CMOS): with an 8-bit × 8-bit "
              "multiplier the 32-bit accumulator is over 40 % of a MAC's area and energy, and "
              "an 8-bit accumulator with the cyclic activation makes the whole MAC up to about "
              "3× smaller and 2× more energy-efficient (the text extraction garbles the exact "
              "factors), for MAC units alone. Here the 8-bit rows give "
              f"{_gain(rows, 'fmnist acc8 global', 'energy')} energy and "
              f"{_gain(rows, 'fmnist acc8 global', 'area')} area on the attention block's "
              "MACs — but at chance accuracy, where the seed trains its networks for the "
              "8-bit register. Seed 002 §4 measures local attention by FLOPs and latency "
              "(Table 4.6: block latency vs local length; Table 4.12: ImageNet accuracy and "
              "CoreML latency), not MAC energy; seed 000 (SATA/TWIST) reports no hardware "
              "figures. Differences: OSU 0.18 µm instead of 28 nm (absolute energies are "
              "42–86× larger, see estimation.md; the ratios carry over), one small "
              "single-block network with float stem and classifier, Fashion-MNIST / digits at "
              "16–49 tokens instead of 196 (the 196- and 784-token rows are counted, not "
              "run), a short training, one seed; the matmuls multiply two activations "
              "(8-bit signed Q/K codes; 8-bit unsigned probability codes × 8-bit signed V "
              "codes), which the seed's MAC figures "
"do not cover.", ""]
    atomic_write_text(OUT / "attention_datapath.md", "\n".join(lines))


ARGS = None

if __name__ == "__main__":
    main()
