"""SAT equivalence of a generated cyclic activation unit and the formula, for every input.

The miter instantiates the design (``m`` -> ``y``, ``b`` bits) and the behavioural model
(:func:`~wrapkit.formal.models.cyclic_model_verilog`, whose output is the formula's exact,
wider value) on the same ``m`` and drives ``ok = (sign-extended y == model y)``. Yosys'
``sat -prove ok 1`` then searches all ``2^b`` inputs at once for one with ``ok = 0``: no
model found is a proof; a model found is a counterexample, read back from the WaveJSON file
``sat -dump_json`` writes. Undefined bits are modelled (``-enable_undef``), so an output that
could be x for some input also fails the proof.
"""

import json
import time
from pathlib import Path

from wrapkit.common.errors import UserError

from .models import CYCLIC_MODEL, cyclic_model_verilog, cyclic_model_width
from .results import Counterexample, ProofResult
from .signals import as_signed
from .tools import ToolTimeout, require_tools, run_tool

__all__ = ["CYCLIC_PROPERTY", "cyclic_miter_verilog", "prove_cyclic"]

CYCLIC_PROPERTY = "y == cyclic(m) for every m"
_MITER = "wrapkit_cyclic_miter"


def cyclic_miter_verilog(top, acc_bits, k):
    """Verilog of the miter comparing design ``top`` with the cyclic model."""
    width = cyclic_model_width(acc_bits, k)
    return f"""\
// ok is 1 exactly when the design's y equals the formula for this m.
module {_MITER}(m, y_rtl, y_model, ok);
  input [{acc_bits - 1}:0] m;
  output [{acc_bits - 1}:0] y_rtl;
  output signed [{width - 1}:0] y_model;
  output ok;
  {top} rtl(.m(m), .y(y_rtl));
  {CYCLIC_MODEL} model(.m(m), .y(y_model));
  assign ok = $signed(y_rtl) == y_model;
endmodule
"""


def _wavejson_values(path):
    """``{signal: unsigned value}`` of the one time step in a ``sat -dump_json`` file."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    values = {}
    for signal in data["signal"]:
        if "data" in signal:
            bits = signal["data"][0]
        else:                               # one-bit signals: the wave itself, "0" or "1"
            bits = signal["wave"][0]
        values[signal["name"]] = None if any(c in "xz" for c in bits.lower()) else int(bits, 2)
    return values


def prove_cyclic(manifest, verilog_file, workdir, *, timeout=None):
    """Prove a ``"cyclic"`` design equal to the formula for every input.

    Parameters
    ----------
    manifest : dict
        The design's manifest (validated by ``wrapkit.hw.manifest.load_manifest``).
    verilog_file : path
        The design's Verilog.
    workdir : path
        Scratch folder for the model, miter, script and log.
    timeout : float, optional
        Seconds allowed for Yosys.

    Returns
    -------
    ProofResult
    """
    require_tools("yosys")
    cfg = manifest["config"]
    acc_bits, k, top = cfg["acc_bits"], cfg["k"], manifest["top"]
    workdir = Path(workdir)
    (workdir / "model.v").write_text(cyclic_model_verilog(acc_bits, k), encoding="utf-8")
    (workdir / "miter.v").write_text(cyclic_miter_verilog(top, acc_bits, k), encoding="utf-8")
    script = "\n".join([
        f"read_verilog {Path(verilog_file).resolve()}",
        "read_verilog model.v miter.v",
        f"hierarchy -check -top {_MITER}",
        "proc",
        "flatten",
        "opt_clean",
        "tee -o sat.log sat -prove ok 1 -enable_undef -set-def-inputs -show-inputs "
        "-show-outputs -dump_json cex.json",
    ]) + "\n"
    (workdir / "prove.ys").write_text(script, encoding="utf-8")
    start = time.monotonic()
    result = ProofResult(design=top, property=CYCLIC_PROPERTY, method="sat", depth=0,
                         status="timeout", seconds=0.0)
    try:
        run_tool(["yosys", "-q", "-s", "prove.ys"], workdir, timeout=timeout)
    except ToolTimeout as exc:
        result.seconds = time.monotonic() - start
        result.detail = str(exc)
        return result
    result.seconds = time.monotonic() - start
    log = (workdir / "sat.log").read_text(encoding="utf-8")
    if "SUCCESS!" in log:
        result.status = "proved"
        result.detail = f"no m in [-2^{acc_bits - 1}, 2^{acc_bits - 1}) makes them differ"
        return result
    if "FAIL!" not in log:
        raise UserError(f"yosys sat gave neither a proof nor a counterexample for {top}; "
                        f"rerun with --keep DIR and read {workdir.name}/sat.log")
    values = _wavejson_values(workdir / "cex.json")
    m = as_signed(values["m"], acc_bits)
    expected = as_signed(values["y_model"], cyclic_model_width(acc_bits, k))
    actual = as_signed(values["y_rtl"], acc_bits)
    result.status = "failed"
    result.detail = f"m = {m}: expected y = {expected}, actual y = {actual}"
    result.counterexample = Counterexample(
        inputs=["m"], outputs=["y"], failing_cycle=0, origin="any input",
        cycles=[{"cycle": 0, "inputs": {"m": m}, "expected": {"y": expected},
                 "actual": {"y": actual}}])
    return result
