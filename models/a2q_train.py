"""``wrapkit train --method a2q|a2q+``: the Brevitas A2Q/A2Q+ VGG-7 in a resumable run folder,
exported to an integer graph at the end.

One stage, ``a2q``: activations quantized to ``act_bits`` from the first step (Brevitas's
``QuantReLU``, scale learned from runtime statistics), weights by the A2Q/A2Q+ quantizer with
``weight_bits`` and ``accumulator_bit_width = acc_bits``; Adam with a cosine decay over the
stage (:func:`wrapkit.models.train.train_epoch`, the loop every method uses), then one pass
re-estimating BatchNorm statistics (:func:`recalibrate_batchnorm`). The run folder
holds ``checkpoint.pt`` (after every epoch), ``metrics.json``, ``model.pt`` and ``model.wkx``
(:func:`wrapkit.models.a2q.export_a2q_graph`, plain ``acc_bits`` wrapping accumulators).
"""

import json
import time
from dataclasses import asdict
from io import BytesIO
from pathlib import Path

import torch
import torch.nn.functional as F

from wrapkit import __version__
from wrapkit.common.errors import UserError
from wrapkit.common.files import atomic_write_bytes, atomic_write_json

from .a2q import A2QVGG7, export_a2q_graph, init_from_float
from .data import batches, input_standardisation, load_dataset

__all__ = ["A2Q_MODEL_FORMAT", "build_a2q_model", "evaluate_a2q", "export_a2q_run",
           "is_a2q_run", "load_a2q_model", "recalibrate_batchnorm", "train_a2q"]

A2Q_MODEL_FORMAT = "wrapkit.a2q-model/1"
_CHECKPOINT_FORMAT = "wrapkit.a2q-checkpoint/1"


def build_a2q_model(cfg, in_channels, image_size):
    """The :class:`A2QVGG7` of a :class:`~wrapkit.models.train.TrainConfig`."""
    return A2QVGG7(cfg.model_config(in_channels, image_size), method=cfg.method,
                   act_bits=cfg.act_bits, weight_bits=cfg.weight_bits, acc_bits=cfg.acc_bits)


@torch.no_grad()
def evaluate_a2q(model, ds, batch_size=500):
    """Test accuracy and loss of the PyTorch (Brevitas) model in eval mode."""
    was = model.training
    model.eval()
    correct, loss = 0, 0.0
    for x, y in batches(ds, batch_size):
        logits = model(x)
        loss += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
    model.train(was)
    return {"accuracy": correct / len(ds), "loss": loss / len(ds)}


@torch.no_grad()
def recalibrate_batchnorm(model, ds, images=4096, batch_size=256):
    """Re-estimate every BatchNorm's running statistics on ``images`` training images with
    the final weights (quantizers frozen in eval mode).

    A2Q's norm constraint moves the weights' scale fast — most of all when it starts from a
    float network whose weights far exceed the bound — and the exponential running averages
    lag behind; a cumulative average over one pass with the final weights removes the lag.
    """
    from torch import nn

    model.eval()
    bns = [m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    for x, _ in batches(ds.subset(images, 0), batch_size):
        model(x)
    for bn in bns:
        bn.momentum = 0.1
    model.eval()


def _save(path, obj):
    buf = BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def train_a2q(cfg, out_dir, *, resume=False, progress=True, log=print, **_):
    """Train (or resume) an A2Q/A2Q+ run; the caller holds the folder's lock."""
    from .train import CHECKPOINT, METRICS, MODEL, Stage, _check_same_run, train_epoch

    out_dir = Path(out_dir)
    ckpt = out_dir / CHECKPOINT
    state = None
    if resume:
        if not ckpt.exists():
            raise UserError(f"nothing to resume in {out_dir}: no {CHECKPOINT}")
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        if not isinstance(state, dict) or state.get("format") != _CHECKPOINT_FORMAT:
            raise UserError(f"{ckpt} is not an A2Q checkpoint; use another --out")
        _check_same_run(state["config"], cfg, ckpt)
        if state.get("complete"):
            log(f"train: {out_dir} is already complete")
            return state["metrics"]
    elif ckpt.exists() or (out_dir / METRICS).exists():
        raise UserError(f"{out_dir} already holds a run; pass --resume to continue it or "
                        "choose another --out")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    train_ds, test_ds = load_dataset(cfg.dataset, cfg.data_dir)
    train_ds = train_ds.subset(cfg.train_subset, cfg.seed)
    torch.manual_seed(cfg.seed)
    _, c, h, _ = train_ds.x.shape
    model = build_a2q_model(cfg, c, h)
    stage = Stage("a2q", cfg.epochs, "codes")
    if state is None:
        metrics = {"wrapkit": __version__, "config": cfg.to_dict(), "complete": False,
                   "train_images": len(train_ds), "test_images": len(test_ds),
                   "stages": [asdict(stage)], "history": [], "stage_results": []}
        if cfg.init:
            from .train import read_model_file

            path = Path(cfg.init)
            path = path / MODEL if path.is_dir() else path
            init_from_float(model, read_model_file(path)["state_dict"])
            metrics["init"] = str(path)
        start = 0
        # After init_from_float: Brevitas re-creates the quantizer parameters there.
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    else:
        model.load_state_dict(state["model"])
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        opt.load_state_dict(state["optimizer"])
        metrics, start = state["metrics"], state["epoch"]
        log(f"train: resuming {out_dir} at epoch {start}")
    log(f"train: {cfg.method} ({cfg.act_bits}-bit activations, {cfg.weight_bits}-bit weights, "
        f"{cfg.acc_bits}-bit accumulator guarantee), {cfg.epochs} epochs")
    for epoch in range(start, cfg.epochs):
        t0 = time.perf_counter()
        stats = train_epoch(model, opt, train_ds, cfg, stage, 0, epoch, [], progress)
        stats.update(stage=stage.name, epoch=epoch + 1, seconds=round(time.perf_counter() - t0, 3))
        metrics["history"].append(stats)
        log(f"train: a2q epoch {epoch + 1}/{cfg.epochs}: loss {stats['loss']:.4f} train acc "
            f"{stats['accuracy']:.4f} ({stats['seconds']:.1f} s)")
        _save(ckpt, {"format": _CHECKPOINT_FORMAT, "config": cfg.to_dict(), "epoch": epoch + 1,
                     "model": model.state_dict(), "optimizer": opt.state_dict(),
                     "metrics": metrics, "complete": False})
        atomic_write_json(out_dir / METRICS, metrics)
    recalibrate_batchnorm(model, train_ds)
    result = evaluate_a2q(model, test_ds)
    metrics["stage_results"].append({"stage": stage.name, **result})
    metrics["final"] = {"test_accuracy": result["accuracy"], "test_loss": result["loss"]}
    _save(out_dir / MODEL, {"format": A2Q_MODEL_FORMAT, "wrapkit": __version__,
                            "config": cfg.to_dict(), "state_dict": model.state_dict(),
                            "test_accuracy": result["accuracy"]})
    export_a2q_run(out_dir, out_dir / "model.wkx", model=model, cfg=cfg)
    metrics["complete"] = True
    _save(ckpt, {"format": _CHECKPOINT_FORMAT, "config": cfg.to_dict(), "epoch": cfg.epochs,
                 "model": model.state_dict(), "optimizer": opt.state_dict(),
                 "metrics": metrics, "complete": True})
    atomic_write_json(out_dir / METRICS, metrics)
    log(f"train: done: test accuracy {result['accuracy']:.4f} -> {out_dir / METRICS}, "
        f"{out_dir / 'model.wkx'}")
    return metrics


def is_a2q_run(run):
    """True when ``run`` (a run folder or model file) holds an A2Q/A2Q+ model."""
    from .train import METRICS

    path = Path(run)
    if path.is_dir():
        try:
            cfg = json.loads((path / METRICS).read_text()).get("config", {})
        except (OSError, ValueError):
            return False
        return cfg.get("method") in ("a2q", "a2q+")
    return False


def load_a2q_model(run):
    """``(model, TrainConfig)`` of a finished A2Q run folder (or its ``model.pt``)."""
    from .train import MODEL, TrainConfig

    path = Path(run)
    path = path / MODEL if path.is_dir() else path
    state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or state.get("format") != A2Q_MODEL_FORMAT:
        raise UserError(f"{path} is not an A2Q model file")
    cfg = TrainConfig.from_dict(state["config"])
    images = load_dataset(cfg.dataset, cfg.data_dir)[1]
    model = build_a2q_model(cfg, images.x.shape[1], images.x.shape[2])
    model.load_state_dict(state["state_dict"])
    model.eval()
    return model, cfg


def export_a2q_run(run, out, *, model=None, cfg=None, acc_mode="wrap"):
    """Write the integer graph (``.wkx`` version 2) of an A2Q run; returns the GraphExport."""
    from wrapkit.ref.graph import decode_graph, encode_graph, read_graph

    if model is None:
        model, cfg = load_a2q_model(run)
    train_ds, test_ds = load_dataset(cfg.dataset, cfg.data_dir)
    mean, std = input_standardisation(cfg.dataset, cfg.data_dir)
    from wrapkit.common.datasets import load_images

    test = load_images(cfg.dataset, "test", cfg.data_dir)
    spec = {"shape": list(test.pixels.shape[1:]), "pixel_max": test.pixel_max, "mean": mean,
            "std": std, "dataset": cfg.dataset}
    graph = export_a2q_graph(model, test_ds.x[:64], spec, acc_mode=acc_mode)
    source = {"run": Path(run).name, "model": f"vgg7-{cfg.method}",
              "pytorch_test_accuracy": evaluate_a2q(model, test_ds)["accuracy"],
              "train_config": {k: v for k, v in cfg.to_dict().items()
                               if k not in ("data_dir", "init")}}
    data = encode_graph(graph, source=source, input=spec, num_classes=10)
    decode_graph(data, out)
    atomic_write_bytes(out, data)
    return read_graph(out)
