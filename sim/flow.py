"""``wrapkit flow``: the main job end to end, from Fashion-MNIST to a co-design report.

Six stages, in order, each writing into its own folder of the run directory
``<out_root>/<name>/`` (``out/quick`` for the quick preset):

=========  =================================================================================
train      BWN network (binary weights) -> WrapNet (8-bit accumulator, cyclic k) and the
           32-bit-accumulator baseline of the same network (``train/<run>/``)
export     both networks to ``.wkx``; the integer engine on the whole test set: accuracy,
           per-layer overflow, the networks forced to 8-bit wrap-around without cyclic
           layers, accuracy against accumulator width (``export/``)
rtl        the MAC Verilog + manifests of the 8-bit and 32-bit datapaths and of the
           cosimulated layers (``rtl/``)
cosim      real conv layer(s) of the trained networks through those MACs on Icarus and/or
           Verilator (preloaded fast path), every cycle against ``wrapkit.ref`` and every dot
           product against the engine; any mismatch fails the stage (``cosim/``)
synth      Yosys + OpenSTA + gate-level simulation of both datapaths with the layers' real
           operands: area, cycle time, energy per inference (``synth/``)
report     ``report.md``, a self-contained ``report.html`` (embedded plots), ``summary.json``
=========  =================================================================================

Caching: every stage has a key, the SHA-256 of its settings, the results of the stages it
reads (without times), its input data and the source files of the wrapkit code it runs.
``flow.json`` in the run directory records each finished stage with its key and result; a
stage whose key is unchanged and whose outputs exist is reused, so re-running with the same
inputs is quick and changing a setting reruns only the stages it reaches. Inside the train
stage every training run is also reused on its own when its settings are unchanged.

Failure: a stage that raises stops the flow with :class:`FlowStageError` (stage and cause);
the finished stages stay recorded. ``--resume`` continues that run with its saved settings,
reusing finished stages and continuing an interrupted training run from its last checkpoint
(without ``--resume`` an unfinished training run restarts from scratch).

The configuration (:class:`FlowConfig`) is one frozen dataclass; presets (:data:`PRESETS`),
an optional TOML or JSON file and ``--set key=value`` flags fill it, in that order. See
docs/flow.md.
"""

import hashlib
import json
import math
import time
import traceback
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from wrapkit import __version__
from wrapkit.common.errors import UserError
from wrapkit.common.files import atomic_write_json

__all__ = [
    "PRESETS",
    "STAGES",
    "FlowConfig",
    "FlowStageError",
    "TRAIN_SOURCES",
    "config_from",
    "result_digest",
    "run_flow",
]

_ROOT = Path(__file__).resolve().parents[1]   # the wrapkit package (the repository root)
STATE = "flow.json"
STATE_SCHEMA = "wrapkit.flow/1"


# -- configuration ----------------------------------------------------------------------------

@dataclass(frozen=True)
class FlowConfig:
    """Every setting of a flow run (docs/flow.md lists them with the presets' values)."""

    preset: str = "quick"
    # data and network
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    model: str = "vgg7"
    widths: tuple = (16, 32, 64)      # a half-width VGG-7 keeps the quick preset under 10 min
    # training schedule (Adam, cosine decay per stage; see wrapkit.models.train)
    train_subset: int | None = 30000  # training images used (None: all)
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0
    threads: int | None = None        # torch CPU threads (None: torch's default)
    fp32_epochs: int = 0              # optional float pre-training before the BWN network
    bwn_epochs: int = 3               # binary-weight network both accumulator variants start from
    warmup_epochs: int = 1            # WrapNet warm-up (cyclic layers, float activations)
    finetune_epochs: int = 3          # WrapNet fine-tuning (quantized activations, R^o)
    baseline_epochs: int = 4          # baseline: as many epochs after BWN as WrapNet
    calib_images: int = 512
    # WrapNet (the paper's best settings, Tables 2.2-2.3)
    acc_bits: int = 8
    k: int = 2
    p: float = 5.0
    ro: float = 0.01
    max_act_bits: int = 8
    # baseline: "match" gives it the WrapNet network's widest activation, so both run on MACs
    # with the same operand widths and differ only in the accumulator
    baseline_act_bits: object = "match"
    baseline_acc_bits: int = 32
    # integer engine
    sweep_acc_bits: tuple = (6, 8, 10, 12, 16, 32)
    sweep_images: int | None = 1000   # test images per sweep point (None: all)
    # cosimulation
    cosim_layers: tuple = ()          # layer names; () = the first integer conv layer
    cosim_images: int = 1
    cosim_max_ops: int | None = None  # per layer (whole dot products); None: the whole layer
    simulators: tuple = ("icarus", "verilator")
    # synthesis and estimation
    estimate_images: int = 16
    estimate_ops: int = 1000          # MAC operations simulated per layer and datapath
    array_macs: int = 64
    liberty: str | None = None
    goal: str = "delay"
    timed: bool = True

    def __post_init__(self):
        from wrapkit.models.qconfig import check_int

        def choice(name, options):
            if getattr(self, name) not in options:
                raise ValueError(f"{name} must be one of {', '.join(map(str, options))}, got "
                                 f"{getattr(self, name)!r}")

        def opt_int(name, lo, hi):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), lo, hi)

        def ints(name, n, lo, hi):
            v = getattr(self, name)
            if isinstance(v, list):
                v = tuple(v)
                object.__setattr__(self, name, v)
            if not isinstance(v, tuple) or (n is not None and len(v) != n) or not v:
                raise ValueError(f"{name} must be a list of {n or 'one or more'} integers in "
                                 f"[{lo}, {hi}], got {v!r}")
            for x in v:
                check_int(name, x, lo, hi)

        choice("preset", tuple(PRESETS) + ("custom",))
        choice("dataset", ("fashion-mnist", "digits"))
        choice("model", ("vgg7",))
        choice("goal", ("delay", "area"))
        ints("widths", 3, 1, 4096)
        opt_int("train_subset", 2, 10_000_000)
        check_int("batch_size", self.batch_size, 2, 65536)
        check_int("seed", self.seed, 0, 2**31 - 1)
        opt_int("threads", 1, 1024)
        for name in ("fp32_epochs", "bwn_epochs", "warmup_epochs"):
            check_int(name, getattr(self, name), 0, 10_000)
        for name in ("finetune_epochs", "baseline_epochs"):
            check_int(name, getattr(self, name), 1, 10_000)
        if self.fp32_epochs == 0 and self.bwn_epochs == 0:
            raise ValueError("bwn_epochs must be >= 1 when fp32_epochs is 0 (the WrapNet and "
                             "baseline networks start from a trained network), got 0")
        check_int("calib_images", self.calib_images, 1, 100_000)
        check_int("acc_bits", self.acc_bits, 2, 31)
        check_int("k", self.k, 1, 64)
        check_int("max_act_bits", self.max_act_bits, 1, 8)
        check_int("baseline_acc_bits", self.baseline_acc_bits, self.acc_bits + 1, 32)
        for name, lo, hi in (("p", 0, 100), ("ro", 0, 1e6), ("lr", 1e-9, 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                    or not lo <= v <= hi:
                raise ValueError(f"{name} must be a number in [{lo}, {hi}], got {v!r}")
        if self.baseline_act_bits != "match":
            if isinstance(self.baseline_act_bits, bool) \
                    or not isinstance(self.baseline_act_bits, int) \
                    or not 1 <= self.baseline_act_bits <= 8:
                raise ValueError(f"baseline_act_bits must be 'match' or an integer in [1, 8], "
                                 f"got {self.baseline_act_bits!r}")
        ints("sweep_acc_bits", None, 2, 32)
        opt_int("sweep_images", 1, 10_000_000)
        if isinstance(self.cosim_layers, (list, str)):
            object.__setattr__(self, "cosim_layers",
                               (self.cosim_layers,) if isinstance(self.cosim_layers, str)
                               else tuple(self.cosim_layers))
        if not isinstance(self.cosim_layers, tuple) \
                or not all(isinstance(x, str) and x for x in self.cosim_layers):
            raise ValueError(f"cosim_layers must be a list of layer names, got "
                             f"{self.cosim_layers!r}")
        check_int("cosim_images", self.cosim_images, 1, 10_000)
        opt_int("cosim_max_ops", 1, 1 << 40)
        sims = self.simulators
        if isinstance(sims, (list, str)):
            sims = tuple(s.strip() for s in sims.split(",")) if isinstance(sims, str) \
                else tuple(sims)
            object.__setattr__(self, "simulators", sims)
        if not sims or not set(sims) <= {"icarus", "verilator"} or len(set(sims)) != len(sims):
            raise ValueError(f"simulators must name icarus and/or verilator once each, got "
                             f"{self.simulators!r}")
        check_int("estimate_images", self.estimate_images, 1, 100_000)
        check_int("estimate_ops", self.estimate_ops, 10, 10_000_000)
        check_int("array_macs", self.array_macs, 1, 1 << 20)
        if not isinstance(self.timed, bool):
            raise TypeError(f"timed must be true or false, got {self.timed!r}")

    def to_dict(self):
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d


#: Preset values (fields not named keep the FlowConfig defaults, which are the quick preset).
PRESETS = {
    # About 7-8 minutes on 2 CPU cores: a half-width VGG-7 on 30 000 training images.
    "quick": {},
    # The real schedule: the paper's VGG-7 at a quarter width (as benchmarks/wrapnet_table.py),
    # a float network first, all 60 000 training images, every test image everywhere.
    "full": dict(widths=(32, 64, 128), train_subset=None, fp32_epochs=4, bwn_epochs=2,
                 warmup_epochs=1, finetune_epochs=3, baseline_epochs=4,
                 sweep_acc_bits=(6, 8, 10, 12, 14, 16, 32), sweep_images=None,
                 cosim_images=2, estimate_images=64, estimate_ops=2000),
    # The test suite's preset: scikit-learn's 8x8 digits, a tiny network, a few thousand
    # cosimulated operations on one simulator; about a minute.
    "tiny": dict(dataset="digits", widths=(8, 16, 16), train_subset=None, batch_size=32,
                 lr=0.005, bwn_epochs=6, warmup_epochs=1, finetune_epochs=4, baseline_epochs=5,
                 calib_images=256, threads=1, sweep_acc_bits=(6, 8, 12, 16, 32),
                 sweep_images=None, cosim_max_ops=3000, simulators=("icarus",),
                 estimate_images=4, estimate_ops=300, array_macs=16),
}


def _parse_value(text):
    """A ``--set`` value: JSON (numbers, true/false/null, lists, quoted strings) or a bare
    string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def read_config_file(path):
    """Settings from a TOML (``.toml``) or JSON file: a table of FlowConfig field names."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise UserError(f"cannot read --config {path}: {exc.strerror or exc}") from None
    try:
        if path.suffix == ".toml":
            import tomllib
            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except ValueError as exc:  # tomllib.TOMLDecodeError and JSONDecodeError are ValueErrors
        raise UserError(f"--config {path} is not valid {path.suffix[1:].upper() or 'JSON'}: "
                        f"{exc}") from None
    if not isinstance(data, dict):
        raise UserError(f"--config {path} must hold a table of settings")
    return data


def config_from(preset="quick", file_settings=None, overrides=None):
    """Build a FlowConfig: preset values, then a config file's, then ``overrides``.

    Raises
    ------
    UserError
        Unknown preset or setting, or a value the config rejects (the message names it).
    """
    settings = dict(file_settings or {})
    preset = settings.pop("preset", preset) if preset is None else preset
    preset = preset or "quick"
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    names = {f.name for f in fields(FlowConfig)} - {"preset"}
    merged = dict(PRESETS[preset])
    for source, values in (("config file", settings), ("--set", overrides or {})):
        unknown = sorted(set(values) - names - {"preset"})
        if unknown:
            raise UserError(f"unknown setting(s) in {source}: {', '.join(unknown)}; known: "
                            f"{', '.join(sorted(names))}")
        merged.update({k: v for k, v in values.items() if k != "preset"})
    try:
        return FlowConfig(preset=preset, **merged)
    except (TypeError, ValueError) as exc:
        raise UserError(f"bad flow setting: {exc}") from None


# -- stages -----------------------------------------------------------------------------------

class FlowStageError(Exception):
    """A stage failed: ``stage`` names it, ``cause`` says why (one line)."""

    def __init__(self, stage, index, cause, kept, hint=""):
        self.stage, self.index, self.cause, self.kept, self.hint = stage, index, cause, kept, hint
        super().__init__(f"stage {index}/{len(STAGES)} '{stage}' failed: {cause}")


@dataclass(frozen=True)
class Stage:
    name: str
    title: str
    settings: tuple      # FlowConfig fields the stage reads
    after: tuple         # earlier stages whose results it reads
    sources: tuple       # source globs (relative to the package) whose code it runs
    outputs: tuple       # files or folders (relative to the run dir) that must exist to reuse


_TRAIN_SETTINGS = ("dataset", "model", "widths", "train_subset", "batch_size", "lr", "seed",
                   "fp32_epochs", "bwn_epochs", "warmup_epochs", "finetune_epochs",
                   "baseline_epochs", "calib_images", "acc_bits", "k", "p", "ro",
                   "max_act_bits", "baseline_act_bits", "baseline_acc_bits")

_FLOW = "sim/flow_stages.py"
_REF = ("ref/datapath.py", "ref/engine.py", "ref/wkx.py", "ref/requant.py", "ref/variants.py",
        "ref/datasets.py")

STAGES = (
    # Each training run inside is also reused on its own (its settings and TRAIN_SOURCES).
    Stage("train", "train WrapNet (8-bit accumulator) and the 32-bit baseline",
          _TRAIN_SETTINGS, (), (_FLOW,), ("train",)),
    Stage("export", "export both networks; integer engine on the test set",
          ("sweep_acc_bits", "sweep_images"), ("train",),
          (_FLOW, "models/export.py") + _REF, ("export/wrapnet.wkx", "export/baseline.wkx")),
    Stage("rtl", "generate the MAC Verilog and manifests", ("cosim_layers",), ("export",),
          (_FLOW, "hw/*.py", "hw/synth/network.py", "ref/datapath.py"), ("rtl",)),
    Stage("cosim", "cosimulate real conv layers in RTL against ref/",
          ("cosim_layers", "cosim_images", "cosim_max_ops", "simulators"), ("export", "rtl"),
          (_FLOW, "sim/preload.py", "sim/runner.py", "sim/tools.py", "sim/layer.py") + _REF,
          ("cosim/cosim.json",)),
    Stage("synth", "synthesize both datapaths; area, cycle time, energy per inference",
          ("estimate_images", "estimate_ops", "array_macs", "liberty", "goal", "timed", "seed"),
          ("export", "rtl"), (_FLOW, "hw/synth/*.py") + _REF, ("synth/estimate_wrapnet.json",)),
    Stage("report", "write report.md, report.html and summary.json", (),
          ("train", "export", "rtl", "cosim", "synth"), ("sim/flow_report.py",),
          ("report.md", "report.html", "summary.json")),
)

#: The code a training run executes: a finished run is reused only when these are unchanged.
TRAIN_SOURCES = tuple(f"models/{m}.py" for m in (
    "train", "nets", "layers", "fake_quant", "accumulate", "calibrate", "regularizers",
    "qconfig", "data"))

# Result fields that vary from run to run without changing what a stage computed (times,
# whether something was reused); left out of the digests that later stages' keys use.
_VOLATILE = frozenset({"seconds", "reused", "images_per_s", "wall_s", "build_s", "ops_per_s"})


def _stable(value):
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def result_digest(result):
    """SHA-256 of a stage result without its volatile fields (what later stages depend on)."""
    return hashlib.sha256(json.dumps(_stable(result), sort_keys=True).encode()).hexdigest()


def _source_digest(patterns):
    h = hashlib.sha256()
    for pattern in patterns:
        for src in sorted(_ROOT.glob(pattern)):
            h.update(str(src.relative_to(_ROOT)).encode() + b"\0" + src.read_bytes())
    return h.hexdigest()


def _data_digest(cfg):
    """The training/test data's identity: the Fashion-MNIST files' bytes, or sklearn's
    version for its bundled digits."""
    h = hashlib.sha256(cfg.dataset.encode())
    if cfg.dataset == "fashion-mnist":
        from wrapkit.ref.datasets import DEFAULT_DATA_DIR
        folder = Path(cfg.data_dir or DEFAULT_DATA_DIR)
        for name in sorted(folder.glob("*-ubyte.gz")):
            h.update(name.name.encode() + b"\0" + name.read_bytes())
    else:
        import sklearn
        h.update(sklearn.__version__.encode())
    return h.hexdigest()


def stage_key(stage, cfg, results, extra=""):
    """SHA-256 of a stage's settings, the results it reads, its code and (train) data.

    Later stages depend on earlier stages' *results*, not their keys: a stage that reran and
    computed the same thing (e.g. training runs reused after an unrelated code change) does
    not invalidate the stages after it.
    """
    h = hashlib.sha256(f"{STATE_SCHEMA} {stage.name} {__version__}".encode())
    h.update(json.dumps({k: cfg.to_dict()[k] for k in stage.settings}, sort_keys=True).encode())
    h.update(json.dumps([result_digest(results[s]) for s in stage.after]).encode())
    h.update(_source_digest(stage.sources).encode())
    h.update(extra.encode())
    return h.hexdigest()


class StageContext:
    """What a stage function gets: settings, folders, earlier results, progress output."""

    def __init__(self, cfg, run_dir, results, index, name, resume, progress, echo):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.results = results
        self.index = index
        self.name = name
        self.resume = resume
        self.progress = progress
        self._echo = echo
        self.t0 = time.perf_counter()

    def say(self, message):
        """One progress line: stage number and name, elapsed seconds in the stage."""
        dt = time.perf_counter() - self.t0
        self._echo(f"[{self.index}/{len(STAGES)} {self.name} {dt:6.1f}s] {message}")

    def path(self, *parts):
        return self.run_dir.joinpath(*parts)


def _load_state(run_dir):
    path = Path(run_dir) / STATE
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise UserError(f"{path} is not valid JSON; delete the run folder {run_dir} to start "
                        "afresh") from None
    if not isinstance(state, dict) or state.get("schema") != STATE_SCHEMA:
        raise UserError(f"{path} was not written by this wrapkit flow ({STATE_SCHEMA}); use "
                        "another --name or delete the folder")
    return state


def saved_config(run_dir):
    """The FlowConfig a run directory was last run with (for ``--resume``)."""
    state = _load_state(run_dir)
    if state is None:
        raise UserError(f"nothing to resume in {run_dir}: no {STATE}; run `wrapkit flow` "
                        "without --resume first")
    try:
        return FlowConfig(**state["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{Path(run_dir) / STATE}: saved settings are unusable ({exc}); start "
                        "afresh without --resume") from None


def run_flow(cfg, run_dir, *, resume=False, progress=True, echo=None, stop_after=None):
    """Run (or continue) the flow in ``run_dir``; returns the summary dict.

    Parameters
    ----------
    cfg : FlowConfig
    run_dir : path
        ``<out_root>/<name>``; created if missing.
    resume : bool
        Continue interrupted training runs from their checkpoints (else they restart).
    progress : bool
        Progress bars inside stages (tqdm); stage lines are printed either way.
    echo : callable(str), optional
        Where progress lines go (default: print to stdout, flushed).
    stop_after : str, optional
        Stop after this stage (the report needs every stage).

    Raises
    ------
    FlowStageError
        A stage failed; the state records the finished stages.
    """
    from . import flow_stages

    echo = echo or (lambda line: print(line, flush=True))
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    state = _load_state(run_dir) or {"schema": STATE_SCHEMA, "stages": {}}
    state.update(config=cfg.to_dict(), wrapkit=__version__)
    stages_state = state["stages"]
    results = {}
    timeline = []
    t_flow = time.perf_counter()
    echo(f"wrapkit flow: preset {cfg.preset}, run folder {run_dir}")
    for i, stage in enumerate(STAGES, 1):
        extra = _data_digest(cfg) if stage.name == "train" else ""
        key = stage_key(stage, cfg, results, extra)
        prev = stages_state.get(stage.name) or {}
        outputs_ok = all((run_dir / o).exists() for o in stage.outputs)
        if prev.get("status") == "done" and prev.get("key") == key and outputs_ok:
            results[stage.name] = prev["result"]
            prev["reused"] = True
            timeline.append({"stage": stage.name, "status": "cached",
                             "seconds": prev.get("seconds", 0.0), "run_seconds": 0.0})
            echo(f"[{i}/{len(STAGES)} {stage.name}] cached: inputs unchanged "
                 f"(took {prev.get('seconds', 0.0):.1f} s when it ran)")
        else:
            echo(f"[{i}/{len(STAGES)} {stage.name}] {stage.title}")
            ctx = StageContext(cfg, run_dir, results, i, stage.name, resume, progress, echo)
            stages_state[stage.name] = {"key": key, "status": "running", "started": time.time()}
            atomic_write_json(run_dir / STATE, state)
            try:
                result = getattr(flow_stages, f"stage_{stage.name}")(ctx)
            except BaseException as exc:
                seconds = time.perf_counter() - ctx.t0
                interrupted = isinstance(exc, KeyboardInterrupt)
                cause = "interrupted" if interrupted else _cause(exc)
                stages_state[stage.name].update(status="interrupted" if interrupted else "failed",
                                                error=cause, seconds=round(seconds, 2))
                if not isinstance(exc, (UserError, flow_stages.StageFailure)) and not interrupted:
                    log = run_dir / "logs" / f"{stage.name}.traceback.txt"
                    log.parent.mkdir(exist_ok=True)
                    log.write_text("".join(traceback.format_exception(exc)))
                    stages_state[stage.name]["traceback"] = str(log)
                atomic_write_json(run_dir / STATE, state)
                if interrupted:
                    raise
                kept = [s.name for s in STAGES[:i - 1]]
                where = f" --out-root {run_dir.parent}" if str(run_dir.parent) != "out" else ""
                hint = (f"fix the cause, then `wrapkit flow --resume --name {run_dir.name}"
                        f"{where}`")
                raise FlowStageError(stage.name, i, cause, kept, hint) from exc
            seconds = time.perf_counter() - ctx.t0
            stages_state[stage.name] = {"key": key, "status": "done", "seconds": round(seconds, 2),
                                        "finished": time.time(), "result": result,
                                        "reused": False}
            results[stage.name] = result
            timeline.append({"stage": stage.name, "status": "ran", "seconds": round(seconds, 2),
                             "run_seconds": round(seconds, 2)})
            atomic_write_json(run_dir / STATE, state)
            echo(f"[{i}/{len(STAGES)} {stage.name}] done in {seconds:.1f} s")
        if stop_after == stage.name:
            break
    total = time.perf_counter() - t_flow
    state["last_run"] = {"timeline": timeline, "seconds": round(total, 2)}
    atomic_write_json(run_dir / STATE, state)
    echo(f"wrapkit flow: finished in {total:.1f} s "
         f"({sum(t['status'] == 'cached' for t in timeline)} of {len(timeline)} stages cached)")
    for t in timeline:
        echo(f"  {t['stage']:<7} {t['status']:<7} {t['seconds']:8.1f} s")
    summary_path = run_dir / "summary.json"
    return json.loads(summary_path.read_text()) if summary_path.is_file() else None


def _cause(exc):
    text = str(exc).strip().splitlines()
    msg = text[0] if text else ""
    if isinstance(exc, UserError):
        return msg or type(exc).__name__
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
