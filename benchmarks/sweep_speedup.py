"""Speed-up of a sweep on 2 Ray workers over 1, measured in one run (docs/sweep.md).

Runs ``examples/sweeps/digits_small.toml`` twice with ``wrapkit sweep``: with ``--workers 1``
into a temporary folder, then with ``--workers 2`` into ``docs/results/sweep/digits_small/``
(the committed results). Each run gets its own empty synthesis cache, so neither reuses the
other's synthesis or gate-level results, and the wall time is the command's (Ray start-up
included). The two tables must hold the same figures (training is seeded, one thread per
task), which the script checks before it writes ``speedup.{json,md}`` beside the results.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "examples" / "sweeps" / "digits_small.toml"
OUT = ROOT / "docs" / "results" / "sweep" / "digits_small"
FIGURES = ("accuracy", "energy_per_inference_nj", "array_area_mm2", "mac_area_um2")


def _sweep(out, workers, cache):
    env = dict(os.environ, WRAPKIT_CACHE_DIR=str(cache))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "wrapkit.cli", "sweep", str(SPEC), "--out", str(out),
                    "--workers", str(workers), "--no-progress"], env=env, check=True)
    wall = time.perf_counter() - t0
    rows = [json.loads(line) for line in (out / "points.jsonl").read_text().splitlines()]
    return wall, rows


def main():
    if (OUT / "points.jsonl").exists():
        print(f"sweep_speedup: {OUT} holds results already; remove it to measure again",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="wrapkit-sweep-bench-") as tmp:
        tmp = Path(tmp)
        one, rows1 = _sweep(tmp / "one", 1, tmp / "cache1")
        two, rows2 = _sweep(OUT, 2, tmp / "cache2")
    differ = [(a["point"], f) for a, b in zip(rows1, rows2) for f in FIGURES
              if a.get(f) != b.get(f)]
    load = os.getloadavg()
    result = {"spec": str(SPEC.relative_to(ROOT)), "points": len(rows2),
              "runs": len({r["run"] for r in rows2}), "cpu_count": os.cpu_count(),
              "wall_s_1_worker": round(one, 1), "wall_s_2_workers": round(two, 1),
              "speedup": round(one / two, 2), "same_figures": not differ,
              "differences": differ[:10], "load_average_after": [round(x, 2) for x in load],
              "note": f"measured on a {os.cpu_count()}-core machine (compare the load "
                      "average: other work slows the 2-worker run most); each run with an "
                      "empty synthesis cache; wall time of `wrapkit sweep`, Ray start-up "
                      "included"}
    (OUT / "speedup.json").write_text(json.dumps(result, indent=2) + "\n")
    (OUT / "speedup.md").write_text(
        "# Sweep speed-up: 2 Ray workers over 1\n\n"
        f"`{result['spec']}`: {result['points']} points in {result['runs']} training runs.\n\n"
        "| Ray workers | wall time (s) |\n|---:|---:|\n"
        f"| 1 | {result['wall_s_1_worker']} |\n| 2 | {result['wall_s_2_workers']} |\n\n"
        f"Speed-up **{result['speedup']}×**; both runs computed "
        f"{'the same' if not differ else 'DIFFERENT'} figures. {result['note']} "
        f"(load average afterwards {', '.join(map(str, result['load_average_after']))}).\n")
    print(json.dumps(result, indent=2))
    return 0 if not differ else 1


if __name__ == "__main__":
    sys.exit(main())
