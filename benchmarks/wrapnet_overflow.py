"""Why WrapNet's overflow is (not) learned: training curves of the demo's networks.

The main job (``wrapkit demo``, quick preset) trains a binary-weight VGG-7 (widths 16/32/64,
30 000 Fashion-MNIST images), then two networks from it: WrapNet (8-bit accumulator, cyclic
activation k = 2, steps for an overflow target p = 5 %, up to 8-bit activations, warm-up with
float activations, fine-tuning with quantized activations and R^o) and its 32-bit baseline
(quantized activations as wide as WrapNet's widest, no overflow). This script retrains those
networks with a probe after every epoch and records what changes while they learn:

* test accuracy and loss (is it still rising when the schedule stops?),
* per layer: overflow rate (pre-activations outside the 8-bit register), cyclic-fold rate
  (wrapped values beyond the fold threshold t = k·2^(b-1)/(k+1), where the activation's slope
  is -k), clipped activation codes and mean code (do the inputs move relative to the fixed
  step?), BatchNorm |gamma| and running std of the BatchNorm that follows the layer,
* on one fixed training batch: the gradient norm of the cross-entropy and of coef·R^o with
  respect to the quantized layers' weights,
* the learning rate at the end of every epoch.

Every run is cached as JSON in ``docs/results/wrapnet_overflow_runs/`` (rerunning trains only
what is missing); run directories with the models live in ``out/wrapnet_overflow/`` (scratch).
``--report`` writes ``docs/results/wrapnet_overflow.json`` and the plots from the cached runs.

Usage: .venv/bin/python benchmarks/wrapnet_overflow.py [--only NAME ...] [--report]
"""

import argparse
import copy
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from wrapkit.common.files import atomic_write_json
from wrapkit.models import OverflowPenalty, TrainConfig, train
from wrapkit.models.accumulate import excess_limit, overflow_mask
from wrapkit.models.calibrate import tracing
from wrapkit.models.data import batches, load_dataset
from wrapkit.models.train import evaluate

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "docs" / "results" / "wrapnet_overflow_runs"
SCRATCH = ROOT / "out" / "wrapnet_overflow"
RESULTS = ROOT / "docs" / "results"

#: The quick preset of ``wrapkit demo`` (sim/flow.py), one thread.
DEMO = dict(model="vgg7", widths=(16, 32, 64), weights="binary", dataset="fashion-mnist",
            train_subset=30000, batch_size=128, lr=1e-3, calib_images=512, threads=1)
PROBE_IMAGES = 2000     # test images for the fold / code statistics (accuracy uses all 10 000)


def _bwn(seed):
    return {"name": f"bwn_s{seed}", "init": None, "probe": False,
            "cfg": dict(method="qw", epochs=3, seed=seed)}


def _wrapnet(name, seed, warmup, finetune, probe=True, **extra):
    return {"name": name, "init": f"bwn_s{seed}", "probe": probe,
            "cfg": dict(method="wrapnet", warmup_epochs=warmup, epochs=finetune, acc_bits=8,
                        k=2, p=5.0, ro=0.01, max_act_bits=8, seed=seed) | extra}


def _baseline(seed, epochs, match, probe=True):
    """The 32-bit baseline of the WrapNet run ``match``: its widest activation, ``epochs``
    epochs from the same BWN network. Named after what it trains (runs that coincide are
    trained once): ``baseline_<bits>b_<epochs>e_s<seed>``."""
    return {"name": f"baseline:{match}", "init": f"bwn_s{seed}", "probe": probe,
            "match": match, "cfg": dict(method="qa", epochs=epochs, acc_bits=32,
                                        eval_acc_bits=(8,), seed=seed)}


#: The recipe change this study arrives at (see docs/results/wrapnet_overflow.md): p and R^o
#: count everything beyond the cyclic fold threshold; R^o in the warm-up too (when there is one).
FIX = dict(overflow_limit="fold", ro_warmup=True)


def experiments():
    """Named runs, in the order they are trained."""
    runs = [_bwn(0),
            # the demo as it is: WrapNet 1 + 3 epochs, baseline 4
            _wrapnet("wrapnet_demo_s0", 0, 1, 3),
            _baseline(0, 4, "wrapnet_demo_s0"),
            # the recipe fix at the demo's budget
            _wrapnet("wrapnet_fix_s0", 0, 1, 3, **FIX),
            _baseline(0, 4, "wrapnet_fix_s0"),
            # the same budget without the float-activation warm-up: 4 epochs of fine-tuning
            _wrapnet("wrapnet_fixnowarm_s0", 0, 0, 4, **FIX),
            _baseline(0, 4, "wrapnet_fixnowarm_s0"),
            _bwn(1), _bwn(2)]
    for seed in (1, 2):
        runs += [_wrapnet(f"wrapnet_fixnowarm_s{seed}", seed, 0, 4, probe=False, **FIX),
                 _baseline(seed, 4, f"wrapnet_fixnowarm_s{seed}", probe=False)]
    # a longer schedule, the same for both networks
    runs += [_wrapnet("wrapnet_fixnowarm6_s0", 0, 0, 6, **FIX),
             _baseline(0, 6, "wrapnet_fixnowarm6_s0")]
    # the overflow target p with the fix (up to 8-bit activations; p = 5 % is fixnowarm_s0)
    runs += [_wrapnet("wrapnet_fixnowarm_p10_s0", 0, 0, 4, p=10.0, **FIX),
             _wrapnet("wrapnet_fixnowarm_p0_s0", 0, 0, 4, p=0.0, **FIX)]
    # the demo's recipe on the other seeds (mean ± std of the gap before the fix), and at
    # p = 10 %
    for seed in (1, 2):
        runs += [_wrapnet(f"wrapnet_demo_s{seed}", seed, 1, 3, probe=False),
                 _baseline(seed, 4, f"wrapnet_demo_s{seed}", probe=False)]
    runs += [_wrapnet("wrapnet_demo_p10_s0", 0, 1, 3, p=10.0)]
    return {r["name"]: r for r in runs}


# -- the probe --------------------------------------------------------------------------------

def _bn_after(model):
    """{quant layer name: the BatchNorm that follows it}."""
    out = {}
    for name, _ in model.quant_layers():
        parent = name.rsplit(".", 1)[0] if "." in name else None
        bn = getattr(model, parent).bn if parent else getattr(model, "bn7")
        out[name] = bn
    return out


def make_probe(test_ds, train_batch, acc_bits=8):
    x_probe = test_ds.x[:PROBE_IMAGES]

    def probe(model, stage, epoch):
        r = evaluate(model, test_ds)
        res = {"stage": stage.name, "epoch": epoch, "test_accuracy": r["accuracy"],
               "test_loss": r["loss"], "overflow_rates": r["overflow_rates"],
               "mean_overflow_rate": r["mean_overflow_rate"]}
        layers = model.quant_layers()
        over = {n: 0 for n, _ in layers}
        fold = {n: 0 for n, _ in layers}
        clip = {n: 0 for n, _ in layers}
        code_sum = {n: 0.0 for n, _ in layers}
        total = {n: 0 for n, _ in layers}
        ins = {n: 0 for n, _ in layers}
        model.eval()
        with torch.no_grad(), tracing(model):
            for i in range(0, len(x_probe), 500):
                model(x_probe[i:i + 500])
                for n, layer in layers:
                    z = layer.last.z
                    over[n] += int(overflow_mask(z, acc_bits).sum())
                    # wrapped into the 8-bit register, then beyond the fold threshold of the
                    # run's k (k = 2 for the baselines, as the WrapNet they are compared with)
                    half = float(1 << (acc_bits - 1))
                    m = z - 2 * half * torch.round(z / (2 * half))
                    t = excess_limit(acc_bits, layer.accumulator.k or 2, "fold")
                    fold[n] += int((m.abs() > t).sum())
                    total[n] += z.numel()
                    aq = layer.act_quant
                    if aq is not None and aq.bits is not None:
                        clip[n] += int((layer.last.x_q >= aq.qmax).sum())
                    code_sum[n] += float(layer.last.x_q.sum())
                    ins[n] += layer.last.x_q.numel()
        res["overflow8"] = {n: over[n] / total[n] for n in over}
        res["fold_rate"] = {n: fold[n] / total[n] for n in fold}
        res["clip_rate"] = {n: clip[n] / ins[n] for n in clip}
        res["mean_code"] = {n: code_sum[n] / ins[n] for n in code_sum}
        bns = _bn_after(model)
        res["bn_gamma"] = {n: float(bn.weight.detach().abs().mean()) for n, bn in bns.items()}
        res["bn_running_std"] = {n: float(bn.running_var.sqrt().mean()) for n, bn in bns.items()}
        # Gradients on one fixed training batch, on a copy (train-mode BatchNorm would move
        # the running statistics of the network being trained).
        other = copy.deepcopy(model)
        other.train()
        x, y = train_batch
        weights = [layer.weight for _, layer in other.quant_layers()]
        with tracing(other):
            ce = F.cross_entropy(other(x), y)
            g_ce = torch.autograd.grad(ce, weights, retain_graph=True)
            ro = OverflowPenalty(1.0).penalty(other)
            g_ro = torch.autograd.grad(ro, weights, allow_unused=True)
        names = [n for n, _ in other.quant_layers()]
        res["grad_ce"] = {n: float(g.norm()) for n, g in zip(names, g_ce)}
        res["grad_ro_unit"] = {n: 0.0 if g is None else float(g.norm())
                               for n, g in zip(names, g_ro)}
        res["ro_value"] = float(ro)
        model.train()
        return res

    return probe


# -- running and caching ----------------------------------------------------------------------

def _load(name):
    path = RUNS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def run(spec, specs, data, log=print):
    """Train ``spec`` (and what it starts from) unless its JSON is cached; return the JSON."""
    cfg_kw = DEMO | spec["cfg"]
    name = spec["name"]
    if "match" in spec:
        w = run(specs[spec["match"]], specs, data, log)
        cfg_kw["act_bits"] = max(r["act_bits"] for r in w["final"]["layers"])
        name = f"baseline_{cfg_kw['act_bits']}b_{cfg_kw['epochs']}e_s{cfg_kw['seed']}"
    cached = _load(name)
    run_dir = SCRATCH / name
    if cached is not None and (run_dir / "model.pt").is_file():
        return cached
    init = None
    if spec["init"]:
        run(specs[spec["init"]], specs, data, log)
        init = str(SCRATCH / spec["init"])
    if cached is not None and not any(s.get("init") == name for s in specs.values()):
        return cached  # nothing starts from it: the JSON is all we need
    cfg = TrainConfig(**cfg_kw, init=init)
    t0 = time.perf_counter()
    metrics = _finished(run_dir, cfg)
    if metrics is None:
        resume = (run_dir / "checkpoint.pt").is_file()
        if run_dir.exists() and not resume:
            shutil.rmtree(run_dir)
        log(f"== {name}: {cfg.method}, {'resuming' if resume else 'training'}")
        probe = make_probe(*data) if spec["probe"] else None
        metrics = train(cfg, run_dir, resume=resume, progress=False, epoch_probe=probe,
                        log=lambda m: log(f"   {m}"))
    out = {"name": name, "config": metrics["config"], "final": metrics["final"],
           "history": metrics["history"], "stage_results": metrics["stage_results"],
           "step_selection": metrics["step_selection"],
           "eval_acc_bits": metrics.get("eval_acc_bits", {}),
           "train_seconds": sum(h["seconds"] for h in metrics["history"]),
           "wall_seconds": round(time.perf_counter() - t0, 1)}
    atomic_write_json(RUNS / f"{name}.json", out)
    log(f"== {name}: test accuracy {100 * out['final']['test_accuracy']:.2f} %")
    return out


def _finished(run_dir, cfg):
    """The metrics of a complete run of ``cfg`` already in ``run_dir`` (else None)."""
    path = run_dir / "metrics.json"
    if not (path.is_file() and (run_dir / "model.pt").is_file()):
        return None
    metrics = json.loads(path.read_text())
    free = ("init", "threads", "data_dir")
    want = {k: v for k, v in cfg.to_dict().items() if k not in free}
    have = {k: v for k, v in metrics["config"].items() if k not in free}
    return metrics if metrics.get("complete") and want == have else None


def load_data():
    torch.set_num_threads(DEMO["threads"])
    train_ds, test_ds = load_dataset("fashion-mnist")
    sub = train_ds.subset(DEMO["train_subset"], 0)
    x, y = next(iter(batches(sub, 256, torch.Generator().manual_seed(123))))
    return test_ds, (x, y)


# -- report -----------------------------------------------------------------------------------

def _curve(run_json, key="test_accuracy"):
    pts = [h["probe"] for h in run_json["history"] if "probe" in h]
    return [p[key] for p in pts]


def report():
    runs = {p.stem: json.loads(p.read_text()) for p in sorted(RUNS.glob("*.json"))}
    summary = {}
    for name, r in runs.items():
        summary[name] = {
            "config": {k: r["config"][k] for k in ("method", "epochs", "warmup_epochs", "seed",
                                                   "p", "ro", "overflow_limit", "ro_warmup",
                                                   "act_bits", "lr")
                       if k in r["config"]},
            "test_accuracy": r["final"]["test_accuracy"],
            "mean_overflow_rate": r["final"]["mean_overflow_rate"],
            "act_bits": [l["act_bits"] for l in r["final"]["layers"]],
            "train_seconds": round(r["train_seconds"], 1),
            "curve": [{"stage": h["stage"], "epoch": h["epoch"], "lr_end": h["lr_end"],
                       "train_accuracy": h["accuracy"], "loss": h["loss"],
                       **({k: v for k, v in h["probe"].items() if k not in ("stage", "epoch")}
                          if "probe" in h else {})} for h in r["history"]],
        }
    out = {"runs": summary, "pairs": _pairs(runs)}
    atomic_write_json(RESULTS / "wrapnet_overflow.json", out)
    _plots(runs)
    for group, g in out["pairs"]["groups"].items():
        print(f"{group}: {g['n']} seed(s): WrapNet {g['wrapnet_mean']:.2f} ± "
              f"{g['wrapnet_std']:.2f} %, baseline {g['baseline_mean']:.2f} ± {g['baseline_std']:.2f} %, "
              f"gap {g['gap_mean']:.2f} ± {g['gap_std']:.2f} points")
    return out


def _pairs(runs):
    """Each WrapNet run with the baseline of the same seed, activation width and budget; and
    per recipe (run name without the seed) mean ± std (sample std; 0 for one seed)."""
    pairs = []
    for name, r in runs.items():
        c = r["config"]
        if c["method"] != "wrapnet":
            continue
        bits = max(l["act_bits"] for l in r["final"]["layers"])
        budget = c["warmup_epochs"] + c["epochs"]
        b = runs.get(f"baseline_{bits}b_{budget}e_s{c['seed']}")
        if b is None:
            continue
        pairs.append({"recipe": name.rsplit("_s", 1)[0], "seed": c["seed"], "wrapnet": name,
                      "baseline": b["name"] if "name" in b else None, "act_bits": bits,
                      "wrapnet_accuracy": 100 * r["final"]["test_accuracy"],
                      "baseline_accuracy": 100 * b["final"]["test_accuracy"],
                      "gap": 100 * (b["final"]["test_accuracy"] - r["final"]["test_accuracy"])})
    groups = {}
    for recipe in sorted({p["recipe"] for p in pairs}):
        ps = [p for p in pairs if p["recipe"] == recipe]

        def ms(key):
            v = [p[key] for p in ps]
            return statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0

        g = {"n": len(ps), "seeds": [p["seed"] for p in ps]}
        for key, short in (("wrapnet_accuracy", "wrapnet"), ("baseline_accuracy", "baseline"),
                           ("gap", "gap")):
            g[f"{short}_mean"], g[f"{short}_std"] = ms(key)
        groups[recipe] = g
    return {"pairs": pairs, "groups": groups}


def _plots(runs):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def xs(r):
        return list(range(1, len(_curve(r)) + 1))

    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    for name, r in runs.items():
        if not any("probe" in h for h in r["history"]):
            continue
        style = "-" if r["config"]["method"] == "wrapnet" else "--"
        ax[0].plot(xs(r), [100 * a for a in _curve(r)], style, marker="o", ms=3, label=name)
        ax[1].plot(xs(r), [100 * h["accuracy"] for h in r["history"]], style, marker="o",
                   ms=3, label=name)
    ax[0].set(xlabel="epochs after BWN", ylabel="test accuracy (%)", title="test")
    ax[1].set(xlabel="epochs after BWN", ylabel="train accuracy (%)", title="train")
    for a in ax:
        a.grid(alpha=.3)
        a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "wrapnet_overflow_accuracy.png", dpi=110)
    plt.close(fig)

    wn = [r for r in runs.values() if r["config"]["method"] == "wrapnet"
          and any("probe" in h for h in r["history"])]
    if not wn:
        return
    keys = [("overflow_rates", "overflow rate (test, 8 bits)"),
            ("fold_rate", "cyclic-fold rate (|wrap(z)| > t)"),
            ("clip_rate", "clipped activation codes"), ("bn_gamma", "BatchNorm |gamma|")]
    for r in wn:
        fig, axs = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.6))
        curve = [h["probe"] for h in r["history"] if "probe" in h]
        for a, (k, title) in zip(axs, keys):
            for layer in curve[0][k]:
                a.plot(range(1, len(curve) + 1), [c[k][layer] for c in curve], marker="o",
                       ms=3, label=layer)
            a.set(title=title, xlabel="epochs after BWN")
            a.grid(alpha=.3)
        axs[0].legend(fontsize=7)
        fig.suptitle(r["name"])
        fig.tight_layout()
        fig.savefig(RESULTS / f"wrapnet_overflow_layers_{r['name']}.png", dpi=100)
        plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", help="train only these runs (and what they need)")
    ap.add_argument("--report", action="store_true", help="only write the JSON and plots")
    args = ap.parse_args(argv)
    if not args.report:
        specs = experiments()
        data = load_data()
        for name in args.only or list(specs):
            run(specs[name], specs, data, log=lambda m: print(m, flush=True))
    report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
