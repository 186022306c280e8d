"""Co-design sweeps on Ray: accuracy against energy and area over a space of WrapNet settings.

``wrapkit sweep SWEEP.toml`` (docs/sweep.md): :mod:`.spec` reads and expands the TOML space,
:mod:`.tasks` is what one Ray task does (train a shared parent; train, export and measure one
run), :mod:`.results` is the results folder, :mod:`.runner` schedules the tasks on Ray,
:mod:`.report` writes the Pareto fronts, sensitivity plots and the HTML report, :mod:`.cli`
is the command.
"""

__all__ = ["load_spec", "parse_spec", "run_sweep"]


def __getattr__(name):
    # Lazy: `wrapkit --help` must not import torch or Ray.
    if name in ("load_spec", "parse_spec"):
        from . import spec
        return getattr(spec, name)
    if name == "run_sweep":
        from .runner import run_sweep
        return run_sweep
    raise AttributeError(name)
