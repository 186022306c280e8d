"""The flow's settings: one frozen dataclass, its presets, and where its values come from.

:class:`FlowConfig` holds every setting of a run; :data:`PRESETS` name sets of values; an
optional TOML or JSON file and ``--set key=value`` flags fill it, in that order
(:func:`config_from`). docs/flow.md lists every setting with the presets' values.
"""

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from wrapkit.common.checks import check_int
from wrapkit.common.errors import UserError

__all__ = ["NETWORKS", "PRESETS", "FlowConfig", "config_from", "parse_setting_value",
           "read_config_file"]

#: The two networks every run trains and compares, in order: name, what the report calls it.
NETWORKS = {"wrapnet": "WrapNet", "baseline": "32-bit baseline"}


def _setting_int(name, value, lo, hi):
    """``value`` as an int in [lo, hi]; the TypeError names the range too, since settings
    are written far from where their range is documented."""
    return check_int(name, value, lo, hi, range_in_type_error=True)


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
    # No warm-up: at this budget, switching quantized activations on after a warm-up (and
    # restarting the learning rate) costs more than the warm-up gives (wrapnet_overflow.md).
    warmup_epochs: int = 0            # WrapNet warm-up (cyclic layers, float activations)
    finetune_epochs: int = 4          # WrapNet fine-tuning (quantized activations, R^o)
    baseline_epochs: int = 4          # baseline: as many epochs after BWN as WrapNet
    calib_images: int = 512
    # WrapNet (the paper's best settings, Tables 2.2-2.3)
    acc_bits: int = 8
    k: int = 2
    p: float = 5.0
    ro: float = 0.01
    # "fold": step selection and R^o count every value the cyclic activation distorts (beyond
    # its fold threshold), not only overflows; the demo's gap to its baseline was mostly the
    # fold-back range (docs/results/wrapnet_overflow.md). "register" is the paper's wording.
    overflow_limit: str = "fold"
    ro_warmup: bool = True            # R^o in the warm-up too (when there is one)
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
        def choice(name, options):
            if getattr(self, name) not in options:
                raise ValueError(f"{name} must be one of {', '.join(map(str, options))}, got "
                                 f"{getattr(self, name)!r}")

        def opt_int(name, lo, hi):
            if getattr(self, name) is not None:
                _setting_int(name, getattr(self, name), lo, hi)

        def ints(name, n, lo, hi):
            v = getattr(self, name)
            if isinstance(v, list):
                v = tuple(v)
                object.__setattr__(self, name, v)
            if not isinstance(v, tuple) or (n is not None and len(v) != n) or not v:
                raise ValueError(f"{name} must be a list of {n or 'one or more'} integers in "
                                 f"[{lo}, {hi}], got {v!r}")
            for x in v:
                _setting_int(name, x, lo, hi)

        choice("preset", tuple(PRESETS) + ("custom",))
        choice("dataset", ("fashion-mnist", "digits"))
        choice("model", ("vgg7",))
        choice("goal", ("delay", "area"))
        choice("overflow_limit", ("register", "fold"))
        if not isinstance(self.ro_warmup, bool):
            raise ValueError(f"ro_warmup must be true or false, got {self.ro_warmup!r}")
        ints("widths", 3, 1, 4096)
        opt_int("train_subset", 2, 10_000_000)
        _setting_int("batch_size", self.batch_size, 2, 65536)
        _setting_int("seed", self.seed, 0, 2**31 - 1)
        opt_int("threads", 1, 1024)
        for name in ("fp32_epochs", "bwn_epochs", "warmup_epochs"):
            _setting_int(name, getattr(self, name), 0, 10_000)
        for name in ("finetune_epochs", "baseline_epochs"):
            _setting_int(name, getattr(self, name), 1, 10_000)
        if self.fp32_epochs == 0 and self.bwn_epochs == 0:
            raise ValueError("bwn_epochs must be >= 1 when fp32_epochs is 0 (the WrapNet and "
                             "baseline networks start from a trained network), got 0")
        _setting_int("calib_images", self.calib_images, 1, 100_000)
        _setting_int("acc_bits", self.acc_bits, 2, 31)
        _setting_int("k", self.k, 1, 64)
        _setting_int("max_act_bits", self.max_act_bits, 1, 8)
        _setting_int("baseline_acc_bits", self.baseline_acc_bits, self.acc_bits + 1, 32)
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
        _setting_int("cosim_images", self.cosim_images, 1, 10_000)
        opt_int("cosim_max_ops", 1, 1 << 40)
        sims = self.simulators
        if isinstance(sims, (list, str)):
            sims = tuple(s.strip() for s in sims.split(",")) if isinstance(sims, str) \
                else tuple(sims)
            object.__setattr__(self, "simulators", sims)
        if not sims or not set(sims) <= {"icarus", "verilator"} or len(set(sims)) != len(sims):
            raise ValueError(f"simulators must name icarus and/or verilator once each, got "
                             f"{self.simulators!r}")
        _setting_int("estimate_images", self.estimate_images, 1, 100_000)
        _setting_int("estimate_ops", self.estimate_ops, 10, 1_000_000)  # gate-level limit
        _setting_int("array_macs", self.array_macs, 1, 1 << 20)
        if not isinstance(self.timed, bool):
            raise TypeError(f"timed must be true or false, got {self.timed!r}")

    def to_dict(self):
        """The settings as JSON-able values (tuples as lists), as ``flow.json`` stores them."""
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d


#: Preset values (fields not named keep the FlowConfig defaults, which are the quick preset).
PRESETS = {
    # About 5 minutes on 2 idle CPU cores: a half-width VGG-7 on 30 000 training images.
    "quick": {},
    # The real schedule: the paper's VGG-7 at a quarter width (as benchmarks/wrapnet_table.py),
    # a float network first, all 60 000 training images, every test image everywhere.
    "full": dict(widths=(32, 64, 128), train_subset=None, fp32_epochs=4, bwn_epochs=2,
                 warmup_epochs=0, finetune_epochs=4, baseline_epochs=4,
                 sweep_acc_bits=(6, 8, 10, 12, 14, 16, 32), sweep_images=None,
                 cosim_images=2, estimate_images=64, estimate_ops=2000),
    # The test suite's preset: scikit-learn's 8x8 digits, a tiny network, a few thousand
    # cosimulated operations on one simulator; about a minute.
    "tiny": dict(dataset="digits", widths=(8, 16, 16), train_subset=None, batch_size=32,
                 lr=0.005, bwn_epochs=6, warmup_epochs=1, finetune_epochs=4, baseline_epochs=5,
                 overflow_limit="register", ro_warmup=False,
                 calib_images=256, threads=1, sweep_acc_bits=(6, 8, 12, 16, 32),
                 sweep_images=None, cosim_max_ops=3000, simulators=("icarus",),
                 estimate_images=4, estimate_ops=300, array_macs=16),
}


def parse_setting_value(text):
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
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"--config {path} is not UTF-8 text ({exc.reason} at byte "
                        f"{exc.start})") from None
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
