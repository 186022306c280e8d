"""The train stage: a binary-weight network, then from it WrapNet and the baseline.

The runs go into ``train/<run>/`` (``wrapkit train`` run folders). Each run is reused on its
own when its settings and the training code (:func:`~wrapkit.flow.cache.training_code_digest`)
are unchanged, so a flow rerun after an unrelated change does not train again.
"""

import json
import shutil
import time

from wrapkit.common.files import atomic_write_json

from .cache import training_code_digest

__all__ = ["integer_layer_names", "stage_train"]


def _common_train(cfg):
    return dict(model=cfg.model, widths=cfg.widths, weights="binary", dataset=cfg.dataset,
                data_dir=cfg.data_dir, train_subset=cfg.train_subset,
                batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed, threads=cfg.threads,
                calib_images=cfg.calib_images)


def integer_layer_names(cfg):
    """Names of the layers of ``cfg``'s network that run on integer MACs (the layers the
    cosim stage may name), from the untrained model: known before any training."""
    from wrapkit.models.layers import QuantConv2d, QuantLinear
    from wrapkit.models.train import MODELS, TrainConfig

    tc = TrainConfig(method="wrapnet", **_common_train(cfg))
    size = 28 if cfg.dataset == "fashion-mnist" else 8
    model = MODELS[cfg.model][1](tc.model_config(1, size))
    return [name for name, module in model.named_modules()
            if isinstance(module, (QuantConv2d, QuantLinear))]


def _train_plan(cfg):
    """[(name, builder(done, init) -> TrainConfig)] in order; ``done`` maps the names trained
    so far to their metrics, ``init`` is the run folder the next run starts from."""
    from wrapkit.models.train import TrainConfig

    common = _common_train(cfg)
    plan = []
    if cfg.fp32_epochs:
        plan.append(("fp32", lambda done, init: TrainConfig(method="fp32",
                                                            epochs=cfg.fp32_epochs, **common)))
    if cfg.bwn_epochs:
        plan.append(("bwn", lambda done, init: TrainConfig(
            method="qw", epochs=cfg.bwn_epochs, init=init, **common)))
    plan.append(("wrapnet", lambda done, init: TrainConfig(
        method="wrapnet", init=init, warmup_epochs=cfg.warmup_epochs,
        epochs=cfg.finetune_epochs, acc_bits=cfg.acc_bits, k=cfg.k, p=cfg.p, ro=cfg.ro,
        overflow_limit=cfg.overflow_limit, ro_warmup=cfg.ro_warmup,
        max_act_bits=cfg.max_act_bits, **common)))

    def baseline(done, init):
        bits = cfg.baseline_act_bits
        if bits == "match":
            bits = max(r["act_bits"] for r in done["wrapnet"]["final"]["layers"])
        # eval_acc_bits: PyTorch's accuracy of the same network on plain acc_bits registers,
        # the cross-check of the engine's forced-wrap-around variant.
        return TrainConfig(method="qa", init=init, act_bits=bits, acc_bits=cfg.baseline_acc_bits,
                           epochs=cfg.baseline_epochs, eval_acc_bits=(cfg.acc_bits,), **common)
    plan.append(("baseline", baseline))
    return plan


# Settings that do not change what a training run computes (or that the chain checks itself).
_TRAIN_FREE = ("init", "threads", "data_dir")


_STAMP = "flow_stamp.json"


def _stamp(tc):
    """What a training run's reuse depends on: its settings and the training code."""
    return {"config": {k: v for k, v in tc.to_dict().items() if k not in _TRAIN_FREE},
            "sources": training_code_digest()}


def _reusable(run_dir, tc):
    """'done' (finished with these settings and this code), 'partial' (a checkpoint of
    them), 'stale' (something else is there) or None (nothing)."""
    metrics, stamp = run_dir / "metrics.json", run_dir / _STAMP
    if not metrics.is_file() or not stamp.is_file():
        return "stale" if run_dir.exists() else None
    try:
        saved = json.loads(metrics.read_text())
        stamped = json.loads(stamp.read_text())
    except json.JSONDecodeError:
        return "stale"
    if stamped != _stamp(tc):
        return "stale"
    if saved.get("complete") and (run_dir / "model.pt").is_file():
        return "done"
    return "partial" if (run_dir / "checkpoint.pt").is_file() else "stale"


def stage_train(ctx):
    """Train the runs of :func:`_train_plan` in order, each from the one before; a run whose
    settings and code are unchanged is reused, an interrupted one continues with --resume."""
    from wrapkit.models.train import train

    cfg = ctx.cfg
    root = ctx.path("train")
    done, runs, init, retrained = {}, {}, None, False
    for name, build in _train_plan(cfg):
        run_dir = root / name
        tc = build(done, None if init is None else str(init.resolve()))
        status = None if retrained else _reusable(run_dir, tc)
        t0 = time.perf_counter()
        if status == "done":
            ctx.say(f"{name}: reusing the finished run in {ctx.rel(run_dir)}")
        else:
            if status == "partial" and ctx.resume:
                ctx.say(f"{name}: resuming the interrupted run in {ctx.rel(run_dir)}")
            elif run_dir.exists():
                note = (" (pass --resume to continue it instead)" if status == "partial"
                        else " (its settings changed)" if status == "stale" else "")
                ctx.say(f"{name}: restarting {ctx.rel(run_dir)}{note}")
                shutil.rmtree(run_dir)
            ctx.say(f"{name}: training ({tc.method}, {_epochs(tc)} epochs on "
                    f"{cfg.train_subset or 'all'} {cfg.dataset} images)")
            if not (status == "partial" and ctx.resume):
                atomic_write_json(run_dir / _STAMP, _stamp(tc))
            train(tc, run_dir, resume=status == "partial" and ctx.resume,
                  progress=ctx.progress,
                  log=lambda msg, n=name: ctx.say(f"{n}: {msg.removeprefix('train: ')}"))
            retrained = True
        metrics = json.loads((run_dir / "metrics.json").read_text())
        done[name] = metrics
        final = metrics["final"]
        runs[name] = {
            "dir": ctx.rel(run_dir), "method": tc.method, "config": metrics["config"],
            "reused": status == "done", "seconds": round(time.perf_counter() - t0, 2),
            "train_seconds": round(sum(h["seconds"] for h in metrics["history"]), 2),
            "epochs": len(metrics["history"]),
            "test_accuracy": final["test_accuracy"],
            "mean_overflow_rate": final["mean_overflow_rate"],
            "act_bits": [r["act_bits"] for r in final["layers"]],
            "layers": final["layers"],
            "stage_results": [{"stage": s["stage"], "accuracy": s["accuracy"],
                               "mean_overflow_rate": s["mean_overflow_rate"]}
                              for s in metrics["stage_results"]],
            "eval_acc_bits": metrics.get("eval_acc_bits", {}),
        }
        init = run_dir
        ctx.say(f"{name}: test accuracy {100 * final['test_accuracy']:.2f} % (PyTorch)")
    return {"runs": runs, "train_images": done["wrapnet"]["train_images"],
            "test_images": done["wrapnet"]["test_images"]}


def _epochs(tc):
    from wrapkit.models.train import plan
    return sum(s.epochs for s in plan(tc))
