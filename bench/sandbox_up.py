"""How long the whole sandbox takes to be ready, and to stop: median of N runs.

Run: ``.venv/bin/python bench/sandbox_up.py [--runs 5] [--defect NAME]...``

Each run is ``Sandbox().start()`` (every service ready) then ``stop()`` (nothing left), timed
with a monotonic clock; when each step finished (seconds since start) comes from the
orchestrator's progress lines.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from spark_sandbox.sandbox import Sandbox

READY_LINE = re.compile(r"^(?P<what>.+?) \((?P<seconds>[0-9.]+) s\)$")


def one_run(run_root: Path, defects: list[str]) -> tuple[float, float, dict[str, float]]:
    """Seconds to ready, seconds to stop, and when (since start) each step reported done."""
    steps: dict[str, float] = {}
    began = time.monotonic()

    def progress(line: str) -> None:
        if READY_LINE.match(line) and not line.startswith("sandbox ready"):
            steps[line.split()[0].rstrip(":")] = time.monotonic() - began

    sandbox = Sandbox(run_root=run_root, defects=defects, progress=progress)
    try:
        sandbox.start()
        ready = time.monotonic() - began
    finally:
        stopping = time.monotonic()
        sandbox.stop()
        stopped = time.monotonic() - stopping
    return ready, stopped, steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--defect", action="append", default=[])
    args = parser.parse_args()
    run_root = Path(tempfile.mkdtemp(prefix="spark-bench-sandbox-"))
    run_root.chmod(0o755)  # PostgreSQL runs as the postgres user and must reach its run dir
    starts: list[float] = []
    stops: list[float] = []
    per_step: dict[str, list[float]] = defaultdict(list)
    try:
        for number in range(1, args.runs + 1):
            ready, stopped, steps = one_run(run_root, args.defect)
            starts.append(ready)
            stops.append(stopped)
            for name, seconds in steps.items():
                per_step[name].append(seconds)
            print(f"run {number}: ready {ready:.2f} s, stopped {stopped:.2f} s", flush=True)
    finally:
        shutil.rmtree(run_root, ignore_errors=True)
    print()
    print(f"{'measure':<28} {'median s':>9} {'min s':>7} {'max s':>7}")
    rows = [("start -> every service ready", starts), ("stop -> nothing left", stops)]
    by_finish = sorted(per_step.items(), key=lambda item: statistics.median(item[1]))
    rows += [(f"  {name} done at", values) for name, values in by_finish]
    for label, values in rows:
        print(
            f"{label:<28} {statistics.median(values):>9.2f} {min(values):>7.2f} {max(values):>7.2f}"
        )
    print(f"\nruns: {args.runs}, defects: {', '.join(args.defect) or '(none)'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
