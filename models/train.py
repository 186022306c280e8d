"""Training: the WrapNet pipeline (§2.4.1) and its baselines, in resumable run directories.

Read top to bottom: :class:`TrainConfig` (one dataclass, every knob), :func:`plan` (which
stages a method runs), :func:`train` (the loop over stages and epochs, checkpoints, metrics).

Methods and their stages::

    fp32     train       float weights, float activations
    qw       train       quantized weights (BWN/TWN), float activations, 32-bit accumulator
    qa       [pretrain]  qw, then
             qa          activations quantized to act_bits (step = x_hi/(2^bits - 1)),
                         acc_bits accumulator without cyclic activation (32: BWN-QA; 8: the
                         plain-overflow network of the paper's Table 2.2, k = ∞)
    wrapnet  [pretrain]  qw, then step sizes selected for overflow rate p (calibrate.py), then
             warmup      cyclic activation (acc_bits, k) with float activations, then
             finetune    quantized activations + overflow penalty R^o
    a2q,     a2q         Brevitas accumulator-aware weights (A2Q / A2Q+) guaranteeing no
    a2q+                 overflow of an acc_bits register, act_bits activations (a2q_train.py)

Every stage uses Adam with a cosine learning-rate decay over the stage and restarts both (the
paper uses Adam with step decay for 200 epochs per stage; our stages are a few epochs long).
A run directory holds ``checkpoint.pt`` (written atomically after every epoch), ``metrics.json``
(rewritten after every epoch, ``"complete": true`` at the end) and ``model.pt`` (final model).
"""

import copy
import math
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from io import BytesIO
from pathlib import Path

import torch
import torch.nn.functional as F

from wrapkit import __version__
from wrapkit.common.checks import ParameterTypeError, ParameterValueError
from wrapkit.common.errors import UserError
from wrapkit.common.files import atomic_write_bytes, atomic_write_json
from wrapkit.common.locking import exclusive_output

from .accumulate import LIMITS
from .calibrate import OverflowMeter, range_steps, select_steps, tracing
from .data import DATASETS, batches, load_dataset
from .nets import MODELS, build_model
from .qconfig import (ACC_BITS_RANGE, ACT_BITS_RANGE, K_RANGE, WEIGHT_BITS_RANGE, Accumulator,
                      ActQuant, WeightQuant, check_int)
from .regularizers import OverflowPenalty

__all__ = [
    "METHODS",
    "Stage",
    "TrainConfig",
    "evaluate",
    "layer_report",
    "load_model",
    "plan",
    "read_model_file",
    "train",
    "train_epoch",
]

METHODS = ("fp32", "qw", "qa", "wrapnet", "a2q", "a2q+")
CHECKPOINT, METRICS, MODEL = "checkpoint.pt", "metrics.json", "model.pt"
CHECKPOINT_FORMAT = "wrapkit.checkpoint/1"
MODEL_FORMAT = "wrapkit.model/1"
_MAX_EPOCHS = 10_000
# Settings that may differ between an interrupted run and its resumption.
_RESUME_FREE = ("threads", "data_dir")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run depends on; stored in metrics.json and checked on --resume."""

    method: str = "wrapnet"
    model: str = "vgg7"
    widths: tuple | None = None       # None: the model config's default
    weights: str = "binary"           # binary (BWN) | ternary (TWN) | uniform
    weight_bits: int | None = None    # uniform weights only
    act_bits: int = 3                 # qa: fixed activation width (the paper's 3-bit QA)
    max_act_bits: int = 8             # wrapnet: widest activation step selection may pick
    acc_bits: int = 8                 # qa / wrapnet accumulator width
    k: int = 2                        # cyclic slope; the paper's best (Table 2.2)
    p: float = 5.0                    # target overflow rate in percent; the paper's best (Table 2.3)
    ro: float = 0.01                  # R^o coefficient; the paper's CIFAR-10 value
    # What p and R^o count as too large: "register" (overflow, the paper) or "fold" (beyond
    # the cyclic activation's linear part, overflow included; accumulate.excess_limit)
    overflow_limit: str = "register"
    ro_warmup: bool = False           # R^o in the warm-up too (the paper's ImageNet recipe)
    epochs: int = 3                   # the method's main stage (train / qa / finetune)
    warmup_epochs: int = 2            # wrapnet warm-up with cyclic layers, float activations
    pretrain_epochs: int = 0          # qa / wrapnet: qw pre-training (0 when --init gives one)
    lr: float = 1e-3                  # Adam, as the paper's CIFAR-10 runs
    batch_size: int = 128
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    train_subset: int | None = None   # use this many training images (seeded choice)
    calib_images: int = 512           # images for step-size selection
    eval_acc_bits: tuple = ()         # also evaluate the final model with plain b-bit registers
    init: str | None = None           # run directory or model.pt to start from
    seed: int = 0
    threads: int | None = None

    def __post_init__(self):
        def choice(name, value, options):
            if value not in options:
                raise ParameterValueError(name, f"must be one of {', '.join(options)}, "
                                                f"got {value!r}")

        choice("method", self.method, METHODS)
        choice("model", self.model, tuple(MODELS))
        choice("dataset", self.dataset, DATASETS)
        choice("weights", self.weights, ("binary", "ternary", "uniform"))
        choice("overflow_limit", self.overflow_limit, LIMITS)
        if not isinstance(self.ro_warmup, bool):
            raise TypeError(f"ro_warmup must be a bool, not {self.ro_warmup!r}")
        if self.weights == "uniform":
            check_int("weight_bits", self.weight_bits, *WEIGHT_BITS_RANGE)
        elif self.weight_bits is not None:
            raise ParameterValueError("weight_bits", f"must be None for {self.weights} weights, "
                                                     f"got {self.weight_bits}")
        if self.method in ("a2q", "a2q+") and (self.weights != "uniform" or
                                                 self.model != "vgg7"):
            raise ParameterValueError("weights", f"{self.method} constrains multi-bit weights "
                                                 "of the VGG-7: use --model vgg7 --weights "
                                                 "uniform --weight-bits B")
        check_int("act_bits", self.act_bits, *ACT_BITS_RANGE)
        check_int("max_act_bits", self.max_act_bits, *ACT_BITS_RANGE)
        check_int("acc_bits", self.acc_bits, *ACC_BITS_RANGE)
        check_int("k", self.k, *K_RANGE)
        for name in ("p", "ro", "lr"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ParameterTypeError(name, f"must be a finite number, not {v!r}")
        if not 0 <= self.p <= 100:
            raise ParameterValueError("p", f"must be in [0, 100] (percent), got {self.p}")
        if self.ro < 0:
            raise ParameterValueError("ro", f"must be >= 0, got {self.ro}")
        if not 0 < self.lr <= 1:
            raise ParameterValueError("lr", f"must be in (0, 1], got {self.lr}")
        check_int("epochs", self.epochs, 1, _MAX_EPOCHS)
        check_int("warmup_epochs", self.warmup_epochs, 0, _MAX_EPOCHS)
        check_int("pretrain_epochs", self.pretrain_epochs, 0, _MAX_EPOCHS)
        check_int("batch_size", self.batch_size, 2, 65536)
        check_int("calib_images", self.calib_images, 1, 100_000)
        check_int("seed", self.seed, 0, 2**31 - 1)
        if self.train_subset is not None:
            check_int("train_subset", self.train_subset, 2, 10_000_000)
        if self.threads is not None:
            check_int("threads", self.threads, 1, 1024)
        object.__setattr__(self, "eval_acc_bits", tuple(self.eval_acc_bits))
        for b in self.eval_acc_bits:
            check_int("eval_acc_bits", b, *ACC_BITS_RANGE)
        if self.widths is not None:
            object.__setattr__(self, "widths", tuple(self.widths))
            self.model_config()  # validates widths against the model

    @property
    def weight_quant(self):
        if self.method == "fp32":
            return WeightQuant("float")
        return WeightQuant(self.weights, self.weight_bits)

    def model_config(self, in_channels=1, image_size=28):
        extra = {} if self.widths is None else {"widths": self.widths}
        cfg_cls, _ = MODELS[self.model]
        return cfg_cls(in_channels=in_channels, image_size=image_size,
                       weight_quant=self.weight_quant, **extra)

    def to_dict(self):
        d = asdict(self)
        d["widths"] = None if self.widths is None else list(self.widths)
        d["eval_acc_bits"] = list(self.eval_acc_bits)
        return d

    @classmethod
    def from_dict(cls, d):
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class Stage:
    """One training stage.

    act: "float" (no step), "units" (float activations in units of the selected step) or
    "codes" (quantized activations). calibrate: steps chosen before the first epoch —
    "overflow" (for the target rate p) or "range" (fixed width), or None.
    """

    name: str
    epochs: int
    act: str = "float"
    accumulator: Accumulator = field(default_factory=Accumulator)
    calibrate: str | None = None


def plan(cfg: TrainConfig):
    """The list of :class:`Stage` a config runs (stages of 0 epochs are left out)."""
    if cfg.method in ("fp32", "qw"):
        return [Stage("train", cfg.epochs)]
    stages = [Stage("pretrain", cfg.pretrain_epochs)] if cfg.pretrain_epochs else []
    if cfg.method == "qa":
        return stages + [Stage("qa", cfg.epochs, "codes", Accumulator(cfg.acc_bits), "range")]
    acc = Accumulator(cfg.acc_bits, cfg.k)
    if cfg.warmup_epochs:
        return stages + [Stage("warmup", cfg.warmup_epochs, "units", acc, "overflow"),
                         Stage("finetune", cfg.epochs, "codes", acc)]
    return stages + [Stage("finetune", cfg.epochs, "codes", acc, "overflow")]


def _configure(model, stage, choices):
    """Set every quantized layer's activation quantizer and accumulator for ``stage``."""
    by_name = {c["layer"]: c for c in choices or []}
    for name, layer in model.quant_layers():
        layer.accumulator = stage.accumulator
        if stage.act == "float":
            layer.act_quant = None
        else:
            c = by_name[name]
            layer.act_quant = ActQuant(c["step"], c["bits"] if stage.act == "codes" else None)


def _calibrate(model, cfg, stage, train_ds):
    # Steps are measured on the network as pre-trained: float activations, wide accumulator.
    _configure(model, Stage("calibration", 0), None)
    idx = torch.randperm(len(train_ds), generator=torch.Generator().manual_seed(cfg.seed))
    x = train_ds.x[idx[:cfg.calib_images]]
    if stage.calibrate == "range":
        choices = range_steps(model, x, bits=cfg.act_bits)
    else:
        choices = select_steps(model, x, target_rate=cfg.p / 100, acc_bits=cfg.acc_bits,
                               max_bits=cfg.max_act_bits, k=cfg.k, limit=cfg.overflow_limit)
    return [c.to_dict() for c in choices]


@torch.no_grad()
def evaluate(model, ds, batch_size=250, overflow_bits=None):
    """Accuracy, mean loss and per-layer overflow rates of ``model`` on ``ds`` (eval mode).

    Overflow rates count pre-activations outside each layer's accumulator (or ``overflow_bits``).
    """
    was_training = model.training
    model.eval()
    meter = OverflowMeter(model, overflow_bits)
    correct, loss = 0, 0.0
    with tracing(model):
        for x, y in batches(ds, batch_size):
            logits = model(x)
            loss += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
            meter.update()
    model.train(was_training)
    return {"accuracy": correct / len(ds), "loss": loss / len(ds),
            "overflow_rates": meter.rates(), "mean_overflow_rate": meter.mean_rate()}


def layer_report(model):
    """Per quantized layer: geometry, quantizers and accumulator, as plain data."""
    rows = []
    for name, layer in model.quant_layers():
        aq = layer.act_quant
        rows.append({
            "layer": name, "type": type(layer).__name__, "fan_in": layer.fan_in,
            "weights": layer.weight_quant.to_dict(),
            "act_step": None if aq is None else aq.step,
            "act_bits": None if aq is None else aq.bits,
            "acc_bits": layer.accumulator.bits, "k": layer.accumulator.k,
        })
    return rows


def _epoch_seed(seed, stage_index, epoch):
    return (seed * 1_000_003 + stage_index * 10_007 + epoch) % (2**63)


def train_epoch(model, opt, ds, cfg, stage, stage_index, epoch, regs, progress):
    """One epoch of ``stage`` over ``ds`` (shuffled from the run's seed, full batches only);
    returns the epoch's mean loss, accuracy, regularizer values and final learning rate."""
    model.train()
    bs = min(cfg.batch_size, len(ds))
    n_batches = len(ds) // bs  # full batches only: BatchNorm needs more than one sample
    total_steps = stage.epochs * n_batches
    gen = torch.Generator().manual_seed(_epoch_seed(cfg.seed, stage_index, epoch))
    sums = {"loss": 0.0, "accuracy": 0.0, **{r.name: 0.0 for r in regs}}
    seen = 0
    it = batches(ds, bs, gen)
    if progress:
        from tqdm import tqdm
        it = tqdm(it, total=n_batches, desc=f"{stage.name} {epoch + 1}/{stage.epochs}",
                  leave=False, mininterval=1.0)
    lr = cfg.lr
    with tracing(model) if regs else nullcontext():
        for i, (x, y) in enumerate(it):
            if i == n_batches:
                break
            t = epoch * n_batches + i
            lr = cfg.lr * 0.5 * (1 + math.cos(math.pi * t / total_steps))
            for g in opt.param_groups:
                g["lr"] = lr
            logits = model(x)
            ce = F.cross_entropy(logits, y)
            loss = ce
            for r in regs:
                term = r(model)
                loss = loss + r.coef * term
                sums[r.name] += term.item() * len(y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sums["loss"] += ce.item() * len(y)
            sums["accuracy"] += int((logits.argmax(1) == y).sum())
            seen += len(y)
    if hasattr(it, "close"):
        it.close()
    return {k: v / seen for k, v in sums.items()} | {"lr_end": lr}


# -- files ------------------------------------------------------------------------------------

def _save_torch(path, obj):
    buf = BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def _load_checkpoint(path):
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file
        detail = str(exc).splitlines()[0][:120] if str(exc) else "no detail"
        raise UserError(f"checkpoint {path} is unreadable ({type(exc).__name__}: {detail}); it "
                        f"was not used: delete it (or the run directory) to start the run "
                        f"afresh") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"checkpoint {path} is not a {CHECKPOINT_FORMAT} file; it was not used")
    return state


def _check_same_run(saved, cfg, path):
    new = cfg.to_dict()
    # a setting the saved run predates had its default value there
    default = TrainConfig().to_dict()
    diff = sorted(k for k in new if k not in _RESUME_FREE and saved.get(k, default[k]) != new[k])
    if diff:
        shown = ", ".join(f"{k}: {saved.get(k)!r} -> {new[k]!r}" for k in diff)
        raise UserError(f"cannot resume {path}: settings differ from the interrupted run "
                        f"({shown}); use the same settings or another --out")


def _load_init(model, init):
    path = Path(init)
    if path.is_dir():
        path = path / MODEL
    if not path.is_file():
        raise UserError(f"--init {init}: no model file {path} (train that run to completion first)")
    state = read_model_file(path)
    weights = {k: v for k, v in state["state_dict"].items() if not k.endswith("_extra_state")}
    own = {k for k in model.state_dict() if not k.endswith("_extra_state")}
    if set(weights) != own:
        missing, extra = sorted(own - set(weights)), sorted(set(weights) - own)
        raise UserError(f"--init {path} does not fit this model (missing {missing[:3]}, "
                        f"unexpected {extra[:3]}): use the same --model and --widths")
    try:
        model.load_state_dict(weights, strict=False)
    except RuntimeError as exc:
        raise UserError(f"--init {path} does not fit this model: "
                        f"{str(exc).splitlines()[-1].strip()}") from None
    return str(path)


def read_model_file(path):
    """The state dict saved in a ``model.pt`` of this format.

    Raises
    ------
    UserError
        The file is unreadable or not a wrapkit model file.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"model file {path} is unreadable ({type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != MODEL_FORMAT:
        raise UserError(f"{path} is not a {MODEL_FORMAT} file")
    return state


def load_model(path):
    """Rebuild a trained network (quantizer steps, bit widths, accumulators included)."""
    path = Path(path)
    if path.is_dir():
        path = path / MODEL
    state = read_model_file(path)
    model = build_model(state["model"], **state["model_config"])
    model.load_state_dict(state["state_dict"])
    model.eval()
    return model


# -- the loop ---------------------------------------------------------------------------------

def train(cfg: TrainConfig, out_dir, **kwargs):
    """Run (or resume) the training described by ``cfg`` in ``out_dir``; return the metrics.

    Holds ``out_dir``'s lock (:func:`wrapkit.common.locking.exclusive_output`) throughout: a
    second training into the same folder is refused at once. Keyword arguments: see
    :func:`_train`.
    """
    with exclusive_output(out_dir, what=f"run folder {out_dir}",
                          hint="wait for it to finish or choose another --out"):
        if cfg.method in ("a2q", "a2q+"):
            from .a2q_train import train_a2q
            return train_a2q(cfg, out_dir, **kwargs)
        return _train(cfg, out_dir, **kwargs)


def _train(cfg: TrainConfig, out_dir, *, resume=False, regularizers=(), progress=True,
           on_epoch_end=None, epoch_probe=None, log=print):
    """The training loop of :func:`train` (the caller holds the folder's lock).

    Parameters
    ----------
    regularizers : sequence of Regularizer
        Extra loss terms (see :mod:`wrapkit.models.regularizers`), in addition to R^o, which the
        config adds to the wrapnet fine-tuning when ``cfg.ro > 0``.
    on_epoch_end : callable(metrics) or None
        Called after each epoch's checkpoint is on disk (tests use it to interrupt a run).
    epoch_probe : callable(model, stage, epoch) -> dict, or None
        Measurements taken after each epoch (test accuracy, overflow rates, ...); the dict is
        stored in that epoch's history entry under ``"probe"``. Training curves use it
        (``benchmarks/wrapnet_overflow.py``); it must not change the model's parameters.
    """
    out_dir = Path(out_dir)
    ckpt_path = out_dir / CHECKPOINT
    state = None
    if resume:
        if not ckpt_path.exists():
            raise UserError(f"nothing to resume in {out_dir}: no {CHECKPOINT}")
        state = _load_checkpoint(ckpt_path)
        _check_same_run(state["config"], cfg, ckpt_path)
        if state.get("complete"):
            log(f"train: {out_dir} is already complete")
            return state["metrics"]
    elif ckpt_path.exists() or (out_dir / METRICS).exists():
        raise UserError(f"{out_dir} already holds a run; pass --resume to continue it or "
                        f"choose another --out")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)

    train_ds, test_ds = load_dataset(cfg.dataset, cfg.data_dir)
    train_ds = train_ds.subset(cfg.train_subset, cfg.seed)
    torch.manual_seed(cfg.seed)
    _, c, h, _ = train_ds.x.shape
    model = MODELS[cfg.model][1](cfg.model_config(c, h))
    stages = plan(cfg)
    regs = list(regularizers)
    if cfg.method == "wrapnet" and cfg.ro > 0:
        regs.insert(0, OverflowPenalty(cfg.ro, limit=cfg.overflow_limit,
                                       stages=("warmup", "finetune") if cfg.ro_warmup
                                       else ("finetune",)))

    if state is None:
        metrics = {"wrapkit": __version__, "config": cfg.to_dict(), "complete": False,
                   "train_images": len(train_ds), "test_images": len(test_ds),
                   "stages": [asdict(s) for s in stages], "step_selection": None,
                   "history": [], "stage_results": []}
        if cfg.init:
            metrics["init"] = _load_init(model, cfg.init)
        start_stage, start_epoch, choices = 0, 0, None
    else:
        model.load_state_dict(state["model"])
        metrics, choices = state["metrics"], state["choices"]
        start_stage, start_epoch = state["stage"], state["epoch"]
        log(f"train: resuming {out_dir} at stage {start_stage + 1}/{len(stages)}, "
            f"epoch {start_epoch}")

    def checkpoint(stage_index, epoch, opt, complete=False):
        _save_torch(ckpt_path, {
            "format": CHECKPOINT_FORMAT, "config": cfg.to_dict(), "stage": stage_index,
            "epoch": epoch, "model": model.state_dict(),
            "optimizer": None if opt is None else opt.state_dict(), "choices": choices,
            "metrics": metrics, "complete": complete})
        atomic_write_json(out_dir / METRICS, metrics)

    for si, stage in enumerate(stages):
        if si < start_stage:
            continue
        resuming = state is not None and si == start_stage and start_epoch > 0
        if stage.calibrate and not resuming:
            log(f"train: stage {si + 1}/{len(stages)} {stage.name}: selecting activation steps")
            choices = _calibrate(model, cfg, stage, train_ds)
            metrics["step_selection"] = {"kind": stage.calibrate, "layers": choices}
        _configure(model, stage, choices)
        active = [r for r in regs if stage.name in r.stages]
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        if resuming:
            opt.load_state_dict(state["optimizer"])
        log(f"train: stage {si + 1}/{len(stages)} {stage.name} ({stage.epochs} epochs, "
            f"activations {stage.act}, {stage.accumulator})")
        for epoch in range(start_epoch if resuming else 0, stage.epochs):
            t0 = time.perf_counter()
            stats = train_epoch(model, opt, train_ds, cfg, stage, si, epoch, active, progress)
            stats.update(stage=stage.name, epoch=epoch + 1,
                         seconds=round(time.perf_counter() - t0, 3))
            if epoch_probe is not None:
                stats["probe"] = epoch_probe(model, stage, epoch + 1)
                model.train()
            metrics["history"].append(stats)
            log(f"train: {stage.name} epoch {epoch + 1}/{stage.epochs}: loss {stats['loss']:.4f} "
                f"train acc {stats['accuracy']:.4f} ({stats['seconds']:.1f} s)")
            checkpoint(si, epoch + 1, opt)
            if on_epoch_end is not None:
                on_epoch_end(metrics)
        result = evaluate(model, test_ds)
        metrics["stage_results"].append({"stage": stage.name, **result})
        log(f"train: {stage.name} done: test accuracy {result['accuracy']:.4f}, mean overflow "
            f"rate {result['mean_overflow_rate']:.4f}")
        checkpoint(si + 1, 0, None)

    # The model is unchanged since the last stage's evaluation (a config always has a stage).
    final = metrics["stage_results"][-1]
    layers = layer_report(model)
    sel = {c["layer"]: c for c in (choices or [])}
    for row in layers:
        row["overflow_rate"] = final["overflow_rates"][row["layer"]]
        if row["layer"] in sel:
            row["calib_overflow_rate"] = sel[row["layer"]]["overflow_rate"]
    bits = sorted(r["act_bits"] for r in layers if r["act_bits"] is not None)
    metrics["final"] = {
        "test_accuracy": final["accuracy"], "test_loss": final["loss"],
        "mean_overflow_rate": final["mean_overflow_rate"], "layers": layers,
        "median_act_bits": bits[len(bits) // 2] if bits else None,
    }
    # The same trained network with plain b-bit registers (no cyclic activation): the
    # overflow collapse of the paper's Table 2.1 when b is narrower than the training register.
    metrics["eval_acc_bits"] = {}
    for b in cfg.eval_acc_bits:
        other = copy.deepcopy(model)
        for _, layer in other.quant_layers():
            layer.accumulator = Accumulator(b)
        r = evaluate(other, test_ds)
        metrics["eval_acc_bits"][str(b)] = {
            "test_accuracy": r["accuracy"], "mean_overflow_rate": r["mean_overflow_rate"],
            "overflow_rates": r["overflow_rates"]}
        log(f"train: with plain {b}-bit accumulators: test accuracy {r['accuracy']:.4f}, "
            f"mean overflow rate {r['mean_overflow_rate']:.4f}")
    metrics["complete"] = True
    _save_torch(out_dir / MODEL, {
        "format": MODEL_FORMAT, "wrapkit": __version__, "model": cfg.model,
        "model_config": model.config.to_dict(), "state_dict": model.state_dict(),
        "test_accuracy": final["accuracy"]})
    checkpoint(len(stages), 0, None, complete=True)
    log(f"train: done: test accuracy {final['accuracy']:.4f} -> {out_dir / METRICS}")
    return metrics

