"""`make bench`: run every benchmark script in this folder, one after the other.

Each script measures what it compares in one run and prints ratios (machines are shared and
noisy, so no script compares against numbers from another run) and writes its tables and
plots under docs/results/. A failing script is reported and the others still run; the exit
status is non-zero if any failed.
"""

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv=None):
    only = set(argv if argv is not None else sys.argv[1:])
    scripts = sorted(p for p in HERE.glob("*.py") if p.name != Path(__file__).name)
    if only:
        unknown = only - {p.stem for p in scripts}
        if unknown:
            print(f"run_all: unknown benchmark(s) {', '.join(sorted(unknown))}; "
                  f"choose from {', '.join(p.stem for p in scripts)}", file=sys.stderr)
            return 2
        scripts = [p for p in scripts if p.stem in only]
    failed = []
    for i, script in enumerate(scripts, 1):
        print(f"\n=== [{i}/{len(scripts)}] {script.stem} ===", flush=True)
        start = time.monotonic()
        rc = subprocess.call([sys.executable, str(script)], cwd=HERE.parent)
        print(f"=== {script.stem}: {'ok' if rc == 0 else f'FAILED (exit {rc})'} "
              f"in {time.monotonic() - start:.0f} s", flush=True)
        if rc:
            failed.append(script.stem)
    if failed:
        print(f"\nrun_all: {len(failed)} benchmark(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
