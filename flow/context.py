"""What a stage function receives (:class:`StageContext`) and how it reports a failed
outcome (:class:`StageFailure`).

A stage is a function ``stage(ctx) -> result``: it reads its settings from ``ctx.cfg`` and
the results of earlier stages from ``ctx.results``, writes its files under ``ctx.run_dir``
and returns a JSON-able result (stored in ``flow.json``, gathered into ``summary.json``).
Paths inside results are relative to the run directory, so a run folder can be moved.
"""

import time
from pathlib import Path

__all__ = ["StageContext", "StageFailure"]


class StageFailure(Exception):
    """A stage ran to its end but its outcome is a failure (e.g. cosimulation mismatches)."""


class StageContext:
    """Settings, folders, earlier results and progress output of one running stage.

    Parameters
    ----------
    cfg : wrapkit.flow.config.FlowConfig
    run_dir : path
        The run folder; stage outputs go below it.
    results : dict
        Results of the stages that ran (or were reused) before this one, by name.
    index, total : int
        The stage's number (from 1) and the number of stages, for progress lines.
    name : str
        The stage's name.
    resume : bool
        Continue interrupted training runs from their checkpoints.
    progress : bool
        Show progress bars inside the stage.
    echo : callable(str)
        Where progress lines go.
    state : dict
        The run's ``flow.json`` contents (the report reads the stage times from it).
    """

    def __init__(self, cfg, run_dir, results, index, total, name, resume, progress, echo,
                 state):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.results = results
        self.index = index
        self.total = total
        self.name = name
        self.resume = resume
        self.progress = progress
        self.state = state
        self._echo = echo
        self.t0 = time.perf_counter()

    def say(self, message):
        """One progress line: stage number and name, elapsed seconds in the stage."""
        dt = time.perf_counter() - self.t0
        self._echo(f"[{self.index}/{self.total} {self.name} {dt:6.1f}s] {message}")

    def path(self, *parts):
        """A path inside the run folder."""
        return self.run_dir.joinpath(*parts)

    def rel(self, path):
        """``path`` relative to the run folder, as results store it."""
        return str(Path(path).resolve().relative_to(self.run_dir.resolve()))
