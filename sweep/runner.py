"""Schedule a sweep's runs on Ray and keep the results folder up to date.

The driver (this module) is the results folder's only writer. It

1. holds the folder's lock (:func:`wrapkit.common.locking.exclusive_output`): one sweep per
   folder at a time;
2. skips every run whose ``result.json`` says it finished (a rerun after a kill, a crash or
   an added axis value trains only what is missing; failed runs are tried again);
3. connects to Ray: a local instance with ``workers`` CPUs, or an existing cluster at
   ``address``;
4. submits one task per shared parent that is not stored yet and one task per run (each
   declaring ``[ray] num_cpus`` CPUs and retried ``[ray] max_retries`` times when its worker
   dies); a run's task receives its parent's result as an argument, so Ray starts it when
   the parent is trained, on whichever node has a free CPU;
5. stores each result as it arrives (:class:`~wrapkit.sweep.results.ResultsFolder`),
   rewrites ``points.jsonl`` and advances a progress bar over points;
6. writes the Pareto fronts, sensitivity plots and the HTML report
   (:mod:`wrapkit.sweep.report`).

Why Ray: the points are independent tasks of minutes to hours with a small dependency graph
(parents before runs) -- exactly Ray's task model, and the same code runs on two local cores
or on a cluster (``ray start`` on each machine, ``--address`` here), with CPU accounting,
retries of lost workers and an object store that carries the parents' weights to the nodes.
"""

import logging
import os
import socket
import time

from wrapkit.common.errors import FlagError
from wrapkit.common.files import atomic_write_json, atomic_write_text
from wrapkit.common.locking import exclusive_output

from .results import ResultsFolder

__all__ = ["check_address", "connect", "run_sweep"]


def check_address(address):
    """Refuse a ``host:port`` address with nothing listening, before Ray waits on it.

    ``auto`` (the cluster this machine belongs to, from ``ray start``) is left to Ray.
    """
    if address in ("auto", "local"):
        return
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise FlagError("--address", f"must be HOST:PORT, ray://HOST:PORT or auto, got "
                                     f"{address!r}")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    except OSError as exc:
        raise FlagError("--address", f"{address}: no Ray cluster reachable there "
                                     f"({exc.strerror or exc}); start one with `ray start "
                                     f"--head` or check the address") from None


def connect(address=None, workers=None):
    """Start or join Ray; returns True when this call started it (and must shut it down).

    An already initialised Ray (a test's shared session, a notebook) is used as it is.
    """
    import ray

    if address:
        check_address(address)
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")       # no network calls home
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # no GPU warning
    quiet = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    if address:
        try:
            ray.init(address=address, **quiet)
        except (ConnectionError, RuntimeError, ValueError, ImportError) as exc:
            first = str(exc).strip().splitlines()
            raise FlagError("--address", f"{address}: cannot join the Ray cluster "
                                         f"({first[0] if first else type(exc).__name__})") \
                from None
    else:
        # "local": a new instance of our own, never a cluster that happens to run here
        ray.init(address="local", num_cpus=workers or os.cpu_count() or 1, **quiet)
    return True


def _task_failure(exc):
    first = str(exc).strip().splitlines()
    return {"status": "failed", "error": f"{type(exc).__name__}: "
                                         f"{first[-1] if first else 'no detail'}"}


def _submit(ray, spec, folder, todo):
    """Submit the parents and runs of ``todo``; returns {ref: (kind, item)}."""
    from . import tasks

    options = dict(num_cpus=spec.ray["num_cpus"], max_retries=spec.ray["max_retries"])
    parent_task = ray.remote(**options)(tasks.train_parent)
    run_task = ray.remote(**options)(tasks.run_point)
    settings = {"data_dir": spec.training["data_dir"], "threads": spec.training["threads"]}
    arrays = {}
    for p in spec.points:
        arrays.setdefault(p.run.id, []).append((p.values["rows"], p.values["cols"]))
    pending, parents = {}, {}
    for run in todo:
        init = None
        for pid, cfg in run.parents:
            if pid not in parents:
                stored = folder.finished_parent(pid)
                if stored is not None:
                    parents[pid] = ray.put(stored)
                else:
                    ref = parent_task.remote(cfg, init, settings)
                    parents[pid] = ref
                    pending[ref] = ("parent", pid)
            init = parents[pid]
        ref = run_task.remote(run.train, init, spec.hardware, settings,
                              sorted(set(arrays[run.id])) if spec.hardware["array_synth"]
                              else ())
        pending[ref] = ("run", run)
    return pending


def run_sweep(spec, out, *, address=None, workers=None, progress=True, log=print):
    """Run (or continue) ``spec`` into the results folder ``out``; returns the table rows.

    Parameters
    ----------
    spec : SweepSpec
    out : path-like
        The results folder (created if missing).
    address : str, optional
        A Ray cluster to join; default: start Ray on this machine.
    workers : int, optional
        CPUs of the local Ray instance (default: this machine's); not with ``address``.
    progress : bool
        Show a progress bar over points.
    log : callable(str)
        Where the per-run lines go.
    """
    from .report import write_outputs

    if address == "local":
        address = None
    if address and workers:
        raise FlagError("--workers", "applies to the local Ray instance; with --address the "
                                     "cluster's CPUs decide (drop one of them)")
    if address:
        check_address(address)  # before anything is written
    folder = ResultsFolder(out)
    with exclusive_output(out, what=f"sweep folder {out}",
                          hint="wait for that sweep to finish or choose another --out"):
        atomic_write_text(folder.root / "spec.toml", spec.source)
        todo = [run for run in spec.runs if not folder.finished_run(run.id)]
        done_runs = len(spec.runs) - len(todo)
        log(f"sweep: {len(spec.points)} points in {len(spec.runs)} runs; {done_runs} finished "
            f"runs skipped, {len(todo)} to do")
        folder.write_table(spec)
        t0 = time.perf_counter()
        cpus = _run_tasks(spec, folder, todo, address, workers, progress, log) if todo else None
        atomic_write_json(folder.root / "last_run.json", {
            "wall_s": round(time.perf_counter() - t0, 2), "ray_cpus": cpus,
            "address": address, "runs_done": len(todo), "runs_skipped": done_runs,
            "points": len(spec.points), "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                     time.gmtime())})
        rows = folder.write_table(spec)
        write_outputs(spec, rows, folder.root)
    failed = [r for r in rows if r["status"] == "failed"]
    log(f"sweep: {len(rows) - len(failed)} points finished, {len(failed)} failed -> "
        f"{folder.root / 'points.jsonl'}, {folder.root / 'report.html'}")
    return rows


def _run_tasks(spec, folder, todo, address, workers, progress, log):
    import ray
    from ray.exceptions import RayError
    from tqdm import tqdm

    points_of = {}
    for p in spec.points:
        points_of[p.run.id] = points_of.get(p.run.id, 0) + 1
    started = connect(address, workers)
    try:
        t0 = time.perf_counter()
        pending = _submit(ray, spec, folder, todo)
        bar = tqdm(total=len(spec.points), initial=len(spec.points) - sum(
            points_of[r.id] for r in todo), unit="point", desc="sweep", disable=not progress,
                   mininterval=1.0)
        say = bar.write if progress else log
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                kind, item = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except RayError as exc:  # the worker died more than max_retries times
                    result = _task_failure(exc)
                if kind == "parent":
                    folder.write_parent(item, result)
                    say(f"parent {item}: " + (f"trained in {result['seconds']:.1f} s"
                                              if result["status"] == "ok"
                                              else f"FAILED: {result['error']}"))
                    continue
                record = folder.write_run(item, result)
                folder.write_table(spec)
                bar.update(points_of[item.id])
                if record["status"] == "ok":
                    say(f"run {item.label}: engine accuracy "
                        f"{100 * record['engine']['accuracy']:.2f} %, "
                        f"{record['datapath']['energy_per_inference_nj']:.3g} nJ/inference "
                        f"({record['total_seconds']:.1f} s, pid {record['pid']})")
                else:
                    say(f"run {item.label}: FAILED: {record['error']}")
        bar.close()
        cpus = ray.cluster_resources().get("CPU", 0)
        log(f"sweep: {len(todo)} runs in {time.perf_counter() - t0:.1f} s on {cpus:g} Ray CPUs")
        return cpus
    finally:
        if started:
            ray.shutdown()
