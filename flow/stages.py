"""The flow's stages as one table: what each runs, reads and writes.

:data:`STAGES` lists the stages in the order the runner (:mod:`wrapkit.flow.runner`) walks
them. A stage's key (:func:`wrapkit.flow.cache.stage_key`) covers the settings it reads, the
results of the stages it reads and the sources of the packages its code lives in; adding a
stage means writing its function ``stage(ctx) -> result`` (:mod:`wrapkit.flow.context`) and
adding one row here.
"""

from dataclasses import dataclass
from typing import Callable

from .evaluation import stage_export
from .hardware import stage_cosim, stage_rtl, stage_synth
from .report import stage_report
from .training import stage_train

__all__ = ["STAGES", "FlowStage"]


@dataclass(frozen=True)
class FlowStage:
    """One step of ``wrapkit flow``.

    Attributes
    ----------
    name : str
        Its name in progress lines, ``flow.json`` and the run folder.
    title : str
        What it does, one line.
    run : callable(StageContext) -> dict
        The stage function; returns a JSON-able result.
    settings : tuple of str
        The :class:`~wrapkit.flow.config.FlowConfig` fields it reads.
    reads : tuple of str
        The earlier stages whose results it reads.
    packages : tuple of str
        The wrapkit packages its code lives in (their sources enter its key).
    outputs : tuple of str
        Files or folders (relative to the run folder) that must exist to reuse it.
    """

    name: str
    title: str
    run: Callable
    settings: tuple
    reads: tuple
    packages: tuple
    outputs: tuple


_TRAIN_SETTINGS = ("dataset", "model", "widths", "train_subset", "batch_size", "lr", "seed",
                   "fp32_epochs", "bwn_epochs", "warmup_epochs", "finetune_epochs",
                   "baseline_epochs", "calib_images", "acc_bits", "k", "p", "ro",
                   "overflow_limit", "ro_warmup",
                   "max_act_bits", "baseline_act_bits", "baseline_acc_bits")

STAGES = (
    FlowStage("train", "train WrapNet (8-bit accumulator) and the 32-bit baseline",
              stage_train, _TRAIN_SETTINGS, (),
              ("flow", "models", "ref"), ("train",)),
    FlowStage("export", "export both networks; integer engine on the test set",
              stage_export, ("sweep_acc_bits", "sweep_images"), ("train",),
              ("flow", "models", "ref"), ("export/wrapnet.wkx", "export/baseline.wkx")),
    FlowStage("rtl", "generate the MAC Verilog and manifests",
              stage_rtl, ("cosim_layers",), ("export",),
              ("flow", "hw", "ref"), ("rtl",)),
    FlowStage("cosim", "cosimulate real conv layers in RTL against ref/",
              stage_cosim, ("cosim_layers", "cosim_images", "cosim_max_ops", "simulators"),
              ("export", "rtl"),
              ("flow", "sim", "hw", "ref"), ("cosim/cosim.json",)),
    FlowStage("synth", "synthesize both datapaths; area, cycle time, energy per inference",
              stage_synth, ("estimate_images", "estimate_ops", "array_macs", "liberty", "goal",
                            "timed", "seed"), ("export", "rtl"),
              ("flow", "hw", "ref"), ("synth/estimate_wrapnet.json",)),
    FlowStage("report", "write report.md, report.html and summary.json",
              stage_report, (), ("train", "export", "rtl", "cosim", "synth"),
              ("flow", "ref"), ("report.md", "report.html", "summary.json")),
)

