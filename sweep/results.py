"""The results folder: the single source of truth of a sweep.

Layout (docs/sweep.md)::

    OUT/spec.toml                  the spec of the last run into this folder
    OUT/points.jsonl               one row per point of that spec (derived, rewritten atomically)
    OUT/last_run.json              wall time, Ray CPUs, runs done and skipped by the last command
    OUT/parents/<id>/              a shared parent: model.pt, metrics.json
    OUT/runs/<run id>/             one trained network: model.pt, model.wkx, metrics.json,
                                   estimate.json, and result.json (written last)
    OUT/pareto.md, OUT/report.html, OUT/plots/*.png

Every file is written atomically (:mod:`wrapkit.common.files`) and a run's ``result.json``
last, so a run folder is finished exactly when its ``result.json`` says ``"status": "ok"``;
a killed sweep leaves finished runs and nothing half-written. ``points.jsonl`` is rebuilt
from the runs' ``result.json`` files, so it can always be regenerated.
"""

import json
from pathlib import Path

from wrapkit.common.files import atomic_write_bytes, atomic_write_json, atomic_write_text

__all__ = ["RESULT_SCHEMA", "ResultsFolder", "point_row"]

RESULT_SCHEMA = "wrapkit.sweep.run/1"
_MODEL_FILES = ("model.pt", "model.wkx")


def _read_json(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


class ResultsFolder:
    """Read and write a sweep's results folder (only the driver writes it)."""

    def __init__(self, root):
        self.root = Path(root)

    # -- parents ------------------------------------------------------------------------

    def parent_dir(self, pid):
        return self.root / "parents" / pid

    def finished_parent(self, pid):
        """The stored parent as a task result (``model`` bytes), or None."""
        folder = self.parent_dir(pid)
        metrics = _read_json(folder / "metrics.json")
        model = folder / "model.pt"
        if metrics is None or not metrics.get("complete") or not model.is_file():
            return None
        return {"status": "ok", "model": model.read_bytes(), "metrics": metrics,
                "reused": True}

    def write_parent(self, pid, result):
        folder = self.parent_dir(pid)
        if result["status"] == "ok":
            atomic_write_bytes(folder / "model.pt", result["model"])
            atomic_write_json(folder / "metrics.json", result["metrics"])
        else:
            atomic_write_json(folder / "error.json", {k: result[k] for k in
                                                      ("error", "traceback", "host", "pid")})

    # -- runs ---------------------------------------------------------------------------

    def run_dir(self, rid):
        return self.root / "runs" / rid

    def run_result(self, rid):
        """The run's ``result.json`` (ok or failed), or None when it never finished."""
        data = _read_json(self.run_dir(rid) / "result.json")
        return data if isinstance(data, dict) and data.get("schema") == RESULT_SCHEMA else None

    def finished_run(self, rid):
        """True when the run finished successfully and its files are there."""
        r = self.run_result(rid)
        return (r is not None and r["status"] == "ok"
                and all((self.run_dir(rid) / f).is_file() for f in _MODEL_FILES))

    def write_run(self, run, result):
        """Store a task's result: artifacts first, ``result.json`` last."""
        folder = self.run_dir(run.id)
        record = {"schema": RESULT_SCHEMA, "run": run.id, "label": run.label,
                  "train": run.train, "parents": [pid for pid, _ in run.parents],
                  "status": result["status"],
                  **{k: result.get(k) for k in ("host", "pid", "seconds", "total_seconds")}}
        if result["status"] == "ok":
            for name, data in result["files"].items():
                atomic_write_bytes(folder / name, data)
            atomic_write_json(folder / "metrics.json", result["metrics"])
            atomic_write_json(folder / "estimate.json", result["estimate"])
            record.update(_summary(result))
        else:
            record.update(error=result["error"], traceback=result.get("traceback"))
        atomic_write_json(folder / "result.json", record)
        return record

    # -- the table ----------------------------------------------------------------------

    def rows(self, spec):
        """One row per point of ``spec`` (status "pending" for runs not finished)."""
        return [point_row(p, self.run_result(p.run.id)) for p in spec.points]

    def write_table(self, spec):
        rows = self.rows(spec)
        atomic_write_text(self.root / "points.jsonl",
                          "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
        return rows


def _summary(result):
    """What the table needs from a finished run (the rest stays in its files)."""
    est, metrics = result["estimate"], result["metrics"]
    d = est["datapath"]
    return {
        "engine": result["engine"],
        "pytorch_accuracy": metrics["final"]["test_accuracy"],
        "act_bits": [r["act_bits"] for r in metrics["final"]["layers"]],
        "datapath": {"design": d["design"], "config": est["datapath_config"],
                     "mac_area_um2": d["mac_area_um2"], "cycle_time_ns": d["cycle_time_ns"],
                     "macs_per_inference": d["macs_per_inference"],
                     "energy_per_inference_nj": d["energy_per_inference_nj"],
                     "energy_images": est["images"], "ops_per_layer": est["n_ops_per_layer"]},
        "arrays": result.get("arrays") or {},
    }


def point_row(point, result):
    """The table row of ``point`` given its run's ``result.json`` (or None)."""
    values = {k: ("none" if k == "k" and v is None and point.values["method"] == "wrapnet"
                  else v) for k, v in point.values.items()}
    row = {"point": point.id, "run": point.run.id, **values,
           "train_method": point.run.train["method"],
           "status": "pending" if result is None else result["status"]}
    if result is None:
        return row
    if result["status"] != "ok":
        row["error"] = result.get("error")
        return row
    d = result["datapath"]
    pes = point.values["rows"] * point.values["cols"]
    synthesized = (result.get("arrays") or {}).get(f"{point.values['rows']}x"
                                                   f"{point.values['cols']}")
    row.update(
        accuracy=result["engine"]["accuracy"],
        pytorch_accuracy=result["pytorch_accuracy"],
        test_images=result["engine"]["images"],
        mean_overflow_rate=result["engine"]["mean_overflow_rate"],
        max_act_bits=max(b for b in result["act_bits"] if b is not None),
        design=d["design"], mac_area_um2=d["mac_area_um2"], cycle_time_ns=d["cycle_time_ns"],
        macs_per_inference=d["macs_per_inference"],
        energy_per_inference_nj=d["energy_per_inference_nj"],
        pes=pes,
        # Without array synthesis: the PEs' MAC cells only (no buffers, control, drain).
        array_area_mm2=(synthesized["area_um2"] if synthesized else d["mac_area_um2"] * pes)
        * 1e-6,
        array_area_source="synthesized array" if synthesized else "MAC cells x PEs",
        latency_us=d["macs_per_inference"] / pes * d["cycle_time_ns"] * 1e-3,
        seconds=result.get("total_seconds"),
    )
    return row
