"""Reproduce the paper's Table 2.5 (bit-packing without vector instructions) on Fashion-MNIST.

One command::

    .venv/bin/python -m wrapkit.models.bitpacking            # -> docs/results/bitpacking.{md,json,png}

Stages (each reused when its output exists in ``--runs``, so an interrupted run continues):

1. ``base``: a WrapNet network (VGG-7-style, binary weights, activations of at most 3 bits,
   8-bit accumulators, k = 2) trained by :func:`wrapkit.models.train.train`.
2. ``baseline``: evaluated with vector semantics (no contamination) and with carry
   contamination corrected by the calibrated per-neuron mean, under three carry models:
   Algorithm 1 (what training simulates), the exact 4x8-bit-in-32-bit packing with
   two's-complement codes, and the same packing with NOT-negated codes (the software kernel).
3. ``buffer``: every layer gets a buffer bit (7-bit lanes + guard): a 7-bit accumulator with
   activation steps re-selected for it by the pipeline's step selection; then fine-tuned.
4. ``rc``: R^c on every layer (a warm-up phase in vector mode), then carry simulation switched
   on layer by layer, starting from the layer with the smallest carry standard deviation, one
   fine-tuning phase per layer (App. 2.6.1.2).
5. ``hybrid``: replays ``rc`` until the first phase whose validation accuracy drops by more
   than ``--drop`` points and gives that layer and all later ones a buffer bit instead.

Carry columns are per neuron over the test images (vector-mode inputs), averaged over all
neurons of all binary layers: "carries" is Algorithm 1's count, "C" the exact contamination.
"""

import argparse
import copy
import math
import sys
import time
from dataclasses import asdict, dataclass
from io import BytesIO
from pathlib import Path

import torch
import torch.nn.functional as F

from wrapkit.common.errors import UserError
from wrapkit.common.files import atomic_write_bytes, atomic_write_json, atomic_write_text

from .calibrate import tracing
from .carry import CarryVariancePenalty, PackingSim
from .data import batches, load_dataset
from .regularizers import OverflowPenalty
from .train import TrainConfig, load_model, train

__all__ = ["BitpackingConfig", "main", "run"]

_KINDS = ("alg1", "lanes", "lanes-not")
# The paper's Table 2.5 (CIFAR-10, VGG-7, 8-bit accumulator), for the side-by-side table.
PAPER_TABLE = [
    {"method": "Baseline", "acc_v": 90.81, "acc_c": 10.03, "carry": 25491, "carry_std": 159.55},
    {"method": "Buffer bit", "acc_v": None, "acc_c": 88.22, "carry": None, "carry_std": None},
    {"method": "R^c", "acc_v": None, "acc_c": 87.86, "carry": 384.42, "carry_std": 17.91},
    {"method": "Hybrid", "acc_v": None, "acc_c": 89.43, "carry": 482.4, "carry_std": 16.18},
]


@dataclass(frozen=True)
class BitpackingConfig:
    """Every knob of the experiment; the defaults finish in about half an hour on 2 cores."""

    runs: str = "runs/bitpacking"        # stage outputs (reused when present)
    results: str = "docs/results"        # bitpacking.md / .json / .png
    # Base network: small enough to train in minutes on CPU (the paper: VGG-7 on CIFAR-10).
    widths: tuple = (16, 32, 64)
    train_subset: int = 12000
    pretrain_epochs: int = 3
    warmup_epochs: int = 1
    base_epochs: int = 2
    max_act_bits: int = 3                # the paper's WrapNet for bit-packing: 3-bit activations
    # Fine-tuning (all variants).
    finetune_images: int = 6000
    val_images: int = 2000               # held out of the fine-tuning images (hybrid decision)
    calib_images: int = 1000             # carry-correction means for the evaluation counts
    rc_warmup_epochs: int = 2            # R^c alone (vector mode) before any carry is simulated
    phase_epochs: int = 1                # per layer-by-layer phase
    buffer_epochs: int = 3
    lr: float = 2e-4
    rc: float = 0.01                     # R^c coefficient (1e-3 barely moved the variance;
                                         # 0.03-1 cost accuracy without lowering it further)
    ro: float = 0.01                     # R^o coefficient, as in the base fine-tuning
    momentum: float = 0.1                # running mean of the carries (eq. 2.2)
    drop: float = 1.0                    # hybrid: "significant" drop, accuracy points
    test_images: int | None = None       # None: the whole test set
    batch_size: int = 128
    seed: int = 0
    threads: int | None = None
    data_dir: str | None = None

    def base_config(self):
        return TrainConfig(method="wrapnet", model="vgg7", widths=self.widths, weights="binary",
                           max_act_bits=self.max_act_bits, acc_bits=8, k=2, p=5.0, ro=self.ro,
                           epochs=self.base_epochs, warmup_epochs=self.warmup_epochs,
                           pretrain_epochs=self.pretrain_epochs, train_subset=self.train_subset,
                           seed=self.seed, threads=self.threads, data_dir=self.data_dir)

    def to_dict(self):
        return {**asdict(self), "widths": list(self.widths)}


# -- data ----------------------------------------------------------------------------------

@dataclass
class _Data:
    finetune: object
    val: object
    calib_x: torch.Tensor
    test: object


def _data(cfg):
    from .data import Dataset

    train_ds, test_ds = load_dataset("fashion-mnist", cfg.data_dir)
    g = torch.Generator().manual_seed(cfg.seed + 7)
    idx = torch.randperm(len(train_ds), generator=g)
    ft = idx[:cfg.finetune_images]
    val = idx[cfg.finetune_images:cfg.finetune_images + cfg.val_images]
    if cfg.test_images is not None:
        test_ds = test_ds.subset(cfg.test_images, cfg.seed)
    return _Data(Dataset(train_ds.x[ft], train_ds.y[ft], "finetune"),
                 Dataset(train_ds.x[val], train_ds.y[val], "val"),
                 train_ds.x[ft[:cfg.calib_images]], test_ds)


# -- stages --------------------------------------------------------------------------------

def _base(cfg, log):
    out = Path(cfg.runs) / "base"
    if (out / "model.pt").is_file():
        log(f"bitpacking: base network: reusing {out}")
    else:
        log(f"bitpacking: base network: training WrapNet into {out}")
        tc = cfg.base_config()
        resume = (out / "checkpoint.pt").is_file()
        train(tc, out, resume=resume, log=log)
    return out


def _finetune(model, sim, ds, epochs, cfg, regs, desc):
    """Adam with cosine decay over ``epochs``; CE + the regularizers. Returns mean stats."""
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    bs = min(cfg.batch_size, len(ds))
    n_batches = len(ds) // bs  # full batches only: BatchNorm needs more than one sample
    sums = {"loss": 0.0, **{r.name: 0.0 for r in regs}}
    model.train()
    with tracing(model):  # R^o reads each layer's last pre-activations
        for epoch in range(epochs):
            _epoch(model, opt, ds, cfg, regs, f"{desc} ({epoch + 1}/{epochs})", epoch, bs,
                   n_batches, epochs * n_batches, sums)
    model.eval()
    seen = max(1, epochs * n_batches * bs)
    return {k: v / seen for k, v in sums.items()}


def _epoch(model, opt, ds, cfg, regs, desc, epoch, bs, n_batches, total, sums):
    from tqdm import tqdm

    gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
    it = tqdm(batches(ds, bs, gen), total=n_batches, desc=desc, leave=False, mininterval=2.0)
    for i, (x, y) in enumerate(it):
        if i == n_batches:
            break
        lr = cfg.lr * 0.5 * (1 + math.cos(math.pi * (epoch * n_batches + i) / max(1, total)))
        for g in opt.param_groups:
            g["lr"] = lr
        loss = F.cross_entropy(model(x), y)
        sums["loss"] += float(loss.detach()) * len(y)
        for r in regs:
            term = r(model)
            loss = loss + r.coef * term
            sums[r.name] += float(term.detach()) * len(y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    it.close()


def _accuracy(model, ds, bs=500):
    model.eval()
    correct = 0
    with torch.no_grad():
        for x, y in batches(ds, bs):
            correct += int((model(x).argmax(1) == y).sum())
    return correct / len(ds)


def _with_modes(sim, modes):
    """Context: apply ``{layer: mode}`` temporarily."""
    class _Ctx:
        def __enter__(self):
            self.saved = sim.modes()
            for n, m in modes.items():
                sim.set_mode(n, m)

        def __exit__(self, *exc):
            for n, m in self.saved.items():
                sim.set_mode(n, m)
    return _Ctx()


def _measure(model, sim, data, cfg, log, label):
    """Accuracy (vector, and carry mode with each count), carry statistics, per layer."""
    names = list(sim.layers)
    vector_modes = {n: ("buffer" if m == "buffer" else "vector") for n, m in sim.modes().items()}
    carry_modes = sim.modes()
    buffered = [n for n, m in carry_modes.items() if m == "buffer"]
    simulated = [n for n in names if n not in buffered]
    row = {"method": label, "modes": carry_modes}
    with _with_modes(sim, vector_modes):
        row["acc_v"] = _accuracy(model, data.test) if not buffered else None
        # Correction means: the counts on calibration images (vector-mode inputs).
        sim.start_stats(_KINDS)
        with torch.no_grad():
            for i in range(0, len(data.calib_x), 250):
                model(data.calib_x[i:i + 250])
        calib = sim.stop_stats()
        for kind in ("lanes", "lanes-not"):
            sim.calibrate_eval_means(calib[kind], kind)
        if not any(st.running_mean is not None for _, st in sim.layers.values()):
            sim.calibrate_eval_means(calib["alg1"], "alg1")  # never trained with carries
        # Carry statistics on the test images.
        sim.start_stats(_KINDS)
        with torch.no_grad():
            for x, _ in batches(data.test, 500):
                model(x)
        test_stats = sim.stop_stats()
    row["layers"] = {}
    for n in simulated:
        row["layers"][n] = {k: test_stats[k][n].summary() for k in _KINDS}
    for k in _KINDS:
        s = [test_stats[k][n] for n in simulated]
        # (an all-buffer network counts no carries)
        neurons = sum(x.s1.numel() for x in s)
        row[f"{k}_mean"] = (sum(float(x.mean().sum()) for x in s) / neurons) if s else None
        row[f"{k}_std"] = (sum(float(x.std().sum()) for x in s) / neurons) if s else None
    # Carry-contaminated accuracy: every non-buffered layer in carry mode.
    all_carry = {n: ("buffer" if n in buffered else "carry") for n in names}
    with _with_modes(sim, all_carry):
        for kind in _KINDS:
            sim.evaluate_with = kind
            row[f"acc_c_{kind}"] = _accuracy(model, data.test)
        sim.evaluate_with = "alg1"
    log(f"bitpacking: {label}: acc(v) {_pct(row['acc_v'])}, acc(c) alg1 "
        f"{_pct(row['acc_c_alg1'])} lanes {_pct(row['acc_c_lanes'])} NOT "
        f"{_pct(row['acc_c_lanes-not'])}; carries {_num(row['alg1_mean'])} "
        f"± {_num(row['alg1_std'])}")
    return row


class _Timings:
    """Seconds each stage took when it last ran (``runs/timings.json``), so a results file
    written from reused stages still reports what producing them cost."""

    def __init__(self, cfg):
        import json

        self.path = Path(cfg.runs) / "timings.json"
        self.data = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def record(self, name, seconds):
        self.data[name] = round(seconds, 1)
        atomic_write_json(self.path, self.data)

    def total(self):
        return round(sum(self.data.values()), 1)


def _timed(timings, name, fn):
    t0 = time.perf_counter()
    out = fn()
    timings.record(name, time.perf_counter() - t0)
    return out


def _cached_row(name, source, cfg, measure, timings=None):
    """Measure once per stage output: the row is stored beside the runs and reused while
    ``source`` (the file the measured network came from) is unchanged."""
    import json

    path = Path(cfg.runs) / "rows" / f"{name}.json"
    st = Path(source).stat()
    key = {"source": str(source), "mtime_ns": st.st_mtime_ns, "size": st.st_size,
           "test_images": cfg.test_images, "calib_images": cfg.calib_images, "seed": cfg.seed}
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("key") == key:
            return saved["row"]
    row = measure() if timings is None else _timed(timings, f"measure {name}", measure)
    atomic_write_json(path, {"key": key, "row": row})
    return row


def _save_state(path, model, sim, extra):
    buf = BytesIO()
    torch.save({"model": model.state_dict(), "sim": sim.state(), **extra}, buf)
    atomic_write_bytes(path, buf.getvalue())


def _load_state(path, model, sim):
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    sim.load_state(state["sim"])
    return state


def _fresh(base_dir, cfg):
    model = load_model(base_dir)
    sim = PackingSim(model, momentum=cfg.momentum)
    return model, sim


def _to_buffer(model, sim, names, data, cfg):
    """Give layers ``names`` a buffer bit: their lanes keep ``b - 1`` data bits, so they get a
    ``b - 1``-bit accumulator and activation steps re-selected for it (the pipeline's own
    step selection, same target overflow rate and widest activation)."""
    from .calibrate import select_steps

    tracked = [n for n, (_, st) in sim.layers.items() if st.track]
    sim.set_tracking([])
    model.eval()
    bits = {sim.layers[n][1].acc.bits - 1 for n in names}
    choices = {}
    for b in sorted(bits):
        for c in select_steps(model, data.calib_x, target_rate=cfg.base_config().p / 100,
                              acc_bits=b, max_bits=cfg.max_act_bits):
            if c.layer in names and sim.layers[c.layer][1].acc.bits - 1 == b:
                choices[c.layer] = c
    for n in names:
        sim.layers[n][0].act_quant = choices[n].act_quant()
        sim.set_mode(n, "buffer")
    sim.set_tracking(tracked)
    return {n: c.to_dict() for n, c in choices.items()}


def _buffer(base_dir, data, cfg, log):
    model, sim = _fresh(base_dir, cfg)
    path = Path(cfg.runs) / "buffer.pt"
    if path.is_file():
        state = _load_state(path, model, sim)
        before, steps = state["acc_before"], state["steps"]
    else:
        steps = _to_buffer(model, sim, list(sim.layers), data, cfg)
        before = _accuracy(model, data.val)
        log(f"bitpacking: buffer: 7-bit lanes, steps re-selected (activation bits "
            f"{[s['bits'] for s in steps.values()]}), before fine-tuning: val {_pct(before)}")
        _finetune(model, sim, data.finetune, cfg.buffer_epochs, cfg,
                  [OverflowPenalty(cfg.ro)], "buffer")
        _save_state(path, model, sim, {"acc_before": before, "steps": steps})
    return model, sim, {"val_before_finetune": before, "buffer_steps": steps}


def _rc(base_dir, order, data, cfg, log, hybrid_from=None, phases=None):
    """Layer-by-layer carry-simulated fine-tuning with R^c; returns model, sim, phase log.

    With ``hybrid_from`` (a phase index), replays the saved phase ``hybrid_from - 1`` state
    and puts ``order[hybrid_from - 1:]`` in buffer mode for one final phase.
    """
    model, sim = _fresh(base_dir, cfg)
    names = list(sim.layers)
    sim.set_tracking(names)
    regs = [OverflowPenalty(cfg.ro), CarryVariancePenalty(cfg.rc, sim)]
    if hybrid_from is not None:
        _load_state_dict(model, sim, phases[hybrid_from - 1]["state"])
        sim.set_tracking([n for n in order[:hybrid_from - 1]])
        steps = _to_buffer(model, sim, order[hybrid_from - 1:], data, cfg)
        # As many epochs as the all-buffer variant gets, so the two compare fairly.
        _finetune(model, sim, data.finetune, cfg.buffer_epochs, cfg, regs, "hybrid")
        return model, sim, steps
    log_rows = []
    # Phase 0: R^c alone (vector mode), so variances shrink before any carry is simulated.
    for p in range(len(order) + 1):
        if p:
            sim.set_mode(order[p - 1], "carry")
        stats = _finetune(model, sim, data.finetune,
                          cfg.phase_epochs if p else cfg.rc_warmup_epochs, cfg, regs,
                          f"R^c phase {p}/{len(order)}")
        val = _accuracy(model, data.val)
        log_rows.append({"phase": p, "layer": order[p - 1] if p else None, "val_acc": val,
                         "carry_variance": stats.get("carry_variance"),
                         "state": {"model": copy.deepcopy(model.state_dict()),
                                   "sim": copy.deepcopy(sim.state())}})
        log(f"bitpacking: R^c phase {p}: "
            f"{'carry on ' + order[p - 1] if p else 'regularizer only'}: val {_pct(val)}, "
            f"R^c {stats.get('carry_variance', 0):.2f}")
    return model, sim, log_rows


def _load_state_dict(model, sim, state):
    model.load_state_dict(state["model"])
    sim.load_state(state["sim"])


def run(cfg: BitpackingConfig, log=print):
    """Run every stage and write the results; returns the results dict."""
    t_start = time.perf_counter()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    Path(cfg.runs).mkdir(parents=True, exist_ok=True)
    timings = _Timings(cfg)
    if (Path(cfg.runs) / "base" / "model.pt").is_file():
        base_dir = _base(cfg, log)
    else:
        base_dir = _timed(timings, "base", lambda: _base(cfg, log))
    data = _data(cfg)
    rows, extra = [], {}

    model, sim = _fresh(base_dir, cfg)
    log("bitpacking: measuring the baseline")
    baseline = _cached_row("baseline", base_dir / "model.pt", cfg, lambda: _measure(
        model, sim, data, cfg, log, "Baseline (WrapNet, 8-bit)"), timings)
    rows.append(baseline)
    # Phase order: the paper starts from the layer with the least carry variance.
    order = sorted(baseline["layers"], key=lambda n: baseline["layers"][n]["alg1"]["std"])
    extra["phase_order"] = order

    log("bitpacking: buffer bit on every layer")
    if (Path(cfg.runs) / "buffer.pt").is_file():
        model, sim, info = _buffer(base_dir, data, cfg, log)
    else:
        model, sim, info = _timed(timings, "buffer", lambda: _buffer(base_dir, data, cfg, log))
    row = _cached_row("buffer", Path(cfg.runs) / "buffer.pt", cfg, lambda: _measure(
        model, sim, data, cfg, log, "Buffer bit (7-bit lanes + guard)"), timings)
    rows.append({**row, **info})

    rc_path = Path(cfg.runs) / "rc.pt"
    if rc_path.is_file():
        log(f"bitpacking: R^c: reusing {rc_path}")
        phases = torch.load(rc_path, map_location="cpu", weights_only=True)["phases"]
        model, sim = _fresh(base_dir, cfg)
        _load_state_dict(model, sim, phases[-1]["state"])
    else:
        log(f"bitpacking: R^c, carry simulation layer by layer: {', '.join(order)}")
        model, sim, phases = _timed(timings, "rc", lambda: _rc(base_dir, order, data, cfg, log))
        buf = BytesIO()
        torch.save({"phases": phases}, buf)
        atomic_write_bytes(rc_path, buf.getvalue())
    sim.set_tracking([])
    rows.append(_cached_row("rc", rc_path, cfg, lambda: _measure(
        model, sim, data, cfg, log, "R^c (layer by layer)"), timings))
    extra["rc_phases"] = [{k: v for k, v in p.items() if k != "state"} for p in phases]

    # Hybrid: the first phase whose validation accuracy fell by more than cfg.drop points.
    drop_at = next((p["phase"] for prev, p in zip(phases, phases[1:])
                    if (prev["val_acc"] - p["val_acc"]) * 100 > cfg.drop), None)
    extra["hybrid_buffer_from_phase"] = drop_at
    if drop_at is None:
        log("bitpacking: hybrid: no phase dropped by more than "
            f"{cfg.drop} points; hybrid = R^c")
        rows.append({**rows[-1], "method": "Hybrid (= R^c: no significant drop)"})
    else:
        hyb_path = Path(cfg.runs) / "hybrid.pt"
        if hyb_path.is_file():
            log(f"bitpacking: hybrid: reusing {hyb_path}")
            model, sim = _fresh(base_dir, cfg)
            steps = _load_state(hyb_path, model, sim)["steps"]
        else:
            log(f"bitpacking: hybrid: buffer bit from phase {drop_at} "
                f"({', '.join(order[drop_at - 1:])})")
            model, sim, steps = _timed(timings, "hybrid", lambda: _rc(
                base_dir, order, data, cfg, log, hybrid_from=drop_at, phases=phases))
            _save_state(hyb_path, model, sim, {"steps": steps})
        sim.set_tracking([])
        row = _cached_row("hybrid", hyb_path, cfg, lambda: _measure(
            model, sim, data, cfg, log, "Hybrid (R^c + buffer bit)"), timings)
        rows.append({**row, "buffer_steps": steps})

    result = {"config": cfg.to_dict(), "base_run": str(base_dir), "rows": rows,
              "paper_table": PAPER_TABLE, **extra,
              "test_images": len(data.test), "seconds": round(time.perf_counter() - t_start, 1),
              "stage_seconds": timings.data, "total_stage_seconds": timings.total()}
    _write(result, cfg)
    return result


# -- output --------------------------------------------------------------------------------

def _pct(x):
    return "-" if x is None else f"{100 * x:.2f}%"


def _num(x, nd=1):
    return "-" if x is None else f"{x:.{nd}f}"


def _write(result, cfg):
    out = Path(cfg.results)
    atomic_write_json(out / "bitpacking.json", result)
    rows = result["rows"]
    lines = [
        "# Bit-packing without vector instructions (paper Table 2.5) on Fashion-MNIST", "",
        "Produced by `python -m wrapkit.models.bitpacking` "
        f"(all stages: {result['total_stage_seconds'] / 60:.0f} min of compute on this machine; "
        f"this invocation {result['seconds'] / 60:.0f} min, reusing finished stages; test "
        f"images: {result['test_images']}). "
        "VGG-7-style network, widths "
        f"{tuple(cfg.widths)}, binary weights, ≤{cfg.max_act_bits}-bit activations, 8-bit "
        "accumulators with cyclic activation (k = 2); first and last layers full precision.",
        "",
        "Acc (v): vector semantics (no carry contamination). Acc (c): every binary layer packs "
        "its products into lanes and the per-neuron mean carry is subtracted (the carry "
        "correction), with carries from Algorithm 1 (the training model), from the exact "
        "4 × 8-bit lanes in a 32-bit word with two's-complement codes, or with NOT-negated codes "
        "(the `wrapkit.models.kernels` kernel). Carries: per neuron over the test set, mean over "
        "neurons of the per-neuron mean and standard deviation, over the layers that pack with "
        "carries (buffer-bit layers have none; the hybrid's columns cover its carry layers "
        "only).", "",
        "| method | Acc (v) | Acc (c) Alg. 1 | Acc (c) lanes | Acc (c) lanes, NOT | carries "
        "(Alg. 1) | carry std (Alg. 1) | C lanes | C std lanes | C std NOT |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        buffered_all = all(m == "buffer" for m in r["modes"].values())
        if buffered_all:
            lines.append(f"| {r['method']} | - | {_pct(r['acc_c_alg1'])} | "
                         f"{_pct(r['acc_c_lanes'])} | {_pct(r['acc_c_lanes-not'])} | - | - | - "
                         "| - | - |")
            continue
        lines.append(
            f"| {r['method']} | {_pct(r['acc_v'])} | {_pct(r['acc_c_alg1'])} | "
            f"{_pct(r['acc_c_lanes'])} | {_pct(r['acc_c_lanes-not'])} | {_num(r['alg1_mean'])} | "
            f"{_num(r['alg1_std'], 2)} | {_num(r['lanes_mean'])} | {_num(r['lanes_std'], 2)} | "
            f"{_num(r['lanes-not_std'], 2)} |")
    lines += ["", "Paper (CIFAR-10, VGG-7, 8-bit accumulator):", "",
              "| method | Acc (v) | Acc (c) | carries | carry std |", "|---|---:|---:|---:|---:|"]
    for r in PAPER_TABLE:
        f = lambda v: "-" if v is None else (f"{v:.2f}%" if isinstance(v, float) and v < 100
                                             else f"{v}")
        lines.append(f"| {r['method']} | {f(r['acc_v'])} | {f(r['acc_c'])} | "
                     f"{'-' if r['carry'] is None else r['carry']} | "
                     f"{'-' if r['carry_std'] is None else r['carry_std']} |")
    lines += ["", f"Layer-by-layer order (smallest carry std first): "
              f"{', '.join(result['phase_order'])}.", "",
              "| R^c phase | carry simulated on | validation accuracy | R^c |",
              "|---:|---|---:|---:|"]
    for p in result["rc_phases"]:
        lines.append(f"| {p['phase']} | {p['layer'] or '(regularizer only)'} | "
                     f"{_pct(p['val_acc'])} | {_num(p['carry_variance'], 2)} |")
    hyb = result["hybrid_buffer_from_phase"]
    lines += ["", "Hybrid: " + ("no phase lost more than "
                                f"{cfg.drop} points of validation accuracy, so it equals R^c."
                                if hyb is None else
                                f"buffer bit from phase {hyb} on "
                                f"({', '.join(result['phase_order'][hyb - 1:])})."), ""]
    lines += ["Per layer (test set; Alg. 1 carries / exact lane contamination C, mean ± std per "
              "neuron):", "", "| method | layer | carries | C lanes | C NOT |",
              "|---|---|---:|---:|---:|"]
    for r in rows:
        for n, s in r["layers"].items():
            lines.append(f"| {r['method']} | {n} | {s['alg1']['mean']:.1f} ± "
                         f"{s['alg1']['std']:.2f} | {s['lanes']['mean']:.1f} ± "
                         f"{s['lanes']['std']:.2f} | {s['lanes-not']['mean']:.1f} ± "
                         f"{s['lanes-not']['std']:.2f} |")
    atomic_write_text(out / "bitpacking.md", "\n".join(lines) + "\n")
    _plot(result, out / "bitpacking.png")
    print(f"bitpacking: wrote {out / 'bitpacking.md'}, .json, .png")


def _plot(result, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["rows"] if r["layers"]]
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / max(1, len(rows))
    layers = list(rows[0]["layers"]) if rows else []
    for i, r in enumerate(rows):
        ax.bar([j + i * width for j in range(len(layers))],
               [r["layers"].get(n, {"alg1": {"std": 0}})["alg1"]["std"] for n in layers],
               width, label=r["method"])
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(layers))], layers, rotation=20)
    ax.set_ylabel("per-neuron carry std (Alg. 1)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m wrapkit.models.bitpacking",
                                description=__doc__.split("\n")[0])
    defaults = BitpackingConfig()
    optional = {"test_images": int, "threads": int, "data_dir": str}
    for name in BitpackingConfig.__dataclass_fields__:
        flag = "--" + name.replace("_", "-")
        value = getattr(defaults, name)
        if isinstance(value, tuple):
            p.add_argument(flag, type=int, nargs="+", default=list(value))
        else:
            p.add_argument(flag, type=optional.get(name, type(value)), default=value)
    args = p.parse_args(argv)
    kwargs = vars(args)
    kwargs["widths"] = tuple(kwargs["widths"])
    try:
        cfg = BitpackingConfig(**kwargs)
        run(cfg)
    except UserError as exc:
        print(f"bitpacking: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
