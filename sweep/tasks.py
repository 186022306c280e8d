"""What one Ray task does: train a shared parent, or train, export and measure one run.

Both functions are plain Python (no Ray import): they run in a worker process, work in a
temporary folder of their own and **return** their artifacts (model and export bytes,
metrics) instead of writing the results folder, so the driver is the results folder's only
writer and a worker on another machine of a cluster needs no shared file system. A failure
is returned as ``{"status": "failed", "error": ...}`` rather than raised: the sweep records
it and goes on.

A run's measurements:

* **accuracy** of the exported network on the integer engine (:mod:`wrapkit.ref.engine`),
  which is what the hardware computes, beside PyTorch's;
* **energy per inference** from real operands (:func:`wrapkit.hw.synth.network.estimate_export`:
  the engine's operand streams of real test images simulated on the synthesized MAC), the MAC's
  area and cycle time; synthesis and gate-level results are cached by design and operand
  content (:mod:`wrapkit.hw.synth.cache`), so runs that share a MAC share its synthesis;
* optionally the **synthesized area** of each rows x cols layer array (:mod:`wrapkit.hw.synth.array_synth`).
"""

import json
import os
import socket
import tempfile
import time
import traceback
from pathlib import Path

__all__ = ["CRASH_ENV", "FAIL_ENV", "run_point", "train_parent"]

#: Test hook: a JSON object of training settings; a run whose settings include all of them
#: fails on purpose (before training), so tests can check that a failure is recorded.
FAIL_ENV = "WRAPKIT_SWEEP_FAIL"
#: Test hook: ``{"when": {settings}, "marker": path}``; the first task of a matching run
#: writes its process id to ``marker`` and kills its own worker process, so tests can check
#: that Ray runs it again (``[ray] max_retries``).
CRASH_ENV = "WRAPKIT_SWEEP_CRASH_ONCE"


def _matches(run, wanted):
    return isinstance(wanted, dict) and all(run.get(k) == v for k, v in wanted.items())


def _test_hooks(run):
    if _matches(run, json.loads(os.environ.get(FAIL_ENV) or "null")):
        raise RuntimeError(f"failing on purpose ({FAIL_ENV}={os.environ[FAIL_ENV]})")
    crash = json.loads(os.environ.get(CRASH_ENV) or "null")
    if isinstance(crash, dict) and _matches(run, crash.get("when")):
        try:
            fd = os.open(crash["marker"], os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        os._exit(1)  # the worker dies as if killed: no result, no exception


def _where():
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _failed(exc, t0):
    first = str(exc).strip().splitlines()
    return {"status": "failed", "error": f"{type(exc).__name__}: {first[0] if first else ''}",
            "traceback": traceback.format_exc(), "seconds": round(time.perf_counter() - t0, 3),
            **_where()}


def _quiet(*_args, **_kwargs):
    pass


def _train(cfg, init_bytes, work, settings):
    """Train ``cfg`` (TrainConfig fields) in ``work/run``, from ``init_bytes`` if given."""
    import torch

    from wrapkit.models.train import TrainConfig, train

    torch.set_num_threads(settings["threads"])
    init = None
    if init_bytes is not None:
        init = work / "init" / "model.pt"
        init.parent.mkdir(parents=True)
        init.write_bytes(init_bytes)
    tc = TrainConfig(**cfg, init=None if init is None else str(init),
                     data_dir=settings["data_dir"], threads=settings["threads"])
    run_dir = work / "run"
    metrics = train(tc, run_dir, progress=False, log=_quiet)
    return run_dir, metrics


def train_parent(cfg, init, settings):
    """Train one shared parent (float or quantized-weight network).

    Parameters
    ----------
    cfg : dict
        Its TrainConfig fields (without ``init``, ``data_dir``, ``threads``).
    init : dict or None
        The result of the parent it starts from (its ``model`` bytes), or None.
    settings : dict
        ``data_dir`` and ``threads``.

    Returns
    -------
    dict
        ``status`` "ok" with ``model`` (the ``model.pt`` bytes) and ``metrics``, or
        ``status`` "failed" with ``error``.
    """
    t0 = time.perf_counter()
    try:
        if init is not None and init.get("status") != "ok":
            raise RuntimeError(f"its parent failed: {init.get('error')}")
        with tempfile.TemporaryDirectory(prefix="wrapkit-sweep-parent-") as tmp:
            run_dir, metrics = _train(cfg, None if init is None else init["model"], Path(tmp),
                                      settings)
            return {"status": "ok", "model": (run_dir / "model.pt").read_bytes(),
                    "metrics": metrics, "seconds": round(time.perf_counter() - t0, 3),
                    **_where()}
    except Exception as exc:  # recorded, never raised: one bad parent must not stop the sweep
        return _failed(exc, t0)


def _engine_accuracy(exp, images):
    import numpy as np

    from wrapkit.ref.engine import Engine

    engine = Engine(exp)
    stats = engine.new_stats(0)
    logits = engine.run(images.pixels, batch_size=250, stats=stats)
    rates = [s.to_dict()["overflow_rate"] for s in stats.layers.values()]
    return {"images": len(images),
            "accuracy": float(np.mean(logits.argmax(1) == images.labels)),
            "mean_overflow_rate": float(np.mean(rates)) if rates else 0.0}


def _array_areas(mac, arrays, hardware, rtl_dir):
    """Synthesized area of each rows x cols array of ``mac`` (cached by design)."""
    from wrapkit.hw.array.config import ArrayConfig
    from wrapkit.hw.array.design import array_design
    from wrapkit.hw.synth.array_synth import part_of, synthesize_array
    from wrapkit.hw.verilog import write_designs

    depth = hardware["array_depth"]
    out = {}
    for rows, cols in arrays:
        cfg = ArrayConfig(rows, cols, mac, act_depth=depth, weight_depth=depth,
                          out_depth=depth, max_channels=min(256, depth))
        design = array_design(cfg)
        write_designs([design], rtl_dir)
        flow = synthesize_array(Path(rtl_dir) / design.files[1], liberty=hardware["liberty"])
        groups, total = flow.result["area"]["groups"], flow.result["area"]["total"]
        memories = sum(a for g, a in groups.items() if part_of(g) == "memories")
        out[f"{rows}x{cols}"] = {"design": design.name, "area_um2": total,
                                 "area_um2_without_memories": total - memories,
                                 "cycle_time_ns": flow.period * 1e9}
    return out


def run_point(run, parent, hardware, settings, arrays=()):
    """Fine-tune one run from its parent, export it, measure accuracy, energy and area.

    Parameters
    ----------
    run : dict
        The run's TrainConfig fields (:attr:`wrapkit.sweep.spec.Run.train`).
    parent : dict
        :func:`train_parent`'s result for the run's parent.
    hardware : dict
        The spec's [hardware] table.
    settings : dict
        ``data_dir`` and ``threads``.
    arrays : sequence of (rows, cols)
        Arrays to synthesize (with ``hardware["array_synth"]``).

    Returns
    -------
    dict
        ``status`` "ok" with ``metrics`` (training), ``engine`` (integer-engine accuracy),
        ``estimate`` (energy per inference, MAC area, cycle time), ``arrays``, ``files``
        (``model.pt`` and ``model.wkx`` bytes) and ``seconds`` per step; or ``status``
        "failed" with ``error`` and ``traceback``.
    """
    t0 = time.perf_counter()
    try:
        _test_hooks(run)
        if parent.get("status") != "ok":
            raise RuntimeError(f"its parent failed: {parent.get('error')}")
        from wrapkit.common.datasets import load_images
        from wrapkit.hw.synth.network import estimate_export
        from wrapkit.models.export import export_run
        from wrapkit.ref.datapath import MacConfig

        seconds = {}
        with tempfile.TemporaryDirectory(prefix="wrapkit-sweep-run-") as tmp:
            work = Path(tmp)
            t = time.perf_counter()
            run_dir, metrics = _train(run, parent["model"], work, settings)
            seconds["train"] = time.perf_counter() - t
            t = time.perf_counter()
            wkx = work / "model.wkx"
            exp = export_run(run_dir, wkx, data_dir=settings["data_dir"])
            seconds["export"] = time.perf_counter() - t
            t = time.perf_counter()
            test = load_images(run["dataset"], "test", settings["data_dir"])
            engine = _engine_accuracy(exp, test.first(hardware["test_images"]))
            seconds["engine"] = time.perf_counter() - t
            t = time.perf_counter()
            est = estimate_export(exp, images=hardware["energy_images"],
                                  data_dir=settings["data_dir"], n_ops=hardware["energy_ops"],
                                  array_macs=1, baseline_acc_bits=None, rtl_dir=work / "rtl",
                                  liberty=hardware["liberty"], goal=hardware["goal"],
                                  timed=hardware["timed"])
            seconds["energy"] = time.perf_counter() - t
            areas = {}
            if hardware["array_synth"] and arrays:
                t = time.perf_counter()
                mac = MacConfig.from_dict(est["datapath_config"])
                areas = _array_areas(mac, arrays, hardware, work / "rtl")
                seconds["array_synth"] = time.perf_counter() - t
            files = {"model.pt": (run_dir / "model.pt").read_bytes(),
                     "model.wkx": wkx.read_bytes()}
        seconds = {k: round(v, 3) for k, v in seconds.items()}
        return {"status": "ok", "metrics": metrics, "engine": engine, "estimate": est,
                "arrays": areas, "files": files, "seconds": seconds,
                "total_seconds": round(time.perf_counter() - t0, 3), **_where()}
    except Exception as exc:  # recorded, never raised: one bad point must not stop the sweep
        return _failed(exc, t0)
