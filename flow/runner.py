"""Run the flow's stages in order in a run folder, reusing what is unchanged.

``flow.json`` in the run folder records each finished stage with its key
(:func:`wrapkit.flow.cache.stage_key`), result and the SHA-256 of each of its output files; a
stage whose key is unchanged and whose outputs still hold exactly those files is reused, so re-running with the same inputs is quick and changing a setting
reruns only the stages it reaches. Inside the train stage every training run is also reused
on its own when its settings are unchanged.

Failure: a stage that raises stops the flow with :class:`FlowStageError` (stage and cause);
the finished stages stay recorded. ``--resume`` continues that run with its saved settings,
reusing finished stages and continuing an interrupted training run from its last checkpoint
(without ``--resume`` an unfinished training run restarts from scratch).
"""

import json
import time
import traceback
from pathlib import Path

from wrapkit import __version__
from wrapkit.common.buildcache import MANIFEST, manifest_problem, tree_manifest
from wrapkit.common.errors import (ExternalToolError, UserError, VerificationMismatch,
                                   environment_message)
from wrapkit.common.files import atomic_write_json
from wrapkit.common.locking import LOCK_NAME, exclusive_output

from .cache import FLOW_SCHEMA, data_digest, stage_key
from .config import FlowConfig
from .context import StageContext, StageFailure
from .stages import STAGES

__all__ = ["STATE", "FlowStageError", "load_state", "run_flow", "saved_config"]

#: The run folder's record of its stages (settings, keys, results, times).
STATE = "flow.json"


class FlowStageError(Exception):
    """A stage failed: ``stage`` names it, ``cause`` says why (one line)."""

    def __init__(self, stage, index, cause, kept, hint="", status=1):
        self.stage, self.index, self.cause, self.kept, self.hint = stage, index, cause, kept, hint
        #: The exit status it means: 2 for bad input or the environment (a setting, a missing
        #: or crashing tool, a full disk), 1 for anything else (a mismatch, a bug).
        self.status = status
        super().__init__(f"stage {index}/{len(STAGES)} '{stage}' failed: {cause}")


def load_state(run_dir):
    """The run folder's ``flow.json`` as a dict, or None when there is none."""
    path = Path(run_dir) / STATE
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise UserError(f"{path} is not valid JSON; delete the run folder {run_dir} to start "
                        "afresh") from None
    if not isinstance(state, dict) or state.get("schema") != FLOW_SCHEMA:
        raise UserError(f"{path} was not written by this wrapkit flow ({FLOW_SCHEMA}); use "
                        "another --name or delete the folder")
    return state


def saved_config(run_dir):
    """The FlowConfig a run directory was last run with (for ``--resume``)."""
    state = load_state(run_dir)
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
    run_dir = Path(run_dir)
    with exclusive_output(run_dir, what=f"run folder {run_dir}",
                          hint="wait for it to finish or choose another --name"):
        return _run_flow(cfg, run_dir, resume=resume, progress=progress, echo=echo,
                         stop_after=stop_after)


def _run_flow(cfg, run_dir, *, resume, progress, echo, stop_after):
    """The stages of :func:`run_flow` (the caller holds the run folder's lock)."""
    echo = echo or (lambda line: print(line, flush=True))
    state = load_state(run_dir) or {"schema": FLOW_SCHEMA, "stages": {}}
    state.update(config=cfg.to_dict(), wrapkit=__version__)
    stages_state = state["stages"]
    results = {}
    timeline = []
    t_flow = time.perf_counter()
    echo(f"wrapkit flow: preset {cfg.preset}, run folder {run_dir}")
    for i, stage in enumerate(STAGES, 1):
        extra = data_digest(cfg) if stage.name == "train" else ""
        key = stage_key(stage, cfg, results, extra)
        prev = stages_state.get(stage.name) or {}
        same = prev.get("status") == "done" and prev.get("key") == key
        changed = _outputs_problem(run_dir, stage, prev) if same else None
        if same and changed is None:
            results[stage.name] = prev["result"]
            prev["reused"] = True
            timeline.append({"stage": stage.name, "status": "cached",
                             "seconds": prev.get("seconds", 0.0), "run_seconds": 0.0})
            echo(f"[{i}/{len(STAGES)} {stage.name}] cached: inputs unchanged "
                 f"(took {prev.get('seconds', 0.0):.1f} s when it ran)")
        else:
            if changed:
                echo(f"[{i}/{len(STAGES)} {stage.name}] its outputs changed since it ran "
                     f"({changed}): running it again")
            echo(f"[{i}/{len(STAGES)} {stage.name}] {stage.title}")
            ctx = StageContext(cfg, run_dir, results, i, len(STAGES), stage.name, resume,
                               progress, echo, state)
            stages_state[stage.name] = {"key": key, "status": "running", "started": time.time()}
            atomic_write_json(run_dir / STATE, state)
            try:
                result = stage.run(ctx)
            except BaseException as exc:
                seconds = time.perf_counter() - ctx.t0
                interrupted = isinstance(exc, KeyboardInterrupt)
                cause = "interrupted" if interrupted else _cause(exc)
                stages_state[stage.name].update(status="interrupted" if interrupted else "failed",
                                                error=cause, seconds=round(seconds, 2))
                if not isinstance(exc, (UserError, StageFailure)) and not interrupted:
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
                        f"{where}` (if the cause is a setting, rerun without --resume with "
                        "the setting fixed: --resume keeps the saved settings, and finished "
                        "stages are reused either way)")
                usage = (isinstance(exc, (UserError, ExternalToolError))
                         and not isinstance(exc, VerificationMismatch)) \
                    or environment_message(exc) is not None
                raise FlowStageError(stage.name, i, cause, kept, hint,
                                     status=2 if usage else 1) from exc
            seconds = time.perf_counter() - ctx.t0
            stages_state[stage.name] = {"key": key, "status": "done", "seconds": round(seconds, 2),
                                        "finished": time.time(), "result": result,
                                        "reused": False,
                                        "outputs": _outputs_manifest(run_dir, stage)}
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


def _outputs_manifest(run_dir, stage):
    """SHA-256 of every file of ``stage``'s outputs (what reusing it later is checked
    against)."""
    return tree_manifest(run_dir, stage.outputs, skip=(MANIFEST, LOCK_NAME))


def _outputs_problem(run_dir, stage, record):
    """None when a finished stage's output files are all there with the content they had
    when it finished; else what differs (a missing or changed file)."""
    recorded = record.get("outputs")
    if not isinstance(recorded, dict):
        return "no record of its outputs"
    for output in stage.outputs:
        if not (run_dir / output).exists():
            return f"{output} is missing"
    return manifest_problem(run_dir, recorded) if recorded else None


def _cause(exc):
    text = str(exc).strip().splitlines()
    msg = text[0] if text else ""
    if isinstance(exc, UserError):
        return msg or type(exc).__name__
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
