"""Item 1 of issue #36, measured: each exit case of tests/integration/test_exit_clean.py run ``--runs`` times,
each in a fresh interpreter (SmolLM2-135M, float32), counting runs that exit 0 with no "terminate called".

    .venv/bin/python scripts/exit_check.py --runs 10
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import subprocess
import sys
import time
from pathlib import Path

TEST = Path(__file__).resolve().parents[1] / "tests" / "integration" / "test_exit_clean.py"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--cases", default=None, help="comma-separated cases (default: all)")
    args = parser.parse_args()
    spec = importlib.util.spec_from_file_location("exit_cases", TEST)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cases = args.cases.split(",") if args.cases else module.CASES
    tally: collections.Counter[tuple[str, bool]] = collections.Counter()
    for _ in range(args.runs):  # round by round: a late failure shows in every case's count
        for case in cases:
            started = time.perf_counter()
            run = subprocess.run([sys.executable, "-c", module.CHILD, case], capture_output=True, text=True)
            ok = run.returncode == 0 and "terminate called" not in run.stderr and f"done {case}" in run.stdout
            tally[case, ok] += 1
            print(f"{case}: exit {run.returncode} in {time.perf_counter() - started:.0f} s", flush=True)
    for case in cases:
        print(f"{case}: {tally[case, True]}/{tally[case, True] + tally[case, False]} exit 0")
    return 0 if not any(tally[case, False] for case in cases) else 1


if __name__ == "__main__":
    sys.exit(main())
