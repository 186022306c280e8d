"""Attention on Fashion-MNIST: TWIST (seed 000 ch. 4), local self-attention (seed 002 ch. 4),
quantized attention, and the CPU time of token mixers.

Why: the issue asks whether SATA's TWIST and mobile-friendly local self-attention carry over
to small vision transformers on this project's dataset, what integer attention costs in
accuracy, and where 8-bit accumulators overflow. CPU is scarce (2 shared cores), so every
training run is short and on a 10k-image training subset; rows state their seeds.

Sections (``--only`` picks some; finished rows are skipped, so a rerun resumes):

  twist    ViT (patch 4: 7×7 = 49 tokens, dim 32, 2 heads of 16, depth 4, MLP ratio 2) vs
           +TWIST (learnable s, t = 0.1) vs fixed s = 0.75 vs softmax temperature 2 vs
           Lee et al.'s diagonal masking (locality self-attention) [± TWIST]
  steptime training-step time of the ViT with fused TWIST, the elementwise TWIST, none
  local    MetaFormer (stem to 14×14 = 196 tokens, 2 depthwise-conv blocks, 2 attention
           blocks) trained at M ∈ {196, 98, 49} (swap + relative position bias), each
           evaluated at every M ≤ its training M; ablations at M = 49 without swap/bias
  blocks   CPU time of one block's forward: depthwise conv, global, local (M = 49)
           attention at 196 and 784 tokens
  quant    the trained ViT (± TWIST) with 8-bit weights/activations, 8- and 4-bit
           probability codes (post-training, then one epoch of quantized fine-tuning), the
           accumulator widths of the linears and of QKᵀ, and where 8-bit registers overflow

Usage: .venv/bin/python benchmarks/attention.py [--only twist,local,...] [--epochs 6]
Writes docs/results/attention.{json,md,png}; checkpoints in out/attention/.
"""

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from wrapkit.common.buildcache import file_lock  # noqa: E402
from wrapkit.common.files import atomic_write_json, atomic_write_text  # noqa: E402
from wrapkit.models.attention import AttentionConfig, MetaBlock, MetaFormer, \
    MultiHeadAttention, ViT, attention_modules, overflow_report, quantize_attention  # noqa
from wrapkit.models.attention.mixers import DepthwiseMixer  # noqa: E402
from wrapkit.models.attention.twist import twist, twist_naive  # noqa: E402
from wrapkit.models.data import Dataset, batches, load_dataset  # noqa: E402
from wrapkit.models.qconfig import Accumulator  # noqa: E402
from wrapkit.ref.ops import AccumulatorMode, probability_row_sum_bound  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "results"
CKPT = ROOT / "out" / "attention"
TRAIN_SUBSET = 10_000
BATCH = 128
LR, LR_S, WD = 3e-3, 1e-2, 0.05
#: Quantized fine-tuning images (20 steps: the integer path is ~7× slower than float).
QAT_IMAGES = 2560

TWIST_ROWS = {
    # name: (attention config, seeds)
    "vit": (AttentionConfig(), (0, 1, 2)),
    "vit+twist": (AttentionConfig(twist_t=0.1), (0, 1, 2)),
    "vit+twist fixed s=0.75": (AttentionConfig(twist_t=0.1, twist_s=0.75,
                                               twist_learnable=False), (0,)),
    "vit temperature 2": (AttentionConfig(temperature=2.0), (0, 1, 2)),
    "vit+diag-mask (Lee)": (AttentionConfig(diagonal_mask=True), (0,)),
    "vit+diag-mask+twist": (AttentionConfig(diagonal_mask=True, twist_t=0.1), (0,)),
}
# In the order they run (the rows the conclusions rest on first).
LOCAL_ROWS = {
    "M=196": AttentionConfig(local_length=None, rel_pos=True),
    "M=49": AttentionConfig(local_length=49, swap=True, rel_pos=True),
    "M=49 no swap, no bias": AttentionConfig(local_length=49),
    "M=98": AttentionConfig(local_length=98, swap=True, rel_pos=True),
    "M=49 swap, no bias": AttentionConfig(local_length=49, swap=True),
}
EVAL_LENGTHS = (196, 98, 49, 28, 14, 7)


def _load():
    train, test = load_dataset("fashion-mnist")
    return train.subset(TRAIN_SUBSET, seed=0), test


def _train(model, train, epochs, seed, *, quantized=False):
    torch.manual_seed(seed)
    s_params = [p for n, p in model.named_parameters() if n.endswith("twist.s")]
    rest = [p for n, p in model.named_parameters() if not n.endswith("twist.s")]
    groups = [{"params": rest, "weight_decay": WD}]
    if s_params:
        groups.append({"params": s_params, "lr": LR_S, "weight_decay": 0.0})
    lr = LR / 10 if quantized else LR
    for g in groups:
        g.setdefault("lr", lr)
    opt = torch.optim.AdamW(groups)
    steps = epochs * math.ceil(len(train) / BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=[g["lr"] for g in groups], total_steps=steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    t0 = time.process_time()
    for _ in range(epochs):
        for x, y in batches(train, BATCH, gen):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return time.process_time() - t0


@torch.no_grad()
def _accuracy(model, test, n=None):
    model.eval()
    x, y = (test.x, test.y) if n is None else (test.x[:n], test.y[:n])
    correct = sum(int((model(x[i:i + 500]).argmax(1) == y[i:i + 500]).sum())
                  for i in range(0, len(y), 500))
    return 100.0 * correct / len(y)


def _twist_s(model):
    return [m.twist.s.item() for m in attention_modules(model) if m.twist is not None]


def _save(doc, *sections):
    """Write ``doc``'s ``sections`` into the JSON, keeping what other runs wrote there (the
    sections can run as separate processes)."""
    import json

    path = OUT / "attention.json"
    with file_lock(CKPT / "json.lock"):
        on_disk = json.loads(path.read_text()) if path.exists() else {}
        for s in sections or doc:
            if s in doc:
                on_disk[s] = doc[s]
        atomic_write_json(path, on_disk)


def section_twist(doc, train, test, epochs):
    rows = doc.setdefault("twist", {})
    # Seed-major order: the 3-seed comparison and the checkpoints the quant section reads
    # come first; single-seed rows after.
    todo = sorted(((seed, i, name, cfg) for i, (name, (cfg, seeds)) in
                   enumerate(TWIST_ROWS.items()) for seed in seeds),
                  key=lambda r: (len(TWIST_ROWS[r[2]][1]) == 1, r[0], r[1]))
    for seed, _, name, cfg in todo:
        key = f"{name}/seed{seed}"
        if key in rows:
            continue
        torch.manual_seed(seed)
        model = ViT(attention=cfg)
        cpu = _train(model, train, epochs, seed)
        rows[key] = {"row": name, "seed": seed, "epochs": epochs,
                     "test_accuracy": _accuracy(model, test), "cpu_s": cpu,
                     "learned_s": _twist_s(model)}
        CKPT.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), CKPT / f"{name.replace(' ', '_')}_{seed}.pt")
        print(key, rows[key], flush=True)
        _save(doc, "twist")


def section_steptime(doc, train, repeats=3, steps=10):
    if "steptime" in doc:
        return
    x, y = train.x[:BATCH], train.y[:BATCH]
    variants = {"no twist": AttentionConfig(), "fused twist": AttentionConfig(twist_t=0.1),
                "elementwise twist": AttentionConfig(twist_t=0.1)}
    models = {}
    for name, cfg in variants.items():
        torch.manual_seed(0)
        models[name] = ViT(attention=cfg)
        if name == "elementwise twist":
            for m in attention_modules(models[name]):
                m.twist.fused = False
    times = {k: [] for k in variants}
    for _ in range(repeats):
        for name, model in models.items():
            opt = torch.optim.SGD(model.parameters(), 1e-3)
            t0 = time.process_time()      # CPU time: robust on a shared machine
            for _ in range(steps):
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
            times[name].append((time.process_time() - t0) / steps)
    doc["steptime"] = {k: {"median_s": statistics.median(v), "all_s": v}
                       for k, v in times.items()}
    # The function alone, forward + backward on one layer's attention map (batch 128).
    x0 = torch.softmax(3 * torch.randn(BATCH, 2, 49, 49), dim=-1)
    w = torch.randn_like(x0)
    fn_times = {}
    for name, fn in (("fused twist", twist), ("elementwise twist", twist_naive)):
        ts = []
        for _ in range(5):
            x = x0.clone().requires_grad_(True)
            s = torch.tensor(0.6, requires_grad=True)
            t0 = time.process_time()
            for _ in range(5):
                (fn(x, s, 0.1) * w).sum().backward()
            ts.append((time.process_time() - t0) / 5)
        fn_times[name] = statistics.median(ts)
    doc["steptime_function"] = fn_times
    print(doc["steptime"], flush=True)
    _save(doc, "steptime", "steptime_function")


def _set_length(model, m):
    for a in attention_modules(model):
        a.set_local_length(min(m, a.tokens))


def section_local(doc, train, test, epochs):
    rows = doc.setdefault("local", {})
    for name, cfg in LOCAL_ROWS.items():
        if name in rows:
            continue
        torch.manual_seed(0)
        model = MetaFormer(attention=cfg)
        cpu = _train(model, train, epochs, 0)
        trained_m = cfg.local_length or 196
        evals = {}
        for m in EVAL_LENGTHS if name in ("M=196", "M=98", "M=49") else (trained_m,):
            if m <= trained_m:
                _set_length(model, m)
                evals[str(m)] = _accuracy(model, test, 5000)
        rows[name] = {"seed": 0, "epochs": epochs, "cpu_s": cpu, "trained_m": trained_m,
                      "accuracy_at_m": evals}
        print(name, rows[name], flush=True)
        _save(doc, "local")


@torch.no_grad()
def section_blocks(doc, repeats=5, batch=8, dim=32):
    if "blocks" in doc:
        return
    res = {}
    for side in (14, 28):
        grid = (side, side)
        x = torch.randn(batch, side * side, dim)
        mixers = {"depthwise conv": DepthwiseMixer(dim, grid),
                  "global attention": MultiHeadAttention(dim, grid, AttentionConfig()),
                  "local attention M=49": MultiHeadAttention(
                      dim, grid, AttentionConfig(local_length=49, rel_pos=True))}
        for name, mixer in mixers.items():
            block = MetaBlock(dim, mixer).eval()
            block(x)
            ts = []
            for _ in range(repeats):
                t0 = time.process_time()
                block(x)
                ts.append((time.process_time() - t0) / batch)
            res[f"{name}/{side * side}"] = {"mixer": name, "tokens": side * side,
                                            "ms_per_image": 1e3 * statistics.median(ts)}
    doc["blocks"] = res
    print(res, flush=True)
    _save(doc, "blocks")


QUANT_ROWS = {
    # name: (prob_bits, linear accumulator, QKᵀ/A·V accumulator)
    "8-bit, probs 8": (8, Accumulator(32), AccumulatorMode()),
    "8-bit, probs 4": (4, Accumulator(32), AccumulatorMode()),
}
ACC_SWEEP = {
    "linears 16": (Accumulator(16), AccumulatorMode()),
    "linears 12": (Accumulator(12), AccumulatorMode()),
    "linears 8 cyclic k=2": (Accumulator(8, 2), AccumulatorMode()),
    "linears 8 plain": (Accumulator(8), AccumulatorMode()),
    "QK 16 wrap": (Accumulator(32), AccumulatorMode("wrap", 16)),
    "QK 12 wrap": (Accumulator(32), AccumulatorMode("wrap", 12)),
    "QK 8 wrap": (Accumulator(32), AccumulatorMode("wrap", 8)),
}


def _quantized(name, seed, train, prob_bits, acc, mm):
    cfg = TWIST_ROWS[name][0]
    model = ViT(attention=cfg)
    model.load_state_dict(torch.load(CKPT / f"{name.replace(' ', '_')}_{seed}.pt"))
    quantize_attention(model, train.x[:256], weight_bits=8, act_bits=8, prob_bits=prob_bits,
                       accumulator=acc, matmul_acc=mm)
    return model


def _set_matmul_acc(model, which, acc):
    for a in attention_modules(model):
        if which == "qk":
            a.qk.acc = acc
        else:
            a.av.acc = acc


def section_quant(doc, train, test, n_test=2000):
    rows = doc.setdefault("quant", {})
    for name in ("vit", "vit+twist"):
        if not (CKPT / f"{name.replace(' ', '_')}_0.pt").exists():
            print(f"quant: no checkpoint of {name}; run --only twist first", flush=True)
            return
        key = f"{name}/float"
        if key not in rows:
            model = ViT(attention=TWIST_ROWS[name][0])
            model.load_state_dict(torch.load(CKPT / f"{name.replace(' ', '_')}_0.pt"))
            rows[key] = {"row": name, "setting": "float", "test_accuracy":
                         _accuracy(model, test, n_test)}
            _save(doc, "quant")
        for setting, (pb, acc, mm) in QUANT_ROWS.items():
            key = f"{name}/{setting}"
            if key in rows:
                continue
            model = _quantized(name, 0, train, pb, acc, mm)
            ptq = _accuracy(model, test, n_test)
            part = Dataset(train.x[:QAT_IMAGES], train.y[:QAT_IMAGES], "qat")
            cpu = _train(model, part, 1, 0, quantized=True)
            rows[key] = {"row": name, "setting": setting, "ptq_accuracy": ptq,
                         "qat_accuracy": _accuracy(model, test, n_test),
                         "qat_images": QAT_IMAGES, "qat_cpu_s": cpu,
                         "learned_s": _twist_s(model)}
            print(key, rows[key], flush=True)
            _save(doc, "quant")
    accs = doc.setdefault("accumulators", {})
    for setting, (acc, mm) in ACC_SWEEP.items():
        if setting in accs:
            continue
        model = _quantized("vit", 0, train, 8, acc, AccumulatorMode())
        if setting.startswith("QK"):
            _set_matmul_acc(model, "qk", mm)
        accs[setting] = {"ptq_accuracy": _accuracy(model, test, n_test)}
        print(setting, accs[setting], flush=True)
        _save(doc, "accumulators")
    if "overflow" not in doc:
        model = _quantized("vit", 0, train, 8, Accumulator(32), AccumulatorMode())
        doc["overflow"] = {str(b): overflow_report(model, test.x[:200], bits=b)
                           for b in (8, 12, 16)}
        print(doc["overflow"], flush=True)
        _save(doc, "overflow")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default="blocks,steptime,twist,local,quant")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--local-epochs", type=int, default=3)
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    path = OUT / "attention.json"
    import json
    doc = json.loads(path.read_text()) if path.exists() else {}
    doc["setting"] = {"train_subset": TRAIN_SUBSET, "batch": BATCH, "lr": LR, "lr_s": LR_S,
                      "weight_decay": WD, "threads": 1, "optimizer": "AdamW, one-cycle",
                      "test_images": {"twist": 10000, "local": 5000, "quant": 2000}}
    if not args.report_only:
        train, test = _load()
        for section in args.only.split(","):
            if section == "twist":
                section_twist(doc, train, test, args.epochs)
            elif section == "steptime":
                section_steptime(doc, train)
            elif section == "local":
                section_local(doc, train, test, args.local_epochs)
            elif section == "blocks":
                section_blocks(doc)
            elif section == "quant":
                section_quant(doc, train, test)
            else:
                sys.exit(f"unknown section {section!r}")
    _save(doc, "setting")
    write_report(json.loads(path.read_text()))


def _mean_std(values):
    if len(values) == 1:
        return f"{values[0]:.2f} (1 seed)"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f} ({len(values)} seeds)"


def _twist_table(doc):
    rows = doc.get("twist", {})
    by_row = {}
    for r in rows.values():
        by_row.setdefault(r["row"], []).append(r)
    lines = ["| model | top-1 (%) | learned s per layer (seed 0) | CPU s / run |",
             "|---|---|---|---|"]
    base = [r["test_accuracy"] for r in by_row.get("vit", [])]
    for name in TWIST_ROWS:
        rs = by_row.get(name)
        if not rs:
            continue
        accs = [r["test_accuracy"] for r in rs]
        gain = f" ({statistics.mean(accs) - statistics.mean(base):+.2f})" \
            if base and name != "vit" else ""
        s = next((r["learned_s"] for r in rs if r["seed"] == 0), [])
        lines.append(f"| {name} | {_mean_std(accs)}{gain} | "
                     f"{', '.join(f'{v:.3f}' for v in s) or '–'} | "
                     f"{statistics.mean(r['cpu_s'] for r in rs):.0f} |")
    return lines


def _local_table(doc):
    rows = doc.get("local", {})
    lines = ["| trained at | " + " | ".join(f"eval M={m}" for m in EVAL_LENGTHS) + " |",
             "|---|" + "---|" * len(EVAL_LENGTHS)]
    for name in ("M=196", "M=98", "M=49", "M=49 swap, no bias", "M=49 no swap, no bias"):
        r = rows.get(name)
        if r is None:
            lines.append(f"| {name} | not run (CPU budget) |" + " |" * (len(EVAL_LENGTHS) - 1))
            continue
        cells = [f"{r['accuracy_at_m'][str(m)]:.2f}" if str(m) in r["accuracy_at_m"] else "–"
                 for m in EVAL_LENGTHS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def write_report(doc):
    """attention.md and attention.png from the collected JSON."""
    st = doc.get("setting", {})
    md = ["# Attention on Fashion-MNIST: TWIST, local self-attention, integer attention", "",
          "Produced by `make bench-attention` (`benchmarks/attention.py`, resumable). Setting: "
          f"training on a {st.get('train_subset', TRAIN_SUBSET)}-image seeded subset of "
          "Fashion-MNIST, AdamW (weight decay 0.05), one-cycle schedule, batch 128, one CPU "
          "thread on a shared 2-core machine, no augmentation; epochs per row in "
          "attention.json. Rows with one seed say so; mean ± std over 3 seeds where the "
          "conclusion rests on them.", ""]
    md += ["## 1. TWIST (seed 000 Tables 4.2, 4.3, 4.6, 4.7 analogue)", "",
           "ViT: patch 4 (7×7 = 49 tokens), dim 32, 2 heads of 16, depth 4, MLP ratio 2, "
           "mean-token classifier; TWIST t = 0.1, s initialised to 0.5 (learning rate "
           f"{LR_S}); test accuracy on all 10,000 test images.", ""]
    md += _twist_table(doc)
    md += ["", "Seed 000 (CIFAR-100 / Tiny-ImageNet, 100 epochs, heavy augmentation, "
           "ViT 2.8 M parameters): ViT 73.70 / 56.45, SATA-ViT 74.93 (+1.23) / 58.77 "
           "(+2.32) (Table 4.2); fixed s = 0.75, t = 0.1: 57.69 on Tiny-ImageNet "
           "(Table 4.3); temperature 2×: 57.20 (Table 4.6); Lee's LSA 75.40 / 57.82, "
           "+SATA 75.47 / 58.28 (Table 4.7).", ""]
    stp = doc.get("steptime")
    if stp:
        base = stp["no twist"]["median_s"]
        md += ["**Step time** (ViT above, batch 128, one thread, process CPU time, median of "
               "3×10 steps): " +
               ", ".join(f"{k} {1e3 * v['median_s']:.0f} ms ({v['median_s'] / base:.2f}×)"
                         for k, v in stp.items()) + "."]
        fn = doc.get("steptime_function")
        if fn:
            md[-1] += (" The function alone (forward + backward on one layer's 128×2×49×49 "
                       "map): " + ", ".join(f"{k} {1e3 * v:.1f} ms" for k, v in fn.items()) +
                       ".")
        md.append("")
    md += ["## 2. Local self-attention (seed 002 Tables 4.7, 4.9, 4.12 analogue)", "",
           "MetaFormer: 3×3 stride-2 stem to 14×14 = 196 tokens, dim 32, two depthwise-conv "
           "blocks, two attention blocks (2 heads of 16; the second swaps dimensions when "
           "local), relative position bias; one seed; accuracy on the first 5,000 test "
           "images, evaluated at each local length M ≤ the training M without fine-tuning.",
           ""]
    md += _local_table(doc)
    md += ["", "Seed 002 (ImageNet-1K, MetaFormer-S12, 300 epochs): trained at 196/98/49 "
           "and evaluated at 49: 75.8 / 81.1 / 81.4 (Table 4.7); no swap, no bias 80.6, "
           "+swap 81.0, +bias+swap 81.4 (Table 4.9); full 81.7, 98: 81.5, 49: 81.4, "
           "14: 79.6 (Table 4.12).", ""]
    blocks = doc.get("blocks")
    if blocks:
        md += ["**CPU time of one block** (token mixer + MLP, dim 32, batch 8, one thread, "
               "forward, process CPU time, ms per image):", "", "| mixer | 196 tokens | 784 tokens |",
               "|---|---|---|"]
        for mixer in ("depthwise conv", "global attention", "local attention M=49"):
            cells = [f"{blocks[f'{mixer}/{n}']['ms_per_image']:.3f}" for n in (196, 784)]
            md.append(f"| {mixer} | {cells[0]} | {cells[1]} |")
        md += ["", "Seed 002 Table 4.6 (iPhone ANE latency, ms, 28×28 / 56×56 grids): "
               "DW-Conv 0.46 / 0.5, MHSA 1.29 / 8.13, LSA-49 0.60 / 0.84.", ""]
    q = doc.get("quant", {})
    if q:
        md += ["## 3. Quantized attention", "",
               "The ViT rows above (seed 0) with 8-bit uniform weights and 8-bit activation "
               "codes in every linear (Q, K, V, projection, MLP; signed token codes), 8-bit "
               "Q/K/V codes, I-BERT integer softmax to 8- or 4-bit probability codes, "
               "integer TWIST on them; float (marked): patch embedding, position "
               "embedding, layer norms, GELU, residual adds, classifier. Post-training "
               f"(PTQ) and after quantized fine-tuning on {QAT_IMAGES} images (QAT, 20 steps, "
               f"learning rate {LR / 10:g}); first 2,000 test images; one seed.", "",
               "| model | setting | float / PTQ top-1 (%) | QAT top-1 (%) | learned s after QAT |",
               "|---|---|---|---|---|"]
        for r in q.values():
            md.append(f"| {r['row']} | {r['setting']} | {r['ptq_accuracy']:.2f} | "
                      f"{r['qat_accuracy']:.2f} | "
                      f"{', '.join(f'{v:.3f}' for v in r['learned_s']) or '–'} |"
                      if "qat_accuracy" in r
                      else f"| {r['row']} | float | {r['test_accuracy']:.2f} | – | – |")
        md.append("")
    accs = doc.get("accumulators", {})
    if accs:
        md += ["**Accumulator width** (ViT, 8-bit everything, PTQ, no fine-tuning; the other "
               "MACs exact):", "", "| registers | top-1 (%) |", "|---|---|"]
        md += [f"| {k} | {v['ptq_accuracy']:.2f} |" for k, v in accs.items()]
        md.append("")
    ov = doc.get("overflow", {})
    if ov:
        md += ["**Where overflow happens**: share of exact dot products at or beyond a "
               "b-bit signed register (|z| ≥ 2^(b−1)) and the largest |z| (200 test images):",
               "", "| MAC | fan-in | b = 8 | b = 12 | b = 16 | largest z |",
               "|---|---|---|---|---|---|"]
        fan = {"qkv": "32", "proj": "32", "mlp": "32 / 64", "qk": "16", "av": "49"}
        for kind in ("qkv", "qk", "av", "proj", "mlp"):
            if kind in ov.get("8", {}):
                md.append(f"| {kind} | {fan[kind]} | " + " | ".join(
                    f"{100 * ov[b][kind]['share']:.1f}%" for b in ("8", "12", "16")) +
                    f" | {ov['8'][kind]['max_abs']:.0f} |")
        av_bound = (1 << 7) * probability_row_sum_bound(8, 49)
        av_top = ov["8"]["av"]["max_abs"]
        verdict = "within" if av_top <= av_bound else "BEYOND"
        md += ["", f"A·V's largest |z| ({av_top:.0f}) is {verdict} its bound {av_bound} = "
               "2^7·(255 + 24) for 8-bit value codes and 8-bit probability codes over 49 "
               "tokens. "
               "A·V is bounded by the probability codes' row sum: |y| ≤ max|v|·Σp ≤ "
               "2^(b_v−1)·(2^b_a − 1 + ⌊n/2⌋) (`wrapkit.ref.ops.av_accumulator_bits`: "
               "17 bits for 8-bit codes over 196 tokens and over 49), whatever the scores.",
               ""]
    atomic_write_text(OUT / "attention.md", "\n".join(md) + "\n")
    _plot(doc)


def _plot(doc):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    ax = axes[0]
    for r in doc.get("twist", {}).values():
        if r["learned_s"]:
            ax.plot(range(1, len(r["learned_s"]) + 1), r["learned_s"], marker="o",
                    label=f"{r['row']} seed {r['seed']}")
    ax.axhline(0.5, color="grey", ls="--", lw=0.8)
    ax.set_xlabel("layer")
    ax.set_ylabel("learned s")
    ax.set_title("TWIST: learned s per layer (init 0.5)")
    ax.legend(fontsize=6)
    ax = axes[1]
    for name, r in doc.get("local", {}).items():
        ms = [m for m in EVAL_LENGTHS if str(m) in r["accuracy_at_m"]]
        if len(ms) > 1:
            ax.plot(ms, [r["accuracy_at_m"][str(m)] for m in ms], marker="o",
                    label=f"trained {name}")
    ax.set_xscale("log")
    ax.set_xlabel("evaluation local length M")
    ax.set_ylabel("top-1 (%)")
    ax.set_title("Local attention: train M vs eval M")
    ax.legend(fontsize=7)
    ax = axes[2]
    blocks = doc.get("blocks", {})
    for mixer in ("depthwise conv", "global attention", "local attention M=49"):
        pts = [(n, blocks[f"{mixer}/{n}"]["ms_per_image"]) for n in (196, 784)
               if f"{mixer}/{n}" in blocks]
        if pts:
            ax.plot(*zip(*pts), marker="o", label=mixer)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("tokens")
    ax.set_ylabel("ms / image (1 thread)")
    ax.set_title("One block, CPU")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(OUT / "attention.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
