"""The sweep specification: a TOML file, checked key by key, expanded into points.

A spec has five tables (docs/sweep.md lists every key)::

    [sweep]      mode = "grid" | "random", samples, seed, name
    [space]      the axes: method, acc_bits, k, p, act_bits, weights, model, rows, cols
    [training]   dataset, widths, the parent and fine-tuning schedule (shared by every point)
    [hardware]   operands for the energy estimate, the engine's test images, array synthesis
    [ray]        CPUs per task, retries of a task whose worker died

A **point** is one value per axis. Points that train the same network (their resolved
training settings are equal, e.g. ``method = "qa"`` with any ``k``) share one **run**: one
Ray task trains, exports and measures it, and the table gets one row per point of the run
(they differ only in the array's rows x cols, whose area and latency are computed from the
run's MAC; with ``array_synth`` each array size is a run of its own). Every unknown table, key or value is a :class:`~wrapkit.common.errors.UserError`
naming the key and what is allowed.
"""

import itertools
import json
import math
import random
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from wrapkit.common.buildcache import hash_parts
from wrapkit.common.errors import UserError

__all__ = ["AXES", "Point", "Run", "SweepSpec", "allowed_methods", "load_spec", "parse_spec"]

#: Axes of the space, in the order points are enumerated and shown.
AXES = ("model", "weights", "method", "acc_bits", "k", "p", "act_bits", "rows", "cols")

#: Value of an axis that is not listed in [space].
AXIS_DEFAULTS = {"model": "vgg7", "weights": "binary", "method": "wrapnet", "acc_bits": 8,
                 "k": 2, "p": 5.0, "act_bits": None, "rows": 8, "cols": 8}

_WEIGHTS = ("binary", "ternary") + tuple(f"uniform{b}" for b in range(2, 9))

_TABLES = {
    "sweep": {"mode": "grid", "samples": None, "seed": 0, "name": None},
    "space": {},
    "training": {"dataset": "fashion-mnist", "data_dir": None, "widths": None,
                 "train_subset": None, "batch_size": 128, "lr": 1e-3, "seed": 0,
                 "threads": 1, "fp32_epochs": 0, "parent_epochs": 2, "warmup_epochs": 0,
                 "epochs": 2, "calib_images": 512, "ro": 0.01, "overflow_limit": "register",
                 "ro_warmup": False},
    "hardware": {"test_images": None, "energy_images": 8, "energy_ops": 500, "goal": "delay",
                 "timed": True, "liberty": None, "array_synth": False, "array_depth": 256},
    "ray": {"num_cpus": 1, "max_retries": 2},
}


def allowed_methods():
    """Training methods a point may name: WrapNet and plain quantized activations (QA), and
    A2Q when :mod:`wrapkit.models.train` knows it."""
    from wrapkit.models.train import METHODS
    return tuple(m for m in ("wrapnet", "qa", "a2q") if m in METHODS)


def _fail(key, problem):
    raise UserError(f"sweep spec: {key} {problem}")


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v):
    return (isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(v))


def _int_in(key, v, lo, hi):
    if not _is_int(v) or not lo <= v <= hi:
        _fail(key, f"must be an integer in [{lo}, {hi}], got {v!r}")
    return v


def _axis_checks():
    from wrapkit.models.nets import MODELS
    from wrapkit.models.qconfig import ACC_BITS_RANGE, ACT_BITS_RANGE, K_RANGE

    def choice(options):
        def check(key, v):
            if v not in options:
                _fail(key, f"must be one of {', '.join(map(str, options))}, got {v!r}")
            return v
        return check

    def k(key, v):
        if v == "none":
            return None
        if not _is_int(v) or not K_RANGE[0] <= v <= K_RANGE[1]:
            _fail(key, f"must be an integer in [{K_RANGE[0]}, {K_RANGE[1]}] or \"none\" (no "
                       f"cyclic activation), got {v!r}")
        return v

    def p(key, v):
        if not _is_number(v) or not 0 <= v <= 100:
            _fail(key, f"must be a number in [0, 100] (overflow target, percent), got {v!r}")
        return float(v)

    def model(key, v):
        # The energy estimate (hw/synth/network.py) reads layer-chain exports (version 1);
        # the other models export integer graphs (version 2).
        chain = tuple(m for m in MODELS if m == "vgg7")
        if v not in chain:
            _fail(key, f"must be one of {', '.join(chain)} (the energy estimate reads "
                       f"layer-chain exports; {', '.join(m for m in MODELS if m not in chain)} "
                       f"export integer graphs), got {v!r}")
        return v

    return {
        "model": model,
        "weights": choice(_WEIGHTS),
        "method": choice(allowed_methods()),
        "acc_bits": lambda key, v: _int_in(key, v, *ACC_BITS_RANGE),
        "k": k,
        "p": p,
        "act_bits": lambda key, v: _int_in(key, v, *ACT_BITS_RANGE),
        "rows": lambda key, v: _int_in(key, v, 1, 64),
        "cols": lambda key, v: _int_in(key, v, 1, 64),
    }


def _check_settings(table, given):
    """Known keys only, each value of the right kind; returns the table with defaults."""
    defaults = _TABLES[table]
    out = dict(defaults)
    for key, v in given.items():
        name = f"[{table}] {key}"
        if key not in defaults:
            _fail(f"[{table}] has an unknown key {key!r};", f"allowed keys: "
                                                           f"{', '.join(defaults)}")
        out[key] = _check_value(table, key, name, v)
    return out


def _check_value(table, key, name, v):
    from wrapkit.common.datasets import DATASETS
    from wrapkit.models.accumulate import LIMITS

    ints = {("sweep", "samples"): (1, 100_000), ("sweep", "seed"): (0, 2**31 - 1),
            ("training", "train_subset"): (2, 10_000_000), ("training", "batch_size"): (2, 65536),
            ("training", "seed"): (0, 2**31 - 1), ("training", "threads"): (1, 1024),
            ("training", "fp32_epochs"): (0, 10_000), ("training", "parent_epochs"): (1, 10_000),
            ("training", "warmup_epochs"): (0, 10_000), ("training", "epochs"): (1, 10_000),
            ("training", "calib_images"): (1, 100_000),
            ("hardware", "test_images"): (1, 10_000_000),
            ("hardware", "energy_images"): (1, 10_000), ("hardware", "energy_ops"): (10, 10**7),
            ("hardware", "array_depth"): (2, 1 << 20),
            ("ray", "num_cpus"): (1, 1024), ("ray", "max_retries"): (0, 100)}
    choices = {("sweep", "mode"): ("grid", "random"), ("training", "dataset"): DATASETS,
               ("training", "overflow_limit"): LIMITS, ("hardware", "goal"): ("delay", "area")}
    if (table, key) in ints:
        return _int_in(name, v, *ints[(table, key)])
    if (table, key) in choices:
        if v not in choices[(table, key)]:
            _fail(name, f"must be one of {', '.join(choices[(table, key)])}, got {v!r}")
        return v
    if key in ("ro_warmup", "timed", "array_synth"):
        if not isinstance(v, bool):
            _fail(name, f"must be true or false, got {v!r}")
        return v
    if key in ("lr", "ro"):
        lo_ok = v > 0 if key == "lr" else v >= 0
        if not _is_number(v) or not lo_ok or (key == "lr" and v > 1):
            _fail(name, f"must be a number in {'(0, 1]' if key == 'lr' else '[0, inf)'}, "
                        f"got {v!r}")
        return float(v)
    if key in ("name", "data_dir", "liberty"):
        if not isinstance(v, str) or not v:
            _fail(name, f"must be a non-empty string, got {v!r}")
        if key == "name" and ("/" in v or v in (".", "..") or "\0" in v):
            # the default results folder is out/sweep/<name>
            _fail(name, f"must be a plain folder name (no '/', not '.' or '..'), got {v!r}")
        return v
    if key == "widths":
        return _check_widths(name, v)
    raise AssertionError(f"no check for {name}")  # every default key has a branch above


def _check_widths(name, v):
    """``[8, 16, 16]`` (every model) or ``{vgg7 = [8, 16, 16], resnet20 = [...]}``."""
    from wrapkit.models.nets import MODELS

    def one(label, w):
        if not isinstance(w, list) or not w or not all(_is_int(x) and x >= 1 for x in w):
            _fail(label, f"must be a list of positive integers, got {w!r}")
        return tuple(w)

    if isinstance(v, dict):
        for model in v:
            if model not in MODELS:
                _fail(f"{name}.{model}", f"is not a model; allowed: {', '.join(MODELS)}")
        return {m: one(f"{name}.{m}", w) for m, w in v.items()}
    return one(name, v)


@dataclass(frozen=True)
class Run:
    """One trained network: the parent chain it fine-tunes from and its own training."""

    id: str
    parents: tuple          # ((parent id, TrainConfig dict), ...) root first
    train: dict             # TrainConfig fields (without init and threads)
    label: str


@dataclass(frozen=True)
class Point:
    """One point of the space: its axis values and the run that trains its network."""

    id: str
    values: dict
    run: Run


@dataclass
class SweepSpec:
    """A checked spec: settings per table, the axes' value lists, the expanded points."""

    sweep: dict
    space: dict
    training: dict
    hardware: dict
    ray: dict
    source: str = ""
    points: list = field(default_factory=list)

    @property
    def runs(self):
        """The distinct runs of :attr:`points`, in first-use order."""
        seen = {}
        for p in self.points:
            seen.setdefault(p.run.id, p.run)
        return list(seen.values())

    @property
    def varied(self):
        """Axes with more than one value (the sensitivity plots' parameters)."""
        return [a for a in AXES if len(self.space.get(a, ())) > 1]

    def to_dict(self):
        return {"sweep": self.sweep, "space": {a: [("none" if v is None else v) for v in vs]
                                              for a, vs in self.space.items()},
                "training": _jsonable(self.training), "hardware": self.hardware,
                "ray": self.ray}


def _jsonable(d):
    return json.loads(json.dumps(d, default=list))


def _resolve(values, training, hardware):
    """The run of a point: which parents it fine-tunes from and its TrainConfig fields."""
    model, weights, method = values["model"], values["weights"], values["method"]
    wkind, wbits = ("uniform", int(weights[7:])) if weights.startswith("uniform") \
        else (weights, None)
    widths = training["widths"]
    if isinstance(widths, dict):
        widths = widths.get(model)
    common = dict(model=model, widths=None if widths is None else list(widths),
                  dataset=training["dataset"], train_subset=training["train_subset"],
                  batch_size=training["batch_size"], lr=training["lr"], seed=training["seed"],
                  calib_images=training["calib_images"])
    parents = []
    if training["fp32_epochs"]:
        fp32 = dict(common, method="fp32", epochs=training["fp32_epochs"])
        parents.append(fp32)
    parents.append(dict(common, method="qw", weights=wkind, weight_bits=wbits,
                        epochs=training["parent_epochs"]))
    tune = dict(common, weights=wkind, weight_bits=wbits, acc_bits=values["acc_bits"],
                epochs=training["epochs"])
    if method == "wrapnet" and values["k"] is not None:
        tune.update(method="wrapnet", k=values["k"], p=values["p"], ro=training["ro"],
                    warmup_epochs=training["warmup_epochs"],
                    overflow_limit=training["overflow_limit"], ro_warmup=training["ro_warmup"],
                    max_act_bits=values["act_bits"] or 8)
    else:
        # No cyclic activation: a plain wrapping acc_bits register with quantized
        # activations of a fixed width, the paper's "k = inf" row (qa); a2q likewise.
        tune.update(method="qa" if method == "wrapnet" else method,
                    act_bits=values["act_bits"] or 3)
    ids, chain = [], []
    for cfg in parents:
        pid = hash_parts("parent", json.dumps(cfg, sort_keys=True), *ids, length=12)
        chain.append((f"{cfg['method']}_{cfg.get('weights', 'float')}_{pid}", cfg))
        ids.append(pid)
    hw = {k: hardware[k] for k in ("test_images", "energy_images", "energy_ops", "goal",
                                   "timed", "liberty", "array_synth", "array_depth")}
    if hardware["array_synth"]:
        # A synthesized array belongs to its run: one run per array size.
        hw["array"] = (values["rows"], values["cols"])
    rid = hash_parts("run", json.dumps(tune, sort_keys=True), *ids,
                     json.dumps(hw, sort_keys=True), length=12)
    k = tune.get("k")
    label = (f"{model}_{tune['method']}_{weights}_acc{tune['acc_bits']}"
             + (f"_k{k}_p{values['p']:g}" if tune["method"] == "wrapnet" else "")
             + f"_a{tune.get('max_act_bits') or tune.get('act_bits')}")
    return Run(f"{label}_{rid}", tuple(chain), tune, label)


def _expand(space, sweep):
    axes = list(AXES)
    lists = [space.get(a, [AXIS_DEFAULTS[a]]) for a in axes]
    if sweep["mode"] == "grid":
        if sweep["samples"] is not None:
            _fail("[sweep] samples", "applies to mode = \"random\" only; remove it or set "
                                     "mode = \"random\"")
        combos = itertools.product(*lists)
    else:
        if sweep["samples"] is None:
            _fail("[sweep] samples", "is required with mode = \"random\" (how many points "
                                     "to draw)")
        rng = random.Random(sweep["seed"])
        combos = [tuple(rng.choice(vs) for vs in lists) for _ in range(sweep["samples"])]
    seen, out = set(), []
    for combo in combos:
        values = dict(zip(axes, combo))
        if values["method"] != "wrapnet":
            values["k"], values["p"] = None, None   # they do not apply: one point, not many
        elif values["k"] is None:
            values["p"] = None
        key = json.dumps(values, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(values)
    return out


def parse_spec(text, source="<spec>"):
    """Check a spec's TOML text and expand its points.

    Raises
    ------
    UserError
        Bad TOML, an unknown table or key, a value out of range (the message names the key
        and what is allowed).
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"sweep spec {source} is not valid TOML: {exc}") from None
    for table, v in data.items():
        if table not in _TABLES:
            _fail(f"has an unknown table [{table}];", f"allowed tables: "
                                                      f"{', '.join(f'[{t}]' for t in _TABLES)}")
        if not isinstance(v, dict):
            _fail(f"[{table}]", "must be a table")
    if "space" not in data or not data["space"]:
        _fail("[space]", f"must list at least one axis; allowed axes: {', '.join(AXES)}")
    checks = _axis_checks()
    space = {}
    for axis, values in data["space"].items():
        if axis not in checks:
            _fail(f"[space] has an unknown axis {axis!r};", f"allowed axes: {', '.join(AXES)}")
        if not isinstance(values, list) or not values:
            _fail(f"[space] {axis}", f"must be a non-empty list of values, got {values!r}")
        checked = [checks[axis](f"[space] {axis}", v) for v in values]
        if len(set(map(str, checked))) != len(checked):
            _fail(f"[space] {axis}", f"lists a value twice: {values!r}")
        space[axis] = checked
    spec = SweepSpec(**{t: _check_settings(t, data.get(t, {})) for t in _TABLES
                        if t != "space"}, space=space, source=text)
    if spec.training["dataset"] == "digits" and spec.training["data_dir"]:
        _fail("[training] data_dir", "applies to fashion-mnist only; remove it")
    if spec.hardware["array_synth"]:
        for b in space.get("acc_bits", [AXIS_DEFAULTS["acc_bits"]]):
            if b > 32:
                _fail("[space] acc_bits", f"must be <= 32 with [hardware] array_synth = true "
                                          f"(the array requantizes at most 32 bits), got {b}")
    for values in _expand(space, spec.sweep):
        run = _resolve(values, spec.training, spec.hardware)
        pid = f"{run.id}_r{values['rows']}c{values['cols']}"
        spec.points.append(Point(pid, values, run))
    return spec


def load_spec(path):
    """:func:`parse_spec` of a file (a missing or unreadable file is a UserError)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise UserError(f"cannot read the sweep spec {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UserError(f"sweep spec {path} is not UTF-8 text") from None
    return parse_spec(text, str(path))
