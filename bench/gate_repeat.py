"""False NO-GO rate: the healthy release gate run N times in a row, serial or under xdist.

    .venv/bin/python bench/gate_repeat.py --runs 20
    .venv/bin/python bench/gate_repeat.py --runs 20 --workers 2

Each run is `pytest suites -m go_nogo` on a fresh embedded sandbox (cold, as `make gate`).
While items still have no tests (MISSING) the verdict is NO-GO by design; a *false* NO-GO
is an item that has tests and did not pass on the healthy sandbox. Prints, per run, the
wall time and any such item with its reason, then the count and the median time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def one_run(workers: int, evidence: Path, env: dict[str, str]) -> tuple[float, dict[str, str]]:
    argv = [
        sys.executable,
        "-m",
        "pytest",
        "suites",
        "-m",
        "go_nogo",
        "-q",
        "-p",
        "no:cacheprovider",
    ]
    argv += ["--spark-evidence-dir", str(evidence)]
    if workers:
        argv += ["-n", str(workers)]
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    elapsed = time.perf_counter() - start
    bundles = sorted(evidence.glob("dev/*/verdict.json"), key=lambda p: p.stat().st_mtime)
    if proc.returncode not in (0, 1) or not bundles:
        return elapsed, {"run": f"exit {proc.returncode}: {proc.stdout[-1500:]}"}
    verdict = json.loads(bundles[-1].read_text())
    false_no_go = {
        item: f"{result['status']}: {result['reason']}"
        for item, result in verdict["items"].items()
        # An item with tests in this run (or a composite of such items) must pass.
        if result["nodeids"] and result["status"] not in ("PASSED", "NOT-REQUIRED")
    }
    return elapsed, false_no_go


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--workers", type=int, default=0, help="pytest -n N (0: serial)")
    args = parser.parse_args()
    times, failures = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "SPARK_SANDBOX_STATE_DIR": str(Path(tmp) / "state")}
        for n in range(1, args.runs + 1):
            elapsed, false_no_go = one_run(args.workers, Path(tmp) / "reports", env)
            times.append(elapsed)
            failures += bool(false_no_go)
            status = "ok" if not false_no_go else "FALSE NO-GO " + json.dumps(false_no_go)
            print(f"run {n:2d}: {elapsed:5.1f} s  {status}", flush=True)
    mode = f"-n {args.workers}" if args.workers else "serial"
    print(
        f"pytest suites -m go_nogo ({mode}): {failures} false NO-GO in {args.runs} runs; "
        f"median {statistics.median(times):.1f} s (min {min(times):.1f}, max {max(times):.1f})"
    )


if __name__ == "__main__":
    main()
