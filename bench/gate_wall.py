"""Wall time of a gate run on the embedded sandbox, sandbox start included (cold) or not (warm).

    .venv/bin/python bench/gate_wall.py --gate blind_spot --repeats 5
    .venv/bin/python bench/gate_wall.py --gate go_nogo --repeats 3 --warm
    .venv/bin/python bench/gate_wall.py --gate canary --stage 25 --repeats 5

Cold: every run starts and stops its own sandbox, as `make gate` does. Warm: one sandbox is
started first with `spark-gate sandbox up` and reused by every run. Prints the medians; the
verdict does not matter here (while items are MISSING a gate is NO-GO), only the time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def gate_run(gate: str, env: dict[str, str], evidence: Path, extra: list[str]) -> float:
    argv = [
        sys.executable,
        "-m",
        "pytest",
        "suites",
        "-m",
        gate,
        "-q",
        "-p",
        "no:cacheprovider",
        "--spark-evidence-dir",
        str(evidence),
        *extra,
    ]
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    elapsed = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        sys.exit(f"gate run failed with {proc.returncode}:\n{proc.stdout[-3000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gate", default="go_nogo")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warm", action="store_true", help="reuse one running sandbox")
    parser.add_argument("--stage", type=int, help="the canary stage (--spark-stage)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "SPARK_SANDBOX_STATE_DIR": str(Path(tmp) / "state")}
        cli = [sys.executable, "-m", "pytest_spark.cli", "sandbox"]
        if args.warm:
            subprocess.run([*cli, "up"], cwd=REPO, env=env, check=True, capture_output=True)
        try:
            extra = ["--spark-stage", str(args.stage)] if args.stage is not None else []
            reports = Path(tmp) / "reports"
            times = [gate_run(args.gate, env, reports, extra) for _ in range(args.repeats)]
        finally:
            if args.warm:
                subprocess.run([*cli, "down"], cwd=REPO, env=env, capture_output=True)
    mode = "warm (running sandbox)" if args.warm else "cold (sandbox start included)"
    print(
        f"pytest suites -m {args.gate}{f' --spark-stage {args.stage}' if args.stage else ''}, "
        f"{mode}: median {statistics.median(times):.1f} s "
        f"over {len(times)} runs {[round(t, 1) for t in times]}"
    )


if __name__ == "__main__":
    main()
