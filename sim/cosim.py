"""Cosimulation jobs: a MAC design or a cyclic bank, one simulator, one call.

These are what the pytest files and the ``wrapkit cosim`` / ``wrapkit demo`` commands call;
each builds (once) and runs a testbench through :func:`wrapkit.sim.runner.run` and condenses
the testbench's JSON report into a small result object.
"""

from dataclasses import dataclass
from pathlib import Path

from .designs import cyclic_bank, resolve_mac
from .runner import SimResult, run
from .tools import check_simulator

__all__ = ["DRIVEN_LIMIT_WHY", "MAX_DRIVEN_OPS", "CosimResult", "cosim_cyclic", "cosim_mac"]


@dataclass
class CosimResult:
    """Condensed outcome of one cosimulation.

    Attributes
    ----------
    design, sim : str
    checked : int
        Operations (MAC) or inputs (cyclic) compared with the reference.
    mismatches : int
        All mismatches counted (the testbench does not stop at the first).
    ops_per_s : float
        Checked operations per wall-clock second of the driving loop (simulator start-up
        and compilation excluded).
    examples : list of str
        The first mismatch messages (cycle, operands, expected and actual).
    sim_result : SimResult
        The full runner result (per-test outcomes, reports, log path).
    """

    design: str
    sim: str
    checked: int
    mismatches: int
    ops_per_s: float
    examples: list
    sim_result: SimResult

    @property
    def ok(self):
        return self.sim_result.ok and self.mismatches == 0 and self.checked > 0


#: Most random operations of one driven MAC cosimulation: the testbench holds the whole
#: stimulus and its expected values in memory (about 40 bytes per operation) and drives
#: about 20,000 operations per second, so this is some 800 MB and a quarter of an hour.
MAX_DRIVEN_OPS = 20_000_000
#: Why :data:`MAX_DRIVEN_OPS` exists, for messages.
DRIVEN_LIMIT_WHY = ("the driven testbench holds every operation in memory; for longer "
                    "streams use `wrapkit cosim layer`, which streams in bounded chunks")


def cosim_mac(config, sim="icarus", ops=20000, seed=1, rtl_dir=None, full_width=True):
    """Cosimulate a MAC design against ``wrapkit.ref``.

    Parameters
    ----------
    config : str or path-like
        Paper configuration name or manifest path (see :func:`~wrapkit.sim.designs.resolve_mac`).
    sim : "icarus" | "verilator"
    ops : int, >= 1
        Random operations in ``test_random_ops``.
    seed : int
        Stimulus seed.
    rtl_dir : path-like, optional
        Where paper designs are looked up.
    full_width : bool
        Also run ``test_full_width_accumulation`` (held inputs until the accumulator wraps).

    Returns
    -------
    CosimResult
        ``checked``/``mismatches``/``ops_per_s`` are those of the random-operations test;
        mismatches of the full-width test are added in.
    """
    check_simulator(sim)
    if isinstance(ops, bool) or not isinstance(ops, int) or ops < 1:
        raise ValueError(f"ops must be an integer >= 1, got {ops!r}")
    if ops > MAX_DRIVEN_OPS:
        raise ValueError(f"ops must be at most {MAX_DRIVEN_OPS:,} ({DRIVEN_LIMIT_WHY}), got "
                         f"{ops:,}")
    manifest = resolve_mac(config, rtl_dir)
    from wrapkit.hw.manifest import load_manifest, verilog_path

    m = load_manifest(manifest)
    tests = ["test_random_ops"] + (["test_full_width_accumulation"] if full_width else [])
    result = run([verilog_path(manifest, m)], m["top"], "wrapkit.sim.tb_mac", sim,
                 env={"WRAPKIT_TB_MANIFEST": manifest, "WRAPKIT_TB_OPS": ops,
                      "WRAPKIT_TB_SEED": seed},
                 testcase=tests)
    checked = mismatches = 0
    rate = 0.0
    examples = []
    for outcome in result.outcomes:
        rep = outcome.report or {}
        mismatches += int(rep.get("mismatches", 0))
        examples += rep.get("mismatch_examples", [])
        if outcome.name == "test_random_ops":
            checked = int(rep.get("ops_checked", 0))
            rate = float(rep.get("ops_per_s", 0.0))
    return CosimResult(m["top"], sim, checked, mismatches, rate, examples, result)


def cosim_cyclic(sim="icarus", acc_bits=range(4, 11), ks=range(1, 5), seed=1):
    """Exhaustively cosimulate ``CyclicActivation`` for every (acc_bits, k) of the sweep."""
    check_simulator(sim)
    bank = cyclic_bank(acc_bits, ks)
    import json

    spec = json.loads(Path(bank).read_text())
    sources = [bank.parent / f for f in spec["verilog"]]
    result = run(sources, spec["top"], "wrapkit.sim.tb_cyclic", sim,
                 env={"WRAPKIT_TB_MANIFEST": bank, "WRAPKIT_TB_SEED": seed})
    rep = (result.outcomes[0].report if result.outcomes else None) or {}
    return CosimResult(spec["top"], sim, int(rep.get("inputs_checked", 0)),
                       int(rep.get("mismatches", 0)), float(rep.get("inputs_per_s", 0.0)),
                       rep.get("mismatch_examples", []), result)
